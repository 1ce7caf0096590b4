#!/usr/bin/python3
"""Integration test of firmanted against a fresh SoftHSM2 token.

Starts real agents (the stub pinentry answers the holder's dialogs) and
checks the protocol of docs/protocol.md: status, tokens, keys, a signature
on the official example title verified with `openssl dgst -verify`, every
refusal (user-denied, timeout, cert-expired, cert-not-fiel,
key-extractable, signer-not-in-document, bad-document, pin-incorrect),
the caps and HTTP errors (400, 404, 405, 413), the SO_PEERCRED check
(403 forbidden for another uid) and the socket permissions (EACCES).
The PIN must never appear in the agent's log or the dialog log.

Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR.
Only the Python standard library is used.
"""

import base64
import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

SRC = os.environ.get("FIRMANTE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("FIRMANTE_BINARY_DIR") or os.path.join(SRC, "build")
SHARED = os.environ.get("FIRMANTE_SHARED_DIR") or os.path.join(SRC, "..", "shared")
AGENT = os.environ.get("FIRMANTED") or os.path.join(BIN, "agent", "firmanted")
TESTTOKEN = os.path.join(SRC, "tests", "tools", "fm-testtoken")
STUB = os.path.join(SRC, "tests", "pinentry-stub")
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
EXAMPLE = os.path.join(SHARED, "spec", "examples", "oficial-reconstruido-sin-firma.xml")
EXAMPLE_CADENA = os.path.join(SHARED, "spec", "examples", "oficial-cadena-firmaresponsable.txt")
EXAMPLE_CURP = "EICA750212HDFRNL01"
NOBODY = 65534

PIN = "73914682"
WRONG_PIN = "11112222"
LABEL = "agent-test"

SIGNERS = {
    # key id: (name, CURP, RFC, extra fm-testtoken options)
    "01": ("MARIA ELENA TORRES RUIZ", "TORM800101MDFRZR05", "TORM800101AB1", []),
    "02": ("PEDRO CADUCO LOPEZ", "CALP700101HDFDPD03", "CALP700101AB2",
           ["--not-before", "2019-01-01T00:00:00Z", "--not-after", "2020-01-01T00:00:00Z"]),
    "03": ("EMPRESA DE SELLOS SA", "SELE700101HDFLLM02", "SEL700101AB3", ["--kind", "csd"]),
    "04": ("JOSE EXTRAIBLE DIAZ", "EXDJ700101HDFXZS04", "EXDJ700101AB4",
           ["--extractable", "--visible"]),
    "06": ("LUIS OCULTO RAMOS", "OURL700101HDFCMS07", "OURL700101AB6", ["--extractable"]),
    "05": ("ANA FUTURA GOMEZ", "FUGA700101MDFTMN06", "FUGA700101AB5",
           ["--not-before", "2090-01-01T00:00:00Z", "--not-after", "2094-01-01T00:00:00Z"]),
}

failures = []


def check(cond, what):
    if cond:
        print("ok   " + what)
    else:
        print("FAIL " + what)
        failures.append(what)


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def request(sock, method, path, body=None, headers=None, timeout=60):
    conn = UnixHTTPConnection(sock, timeout)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    ctype = resp.getheader("Content-Type", "")
    conn.close()
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    return resp.status, ctype, obj


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


class Agent:
    """A firmanted process with its own socket directory and config."""

    def __init__(self, work, name, pinentry, extra="", user=None, modules=True, env=None,
                 stub=True):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "agent.sock")
        self.conf = os.path.join(self.dir, "firmanted.conf")
        self.log = os.path.join(self.dir, "firmanted.log")
        self.pelog = os.path.join(self.dir, "pinentry.log")
        lines = ["[agent]", f"socket = {self.sock}", "use-p11kit-modules = false",
                 f"pinentry = {pinentry}" + (f" --log {self.pelog}" if stub else ""),
                 "approval-timeout = 20", f"audit-log = {self.dir}/audit.log"]
        if modules:
            lines.append(f"module = {MODULE}")
        lines += [ln for ln in extra.splitlines() if ln.strip()]
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        argv = [AGENT, "--config", self.conf]
        if user is not None:
            for p in (self.dir, self.conf):
                os.chown(p, user, user)
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
        self.errf = open(self.log, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.errf,
                                     env=env or os.environ)
        for _ in range(100):
            if os.path.exists(self.sock):
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"firmanted exited: {open(self.log).read()}")
            time.sleep(0.1)
        else:
            raise RuntimeError(f"no socket {self.sock}: {open(self.log).read()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errf.close()
        return self.proc.returncode

    def text(self):
        out = open(self.log, encoding="utf-8", errors="replace").read()
        if os.path.exists(self.pelog):
            out += open(self.pelog, encoding="utf-8", errors="replace").read()
        return out


def key_uri(kid):
    return f"pkcs11:token={LABEL};id=%{kid};type=private"


def sign_body(doc, kid, rid="r-1"):
    return {"id": rid, "format": "titulo-electronico", "document": doc, "key": key_uri(kid)}


def main():
    for tool in (AGENT, TESTTOKEN, STUB, EXAMPLE, MODULE):
        if not os.path.exists(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="firmante-agent-test-")
    os.chmod(work, 0o755)
    agents = []
    try:
        return body(work, agents)
    finally:
        for a in agents:
            a.stop()
        if not failures and not os.environ.get("FIRMANTE_KEEP_TEST_DIR"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test files kept in {work}")


def body(work, agents):
    tok = os.path.join(work, "token")
    run([TESTTOKEN, "init", "--dir", tok, "--label", LABEL, "--pin", PIN, "--so-pin", "99887766"])
    run([TESTTOKEN, "ca", "--dir", tok])
    for kid, (name, curp, rfc, extra) in SIGNERS.items():
        run([TESTTOKEN, "signer", "--dir", tok, "--label", LABEL, "--pin", PIN, "--id", kid,
             "--name", name, "--curp", curp, "--rfc", rfc] + extra)
    os.environ["SOFTHSM2_CONF"] = os.path.join(tok, "softhsm2.conf")
    pinfile = os.path.join(work, "pin")
    with open(pinfile, "w") as f:
        f.write(PIN)
    wrongfile = os.path.join(work, "wrong-pin")
    with open(wrongfile, "w") as f:
        f.write(WRONG_PIN)

    main_agent = Agent(work, "approve", f"{STUB} --pin-file {pinfile}")
    agents.append(main_agent)
    sock = main_agent.sock

    # --- socket and directory permissions
    st = os.stat(main_agent.rundir)
    check((st.st_mode & 0o777) == 0o700, "socket directory is 0700")
    check((os.stat(sock).st_mode & 0o777) == 0o600, "socket is 0600")

    # --- status / tokens / keys
    status, ctype, o = request(sock, "GET", "/v1/status", headers={"X-Request-Id": "st-1"})
    check(status == 200 and ctype.startswith("application/json"), "GET /v1/status 200")
    check(o and o.get("protocol") == 1 and o.get("tokens") == 1 and o.get("id") == "st-1",
          "status: protocol 1, one token, id echoed")
    check(o and o.get("identities") == len(SIGNERS), "status: identities counted")

    status, _, o = request(sock, "GET", "/v1/tokens")
    toks = (o or {}).get("tokens", [])
    check(status == 200 and len(toks) == 1 and toks[0]["label"] == LABEL, "GET /v1/tokens")
    check(toks and set(toks[0]["flags"]) >= {"login_required", "protected_auth_path",
                                             "pin_count_low", "pin_final_try", "pin_locked"},
          "tokens: flags present")

    status, _, o = request(sock, "GET", "/v1/keys")
    keys = {k["id"]: k for k in (o or {}).get("keys", [])}
    check(status == 200 and set(keys) == set(SIGNERS), "GET /v1/keys lists every identity")
    k1 = keys.get("01", {})
    check(k1.get("usable") is True and k1.get("curp") == SIGNERS["01"][1] and
          k1.get("kind") == "fiel" and len(k1.get("no_certificado", "")) == 20,
          "keys: valid FIEL usable with CURP and noCertificado")
    check(keys.get("02", {}).get("reason") == "expired", "keys: expired certificate flagged")
    check(keys.get("03", {}).get("reason") == "csd" and keys["03"].get("kind") == "csd",
          "keys: CSD flagged")
    check(keys.get("04", {}).get("reason") == "extractable", "keys: extractable key flagged")
    check(keys.get("05", {}).get("reason") == "not-yet-valid", "keys: future certificate flagged")

    # --- a good signature on the official example
    doc0 = open(EXAMPLE, encoding="utf-8").read()
    curp1 = SIGNERS["01"][1]
    doc1 = doc0.replace(EXAMPLE_CURP, curp1)
    status, ctype, o = request(sock, "POST", "/v1/sign", sign_body(doc1, "01", "sign-ok"))
    check(status == 200, f"POST /v1/sign 200 ({status} {o and o.get('detail')})")
    if status == 200:
        cadena = open(EXAMPLE_CADENA, "rb").read().replace(EXAMPLE_CURP.encode(), curp1.encode())
        check(o["id"] == "sign-ok" and o["curp"] == curp1 and o["firmanteIndex"] == 0,
              "sign: id, curp and firmanteIndex")
        check(o["cadenaSha256"] == hashlib.sha256(cadena).hexdigest(),
              "sign: cadenaSha256 is the SHA-256 of the official cadena with the CURP")
        check(o["noCertificadoResponsable"] == k1.get("no_certificado"), "sign: noCertificado")
        check("\n" not in o["sello"] and len(o["sello"]) == 344, "sign: sello one line, 344 chars")
        d = os.path.join(work, "verify")
        os.makedirs(d)
        open(os.path.join(d, "cadena.txt"), "wb").write(cadena)
        open(os.path.join(d, "sello.bin"), "wb").write(base64.b64decode(o["sello"]))
        open(os.path.join(d, "cert.der"), "wb").write(base64.b64decode(o["certificadoResponsable"]))
        pub = run(["openssl", "x509", "-inform", "DER", "-in", os.path.join(d, "cert.der"),
                   "-noout", "-pubkey"]).stdout
        open(os.path.join(d, "pub.pem"), "w").write(pub)
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", os.path.join(d, "pub.pem"),
                            "-signature", os.path.join(d, "sello.bin"),
                            os.path.join(d, "cadena.txt")], capture_output=True, text=True)
        check(r.returncode == 0 and "Verified OK" in r.stdout,
              "sign: openssl dgst -sha256 -verify over the cadena")
    pelog = open(main_agent.pelog, encoding="utf-8").read()
    check("folioControl: 2345678" in pelog, "dialog shows the folioControl")
    check(curp1 in pelog and "AICA770112HDFRNL01" in pelog and
          "INGENIERÍA EN NANOTECNOLOGÍA" in pelog and "2011-08-10" in pelog,
          "dialog shows signer CURP, graduate CURP, career and date")
    check("CONFIRM" in pelog and "GETPIN" in pelog, "dialog: CONFIRM then GETPIN")

    # --- a document cannot forge dialog lines, and long values are cut
    long_doc = doc1.replace('nombreCarrera="INGENIERÍA EN NANOTECNOLOGÍA"',
                            'nombreCarrera="ARTES&#10;folioControl: 999999 ' + "X" * 600 + '"')
    status, _, o = request(sock, "POST", "/v1/sign", sign_body(long_doc, "01", "forge"))
    pelog = open(main_agent.pelog, encoding="utf-8").read()
    check(status == 200 and "\nfolioControl: 999999" not in pelog and
          "Career: ARTES folioControl: 999999 XXX" in pelog and "X" * 200 not in pelog,
          f"dialog: newlines in document values flattened, long values cut ({status})")

    # --- parallel requests: one dialog at a time, every one answered
    import threading
    results = []

    def one(i):
        results.append(request(sock, "POST", "/v1/sign", sign_body(doc1, "01", f"par-{i}")))

    ths = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(120)
    check(len(results) == 6 and all(r[0] == 200 for r in results) and
          sorted(r[2]["id"] for r in results) == sorted(f"par-{i}" for i in range(6)),
          "6 parallel sign requests all answered 200 with their own id")

    # --- refusals before any dialog
    def expect(body_obj, code, status_want, what, agent_sock=sock, detail_has=None):
        status, ctype, o = request(agent_sock, "POST", "/v1/sign", body_obj)
        ok = (status == status_want and o is not None and o.get("code") == code and
              ctype.startswith("application/problem+json") and
              o.get("type", "").endswith("/" + code) and o.get("status") == status_want)
        if ok and detail_has:
            ok = detail_has in o.get("detail", "")
        check(ok, f"{what} -> {status_want} {code} (got {status} {o and o.get('code')}: "
                  f"{o and o.get('detail')})")
        return o

    doc2 = doc0.replace(EXAMPLE_CURP, SIGNERS["02"][1])
    o = expect(sign_body(doc2, "02"), "cert-expired", 409, "expired certificate",
               detail_has="2020-01-01")
    check(o and o.get("id") == "r-1", "problem carries the request id")
    expect(sign_body(doc0.replace(EXAMPLE_CURP, SIGNERS["03"][1]), "03"), "cert-not-fiel", 409,
           "CSD certificate")
    expect(sign_body(doc0.replace(EXAMPLE_CURP, SIGNERS["04"][1]), "04"), "key-extractable", 409,
           "extractable key")
    # A key hidden until login: its attributes are read after login by the token layer.
    expect(sign_body(doc0.replace(EXAMPLE_CURP, SIGNERS["06"][1]), "06"), "key-extractable", 409,
           "extractable key hidden until login")
    expect(sign_body(doc0.replace(EXAMPLE_CURP, SIGNERS["05"][1]), "05"), "cert-not-yet-valid",
           409, "certificate not yet valid")
    expect(sign_body(doc0, "01"), "signer-not-in-document", 422, "document without the CURP",
           detail_has=curp1)
    expect(sign_body(doc1.replace('idCargo="3" ', ""), "01"), "bad-document", 422,
           "FirmaResponsable without idCargo", detail_has="cargo")
    expect(sign_body("<not-a-title/>", "01"), "bad-document", 422, "not a title")
    expect(sign_body(doc1, "7f"), "key-not-found", 404, "unknown key")
    expect({"format": "xades", "document": doc1, "key": key_uri("01")}, "unsupported-format",
           415, "unsupported format")
    expect({"format": "titulo-electronico", "key": key_uri("01")}, "bad-request", 400,
           "document missing")

    # --- HTTP-level errors
    status, ctype, o = request(sock, "POST", "/v1/sign", b'{"id": "x", "format": ')
    check(status == 400 and o and o.get("code") == "bad-request" and "line 1" in o.get("detail", ""),
          "malformed JSON -> 400 with line/column")
    status, _, o = request(sock, "GET", "/v1/nothing-here")
    check(status == 404 and o and o.get("code") == "not-found", "unknown path -> 404")
    status, _, o = request(sock, "GET", "/v1/sign")
    check(status == 405 and o and o.get("code") == "method-not-allowed", "GET /v1/sign -> 405")
    status, _, o = request(sock, "DELETE", "/v1/keys")
    check(status == 405, "DELETE /v1/keys -> 405")
    check(big_body(sock, 9 * 1024 * 1024) == 413, "9 MiB body -> 413 at once")
    status, _, _ = request(sock, "GET", "/v1/status")
    check(status == 200, "agent still answers after the 413")

    # --- the holder says no; the holder does not answer
    deny = Agent(work, "deny", f"{STUB} --decision deny --pin-file {pinfile}")
    agents.append(deny)
    o = expect(sign_body(doc1, "01"), "user-denied", 403, "holder denies", agent_sock=deny.sock)
    check("GETPIN" not in open(deny.pelog).read(), "denied: no PIN asked")
    slow = Agent(work, "slow", f"{STUB} --delay 30 --pin-file {pinfile}",
                 extra="approval-timeout = 2")
    agents.append(slow)
    t0 = time.monotonic()
    expect(sign_body(doc1, "01"), "user-denied", 403, "no answer in time", agent_sock=slow.sock,
           detail_has="no answer in 2 s")
    check(time.monotonic() - t0 < 15, "timeout enforced promptly")
    # SIGTERM while a dialog is open: the dialog is closed and the agent
    # gone at once (the pending request fails: 500, or the connection drops).
    slow2 = Agent(work, "slow2", f"{STUB} --delay 60 --pin-file {pinfile}")
    import threading
    res = {}

    def pending():
        try:
            res["r"] = request(slow2.sock, "POST", "/v1/sign", sign_body(doc1, "01"))
        except (OSError, http.client.HTTPException):
            res["r"] = ("dropped",)
    th = threading.Thread(target=pending)
    th.start()
    for _ in range(50):
        if os.path.exists(slow2.pelog) and "CONFIRM" in open(slow2.pelog).read():
            break
        time.sleep(0.1)
    t0 = time.monotonic()
    slow2.proc.terminate()
    slow2.proc.wait(20)
    th.join(20)
    check(time.monotonic() - t0 < 10 and slow2.proc.returncode == 0 and
          res.get("r", (0,))[0] in (500, "dropped") and not os.path.exists(slow2.sock),
          f"SIGTERM during a dialog: agent gone promptly ({res.get('r', (0,))[0]})")
    wrong = Agent(work, "wrong", f"{STUB} --pin-file {wrongfile}")
    agents.append(wrong)
    expect(sign_body(doc1, "01"), "pin-incorrect", 403, "wrong PIN", agent_sock=wrong.sock)
    check(WRONG_PIN not in wrong.text(), "wrong PIN not logged either")
    lax = Agent(work, "lax", f"{STUB} --pin-file {pinfile}", extra="allow-extractable-keys = true")
    agents.append(lax)
    status, _, o = request(lax.sock, "POST", "/v1/sign",
                           sign_body(doc0.replace(EXAMPLE_CURP, SIGNERS["04"][1]), "04"))
    check(status == 200, f"allow-extractable-keys lets an extractable key sign ({status})")
    bad = Agent(work, "badpe", "/nonexistent/pinentry")
    agents.append(bad)
    expect(sign_body(doc1, "01"), "pinentry-failed", 500, "pinentry missing", agent_sock=bad.sock)

    # --- connection limit: max-clients = 2
    lim = Agent(work, "limit", f"{STUB} --pin-file {pinfile}", extra="max-clients = 2")
    agents.append(lim)
    held = []
    for _ in range(2):
        c = socket.socket(socket.AF_UNIX)
        c.connect(lim.sock)
        held.append(c)
    time.sleep(0.3)
    extra_conn = socket.socket(socket.AF_UNIX)
    extra_conn.settimeout(5)
    refused = False
    try:
        extra_conn.connect(lim.sock)
        extra_conn.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        refused = extra_conn.recv(100) == b""
    except OSError:
        refused = True
    extra_conn.close()
    for c in held:
        c.close()
    time.sleep(0.3)
    status, _, _ = request(lim.sock, "GET", "/v1/status")
    check(refused and status == 200, "connection over max-clients closed; served again later")

    # --- the real pinentry-tty on a pseudo-terminal: the holder reads the
    # dialog, answers "s" (Sign) and types the PIN.
    if os.path.exists("/usr/bin/pinentry-tty"):
        real_pinentry_tty(work, agents, doc1, curp1)
    else:
        print("skip real pinentry-tty test (not installed)")

    # --- SO_PEERCRED: an agent of another uid refuses us (root)
    other = Agent(work, "nobody", f"{STUB} --pin-file {pinfile}", user=NOBODY, modules=False)
    agents.append(other)
    try:
        status, _, o = request(other.sock, "GET", "/v1/status")
        check(status == 403 and o and o.get("code") == "forbidden",
              "client of another uid -> 403 forbidden")
        # The agent answers 403 before reading the body and closes the
        # connection; a client still writing the body may see the close
        # (EPIPE/ECONNRESET) before it can read the answer. Both are refusals.
        try:
            status, _, o = request(other.sock, "POST", "/v1/sign", sign_body(doc1, "01"))
            check(status == 403 and o and o.get("code") == "forbidden",
                  "sign from another uid -> 403")
        except (BrokenPipeError, ConnectionResetError) as e:
            check(True, f"sign from another uid -> connection closed unread ({e.__class__.__name__})")
    except OSError as e:
        check(False, f"connect to the uid {NOBODY} agent: {e}")
    # ... and uid 65534 cannot even reach the socket of root's agent.
    probe = ("import socket,sys\n"
             "s=socket.socket(socket.AF_UNIX)\n"
             "try:\n s.connect(sys.argv[1]); print('connected')\n"
             "except PermissionError: print('EACCES')\n"
             "except OSError as e: print('error', e.errno)\n")
    r = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                        "/usr/bin/python3", "-c", probe, sock], capture_output=True, text=True)
    check(r.stdout.strip() == "EACCES", f"uid {NOBODY} cannot connect to root's agent "
                                        f"({r.stdout.strip()} {r.stderr.strip()})")

    # --- a second agent on the same socket is refused; shutdown removes it
    r = subprocess.run([AGENT, "--config", main_agent.conf], capture_output=True, text=True,
                       timeout=20)
    check(r.returncode != 0 and "already listening" in r.stderr, "second agent refused")

    # --- config errors name file:line
    badconf = os.path.join(work, "bad.conf")
    with open(badconf, "w") as f:
        f.write("[agent]\nsocket = /tmp/x/agent.sock\nfrobnicate = 1\n")
    r = subprocess.run([AGENT, "--config", badconf, "--check-config"], capture_output=True,
                       text=True)
    check(r.returncode != 0 and f"{badconf}:3:" in r.stderr and "frobnicate" in r.stderr,
          "unknown config key names file:line")
    with open(badconf, "w") as f:
        f.write("[agent]\napproval-timeout = soon\n")
    r = subprocess.run([AGENT, "--config", badconf, "--check-config"], capture_output=True,
                       text=True)
    check(r.returncode != 0 and f"{badconf}:2:" in r.stderr, "bad config value names file:line")

    # --- docs/protocol.md lists every code of common/errors.c with its status
    import re
    rows = re.findall(r'\{ FIRMANTE_[A-Z_]+, "([^"]+)", (\d+),',
                      open(os.path.join(SRC, "common", "errors.c")).read())
    doc = open(os.path.join(SRC, "docs", "protocol.md"), encoding="utf-8").read()
    missing = [c for c, st in rows if c != "ok" and f"| `{c}` | {st} |" not in doc]
    check(rows and not missing, f"docs/protocol.md has every code with its status {missing}")
    check("key_visible" in k1, "keys: key_visible reported")

    # --- the PIN never reaches a log
    for a in agents:
        rc = a.stop()
        check(rc == 0, f"agent {os.path.basename(a.dir)} stopped cleanly")
        check(PIN not in a.text(), f"PIN absent from {os.path.basename(a.dir)} logs")
    check(not os.path.exists(sock), "socket removed on shutdown")
    lines = [ln for ln in open(main_agent.log) if "/v1/sign" in ln and "-> 200" in ln]
    check(len(lines) == 8 and all("folioControl=2345678" in ln and "uid=0" in ln for ln in lines),
          "log line per request with uid, endpoint, result and folioControl")

    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


