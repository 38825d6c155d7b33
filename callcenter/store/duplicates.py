"""Likely duplicate usagers: the same person entered twice by the back office (issue 4, part 2b).

A scan reads every live usager's identity (names, birth date, civilité, own phones), compares
only the pairs that share a *block* (never all pairs), and scores each compared pair from 0 to
100 with the signals that made the score. Pairs at or above a threshold are returned, best
first, for a person to decide; nothing is ever merged here (see :mod:`callcenter.store.merge`).

Rules this module owns:

1. Normalisation. Names are compared without case, accents, hyphens, apostrophes or spaces
   (``Lefèvre`` = ``LEFEVRE``, ``Jean-Pierre`` = ``Jean Pierre``); particles (``de``, ``du``,
   ``le``...) and doubled letters (``Bonnet``/``Bonet``) count as near-identical; a typo is an
   edit distance (optimal string alignment: a transposition counts one) of 1, 2 from 8 letters.
   Phones are the E.164 numbers the store already holds.
2. Blocking. Two usagers are compared only if they share (a) the birth date and the phonetic
   code (a Soundex, ``ph`` read ``f``) of one name — nom, prénom or nom de naissance, in any
   role —, or (b) the phonetic code of one name with the initial of another (either way
   round: a typo in either name, or nom and prénom swapped, still meet) and two of the three
   parts of the birth date, or its year with day and month in any order (so one wrong digit,
   or day and month swapped, still meet), or (c) one of their own phone numbers. A block
   larger than :attr:`ScanConfig.max_block` (or, for a phone,
   :attr:`ScanConfig.max_phone_block`: a switchboard, an association) is skipped and counted.
   Each family of keys is one sorted ``numpy`` array: no dict of millions of keys.
3. Scoring. Additive evidence points, clamped to 0–100 (:data:`POINTS`): first name, last name
   (or nom de naissance, or swapped with the first name), birth date (same, day/month swapped,
   one digit, two digits transposed), a shared phone (worth less when many usagers share it);
   a different first name, birth date, civilité or NIR counts against. A pair that cannot
   reach the threshold any more is dropped as soon as that is known (the birth date first).
4. Privacy. The scan is audited (one row, counts only); showing pairs to a person goes through
   :func:`describe_pairs`, which audits one row per usager shown. Nothing here logs a name.

Functions are blocking; call them from a thread when an event loop is running.
"""

from __future__ import annotations

import itertools
import re
import time
import unicodedata
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from rapidfuzz.distance import OSA
from sqlalchemy import Connection, Engine, Table, select
from sqlmodel import SQLModel

from callcenter.store import dossier_models
from callcenter.store.audit import Via, audit, transaction

__all__ = [
    "DEFAULT_MIN_SCORE",
    "POINTS",
    "DuplicatePair",
    "DuplicateScan",
    "PairView",
    "PersonRecord",
    "ScanConfig",
    "ScanStats",
    "Signal",
    "UsagerView",
    "clusters",
    "describe_pairs",
    "find_duplicates",
    "load_people",
    "normalize_name",
    "phonetic_code",
    "scan_people",
    "score_pair",
]

_ = dossier_models  # registers the tables in SQLModel.metadata
USAGER: Table = SQLModel.metadata.tables["usager"]
PHONE: Table = SQLModel.metadata.tables["usager_phone"]

DEFAULT_MIN_SCORE = 70
"""Pairs scoring at least this are listed by default (chosen on a tuning seed, see the tests)."""

POINTS: Mapping[str, int] = {
    # First name.
    "same_first_name": 30,
    "first_name_near": 27,
    "first_name_typo": 22,
    "first_name_composed": 20,
    "first_name_gender_variant": 0,
    "different_first_name": -35,
    # Last name: the usager's nom, or the nom de naissance of either.
    "same_last_name": 30,
    "last_name_near": 27,
    "last_name_typo": 22,
    "last_name_composed": 20,
    "maiden_name": 28,
    "maiden_name_typo": 20,
    "different_last_name": -25,
    "different_last_name_married": -10,
    # Nom and prénom entered the wrong way round (added to the two swapped comparisons).
    "names_swapped": -4,
    # Birth date.
    "same_birth_date": 30,
    "birth_date_day_month_swapped": 22,
    "birth_date_one_digit": 20,
    "birth_date_transposed_digits": 18,
    "different_birth_date": -40,
    # Phones (own numbers only; a number shared by many usagers says little).
    "shared_phone": 15,
    "shared_phone_common": 5,
    # Identity documents.
    "different_civilite": -15,
    "different_nir": -40,
}
"""Evidence points of each signal; a pair's score is their sum, clamped to 0–100."""

