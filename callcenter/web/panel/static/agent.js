// Agent page: routing state, browser softphone, screen pop, dossier, search, wrap-up.

import { ApiError, get, loadSession, logout, post, seg } from "./api.js";
import { el, formatDuration, popSummary, renderDossier, renderPop, replace } from "./dossier.js";
import { buildKeypad } from "./keypad.js";
import { Softphone } from "./softphone.js";
import { PanelSocket } from "./ws.js";

const $ = (id) => document.getElementById(id);

const ui = {
  name: $("agent-name"),
  state: $("agent-state"),
  stateIcon: document.querySelector("#agent-state .state-icon"),
  stateText: $("agent-state-text"),
  linkText: $("link-state-text"),
  navSupervision: $("nav-supervision"),
  sessionLogout: $("btn-session-logout"),
  polite: $("announce-polite"),
  assertive: $("announce-assertive"),
  routingLogin: $("btn-routing-login"),
  ready: $("btn-ready"),
  pauseForm: $("pause-form"),
  pauseReason: $("pause-reason"),
  pause: $("btn-pause"),
  pendingPause: $("pending-pause"),
  routingLogout: $("btn-routing-logout"),
  routingError: $("routing-error"),
  callHeading: $("h-call"),
  callStatus: $("call-status"),
  incoming: $("incoming"),
  incomingText: $("incoming-text"),
  answer: $("btn-answer"),
  reject: $("btn-reject"),
  micError: $("mic-error"),
  mute: $("btn-mute"),
  hold: $("btn-hold"),
  hangup: $("btn-hangup"),
  keypad: $("keypad"),
  transferForm: $("transfer-form"),
  transferTarget: $("transfer-target"),
  transfer: $("btn-transfer"),
  consult: $("btn-consult"),
  consultActions: $("consult-actions"),
  consultComplete: $("btn-consult-complete"),
  consultCancel: $("btn-consult-cancel"),
  transferError: $("transfer-error"),
  audio: $("remote-audio"),
  pop: $("pop"),
  wrapup: $("wrapup"),
  wrapupHeading: $("h-wrapup"),
  wrapupForm: $("wrapup-form"),
  wrapupMotif: $("wrapup-motif"),
  wrapupError: $("wrapup-error"),
  wrapupSave: $("btn-wrapup-save"),
  dossier: $("dossier"),
  dossierHeading: $("h-dossier"),
  searchForm: $("search-form"),
  searchQ: $("search-q"),
  searchReason: $("search-reason"),
  searchError: $("search-error"),
  searchResults: $("search-results"),
};

const STATES = {
  offline: ["○", "Hors routage"],
  available: ["●", "Disponible"],
  reserved: ["☎", "Appel proposé"],
  on_call: ["☎", "En communication"],
  wrap_up: ["✎", "Fin d’appel en cours"],
  paused: ["⏸", "En pause"],
};
const OFFER_ENDED = {
  rejected: "Appel refusé.",
  ring_timeout: "Appel non répondu à temps : il a été proposé à un autre conseiller.",
  caller_hung_up: "L’appelant a raccroché avant la réponse.",
  call_cancelled: "L’appel a été annulé.",
  agent_logged_out: "Appel retiré : vous êtes sorti du routage.",
  agent_paused: "Appel retiré : vous êtes en pause.",
};

const ENDED = {
  caller_hangup: "L’appelant a raccroché.",
  agent_hangup: "Vous avez raccroché.",
  cancelled: "L’appel a été annulé avant la réponse.",
  rejected: "Appel refusé.",
  media_failed: "La liaison audio a échoué : l’appel est coupé.",
};

/** Page state. */
let me = null;
let softphoneEnabled = false;
let softphoneCalls = new Set(); // calls of this softphone known to the server (from hello)
let call = null; // {id, phase: offered|ringing|connecting|connected|held|ended, pop, muted, consulting}
let wrapupCallId = null;
let dossierSource = null; // "call" | "search" | null
let lastSearchReason = "";
let session = null;

