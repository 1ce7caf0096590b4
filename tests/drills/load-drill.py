#!/usr/bin/python3
"""Load drill (issue 10 §3): many clients on both listeners of a real agent.

A real firmanted on a fresh SoftHSM2 token (tests/tools/fm-testtoken), with
an unattended policy for this Python (uid 0, its executable, daily cap
100000), max-clients 256, and the browser listener on with one paired
origin. Each request opens its own connection (about 3000 a second), and
the agent counts a closed connection against max-clients until its thread
has ended: with 128, a burst of such connections was refused ("Server
reached connection limit") while only 84 clients were connected, so the
drill leaves room for them. Browser pages never sign unattended (docs/security.md: policies
never apply to pages), so every browser signature is approved locally by
the pinentry stand-in tests/pinentry-stub (--decision approve, PIN from a
0600 file): one confirmation and one PIN dialog per browser signature, one
dialog at a time.

For --seconds (default 180):
  - 64 clients on the Unix socket loop over GET /v1/status (2 in 6),
    GET /v1/keys (3 in 6), POST /v1/sign (1 in 6, unattended; at most 99000
    in all, under the policy's daily cap of 100000, the most a policy may
    give), and, every 16th request, one of: a body above the 8 MiB cap
    (Content-Length 9 MiB -> 413), malformed JSON (400);
  - 16 clients on the browser listener loop over GET /v1/status,
    GET /v1/keys, POST /v1/sign every 8th request (approved by the stub),
    and, every 16th request, a foreign Host or an unpaired Origin (403),
    or malformed JSON (400);
  - 4 slow clients on the Unix socket send GET /v1/status one byte every
    50 ms (a complete request after about 2 s) and must get 200.

Checks (each PASS/FAIL):
  - no well-formed request failed (any answer but 200, or a broken
    connection, is a failure); every ill-formed one got its status;
  - fairness, per group: no client starved. Starved = fewer successful
    requests than 25% of its group's median. min/median/max are printed;
  - the agent's memory: VmRSS sampled every second from /proc/PID/status;
    after warm-up (the first 20% of the run) it must not grow by more than
    4 MiB nor by more than 5% (median of the last 10% of samples against the median of
    the samples from 20% to 30%). --no-rss-bound reports it without judging
    (used under AddressSanitizer, whose quarantine holds freed memory);
  - signatures: a sample of sellos verified against the certificate in
    the answer (RSA PKCS#1 v1.5 / SHA-256 over the cadena original of the
    official example, python cryptography), and cadenaSha256 checked;
  - the PIN appears neither in the agent's log nor in the dialog log; the
    agent is the same process at the end and stops cleanly.

Prints requests per kind and per client, p50/p99 latency per kind, RSS
figures, and ends with "N passed, N failed"; exit 1 on any failure.

Usage: load-drill.py [--seconds N] [--unix N] [--browser N] [--no-rss-bound]
Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR.
Needs root (the policy names uid 0; the test suite runs as root).
"""

import argparse
import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "integration"))
import test_agent as ta  # noqa: E402  (paths, Agent, UnixHTTPConnection)

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

PIN = "47120958"
ORIGIN = "https://escolar.example.edu.mx"
CURP = ta.SIGNERS["01"][1]
MAX_BODY = 8 * 1024 * 1024
SAMPLE = 40  # sellos verified
DAILY_CAP = 100000  # the policy's cap (AGENT_MAX_DAILY_CAP, the most a policy may give)
SIGN_BUDGET = DAILY_CAP - 1000  # Unix-socket signatures the drill asks for at most

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print("PASS " + what, flush=True)
    else:
        failed += 1
        print("FAIL " + what, flush=True)