_MAX_NAMES = 2 * 30
_MAX_PHONE = POINTS["shared_phone"]

_PARTICLES = frozenset(
    {"de", "du", "des", "d", "la", "le", "les", "l", "van", "von", "der", "den", "di", "da", "del"}
)
_SAINTS = {"st": "saint", "ste": "sainte"}
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae", "ß": "ss"})
_NON_LETTERS = re.compile(r"[^a-z]+")
_DOUBLES = re.compile(r"(.)\1+")


# --------------------------------------------------------------------------------------------
# Records and results


@dataclass(frozen=True, slots=True)
class PersonRecord:
    """What the scan reads of a live usager."""

    usager_id: int
    nom: str
    prenom: str
    date_naissance: date
    nom_naissance: str | None = None
    civilite: str | None = None
    phones: tuple[str, ...] = ()
    """The usager's own numbers (E.164); carers' numbers are not identity evidence."""
    has_nir: bool = False
    """Whether a NIR hash is known (two usagers never share one: the column is unique)."""


@dataclass(frozen=True, slots=True)
class Signal:
    """One piece of evidence for or against a pair."""

    code: str
    """A key of :data:`POINTS` (``same_birth_date``, ``first_name_typo``...)."""
    points: int
    """Its weight in the score (negative: evidence against)."""