def real_pinentry_tty(work, agents, doc, curp):
    import pty
    import select
    master, slave = pty.openpty()
    env = dict(os.environ, GPG_TTY=os.ttyname(slave), TERM="dumb")
    ag = Agent(work, "tty", "/usr/bin/pinentry-tty", env=env, stub=False)
    agents.append(ag)
    result = {}

    def client():
        result["r"] = request(ag.sock, "POST", "/v1/sign", sign_body(doc, "01", "tty-1"))

    import threading
    th = threading.Thread(target=client)
    th.start()
    screen = b""
    confirmed = pin_sent = False
    deadline = time.monotonic() + 20
    while th.is_alive() and time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.2)
        if not r:
            continue
        screen += os.read(master, 4096)
        if not confirmed and b"[sr]?" in screen:
            time.sleep(0.2)
            os.write(master, b"s\n")
            confirmed = True
        elif confirmed and not pin_sent and b"PIN:" in screen:
            time.sleep(0.2)
            os.write(master, PIN.encode() + b"\n")
            pin_sent = True
    th.join(30)
    os.close(master)
    os.close(slave)
    status, _, o = result.get("r", (0, "", None))
    text = screen.decode("utf-8", "replace")
    check("folioControl: 2345678" in text and curp in text and "ANTONIO ALPIZAR CASTRO" in text,
          "pinentry-tty shows the title, the graduate and the signer's CURP")
    check(status == 200 and o and o.get("id") == "tty-1" and o.get("curp") == curp,
          f"sign through the real pinentry-tty ({status} {o and o.get('detail')})")


def big_body(sock, size):
    """Send headers announcing @size bytes, push what the agent takes, read the answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    s.sendall(b"POST /v1/sign HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % size)
    chunk = b"x" * 65536
    sent = 0
    try:
        while sent < size:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    data = b""
    try:
        while b"\r\n" not in data:
            d = s.recv(4096)
            if not d:
                break
            data += d
    except OSError:
        pass
    s.close()
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
