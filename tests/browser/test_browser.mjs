// End-to-end test of web/firmante.js and the demo portal (web/demo/) in a
// real, headless Chromium driven by playwright-core, against a real
// firmanted on a fresh SoftHSM2 token seen through tests/p11shim (which
// makes the token slow, locked or pulled out on command). The pages are
// served from another origin than the agent (a static server on its own
// port); the holder's dialogs are answered by tests/pinentry-stub, whose
// decision the test switches through a file.
//
// Checks, each with a screenshot in $FIRMANTE_BINARY_DIR/browser-artifacts/:
//   no agent, not paired, pairing (code in the dialog), an unpaired origin
//   refused without learning anything, one title signed and verified with
//   `titulos verify`, a denied approval, a batch of 20 verified, a locked
//   PIN, the token pulled out and put back (token events), the agent
//   stopped in the middle of a batch.
//
// Environment: FIRMANTE_SOURCE_DIR, FIRMANTE_BINARY_DIR, FIRMANTE_SHARED_DIR,
// PLAYWRIGHT_CORE (path of the playwright-core package), CHROMIUM (default
// /usr/bin/chromium).

import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const SRC = process.env.FIRMANTE_SOURCE_DIR || path.resolve(path.dirname(new URL(import.meta.url).pathname), "..", "..");
const BIN = process.env.FIRMANTE_BINARY_DIR || path.join(SRC, "build");
const SHARED = process.env.FIRMANTE_SHARED_DIR || path.join(SRC, "..", "shared");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const AGENT = path.join(BIN, "agent", "firmanted");
const TITULOS = path.join(BIN, "submitter", "titulos");
const FIRMANTE = path.join(BIN, "client", "firmante");
const SHIM = path.join(BIN, "tests", "p11shim", "libfirmante-p11shim.so");
const TESTTOKEN = path.join(SRC, "tests", "tools", "fm-testtoken");
const STUB = path.join(SRC, "tests", "pinentry-stub");
const EXAMPLE = path.join(SHARED, "spec", "examples", "oficial-reconstruido-sin-firma.xml");
const EXAMPLE_CURP = "EICA750212HDFRNL01";
const ARTIFACTS = path.join(BIN, "browser-artifacts");
const PIN = "73914682";
const LABEL = "rectoria";
const SIGNER = { name: "MARIA ELENA TORRES RUIZ", curp: "TORM800101MDFRZR05", rfc: "TORM800101AB1" };
const BATCH = 20;

const require = createRequire(import.meta.url);
const { chromium } = require(process.env.PLAYWRIGHT_CORE || "playwright-core");