const socket = new PanelSocket({ onMessage: handle, onLink: linkChanged });
const phone = new Softphone({
  send: (msg) => socket.send(msg),
  audio: ui.audio,
  onError: (message) => {
    ui.micError.textContent = message;
  },
  onMedia: (state) => {
    if (state === "failed") announce("L’audio de l’appel est coupé (liaison réseau en échec).");
  },
});
const keys = buildKeypad($("keys"), (digit) => {
  if (call && (call.phase === "connected" || call.phase === "held")) phone.dtmf(digit);
});

// --- announcements and focus -------------------------------------------------------------

function announce(message) {
  // Re-setting the same text would not be announced: clear first.
  ui.polite.textContent = "";
  window.setTimeout(() => {
    ui.polite.textContent = message;
  }, 50);
}

function alertNow(message) {
  ui.assertive.textContent = "";
  window.setTimeout(() => {
    ui.assertive.textContent = message;
  }, 50);
}

/** True when moving focus would not disturb the agent (nothing in a form has focus). */
function focusIsFree() {
  const active = document.activeElement;
  if (!active || active === document.body || active.id === "main") return true;
  if (active.matches("input, textarea, select") || active.closest("form")) return false;
  return true;
}

/** If the focused control just became disabled or hidden, put focus somewhere sensible. */
function rescueFocus(target) {
  const active = document.activeElement;
  if (!active || active === document.body || active === ui.callHeading) {
    // Nothing focused, or the heading where the page itself parked the focus.
    target.focus();
    return;
  }
  if (active.disabled || active.closest("[hidden]")) target.focus();
}

// --- rendering -------------------------------------------------------------------------

function renderState() {
  const state = me ? me.state : "offline";
  const [icon, label] = STATES[state] || ["?", state];
  let text = label;
  if (state === "paused" && me.pause_reason) text = `${label} (${me.pause_reason})`;
  if (state !== "offline" && me && me.since) {
    const seconds = Date.now() / 1000 - me.since;
    if (seconds >= 0 && seconds < 86400) text += ` depuis ${formatDuration(seconds)}`;
  }
  ui.state.className = `state state-${state}`;
  ui.stateIcon.textContent = icon;
  ui.stateText.textContent = text;
  if (me && me.pending_pause) {
    ui.pendingPause.textContent = `Pause demandée après cet appel : ${me.pending_pause}.`;
    ui.pendingPause.hidden = false;
  } else {
    ui.pendingPause.hidden = true;
  }
}

function fillPauseReasons(reasons) {
  const current = [...ui.pauseReason.options].map((o) => o.value);
  if (JSON.stringify(current) === JSON.stringify(reasons)) return;
  ui.pauseReason.replaceChildren(...reasons.map((r) => el("option", { text: r, attrs: { value: r } })));
}

function render() {
  renderState();
  const state = me ? me.state : "offline";
  ui.routingLogin.disabled = state !== "offline";
  ui.ready.disabled = !(state === "paused" || state === "wrap_up");
  ui.pause.disabled = state === "offline" || !(me && me.pause_reasons && me.pause_reasons.length);
  ui.pauseReason.disabled = ui.pause.disabled;
  ui.routingLogout.disabled = state === "offline" || state === "on_call" || state === "reserved";

  const phase = call ? call.phase : null;
  const live = phase === "connected" || phase === "held";
  const ringing = phase === "ringing" || phase === "offered";
  ui.incoming.hidden = !ringing;
  ui.answer.hidden = !softphoneEnabled;
  ui.answer.disabled = phase !== "ringing";
  ui.reject.disabled = !ringing;
  const browserAudio = softphoneEnabled && live;
  ui.mute.disabled = !browserAudio || phase === "held";
  ui.hold.disabled = !browserAudio;
  ui.hangup.disabled = !(softphoneEnabled && (live || phase === "connecting"));
  for (const key of keys) key.disabled = !browserAudio || phase === "held";
  ui.mute.setAttribute("aria-pressed", call && call.muted ? "true" : "false");
  ui.hold.setAttribute("aria-pressed", phase === "held" ? "true" : "false");
  const consulting = !!(call && call.consulting);
  const canTransfer = live || state === "on_call";
  ui.transfer.disabled = !canTransfer || consulting;
  ui.consult.disabled = !canTransfer || consulting;
  ui.transferTarget.disabled = !canTransfer || consulting;
  ui.consultActions.hidden = !consulting;
  ui.callStatus.textContent = callStatusText(phase, state);
}

