#!/usr/bin/python3
"""Tests of the MET sandbox (tests/met_sandbox/met_sandbox.py).

Starts the sandbox twice on free ports (HTTPS with a test CA, verified; and
plain HTTP), signs titles built from the official reconstructed example with a
SAT-like signer made here, and checks the service end to end: lot upload,
polling, the result ZIP/XLS (read with xlrd, the same reader used on the real
DGP result file), duplicates, tampering, certificates, credentials,
cancellation and every fault mode.

Needs python3-lxml, python3-cryptography, python3-xlwt, python3-xlrd.
Environment: FIRMANTE_SHARED_DIR (the shared/ folder with spec/), optional
FIRMANTE_SOURCE_DIR.
"""
import base64
import copy
import datetime
import http.client
import io
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import zipfile

import xlrd
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

HERE = os.path.dirname(os.path.abspath(__file__))
SANDBOX = os.path.join(HERE, "met_sandbox.py")
SOURCE = os.environ.get("FIRMANTE_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
SHARED = os.environ.get("FIRMANTE_SHARED_DIR") or os.path.normpath(os.path.join(SOURCE, "..", "shared"))
SPEC = os.path.join(SHARED, "spec")
EXAMPLES = os.path.join(SPEC, "examples")

FIEL = os.path.join(SHARED, "fixtures", "sat", "FIEL_AAA010101AAA") + os.sep

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MET_NS = "http://ws.web.mec.sep.mx/schemas"
TE_NS = "https://www.siged.sep.gob.mx/titulos/"

USUARIO, PASSWORD, CVE = "qa-usuario", "qa-secreto-123", "010033"
OTRO_USUARIO, OTRO_PASSWORD = "otra-ies", "otra-clave"
CARRERA = ("103339", "INGENIERÍA EN NANOTECNOLOGÍA")
CURP_A = "PEMJ800101HDFRRN07"
CURP_B = "GOLM850505MJCRPR01"
CURP_C = "RAVS900909HNLMZL04"

MSG_OK = "Título electrónico registrado exitosamente"
MSG_CERT = "Error Bus criptografico: El certificado de Emisor no ha sido registrado o es inválido"
MSG_SECUENCIA = "Error Bus criptografico: La Secuencia no ha sido autenticada"
MSG_CREDENCIALES = "Usuario o contraseña incorrectos"

_seq = [0]


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def new_folio(tag):
    _seq[0] += 1
    return "SBX-%s-%d-%d" % (tag, os.getpid(), _seq[0])


# ---------------------------------------------------------------------------
# Result reader: one code path for the real DGP file and the sandbox's output
# ---------------------------------------------------------------------------
RESULT_HEADERS = ["ARCHIVO", "ESTATUS", "DESCRIPCION", "FOLIO CONTROL"]


def read_result_xls(data, test):
    """Check the shape of a MET result workbook and return its rows as dicts."""
    book = xlrd.open_workbook(file_contents=data)
    test.assertEqual(book.sheet_names(), ["Resultado"])
    test.assertEqual(book.biff_version, 80, "BIFF8 expected")
    test.assertEqual(book.codepage, 1200, "CODEPAGE 1200 (UTF-16) expected")
    sheet = book.sheet_by_name("Resultado")
    header = sheet.row(0)
    test.assertEqual([c.value for c in header], RESULT_HEADERS)
    test.assertTrue(all(c.ctype == xlrd.XL_CELL_TEXT for c in header))
    col = {c.value: i for i, c in enumerate(header)}
    rows = []
    for r in range(1, sheet.nrows):
        est = sheet.cell(r, col["ESTATUS"])
        test.assertEqual(est.ctype, xlrd.XL_CELL_NUMBER, "ESTATUS must be a number cell")
        test.assertIn(est.value, (1.0, 2.0))
        for name in ("ARCHIVO", "DESCRIPCION", "FOLIO CONTROL"):
            test.assertIn(sheet.cell(r, col[name]).ctype, (xlrd.XL_CELL_TEXT, xlrd.XL_CELL_EMPTY))
        rows.append({"ARCHIVO": sheet.cell_value(r, col["ARCHIVO"]),
                     "ESTATUS": int(est.value),
                     "DESCRIPCION": sheet.cell_value(r, col["DESCRIPCION"]),
                     "FOLIO CONTROL": sheet.cell_value(r, col["FOLIO CONTROL"])})
    return rows, book


def read_result_zip(data, numero, test):
    z = zipfile.ZipFile(io.BytesIO(data))
    test.assertIsNone(z.testzip())
    test.assertEqual(z.namelist(), ["ResultadoCargaTitulos%d.xls" % numero])
    return read_result_xls(z.read(z.namelist()[0]), test)


# ---------------------------------------------------------------------------
# A SAT-like signer and title signing, written here (not taken from the sandbox)
# ---------------------------------------------------------------------------
CADENA_FIELDS = [
    ("", "version"), ("", "folioControl"), ("FR", "curp"), ("FR", "idCargo"), ("FR", "cargo"),
    ("FR", "abrTitulo"), ("Institucion", "cveInstitucion"), ("Institucion", "nombreInstitucion"),
    ("Carrera", "cveCarrera"), ("Carrera", "nombreCarrera"), ("Carrera", "fechaInicio"),
    ("Carrera", "fechaTerminacion"), ("Carrera", "idAutorizacionReconocimiento"),
    ("Carrera", "autorizacionReconocimiento"), ("Carrera", "numeroRvoe"),
    ("Profesionista", "curp"), ("Profesionista", "nombre"), ("Profesionista", "primerApellido"),
    ("Profesionista", "segundoApellido"), ("Profesionista", "correoElectronico"),
    ("Expedicion", "fechaExpedicion"), ("Expedicion", "idModalidadTitulacion"),
    ("Expedicion", "modalidadTitulacion"), ("Expedicion", "fechaExamenProfesional"),
    ("Expedicion", "fechaExencionExamenProfesional"), ("Expedicion", "cumplioServicioSocial"),
    ("Expedicion", "idFundamentoLegalServicioSocial"), ("Expedicion", "fundamentoLegalServicioSocial"),
    ("Expedicion", "idEntidadFederativa"), ("Expedicion", "entidadFederativa"),
    ("Antecedente", "institucionProcedencia"), ("Antecedente", "idTipoEstudioAntecedente"),
    ("Antecedente", "tipoEstudioAntecedente"), ("Antecedente", "idEntidadFederativa"),
    ("Antecedente", "entidadFederativa"), ("Antecedente", "fechaInicio"),
    ("Antecedente", "fechaTerminacion"), ("Antecedente", "noCedula"),
]


def q(name):
    return "{%s}%s" % (TE_NS, name)


def cadena(root, fr):
    out = []
    for elem, attr in CADENA_FIELDS:
        node = root if elem == "" else fr if elem == "FR" else root.find(q(elem))
        out.append(node.get(attr) or "")
    return "||%s||" % "|".join(out)


class Signer:
    def __init__(self, ca_key, ca_name, curp, serial_digits, days=365):
        self.curp = curp
        self.no_cert = serial_digits
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "FIRMANTE DE PRUEBA %s" % curp),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FIRMANTE DE PRUEBA %s" % curp),
            x509.NameAttribute(NameOID.X500_UNIQUE_IDENTIFIER, "XAXX010101000 / "),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, " / %s" % curp),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "MX"),
        ])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name)
                .public_key(self.key.public_key())
                .serial_number(int.from_bytes(serial_digits.encode("ascii"), "big"))
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=days))
                .sign(ca_key, hashes.SHA256()))
        self.der = cert.public_bytes(serialization.Encoding.DER)


