#!/bin/sh
# What a registrar's IT person runs into with titulos and firmante, one
# check per case: bad CSV bytes and quoting, limits, unreadable files,
# broken configuration, partial and stale batches, verify on directories,
# unsigned and oversized titles, and the agent socket that is not there.
# Usage: test_titulos_newuser.sh TITULOS FIRMANTE SOURCE_DIR WORK_DIR
set -u
t="$1"; fm="$2"; src="$3"; w="$4"
conf="$src/examples/institucion.conf"; csv="$src/examples/egresados.csv"
rm -rf "$w"; mkdir -p "$w"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect NAME STATUS PATTERN -- COMMAND...: exit status and a line of
# standard output + error matching the fixed string PATTERN
expect() {
	name="$1"; want="$2"; pat="$3"; shift 4
	"$@" >"$w/$name.out" 2>&1; rc=$?
	[ "$rc" -eq "$want" ] || { fail "$name: exit $rc, expected $want"; cat "$w/$name.out"; return; }
	grep -qF -- "$pat" "$w/$name.out" || { fail "$name: no '$pat'"; cat "$w/$name.out"; return; }
	echo "ok: $name"
}
head -2 "$csv" > "$w/one.csv"
row2=$(sed -n 2p "$csv")

# 1. a NUL byte inside a field: the row and column, not a cut value
python3 - "$w/one.csv" "$w/nul.csv" <<'PY'
import sys
d = open(sys.argv[1], 'rb').read().replace(b'GAHM98', b'GA\x00HM98', 1)
open(sys.argv[2], 'wb').write(d)
PY
expect nul_field 1 "nul.csv:2:2: curp: holds a NUL byte" -- "$t" build -c "$conf" -i "$w/nul.csv" -o "$w/o-nul"
[ ! -e "$w/o-nul" ] || fail "nul_field: output written"

# 2. limits and unreadable files: the limit or the system's reason
{ cat "$w/one.csv"; printf '%s' "$row2"; i=0; while [ $i -lt 70 ]; do printf ','; i=$((i + 1)); done; echo; } > "$w/wide.csv"
expect too_many_fields 1 "wide.csv:3:65: row 3 has more than 64 fields" -- "$t" build -c "$conf" -i "$w/wide.csv" -o "$w/o-wide"
truncate -s 65M "$w/huge.csv"
expect csv_too_large 1 "larger than 64 MiB" -- "$t" build -c "$conf" -i "$w/huge.csv" -o "$w/o-huge"
rm -f "$w/huge.csv"
expect csv_missing 3 "missing.csv: cannot read the file: No such file or directory" -- "$t" build -c "$conf" -i "$w/missing.csv" -o "$w/o-miss"
expect conf_missing 3 "missing.conf: cannot read the file: No such file or directory" -- "$t" build -c "$w/missing.conf" -i "$csv" -o "$w/o-miss"
if grep -q "Input/output error\|larger than the agent accepts" "$w"/csv_missing.out "$w"/too_many_fields.out "$w"/csv_too_large.out; then
	fail "an offline command speaks of the agent or of Input/output error"
fi

# 4. malformed quoting: file, row, field
sed '2s/MARÍA FERNANDA/MAR"IA/' "$w/one.csv" > "$w/stray.csv"
expect stray_quote 1 "stray.csv:2:3: malformed CSV at row 2, field 3 (line 2)" -- "$t" build -c "$conf" -i "$w/stray.csv" -o "$w/o-q"
sed '2s/,MARÍA FERNANDA,/,"MARIA,/' "$w/one.csv" > "$w/unclosed.csv"
expect unclosed_quote 1 "unclosed.csv:2:3: malformed CSV at row 2, field 3: the field opens a quote" -- "$t" build -c "$conf" -i "$w/unclosed.csv" -o "$w/o-q"

# 5. a section header without ']': reported at its line, keys not blamed elsewhere
sed 's/^\[firmante rector\]/[firmante rector/' "$conf" > "$w/broken.conf"
line=$(grep -n '^\[firmante rector$' "$w/broken.conf" | cut -d: -f1)
expect broken_section 1 "broken.conf:$line: a section header without its closing ']'" -- "$t" build -c "$w/broken.conf" -i "$w/one.csv" -o "$w/o-c"
grep -q "unknown key" "$w/broken_section.out" && fail "broken_section: keys blamed on the previous section"

