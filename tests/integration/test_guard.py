#!/usr/bin/python3
"""Integration test of firmanted as the holder's guard.

Runs real agents on a fresh SoftHSM2 token seen through the fault-injecting
p11shim module (its call log shows whether the token was touched):

- denied and timed-out requests: no C_Login, no C_Sign, an audit line each;
- the audit log: intact chain verified by `firmante audit verify`; an edited,
  removed or swapped line (and a line cut off at the end) reported with its
  line number;
- the browser listener: foreign Host, unpaired Origin, missing custom header
  or token -> 403 without touching the token; preflight only for paired
  origins, never a wildcard; pairing with a code shown in the dialog; a paired
  origin signs; `firmante pair revoke` stops it;
- unattended policy: signs up to its daily cap (kept across a restart), then
  policy-limit; PIN file rules; a systemd credential; a key outside the policy;
- a token in "final try" state: never logged into unattended, nor without the
  holder's confirmation (the dialog warns);
- a body over the cap gets 413 while other clients are served meanwhile;
- the PIN appears in none of the files and outputs the run produced.

Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR.
Needs root (the policy matches uid 0). Only the Python standard library.
"""

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agent as ta  # noqa: E402  (helpers: Agent, request, sign_body, ...)

FIRMANTE = os.path.join(ta.BIN, "client", "firmante")
SHIM = os.path.join(ta.BIN, "tests", "p11shim", "libfirmante-p11shim.so")
PIN = ta.PIN
CURP1 = ta.SIGNERS["01"][1]
ORIGIN = "https://escolar.example.edu.mx"
EVIL = "https://evil.example.com"

