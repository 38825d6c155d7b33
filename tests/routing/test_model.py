from __future__ import annotations

import pytest

from routing import Agent, AgentState, Priority, QueuedCall
from routing.model import check_skills


def test_priority_parse_and_order() -> None:
    assert Priority.parse(" Critical ") is Priority.CRITICAL
    assert Priority.LOW < Priority.NORMAL < Priority.HIGH < Priority.CRITICAL
    assert Priority.HIGH.label == "high"
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        Priority.parse("urgent")


@pytest.mark.parametrize(
    ("skills", "message"),
    [
        ({"APA": 3}, "bad skill id 'APA'"),
        ({"apa": 0}, "must be 1-5, got 0"),
        ({"apa": 6}, "must be 1-5, got 6"),
        ({"apa": True}, "must be an integer"),
        ({"apa": "3"}, "must be an integer"),
    ],
)
def test_check_skills(skills: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_skills(skills)  # type: ignore[arg-type]


def test_idle_since_prefers_the_last_call_then_the_login() -> None:
    assert Agent("a", state=AgentState.AVAILABLE, since=50.0).idle_since == 50.0
    assert Agent("a", since=50.0, logged_in_at=10.0).idle_since == 10.0
    assert Agent("a", since=50.0, logged_in_at=10.0, last_call_ended_at=30.0).idle_since == 30.0
    assert Agent("a", skills={"apa": 4}).proficiency("apa") == 4
    assert Agent("a", skills={"apa": 4}).proficiency("paiement") == 0


def test_repeat_caller_window() -> None:
    window = 48 * 3600.0
    assert not QueuedCall("c", "apa", joined_at=1e6).is_repeat(window)
    assert QueuedCall("c", "apa", joined_at=1e6, previous_contact_at=1e6 - window).is_repeat(window)
    assert not QueuedCall(
        "c", "apa", joined_at=1e6, previous_contact_at=1e6 - window - 1
    ).is_repeat(window)
    assert not QueuedCall("c", "apa", joined_at=1e6, previous_contact_at=1e6 + 5).is_repeat(window)
