from __future__ import annotations

from callcenter.media.asr.evaluation import normalise_for_wer, wer, word_errors


def test_normalisation_matches_numbers_and_percent() -> None:
    assert normalise_for_wer("Allume la Chambre à 80 pourcent") == normalise_for_wer(
        "allume la chambre à quatre-vingts pour cent."
    )
    assert normalise_for_wer("Minuteur 1 heure") == normalise_for_wer("minuteur une heure")
    assert normalise_for_wer("quel temps fait-il ?") == ["quel", "temps", "fait", "il"]
    assert normalise_for_wer("soixante et onze") == ["71"]


def test_word_errors_and_wer() -> None:
    assert word_errors(["a", "b", "c"], ["a", "x", "c", "d"]) == 2
    assert word_errors([], ["a"]) == 1
    assert wer([("allume la lumière", "allume la lumière"), ("ferme", "")]) == 0.25
