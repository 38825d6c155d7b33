"""Normalisation of spoken French as speech recognisers write it.

Every function is pure and idempotent: ``normalize(normalize(x)) == normalize(x)``.
"""

from __future__ import annotations

import re
import unicodedata

HESITATIONS = frozenset(
    {"euh", "heu", "euhm", "hum", "hm", "hmm", "mmh", "mh", "ben", "bah", "beh", "bon", "ah", "oh"}
    | {"eh", "hein", "bref", "allo"}
)
"""Filler words dropped from utterances."""

_ELISION_RE = re.compile(r"\b(l|d|qu|j|n|s|m|t|c|jusqu|lorsqu|puisqu)['’]")
_NON_WORD_RE = re.compile(r"[^a-z0-9]+")

_UNITS = {
    "zero": 0,
    "zéro": 0,  # for callers of numbers_to_digits on unfolded text (WER scoring)
    "un": 1,
    "une": 1,
    "deux": 2,
    "trois": 3,
    "quatre": 4,
    "cinq": 5,
    "six": 6,
    "sept": 7,
    "huit": 8,
    "neuf": 9,
    "dix": 10,
    "onze": 11,
    "douze": 12,
    "treize": 13,
    "quatorze": 14,
    "quinze": 15,
    "seize": 16,
    "vingt": 20,
    "vingts": 20,
    "trente": 30,
    "quarante": 40,
    "cinquante": 50,
    "soixante": 60,
    "cent": 100,
    "cents": 100,
    "mille": 1000,
}
_KEEP_AS_WORD = frozenset({"un", "une"})
"""Articles are far more often determiners than numbers: only convert them inside a number."""

# Spoken letters as recognisers sometimes write them ("a p a", "m d p h", "c m i", "aime d p h").
_LETTER_WORDS = {
    "a": "a",
    "b": "b",
    "c": "c",
    "d": "d",
    "e": "e",
    "f": "f",
    "effe": "f",
    "g": "g",
    "h": "h",
    "ache": "h",
    "hache": "h",
    "i": "i",
    "j": "j",
    "k": "k",
    "l": "l",
    "m": "m",
    "aime": "m",
    "emme": "m",
    "em": "m",
    "n": "n",
    "enne": "n",
    "o": "o",
    "p": "p",
    "pe": "p",
    "q": "q",
    "ku": "q",
    "r": "r",
    "erre": "r",
    "s": "s",
    "esse": "s",
    "t": "t",
    "u": "u",
    "v": "v",
    "w": "w",
    "x": "x",
    "y": "y",
    "z": "z",
}
_STRICT_LETTERS = frozenset("bcdfghjklmnpqrstvwxz") | {
    "aime",
    "ache",
    "hache",
    "effe",
    "erre",
    "esse",
    "emme",
    "em",
    "enne",
    "ku",
}
"""Tokens that are never French words by themselves, so they anchor an acronym."""

_WEAK_LETTERS = {
    "be": "b",
    "ce": "c",
    "se": "c",
    "de": "d",
    "ge": "g",
    "pe": "p",
    "te": "t",
    "ve": "v",
    "elle": "l",
    "cu": "q",
    "deux": "",
}
"""Letter names that are also French words: they only count inside a known acronym
("aime de pe ache" is MDPH, "a deux e h" is AEEH, but "de" alone stays a word)."""

