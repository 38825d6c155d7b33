from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from faq.loader import default_knowledge_base_path, load_knowledge_base
from routing import (
    Overflow,
    Priority,
    QueueConfig,
    QueuedCall,
    RelaxationStep,
    RoutingConfig,
    RoutingConfigError,
    load_routing_config,
    load_skill_catalogue,
    routing_config_from_dict,
)
from routing.queue_config import PriorityRules, default_routing_config_path

CATALOGUE = (
    "accueil_general",
    "apa",
    "mdph_adulte",
    "mdph_enfant",
    "paiement",
    "aide_sociale_hebergement",
    "urgence_sociale",
    "reclamation",
)
INTENTS_YAML = Path(__file__).resolve().parents[2].parent / "shared" / "domain" / "intents.yaml"


def test_shipped_configuration() -> None:
    config = load_routing_config(default_routing_config_path())
    assert tuple(config.skills) == CATALOGUE
    assert set(config.queues) == set(CATALOGUE)
    assert [skill.id for skill in config.catalogue] == list(CATALOGUE)
    apa = config.queues["apa"]
    assert apa.min_proficiency == 3
    assert apa.relaxation == (RelaxationStep(60.0, 2), RelaxationStep(120.0, 1))
    assert apa.overflow == Overflow(180.0, "accueil_general")
    assert apa.hours is not None and apa.hours.public_holidays == "FR"
    assert apa.line > 0
    assert config.queues["urgence_sociale"].hours is not None
    assert config.queues["urgence_sociale"].hours.name == "urgence"
    assert "non réponse" in config.pause_reasons
    assert config.no_answer_reason == "non réponse"
    assert config.priorities.repeat_caller_window_s == 48 * 3600
    assert str(config.timezone) == "Europe/Paris"


def test_skills_are_the_catalogue_of_the_faq_and_of_the_domain_file() -> None:
    kb = load_knowledge_base(default_knowledge_base_path())
    assert load_skill_catalogue(default_knowledge_base_path()) == dict(kb.skills)
    if INTENTS_YAML.exists():
        assert tuple(load_skill_catalogue(INTENTS_YAML)) == CATALOGUE
    # The caller may also pass the catalogue it already loaded.
    config = load_routing_config(default_routing_config_path(), skills=kb.skills)
    assert dict(config.skills) == dict(kb.skills)


def base(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "skills": {"apa": "APA", "accueil_general": "Accueil"},
        "hours": {"bureau": {"mon-fri": "09:00-12:30, 13:30-17:00", "public_holidays": "FR"}},
        "defaults": {"hours": "bureau", "wrap_up": "30s"},
        "queues": {
            "apa": {
                "min_proficiency": 3,
                "relaxation": [
                    {"after": "1m", "min_proficiency": 2},
                    {"after": 180, "overflow_to": "accueil_general"},
                ],
                "max_wait": "none",
                "max_size": 10,
            }
        },
    }
    data.update(extra)
    return data


def test_from_dict_with_defaults_and_durations() -> None:
    config = routing_config_from_dict(base())
    apa = config.queues["apa"]
    assert (apa.wrap_up_s, apa.max_wait_s, apa.max_size) == (30.0, None, 10)
    assert apa.relaxation == (RelaxationStep(60.0, 2),)
    general = config.queues["accueil_general"]  # not listed: defaults
    assert (general.min_proficiency, general.wrap_up_s, general.max_wait_s) == (1, 30.0, 900.0)
    assert general.hours is not None and general.hours.name == "bureau"


def issues_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(RoutingConfigError) as info:
        routing_config_from_dict(data)
    return [f"{i.field}: {i.message}" for i in info.value.issues]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"queues": {"apa": {"wrap_up": "soon"}}},
            "queues.apa.wrap_up: bad duration 'soon' (expected seconds or e.g. '90s', '3m', '1h')",
        ),
        ({"queues": {"apa": {"min_proficiency": 7}}}, "queues.apa.min_proficiency: must be 1-5"),
        ({"queues": {"apa": {"colour": "red"}}}, "queues.apa.colour: unknown key"),
        ({"queues": {"jardinage": {}}}, "queues.jardinage: no skill 'jardinage' in the catalogue"),
        ({"queues": {"apa": {"hours": "nuit"}}}, "queues.apa.hours: unknown schedule 'nuit'"),
        (
            {"queues": {"apa": {"relaxation": [{"after": 10, "overflow_to": "paiement"}]}}},
            "queues.apa.relaxation: overflow to unknown queue 'paiement'",
        ),
        (
            {"queues": {"apa": {"relaxation": [{"after": 10, "overflow_to": "apa"}]}}},
            "queues.apa.relaxation: a queue cannot overflow to itself",
        ),
        (
            {
                "queues": {
                    "apa": {
                        "min_proficiency": 3,
                        "relaxation": [
                            {"after": 60, "min_proficiency": 2},
                            {"after": 30, "min_proficiency": 1},
                        ],
                    }
                }
            },
            "queues.apa.relaxation[1].after: steps must have increasing 'after'",
        ),
        (
            {"queues": {"apa": {"relaxation": [{"after": 60, "min_proficiency": 2}]}}},
            "which is not lower than the queue's min_proficiency 1",
        ),
        (
            {"queues": {"apa": {"relaxation": [{"after": 60}]}}},
            "queues.apa.relaxation[0]: a step has exactly one of 'min_proficiency', 'overflow_to'",
        ),
        ({"pause_reasons": ["pause"]}, "the no-answer pause reason 'non réponse' must be one"),
        ({"timezone": "Europe/Lutece"}, "timezone: unknown timezone 'Europe/Lutece'"),
        (
            {"hours": {"bureau": {"mon-fri": "09:00-25:00"}}},
            "hours.bureau.mon-fri: bad time range '09:00-25:00'",
        ),
        ({"hours": {"bureau": {"weekdays": "09:00-12:00"}}}, "hours.bureau.weekdays: unknown key"),
        (
            {"hours": {"bureau": {"mon": "09:00-12:00", "public_holidays": "XX"}}},
            "hours.bureau.public_holidays: unknown holiday calendar 'XX'",
        ),
        (
            {"hours": {"bureau": {"mon": "09:00-12:00", "closures": ["2026-13-01"]}}},
            "hours.bureau.closures[0]: bad date '2026-13-01'",
        ),
        ({"colour": "red"}, "colour: unknown key"),
    ],
)
def test_errors_name_the_field(change: dict[str, Any], expected: str) -> None:
    data = base()
    for key, value in change.items():
        if key == "queues":
            data["queues"] = {**data["queues"], **value}
        else:
            data[key] = value
    assert any(expected in issue for issue in issues_of(data)), issues_of(data)


