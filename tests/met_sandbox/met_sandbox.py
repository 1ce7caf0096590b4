#!/usr/bin/python3
"""MET sandbox: a local stand-in for the DGP's TitulosElectronicos SOAP service.

It speaks the four operations of the QA WSDL (SOAP 1.1, document/literal,
namespace http://ws.web.mec.sep.mx/schemas), accepts lots (one .xml or a
.zip of .xml), checks every title on its own (XSD, catalogs, registry,
conditional rules, CURP structure, certificates, its own cadena original and
sello verification) and answers with the DGP's result shape: a ZIP holding
ResultadoCargaTitulos<lote>.xls, sheet "Resultado".

It is written from the specification only (shared/spec/met-web-service.md
and titulo-electronico.md), independently of the project's C code, so that
it gives a second opinion.

Subcommands:
  serve      run the service (default when the first argument is an option)
  make-tls   create a test CA and a server certificate for 127.0.0.1/localhost
  records    print the persistent state as JSON (lots, titles, folios, ...)
  fault      add a fault to DIR/faults.json (the server re-reads it per request)

Python 3 standard library plus python3-lxml, python3-cryptography, python3-xlwt.
"""
import argparse
import base64
import binascii
import csv
import datetime
import hashlib
import hmac
import http.server
import io
import json
import os
import queue
import re
import signal
import socketserver
import sqlite3
import ssl
import sys
import tempfile
import threading
import time
import zipfile
from xml.sax.saxutils import escape as xml_escape

from lxml import etree

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("FIRMANTE_SOURCE_DIR") or os.path.normpath(os.path.join(HERE, "..", ".."))
DEFAULT_CATALOGOS = os.path.join(SOURCE_DIR, "data", "catalogos.csv")
DEFAULT_XSD = os.path.join(SOURCE_DIR, "data", "TituloElectronico.xsd")
DEFAULT_WSDL = os.path.join(HERE, "TitulosElectronicos-qa.wsdl")

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MET_NS = "http://ws.web.mec.sep.mx/schemas"
TE_NS = "https://www.siged.sep.gob.mx/titulos/"
SERVICE_PATH = "/met-ws/services/"

OPERATIONS = ("cargaTituloElectronico", "consultaProcesoTituloElectronico",
              "descargaTituloElectronico", "cancelaTituloElectronico")
OP_ALIASES = {"carga": OPERATIONS[0], "consulta": OPERATIONS[1],
              "descarga": OPERATIONS[2], "cancela": OPERATIONS[3]}
FAULT_MODES = ("http500", "soap-fault", "drop-after-accept", "slow", "malformed",
               "bad-credentials")

MAX_REQUEST_BYTES = 256 * 1024 * 1024
MAX_ENTRY_BYTES = 32 * 1024 * 1024

# --------------------------------------------------------------------------
# DGP message texts (met-web-service.md §7). Texts marked "sandbox" are not
# documented DGP wordings; they follow the pattern of the documented ones.
# --------------------------------------------------------------------------
MSG_OK = "Título electrónico registrado exitosamente"
MSG_DUP = "Folio de control previamente registrado: {}"
MSG_RENAPO_CURP = ("Validación RENAPO, CURP no válida en el nodo Profesionista: "
                   "La CURP no se encuentra en la base de datos")
MSG_CERT = "Error Bus criptografico: El certificado de Emisor no ha sido registrado o es inválido"
MSG_CURP_CERT = "Error Bus criptografico: La Curp del {} no es igual a: {}"
MSG_NO_INFO = "Error Bus criptografico: No existe información para los datos proporcionados"
MSG_SECUENCIA = "Error Bus criptografico: La Secuencia no ha sido autenticada"
MSG_CARRERA = "Nombre de carrera no válido en el nodo Carrera: {}"
MSG_CVE_CARRERA = "Clave de carrera no válida en el nodo Carrera: {}"  # sandbox
MSG_INSTITUCION = "Nombre de institución no válido en el nodo Institucion: {}"  # sandbox
MSG_NO_PERTENECE = "El usuario {} no pertenece a la Institución Educativa."
MSG_CREDENCIALES = "Usuario o contraseña incorrectos"
MSG_EXAMEN_REQ = ("La fecha de examen profesional es requerida para la modalidad de "
                  "titulación en el nodo Expedición: null")
MSG_EXENCION_REQ = ("La fecha de exención es requerida para la modalidad de titulación "
                    "en el nodo Expedición: null")
MSG_EXAMEN_SOBRA = ("La fecha de examen profesional no corresponde a la modalidad de "
                    "titulación en el nodo Expedición: {}")  # sandbox
MSG_EXENCION_SOBRA = ("La fecha de exención no corresponde a la modalidad de titulación "
                      "en el nodo Expedición: {}")  # sandbox
MSG_TERMINACION_EXAMEN = ("La fecha de terminación de la carrera no puede ser posterior a la "
                          "fecha de examen profesional en el nodo Expedición: {}")
MSG_TERMINACION_EXENCION = ("La fecha de terminación de la carrera no puede ser posterior a la "
                            "fecha de exención en el nodo Expedición: {}")  # sandbox
MSG_INICIO_CARRERA = ("La fecha de inicio de la carrera no puede ser posterior a la fecha de "
                      "terminación en el nodo Carrera: {}")  # sandbox
MSG_EXAMEN_EXPEDICION = ("La fecha de examen profesional o de exención no puede ser posterior a "
                         "la fecha de expedición en el nodo Expedición: {}")  # sandbox
MSG_EXPEDICION_FUTURA = ("La fecha de expedición no puede ser posterior a la fecha actual en el "
                         "nodo Expedición: {}")  # sandbox
MSG_INICIO_ANTECEDENTE = ("La fecha de inicio no puede ser posterior a la fecha de terminación "
                          "en el nodo Antecedente: {}")  # sandbox
MSG_SERVICIO = ("El cumplimiento del servicio social no corresponde con el nivel educativo en el "
                "nodo Expedición: {}")
MSG_ENTIDAD_ID = "Identificador de entidad federativa no válido en el nodo {}: {}"
MSG_XML = "El archivo no es un documento XML bien formado: {}"  # sandbox
MSG_XSD = "El documento no es válido contra el esquema del título electrónico: {}"  # sandbox

# --------------------------------------------------------------------------
# Catalogs and title rules (titulo-electronico.md §3–§10)
# --------------------------------------------------------------------------

