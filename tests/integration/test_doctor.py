#!/usr/bin/python3
"""firmante doctor, asserted line by line on a test setup.

A fresh SoftHSM2 token "rector" with two e.firma identities (one valid for
1000 days, one expiring in 20 days), a real firmanted on it, the modules
fixed by the agent's configuration (use-p11kit-modules = false, module =
SoftHSM2), a stand-in pcscd socket (--pcscd-socket) and a udev directory
holding the project's rules (--udev-dir), so every line is known:

1. healthy setup: every line OK except the certificate expiring within 60
   days (WARN with the days left); exit status 0; --json says the same;
2. broken setup: the token seen through tests/p11shim reporting "PIN final
   try", a third identity that expired, no pcscd, no udev rules, the agent
   stopped (socket gone), a configured module path that does not exist:
   the matching WARN/FAIL lines with hints; exit status 1; --json ok=false;
3. --warn-days 10 turns the 20-day certificate into an OK line.

Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR.
"""

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agent as ta  # noqa: E402  (helpers: Agent, request, run)

from cryptography import x509  # noqa: E402

FIRMANTE = os.path.join(ta.BIN, "client", "firmante")
SHIM = os.path.join(ta.BIN, "tests", "p11shim", "libfirmante-p11shim.so")
RULES = os.path.join(ta.SRC, "udev", "70-firmante-tokens.rules")
PIN = "51627384"
LABEL = "rector"
DAY = 86400
# key id, name, CURP, RFC, not_before offset (days), not_after offset (days)
SIGNERS = [
    ("11", "MARIA ELENA TORRES RUIZ", "TORM800101MDFRZR05", "TORM800101AB1", -1, 1000.5),
    ("12", "PEDRO LOPEZ GARCIA", "LOGP700101HDFPRD03", "LOGP700101AB2", -1, 20.5),
]
EXPIRED = ("13", "ANA SOFIA DIAZ MORA", "DIMA750505MDFZRN02", "DIMA750505AB3", -400, -30)
HINT_RENEW = ("renew the e.firma at SAT before it expires, then import the new one with "
              "firmante import")

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def make_signer(tok, s, now):
    kid, name, curp, rfc, nb, na = s
    ta.run([ta.TESTTOKEN, "signer", "--dir", tok, "--label", LABEL, "--pin", PIN, "--id", kid,
            "--name", name, "--curp", curp, "--rfc", rfc, "--not-before", iso(now + nb * DAY),
            "--not-after", iso(now + na * DAY)])
    cert = x509.load_der_x509_certificate(open(os.path.join(tok, "certs", curp + ".cer"),
                                               "rb").read())
    nocert = cert.serial_number.to_bytes(20, "big").decode()
    na_utc = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(
        tzinfo=datetime.timezone.utc)
    return {"name": name, "nocert": nocert, "not_after": na_utc.timestamp()}


def identity_line(ident, now, warn_days=60):
    what = f'e.firma {ident["name"]} (noCertificado {ident["nocert"]}) on token "{LABEL}"'
    until = iso(ident["not_after"])[:10]
    if now > ident["not_after"]:
        return (f"FAIL  {what}: expired on {until} (hint: renew the e.firma at SAT and import "
                f"the new one with firmante import)")
    days = int((ident["not_after"] - now) // DAY)
    if days < warn_days:
        return (f"WARN  {what}: expires on {until}, {days} day{'' if days == 1 else 's'} left "
                f"(hint: {HINT_RENEW})")
    return f"OK    {what}: valid until {until}, {days} days left"


def doctor(args, env=None):
    r = subprocess.run([FIRMANTE, "doctor"] + args, capture_output=True, text=True,
                       env=env or os.environ, timeout=120)
    return r.returncode, r.stdout.splitlines(), r.stderr


def compare(got, want, what):
    ok = got == want
    check(ok, what)
    if not ok:
        n = max(len(got), len(want))
        for i in range(n):
            g = got[i] if i < len(got) else "<missing>"
            w = want[i] if i < len(want) else "<missing>"
            if g != w:
                print(f"  line {i + 1}:\n    got  {g}\n    want {w}")


def json_matches(lines, reply, ok):
    """The --json findings say the same as the text lines."""
    try:
        o = json.loads(reply)
    except ValueError:
        return False
    if o.get("ok") is not ok:
        return False
    text = []
    for c in o.get("checks", []):
        word = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}[c["status"]]
        ln = f"{word:<4}  {c['what']}: {c['detail']}"
        if "hint" in c:
            ln += f" (hint: {c['hint']})"
        text.append(ln)
    return text == lines[:-1]


