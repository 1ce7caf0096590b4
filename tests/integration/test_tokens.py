#!/usr/bin/python3
"""Tokens in real life, through tests/p11shim over SoftHSM2.

Two tokens ("rector" and "secretario") on one workstation, seen by a real
firmanted through the fault-injecting shim:

- a token hanging in C_Sign: its request fails with token-timeout within
  the deadline (token-timeout = 3 s), while GET /v1/status and GET
  /v1/keys keep answering at once and the other token still signs;
- CKR_USER_ALREADY_LOGGED_IN and an invalid session handle are survived
  with exactly one PIN dialog per signature;
- a 200-title run (POST /v1/sign in a loop; POST /v1/sign-batch is not in
  the agent yet) with a card reset after every 100 signatures and the token
  pulled out in the middle and put back under a new slot id: the run
  completes after a new login, every title has exactly one valid sello
  (checked with the certificate's public key), the shim saw exactly one
  successful C_Sign per title, one PIN dialog per title, and the agent
  process is the same one from start to end.

Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR.
"""

import base64
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agent as ta  # noqa: E402  (helpers: Agent, request, run)

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402

SHIM = os.path.join(ta.BIN, "tests", "p11shim", "libfirmante-p11shim.so")
PIN = "62738495"
TOKENS = {
    # label: (key id, name, CURP, RFC)
    "rector": ("11", "MARIA ELENA TORRES RUIZ", "TORM800101MDFRZR05", "TORM800101AB1"),
    "secretario": ("22", "PEDRO LOPEZ GARCIA", "LOGP700101HDFPRD03", "LOGP700101AB2"),
}
TIMEOUT = 3  # token-timeout of the agent under test, seconds
TITLES = 200

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


class Shim:
    def __init__(self, work):
        self.control_path = os.path.join(work, "shim.control")
        self.log = os.path.join(work, "shim.log")

    def control(self, text):
        tmp = self.control_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.control_path)

    def count(self, line):
        try:
            with open(self.log) as f:
                return sum(1 for ln in f if ln.rstrip("\n") == line)
        except FileNotFoundError:
            return 0


def key_uri(label):
    return f"pkcs11:token={label};id=%{TOKENS[label][0]};type=private"


def title(doc0, label, folio):
    curp = TOKENS[label][2]
    doc = doc0.replace(ta.EXAMPLE_CURP, curp).replace('folioControl="2345678"',
                                                        f'folioControl="{folio}"')
    cad = open(ta.EXAMPLE_CADENA, "rb").read().replace(ta.EXAMPLE_CURP.encode(), curp.encode())
    cad = cad.replace(b"||1.0|2345678|", f"||1.0|{folio}|".encode(), 1)
    return doc, cad


def sign(sock, doc, label, rid, timeout=60):
    body = {"id": rid, "format": "titulo-electronico", "document": doc, "key": key_uri(label)}
    return ta.request(sock, "POST", "/v1/sign", body, timeout=timeout)


def sello_ok(reply, cadena):
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(reply["certificadoResponsable"]))
        cert.public_key().verify(base64.b64decode(reply["sello"]), cadena,
                                 padding.PKCS1v15(), hashes.SHA256())
        return reply["cadenaSha256"] == hashlib.sha256(cadena).hexdigest()
    except Exception:  # noqa: BLE001 - any failure is a wrong sello
        return False


def pin_dialogs(agent):
    try:
        with open(agent.pelog, encoding="utf-8", errors="replace") as f:
            return sum(1 for ln in f if ln.startswith("GETPIN"))
    except FileNotFoundError:
        return 0


