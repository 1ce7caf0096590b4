#!/usr/bin/python3
"""firmante import: the SAT test FIEL onto a fresh SoftHSM2 token.

- the real SAT test FIEL (fixtures/sat/FIEL_AAA010101AAA) is imported; with
  pkcs11-tool as an outside reader, the private key is sensitive and not
  extractable, and key, public key and certificate carry CKA_ID = SHA-1 of
  the certificate's RSAPublicKey (RFC 5280 §4.2.1.2 method 1: the
  certificate has no subject key identifier extension);
- the output tells the user the .key file still exists;
- a second import of the same e.firma is refused;
- a wrong password gets a clear error and writes nothing;
- the CSD fixture is refused as a CSD;
- a key re-encrypted (PBES2, DES-EDE3-CBC) with a password holding Ñ and
  accents opens whether it was encrypted from the UTF-8 or the Latin-1
  bytes of the password typed in UTF-8.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization

SRC = os.environ.get("FIRMANTE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("FIRMANTE_BINARY_DIR") or os.path.join(SRC, "build")
SHARED = os.environ.get("FIRMANTE_SHARED_DIR") or os.path.join(SRC, "..", "shared")
FIRMANTE = os.path.join(BIN, "client", "firmante")
TESTTOKEN = os.path.join(SRC, "tests", "tools", "fm-testtoken")
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
FIEL = os.path.join(SHARED, "fixtures", "sat", "FIEL_AAA010101AAA")
CSD = os.path.join(SHARED, "fixtures", "sat", "CSD01_AAA010101AAA")
PIN = "40302010"

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def firmante_import(cer, key, pwfile, pinfile, label):
    return subprocess.run([FIRMANTE, "import", "--cer", cer, "--key", key, "--module", MODULE,
                           "--token", f"pkcs11:token={label}", "--password-file", pwfile,
                           "--pin-file", pinfile], capture_output=True, text=True)


def objects(label):
    r = subprocess.run(["pkcs11-tool", "--module", MODULE, "--token-label", label, "--login",
                        "--pin", PIN, "--list-objects"], capture_output=True, text=True)
    return r.stdout


def main():
    for p in (FIRMANTE, TESTTOKEN, FIEL, CSD):
        if not os.path.exists(p):
            print(f"missing {p}", file=sys.stderr)
            return 1
    if not shutil.which("pkcs11-tool"):
        print("pkcs11-tool (opensc) is needed", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="firmante-import-test-")
    try:
        tok = os.path.join(work, "tok")
        for label in ("fiel", "csd", "latin1", "utf8"):
            subprocess.run([TESTTOKEN, "init", "--dir", tok, "--label", label, "--pin", PIN,
                            "--so-pin", "99887766"], check=True, capture_output=True)
        os.environ["SOFTHSM2_CONF"] = os.path.join(tok, "softhsm2.conf")
        pinfile = os.path.join(work, "pin")
        open(pinfile, "w").write(PIN)
        cer, key, pw = (os.path.join(FIEL, n) for n in ("certificate.cer", "private_key.key",
                                                         "password.txt"))
        cert = x509.load_der_x509_certificate(open(cer, "rb").read())
        rsapub = cert.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.PKCS1)
        want_id = hashlib.sha1(rsapub).hexdigest()

        bad = os.path.join(work, "bad")
        open(bad, "w").write("12345678b")
        r = firmante_import(cer, key, bad, pinfile, "fiel")
        check(r.returncode == 1 and "password does not open the .key file" in r.stderr,
              f"wrong password: clear error ({r.stderr.strip()})")
        check("Object" not in objects("fiel"), "wrong password: nothing written")

        r = firmante_import(cer, key, pw, pinfile, "fiel")
        check(r.returncode == 0, f"SAT test FIEL imported ({r.stderr.strip()})")
        check("still exists on disk" in r.stdout and key in r.stdout,
              "the user is told the .key file still exists")
        check("30001000000300023685" in r.stdout, "output names the noCertificado")
        out = objects("fiel")
        priv = [b.split("Object;")[0] for b in out.split("Private Key Object")[1:]]
        check(len(priv) == 1, "one private key on the token")
        if priv:
            access = [ln for ln in priv[0].splitlines() if "Access:" in ln]
            check(access and "sensitive" in access[0] and "extractable" not in
                  access[0].replace("never extractable", ""),
                  f"private key: CKA_SENSITIVE true, CKA_EXTRACTABLE false ({access})")
        ids = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.strip().startswith("ID:")]
        check(len(ids) == 3 and all(i == want_id for i in ids),
              f"key, public key and certificate: CKA_ID = subject key identifier ({ids} vs {want_id})")
        check("Certificate Object" in out and "e.firma AAA010101AAA 30001000000300023685" in out,
              "certificate stored with a readable label")

        r = firmante_import(cer, key, pw, pinfile, "fiel")
        check(r.returncode == 1 and "already holds" in r.stderr, "a second import is refused")

        r = firmante_import(os.path.join(CSD, "certificate.cer"),
                            os.path.join(CSD, "private_key.key"),
                            os.path.join(CSD, "password.txt"), pinfile, "csd")
        check(r.returncode == 1 and "CSD" in r.stderr and "not an e.firma" in r.stderr,
              f"the CSD fixture is refused ({r.stderr.strip()})")
        check("Object" not in objects("csd"), "CSD: nothing written")

        typed = "Contraseña Ñandú é"
        for label, enc in (("utf8", "utf-8"), ("latin1", "latin-1")):
            pwbytes = os.path.join(work, f"pw-{label}")
            open(pwbytes, "wb").write(typed.encode(enc))
            newkey = os.path.join(work, f"{label}.key")
            subprocess.run(["openssl", "pkcs8", "-topk8", "-inform", "DER", "-in", key,
                            "-passin", f"file:{pw}", "-outform", "DER", "-v2", "des3",
                            "-v2prf", "hmacWithSHA1", "-passout", f"file:{pwbytes}",
                            "-out", newkey], check=True, capture_output=True)
            typedfile = os.path.join(work, "typed")
            open(typedfile, "wb").write(typed.encode("utf-8"))
            r = firmante_import(cer, newkey, typedfile, pinfile, label)
            check(r.returncode == 0,
                  f"password with Ñ and accents, key encrypted from its {enc} bytes "
                  f"({r.stderr.strip()})")
    finally:
        if not failures:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"test files kept in {work}")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