@dataclass(frozen=True, slots=True)
class DuplicatePair:
    """Two usagers that are likely the same person."""

    first_id: int
    """The lower usager id."""
    second_id: int
    """The higher usager id."""
    score: int
    """0 to 100."""
    reasons: tuple[Signal, ...]
    """The signals that made the score, in the order they were found."""

    @property
    def reason_codes(self) -> tuple[str, ...]:
        """The signals' codes."""
        return tuple(s.code for s in self.reasons)


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """Tuning of a scan."""

    min_score: int = DEFAULT_MIN_SCORE
    """Pairs scoring below this are not returned."""
    max_block: int = 200
    """Name and date blocks with more usagers than this are skipped (counted in the stats)."""
    max_phone_block: int = 10
    """A number shared by more usagers than this is a switchboard: no block, no evidence."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_score <= 100:
            raise ValueError("min_score: must be 0 to 100")
        if self.max_block < 2 or self.max_phone_block < 2:
            raise ValueError("max_block, max_phone_block: must be 2 or more")


@dataclass(frozen=True, slots=True)
class ScanStats:
    """What a scan did, for the benchmark and the CLI (counts and seconds only)."""

    usagers: int
    """Live usagers read."""
    candidate_pairs: int
    """Distinct pairs sharing at least one block."""
    pairs: int
    """Pairs at or above the threshold."""
    skipped_blocks: int
    """Blocks larger than the configured maximum, left out."""
    largest_block: int
    """Size of the largest block compared."""
    load_seconds: float
    """Reading the usagers (from the store, for :func:`find_duplicates`) and normalising them."""
    block_seconds: float
    """Grouping usagers into blocks and listing the candidate pairs."""
    score_seconds: float
    """Comparing the candidate pairs."""

    def as_json(self) -> dict[str, Any]:
        """Return the stats as a JSON-ready dict (seconds rounded to the millisecond)."""
        return {
            "usagers": self.usagers,
            "candidate_pairs": self.candidate_pairs,
            "pairs": self.pairs,
            "skipped_blocks": self.skipped_blocks,
            "largest_block": self.largest_block,
            "load_seconds": round(self.load_seconds, 3),
            "block_seconds": round(self.block_seconds, 3),
            "score_seconds": round(self.score_seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class DuplicateScan:
    """The result of a scan: pairs, best first, and what it cost."""

    pairs: tuple[DuplicatePair, ...]
    """By score (descending), then ids."""
    stats: ScanStats


# --------------------------------------------------------------------------------------------
# Normalisation


def normalize_name(text: str) -> str:
    """Return ``text`` lower-cased, without accents, with words separated by single spaces.

    Hyphens, apostrophes, dots and digits separate words; ``œ``/``æ`` are spelt out and
    ``St``/``Ste`` become ``saint``/``sainte``. ``"Lefèvre-d'Ornano"`` → ``"lefevre d ornano"``.
    """
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    words = _NON_LETTERS.sub(" ", plain).split()
    return " ".join(_SAINTS.get(w, w) for w in words)


_SOUNDEX = {
    **dict.fromkeys("bfpv", "1"),
    **dict.fromkeys("cgjkqsxz", "2"),
    **dict.fromkeys("dt", "3"),
    "l": "4",
    **dict.fromkeys("mn", "5"),
    "r": "6",
}


def phonetic_code(word: str) -> str:
    """Return a Soundex code of a normalised word without spaces (``"martin"`` → ``"m635"``).

    The first letter is kept; consonants that sound alike share a digit; vowels, ``h``, ``w``
    and ``y`` separate; three digits at most. Names that differ by a late typo, a doubled
    letter or a silent letter usually share their code. Empty for an empty word.
    """
    if not word:
        return ""
    ph = word.replace("ph", "f")
    digits: list[str] = []
    last = _SOUNDEX.get(ph[0], "")
    for ch in ph[1:]:
        code = _SOUNDEX.get(ch, "")
        if code and code != last:
            digits.append(code)
            if len(digits) == 3:
                break
        if ch not in "hw":
            last = code
    return ph[0] + "".join(digits)


def _code_int(code: str) -> int:
    """Pack a phonetic code into an int below 27 * 7**3 (a block key component)."""
    if not code:
        return 0
    value = ord(code[0]) - ord("a") + 1
    for digit in code[1:].ljust(3, "0"):
        value = value * 7 + int(digit)
    return value


_CODE_SPAN = 27 * 7**3


@dataclass(frozen=True, slots=True)
class _Name:
    """One name, normalised in the forms the comparison needs."""

    compact: str
    """Normalised, without spaces."""
    collapsed: str
    """Without particles, spaces and doubled letters (``de la Fontaine`` → ``fontaine``)."""
    tokens: frozenset[str]
    """Words without particles (composed names: ``{"jean", "pierre"}``)."""
    code: int
    """Packed phonetic code of ``collapsed``."""
    initial: int
    """First letter of ``collapsed`` (1 to 26; 0 if empty)."""
    token_codes: frozenset[tuple[int, int]]
    """Code and initial of each word of a composed name (empty for a single word)."""


def _initial(word: str) -> int:
    return ord(word[0]) - ord("a") + 1 if word else 0


def _name(raw: str, cache: dict[str, _Name]) -> _Name:
    found = cache.get(raw)
    if found is not None:
        return found
    words = normalize_name(raw).split()
    core = [w for w in words if w not in _PARTICLES] or words
    compact = "".join(words)
    collapsed = _DOUBLES.sub(r"\1", "".join(core))
    tokens = frozenset(core)
    made = _Name(
        compact,
        collapsed,
        tokens,
        _code_int(phonetic_code(collapsed)),
        _initial(collapsed),
        frozenset((_code_int(phonetic_code(_DOUBLES.sub(r"\1", t))), _initial(t)) for t in tokens)
        if len(tokens) > 1
        else frozenset(),
    )
    cache[raw] = made
    return made


class _Prepared:
    """A usager ready to be compared (internal; plain slots for speed and memory)."""

    __slots__ = ("civ", "date", "digits", "first", "last", "maiden", "nir", "phones", "uid")

    def __init__(self, person: PersonRecord, cache: dict[str, _Name]) -> None:
        self.uid = person.usager_id
        self.first = _name(person.prenom, cache)
        self.last = _name(person.nom, cache)
        maiden = person.nom_naissance
        self.maiden: _Name | None = (
            _name(maiden, cache) if maiden and normalize_name(maiden) else None
        )
        self.date = person.date_naissance
        self.digits = person.date_naissance.strftime("%d%m%Y")
        self.civ = _sex(person.civilite)
        self.phones = person.phones
        self.nir = person.has_nir


def _sex(civilite: str | None) -> str | None:
    if not civilite:
        return None
    text = normalize_name(civilite).replace(" ", "")
    if text.startswith(("mme", "mlle", "madame", "mademoiselle")):
        return "F"
    if text in ("m", "mr", "monsieur"):
        return "M"
    return None


# --------------------------------------------------------------------------------------------
# Scoring

_EXACT, _NEAR, _TYPO, _COMPOSED, _GENDER, _DIFFERENT = range(6)


def _compare(a: _Name, b: _Name, *, first_name: bool) -> int:
    """Return how close two names are: one of the ``_EXACT`` … ``_DIFFERENT`` levels."""
    if a.compact == b.compact:
        return _EXACT
    x, y = a.collapsed, b.collapsed
    if x == y:
        return _NEAR
    if first_name and (x + "e" == y or y + "e" == x):
        return _GENDER  # Louis / Louise, René / Renée: twins of both sexes, or a slip
    longest = max(len(a.compact), len(b.compact))
    allowed = 0 if longest < 3 else (1 if longest < 8 else 2)
    if allowed and (
        OSA.distance(x, y, score_cutoff=allowed) <= allowed
        or OSA.distance(a.compact, b.compact, score_cutoff=allowed) <= allowed
    ):
        return _TYPO
    if (a.tokens < b.tokens or b.tokens < a.tokens) and a.tokens and b.tokens:
        return _COMPOSED
    return _DIFFERENT


_FIRST_CODES = (
    "same_first_name",
    "first_name_near",
    "first_name_typo",
    "first_name_composed",
    "first_name_gender_variant",
    "different_first_name",
)
_LAST_CODES = (
    "same_last_name",
    "last_name_near",
    "last_name_typo",
    "last_name_composed",
    "",
    "different_last_name",
)


def _last_name_signal(a: _Prepared, b: _Prepared) -> Signal:
    level = _compare(a.last, b.last, first_name=False)
    if level <= _COMPOSED:
        code = _LAST_CODES[level]
        return Signal(code, POINTS[code])
    # A woman's married name against her maiden name, recorded on either side or both.
    best = _DIFFERENT
    for x, y in ((a.maiden, b.last), (a.last, b.maiden), (a.maiden, b.maiden)):
        if x is not None and y is not None:
            best = min(best, _compare(x, y, first_name=False))
    if best in (_EXACT, _NEAR):
        return Signal("maiden_name", POINTS["maiden_name"])
    if best in (_TYPO, _COMPOSED):
        return Signal("maiden_name_typo", POINTS["maiden_name_typo"])
    if "M" not in (a.civ, b.civ):
        # Possibly a married name without the maiden name recorded: weak evidence against.
        return Signal("different_last_name_married", POINTS["different_last_name_married"])
    return Signal("different_last_name", POINTS["different_last_name"])


def _first_name_signal(x: _Name, y: _Name) -> Signal:
    code = _FIRST_CODES[_compare(x, y, first_name=True)]
    return Signal(code, POINTS[code])


def _name_signals(a: _Prepared, b: _Prepared) -> list[Signal]:
    direct = [_first_name_signal(a.first, b.first), _last_name_signal(a, b)]
    direct_points = direct[0].points + direct[1].points
    if direct_points >= _MAX_NAMES - 6:
        return direct
    # Nom and prénom the wrong way round on one record.
    first_level = _compare(a.first, b.last, first_name=True)
    last_level = _compare(a.last, b.first, first_name=False)
    if first_level <= _COMPOSED and last_level <= _COMPOSED:
        cross_first = Signal(_FIRST_CODES[first_level], POINTS[_FIRST_CODES[first_level]])
        cross_last = Signal(_LAST_CODES[last_level], POINTS[_LAST_CODES[last_level]])
        swapped = cross_first.points + cross_last.points + POINTS["names_swapped"]
        if swapped > direct_points:
            return [Signal("names_swapped", POINTS["names_swapped"]), cross_first, cross_last]
    return direct


def _date_signal(a: _Prepared, b: _Prepared) -> Signal:
    if a.date == b.date:
        return Signal("same_birth_date", POINTS["same_birth_date"])
    x, y = a.digits, b.digits
    if a.date.year == b.date.year and x[0:2] == y[2:4] and x[2:4] == y[0:2]:
        return Signal("birth_date_day_month_swapped", POINTS["birth_date_day_month_swapped"])
    diff = [i for i in range(8) if x[i] != y[i]]
    if len(diff) == 1:
        return Signal("birth_date_one_digit", POINTS["birth_date_one_digit"])
    if len(diff) == 2 and diff[1] == diff[0] + 1 and x[diff[0]] == y[diff[1]]:
        if x[diff[1]] == y[diff[0]]:
            return Signal("birth_date_transposed_digits", POINTS["birth_date_transposed_digits"])
    return Signal("different_birth_date", POINTS["different_birth_date"])


def _phone_signal(
    a: _Prepared, b: _Prepared, sharing: Mapping[str, int], max_phone_block: int
) -> Signal | None:
    shared = [p for p in a.phones if p in b.phones]
    if not shared:
        return None
    fewest = min(sharing.get(p, 2) for p in shared)
    if fewest <= 3:
        return Signal("shared_phone", POINTS["shared_phone"])
    if fewest <= max_phone_block:
        return Signal("shared_phone_common", POINTS["shared_phone_common"])
    return None


def _score(
    a: _Prepared,
    b: _Prepared,
    sharing: Mapping[str, int],
    max_phone_block: int,
    min_score: int,
) -> DuplicatePair | None:
    """Score a pair; None if it cannot reach ``min_score`` (dropped as early as possible)."""
    signals = [_date_signal(a, b)]
    total = signals[0].points
    if total + _MAX_NAMES + _MAX_PHONE < min_score:
        return None
    names = _name_signals(a, b)
    signals.extend(names)
    total += sum(s.points for s in names)
    if total + _MAX_PHONE < min_score:
        return None
    phone = _phone_signal(a, b, sharing, max_phone_block)
    if phone is not None:
        signals.append(phone)
        total += phone.points
    if a.civ is not None and b.civ is not None and a.civ != b.civ:
        signals.append(Signal("different_civilite", POINTS["different_civilite"]))
        total += POINTS["different_civilite"]
    if a.nir and b.nir:
        signals.append(Signal("different_nir", POINTS["different_nir"]))
        total += POINTS["different_nir"]
    score = max(0, min(100, total))
    if score < min_score:
        return None
    first, second = (a, b) if a.uid < b.uid else (b, a)
    return DuplicatePair(first.uid, second.uid, score, tuple(signals))


def score_pair(a: PersonRecord, b: PersonRecord, *, phone_sharing: int = 2) -> DuplicatePair:
    """Score two usagers (every signal, whatever the score).

    Args:
        a: One usager.
        b: The other.
        phone_sharing: How many usagers share each of their common numbers (2: only them).

    Returns:
        The pair, ids in order, with its score and signals.
    """
    cache: dict[str, _Name] = {}
    sharing = dict.fromkeys((*a.phones, *b.phones), phone_sharing)
    # No threshold: nothing is pruned, every signal is found.
    limit = ScanConfig().max_phone_block
    pair = _score(_Prepared(a, cache), _Prepared(b, cache), sharing, limit, -(10**9))
    assert pair is not None
    return pair


# --------------------------------------------------------------------------------------------
# Blocking


def _swap_tail(d: date) -> int:
    return d.year * 10000 + min(d.day, d.month) * 100 + max(d.day, d.month)


def _blocks(people: Sequence[_Prepared]) -> Iterator[tuple[np.ndarray, bool]]:
    """Yield arrays of indices into ``people`` sharing one block key, and whether by phone.

    Each family of keys is one int64 array sorted once; runs of equal keys are the blocks.
    """

    def by_date() -> tuple[list[int], list[int]]:
        keys: list[int] = []
        owners: list[int] = []
        for i, p in enumerate(people):
            base = p.date.toordinal() * _CODE_SPAN
            codes = {p.first.code, p.last.code}
            if p.maiden is not None:
                codes.add(p.maiden.code)
            for code in codes:
                if code:
                    keys.append(base + code)
                    owners.append(i)
        return keys, owners

    # (phonetic code of one name, initial of another) pairs of each usager, either way round
    # (so that swapped names meet too): either name may carry a typo and still meet.
    name_keys: list[list[int]] = []
    for p in people:
        firsts = {(p.first.code, p.first.initial), *p.first.token_codes}
        lasts = {(p.last.code, p.last.initial)}
        if p.maiden is not None:
            lasts.add((p.maiden.code, p.maiden.initial))
        combined: set[int] = set()
        for (code_a, initial_a), (code_b, initial_b) in itertools.product(firsts, lasts):
            for code, initial in ((code_a, initial_b), (code_b, initial_a)):
                if code and initial:
                    combined.add(code * 27 + initial)
        name_keys.append(sorted(combined))

    def by_names(tail_of: Callable[[date], int]) -> tuple[list[int], list[int]]:
        # With part of the birth date: one wrong digit leaves the other parts equal.
        keys: list[int] = []
        owners: list[int] = []
        for i, p in enumerate(people):
            tail = tail_of(p.date)
            for combined in name_keys[i]:
                keys.append(combined * 100_000_000 + tail)
                owners.append(i)
        return keys, owners

    def by_phone() -> tuple[list[int], list[int]]:
        keys: list[int] = []
        owners: list[int] = []
        for i, p in enumerate(people):
            for phone in p.phones:
                keys.append(int(phone.lstrip("+") or 0))
                owners.append(i)
        return keys, owners

    for family, is_phone in (
        (by_date, False),
        (lambda: by_names(lambda d: d.year * 100 + d.month), False),  # a slip in the day
        (lambda: by_names(lambda d: d.year * 100 + d.day), False),  # in the month
        (lambda: by_names(lambda d: d.month * 100 + d.day), False),  # in the year
        (lambda: by_names(_swap_tail), False),  # day and month swapped
        (by_phone, True),
    ):
        keys, owners = family()
        if not keys:
            continue
        key_array = np.asarray(keys, dtype=np.int64)
        owner_array = np.asarray(owners, dtype=np.int64)
        del keys, owners
        order = np.argsort(key_array, kind="stable")
        sorted_keys = key_array[order]
        sorted_owners = owner_array[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(sorted_keys)]
        sizes = ends - starts
        for s in np.flatnonzero(sizes >= 2):
            yield sorted_owners[starts[s] : ends[s]], is_phone


# --------------------------------------------------------------------------------------------
# Scans


def scan_people(people: Iterable[PersonRecord], config: ScanConfig | None = None) -> DuplicateScan:
    """Find likely duplicates among ``people`` (no database; the records are given).

    Args:
        people: Live usagers (tombstones must not be given).
        config: Threshold and block limits (defaults: :class:`ScanConfig`).

    Returns:
        The pairs at or above ``config.min_score``, best first, and the scan's stats.
    """
    return _scan(people, config or ScanConfig())


def _near_dates(candidates: np.ndarray, prepared: Sequence[_Prepared]) -> np.ndarray:
    """Keep the pairs whose birth dates may match (vectorised; the exact test comes later).

    A pair whose dates differ by more than two digits, and not by day and month swapped,
    scores ``different_birth_date`` and cannot reach a threshold above what the other
    signals can add: it is dropped here without a Python comparison.
    """
    n = len(prepared)
    if not len(candidates):
        return candidates
    digits = np.frombuffer("".join(p.digits for p in prepared).encode("ascii"), dtype=np.uint8)
    digits = digits.reshape(n, 8)
    first, second = np.divmod(candidates, n)
    a, b = digits[first], digits[second]
    differ = (a != b).sum(axis=1)
    swapped = (
        (a[:, 4:] == b[:, 4:]).all(axis=1)
        & (a[:, 0:2] == b[:, 2:4]).all(axis=1)
        & (a[:, 2:4] == b[:, 0:2]).all(axis=1)
    )
    kept: np.ndarray = candidates[(differ <= 2) | swapped]
    return kept


def _scan(people: Iterable[PersonRecord], config: ScanConfig) -> DuplicateScan:
    started = time.perf_counter()
    cache: dict[str, _Name] = {}
    # ``people`` may stream from the database: only the prepared form is kept.
    prepared = [_Prepared(p, cache) for p in people]
    load_seconds = time.perf_counter() - started
    sharing: dict[str, int] = {}
    for p in prepared:
        for phone in p.phones:
            sharing[phone] = sharing.get(phone, 0) + 1
    n = len(prepared)
    # Candidate pairs as ``i * n + j`` codes (i < j) in a flat int64 buffer, made unique once:
    # a few bytes a pair where a set of Python ints would take about sixty.
    codes = array("q")
    skipped = largest = 0
    for block, is_phone in _blocks(prepared):
        size = len(block)
        if size > (config.max_phone_block if is_phone else config.max_block):
            skipped += 1
            continue
        largest = max(largest, size)
        members = sorted(set(block.tolist()))
        for x, i in enumerate(members):
            codes.extend(i * n + j for j in members[x + 1 :])
    candidates = np.unique(np.frombuffer(codes, dtype=np.int64)) if codes else np.empty(0)
    del codes
    scored = time.perf_counter()
    to_score = candidates
    if config.min_score > _MAX_NAMES + _MAX_PHONE + POINTS["different_birth_date"]:
        to_score = _near_dates(candidates, prepared)
    found: list[DuplicatePair] = []
    for chunk_start in range(0, len(to_score), 65536):
        for code in to_score[chunk_start : chunk_start + 65536].tolist():
            i, j = divmod(code, n)
            pair = _score(
                prepared[i], prepared[j], sharing, config.max_phone_block, config.min_score
            )
            if pair is not None:
                found.append(pair)
    found.sort(key=lambda p: (-p.score, p.first_id, p.second_id))
    done = time.perf_counter()
    stats = ScanStats(
        usagers=n,
        candidate_pairs=len(candidates),
        pairs=len(found),
        skipped_blocks=skipped,
        largest_block=largest,
        load_seconds=load_seconds,
        block_seconds=scored - started - load_seconds,
        score_seconds=done - scored,
    )
    return DuplicateScan(tuple(found), stats)


def load_people(
    bind: Engine | Connection, *, ids: Sequence[int] | None = None
) -> list[PersonRecord]:
    """Read every live usager (tombstones excluded), or those of ``ids``, with their own phones.

    Not audited by itself: :func:`find_duplicates` audits the scan, :func:`describe_pairs`
    what is shown.
    """
    return list(_iter_people(bind, ids=ids))


def _iter_people(
    bind: Engine | Connection, *, ids: Sequence[int] | None = None
) -> Iterator[PersonRecord]:
    """Stream the records :func:`load_people` returns (phones are read first, then usagers)."""
    live = [USAGER.c.merged_into.is_(None)]
    if ids is not None:
        live.append(USAGER.c.id.in_(sorted(set(ids))))
    with transaction(bind) as conn:
        phones: dict[int, list[str]] = {}
        phone_rows = conn.execution_options(yield_per=20000).execute(
            select(PHONE.c.usager_id, PHONE.c.e164)
            .select_from(PHONE.join(USAGER, USAGER.c.id == PHONE.c.usager_id))
            .where(PHONE.c.tiers_id.is_(None), *live)
            .order_by(PHONE.c.id)
        )
        for usager_id, e164 in phone_rows:
            phones.setdefault(usager_id, []).append(e164)
        rows = conn.execution_options(yield_per=20000).execute(
            select(
                USAGER.c.id,
                USAGER.c.nom,
                USAGER.c.prenom,
                USAGER.c.date_naissance,
                USAGER.c.nom_naissance,
                USAGER.c.civilite,
                USAGER.c.nir_hash.is_not(None),
            )
            .where(*live)
            .order_by(USAGER.c.id)
        )
        for uid, nom, prenom, born, maiden, civilite, has_nir in rows:
            yield PersonRecord(
                usager_id=uid,
                nom=nom,
                prenom=prenom,
                date_naissance=born,
                nom_naissance=maiden,
                civilite=civilite,
                phones=tuple(phones.pop(uid, ())),
                has_nir=bool(has_nir),
            )


def find_duplicates(
    bind: Engine | Connection,
    *,
    actor: str,
    reason: str,
    via: Via,
    config: ScanConfig | None = None,
) -> DuplicateScan:
    """Scan the live usagers of the store for likely duplicates (audited: one row, counts).

    Args:
        bind: Engine or connection.
        actor: Who scans.
        reason: Why.
        via: The channel.
        config: Threshold and block limits.

    Returns:
        The pairs, best first, with the scan's stats. Nothing is changed in the store but the
        audit row.
    """
    config = config or ScanConfig()
    scan = _scan(_iter_people(bind), config)
    audit(
        bind,
        actor=actor,
        reason=reason,
        via=via,
        action="duplicates_scan",
        detail={
            "usagers": scan.stats.usagers,
            "pairs": scan.stats.pairs,
            "min_score": config.min_score,
        },
    )
    return scan


def clusters(pairs: Iterable[DuplicatePair]) -> list[tuple[int, ...]]:
    """Group pairs into clusters of usagers linked by at least one pair (union-find).

    Returns:
        Each cluster's usager ids in order; clusters by their smallest id.
    """
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in pairs:
        ra, rb = root(pair.first_id), root(pair.second_id)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for x in parent:
        groups.setdefault(root(x), []).append(x)
    return sorted((tuple(sorted(g)) for g in groups.values()), key=lambda g: g[0])


# --------------------------------------------------------------------------------------------
# Showing pairs to a person


@dataclass(frozen=True, slots=True)
class UsagerView:
    """The minimum a person needs to decide on a pair: ids, names, birth date."""

    usager_id: int
    external_id: str
    """The back office's id (to look the records up there)."""
    nom: str
    prenom: str
    nom_naissance: str | None
    date_naissance: date


