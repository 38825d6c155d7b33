"""A seeded set with known duplicates, to measure the duplicate finder (tests and benchmark).

:func:`seeded_set` takes demo usagers (:func:`callcenter.store.demo.generate`) and adds:

- *perturbed copies* of a known subset, one perturbation kind each (:data:`DUPLICATE_KINDS`):
  what a back office does when it enters the same person twice (a typo, lost accents, nom and
  prénom swapped, the maiden or married name, a composed first name, day and month swapped or
  one digit wrong in the birth date, a doubled letter, and two perturbations at once). A copy
  keeps the phone in another written form (``+33 1 99 ...``, ``0033...``, dots), or has none;
- *hard negatives* (:data:`NEGATIVE_KINDS`), which must not be flagged: namesakes (same names,
  another birth date and phone), twins (same surname, birth date and household phone, another
  first name) and spouses (same surname and phone, another first name and birth date).

Everything depends only on ``(count, seed, today)``. Injected records' ``external_id`` start
with ``DUP-``, ``NEG-``; their own phones, when new, are in the fiction range ``02 61 91``.
"""

from __future__ import annotations

import random
import string
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta

from callcenter.store import demo
from callcenter.store.dossiers import UsagerRecord, normalize_phone
from callcenter.store.duplicates import PersonRecord

__all__ = [
    "DUPLICATE_KINDS",
    "NEGATIVE_KINDS",
    "Evaluation",
    "LabelledPair",
    "SeededSet",
    "evaluate",
    "seeded_set",
    "surname_vocabulary",
]

DUPLICATE_KINDS = (
    "exact",
    "typo_last_name",
    "typo_first_name",
    "accents_case",
    "names_swapped",
    "maiden_name",
    "composed_first_name",
    "date_day_month",
    "date_one_digit",
    "double_letter",
    "typo_and_date",
)
"""Perturbations of a copy (``typo_and_date``: a typo in the nom and one digit of the date)."""

NEGATIVE_KINDS = ("namesake", "twin", "spouse")
"""Pairs of different people that look alike."""

_EXTRA_FIRST = ("Marie", "Louise", "Claire", "Anne", "Pierre", "Paul", "Jean", "Thérèse")
_NEW_NAMES = ("Carpentier", "Lemoine", "Vasseur", "Hubert", "Collet", "Prévost", "Tessier")


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """Two injected or base records and what they are."""

    first: str
    """``external_id`` of the original (a demo usager)."""
    second: str
    """``external_id`` of the injected record."""
    kind: str
    """A :data:`DUPLICATE_KINDS` or :data:`NEGATIVE_KINDS` value."""


@dataclass(frozen=True, slots=True)
class SeededSet:
    """Usager records (demo ones, then the injected ones) and the pairs known."""

    usagers: tuple[UsagerRecord, ...]
    duplicates: tuple[LabelledPair, ...]
    """The true duplicate pairs (each copy with its original)."""
    negatives: tuple[LabelledPair, ...]
    """The hard negative pairs."""


def _typo(rng: random.Random, word: str) -> str:
    """One keyboard slip: a letter replaced, dropped, added, or two swapped (never a no-op)."""
    letters = [i for i, ch in enumerate(word) if ch.isalpha()]
    if len(letters) < 3:
        return word + rng.choice("aeiou")
    for _ in range(20):
        # Slips rarely hit the first letter (one in ten here).
        i = rng.choice(letters) if rng.random() < 0.1 else rng.choice(letters[1:])
        op = rng.choice(("replace", "drop", "add", "swap"))
        if op == "replace":
            out = word[:i] + rng.choice(string.ascii_lowercase) + word[i + 1 :]
        elif op == "drop":
            out = word[:i] + word[i + 1 :]
        elif op == "add":
            out = word[:i] + rng.choice(string.ascii_lowercase) + word[i:]
        else:
            if i + 1 >= len(word) or not word[i + 1].isalpha():
                continue
            out = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
        if out.lower() != word.lower():
            return out
    return word + "e"


def _strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _double(rng: random.Random, word: str) -> str:
    for i in range(1, len(word)):
        if word[i] == word[i - 1]:
            return word[:i] + word[i + 1 :]  # Bonnet -> Bonet
    consonants = [i for i, ch in enumerate(word) if i > 0 and ch in "lnrstpm"]
    if not consonants:
        return _typo(rng, word)
    i = rng.choice(consonants)
    return word[:i] + word[i] + word[i:]  # Morel -> Morrel


