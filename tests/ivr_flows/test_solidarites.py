"""The shipped SOLIDARITÉS flow: valid, complete, and consistent with the domain files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ivr_flows import (
    SOLIDARITES_FLOW,
    Flow,
    HangupNode,
    MenuNode,
    QueueNode,
    SayNode,
    check_files,
    load_flow,
)

INTENTS = Path("/work/shared/domain/intents.yaml")


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(SOLIDARITES_FLOW)


def test_validates_without_warnings(flow: Flow) -> None:
    assert flow.flow_id == "solidarites"
    assert flow.warnings == ()
    assert check_files([str(SOLIDARITES_FLOW)]) == 0


def test_prompt_ids_are_safe_file_names_and_unique(flow: Flow) -> None:
    ids = [p.prompt_id for p in flow.prompts()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9_]+", i) for i in ids)
    assert all(p.text for p in flow.prompts())  # everything can be rendered by TTS


def test_texts_are_written_for_tts(flow: Flow) -> None:
    for prompt in flow.prompts():
        assert prompt.text is not None
        assert not re.search(r"\d", prompt.text), prompt.prompt_id  # numbers in words
        assert "APA" not in prompt.text and "MDPH" not in prompt.text  # spelled letter by letter
        # Short breath groups: punctuation makes espeak pause.
        groups = [g for g in re.split(r"[.,;:!?]", prompt.text) if g.strip()]
        assert max(len(g.split()) for g in groups) <= 12, prompt.prompt_id


def test_main_menu(flow: Flow) -> None:
    menu = flow.nodes["main_menu"]
    assert isinstance(menu, MenuNode)
    skills = {}
    for digit, target in menu.choices.items():
        node = flow.nodes[target]
        assert isinstance(node, QueueNode)
        skills[digit] = node.skill
    assert skills == {
        "1": "apa",
        "2": "mdph_adulte",
        "3": "mdph_enfant",
        "4": "paiement",
        "0": "accueil_general",
    }
    assert menu.prompt.text is not None
    for word in ("A P A", "M D P H", "zéro", "étoile", "un", "deux", "trois", "quatre"):
        assert word in menu.prompt.text
    fallback = flow.nodes[menu.fallback]
    assert isinstance(fallback, QueueNode) and fallback.skill == "accueil_general"


def test_every_menu_accepts_zero_and_star(flow: Flow) -> None:
    menus = [n for n in flow.nodes.values() if isinstance(n, MenuNode)]
    assert menus
    for menu in menus:
        assert "0" in menu.choices or menu.human is not None
        assert "*" not in menu.choices  # reserved for "repeat"


def test_skills_exist_in_intents_catalogue(flow: Flow) -> None:
    catalogue = yaml.safe_load(INTENTS.read_text(encoding="utf-8"))
    known = set(catalogue["skills"])
    used = {n.skill for n in flow.nodes.values() if isinstance(n, QueueNode)}
    assert used <= known
    emergency = catalogue["meta"]["emergency_numbers"]
    assert {"3114", "3977", "15", "112"} <= set(emergency)


def test_emergency_notice(flow: Flow) -> None:
    prompts = {p.prompt_id: p.text or "" for p in flow.prompts()}
    notice = prompts["emergency_notice"]
    for spoken in ("trente et un, quatorze", "trente-neuf, soixante-dix-sept", "le quinze",
                   "le cent douze", "suicide", "maltraitance"):  # fmt: skip
        assert spoken in notice
    automated = prompts["automated_notice"]
    assert "automatisé" in automated and "zéro" in automated and "conseiller" in automated


def test_closed_messages_speak_the_hours(flow: Flow) -> None:
    prompts = {p.prompt_id: p.text or "" for p in flow.prompts()}
    hours = flow.schedules["solidarites"].speak_fr()
    assert hours.startswith("du lundi au vendredi, de neuf heures à douze heures trente")
    assert hours in prompts["closed_hours"] and hours in prompts["holiday_closed"]
    assert "férié" in prompts["holiday_closed"]


def test_closed_paths_end_with_goodbye(flow: Flow) -> None:
    for node_id in ("welcome_closed", "welcome_holiday", "closed_message", "holiday_message"):
        node = flow.nodes[node_id]
        assert isinstance(node, SayNode) and not node.interruptible
    goodbye = flow.nodes["goodbye_closed"]
    assert isinstance(goodbye, HangupNode) and goodbye.prompt is not None
