#!/usr/bin/python3
"""Onboarding with the DGP and DGAIR (docs/onboarding.md), end to end.

A fresh SoftHSM2 token holds SAT-like identities (fm-testtoken): two good
signers, a CSD, an expired certificate, one expiring in 10 days and one in 45
days. A real firmanted serves them (pinentry stand-in), and the real titulos:

  - alta: the workbook, read with python3-openpyxl (not our code), holds the
    configured careers and signers with the exact catalog texts; every <CURP>.cer
    is byte-identical to the certificate object on the token (read with
    PyKCS11); the checklist is there. Signers whose certificate is a CSD, expired,
    expiring within 30 days, or of another CURP are refused with the reason and
    nothing is written. --solo-firmantes writes the signer update only, and
    titulos report then warns about the certificate expiring within 60 days;
  - production: titulos submit with the produccion profile is refused before the
    profile is marked ready, and 'perfil listo produccion' is refused before a
    READY qa-check;
  - qa-check against the MET sandbox: READY when the sandbox has both signers'
    certificates (the ones alta exported); NOT READY naming the signer whose
    certificate the sandbox does not have; after READY, production can be marked
    ready and submit no longer refuses it;
  - dgair import: a title authenticated by a test authority (key and certificate
    made here, Autenticacion cadena signed here) is recorded as authenticated; one
    whose selloTitulo, or one whose graduate's name, differs from what we signed
    is refused with the difference named.

Environment: FIRMANTE_BINARY_DIR, FIRMANTE_SOURCE_DIR, FIRMANTE_SHARED_DIR.
"""
import base64
import datetime
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

SRC = os.environ.get("FIRMANTE_SOURCE_DIR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = os.environ.get("FIRMANTE_BINARY_DIR") or os.path.join(SRC, "build")
TITULOS = os.path.join(BIN, "submitter", "titulos")
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
sys.path.insert(0, os.path.join(SRC, "tests", "met_sandbox"))

import test_agent as ta  # noqa: E402  (Agent)
import test_met_sandbox as sbt  # noqa: E402  (Sandbox)
import openpyxl  # noqa: E402
import PyKCS11  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

PIN = "48213957"
LABEL = "onboarding"
CVE = "090457"
CARRERAS = [("103337", "LICENCIATURA EN DERECHO", "1", "RVOE FEDERAL", "1470", "LICENCIATURA"),
            ("201455", "MAESTRÍA EN ADMINISTRACIÓN DE NEGOCIOS", "1", "RVOE FEDERAL", "20190877",
             "MAESTRÍA")]
RECTOR = dict(sec="rector", id="01", nombre="JUAN CARLOS", p="MÉNDEZ", s="ORTIZ",
              curp="MEOJ700515HDFNRN00", rfc="MEOJ700515AB1", cargo="3", cargo_txt="RECTOR",
              abr="DR.", serial="30001000000400001001")
SECRE = dict(sec="secretario", id="02", nombre="LAURA", p="RODRÍGUEZ", s="SÁNCHEZ",
             curp="ROSL750822MJCDNR01", rfc="ROSL750822QW2", cargo="6",
             cargo_txt="SECRETARIO GENERAL", abr="MTRA.", serial="30001000000400001002")
FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def titulos(*args, timeout=300):
    return subprocess.run([TITULOS] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def conf_text(signers):
    out = ["[institucion]", f"cveInstitucion = {CVE}",
           "nombreInstitucion = UNIVERSIDAD DEL VALLE DE COYOACÁN", "idEntidadFederativa = 09", ""]
    for cve, nom, aut, _, rvoe, _ in CARRERAS:
        out += [f"[carrera {cve}]", f"nombreCarrera = {nom}",
                f"idAutorizacionReconocimiento = {aut}", f"numeroRvoe = {rvoe}", ""]
    for s in signers:
        out += [f"[firmante {s['sec']}]", f"nombre = {s['nombre']}",
                f"primerApellido = {s['p']}", f"segundoApellido = {s['s']}",
                f"curp = {s.get('conf_curp', s['curp'])}", f"idCargo = {s['cargo']}",
                f"abrTitulo = {s['abr']}", f"key = pkcs11:token={LABEL};id=%{s['id']};type=private",
                ""]
    return "\n".join(out)


def write(path, text, mode=0o644):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def token_certs(tokdir):
    """CKA_VALUE of every certificate object on the token, by CKA_ID hex."""
    os.environ["SOFTHSM2_CONF"] = os.path.join(tokdir, "softhsm2.conf")
    lib = PyKCS11.PyKCS11Lib()
    lib.load(ta.MODULE)
    slot = [s for s in lib.getSlotList(tokenPresent=True)
            if lib.getTokenInfo(s).label.strip() == LABEL][0]
    sess = lib.openSession(slot)
    out = {}
    for o in sess.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_CERTIFICATE)]):
        cid, val = sess.getAttributeValue(o, [PyKCS11.CKA_ID, PyKCS11.CKA_VALUE])
        out[bytes(cid).hex()] = bytes(val)
    sess.closeSession()
    return out