# §5.2: (element relative to the root or "FR" for the signer, attribute)
CADENA_FIELDS = (
    (None, "version"), (None, "folioControl"),
    ("FR", "curp"), ("FR", "idCargo"), ("FR", "cargo"), ("FR", "abrTitulo"),
    ("Institucion", "cveInstitucion"), ("Institucion", "nombreInstitucion"),
    ("Carrera", "cveCarrera"), ("Carrera", "nombreCarrera"), ("Carrera", "fechaInicio"),
    ("Carrera", "fechaTerminacion"), ("Carrera", "idAutorizacionReconocimiento"),
    ("Carrera", "autorizacionReconocimiento"), ("Carrera", "numeroRvoe"),
    ("Profesionista", "curp"), ("Profesionista", "nombre"), ("Profesionista", "primerApellido"),
    ("Profesionista", "segundoApellido"), ("Profesionista", "correoElectronico"),
    ("Expedicion", "fechaExpedicion"), ("Expedicion", "idModalidadTitulacion"),
    ("Expedicion", "modalidadTitulacion"), ("Expedicion", "fechaExamenProfesional"),
    ("Expedicion", "fechaExencionExamenProfesional"), ("Expedicion", "cumplioServicioSocial"),
    ("Expedicion", "idFundamentoLegalServicioSocial"),
    ("Expedicion", "fundamentoLegalServicioSocial"), ("Expedicion", "idEntidadFederativa"),
    ("Expedicion", "entidadFederativa"), ("Antecedente", "institucionProcedencia"),
    ("Antecedente", "idTipoEstudioAntecedente"), ("Antecedente", "tipoEstudioAntecedente"),
    ("Antecedente", "idEntidadFederativa"), ("Antecedente", "entidadFederativa"),
    ("Antecedente", "fechaInicio"), ("Antecedente", "fechaTerminacion"),
    ("Antecedente", "noCedula"),
)
assert len(CADENA_FIELDS) == 38

CURP_RE = re.compile(
    r"^[A-Z][AEIOUX][A-Z]{2}\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])[HM]"
    r"(AS|BC|BS|CC|CL|CM|CS|CH|DF|DG|GT|GR|HG|JC|MC|MN|MS|NT|NL|OC|PL|QT|QR|SP|SL|SR|TC|TS|TL"
    r"|VZ|YN|ZS|NE)[B-DF-HJ-NP-TV-Z]{3}[0-9A-Z]\d$")
DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def te(name):
    return "{%s}%s" % (TE_NS, name)


def cadena_original(root, fr):
    """The cadena original of one FirmaResponsable (§5): 38 fields, '||…||'."""
    values = []
    for elem, attr in CADENA_FIELDS:
        if elem is None:
            node = root
        elif elem == "FR":
            node = fr
        else:
            node = root.find(te(elem))
        values.append(node.get(attr, "") if node is not None else "")
    return "||" + "|".join(values) + "||"


def load_catalogs(path):
    cats = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            cats.setdefault(row["catalogo"], {})[row["id"]] = (row["descripcion"], row["detalle"])
    return cats


def parse_date(value):
    if value is None:
        return None
    m = DATE_RE.match(value)
    if not m:
        return None
    try:
        return datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def cert_curp(cert):
    from cryptography.x509.oid import NameOID
    for a in cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER):
        return a.value.split("/")[-1].strip()
    return ""


def cert_serial_ascii(cert):
    """§7: the serial's magnitude bytes read as ASCII; None unless 20 digits."""
    n = cert.serial_number
    if n <= 0:
        return None
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    if len(raw) != 20 or any(b < 0x30 or b > 0x39 for b in raw):
        return None
    return raw.decode("ascii")


class Rejected(Exception):
    """A title check failed; args[0] is the DESCRIPCION."""