function callStatusText(phase, state) {
  const who = call && call.pop ? popSummary(call.pop) : "";
  switch (phase) {
    case "offered":
      return softphoneEnabled ? `Appel proposé : ${who}` : `Appel proposé : décrochez votre téléphone. ${who}`;
    case "ringing":
      return `Appel entrant : ${who}`;
    case "connecting":
      return "Prise de l’appel : connexion audio en cours…";
    case "connected":
      return call.muted ? "En communication — micro coupé." : "En communication.";
    case "held":
      return "Appel en attente : l’appelant entend la musique d’attente.";
    case "ended":
      return "Appel terminé.";
    default:
      return state === "on_call" ? "En communication (sur votre téléphone)." : "Aucun appel en cours.";
  }
}

function showIncoming() {
  const pop = call && call.pop;
  const summary = popSummary(pop) || "appelant en cours d’identification";
  ui.incomingText.textContent = softphoneEnabled
    ? `Appel entrant — ${summary}`
    : `Appel proposé — ${summary}. Décrochez votre téléphone.`;
}

// --- dossier / pop -----------------------------------------------------------------------

async function loadPop(callId) {
  try {
    const pop = await get(`/panel/api/calls/${seg(callId)}/pop`);
    if (call && call.id === callId) {
      call.pop = pop;
      renderPop(ui.pop, pop);
      showIncoming();
      render();
    }
  } catch (err) {
    if (!(err instanceof ApiError) || err.status === 401) return;
  }
}

async function loadCallDossier(callId) {
  replace(ui.dossier, el("p", { cls: "empty", text: "Chargement du dossier…" }));
  dossierSource = "call";
  try {
    const dossier = await get(`/panel/api/calls/${seg(callId)}/dossier`);
    if (call && call.id === callId) renderDossier(ui.dossier, dossier);
  } catch (err) {
    if (!(call && call.id === callId)) return;
    call.dossierFailed = true;
    const message = err.status === 404
      ? "Pas de dossier lié à cet appel : l’appelant n’est pas identifié. Utilisez la recherche."
      : err.message;
    replace(ui.dossier, el("p", { cls: "empty", text: message }));
  }
}

function clearCallViews() {
  renderPop(ui.pop, null);
  if (dossierSource === "call") {
    renderDossier(ui.dossier, null);
    dossierSource = null;
  }
}

// --- WebSocket messages ----------------------------------------------------------------

function linkChanged(up, attempt) {
  ui.linkText.textContent = up ? "connectée" : "coupée, nouvelle tentative en cours";
  if (!up && attempt === 1) announce("Liaison avec le serveur coupée. Reconnexion en cours…");
  if (up && attempt === 0 && me) announce("Liaison avec le serveur rétablie.");
}

function startCall(id, phase, pop) {
  call = { id, phase, pop: pop || null, muted: false, consulting: false };
  ui.micError.textContent = "";
  ui.transferError.textContent = "";
  renderPop(ui.pop, call.pop);
  showIncoming();
  loadCallDossier(id);
  if (!call.pop) loadPop(id);
}

/** The consultation we took becomes the caller's call (hand-over): same audio, new id. */
function renameCall(id) {
  if (!call || call.id === id) return;
  call.id = id;
  phone.callId = id;
  if (call.pop) call.pop = { ...call.pop, call_id: id, consult_from: null };
  if (me) me.call_id = id;
  loadCallDossier(id);
  render();
  announce("L’appelant vous a été transféré : vous êtes en communication avec lui.");
}

function endCall() {
  phone.close();
  call = null;
}

