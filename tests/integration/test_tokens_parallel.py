#!/usr/bin/python3
"""Two tokens, two 500-title batches: in parallel clearly faster than in turn.

Two SoftHSM2 tokens ("rector" and "secretario") seen through tests/p11shim
with sign_delay_ms = 10 on every C_Sign (a real token takes tens to
hundreds of milliseconds per RSA signature; SoftHSM2 takes about one, so
without the delay the run would measure the agent's CPU work instead of
the tokens). A real firmanted approves each POST /v1/sign-batch through
the pinentry stand-in (one approval and one PIN per batch).

1. sequential: the rector's batch, then the secretario's;
2. parallel: both batches at once, from two connections.

Each run must sign all 1000 titles with valid sellos (one per title,
checked with the certificate's public key). The test prints both times
and their ratio, and asserts only that the parallel run took less time
than the sequential one (the per-token workers let two tokens sign at the
same time).

Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR.
"""

import base64
import hashlib
import json
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
TITLES = 500
SIGN_DELAY_MS = 10

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def batch(doc0, label, first_folio):
    """A 500-title batch for @label and the cadena of each title."""
    curp = TOKENS[label][2]
    cad0 = open(ta.EXAMPLE_CADENA, "rb").read().replace(ta.EXAMPLE_CURP.encode(), curp.encode())
    docs, cadenas = [], []
    for i in range(TITLES):
        folio = str(first_folio + i)
        docs.append({"id": f"{label}-{folio}",
                     "document": doc0.replace(ta.EXAMPLE_CURP, curp).replace(
                         'folioControl="2345678"', f'folioControl="{folio}"')})
        cadenas.append(cad0.replace(b"||1.0|2345678|", f"||1.0|{folio}|".encode(), 1))
    body = {"id": f"batch-{label}", "format": "titulo-electronico",
            "key": f"pkcs11:token={label};id=%{TOKENS[label][0]};type=private",
            "documents": docs}
    return body, cadenas


def run_batch(sock, body, out):
    conn = ta.UnixHTTPConnection(sock, 600)
    conn.request("POST", "/v1/sign-batch", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    lines = []
    if resp.status == 200:
        while True:
            ln = resp.readline()
            if not ln:
                break
            lines.append(json.loads(ln))
    else:
        lines.append(json.loads(resp.read() or b"{}"))
    conn.close()
    out["status"] = resp.status
    out["lines"] = lines


def all_signed(out, cadenas):
    """Every title exactly once, each sello valid, the batch completed."""
    if out.get("status") != 200:
        return False
    sigs = [ln for ln in out["lines"] if "sello" in ln]
    done = [ln for ln in out["lines"] if ln.get("done")]
    if len(sigs) != TITLES or sorted(s["index"] for s in sigs) != list(range(TITLES)):
        return False
    if not done or done[-1].get("result") != "completed" or done[-1].get("signed") != TITLES:
        return False
    cert = x509.load_der_x509_certificate(base64.b64decode(sigs[0]["certificadoResponsable"]))
    key = cert.public_key()
    for s in sigs:
        cad = cadenas[s["index"]]
        if s["cadenaSha256"] != hashlib.sha256(cad).hexdigest():
            return False
        try:
            key.verify(base64.b64decode(s["sello"]), cad, padding.PKCS1v15(), hashes.SHA256())
        except Exception:  # noqa: BLE001 - any failure is a wrong sello
            return False
    return True


def main():
    for p in (ta.AGENT, ta.TESTTOKEN, ta.STUB, ta.EXAMPLE, SHIM):
        if not os.path.exists(p):
            print(f"missing {p}", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="firmante-parallel-test-")
    os.chmod(work, 0o755)
    agent = None
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
        control = os.path.join(work, "shim.control")
        with open(control, "w") as f:
            f.write(f"sign_delay_ms={SIGN_DELAY_MS}\n")
        os.environ.update(SOFTHSM2_CONF=os.path.join(tok, "softhsm2.conf"),
                          P11SHIM_CONTROL=control)
        pinfile = os.path.join(work, "pin")
        with open(pinfile, "w") as f:
            f.write(PIN)
        agent = ta.Agent(work, "agent", f"{ta.STUB} --pin-file {pinfile}", modules=False,
                         extra=f"module = {SHIM}\ntoken-timeout = 60")
        doc0 = open(ta.EXAMPLE, encoding="utf-8").read()
        jobs = {"rector": batch(doc0, "rector", 3000000),
                "secretario": batch(doc0, "secretario", 4000000)}

        # 1. one after the other
        t0 = time.monotonic()
        seq = {}
        for label, (body, _) in jobs.items():
            seq[label] = {}
            run_batch(agent.sock, body, seq[label])
        sequential = time.monotonic() - t0
        for label, (_, cads) in jobs.items():
            check(all_signed(seq[label], cads),
                  f"sequential: {TITLES} titles of {label}, each with one valid sello")

        # 2. both at once
        par = {label: {} for label in jobs}
        threads = [threading.Thread(target=run_batch, args=(agent.sock, body, par[label]))
                   for label, (body, _) in jobs.items()]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        for th in threads:
            th.join(600)
        parallel = time.monotonic() - t0
        for label, (_, cads) in jobs.items():
            check(all_signed(par[label], cads),
                  f"parallel: {TITLES} titles of {label}, each with one valid sello")

        print(f"sequential {sequential:.2f} s, parallel {parallel:.2f} s, "
              f"ratio parallel/sequential {parallel / sequential:.2f}", flush=True)
        check(parallel < sequential, "two tokens signing in parallel take less time than "
              "one after the other")
    finally:
        if agent:
            agent.stop()
        if not failures and not os.environ.get("FIRMANTE_KEEP_TEST_DIR"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test files kept in {work}")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