def build_title(signers, folio, before=None, after=None):
    """The official example with folio and signers; 'before' edits the tree before
    signing, 'after' after signing (tampering)."""
    root = etree.parse(os.path.join(EXAMPLES, "oficial-reconstruido-sin-firma.xml")).getroot()
    for c in list(root.iter(etree.Comment)):
        c.getparent().remove(c)
    root.set("folioControl", folio)
    frs = root.find(q("FirmaResponsables"))
    template = frs[0]
    frs.remove(template)
    for s in signers:
        fr = copy.deepcopy(template)
        fr.set("curp", s.curp)
        fr.set("noCertificadoResponsable", s.no_cert)
        fr.set("certificadoResponsable", base64.b64encode(s.der).decode())
        frs.append(fr)
    if before:
        before(root)
    for s, fr in zip(signers, frs):
        sig = s.key.sign(cadena(root, fr).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        fr.set("sello", base64.b64encode(sig).decode())
    if after:
        after(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def zip_of(entries):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries:
            z.writestr(name, data)
    return out.getvalue()


# ---------------------------------------------------------------------------
# SOAP client built on the spec's request examples
# ---------------------------------------------------------------------------
def envelope(kind, values, prefixed=False):
    name = {"carga": "soap-carga-request", "consulta": "soap-consulta-request",
            "descarga": "soap-descarga-request", "cancela": "soap-cancela-request"}[kind]
    if prefixed and kind != "cancela":
        name += "-prefixed"
    with open(os.path.join(EXAMPLES, name + ".xml"), encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    it = iter(values)

    def repl(m):
        from xml.sax.saxutils import escape
        return escape(str(next(it)))
    text = re.sub(r"\{\{[^}]*\}\}", repl, text)
    return text.encode("utf-8")


class Sandbox:
    def __init__(self, workdir, config, tls, name, state=None):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        self.state = state or os.path.join(self.dir, "state")
        self.tls = tls
        port_file = os.path.join(self.dir, "port")
        args = [SANDBOX, "serve", "--config", config, "--state", self.state, "--port", "0",
                "--port-file", port_file]
        if tls:
            args += ["--tls-cert", tls["server.pem"], "--tls-key", tls["server.key"]]
        else:
            args += ["--http"]
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                self.log.seek(0)
                raise RuntimeError("sandbox did not start: %s" % self.log.read())
            time.sleep(0.05)
        with open(port_file) as f:
            self.port = int(f.read())
        scheme = "https" if tls else "http"
        self.base = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.url = self.base + "/met-ws/services/"
        self.ctx = ssl.create_default_context(cafile=tls["ca.pem"]) if tls else None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=20)
        self.log.close()
        return rc

    def raw(self, body, path="/met-ws/services/", method="POST", timeout=30,
            ctype="text/xml; charset=utf-8"):
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers={"Content-Type": ctype, "SOAPAction": '""'})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def call(self, kind, values, prefixed=False):
        status, body = self.raw(envelope(kind, values, prefixed))
        return status, body, parse_response(body)

    def carga(self, nombre, data, usuario=USUARIO, password=PASSWORD, prefixed=False):
        return self.call("carga", [nombre, base64.b64encode(data).decode(), usuario, password],
                         prefixed)[2]

    def consulta(self, numero, usuario=USUARIO, password=PASSWORD, prefixed=False):
        return self.call("consulta", [numero, usuario, password], prefixed)[2]

    def descarga(self, numero, usuario=USUARIO, password=PASSWORD, prefixed=False):
        return self.call("descarga", [numero, usuario, password], prefixed)[2]

    def cancela(self, folio, motivo, usuario=USUARIO, password=PASSWORD):
        return self.call("cancela", [folio, motivo, usuario, password])[2]

    def control(self, obj):
        status, body = self.raw(json.dumps(obj).encode(), path="/_control",
                                ctype="application/json")
        return status, json.loads(body)

    def records(self):
        out = subprocess.run([SANDBOX, "records", "--state", self.state], check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out)


def parse_response(body):
    """Payload fields of a MET response; checks the env: prefix and namespaces."""
    try:
        env = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return None
    if env.tag != "{%s}Envelope" % SOAP_ENV:
        return None
    assert env.tag == "{%s}Envelope" % SOAP_ENV and env.prefix == "env", body[:200]
    payload = env.find("{%s}Body" % SOAP_ENV)[0]
    if payload.tag == "{%s}Fault" % SOAP_ENV:
        return {"_fault": True, "faultcode": payload.findtext("faultcode"),
                "faultstring": payload.findtext("faultstring")}
    qn = etree.QName(payload)
    assert qn.namespace == MET_NS and payload.prefix is None, payload.tag
    out = {"_name": qn.localname}
    for c in payload:
        assert etree.QName(c).namespace == MET_NS
        out[etree.QName(c).localname] = c.text or ""
    return out


# ---------------------------------------------------------------------------
class Base(unittest.TestCase):
    tls_mode = True
    check_validity = True

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="met-sandbox-test.")
        tls = None
        if cls.tls_mode:
            out = subprocess.run([SANDBOX, "make-tls", os.path.join(cls.work, "tls")],
                                 check=True, capture_output=True, text=True).stdout
            tls = json.loads(out)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "A.C. de pruebas del sandbox")])
        cls.a = Signer(ca_key, ca_name, CURP_A, "30001000000500000001")
        cls.b = Signer(ca_key, ca_name, CURP_B, "30001000000500000002")
        cls.c = Signer(ca_key, ca_name, CURP_C, "30001000000500000003")  # not registered
        for n, s in (("a", cls.a), ("b", cls.b), ("c", cls.c)):
            with open(os.path.join(cls.work, n + ".cer"), "wb") as f:
                f.write(s.der)
        cls.config = os.path.join(cls.work, "config.json")
        with open(cls.config, "w", encoding="utf-8") as f:
            json.dump({
                "delay_seconds": 1.0,
                "check_cert_validity": cls.check_validity,
                "first_lote": 5001,
                "accounts": [
                    {"usuario": USUARIO, "password": PASSWORD, "cveInstitucion": CVE,
                     "certificados": ["a.cer", "b.cer", FIEL + "certificate.cer"], "carreras": {CARRERA[0]: CARRERA[1]}},
                    {"usuario": OTRO_USUARIO, "password": OTRO_PASSWORD,
                     "cveInstitucion": "090001"},
                ],
            }, f, ensure_ascii=False)
        cls.sb = Sandbox(cls.work, cls.config, tls, "https" if tls else "http")

    @classmethod
    def tearDownClass(cls):
        rc = cls.sb.stop()
        shutil.rmtree(cls.work, ignore_errors=True)
        assert rc == 0, "sandbox did not stop cleanly on SIGTERM (rc %s)" % rc

    def wait_processed(self, numero, timeout=30, **kw):
        deadline = time.time() + timeout
        while True:
            r = self.sb.consulta(numero, **kw)
            if r["estatusLote"] == "1":
                self.assertEqual(r["mensaje"], "El número de lote %s se encuentra PROCESADO." % numero)
                return r
            self.assertEqual(r["estatusLote"], "0")
            self.assertIn("espera", r["mensaje"])
            self.assertLess(time.time(), deadline, "lot %s never processed" % numero)
            time.sleep(0.2)

    def upload_and_result(self, nombre, data, prefixed=False):
        r = self.sb.carga(nombre, data, prefixed=prefixed)
        self.assertTrue(r["numeroLote"].isdigit(), r)
        numero = int(r["numeroLote"])
        self.wait_processed(numero)
        d = self.sb.descarga(numero, prefixed=prefixed)
        self.assertEqual(d["mensaje"], "El número de lote %d finalizó el proceso, se descarga "
                         "archivo con la relación correspondiente" % numero)
        rows, _ = read_result_zip(base64.b64decode(d["titulosBase64"]), numero, self)
        return numero, rows


