// Supervisor page: polls /panel/api/supervisor every 2 s and renders three tables.
// The refresh can be suspended (WCAG 2.2.2 Pause, Stop, Hide); the tables are not live
// regions (a screen reader is not interrupted every 2 s).

import { get, loadSession, logout } from "./api.js";
import { el, formatDate, formatDuration } from "./dossier.js";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
const STATES = {
  offline: "Hors routage",
  available: "● Disponible",
  reserved: "☎ Appel proposé",
  on_call: "☎ En communication",
  wrap_up: "✎ Fin d’appel",
  paused: "⏸ En pause",
};

let timer = null;
let paused = false;
const pauseButton = $("btn-pause-refresh");
const status = $("refresh-status");
const errorBox = $("sup-error");

function cell(value, { num = false, header = false } = {}) {
  const node = el(header ? "th" : "td", { cls: num ? "num" : undefined, text: value === null || value === undefined || value === "" ? "—" : value });
  if (header) node.setAttribute("scope", "row");
  return node;
}

function fill(tableId, rows, emptyText, columns) {
  const body = document.querySelector(`#${tableId} tbody`);
  if (!rows.length) {
    const td = el("td", { text: emptyText });
    td.colSpan = columns;
    body.replaceChildren(el("tr", {}, [td]));
    return;
  }
  body.replaceChildren(...rows);
}

function render(data) {
  const queues = (data.queues || []).map((q) => {
    const a = q.agents || {};
    return el("tr", {}, [
      cell(q.label || q.queue, { header: true }),
      cell(String(q.waiting ?? 0), { num: true }),
      cell(q.waiting ? formatDuration(q.longest_wait_s) : "—", { num: true }),
      cell(String(a.available ?? 0), { num: true }),
      cell(String(a.on_call ?? 0), { num: true }),
      cell(String(a.wrap_up ?? 0), { num: true }),
      cell(String(a.paused ?? 0), { num: true }),
      cell(String(a.reserved ?? 0), { num: true }),
    ]);
  });
  fill("queues-table", queues, "Aucune file configurée.", 8);

  const agents = (data.agents || []).map((a) => el("tr", {}, [
    cell(a.display_name || a.login, { header: true }),
    cell(STATES[a.state] || a.state),
    cell(a.since_s !== null && a.since_s !== undefined ? formatDuration(a.since_s) : "—", { num: true }),
    cell(a.pause_reason),
    cell(a.queue),
  ]));
  fill("agents-table", agents, "Aucun conseiller connecté.", 5);

  const cb = data.callbacks || {};
  fill("callbacks-table", [el("tr", {}, [
    cell(String(cb.pending ?? 0), { num: true }),
    cell(String(cb.overdue ?? 0), { num: true }),
    cell(cb.next_due ? formatDate(cb.next_due) : "—"),
  ])], "", 3);

  status.textContent = `Dernière mise à jour : ${data.at ? formatDate(data.at) : new Date().toLocaleTimeString("fr-FR")}` +
    (paused ? " (actualisation suspendue)." : " (actualisation toutes les 2 secondes).");
}

async function poll() {
  timer = null;
  try {
    const data = await get("/panel/api/supervisor");
    errorBox.textContent = "";
    render(data);
  } catch (err) {
    if (err.status === 401) return;
    errorBox.textContent = `Données non actualisées : ${err.message}`;
  }
  if (!paused) timer = window.setTimeout(poll, POLL_MS);
}

pauseButton.addEventListener("click", () => {
  paused = !paused;
  pauseButton.setAttribute("aria-pressed", paused ? "true" : "false");
  if (paused) {
    window.clearTimeout(timer);
    timer = null;
    status.textContent = "Actualisation suspendue.";
  } else if (timer === null) {
    poll();
  }
});

$("btn-session-logout").addEventListener("click", () => logout());

async function start() {
  try {
    const session = await loadSession();
    $("agent-name").textContent = session.display_name || session.login;
  } catch (err) {
    errorBox.textContent = err.message;
    return;
  }
  poll();
}

start();