def test_alta(work, tokdir, sock):
    conf = write(os.path.join(work, "institucion.conf"), conf_text([RECTOR, SECRE]))
    state = os.path.join(work, "titulos.db")
    out = os.path.join(work, "alta")
    r = titulos("alta", "--config", conf, "--out", out, "--socket", sock, "--state", state)
    check(r.returncode == 0, "alta: exit 0 (%s%s)" % (r.stdout, r.stderr))
    wb = openpyxl.load_workbook(os.path.join(out, f"alta-{CVE}.xlsx"))
    check(wb.sheetnames == ["Institución", "Carreras", "Firmantes"],
          "alta: sheets Institución, Carreras, Firmantes: %s" % wb.sheetnames)
    rows = [[c.value for c in row] for row in wb["Institución"].iter_rows()]
    check(rows[1] == [CVE, "UNIVERSIDAD DEL VALLE DE COYOACÁN"], "alta: institution row %s" % rows)
    rows = [[c.value for c in row] for row in wb["Carreras"].iter_rows()]
    check(rows[0] == ["cveCarrera", "nombreCarrera", "idAutorizacionReconocimiento",
                      "autorizacionReconocimiento", "numeroRvoe", "nivel"],
          "alta: careers header %s" % rows[0])
    check(rows[1:] == [list(c) for c in CARRERAS], "alta: careers with exact catalog texts %s"
          % rows[1:])
    rows = [[c.value for c in row] for row in wb["Firmantes"].iter_rows()]
    want = [[s["nombre"], s["p"], s["s"], s["curp"], s["cargo"], s["cargo_txt"], s["abr"],
             s["serial"]] for s in (RECTOR, SECRE)]
    check([r[:8] for r in rows[1:]] == want, "alta: signers with exact texts and noCertificado %s"
          % rows[1:])
    check(all(re.fullmatch(r"\d{4}-\d\d-\d\d", r[9] or "") for r in rows[1:]),
          "alta: certificate validity dates in the signers' sheet")
    on_token = token_certs(tokdir)
    for s in (RECTOR, SECRE):
        data = open(os.path.join(out, s["curp"] + ".cer"), "rb").read()
        check(data == on_token[s["id"]], f"alta: {s['curp']}.cer byte-identical to the token's "
              "certificate object")
    lista = open(os.path.join(out, "LISTA-DE-ENTREGA.txt"), encoding="utf-8").read()
    check("Institución Concentradora" in lista and "Credenciales de prueba" in lista and
          "DGAIR" in lista and RECTOR["curp"] + ".cer" in lista,
          "alta: the Spanish checklist names the .cer files, the clave concentradora, "
          "test credentials and DGAIR")
    return conf, state, out


def test_alta_refusals(work, sock, bad):
    for s, words, what in bad:
        conf = write(os.path.join(work, f"bad-{s['sec']}.conf"), conf_text([RECTOR, s]))
        out = os.path.join(work, f"alta-{s['sec']}")
        r = titulos("alta", "--config", conf, "--out", out, "--socket", sock, "--state",
                    os.path.join(work, "bad.db"))
        check(r.returncode == 1 and all(w in r.stderr for w in words) and
              f"firmante {s['sec']}" in r.stderr and not os.path.exists(out),
              f"alta: refuses {what}, says why, writes nothing (exit {r.returncode}: "
              f"{r.stderr.strip()})")


def test_solo_firmantes(work, sock, s45, state):
    conf = write(os.path.join(work, "renovado.conf"), conf_text([RECTOR, s45]))
    out = os.path.join(work, "actualizacion")
    r = titulos("alta", "--solo-firmantes", "--config", conf, "--out", out, "--socket", sock,
                "--state", state)
    check(r.returncode == 0, "alta --solo-firmantes: exit 0 (%s)" % r.stderr.strip())
    wb = openpyxl.load_workbook(os.path.join(out, f"actualizacion-firmantes-{CVE}.xlsx"))
    check("Carreras" not in wb.sheetnames and "Firmantes" in wb.sheetnames,
          "alta --solo-firmantes: only the signers' sheet %s" % wb.sheetnames)
    check(os.path.exists(os.path.join(out, s45["curp"] + ".cer")),
          "alta --solo-firmantes: the renewed signer's .cer")
    r = titulos("report", "--state", state)
    check(r.returncode == 0 and re.search(r"warning: the e\.firma certificate %s .* expires on "
                                          r"\S+, in 4[45] days" % s45["serial"], r.stdout),
          "report: warns about the certificate expiring within 60 days (%s)" % r.stdout.strip())
    check(RECTOR["serial"] not in r.stdout, "report: no warning for a certificate valid 4 years")


