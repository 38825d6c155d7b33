"""Spoken answers: fill placeholders and prepare text for the speech synthesiser (espeak-ng).

Placeholders come in three kinds:

- département-wide values (opening hours, addresses...), shipped in the knowledge base's
  ``departement:`` section and filled here;
- dossier values (:data:`DOSSIER_PLACEHOLDERS`), read from the caller's own dossier after
  identification: until the dossier store exists the bot cannot speak these answers, and
  :func:`fill_answer` returns None for them;
- run-time values (:data:`RUNTIME_PLACEHOLDERS`) the call knows (estimated waiting time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from faq.model import Intent

DOSSIER_PLACEHOLDERS = frozenset(
    {
        "statut_dossier",
        "etape_suivante",
        "liste_pieces_manquantes",
        "date_rdv_evaluation",
        "date_dernier_paiement",
        "date_prochain_paiement",
        "detail_dernier_paiement",
        "adresse_dossier",
        "date_fin_droits",
    }
)
"""Placeholders read from the caller's dossier (identification needed first)."""

RUNTIME_PLACEHOLDERS = frozenset({"temps_attente"})
"""Placeholders only the running call knows (queue state)."""


def missing_placeholders(intent: Intent, values: Mapping[str, str]) -> frozenset[str]:
    """Placeholders of an intent's answer that ``values`` does not provide.

    Args:
        intent: The intent.
        values: Placeholder values.

    Returns:
        The names without a value.
    """
    return frozenset(name for name in intent.placeholders if name not in values)


def fill_answer(intent: Intent, values: Mapping[str, str]) -> str | None:
    """Fill an intent's answer with placeholder values.

    Args:
        intent: The intent.
        values: Placeholder values (département values, plus dossier and run-time values
            when the caller has them).

    Returns:
        The answer text, or None when a placeholder has no value.
    """
    if missing_placeholders(intent, values):
        return None
    return intent.answer.format_map({name: values[name] for name in intent.placeholders})


# Acronyms read letter by letter; the others (CAF, CLIC, CESU, EHPAD...) are said as words
# and get a spelling espeak-ng pronounces the French way.
_SPELLED = (
    "AAH AEEH AGGIR AJPA APA ASH ASPA CCAS CDAPH CMI CNSA ESMS FAM GIR IME MAS MDPH MSA MTP PCH "
    "RIB RQTH RSA SAAD SAMSAH SAVS SMS USLD"
).split()
_AS_WORDS = {
    "AGGIR": "aguire",
    "GIR": "guire",
    "RIB": "rib",
    "SAMSAH": "samsa",
    "CAF": "caf",
    "CLIC": "clic",
    "CESU": "céssu",
    "EHPAD": "éhpad",
    "ESAT": "ésat",
    "SESSAD": "séssad",
    "RAPO": "rapo",
    "SAMU": "samu",
    "IBAN": "iban",
}
_SYMBOLS = (
    (re.compile(r"\b(\d{1,2}\s*h(?:\s*\d{2})?)\s*-\s*(\d)"), r"\1 à \2"),
    (re.compile(r"\s*≥\s*"), " au moins "),
    (re.compile(r"\s*≤\s*"), " au plus "),
    (re.compile(r"(\d)\s*€"), r"\1 euros"),
    (re.compile(r"€"), " euros"),
    (re.compile(r"(\d)\s*%"), r"\1 pour cent"),
    (re.compile(r"\bn°\s*", re.IGNORECASE), "numéro "),
    (re.compile(r"\b(\d{1,2})\s*h\s*(\d{2})\b"), r"\1 heures \2"),
    (re.compile(r"\b(\d{1,2})\s*h\b"), r"\1 heures"),
    (re.compile(r"\b(\d+)\s*-\s*(\d+)\b"), r"\1 à \2"),
    (re.compile(r"\s*[;:]\s*"), ", "),
    (re.compile(r"\s*[–—]\s*"), ", "),
    (re.compile(r"…"), "..."),
    (re.compile(r"[«»\"“”*_#<>\[\]{}|\\^~]"), " "),
    (re.compile(r"\s*/\s*"), " ou "),
    (re.compile(r"\s*\(\s*"), ", "),
    (re.compile(r"\s*\)\s*"), ", "),
    (re.compile(r"&"), " et "),
    (re.compile(r"\b(\d+)\.(\d+)\b"), r"\1,\2"),
)


def _acronym(match: re.Match[str]) -> str:
    word = match.group(0)
    if word in _AS_WORDS:
        return _AS_WORDS[word]
    return " ".join(word)


_ACRONYM_RE = re.compile(
    r"\b(?:" + "|".join(sorted({*_SPELLED, *_AS_WORDS}, key=len)[::-1]) + r")\b"
)


def to_spoken(text: str) -> str:
    """Prepare an answer for espeak-ng.

    Acronyms are spelled ("APA" → "A P A"), or given a French spelling when they are said as
    words ("EHPAD" → "éhpad"); symbols become words ("€" → "euros", "9h30" → "9 heures 30");
    brackets, quotes and other characters synthesisers read badly are removed. Numbers stay
    digits, which espeak-ng reads correctly in French.

    Args:
        text: Answer text.

    Returns:
        Text to synthesise.

    Examples:
        >>> to_spoken("L'APA est versée par le Département (le 5 du mois).")
        "L'A P A est versée par le Département, le 5 du mois."
    """
    text = _ACRONYM_RE.sub(_acronym, text)
    for pattern, replacement in _SYMBOLS:
        text = pattern.sub(replacement, text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+([,.?!])", r"\1", text)
    text = re.sub(r",(\s*,)+", ",", text)
    text = re.sub(r",\s*\.", ".", text)
    return text.strip(" ,")
