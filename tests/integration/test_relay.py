#!/usr/bin/python3
"""Integration test of firmante-nm, the native messaging relay.

Drives the relay the way a browser does (32-bit native-order length, then
JSON, on its stdin/stdout) against real agents on a fresh SoftHSM2 token
seen through tests/p11shim:

- arguments: only a browser's (chrome-extension://ID/, or Firefox's manifest
  path and extension id); --help;
- agent not running: agent-unreachable;
- keys, one signature and a batch relayed (each batch line one message, then
  "end"); the holder's dialog names the page's origin; audit records the
  origin;
- relay callers are browser callers: a policy that makes the same uid and
  executable unattended does not apply (the holder is asked, and a "no" is
  user-denied), on the relay and for any Unix-socket request carrying
  X-Firmante-Origin; no approvals, pairings or events for them (404);
- refused messages: bad origin, endpoint outside the web page's set, not
  JSON, a length over the cap (the relay ends);
- the browser closing the pipe cancels a batch (audit: cancelled).

Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR.
Needs root (the policy matches uid 0). Only the Python standard library.
"""

import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agent as ta  # noqa: E402

RELAY = os.path.join(ta.BIN, "relay", "firmante-nm")
SHIM = os.path.join(ta.BIN, "tests", "p11shim", "libfirmante-p11shim.so")
PIN = ta.PIN
CURP1 = ta.SIGNERS["01"][1]
ORIGIN = "https://escolar.example.edu.mx"
EXT = "chrome-extension://abcdefghijklmnopabcdefghijklmnop/"

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


