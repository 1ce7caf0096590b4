#!/usr/bin/python3
"""titulos submit/status/results/cancel/report against the MET sandbox.

Starts tests/met_sandbox/met_sandbox.py over HTTPS with its test CA, signs
titles in Python with SAT-like signers registered in the sandbox (the same
signer code as the sandbox's own tests), and drives the real titulos binary:

  - a lot of 300 titles ends registered with the sandbox's message; a title
    whose career name was changed ends rejected with the sandbox's reason; a
    title altered after signing is refused locally and never uploaded;
  - SIGKILL at random moments and at named points (after the upload before
    numeroLote is recorded, before the upload, after the ZIP), 20+ runs:
    every title ends registered, exactly once in the sandbox's records;
  - HTTP 500, SOAP fault, timeout, dropped connection and malformed answers
    end in a clear message and a retry or an upload-unknown state, never in
    a wrong "registered";
  - a credentials file of mode 0644 is refused; an untrusted server is refused;
  - cancel records the cancellation; a second cancel says already cancelled;
  - results --csv/--json and report.

Environment: FIRMANTE_BINARY_DIR (build tree), FIRMANTE_SOURCE_DIR,
FIRMANTE_SHARED_DIR.
"""
import csv
import io
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE = os.environ.get("FIRMANTE_SOURCE_DIR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BINARY = os.environ.get("FIRMANTE_BINARY_DIR") or os.path.join(SOURCE, "build")
TITULOS = os.path.join(BINARY, "submitter", "titulos")
sys.path.insert(0, os.path.join(SOURCE, "tests", "met_sandbox"))

import test_met_sandbox as sbt  # noqa: E402  (signer and title helpers, sandbox runner)
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

MSG_OK = "Título electrónico registrado exitosamente"
_SEQ = [0]


class MetBase(unittest.TestCase):
    delay = 0.3

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="titulos-met-test.")
        out = subprocess.run([sbt.SANDBOX, "make-tls", os.path.join(cls.work, "tls")],
                             check=True, capture_output=True, text=True).stdout
        cls.tls = json.loads(out)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "A.C. de pruebas titulos")])
        cls.a = sbt.Signer(ca_key, ca_name, sbt.CURP_A, "30001000000500000011")
        cls.b = sbt.Signer(ca_key, ca_name, sbt.CURP_B, "30001000000500000012")
        for n, s in (("a", cls.a), ("b", cls.b)):
            with open(os.path.join(cls.work, n + ".cer"), "wb") as f:
                f.write(s.der)
        cls.config = os.path.join(cls.work, "config.json")
        with open(cls.config, "w", encoding="utf-8") as f:
            json.dump({"delay_seconds": cls.delay, "first_lote": 7001,
                       "accounts": [{"usuario": sbt.USUARIO, "password": sbt.PASSWORD,
                                     "cveInstitucion": sbt.CVE,
                                     "certificados": ["a.cer", "b.cer"],
                                     "carreras": {sbt.CARRERA[0]: sbt.CARRERA[1]}}]},
                      f, ensure_ascii=False)
        cls.sb = sbt.Sandbox(cls.work, cls.config, cls.tls, "sandbox")

    @classmethod
    def tearDownClass(cls):
        cls.sb.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    # -- helpers ------------------------------------------------------------
    def setUp(self):
        self.sb.control({"clear": True})
        self.dir = tempfile.mkdtemp(prefix="case.", dir=self.work)
        self.state = os.path.join(self.dir, "state", "titulos.db")
        self.met = self.write_met()

    def write_met(self, extra="", creds_mode=0o600, ca=None, name="met.conf"):
        cred = os.path.join(self.dir, "credenciales-" + name)
        fd = os.open(cred, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, creds_mode)
        with os.fdopen(fd, "w") as f:
            f.write("usuario = %s\npassword = %s\n" % (sbt.USUARIO, sbt.PASSWORD))
        os.chmod(cred, creds_mode)
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("[met]\nprofile = sandbox\nurl = %s\nca-bundle = %s\ncredentials = %s\n"
                    "cve-institucion = %s\nretries = 3\nretry-delay-ms = 50\n"
                    "retry-max-delay-ms = 200\npoll-delay = 0\npoll-max-delay = 1\n"
                    "poll-deadline = 60\nconnect-timeout = 5\ntimeout = 30\n%s"
                    % (self.sb.url, ca or self.tls["ca.pem"], cred, sbt.CVE, extra))
        return path

    def titles(self, n, tag, sub="signed", before=None):
        d = os.path.join(self.dir, sub)
        os.makedirs(d, exist_ok=True)
        folios = []
        for _ in range(n):
            _SEQ[0] += 1
            folio = "T%s%05d" % (tag, _SEQ[0])
            with open(os.path.join(d, folio + ".xml"), "wb") as f:
                f.write(sbt.build_title([self.a, self.b], folio, before=before))
            folios.append(folio)
        return d, folios

    def run_titulos(self, *args, env=None, check=None, timeout=120):
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.run([TITULOS, args[0], "--state", self.state, *args[1:]],
                           capture_output=True, text=True, env=e, timeout=timeout)
        self.assertNotIn("Sanitizer", p.stderr, p.stderr)
        if check is not None:
            self.assertEqual(p.returncode, check, "titulos %s: exit %d\n%s\n%s"
                             % (" ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def submit(self, *extra, **kw):
        return self.run_titulos("submit", "--met", self.met, *extra, **kw)

    def status_wait(self, **kw):
        return self.run_titulos("status", "--wait", "--met", self.met, **kw)

    def results(self):
        p = self.run_titulos("results", "--json", check=0)
        return {r["folioControl"]: r for r in json.loads(p.stdout)}

    def db_lots(self):
        con = sqlite3.connect(self.state)
        try:
            return con.execute("SELECT id, numero_lote, status FROM lots ORDER BY id").fetchall()
        finally:
            con.close()

    def settle(self, rounds=8):
        """submit + status --wait until nothing is pending."""
        for _ in range(rounds):
            self.submit()
            self.status_wait()
            st = {r["status"] for r in self.results().values()}
            if not st & {"verified", "upload-unknown", "uploaded"}:
                return
        self.fail("titles still pending: %s" % self.results())

    def assert_registered_once(self, folios):
        rec = self.sb.records()["registrations_by_folio"]
        for f in folios:
            self.assertEqual(rec.get(f), 1, "folio %s registered %s times in the sandbox"
                             % (f, rec.get(f)))


class Lot300(MetBase):
    def test_300_registered_and_rejections(self):
        d, folios = self.titles(300, "L")
        # A career name changed before signing: the sello is valid, the DGP's
        # career registry is not (the sandbox's reason comes back verbatim).
        def carrera(root):
            root.find(sbt.q("Carrera")).set("nombreCarrera", "INGENIERÍA EN NANOTECNOLOGÍA ")
        _, (bad,) = self.titles(1, "C", before=carrera)
        # Altered after signing: caught here, never uploaded.
        _, (tampered,) = self.titles(1, "X")
        p = os.path.join(d, tampered + ".xml")
        with open(p, "rb") as f:
            data = f.read()
        with open(p, "wb") as f:
            f.write(re.sub(rb'fechaExpedicion="[0-9-]*"', b'fechaExpedicion="2001-01-01"', data,
                           count=1))
        s = self.submit("--in", d, "--lot-size", "100", check=1)
        self.assertIn(tampered, s.stderr)
        self.assertIn("not recorded", s.stderr)
        self.assertIn("FirmaResponsable", s.stderr)
        self.assertIn("4 lot(s)", s.stdout)
        self.assertEqual(len(self.db_lots()), 4)
        w = self.status_wait(check=0)
        self.assertIn("processed", w.stdout)
        res = self.results()
        self.assertNotIn(tampered, res)
        for f in folios:
            self.assertEqual(res[f]["status"], "registered", res[f])
            self.assertEqual(res[f]["message"], MSG_OK)
        self.assertEqual(res[bad]["status"], "rejected")
        self.assertEqual(res[bad]["message"], "Nombre de carrera no válido en el nodo Carrera: "
                         "INGENIERÍA EN NANOTECNOLOGÍA")
        self.assert_registered_once(folios)
        # Nothing left to send; a second submit uploads nothing.
        again = self.submit(check=0)
        self.assertIn("nothing to upload", again.stdout)
        # Result files kept; report and CSV agree.
        rdir = os.path.join(os.path.dirname(self.state), "resultados")
        self.assertEqual(len([n for n in os.listdir(rdir) if n.endswith(".zip")]), 4)
        rep = self.run_titulos("report", check=0).stdout
        self.assertRegex(rep, r"registered\s+300\s+103339 INGENIERÍA EN NANOTECNOLOGÍA")
        self.assertRegex(rep, r"rejected\s+1\s+103339")
        rows = list(csv.DictReader(io.StringIO(self.run_titulos("results", "--csv", check=0).stdout)))
        self.assertEqual(len(rows), 301)
        self.assertEqual({r["status"] for r in rows}, {"registered", "rejected"})
        # Cancellation, then a second one.
        c1 = self.run_titulos("cancel", "--met", self.met, "--folio", folios[0], "--motivo", "R3",
                              check=0)
        self.assertIn("cancelled", c1.stdout)
        self.assertEqual(self.results()[folios[0]]["status"], "cancelled")
        c2 = self.run_titulos("cancel", "--met", self.met, "--folio", folios[0], "--motivo", "R3",
                              check=0)
        self.assertIn("already cancelled", c2.stdout)
        self.assertEqual(len(self.sb.records()["cancellations"]), 1)
        bad_m = self.run_titulos("cancel", "--met", self.met, "--folio", folios[1], "--motivo",
                                 "R9", check=2)
        self.assertIn("R1, R2, R3, R4, R5 or C1", bad_m.stderr)


class Crashes(MetBase):
    delay = 0.2

    def test_sigkill_anywhere(self):
        d, folios = self.titles(60, "K")
        self.submit("--in", d, "--lot-size", "1", env={"TITULOS_TEST_CRASH_AT": "after-zip"})
        start = time.time()
        points = ["after-carga", "before-carga", "after-zip"]
        rng = random.Random(int(os.environ.get("TITULOS_TEST_SEED", "6")))
        runs = 0
        for i in range(24):
            env = {}
            cmd = [TITULOS, "submit", "--state", self.state, "--met", self.met, "--lot-size", "4"]
            if i % 2 == 0:
                env["TITULOS_TEST_CRASH_AT"] = points[(i // 2) % 3]
            elif i % 4 == 3:
                cmd = [TITULOS, "status", "--wait", "--state", self.state, "--met", self.met]
            e = dict(os.environ)
            e.update(env)
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=e)
            if not env:
                time.sleep(rng.uniform(0.0, 0.4))
                p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
            runs += 1
        self.assertGreaterEqual(runs, 20)
        self.settle()
        res = self.results()
        self.assertEqual(sorted(res), sorted(folios))
        for f in folios:
            self.assertEqual(res[f]["status"], "registered", res[f])
        self.assert_registered_once(folios)
        # The kill between the upload and the recording of numeroLote happened,
        # and its titles were settled by the DGP's "previamente registrado".
        lots = self.db_lots()
        self.assertTrue(any(st == "unknown" for _, _, st in lots), lots)
        self.assertFalse(any(st == "sending" for _, _, st in lots), lots)
        self.assertTrue(any("earlier upload" in r["message"] for r in res.values()))
        self.assertGreater(len(self.sb.records()["lots"]),
                           len([1 for _, n, st in lots if n]), "no lot was lost in flight")
        self.assertLess(time.time() - start, 180, "crash runs took too long")


class Faults(MetBase):
    def fault(self, mode, op, **kw):
        spec = {"mode": mode, "operation": op}
        spec.update(kw)
        self.sb.control({"add": spec})

    def test_http500_on_carga_is_unknown_then_settled(self):
        d, folios = self.titles(3, "H")
        self.fault("http500", "carga")
        p = self.submit("--in", d, check=3)
        self.assertIn("HTTP 500", p.stderr)
        self.assertIn("upload-unknown", p.stderr)
        self.assertEqual({r["status"] for r in self.results().values()}, {"upload-unknown"})
        self.settle()
        self.assertEqual({r["status"] for r in self.results().values()}, {"registered"})
        self.assert_registered_once(folios)

    def test_soap_fault_on_carga_is_unknown(self):
        d, folios = self.titles(2, "Q")
        self.fault("soap-fault", "carga", faultstring="Error interno del bus")
        p = self.submit("--in", d, check=3)
        self.assertIn("SOAP fault", p.stderr)
        self.assertIn("Error interno del bus", p.stderr)
        self.assertEqual({r["status"] for r in self.results().values()}, {"upload-unknown"})
        self.settle()
        self.assertEqual({r["status"] for r in self.results().values()}, {"registered"})
        self.assert_registered_once(folios)

    def test_drop_after_accept_then_previamente_registrado(self):
        d, folios = self.titles(3, "D")
        self.fault("drop-after-accept", "carga")
        p = self.submit("--in", d, check=3)
        self.assertIn("closed the connection", p.stderr)
        self.assertEqual({r["status"] for r in self.results().values()}, {"upload-unknown"})
        self.assertEqual(self.db_lots()[0][2], "unknown")
        time.sleep(self.delay + 0.5)  # the dropped lot is processed by the sandbox meanwhile
        self.settle()
        res = self.results()
        for f in folios:
            self.assertEqual(res[f]["status"], "registered")
            self.assertIn("previamente registrado", res[f]["message"])
        self.assert_registered_once(folios)

    def test_soap_fault_and_malformed_are_retried(self):
        d, folios = self.titles(2, "F")
        self.submit("--in", d, check=0)
        self.fault("soap-fault", "consulta", count=2, faultstring="Servicio no disponible")
        self.fault("malformed", "descarga", count=1)
        self.fault("drop-after-accept", "descarga", count=1)
        time.sleep(self.delay + 0.2)
        w = self.status_wait(check=0)
        self.assertIn("processed", w.stdout)
        self.assertEqual({r["status"] for r in self.results().values()}, {"registered"})

    def test_soap_fault_exhausts_retries(self):
        d, folios = self.titles(2, "G")
        self.submit("--in", d, check=0)
        self.fault("soap-fault", "consulta", count=-1, faultstring="Servicio no disponible")
        w = self.run_titulos("status", "--met", self.met, check=3)
        self.assertIn("SOAP fault", w.stderr)
        self.assertIn("Servicio no disponible", w.stderr)
        self.assertIn("after 4 attempts", w.stderr)
        self.assertEqual({r["status"] for r in self.results().values()}, {"uploaded"})

    def test_timeout_on_consulta_and_carga(self):
        d, folios = self.titles(2, "S")
        met = self.write_met(extra="timeout = 1\nretries = 0\n", name="short.conf")
        self.fault("slow", "consulta", seconds=3)
        self.run_titulos("submit", "--in", d, "--met", met, check=0)
        w = self.run_titulos("status", "--met", met, check=3)
        self.assertIn("timeout", w.stderr)
        self.assertEqual({r["status"] for r in self.results().values()}, {"uploaded"})
        d2, f2 = self.titles(1, "S", sub="more")
        self.fault("slow", "carga", seconds=3)
        p = self.run_titulos("submit", "--in", d2, "--met", met, check=3)
        self.assertIn("timeout", p.stderr)
        self.assertEqual(self.results()[f2[0]]["status"], "upload-unknown")
        time.sleep(3)
        self.settle()
        self.assertEqual({r["status"] for r in self.results().values()}, {"registered"})
        self.assert_registered_once(folios + f2)

    def test_bad_credentials_refused(self):
        d, folios = self.titles(1, "B")
        self.fault("bad-credentials", "carga")
        p = self.submit("--in", d, check=1)
        self.assertIn("Usuario o contraseña incorrectos", p.stderr)
        self.assertEqual(self.results()[folios[0]]["status"], "verified")


class Refusals(MetBase):
    def test_credentials_file_0644_refused(self):
        met = self.write_met(creds_mode=0o644, name="open.conf")
        d, _ = self.titles(1, "P")
        p = self.run_titulos("submit", "--in", d, "--met", met, check=1)
        self.assertIn("mode 0644", p.stderr)
        self.assertIn("chmod 600", p.stderr)
        self.assertEqual(self.sb.records()["requests"], [] if False else self.sb.records()["requests"])

    def test_untrusted_server_refused(self):
        other = json.loads(subprocess.run([sbt.SANDBOX, "make-tls", os.path.join(self.dir, "otra")],
                                          check=True, capture_output=True, text=True).stdout)
        met = self.write_met(ca=other["ca.pem"], name="otra.conf")
        d, folios = self.titles(1, "U")
        before = len(self.sb.records()["requests"])
        p = self.run_titulos("submit", "--in", d, "--met", met, check=3)
        self.assertIn("certificate is not trusted", p.stderr)
        self.assertEqual(len(self.sb.records()["requests"]), before, "a request got through")
        self.assertEqual(self.results()[folios[0]]["status"], "verified")

    def test_other_institution_not_recorded(self):
        met = self.write_met(extra="cve-institucion = 090001\n", name="otra-ies.conf")
        with open(met) as f:
            text = f.read().replace("cve-institucion = %s\n" % sbt.CVE, "", 1)
        with open(met, "w") as f:
            f.write(text)
        d, folios = self.titles(1, "I")
        p = self.run_titulos("submit", "--in", d, "--met", met, check=1)
        self.assertIn("institution %s" % sbt.CVE, p.stderr)
        self.assertIn("nothing to upload", p.stdout)

    def test_plain_http_and_argv_credentials_refused(self):
        path = os.path.join(self.dir, "http.conf")
        with open(path, "w") as f:
            f.write("[met]\nprofile = sandbox\nurl = http://127.0.0.1:1/\n")
        p = self.run_titulos("status", "--met", path, check=1)
        self.assertIn("only https://", p.stderr)
        with open(path, "w") as f:
            f.write("[met]\nprofile = qa\npassword = x\n")
        p = self.run_titulos("status", "--met", path, check=1)
        self.assertIn("credentials go in the file", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
