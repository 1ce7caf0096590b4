#!/usr/bin/env bash
# systemd units and the agent's side of them:
#  - systemd-analyze verify accepts packaging/systemd/{user,system}/* (with
#    ExecStart pointed at the agent just built);
#  - the system service keeps its hardening directives and
#    systemd-analyze security --offline rates it 2.0 or better;
#  - socket activation: started by systemd-socket-activate, firmanted
#    serves on the socket it was passed (and does not create its own), tells
#    NOTIFY_SOCKET READY=1 once it serves and STOPPING=1 on SIGTERM;
#  - a unit passing two sockets is refused with a clear message;
#  - without socket activation, firmanted still reports READY=1.
set -euo pipefail
SRC=${FIRMANTE_SOURCE_DIR:?}; BIN=${FIRMANTE_BINARY_DIR:?}
agent=$BIN/agent/firmanted
units=$SRC/packaging/systemd
T=$(mktemp -d /tmp/fm-systemd.XXXXXX)
trap 'rm -rf "$T"' EXIT
chmod 700 "$T"

mkdir -p "$T/system" "$T/user" "$T/rt"
chmod 700 "$T/rt"
cp "$units"/system/* "$T/system/"
cp "$units"/user/* "$T/user/"
sed -i "s#^ExecStart=/usr/bin/firmanted#ExecStart=$agent#" "$T"/system/*.service "$T"/user/*.service
grep -q "^ExecStart=$agent" "$T/system/firmanted.service"
# Man pages are checked after installation (test_package_deb.sh).
systemd-analyze verify --man=no "$T/system/firmanted.socket" "$T/system/firmanted.service"
XDG_RUNTIME_DIR=$T/rt systemd-analyze --user verify --man=no \
  "$T/user/firmanted.socket" "$T/user/firmanted.service"
echo "systemd-analyze verify: system and user units accepted"

for d in NoNewPrivileges=yes ProtectSystem=strict ProtectHome=yes PrivateTmp=yes \
         RestrictAddressFamilies=AF_UNIX SystemCallFilter=@system-service \
         LoadCredential=token-pin: User=firmante Type=notify; do
  grep -q "^$d" "$units/system/firmanted.service" || { echo "system unit lacks $d"; exit 1; }
done
grep -q '^Type=notify' "$units/user/firmanted.service"
grep -q '^ListenStream=%t/firmante/agent.sock' "$units/user/firmanted.socket"
if systemd-analyze security --help 2>/dev/null | grep -q -- --offline; then
  out=$(systemd-analyze security --offline=yes "$T/system/firmanted.service" 2>&1 | tail -n 1)
  echo "$out"
  level=$(echo "$out" | sed -n 's/.*firmanted.service: \([0-9.]*\).*/\1/p')
  [ -n "$level" ] || { echo "no exposure level in: $out"; exit 1; }
  awk -v l="$level" 'BEGIN { exit !(l <= 2.0) }' || { echo "exposure $level > 2.0"; exit 1; }
else
  echo "systemd-analyze security --offline not available: exposure not rated"
fi

# Socket activation and readiness, with a notify socket of our own.
cat > "$T/agent.conf" <<CONF
[agent]
socket = $T/own/agent.sock
use-p11kit-modules = false
CONF
/usr/bin/python3 - "$agent" "$T" "$BIN/client/firmante" <<'PY'
import os, signal, socket, subprocess, sys
agent, T, client = sys.argv[1:4]
def notify_socket():
    path = os.path.join(T, "notify")
    if os.path.exists(path):
        os.unlink(path)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(30)
    return s, path
def expect(s, word):
    while True:
        msg = s.recv(4096).decode()
        if word in msg.split("\n"):
            return msg
def fail(msg):
    print("FAIL:", msg); sys.exit(1)

# 1. socket-activated
s, npath = notify_socket()
sock = os.path.join(T, "agent.sock")
env = dict(os.environ, NOTIFY_SOCKET=npath)
log = open(os.path.join(T, "activated.log"), "w")
p = subprocess.Popen(["systemd-socket-activate", "-E", "NOTIFY_SOCKET", "-l", sock, agent, "--config",
                      os.path.join(T, "agent.conf")], env=env, stderr=log, stdout=log)
for _ in range(300):
    if os.path.exists(sock):
        break
    p.poll()
    if p.returncode is not None:
        fail("systemd-socket-activate exited")
    import time; time.sleep(0.05)
r = subprocess.run([client, "--socket", sock, "status"], capture_output=True, text=True,
                   timeout=60)
if r.returncode != 0 or "protocol:" not in r.stdout:
    fail(f"status over the passed socket: {r.returncode} {r.stdout} {r.stderr}")
msg = expect(s, "READY=1")
print("readiness:", msg.replace("\n", " | "))
if os.path.exists(os.path.join(T, "own")):
    fail("the agent created its own socket directory although systemd passed one")
p.send_signal(signal.SIGTERM)
expect(s, "STOPPING=1")
if p.wait(timeout=60) != 0:
    fail(f"activated agent exit status {p.returncode}")
log.close()
text = open(os.path.join(T, "activated.log")).read()
if "listening on the socket from systemd" not in text:
    fail("log does not say the socket came from systemd:\n" + text)
print("socket activation: served on the passed socket, READY=1, STOPPING=1")
s.close()

# 2. two sockets passed: refused, clearly (systemd-socket-activate starts
# the agent at the first connection)
a_sock = os.path.join(T, "a.sock")
p = subprocess.Popen(["systemd-socket-activate", "-l", a_sock, "-l", os.path.join(T, "b.sock"),
                      agent, "--config", os.path.join(T, "agent.conf")],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
for _ in range(300):
    if os.path.exists(a_sock):
        break
    import time; time.sleep(0.05)
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(a_sock)
out, err = p.communicate(timeout=60)
c.close()
if p.returncode == 0 or "exactly one" not in err:
    fail(f"two passed sockets not refused: {p.returncode} {err}")
print("two passed sockets: refused:", err.strip().splitlines()[-1])

# 3. not activated: own socket, still READY=1
s, npath = notify_socket()
env = dict(os.environ, NOTIFY_SOCKET=npath)
env.pop("LISTEN_FDS", None); env.pop("LISTEN_PID", None)
p = subprocess.Popen([agent, "--config", os.path.join(T, "agent.conf")], env=env,
                     stderr=subprocess.DEVNULL)
expect(s, "READY=1")
if not os.path.exists(os.path.join(T, "own", "agent.sock")):
    fail("READY=1 before the agent's own socket exists")
p.send_signal(signal.SIGTERM)
expect(s, "STOPPING=1")
p.wait(timeout=60)
print("without activation: own socket, READY=1, STOPPING=1")
PY
echo "systemd: ok"