class TitleChecker:
    def __init__(self, catalogos_path, xsd_path, check_cert_validity=True):
        self.cats = load_catalogs(catalogos_path)
        self.schema = etree.XMLSchema(etree.parse(xsd_path))
        self.schema_lock = threading.Lock()
        self.check_cert_validity = check_cert_validity

    # Each check raises Rejected with the message of the first failure.
    def check(self, raw, ctx, is_registered):
        """Return (estatus, descripcion, folio). ctx: usuario, cve, institution."""
        folio = ""
        try:
            parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
            root = etree.fromstring(raw, parser)
        except etree.XMLSyntaxError as e:
            return 2, MSG_XML.format(e), folio
        folio = root.get("folioControl", "") if root.tag == te("TituloElectronico") else ""
        try:
            self._xsd(root)
            self._institution(root, ctx)
            if is_registered(ctx["cve"], folio):
                raise Rejected(MSG_DUP.format(folio))
            self._career(root, ctx)
            self._catalogs(root)
            self._modalidad(root)
            self._dates(root)
            self._servicio_social(root)
            self._curp(root)
            self._signers(root, ctx)
        except Rejected as r:
            return 2, r.args[0], folio
        return 1, MSG_OK, folio

    def _xsd(self, root):
        doc = etree.fromstring(etree.tostring(root))
        for a in doc.findall(te("Autenticacion")):
            doc.remove(a)  # §11: the published XSD cannot describe the real node
        with self.schema_lock:
            ok = self.schema.validate(doc)
            err = self.schema.error_log.last_error
        if not ok:
            raise Rejected(MSG_XSD.format(err.message if err is not None else "inválido"))

    def _institution(self, root, ctx):
        inst = root.find(te("Institucion"))
        if inst.get("cveInstitucion") != ctx["cve"]:
            raise Rejected(MSG_NO_PERTENECE.format(ctx["usuario"]))
        nombre = ctx["institution"].get("nombreInstitucion")
        if nombre is not None and inst.get("nombreInstitucion") != nombre:
            raise Rejected(MSG_INSTITUCION.format(inst.get("nombreInstitucion").strip()))

    def _career(self, root, ctx):
        carreras = ctx["institution"].get("carreras")
        if not carreras:
            return
        c = root.find(te("Carrera"))
        cve = c.get("cveCarrera")
        if cve not in carreras:
            raise Rejected(MSG_CVE_CARRERA.format(cve))
        if c.get("nombreCarrera") != carreras[cve]:
            raise Rejected(MSG_CARRERA.format(c.get("nombreCarrera").strip()))

    def _pair(self, node, catalog, id_attr, text_attr, label, nodename, optional_text=False):
        cat = self.cats[catalog]
        ident = node.get(id_attr)
        if ident not in cat:
            if catalog == "entidadFederativa":
                raise Rejected(MSG_ENTIDAD_ID.format(nodename, ident))
            raise Rejected("Identificador de %s no válido en el nodo %s: %s" % (label, nodename, ident))
        if text_attr is None:
            return
        text = node.get(text_attr)
        if text is None and optional_text:
            return
        if text != cat[ident][0]:
            raise Rejected("Nombre de %s no válido en el nodo %s: %s"
                           % (label, nodename, (text or "null").strip()))

    def _catalogs(self, root):
        for fr in root.findall(te("FirmaResponsables") + "/" + te("FirmaResponsable")):
            self._pair(fr, "cargo", "idCargo", "cargo", "cargo", "FirmaResponsables")
        self._pair(root.find(te("Carrera")), "autorizacionReconocimiento",
                   "idAutorizacionReconocimiento", "autorizacionReconocimiento",
                   "autorización o reconocimiento", "Carrera")
        exp = root.find(te("Expedicion"))
        self._pair(exp, "modalidadTitulacion", "idModalidadTitulacion", "modalidadTitulacion",
                   "modalidad de titulación", "Expedición")
        self._pair(exp, "cumplioServicioSocial", "cumplioServicioSocial", None,
                   "cumplimiento del servicio social", "Expedición")
        self._pair(exp, "fundamentoLegalServicioSocial", "idFundamentoLegalServicioSocial",
                   "fundamentoLegalServicioSocial", "fundamento legal del servicio social",
                   "Expedición")
        self._pair(exp, "entidadFederativa", "idEntidadFederativa", "entidadFederativa",
                   "entidad federativa", "Expedición")
        ant = root.find(te("Antecedente"))
        self._pair(ant, "tipoEstudioAntecedente", "idTipoEstudioAntecedente",
                   "tipoEstudioAntecedente", "tipo de estudio antecedente", "Antecedente")
        self._pair(ant, "entidadFederativa", "idEntidadFederativa", "entidadFederativa",
                   "entidad federativa", "Antecedente", optional_text=True)

    def _modalidad(self, root):
        exp = root.find(te("Expedicion"))
        tipo = self.cats["modalidadTitulacion"][exp.get("idModalidadTitulacion")][1]
        examen = exp.get("fechaExamenProfesional")
        exencion = exp.get("fechaExencionExamenProfesional")
        if tipo == "ACTA DE EXAMEN":
            if examen is None:
                raise Rejected(MSG_EXAMEN_REQ)
            if exencion is not None:
                raise Rejected(MSG_EXENCION_SOBRA.format(exencion))
        else:
            if exencion is None:
                raise Rejected(MSG_EXENCION_REQ)
            if examen is not None:
                raise Rejected(MSG_EXAMEN_SOBRA.format(examen))

    def _dates(self, root):
        car = root.find(te("Carrera"))
        exp = root.find(te("Expedicion"))
        ant = root.find(te("Antecedente"))
        inicio = parse_date(car.get("fechaInicio"))
        termino = parse_date(car.get("fechaTerminacion"))
        if inicio and termino and inicio > termino:
            raise Rejected(MSG_INICIO_CARRERA.format(car.get("fechaInicio")))
        examen = parse_date(exp.get("fechaExamenProfesional"))
        exencion = parse_date(exp.get("fechaExencionExamenProfesional"))
        if examen and termino and termino > examen:
            raise Rejected(MSG_TERMINACION_EXAMEN.format(car.get("fechaTerminacion")))
        if exencion and termino and termino > exencion:
            raise Rejected(MSG_TERMINACION_EXENCION.format(car.get("fechaTerminacion")))
        expedicion = parse_date(exp.get("fechaExpedicion"))
        for d, attr in ((examen, "fechaExamenProfesional"),
                        (exencion, "fechaExencionExamenProfesional")):
            if d and expedicion and d > expedicion:
                raise Rejected(MSG_EXAMEN_EXPEDICION.format(exp.get(attr)))
        if expedicion and expedicion > datetime.date.today():
            raise Rejected(MSG_EXPEDICION_FUTURA.format(exp.get("fechaExpedicion")))
        a_inicio = parse_date(ant.get("fechaInicio"))
        a_termino = parse_date(ant.get("fechaTerminacion"))
        if a_inicio and a_termino and a_inicio > a_termino:
            raise Rejected(MSG_INICIO_ANTECEDENTE.format(ant.get("fechaInicio")))

    def _servicio_social(self, root):
        # §10: postgraduate titles (antecedente 1 MAESTRÍA, 2 LICENCIATURA) -> 0;
        # licenciatura and TSU titles -> 1.
        exp = root.find(te("Expedicion"))
        cumplio = exp.get("cumplioServicioSocial")
        posgrado = root.find(te("Antecedente")).get("idTipoEstudioAntecedente") in ("1", "2")
        if (posgrado and cumplio != "0") or (not posgrado and cumplio != "1"):
            raise Rejected(MSG_SERVICIO.format(cumplio))

    def _curp(self, root):
        if not CURP_RE.match(root.find(te("Profesionista")).get("curp", "")):
            raise Rejected(MSG_RENAPO_CURP)

    def _signers(self, root, ctx):
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        registered = ctx["institution"].get("_der", set())
        for fr in root.findall(te("FirmaResponsables") + "/" + te("FirmaResponsable")):
            try:
                der = base64.b64decode(fr.get("certificadoResponsable", ""), validate=True)
                cert = x509.load_der_x509_certificate(der)
            except (ValueError, binascii.Error):
                raise Rejected(MSG_CERT)
            if der not in registered:
                raise Rejected(MSG_CERT)
            if self.check_cert_validity:
                now = datetime.datetime.now(datetime.timezone.utc)
                start = getattr(cert, "not_valid_before_utc", None) or \
                    cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
                end = getattr(cert, "not_valid_after_utc", None) or \
                    cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
                if not start <= now <= end:
                    raise Rejected(MSG_CERT)
            serial = cert_serial_ascii(cert)
            if serial is None or serial != fr.get("noCertificadoResponsable"):
                raise Rejected(MSG_NO_INFO)
            ccurp = cert_curp(cert)
            if ccurp != fr.get("curp"):
                raise Rejected(MSG_CURP_CERT.format(fr.get("curp"), ccurp))
            key = cert.public_key()
            if not isinstance(key, rsa.RSAPublicKey):
                raise Rejected(MSG_SECUENCIA)
            try:
                sello = base64.b64decode(fr.get("sello", ""), validate=True)
                key.verify(sello, cadena_original(root, fr).encode("utf-8"),
                           padding.PKCS1v15(), hashes.SHA256())
            except (ValueError, binascii.Error, InvalidSignature):
                raise Rejected(MSG_SECUENCIA)


# --------------------------------------------------------------------------
# Result workbook (met-web-service.md §6)
# --------------------------------------------------------------------------
RESULT_HEADERS = ("ARCHIVO", "ESTATUS", "DESCRIPCION", "FOLIO CONTROL")


def _biff8_write_access():
    """xlwt writes the WRITEACCESS user name without the BIFF8 string header;
    replace the record with a proper one (2-byte length, flags, 8-bit chars,
    padded with spaces to 112 bytes), as in the DGP's files."""
    from struct import pack
    from xlwt import BIFFRecords

    class WriteAccessRecord(BIFFRecords.BiffRecord):
        _REC_ID = 0x005C

        def __init__(self, owner):
            name = owner[:0x30].encode("latin-1", "replace")
            head = pack("<HB", len(name), 0) + name
            self._rec_data = head + b" " * (0x70 - len(head))
    BIFFRecords.WriteAccessRecord = WriteAccessRecord


def result_zip(numero, rows):
    """rows: [(archivo, estatus, descripcion, folio)] -> ZIP bytes."""
    import xlwt
    if not getattr(result_zip, "_patched", False):
        _biff8_write_access()
        result_zip._patched = True
    wb = xlwt.Workbook(encoding="utf-8")
    wb.set_owner("weblogic")
    ws = wb.add_sheet("Resultado")
    for col, h in enumerate(RESULT_HEADERS):
        ws.write(0, col, h)
    for r, (archivo, estatus, descripcion, folio) in enumerate(rows, 1):
        ws.write(r, 0, archivo)
        ws.write(r, 1, int(estatus))
        ws.write(r, 2, descripcion)
        ws.write(r, 3, folio or "")
    xls = io.BytesIO()
    wb.save(xls)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("ResultadoCargaTitulos%d.xls" % numero, xls.getvalue())
    return out.getvalue()