class FielSigner:
    """The SAT test e.firma of shared/fixtures/sat (expired in 2021)."""

    def __init__(self):
        self.curp = "HEGT761003MDFRNN09"  # the certificate holds " / HEGT761003MDFRNN09"
        self.no_cert = "30001000000300023685"
        self.der = read_bytes(FIEL + "certificate.cer")
        self.key = serialization.load_der_private_key(read_bytes(FIEL + "private_key.key"),
                                                      read_bytes(FIEL + "password.txt"))


class SatFixture:
    def test_sat_fiel_fixture(self):
        folio = new_folio("FIEL")
        _, rows = self.upload_and_result(folio + ".xml", build_title([FielSigner()], folio))
        if self.check_validity:  # registered, but expired
            self.assertEqual((rows[0]["ESTATUS"], rows[0]["DESCRIPCION"]), (2, MSG_CERT))
        else:
            self.assertEqual((rows[0]["ESTATUS"], rows[0]["DESCRIPCION"]), (1, MSG_OK))


class HttpsFlow(Base, SatFixture):
    """Main flows over HTTPS, server certificate verified against the test CA."""

    def test_a_register_then_b_duplicate(self):
        folio = new_folio("A")
        xml = build_title([self.a], folio)
        r = self.sb.carga(folio + ".xml", xml)
        numero = int(r["numeroLote"])
        self.assertGreaterEqual(numero, 5001)
        # before the delay: consulta 0 / espera, descarga espera without a file
        c = self.sb.consulta(numero)
        self.assertEqual(c["estatusLote"], "0")
        self.assertIn("espera", c["mensaje"])
        d = self.sb.descarga(numero)
        self.assertIn("espera", d["mensaje"])
        self.assertNotIn("titulosBase64", d)
        self.wait_processed(numero)
        d = self.sb.descarga(numero)
        rows, book = read_result_zip(base64.b64decode(d["titulosBase64"]), numero, self)
        self.assertEqual(book.user_name, "weblogic")
        self.assertEqual(rows, [{"ARCHIVO": folio + ".xml", "ESTATUS": 1, "DESCRIPCION": MSG_OK,
                                 "FOLIO CONTROL": folio}])
        # (b) the same title again, now zipped and with the prefixed request style
        numero2, rows = self.upload_and_result("LOTE-%s.zip" % folio,
                                               zip_of([(folio + ".xml", xml)]), prefixed=True)
        self.assertGreater(numero2, numero)
        self.assertEqual(rows, [{"ARCHIVO": folio + ".xml", "ESTATUS": 2,
                                 "DESCRIPCION": "Folio de control previamente registrado: " + folio,
                                 "FOLIO CONTROL": folio}])
        rec = self.sb.records()
        self.assertEqual(rec["registrations_by_folio"][folio], 1)
        f = [x for x in rec["folios"] if x["folioControl"] == folio][0]
        import hashlib
        self.assertEqual(f["sha256"], [hashlib.sha256(xml).hexdigest()])

    def test_c_tampered_field(self):
        folio = new_folio("C")
        xml = build_title([self.a], folio,
                          after=lambda r: r.find(q("Profesionista")).set("nombre", "ANTONIA"))
        _, rows = self.upload_and_result(folio + ".xml", xml)
        self.assertEqual(rows[0]["ESTATUS"], 2)
        self.assertEqual(rows[0]["DESCRIPCION"], MSG_SECUENCIA)
        self.assertNotIn(folio, self.sb.records()["registrations_by_folio"])

    def test_d_unregistered_certificate(self):
        folio = new_folio("D")
        _, rows = self.upload_and_result(folio + ".xml", build_title([self.c], folio))
        self.assertEqual((rows[0]["ESTATUS"], rows[0]["DESCRIPCION"]), (2, MSG_CERT))

    def test_two_signers(self):
        folio = new_folio("2S")
        _, rows = self.upload_and_result(folio + ".xml", build_title([self.a, self.b], folio))
        self.assertEqual((rows[0]["ESTATUS"], rows[0]["DESCRIPCION"]), (1, MSG_OK))
        # second signer's sello broken: the first signer alone does not carry the title
        folio = new_folio("2S")

        def swap(root):
            frs = root.find(q("FirmaResponsables"))
            frs[1].set("sello", frs[0].get("sello"))
        _, rows = self.upload_and_result(folio + ".xml",
                                         build_title([self.a, self.b], folio, after=swap))
        self.assertEqual(rows[0]["DESCRIPCION"], MSG_SECUENCIA)

    def test_rules_in_one_lot(self):
        ok = new_folio("R")

        def title(before=None, after=None, signers=None):
            return build_title(signers or [self.a], new_folio("R"), before, after)

        def attr(elem, name, value):
            def f(root):
                node = root.find(q(elem)) if elem != "FR" else \
                    root.find(q("FirmaResponsables"))[0]
                if value is None:
                    del node.attrib[name]
                else:
                    node.set(name, value)
            return f
        good = build_title([self.a], ok)
        cases = [
            ("01-ok.xml", good, 1, MSG_OK),
            ("02-cargo.xml", title(lambda r: (attr("FR", "idCargo", "5")(r),
                                              attr("FR", "cargo", "RESPONSABLE DE EXPEDICIÓN ")(r))),
             2, "Nombre de cargo no válido en el nodo FirmaResponsables: RESPONSABLE DE EXPEDICIÓN"),
            ("03-entidad.xml", title(attr("Antecedente", "idEntidadFederativa", "9")), 2,
             "Identificador de entidad federativa no válido en el nodo Antecedente: 9"),
            ("04-carrera.xml", title(attr("Carrera", "nombreCarrera", "INGENIERIA EN NANOTECNOLOGIA")),
             2, "Nombre de carrera no válido en el nodo Carrera: INGENIERIA EN NANOTECNOLOGIA"),
            ("05-curp-firmante.xml", title(attr("FR", "curp", CURP_B)), 2,
             "Error Bus criptografico: La Curp del %s no es igual a: %s" % (CURP_B, CURP_A)),
            ("06-examen.xml", title(attr("Expedicion", "fechaExamenProfesional", None)), 2,
             "La fecha de examen profesional es requerida para la modalidad de titulación en el "
             "nodo Expedición: null"),
            ("07-orden.xml", title(attr("Carrera", "fechaTerminacion", "2010-09-01")), 2,
             "La fecha de terminación de la carrera no puede ser posterior a la fecha de examen "
             "profesional en el nodo Expedición: 2010-09-01"),
            ("08-servicio.xml", title(attr("Expedicion", "cumplioServicioSocial", "0")), 2,
             "El cumplimiento del servicio social no corresponde con el nivel educativo en el "
             "nodo Expedición: 0"),
            ("09-renapo.xml", title(attr("Profesionista", "curp", "AICA770112HDFRNL0")), 2,
             "Validación RENAPO, CURP no válida en el nodo Profesionista: La CURP no se encuentra "
             "en la base de datos"),
            ("10-repetido.xml", good, 2, "Folio de control previamente registrado: " + ok),
            ("11-nocert.xml", title(after=attr("FR", "noCertificadoResponsable",
                                                "30001000000500000009")), 2,
             "Error Bus criptografico: No existe información para los datos proporcionados"),
            ("12-institucion.xml", title(attr("Institucion", "cveInstitucion", "090001")), 2,
             "El usuario %s no pertenece a la Institución Educativa." % USUARIO),
            ("13-exencion.xml", title(lambda r: (attr("Expedicion", "idModalidadTitulacion", "2")(r),
                                                 attr("Expedicion", "modalidadTitulacion",
                                                      "POR PROMEDIO")(r))), 2,
             "La fecha de exención es requerida para la modalidad de titulación en el nodo "
             "Expedición: null"),
        ]

        def authority(root):  # §11: a real Autenticacion node does not pass the bare XSD
            a = etree.SubElement(root, q("Autenticacion"))
            a.attrib.update({"version": "1.0", "folioDigital": "ad662d33-6934-459c-a128-bdf0393e0f44",
                             "fechaAutenticacion": "2019-01-01T10:00:00",
                             "selloTitulo": root.find(q("FirmaResponsables"))[0].get("sello"),
                             "noCertificadoAutoridad": "30001000000500000099",
                             "selloAutenticacion": "QUJD"})
        cases.append(("15-autenticacion.xml", title(after=authority), 1, MSG_OK))
        entries = [(n, x) for n, x, _, _ in cases]
        entries.insert(3, ("LEEME.txt", b"not a title"))
        entries.append(("14-roto.xml", b"<TituloElectronico"))
        _, rows = self.upload_and_result("LOTE-REGLAS.zip", zip_of(entries))
        self.assertEqual([r["ARCHIVO"] for r in rows],
                         [n for n, _, _, _ in cases] + ["14-roto.xml"])
        for row, (name, _, est, desc) in zip(rows, cases):
            self.assertEqual((row["ESTATUS"], row["DESCRIPCION"]), (est, desc), name)
        self.assertEqual(rows[-1]["ESTATUS"], 2)
        self.assertEqual(self.sb.records()["registrations_by_folio"][ok], 1)

    def test_e_credentials(self):
        xml = build_title([self.a], new_folio("E"))
        for u, p in ((USUARIO, "wrong"), ("nadie", PASSWORD)):
            r = self.sb.carga("x.xml", xml, usuario=u, password=p)
            self.assertEqual(r["numeroLote"], "")
            self.assertEqual(r["mensaje"], MSG_CREDENCIALES)
        # an account of another institution cannot read this institution's lot
        r = self.sb.carga("e.xml", xml)
        numero = int(r["numeroLote"])
        r = self.sb.consulta(numero, usuario=OTRO_USUARIO, password=OTRO_PASSWORD)
        self.assertEqual(r["mensaje"], "El usuario %s no pertenece a la Institución Educativa."
                         % OTRO_USUARIO)
        self.assertNotEqual(r["estatusLote"], "1")
        r = self.sb.descarga(numero, usuario=USUARIO, password="wrong")
        self.assertEqual(r["mensaje"], MSG_CREDENCIALES)
        self.assertNotIn("titulosBase64", r)
        self.wait_processed(numero)
        # the request log never holds the password or the payload
        raw = read_bytes(os.path.join(self.sb.state, "met_sandbox.sqlite3"))
        self.assertNotIn(PASSWORD.encode(), raw)
        rec = json.dumps(self.sb.records())
        self.assertNotIn(PASSWORD, rec)
        self.assertNotIn(base64.b64encode(xml).decode()[:60], rec)
        ops = [x["operation"] for x in self.sb.records()["requests"]]
        self.assertIn("cargaTituloElectronico", ops)

    def test_f_cancel_twice(self):
        folio = new_folio("F")
        _, rows = self.upload_and_result(folio + ".xml", build_title([self.a], folio))
        self.assertEqual(rows[0]["ESTATUS"], 1)
        r = self.sb.cancela("NO-EXISTE-" + folio, "R3")
        self.assertNotEqual(r["codigo"], "0")
        self.assertIn("NO-EXISTE-" + folio, r["mensaje"])
        r = self.sb.cancela(folio, "R9")
        self.assertNotEqual(r["codigo"], "0")
        self.assertIn("Motivo", r["mensaje"])
        r = self.sb.cancela(folio, "R3", password="wrong")
        self.assertNotEqual(r["codigo"], "0")
        self.assertEqual(r["mensaje"], MSG_CREDENCIALES)
        r = self.sb.cancela(folio, "R3")
        self.assertEqual(r, {"_name": "cancelaTituloElectronicoResponse", "codigo": "0",
                             "mensaje": "El folio %s fue cancelado exitosamente." % folio})
        r = self.sb.cancela(folio, "R3")
        self.assertNotEqual(r["codigo"], "0")
        self.assertIn("ya se encuentra cancelado", r["mensaje"])
        rec = self.sb.records()
        f = [x for x in rec["folios"] if x["folioControl"] == folio][0]
        self.assertTrue(f["cancelled"])
        self.assertEqual(len([c for c in rec["cancellations"] if c["folioControl"] == folio]), 1)

    def test_wsdl_and_soap_shape(self):
        for path in ("/met-ws/services/TitulosElectronicos.wsdl", "/met-ws/services/?wsdl"):
            status, body = self.sb.raw(None, path=path, method="GET")
            self.assertEqual(status, 200)
            doc = etree.fromstring(body)
            ops = doc.xpath("//wsdl:portType/wsdl:operation/@name",
                            namespaces={"wsdl": "http://schemas.xmlsoap.org/wsdl/"})
            self.assertEqual(len(ops), 4)
            loc = doc.xpath("//soap:address/@location",
                            namespaces={"soap": "http://schemas.xmlsoap.org/wsdl/soap/"})
            self.assertEqual(loc, [self.sb.url])
        # unqualified children are refused with a SOAP Client fault
        body = envelope("consulta", [1, USUARIO, PASSWORD]).replace(
            b'<consultaProcesoTituloElectronicoRequest xmlns="http://ws.web.mec.sep.mx/schemas">',
            b'<m:consultaProcesoTituloElectronicoRequest xmlns:m="http://ws.web.mec.sep.mx/schemas">'
        ).replace(b"</consultaProcesoTituloElectronicoRequest>",
                  b"</m:consultaProcesoTituloElectronicoRequest>")
        status, resp = self.sb.raw(body)
        self.assertEqual(status, 500)
        r = parse_response(resp)
        self.assertTrue(r["_fault"])
        self.assertEqual(r["faultcode"], "env:Client")
        # POST to the .wsdl URL works too (dispatch on the body)
        status, resp = self.sb.raw(envelope("consulta", [1, USUARIO, PASSWORD], True),
                                   path="/met-ws/services/TitulosElectronicos.wsdl")
        self.assertEqual(status, 200)
        self.assertEqual(parse_response(resp)["_name"], "consultaProcesoTituloElectronicoResponse")

    def test_tls_verified(self):
        # the server certificate verifies for 127.0.0.1 and localhost; an
        # unverified default context (system CAs only) refuses it
        with self.assertRaises(urllib.error.URLError):
            urllib.request.urlopen(self.sb.base + "/met-ws/services/?wsdl",
                                   context=ssl.create_default_context(), timeout=10)
        with urllib.request.urlopen("https://localhost:%d/met-ws/services/?wsdl" % self.sb.port,
                                    context=self.sb.ctx, timeout=10) as r:
            self.assertEqual(r.status, 200)

    def test_h_real_result_shape(self):
        rows, book = read_result_xls(
            read_bytes(os.path.join(EXAMPLES, "met-result-lote257945.xls")), self)
        self.assertEqual(rows, [{"ARCHIVO": "abc.xml", "ESTATUS": 2, "DESCRIPCION":
                                 "Folio de control previamente registrado: 0001",
                                 "FOLIO CONTROL": "0001"}])
        self.assertEqual(book.user_name, "weblogic")
        rows2, _ = read_result_zip(
            read_bytes(os.path.join(EXAMPLES, "met-result-lote257945.zip")), 257945, self)
        self.assertEqual(rows, rows2)