def test_overflow_cycle_is_refused() -> None:
    data = {
        "skills": {"a": "", "b": "", "c": ""},
        "queues": {
            "a": {"relaxation": [{"after": 10, "overflow_to": "b"}]},
            "b": {"relaxation": [{"after": 10, "overflow_to": "c"}]},
            "c": {"relaxation": [{"after": 10, "overflow_to": "a"}]},
        },
    }
    assert any("overflow cycle: a -> b -> c -> a" in issue for issue in issues_of(data))


def test_all_errors_are_reported_at_once() -> None:
    data = base(queues={"apa": {"wrap_up": "x", "ring_timeout": -1, "max_size": 0}})
    assert len(issues_of(data)) == 3


def test_yaml_errors_give_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "skills: {apa: APA}\n"
        "queues:\n"
        "  apa:\n"
        "    wrap_up: 30s\n"
        "    ring_timeout: forever\n"
        "    relaxation:\n"
        "      - {after: 60s, min_proficiency: 9}\n"
        "    max_size: 3\n"
        "    max_size: 4\n",
        encoding="utf-8",
    )
    with pytest.raises(RoutingConfigError) as info:
        load_routing_config(path)
    text = str(info.value)
    assert f"{path}:5: field 'queues.apa.ring_timeout': bad duration 'forever'" in text
    assert f"{path}:7: field 'queues.apa.relaxation[0].min_proficiency': must be 1-5" in text
    assert f"{path}:9: field 'queues.apa.max_size': duplicate key" in text


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("queues: [\n", encoding="utf-8")
    with pytest.raises(RoutingConfigError, match=r"bad\.yaml:\d+: field '': invalid YAML"):
        load_routing_config(path)


def test_catalogue_path_is_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "cat.yaml").write_text("skills:\n  apa: APA\n  paiement: P\n", encoding="utf-8")
    path = tmp_path / "routing.yaml"
    path.write_text("catalogue: cat.yaml\nqueues: {}\n", encoding="utf-8")
    assert set(load_routing_config(path).queues) == {"apa", "paiement"}
    path.write_text("catalogue: missing.yaml\n", encoding="utf-8")
    with pytest.raises(RoutingConfigError, match="cannot read skills from missing.yaml"):
        load_routing_config(path)


def test_relaxation_helpers() -> None:
    queue = QueueConfig(
        "apa", min_proficiency=4, relaxation=(RelaxationStep(60, 3), RelaxationStep(120, 1))
    )
    assert [queue.min_proficiency_at(w) for w in (0, 59.9, 60, 119, 120, 1e6)] == [4, 4, 3, 3, 1, 1]
    assert [queue.next_relaxation_after(w) for w in (0, 60, 119, 120)] == [60, 120, 120, None]


def test_priority_rules() -> None:
    rules = PriorityRules(repeat_caller_window_s=3600, repeat_caller_raise=2, callback_raise=0)
    call = QueuedCall("c", "apa", Priority.LOW, joined_at=10_000, previous_contact_at=9_000)
    assert rules.effective(call) is Priority.HIGH
    assert rules.effective(QueuedCall("c", "apa", callback=True)) is Priority.NORMAL


def test_simple_config_is_validated() -> None:
    with pytest.raises(RoutingConfigError, match="overflow to unknown queue 'x'"):
        RoutingConfig.simple([QueueConfig("apa", overflow=Overflow(10, "x"))])


def test_closures_as_yaml_dates(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "skills: {apa: APA}\n"
        "hours:\n"
        "  bureau:\n"
        "    mon-fri: ['09:00-12:00', '14:00-17:00']\n"
        "    closures: [2026-12-24, '2026-12-31']\n"
        "defaults: {hours: bureau}\n",
        encoding="utf-8",
    )
    hours = load_routing_config(path).queues["apa"].hours
    assert hours is not None
    assert hours.closures == {dt.date(2026, 12, 24), dt.date(2026, 12, 31)}
    assert len(hours.weekly[0]) == 2