def wait_token(sock, label, present, limit=30):
    """Poll GET /v1/tokens until @label is (or is not) listed."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        st, _, o = ta.request(sock, "GET", "/v1/tokens")
        labels = [t.get("label") for t in (o or {}).get("tokens", [])] if st == 200 else []
        if (label in labels) == present:
            return True
        time.sleep(0.2)
    return False


def test_hang(agent, shim, doc0):
    doc_r, _ = title(doc0, "rector", "7000001")
    doc_s, cad_s = title(doc0, "secretario", "7000002")
    shim.control("hang=C_Sign\nfault_token=rector\n")
    result = {}

    def hung():
        t0 = time.monotonic()
        result["r"] = sign(agent.sock, doc_r, "rector", "hung-1", timeout=60)
        result["t"] = time.monotonic() - t0

    th = threading.Thread(target=hung)
    th.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    st, _, o = ta.request(agent.sock, "GET", "/v1/status", timeout=10)
    dt = time.monotonic() - t0
    check(st == 200 and o.get("tokens") == 2 and dt < 2.0,
          f"GET /v1/status answers while a token hangs in C_Sign ({dt:.2f} s)")
    st, _, o = ta.request(agent.sock, "GET", "/v1/keys", timeout=10)
    check(st == 200 and len(o.get("keys", [])) == 2, "GET /v1/keys answers while a token hangs")
    st, _, o = sign(agent.sock, doc_s, "secretario", "other-1", timeout=60)
    check(st == 200 and sello_ok(o, cad_s),
          f"the other token still signs while one hangs ({st} {o and o.get('code')})")
    th.join(60)
    st, _, o = result.get("r", (0, "", None))
    check(st == 504 and o and o.get("code") == "token-timeout" and o.get("id") == "hung-1",
          f"the hung token's request fails with token-timeout ({st} {o and o.get('code')})")
    check(result.get("t", 99) < TIMEOUT + 8,
          f"token-timeout arrives within the deadline ({result.get('t', 0):.1f} s, "
          f"deadline {TIMEOUT} s plus the dialogs)")
    check(shim.count("C_Sign CKR_OK") == 1, "no C_Sign on the hung token completed")
    shim.control("")  # release the hung call; the abandoned worker finishes in the background
    time.sleep(0.5)
    st, _, o = sign(agent.sock, doc_r, "rector", "after-hang")
    check(st == 200, f"the token signs again once it answers ({st} {o and o.get('detail')})")
    check("did not answer within" in agent.text(), "the abandoned call is reported in the log")


def test_recovery(agent, shim, doc0):
    for what, ctl in (("CKR_USER_ALREADY_LOGGED_IN", "already_logged_in=1\n"),
                      ("an invalid session handle", "session_invalid=1\n")):
        before = pin_dialogs(agent)
        signs = shim.count("C_Sign CKR_OK")
        shim.control(ctl)
        doc, cad = title(doc0, "rector", "7100001")
        st, _, o = sign(agent.sock, doc, "rector", "rec-1")
        check(st == 200 and sello_ok(o, cad),
              f"{what}: signature made ({st} {o and o.get('code')} {o and o.get('detail')})")
        check(pin_dialogs(agent) - before == 1, f"{what}: one PIN dialog, no prompt loop")
        check(shim.count("C_Sign CKR_OK") - signs == 1, f"{what}: one C_Sign")
        shim.control("")


def test_run(agent, shim, doc0):
    """200 titles; reset every 100 signatures; removal mid-run, back under a new slot id."""
    shim.control("reset_after=100\n")
    pid = agent.proc.pid
    pins0 = pin_dialogs(agent)
    signs0 = shim.count("C_Sign CKR_OK")
    sellos = {}
    paused = 0
    i = 0
    removed_at = 77
    while i < TITLES:
        folio = str(8000000 + i)
        doc, cad = title(doc0, "rector", folio)
        if i == removed_at and paused == 0:
            shim.control("reset_after=100\nremoved=1\n")
            check(wait_token(agent.sock, "rector", False), "removal: the token leaves the list")
        st, _, o = sign(agent.sock, doc, "rector", f"t-{folio}")
        if st == 200:
            sellos[folio] = sello_ok(o, cad)
            i += 1
            continue
        code = o and o.get("code")
        if code in ("token-removed", "key-not-found") and paused < 3:
            # The run pauses until the same token is back (another port: new slot id).
            paused += 1
            shim.control("reset_after=100\nremoved=0\nslot_offset=7\n")
            check(wait_token(agent.sock, "rector", True), "the same token comes back")
            continue
        check(False, f"title {folio}: unexpected {st} {code} {o and o.get('detail')}")
        break
    check(paused == 1, f"the run paused once for the removal ({paused})")
    check(len(sellos) == TITLES and all(sellos.values()),
          f"{TITLES} titles, each with one valid sello ({sum(sellos.values())} valid)")
    check(shim.count("C_Sign CKR_OK") - signs0 == TITLES,
          f"exactly one successful C_Sign per title ({shim.count('C_Sign CKR_OK') - signs0})")
    check(pin_dialogs(agent) - pins0 == TITLES,
          f"one PIN dialog per title, none repeated ({pin_dialogs(agent) - pins0})")
    check(agent.proc.poll() is None and agent.proc.pid == pid, "the agent never restarted")
    shim.control("")


def main():
    for p in (ta.AGENT, ta.TESTTOKEN, ta.STUB, ta.EXAMPLE, SHIM):
        if not os.path.exists(p):
            print(f"missing {p}", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="firmante-tokens-test-")
    os.chmod(work, 0o755)
    agents = []
    try:
        tok = os.path.join(work, "token")
        first = True
        for label, (kid, name, curp, rfc) in TOKENS.items():
            ta.run([ta.TESTTOKEN, "init", "--dir", tok, "--label", label, "--pin", PIN,
                    "--so-pin", "99887766"])
            if first:
                ta.run([ta.TESTTOKEN, "ca", "--dir", tok])
                first = False
            ta.run([ta.TESTTOKEN, "signer", "--dir", tok, "--label", label, "--pin", PIN,
                    "--id", kid, "--name", name, "--curp", curp, "--rfc", rfc])
        shim = Shim(work)
        os.environ.update(SOFTHSM2_CONF=os.path.join(tok, "softhsm2.conf"),
                          P11SHIM_CONTROL=shim.control_path, P11SHIM_LOG=shim.log)
        shim.control("")
        pinfile = os.path.join(work, "pin")
        with open(pinfile, "w") as f:
            f.write(PIN)
        agent = ta.Agent(work, "agent", f"{ta.STUB} --pin-file {pinfile}", modules=False,
                         extra=f"module = {SHIM}\ntoken-timeout = {TIMEOUT}")
        agents.append(agent)
        doc0 = open(ta.EXAMPLE, encoding="utf-8").read()

        test_hang(agent, shim, doc0)
        test_recovery(agent, shim, doc0)
        test_run(agent, shim, doc0)
        check(PIN not in agent.text(), "the PIN never appears in the logs")
    finally:
        for a in agents:
            a.stop()
        if not failures and not os.environ.get("FIRMANTE_KEEP_TEST_DIR"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test files kept in {work}")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
