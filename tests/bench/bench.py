#!/usr/bin/python3
"""firmante benchmarks: the figures of scripts/bench (see README "Performance").

Every figure is measured several times (--runs) and reported as the median
with its spread (min..max, and (max-min)/median). Agent figures are also
given as ratios to figure 1, the raw C_Sign rate of the same SoftHSM2 token
measured in the same run. Nothing here is a pass/fail test of speed: the
targets are printed beside the figures, and the only failures are figures
that could not be produced at all.

Figures
  1   raw C_Sign loop (CKM_SHA256_RSA_PKCS, RSA-2048), in process, no agent
  1b  the same with a session and a login per signature (what the token
      layer pays per request today)
  2   agent, one request at a time over the Unix socket (pinentry stand-in
      approving every request; its own cost is figure 2s)
  2s  the pinentry stand-in: spawn, CONFIRM, GETPIN, BYE
  2u  agent one at a time under an unattended policy (no dialog)
  3   POST /v1/sign-batch under the unattended policy
  4r  raw C_Sign on two tokens side by side; 4: the same through the agent
  5   the loopback browser listener (Host, Origin, pairing token), interactive
  6b  titulos build on tmpfs; 6d on disk; 6v titulos verify; 6z ZIP lots
      (met_lote_build); 6br, 6vr, 6zr: peak RSS for --rss-titles titles
  7   openssl speed rsa2048 (sign and verify) on this machine

Usage: bench.py --build-dir DIR [--quick] [--runs N] [--json FILE]
                [--titles N] [--rss-titles N] [--keep]
       bench.py --build-dir DIR --markdown RESULTS.json
Only the Python standard library, lxml and cryptography are used.
"""

import argparse
import base64
import csv
import importlib.machinery
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.environ.get("FIRMANTE_SHARED_DIR") or os.path.join(SRC, "..", "shared")
MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TESTTOKEN = os.path.join(SRC, "tests", "tools", "fm-testtoken")
STUB = os.path.join(SRC, "tests", "pinentry-stub")
CADENA = os.path.join(SHARED, "spec", "examples", "oficial-cadena-firmaresponsable.txt")
PIN = "51738264"
SO_PIN = "86420975"
SIGNERS = [  # the example institution's signers (examples/institucion.conf)
    ("01", "JUAN CARLOS MÉNDEZ ORTIZ", "MEOJ700515HDFNRN00", "MEOJ700515AB1"),
    ("02", "LAURA RODRÍGUEZ SÁNCHEZ", "ROSL750822MJCDNR01", "ROSL750822QW2"),
]
NS = "https://www.siged.sep.gob.mx/titulos/"