const failures = [];
function check(cond, what) {
  console.log(`${cond ? "ok  " : "FAIL"} ${what}`);
  if (!cond) failures.push(what);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", ...opts });
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  }
  return r;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on("error", reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function writeAtomic(file, text) {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

/** A static file server for DIR on 127.0.0.1:PORT (the portal's origin). */
function serveStatic(dir, port) {
  const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".css": "text/css", ".json": "application/json", ".xml": "application/xml" };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://x");
    let p = path.normalize(decodeURIComponent(url.pathname));
    if (p.endsWith("/")) p += "index.html";
    const file = path.join(dir, p);
    if (!file.startsWith(dir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404); res.end("not found"); return;
    }
    res.writeHead(200, { "Content-Type": types[path.extname(file)] || "application/octet-stream",
      "Cache-Control": "no-store" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

class Agent {
  constructor(work, port, shimControl) {
    this.dir = path.join(work, "agent");
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    this.sock = path.join(this.dir, "run", "agent.sock");
    this.log = path.join(this.dir, "firmanted.log");
    this.pelog = path.join(this.dir, "pinentry.log");
    this.decision = path.join(this.dir, "decision");
    writeAtomic(this.decision, "approve\n");
    const pinfile = path.join(this.dir, "pin");
    fs.writeFileSync(pinfile, PIN, { mode: 0o600 });
    // The holder's dialogs: the stub, with the decision read from a file at each dialog.
    const wrapper = path.join(this.dir, "pinentry");
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${STUB} --pin-file ${pinfile} --log ${this.pelog} ` +
      `--decision "$(cat ${this.decision})" "$@"\n`, { mode: 0o755 });
    this.conf = path.join(this.dir, "firmanted.conf");
    fs.writeFileSync(this.conf, ["[agent]", `socket = ${this.sock}`, "use-p11kit-modules = false",
      `module = ${SHIM}`, `pinentry = ${wrapper}`, "approval-timeout = 20",
      `audit-log = ${this.dir}/audit.log`, `browser-port = ${port}`,
      `paired-origins = ${this.dir}/paired-origins`, ""].join("\n"));
    this.env = { ...process.env, P11SHIM_CONTROL: shimControl, P11SHIM_LOG: path.join(work, "p11.log") };
  }

  async start() {
    this.err = fs.openSync(this.log, "a");
    this.proc = spawn(AGENT, ["--config", this.conf], { stdio: ["ignore", "ignore", this.err], env: this.env });
    this.exited = new Promise((r) => this.proc.on("exit", (code, sig) => r(code ?? sig)));
    for (let i = 0; i < 100; i++) {
      if (fs.existsSync(this.sock)) return;
      if (this.proc.exitCode !== null) break;
      await sleep(100);
    }
    throw new Error(`firmanted did not start: ${fs.readFileSync(this.log, "utf8")}`);
  }

  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 10000);
    await this.exited;
    clearTimeout(t);
    fs.closeSync(this.err);
  }

  text() {
    return fs.readFileSync(this.log, "utf8") + (fs.existsSync(this.pelog) ? fs.readFileSync(this.pelog, "utf8") : "");
  }
}

/** The unsigned titles: the standard's example for our signer, folioControl 2345678 + i. */
function makeTitles(dir) {
  const base = fs.readFileSync(EXAMPLE, "utf8").split(EXAMPLE_CURP).join(SIGNER.curp);
  const names = [];
  for (let i = 0; i < BATCH + 3; i++) {
    const xml = base.replace(/folioControl="[^"]*"/, `folioControl="${2345678 + i}"`);
    const name = `titulo-${2345678 + i}.xml`;
    fs.writeFileSync(path.join(dir, name), xml);
    names.push(name);
  }
  return names;
}

function verify(files) {
  const r = run(TITULOS, ["verify", ...files], { allowFail: true });
  return { ok: r.status === 0, out: r.stdout + r.stderr };
}

async function state(page) {
  return page.locator("#status").getAttribute("data-state");
}

async function waitState(page, want, ms = 30000) {
  try {
    await page.waitForFunction((w) => {
      const s = document.getElementById("status").dataset.state;
      return Array.isArray(w) ? w.includes(s) : s === w;
    }, want, { timeout: ms });
    return true;
  } catch (_e) {
    return false;
  }
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The signed XML behind each "descargar" link of the page, by folioControl. */
async function downloads(page) {
  return page.evaluate(async () => {
    const out = {};
    for (const row of document.querySelectorAll("#titles tbody tr")) {
      const a = row.querySelector("a.download");
      if (a) out[row.dataset.folio] = { name: a.download, xml: await (await fetch(a.href)).text() };
    }
    return out;
  });
}

async function main() {
  for (const f of [AGENT, TITULOS, FIRMANTE, SHIM, TESTTOKEN, STUB, EXAMPLE, CHROMIUM]) {
    if (!fs.existsSync(f)) throw new Error(`missing ${f}`);
  }
  fs.rmSync(ARTIFACTS, { recursive: true, force: true });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "firmante-browser-test-"));
  const tok = path.join(work, "token");
  run(TESTTOKEN, ["init", "--dir", tok, "--label", LABEL, "--pin", PIN, "--so-pin", "99887766"]);
  run(TESTTOKEN, ["ca", "--dir", tok]);
  run(TESTTOKEN, ["signer", "--dir", tok, "--label", LABEL, "--pin", PIN, "--id", "01",
    "--name", SIGNER.name, "--curp", SIGNER.curp, "--rfc", SIGNER.rfc]);
  process.env.SOFTHSM2_CONF = path.join(tok, "softhsm2.conf");

  // The portal: a copy of web/ with the demo batch beside the page.
  const site = path.join(work, "site");
  fs.cpSync(path.join(SRC, "web"), site, { recursive: true });
  const lote = path.join(site, "demo", "lote");
  fs.mkdirSync(lote, { recursive: true });
  const all = makeTitles(lote);
  fs.writeFileSync(path.join(lote, "index.json"), JSON.stringify(all.slice(0, BATCH)));
  const loose = all.slice(BATCH).map((n) => path.join(lote, n)); // for the file picker

  const agentPort = await freePort();
  const sitePort = await freePort();
  const server = await serveStatic(site, sitePort);
  const ORIGIN = `http://127.0.0.1:${sitePort}`;
  const OTHER = `http://localhost:${sitePort}`; // same files, another (unpaired) origin
  const pageUrl = (origin) => `${origin}/demo/?port=${agentPort}`;
  const control = path.join(work, "p11.ctl");
  writeAtomic(control, "");
  const agent = new Agent(work, agentPort, control);

  const userData = fs.mkdtempSync(path.join(work, "chromium-"));
  // A fresh profile (--user-data-dir) for every run.
  const ctx = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM, headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = ctx.pages()[0] || await ctx.newPage();
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`[pageerror] ${e.message}`));
  try {
    // 1. no agent
    await page.goto(pageUrl(ORIGIN));
    check(await waitState(page, "agent-unreachable"), "no agent running: the page says the agent is not running");
    await shot(page, "01-no-agent");

    // 2. agent running, page not paired
    await agent.start();
    await page.click("#retry");
    check(await waitState(page, "not-paired"), "agent running, page not paired: the page says so");
    await shot(page, "02-not-paired");

    // 3. pairing: the holder's dialog shows the origin and the page's code
    await page.click("#pair");
    check(await waitState(page, "ready"), "pairing approved by the holder: the page is ready");
    const pelog = fs.readFileSync(agent.pelog, "utf8");
    check(pelog.includes(ORIGIN), "the pairing dialog names the page's origin");
    const paired = fs.readFileSync(path.join(agent.dir, "paired-origins"), "utf8");
    check(paired.includes(ORIGIN) && !paired.includes(OTHER), "only the page's origin is paired");
    const options = await page.locator("#signer option").allTextContents();
    check(options.length === 1 && options[0].includes(SIGNER.curp), "the signer's key is offered");
    await shot(page, "03-paired-ready");

    // 4. an unpaired origin learns nothing
    const other = await ctx.newPage();
    await other.goto(pageUrl(OTHER));
    check(await waitState(other, "not-paired"), "an unpaired origin is told it is not paired");
    const probe = await other.evaluate(async (port) => {
      const out = {};
      try {
        const r = await fetch(`http://127.0.0.1:${port}/v1/tokens`, { headers: { "X-Firmante": "1" } });
        out.tokens = `status ${r.status}`;
      } catch (e) { out.tokens = `error ${e.name}`; }
      try {
        const r = await fetch(`http://127.0.0.1:${port}/v1/keys`, { mode: "no-cors" });
        out.noCors = `${r.type} ${r.status} ${(await r.text()).length}`;
      } catch (e) { out.noCors = `error ${e.name}`; }
      return out;
    }, agentPort);
    check(probe.tokens === "error TypeError", `unpaired origin cannot read GET /v1/tokens (${probe.tokens})`);
    check(probe.noCors === "opaque 0 0", `a no-cors request gets an opaque answer only (${probe.noCors})`);
    const keysSeen = await other.locator("#signer option").allTextContents();
    check(!keysSeen.some((t) => t.includes(SIGNER.curp)), "the unpaired page shows no key");
    await shot(other, "04-unpaired-origin");
    await other.close();
    const { status: st403, body: body403 } = await new Promise((resolve) => {
      const rq = http.request({ host: "127.0.0.1", port: agentPort, path: "/v1/tokens", method: "GET",
        headers: { Host: `127.0.0.1:${agentPort}`, Origin: OTHER, "X-Firmante": "1" } }, (res) => {
        let b = ""; res.on("data", (d) => { b += d; }); res.on("end", () => resolve({ status: res.statusCode, body: b, h: res.headers }));
      });
      rq.end();
    });
    check(st403 === 403 && !body403.includes(LABEL) && !body403.includes("serial"),
      `the agent answers an unpaired origin 403 without token details (${st403})`);

    // 5. one title, picked as a file, signed after approval, verified
    await page.setInputFiles("#files", loose[0]);
    await page.waitForSelector("#titles tbody tr");
    const summaryText = await page.locator("#titles tbody tr").first().textContent();
    check(summaryText.includes(String(2345678 + BATCH)) && summaryText.includes("NANOTECNOLOG"),
      "the title's human summary is shown (folioControl, career)");
    await page.click("#titles tbody tr button.sign-one");
    check(await waitState(page, "signed"), "one title signed after the holder's approval");
    await shot(page, "05-one-signed");
    const one = await downloads(page);
    const oneFile = path.join(work, "signed-one.xml");
    const oneXml = one[String(2345678 + BATCH)];
    check(!!oneXml, "the signed title can be downloaded");
    if (oneXml) {
      fs.writeFileSync(oneFile, oneXml.xml);
      const v = verify([oneFile]);
      check(v.ok, `titulos verify accepts the title signed in the browser ${v.ok ? "" : v.out}`);
    }
    const pe2 = fs.readFileSync(agent.pelog, "utf8");
    check(pe2.includes(String(2345678 + BATCH)) && pe2.includes(ORIGIN),
      "the approval dialog showed the folioControl and the page's origin");

    // 6. the holder says no
    writeAtomic(agent.decision, "deny\n");
    await page.setInputFiles("#files", loose[1]);
    await page.waitForSelector(`#titles tbody tr[data-folio="${2345678 + BATCH + 1}"]`);
    await page.click(`#titles tbody tr[data-folio="${2345678 + BATCH + 1}"] button.sign-one`);
    check(await waitState(page, "denied"), "a denied approval is shown as denied");
    check(await page.locator(`#titles tbody tr[data-folio="${2345678 + BATCH + 1}"] a.download`).count() === 0,
      "nothing to download after a denial");
    await shot(page, "06-denied");
    writeAtomic(agent.decision, "approve\n");

    // 7. a batch of 20 with one approval
    await page.goto(pageUrl(ORIGIN));
    check(await waitState(page, "ready"), "the pairing is remembered after a reload");
    await page.click("#demo-batch");
    await page.waitForFunction((n) => document.querySelectorAll("#titles tbody tr").length === n, BATCH);
    await page.click("#sign-all");
    check(await waitState(page, "signed", 90000), "a batch of 20 titles signed");
    check((await page.locator("#progress-text").textContent()) === `${BATCH} de ${BATCH}`, "progress shows 20 of 20");
    await shot(page, "07-batch-signed");
    const batch = await downloads(page);
    const outDir = path.join(work, "signed-batch");
    fs.mkdirSync(outDir);
    const files = Object.values(batch).map((d) => { const f = path.join(outDir, d.name); fs.writeFileSync(f, d.xml); return f; });
    check(files.length === BATCH, `all ${BATCH} signed titles downloaded (${files.length})`);
    const vb = verify(files);
    check(vb.ok, `titulos verify accepts the ${BATCH} titles signed in the browser ${vb.ok ? "" : vb.out}`);
    const audit = fs.readFileSync(path.join(agent.dir, "audit.log"), "utf8");
    check(audit.includes('"sign-batch"') && audit.includes(ORIGIN), "the batch is audited with the page's origin");

    // 8. PIN locked
    writeAtomic(control, "pin_flags=locked\n");
    await page.goto(pageUrl(ORIGIN));
    await waitState(page, "ready");
    await page.setInputFiles("#files", loose[2]);
    await page.waitForSelector("#titles tbody tr");
    await page.click("#titles tbody tr button.sign-one");
    check(await waitState(page, "pin-locked"), "a locked PIN is shown as such");
    await shot(page, "08-pin-locked");
    writeAtomic(control, "pin_flags=none\n");

    // 9. token pulled out and put back: the page follows the token events
    await page.goto(pageUrl(ORIGIN));
    await waitState(page, "ready");
    writeAtomic(control, "removed=1\n");
    check(await waitState(page, "no-token", 20000), "token pulled out: the page says no token is connected (event)");
    await shot(page, "09-no-token");
    writeAtomic(control, "removed=0\n");
    check(await waitState(page, "ready", 20000), "token back: the signer is offered again (event)");

    // 10. the agent stops in the middle of a batch
    writeAtomic(control, "sign_delay_ms=500\n");
    await page.goto(pageUrl(ORIGIN));
    await waitState(page, "ready");
    await page.click("#demo-batch");
    await page.waitForFunction((n) => document.querySelectorAll("#titles tbody tr").length === n, BATCH);
    await page.click("#sign-all");
    await page.waitForFunction(() => document.querySelectorAll("#titles a.download").length >= 2, null, { timeout: 60000 });
    await agent.stop();
    check(await waitState(page, "agent-stopped", 30000), "the agent stopped mid-way is shown as stopped");
    const n = await page.locator("#titles a.download").count();
    check(n >= 2 && n < BATCH, `the titles signed before the stop stay downloadable (${n})`);
    await shot(page, "10-agent-stopped");
  } finally {
    fs.writeFileSync(path.join(ARTIFACTS, "console.log"), consoleLines.join("\n") + "\n");
    await ctx.close();
    server.close();
    await agent.stop();
    if (fs.existsSync(agent.log)) fs.copyFileSync(agent.log, path.join(ARTIFACTS, "firmanted.log"));
    if (failures.length || process.env.FIRMANTE_KEEP_TEST_DIR) console.log(`test files kept in ${work}`);
    else fs.rmSync(work, { recursive: true, force: true });
  }
  const agentLog = fs.readFileSync(path.join(ARTIFACTS, "firmanted.log"), "utf8");
  check(!/AddressSanitizer|LeakSanitizer|runtime error:/.test(agentLog), "the agent ran without a sanitizer report");
  const pinSeen = fs.readdirSync(ARTIFACTS).filter((f) => !f.endsWith(".png"))
    .some((f) => fs.readFileSync(path.join(ARTIFACTS, f), "utf8").includes(PIN));
  check(!pinSeen, "the PIN appears in no log of the run");
}

main().then(() => {
  if (failures.length) {
    console.log(`${failures.length} check(s) failed:\n  ${failures.join("\n  ")}`);
    process.exit(1);
  }
  console.log("all browser checks passed");
}, (e) => {
  console.error(`browser test error: ${e.stack || e}`);
  process.exit(1);
});
