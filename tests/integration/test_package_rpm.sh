#!/usr/bin/env bash
# The RPM spec builds here: packaging/build-rpm with rpmbuild -bb --nodeps
# (this machine's build dependencies are Debian packages, which rpm cannot
# see), and the RPMs hold what they should: programs, man pages, units,
# sysusers file, default configuration (as %config), data, library, headers.
set -euo pipefail
SRC=${FIRMANTE_SOURCE_DIR:?}
command -v rpmbuild > /dev/null || { echo "FAIL: rpmbuild is missing; run scripts/install-deps (rpm)"; exit 1; }
W=$(mktemp -d /tmp/fm-rpm.XXXXXX)
trap 'rm -rf "$W"' EXIT
"$SRC/packaging/build-rpm" "$W/rpms" --nodeps --define 'debug_package %{nil}' > "$W/build.log" 2>&1 ||
  { tail -n 60 "$W/build.log"; exit 1; }
ls "$W/rpms"
has() { # package-glob path...
  local rpm
  rpm=$(ls "$W"/rpms/$1 2>/dev/null | head -n 1)
  [ -n "$rpm" ] || { echo "FAIL: no RPM $1"; exit 1; }
  shift
  rpm -qlp "$rpm" 2>/dev/null > "$W/list"
  for f in "$@"; do
    grep -qx -- "$f" "$W/list" || { echo "FAIL: $(basename "$rpm") lacks $f"; cat "$W/list"; exit 1; }
  done
}
has 'firmante-0*.rpm' /usr/bin/firmanted /usr/bin/firmante /etc/firmante/firmanted.conf \
  /usr/lib/systemd/user/firmanted.socket /usr/lib/systemd/user/firmanted.service \
  /usr/lib/systemd/system/firmanted.socket /usr/lib/systemd/system/firmanted.service \
  /usr/lib/sysusers.d/firmante.conf '/usr/share/man/man8/firmanted.8.*' \
  '/usr/share/man/man5/firmanted.conf.5.*' '/usr/share/man/man1/firmante.1.*'
grep -q '^/usr/lib/udev/rules.d/.*\.rules$' "$W/list" || { echo "FAIL: no udev rules in the firmante RPM"; exit 1; }
rpm -qcp "$W"/rpms/firmante-0*.rpm 2>/dev/null | grep -qx /etc/firmante/firmanted.conf ||
  { echo "FAIL: /etc/firmante/firmanted.conf is not a %config file"; exit 1; }
has 'titulos-0*.rpm' /usr/bin/titulos '/usr/share/man/man1/titulos.1.*'
has 'firmante-data-0*.rpm' /usr/share/firmante/TituloElectronico.xsd /usr/share/firmante/catalogos.csv
has 'firmante-libs-0*.rpm' '/usr/lib64/libfirmante-client.so.0'
has 'firmante-nm-0*.rpm' /usr/libexec/firmante/firmante-nm '/usr/share/man/man1/firmante-nm.1.*' \
  /etc/chromium/native-messaging-hosts/org.firmante.nm.json \
  /usr/lib/mozilla/native-messaging-hosts/org.firmante.nm.json
has 'firmante-devel-0*.rpm' /usr/include/firmante/client.h /usr/lib64/libfirmante-client.so
echo "rpm: $(ls "$W"/rpms | wc -l) packages built with the expected files"
