#!/usr/bin/env bash
# Fault drills for titulos (issue 10 §4), scripted and repeatable:
#   1. the disk fills up while titles are written (RLIMIT_FSIZE, and a
#      16 KiB tmpfs when this user may mount one): a clear error, no
#      partial title files;
#   2. titulos build killed with SIGKILL in the middle of a large batch:
#      every title file left is complete;
#   3. the state database locked by another process: report and results
#      read on; status and submit exit 4 naming the file and the holder's
#      PID, the database is unchanged and the MET is not contacted;
#   4. a corrupted state database (garbage, and a damaged page): detected,
#      named, exit 5 with the recovery instructions, never silently reset
#      (the file is left byte for byte); the recovery it gives works;
#   4b. the program that reads a lot's result workbook crashes: titulos
#      status says which file, keeps it, records nothing, and recovers.
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
# Another process holds the SQLite write lock for 20 s. Readers still read
# (WAL): report and results succeed. Commands that must write wait
# --wait-lock seconds (default 10), then exit 4 naming the file and the
# holder's PID, change nothing and send nothing: a verified title is
# waiting, and a listener at the MET URL counts every connection.
d="$work/locked"; mkdir -p "$d/in"
port_file="$d/port" conns="$d/connections"
python3 - "$port_file" "$conns" <<'PY' &
import socket, sys, pathlib
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
pathlib.Path(sys.argv[1]).write_text(str(s.getsockname()[1]))
n = 0
while True:
    c, _ = s.accept(); n += 1
    pathlib.Path(sys.argv[2]).write_text(str(n)); c.close()
PY
listener=$!
for _ in $(seq 1 500); do [ -s "$port_file" ] && break; sleep 0.01; done
printf '[met]\nprofile = sandbox\nurl = https://127.0.0.1:%s/met-ws/services/\nretries = 0\n' \
  "$(cat "$port_file")" >"$d/met.conf"
export FIRMANTE_MET_USUARIO=drill FIRMANTE_MET_PASSWORD=drill
"$titulos" report --state "$d/t.db" >/dev/null 2>&1
# A verified title waiting for upload (submit re-reads the file and compares
# its SHA-256 before it builds a lot).
printf '<TituloElectronico folioControl="DRILL-1"/>\n' >"$d/DRILL-1.xml"
sha=$(sha256sum "$d/DRILL-1.xml" | cut -d' ' -f1)
sqlite3 "$d/t.db" "INSERT INTO titles(folio, status, path, sha256, uploads) VALUES ('DRILL-1', 'verified', '$d/DRILL-1.xml', '$sha', 0)"
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
for cmd in report results status submit submit-in; do
  case $cmd in
    report) args=(report --state "$d/t.db"); want=0 ;;
    results) args=(results --state "$d/t.db"); want=0 ;;
    status) args=(status --state "$d/t.db" --met "$d/met.conf"); want=4 ;;
    submit) args=(submit --wait-lock 2 --state "$d/t.db" --met "$d/met.conf"); want=4 ;;
    submit-in) args=(submit --wait-lock 0 --in "$d/in" --state "$d/t.db" --met "$d/met.conf"); want=4 ;;
  esac
  start=$(date +%s%N)
  timeout 60 "$titulos" "${args[@]}" >"$d/$cmd.out" 2>"$d/$cmd.err"; rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  echo "state-locked $cmd: exit $rc (want $want) after $ms ms, message: $(head -c 300 "$d/$cmd.err" | tr '\n' ' ')"
  if [ $rc -ne $want ]; then lock_ok=0; echo "  wrong exit status" >&2; fi
  if [ $want -eq 4 ] && ! { grep -q "$d/t.db: the state database is locked by process $holder" "$d/$cmd.err" &&
                             grep -q "nothing was changed and nothing was sent" "$d/$cmd.err"; }; then
    lock_ok=0; echo "  the message does not name the file, the holder or what happened" >&2
  fi
done
# The run lock (FILE.lock, flock) of another titulos submit/status/cancel.
flock "$d/t.db.lock" sleep 5 &
flocker=$!
for _ in $(seq 1 200); do flock -n "$d/t.db.lock" true || break; sleep 0.01; done
timeout 60 "$titulos" status --wait-lock 1 --state "$d/t.db" --met "$d/met.conf" >/dev/null 2>"$d/flock.err"; rc=$?
echo "state-locked run lock: exit $rc (want 4), message: $(head -c 200 "$d/flock.err" | tr '\n' ' ')"
if [ $rc -ne 4 ] || ! grep -q "in use by another titulos submit, status or cancel" "$d/flock.err"; then
  lock_ok=0; echo "  the run lock was not reported" >&2