function handle(msg) {
  switch (msg.type) {
    case "hello":
      softphoneEnabled = !!msg.softphone;
      softphoneCalls = new Set(msg.softphone_calls || []);
      phone.setIceServers(msg.ice_servers);
      applyMe(msg.agent, true);
      for (const id of softphoneCalls) {
        // A consultation we were in when the page reloaded (outside routing): its audio too.
        if (softphoneEnabled && id.endsWith("~consult") && !phone.pc && !call) {
          startCall(id, "connected");
          announce("Rétablissement de l’audio de la consultation en cours…");
          phone.answer(id);
          break;
        }
      }
      break;
    case "state":
      if (!me) return;
      me.state = msg.state;
      me.pause_reason = msg.reason;
      me.pending_pause = msg.pending_pause;
      me.since = msg.at;
      if (msg.state === "available" || msg.state === "paused" || msg.state === "offline") {
        if (call && call.phase !== "ended") endCall();
        else if (call) call = null;
      }
      render();
      announce(`Votre état : ${ui.stateText.textContent}.`);
      break;
    case "offer":
      if (call && call.id === `${msg.call_id}~consult`) {
        // A colleague handed this caller over after consulting us: the call we are in
        // becomes theirs (no new ring; the same audio goes on).
        renameCall(msg.call_id);
        break;
      }
      if (!call || call.id !== msg.call_id) startCall(msg.call_id, softphoneEnabled ? "ringing" : "offered");
      if (me) me.call_id = msg.call_id;
      render();
      if (!softphoneEnabled) {
        alertNow(`Appel proposé : décrochez votre téléphone. ${popSummary(call.pop)}`);
      }
      break;
    case "ring": {
      if (!call || call.id !== msg.call_id) startCall(msg.call_id, "ringing", msg.pop);
      else if (msg.pop) {
        call.pop = msg.pop;
        renderPop(ui.pop, msg.pop);
        // The routing offer came first (the ring may come from another node): if the dossier
        // asked for then was refused, ask again now that the ring is here.
        if (call.dossierFailed) {
          call.dossierFailed = false;
          loadCallDossier(msg.call_id);
        }
      }
      call.phase = "ringing";
      showIncoming();
      render();
      phone.ring(msg.call_id);
      alertNow(`Appel entrant : ${popSummary(call.pop)}. Bouton « Répondre » pour décrocher.`);
      if (focusIsFree()) ui.answer.focus();
      break;
    }
    case "answer_sdp":
      phone.applyAnswer(msg.call_id, msg.sdp);
      break;
    case "call_state":
      callState(msg);
      break;
    case "offer_ended":
      if (call && call.id === msg.call_id && call.phase !== "connected" && call.phase !== "held") {
        endCall();
        clearCallViews();
        render();
        rescueFocus(ui.callHeading);
        announce(OFFER_ENDED[msg.reason] || "L’appel proposé n’est plus disponible.");
      }
      break;
    case "call_answered":
      if (!call || call.id !== msg.call_id) startCall(msg.call_id, "connected");
      if (call.phase !== "held") call.phase = "connected";
      render();
      announce("Appel pris : vous êtes en communication.");
      break;
    case "call_completed": {
      if (call && call.id === msg.call_id) {
        phone.close();
        call.phase = "ended";
      }
      openWrapup(msg.call_id);
      render();
      rescueFocus(ui.wrapupHeading);
      announce(`Appel terminé après ${formatDuration(msg.talk_s)}. Remplissez la fiche de fin d’appel.`);
      break;
    }
    case "wrap_up_ended":
      if (wrapupCallId === msg.call_id && msg.timed_out) {
        announce("Le temps de fin d’appel est écoulé : la fiche peut encore être enregistrée.");
      }
      if (call && call.id === msg.call_id) call = null;
      render();
      break;
    case "call_renamed":
      if (call && call.id === msg.from) renameCall(msg.call_id);
      break;
    case "consult_state":
      consultState(msg);
      break;
    case "caller_dtmf":
      if (call && call.id === msg.call_id) announce(`L’appelant a tapé la touche ${msg.digit}.`);
      break;
    case "event_ignored":
      announce("Action trop tardive : elle n’a pas été prise en compte.");
      break;
    case "error":
      if (msg.call_id && call && call.id === msg.call_id) {
        // A softphone action about this call was refused (e.g. answered too late).
        ui.micError.textContent = `Action refusée par le serveur : ${msg.error || "raison inconnue"}.`;
        if (call.phase === "connecting") {
          phone.close();
          call.phase = "ended";
          render();
          rescueFocus(ui.callHeading);
        }
      } else {
        announce(`Le serveur a signalé une erreur : ${msg.error || "inconnue"}.`);
      }
      break;
    default:
      break;
  }
}

