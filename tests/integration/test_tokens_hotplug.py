#!/usr/bin/python3
"""Tokens arriving and leaving: GET /v1/events and batches that pause.

Two SoftHSM2 tokens ("rector" and "secretario") seen by a real firmanted
through tests/p11shim (token-poll-interval = 1; the test machine has no
USB bus, so the agent polls):

1. GET /v1/events: no events at start, both tokens listed, "watch": "poll";
   bad since/timeout values are 400 bad-request; POST is 405; a long-poll
   returns when the tokens are pulled out (token-removed for both, by
   serial and label) and again when they come back under new slot ids
   (token-arrived, the same serials); a long-poll with nothing happening
   returns empty when its timeout passes.
2. POST /v1/sign-batch of 200 titles; the token is pulled out after 60
   signatures and put back under a new slot id once the stream says
   {"event": "paused", "reason": "token-removed"}: the stream then says
   "resumed" and the batch completes. Every title has exactly one valid
   sello; the shim saw exactly one successful C_Sign per title; the holder
   approved once and typed the PIN twice (the new login after the token
   came back; the PIN of the batch is not reused); the audit log records
   the pause and the resume; the agent process never restarted.
3. A second agent with batch-pause-timeout = 2: the token does not come
   back, so the paused batch ends with token-removed (the item that was
   not signed named in the stream), recorded in the audit log.

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
TITLES = 200
REMOVE_AFTER = 60

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


def batch(doc0, label, n, first_folio):
    curp = TOKENS[label][2]
    cad0 = open(ta.EXAMPLE_CADENA, "rb").read().replace(ta.EXAMPLE_CURP.encode(), curp.encode())
    docs, cadenas = [], []
    for i in range(n):
        folio = str(first_folio + i)
        docs.append({"id": f"t-{folio}",
                     "document": doc0.replace(ta.EXAMPLE_CURP, curp).replace(
                         'folioControl="2345678"', f'folioControl="{folio}"')})
        cadenas.append(cad0.replace(b"||1.0|2345678|", f"||1.0|{folio}|".encode(), 1))
    body = {"id": f"hotplug-{label}-{first_folio}", "format": "titulo-electronico",
            "key": f"pkcs11:token={label};id=%{TOKENS[label][0]};type=private",
            "documents": docs}
    return body, cadenas


def stream(sock, body, on_line):
    """POST /v1/sign-batch; @on_line(obj, lines) is called for every line."""
    conn = ta.UnixHTTPConnection(sock, 300)
    conn.request("POST", "/v1/sign-batch", body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    lines = []
    if resp.status != 200:
        lines.append(json.loads(resp.read() or b"{}"))
    else:
        while True:
            ln = resp.readline()
            if not ln:
                break
            obj = json.loads(ln)
            lines.append(obj)
            on_line(obj, lines)
    conn.close()
    return resp.status, lines


def sello_ok(line, cadena):
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(line["certificadoResponsable"]))
        cert.public_key().verify(base64.b64decode(line["sello"]), cadena, padding.PKCS1v15(),
                                 hashes.SHA256())
        return line["cadenaSha256"] == hashlib.sha256(cadena).hexdigest()
    except Exception:  # noqa: BLE001 - any failure is a wrong sello
        return False


def count_lines(path, start):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return sum(1 for ln in f if ln.startswith(start))
    except FileNotFoundError:
        return 0


def audit(agent):
    with open(os.path.join(agent.dir, "audit.log")) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def events(sock, query="", timeout=70):
    return ta.request(sock, "GET", "/v1/events" + query, timeout=timeout)


def test_events(agent, shim, serials):
    st, _, o = events(agent.sock)
    check(st == 200 and o.get("events") == [] and o.get("last") == 0 and o.get("lost") == 0,
          f"GET /v1/events at start: no events ({st} {o})")
    check(sorted(t["label"] for t in o.get("tokens", [])) == ["rector", "secretario"],
          "GET /v1/events lists the tokens present")
    check(o.get("watch") == "poll", f"no USB bus here: the agent polls ({o.get('watch')})")
    for q in ("?since=-1", "?since=abc", "?timeout=61", "?timeout=1x", "?since="):
        st, _, o = events(agent.sock, q)
        check(st == 400 and o and o.get("code") == "bad-request", f"GET /v1/events{q}: 400 ({st})")
    st, _, o = ta.request(agent.sock, "POST", "/v1/events")  # no body: the answer comes first
    check(st == 405, f"POST /v1/events: 405 ({st})")

    got = {}

    def poll(key, query):
        got[key] = events(agent.sock, query)

    th = threading.Thread(target=poll, args=("out", "?since=0&timeout=30"))
    th.start()
    time.sleep(0.5)
    shim.control("removed=1\n")
    th.join(40)
    st, _, o = got.get("out", (0, "", None))
    evs = (o or {}).get("events", [])
    check(st == 200 and sorted((e["type"], e["token"]["label"], e["token"]["serial"])
                               for e in evs) ==
          sorted(("token-removed", lb, serials[lb]) for lb in TOKENS),
          f"long-poll: both tokens reported removed, by label and serial ({evs})")
    check(o and o.get("tokens") == [], "GET /v1/events: no token present while pulled out")
    last = (o or {}).get("last", 0)
    check(last == 2 and [e["seq"] for e in evs] == [1, 2], f"events numbered 1, 2 ({last})")

    th = threading.Thread(target=poll, args=("back", f"?since={last}&timeout=30"))
    th.start()
    time.sleep(0.5)
    shim.control("removed=0\nslot_offset=7\n")
    th.join(40)
    st, _, o = got.get("back", (0, "", None))
    evs = (o or {}).get("events", [])
    check(st == 200 and sorted((e["type"], e["token"]["label"], e["token"]["serial"])
                               for e in evs) ==
          sorted(("token-arrived", lb, serials[lb]) for lb in TOKENS),
          f"back under new slot ids: token-arrived, same serials ({evs})")
    last = (o or {}).get("last", 0)
    t0 = time.monotonic()
    st, _, o = events(agent.sock, f"?since={last}&timeout=1")
    dt = time.monotonic() - t0
    check(st == 200 and o.get("events") == [] and o.get("last") == last and dt < 10,
          f"a long-poll with nothing happening returns empty at its timeout ({dt:.1f} s)")
    st, _, o = events(agent.sock, "?since=0")
    check(st == 200 and len(o.get("events", [])) == 4 and o.get("last") == 4,
          "since=0 returns every event kept")
    return "removed=0\nslot_offset=7\n"


def test_batch_pause(agent, shim, doc0, base):
    body, cadenas = batch(doc0, "rector", TITLES, 5000000)
    pid = agent.proc.pid
    signs0 = shim.count("C_Sign CKR_OK")
    pins0 = count_lines(agent.pelog, "GETPIN")
    confirms0 = count_lines(agent.pelog, "CONFIRM")
    state = {"removed": False, "back": False}

    def on_line(obj, lines):
        sellos = sum(1 for ln in lines if "sello" in ln)
        if not state["removed"] and sellos >= REMOVE_AFTER:
            state["removed"] = True
            shim.control(base.replace("removed=0", "removed=1"))
        if obj.get("event") == "paused" and not state["back"]:
            state["back"] = True
            time.sleep(1.5)  # out for a moment, then back in another port
            shim.control("removed=0\nslot_offset=14\n")

    st, lines = stream(agent.sock, body, on_line)
    paused = [ln for ln in lines if ln.get("event") == "paused"]
    resumed = [ln for ln in lines if ln.get("event") == "resumed"]
    sigs = [ln for ln in lines if "sello" in ln]
    done = [ln for ln in lines if ln.get("done")]
    check(st == 200 and len(paused) == 1 and paused[0].get("reason") == "token-removed" and
          paused[0].get("token", {}).get("label") == "rector",
          f"the stream says the batch paused: token-removed ({paused})")
    check(len(resumed) == 1 and resumed[0].get("index") == paused[0].get("index") if paused
          else False, f"the stream says the batch resumed at the same title ({resumed})")
    idx = sorted(s["index"] for s in sigs)
    check(idx == list(range(TITLES)), f"every title exactly once ({len(sigs)} sellos)")
    check(all(sello_ok(s, cadenas[s["index"]]) for s in sigs), "every sello valid")
    check(done and done[-1].get("result") == "completed" and done[-1].get("signed") == TITLES,
          f"the batch completes after the re-login ({done})")
    check(shim.count("C_Sign CKR_OK") - signs0 == TITLES,
          f"one successful C_Sign per title ({shim.count('C_Sign CKR_OK') - signs0})")
    check(count_lines(agent.pelog, "CONFIRM") - confirms0 == 1, "one approval for the batch")
    check(count_lines(agent.pelog, "GETPIN") - pins0 == 2,
          "the PIN asked again after the token came back (2 GETPIN in all), not reused")
    recs = audit(agent)
    bid = next((r.get("batch") for r in recs if r.get("event") == "sign-batch-paused"), None)
    check(bid is not None and any(r.get("event") == "sign-batch-resumed" and
                                  r.get("batch") == bid and
                                  r.get("result", "").startswith("token-back")
                                  for r in recs),
          "the audit log records the pause and the resume")
    check(agent.proc.poll() is None and agent.proc.pid == pid, "the agent never restarted")
    shim.control("removed=0\nslot_offset=14\n")


def test_pause_deadline(work, shim, doc0, pinfile):
    agent = ta.Agent(work, "agent-short", f"{ta.STUB} --pin-file {pinfile}", modules=False,
                     extra=f"module = {SHIM}\ntoken-poll-interval = 1\n"
                           "batch-pause-timeout = 2")
    try:
        body, _ = batch(doc0, "secretario", 10, 6000000)
        state = {"removed": False}
        # A token as slow as a hardware one (20 ms per signature): the agent
        # sends each sello as it is made (it groups the audit syncs of
        # signatures made within 10 ms only), so the token can be pulled
        # out while titles are still left.
        shim.control("slot_offset=14\nsign_delay_ms=20\n")

        def on_line(obj, lines):
            if not state["removed"] and sum(1 for ln in lines if "sello" in ln) >= 3:
                state["removed"] = True
                shim.control("removed=1\nslot_offset=14\nsign_delay_ms=20\n")

        t0 = time.monotonic()
        st, lines = stream(agent.sock, body, on_line)
        dt = time.monotonic() - t0
        probs = [ln for ln in lines if "problem" in ln]
        done = [ln for ln in lines if ln.get("done")]
        check(any(ln.get("event") == "paused" for ln in lines),
              "batch-pause-timeout = 2: the batch pauses")
        check(len(probs) == 1 and probs[0]["problem"]["code"] == "token-removed" and
              "did not come back" in probs[0]["problem"]["detail"],
              f"the token does not return: token-removed for the next title ({probs})")
        check(done and done[-1].get("result") == "token-removed" and dt < 60,
              f"the paused batch ends with token-removed ({done}, {dt:.1f} s)")
        recs = audit(agent)
        check(any(r.get("event") == "sign-batch-resumed" and
                  r.get("result", "").startswith("token-removed") for r in recs),
              "the audit log records that the token did not return")
    finally:
        agent.stop()
        shim.control("removed=0\nslot_offset=14\n")


def main():
    for p in (ta.AGENT, ta.TESTTOKEN, ta.STUB, ta.EXAMPLE, SHIM):
        if not os.path.exists(p):
            print(f"missing {p}", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="firmante-hotplug-test-")
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
        shim = Shim(work)
        os.environ.update(SOFTHSM2_CONF=os.path.join(tok, "softhsm2.conf"),
                          P11SHIM_CONTROL=shim.control_path, P11SHIM_LOG=shim.log)
        shim.control("")
        pinfile = os.path.join(work, "pin")
        with open(pinfile, "w") as f:
            f.write(PIN)
        agent = ta.Agent(work, "agent", f"{ta.STUB} --pin-file {pinfile}", modules=False,
                         extra=f"module = {SHIM}\ntoken-poll-interval = 1\n"
                               "batch-pause-timeout = 60\ntoken-timeout = 20")
        st, _, o = ta.request(agent.sock, "GET", "/v1/tokens")
        serials = {t["label"]: t["serial"] for t in o["tokens"]}
        doc0 = open(ta.EXAMPLE, encoding="utf-8").read()

        base = test_events(agent, shim, serials)
        test_batch_pause(agent, shim, doc0, base)
        check(PIN not in agent.text(), "the PIN never appears in the logs")
        agent.stop()
        agent = None
        test_pause_deadline(work, shim, doc0, pinfile)
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