def _one_digit(rng: random.Random, born: date) -> date:
    digits = born.strftime("%d%m%Y")
    for _ in range(50):
        i = rng.choice((0, 1, 2, 3, 6, 7))  # day, month, the year's last two digits
        d = rng.choice([c for c in string.digits if c != digits[i]])
        text = digits[:i] + d + digits[i + 1 :]
        try:
            return date(int(text[4:]), int(text[2:4]), int(text[:2]))
        except ValueError:
            continue
    return born + timedelta(days=1)


def _other_format(rng: random.Random, phone: str) -> str:
    e164 = normalize_phone(phone)
    assert e164 is not None
    national = "0" + e164[3:]
    pairs = " ".join(national[i : i + 2] for i in range(0, 10, 2))
    return rng.choice(
        (
            "+33 " + national[1] + " " + pairs[3:],
            "0033" + national[1:],
            pairs.replace(" ", "."),
            national,
            e164,
        )
    )


def _new_phone(slot: int) -> str:
    return f"02 61 91 {slot // 100 % 100:02d} {slot % 100:02d}"


def _perturb(rng: random.Random, kind: str, original: UsagerRecord, copy_id: str) -> UsagerRecord:
    nom, prenom, born = original.nom, original.prenom, original.date_naissance
    maiden = original.nom_naissance
    if kind == "typo_last_name":
        nom = _typo(rng, nom)
    elif kind == "typo_first_name":
        prenom = _typo(rng, prenom)
    elif kind == "accents_case":
        nom, prenom = _strip_accents(nom).upper(), _strip_accents(prenom).lower()
    elif kind == "names_swapped":
        nom, prenom = prenom, nom
    elif kind == "maiden_name":
        if maiden:
            nom, maiden = maiden, None  # entered under her maiden name
        else:
            nom, maiden = rng.choice(_NEW_NAMES), nom  # entered after marrying
    elif kind == "composed_first_name":
        extra = rng.choice([f for f in _EXTRA_FIRST if f != prenom])
        prenom = f"{prenom}-{extra}" if rng.random() < 0.5 else f"{prenom} {extra}"
    elif kind == "date_day_month":
        born = date(born.year, born.day, born.month)
    elif kind == "date_one_digit":
        born = _one_digit(rng, born)
    elif kind == "double_letter":
        nom = _double(rng, nom)
    elif kind == "typo_and_date":
        nom, born = _typo(rng, nom), _one_digit(rng, born)
    phones: tuple[str, ...] = ()
    if original.phones and rng.random() < 0.6:
        phones = (_other_format(rng, original.phones[0]),)
    return replace(
        original,
        external_id=copy_id,
        nom=nom,
        prenom=prenom,
        nom_naissance=maiden,
        date_naissance=born,
        phones=phones,
        nir_hash=None,
        besoins=(),
    )


def _negative(
    rng: random.Random, kind: str, original: UsagerRecord, neg_id: str, slot: int, pool: list[str]
) -> UsagerRecord:
    born = original.date_naissance
    own = _strip_accents(original.prenom).lower()
    others = [p for p in pool if _strip_accents(p).lower() != own]
    if kind == "namesake":
        shift = timedelta(days=rng.randint(400, 9000) * rng.choice((-1, 1)))
        return replace(
            original,
            external_id=neg_id,
            date_naissance=born + shift,
            phones=(_new_phone(slot),),
            nir_hash=None,
        )
    if kind == "twin":
        return replace(
            original,
            external_id=neg_id,
            prenom=rng.choice(others),
            phones=original.phones if rng.random() < 0.5 else (_new_phone(slot),),
            nir_hash=None,
            civilite=None,
        )
    # spouse: same household phone and surname, another first name and birth date
    return replace(
        original,
        external_id=neg_id,
        prenom=rng.choice(others),
        date_naissance=born + timedelta(days=rng.randint(200, 4000) * rng.choice((-1, 1))),
        civilite=None,
        nom_naissance=None,
        nir_hash=None,
    )