class Skip(Exception):
    """A figure that cannot be measured on this tree yet (reason in the text)."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s%s" % (" ".join(args[:3]), r.returncode,
                                                    r.stdout[-2000:], r.stderr[-2000:]))
    return r.stdout


def timed(args, cwd=None, env=None, stdout=subprocess.DEVNULL):
    """Runs @args under /usr/bin/time; returns (wall s, cpu s, peak RSS KiB).
    Not os.wait4's rusage: Linux keeps a process's RSS high-water mark across
    execve, so a child of this (larger) Python process would report ours."""
    fd, tf = tempfile.mkstemp(prefix="fm-bench-time-")
    os.close(fd)
    t0 = time.monotonic()
    try:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf] + list(args),
                           cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (" ".join(args[:3]), p.returncode,
                                                      p.stderr.decode(errors="replace")[-2000:]))
        wall = time.monotonic() - t0
        user, sys_, rss = open(tf).read().split()[-3:]
    finally:
        os.unlink(tf)
    return wall, max(float(user) + float(sys_), 0.01), int(rss)


def cert_info(path):
    """(Base64 DER, noCertificado) of a SAT-like certificate file."""
    from cryptography import x509
    der = open(path, "rb").read()
    sn = x509.load_der_x509_certificate(der).serial_number
    return base64.b64encode(der).decode(), sn.to_bytes((sn.bit_length() + 7) // 8, "big").decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fs_type(path):
    """The file system type of @path (from /proc/mounts), for the table."""
    best, kind = "", "?"
    try:
        for line in open("/proc/mounts"):
            parts = line.split()
            if len(parts) > 2 and os.path.realpath(path).startswith(parts[1]) \
                    and len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def summary(values):
    values = [float(v) for v in values]
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return {"runs": values, "median": med, "min": lo, "max": hi,
            "spread_pct": (hi - lo) / med * 100 if med else 0.0}


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.build_dir)
        self.work = tempfile.mkdtemp(prefix="fm-bench-", dir="/tmp")
        os.chmod(self.work, 0o700)
        # Title files go to a tmpfs when there is one: the figures are then
        # the programs' own cost; 6d measures the same build on disk.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
            else None
        self.fast = tempfile.mkdtemp(prefix="fm-bench-", dir=shm) if shm else self.work
        self.fast_is_tmpfs = shm is not None
        self.figures = []
        self.env = dict(os.environ)
        self.agent = None
        self.titulos = os.path.join(self.bin, "submitter", "titulos")
        self.firmanted = os.path.join(self.bin, "agent", "firmanted")
        self.csign_bin = os.path.join(self.bin, "tests", "bench", "bench-csign")
        self.agentbench = os.path.join(self.bin, "tests", "bench", "bench-agent")
        self.lotebench = os.path.join(self.bin, "tests", "bench", "bench-lote")
        self.raw = None  # figure 1 summary
        self.pinfile = os.path.join(self.work, "pin")

    # -- helpers ------------------------------------------------------------
    def add(self, fid, name, unit, values=None, ratio=None, target=None, met=None,
            note="", skip=None, extra=None):
        fig = {"id": fid, "name": name, "unit": unit}
        if skip:
            fig.update({"status": "not-measured", "reason": skip})
        else:
            fig.update({"status": "measured"})
            fig.update(summary(values))
        if ratio is not None:
            fig["ratio"] = ratio
        if target:
            fig["target"] = target
        if met is not None:
            fig["target_met"] = met
        if note:
            fig["note"] = note
        if extra:
            fig.update(extra)
        self.figures.append(fig)
        if skip:
            log("  %-4s %s: not measured: %s" % (fid, name, skip))
        else:
            log("  %-4s %s: median %.4g %s (spread %.0f%%)"
                % (fid, name, fig["median"], unit, fig["spread_pct"]))
        return fig

    def figure(self, fid, name, fn):
        """Runs one figure; an error becomes a failed figure, not a crash."""
        t0 = time.monotonic()
        try:
            fn()
        except Skip as e:
            self.add(fid, name, "", skip=str(e))
        except Exception as e:  # noqa: BLE001 - reported in the table
            self.figures.append({"id": fid, "name": name, "status": "failed",
                                 "reason": str(e)[:2000]})
            log("  %-4s %s: FAILED: %s" % (fid, name, e))
        log("       (%.1f s)" % (time.monotonic() - t0))

    # -- setup --------------------------------------------------------------
    def setup_tokens(self):
        tok = os.path.join(self.work, "token")
        fd = os.open(self.pinfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(PIN)
        for label in ("bench-a", "bench-b"):
            run([TESTTOKEN, "init", "--dir", tok, "--label", label, "--pin", PIN,
                 "--so-pin", SO_PIN])
        # The second token holds a second key of the rector (another
        # certificate, same CURP), so the same title can go to either token.
        # It is made first: DIR/certs/CURP.cer keeps the last certificate
        # issued for a CURP, and the fixtures below use bench-a's.
        kid, name, curp, rfc = SIGNERS[0]
        run([TESTTOKEN, "signer", "--dir", tok, "--label", "bench-b", "--pin", PIN,
             "--id", kid, "--name", name, "--curp", curp, "--rfc", rfc])
        self.nocert_b = cert_info(os.path.join(tok, "certs", curp + ".cer"))[1]
        for kid, name, curp, rfc in SIGNERS:
            run([TESTTOKEN, "signer", "--dir", tok, "--label", "bench-a", "--pin", PIN,
                 "--id", kid, "--name", name, "--curp", curp, "--rfc", rfc])
        self.tokdir = tok
        self.nocert_a = cert_info(os.path.join(tok, "certs", SIGNERS[0][2] + ".cer"))[1]
        self.env["SOFTHSM2_CONF"] = os.path.join(tok, "softhsm2.conf")
        os.environ["SOFTHSM2_CONF"] = self.env["SOFTHSM2_CONF"]
        conf = open(os.path.join(SRC, "examples", "institucion.conf"), encoding="utf-8").read()
        self.conf = os.path.join(self.work, "institucion.conf")
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write(conf.replace("token=firmante-demo", "token=bench-a"))

    def write_csv(self, path, n):
        with open(os.path.join(SRC, "examples", "egresados.csv"), encoding="utf-8") as f:
            rows = list(csv.reader(f))
        head, body = rows[0], rows[1:]
        fc = head.index("folioControl")
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(head)
            for i in range(n):
                row = list(body[i % len(body)])
                row[fc] = "BENCH-%07d" % i
                w.writerow(row)

    def build_titles(self, n, name, on_disk=False):
        base = self.work if on_disk else self.fast
        csvp = os.path.join(base, name + ".csv")
        out = os.path.join(base, name)
        self.write_csv(csvp, n)
        shutil.rmtree(out, ignore_errors=True)
        return csvp, out

    # -- figure 7 -----------------------------------------------------------
    def fig_openssl(self):
        signs, verifies = [], []
        secs = "1"
        for _ in range(self.args.runs):
            out = run(["openssl", "speed", "-seconds", secs, "rsa2048"])
            m = re.search(r"^rsa\s+2048 bits\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out, re.M)
            if not m:
                raise RuntimeError("cannot read openssl speed output: " + out[-500:])
            signs.append(float(m.group(1)))
            verifies.append(float(m.group(2)))
        self.ossl_sign = self.add("7s", "OpenSSL RSA-2048 sign (openssl speed, 1 core)",
                                  "sig/s", signs)
        self.ossl_verify = self.add("7v", "OpenSSL RSA-2048 verify (openssl speed, 1 core)",
                                    "verify/s", verifies)

    # -- figure 1 -----------------------------------------------------------
    def csign(self, keys, count, extra=()):
        args = [self.csign_bin, "--module", MODULE, "--pin-file", self.pinfile, "--data", CADENA,
                "--count", str(count), "--warmup", "5"] + list(extra)
        for k in keys:
            args += ["--key", k]
        return json.loads(run(args, env=self.env))

    def fig_raw(self):
        n = self.args.sign_count
        res = [self.csign(["bench-a:01"], n) for _ in range(self.args.runs)]
        self.raw = self.add("1", "raw C_Sign loop, SoftHSM2, in process", "sig/s",
                            [r["rate"] for r in res],
                            extra={"p50_us": summary([r["per_key"][0]["p50_us"] for r in res]),
                                   "p99_us": summary([r["per_key"][0]["p99_us"] for r in res])})
        self.raw_p50 = self.raw["p50_us"]["median"]
        self.raw["cpu_us_per_op"] = statistics.median(
            r["cpu_s"] / (r["ops"] + 5) * 1e6 for r in res)
        self.raw["note"] = "p50 %.0f µs per C_Sign; %.0f µs CPU per signature" % (
            self.raw_p50, self.raw["cpu_us_per_op"])
        res = [self.csign(["bench-a:01"], max(n // 4, 10), ["--session-per-op"])
               for _ in range(self.args.runs)]
        rate = [r["rate"] for r in res]
        self.login = self.add(
            "1b", "C_Sign with open+login+find+logout+close per signature", "sig/s", rate,
            ratio=statistics.median(rate) / self.raw["median"],
            note="what fp11_sign pays per call: one session and one login per signature",
            extra={"p50_us": summary([r["per_key"][0]["p50_us"] for r in res])})
        self.login_p50 = self.login["p50_us"]["median"]

    def fig_raw_two(self):
        n = self.args.sign_count
        res = [self.csign(["bench-a:01", "bench-b:01"], n) for _ in range(self.args.runs)]
        rate = [r["rate"] for r in res]
        r = statistics.median(rate) / self.raw["median"]
        self.add("4r", "raw C_Sign, two tokens in parallel (two threads)", "sig/s", rate,
                 ratio=r, target="context for 4 (machine has %d cores)" % os.cpu_count())

    # -- figure 2 -----------------------------------------------------------
    def start_agent(self, extra_conf=""):
        rundir = tempfile.mkdtemp(prefix="fmb-", dir="/tmp")
        os.chmod(rundir, 0o700)
        sock = os.path.join(rundir, "agent.sock")
        conf = os.path.join(self.work, "firmanted.conf")
        with open(conf, "w") as f:
            f.write("[agent]\nsocket = %s\nmodule = %s\nuse-p11kit-modules = false\n"
                    "pinentry = %s --pin-file %s\napproval-timeout = 60\naudit-log = %s\n%s"
                    % (sock, MODULE, STUB, self.pinfile,
                       os.path.join(self.work, "audit.log"), extra_conf))
        logf = open(os.path.join(self.work, "firmanted.log"), "a")
        # FIRMANTE_BENCH_WRAP: a profiler to run the agent under (e.g.
        # "valgrind --tool=callgrind"); its figures are then not meaningful.
        wrap = os.environ.get("FIRMANTE_BENCH_WRAP", "").split()
        proc = subprocess.Popen(wrap + [self.firmanted, "--config", conf],
                                stdout=subprocess.DEVNULL, stderr=logf, env=self.env)
        for _ in range(600 if wrap else 200):
            if os.path.exists(sock):
                break
            if proc.poll() is not None:
                raise RuntimeError("firmanted exited: " + open(logf.name).read()[-2000:])
            time.sleep(0.05)
        else:
            proc.kill()
            raise RuntimeError("firmanted: no socket")
        self.agent = (proc, rundir, sock, logf)
        return sock

    def stop_agent(self):
        if not self.agent:
            return
        proc, rundir, _, logf = self.agent
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        logf.close()
        shutil.rmtree(rundir, ignore_errors=True)
        self.agent = None

    def sign_body(self, key, xml, path):
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"id": "bench", "format": "titulo-electronico", "document": xml,
                       "key": key}, f)
        return path

    def one_title(self):
        csvp, out = self.build_titles(1, "one")
        run([self.titulos, "build", "--config", self.conf, "--csv", csvp, "--out", out])
        name = sorted(os.listdir(out))[0]
        return open(os.path.join(out, name), encoding="utf-8").read()

    def fig_stub(self):
        lat = []
        for _ in range(max(self.args.agent_count // 4, 5)):
            t0 = time.monotonic()
            p = subprocess.Popen([STUB, "--pin-file", self.pinfile], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
            p.stdout.readline()
            for cmd in ("OPTION ttyname=/dev/null", "SETDESC Firma", "CONFIRM",
                        "SETPROMPT PIN", "GETPIN", "BYE"):
                p.stdin.write(cmd + "\n")
                p.stdin.flush()
                while True:
                    line = p.stdout.readline()
                    if not line or line.startswith(("OK", "ERR")):
                        break
            p.wait()
            lat.append((time.monotonic() - t0) * 1e6)
        self.stub = self.add("2s", "pinentry stand-in per request (spawn + dialog)", "µs",
                             [statistics.median(lat), min(lat), max(lat)],
                             note="runs = median, min, max of %d spawns" % len(lat))

    def fig_agent_one(self):
        self.title_xml = self.one_title()
        body = self.sign_body("pkcs11:token=bench-a;id=%01;type=private", self.title_xml,
                              os.path.join(self.work, "body-a.json"))
        sock = self.start_agent()
        try:
            res = self.agent_runs(sock, [body], self.args.agent_count)
        finally:
            self.stop_agent()
        rate = [r["rate"] for r in res]
        p50 = statistics.median(r["p50_us"] for r in res)
        p99 = statistics.median(r["p99_us"] for r in res)
        over50, over99 = p50 - self.raw_p50, p99 - self.raw_p50
        stub = self.stub["median"] if getattr(self, "stub", None) else 0.0
        own = p50 - self.login_p50 - stub
        cpu = self.last_cpu_us
        self.interactive = self.add(
                 "2", "agent one at a time, Unix socket, interactive (stand-in approves)",
                 "sig/s", rate, ratio=statistics.median(rate) / self.raw["median"],
                 target="≥ 0.75 × (1) with an unattended policy", met=None,
                 note=("per-request overhead over raw C_Sign: p50 %.0f µs, p99 %.0f µs; of "
                       "the p50, pinentry stand-in %.0f µs, session+login %.0f µs, the rest "
                       "%.0f µs; agent CPU %.0f µs per request (C_Sign alone %.0f µs)"
                       % (over50, over99, stub, self.login_p50 - self.raw_p50, own, cpu,
                          self.raw["cpu_us_per_op"])),
                 extra={"agent_cpu_us_per_req": cpu,
                        "p50_us": summary([r["p50_us"] for r in res]),
                        "p99_us": summary([r["p99_us"] for r in res]),
                        "overhead_p50_us": over50, "overhead_p99_us": over99,
                        "agent_own_p50_us": own})

    def agent_cpu(self):
        """CPU seconds used so far by the running agent (utime + stime)."""
        with open("/proc/%d/stat" % self.agent[0].pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def agent_runs(self, sock, bodies, count, headers=(), tcp=None):
        """Runs bench-agent --runs times; the agent's CPU per request is left
        in self.last_cpu_us."""
        res = []
        cpu0 = self.agent_cpu()
        for _ in range(self.args.runs):
            args = [self.agentbench, "--count", str(count), "--warmup", "2"]
            args += ["--tcp", tcp] if tcp else ["--unix", sock]
            for b in bodies:
                args += ["--body", b]
            for h in headers:
                args += ["--header", h]
            res.append(json.loads(run(args)))
        requests = self.args.runs * len(bodies) * (count + 2)
        self.last_cpu_us = (self.agent_cpu() - cpu0) / requests * 1e6
        return res

    def unattended_conf(self):
        pol = os.path.join(self.work, "policy.conf")
        with open(pol, "w") as f:
            # bench-agent (figures 2u, 4) and this harness (figure 3)
            for name, exe in (("bench", self.agentbench), ("harness", sys.executable)):
                f.write("[caller %s]\nuid = %d\nexe = %s\nmode = unattended\n"
                        "daily-cap = 100000\nkey = %s\nkey = %s\npin-file = %s\n"
                        % (name, os.geteuid(), os.path.realpath(exe), self.nocert_a,
                           self.nocert_b, self.pinfile))
        os.chmod(pol, 0o600)
        return "policy = %s\n" % pol

    def fig_agent_unattended(self):
        if "policy" not in open(os.path.join(SRC, "agent", "config.c")).read():
            raise Skip("the unattended policy (issue 4) has not landed")
        if not getattr(self, "title_xml", None):  # figure 2 not run (--only)
            self.title_xml = self.one_title()
            self.sign_body("pkcs11:token=bench-a;id=%01;type=private", self.title_xml,
                           os.path.join(self.work, "body-a.json"))
        body = os.path.join(self.work, "body-a.json")
        sock = self.start_agent(self.unattended_conf())
        try:
            res = self.agent_runs(sock, [body], self.args.unattended_count)
        finally:
            self.stop_agent()
        rate = [r["rate"] for r in res]
        p50 = statistics.median(r["p50_us"] for r in res)
        p99 = statistics.median(r["p99_us"] for r in res)
        over50, over99 = p50 - self.raw_p50, p99 - self.raw_p50
        ratio = statistics.median(rate) / self.raw["median"]
        self.unattended = self.add(
            "2u", "agent one at a time, Unix socket, unattended policy", "sig/s", rate,
            ratio=ratio, target="≥ 0.75 × (1); overhead p50 ≤ 200 µs, p99 ≤ 1000 µs",
            met=ratio >= 0.75 and over50 <= 200 and over99 <= 1000,
            note=("per-request overhead over raw C_Sign: p50 %.0f µs, p99 %.0f µs; "
                  "session+login per request is %.0f µs of it (1b); agent CPU %.0f µs per "
                  "request (C_Sign alone %.0f µs)"
                  % (over50, over99, self.login_p50 - self.raw_p50, self.last_cpu_us,
                     self.raw["cpu_us_per_op"])),
            extra={"agent_cpu_us_per_req": self.last_cpu_us,
                   "p50_us": summary([r["p50_us"] for r in res]),
                   "p99_us": summary([r["p99_us"] for r in res]),
                   "overhead_p50_us": over50, "overhead_p99_us": over99})

    def batch_once(self, sock, body):
        """POST /v1/sign-batch; returns (signatures, seconds from the request to
        the last line). The answer is a stream of JSON lines."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(600)
        s.connect(sock)
        req = (b"POST /v1/sign-batch HTTP/1.1\r\nHost: localhost\r\n"
               b"Content-Type: application/json\r\nConnection: close\r\n"
               b"Content-Length: %d\r\n\r\n" % len(body)) + body
        t0 = time.monotonic()
        s.sendall(req)
        data = b""
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        wall = time.monotonic() - t0
        s.close()
        head, _, rest = data.partition(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n")[0]:
            raise RuntimeError("sign-batch: " + data[:600].decode(errors="replace"))
        if b"chunked" in head.lower():
            body, pos = b"", 0
            while True:
                eol = rest.index(b"\r\n", pos)
                size = int(rest[pos:eol].split(b";")[0], 16)
                if size == 0:
                    break
                body += rest[eol + 2:eol + 2 + size]
                pos = eol + 2 + size + 2
            rest = body
        done = [ln for ln in rest.split(b"\n") if b'"done"' in ln]
        if not done:
            raise RuntimeError("sign-batch: no final line: " + rest[-600:].decode(errors="replace"))
        final = json.loads(done[-1])
        if final.get("result") != "completed":
            raise RuntimeError("sign-batch ended with %s" % final)
        return final["signed"], wall

    def fig_batch(self):
        if "sign-batch" not in open(os.path.join(SRC, "agent", "http.c")).read():
            raise Skip("POST /v1/sign-batch (issue 4) has not landed")
        if not getattr(self, "unattended", None):
            raise Skip("needs the unattended policy (2u)")
        n = self.args.unattended_count
        csvp, out = self.build_titles(n, "batch")
        run([self.titulos, "build", "--config", self.conf, "--csv", csvp, "--out", out])
        docs = [{"id": "b-%d" % i, "document": open(os.path.join(out, nm), encoding="utf-8").read()}
                for i, nm in enumerate(sorted(os.listdir(out)))]
        body = json.dumps({"id": "bench-batch", "format": "titulo-electronico",
                           "key": "pkcs11:token=bench-a;id=%01;type=private",
                           "documents": docs}).encode()
        sock = self.start_agent(self.unattended_conf())
        try:
            cpu0 = self.agent_cpu()
            res = [self.batch_once(sock, body) for _ in range(self.args.runs)]
            cpu = (self.agent_cpu() - cpu0) / (n * self.args.runs) * 1e6
        finally:
            self.stop_agent()
        rate = [k / w for k, w in res]
        ratio = statistics.median(rate) / self.raw["median"]
        self.add("3", "agent sign-batch of %d titles, Unix socket, unattended policy" % n,
                 "sig/s", rate, ratio=ratio, target="≥ 0.90 × (1)", met=ratio >= 0.9,
                 note="from the request to the last line; agent CPU %.0f µs per signature "
                 "(C_Sign alone %.0f µs)" % (cpu, self.raw["cpu_us_per_op"]),
                 extra={"agent_cpu_us_per_sig": cpu})

    def fig_two_tokens(self):
        if not getattr(self, "unattended", None):
            raise Skip("needs the unattended policy (2u): interactive requests wait for one "
                       "dialog at a time, so two tokens cannot sign side by side")
        body_b = self.sign_body("pkcs11:token=bench-b;id=%01;type=private", self.title_xml,
                                os.path.join(self.work, "body-b.json"))
        body_a = os.path.join(self.work, "body-a.json")
        sock = self.start_agent(self.unattended_conf())
        try:
            res = self.agent_runs(sock, [body_a, body_b], self.args.unattended_count)
        finally:
            self.stop_agent()
        rate = [r["rate"] for r in res]
        ratio = statistics.median(rate) / self.unattended["median"]
        self.add("4", "agent, two tokens in parallel (unattended, one client per token)",
                 "sig/s", rate, ratio=statistics.median(rate) / self.raw["median"],
                 target="≥ 1.8 × one token (2u)", met=ratio >= 1.8,
                 note="%.2f × one token through the agent (2u); raw two-token ceiling in 4r"
                 % ratio, extra={"ratio_to_one_token": ratio})

    def fig_browser(self):
        if "browser-port" not in open(os.path.join(SRC, "agent", "config.c")).read():
            raise Skip("the loopback browser listener (issue 4) has not landed")
        import hashlib
        port = free_port()
        origin = "https://registro.bench.invalid"
        token = hashlib.sha256(os.urandom(32)).hexdigest()
        pairs = os.path.join(self.work, "paired-origins")
        fd = os.open(pairs, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("%s %s %d\n" % (origin, hashlib.sha256(token.encode()).hexdigest(),
                                     int(time.time())))
        body = os.path.join(self.work, "body-a.json")
        sock = self.start_agent("browser-port = %d\npaired-origins = %s\n" % (port, pairs))
        try:
            res = self.agent_runs(sock, [body], self.args.agent_count,
                                  headers=["Host: 127.0.0.1:%d" % port, "Origin: " + origin,
                                           "X-Firmante: 1", "Authorization: Bearer " + token],
                                  tcp="127.0.0.1:%d" % port)
        finally:
            self.stop_agent()
        rate = [r["rate"] for r in res]
        p50 = statistics.median(r["p50_us"] for r in res)
        self.add("5", "browser listener, loopback HTTP with Host/Origin/token checks "
                 "(interactive: stand-in approves)", "sig/s", rate,
                 ratio=statistics.median(rate) / self.raw["median"],
                 note="p50 %.0f µs; every browser signature needs the holder, so compare "
                 "with 2 (Unix socket, interactive): %.2f ×"
                 % (p50, statistics.median(rate) / self.interactive["median"]),
                 extra={"p50_us": summary([r["p50_us"] for r in res]),
                        "p99_us": summary([r["p99_us"] for r in res])})

    # -- figure 6 -----------------------------------------------------------
    def fig_build(self):
        n = self.args.titles
        walls, cpus, rss = [], [], []
        for i in range(self.args.runs):
            csvp, out = self.build_titles(n, "build")
            w, c, r = timed([self.titulos, "build", "--config", self.conf, "--csv", csvp,
                             "--out", out])
            walls.append(n / w)
            cpus.append(n / c)
            rss.append(r)
        self.add("6b", "titulos build (CSV → validated unsigned XML files), %d titles%s"
                 % (n, ", tmpfs" if self.fast_is_tmpfs else ""),
                 "titles/s", walls, target="≥ 5000 titles/s",
                 met=statistics.median(walls) >= 5000,
                 note="per CPU second: %.0f titles/s; peak RSS %.1f MiB"
                 % (statistics.median(cpus), statistics.median(rss) / 1024),
                 extra={"per_cpu_s": summary(cpus), "peak_rss_kib": summary(rss)})
        self.build_rss_small = statistics.median(rss)

    def fig_build_disk(self):
        n = self.args.disk_titles
        walls, cpus = [], []
        for i in range(self.args.runs):
            csvp, out = self.build_titles(n, "build-disk", on_disk=True)
            w, c, _ = timed([self.titulos, "build", "--config", self.conf, "--csv", csvp,
                             "--out", out])
            walls.append(n / w)
            cpus.append(n / c)
        self.add("6d", "titulos build on disk (%s), %d titles: one syncfs per batch"
                 % (fs_type(self.work), n), "titles/s", walls,
                 target="≥ 5000 titles/s", met=statistics.median(walls) >= 5000,
                 note="per CPU second: %.0f titles/s; the rest of the time waits for "
                 "the sync (one syncfs, one directory fsync)" % statistics.median(cpus),
                 extra={"per_cpu_s": summary(cpus)})

    def sign_titles(self, n):
        """n signed titles for verify: cadenas rebuilt outside our C code
        (tests/tools/check-titulo), sellos made on the token by bench-csign."""
        from lxml import etree
        loader = importlib.machinery.SourceFileLoader(
            "check_titulo", os.path.join(SRC, "tests", "tools", "check-titulo"))
        spec = importlib.util.spec_from_loader("check_titulo", loader)
        ct = importlib.util.module_from_spec(spec)
        loader.exec_module(ct)
        csvp, out = self.build_titles(n, "verify-unsigned")
        run([self.titulos, "build", "--config", self.conf, "--csv", csvp, "--out", out])
        names = sorted(os.listdir(out))
        docs = [etree.parse(os.path.join(out, nm)) for nm in names]
        certs = {}
        for kid, _, curp, _ in SIGNERS:
            certs[curp] = (kid,) + cert_info(os.path.join(self.tokdir, "certs", curp + ".cer"))
        frpath = "{%s}FirmaResponsables/{%s}FirmaResponsable" % (NS, NS)
        for kid, _, curp, _ in SIGNERS:
            lines = os.path.join(self.fast, "cadenas-%s.txt" % kid)
            frs = []
            with open(lines, "w", encoding="utf-8", newline="\n") as f:
                for d in docs:
                    for fr in d.getroot().findall(frpath):
                        if fr.get("curp") == curp:
                            f.write(ct.cadena(d.getroot(), fr) + "\n")
                            frs.append(fr)
            sigs = run([self.csign_bin, "--module", MODULE, "--pin-file", self.pinfile,
                        "--key", "bench-a:" + kid, "--sign-lines", lines],
                       env=self.env).split()
            assert len(sigs) == len(frs), (len(sigs), len(frs))
            _, b64, serial = certs[curp]
            for fr, s in zip(frs, sigs):
                fr.set("sello", s)
                fr.set("certificadoResponsable", b64)
                fr.set("noCertificadoResponsable", serial)
        signed = os.path.join(self.fast, "verify-signed")
        shutil.rmtree(signed, ignore_errors=True)
        os.mkdir(signed)
        for nm, d in zip(names, docs):
            d.write(os.path.join(signed, nm), xml_declaration=True, encoding="UTF-8")
        self.sellos_per_title = len(docs[0].getroot().findall(frpath))
        return signed, names

    def fig_verify(self):
        n = self.args.verify_titles
        signed, names = self.sign_titles(n)
        run([self.titulos, "verify", os.path.join(signed, names[0])])
        walls, cpus, rss = [], [], []
        for _ in range(self.args.runs):
            w, c, r = timed([self.titulos, "verify"] + names, cwd=signed)
            walls.append(n / w)
            cpus.append(n / c)
            rss.append(r)
        limit = 0.8 * self.ossl_verify["median"] / self.sellos_per_title \
            if getattr(self, "ossl_verify", None) else None
        self.add("6v", "titulos verify (XSD + %d sellos each), %d titles"
                 % (self.sellos_per_title, n), "titles/s", walls,
                 target="≥ 0.8 × OpenSSL verify/s ÷ sellos = %.0f titles/s" % limit
                 if limit else None,
                 met=(statistics.median(walls) >= limit) if limit else None,
                 note="per CPU second: %.0f titles/s; peak RSS %.1f MiB"
                 % (statistics.median(cpus), statistics.median(rss) / 1024),
                 extra={"per_cpu_s": summary(cpus), "peak_rss_kib": summary(rss)})
        self.verify_signed = (signed, names)

    def fig_rss(self):
        n = self.args.rss_titles
        csvp, out = self.build_titles(n, "rss-build")
        w, c, r = timed([self.titulos, "build", "--config", self.conf, "--csv", csvp,
                         "--out", out])
        shutil.rmtree(out, ignore_errors=True)
        self.add("6br", "titulos build, peak RSS for %d titles" % n, "MiB", [r / 1024],
                 target="≤ 64 MiB", met=r / 1024 <= 64,
                 note="one run: %.1f s wall, %.0f titles/s" % (w, n / w),
                 extra={"wall_s": w, "titles_per_s": n / w})

    def fig_rss_verify(self):
        if not getattr(self, "verify_signed", None):
            raise Skip("needs the signed titles of 6v")
        n = self.args.rss_titles
        signed, names = self.verify_signed
        many = os.path.join(self.fast, "rss-verify")
        shutil.rmtree(many, ignore_errors=True)
        os.mkdir(many)
        argv_room = os.sysconf("SC_ARG_MAX") // 2
        files = []
        used = 0
        for i in range(n):
            nm = "%x" % i
            used += len(nm) + 1 + 8
            if used > argv_room:
                break
            os.link(os.path.join(signed, names[i % len(names)]), os.path.join(many, nm))
            files.append(nm)
        w, c, r = timed([self.titulos, "verify"] + files, cwd=many)
        shutil.rmtree(many, ignore_errors=True)
        self.add("6vr", "titulos verify, peak RSS for %d titles" % len(files), "MiB",
                 [r / 1024], target="≤ 64 MiB", met=r / 1024 <= 64,
                 note="one run: %.1f s wall, %.0f titles/s (%d distinct titles, hard-linked)"
                 % (w, len(files) / w, len(names)),
                 extra={"wall_s": w, "titles_per_s": len(files) / w})

    def lote(self, n, names, signed):
        out = os.path.join(self.fast, "lots")
        os.makedirs(out, exist_ok=True)
        res = os.path.join(self.fast, "lote.json")
        with open(res, "w") as f:
            _, _, rss = timed([self.lotebench, "--out", out, "--titles", str(n),
                               "--lot-size", str(self.args.lot_size)] + names, cwd=signed,
                              stdout=f)
        r = json.load(open(res))
        r["maxrss_kib"] = rss
        shutil.rmtree(out, ignore_errors=True)
        return r

    def fig_zip(self):
        if not os.path.exists(self.lotebench):
            raise Skip("no ZIP lot builder in this tree")
        if not getattr(self, "verify_signed", None):
            raise Skip("needs the signed titles of 6v")
        signed, names = self.verify_signed
        n = self.args.verify_titles * 2
        res = [self.lote(n, names, signed) for _ in range(self.args.runs)]
        self.add("6z", "ZIP lots (met_lote_build, %d titles per lot), %d titles"
                 % (self.args.lot_size, n), "titles/s", [r["rate"] for r in res],
                 note="per CPU second: %.0f titles/s"
                 % statistics.median(r["titles"] / r["cpu_s"] for r in res),
                 extra={"per_cpu_s": summary([r["titles"] / r["cpu_s"] for r in res])})
        n = self.args.rss_titles
        r = self.lote(n, names, signed)
        self.add("6zr", "ZIP lots, peak RSS for %d titles" % n, "MiB", [r["maxrss_kib"] / 1024],
                 target="≤ 64 MiB", met=r["maxrss_kib"] / 1024 <= 64,
                 note="one run: %.1f s wall, %.0f titles/s" % (r["seconds"], r["rate"]))

    # -- all ----------------------------------------------------------------
    def conditions(self):
        def cmd(args):
            try:
                return subprocess.run(args, capture_output=True, text=True).stdout.strip()
            except OSError:
                return ""
        cpu = ""
        try:
            for line in open("/proc/cpuinfo"):
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "commit": cmd(["git", "-C", SRC, "rev-parse", "--short", "HEAD"]),
                "cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
                "openssl": cmd(["openssl", "version"]),
                "softhsm": cmd(["softhsm2-util", "--version"]),
                "loadavg_start": os.getloadavg()[0], "runs": self.args.runs,
                "quick": self.args.quick, "build_dir": self.bin}

    def main(self):
        t0 = time.monotonic()
        cond = self.conditions()
        for tool in (self.titulos, self.firmanted, self.csign_bin, self.agentbench,
                     self.lotebench, MODULE, STUB):
            if not os.path.exists(tool):
                raise SystemExit("bench: missing %s (build the tree first)" % tool)
        log("== setup: two SoftHSM2 tokens in %s" % self.work)
        self.setup_tokens()
        log("== figures")
        only = self.args.only
        for fid, name, fn in (
                ("7", "OpenSSL", self.fig_openssl),
                ("1", "raw C_Sign", self.fig_raw),
                ("2s", "pinentry stand-in", self.fig_stub),
                ("2", "agent one at a time", self.fig_agent_one),
                ("2u", "agent one at a time, unattended policy", self.fig_agent_unattended),
                ("3", "agent sign-batch", self.fig_batch),
                ("4r", "raw two tokens", self.fig_raw_two),
                ("4", "agent, two tokens in parallel", self.fig_two_tokens),
                ("5", "browser listener", self.fig_browser),
                ("6b", "titulos build", self.fig_build),
                ("6d", "titulos build on disk", self.fig_build_disk),
                ("6v", "titulos verify", self.fig_verify),
                ("6z", "ZIP lots", self.fig_zip),
                ("6br", "titulos build, peak RSS", self.fig_rss),
                ("6vr", "titulos verify, peak RSS", self.fig_rss_verify)):
            if only is not None and fid not in only:
                continue
            self.figure(fid, name, fn)
            if fid == "1" and self.raw is None:
                raise SystemExit("bench: figure 1 failed; every agent figure is a ratio to it")
        cond["loadavg_end"] = os.getloadavg()[0]
        cond["seconds"] = time.monotonic() - t0
        return {"conditions": cond, "figures": self.figures}


def fmt(v):
    if v >= 1000:
        return "%.0f" % v
    if v >= 10:
        return "%.1f" % v
    return "%.2f" % v


def table(res):
    c = res["conditions"]
    lines = ["firmante benchmarks — %s, commit %s, %s (%s cores), %s"
             % (c["date"], c["commit"], c["cpu"], c["cores"], c["openssl"]),
             "runs per figure: %d; load average %.2f at start, %.2f at end; %.0f s%s"
             % (c["runs"], c["loadavg_start"], c["loadavg_end"], c["seconds"],
                " (QUICK MODE: figures are not meaningful)" if c["quick"] else ""), ""]
    head = ("fig", "what", "median", "unit", "spread", "ratio to (1)", "target", "met")
    rows = []
    for f in res["figures"]:
        if f["status"] != "measured":
            rows.append((f["id"], f["name"], "—", "", "", "", f.get("target", ""),
                         f["status"] + ": " + f["reason"][:160]))
            continue
        spread = "%s–%s (±%.0f%%)" % (fmt(f["min"]), fmt(f["max"]), f["spread_pct"] / 2)
        ratio = "%.3f" % f["ratio"] if "ratio" in f else ""
        met = {True: "yes", False: "NO", None: ""}[f.get("target_met")]
        rows.append((f["id"], f["name"], fmt(f["median"]), f["unit"], spread, ratio,
                     f.get("target", ""), met))
    w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    w[1] = min(w[1], 70)
    lines.append("  ".join(h.ljust(w[i]) for i, h in enumerate(head)).rstrip())
    for r in rows:
        lines.append("  ".join(str(v).ljust(w[i]) for i, v in enumerate(r)).rstrip())
    notes = [(f["id"], f["note"]) for f in res["figures"] if f.get("note")]
    if notes:
        lines.append("")
        lines += ["(%s) %s" % n for n in notes]
    return "\n".join(lines)


def markdown(res):
    """The table as Markdown (README "Performance")."""
    c = res["conditions"]
    out = ["| fig | what | median | spread (min–max) | ratio to (1) | target | met |",
           "|---|---|---|---|---|---|---|"]
    for f in res["figures"]:
        if f["status"] != "measured":
            out.append("| %s | %s | — | | | %s | %s |" % (f["id"], f["name"], f.get("target", ""),
                                                       f["status"] + ": " + f["reason"][:120]))
            continue
        met = {True: "yes", False: "**no**", None: ""}[f.get("target_met")]
        out.append("| %s | %s | %s %s | %s–%s | %s | %s | %s |" % (
            f["id"], f["name"], fmt(f["median"]), f["unit"], fmt(f["min"]), fmt(f["max"]),
            "%.3f" % f["ratio"] if "ratio" in f else "", f.get("target", ""), met))
    out.append("")
    out += ["- (%s) %s" % (f["id"], f["note"]) for f in res["figures"] if f.get("note")]
    out.append("")
    out.append("%s, commit %s, %s, %s cores, %s; %d runs per figure; load average %.2f at "
               "start, %.2f at end; %.0f s." % (c["date"], c["commit"], c["cpu"], c["cores"],
                                                c["openssl"], c["runs"], c["loadavg_start"],
                                                c["loadavg_end"], c["seconds"]))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--quick", action="store_true",
                    help="tiny counts, two runs: checks that every figure is produced")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--json", default=None, help="default BUILD_DIR/bench/results.json")
    ap.add_argument("--titles", type=int, default=None, help="titles per build run")
    ap.add_argument("--rss-titles", type=int, default=None, help="titles for the RSS runs")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--only", metavar="IDS", default=None,
                    help="comma-separated figure ids to measure (e.g. 1,2u,3,4,5); 1 (and "
                    "1b) always run, as every agent figure is a ratio to it, and so do the "
                    "figures the chosen ones build on (2u for 3 and 4, 2 for 5)")
    ap.add_argument("--markdown", metavar="JSON",
                    help="print the table of an earlier run's JSON as Markdown and exit")
    args = ap.parse_args()
    if args.markdown:
        print(markdown(json.load(open(args.markdown))))
        return 0
    q = args.quick
    args.runs = args.runs or (2 if q else 5)
    args.titles = args.titles or (30 if q else 5000)
    args.rss_titles = args.rss_titles or (60 if q else 100000)
    args.verify_titles = 20 if q else 1000
    args.disk_titles = 20 if q else 300
    args.lot_size = 100  # the MET profile's default lot-size
    args.sign_count = 20 if q else 400
    args.agent_count = 8 if q else 60
    args.unattended_count = 20 if q else 300
    if args.only is not None:
        known = {"7", "1", "1b", "2s", "2", "2u", "3", "4r", "4", "5", "6b", "6d", "6v", "6z",
                 "6br", "6vr"}
        only = {x.strip() for x in args.only.split(",") if x.strip()}
        if not only or not only <= known:
            ap.error("--only: figure ids among %s" % ", ".join(sorted(known)))
        only.add("1")
        if only & {"3", "4"}:
            only.add("2u")
        if "5" in only:
            only.add("2")
        args.only = only
    if min(args.runs, args.titles, args.rss_titles) < 1:
        ap.error("counts must be positive")
    b = Bench(args)
    try:
        res = b.main()
    finally:
        b.stop_agent()
        if args.keep:
            log("work directories kept: %s %s" % (b.work, b.fast))
        else:
            shutil.rmtree(b.work, ignore_errors=True)
            if b.fast != b.work:
                shutil.rmtree(b.fast, ignore_errors=True)
    out = args.json or os.path.join(b.bin, "bench", "results.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1, ensure_ascii=False)
    print(table(res))
    print("\nJSON: " + out)
    failed = [f["id"] for f in res["figures"] if f["status"] == "failed"]
    if failed:
        print("figures that failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