def title(doc0, cad0, folio):
    doc = doc0.replace('folioControl="2345678"', f'folioControl="{folio}"')
    cad = cad0.replace(b"||1.0|2345678|", f"||1.0|{folio}|".encode(), 1)
    return doc, cad


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vm(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith(field + ":"):
                    return int(ln.split()[1])  # kB
    except OSError:
        pass
    return None


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = {}        # kind -> [seconds]
        self.count = {}      # kind -> requests
        self.bad = []        # (client, kind, what)
        self.ok = {}         # client -> successful well-formed requests
        self.sellos = []     # (reply, cadena) samples
        self.budget = SIGN_BUDGET  # unattended signatures left under the daily cap

    def add(self, client, kind, dt, good, what=""):
        with self.lock:
            self.count[kind] = self.count.get(kind, 0) + 1
            self.lat.setdefault(kind, []).append(dt)
            if good:
                if not kind.startswith("bad-"):
                    self.ok[client] = self.ok.get(client, 0) + 1
            elif len(self.bad) < 10000:
                self.bad.append((client, kind, what))


def unix_req(sock, method, path, body=None, timeout=120):
    conn = ta.UnixHTTPConnection(sock, timeout)
    hdrs = {}
    if body is not None:
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=body, headers=hdrs)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, raw


