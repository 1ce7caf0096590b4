#!/usr/bin/env bash
# The Debian packages, installed for real on this machine (CI runs as root):
#  1. packaging/build-deb builds them from a copy of the tree;
#  2. lintian reports no errors (its warnings are listed);
#  3. apt-get install ./*.deb (dependencies from the Debian archive);
#  4. the installed programs work: firmante --version, man pages, units
#     accepted by systemd-analyze verify (man pages checked too), the user
#     socket enabled for every user, the system user created,
#     firmanted --check-config on /etc/firmante/firmanted.conf; then the
#     installed firmanted on a fresh SoftHSM2 token, the installed titulos
#     building, signing (through that agent) and verifying the example
#     titles, with tests/tools/check-titulo as a second opinion;
#  5. apt-get purge: every path dpkg -L listed is gone (directories shared
#     with other packages excepted), and nothing of ours is left in /etc,
#     /var/lib or systemd's enablement links.
# Not root: skipped (exit 77). Packages already installed: refused (this
# test would purge them). One run at a time on a machine (flock; after 10
# minutes waiting for another run, skipped).
set -euo pipefail
SRC=${FIRMANTE_SOURCE_DIR:?}
S=${FIRMANTE_SHARED_DIR:-$SRC/../shared}
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: installing packages needs root (CI runs this test as root)"
  exit 77
fi
for tool in dpkg-buildpackage dh lintian apt-get; do
  command -v "$tool" >/dev/null || {
    echo "FAIL: $tool is missing; run scripts/install-deps (debhelper, devscripts, lintian)"; exit 1; }
done
pkgs=(firmante titulos firmante-data libfirmante-client0 libfirmante-client-dev firmante-nm)

exec 9> /var/lock/firmante-package-test.lock
if ! flock -w 600 9; then
  echo "SKIP: another run of this test (another build directory) has held"
  echo "      /var/lock/firmante-package-test.lock for 10 minutes; it tests the same packages"
  exit 77
fi

installed() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^.[iufhWt]'; }
for p in "${pkgs[@]}"; do
  if installed "$p"; then
    echo "FAIL: package $p is already installed here; this test installs and purges it. Remove it first."
    exit 1
  fi
done

W=$(mktemp -d /tmp/fm-deb.XXXXXX)
chmod 755 "$W"   # apt's download user reads the .debs from here
agent_pid=
cleanup() {
  if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; fi
  for p in "${pkgs[@]}"; do
    if dpkg-query -W "$p" >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "${pkgs[@]}" >/dev/null 2>&1 || true
      break
    fi
  done
  rm -rf "$W"
}
trap cleanup EXIT

echo "== build =="
"$SRC/packaging/build-deb" "$W/debs" > "$W/build.log" 2>&1 || { tail -n 60 "$W/build.log"; exit 1; }
ls "$W/debs"
for p in "${pkgs[@]}"; do
  ls "$W/debs/${p}_"*.deb >/dev/null || { echo "FAIL: no package $p built"; exit 1; }
done

echo "== lintian =="
set +e
lintian --tag-display-limit 0 "$W"/debs/*.changes > "$W/lintian.txt" 2>&1
set -e
cat "$W/lintian.txt"
if grep -q '^E: ' "$W/lintian.txt"; then echo "FAIL: lintian errors"; exit 1; fi
echo "lintian: no errors, $(grep -c '^W: ' "$W/lintian.txt" || true) warnings"

echo "== install =="
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "$W"/debs/*.deb > "$W/install.log" 2>&1; then
  apt-get update -q > /dev/null
  apt-get install -y -q --no-install-recommends "$W"/debs/*.deb > "$W/install.log" 2>&1 || { cat "$W/install.log"; exit 1; }
fi
tail -n 3 "$W/install.log"
for p in "${pkgs[@]}"; do
  dpkg -L "$p" > "$W/$p.list"
done
if grep -E 'pinentry-stub|fm-testtoken|check-titulo|p11shim' "$W"/*.list; then
  echo "FAIL: a test component is in a package"; exit 1
fi

echo "== installed programs =="
/usr/bin/firmante --version
/usr/bin/firmanted --version
/usr/bin/titulos --help > /dev/null
for m in man8/firmanted.8 man1/firmante.1 man1/titulos.1 man5/firmanted.conf.5; do
  [ -f "/usr/share/man/$m.gz" ] || { echo "FAIL: /usr/share/man/$m.gz missing"; exit 1; }
done
[ -f /usr/share/firmante/TituloElectronico.xsd ] && [ -f /usr/share/firmante/catalogos.csv ]
[ -f /usr/include/firmante/client.h ]
# The browser relay and its host manifests point at the installed program.
[ -x /usr/libexec/firmante/firmante-nm ] || { echo "FAIL: /usr/libexec/firmante/firmante-nm missing"; exit 1; }
# (Debian policy keeps packages out of /etc/opt, so Google Chrome's copy is
# left to the administrator; docs/protocol.md says how.)
for m in /etc/chromium/native-messaging-hosts/org.firmante.nm.json \
         /usr/lib/mozilla/native-messaging-hosts/org.firmante.nm.json; do
  grep -q '"path": *"/usr/libexec/firmante/firmante-nm"' "$m" ||
    { echo "FAIL: $m does not name /usr/libexec/firmante/firmante-nm"; cat "$m"; exit 1; }
done
[ -f /usr/share/doc/firmante/protocol.md ] && [ -f /usr/share/doc/titulos/titulos.md ] ||
  { echo "FAIL: the documents the man pages name are not in /usr/share/doc"; exit 1; }
ls /lib/udev/rules.d/*firmante*.rules > /dev/null
ls /usr/lib/*/libfirmante-client.so.0 > /dev/null
man_opt=--man=no
command -v man >/dev/null && man_opt=--man=yes
systemd-analyze verify $man_opt /lib/systemd/system/firmanted.socket /lib/systemd/system/firmanted.service
rt=$(mktemp -d); chmod 700 "$rt"
XDG_RUNTIME_DIR=$rt systemd-analyze --user verify $man_opt \
  /usr/lib/systemd/user/firmanted.socket /usr/lib/systemd/user/firmanted.service