function callState(msg) {
  if (!call || call.id !== msg.call_id) return;
  switch (msg.state) {
    case "connected":
      call.phase = "connected";
      announce("Audio établi : vous êtes en communication.");
      break;
    case "held":
      call.phase = "held";
      announce("Appel mis en attente.");
      break;
    case "resumed":
      call.phase = "connected";
      announce("Appel repris.");
      break;
    case "muted":
      call.muted = true;
      announce("Micro coupé.");
      break;
    case "unmuted":
      call.muted = false;
      announce("Micro réactivé.");
      break;
    case "caller_held":
      announce("L’appelant a mis l’appel en attente.");
      break;
    case "caller_resumed":
      announce("L’appelant a repris l’appel.");
      break;
    case "ended": {
      // A ringing call that ends (rejected, cancelled) is then cleared by "offer_ended".
      phone.close();
      call.phase = "ended";
      announce(ENDED[msg.reason] || "Communication terminée.");
      break;
    }
    default:
      return;
  }
  render();
  rescueFocus(ui.callHeading);
}

/** Resynchronise from a Me (hello or an action's answer). */
function applyMe(agent, fromHello = false) {
  if (!agent) return;
  me = agent;
  fillPauseReasons(agent.pause_reasons || []);
  const id = agent.call_id;
  if (agent.state === "reserved" && id) {
    if (!call || call.id !== id) startCall(id, softphoneEnabled ? "ringing" : "offered");
  } else if (agent.state === "on_call" && id) {
    if (!call || call.id !== id) startCall(id, "connected");
    if (fromHello && softphoneEnabled && !phone.pc && softphoneCalls.has(id)) {
      // The page was reloaded (or the link cut) during the call: the call went on at the
      // server; a new peer connection brings the audio back.
      announce("Rétablissement de l’audio de l’appel en cours…");
      phone.answer(id);
    }
  } else if (agent.state === "wrap_up" && id) {
    if (call && call.id === id && call.phase !== "ended") {
      phone.close();
      call.phase = "ended";
    }
    if (fromHello && wrapupCallId !== id) openWrapup(id);
  } else if (call && call.phase !== "ended") {
    endCall();
    clearCallViews();
  }
  render();
}

// --- wrap-up -----------------------------------------------------------------------------

function openWrapup(callId) {
  if (wrapupCallId !== callId) {
    ui.wrapupForm.reset();
    ui.wrapupError.textContent = "";
    ui.wrapupMotif.removeAttribute("aria-invalid");
  }
  wrapupCallId = callId;
  ui.wrapup.hidden = false;
}

function closeWrapup() {
  wrapupCallId = null;
  ui.wrapup.hidden = true;
  ui.wrapupForm.reset();
}

async function loadMotifs() {
  try {
    const { motifs } = await get("/panel/api/wrapup/motifs");
    const first = ui.wrapupMotif.options[0];
    ui.wrapupMotif.replaceChildren(first, ...motifs.map((m) => el("option", { text: m, attrs: { value: m } })));
  } catch (err) {
    ui.wrapupError.textContent = "La liste des motifs n’a pas pu être chargée.";
  }
}