def browser_req(port, method, path, headers, body=None, host=None, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    if body is not None:
        conn.putheader("Content-Length", str(len(body)))
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders(body)
    r = conn.getresponse()
    raw = r.read()
    conn.close()
    return r.status, raw


def oversized(connect):
    """Headers announcing 9 MiB, then 64 KiB of body: 413 at once."""
    s = connect()
    s.settimeout(60)
    s.sendall(b"POST /v1/sign HTTP/1.1\r\nHost: localhost\r\n"
              b"Content-Type: application/json\r\n"
              b"Content-Length: " + str(MAX_BODY + 1024 * 1024).encode() + b"\r\n\r\n")
    try:
        s.sendall(b"x" * 65536)
    except OSError:
        pass  # the agent may answer and close before reading it
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def unix_client(i, a, stats, stop):
    name = f"unix-{i:02d}"
    n = 0
    while not stop.is_set():
        n += 1
        t0 = time.monotonic()
        kind = ("status", "keys", "sign", "status", "keys", "keys")[n % 6]
        if kind == "sign":
            with stats.lock:
                if stats.budget > 0:
                    stats.budget -= 1
                else:
                    kind = "keys"  # the policy's daily cap is kept for the rest
        if n % 16 == 0:
            kind = "bad-oversized" if (n // 16) % 2 else "bad-json"
        try:
            if kind == "status":
                st, raw = unix_req(a.sock, "GET", "/v1/status")
                good = st == 200 and json.loads(raw).get("tokens") == 1
            elif kind == "keys":
                st, raw = unix_req(a.sock, "GET", "/v1/keys")
                good = st == 200 and len(json.loads(raw).get("keys", [])) == 1
            elif kind == "sign":
                folio = f"{1000000 + i * 100000 + n}"
                doc, cad = title(a.doc0, a.cad0, folio)
                body = json.dumps({"id": f"{name}-{n}", "format": "titulo-electronico",
                                   "document": doc, "key": ta.key_uri("01")}).encode()
                st, raw = unix_req(a.sock, "POST", "/v1/sign", body)
                o = json.loads(raw) if st == 200 else {}
                good = st == 200 and o.get("id") == f"{name}-{n}" and o.get("curp") == CURP
                if good and len(stats.sellos) < SAMPLE and n % 7 == 1:
                    with stats.lock:
                        stats.sellos.append((o, cad))
            elif kind == "bad-json":
                st, raw = unix_req(a.sock, "POST", "/v1/sign", b'{"id": "x", "document": ')
                good = st == 400
            else:
                def connect():
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(a.sock)
                    return s
                st = oversized(connect)
                good = st == 413
            what = f"HTTP {st}" + ("" if good else f" {raw[:300]!r}")
        except Exception as e:  # noqa: BLE001 - a broken connection is a failure
            good, what = False, f"{type(e).__name__}: {e}"
        stats.add(name, kind, time.monotonic() - t0, good, what)


def browser_client(i, a, stats, stop):
    name = f"browser-{i:02d}"
    auth = {"Origin": ORIGIN, "X-Firmante": "1", "Authorization": "Bearer " + a.token}
    n = 0
    while not stop.is_set():
        n += 1
        t0 = time.monotonic()
        kind = ("b-status", "b-keys")[n % 2]
        if n % 8 == 0:
            kind = "b-sign"
        if n % 16 == 1 and n > 1:
            kind = ("bad-host", "bad-origin", "bad-b-json")[(n // 16) % 3]
        try:
            if kind == "b-status":
                st, raw = browser_req(a.port, "GET", "/v1/status", auth)
                good = st == 200
            elif kind == "b-keys":
                st, raw = browser_req(a.port, "GET", "/v1/keys", auth)
                good = st == 200 and len(json.loads(raw).get("keys", [])) == 1
            elif kind == "b-sign":
                folio = f"{9000000 + i * 10000 + n}"
                doc, cad = title(a.doc0, a.cad0, folio)
                body = json.dumps({"id": f"{name}-{n}", "format": "titulo-electronico",
                                   "document": doc, "key": ta.key_uri("01")}).encode()
                st, raw = browser_req(a.port, "POST", "/v1/sign",
                                      dict(auth, **{"Content-Type": "application/json"}), body)
                o = json.loads(raw) if st == 200 else {}
                good = st == 200 and o.get("id") == f"{name}-{n}"
                if good and len(stats.sellos) < SAMPLE:
                    with stats.lock:
                        stats.sellos.append((o, cad))
            elif kind == "bad-host":
                st, raw = browser_req(a.port, "GET", "/v1/keys", auth,
                                      host=f"evil.example.com:{a.port}")
                good = st == 403
            elif kind == "bad-origin":
                st, raw = browser_req(a.port, "GET", "/v1/keys",
                                      dict(auth, Origin="https://evil.example.com"))
                good = st == 403
            else:
                st, raw = browser_req(a.port, "POST", "/v1/sign",
                                      dict(auth, **{"Content-Type": "application/json"}),
                                      b'{"id": ')
                good = st == 400
            what = f"HTTP {st}"
        except Exception as e:  # noqa: BLE001
            good, what = False, f"{type(e).__name__}: {e}"
        stats.add(name, kind, time.monotonic() - t0, good, what)


def slow_client(i, a, stats, stop):
    name = f"slow-{i}"
    req = b"GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(60)
            s.connect(a.sock)
            for k in range(len(req)):
                s.sendall(req[k:k + 1])
                time.sleep(0.05)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            s.close()
            st = int(data.split(b" ", 2)[1]) if data else 0
            good, what = st == 200, f"HTTP {st}"
        except Exception as e:  # noqa: BLE001
            good, what = False, f"{type(e).__name__}: {e}"
        stats.add(name, "slow-status", time.monotonic() - t0, good, what)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))] if xs else 0.0


def fairness(stats, prefix, nclients, label):
    counts = [stats.ok.get(f"{prefix}-{i:02d}", 0) for i in range(nclients)]
    med = statistics.median(counts) if counts else 0
    starved = [i for i, c in enumerate(counts) if c < 0.25 * med or c == 0]
    print(f"{label}: successful requests per client min {min(counts)} median {med:g} "
          f"max {max(counts)}; per client: {' '.join(str(c) for c in counts)}")
    check(not starved, f"{label}: no client starved (each >= 25% of the group median "
          f"{med:g}; starved: {starved})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=180)
    ap.add_argument("--unix", type=int, default=64)
    ap.add_argument("--browser", type=int, default=16)
    ap.add_argument("--slow", type=int, default=4)
    ap.add_argument("--no-rss-bound", action="store_true")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    for tool in (ta.AGENT, ta.TESTTOKEN, ta.STUB, ta.EXAMPLE, ta.MODULE):
        if not os.path.exists(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="firmante-load-drill-")
    os.chmod(work, 0o755)
    agent = None
    try:
        tok = os.path.join(work, "token")
        ta.run([ta.TESTTOKEN, "init", "--dir", tok, "--label", ta.LABEL, "--pin", PIN,
                "--so-pin", "99887766"])
        ta.run([ta.TESTTOKEN, "ca", "--dir", tok])
        nm, curp, rfc, extra = ta.SIGNERS["01"]
        ta.run([ta.TESTTOKEN, "signer", "--dir", tok, "--label", ta.LABEL, "--pin", PIN,
                "--id", "01", "--name", nm, "--curp", curp, "--rfc", rfc] + extra)
        os.environ["SOFTHSM2_CONF"] = os.path.join(tok, "softhsm2.conf")
        pinfile = os.path.join(work, "pin")
        with open(pinfile, "w") as f:
            f.write(PIN)
        os.chmod(pinfile, 0o600)
        a.doc0 = open(ta.EXAMPLE, encoding="utf-8").read().replace(ta.EXAMPLE_CURP, CURP)
        a.cad0 = open(ta.EXAMPLE_CADENA, "rb").read().replace(ta.EXAMPLE_CURP.encode(),
                                                               CURP.encode())
        a.port = free_port()
        stub = f"{ta.STUB} --pin-file {pinfile}"
        extra = (f"browser-port = {a.port}\npaired-origins = {work}/paired-origins\n"
                 "max-clients = 256\napproval-timeout = 120\n")
        probe = ta.Agent(work, "probe", stub, extra=extra)
        st, _, o = ta.request(probe.sock, "GET", "/v1/keys")
        nocert = o["keys"][0]["no_certificado"]
        probe.stop()
        pol = os.path.join(work, "policy.conf")
        with open(pol, "w") as f:
            f.write(f"[caller load]\nuid = 0\nexe = {os.path.realpath(sys.executable)}\n"
                    f"mode = unattended\ndaily-cap = {DAILY_CAP}\nkey = {nocert}\n"
                    f"pin-file = {pinfile}\n")
        os.chmod(pol, 0o644)
        agent = ta.Agent(work, "agent", stub, extra=extra + f"policy = {pol}\n")
        a.sock = agent.sock
        pid = agent.proc.pid
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", a.port), 1).close()
                break
            except OSError:
                time.sleep(0.1)
        st, raw = browser_req(a.port, "POST", "/v1/pair",
                              {"Origin": ORIGIN, "Content-Type": "text/plain"},
                              json.dumps({"code": "318604"}).encode())
        a.token = json.loads(raw).get("token", "") if st == 200 else ""
        check(st == 200 and len(a.token) == 64, f"browser origin paired ({st})")

        stats = Stats()
        stop = threading.Event()
        rss = []  # (t, VmRSS kB)
        threads = [threading.Thread(target=unix_client, args=(i, a, stats, stop))
                   for i in range(a.unix)]
        threads += [threading.Thread(target=browser_client, args=(i, a, stats, stop))
                    for i in range(a.browser)]
        threads += [threading.Thread(target=slow_client, args=(i, a, stats, stop))
                    for i in range(a.slow)]
        print(f"load: {a.unix} Unix-socket clients, {a.browser} browser clients, {a.slow} slow "
              f"clients, {a.seconds:g} s", flush=True)
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while time.monotonic() - t0 < a.seconds:
            v = vm(pid, "VmRSS")
            if v is not None:
                rss.append((time.monotonic() - t0, v))
            time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(180)
        elapsed = time.monotonic() - t0
        hung = [t for t in threads if t.is_alive()]
        check(not hung, f"every client finished its last request ({len(hung)} still waiting)")

        # figures
        total = sum(stats.count.values())
        if stats.budget <= 0:
            print(f"note: the {SIGN_BUDGET} unattended signatures the daily cap allows were "
                  "reached; later sign turns became GET /v1/keys")
        print(f"requests: {total} in {elapsed:.1f} s ({total / elapsed:.0f}/s)")
        print(f"{'kind':<14} {'count':>7} {'p50 ms':>9} {'p99 ms':>9}")
        for kind in sorted(stats.count):
            xs = stats.lat[kind]
            print(f"{kind:<14} {stats.count[kind]:>7} {pct(xs, 50) * 1000:>9.1f} "
                  f"{pct(xs, 99) * 1000:>9.1f}")
        bad_wf = [b for b in stats.bad if not b[1].startswith("bad-")]
        bad_ill = [b for b in stats.bad if b[1].startswith("bad-")]
        for b in (bad_wf + bad_ill)[:10]:
            print(f"  failed: {b[0]} {b[1]}: {b[2]}")
        check(not bad_wf, f"no well-formed request failed ({len(bad_wf)} failed)")
        check(not bad_ill, f"every oversized (413), malformed (400) and foreign Host/Origin (403) "
              f"request got its answer ({len(bad_ill)} did not)")
        for kind in ("status", "keys", "sign", "b-status", "b-keys", "b-sign", "bad-oversized",
                     "bad-json", "bad-host", "bad-origin", "slow-status"):
            if kind == "slow-status" and a.slow == 0:
                continue
            check(stats.count.get(kind, 0) > 0, f"requests of kind {kind} were made "
                  f"({stats.count.get(kind, 0)})")
        fairness(stats, "unix", a.unix, "Unix socket")
        fairness(stats, "browser", a.browser, "browser listener")

        # memory
        hwm = vm(pid, "VmHWM")
        vals = [v for _, v in rss]
        n = len(vals)
        if n >= 10:
            warm = statistics.median(vals[int(n * 0.2):max(int(n * 0.3), int(n * 0.2) + 1)])
            end = statistics.median(vals[int(n * 0.9):])
            growth = end - warm
            bound = min(4096, warm * 0.05)
            print(f"agent RSS: start {vals[0]} kB, after warm-up {warm:g} kB, end {end:g} kB, "
                  f"growth {growth:+g} kB (bound {bound:.0f} kB), VmHWM {hwm} kB, "
                  f"{n} samples")
            if a.no_rss_bound:
                print("agent RSS growth reported, not judged (--no-rss-bound)")
            else:
                check(growth <= bound, f"agent memory does not grow after warm-up "
                      f"({growth:+g} kB, bound 4 MiB and 5%)")
        else:
            check(False, f"enough RSS samples ({n})")
        st, _, o = ta.request(a.sock, "GET", "/v1/status")
        check(st == 200 and agent.proc.poll() is None and agent.proc.pid == pid,
              "the agent is the same process and answers after the load")

        # signatures
        good = 0
        for o, cad in stats.sellos:
            try:
                cert = x509.load_der_x509_certificate(
                    base64.b64decode(o["certificadoResponsable"]))
                cert.public_key().verify(base64.b64decode(o["sello"]), cad,
                                         padding.PKCS1v15(), hashes.SHA256())
                good += o["cadenaSha256"] == hashlib.sha256(cad).hexdigest()
            except Exception:  # noqa: BLE001 - a wrong sello
                pass
        check(len(stats.sellos) >= 10 and good == len(stats.sellos),
              f"sample of sellos verified against the certificate ({good} of "
              f"{len(stats.sellos)})")
        rc = agent.stop()
        agent = None
        text = open(os.path.join(work, "agent", "firmanted.log"), encoding="utf-8",
                    errors="replace").read()
        check(rc == 0 and "Sanitizer" not in text and "runtime error" not in text,
              f"the agent stops cleanly, no sanitizer report (exit {rc})")
        leaked = []
        for root, _, files in os.walk(work):
            if root.startswith(tok):
                continue
            for fn in files:
                p = os.path.join(root, fn)
                if p == pinfile:
                    continue
                try:
                    if PIN.encode() in open(p, "rb").read():
                        leaked.append(p)
                except OSError:
                    pass
        check(not leaked, f"the PIN is in no log or file the agent wrote ({leaked})")
    except Exception as e:  # noqa: BLE001 - an unexpected error is a failure, with its trace
        import traceback
        traceback.print_exc()
        check(False, f"unexpected {type(e).__name__}: {e}")
    finally:
        if agent:
            agent.stop()
        if failed or a.keep:
            print(f"drill files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