_PREFIXES = (
    "Ber", "Dur", "Lef", "Mar", "Gau", "Bou", "Che", "Fon", "Lam", "Rou", "Vil", "Mor", "Gir",
    "Car", "Pel", "Del", "Bar", "Cha", "Gan", "Mas", "Rob", "Tes", "Val", "Pic", "Mal", "Ren",
    "Sau", "Tor", "Bel", "Cor", "Dam", "Fer", "Gal", "Her", "Jol", "Lan", "Mer", "Nog", "Pas",
    "Rab", "Sal", "Tar", "Vau", "Bri", "Cla", "Dom", "Fav", "Gre", "Hub", "Lor", "Mon", "Nor",
    "Per", "Quen", "Rog", "Sim", "Thi", "Ver", "Aub", "Bla", "Cou", "Deb", "Esc", "Fra", "Gui",
    "Jou", "Lab", "Mic", "Oli", "Pot", "Roy", "Ser", "Tou", "Bon", "Cam", "Dup", "Ger", "Lau",
    "Man", "Pou", "Ric", "Sou", "Vin", "Bru", "Col", "Dar", "Fou", "Gou", "Lec", "Mey", "Pin",
    "Riv", "Tan", "Bou", "Chau", "Duv", "Gar", "Lev", "Mat", "Pau", "Rol", "Sch", "Tri", "Bau",
)  # fmt: skip
_SUFFIXES = (
    "and", "ier", "ot", "et", "in", "eau", "ard", "ault", "on", "elle", "oux", "ais", "ac",
    "ez", "ens", "ert", "ois", "at", "ieu", "aud", "ès", "ouin", "ant", "aux", "ic", "el",
    "ard", "eron", "illon", "otte", "ichon", "assin", "ouet", "ereau", "inet", "ault", "ey",
    "as", "y", "aire", "ignon", "oulet", "acq", "oz", "ourt", "ange", "ernot", "ide", "esse",
    "ollet", "aumont", "ivier", "ache", "enier", "ouard", "anne", "ieux", "ino", "eri", "ago",
    "ounet", "ussel", "elot", "ertin", "ayre", "ondel", "uchon", "elin", "oreau", "anel",
    "ard", "essier", "audin", "ivet", "oche", "ussier", "erand", "illard", "ouvier", "ebvre",
    "anger", "alet", "edieu", "oussin", "arde", "iaux", "enet", "ouzé", "ançon", "aillé",
    "orel", "ichet", "ousse", "agne", "uret", "illet", "ogne", "ecq", "aval", "ubert", "onnet",
    "igot", "essard", "ourdin", "ambert", "ottier", "eret", "ayol", "ousseau", "inaud",
    "ejean", "ambeau", "ochard", "oix", "argues", "estre", "uzet", "olin", "eyrat", "ourget",
    "ancel", "eudon", "iche", "ourrier",
)  # fmt: skip


def surname_vocabulary() -> tuple[str, ...]:
    """Synthetic French-looking surnames (prefix + suffix), the demo's 80 first, deduplicated."""
    names = dict.fromkeys(demo._LAST_NAMES)
    for prefix in _PREFIXES:
        for suffix in _SUFFIXES:
            names[(prefix + suffix).capitalize()] = None
    return tuple(names)


def _diversify(base: list[UsagerRecord], seed: int) -> list[UsagerRecord]:
    """Redraw surnames from :func:`surname_vocabulary` (Zipf-Mandelbrot, offset 30)."""
    vocabulary = surname_vocabulary()
    weights = [1.0 / (rank + 30) for rank in range(len(vocabulary))]
    rng = random.Random(f"callcenter-dedup-surnames:{seed}")
    drawn = rng.choices(vocabulary, weights=weights, k=2 * len(base))
    return [
        replace(u, nom=drawn[2 * i], nom_naissance=drawn[2 * i + 1] if u.nom_naissance else None)
        for i, u in enumerate(base)
    ]


def _any(_record: UsagerRecord) -> bool:
    return True


_ELIGIBLE: dict[str, Callable[[UsagerRecord], bool]] = {
    # Only women's names change on marriage in the back office's records (here).
    "maiden_name": lambda r: r.civilite == "Mme",
    "date_day_month": lambda r: (
        r.date_naissance.day <= 12 and r.date_naissance.day != r.date_naissance.month
    ),
}


