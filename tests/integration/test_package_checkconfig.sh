#!/usr/bin/env bash
# firmanted --check-config reports unsafe permissions with FILE:LINE and
# exits 1; a safe configuration passes (exit 0):
#  - a PKCS#11 module writable by every user (line of its "module" key);
#  - a module reached through a symbolic link whose target is group-writable;
#  - a module in a directory writable by its group;
#  - a module owned by another user (as root only: needs chown);
#  - the configuration file itself writable by others (FILE: ...);
#  - a pinentry program in a group-writable directory (line of "pinentry");
#  - an existing socket directory open to others (line of "socket"); with
#    "group = NAME", 0750 is fine but a group-writable directory is not;
#  - syntax errors still come first, as FILE:LINE.
set -euo pipefail
BIN=${FIRMANTE_BINARY_DIR:?}
agent=$BIN/agent/firmanted
T=$(mktemp -d /tmp/fm-checkconf.XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 700 "$T"
umask 022
mkdir -p "$T/lib" "$T/bin" "$T/run"
chmod 700 "$T/run"
cp /usr/lib/softhsm/libsofthsm2.so "$T/lib/module.so"
chmod 644 "$T/lib/module.so"
printf '#!/bin/sh\nexit 0\n' > "$T/bin/pinentry"
chmod 755 "$T/bin/pinentry"
conf=$T/firmanted.conf
write_conf() {
  cat > "$conf" <<CONF
[agent]
module = $1
socket = $T/run/agent.sock
use-p11kit-modules = false
pinentry = $T/bin/pinentry --timeout 5
CONF
  chmod 600 "$conf"
}
fails=0
expect() { # description, expected exit status, grep pattern ("" = none)
  local what=$1 want=$2 pat=$3 rc=0
  "$agent" --check-config --config "$conf" > "$T/out" 2> "$T/err" || rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "FAIL: $what: exit $rc, expected $want"; cat "$T/err"; fails=$((fails + 1)); return
  fi
  if [ -n "$pat" ] && ! grep -qF -- "$pat" "$T/err"; then
    echo "FAIL: $what: no \"$pat\" in:"; cat "$T/err"; fails=$((fails + 1)); return
  fi
  echo "ok: $what${pat:+: $(grep -F -- "$pat" "$T/err" | head -n 1)}"
}

write_conf "$T/lib/module.so"
expect "safe configuration" 0 ""
grep -q "^module = $T/lib/module.so" "$T/out"

chmod 666 "$T/lib/module.so"
expect "module writable by every user" 1 "$conf:2: unsafe permissions: PKCS#11 module $T/lib/module.so can be changed by every user"
chmod 644 "$T/lib/module.so"

mkdir "$T/real"; cp "$T/lib/module.so" "$T/real/target.so"; chmod 664 "$T/real/target.so"
ln -s "$T/real/target.so" "$T/lib/link.so"
write_conf "$T/lib/link.so"
expect "symbolic link to a group-writable module" 1 "$conf:2: unsafe permissions: PKCS#11 module $T/real/target.so can be changed by its group"

chmod 644 "$T/real/target.so"; chmod 775 "$T/real"
write_conf "$T/real/target.so"
expect "module in a group-writable directory" 1 "$conf:2: unsafe permissions: directory $T/real can be changed by its group"
chmod 755 "$T/real"

if [ "$(id -u)" -eq 0 ]; then
  chown 65534 "$T/real/target.so"
  expect "module owned by another user" 1 "$conf:2: unsafe permissions: PKCS#11 module $T/real/target.so belongs to uid 65534"
  chown 0 "$T/real/target.so"
else
  echo "skip: module owned by another user (needs root for chown)"
fi

write_conf "$T/lib/module.so"
chmod 606 "$conf"
expect "configuration file writable by others" 1 "$conf: unsafe permissions: configuration file $conf can be changed by every user"
chmod 600 "$conf"

chmod 775 "$T/bin"
expect "pinentry in a group-writable directory" 1 "$conf:5: unsafe permissions: directory $T/bin can be changed by its group"
chmod 755 "$T/bin"

chmod 755 "$T/run"
expect "socket directory open to others" 1 "$conf:3: unsafe permissions: socket directory $T/run is open to group or others"
chmod 750 "$T/run"
echo "group = $(id -gn)" >> "$conf"
expect "socket directory 0750 with a group configured" 0 ""
chmod 770 "$T/run"
expect "socket directory group-writable with a group configured" 1 "$conf:3: unsafe permissions: socket directory $T/run is writable by its group"
chmod 700 "$T/run"
write_conf "$T/lib/module.so"

expect "safe again" 0 ""

printf '[agent]\nmodule = %s\nfrobnicate = 1\n' "$T/lib/module.so" > "$conf"
expect "unknown key still named with FILE:LINE" 1 "$conf:3: unknown key"

[ "$fails" -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "check-config: all permission checks behave"