# --------------------------------------------------------------------------
# Persistent state (sqlite3; every change is one transaction)
# --------------------------------------------------------------------------
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS lots(
  numero INTEGER PRIMARY KEY, usuario TEXT, cve TEXT, nombre_archivo TEXT,
  payload BLOB, payload_sha256 TEXT, received_at REAL, ready_at REAL,
  processed_at REAL, result_zip BLOB);
CREATE TABLE IF NOT EXISTS titles(
  lote INTEGER, idx INTEGER, archivo TEXT, folio TEXT, estatus INTEGER,
  descripcion TEXT, sha256 TEXT, PRIMARY KEY(lote, idx));
CREATE TABLE IF NOT EXISTS registrations(
  id INTEGER PRIMARY KEY, cve TEXT, folio TEXT, sha256 TEXT, lote INTEGER,
  archivo TEXT, at REAL);
CREATE TABLE IF NOT EXISTS cancellations(
  id INTEGER PRIMARY KEY, cve TEXT, folio TEXT, registration INTEGER,
  motivo TEXT, usuario TEXT, at REAL);
CREATE TABLE IF NOT EXISTS requests(
  id INTEGER PRIMARY KEY, at REAL, operation TEXT, usuario TEXT, lote INTEGER,
  folio TEXT, http_status INTEGER, result TEXT, fault TEXT);