ui.wrapupForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!wrapupCallId) return;
  const data = new FormData(ui.wrapupForm);
  const motif = String(data.get("motif") || "");
  if (!motif) {
    ui.wrapupError.textContent = "Choisissez le motif de l’appel.";
    ui.wrapupMotif.setAttribute("aria-invalid", "true");
    ui.wrapupMotif.focus();
    return;
  }
  ui.wrapupMotif.removeAttribute("aria-invalid");
  const resolved = String(data.get("resolved") || "");
  const body = {
    call_id: wrapupCallId,
    motif,
    note: String(data.get("note") || ""),
    resolved: resolved === "" ? null : resolved === "true",
    follow_up: String(data.get("follow_up") || "").trim() || null,
    follow_up_due: String(data.get("follow_up_due") || "") || null,
  };
  ui.wrapupSave.disabled = true;
  try {
    const agent = await post("/panel/api/wrapup", body);
    ui.wrapupError.textContent = "";
    closeWrapup();
    if (call && call.phase === "ended") {
      call = null;
      clearCallViews();
    }
    applyMe(agent);
    ui.callHeading.focus();
    announce("Fiche de fin d’appel enregistrée.");
  } catch (err) {
    ui.wrapupError.textContent = err.message;
  } finally {
    ui.wrapupSave.disabled = false;
  }
});

// --- call controls -----------------------------------------------------------------------

ui.answer.addEventListener("click", async () => {
  if (!call || call.phase !== "ringing") return;
  const callId = call.id;
  ui.micError.textContent = "";
  call.phase = "connecting";
  render();
  ui.callHeading.focus();
  announce("Prise de l’appel : ouverture du micro…");
  const ok = await phone.answer(callId);
  if (!ok && call && call.id === callId && call.phase === "connecting") {
    call.phase = "ringing";
    render();
    ui.answer.focus();
  }
});

ui.reject.addEventListener("click", () => {
  if (!call) return;
  phone.reject(call.id);
  announce("Refus de l’appel envoyé.");
});

ui.mute.addEventListener("click", () => {
  if (!call) return;
  call.muted = !call.muted;
  phone.setMuted(call.muted);
  render();
});

ui.hold.addEventListener("click", () => {
  if (!call) return;
  const hold = call.phase !== "held";
  phone.setHeld(hold);
  call.phase = hold ? "held" : "connected";
  render();
});

ui.hangup.addEventListener("click", () => {
  if (!call) return;
  phone.hangup();
  call.phase = "ended";
  render();
  ui.callHeading.focus();
  announce("Vous avez raccroché.");
});

function transferBody() {
  const kind = new FormData(ui.transferForm).get("kind") || "queue";
  const target = ui.transferTarget.value.trim();
  if (!target) {
    ui.transferError.textContent = "Indiquez la destination du transfert.";
    ui.transferTarget.setAttribute("aria-invalid", "true");
    ui.transferTarget.focus();
    return null;
  }
  ui.transferTarget.removeAttribute("aria-invalid");
  ui.transferError.textContent = "";
  return { [kind]: target };
}

ui.transferForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = transferBody();
  if (!body) return;
  try {
    applyMe(await post("/panel/api/agent/transfer", body));
    announce("Appel transféré.");
    ui.transferTarget.value = "";
  } catch (err) {
    ui.transferError.textContent = err.message;
  }
});

ui.consult.addEventListener("click", async () => {
  const body = transferBody();
  if (!body || !call) return;
  try {
    await post("/panel/api/agent/consult", body);
    call.consulting = true;
    render();
    ui.consultComplete.focus();
    announce("Consultation en cours : l’appelant est en attente.");
  } catch (err) {
    ui.transferError.textContent = err.message;
  }
});

const CONSULT_STATES = {
  ringing: "Consultation : le correspondant sonne.",
  connected: "Consultation : vous êtes en ligne avec le correspondant, l’appelant est en attente.",
  failed: "Le correspondant n’a pas répondu : vous êtes de nouveau avec l’appelant.",
  ended: "Le correspondant a raccroché : vous êtes de nouveau avec l’appelant.",
  cancelled: "Consultation annulée : vous êtes de nouveau avec l’appelant.",
  completed: "Transfert effectué : l’appelant est avec le correspondant.",
};

/** How the consultation goes (from the call's node). */
function consultState(msg) {
  if (!call || call.id !== msg.call_id) return;
  if (msg.state === "failed" || msg.state === "ended" || msg.state === "cancelled" || msg.state === "completed") {
    call.consulting = false;
  }
  render();
  announce(CONSULT_STATES[msg.state] || `Consultation : ${msg.state}.`);
}