# 6. a write error leaves nothing; titles of an earlier batch are refused
#    (a file-size limit of 512 bytes: every title is larger, the first write fails)
expect write_error 3 "o-werr: nothing written" -- bash -c 'trap "" XFSZ; ulimit -f 1; exec "$@"' sh "$t" build -c "$conf" -i "$csv" -o "$w/o-werr"
grep -q "cannot write" "$w/write_error.out" || fail "write_error: no 'cannot write' message"
[ "$(ls -A "$w/o-werr" | wc -l)" -eq 0 ] || fail "write_error: files left behind: $(ls -A "$w/o-werr")"
# a bad row at the very end: every row checked before any title is written
{ cat "$csv"; tail -1 "$csv" | sed 's/^UVC-2025-0011,[A-Z]/UVC-2025-0012,X/'; } > "$w/lastbad.csv"
expect last_row_bad 1 "lastbad.csv:13:2: curp:" -- "$t" build -c "$conf" -i "$w/lastbad.csv" -o "$w/o-lastbad"
grep -q "nothing written" "$w/last_row_bad.out" || fail "last_row_bad: no 'nothing written'"
[ "$(ls -A "$w/o-lastbad" 2>/dev/null | wc -l)" -eq 0 ] || fail "last_row_bad: files written: $(ls -A "$w/o-lastbad")"
# a temporary of a killed build (its PID no longer runs) is removed by the next build
mkdir -p "$w/o-stale-tmp"
echo partial > "$w/o-stale-tmp/.UVC-2025-0001.xml.999999999.fmtmp"
echo other > "$w/o-stale-tmp/.keep"
"$t" build -c "$conf" -i "$csv" -o "$w/o-stale-tmp" >/dev/null 2>&1 || fail "build over a stale temporary"
[ ! -e "$w/o-stale-tmp/.UVC-2025-0001.xml.999999999.fmtmp" ] || fail "stale temporary not removed"
[ -e "$w/o-stale-tmp/.keep" ] || fail "a file of another pattern was removed"
[ "$(ls "$w/o-stale-tmp" | wc -l)" -eq 11 ] || fail "stale_tmp: expected 11 titles: $(ls -A "$w/o-stale-tmp")"
"$t" build -c "$conf" -i "$csv" -o "$w/o-stale" >/dev/null 2>&1 || fail "build of the examples"
expect stale_titles 1 "already holds 10 title(s) that are not in this CSV" -- "$t" build -c "$conf" -i "$w/one.csv" -o "$w/o-stale"
expect same_batch_again 0 "11 title(s) written" -- "$t" build -c "$conf" -i "$csv" -o "$w/o-stale"

# 7. Windows-1252 is one warning; header names without case or spaces; ';'
iconv -f UTF-8 -t WINDOWS-1252 "$csv" > "$w/cp1252.csv"
expect windows_1252 0 "11 title(s) written" -- "$t" build -c "$conf" -i "$w/cp1252.csv" -o "$w/o-1252"
[ "$(grep -c . "$w/windows_1252.out")" -eq 2 ] || { fail "windows_1252: more than one warning"; cat "$w/windows_1252.out"; }
sed '1s/curp/CURP/; 1s/,nombre,/, nombre ,/' "$w/one.csv" | tr ',' ';' > "$w/semi.csv"
expect header_case_semicolon 0 "1 title(s) written" -- "$t" build -c "$conf" -i "$w/semi.csv" -o "$w/o-semi"

# 8. a day the month does not have; a no-break space shown as such
sed '2s/2021-05-10/2021-02-31/' "$w/one.csv" > "$w/feb31.csv"
expect day_not_in_month 1 "'2021-02-31': February 2021 has 28 days; there is no day 31" -- "$t" build -c "$conf" -i "$w/feb31.csv" -o "$w/o-d"
sed '2s/MARÍA FERNANDA/MARÍA\xc2\xa0FERNANDA/' "$w/one.csv" > "$w/nbsp.csv"
expect nbsp_shown 0 'from "MARÍA<U+00A0>FERNANDA"' -- "$t" build -c "$conf" -i "$w/nbsp.csv" -o "$w/o-nb"

# 11. a header and no rows
head -1 "$csv" > "$w/header-only.csv"
expect header_only 1 "the file has a header but no graduate rows" -- "$t" build -c "$conf" -i "$w/header-only.csv" -o "$w/o-h"

