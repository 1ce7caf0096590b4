// firmante.js — sign Título Electrónico documents from a web page with the
// holder's token, through the local agent firmanted (its browser listener,
// docs/protocol.md "Browser listener"). A dependency-free ES module; no build
// step: <script type="module"> import { Firmante } from "./firmante.js".
//
// Every signature is shown to the holder by the agent and approved there;
// the page never sees a PIN. Errors are FirmanteError objects whose `code` is
// the agent's stable code (docs/protocol.md, "Codes"), or one of the
// client-side codes below for what the agent cannot say itself.
//
// Client-side codes (a page cannot read the agent's refusal of an unpaired
// origin, by design, so these are inferred):
//   agent-unreachable  no agent answers on the port (not running, stopped)
//   not-paired         the agent answers but this page is not paired (or its
//                      pairing was revoked)
//   browser-blocked    the browser itself refused the connection (Local
//                      Network Access permission denied, a Content Security
//                      Policy, an insecure page)
//   protocol-error     the agent's reply could not be understood
//   cancelled          cancel() was called

/** Ports tried by connect() when none is given (firmanted's browser-port). */
export const DEFAULT_PORTS = [8765];

/** Most documents per sign-batch request (the agent's own cap). */
export const MAX_BATCH = 1000;

/** Longest time one request may wait for the holder, in milliseconds. */
const REQUEST_TIMEOUT_MS = 15 * 60 * 1000;

/** Longest NDJSON line accepted from the agent, in characters. */
const MAX_LINE = 4 * 1024 * 1024;

const STORAGE_KEY = "firmante.pairing";

/**
 * An error of the agent (problem+json) or of the connection.
 */
export class FirmanteError extends Error {
  /**
   * @param {string} code   stable machine code (agent's, or client-side)
   * @param {string} message sentence for a person
   * @param {{status?: number, detail?: string, id?: string}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message);
    this.name = "FirmanteError";
    /** @type {string} */ this.code = code;
    /** @type {number} */ this.status = extra.status || 0;
    /** @type {string} */ this.detail = extra.detail || message;
    /** @type {string|undefined} */ this.id = extra.id;
  }
}

/**
 * @typedef {Object} ConnectResult
 * @property {"ready"|"not-paired"|"agent-unreachable"|"browser-blocked"} state
 * @property {number} [port]   the port the agent answered on
 * @property {Object} [status] GET /v1/status when ready
 */

/**
 * @typedef {Object} Key
 * @property {string} uri  RFC 7512 URI to pass to signTitle()/signBatch()
 * @property {string} label
 * @property {string} curp
 * @property {string} no_certificado
 * @property {string} not_after
 * @property {boolean} usable
 * @property {{label: string, serial: string}} token
 */

/**
 * @typedef {Object} SignResult
 * @property {string} xml   the title with this signer's sello, certificate
 *                          and certificate number written in
 * @property {string} sello
 * @property {string} noCertificadoResponsable
 * @property {string} curp
 * @property {number} firmanteIndex
 * @property {string} cadenaSha256
 */

/**
 * @typedef {Object} BatchProgress
 * @property {"manifest"|"signed"|"paused"|"resumed"|"problem"|"done"} type
 * @property {number} done   titles signed so far
 * @property {number} total
 * @property {number} [index]
 * @property {Object} [line] the agent's line as sent
 * @property {SignResult} [result] for "signed": the title with its sello
 */

