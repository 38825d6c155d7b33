from __future__ import annotations

import pytest

from faq.commands import Command, YesNo, classify_command, classify_yes_no, spoken_digits


@pytest.mark.parametrize(
    "text",
    [
        "répéter",
        "Répétez !",
        "répété",
        "vous pouvez répéter",
        "euh vous pouvez répéter s'il vous plaît",
        "pouvez-vous répéter la question",
        "redites moi ça",
        "j'ai pas compris",
        "je n'ai pas compris",
        "j ai rien compris",
        "j'ai pas bien entendu",
        "pardon ?",
        "comment ?",
        "hein",
        "quoi",
        "encore une fois",
        "vous pouvez recommencer",
    ],
)
def test_repeat(text: str) -> None:
    assert classify_command(text) is Command.REPEAT


@pytest.mark.parametrize(
    "text",
    [
        "plus lentement",
        "moins vite",
        "parlez moins vite",
        "parlez plus lentement s'il vous plaît",
        "vous parlez trop vite",
        "doucement",
        "plus doucement",
        "c'est trop rapide",
        "pas si vite",
    ],
)
def test_slower(text: str) -> None:
    assert classify_command(text) is Command.SLOWER


@pytest.mark.parametrize(
    "text",
    [
        "conseiller",
        "un conseiller",
        "Une conseillère, s'il vous plaît.",
        "parler à quelqu'un",
        "une personne",
        "un humain",
        "opérateur",
        "je veux parler à un conseiller",
        "passez-moi un conseiller",
        "je voudrais parler à une vraie personne",
        "euh je veux un humain tout de suite",
        "un agent",
    ],
)
def test_agent(text: str) -> None:
    assert classify_command(text) is Command.AGENT


@pytest.mark.parametrize(
    "text",
    [
        "",
        "euh",
        "je veux répéter ma demande d'apa pour mon père",
        "je veux un conseiller pour mon dossier apa",
        "quelle est la personne qui s'occupe de mon dossier",
        "comment on demande l'apa",
        "le conseiller m'a dit d'envoyer un certificat",
        "ma mère parle plus lentement depuis son AVC",
        "oui",
        "non",
        "c'est bon",
        "pardon de vous déranger je voulais savoir pour la pch",
    ],
)
def test_not_a_command(text: str) -> None:
    assert classify_command(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oui", YesNo.YES),
        ("Oui.", YesNo.YES),
        ("ouais", YesNo.YES),
        ("oui merci", YesNo.YES),
        ("oui oui", YesNo.YES),
        ("euh oui", YesNo.YES),
        ("ben oui", YesNo.YES),
        ("c'est bon", YesNo.YES),
        ("tout à fait", YesNo.YES),
        ("d'accord", YesNo.YES),
        ("bon d'accord", YesNo.YES),
        ("exactement", YesNo.YES),
        ("bien sûr", YesNo.YES),
        ("ok", YesNo.YES),
        ("oui ça répond à ma question", YesNo.YES),
        ("si", YesNo.YES),
        ("non", YesNo.NO),
        ("non merci", YesNo.NO),
        ("pas du tout", YesNo.NO),
        ("non pas vraiment", YesNo.NO),
        ("pas vraiment", YesNo.NO),
        ("bah non", YesNo.NO),
        ("non c'est pas ça", YesNo.NO),
        ("non je voudrais autre chose", YesNo.NO),
        ("absolument pas", YesNo.NO),
        ("je sais pas", YesNo.UNSURE),
        ("je ne sais pas trop", YesNo.UNSURE),
        ("j'en sais rien", YesNo.UNSURE),
        ("bof", YesNo.UNSURE),
        ("ouais bof", YesNo.UNSURE),
        ("peut-être", YesNo.UNSURE),
        ("oui non", YesNo.UNSURE),
        ("oui enfin je sais pas", YesNo.UNSURE),
        ("plus ou moins", YesNo.UNSURE),
        ("", YesNo.UNKNOWN),
        ("euh", YesNo.UNKNOWN),
        ("le chat est noir", YesNo.UNKNOWN),
        ("si je comprends bien il faut un certificat", YesNo.UNKNOWN),
    ],
)
def test_yes_no(text: str, expected: YesNo) -> None:
    assert classify_yes_no(text) is expected


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("deux zéro deux cinq, zéro quatre cinq six", "20250456"),
        ("2025 04567", "202504567"),
        ("vingt-cinq quarante", "2540"),
        ("quatre-vingt-dix", "90"),
        ("soixante et onze", "71"),
        ("dix-huit", "18"),
        ("deux mille vingt-cinq", "2025"),
        ("un deux trois", "123"),
        ("trois cent douze", "312"),
        ("euh c'est le A P A 2025 quatre cinq", "202545"),
        ("euh je sais pas", None),
    ],
)
def test_spoken_digits(said: str, digits: str | None) -> None:
    assert spoken_digits(said) == digits