"""


class State:
    def __init__(self, state_dir):
        os.makedirs(state_dir, exist_ok=True)
        self.dir = state_dir
        self.lock = threading.RLock()
        self.db = sqlite3.connect(os.path.join(state_dir, "met_sandbox.sqlite3"),
                                  check_same_thread=False, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA_SQL)

    def tx(self, fn):
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                r = fn(self.db)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return r

    def query(self, sql, args=()):
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def close(self):
        with self.lock:
            self.db.close()

    def new_lot(self, usuario, cve, nombre, payload, first_lote, delay):
        def fn(db):
            top = db.execute("SELECT MAX(numero) FROM lots").fetchone()[0] or 0
            numero = max(top + 1, first_lote)
            now = time.time()
            db.execute("INSERT INTO lots(numero, usuario, cve, nombre_archivo, payload, "
                       "payload_sha256, received_at, ready_at) VALUES(?,?,?,?,?,?,?,?)",
                       (numero, usuario, cve, nombre, payload,
                        hashlib.sha256(payload).hexdigest(), now, now + delay))
            return numero
        return self.tx(fn)

    def active_registration(self, cve, folio):
        rows = self.query(
            "SELECT r.id, r.sha256, (SELECT COUNT(*) FROM cancellations c WHERE c.registration = r.id) "
            "FROM registrations r WHERE r.cve = ? AND r.folio = ? ORDER BY r.id DESC LIMIT 1",
            (cve, folio))
        return rows[0] if rows else None

    def log_request(self, operation, usuario, lote, folio, status, result, fault):
        self.tx(lambda db: db.execute(
            "INSERT INTO requests(at, operation, usuario, lote, folio, http_status, result, fault) "
            "VALUES(?,?,?,?,?,?,?,?)",
            (time.time(), operation, usuario, lote, folio, status, result, fault)))

    def records(self):
        out = {"lots": [], "folios": [], "registrations_by_folio": {}, "cancellations": [],
               "requests": []}
        for (numero, usuario, cve, nombre, sha, rec, ready, proc) in self.query(
                "SELECT numero, usuario, cve, nombre_archivo, payload_sha256, received_at, "
                "ready_at, processed_at FROM lots ORDER BY numero"):
            titles = [{"archivo": a, "folioControl": f, "estatus": e, "descripcion": d,
                       "sha256": s} for (a, f, e, d, s) in self.query(
                "SELECT archivo, folio, estatus, descripcion, sha256 FROM titles "
                "WHERE lote = ? ORDER BY idx", (numero,))]
            out["lots"].append({"numeroLote": numero, "usuario": usuario, "cveInstitucion": cve,
                                "nombreArchivo": nombre, "sha256": sha, "received_at": rec,
                                "ready_at": ready, "processed_at": proc, "titles": titles})
        folios = {}
        for (rid, cve, folio, sha, lote, archivo, at) in self.query(
                "SELECT id, cve, folio, sha256, lote, archivo, at FROM registrations ORDER BY id"):
            f = folios.setdefault((cve, folio), {"cveInstitucion": cve, "folioControl": folio,
                                                 "registrations": 0, "sha256": [], "lotes": [],
                                                 "cancelled": False})
            f["registrations"] += 1
            f["sha256"].append(sha)
            f["lotes"].append(lote)
            cancelled = self.query("SELECT motivo FROM cancellations WHERE registration = ?", (rid,))
            f["cancelled"] = bool(cancelled)
            if cancelled:
                f["motCancelacion"] = cancelled[0][0]
        for f in folios.values():
            out["folios"].append(f)
            out["registrations_by_folio"][f["folioControl"]] = (
                out["registrations_by_folio"].get(f["folioControl"], 0) + f["registrations"])
        out["cancellations"] = [
            {"cveInstitucion": c, "folioControl": f, "motCancelacion": m, "usuario": u, "at": at}
            for (c, f, m, u, at) in self.query(
                "SELECT cve, folio, motivo, usuario, at FROM cancellations ORDER BY id")]
        out["requests"] = [
            {"at": at, "operation": op, "usuario": u, "numeroLote": lote, "folioControl": f,
             "http_status": st, "result": r, "fault": fa}
            for (at, op, u, lote, f, st, r, fa) in self.query(
                "SELECT at, operation, usuario, lote, folio, http_status, result, fault "
                "FROM requests ORDER BY id")]
        return out


# --------------------------------------------------------------------------
# Faults on command: STATE/faults.json, re-read on every SOAP request
# --------------------------------------------------------------------------
def write_json_atomic(path, obj):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp.", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def normalize_fault(f):
    if not isinstance(f, dict) or f.get("mode") not in FAULT_MODES:
        raise ValueError("fault mode must be one of: %s" % ", ".join(FAULT_MODES))
    op = f.get("operation", "all")
    op = OP_ALIASES.get(op, op)
    if op != "all" and op not in OPERATIONS:
        raise ValueError("operation must be 'all' or one of: %s" % ", ".join(OPERATIONS))
    count = int(f.get("count", 1))
    g = dict(f)
    g["operation"] = op
    g["count"] = count
    if g["mode"] == "slow":
        g["seconds"] = float(f.get("seconds", 5))
    if g["mode"] == "malformed":
        g.setdefault("variant", "truncated")
        if g["variant"] not in ("truncated", "non-xml"):
            raise ValueError("malformed variant must be truncated or non-xml")
    return g


class Faults:
    def __init__(self, state_dir):
        self.path = os.path.join(state_dir, "faults.json")
        self.lock = threading.Lock()

    def _read(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            print("met_sandbox: ignoring unreadable %s: %s" % (self.path, e), file=sys.stderr)
            return []
        faults = data.get("faults", []) if isinstance(data, dict) else data
        out = []
        for f in faults:
            try:
                out.append(normalize_fault(f))
            except (ValueError, TypeError) as e:
                print("met_sandbox: ignoring fault %r: %s" % (f, e), file=sys.stderr)
        return out

    def list(self):
        with self.lock:
            return self._read()

    def set(self, faults):
        faults = [normalize_fault(f) for f in faults]
        with self.lock:
            write_json_atomic(self.path, {"faults": faults})
        return faults

    def add(self, fault):
        fault = normalize_fault(fault)
        with self.lock:
            faults = self._read()
            faults.append(fault)
            write_json_atomic(self.path, {"faults": faults})
        return fault

    def take(self, operation):
        """The first fault that applies to operation (None = unknown), used up by one."""
        with self.lock:
            faults = self._read()
            for f in faults:
                if f["count"] == 0:
                    continue
                if f["operation"] != "all" and f["operation"] != operation:
                    continue
                if f["count"] > 0:
                    f["count"] -= 1
                keep = [g for g in faults if g["count"] != 0]
                write_json_atomic(self.path, {"faults": keep})
                return f
        return None


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------
def load_der(path):
    from cryptography import x509
    data = open(path, "rb").read()
    if data.lstrip().startswith(b"-----BEGIN"):
        from cryptography.hazmat.primitives import serialization
        data = x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER)
    x509.load_der_x509_certificate(data)
    return data


class Config:
    def __init__(self, path, state_override=None):
        self.path = os.path.abspath(path)
        base = os.path.dirname(self.path)
        with open(path, encoding="utf-8") as f:
            c = json.load(f)

        def rel(p):
            return p if os.path.isabs(p) else os.path.join(base, p)

        self.state_dir = state_override or rel(c.get("state_dir", "state"))
        self.delay = float(c.get("delay_seconds", 2))
        self.first_lote = int(c.get("first_lote", 1001))
        self.check_cert_validity = bool(c.get("check_cert_validity", True))
        self.reuse_after_cancel = bool(c.get("allow_folio_reuse_after_cancel", False))
        self.cancel_success_codigo = int(c.get("cancel_success_codigo", 0))
        self.catalogos = rel(c["catalogos"]) if c.get("catalogos") else DEFAULT_CATALOGOS
        self.xsd = rel(c["xsd"]) if c.get("xsd") else DEFAULT_XSD
        self.wsdl = rel(c["wsdl"]) if c.get("wsdl") else DEFAULT_WSDL
        self.accounts = {}
        self.institutions = {}
        for cve, inst in (c.get("instituciones") or {}).items():
            self._merge_institution(cve, inst, rel)
        for a in c.get("accounts", []):
            if not a.get("usuario") or a.get("password") is None or not a.get("cveInstitucion"):
                raise ValueError("every account needs usuario, password and cveInstitucion")
            self.accounts[a["usuario"]] = {"password": str(a["password"]),
                                           "cve": a["cveInstitucion"]}
            self._merge_institution(a["cveInstitucion"], a, rel)

    def _merge_institution(self, cve, src, rel):
        inst = self.institutions.setdefault(cve, {"_der": set(), "carreras": {}})
        if src.get("nombreInstitucion"):
            inst["nombreInstitucion"] = src["nombreInstitucion"]
        for p in src.get("certificados", []):
            inst["_der"].add(load_der(rel(p)))
        inst["carreras"].update(src.get("carreras") or {})


# --------------------------------------------------------------------------
# SOAP
# --------------------------------------------------------------------------
class SoapClientError(Exception):
    """The request is not a valid MET request (answered with a Client fault)."""


def soap_response(name, fields):
    parts = []
    for k, v in fields:
        if v is None:
            continue
        v = str(v)
        parts.append("<%s>%s</%s>" % (k, xml_escape(v), k) if v else "<%s/>" % k)
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<env:Envelope xmlns:env="%s"><env:Header/><env:Body>'
            '<%s xmlns="%s">%s</%s></env:Body></env:Envelope>'
            % (SOAP_ENV, name, MET_NS, "".join(parts), name)).encode("utf-8")


def soap_fault(code, text):
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            '<env:Envelope xmlns:env="%s"><env:Header/><env:Body><env:Fault>'
            '<faultcode>env:%s</faultcode><faultstring xml:lang="es">%s</faultstring>'
            '</env:Fault></env:Body></env:Envelope>'
            % (SOAP_ENV, code, xml_escape(text))).encode("utf-8")


def parse_request(body):
    """Return (operation, {child: text}) of a MET request envelope."""
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
        env = etree.fromstring(body, parser)
    except etree.XMLSyntaxError as e:
        raise SoapClientError("Mensaje SOAP no válido: %s" % e)
    if env.tag != "{%s}Envelope" % SOAP_ENV:
        raise SoapClientError("Se esperaba un sobre SOAP 1.1 (%s)" % SOAP_ENV)
    bodies = env.findall("{%s}Body" % SOAP_ENV)
    if len(bodies) != 1:
        raise SoapClientError("El sobre SOAP debe tener un Body")
    payload = [e for e in bodies[0] if isinstance(e.tag, str)]
    if len(payload) != 1:
        raise SoapClientError("El Body debe contener un solo elemento")
    req = payload[0]
    qn = etree.QName(req)
    if qn.namespace != MET_NS or not qn.localname.endswith("Request") \
            or qn.localname[:-len("Request")] not in OPERATIONS:
        raise SoapClientError("No se encontró el punto final para {%s}%s"
                              % (qn.namespace or "", qn.localname))
    op = qn.localname[:-len("Request")]
    fields = {}
    for child in req:
        if not isinstance(child.tag, str):
            continue
        cq = etree.QName(child)
        if cq.namespace != MET_NS:
            raise SoapClientError("Elemento no calificado o en otro espacio de nombres: %s "
                                  "(se espera %s)" % (child.tag, MET_NS))
        if cq.localname == "autenticacion":
            for sub in child:
                if not isinstance(sub.tag, str):
                    continue
                sq = etree.QName(sub)
                if sq.namespace != MET_NS:
                    raise SoapClientError("Elemento no calificado o en otro espacio de nombres: "
                                          "%s (se espera %s)" % (sub.tag, MET_NS))
                fields["autenticacion/" + sq.localname] = sub.text or ""
            fields["autenticacion"] = ""
        else:
            fields[cq.localname] = child.text or ""
    required = {
        "cargaTituloElectronico": ("nombreArchivo", "archivoBase64"),
        "consultaProcesoTituloElectronico": ("numeroLote",),
        "descargaTituloElectronico": ("numeroLote",),
        "cancelaTituloElectronico": ("folioControl", "motCancelacion"),
    }[op] + ("autenticacion/usuario", "autenticacion/password")
    for r in required:
        if r not in fields:
            raise SoapClientError("Falta el elemento %s en %sRequest" % (r, op))
    if "numeroLote" in fields:
        if not re.match(r"^\s*[+-]?\d+\s*$", fields["numeroLote"]):
            raise SoapClientError("numeroLote no es un entero: %r" % fields["numeroLote"][:40])
        fields["numeroLote"] = int(fields["numeroLote"])
    if op == "cargaTituloElectronico" and not 2 <= len(fields["nombreArchivo"]) <= 100:
        raise SoapClientError("nombreArchivo debe tener de 2 a 100 caracteres")
    return op, fields


def split_lot(nombre, data):
    """Return [(archivo, xml bytes)] of a lot, or raise ValueError with the reason."""
    ext = os.path.splitext(nombre.lower())[1]
    is_zip = data[:4] == b"PK\x03\x04"
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    is_xml = stripped[:1] == b"<"
    if ext == ".zip" and not is_zip:
        raise ValueError("El archivo %s no es un ZIP válido" % nombre)
    if ext == ".xml" and not is_xml:
        raise ValueError("El archivo %s no es un XML válido" % nombre)
    if is_zip:
        try:
            z = zipfile.ZipFile(io.BytesIO(data))
            out = []
            for info in z.infolist():
                if info.is_dir() or not info.filename.lower().endswith(".xml"):
                    continue
                if info.file_size > MAX_ENTRY_BYTES:
                    out.append((info.filename, None))
                    continue
                try:
                    out.append((info.filename, z.read(info)))
                except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError):
                    out.append((info.filename, None))
        except zipfile.BadZipFile as e:
            raise ValueError("El archivo %s no es un ZIP válido: %s" % (nombre, e))
        if not out:
            raise ValueError("El archivo %s no contiene títulos electrónicos (.xml)" % nombre)
        return out
    if is_xml:
        return [(nombre, data)]
    raise ValueError("El archivo %s no es un ZIP ni un XML (¿Base64 aplicado dos veces?)" % nombre)


# --------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------
class Sandbox:
    def __init__(self, config):
        self.config = config
        self.state = State(config.state_dir)
        self.faults = Faults(config.state_dir)
        self.checker = TitleChecker(config.catalogos, config.xsd, config.check_cert_validity)
        self.motivos = set(self.checker.cats.get("motivoCancelacion", {}))
        self.queue = queue.Queue()
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self._work, name="lot-worker", daemon=True)
        for (numero,) in self.state.query("SELECT numero FROM lots WHERE processed_at IS NULL "
                                          "ORDER BY numero"):
            self.queue.put(numero)
        self.worker.start()

    def stop(self):
        self.stopping.set()
        self.queue.put(None)
        self.worker.join(timeout=10)
        self.state.close()

    # -- authentication ----------------------------------------------------
    def authenticate(self, fields, force_bad=False):
        usuario = fields.get("autenticacion/usuario", "")
        password = fields.get("autenticacion/password", "")
        acct = self.config.accounts.get(usuario)
        if force_bad or acct is None or not hmac.compare_digest(
                acct["password"].encode("utf-8"), password.encode("utf-8")):
            return None
        return {"usuario": usuario, "cve": acct["cve"],
                "institution": self.config.institutions.get(acct["cve"], {})}

    # -- lot processing ----------------------------------------------------
    def _work(self):
        while not self.stopping.is_set():
            numero = self.queue.get()
            if numero is None:
                return
            try:
                self._process(numero)
            except Exception as e:  # keep the worker alive; report once
                print("met_sandbox: processing lot %s failed: %r" % (numero, e), file=sys.stderr)

    def _process(self, numero):
        usuario, cve, nombre, payload = self.state.query(
            "SELECT usuario, cve, nombre_archivo, payload FROM lots WHERE numero = ?", (numero,))[0]
        ctx = {"usuario": usuario, "cve": cve,
               "institution": self.config.institutions.get(cve, {})}
        entries = split_lot(nombre, payload)
        rows = []
        seen = set()  # folios registered earlier in this same lot

        def is_registered(c, folio):
            if (c, folio) in seen:
                return True
            reg = self.state.active_registration(c, folio)
            if reg is None:
                return False
            cancelled = reg[2] > 0
            return not (cancelled and self.config.reuse_after_cancel)

        for archivo, raw in entries:
            if raw is None:
                rows.append((archivo, 2, "El archivo %s no se pudo leer del ZIP" % archivo, "", ""))
                continue
            estatus, desc, folio = self.checker.check(raw, ctx, is_registered)
            if estatus == 1:
                seen.add((cve, folio))
            rows.append((archivo, estatus, desc, folio, hashlib.sha256(raw).hexdigest()))
        zbytes = result_zip(numero, [r[:4] for r in rows])

        def fn(db):
            now = time.time()
            for i, (archivo, estatus, desc, folio, sha) in enumerate(rows):
                db.execute("INSERT OR REPLACE INTO titles(lote, idx, archivo, folio, estatus, "
                           "descripcion, sha256) VALUES(?,?,?,?,?,?,?)",
                           (numero, i, archivo, folio, estatus, desc, sha))
                if estatus == 1:
                    db.execute("INSERT INTO registrations(cve, folio, sha256, lote, archivo, at) "
                               "VALUES(?,?,?,?,?,?)", (cve, folio, sha, numero, archivo, now))
            db.execute("UPDATE lots SET processed_at = ?, result_zip = ? WHERE numero = ?",
                       (now, zbytes, numero))
        self.state.tx(fn)

    def _lot_for(self, numero, auth):
        rows = self.state.query("SELECT cve, ready_at, processed_at, result_zip FROM lots "
                                "WHERE numero = ?", (numero,))
        if not rows:
            return None, "No se encontró información del número de lote %d." % numero
        cve, ready_at, processed_at, zbytes = rows[0]
        if cve != auth["cve"]:
            return None, MSG_NO_PERTENECE.format(auth["usuario"])
        ready = processed_at is not None and time.time() >= ready_at
        return {"ready": ready, "zip": zbytes}, None

    # -- operations: each returns (response bytes, log dict) ----------------
    def op_carga(self, f, auth):
        log = {"usuario": f.get("autenticacion/usuario")}
        if auth is None:
            log["result"] = MSG_CREDENCIALES
            return soap_response("cargaTituloElectronicoResponse",
                                 [("numeroLote", ""), ("mensaje", MSG_CREDENCIALES)]), log
        try:
            data = base64.b64decode(re.sub(r"\s+", "", f["archivoBase64"]), validate=True)
        except (binascii.Error, ValueError):
            msg = "El contenido de archivoBase64 no es Base64 válido"
            log["result"] = msg
            return soap_response("cargaTituloElectronicoResponse",
                                 [("numeroLote", ""), ("mensaje", msg)]), log
        try:
            split_lot(f["nombreArchivo"], data)
        except ValueError as e:
            log["result"] = str(e)
            return soap_response("cargaTituloElectronicoResponse",
                                 [("numeroLote", ""), ("mensaje", str(e))]), log
        numero = self.state.new_lot(auth["usuario"], auth["cve"], f["nombreArchivo"], data,
                                    self.config.first_lote, self.config.delay)
        self.queue.put(numero)
        msg = "Se recibió el archivo %s con el número de lote %d." % (f["nombreArchivo"], numero)
        log.update(lote=numero, result=msg)
        return soap_response("cargaTituloElectronicoResponse",
                             [("numeroLote", numero), ("mensaje", msg)]), log

    def op_consulta(self, f, auth):
        numero = f["numeroLote"]
        log = {"usuario": f.get("autenticacion/usuario"), "lote": numero}
        if auth is None:
            msg, estatus = MSG_CREDENCIALES, 0
        else:
            lot, err = self._lot_for(numero, auth)
            if err:
                msg, estatus = err, 0
            elif lot["ready"]:
                msg, estatus = "El número de lote %d se encuentra PROCESADO." % numero, 1
            else:
                msg, estatus = ("El número de lote %d se encuentra en espera de ser procesado."
                                % numero), 0
        log["result"] = "%d %s" % (estatus, msg)
        return soap_response("consultaProcesoTituloElectronicoResponse",
                             [("numeroLote", numero), ("estatusLote", estatus),
                              ("mensaje", msg)]), log

    def op_descarga(self, f, auth):
        numero = f["numeroLote"]
        log = {"usuario": f.get("autenticacion/usuario"), "lote": numero}
        b64 = None
        if auth is None:
            msg = MSG_CREDENCIALES
        else:
            lot, err = self._lot_for(numero, auth)
            if err:
                msg = err
            elif not lot["ready"]:
                msg = ("El número de lote %d se encuentra en espera de ser procesado, "
                       "intente más tarde." % numero)
            else:
                msg = ("El número de lote %d finalizó el proceso, se descarga archivo con la "
                       "relación correspondiente" % numero)
                b64 = base64.b64encode(lot["zip"]).decode("ascii")
        log["result"] = msg
        return soap_response("descargaTituloElectronicoResponse",
                             [("numeroLote", numero), ("mensaje", msg),
                              ("titulosBase64", b64)]), log

    def op_cancela(self, f, auth):
        folio, motivo = f["folioControl"], f["motCancelacion"]
        log = {"usuario": f.get("autenticacion/usuario"), "folio": folio}
        ok = self.config.cancel_success_codigo

        def answer(codigo, msg):
            log["result"] = "%d %s" % (codigo, msg)
            return soap_response("cancelaTituloElectronicoResponse",
                                 [("codigo", codigo), ("mensaje", msg)]), log

        if auth is None:
            return answer(-1, MSG_CREDENCIALES)
        if motivo not in self.motivos:
            return answer(3, "Motivo de cancelación no válido: %s" % motivo)

        def fn(db):
            rows = db.execute("SELECT id FROM registrations WHERE cve = ? AND folio = ? "
                              "ORDER BY id DESC LIMIT 1", (auth["cve"], folio)).fetchall()
            if not rows:
                return 2, ("No se encontró información del folio %s para la institución."
                           % folio)
            rid = rows[0][0]
            if db.execute("SELECT COUNT(*) FROM cancellations WHERE registration = ?",
                          (rid,)).fetchone()[0]:
                return 4, "El folio %s ya se encuentra cancelado." % folio
            db.execute("INSERT INTO cancellations(cve, folio, registration, motivo, usuario, at) "
                       "VALUES(?,?,?,?,?,?)",
                       (auth["cve"], folio, rid, motivo, auth["usuario"], time.time()))
            return ok, "El folio %s fue cancelado exitosamente." % folio
        codigo, msg = self.state.tx(fn)
        return answer(codigo, msg)

    def handle_soap(self, op, fields, force_bad_credentials=False):
        auth = self.authenticate(fields, force_bad_credentials)
        return {
            "cargaTituloElectronico": self.op_carga,
            "consultaProcesoTituloElectronico": self.op_consulta,
            "descargaTituloElectronico": self.op_descarga,
            "cancelaTituloElectronico": self.op_cancela,
        }[op](fields, auth)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "met-sandbox/1.0"
    timeout = 120

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
        super().setup()

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("met_sandbox: %s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status, body, ctype="text/xml; charset=utf-8"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_REQUEST_BYTES:
                    raise ValueError("request too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if length is None:
            raise ValueError("Content-Length required")
        length = int(length)
        if length < 0 or length > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        return self.rfile.read(length)

    def _base_url(self):
        host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
        if host.split(":")[0] not in ("127.0.0.1", "localhost", "[::1]"):
            host = "127.0.0.1:%d" % self.server.server_address[1]
        return "%s://%s" % ("https" if self.server.tls else "http", host)

    def do_GET(self):
        path = self.path.split("?")[0]
        sb = self.server.sandbox
        if self.path.endswith("?wsdl") or self.path.lower().endswith("?wsdl") \
                or path.endswith(".wsdl"):
            wsdl = open(sb.config.wsdl, "rb").read()
            wsdl = re.sub(rb'(<soap:address location=")[^"]*(")',
                          lambda m: m.group(1) + (self._base_url() + SERVICE_PATH).encode()
                          + m.group(2), wsdl)
            return self._send(200, wsdl)
        if path == "/_control" and self.server.control:
            return self._send(200, json.dumps({"faults": sb.faults.list()}).encode(),
                              "application/json")
        if path == "/_control/records" and self.server.control:
            return self._send(200, json.dumps(sb.state.records(), ensure_ascii=False).encode(),
                              "application/json")
        return self._send(404, b"not found\n", "text/plain")

    def do_POST(self):
        try:
            body = self._read_body()
        except ValueError as e:
            self.close_connection = True
            return self._send(400, ("%s\n" % e).encode(), "text/plain")
        if self.path.split("?")[0] == "/_control":
            return self._control(body)
        self._soap(body)

    def _control(self, body):
        if not self.server.control:
            return self._send(404, b"not found\n", "text/plain")
        faults = self.server.sandbox.faults
        try:
            req = json.loads(body or b"{}")
            if req.get("clear"):
                faults.set([])
            if "faults" in req:
                faults.set(req["faults"])
            if "add" in req:
                faults.add(req["add"])
        except (ValueError, TypeError, AttributeError) as e:
            return self._send(400, json.dumps({"error": str(e)}).encode(), "application/json")
        return self._send(200, json.dumps({"faults": faults.list()}).encode(), "application/json")

    def _soap(self, body):
        sb = self.server.sandbox
        try:
            op, fields = parse_request(body)
        except SoapClientError as e:
            op, fields, client_error = None, None, str(e)
        else:
            client_error = None
        fault = sb.faults.take(op)
        mode = fault["mode"] if fault else None
        status = 200
        log = {}
        if mode == "http500":
            resp, status, ctype = (b"<html><body><h1>500 Internal Server Error</h1></body></html>",
                                   500, "text/html")
            log["result"] = "http500"
        elif mode == "soap-fault":
            resp, status, ctype = (soap_fault("Server", fault.get(
                "faultstring", "Error interno del servicio (falla simulada)")), 500,
                "text/xml; charset=utf-8")
            log["result"] = "soap-fault"
        else:
            if mode == "slow":
                time.sleep(fault["seconds"])
            ctype = "text/xml; charset=utf-8"
            if client_error is not None:
                resp, status = soap_fault("Client", client_error), 500
                log["result"] = client_error
            else:
                resp, log = sb.handle_soap(op, fields, mode == "bad-credentials")
            if mode == "malformed":
                if fault["variant"] == "non-xml":
                    resp, ctype = (b"<html><head><title>Proxy Error</title></head><body>"
                                   b"The proxy server received an invalid response", "text/html")
                else:
                    resp = resp[:max(1, len(resp) // 2)]
        sb.state.log_request(op or "unknown", log.get("usuario"), log.get("lote"),
                             log.get("folio"), 0 if mode == "drop-after-accept" else status,
                             log.get("result"), mode)
        if mode == "drop-after-accept":
            self.close_connection = True
            try:
                self.wfile.flush()
            except (OSError, ValueError):
                pass
            return
        self._send(status, resp, ctype)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


# --------------------------------------------------------------------------
# TLS test material
# --------------------------------------------------------------------------
def make_tls(directory, force=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    import ipaddress
    os.makedirs(directory, exist_ok=True)
    paths = {k: os.path.join(directory, k) for k in ("ca.pem", "ca.key", "server.pem", "server.key")}
    if not force and all(os.path.exists(p) for p in paths.values()):
        return paths
    now = datetime.datetime.now(datetime.timezone.utc)

    def key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def write(path, data, mode):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MET sandbox"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "MET sandbox test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=825))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    srv_key = key()
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MET sandbox"),
                                    x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - datetime.timedelta(minutes=5))
           .not_valid_after(now + datetime.timedelta(days=825))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
               critical=False)
           .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
           .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                          critical=False)
           .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    nokey = serialization.NoEncryption()
    write(paths["ca.key"], ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, nokey), 0o600)
    write(paths["server.key"], srv_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, nokey),
          0o600)
    write(paths["ca.pem"], ca.public_bytes(pem), 0o644)
    write(paths["server.pem"], srv.public_bytes(pem), 0o644)
    return paths


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------
def cmd_serve(a):
    config = Config(a.config, a.state)
    if a.make_tls:
        p = make_tls(a.make_tls)
        a.tls_cert, a.tls_key = p["server.pem"], p["server.key"]
    if not a.http and not (a.tls_cert and a.tls_key):
        print("met_sandbox: give --tls-cert and --tls-key (or --make-tls DIR), or --http",
              file=sys.stderr)
        return 2
    sandbox = Sandbox(config)
    server = Server((a.bind, a.port), Handler)
    server.sandbox = sandbox
    server.verbose = a.verbose
    server.control = not a.no_control
    server.tls = not a.http
    if server.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    port = server.server_address[1]
    url = "%s://127.0.0.1:%d%s" % ("https" if server.tls else "http", port, SERVICE_PATH)
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, a.port_file)
    print("met_sandbox: listening on %s (port %d, state %s)" % (url, port, config.state_dir),
          flush=True)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        sandbox.stop()
    print("met_sandbox: stopped", flush=True)
    return 0


def cmd_make_tls(a):
    p = make_tls(a.dir, a.force)
    print(json.dumps(p, indent=1))
    return 0


def cmd_records(a):
    state_dir = a.state or Config(a.config).state_dir
    if not os.path.exists(os.path.join(state_dir, "met_sandbox.sqlite3")):
        print("met_sandbox: no state in %s" % state_dir, file=sys.stderr)
        return 1
    st = State(state_dir)
    try:
        print(json.dumps(st.records(), ensure_ascii=False, indent=1))
    finally:
        st.close()
    return 0


def cmd_fault(a):
    state_dir = a.state or Config(a.config).state_dir
    os.makedirs(state_dir, exist_ok=True)
    faults = Faults(state_dir)
    if a.mode == "clear":
        faults.set([])
        print(json.dumps({"faults": []}))
        return 0
    f = {"mode": a.mode, "operation": a.operation, "count": a.count}
    if a.seconds is not None:
        f["seconds"] = a.seconds
    if a.variant:
        f["variant"] = a.variant
    if a.faultstring:
        f["faultstring"] = a.faultstring
    try:
        faults.add(f)
    except ValueError as e:
        print("met_sandbox: %s" % e, file=sys.stderr)
        return 2
    print(json.dumps({"faults": faults.list()}, ensure_ascii=False))
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ("serve", "make-tls", "records", "fault")
    if not argv or (argv[0] not in commands and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")
    ap = argparse.ArgumentParser(prog="met_sandbox.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("serve", help="run the service")
    s.add_argument("--config", required=True, help="JSON configuration file")
    s.add_argument("--state", help="state directory (overrides the config's state_dir)")
    s.add_argument("--bind", default="127.0.0.1", choices=("127.0.0.1",),
                   help="address to bind (loopback only)")
    s.add_argument("--port", type=int, default=8443, help="TCP port; 0 picks a free one")
    s.add_argument("--port-file", help="write the port number here once listening")
    s.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    s.add_argument("--tls-cert", help="server certificate (PEM)")
    s.add_argument("--tls-key", help="server private key (PEM)")
    s.add_argument("--make-tls", metavar="DIR",
                   help="create (if missing) a test CA and server certificate in DIR and use them")
    s.add_argument("--no-control", action="store_true", help="disable the /_control endpoint")
    s.add_argument("--verbose", action="store_true", help="log every HTTP request to stderr")
    s.set_defaults(fn=cmd_serve)
    m = sub.add_parser("make-tls", help="create DIR/ca.pem, ca.key, server.pem, server.key")
    m.add_argument("dir")
    m.add_argument("--force", action="store_true", help="replace existing files")
    m.set_defaults(fn=cmd_make_tls)
    r = sub.add_parser("records", help="print the state as JSON")
    r.add_argument("--state", help="state directory")
    r.add_argument("--config", help="or take state_dir from this configuration")
    r.set_defaults(fn=cmd_records)
    f = sub.add_parser("fault", help="add a fault (or 'clear') to STATE/faults.json")
    f.add_argument("mode", choices=FAULT_MODES + ("clear",))
    f.add_argument("--state", help="state directory")
    f.add_argument("--config", help="or take state_dir from this configuration")
    f.add_argument("--operation", default="all",
                   help="operation name (or carga/consulta/descarga/cancela) or 'all'")
    f.add_argument("--count", type=int, default=1, help="how many requests (-1 = unlimited)")
    f.add_argument("--seconds", type=float, help="delay for 'slow'")
    f.add_argument("--variant", choices=("truncated", "non-xml"), help="for 'malformed'")
    f.add_argument("--faultstring", help="for 'soap-fault'")
    f.set_defaults(fn=cmd_fault)
    a = ap.parse_args(argv)
    if not getattr(a, "fn", None):
        ap.print_help()
        return 2
    if a.cmd in ("records", "fault") and not (a.state or a.config):
        ap.error("give --state DIR or --config FILE")
    return a.fn(a)


if __name__ == "__main__":
    sys.exit(main())