fi
kill $flocker 2>/dev/null; wait $flocker 2>/dev/null
kill $holder 2>/dev/null; wait $holder 2>/dev/null
integrity=$(sqlite3 "$d/t.db" 'PRAGMA integrity_check' 2>&1)
row=$(sqlite3 "$d/t.db" "SELECT status, uploads, (SELECT COUNT(*) FROM lots) FROM titles WHERE folio = 'DRILL-1'")
contacted=$(cat "$conns" 2>/dev/null || echo 0)
zips=$(find "$d" -name '*.zip' | wc -l)
kill $listener 2>/dev/null; wait $listener 2>/dev/null
"$titulos" report --state "$d/t.db" >/dev/null 2>&1; after=$?
echo "state-locked: integrity '$integrity', title '$row' (status|uploads|lots), connections to the MET URL $contacted, lot ZIPs left $zips, report after the lock is released: exit $after"
if [ $lock_ok -eq 1 ] && [ "$integrity" = ok ] && [ "$row" = "verified|0|0" ] &&
   [ "$contacted" = 0 ] && [ "$zips" -eq 0 ] && [ $after -eq 0 ]; then
  ok state-locked
else
  bad state-locked "a command did not report the lock (exit 4), changed the database or contacted the MET"
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
  "$titulos" submit --state "$d/t.db" --met "$work/locked/met.conf" >/dev/null 2>"$d/stderr3"; rc3=$?
  after=$(sha256sum "$d/t.db" | cut -d' ' -f1)
  others=$(find "$d" -name 't.db?*' | wc -l)
  echo "state-corrupt-$kind: exit $rc (again: $rc2, submit: $rc3), file unchanged: $([ "$before" = "$after" ] && echo yes || echo NO), files beside it: $others, message: $(head -c 400 "$d/stderr" | tr '\n' ' ')"
  if [ $rc -eq 5 ] && [ $rc2 -eq 5 ] && [ $rc3 -eq 5 ] && [ "$before" = "$after" ] &&
     grep -q "$d/t.db: the state database is damaged" "$d/stderr" &&
     grep -qF "sqlite3 '$d/t.db' .recover | sqlite3 '$d/t.db.recovered'" "$d/stderr"; then
    ok state-corrupt-$kind
    # The recovery the message gives works: .recover into a new file, --state.
    sqlite3 "$d/t.db" .recover 2>/dev/null | sqlite3 "$d/t.db.recovered" 2>/dev/null
    if "$titulos" report --state "$d/t.db.recovered" >/dev/null 2>"$d/stderr4"; then
      ok state-corrupt-$kind-recover
    else
      bad state-corrupt-$kind-recover "titulos report on the recovered file: $(head -c 200 "$d/stderr4")"
    fi
  else
    bad state-corrupt-$kind "expected exit 5 naming the file with the recovery command, three times, and the file untouched"
  fi
done

# ---- 4b. the result reader crashes on a lot's result ----------------------
# A lot goes to the MET sandbox; titulos status then reads its result with a
# reader that dies of SIGSEGV (FIRMANTE_RESULT_READER): status reports the
# file as unreadable and kept, records nothing, and the next status with the
# real reader registers the titles.
d="$work/reader-crash"; mkdir -p "$d"
bindir=$(cd "$(dirname "$titulos")/.." && pwd)
if FIRMANTE_BINARY_DIR="$bindir" /usr/bin/python3 - "$top" "$d" >"$d/out" 2>&1 <<'PY'; then
import os, re, subprocess, sys, time, unittest
top, work = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(top, "tests", "integration"))
import test_met  # the MET sandbox harness (signers, titles, titulos runner)

class ReaderCrash(test_met.MetBase):
    def test_reader_crash(self):
        d, folios = self.titles(2, "RC")
        self.submit("--in", d, check=0)
        time.sleep(self.delay + 0.5)
        crash = os.path.join(self.dir, "crash.sh")
        with open(crash, "w") as f:
            f.write("#!/bin/sh\nkill -SEGV $$\n")
        os.chmod(crash, 0o700)
        p = self.run_titulos("status", "--met", self.met,
                             env={"FIRMANTE_RESULT_READER": crash}, check=3)
        m = re.search(r"the result file of lot (\d+) could not be read: .*stopped on signal 11"
                      r".*; it is kept at (\S+\.zip)", p.stderr)
        self.assertTrue(m, p.stderr)
        self.assertTrue(os.path.getsize(m.group(2)) > 0)
        print("reader-crash: status exit %d: %s" % (p.returncode, p.stderr.strip()[:300]))
        r = self.run_titulos("results", "--csv", check=0).stdout
        self.assertEqual(r.count('"uploaded"'), 2, r)
        self.run_titulos("status", "--met", self.met, check=0)
        r = self.run_titulos("results", "--csv", check=0).stdout
        self.assertEqual(r.count('"registered"'), 2, r)
        print("reader-crash: lot %s registered by the next status with the real reader"
              % m.group(1))

res = unittest.TextTestRunner(verbosity=0).run(
    unittest.defaultTestLoader.loadTestsFromTestCase(ReaderCrash))
sys.exit(0 if res.wasSuccessful() else 1)
PY
  grep '^reader-crash' "$d/out"
  ok result-reader-crash
else
  cat "$d/out"
  bad result-reader-crash "titulos status did not report the crashed reader cleanly, or did not recover"
fi

echo "fault drills: $passed passed, $failed failed ($skipped skipped)"
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