/** @param {unknown} v */
function isObject(v) {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Six random decimal digits for the pairing dialog.
 * @returns {string}
 */
export function pairingCode() {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return String(a[0] % 1000000).padStart(6, "0");
}

/**
 * Write one signer's sello, certificadoResponsable and
 * noCertificadoResponsable into the FirmaResponsable number `index`
 * (0-based, document order) of `xml`, leaving every other byte as it was
 * (the cadena original does not include these attributes).
 * @param {string} xml
 * @param {number} index
 * @param {{sello: string, certificadoResponsable: string, noCertificadoResponsable: string}} r
 * @returns {string}
 */
export function fillSello(xml, index, r) {
  const re = /<([A-Za-z_][\w.-]*:)?FirmaResponsable(?=[\s/>])/g;
  let m;
  let n = 0;
  while ((m = re.exec(xml)) !== null) {
    if (n++ === index) break;
  }
  if (!m) {
    throw new FirmanteError("bad-document",
      `the title has no FirmaResponsable number ${index + 1}`);
  }
  const start = m.index;
  let end = start;
  let quote = "";
  for (; end < xml.length; end++) {
    const c = xml[end];
    if (quote) { if (c === quote) quote = ""; }
    else if (c === '"' || c === "'") quote = c;
    else if (c === ">") break;
  }
  if (end >= xml.length) {
    throw new FirmanteError("bad-document", "a FirmaResponsable tag is not closed");
  }
  let tag = xml.slice(start, end);
  const selfClosing = tag.endsWith("/");
  if (selfClosing) tag = tag.slice(0, -1);
  for (const [name, value] of [["sello", r.sello],
    ["certificadoResponsable", r.certificadoResponsable],
    ["noCertificadoResponsable", r.noCertificadoResponsable]]) {
    if (typeof value !== "string" || /["<>&]/.test(value)) {
      throw new FirmanteError("protocol-error", `the agent's ${name} is not usable`);
    }
    const attr = new RegExp(`(\\s${name}\\s*=\\s*)("[^"]*"|'[^']*')`);
    if (attr.test(tag)) tag = tag.replace(attr, (_all, pre) => `${pre}"${value}"`);
    else tag = tag.replace(/\s*$/, "") + ` ${name}="${value}"`;
  }
  return xml.slice(0, start) + tag + (selfClosing ? "/" : "") + xml.slice(end);
}

/**
 * What a person needs to recognise a title: read from the XML with the
 * browser's own parser. Missing values are "".
 * @param {string} xml
 * @returns {{folioControl: string, graduate: string, curp: string, career: string,
 *            fechaExpedicion: string, institution: string, signers: Array<{curp: string, cargo: string, signed: boolean}>}}
 */
export function summary(xml) {
  const doc = new DOMParser().parseFromString(xml, "application/xml");
  if (doc.getElementsByTagName("parsererror").length) {
    throw new FirmanteError("bad-document", "the file is not well-formed XML");
  }
  const root = doc.documentElement;
  if (!root || root.localName !== "TituloElectronico") {
    throw new FirmanteError("bad-document", "the file is not a Título Electrónico");
  }
  const one = (name) => root.getElementsByTagNameNS("*", name)[0];
  const a = (el, name) => (el && el.getAttribute(name)) || "";
  const p = one("Profesionista");
  const signers = Array.from(root.getElementsByTagNameNS("*", "FirmaResponsable")).map((f) => ({
    curp: a(f, "curp"),
    cargo: a(f, "cargo"),
    signed: !!a(f, "sello") && a(f, "sello") !== "PLACEHOLDER",
  }));
  return {
    folioControl: a(root, "folioControl"),
    graduate: [a(p, "nombre"), a(p, "primerApellido"), a(p, "segundoApellido")]
      .filter(Boolean).join(" "),
    curp: a(p, "curp"),
    career: a(one("Carrera"), "nombreCarrera"),
    fechaExpedicion: a(one("Expedicion"), "fechaExpedicion"),
    institution: a(one("Institucion"), "nombreInstitucion"),
    signers,
  };
}

/** @param {Response} resp */
async function problemOf(resp) {
  let body = null;
  try { body = await resp.json(); } catch (_e) { body = null; }
  if (isObject(body) && typeof body.code === "string") {
    return new FirmanteError(body.code, body.detail || body.title || body.code,
      { status: resp.status, detail: body.detail, id: body.id });
  }
  return new FirmanteError("protocol-error",
    `the agent answered HTTP ${resp.status} without a problem description`,
    { status: resp.status });
}

/**
 * A connection to the local agent for one page.
 */
export class Firmante extends EventTarget {
  /**
   * @param {{ports?: number[], port?: number, host?: string, storage?: Storage|null,
   *           pollSeconds?: number}} [options]
   *   ports: where to look for the agent (default DEFAULT_PORTS);
   *   host: "127.0.0.1" (default) or "localhost";
   *   storage: where the pairing token is kept (default localStorage; null: memory only);
   *   pollSeconds: how often token events are looked for (default 2, 1–60).
   */
  constructor(options = {}) {
    super();
    const ports = options.port ? [options.port] : (options.ports || DEFAULT_PORTS);
    this.ports = ports.filter((p) => Number.isInteger(p) && p > 0 && p < 65536).slice(0, 16);
    this.host = options.host === "localhost" ? "localhost" : "127.0.0.1";
    this.storage = options.storage === undefined ? globalThis.localStorage || null : options.storage;
    this.pollSeconds = Math.min(60, Math.max(1, options.pollSeconds || 2));
    /** @type {number|null} */ this.port = null;
    /** @type {string|null} */ this.token = null;
    /** @type {Set<AbortController>} */ this.running = new Set();
    this.seq = 0;
    this.pollTimer = null;
    /** @type {Map<string, Object>|null} */ this.known = null;
    this.loadPairing();
  }

  /** @param {number} port */
  base(port) { return `http://${this.host}:${port}`; }

  loadPairing() {
    if (!this.storage) return;
    try {
      const saved = JSON.parse(this.storage.getItem(STORAGE_KEY) || "null");
      if (isObject(saved) && typeof saved.token === "string" && /^[0-9a-f]{64}$/.test(saved.token) &&
          this.ports.includes(saved.port)) {
        this.port = saved.port;
        this.token = saved.token;
      }
    } catch (_e) { /* no usable pairing stored */ }
  }

  savePairing() {
    if (!this.storage) return;
    try {
      if (this.token) this.storage.setItem(STORAGE_KEY, JSON.stringify({ port: this.port, token: this.token }));
      else this.storage.removeItem(STORAGE_KEY);
    } catch (_e) { /* storage full or disabled: the pairing lasts for this page only */ }
  }

  /** Forget this page's pairing token (the agent keeps it until `firmante pair revoke`). */
  forget() {
    this.token = null;
    this.savePairing();
  }

  /**
   * Whether anything answers on `port`, without CORS (the answer is opaque):
   * "up", "down", or "blocked" when the browser refused to try.
   * @param {number} port
   * @returns {Promise<"up"|"down"|"blocked">}
   */
  async probe(port) {
    let violated = false;
    const onViolation = () => { violated = true; };
    const doc = globalThis.document;
    if (doc) doc.addEventListener("securitypolicyviolation", onViolation);
    try {
      await fetch(`${this.base(port)}/v1/status`, { mode: "no-cors", cache: "no-store",
        credentials: "omit", signal: AbortSignal.timeout(5000) });
      return "up";
    } catch (_e) {
      if (violated || globalThis.isSecureContext === false) return "blocked";
      try {
        const st = await navigator.permissions.query({ name: "local-network-access" });
        if (st.state === "denied") return "blocked";
      } catch (_e2) { /* permission not known to this browser */ }
      return "down";
    } finally {
      if (doc) doc.removeEventListener("securitypolicyviolation", onViolation);
    }
  }

  /**
   * Find the agent and say whether this page may use it.
   * @returns {Promise<ConnectResult>}
   */
  async connect() {
    let sawBlocked = false;
    const order = this.port ? [this.port, ...this.ports.filter((p) => p !== this.port)] : this.ports;
    for (const port of order) {
      const p = await this.probe(port);
      if (p === "blocked") { sawBlocked = true; continue; }
      if (p === "down") continue;
      this.port = port;
      if (!this.token) return { state: "not-paired", port };
      try {
        const status = await this.request("GET", "/v1/status");
        return { state: "ready", port, status };
      } catch (e) {
        if (e instanceof FirmanteError && e.code === "not-paired") return { state: "not-paired", port };
        if (e instanceof FirmanteError && e.code === "agent-unreachable") continue;
        throw e;
      }
    }
    return { state: sawBlocked ? "browser-blocked" : "agent-unreachable" };
  }

  /**
   * Ask the holder to pair this page: `onCode(code)` is called first so the
   * page can show the 6-digit code the agent's dialog will show too.
   * Resolves once paired; rejects with user-denied, agent-unreachable, ...
   * @param {{onCode?: (code: string) => void, port?: number}} [options]
   * @returns {Promise<{origin: string}>}
   */
  async pair(options = {}) {
    const port = options.port || this.port || this.ports[0];
    const code = pairingCode();
    if (options.onCode) options.onCode(code);
    let resp;
    try {
      resp = await fetch(`${this.base(port)}/v1/pair`, {
        method: "POST", mode: "cors", credentials: "omit", cache: "no-store",
        headers: { "Content-Type": "text/plain" },
        body: JSON.stringify({ code }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (_e) {
      // A refusal carries no CORS header, so it looks like a network error:
      // tell it apart from an agent that is not there.
      const p = await this.probe(port);
      if (p === "up") {
        throw new FirmanteError("user-denied",
          "the holder did not pair this page (refused, no answer in time, or another dialog was open)",
          { status: 403 });
      }
      throw this.unreachable(p);
    }
    if (!resp.ok) throw await problemOf(resp);
    const body = await resp.json();
    if (!isObject(body) || typeof body.token !== "string" || !/^[0-9a-f]{64}$/.test(body.token)) {
      throw new FirmanteError("protocol-error", "the agent's pairing answer has no token");
    }
    this.port = port;
    this.token = body.token;
    this.savePairing();
    return { origin: body.origin };
  }

  /** @param {"down"|"blocked"|"up"} p */
  unreachable(p) {
    if (p === "blocked") {
      return new FirmanteError("browser-blocked",
        "the browser did not let this page reach the signing agent (local network permission or page policy)");
    }
    return new FirmanteError("agent-unreachable",
      "the signing agent firmanted is not running (or has stopped)", { status: 503 });
  }

  /**
   * One request to the agent with the page's headers.
   * @param {"GET"|"POST"} method
   * @param {string} path
   * @param {Object} [body]
   * @param {AbortController} [ctl]
   * @returns {Promise<any>} the JSON body, or the Response when `raw`
   */
  async request(method, path, body, ctl, raw = false) {
    if (!this.port) {
      const c = await this.connect();
      if (c.state !== "ready") throw this.stateError(c.state);
    }
    if (!this.token) throw this.stateError("not-paired");
    const own = ctl || new AbortController();
    const timer = setTimeout(() => own.abort(), REQUEST_TIMEOUT_MS);
    this.running.add(own);
    const headers = { "X-Firmante": "1", Authorization: `Bearer ${this.token}`,
      "X-Request-Id": `page-${++this.seq}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method === "POST") delete headers["X-Request-Id"];
    let resp;
    try {
      resp = await fetch(`${this.base(this.port)}${path}`, {
        method, mode: "cors", credentials: "omit", cache: "no-store", headers,
        body: body === undefined ? undefined : JSON.stringify(body), signal: own.signal,
      });
    } catch (e) {
      clearTimeout(timer);
      this.running.delete(own);
      if (own.signal.aborted) throw new FirmanteError("cancelled", "cancelled");
      const p = await this.probe(this.port);
      if (p === "up") throw this.stateError("not-paired");
      throw this.unreachable(p);
    }
    if (raw) {
      resp.cleanup = () => { clearTimeout(timer); this.running.delete(own); };
      return resp;
    }
    try {
      if (!resp.ok) throw await problemOf(resp);
      return await resp.json();
    } catch (e) {
      if (e instanceof FirmanteError) throw e;
      if (own.signal.aborted) throw new FirmanteError("cancelled", "cancelled");
      throw this.unreachable(await this.probe(this.port));
    } finally {
      clearTimeout(timer);
      this.running.delete(own);
    }
  }

  /** @param {string} state */
  stateError(state) {
    if (state === "not-paired") {
      return new FirmanteError("not-paired",
        "this page is not paired with the signing agent (or its pairing was revoked); pair it first",
        { status: 403 });
    }
    return this.unreachable(state === "browser-blocked" ? "blocked" : "down");
  }

  /** @returns {Promise<Array<Object>>} the tokens present (GET /v1/tokens) */
  async listTokens() {
    const r = await this.request("GET", "/v1/tokens");
    if (!isObject(r) || !Array.isArray(r.tokens)) throw new FirmanteError("protocol-error", "no token list");
    return r.tokens;
  }

  /** @returns {Promise<Key[]>} every key with a certificate (GET /v1/keys) */
  async listKeys() {
    const r = await this.request("GET", "/v1/keys");
    if (!isObject(r) || !Array.isArray(r.keys)) throw new FirmanteError("protocol-error", "no key list");
    return r.keys;
  }

  /**
   * Sign one title for one signer; the holder approves it in the agent's dialog.
   * @param {string} xml  the title (UTF-8 text), at most 1 MiB
   * @param {string|Key} key  a key URI or a key from listKeys()
   * @returns {Promise<SignResult>}
   */
  async signTitle(xml, key) {
    const uri = typeof key === "string" ? key : key.uri;
    const r = await this.request("POST", "/v1/sign", {
      id: `page-${++this.seq}`, format: "titulo-electronico", document: xml, key: uri });
    if (!isObject(r) || typeof r.sello !== "string" || !Number.isInteger(r.firmanteIndex)) {
      throw new FirmanteError("protocol-error", "the agent's answer has no sello");
    }
    return { ...r, xml: fillSello(xml, r.firmanteIndex, r) };
  }

  /**
   * Sign many titles for one signer with one approval (POST /v1/sign-batch).
   * `onProgress` is called for each line the agent sends. Resolves with the
   * results in document order (null for a title not signed) once the agent
   * ends the batch; rejects with the agent's code when nothing could be
   * signed (e.g. user-denied), or agent-unreachable when the agent stops
   * before the end (then `error.results` holds what was signed).
   * @param {string[]} xmls at most MAX_BATCH titles
   * @param {string|Key} key
   * @param {{onProgress?: (p: BatchProgress) => void}} [options]
   * @returns {Promise<{results: Array<SignResult|null>, signed: number, total: number, result: string}>}
   */
  async signBatch(xmls, key, options = {}) {
    if (!Array.isArray(xmls) || xmls.length === 0 || xmls.length > MAX_BATCH) {
      throw new FirmanteError("invalid", `a batch has 1 to ${MAX_BATCH} titles`);
    }
    const uri = typeof key === "string" ? key : key.uri;
    const total = xmls.length;
    const results = new Array(total).fill(null);
    const tell = (p) => { if (options.onProgress) options.onProgress(p); };
    const ctl = new AbortController();
    const resp = await this.request("POST", "/v1/sign-batch", {
      id: `batch-${++this.seq}`, format: "titulo-electronico", key: uri,
      documents: xmls.map((d, i) => ({ id: `t${i}`, document: d })),
    }, ctl, true);
    let done = 0;
    let end = null;
    let firstProblem = null;
    try {
      if (!resp.ok) throw await problemOf(resp);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done: eof } = await reader.read();
        if (value) buf += value;
        if (buf.length > MAX_LINE && buf.indexOf("\n") < 0) {
          throw new FirmanteError("protocol-error", "a line of the agent's answer is too long");
        }
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const text = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!text) continue;
          let line;
          try { line = JSON.parse(text); } catch (_e) {
            throw new FirmanteError("protocol-error", "the agent sent a line that is not JSON");
          }
          if (!isObject(line)) continue;
          if (isObject(line.batch)) tell({ type: "manifest", done, total, line });
          else if (typeof line.event === "string") tell({ type: line.event, done, total, index: line.index, line });
          else if (line.done === true) { end = line; tell({ type: "done", done, total, line }); }
          else if (Number.isInteger(line.index) && line.index >= 0 && line.index < total) {
            if (isObject(line.problem)) {
              firstProblem = firstProblem || line.problem;
              tell({ type: "problem", done, total, index: line.index, line });
            } else if (typeof line.sello === "string") {
              results[line.index] = { ...line, xml: fillSello(xmls[line.index], line.firmanteIndex, line) };
              done++;
              tell({ type: "signed", done, total, index: line.index, line, result: results[line.index] });
            }
          }
        }
        if (eof) break;
      }
    } catch (e) {
      if (e instanceof FirmanteError) throw Object.assign(e, { results });
      if (ctl.signal.aborted) throw Object.assign(new FirmanteError("cancelled", "cancelled"), { results });
      const err = this.unreachable(await this.probe(this.port));
      err.message = `the signing agent stopped after ${done} of ${total} titles`;
      throw Object.assign(err, { results });
    } finally {
      resp.cleanup();
    }
    if (!end) {
      if (ctl.signal.aborted) throw Object.assign(new FirmanteError("cancelled", "cancelled"), { results });
      throw Object.assign(new FirmanteError("agent-unreachable",
        `the signing agent stopped after ${done} of ${total} titles`, { status: 503 }), { results });
    }
    if (done === 0 && firstProblem) {
      throw Object.assign(new FirmanteError(firstProblem.code || "protocol-error",
        firstProblem.detail || firstProblem.code, { status: firstProblem.status }), { results });
    }
    return { results, signed: done, total, result: String(end.result || "") };
  }

  /** Cancel every request in progress (a batch stops after the signature being made). */
  cancel() {
    for (const c of this.running) c.abort();
    this.running.clear();
  }

  /**
   * Listen for "token-arrived" / "token-removed" (event.detail: the token).
   * The token list is polled every `pollSeconds` while a listener is added.
   * @param {string} type
   * @param {EventListenerOrEventListenerObject|null} cb
   * @param {boolean|AddEventListenerOptions} [opts]
   */
  addEventListener(type, cb, opts) {
    super.addEventListener(type, cb, opts);
    if ((type === "token-arrived" || type === "token-removed") && !this.pollTimer) {
      this.pollTimer = setInterval(() => { this.pollTokens().catch(() => {}); }, this.pollSeconds * 1000);
      this.pollTokens().catch(() => {});
    }
  }

  /** Stop looking for token events. */
  stopEvents() {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
    this.known = null;
  }

  async pollTokens() {
    if (!this.token || !this.port) return;
    const tokens = await this.listTokens();
    const now = new Map(tokens.map((t) => [`${t.serial}\u0000${t.label}`, t]));
    if (this.known) {
      for (const [k, t] of now) {
        if (!this.known.has(k)) this.dispatchEvent(new CustomEvent("token-arrived", { detail: t }));
      }
      for (const [k, t] of this.known) {
        if (!now.has(k)) this.dispatchEvent(new CustomEvent("token-removed", { detail: t }));
      }
    }
    this.known = now;
  }
}