# 10. verify: directories, unsigned titles once, the 1 MiB limit; 3: numbering
expect verify_directory 1 "o-stale/UVC-2025-0011.xml: document: the title is not signed yet" -- "$t" verify "$w/o-stale"
[ "$(grep -c "FAILED (1 error(s))" "$w/verify_directory.out")" -eq 11 ] || { fail "verify_directory: not one finding per unsigned title"; cat "$w/verify_directory.out"; }
head -c 2000000 /dev/zero | tr '\0' 'x' > "$w/big.xml"
expect verify_too_large 1 "larger than 1 MiB, the most a title may be" -- "$t" verify "$w/big.xml"
mkdir -p "$w/empty"
expect verify_empty_directory 1 "no .xml files in the directory" -- "$t" verify "$w/empty"
python3 - "$w/o-stale/UVC-2025-0001.xml" "$w/half.xml" <<'PY'
import sys
d = open(sys.argv[1]).read()
# the first signer carries a (bad) sello: the title is no longer "unsigned"
d = d.replace('curp="MEOJ700515HDFNRN00"', 'curp="MEOJ700515HDFNRN00" sello="AAAA"', 1)
open(sys.argv[2], 'w').write(d)
PY
expect numbering_from_one 1 "FirmaResponsable[2] (ROSL750822MJCDNR01): sello: sello is missing" -- "$t" verify "$w/half.xml"
grep -qF "FirmaResponsable[0]" "$w/numbering_from_one.out" && fail "numbering_from_one: FirmaResponsable[0] printed"

# 9. a title that is not UTF-8 without BOM never passes
f="$w/o-stale/UVC-2025-0001.xml"
iconv -f UTF-8 -t UTF-16 "$f" > "$w/utf16.xml"
expect verify_utf16 1 "the document is UTF-16" -- "$t" verify "$w/utf16.xml"
iconv -f UTF-8 -t ISO-8859-1 "$f" > "$w/latin1.xml"
expect verify_latin1 1 "is not UTF-8" -- "$t" verify "$w/latin1.xml"
{ printf '\357\273\277'; cat "$f"; } > "$w/bom.xml"
expect verify_bom 1 "byte order mark" -- "$t" verify "$w/bom.xml"

# 15. the agent socket: missing, not a socket, nobody listening, too long
expect socket_missing 3 "no agent socket at $w/none.sock" -- "$fm" --socket "$w/none.sock" status
: > "$w/plain"
expect socket_not_a_socket 3 "$w/plain is not a socket" -- "$fm" --socket "$w/plain" status
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()' "$w/dead.sock"
expect socket_dead 3 "nothing answers on $w/dead.sock" -- "$fm" --socket "$w/dead.sock" status
long="$w/$(printf '%0120d' 0).sock"
expect socket_too_long 2 "socket path is too long" -- "$fm" --socket "$long" status
expect titulos_socket_too_long 2 "socket path $long is too long" -- "$t" sign -c "$conf" -i "$w/o-stale" -o "$w/o-signed" --socket "$long"
expect titulos_socket_missing 3 "no agent socket at $w/none.sock" -- "$t" sign -c "$conf" -i "$w/o-stale" -o "$w/o-signed" --socket "$w/none.sock"
if grep -q "port 80" "$w"/socket_*.out "$w"/titulos_socket_*.out; then fail "curl's localhost port 80 text shown"; fi
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1; then
	python3 - "$w/perm.sock" "$fm" "$w/socket_permission.out" <<'PY'
import os, socket, subprocess, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1]); s.listen(1); os.chmod(sys.argv[1], 0o600)
os.chmod(os.path.dirname(sys.argv[1]), 0o755)
r = subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', sys.argv[2],
                    '--socket', sys.argv[1], 'status'], capture_output=True, text=True)
open(sys.argv[3], 'w').write('%d %s' % (r.returncode, r.stderr))
PY
	grep -qF "3 firmante: " "$w/socket_permission.out" && grep -qF "no permission to use the agent socket" "$w/socket_permission.out" \
		&& echo "ok: socket_permission" || { fail "socket_permission"; cat "$w/socket_permission.out"; }
else
	echo "skip: socket_permission (needs root and setpriv to act as another user)"
fi

[ $fails -eq 0 ] || { echo "$fails case(s) failed"; exit 1; }
rm -rf "$w"
echo "titulos/firmante new-user cases: all passed"
