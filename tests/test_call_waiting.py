"""What a waiting caller hears (callcenter/call.py): how many wait ahead, the wait's words."""

from __future__ import annotations

from callcenter.call import POSITION_PROMPTS, WAIT_WORDS, _folded, position_prompt


def test_position_prompts_say_how_many_wait_ahead() -> None:
    texts = {prompt_id: text for prompt_id, text, _ in POSITION_PROMPTS}
    assert texts[position_prompt(1)] == "Vous êtes le premier en attente."
    assert texts[position_prompt(2)] == "Une personne attend avant vous."
    assert texts[position_prompt(4)] == "Trois personnes attendent avant vous."
    assert texts[position_prompt(10)] == "Neuf personnes attendent avant vous."
    assert position_prompt(11) == position_prompt(500) == "routing_ahead_many"
    assert position_prompt(0) == "routing_ahead_0"  # never a negative count


def test_the_wait_words_fold_to_what_the_call_looks_for() -> None:
    assert "[unk]" in WAIT_WORDS  # Vosk grammar mode needs it
    assert "rappel" in _folded("Pouvez-vous me RAPPELER ?")
    assert "repet" in _folded("Répétez, s'il vous plaît")


def test_only_french_fixed_and_mobile_numbers_are_called_back() -> None:
    from callcenter.call import _callback_number

    assert _callback_number("0612345678") == "+33612345678"
    assert _callback_number("0321000000") == "+33321000000"
    for refused in ("0899123456", "00882123456789", "+442071234567", "3977", "", None):
        assert _callback_number(refused) is None, refused
