// Rendering of the screen pop and the dossier. Every datum is inserted as text
// (createElement + textContent): a field holding "<script>" or an HTML attribute stays inert.

/** Create an element with optional class and text. */
export function el(tag, { cls, text, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const child of children) if (child) node.append(child);
  return node;
}

/** Replace the content of a container. */
export function replace(container, ...nodes) {
  container.replaceChildren(...nodes.filter(Boolean));
}

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

/** "2026-09-01" -> "01/09/2026"; ISO date-time -> "01/09/2026 14:05"; else as is. */
export function formatDate(value) {
  if (value === null || value === undefined || value === "") return "—";
  const text = String(value);
  const m = DATE.exec(text);
  if (m) return `${m[3]}/${m[2]}/${m[1]}`;
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return text;
  return d.toLocaleString("fr-FR", { dateStyle: "short", timeStyle: "short" });
}

/** Seconds -> "1 min 05 s". */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h) return `${h} h ${String(m).padStart(2, "0")} min`;
  if (m) return `${m} min ${String(r).padStart(2, "0")} s`;
  return `${r} s`;
}

const EUR = new Intl.NumberFormat("fr-FR", { style: "currency", currency: "EUR" });
export function formatCents(cents) {
  if (cents === null || cents === undefined || cents === "") return "—";
  const n = Number(cents);
  return Number.isFinite(n) ? EUR.format(n / 100) : String(cents);
}

const PRIORITY = { low: "basse", normal: "normale", high: "haute", critical: "critique" };
const IDENTIFICATION = {
  "numero+date_naissance": "par numéro de dossier et date de naissance",
  telephone: "par le numéro de téléphone",
};
const CHANNEL = { telephone: "Téléphone", courrier: "Courrier", email: "Courriel", accueil: "Accueil" };

