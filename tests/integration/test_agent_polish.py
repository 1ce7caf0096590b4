#!/usr/bin/python3
"""Integration test of firmanted's error details for people.

Each check names a finding of a new user and asserts the wording that
answers it:
  - bad-document when the cadena original cannot be built names the field
    and the reason, with FirmaResponsable numbered from 1;
  - a request member of the wrong JSON type says what it must be and what
    it was ("must be a string, not a number");
  - key-not-found says whether no key or several keys matched, and repeats
    the URI (bounded);
  - a "module =" that cannot be loaded stops the agent with the path and
    the loader's reason; a pinentry program that is missing or not
    executable is reported by --check-config and warned about at start;
  - the few malformed requests libmicrohttpd answers itself get the
    statuses docs/protocol.md lists, and the agent keeps serving.

Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR.
Only the Python standard library is used.
"""

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
EXAMPLE_CURP = "EICA750212HDFRNL01"

PIN = "73914682"
LABEL = "polish-test"
SIGNERS = {
    "01": ("MARIA ELENA TORRES RUIZ", "TORM800101MDFRZR05", "TORM800101AB1"),
    "02": ("PEDRO LOPEZ DIAZ", "LODP700101HDFPZD03", "LODP700101AB2"),
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


def request(sock, method, path, body=None):
    conn = UnixHTTPConnection(sock)
    hdrs = {}
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = None
    return resp.status, obj


def run(args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def write_conf(d, pinentry, modules=(MODULE,)):
    os.makedirs(d, mode=0o755, exist_ok=True)
    conf = os.path.join(d, "firmanted.conf")
    lines = ["[agent]", f"socket = {d}/run/agent.sock", "use-p11kit-modules = false",
             f"pinentry = {pinentry}", "approval-timeout = 20", f"audit-log = {d}/audit.log"]
    lines += [f"module = {m}" for m in modules]
    with open(conf, "w") as f:
        f.write("\n".join(lines) + "\n")
    return conf


class Agent:
    def __init__(self, d, pinentry):
        self.sock = os.path.join(d, "run", "agent.sock")
        self.log = os.path.join(d, "firmanted.log")
        conf = write_conf(d, pinentry)
        self.errf = open(self.log, "w")
        self.proc = subprocess.Popen([AGENT, "--config", conf], stdout=subprocess.DEVNULL,
                                     stderr=self.errf)
        for _ in range(100):
            if os.path.exists(self.sock):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"firmanted exited: {open(self.log).read()}")
            time.sleep(0.1)
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

    def text(self):
        return open(self.log, encoding="utf-8", errors="replace").read()


def key_uri(kid):
    return f"pkcs11:token={LABEL};id=%{kid};type=private"


def main():
    for tool in (AGENT, TESTTOKEN, STUB, EXAMPLE, MODULE):
        if not os.path.exists(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="firmante-agent-polish-")
    os.chmod(work, 0o755)
    agents = []
    try:
        body(work, agents)
    finally:
        for a in agents:
            a.stop()
        if not failures and not os.environ.get("FIRMANTE_KEEP_TEST_DIR"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test files kept in {work}")
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    return 0


def body(work, agents):
    tok = os.path.join(work, "token")
    run([TESTTOKEN, "init", "--dir", tok, "--label", LABEL, "--pin", PIN, "--so-pin", "99887766"])
    run([TESTTOKEN, "ca", "--dir", tok])
    for kid, (name, curp, rfc) in SIGNERS.items():
        run([TESTTOKEN, "signer", "--dir", tok, "--label", LABEL, "--pin", PIN, "--id", kid,
             "--name", name, "--curp", curp, "--rfc", rfc])
    os.environ["SOFTHSM2_CONF"] = os.path.join(tok, "softhsm2.conf")
    pinfile = os.path.join(work, "pin")
    with open(pinfile, "w") as f:
        f.write(PIN)
    agent = Agent(os.path.join(work, "agent"), f"{STUB} --pin-file {pinfile}")
    agents.append(agent)
    sock = agent.sock

    doc0 = open(EXAMPLE, encoding="utf-8").read()
    curp1 = SIGNERS["01"][1]
    doc1 = doc0.replace(EXAMPLE_CURP, curp1)

    def problem(body_, path="/v1/sign"):
        status, o = request(sock, "POST", path, body_)
        return status, (o or {}).get("code"), (o or {}).get("detail", "")

    def sign_body(doc, key):
        return {"format": "titulo-electronico", "document": doc, "key": key}

    # --- 1. the cadena original cannot be built: field and reason, 1-based
    piped = doc1.replace('cargo="RECTOR"', 'cargo="RECTOR|DIRECTOR"')
    st, code, det = problem(sign_body(piped, key_uri("01")))
    check(st == 422 and code == "bad-document" and "FirmaResponsable[1]/@cargo" in det and
          "'|'" in det, f"cadena with '|' in cargo names FirmaResponsable[1]/@cargo ({det})")
    nofecha = doc1.replace('fechaTerminacion="2009-06-12" ', "")
    st, code, det = problem(sign_body(nofecha, key_uri("01")))
    if code == "bad-document" and "cannot be built" in det:
        check("Carrera/@fechaTerminacion" in det and "missing" in det,
              f"cadena without Carrera/@fechaTerminacion names the field ({det})")
    else:
        check(st == 422 and code == "bad-document" and "fechaTerminacion" in det,
              f"document without Carrera/@fechaTerminacion names the field ({det})")
    # The same in a batch item.
    conn_text = ""
    try:
        conn = UnixHTTPConnection(sock)
        conn.request("POST", "/v1/sign-batch", body=json.dumps(
            {"format": "titulo-electronico", "key": key_uri("01"),
             "documents": [{"id": "d1", "document": piped}]}).encode(),
            headers={"Content-Type": "application/json"})
        conn_text = conn.getresponse().read().decode("utf-8", "replace")
        conn.close()
    except OSError as e:
        conn_text = str(e)
    check("FirmaResponsable[1]/@cargo" in conn_text,
          f"sign-batch: cadena detail names FirmaResponsable[1]/@cargo ({conn_text[:300]})")

    # --- 2. wrongly typed members say what they must be
    st, code, det = problem({"format": 1, "document": doc1, "key": key_uri("01")})
    check(st == 400 and code == "bad-request" and "\"format\" must be a string" in det and
          "not a number" in det, f'{{"format":1}} -> must be a string, not a number ({det})')
    st, code, det = problem({"document": doc1, "key": key_uri("01")})
    check(st == 400 and "\"format\" is missing" in det, f"format missing -> is missing ({det})")
    st, code, det = problem({"format": "titulo-electronico", "document": ["x"],
                             "key": key_uri("01")})
    check(st == 400 and "\"document\" must be a string" in det and "not an array" in det,
          f"document as an array -> must be a string, not an array ({det})")
    st, code, det = problem({"format": "titulo-electronico", "document": doc1, "key": None})
    check(st == 400 and "\"key\" must be a string" in det and "not null" in det,
          f"key null -> must be a string, not null ({det})")
    st, code, det = problem({"format": True, "key": key_uri("01"),
                             "documents": [{"document": doc1}]}, "/v1/sign-batch")
    check(st == 400 and "\"format\" must be a string" in det and "not true or false" in det,
          f"sign-batch format true -> must be a string ({det})")
    st, code, det = problem({"format": "titulo-electronico", "key": key_uri("01"),
                             "documents": [{"document": 7}]}, "/v1/sign-batch")
    check(st == 400 and "documents[0].document must be a string" in det and
          "not a number" in det, f"sign-batch document 7 -> must be a string ({det})")

    # --- 3. key-not-found: none or several, with the URI
    uri = key_uri("7f")
    st, code, det = problem(sign_body(doc1, uri))
    check(st == 404 and code == "key-not-found" and det.startswith("no key") and uri in det,
          f"key-not-found: no key matches, URI repeated ({det})")
    uri = f"pkcs11:token={LABEL};type=private"
    st, code, det = problem(sign_body(doc1, uri))
    check(st == 404 and code == "key-not-found" and det.startswith("2 keys match") and uri in det,
          f"key-not-found: 2 keys match, URI repeated ({det})")
    long_uri = "pkcs11:object=" + "x" * 3000
    st, code, det = problem(sign_body(doc1, long_uri))
    check(st == 404 and code == "key-not-found" and long_uri[:200] in det and
          long_uri[:201] not in det, "key-not-found: a long URI is cut at 200 characters")
    st, code, det = problem({"format": "titulo-electronico", "key": uri,
                             "documents": [{"document": doc1}]}, "/v1/sign-batch")
    check(st == 404 and code == "key-not-found" and "2 keys match" in det,
          f"sign-batch key-not-found: 2 keys match ({det})")

    # --- 5. requests libmicrohttpd answers itself (docs/protocol.md table)
    def raw(data):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(20)
        s.connect(sock)
        s.sendall(data)
        out = b""
        try:
            while len(out) < 4096:
                b = s.recv(4096)
                if not b:
                    break
                out += b
        except OSError:
            pass
        s.close()
        return out.split(b"\r\n", 1)[0].decode("latin-1")

    for data, want, what in (
            (b"POST /v1/sign HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", " 400 ",
             "invalid Content-Length"),
            (b"GET /v1/status HTTP/2.0\r\nHost: x\r\n\r\n", " 505 ", "HTTP/2.0 request line"),
            (b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n",
             " 431 ", "70 KB header"),
            (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", " 414 ",
             "70 KB request line")):
        line = raw(data)
        check(want in line, f"HTTP layer answers {what} with {want.strip()} ({line})")
    st, _ = request(sock, "GET", "/v1/status")
    check(st == 200, "the agent still answers after the malformed requests")

    # --- 4. configuration: module and pinentry
    d = os.path.join(work, "badmod")
    conf = write_conf(d, f"{STUB} --pin-file {pinfile}", modules=("/nonexistent/libp11.so",))
    r = subprocess.run([AGENT, "--config", conf], capture_output=True, text=True, timeout=60)
    check(r.returncode != 0 and "/nonexistent/libp11.so" in r.stderr and
          "No such file" in r.stderr, f"missing module: path and reason at start ({r.stderr.strip()})")
    notelf = os.path.join(work, "notelf.so")
    with open(notelf, "w") as f:
        f.write("not a library\n")
    d = os.path.join(work, "notelf")
    conf = write_conf(d, f"{STUB} --pin-file {pinfile}", modules=(notelf,))
    r = subprocess.run([AGENT, "--config", conf], capture_output=True, text=True, timeout=60)
    check(r.returncode != 0 and notelf in r.stderr and "cannot be loaded" in r.stderr,
          f"non-library module: path and loader's reason at start ({r.stderr.strip()})")
    r = subprocess.run([AGENT, "--config", conf, "--check-config"], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 1 and notelf in r.stderr and "cannot be loaded" in r.stderr,
          f"--check-config: non-library module reported ({r.stderr.strip()})")

    d = os.path.join(work, "nope")
    conf = write_conf(d, "/nonexistent/pinentry-x")
    r = subprocess.run([AGENT, "--config", conf, "--check-config"], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 1 and "/nonexistent/pinentry-x" in r.stderr,
          f"--check-config: missing pinentry reported ({r.stderr.strip()})")
    noexec = os.path.join(work, "pinentry-noexec")
    with open(noexec, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(noexec, 0o644)
    d = os.path.join(work, "noexec")
    conf = write_conf(d, noexec)
    r = subprocess.run([AGENT, "--config", conf, "--check-config"], capture_output=True,
                       text=True, timeout=60)
    check(r.returncode == 1 and noexec in r.stderr and "not an executable" in r.stderr,
          f"--check-config: non-executable pinentry reported ({r.stderr.strip()})")
    nope = Agent(os.path.join(work, "nope-run"), "/nonexistent/pinentry-x")
    agents.append(nope)
    check("/nonexistent/pinentry-x" in nope.text() and "warning" in nope.text(),
          f"start: missing pinentry warned about ({nope.text().strip()})")


if __name__ == "__main__":
    sys.exit(main())
