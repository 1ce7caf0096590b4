#!/usr/bin/python3
"""firmante import asks through pinentry by default.

With tests/pinentry-stub as --pinentry (the same Assuan dialogs a real
pinentry gets):

- the .key password comes from a GETPIN whose description names the .key
  file and the certificate's holder and noCertificado; the import of the
  SAT test FIEL succeeds and the key is on the token;
- the token PIN comes from pinentry too when no --pin-file is given (one
  GETPIN naming the token): two dialogs in all, no terminal involved;
- a password with Ñ and accents passes through the Assuan encoding intact
  (a key re-encrypted with it opens);
- a cancelled dialog is a clear error and writes nothing;
- a --pinentry program that does not exist is a clear error naming it;
- --password-file still works without any pinentry (unattended use).

Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR.
"""

import os
import shutil
import subprocess
import sys
import tempfile

SRC = os.environ.get("FIRMANTE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("FIRMANTE_BINARY_DIR") or os.path.join(SRC, "build")
SHARED = os.environ.get("FIRMANTE_SHARED_DIR") or os.path.join(SRC, "..", "shared")
FIRMANTE = os.path.join(BIN, "client", "firmante")
TESTTOKEN = os.path.join(SRC, "tests", "tools", "fm-testtoken")
STUB = os.path.join(SRC, "tests", "pinentry-stub")
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
FIEL = os.path.join(SHARED, "fixtures", "sat", "FIEL_AAA010101AAA")
NOCERT = "30001000000300023685"
PIN = "40302010"

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def run_import(key, label, pinentry=None, pinfile=None, pwfile=None):
    args = [FIRMANTE, "import", "--cer", os.path.join(FIEL, "certificate.cer"), "--key", key,
            "--module", MODULE, "--token", f"pkcs11:token={label}"]
    if pinentry:
        args += ["--pinentry", pinentry]
    if pinfile:
        args += ["--pin-file", pinfile]
    if pwfile:
        args += ["--password-file", pwfile]
    env = dict(os.environ)
    env.pop("GPG_TTY", None)
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=120,
                          stdin=subprocess.DEVNULL)


def objects(label, pin=PIN):
    r = subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", label, "--login",
                        "--pin", pin, "--list-objects"], capture_output=True, text=True)
    return r.stdout


def log_text(path):
    try:
        return open(path, encoding="utf-8").read()
    except FileNotFoundError:
        return ""


def main():
    for p in (FIRMANTE, TESTTOKEN, STUB, FIEL):
        if not os.path.exists(p):
            print(f"missing {p}", file=sys.stderr)
            return 1
    if not shutil.which("pkcs11-tool"):
        print("pkcs11-tool (opensc) is needed", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="firmante-import-pinentry-test-")
    try:
        tok = os.path.join(work, "tok")
        key = os.path.join(FIEL, "private_key.key")
        password = open(os.path.join(FIEL, "password.txt")).read().strip()
        # "both": the token PIN equals the .key password, so one stub answers both dialogs.
        labels = {"pw": PIN, "both": password, "accents": PIN, "cancel": PIN, "nope": PIN,
                  "file": PIN}
        for label, pin in labels.items():
            subprocess.run([TESTTOKEN, "init", "--dir", tok, "--label", label, "--pin", pin,
                            "--so-pin", "99887766"], check=True, capture_output=True)
        os.environ["SOFTHSM2_CONF"] = os.path.join(tok, "softhsm2.conf")
        pinfile = os.path.join(work, "pin")
        open(pinfile, "w").write(PIN)
        pwfile = os.path.join(work, "pw")
        open(pwfile, "w").write(password)

        log = os.path.join(work, "pe-pw.log")
        r = run_import(key, "pw", f"{STUB} --pin-file {pwfile} --log {log}", pinfile=pinfile)
        text = log_text(log)
        check(r.returncode == 0 and NOCERT in r.stdout,
              f"password through pinentry: imported ({r.stderr.strip()})")
        check(text.count("GETPIN") == 1, "one GETPIN dialog for the password")
        check(key in text and "Holder: " in text and NOCERT in text,
              "the password dialog names the .key file, the holder and the noCertificado")
        check(password not in text, "the stub's log never holds the password")
        check("Private Key Object" in objects("pw"), "the key is on the token")

        log = os.path.join(work, "pe-both.log")
        r = run_import(key, "both", f"{STUB} --pin-file {pwfile} --log {log}")
        text = log_text(log)
        check(r.returncode == 0, f"password and token PIN through pinentry "
              f"(exit {r.returncode}; {r.stderr.strip()})")
        check(text.count("GETPIN") == 2 and 'Enter the PIN of token "both"' in text,
              "two GETPIN dialogs, the second one naming the token")
        check(text.count("BYE") == 1, "one pinentry program for both questions")
        check("Private Key Object" in objects("both", password), "both: the key is on the token")

        typed = "Contraseña Ñandú é"
        pwbytes = os.path.join(work, "pw-accents")
        open(pwbytes, "wb").write(typed.encode("utf-8"))
        newkey = os.path.join(work, "accents.key")
        subprocess.run(["openssl", "pkcs8", "-topk8", "-inform", "DER", "-in", key,
                        "-passin", f"file:{pwfile}", "-outform", "DER", "-v2", "des3",
                        "-v2prf", "hmacWithSHA1", "-passout", f"file:{pwbytes}",
                        "-out", newkey], check=True, capture_output=True)
        r = run_import(newkey, "accents", f"{STUB} --pin-file {pwbytes}", pinfile=pinfile)
        check(r.returncode == 0,
              f"a password with Ñ and accents passes through pinentry ({r.stderr.strip()})")

        r = run_import(key, "cancel", STUB, pinfile=pinfile)
        check(r.returncode == 1 and "refused at the PIN dialog" in r.stderr and
              "no password for the .key file" in r.stderr,
              f"a cancelled dialog: clear error ({r.stderr.strip()})")
        check("Object" not in objects("cancel"), "cancelled: nothing written")

        missing = os.path.join(work, "no-such-pinentry")
        r = run_import(key, "nope", missing, pinfile=pinfile)
        check(r.returncode == 1 and f'cannot start pinentry "{missing}"' in r.stderr,
              f"a missing pinentry program is named ({r.stderr.strip()})")
        check("Object" not in objects("nope"), "missing pinentry: nothing written")

        r = run_import(key, "file", missing, pinfile=pinfile, pwfile=pwfile)
        check(r.returncode == 0, "--password-file and --pin-file need no pinentry")
    finally:
        if not failures:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test files kept in {work}")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
