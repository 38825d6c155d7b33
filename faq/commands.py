"""Dialogue control words a caller may say at any step, and yes/no answers.

Both classifiers work on recogniser text (lowercase, no punctuation, hesitations, elisions
written with or without apostrophes). A command fires only when the utterance is essentially
that command: politeness and fillers may surround it, any other content word makes it a
question for the FAQ matcher instead ("je veux répéter ma demande d'apa" is not REPEAT).
"""

from __future__ import annotations

import enum
import re

from faq.normalize import _UNITS, HESITATIONS, fold, numbers_to_digits, tokenize


class Command(enum.Enum):
    """A control word valid at every step of the dialogue."""

    REPEAT = "repeat"
    """Say the last prompt again."""
    SLOWER = "slower"
    """Speak more slowly."""
    AGENT = "agent"
    """Hand over to a person."""


class YesNo(enum.Enum):
    """Answer to a closed question."""

    YES = "yes"
    """Agreement ("oui", "d'accord", "c'est bon"...)."""
    NO = "no"
    """Refusal ("non", "pas du tout", "non pas vraiment"...)."""
    UNSURE = "unsure"
    """Hesitation ("je sais pas", "bof", "peut-être"...)."""
    UNKNOWN = "unknown"
    """Nothing recognisable as an answer."""


_POLITE = (
    r"(s il vous plait|s il te plait|svp|merci( bien| beaucoup)?|madame|monsieur|"
    r"mademoiselle|bonjour|allo|oui|excusez moi|excuse moi|desole|la|alors|voila|"
    r"maintenant|tout de suite)"
)
_OPTIONAL_POLITE = rf"(?:{_POLITE} )*"
_PREFIX = (
    r"(?:(?:je veux|je voudrais|j voudrais|je voulais|j aimerais|je souhaite|je souhaiterais|"
    r"est ce que je peux|est ce qu on peut|je peux|on peut|pouvez vous|vous pouvez|"
    r"pourriez vous|vous pourriez|tu peux|peux tu|il faut|il me faut|faudrait|"
    r"je prefere|je prefererais|donnez moi|mettez moi|passez moi|passe moi|"
    r"je demande|je vous demande de|je vous demande) )?"
)

_REPEAT = (
    r"(?:me |nous |le |la |les )*(?:re ?)?(?:repet\w*|redi\w*|redire|recommenc\w*|reprendre)"
    r"(?: moi| nous| le| la)?"
    r"(?: ca| cela| la question| le message| ce que vous avez dit| une fois| encore)*",
    r"(?:j |je n |je )?(?:ai |avais )?(?:pas|rien|mal|pas bien|pas tout) "
    r"(?:compris|entendu|saisi|suivi)(?: ce que vous avez dit| la question)?",
    r"(?:j |je )?(?:entends|comprends) (?:rien|mal|pas|pas bien)",
    r"pardon|comment|quoi|hein|plait il|vous dites|qu est ce que vous dites|"
    r"qu avez vous dit|vous avez dit quoi|encore une fois|une autre fois|une nouvelle fois|"
    r"encore|la derniere phrase",
)
_SLOWER = (
    r"(?:parlez |parler |parle |dites le |repetez |lire |lisez )?(?:un peu |beaucoup )?"
    r"(?:plus |moins )?(?:lentement|doucement|lent|moins vite|moins rapidement|moins rapide)"
    r"(?: s il vous plait| svp)?",
    r"(?:vous )?(?:parlez |allez |lisez )?(?:beaucoup |un peu )?trop (?:vite|rapidement)",
    r"(?:c est |ca va )(?:beaucoup |un peu )?trop (?:vite|rapide)",
    r"(?:pas|moins) si vite",
)
_AGENT = (
    r"(?:parler |causer |etre mis |etre mise |etre en relation )?(?:a |avec )?"
    r"(?:un |une |le |la |quelqu un |des |vrai |vraie |votre |a )*"
    r"(?:conseiller\w*|conseill\w*|humain\w*|personne\w*|operat\w*|agent\w*|standard\w*|"
    r"standardiste|quelqu un|interlocut\w*|etre humain|responsable|employe\w*)"
    r"(?: humain\w*| reel\w*| physique\w*| en chair et en os| en vrai)?",
    r"parler a (?:un |une )?(?:vrai |vraie )?(?:quelqu un|personne|humain)",
)