@dataclass(frozen=True, slots=True)
class PairView:
    """A pair as shown to a person."""

    first: UsagerView
    second: UsagerView
    score: int
    reasons: tuple[Signal, ...]


def describe_pairs(
    bind: Engine | Connection,
    pairs: Sequence[DuplicatePair],
    *,
    actor: str,
    reason: str,
    via: Via,
) -> list[PairView]:
    """Read what a person needs to decide on each pair, auditing one row per usager shown.

    Pairs whose usagers no longer exist or were merged since the scan are left out.

    Args:
        bind: Engine or connection.
        pairs: Pairs from a scan.
        actor: Who reads.
        reason: Why.
        via: The channel.

    Returns:
        One view per pair still current, in the order given.
    """
    ids = sorted({i for p in pairs for i in (p.first_id, p.second_id)})
    shown: dict[int, UsagerView] = {}
    with transaction(bind) as conn:
        for chunk_start in range(0, len(ids), 500):
            chunk = ids[chunk_start : chunk_start + 500]
            for row in conn.execute(
                select(
                    USAGER.c.id,
                    USAGER.c.external_id,
                    USAGER.c.nom,
                    USAGER.c.prenom,
                    USAGER.c.nom_naissance,
                    USAGER.c.date_naissance,
                ).where(USAGER.c.id.in_(chunk), USAGER.c.merged_into.is_(None))
            ):
                shown[row.id] = UsagerView(
                    row.id, row.external_id, row.nom, row.prenom, row.nom_naissance,
                    row.date_naissance,
                )  # fmt: skip
        views = [
            PairView(shown[p.first_id], shown[p.second_id], p.score, p.reasons)
            for p in pairs
            if p.first_id in shown and p.second_id in shown
        ]
        partners: dict[int, list[int]] = {}
        for view in views:
            partners.setdefault(view.first.usager_id, []).append(view.second.usager_id)
            partners.setdefault(view.second.usager_id, []).append(view.first.usager_id)
        for usager_id in sorted(partners):
            audit(
                conn,
                actor=actor,
                reason=reason,
                via=via,
                action="duplicates",
                usager_id=usager_id,
                detail={"pairs_with": sorted(partners[usager_id])[:20]},
            )
    return views