def main():
    for p in (FIRMANTE, ta.AGENT, ta.TESTTOKEN, ta.STUB, ta.MODULE, SHIM, RULES):
        if not os.path.exists(p):
            print(f"missing {p}", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="firmante-doctor-test-")
    os.chmod(work, 0o755)
    agent = None
    pcscd = None
    try:
        tok = os.path.join(work, "token")
        ta.run([ta.TESTTOKEN, "init", "--dir", tok, "--label", LABEL, "--pin", PIN,
                "--so-pin", "99887766"])
        ta.run([ta.TESTTOKEN, "ca", "--dir", tok])
        now = time.time()
        idents = [make_signer(tok, s, now) for s in SIGNERS]
        os.environ["SOFTHSM2_CONF"] = os.path.join(tok, "softhsm2.conf")
        agent = ta.Agent(work, "agent", ta.STUB)
        st, _, o = ta.request(agent.sock, "GET", "/v1/status")
        version = o["version"]
        st, _, o = ta.request(agent.sock, "GET", "/v1/tokens")
        serial = o["tokens"][0]["serial"]

        udev = os.path.join(work, "udev")
        os.makedirs(udev)
        shutil.copy(RULES, udev)
        pcscd_path = os.path.join(work, "pcscd.comm")
        pcscd = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        pcscd.bind(pcscd_path)
        pcscd.listen(4)
        opts = ["--config", agent.conf, "--pcscd-socket", pcscd_path, "--udev-dir", udev]

        # 1. healthy setup
        now = time.time()
        ids_sorted = sorted(idents, key=lambda i: i["nocert"])
        want = [
            f"OK    configuration: {agent.conf}",
            f"OK    module {ta.MODULE}: loaded from the configuration (Implementation of PKCS11)",
            f'OK    token "{LABEL}": serial {serial}, SoftHSM project SoftHSM v2, '
            f"module {ta.MODULE}",
            f'OK    PIN of token "{LABEL}": ok',
        ] + [identity_line(i, now) for i in ids_sorted] + [
            f"OK    pcscd: reachable at {pcscd_path}",
            f"OK    udev rules: installed at {udev}/70-firmante-tokens.rules",
            f"OK    socket directory {agent.rundir}: mode 0700, yours",
            f"OK    socket {agent.sock}: mode 0600",
            f"OK    agent: firmanted {version} answers (tokens: 1, signing keys: 2)",
            "0 failed, 1 warning",
        ]
        rc, lines, err = doctor(opts)
        compare(lines, want, "healthy setup: every line as expected")
        check(rc == 0, f"healthy setup: exit status 0 with a warning ({rc}; {err.strip()})")
        check(sum(1 for ln in lines if "days left" in ln) == 2,
              "every identity line prints its days left")
        r = subprocess.run([FIRMANTE, "--json", "doctor"] + opts, capture_output=True, text=True)
        check(r.returncode == 0 and json_matches(lines, r.stdout, True),
              "healthy setup: --json holds the same findings, ok true")

        # 3. --warn-days
        rc, lines3, _ = doctor(opts + ["--warn-days", "10"])
        check(identity_line(ids_sorted[0], time.time(), 10) in lines3 and
              identity_line(ids_sorted[1], time.time(), 10) in lines3 and
              not any(ln.startswith("WARN  e.firma") for ln in lines3) and rc == 0,
              "--warn-days 10: the 20-day certificate is OK")

        # 2. broken setup
        idents.append(make_signer(tok, EXPIRED, time.time()))
        agent.stop()
        agent = None
        control = os.path.join(work, "shim.control")
        with open(control, "w") as f:
            f.write("pin_flags=final_try\n")
        missing = os.path.join(work, "no-such-module.so")
        conf2 = os.path.join(work, "broken.conf")
        with open(conf2, "w") as f:
            f.write(f"[agent]\nuse-p11kit-modules = false\nmodule = {missing}\n"
                    f"module = {SHIM}\nsocket = {agent_sock(work)}\n")
        empty = os.path.join(work, "udev-empty")
        os.makedirs(empty)
        env = dict(os.environ, P11SHIM_CONTROL=control)
        now = time.time()
        ids_sorted = sorted(idents, key=lambda i: i["nocert"])
        nopcscd = os.path.join(work, "no-pcscd.comm")
        want = [
            f"OK    configuration: {conf2}",
            f"FAIL  module {missing}: No such file or directory (hint: install the token's "
            "PKCS#11 module or correct module = in firmanted.conf)",
            f"OK    module {SHIM}: loaded from the configuration (Implementation of PKCS11)",
            f'OK    token "{LABEL}": serial {serial}, SoftHSM project SoftHSM v2, module {SHIM}',
            f'WARN  PIN of token "{LABEL}": final try left (hint: one wrong PIN more locks the '
            "token; be sure of the PIN before signing)",
        ] + [identity_line(i, now) for i in ids_sorted] + [
            f"WARN  pcscd: not running (no socket at {nopcscd}) (hint: smart cards and most USB "
            "tokens need it: sudo apt install pcscd; sudo systemctl enable --now pcscd.socket)",
            "WARN  udev rules: 70-firmante-tokens.rules not installed; tokens without pcscd may "
            "be usable only by root (hint: copy udev/70-firmante-tokens.rules to "
            "/etc/udev/rules.d/ and run sudo udevadm control --reload, then plug the token in "
            "again)",
            f"OK    socket directory {os.path.dirname(agent_sock(work))}: mode 0700, yours",
            f"FAIL  socket {agent_sock(work)}: missing: the agent is not running (hint: start "
            "the agent: systemctl --user start firmanted.socket)",
            f"FAIL  agent: nothing answers at {agent_sock(work)} (hint: start it: systemctl "
            "--user start firmanted.socket (or run firmanted))",
            "4 failed, 4 warnings",
        ]
        args2 = ["--config", conf2, "--pcscd-socket", nopcscd, "--udev-dir", empty]
        rc, lines, err = doctor(args2, env)
        compare(lines, want, "broken setup: every line as expected")
        check(rc == 1, f"broken setup: exit status 1 ({rc})")
        r = subprocess.run([FIRMANTE, "doctor", "--json"] + args2, capture_output=True,
                           text=True, env=env)
        check(r.returncode == 1 and json_matches(lines, r.stdout, False),
              "broken setup: --json holds the same findings, ok false")
        r = subprocess.run([FIRMANTE, "doctor", "--warn-days", "x"], capture_output=True,
                           text=True)
        check(r.returncode == 2 and "--warn-days" in r.stderr, "a bad --warn-days is a usage error")
    finally:
        if pcscd:
            pcscd.close()
        if agent:
            agent.stop()
        if not failures and not os.environ.get("FIRMANTE_KEEP_TEST_DIR"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test files kept in {work}")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


def agent_sock(work):
    """The stopped agent's socket (its directory stays, 0700)."""
    return os.path.join(work, "agent", "run", "agent.sock")


if __name__ == "__main__":
    sys.exit(main())