/** A <dl class="facts"> from [label, value] pairs; empty values are skipped. */
export function facts(pairs) {
  const dl = el("dl", { cls: "facts" });
  for (const [label, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(el("dt", { text: label }));
    const dd = el("dd");
    if (value instanceof Node) dd.append(value);
    else dd.textContent = String(value);
    dl.append(dd);
  }
  return dl;
}

function list(items, render, { ordered = false, cls = "plain" } = {}) {
  const node = el(ordered ? "ol" : "ul", { cls });
  for (const item of items) node.append(el("li", {}, [render(item)]));
  return node;
}

const text = (value) => document.createTextNode(value === null || value === undefined ? "" : String(value));
const join = (parts) => parts.filter((p) => p !== null && p !== undefined && p !== "").join(" — ");

/** Short spoken summary of a pop, for the live regions. */
export function popSummary(pop) {
  if (!pop) return "";
  const who = pop.identified && pop.display_name ? pop.display_name : "appelant non identifié";
  const queue = pop.queue_label || pop.queue || "";
  return join([queue ? `file ${queue}` : "", who, pop.handoff_label || ""]);
}

/** The screen pop: who is calling, why, what the bot heard. */
export function renderPop(container, pop) {
  if (!pop) {
    replace(container, el("p", { cls: "empty", text: "Aucun appel en cours." }));
    return;
  }
  const identity = pop.identified
    ? el("span", {}, [
        el("span", { cls: "identified", text: "Identifié" }),
        text(pop.identification ? ` ${IDENTIFICATION[pop.identification] || pop.identification}` : ""),
      ])
    : el("span", {}, [
        el("span", { cls: "not-identified", text: "Non identifié" }),
        text(pop.caller_number ? ` — numéro ${pop.caller_number}` : " — numéro masqué"),
      ]);
  const nodes = [
    el("p", { cls: "caller-name", text: pop.identified && pop.display_name ? pop.display_name : "Appelant non identifié" }),
    facts([
      ["Identification", identity],
      ["File", pop.queue_label || pop.queue],
      ["Attente", pop.wait_s !== undefined && pop.wait_s !== null ? formatDuration(pop.wait_s) : null],
      ["Priorité", PRIORITY[pop.priority] || pop.priority],
      ["Raison du transfert", pop.handoff_label || pop.handoff_reason],
      ["Parcours", Array.isArray(pop.menu_path) && pop.menu_path.length ? pop.menu_path.join(" › ") : null],
      ["Consultation demandée par", pop.consult_from || null],
    ]),
  ];
  const intents = (pop.intent_labels && pop.intent_labels.length ? pop.intent_labels : pop.intents) || [];
  if (intents.length) {
    nodes.push(el("h3", { text: "Demandes exprimées" }), list(intents, text));
  }
  if (Array.isArray(pop.transcript) && pop.transcript.length) {
    nodes.push(
      el("h3", { text: "Ce que l’appelant a dit au serveur vocal" }),
      list(pop.transcript, (line) => text(`« ${line} »`), { ordered: true, cls: "plain transcript" }),
    );
  }
  replace(container, ...nodes);
}

function status(s) {
  if (!s) return null;
  return join([s.label || s.code, s.date ? `le ${formatDate(s.date)}` : "", s.detail]);
}

function renderDemande(d) {
  const box = el("div", { cls: "demande" });
  box.append(el("h4", { text: join([d.numero, d.type]) }));
  box.append(
    facts([
      ["Statut", status(d.status)],
      ["Circuit", d.circuit],
      ["Déposée le", d.date_depot ? formatDate(d.date_depot) : null],
    ]),
  );
  if (Array.isArray(d.history) && d.history.length) {
    box.append(el("h5", { cls: "h-like", text: "Historique" }), list(d.history, (h) => text(status(h)), { ordered: true }));
  }
  if (Array.isArray(d.missing_documents) && d.missing_documents.length) {
    box.append(
      el("h5", { cls: "h-like", text: "Pièces manquantes" }),
      list(d.missing_documents, (p) =>
        text(join([p.piece, p.date_demande ? `demandée le ${formatDate(p.date_demande)}` : "",
          p.date_relance ? `relancée le ${formatDate(p.date_relance)}` : ""])),
      ),
    );
  }
  if (Array.isArray(d.decisions) && d.decisions.length) {
    box.append(
      el("h5", { cls: "h-like", text: "Décisions" }),
      list(d.decisions, (x) =>
        text(join([x.prestation, x.sens, x.date_decision ? `décidée le ${formatDate(x.date_decision)}` : "",
          x.date_debut ? `du ${formatDate(x.date_debut)}` : "", x.date_fin ? `au ${formatDate(x.date_fin)}` : "",
          x.montant_cents !== null && x.montant_cents !== undefined ? formatCents(x.montant_cents) : "",
          x.gir ? `GIR ${x.gir}` : ""])),
      ),
    );
  }
  return box;
}

function section(title, items, render, emptyText) {
  const nodes = [el("h3", { text: title })];
  if (Array.isArray(items) && items.length) nodes.push(render(items));
  else nodes.push(el("p", { cls: "empty", text: emptyText }));
  return nodes;
}

/** The dossier of a usager (the Dossier JSON of the panel API). */
export function renderDossier(container, dossier) {
  if (!dossier) {
    replace(container, el("p", { cls: "empty", text: "Aucun dossier affiché." }));
    return;
  }
  const name = join([[dossier.civilite, dossier.prenom, dossier.nom].filter(Boolean).join(" ")]);
  const nodes = [el("h3", { text: `Usager : ${name || "sans nom"}` })];
  if (dossier.verified === false) {
    // Found by the caller's number only: said in words, not by colour.
    nodes.push(el("p", { cls: "unverified", attrs: { role: "note" },
      text: "Attention : numéro de l’appelant reconnu, identité non vérifiée. Vérifiez l’identité avant de donner une information du dossier." }));
  }
  nodes.push(
    facts([
      ["Langue", dossier.langue],
      ["Besoins particuliers", Array.isArray(dossier.besoins) && dossier.besoins.length
        ? el("span", { cls: "needs", text: dossier.besoins.join(", ") }) : null],
      ["Mesure de protection", dossier.mesure_protection],
    ]),
  );
  nodes.push(...section("Demandes", dossier.demandes, (items) => {
    const wrap = el("div");
    for (const d of items) wrap.append(renderDemande(d));
    return wrap;
  }, "Aucune demande."));
  const now = Date.now();
  const appointments = Array.isArray(dossier.appointments) ? [...dossier.appointments] : [];
  appointments.sort((a, b) => String(a.debut).localeCompare(String(b.debut)));
  const upcoming = appointments.filter((a) => !(new Date(a.debut).getTime() < now));
  nodes.push(...section("Prochain rendez-vous", upcoming, (items) =>
    list(items, (a) => text(join([formatDate(a.debut), a.type, a.lieu, a.numero]))), "Aucun rendez-vous à venir."));
  nodes.push(...section("Paiements", dossier.payments, (items) =>
    list(items, (p) => text(join([p.prestation, p.periode ? `période ${p.periode}` : "",
      p.date_paiement ? `versé le ${formatDate(p.date_paiement)}` : "", formatCents(p.montant_verse_cents),
      p.statut, p.motif_ecart ? `écart : ${p.motif_ecart}` : ""]))), "Aucun paiement."));
  nodes.push(...section("Aidants", dossier.carers, (items) =>
    list(items, (c) => text(join([c.role, [c.civilite, c.prenom, c.nom].filter(Boolean).join(" "),
      Array.isArray(c.may_know) && c.may_know.length ? `peut être informé de : ${c.may_know.join(", ")}` : ""]))),
  "Aucun aidant."));
  nodes.push(...section("Contacts précédents", dossier.contacts, (items) =>
    list(items, (c) => text(join([formatDate(c.started_at), CHANNEL[c.channel] || c.channel,
      c.handled_by ? `par ${c.handled_by}` : "", c.wrapup_motif, c.outcome, c.summary,
      c.agent_notes ? `note : ${c.agent_notes}` : "",
      c.first_contact_resolved === true ? "résolu au premier contact" : c.first_contact_resolved === false ? "non résolu au premier contact" : "",
      c.follow_up ? `suivi : ${c.follow_up}` : "", c.follow_up_due ? `échéance ${formatDate(c.follow_up_due)}` : ""]))),
  "Aucun contact précédent."));
  replace(container, ...nodes);
}
