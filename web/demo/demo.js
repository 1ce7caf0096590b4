// The demo portal: load unsigned titles, pick the signer, sign one or all,
// download the signed XML. The agent's port comes from ?port=N (default
// firmante.js's DEFAULT_PORTS).
import { Firmante, FirmanteError, summary } from "../firmante.js";

const MAX_FILES = 1000;
const MAX_FILE_BYTES = 1024 * 1024;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const port = Number.parseInt(params.get("port") || "", 10);
const agent = new Firmante(Number.isInteger(port) ? { port } : {});

/** @type {Array<{name: string, xml: string, info: ReturnType<typeof summary>, signed: string|null, row: HTMLTableRowElement}>} */
const titles = [];
let busy = false;
let keys = [];

const MESSAGES = {
  "checking": "Buscando el agente de firma…",
  "agent-unreachable": "El agente de firma (firmanted) no está en ejecución en esta computadora. Inícielo y pulse «Volver a comprobar».",
  "browser-blocked": "El navegador no permitió que esta página se comunique con el agente de firma (permiso de red local o política de la página).",
  "not-paired": "Esta página no está vinculada con el agente de firma.",
  "pairing": "Esperando que el firmante apruebe la vinculación en el diálogo del agente…",
  "ready": "Agente de firma listo.",
  "no-token": "No hay ningún token con una e.firma conectado. Conecte el token del firmante.",
  "signing": "Esperando la aprobación del firmante en el diálogo del agente…",
  "signed": "Títulos firmados.",
  "denied": "El firmante rechazó la firma (o no respondió a tiempo). No se firmó nada.",
  "pin-locked": "El PIN del token está bloqueado. El titular debe desbloquearlo con su herramienta del token.",
  "agent-stopped": "El agente de firma se detuvo durante la firma.",
  "error": "Error.",
};

function setState(state, extra = "") {
  const s = $("status");
  s.dataset.state = state;
  s.textContent = MESSAGES[state] + (extra ? ` ${extra}` : "");
  $("pairing").hidden = !(state === "not-paired" || state === "pairing");
  $("pair").disabled = state === "pairing";
  updateButtons();
}

function updateButtons() {
  const ready = !busy && !!$("signer").value && titles.length > 0;
  $("sign-all").disabled = !ready;
  $("cancel").disabled = !busy;
  for (const t of titles) t.row.querySelector("button.sign-one").disabled = !ready;
}

/** Show an error of firmante.js as one of the page's states. */
function showError(e, signedSoFar) {
  const code = e instanceof FirmanteError ? e.code : "error";
  const detail = e instanceof FirmanteError ? e.detail : String(e);
  if (code === "user-denied") setState("denied");
  else if (code === "pin-locked") setState("pin-locked");
  else if (code === "agent-unreachable") {
    setState(signedSoFar !== undefined ? "agent-stopped" : "agent-unreachable",
      signedSoFar !== undefined ? `Se firmaron ${signedSoFar} títulos antes de que se detuviera; vuelva a iniciarlo para firmar los demás.` : "");
  } else if (code === "not-paired") setState("not-paired");
  else if (code === "browser-blocked") setState("browser-blocked");
  else if (code === "token-removed" || code === "key-not-found") setState("no-token", detail);
  else if (code === "cancelled") setState("ready", "Firma cancelada.");
  else setState("error", `${detail} (${code})`);
  $("status").dataset.code = code;
}

async function refreshKeys() {
  const sel = $("signer");
  const before = sel.value;
  keys = (await agent.listKeys()).filter((k) => k.usable);
  sel.textContent = "";
  if (!keys.length) {
    sel.append(new Option("(ningún token conectado)", ""));
    setState("no-token");
    return;
  }
  for (const k of keys) {
    sel.append(new Option(`${k.label} — ${k.curp} — token ${k.token.label} (certificado ${k.no_certificado}, vence ${k.not_after.slice(0, 10)})`, k.uri));
  }
  if (keys.some((k) => k.uri === before)) sel.value = before;
  setState("ready");
}

async function check() {
  setState("checking");
  delete $("status").dataset.code;
  try {
    const c = await agent.connect();
    if (c.state !== "ready") { setState(c.state); return; }
    await refreshKeys();
  } catch (e) {
    showError(e);
  }
}

async function pair() {
  setState("pairing");
  try {
    await agent.pair({ onCode: (code) => { $("pair-code").textContent = `${code.slice(0, 3)} ${code.slice(3)}`; } });
    $("pair-code").textContent = "";
    await check();
  } catch (e) {
    showError(e);
    if (e instanceof FirmanteError && e.code === "user-denied") {
      $("pairing").hidden = false;
      $("status").textContent = "El firmante no vinculó esta página.";
    }
  }
}

