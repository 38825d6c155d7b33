from __future__ import annotations

import pytest

from faq.normalize import fold, normalize, numbers_to_digits, strip_elisions


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Où en est l'APA ?", "ou en est apa"),
        ("euh ben l'a p a de ma mère", "apa de ma mere"),
        ("la m d p h", "la mdph"),
        ("mon dossier à la M D P H", "mon dossier a la mdph"),
        ("la c m i", "la cmi"),
        ("l a a h", "aah"),
        ("l a p a", "apa"),
        ("a e e h pour mon fils", "aeeh pour mon fils"),
        ("r q t h", "rqth"),
        ("il est en e h p a d", "il est en ehpad"),
        ("je cherche un epad", "je cherche un ehpad"),
        ("qu'est-ce qu'il manque", "est ce il manque"),
        ("bah ça fait trois semaines hum", "ca fait 3 semaines"),
        ("le cœur", "le coeur"),
        ("un enfant de douze ans", "un enfant de 12 ans"),
        ("ça fait deux mois", "ca fait 2 mois"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
    assert normalize(normalize(raw)) == normalize(raw)


@pytest.mark.parametrize(
    ("words", "digits"),
    [
        ("vingt et un", "21"),
        ("soixante et onze", "71"),
        ("quatre vingt dix sept", "97"),
        ("quatre vingts", "80"),
        ("quatre vingt dix", "90"),
        ("deux mille vingt six", "2026"),
        ("cent", "100"),
        ("trois cents", "300"),
        ("un", "un"),
        ("une fois", "une fois"),
    ],
)
def test_numbers_to_digits(words: str, digits: str) -> None:
    assert " ".join(numbers_to_digits(words.split())) == digits


def test_fold_and_elisions() -> None:
    assert fold("ÉTÉ Noël Œuvre") == "ete noel oeuvre"
    assert strip_elisions("l'apa d'un qu'il j'ai").split() == ["apa", "un", "il", "ai"]
    assert normalize("quatre-vingt-dix-sept ans") == "97 ans"