failures = []
outputs = []  # everything the CLI printed, for the PIN grep


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def cli(*args, env=None):
    r = subprocess.run([FIRMANTE] + list(args), capture_output=True, text=True, env=env)
    outputs.append(r.stdout + r.stderr)
    return r


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def bhttp(port, method, path, headers=None, body=None, host=None):
    """A request to the browser listener with exactly the given headers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.putheader("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders(data)
    resp = conn.getresponse()
    raw = resp.read()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    return resp.status, hdrs, obj


def audit_lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def shim_calls(log):
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [ln.split()[0] for ln in f if ln.strip()]


def write_control(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


class Env:
    """Token, shim and helpers shared by the checks."""

    def __init__(self, work):
        self.work = work
        self.tok = os.path.join(work, "token")
        ta.run([ta.TESTTOKEN, "init", "--dir", self.tok, "--label", ta.LABEL, "--pin", PIN,
                "--so-pin", "99887766"])
        ta.run([ta.TESTTOKEN, "ca", "--dir", self.tok])
        name, curp, rfc, extra = ta.SIGNERS["01"]
        ta.run([ta.TESTTOKEN, "signer", "--dir", self.tok, "--label", ta.LABEL, "--pin", PIN,
                "--id", "01", "--name", name, "--curp", curp, "--rfc", rfc] + extra)
        os.environ["SOFTHSM2_CONF"] = os.path.join(self.tok, "softhsm2.conf")
        self.pinfile = os.path.join(work, "pin")
        with open(self.pinfile, "w") as f:
            f.write(PIN)
        os.chmod(self.pinfile, 0o600)
        doc0 = open(ta.EXAMPLE, encoding="utf-8").read()
        self.doc = doc0.replace(ta.EXAMPLE_CURP, CURP1)
        self.agents = []

    def agent(self, name, pinentry, extra="", stub=True, control=None, env_extra=None):
        shimlog = os.path.join(self.work, name + ".p11.log")
        env = dict(os.environ, P11SHIM_LOG=shimlog,
                   P11SHIM_CONTROL=control or os.path.join(self.work, name + ".p11.ctl"))
        env.update(env_extra or {})
        a = ta.Agent(self.work, name, pinentry, extra=f"module = {SHIM}\n" + extra,
                     modules=False, env=env, stub=stub)
        a.shimlog = shimlog
        a.audit = os.path.join(a.dir, "audit.log")
        self.agents.append(a)
        return a

    def stub(self, *opts):
        return " ".join([ta.STUB, "--pin-file", self.pinfile] + list(opts))


def main():
    for tool in (ta.AGENT, FIRMANTE, SHIM, ta.TESTTOKEN, ta.STUB, ta.EXAMPLE, ta.MODULE):
        if not os.path.exists(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="firmante-guard-test-")
    os.chmod(work, 0o755)
    env = None
    try:
        env = Env(work)
        try:
            body(env)
        except Exception as e:  # an unexpected error is a failure, with its trace
            import traceback
            traceback.print_exc()
            check(False, f"unexpected {type(e).__name__}: {e}")
    finally:
        if env:
            for a in env.agents:
                rc = a.stop()
                text = open(a.log, encoding="utf-8", errors="replace").read()
                check(rc == 0 and "Sanitizer" not in text and "runtime error" not in text,
                      f"agent {os.path.basename(a.dir)} stopped cleanly, no sanitizer report")
            pin_grep(env)
        print(f"{len(failures)} failure(s)")
        if not failures and not os.environ.get("FIRMANTE_KEEP_TEST_DIR"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test files kept in {work}")
    return 1 if failures else 0


def body(env):
    decisions(env)
    queue(env)
    batches(env)
    audit_tamper(env)
    browser(env)
    unattended(env)
    final_try(env)
    kept_logins(env)
    pin_cache(env)
    group_access(env)
    cap_413(env)


# ------------------------------------------------------------------ decisions

def decisions(env):
    deny = env.agent("deny", env.stub("--decision", "deny"))
    st, _, o = ta.request(deny.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01", "d-1"))
    calls = shim_calls(deny.shimlog)
    check(st == 403 and o.get("code") == "user-denied", f"denied -> 403 user-denied ({st})")
    check("C_Login" not in calls and "C_Sign" not in calls and "C_SignInit" not in calls,
          "denied: no C_Login, no C_Sign on the token")
    last = audit_lines(deny.audit)[-1]
    check(last["decision"] == "denied" and last["result"] == "user-denied" and
          last["folioControl"] == "2345678" and len(last["cadenaSha256"]) == 64 and
          last["caller"]["uid"] == 0 and last["noCertificado"],
          "denied: audit line with decision denied, folioControl, cadena hash, caller, key")

    slow = env.agent("slow", env.stub("--delay", "30"), extra="approval-timeout = 2")
    st, _, o = ta.request(slow.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01", "t-1"))
    calls = shim_calls(slow.shimlog)
    check(st == 403 and o.get("code") == "user-denied", f"no answer -> 403 user-denied ({st})")
    check("C_Login" not in calls and "C_Sign" not in calls, "timed out: token not touched")
    last = audit_lines(slow.audit)[-1]
    check(last["decision"] == "timeout" and last["result"] == "user-denied",
          "timed out: audit line with decision timeout")

    ok = env.agent("approve", env.stub())
    env.approve = ok
    for i in range(4):
        st, _, o = ta.request(ok.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01", f"a-{i}"))
        check(st == 200, f"approved sign {i} -> 200 ({st} {o and o.get('detail')})")
    calls = shim_calls(ok.shimlog)
    check(calls.count("C_Sign") == 4, f"approved: 4 C_Sign calls ({calls.count('C_Sign')})")
    recs = audit_lines(ok.audit)
    check(len(recs) == 4 and all(r["decision"] == "approved" and r["result"] == "signed"
                                 for r in recs) and
          [r["seq"] for r in recs] == [1, 2, 3, 4] and recs[0]["prev"] == "0" * 64,
          "approved: audit records 1..4, decision approved, result signed")
    st_mode = os.stat(ok.audit).st_mode & 0o777
    check(st_mode == 0o600, f"audit log is 0600 ({oct(st_mode)})")


# ------------------------------------------------------------------ queue

def wait_pending(sock, n, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st, _, o = ta.request(sock, "GET", "/v1/requests")
        if st == 200 and len(o.get("requests", [])) >= n:
            return o["requests"]
        time.sleep(0.1)
    return []


def queue(env):
    q = env.agent("queue", env.stub(), extra="approval = queue")
    res = {}

    def sign(key, rid):
        res[key] = ta.request(q.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01", rid))

    th = threading.Thread(target=sign, args=("a", "q-1"))
    th.start()
    pend = wait_pending(q.sock, 1)
    r = cli("--socket", q.sock, "approve")
    check(len(pend) == 1 and "folioControl:   2345678" in r.stdout and
          "AICA770112HDFRNL01" in r.stdout and CURP1 in r.stdout and
          "INGENIERÍA EN NANOTECNOLOGÍA" in r.stdout and "2011-08-10" in r.stdout and
          "uid 0" in r.stdout, "firmante approve lists the waiting request with its title")
    check("C_Sign" not in shim_calls(q.shimlog), "queued: nothing signed before the decision")
    rid = str(pend[0]["request"]) if pend else "0"
    r = cli("--socket", q.sock, "approve", rid)
    th.join(30)
    check(r.returncode == 0 and res.get("a", (0,))[0] == 200,
          f"firmante approve ID -> signed ({r.returncode} {res.get('a', (0,))[0]})")

    th = threading.Thread(target=sign, args=("b", "q-2"))
    th.start()
    pend = wait_pending(q.sock, 1)
    r = cli("--socket", q.sock, "approve", "--deny", str(pend[0]["request"]) if pend else "0")
    th.join(30)
    check(res.get("b", (0, "", {}))[0] == 403 and res["b"][2].get("code") == "user-denied",
          "firmante approve --deny ID -> 403 user-denied")
    check(shim_calls(q.shimlog).count("C_Sign") == 1, "denied from the queue: no C_Sign")
    check(audit_lines(q.audit)[-1]["decision"] == "denied", "queue denial audited")

    # the requester goes away while waiting: cancelled, never signed
    s = socket.socket(socket.AF_UNIX)
    s.connect(q.sock)
    data = json.dumps(ta.sign_body(env.doc, "01", "q-3")).encode()
    s.sendall(b"POST /v1/sign HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(data) + data)
    wait_pending(q.sock, 1)
    s.close()
    for _ in range(50):
        if audit_lines(q.audit)[-1]["decision"] == "cancelled":
            break
        time.sleep(0.1)
    check(audit_lines(q.audit)[-1]["decision"] == "cancelled" and
          shim_calls(q.shimlog).count("C_Sign") == 1 and not wait_pending(q.sock, 1, 0.5),
          "a request whose client left is cancelled: audit line, no C_Sign")

    ths = [threading.Thread(target=sign, args=(k, k)) for k in ("c", "d")]
    for t in ths:
        t.start()
    wait_pending(q.sock, 2)
    r = cli("--socket", q.sock, "approve", "--all")
    for t in ths:
        t.join(30)
    check(r.returncode == 0 and "Approved 2" in r.stdout and res.get("c", (0,))[0] == 200 and
          res.get("d", (0,))[0] == 200, "firmante approve --all approves every waiting request")
    r = cli("--socket", q.sock, "approve", "7777")
    check(r.returncode == 1, "approving an unknown request -> exit 1")

    qt = env.agent("queue-timeout", env.stub(), extra="approval = queue\napproval-timeout = 2")
    st, _, o = ta.request(qt.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01"))
    check(st == 403 and "no answer in 2 s" in o.get("detail", "") and
          audit_lines(qt.audit)[-1]["decision"] == "timeout" and
          "C_Sign" not in shim_calls(qt.shimlog), "queue: no decision in time -> refused, audited")


# ------------------------------------------------------------------ batches

def batch_body(env, n, rid="b-1", bad=None):
    docs = []
    for i in range(n):
        d = env.doc.replace('folioControl="2345678"', f'folioControl="90000{i:02d}"')
        if bad == i:
            d = "<not-a-title/>"
        docs.append({"id": f"t-{i}", "document": d})
    return {"id": rid, "format": "titulo-electronico", "key": ta.key_uri("01"), "documents": docs}


def batch_stream(sock, body, stop_after=None):
    conn = ta.UnixHTTPConnection(sock, 60)
    conn.request("POST", "/v1/sign-batch", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        o = json.loads(resp.read())
        conn.close()
        return resp.status, o, []
    lines = []
    while True:
        ln = resp.readline()
        if not ln:
            break
        lines.append(json.loads(ln))
        if stop_after is not None and len(lines) >= stop_after:
            break
    conn.close()
    return resp.status, resp.getheader("Content-Type"), lines


def batches(env):
    import hashlib
    ag = env.agent("batch", env.stub())
    st, ctype, lines = batch_stream(ag.sock, batch_body(env, 3))
    sigs = [ln for ln in lines if "sello" in ln]
    head = lines[0].get("batch", {}) if lines else {}
    check(st == 200 and ctype == "application/x-ndjson" and len(sigs) == 3 and
          lines[-1].get("done") and lines[-1].get("signed") == 3 and
          [s["id"] for s in sigs] == ["t-0", "t-1", "t-2"],
          f"sign-batch: 3 sellos streamed, then done ({st} {len(lines)} lines)")
    msha = hashlib.sha256("".join(s["cadenaSha256"] + "\n" for s in sigs).encode()).hexdigest()
    check(head.get("count") == 3 and head.get("firstFolioControl") == "9000000" and
          head.get("lastFolioControl") == "9000002" and head.get("manifestSha256") == msha and
          head.get("careers") == [{"nombreCarrera": "INGENIERÍA EN NANOTECNOLOGÍA", "count": 3}],
          "sign-batch: manifest with count, folio range, careers, SHA-256 over the cadenas")
    pelog = open(ag.pelog, encoding="utf-8").read()
    check(pelog.count("CONFIRM") == 1 and pelog.count("GETPIN") == 1 and
          "sign 3 T" in pelog and msha in pelog and "9000000 to 9000002" in pelog,
          "sign-batch: one dialog showing the manifest, one PIN for the batch")
    for _ in range(50):  # the closing record follows the last line sent
        recs = audit_lines(ag.audit)
        if recs[-1]["event"] == "sign-batch-end":
            break
        time.sleep(0.1)
    check([r["event"] for r in recs] == ["sign-batch", "sign", "sign", "sign", "sign-batch-end"]
          and all(r.get("batch") == recs[0]["batch"] for r in recs) and
          recs[0]["cadenaSha256"] == msha and recs[-1]["result"] == "completed: 3 of 3 signed",
          "sign-batch: audit lines for the approval, each title and the end")

    st, o, _ = batch_stream(ag.sock, batch_body(env, 3, bad=1))
    check(st == 422 and "documents[1] (t-1)" in o.get("detail", ""),
          f"sign-batch with a bad document -> 422 naming it ({st})")

    deny = env.agent("batch-deny", env.stub("--decision", "deny"))
    st, o, _ = batch_stream(deny.sock, batch_body(env, 2))
    check(st == 403 and o.get("code") == "user-denied" and
          "C_Sign" not in shim_calls(deny.shimlog) and
          audit_lines(deny.audit)[-1]["decision"] == "denied",
          "sign-batch denied: nothing signed, audited")

    ctl = os.path.join(env.work, "slow-sign.ctl")
    write_control(ctl, "sign_delay_ms=400\n")
    slow = env.agent("batch-cancel", env.stub(), control=ctl)
    st, _, lines = batch_stream(slow.sock, batch_body(env, 6), stop_after=2)
    time.sleep(2.5)
    recs = audit_lines(slow.audit)
    n_sign = shim_calls(slow.shimlog).count("C_Sign")
    check(st == 200 and recs and recs[-1]["event"] == "sign-batch-end" and
          recs[-1]["decision"] == "cancelled" and n_sign < 6,
          f"sign-batch: the client closing cancels the rest ({n_sign} of 6 signed; "
          f"{recs and recs[-1].get('result')})")


# ------------------------------------------------------------------ audit

def audit_tamper(env):
    log = env.approve.audit
    r = cli("audit", "verify", "--file", log)
    check(r.returncode == 0 and "4 records, hash chain intact" in r.stdout,
          f"audit verify: intact log ({r.returncode} {r.stdout.strip()})")
    r = cli("audit", "show", "--file", log)
    check(r.returncode == 0 and r.stdout.count("2345678") == 4 and "approved" in r.stdout,
          "audit show lists the records")
    lines = open(log, encoding="utf-8").read().splitlines(keepends=True)
    head = open(log + ".head").read()

    def variant(name, new_lines, want):
        d = os.path.join(env.work, "tamper-" + name)
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "audit.log")
        with open(p, "w", encoding="utf-8") as f:
            f.writelines(new_lines)
        with open(p + ".head", "w") as f:
            f.write(head)
        r = cli("audit", "verify", "--file", p)
        check(r.returncode == 1 and want in r.stdout and "NOT intact" in r.stdout,
              f"audit verify detects {name}: {r.stdout.strip()}")

    edited = list(lines)
    edited[1] = edited[1].replace('"folioControl":"2345678"', '"folioControl":"2345679"')
    variant("an edited line 2", edited, "line 2:")
    variant("a removed line 2", lines[:1] + lines[2:], "line 2:")
    variant("swapped lines 2 and 3", [lines[0], lines[2], lines[1], lines[3]], "line 2:")
    variant("a removed last line", lines[:3], "line 4:")
    last_edit = list(lines)
    last_edit[3] = last_edit[3].replace('"decision":"approved"', '"decision":"denied"')
    variant("an edited last line", last_edit, "line 4:")
    variant("a removed first line", lines[1:], "line 1:")

    # A head file one record behind an intact chain: what a crash between
    # the record's sync and the head's update leaves (docs/security.md).
    def lagging(name, head_hash, want_rc, want):
        d = os.path.join(env.work, "lag-" + name)
        os.makedirs(d, exist_ok=True)
        p = os.path.join(d, "audit.log")
        with open(p, "w", encoding="utf-8") as f:
            f.writelines(lines)
        with open(p + ".head", "w") as f:
            f.write("%020d %s\n" % (3, head_hash))
        r = cli("audit", "verify", "--file", p)
        check(r.returncode == want_rc and want in r.stdout,
              f"audit verify, head behind the log ({name}): {r.returncode} {r.stdout.strip()}")

    h3 = hashlib.sha256(lines[2].rstrip("\n").encode()).hexdigest()
    lagging("matching", h3, 0, "last 1 record(s)")
    lagging("other hash", "0" * 64, 1, "line 3: changed after it was written")


# ------------------------------------------------------------------ browser

def browser(env):
    port = free_port()
    ag = env.agent("browser", env.stub(), extra=f"browser-port = {port}\n"
                   f"paired-origins = {env.work}/browser/paired-origins")
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.1)
    base = {"Origin": ORIGIN, "X-Firmante": "1"}

    before = len(shim_calls(ag.shimlog))
    st, h, o = bhttp(port, "GET", "/v1/keys", dict(base), host=f"evil.example.com:{port}")
    check(st == 403 and o.get("code") == "forbidden" and "Host" in o.get("detail", ""),
          f"foreign Host -> 403 ({st})")
    st, h, o = bhttp(port, "GET", "/v1/keys", dict(base), host=f"127.0.0.1.nip.io:{port}")
    check(st == 403, "rebinding-style Host name -> 403")
    st, h, o = bhttp(port, "GET", "/v1/keys", {"X-Firmante": "1"})
    check(st == 403, "no Origin -> 403")
    st, h, o = bhttp(port, "GET", "/v1/keys", dict(base))
    check(st == 403 and "not paired" in o.get("detail", "") and
          "access-control-allow-origin" not in h, "unpaired Origin -> 403 without CORS")
    st, h, o = bhttp(port, "POST", "/v1/sign", dict(base, **{"Content-Type": "application/json"}),
                     ta.sign_body(env.doc, "01"))
    check(st == 403, "unpaired Origin cannot sign -> 403")
    st, h, _ = bhttp(port, "OPTIONS", "/v1/sign",
                     {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    check(st == 403 and "access-control-allow-origin" not in h,
          "preflight from an unpaired origin -> 403, no CORS")
    check(len(shim_calls(ag.shimlog)) == before,
          "refused browser requests never touched the token (p11shim call log unchanged)")

    # pairing: a simple request (text/plain, no custom header); the dialog
    # shows the origin and the code
    st, h, o = bhttp(port, "POST", "/v1/pair", {"Origin": ORIGIN, "Content-Type": "text/plain"},
                     {"code": "482913"})
    token = (o or {}).get("token", "")
    check(st == 200 and len(token) == 64 and h.get("access-control-allow-origin") == ORIGIN,
          f"pairing approved -> token, CORS for the origin only ({st})")
    pelog = open(ag.pelog, encoding="utf-8").read()
    check(ORIGIN in pelog and "482 913" in pelog, "pairing dialog shows origin and code")
    st, _, o = bhttp(port, "POST", "/v1/pair", {"Origin": ORIGIN, "Content-Type": "text/plain"},
                     {"code": "12"})
    check(st == 400, "pairing code must be 6 digits")
    pf = os.path.join(env.work, "browser", "paired-origins")
    check(os.path.exists(pf) and (os.stat(pf).st_mode & 0o777) == 0o600 and
          token not in open(pf).read() and ORIGIN in open(pf).read(),
          "paired-origins file 0600, holds the origin and no token")

    auth = dict(base, Authorization="Bearer " + token)
    before = len(shim_calls(ag.shimlog))
    st, h, o = bhttp(port, "GET", "/v1/keys", {"Origin": ORIGIN,
                                               "Authorization": "Bearer " + token})
    check(st == 403 and "X-Firmante" in o.get("detail", ""), "paired, no custom header -> 403")
    st, h, o = bhttp(port, "GET", "/v1/keys", dict(base))
    check(st == 403, "paired, no token -> 403")
    st, h, o = bhttp(port, "GET", "/v1/keys", dict(base, Authorization="Bearer " + "0" * 64))
    check(st == 403, "paired, wrong token -> 403")
    st, h, o = bhttp(port, "GET", "/v1/keys", dict(auth, Origin=EVIL))
    check(st == 403 and "access-control-allow-origin" not in h,
          "another origin with a stolen token -> 403")
    st, h, o = bhttp(port, "GET", "/v1/keys", dict(auth), host=f"attacker.test:{port}")
    check(st == 403, "paired origin, foreign Host -> 403")
    check(len(shim_calls(ag.shimlog)) == before, "none of these touched the token")

    st, h, _ = bhttp(port, "OPTIONS", "/v1/sign",
                     {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                      "Access-Control-Request-Headers": "content-type,x-firmante,authorization",
                      "Access-Control-Request-Private-Network": "true"})
    check(st == 204 and h.get("access-control-allow-origin") == ORIGIN and
          "x-firmante" in h.get("access-control-allow-headers", "").lower() and
          h.get("access-control-allow-private-network") == "true",
          f"preflight from the paired origin -> 204 with its origin ({st})")
    st, h, o = bhttp(port, "GET", "/v1/keys", dict(auth))
    check(st == 200 and h.get("access-control-allow-origin") == ORIGIN and
          h.get("vary") == "Origin" and o and o.get("keys"),
          f"paired origin with header and token: GET /v1/keys 200 ({st})")
    st, h, o = bhttp(port, "POST", "/v1/sign", dict(auth), ta.sign_body(env.doc, "01"))
    check(st == 400, "browser POST without Content-Type: application/json -> 400")
    st, h, o = bhttp(port, "POST", "/v1/sign", dict(auth, **{"Content-Type": "application/json"}),
                     ta.sign_body(env.doc, "01", "web-1"))
    check(st == 200 and o.get("id") == "web-1" and o.get("curp") == CURP1,
          f"paired origin signs after local approval ({st} {o and o.get('detail')})")
    pelog = open(ag.pelog, encoding="utf-8").read()
    check(f"web page {ORIGIN} (browser)" in pelog, "approval dialog names the web page")
    recs = audit_lines(ag.audit)
    check(any(r.get("event") == "pair" and r.get("result") == "paired" and
              r.get("origin") == ORIGIN for r in recs) and
          recs[-1]["caller"].get("origin") == ORIGIN and recs[-1]["result"] == "signed",
          "audit: pairing and the browser's signature recorded with the origin")
    st, h, o = bhttp(port, "GET", "/v1/pairings", dict(auth))
    check(st == 404, "pairings are not listed on the browser port")

    r = cli("--socket", ag.sock, "pair", "list")
    check(r.returncode == 0 and ORIGIN in r.stdout, "firmante pair list shows the origin")
    r = cli("--socket", ag.sock, "pair", "revoke", ORIGIN)
    check(r.returncode == 0, f"firmante pair revoke ({r.stderr.strip()})")
    st, h, o = bhttp(port, "GET", "/v1/keys", dict(auth))
    check(st == 403, "revoked origin -> 403")
    st, h, _ = bhttp(port, "OPTIONS", "/v1/sign", {"Origin": ORIGIN,
                                                   "Access-Control-Request-Method": "POST"})
    check(st == 403, "revoked origin: no preflight")
    r = cli("--socket", ag.sock, "pair", "revoke", ORIGIN)
    check(r.returncode == 1 and "not paired" in r.stderr, "revoking again: not paired")
    r = cli("--socket", ag.sock, "pair", "list")
    check(r.returncode == 0 and "No paired origins" in r.stdout, "pair list empty after revoke")

    deny = env.agent("browser-deny", env.stub("--decision", "deny"),
                     extra=f"browser-port = {free_port()}\n"
                     f"paired-origins = {env.work}/browser-deny/paired-origins")
    bport = int([ln for ln in open(deny.conf) if ln.startswith("browser-port")][0].split("=")[1])
    time.sleep(0.3)
    st, h, o = bhttp(bport, "POST", "/v1/pair", {"Origin": EVIL, "Content-Type": "text/plain"},
                     {"code": "111111"})
    check(st == 403 and o.get("code") == "user-denied" and
          "access-control-allow-origin" not in h, "pairing refused by the holder -> 403, no CORS")
    check(not os.path.exists(os.path.join(env.work, "browser-deny", "paired-origins")) or
          EVIL not in open(os.path.join(env.work, "browser-deny", "paired-origins")).read(),
          "refused pairing stores nothing")


# ------------------------------------------------------------------ policy

def unattended(env):
    st, _, o = ta.request(env.approve.sock, "GET", "/v1/keys")
    nocert = o["keys"][0]["no_certificado"]
    exe = os.path.realpath(sys.executable)
    polpin = os.path.join(env.work, "policy.pin")
    with open(polpin, "w") as f:
        f.write(PIN + "\n")
    os.chmod(polpin, 0o600)
    pol = os.path.join(env.work, "policy.conf")
    with open(pol, "w") as f:
        f.write(f"[caller nightly]\nuid = 0\nexe = {exe}\nmode = unattended\n"
                f"daily-cap = 2\nkey = {nocert}\npin-file = {polpin}\n")
    os.chmod(pol, 0o644)
    # pinentry that does not exist: unattended signing never opens a dialog
    un = env.agent("unattended", "/nonexistent/pinentry", stub=False, extra=f"policy = {pol}")
    res = [ta.request(un.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01", f"u-{i}"))
           for i in range(3)]
    check(res[0][0] == 200 and res[1][0] == 200,
          f"unattended: signs up to the cap ({res[0][0]} {res[1][0]} "
          f"{res[0][2] and res[0][2].get('detail')})")
    check(res[2][0] == 429 and res[2][2].get("code") == "policy-limit" and
          "daily cap is 2" in res[2][2].get("detail", ""),
          f"unattended: the next one -> 429 policy-limit ({res[2][0]})")
    calls = shim_calls(un.shimlog)
    check(calls.count("C_Sign") == 2, "unattended: exactly 2 C_Sign calls")
    recs = audit_lines(un.audit)
    check([r["result"] for r in recs] == ["signed", "signed", "policy-limit"] and
          all(r.get("policy") == "nightly" and r["decision"] in ("unattended", "refused")
              for r in recs), "unattended: audit lines name the policy and the refusal")
    un.stop()
    env.agents.remove(un)
    un2 = env.agent("unattended", "/nonexistent/pinentry", stub=False,
                    extra=f"policy = {pol}")
    st, _, o = ta.request(un2.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01", "u-3"))
    check(st == 429 and o.get("code") == "policy-limit",
          "daily cap survives an agent restart (counted from the audit log)")

    # a PIN file others can read is refused, with the rule in words
    os.chmod(polpin, 0o644)
    with open(pol, "w") as f:
        f.write(f"[caller nightly]\nuid = 0\nexe = {exe}\nmode = unattended\n"
                f"daily-cap = 5\nkey = {nocert}\npin-file = {polpin}\n")
    loose = env.agent("loose", "/nonexistent/pinentry", stub=False, extra=f"policy = {pol}")
    st, _, o = ta.request(loose.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01"))
    check(st == 500 and o.get("code") == "config-error" and "0600 or 0400" in o.get("detail", ""),
          f"PIN file with mode 0644 refused ({st} {o and o.get('detail')})")
    check("C_Login" not in shim_calls(loose.shimlog), "loose PIN file: no login attempted")
    os.chmod(polpin, 0o600)

    # systemd credential; a key outside the policy
    creds = os.path.join(env.work, "creds")
    os.makedirs(creds, mode=0o700)
    with open(os.path.join(creds, "rectoria-pin"), "w") as f:
        f.write(PIN)
    os.chmod(os.path.join(creds, "rectoria-pin"), 0o400)
    pol2 = os.path.join(env.work, "policy2.conf")
    with open(pol2, "w") as f:
        f.write(f"[caller cred]\nuid = 0\nexe = {exe}\nmode = unattended\n"
                f"daily-cap = 5\nkey = {nocert}\npin-credential = rectoria-pin\n")
    cred = env.agent("cred", "/nonexistent/pinentry", stub=False, extra=f"policy = {pol2}",
                     env_extra={"CREDENTIALS_DIRECTORY": creds})
    st, _, o = ta.request(cred.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01"))
    check(st == 200, f"unattended with a systemd credential ({st} {o and o.get('detail')})")
    pol3 = os.path.join(env.work, "policy3.conf")
    with open(pol3, "w") as f:
        f.write(f"[caller other]\nuid = 0\nexe = {exe}\nmode = unattended\n"
                f"daily-cap = 5\nkey = 30001000000300099999\npin-file = {polpin}\n")
    other = env.agent("otherkey", "/nonexistent/pinentry", stub=False, extra=f"policy = {pol3}")
    st, _, o = ta.request(other.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01"))
    check(st == 403 and "not among its keys" in o.get("detail", "") and
          "C_Login" not in shim_calls(other.shimlog), "a key outside the policy -> 403")
    r = subprocess.run([ta.AGENT, "--config", other.conf, "--check-config"],
                       capture_output=True, text=True)
    check("policy = " + pol3 in r.stdout, "--check-config prints the policy file")
    bad = os.path.join(env.work, "policy-bad.conf")
    with open(bad, "w") as f:
        f.write(f"[caller x]\nuid = 0\nexe = {exe}\nmode = unattended\n")
    conf = os.path.join(env.work, "bad-policy.conf")
    with open(conf, "w") as f:
        f.write(f"[agent]\nsocket = {env.work}/badpol/run/agent.sock\n"
                f"audit-log = {env.work}/badpol/audit.log\npolicy = {bad}\n"
                "use-p11kit-modules = false\n")
    r = subprocess.run([ta.AGENT, "--config", conf], capture_output=True, text=True, timeout=20)
    check(r.returncode != 0 and "daily-cap" in r.stderr,
          f"an unattended policy without daily-cap stops the agent ({r.stderr.strip()})")


# ------------------------------------------------------------------ final try

def final_try(env):
    ctl = os.path.join(env.work, "finaltry.ctl")
    write_control(ctl, "pin_flags=final_try\n")
    st, _, o = ta.request(env.approve.sock, "GET", "/v1/keys")
    nocert = o["keys"][0]["no_certificado"]
    exe = os.path.realpath(sys.executable)
    polpin = os.path.join(env.work, "policy.pin")
    pol = os.path.join(env.work, "policy-ft.conf")
    with open(pol, "w") as f:
        f.write(f"[caller ft]\nuid = 0\nexe = {exe}\nmode = unattended\n"
                f"daily-cap = 5\nkey = {nocert}\npin-file = {polpin}\n")
    un = env.agent("ft-unattended", "/nonexistent/pinentry", stub=False,
                   extra=f"policy = {pol}", control=ctl)
    st, _, o = ta.request(un.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01"))
    check(st == 409 and o.get("code") == "pin-final-try",
          f"final try, unattended -> 409 pin-final-try ({st} {o and o.get('code')})")
    check("C_Login" not in shim_calls(un.shimlog), "final try, unattended: no C_Login")
    deny = env.agent("ft-deny", env.stub("--decision", "deny"), control=ctl)
    st, _, o = ta.request(deny.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01"))
    check(st == 403 and "C_Login" not in shim_calls(deny.shimlog),
          "final try, holder refuses the warned dialog: no C_Login")
    check("ONE more PIN try" in open(deny.pelog, encoding="utf-8").read(),
          "final try: the confirmation warns before anything else")
    ok = env.agent("ft-ok", env.stub(), control=ctl)
    st, _, o = ta.request(ok.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01"))
    calls = shim_calls(ok.shimlog)
    check(st == 200 and "C_Login" in calls,
          f"final try, holder confirms the warned dialog: one login, signed ({st})")


# ------------------------------------------------------------------ kept logins

def after(log, mark):
    """Shim calls after the first @mark lines of the log."""
    return shim_calls(log)[mark:]


def dialogs(ag, word):
    """How many @word commands the pinentry stand-in of @ag was sent."""
    if not os.path.exists(ag.pelog):
        return 0
    return open(ag.pelog, encoding="utf-8").read().count(word)


def kept_logins(env):
    """The token's session is kept; its login only for the owner of the PIN
    (docs/security.md, "Kept sessions and logins")."""
    st, _, o = ta.request(env.approve.sock, "GET", "/v1/keys")
    nocert = o["keys"][0]["no_certificado"]
    exe = os.path.realpath(sys.executable)
    polpin = os.path.join(env.work, "kept.pin")
    with open(polpin, "w") as f:
        f.write(PIN + "\n")
    os.chmod(polpin, 0o600)
    pol = os.path.join(env.work, "policy-kept.conf")
    with open(pol, "w") as f:
        f.write(f"[caller nightly]\nuid = 0\nexe = {exe}\nmode = unattended\n"
                f"daily-cap = 1000\nkey = {nocert}\npin-file = {polpin}\n")
    ag = env.agent("kept", env.stub(), extra=f"policy = {pol}")
    ta.request(ag.sock, "GET", "/v1/keys")  # the identities are read here, once

    # An unattended batch of 50: one session, one login, kept afterwards.
    mark = len(shim_calls(ag.shimlog))
    st, _, lines = batch_stream(ag.sock, batch_body(env, 50))
    calls = after(ag.shimlog, mark)
    check(st == 200 and len([ln for ln in lines if "sello" in ln]) == 50 and
          calls.count("C_Sign") == 50 and calls.count("C_Login") == 1 and
          calls.count("C_OpenSession") == 1 and "C_Logout" not in calls and
          "C_FindObjectsInit" in calls and calls.count("C_FindObjectsInit") == 1,
          f"unattended batch of 50: 50 C_Sign, 1 C_OpenSession, 1 C_Login, 1 key search "
          f"({calls.count('C_Sign')} {calls.count('C_OpenSession')} {calls.count('C_Login')} "
          f"{calls.count('C_FindObjectsInit')})")
    mark = len(shim_calls(ag.shimlog))
    st, _, o = ta.request(ag.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01", "k-1"))
    calls = after(ag.shimlog, mark)
    check(st == 200 and calls.count("C_Sign") == 1 and "C_Login" not in calls and
          "C_OpenSession" not in calls and "C_Logout" not in calls,
          f"the same policy's next request signs on the kept login ({st} {calls})")

    # Another caller (curl is not the policy's executable): interactive.
    # The policy's login ends first; the holder's PIN logs in; out after.
    mark = len(shim_calls(ag.shimlog))
    pins = dialogs(ag, "GETPIN")
    r = subprocess.run(["curl", "-s", "--unix-socket", ag.sock, "-H",
                        "Content-Type: application/json", "--data-binary",
                        json.dumps(ta.sign_body(env.doc, "01", "k-2")),
                        "http://localhost/v1/sign"], capture_output=True, text=True, timeout=60)
    try:
        o = json.loads(r.stdout)
    except ValueError:
        o = {}
    calls = [c for c in after(ag.shimlog, mark) if c in ("C_Login", "C_Logout", "C_Sign")]
    check("sello" in o and calls == ["C_Logout", "C_Login", "C_Sign", "C_Logout"] and
          dialogs(ag, "GETPIN") == pins + 1,
          f"interactive after unattended: C_Logout, then C_Login with the holder's PIN, "
          f"C_Sign, C_Logout ({calls} {o.get('code')})")
    mark = len(shim_calls(ag.shimlog))
    st, _, o = ta.request(ag.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01", "k-3"))
    calls = [c for c in after(ag.shimlog, mark) if c in ("C_Login", "C_Logout", "C_Sign")]
    check(st == 200 and calls == ["C_Login", "C_Sign"],
          f"unattended again: its own login from the PIN file ({calls})")

    # A batch the holder approved: one PIN; the card resets every 2
    # signatures and the batch logs in again with the PIN it holds, without
    # asking; the login ends (C_Logout) with the batch.
    ctl = os.path.join(env.work, "kept-reset.ctl")
    write_control(ctl, "reset_after=2\n")
    hb = env.agent("kept-holder", env.stub(), control=ctl)
    ta.request(hb.sock, "GET", "/v1/keys")
    mark = len(shim_calls(hb.shimlog))
    st, _, lines = batch_stream(hb.sock, batch_body(env, 5))
    for _ in range(50):  # the batch ends after its last line is read
        calls = [c for c in after(hb.shimlog, mark) if c in ("C_Login", "C_Logout", "C_Sign")]
        if calls and calls[-1] == "C_Logout":
            break
        time.sleep(0.1)
    check(st == 200 and len([ln for ln in lines if "sello" in ln]) == 5 and
          dialogs(hb, "GETPIN") == 1 and dialogs(hb, "CONFIRM") == 1 and
          calls == ["C_Login", "C_Sign", "C_Sign", "C_Login", "C_Sign", "C_Sign", "C_Login",
                    "C_Sign", "C_Logout"],
          f"holder's batch: one PIN, the reset sessions recovered with it, C_Logout at the "
          f"end ({calls})")
    write_control(ctl, "")


# ------------------------------------------------------------------ PIN cache

def pin_cache(env):
    def signs(ag, k):
        return [ta.request(ag.sock, "POST", "/v1/sign", ta.sign_body(env.doc, "01", f"pc-{i}"))[0]
                for i in range(k)]

    def count(ag, word):
        return open(ag.pelog, encoding="utf-8").read().count(word)

    plain = env.agent("nocache", env.stub())
    check(signs(plain, 2) == [200, 200] and count(plain, "GETPIN") == 2,
          "without pin-cache every signature asks the PIN")
    ctl = os.path.join(env.work, "pincache.ctl")
    write_control(ctl, "removed=0\n")
    ag = env.agent("pincache", env.stub(), extra=f"pin-cache = {ta.LABEL}:60", control=ctl)
    check(signs(ag, 2) == [200, 200] and count(ag, "CONFIRM") == 2 and count(ag, "GETPIN") == 1,
          "pin-cache: each signature still confirmed, the PIN asked once")
    write_control(ctl, "removed=1\n")
    wiped = False
    for _ in range(80):
        if "cached PIN is wiped" in open(ag.log).read():
            wiped = True
            break
        time.sleep(0.1)
    write_control(ctl, "removed=0\n")
    check(wiped, "pin-cache: removing the token wipes its cached PIN")
    check(signs(ag, 1) == [200] and count(ag, "GETPIN") == 2,
          "pin-cache: after re-insertion the PIN is asked again")
    short = env.agent("pincache-short", env.stub(), extra=f"pin-cache = {ta.LABEL}:1")
    first = signs(short, 1)
    time.sleep(2.2)
    check(first + signs(short, 1) == [200, 200] and count(short, "GETPIN") == 2,
          "pin-cache: an expired entry is not used")
    r = subprocess.run([ta.AGENT, "--config", short.conf, "--check-config"],
                       capture_output=True, text=True)
    check(f"pin-cache = {ta.LABEL}:1" in r.stdout, "--check-config prints pin-cache")


# ------------------------------------------------------------------ group

PROBE = ("import socket,sys\n"
         "s=socket.socket(socket.AF_UNIX)\n"
         "try:\n s.connect(sys.argv[1])\n"
         "except PermissionError:\n print('EACCES'); sys.exit()\n"
         "for path in sys.argv[2:]:\n"
         " s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
         " s.sendall(('GET '+path+' HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n').encode())\n"
         " print(s.recv(100).split(b' ')[1].decode(), end=' ')\n")


def group_access(env):
    import grp
    gid = grp.getgrnam("nogroup").gr_gid
    ag = env.agent("group", env.stub(), extra="group = nogroup")
    st = os.stat(ag.rundir)
    sk = os.stat(ag.sock)
    check((st.st_mode & 0o777) == 0o750 and st.st_gid == gid and
          (sk.st_mode & 0o777) == 0o660 and sk.st_gid == gid,
          "group = nogroup: directory 0750 and socket 0660 of that group")

    def probe(*creds):
        r = subprocess.run(["setpriv"] + list(creds) + ["/usr/bin/python3", "-c", PROBE, ag.sock,
                                                        "/v1/status", "/v1/requests"],
                           capture_output=True, text=True)
        return r.stdout.strip()

    out = probe("--reuid=65534", f"--regid={gid}", "--clear-groups")
    check(out == "200 403", f"a member of the group is served, but not the holder's "
                            f"approvals ({out})")
    out = probe("--reuid=65534", "--regid=1", f"--groups={gid}")
    check(out == "200 403", f"a supplementary member of the group is served ({out})")
    out = probe("--reuid=65534", "--regid=1", "--clear-groups")
    check(out == "EACCES", f"a user outside the group cannot connect ({out})")


# ------------------------------------------------------------------ caps

def cap_413(env):
    ag = env.approve
    result = {}

    def upload():
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(ag.sock)
        s.sendall(b"POST /v1/sign HTTP/1.1\r\nHost: localhost\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 65536
        try:
            for i in range(9 * 16):  # 9 MiB, slowly
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                if i % 16 == 0:
                    time.sleep(0.05)
            s.sendall(b"0\r\n\r\n")
            data = b""
            while b"\r\n" not in data:
                d = s.recv(4096)
                if not d:
                    break
                data += d
            result["status"] = int(data.split(b" ", 2)[1])
        except (OSError, IndexError, ValueError):
            result["status"] = "dropped"
        s.close()
        result["done"] = time.monotonic()

    th = threading.Thread(target=upload)
    th.start()
    time.sleep(0.2)
    st, _, _ = ta.request(ag.sock, "GET", "/v1/status")
    served = time.monotonic()
    th.join(60)
    check(st == 200 and result.get("done", 0) > served,
          "another client is served while a large body is being sent")
    check(result.get("status") == 413, f"chunked body over the cap -> 413 ({result})")
    check(ta.big_body(ag.sock, 9 * 1024 * 1024) == 413, "Content-Length over the cap -> 413")
    st, _, _ = ta.request(ag.sock, "GET", "/v1/status")
    check(st == 200, "agent serves after the 413s")


# ------------------------------------------------------------------ PIN grep

def pin_grep(env):
    secrets = {env.pinfile, os.path.join(env.work, "policy.pin"),
               os.path.join(env.work, "kept.pin"),
               os.path.join(env.work, "creds", "rectoria-pin")}
    leaks = []
    for root, dirs, files in os.walk(env.work):
        if os.path.abspath(root).startswith(os.path.abspath(env.tok)):
            continue  # SoftHSM2's own token store
        for fn in files:
            p = os.path.join(root, fn)
            if p in secrets or os.path.islink(p) or not os.path.isfile(p):
                continue
            try:
                data = open(p, "rb").read()
            except OSError:
                continue
            if PIN.encode() in data:
                leaks.append(p)
    if any(PIN in out for out in outputs):
        leaks.append("firmante CLI output")
    check(not leaks, f"the PIN appears in no log, audit line, dialog log or output {leaks}")


if __name__ == "__main__":
    sys.exit(main())