def met_conf(work, name, profile, url=None, ca=None):
    cred = write(os.path.join(work, name + ".cred"),
                 f"usuario = {sbt.USUARIO}\npassword = {sbt.PASSWORD}\n", 0o600)
    lines = ["[met]", f"profile = {profile}"]
    if url:
        lines.append(f"url = {url}")
    if ca:
        lines.append(f"ca-bundle = {ca}")
    lines += [f"credentials = {cred}", "poll-delay = 1", "poll-max-delay = 1",
              "poll-deadline = 120"]
    return write(os.path.join(work, name + ".conf"), "\n".join(lines) + "\n")


def sandbox(work, name, tls, certs):
    cfg = write(os.path.join(work, name + ".json"), json.dumps({
        "delay_seconds": 0.3, "first_lote": 5001,
        "accounts": [{"usuario": sbt.USUARIO, "password": sbt.PASSWORD, "cveInstitucion": CVE,
                      "certificados": certs,
                      "carreras": {c[0]: c[1] for c in CARRERAS}}]}, ensure_ascii=False))
    return sbt.Sandbox(work, cfg, tls, name)


def test_production_and_qa(work, conf, state, alta_dir, sock):
    prod = met_conf(work, "prod", "produccion")
    empty = os.path.join(work, "empty")
    os.makedirs(empty)
    r = titulos("submit", "--in", empty, "--state", state, "--met", prod)
    check(r.returncode == 1 and "not marked ready" in r.stderr,
          "submit: produccion refused before the profile is marked ready (%s)" % r.stderr.strip())
    r = titulos("perfil", "listo", "produccion", "--state", state)
    check(r.returncode == 1 and "QA" in r.stderr,
          "perfil listo produccion: refused before a READY qa-check (%s)" % r.stderr.strip())

    tls = json.loads(subprocess.run([sbt.SANDBOX, "make-tls", os.path.join(work, "tls")],
                                    check=True, capture_output=True, text=True).stdout)
    # only the rector's certificate registered: the secretario is named
    sb = sandbox(work, "sb-one", tls, [os.path.join(alta_dir, RECTOR["curp"] + ".cer")])
    try:
        qa = met_conf(work, "qa1", "sandbox", sb.url, tls["ca.pem"])
        r = titulos("qa-check", "--config", conf, "--met", qa, "--socket", sock, "--state",
                    state, "--work", os.path.join(work, "qa1"))
        print(r.stdout, r.stderr)
        check(r.returncode == 1 and "NOT READY" in r.stdout,
              "qa-check: NOT READY when a signer's certificate is not registered")
        m = re.search(r"signer secretario \([^)]*CURP %s\): NOT READY\n  title \S+: rejected: "
                      r"(.*)\n  fix: (.*)" % SECRE["curp"], r.stdout)
        check(bool(m) and "certificado de Emisor no ha sido registrado" in m.group(1) and
              "register this signer" in m.group(2),
              "qa-check: names the failing signer, the service's message and the fix")
        check(re.search(r"signer rector \([^)]*\): ready", r.stdout) is not None,
              "qa-check: the registered signer is ready")
    finally:
        sb.stop()
    r = titulos("perfil", "listo", "produccion", "--state", state)
    check(r.returncode == 1, "perfil listo produccion: refused after a NOT READY qa-check")

    sb = sandbox(work, "sb-both", tls, [os.path.join(alta_dir, s["curp"] + ".cer")
                                        for s in (RECTOR, SECRE)])
    try:
        qa = met_conf(work, "qa2", "sandbox", sb.url, tls["ca.pem"])
        qa_work = os.path.join(work, "qa2")
        r = titulos("qa-check", "--config", conf, "--met", qa, "--socket", sock, "--state",
                    state, "--work", qa_work)
        print(r.stdout, r.stderr)
        check(r.returncode == 0 and "result: READY" in r.stdout,
              "qa-check: READY with both certificates registered")
        check(len(re.findall(r": ready\n", r.stdout)) == 4,
              "qa-check: every signer and career ready")
        regs = sb.records()["registrations_by_folio"]
        check(len(regs) == 4 and all(v == 1 for v in regs.values()),
              "qa-check: the sandbox registered the 4 test titles once each")
    finally:
        sb.stop()
    r = titulos("submit", "--in", empty, "--state", state, "--met", prod)
    check(r.returncode == 1 and "not marked ready" in r.stderr,
          "submit: produccion still refused after QA until marked ready")
    r = titulos("perfil", "listo", "produccion", "--nota", "oficio DGP/123", "--state", state)
    check(r.returncode == 0 and "marked ready" in r.stdout,
          "perfil listo produccion: recorded after a READY qa-check (%s)" % r.stdout.strip())
    r = titulos("perfil", "ver", "--state", state)
    check(re.search(r"produccion\s+ready since \S+ by \S+: oficio DGP/123", r.stdout) is not None,
          "perfil ver: date, user and note recorded (%s)" % r.stdout.strip())
    r = titulos("submit", "--in", empty, "--state", state, "--met", prod)
    check(r.returncode == 0 and "not marked ready" not in r.stderr,
          "submit: produccion accepted once marked ready (%s%s)" % (r.stdout, r.stderr))
    return os.path.join(qa_work, "signed")