rm -rf "$rt"
echo "systemd-analyze verify: installed units accepted ($man_opt)"
[ -L /etc/systemd/user/sockets.target.wants/firmanted.socket ] ||
  { echo "FAIL: the user socket is not enabled for every user"; exit 1; }
[ ! -e /etc/systemd/system/sockets.target.wants/firmanted.socket ] ||
  { echo "FAIL: the unattended system socket was enabled by the package"; exit 1; }
getent passwd firmante > /dev/null || { echo "FAIL: system user firmante not created"; exit 1; }
[ "$(stat -c %a /etc/firmante/firmanted.conf)" = 644 ]
XDG_RUNTIME_DIR=$W/xdg /usr/bin/firmanted --check-config --config /etc/firmante/firmanted.conf

echo "== sign with the installed programs =="
umask 077
pin=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ' | cut -c1-8)
sopin=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
printf '%s' "$pin" > "$W/pin"
umask 022
tool=$SRC/tests/tools/fm-testtoken
$tool init --dir "$W/token" --label firmante-demo --pin "$pin" --so-pin "$sopin" > /dev/null
$tool ca --dir "$W/token" --cn "AC DE PRUEBAS FIRMANTE (PAQUETE)" > /dev/null
$tool signer --dir "$W/token" --label firmante-demo --pin "$pin" --id 01 \
  --name "JUAN CARLOS MÉNDEZ ORTIZ" --curp MEOJ700515HDFNRN00 --rfc MEOJ700515AB1 > /dev/null
$tool signer --dir "$W/token" --label firmante-demo --pin "$pin" --id 02 \
  --name "LAURA RODRÍGUEZ SÁNCHEZ" --curp ROSL750822MJCDNR01 --rfc ROSL750822QW2 > /dev/null
export SOFTHSM2_CONF=$W/token/softhsm2.conf
mkdir -m 700 "$W/run"
cat > "$W/firmanted.conf" <<CONF
[agent]
socket = $W/run/agent.sock
module = /usr/lib/softhsm/libsofthsm2.so
use-p11kit-modules = false
pinentry = $SRC/tests/pinentry-stub --pin-file $W/pin --log $W/pinentry.log
approval-timeout = 60
CONF
/usr/bin/firmanted --config "$W/firmanted.conf" 2> "$W/firmanted.log" &
agent_pid=$!
for _ in $(seq 1 200); do
  [ -S "$W/run/agent.sock" ] && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$W/firmanted.log"; echo "FAIL: installed firmanted exited"; exit 1; }
  sleep 0.1
done
export FIRMANTE_SOCKET=$W/run/agent.sock
/usr/bin/firmante keys
unset FIRMANTE_DATADIR
/usr/bin/titulos build --config "$SRC/examples/institucion.conf" --csv "$SRC/examples/egresados.csv" \
  --out "$W/unsigned"
/usr/bin/titulos sign --config "$SRC/examples/institucion.conf" --in "$W/unsigned" --out "$W/signed"
/usr/bin/titulos verify "$W"/signed/*.xml | tail -n 2
xsd=/usr/share/firmante/TituloElectronico.xsd
[ -f "$S/spec/TituloElectronico.xsd" ] && xsd=$S/spec/TituloElectronico.xsd
"$SRC/tests/tools/check-titulo" --xsd "$xsd" "$W"/signed/*.xml | tail -n 1
n=$(ls "$W"/signed/*.xml | wc -l)
[ "$n" -ge 1 ] || { echo "FAIL: nothing signed"; exit 1; }
kill "$agent_pid"; wait "$agent_pid" || true; agent_pid=
! grep -rqF -- "$pin" "$W/firmanted.log" "$W/pinentry.log"
echo "installed programs signed and verified $n titles"

echo "== purge =="
apt-get purge -y -q "${pkgs[@]}" > "$W/purge.log" 2>&1 || { cat "$W/purge.log"; exit 1; }
left=0
for p in "${pkgs[@]}"; do
  if dpkg-query -W "$p" > /dev/null 2>&1; then echo "FAIL: $p still known to dpkg"; left=1; fi
  while IFS= read -r path; do
    [ -e "$path" ] || [ -L "$path" ] || continue
    if [ -d "$path" ] && [ -n "$(ls -A "$path")" ]; then
      continue   # a directory holding others' files too (/usr/bin, ...); ours are checked one by one
    fi
    echo "FAIL: left behind after purge: $path"; left=1
  done < "$W/$p.list"
done
for path in /etc/firmante /var/lib/firmante /etc/systemd/user/sockets.target.wants/firmanted.socket \
            /etc/systemd/system/sockets.target.wants/firmanted.socket /usr/share/doc/firmante; do
  if [ -e "$path" ] || [ -L "$path" ]; then echo "FAIL: left behind after purge: $path"; left=1; fi
done
[ "$left" -eq 0 ] || exit 1
echo "purge: nothing of ours is left ($(cat "$W"/*.list | wc -l) paths checked)"
echo "(the system user firmante stays, as Debian keeps every package's system user)"