class Relay:
    """firmante-nm started as Chromium starts it."""

    def __init__(self, sock, args=None):
        env = dict(os.environ, FIRMANTE_SOCKET=sock)
        self.proc = subprocess.Popen([RELAY] + (args or [EXT]), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def send(self, obj, raw=None):
        data = raw if raw is not None else json.dumps(obj).encode()
        self.proc.stdin.write(struct.pack("=I", len(data)) + data)
        self.proc.stdin.flush()

    def _read(self, n, deadline):
        out = b""
        fd = self.proc.stdout.fileno()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError("no message from firmante-nm")
            chunk = os.read(fd, n - len(out))
            if not chunk:
                raise EOFError("firmante-nm closed its output")
            out += chunk
        return out

    def recv(self, timeout=60):
        deadline = time.monotonic() + timeout
        (n,) = struct.unpack("=I", self._read(4, deadline))
        if n > 1024 * 1024:
            check(False, f"a message to the browser of {n} bytes (over 1 MiB)")
        return json.loads(self._read(n, deadline))

    def ask(self, obj, timeout=60):
        self.send(obj)
        return self.recv(timeout)

    def close(self, timeout=20):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        if "Sanitizer" in self.err or "runtime error:" in self.err:
            check(False, f"firmante-nm ran without a sanitizer report: {self.err[:2000]}")
        return rc


def msg(path, method="GET", body=None, rid="m-1", origin=ORIGIN):
    m = {"id": rid, "origin": origin, "method": method, "path": path}
    if body is not None:
        m["body"] = body
    return m


def audit(agent):
    with open(os.path.join(agent.dir, "audit.log"), encoding="utf-8") as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def write_control(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def body(work, agents):
    tok = os.path.join(work, "token")
    ta.run([ta.TESTTOKEN, "init", "--dir", tok, "--label", ta.LABEL, "--pin", PIN,
            "--so-pin", "99887766"])
    ta.run([ta.TESTTOKEN, "ca", "--dir", tok])
    name, curp, rfc, extra = ta.SIGNERS["01"]
    ta.run([ta.TESTTOKEN, "signer", "--dir", tok, "--label", ta.LABEL, "--pin", PIN,
            "--id", "01", "--name", name, "--curp", curp, "--rfc", rfc] + extra)
    os.environ["SOFTHSM2_CONF"] = os.path.join(tok, "softhsm2.conf")
    pinfile = os.path.join(work, "pin")
    with open(pinfile, "w") as f:
        f.write(PIN)
    os.chmod(pinfile, 0o600)
    base = open(ta.EXAMPLE, encoding="utf-8").read().replace(ta.EXAMPLE_CURP, CURP1)
    docs = [base.replace('folioControl="2345678"', f'folioControl="{2345678 + i}"')
            for i in range(12)]
    control = os.path.join(work, "p11.ctl")
    write_control(control, "")

    def agent(name, decision, extra=""):
        env = dict(os.environ, P11SHIM_CONTROL=control,
                   P11SHIM_LOG=os.path.join(work, name + ".p11.log"))
        stub = f"{ta.STUB} --pin-file {pinfile} --decision {decision}"
        a = ta.Agent(work, name, stub, extra=f"module = {SHIM}\n" + extra, modules=False,
                     env=env)
        agents.append(a)
        return a

    # arguments
    r = subprocess.run([RELAY, "--help"], capture_output=True, text=True)
    check(r.returncode == 0 and "native messag" in r.stdout.lower() and "X-Firmante" not in r.stderr,
          "--help describes the host")
    r = subprocess.run([RELAY], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    check(r.returncode == 2 and "usage" in r.stderr, "started without a browser's arguments: usage, 2")
    r = subprocess.run([RELAY, "https://evil.example.com"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    check(r.returncode == 2, "a first argument that is no extension origin: 2")
    ff = Relay(os.path.join(work, "none.sock"),
               ["/usr/lib/mozilla/native-messaging-hosts/org.firmante.nm.json", "firmante@example"])
    o = ff.ask(msg("/v1/status"))
    check(o.get("status") == 503 and o["body"].get("code") == "agent-unreachable" and
          o.get("id") == "m-1", f"no agent: agent-unreachable (Firefox arguments) {o}")
    check(ff.close() == 0, "the relay ends with 0 when the browser closes the pipe")

    # a policy that would make this uid and both executables unattended
    polpin = os.path.join(work, "policy.pin")
    with open(polpin, "w") as f:
        f.write(PIN + "\n")
    os.chmod(polpin, 0o600)
    probe = agent("probe", "approve")
    _, _, keys = ta.request(probe.sock, "GET", "/v1/keys")
    nocert = keys["keys"][0]["no_certificado"]
    probe.stop()
    pol = os.path.join(work, "policy.conf")
    with open(pol, "w") as f:
        for sec, exe in (("relay", os.path.realpath(RELAY)),
                         ("script", os.path.realpath(sys.executable))):
            f.write(f"[caller {sec}]\nuid = 0\nexe = {exe}\nmode = unattended\n"
                    f"daily-cap = 100\nkey = {nocert}\npin-file = {polpin}\n")
    os.chmod(pol, 0o644)
    key = ta.key_uri("01")

    # the holder says no: policies never apply to relayed pages
    deny = agent("deny", "deny", extra=f"policy = {pol}")
    rl = Relay(deny.sock)
    o = rl.ask(msg("/v1/sign", "POST", ta.sign_body(docs[0], "01", "s-0"), rid="d-1"))
    check(o.get("status") == 403 and o["body"].get("code") == "user-denied",
          f"relay caller under an unattended policy still asks the holder: user-denied ({o.get('status')})")
    rl.close()
    st, _, o = ta.request(deny.sock, "POST", "/v1/sign", ta.sign_body(docs[1], "01", "s-1"),
                          headers={"X-Firmante-Origin": ORIGIN})
    check(st == 403 and o.get("code") == "user-denied",
          f"a Unix-socket request with X-Firmante-Origin is a browser caller ({st})")
    st, _, o = ta.request(deny.sock, "POST", "/v1/sign", ta.sign_body(docs[2], "01", "s-2"))
    check(st == 200 and "sello" in o, f"the same caller without it is unattended by its policy ({st})")
    recs = audit(deny)
    check([r.get("decision") for r in recs if r.get("event") == "sign"] ==
          ["denied", "denied", "unattended"] and
          recs[0]["caller"].get("origin") == ORIGIN,
          "audit: the relayed requests carry the origin and were decided by the holder")
    for path in ("/v1/requests", "/v1/pairings", "/v1/events"):
        st, _, o = ta.request(deny.sock, "GET", path, headers={"X-Firmante-Origin": ORIGIN})
        check(st == 404, f"GET {path} with X-Firmante-Origin -> 404 ({st})")
    st, _, o = ta.request(deny.sock, "GET", "/v1/keys",
                          headers={"X-Firmante-Origin": "chrome-extension://x/"})
    check(st == 400 and o.get("code") == "bad-request", f"malformed X-Firmante-Origin -> 400 ({st})")
    deny.stop()

    # the holder says yes
    ok = agent("approve", "approve", extra=f"policy = {pol}")
    rl = Relay(ok.sock)
    o = rl.ask(msg("/v1/keys", rid="k-1"))
    check(o.get("status") == 200 and o.get("id") == "k-1" and
          any(k.get("curp") == CURP1 for k in o["body"].get("keys", [])), "GET /v1/keys relayed")
    o = rl.ask(msg("/v1/sign", "POST", ta.sign_body(docs[3], "01", "s-3"), rid="s-3"))
    check(o.get("status") == 200 and o["body"].get("curp") == CURP1 and o["body"].get("sello"),
          f"POST /v1/sign relayed and approved ({o.get('status')})")
    pelog = open(ok.pelog, encoding="utf-8").read()
    check(ORIGIN in pelog and str(2345678 + 3) in pelog,
          "the holder's dialog names the page's origin and the folioControl")
    batch = {"id": "b-1", "format": "titulo-electronico", "key": key,
             "documents": [{"id": f"t{i}", "document": docs[4 + i]} for i in range(3)]}
    rl.send(msg("/v1/sign-batch", "POST", batch, rid="b-1"))
    lines = []
    while True:
        o = rl.recv()
        if o.get("end") or "body" in o:
            break
        lines.append(o.get("line", {}))
    check(o.get("end") is True and o.get("id") == "b-1", "the batch ends with an end message")
    check(len(lines) == 5 and "batch" in lines[0] and
          [ln.get("index") for ln in lines[1:4]] == [0, 1, 2] and
          all(ln.get("sello") for ln in lines[1:4]) and lines[4].get("done") is True and
          lines[4].get("signed") == 3,
          f"each batch line is one message: manifest, 3 sellos, done ({len(lines)})")
    recs = audit(ok)
    check(all(r.get("decision") != "unattended" for r in recs) and
          any(r.get("event") == "sign-batch" and r["caller"].get("origin") == ORIGIN for r in recs),
          "audit: the relayed batch was the holder's decision, with the origin")

    # refused messages
    o = rl.ask(msg("/v1/keys", origin="https://Escolar.example.edu.mx/path"))
    check(o.get("status") == 400 and o["body"].get("code") == "bad-request", "bad origin refused")
    for m, what in ((msg("/v1/requests"), "GET /v1/requests"),
                    (msg("/v1/pairings/revoke", "POST", {"origin": ORIGIN}), "POST /v1/pairings/revoke"),
                    (msg("/v1/pair", "POST", {"code": "123456"}), "POST /v1/pair"),
                    (msg("/v1/keys", "DELETE"), "DELETE /v1/keys")):
        o = rl.ask(m)
        check(o.get("status") == 404 and o["body"].get("code") == "not-found",
              f"{what} is not relayed (404)")
    o = rl.ask(msg("/v1/sign", "POST", body=["x"]))
    check(o.get("status") == 400, "a POST without an object body is refused")
    rl.send(None, raw=b"not json")
    o = rl.recv()
    check(o.get("status") == 400 and o["body"].get("code") == "bad-request", "a message that is not JSON")
    o = rl.ask(msg("/v1/status", rid="after"))
    check(o.get("status") == 200 and o.get("id") == "after", "the relay goes on after refused messages")
    rl.proc.stdin.write(struct.pack("=I", 64 * 1024 * 1024))
    rl.proc.stdin.flush()
    o = rl.recv()
    check(o.get("status") == 413 and o["body"].get("code") == "payload-too-large",
          "a length over the cap is refused (413)")
    check(rl.close() == 1, "the relay ends after a length over the cap (framing lost)")

    # closing the pipe cancels a batch
    write_control(control, "sign_delay_ms=400\n")
    rl = Relay(ok.sock)
    batch = {"id": "b-2", "format": "titulo-electronico", "key": key,
             "documents": [{"id": f"c{i}", "document": docs[i]} for i in range(12)]}
    rl.send(msg("/v1/sign-batch", "POST", batch, rid="b-2"))
    first = rl.recv()
    second = rl.recv()
    check("batch" in first.get("line", {}) and second.get("line", {}).get("index") == 0,
          "batch under way")
    t0 = time.monotonic()
    rc = rl.close()
    check(rc == 0 and time.monotonic() - t0 < 10, f"the relay ends when the browser leaves ({rc})")
    ends = []
    for _ in range(100):
        ends = [r for r in audit(ok) if r.get("event") == "sign-batch-end" and
                r.get("batch") and "cancelled" in str(r.get("result"))]
        if ends:
            break
        time.sleep(0.1)
    check(bool(ends) and not ends[-1]["result"].endswith("12 of 12 signed"),
          f"closing the pipe cancelled the batch ({ends[-1]['result'] if ends else 'no record'})")
    write_control(control, "")
    ok.stop()
    return 0


def main():
    for tool in (RELAY, ta.AGENT, ta.TESTTOKEN, ta.STUB, ta.EXAMPLE, SHIM):
        if not os.path.exists(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="firmante-relay-test-")
    os.chmod(work, 0o755)
    agents = []
    try:
        body(work, agents)
    except Exception as e:  # noqa: BLE001  (any surprise is a failure, reported)
        import traceback
        traceback.print_exc()
        failures.append(f"unexpected {type(e).__name__}: {e}")
    finally:
        for a in agents:
            a.stop()
        reports = [a.dir for a in agents
                   if any(w in a.text() for w in ("AddressSanitizer", "LeakSanitizer", "runtime error:"))]
        check(not reports, f"every agent stopped without a sanitizer report {reports}")
        if not failures and not os.environ.get("FIRMANTE_KEEP_TEST_DIR"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test files kept in {work}")
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