def seeded_set(
    count: int,
    seed: int,
    today: date,
    *,
    duplicates: int,
    negatives: int,
    diverse_surnames: bool = False,
) -> SeededSet:
    """Return ``count`` demo usagers plus injected duplicates and hard negatives.

    Args:
        count: Demo usagers.
        seed: Seed of the demo set and of the injections.
        today: The demo's date.
        duplicates: Perturbed copies (kinds in turn), of distinct demo usagers.
        negatives: Hard negatives (kinds in turn), of other demo usagers.
        diverse_surnames: Give the demo usagers surnames drawn from :func:`surname_vocabulary`
            (about 14 000, the commonest 0.5 %) instead of the demo's 80 (1.25 % each): with
            hundreds of thousands of usagers, the demo's few names make thousands of real
            look-alikes (same names, same or one-digit-apart birth dates) that no finder can
            tell from duplicates. Demo usagers keep everything else.

    Returns:
        The records (demo first) and the labelled pairs.

    Raises:
        ValueError: more injections than demo usagers.
    """
    if duplicates + negatives > count:
        raise ValueError("duplicates + negatives: more than the demo usagers")
    base = [u.usager for u in demo.generate(count, seed, today)]
    if diverse_surnames:
        base = _diversify(base, seed)
    rng = random.Random(f"callcenter-dedup:{seed}:{count}")
    order = rng.sample(range(count), count)
    used: set[int] = set()
    cursors: dict[str, Iterator[int]] = {}

    def pick(kind: str) -> int:
        # The next unused usager, in a seeded order, that the perturbation applies to.
        eligible = _ELIGIBLE.get(kind, _any)
        cursor = cursors.setdefault(kind, iter(order))
        for index in cursor:
            if index not in used and eligible(base[index]):
                used.add(index)
                return index
        raise ValueError(f"not enough demo usagers for the {kind} injections asked")

    pool = sorted({u.prenom for u in base})
    injected: list[UsagerRecord] = []
    dup_pairs: list[LabelledPair] = []
    neg_pairs: list[LabelledPair] = []
    for n in range(duplicates):
        kind = DUPLICATE_KINDS[n % len(DUPLICATE_KINDS)]
        original = base[pick(kind)]
        copy_id = f"DUP-{seed}-{n:06d}"
        injected.append(_perturb(rng, kind, original, copy_id))
        dup_pairs.append(LabelledPair(original.external_id, copy_id, kind))
    for n in range(negatives):
        kind = NEGATIVE_KINDS[n % len(NEGATIVE_KINDS)]
        original = base[pick(kind)]
        neg_id = f"NEG-{seed}-{n:06d}"
        injected.append(_negative(rng, kind, original, neg_id, n, pool))
        neg_pairs.append(LabelledPair(original.external_id, neg_id, kind))
    return SeededSet(tuple(base + injected), tuple(dup_pairs), tuple(neg_pairs))


def people(records: tuple[UsagerRecord, ...]) -> Iterator[tuple[str, PersonRecord]]:
    """Yield ``(external_id, PersonRecord)`` for a scan without a database (ids from 1)."""
    for uid, record in enumerate(records, start=1):
        phones = tuple(p for p in (normalize_phone(x) for x in record.phones) if p is not None)
        yield (
            record.external_id,
            PersonRecord(
                usager_id=uid,
                nom=record.nom,
                prenom=record.prenom,
                date_naissance=record.date_naissance,
                nom_naissance=record.nom_naissance,
                civilite=record.civilite,
                phones=tuple(dict.fromkeys(phones)),
                has_nir=record.nir_hash is not None,
            ),
        )


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Precision and recall of flagged pairs against a seeded set."""

    flagged: int
    """Pairs at or above the threshold."""
    true_positives: int
    false_positives: int
    """Flagged pairs that are not injected duplicates (hard negatives or base coincidences)."""
    false_negatives: int
    precision: float
    recall: float
    recall_by_kind: dict[str, float]
    """Recall of each duplicate kind."""
    negatives_flagged: dict[str, int]
    """Hard negatives flagged, per kind."""
    missed: tuple[LabelledPair, ...]
    """The duplicates not flagged (to look at)."""

    def as_json(self) -> dict[str, object]:
        """Return the figures as a JSON-ready dict (without the missed pairs)."""
        return {
            "flagged": self.flagged,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
            "false_negatives": self.false_negatives,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "recall_by_kind": {k: round(v, 3) for k, v in sorted(self.recall_by_kind.items())},
            "negatives_flagged": dict(sorted(self.negatives_flagged.items())),
        }


def evaluate(flagged: set[frozenset[str]], seeded: SeededSet) -> Evaluation:
    """Compare flagged pairs (as pairs of ``external_id``) with the seeded truth."""
    truth = {frozenset((p.first, p.second)): p for p in seeded.duplicates}
    tp = sum(1 for pair in flagged if pair in truth)
    fp = len(flagged) - tp
    missed = tuple(p for key, p in truth.items() if key not in flagged)
    by_kind: dict[str, list[int]] = {}
    for key, p in truth.items():
        hits = by_kind.setdefault(p.kind, [0, 0])
        hits[0] += key in flagged
        hits[1] += 1
    negatives: dict[str, int] = dict.fromkeys(NEGATIVE_KINDS, 0)
    for p in seeded.negatives:
        negatives[p.kind] += frozenset((p.first, p.second)) in flagged
    return Evaluation(
        flagged=len(flagged),
        true_positives=tp,
        false_positives=fp,
        false_negatives=len(missed),
        precision=tp / len(flagged) if flagged else 1.0,
        recall=tp / len(truth) if truth else 1.0,
        recall_by_kind={k: h / t for k, (h, t) in by_kind.items()},
        negatives_flagged=negatives,
        missed=missed,
    )