class HttpFaults(Base, SatFixture):
    """Fault modes over plain HTTP; signer certificate validity not checked."""
    tls_mode = False
    check_validity = False

    def setUp(self):
        self.assertEqual(self.sb.control({"clear": True})[1], {"faults": []})

    def test_g_http500_scoped_and_counted(self):
        status, ctl = self.sb.control({"add": {"mode": "http500", "operation": "consulta",
                                               "count": 2}})
        self.assertEqual(status, 200)
        self.assertEqual(ctl["faults"][0]["count"], 2)
        # another operation is not affected
        r = self.sb.descarga(999999)
        self.assertIn("999999", r["mensaje"])
        for _ in range(2):
            status, body = self.sb.raw(envelope("consulta", [1, USUARIO, PASSWORD]))
            self.assertEqual(status, 500)
            self.assertIsNone(parse_response(body))
        status, body = self.sb.raw(envelope("consulta", [1, USUARIO, PASSWORD]))
        self.assertEqual(status, 200)
        self.assertEqual(self.sb.control({})[1]["faults"], [])

    def test_g_soap_fault_via_file(self):
        path = os.path.join(self.sb.state, "faults.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"faults": [{"mode": "soap-fault", "operation": "all", "count": 1,
                                   "faultstring": "Servicio no disponible"}]}, f)
        os.replace(path + ".tmp", path)
        status, body = self.sb.raw(envelope("consulta", [1, USUARIO, PASSWORD]))
        self.assertEqual(status, 500)
        r = parse_response(body)
        self.assertEqual((r["_fault"], r["faultcode"], r["faultstring"]),
                         (True, "env:Server", "Servicio no disponible"))
        status, _ = self.sb.raw(envelope("consulta", [1, USUARIO, PASSWORD]))
        self.assertEqual(status, 200)

    def test_g_drop_after_accept(self):
        subprocess.run([SANDBOX, "fault", "drop-after-accept", "--state", self.sb.state,
                        "--operation", "carga"], check=True, capture_output=True)
        folio = new_folio("G")
        before = len(self.sb.records()["lots"])
        with self.assertRaises((http.client.HTTPException, ConnectionError, urllib.error.URLError)):
            self.sb.raw(envelope("carga", [folio + ".xml",
                                           base64.b64encode(build_title([self.a], folio)).decode(),
                                           USUARIO, PASSWORD]))
        rec = self.sb.records()
        self.assertEqual(len(rec["lots"]), before + 1)
        numero = rec["lots"][-1]["numeroLote"]
        self.assertEqual(rec["requests"][-1]["fault"], "drop-after-accept")
        self.assertEqual(rec["requests"][-1]["numeroLote"], numero)
        # the lot was accepted: it is processed and registers the title
        self.wait_processed(numero)
        self.assertEqual(self.sb.records()["registrations_by_folio"][folio], 1)

    def test_g_slow(self):
        self.sb.control({"add": {"mode": "slow", "operation": "all", "count": 1, "seconds": 1.5}})
        t = time.time()
        r = self.sb.consulta(1)
        self.assertGreaterEqual(time.time() - t, 1.4)
        self.assertEqual(r["_name"], "consultaProcesoTituloElectronicoResponse")
        t = time.time()
        self.sb.consulta(1)
        self.assertLess(time.time() - t, 1.0)

    def test_g_malformed(self):
        for variant in ("truncated", "non-xml"):
            self.sb.control({"add": {"mode": "malformed", "operation": "consultaProcesoTituloElectronico",
                                     "variant": variant}})
            status, body = self.sb.raw(envelope("consulta", [1, USUARIO, PASSWORD]))
            self.assertEqual(status, 200)
            with self.assertRaises(etree.XMLSyntaxError):
                etree.fromstring(body)
        status, body = self.sb.raw(envelope("consulta", [1, USUARIO, PASSWORD]))
        self.assertIsNotNone(parse_response(body))

    def test_g_bad_credentials(self):
        self.sb.control({"add": {"mode": "bad-credentials", "operation": "carga", "count": 1}})
        xml = build_title([self.a], new_folio("BC"))
        r = self.sb.carga("bc.xml", xml)
        self.assertEqual((r["numeroLote"], r["mensaje"]), ("", MSG_CREDENCIALES))
        r = self.sb.carga("bc.xml", xml)
        self.assertTrue(r["numeroLote"].isdigit())

    def test_control_rejects_unknown_mode(self):
        status, body = self.sb.control({"add": {"mode": "explode"}})
        self.assertEqual(status, 400)

    def test_double_base64_refused(self):
        xml = build_title([self.a], new_folio("B64"))
        r = self.sb.carga("lote.zip", base64.b64encode(zip_of([("a.xml", xml)])))
        self.assertEqual(r["numeroLote"], "")
        self.assertIn("ZIP", r["mensaje"])

    def test_chunked_upload(self):
        folio = new_folio("CH")
        body = envelope("carga", [folio + ".xml",
                                  base64.b64encode(build_title([self.a], folio)).decode(),
                                  USUARIO, PASSWORD])
        conn = http.client.HTTPConnection("127.0.0.1", self.sb.port, timeout=20)
        conn.putrequest("POST", "/met-ws/services/")
        conn.putheader("Content-Type", "text/xml; charset=utf-8")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for i in range(0, len(body), 1000):
            piece = body[i:i + 1000]
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        r = parse_response(resp.read())
        conn.close()
        self.assertTrue(r["numeroLote"].isdigit(), r)


class Persistence(Base):
    """State survives a restart: lot numbers go on, registered folios stay."""
    tls_mode = False

    def test_restart_keeps_state(self):
        folio = new_folio("P")
        xml = build_title([self.a], folio)
        first, rows = self.upload_and_result(folio + ".xml", xml)
        self.assertEqual(rows[0]["ESTATUS"], 1)
        self.assertEqual(self.sb.stop(), 0)
        type(self).sb = Sandbox(self.work, self.config, None, "again", state=self.sb.state)
        second, rows = self.upload_and_result(folio + ".xml", xml)
        self.assertEqual(second, first + 1)
        self.assertEqual(rows[0]["DESCRIPCION"], "Folio de control previamente registrado: " + folio)
        self.assertEqual(self.sb.records()["registrations_by_folio"][folio], 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