_REPEAT_RE = [re.compile(p) for p in _REPEAT]
_SLOWER_RE = [re.compile(p) for p in _SLOWER]
_AGENT_RE = [re.compile(p) for p in _AGENT]


_FILLERS = frozenset({"euh", "heu", "euhm", "hum", "hm", "hmm", "mmh", "mh", "ben", "bah", "beh"})
"""Pure hesitations: dropped before yes/no ("bon", "hein"... can carry meaning there)."""


def _clean(text: str, drop: frozenset[str] = HESITATIONS - {"hein"}) -> str:
    """Fold, split elisions and punctuation, drop hesitations."""
    text = re.sub(r"['’`]", " ", fold(text))
    tokens = [t for t in re.split(r"[^a-z0-9]+", text) if t and t not in drop]
    return " ".join(tokens)


def _strip_polite(text: str) -> str:
    previous = None
    while previous != text:
        previous = text
        text = re.sub(rf"^{_POLITE}\b ?", "", text)
        text = re.sub(rf" ?\b{_POLITE}$", "", text)
    return text.strip()


def _full(patterns: list[re.Pattern[str]], text: str) -> bool:
    return any(re.fullmatch(rf"{_PREFIX}(?:{p.pattern})", text) for p in patterns)


def classify_command(text: str) -> Command | None:
    """Recognise a control word said on its own.

    Args:
        text: Utterance as written by the recogniser.

    Returns:
        The command, or None when the utterance is something else (a question, an answer).

    Examples:
        >>> classify_command("euh vous pouvez répéter s'il vous plaît")
        <Command.REPEAT: 'repeat'>
        >>> classify_command("je veux répéter ma demande d'apa pour mon père") is None
        True
    """
    core = _strip_polite(_clean(text))
    if not core:
        return None
    for command, patterns in (
        (Command.SLOWER, _SLOWER_RE),
        (Command.AGENT, _AGENT_RE),
        (Command.REPEAT, _REPEAT_RE),
    ):
        if _full(patterns, core):
            return command
    return None


_UNSURE = re.compile(
    r"(?:je |j )?(?:ne |n )?(?:sais|sait|sai|c est|suis) (?:pas|plus|trop pas)"
    r"(?: trop| vraiment| bien)?(?: sur\w*| quoi dire| quoi| trop)?|"
    r"(?:j en |je n en |j |je )?sais (?:rien|pas)|chais pas|ch sais pas|sais pas|bof|peut etre|"
    r"pas sur\w*|pas certain\w*|moyen|moyennement|plus ou moins|un peu|pas trop|"
    r"en partie|a moitie|je crois|je pense|il me semble|difficile a dire|aucune idee|"
    r"pas vraiment sur\w*|je (?:ne )?(?:me )?rappelle (?:pas|plus)|j hesite|c est complique"
)
_NO = re.compile(
    r"non|nan|no|pas du tout|pas vraiment|absolument pas|surtout pas|pas ca|"
    r"ce n est pas ca|c est pas ca|pas de tout|jamais|negatif|aucunement|toujours pas|"
    r"ca (?:ne )?repond pas|pas encore|nullement|pas specialement|pas tellement"
)
_YES = re.compile(
    r"oui|ouais|ouai|ouis|oui oui|c est bon|c est ca|tout a fait|d accord|daccord|dac|"
    r"exactement|exact|absolument|bien sur|ok|okay|o k|parfait|affirmatif|volontiers|"
    r"ca me va|super|tres bien|en effet|effectivement|ca repond|c est bien|c est parfait|"
    r"entendu|ca marche|impeccable|nickel|certainement|evidemment|carrement|je confirme|"
    r"c est clair|bien compris|j ai compris|c est note|merci beaucoup|merci"
)