async function endConsult(action) {
  try {
    const agent = await post(`/panel/api/agent/consult/${action}`);
    if (call) call.consulting = false;
    if (agent && agent.state) applyMe(agent);
    render();
    ui.callHeading.focus();
    announce(action === "complete" ? "Transfert effectué." : "Consultation annulée : vous êtes de nouveau avec l’appelant.");
  } catch (err) {
    ui.transferError.textContent = err.message;
  }
}
ui.consultComplete.addEventListener("click", () => endConsult("complete"));
ui.consultCancel.addEventListener("click", () => endConsult("cancel"));

// --- routing state -----------------------------------------------------------------------

async function routingAction(path, body) {
  ui.routingError.textContent = "";
  try {
    applyMe(await post(`/panel/api/agent/${path}`, body));
    announce(`Votre état : ${ui.stateText.textContent}.`);
  } catch (err) {
    ui.routingError.textContent = err.message;
  }
}

ui.routingLogin.addEventListener("click", () => routingAction("login", {}));
ui.ready.addEventListener("click", () => routingAction("ready", {}));
ui.routingLogout.addEventListener("click", () => routingAction("logout", {}));
ui.pauseForm.addEventListener("submit", (event) => {
  event.preventDefault();
  routingAction("pause", { reason: ui.pauseReason.value });
});

ui.sessionLogout.addEventListener("click", () => {
  socket.close();
  phone.close();
  logout();
});

// --- search ------------------------------------------------------------------------------

ui.searchForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = ui.searchQ.value.trim();
  const reason = ui.searchReason.value.trim();
  ui.searchQ.setAttribute("aria-invalid", q ? "false" : "true");
  ui.searchReason.setAttribute("aria-invalid", reason ? "false" : "true");
  if (!q || !reason) {
    ui.searchError.textContent = !q
      ? "Saisissez un téléphone, un numéro de dossier ou un nom."
      : "Le motif de la consultation est obligatoire.";
    (q ? ui.searchReason : ui.searchQ).focus();
    return;
  }
  ui.searchError.textContent = "";
  try {
    const params = new URLSearchParams({ q, reason });
    const { results } = await get(`/panel/api/dossiers/search?${params}`);
    lastSearchReason = reason;
    showResults(results || []);
  } catch (err) {
    ui.searchError.textContent = err.message;
  }
});

function showResults(results) {
  if (!results.length) {
    replace(ui.searchResults, el("p", { text: "Aucun dossier trouvé." }));
    return;
  }
  const count = el("p", { text: results.length === 1 ? "1 dossier trouvé." : `${results.length} dossiers trouvés.` });
  const listNode = el("ul", { cls: "result-list" });
  for (const r of results) {
    const details = [r.birth_year ? `né(e) en ${r.birth_year}` : "", ...(r.numeros || [])].filter(Boolean).join(", ");
    const button = el("button", { text: `Ouvrir le dossier : ${r.display_name || "sans nom"}${details ? ` (${details})` : ""}` });
    button.type = "button";
    button.addEventListener("click", () => openDossier(r.usager_id));
    listNode.append(el("li", {}, [button]));
  }
  replace(ui.searchResults, count, listNode);
}

async function openDossier(usagerId) {
  try {
    const params = new URLSearchParams({ reason: lastSearchReason });
    const dossier = await get(`/panel/api/dossiers/${seg(usagerId)}?${params}`);
    dossierSource = "search";
    renderDossier(ui.dossier, dossier);
    ui.dossierHeading.focus();
  } catch (err) {
    ui.searchError.textContent = err.message;
  }
}

// --- start -------------------------------------------------------------------------------

async function start() {
  render();
  try {
    session = await loadSession();
  } catch (err) {
    ui.linkText.textContent = "impossible de joindre le serveur";
    ui.stateText.textContent = err.message;
    return;
  }
  ui.name.textContent = session.display_name || session.login;
  ui.navSupervision.hidden = !(session.role === "supervisor" || session.role === "admin");
  await loadMotifs();
  socket.connect();
  window.setInterval(renderState, 15000);
}

start();
