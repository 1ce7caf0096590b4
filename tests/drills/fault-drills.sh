#!/usr/bin/env bash
# Fault drills for titulos (issue 10 §4), scripted and repeatable:
#   1. the disk fills up while titles are written (RLIMIT_FSIZE, and a
#      16 KiB tmpfs when this user may mount one): a clear error, no
#      partial title files;
#   2. titulos build killed with SIGKILL in the middle of a large batch:
#      every title file left is complete;
#   3. the state database locked by another process: report, status and
#      submit each finish (success or a message; no hang), the database is
#      intact afterwards;
#   4. a corrupted state database (garbage, and a damaged page): detected,
#      named, never silently reset (the file is left byte for byte).
# Usage: tests/drills/fault-drills.sh TITULOS [WORKDIR]
# Prints each drill's figures and ends with "N passed, N failed".
set -uo pipefail
titulos=${1:?usage: fault-drills.sh TITULOS [WORKDIR]}
top=$(cd "$(dirname "$0")/../.." && pwd)
work=${2:-$(mktemp -d /tmp/fault-drills.XXXXXX)}
conf="$top/examples/institucion.conf"
csv="$top/examples/egresados.csv"
passed=0 failed=0 skipped=0
mounted=""
cleanup() { [ -n "$mounted" ] && umount "$mounted" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work"

ok()   { passed=$((passed + 1)); echo "PASS $1"; }
bad()  { failed=$((failed + 1)); echo "FAIL $1: $2"; }
skip() { skipped=$((skipped + 1)); echo "SKIP $1: $2"; }

# complete_titles DIR: every *.xml well-formed and closed; prints the count.
complete_titles() {
  local n=0 f
  for f in "$1"/*.xml; do
    [ -e "$f" ] || continue
    xmllint --noout "$f" 2>/dev/null || { echo "incomplete: $f" >&2; return 1; }
    n=$((n + 1))
  done
  echo "$n"
}

# ---- 1a. disk full: a file-size limit (write fails with EFBIG) ----------
d="$work/fsize"; mkdir -p "$d"
( trap '' XFSZ; ulimit -f 1; exec "$titulos" build --config "$conf" --csv "$csv" --out "$d/out" ) \
  >"$d/stdout" 2>"$d/stderr"; rc=$?
left=$(find "$d/out" -type f 2>/dev/null | wc -l)
echo "disk-full-fsize: exit $rc, files left $left, message: $(head -c 200 "$d/stderr")"
if [ $rc -eq 3 ] && [ "$left" -eq 0 ] && grep -q "cannot write" "$d/stderr"; then
  ok disk-full-fsize
else
  bad disk-full-fsize "expected exit 3, a 'cannot write' message and no file"
fi

# ---- 1b. disk full: a 16 KiB tmpfs (write fails with ENOSPC) ------------
d="$work/enospc"; mkdir -p "$d/small"
if mount -t tmpfs -o size=16k,mode=0700 tmpfs "$d/small" 2>/dev/null; then
  mounted="$d/small"
  # Enough rows that the first titles fit and a later one does not.
  { head -1 "$csv"; for i in $(seq 1 12); do tail -n +2 "$csv" | sed "s/^\([^,]*\),/\1-$i,/"; done; } >"$d/many.csv"
  "$titulos" build --config "$conf" --csv "$d/many.csv" --out "$d/small/out" \
    >"$d/stdout" 2>"$d/stderr"; rc=$?
  n=$(complete_titles "$d/small/out"); crc=$?
  others=$(find "$d/small/out" -type f ! -name '*.xml' 2>/dev/null | wc -l)
  echo "disk-full-enospc: exit $rc, complete titles $n, other files $others, message: $(head -c 200 "$d/stderr")"
  if [ $rc -eq 3 ] && [ $crc -eq 0 ] && [ "$others" -eq 0 ] && grep -qi "space" "$d/stderr"; then
    ok disk-full-enospc
  else
    bad disk-full-enospc "expected exit 3, 'No space left' and only complete titles"
  fi
  umount "$d/small"; mounted=""
else
  skip disk-full-enospc "this user cannot mount a tmpfs"
fi

# ---- 2. SIGKILL in the middle of a large build ---------------------------
d="$work/kill"; mkdir -p "$d"
{ head -1 "$csv"; for i in $(seq 1 400); do tail -n +2 "$csv" | sed "s/^\([^,]*\),/\1-$i,/"; done; } >"$d/big.csv"
rows=$(($(wc -l <"$d/big.csv") - 1))
"$titulos" build --config "$conf" --csv "$d/big.csv" --out "$d/out" >/dev/null 2>&1 &
pid=$!
# Kill once the first titles are on disk, while the rest are being written.
for _ in $(seq 1 400); do
  [ "$(find "$d/out" -name '*.xml' 2>/dev/null | head -20 | wc -l)" -ge 10 ] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.01
done
kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null
n=$(complete_titles "$d/out"); crc=$?
tmp=$(find "$d/out" -type f ! -name '*.xml' 2>/dev/null | wc -l)
echo "kill-during-build: $rows rows, $n complete titles when killed, incomplete: $([ $crc -eq 0 ] && echo 0 || echo some), temporary files left $tmp"
if [ $crc -eq 0 ]; then ok kill-during-build; else bad kill-during-build "an incomplete title file was left"; fi

# ---- 3. state database locked by another process -------------------------
# Another process holds an exclusive SQLite transaction for 20 s. Readers
# still read (WAL); commands that must write wait up to the busy timeout.
# Each command must finish (no hang), end in success or in a message, and
# leave the database intact.
d="$work/locked"; mkdir -p "$d/in"
printf '[met]\nprofile = sandbox\nurl = https://127.0.0.1:9/met-ws/services/\nretries = 0\n' >"$d/met.conf"
export FIRMANTE_MET_USUARIO=drill FIRMANTE_MET_PASSWORD=drill
"$titulos" report --state "$d/t.db" >/dev/null 2>&1
python3 - "$d/t.db" "$d/locked.flag" <<'PY' &
import sqlite3, sys, time, pathlib
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("BEGIN EXCLUSIVE")
c.execute("CREATE TABLE IF NOT EXISTS drill_lock (x)")
pathlib.Path(sys.argv[2]).touch()
time.sleep(20)
c.execute("ROLLBACK")
PY
holder=$!
for _ in $(seq 1 500); do [ -e "$d/locked.flag" ] && break; sleep 0.01; done
lock_ok=1
for cmd in report status submit; do
  case $cmd in
    report) args=(report --state "$d/t.db") ;;
    status) args=(status --state "$d/t.db" --met "$d/met.conf") ;;
    submit) args=(submit --in "$d/in" --state "$d/t.db" --met "$d/met.conf") ;;
  esac
  start=$(date +%s%N)
  timeout 60 "$titulos" "${args[@]}" >"$d/$cmd.out" 2>"$d/$cmd.err"; rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  echo "state-locked $cmd: exit $rc after $ms ms, message: $(head -c 160 "$d/$cmd.err" | tr '\n' ' ')"
  if [ $rc -eq 124 ] || { [ $rc -ne 0 ] && [ ! -s "$d/$cmd.err" ]; }; then lock_ok=0; fi
done
kill $holder 2>/dev/null; wait $holder 2>/dev/null
integrity=$(sqlite3 "$d/t.db" 'PRAGMA integrity_check' 2>&1)
"$titulos" report --state "$d/t.db" >/dev/null 2>&1; after=$?
echo "state-locked: integrity '$integrity', report after the lock is released: exit $after"
if [ $lock_ok -eq 1 ] && [ "$integrity" = ok ] && [ $after -eq 0 ]; then
  ok state-locked
else
  bad state-locked "a command hung or failed silently, or the database is damaged"
fi

# ---- 4. corrupted state database ----------------------------------------
for kind in garbage damaged-page; do
  d="$work/corrupt-$kind"; mkdir -p "$d"
  if [ $kind = garbage ]; then
    (umask 077; printf 'these bytes are not a database\n' >"$d/t.db")
  else
    "$titulos" report --state "$d/t.db" >/dev/null 2>&1
    python3 - "$d/t.db" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
for i in range(100, min(len(b), 4196)):
    b[i] = (b[i] * 31 + 7) & 0xff
open(p, 'wb').write(bytes(b))
PY
  fi
  before=$(sha256sum "$d/t.db" | cut -d' ' -f1)
  "$titulos" report --state "$d/t.db" >"$d/stdout" 2>"$d/stderr"; rc=$?
  "$titulos" report --state "$d/t.db" >/dev/null 2>"$d/stderr2"; rc2=$?
  after=$(sha256sum "$d/t.db" | cut -d' ' -f1)
  echo "state-corrupt-$kind: exit $rc (again: $rc2), file unchanged: $([ "$before" = "$after" ] && echo yes || echo NO), message: $(head -c 200 "$d/stderr")"
  if [ $rc -eq 3 ] && [ $rc2 -eq 3 ] && [ "$before" = "$after" ] && grep -q "t.db" "$d/stderr"; then
    ok state-corrupt-$kind
  else
    bad state-corrupt-$kind "expected exit 3 naming the file, twice, and the file untouched"
  fi
done

echo "fault drills: $passed passed, $failed failed ($skipped skipped)"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