_DOUBT = (
    r"(?:enfin |mais )?(?:je (?:ne )?sais pas|peut etre|bof|pas sur\w*|pas vraiment|pas trop|"
    r"plus ou moins|un peu|en partie|a moitie)(?: |$)"
)


def _starts(pattern: re.Pattern[str], text: str) -> bool:
    return re.match(rf"(?:{pattern.pattern})(?: |$)", text) is not None


def classify_yes_no(text: str) -> YesNo:
    """Classify the answer to a closed question.

    A leading yes or no decides ("non je voudrais autre chose" is NO); both together
    ("oui non") or a hesitation ("je sais pas", "bof", "peut-être") is UNSURE.

    Args:
        text: Utterance as written by the recogniser.

    Returns:
        YES, NO, UNSURE or UNKNOWN.
    """
    core = _clean(text, _FILLERS)
    core = re.sub(r"^(?:(?:alors|bon|ben|eh bien|et bien|ecoutez|bah|euh) )+", "", core).strip()
    if not core:
        return YesNo.UNKNOWN
    if re.fullmatch(rf"(?:(?:{_UNSURE.pattern}) ?)+(?: {_POLITE})*", core):
        return YesNo.UNSURE
    if re.fullmatch(
        r"(?:oui|ouais) (?:et |ou |mais )?non|non (?:et |ou |mais )?(?:oui|ouais)", core
    ):
        return YesNo.UNSURE
    if core in ("si", "si si"):
        return YesNo.YES
    if _starts(_NO, core):
        return YesNo.NO
    if _starts(_YES, core):
        rest = core.split(" ", 1)[1] if " " in core else ""
        if re.match(_DOUBT, rest):
            return YesNo.UNSURE
        return YesNo.YES
    if re.search(rf"\b(?:{_UNSURE.pattern})\b", core):
        return YesNo.UNSURE
    return YesNo.UNKNOWN


def spoken_digits(text: str) -> str | None:
    """The digits of a number said aloud (a dossier number), or None if there are none.

    Digit words said one by one are put side by side ("deux zéro deux cinq" → ``2025``), groups
    are read as numbers ("vingt-cinq quarante" → ``2540``), digits written by the recogniser are
    kept; every other word is ignored ("c'est le A P A 2025 ..." keeps ``2025``...).

    Args:
        text: Transcript.

    Returns:
        The digits, or None.
    """
    out: list[str] = []
    group: list[str] = []

    def flush() -> None:
        if group:
            # A lone "un" is an article in a sentence, but a digit in a number said aloud.
            tokens = ["1"] if group in (["un"], ["une"]) else numbers_to_digits(group)
            out.extend(t for t in tokens if t.isdigit())
            group.clear()

    for token in tokenize(fold(text)):
        if token == "et" and group:
            group.append(token)
            continue
        if token not in _UNITS:
            flush()
            if token.isdigit():
                out.append(token)
            continue
        value = _UNITS[token]
        last = next((t for t in reversed(group) if t != "et"), None)
        last_is_unit = last is not None and _UNITS[last] < 10
        # A new number starts after a unit, unless the unit multiplies ("quatre-vingts",
        # "deux mille", "trois cents"): "deux zéro deux cinq" is four digits, "vingt-cinq
        # quarante" two numbers, "quatre-vingt-dix" one.
        multiplies = value in (100, 1000) or (last == "quatre" and token in ("vingt", "vingts"))
        if (last_is_unit and not multiplies) or value == 0:
            flush()
        group.append(token)
        if value == 0:
            flush()
    flush()
    digits = "".join(out)
    return digits or None