ACRONYM_FIXES = {
    "apa": "apa",
    "mdph": "mdph",
    "cmi": "cmi",
    "aah": "aah",
    "aeeh": "aeeh",
    "pch": "pch",
    "rqth": "rqth",
    "ash": "ash",
    "cdaph": "cdaph",
    "esat": "esat",
    "ime": "ime",
    "caf": "caf",
    "msa": "msa",
    "cesu": "cesu",
    "ajpa": "ajpa",
    "ehpad": "ehpad",
    "epad": "ehpad",
    "ehpa": "ehpad",
    "mdp": "mdph",
    "emdepeache": "mdph",
    "emdepeh": "mdph",
    "aimdepeache": "mdph",
    "mdpeache": "mdph",
    "pecheache": "pch",
    "pecache": "pch",
    "pcache": "pch",
    "peceache": "pch",
    "cemi": "cmi",
    "cemmi": "cmi",
    "lapa": "apa",
    "appa": "apa",
    "apas": "apa",
    "aeh": "aeeh",
    "jir": "gir",
    "gire": "gir",
    "rappo": "rapo",
    "rapo": "rapo",
    "epade": "ehpad",
    "ehpade": "ehpad",
    "hepad": "ehpad",
    "cezu": "cesu",
    "ccas": "ccas",
    "esms": "esms",
    "mdphe": "mdph",
    "aa": "aah",
    "rqt": "rqth",
    "rsa": "rsa",
    "cmu": "cmu",
}
"""Spelled-out letter runs (joined) mapped to their acronym, with common mis-recognitions."""


_PHRASE_FIXES = (
    # "la pêche" is how recognisers often hear "la PCH" on this line.
    (re.compile(r"\b(la|de|ma|sa|une) peches?\b"), r"\1 pch"),
    # "l'APA" heard as "la pa" / "la pas" ("de pas" is a negation, "de pa" is not).
    (re.compile(r"\b(la|de) pa\b"), "apa"),
    (re.compile(r"(?<!\bje )(?<!\bon )(?<!\bil )(?<!\belle )\bla pas\b"), "apa"),
    (re.compile(r"\b(a|la) a hache\b"), "aah"),
)
"""Mis-recognitions of acronyms that span words (applied to folded, punctuation-free text)."""


def fold(text: str) -> str:
    """Lowercase and strip accents, keeping apostrophes.

    Args:
        text: Raw text.

    Returns:
        Lowercase ASCII-folded text (``œ`` → ``oe``).
    """
    text = text.lower().replace("œ", "oe").replace("æ", "ae").replace("’", "'")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def strip_elisions(text: str) -> str:
    """Remove elided articles and pronouns (``l'apa`` → ``apa``, ``qu'il`` → ``il``).

    Args:
        text: Folded text.

    Returns:
        Text without elisions.
    """
    return _ELISION_RE.sub(" ", text)


def tokenize(text: str) -> list[str]:
    """Split folded text into alphanumeric tokens.

    Args:
        text: Folded text.

    Returns:
        Tokens.
    """
    return [tok for tok in _NON_WORD_RE.split(text) if tok]


def fix_phrases(text: str) -> str:
    """Repair acronyms that recognisers split into ordinary words (``la pêche`` → ``la pch``).

    Args:
        text: Folded text, tokens separated by single spaces.

    Returns:
        The text with known mis-recognitions replaced.
    """
    for pattern, replacement in _PHRASE_FIXES:
        text = pattern.sub(replacement, text)
    return text


def _known_acronym_at(tokens: list[str], i: int) -> tuple[str, int] | None:
    """Longest run of letter names from ``i`` (weak ones included) spelling a known acronym."""
    best: tuple[str, int] | None = None
    joined = ""
    for j in range(i, min(len(tokens), i + 6)):
        tok = tokens[j]
        letter = _LETTER_WORDS.get(tok, _WEAK_LETTERS.get(tok))
        if letter is None:
            break
        if tok == "deux":
            # "a deux e h": the next letter is doubled.
            if j + 1 >= len(tokens) or tokens[j + 1] not in _LETTER_WORDS:
                break
            letter = _LETTER_WORDS[tokens[j + 1]]
        joined += letter
        if j > i and joined in ACRONYM_FIXES and tokens[i] not in _WEAK_LETTERS:
            best = (ACRONYM_FIXES[joined], j + 1)
        elif (
            j > i
            and joined in ACRONYM_FIXES
            and any(t in _STRICT_LETTERS for t in tokens[i : j + 1])
        ):
            best = (ACRONYM_FIXES[joined], j + 1)
    return best