function addTitle(name, xml) {
  if (titles.length >= MAX_FILES) throw new Error(`como máximo ${MAX_FILES} títulos a la vez`);
  const info = summary(xml);
  const row = document.createElement("tr");
  row.dataset.folio = info.folioControl;
  for (const v of [info.folioControl, info.graduate, info.curp, info.career, info.fechaExpedicion]) {
    const td = document.createElement("td");
    td.textContent = v;
    row.append(td);
  }
  const state = document.createElement("td");
  state.className = "state";
  state.textContent = "sin firmar";
  const act = document.createElement("td");
  const b = document.createElement("button");
  b.type = "button";
  b.className = "sign-one";
  b.textContent = "Firmar";
  const t = { name, xml, info, signed: null, row };
  b.addEventListener("click", () => signOne(t));
  act.append(b);
  row.append(state, act);
  $("titles").tBodies[0].append(row);
  titles.push(t);
}

function markSigned(t, xml) {
  t.signed = xml;
  const cell = t.row.querySelector("td.state");
  cell.className = "state state-signed";
  cell.textContent = "firmado ";
  const a = document.createElement("a");
  a.className = "download";
  a.textContent = "descargar";
  a.download = t.name.replace(/\.xml$/i, "") + "-firmado.xml";
  a.href = URL.createObjectURL(new Blob([xml], { type: "application/xml" }));
  cell.append(a);
}

async function signOne(t) {
  busy = true;
  setState("signing");
  try {
    const r = await agent.signTitle(t.signed || t.xml, $("signer").value);
    markSigned(t, r.xml);
    setState("signed", `folioControl ${t.info.folioControl}.`);
  } catch (e) {
    showError(e);
  } finally {
    busy = false;
    updateButtons();
  }
}

async function signAll() {
  const todo = titles.filter((t) => !t.signed);
  if (!todo.length) return;
  busy = true;
  setState("signing");
  const bar = $("progress");
  bar.max = todo.length;
  bar.value = 0;
  $("progress-text").textContent = `0 de ${todo.length}`;
  let signed = 0;
  try {
    const r = await agent.signBatch(todo.map((t) => t.xml), $("signer").value, {
      onProgress: (p) => {
        if (p.type === "signed") {
          signed = p.done;
          markSigned(todo[p.index], p.result.xml);
          bar.value = p.done;
          $("progress-text").textContent = `${p.done} de ${p.total}`;
          $("status").textContent = `Firmando: ${p.done} de ${p.total}`;
        } else if (p.type === "paused") {
          $("status").textContent = "Se retiró el token: la firma espera a que se vuelva a conectar.";
        }
      },
    });
    r.results.forEach((res, i) => { if (res) markSigned(todo[i], res.xml); });
    if (r.result === "completed") setState("signed", `${r.signed} de ${r.total}.`);
    else showError(new FirmanteError(r.result, `${r.signed} de ${r.total} firmados; la firma terminó con: ${r.result}`));
  } catch (e) {
    if (e && Array.isArray(e.results)) e.results.forEach((res, i) => { if (res) markSigned(todo[i], res.xml); });
    showError(e, e instanceof FirmanteError && e.code === "agent-unreachable" ? signed : undefined);
  } finally {
    busy = false;
    updateButtons();
  }
}

async function loadFiles(files) {
  const msg = [];
  for (const f of Array.from(files).slice(0, MAX_FILES)) {
    try {
      if (f.size > MAX_FILE_BYTES) throw new Error("el archivo pasa de 1 MiB");
      addTitle(f.name, await f.text());
    } catch (e) {
      msg.push(`${f.name}: ${e.message}`);
    }
  }
  $("load-message").textContent = msg.length ? `No se cargaron: ${msg.join("; ")}` : `${titles.length} títulos cargados.`;
  updateButtons();
}

async function loadDemoBatch() {
  try {
    const resp = await fetch("lote/index.json", { cache: "no-store" });
    if (!resp.ok) throw new Error("no hay lote de demostración junto a esta página (lote/index.json)");
    const names = await resp.json();
    for (const name of names.slice(0, MAX_FILES)) {
      const r = await fetch(`lote/${encodeURIComponent(name)}`, { cache: "no-store" });
      if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
      addTitle(name, await r.text());
    }
    $("load-message").textContent = `${titles.length} títulos cargados.`;
  } catch (e) {
    $("load-message").textContent = e.message;
  }
  updateButtons();
}

$("retry").addEventListener("click", check);
$("pair").addEventListener("click", pair);
$("files").addEventListener("change", (ev) => loadFiles(ev.target.files));
$("demo-batch").addEventListener("click", loadDemoBatch);
$("signer").addEventListener("change", updateButtons);
$("sign-all").addEventListener("click", signAll);
$("cancel").addEventListener("click", () => agent.cancel());
agent.addEventListener("token-arrived", () => { if (!busy) refreshKeys().catch(showError); });
agent.addEventListener("token-removed", () => { if (!busy) refreshKeys().catch(showError); });
check();