# ---- DGAIR ---------------------------------------------------------------

def authority(work):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    serial = "30001000000500009999"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AUTORIDAD DE PRUEBA DGAIR")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(int.from_bytes(serial.encode(), "big"))
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    path = os.path.join(work, "autoridad.cer")
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.DER))
    return key, serial, path


def authenticate(xml, key, serial, sello_titulo=None):
    """Insert an Autenticacion node signed over its five-field cadena (§11)."""
    sellos = re.findall(r' sello="([^"]*)"', xml)
    st = sello_titulo if sello_titulo is not None else "".join(sellos)
    fd, fecha = str(uuid.uuid4()), "2026-01-15T10:30:00"
    cadena = "||1.0|%s|%s|%s|%s||" % (fd, fecha, st, serial)
    sig = base64.b64encode(key.sign(cadena.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    node = ('<Autenticacion version="1.0" folioDigital="%s" fechaAutenticacion="%s" '
            'selloTitulo="%s" noCertificadoAutoridad="%s" selloAutenticacion="%s"/>'
            % (fd, fecha, st, serial, sig))
    return xml.replace("</TituloElectronico>", node + "</TituloElectronico>"), fd


def test_dgair(work, state, signed_dir):
    key, serial, cer = authority(work)
    titles = sorted(glob.glob(os.path.join(signed_dir, "*-C1.xml")))
    check(len(titles) == 1, "dgair: a signed test title to authenticate")
    xml = open(titles[0], encoding="utf-8").read()
    folio = re.search(r'folioControl="([^"]*)"', xml).group(1)
    d = os.path.join(work, "dgair")
    os.makedirs(d)
    good, fd = authenticate(xml, key, serial)
    p_good = write(os.path.join(d, "bueno.xml"), good)
    r = titulos("dgair", "import", "--autoridad-cer", cer, "--firmados", signed_dir, "--state",
                state, p_good)
    check(r.returncode == 0 and f"authenticated: folioControl {folio}, folioDigital {fd}" in
          r.stdout, "dgair import: an authenticated title is accepted (%s%s)" % (r.stdout,
                                                                                 r.stderr))
    bad_st, _ = authenticate(xml, key, serial,
                             sello_titulo="|".join(re.findall(r' sello="([^"]*)"', xml)) + "|")
    p = write(os.path.join(d, "sellotitulo.xml"), bad_st)
    r = titulos("dgair", "import", "--autoridad-cer", cer, "--firmados", signed_dir, "--state",
                state, p)
    check(r.returncode == 1 and "Autenticacion/@selloTitulo" in r.stderr and
          "authenticated" not in r.stdout.replace("0 of 1 title(s) recorded as authenticated", ""),
          "dgair import: selloTitulo other than our sellos refused, named (%s)" % r.stderr.strip())
    nombre = re.search(r'<Profesionista [^>]*nombre="([^"]*)"', xml).group(1)
    changed = re.sub(r'(<Profesionista [^>]*nombre=")([^"]*)"', r'\1\2 JOSÉ"', good)
    p = write(os.path.join(d, "nombre.xml"), changed)
    r = titulos("dgair", "import", "--autoridad-cer", cer, "--firmados", signed_dir, "--state",
                state, p)
    check(r.returncode == 1 and
          f"Profesionista/@nombre: we signed '{nombre}', the returned title has '{nombre} JOSÉ'"
          in r.stderr, "dgair import: a changed title field refused with the difference named "
          "(%s)" % r.stderr.strip())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged, _ = authenticate(xml, other_key, serial)
    p = write(os.path.join(d, "otra-autoridad.xml"), forged)
    r = titulos("dgair", "import", "--autoridad-cer", cer, "--firmados", signed_dir, "--state",
                state, p)
    check(r.returncode == 1 and "selloAutenticacion" in r.stderr,
          "dgair import: a node not signed by the authority refused (%s)" % r.stderr.strip())
    badfd = good.replace(fd, "FOLIO-1")
    p = write(os.path.join(d, "folio.xml"), badfd)
    r = titulos("dgair", "import", "--autoridad-cer", cer, "--firmados", signed_dir, "--state",
                state, p)
    check(r.returncode == 1 and "folioDigital: 'FOLIO-1' is not a UUID" in r.stderr,
          "dgair import: a folioDigital that is not a UUID refused")
    r = titulos("report", "--state", state)
    check("titulos dgair import): 1" in r.stdout, "report: one authenticated title")


def main():
    for tool in (TITULOS, ta.AGENT, ta.TESTTOKEN):
        if not os.path.exists(tool):
            print("missing", tool)
            return 1
    work = tempfile.mkdtemp(prefix="onb.", dir="/tmp")
    agent = None
    try:
        tok = os.path.join(work, "tok")
        tt = ta.TESTTOKEN
        subprocess.run([tt, "init", "--dir", tok, "--label", LABEL, "--pin", PIN, "--so-pin",
                        "1234567890"], check=True, capture_output=True)
        subprocess.run([tt, "ca", "--dir", tok], check=True, capture_output=True)
        now = datetime.datetime.now(datetime.timezone.utc)
        day = lambda n: (now + datetime.timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%S")  # noqa

        def signer(s, *extra):
            subprocess.run([tt, "signer", "--dir", tok, "--label", LABEL, "--pin", PIN, "--id",
                            s["id"], "--name", f"{s['nombre']} {s['p']} {s['s']}", "--curp",
                            s["curp"], "--rfc", s["rfc"], "--serial", s["serial"]] + list(extra),
                           check=True, capture_output=True)
        base = dict(RECTOR, p="PÉREZ", s="LUNA", nombre="ANA", abr="LIC.", cargo="6",
                    cargo_txt="SECRETARIO GENERAL")
        csd = dict(base, sec="csd", id="03", curp="PELA800101MDFRNN02", rfc="PELA800101AB2",
                   serial="30001000000400001003")
        expired = dict(base, sec="vencido", id="04", curp="PELA800102MDFRNN09",
                       rfc="PELA800102AB2", serial="30001000000400001004")
        soon = dict(base, sec="porvencer", id="05", curp="PELA800103MDFRNN06",
                    rfc="PELA800103AB2", serial="30001000000400001005")
        s45 = dict(base, sec="renovado", id="06", curp="PELA800104MDFRNN03",
                   rfc="PELA800104AB2", serial="30001000000400001006")
        other = dict(SECRE, sec="otracurp", conf_curp="PELA800105MDFRNN00")
        signer(RECTOR)
        signer(SECRE)
        signer(csd, "--kind", "csd")
        signer(expired, "--not-before", "2019-01-01", "--not-after", day(-3))
        signer(soon, "--not-after", day(10))
        signer(s45, "--not-after", day(45))
        os.environ["SOFTHSM2_CONF"] = os.path.join(tok, "softhsm2.conf")
        pinfile = write(os.path.join(work, "pin"), PIN + "\n", 0o600)
        agent = ta.Agent(work, "agent", f"{ta.STUB} --pin-file {pinfile}")
        sock = agent.sock

        conf, state, alta_dir = test_alta(work, tok, sock)
        test_alta_refusals(work, sock, [
            (csd, ["CSD"], "a CSD"),
            (expired, ["venció"], "an expired certificate"),
            (soon, ["vence", "menos de 30"], "a certificate expiring within 30 days"),
            (other, ["CURP", other["curp"], other["conf_curp"]], "a CURP other than the "
             "configured one")])
        test_solo_firmantes(work, sock, s45, state)
        signed = test_production_and_qa(work, conf, state, alta_dir, sock)
        test_dgair(work, state, signed)
    finally:
        if agent:
            agent.stop()
        if FAILURES:
            print("work directory kept:", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("%d failure(s)" % len(FAILURES))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