def join_spelled_acronyms(tokens: list[str]) -> list[str]:
    """Join letters spelled one by one into an acronym (``m d p h`` → ``mdph``).

    A run of two or more letter tokens is joined when it contains at least one letter that is
    not a French word on its own, or when the joined form is a known acronym.

    Args:
        tokens: Tokens of a folded utterance.

    Returns:
        Tokens with spelled acronyms joined.
    """
    out: list[str] = []
    i = 0
    while i < len(tokens):
        known = _known_acronym_at(tokens, i)
        if known is not None:
            out.append(known[0])
            i = known[1]
            continue
        j = i
        while j < len(tokens) and tokens[j] in _LETTER_WORDS:
            j += 1
        run = tokens[i:j]
        if len(run) >= 2:
            joined = "".join(_LETTER_WORDS[t] for t in run)
            strict = any(t in _STRICT_LETTERS for t in run)
            if joined not in ACRONYM_FIXES and joined[1:] in ACRONYM_FIXES and len(run) >= 3:
                # "l a p a": the elided article was written as a lone letter.
                out.append(ACRONYM_FIXES[joined[1:]])
                i = j
                continue
            if joined in ACRONYM_FIXES or (strict and len(joined) <= 6):
                out.append(ACRONYM_FIXES.get(joined, joined))
                i = j
                continue
            # A leading article ("a", "de") may precede the acronym: retry without it.
            out.append(tokens[i])
            i += 1
            continue
        out.append(ACRONYM_FIXES.get(tokens[i], tokens[i]))
        i += 1
    return out


def numbers_to_digits(tokens: list[str]) -> list[str]:
    """Turn simple French numbers in words into digits (``vingt et un`` → ``21``).

    Handles units, tens, ``et``, ``soixante-dix``/``quatre-vingt(s)``, ``cent`` and ``mille``.
    A lone ``un``/``une`` stays a word (it is usually an article).

    Args:
        tokens: Folded tokens (hyphens already split).

    Returns:
        Tokens with number words replaced by digits.
    """
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] not in _UNITS or tokens[i] in _KEEP_AS_WORD:
            out.append(tokens[i])
            i += 1
            continue
        total = 0
        current = 0
        j = i
        while j < len(tokens):
            tok = tokens[j]
            if tok == "et" and j + 1 < len(tokens) and tokens[j + 1] in ("un", "une", "onze"):
                j += 1
                continue
            if tok not in _UNITS:
                break
            value = _UNITS[tok]
            if value == 1000:
                total += max(current, 1) * 1000
                current = 0
            elif value == 100:
                current = max(current, 1) * 100
            elif value == 20 and current % 100 == 4:
                current = current - 4 + 80
            else:
                current += value
            j += 1
        out.append(str(total + current))
        i = j
    return out


def normalize_tokens(text: str) -> list[str]:
    """Normalise an utterance into tokens.

    Args:
        text: Utterance as written by a recogniser.

    Returns:
        Folded tokens without elisions or hesitations, with spelled acronyms joined and
        numbers as digits.
    """
    tokens = tokenize(fix_phrases(" ".join(tokenize(strip_elisions(fold(text))))))
    tokens = [tok for tok in tokens if tok not in HESITATIONS]
    return numbers_to_digits(join_spelled_acronyms(tokens))


def normalize(text: str) -> str:
    """Normalise an utterance into a single space-separated string.

    Args:
        text: Utterance as written by a recogniser.

    Returns:
        The normalised utterance (see :func:`normalize_tokens`).

    Examples:
        >>> normalize("Euh, l'a p a de ma mère, ça fait deux mois")
        'apa de ma mere ca fait 2 mois'
    """
    return " ".join(normalize_tokens(text))
