from __future__ import annotations

from pathlib import Path

import pytest

from ivr_flows import (
    FlowError,
    FlowIssue,
    MenuNode,
    Severity,
    load_flow,
)
from ivr_flows.model import BranchNode, ConditionKind, QueueNode, SayNode

from .helpers import BASE, issues, load


def only(found: list[FlowIssue]) -> FlowIssue:
    assert len(found) == 1, [str(i) for i in found]
    return found[0]


def test_base_flow_loads() -> None:
    flow = load(BASE)
    assert flow.flow_id == "test"
    assert flow.start_node == "menu"
    assert list(flow.nodes) == ["menu", "one", "human"]
    menu = flow.nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert menu.human == "human" and menu.fallback == "human"
    assert menu.timeout_s == 6.0 and menu.retries == 2
    assert [p.prompt_id for p in flow.prompts()] == ["menu_prompt", "bye", "hold"]
    assert flow.warnings == ()
    assert str(flow.timezone) == "Europe/Paris"
    assert menu.line == 11


def test_issue_str_format() -> None:
    issue = FlowIssue("f.yaml", 3, "n", "next", "unknown node 'x'")
    assert str(issue) == "f.yaml:3: node 'n' field 'next': unknown node 'x'"
    assert str(FlowIssue("f.yaml", 1, None, None, "empty")) == "f.yaml:1: empty"
    assert str(FlowIssue("f.yaml", 2, None, "start", "m")) == "f.yaml:2: field 'start': m"
    warning = FlowIssue("f.yaml", 2, "n", None, "m", Severity.WARNING)
    assert str(warning) == "f.yaml:2: warning: node 'n': m"


def test_yaml_syntax_error_has_line() -> None:
    text = BASE.replace('      "1": one', '      "1": [one')
    issue = only(issues(text))
    assert issue.line == 16
    assert issue.message.startswith("YAML syntax error")
    assert issue.file == "t.yaml"


def test_unquoted_star_is_a_syntax_error() -> None:
    issue = only(issues(BASE.replace('      "1": one', "      *: one")))
    assert issue.line == 15
    assert "YAML syntax error" in issue.message


def test_unknown_top_level_key() -> None:
    issue = only(issues(BASE + "colour: blue\n"))
    assert (issue.line, issue.node_id, issue.field) == (23, None, "colour")
    assert issue.message.startswith("unknown key")


def test_unknown_node_key_and_missing_field() -> None:
    text = BASE.replace("    type: hangup\n", "    type: say\n    colour: red\n")
    found = issues(text)
    assert {(i.line, i.node_id, i.field) for i in found} == {
        (18, "one", "colour"),
        (16, "one", "next"),
    }
    by_field = {i.field: i for i in found}
    assert by_field["next"].message == "missing required field"
    assert str(by_field["next"]) == "t.yaml:16: node 'one' field 'next': missing required field"


def test_wrong_types() -> None:
    text = BASE.replace(
        '      "1": one\n', '      "1": one\n    timeout_s: soon\n    retries: 1.5\n'
    )
    found = issues(text)
    assert [(i.line, i.node_id, i.field) for i in found] == [
        (16, "menu", "timeout_s"),
        (17, "menu", "retries"),
    ]
    assert "expected a number" in found[0].message
    assert "expected an integer" in found[1].message


def test_out_of_range_number() -> None:
    issue = only(issues(BASE.replace('      "1": one\n', '      "1": one\n    retries: 50\n')))
    assert (issue.line, issue.field) == (16, "retries")
    assert "between 0 and 10" in issue.message


def test_dangling_reference() -> None:
    issue = only(issues(BASE.replace('"1": one', '"1": nowhere')))
    assert (issue.line, issue.node_id, issue.field) == (15, "menu", "choices.1")
    assert issue.message == "unknown node 'nowhere'"


def test_dangling_start() -> None:
    issue = only(issues(BASE.replace("start: menu", "start: begin")))
    assert (issue.line, issue.node_id, issue.field) == (2, None, "start")


def test_unreachable_node_is_a_warning() -> None:
    flow = load(BASE + "  orphan:\n    type: goto\n    next: menu\n")
    assert len(flow.warnings) == 1
    warning = flow.warnings[0]
    assert warning.severity is Severity.WARNING
    assert (warning.line, warning.node_id) == (23, "orphan")
    assert "unreachable" in warning.message


def test_duplicate_prompt_id() -> None:
    text = BASE.replace('{id: bye, text: "Au revoir."}', '{id: menu_prompt, text: "Au revoir."}')
    issue = only(issues(text))
    assert (issue.line, issue.node_id, issue.field) == (18, "one", "prompt.id")
    assert "duplicate prompt id 'menu_prompt' (first defined at line 13)" in issue.message


def test_prompt_reference_reuses_a_prompt() -> None:
    text = BASE.replace('prompt: {id: bye, text: "Au revoir."}', "prompt: menu_prompt")
    flow = load(text)
    assert [p.prompt_id for p in flow.prompts()] == ["menu_prompt", "hold"]
    issue = only(issues(BASE.replace('prompt: {id: bye, text: "Au revoir."}', "prompt: nope")))
    assert (issue.line, issue.node_id, issue.field, issue.message) == (
        18,
        "one",
        "prompt",
        "unknown prompt 'nope'",
    )


@pytest.mark.parametrize("bad_id", ["Menu", "menu-prompt", "../x", "a b"])
def test_bad_prompt_id(bad_id: str) -> None:
    issue = only(issues(BASE.replace("id: menu_prompt", f'id: "{bad_id}"')))
    assert (issue.line, issue.field) == (13, "prompt.id")
    assert "[a-z0-9_]+" in issue.message


def test_prompt_needs_text_or_recording() -> None:
    issue = only(issues(BASE.replace('{id: bye, text: "Au revoir."}', "{id: bye}")))
    assert (issue.line, issue.field) == (18, "prompt")
    rec = load(BASE.replace('{id: bye, text: "Au revoir."}', "{id: bye, recording: bye.wav}"))
    assert rec.prompts()[1].recording == "bye.wav" and rec.prompts()[1].text is None
    issue = only(
        issues(BASE.replace('{id: bye, text: "Au revoir."}', "{id: bye, recording: /x.wav}"))
    )
    assert issue.field == "prompt.recording"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ('"12"', "bad digit key"),
        ('"a"', "bad digit key"),
        ('"*"', "'*' is reserved"),
    ],
)
def test_bad_digit_keys(key: str, message: str) -> None:
    issue = only(issues(BASE.replace('      "1": one\n', f'      "1": one\n      {key}: one\n')))
    assert issue.line == 16 and issue.node_id == "menu"
    assert issue.field == f"choices.{key.strip(chr(34))}"
    assert message in issue.message


def test_hash_is_a_valid_digit_key() -> None:
    flow = load(BASE.replace('      "1": one\n', '      "1": one\n      "#": one\n'))
    menu = flow.nodes["menu"]
    assert isinstance(menu, MenuNode) and menu.choices["#"] == "one"


def test_menu_must_accept_zero() -> None:
    text = BASE.replace("  human: human\n", "")
    issue = only(issues(text))
    assert (issue.line, issue.node_id, issue.field) == (10, "menu", "choices")
    assert "must accept 0" in issue.message
    # An explicit "0" choice is enough.
    load(text.replace('      "1": one\n', '      "1": one\n      "0": human\n'))


@pytest.mark.parametrize(
    ("hours", "field", "message"),
    [
        ('"25:00-26:00"', "hours.office.mon-fri", "bad time range"),
        ('"12:00-09:00"', "hours.office.mon-fri", "bad time range"),
        ('"09:00-12:60"', "hours.office.mon-fri", "bad time range"),
        ('"0900-1200"', "hours.office.mon-fri", "bad time range"),
        ('"09:00-12:00, 11:00-13:00"', "hours.office.mon-fri", "overlap"),
    ],
)
def test_bad_times(hours: str, field: str, message: str) -> None:
    issue = only(issues(BASE.replace('"09:00-12:30, 13:30-17:00"', hours)))
    assert (issue.line, issue.node_id, issue.field) == (8, None, field)
    assert message in issue.message


def test_bad_weekday_key_and_duplicate_day() -> None:
    issue = only(issues(BASE.replace("    mon-fri:", "    monday-fri:")))
    assert (issue.line, issue.field) == (8, "hours.office.monday-fri")
    text = BASE.replace(
        "    public_holidays: FR\n", '    public_holidays: FR\n    fri: "14:00-15:00"\n'
    )
    issue = only(issues(text))
    assert (issue.line, issue.field) == (10, "hours.office.fri")
    assert "fri already given at line 8" in issue.message


def test_bad_closure_date_and_calendar() -> None:
    text = BASE.replace(
        "    public_holidays: FR\n", "    public_holidays: XX\n    closures: [2025-02-30]\n"
    )
    found = issues(text)
    assert [(i.line, i.field) for i in found] == [
        (9, "hours.office.public_holidays"),
        (10, "hours.office.closures[0]"),
    ]
    assert "unknown holiday calendar" in found[0].message and "bad date" in found[1].message


def test_unknown_timezone() -> None:
    issue = only(issues("timezone: Mars/Olympus\n" + BASE))
    assert (issue.line, issue.field) == (1, "timezone")


def test_node_type_errors() -> None:
    issue = only(issues(BASE.replace("type: hangup", "type: dance")))
    assert (issue.line, issue.node_id, issue.field) == (17, "one", "type")
    assert "unknown node type 'dance'" in issue.message
    issue = only(issues(BASE.replace("    type: hangup\n", "    reason: x\n")))
    assert (issue.line, issue.node_id, issue.field) == (16, "one", "type")


def test_duplicate_yaml_key() -> None:
    issue = only(
        issues(BASE.replace("  one:\n", "  menu:\n    type: goto\n    next: one\n  one:\n"))
    )
    assert (issue.line, issue.field) == (16, "nodes.menu")
    assert "duplicate key (first at line 11)" in issue.message


def test_branch_errors() -> None:
    branch = """\
  check:
    type: branch
    conditions:
      - open: offices
        next: menu
      - holiday: office
        open: office
        next: menu
      - variable: lang
        next: menu
    else: menu
"""
    found = issues(BASE.replace("start: menu", "start: check") + branch)
    assert [(i.line, i.node_id, i.field) for i in found] == [
        (26, "check", "conditions[0].open"),
        (28, "check", "conditions[1]"),
        (31, "check", "conditions[2].equals"),
    ]
    assert "unknown schedule 'offices' (known: office)" in found[0].message


def test_prompt_less_loop_is_an_error() -> None:
    loop = (
        "  a:\n    type: goto\n    next: b\n"
        "  b:\n    type: set\n    variables: {x: 1}\n    next: a\n"
    )
    found = issues(BASE.replace("start: menu", "start: a") + loop)
    assert any("loop without any prompt: a -> b -> a" in i.message for i in found), found


def test_placeholders() -> None:
    text = BASE.replace('text: "Au revoir."', 'text: "Ouvert {hours.office}."')
    flow = load(text)
    bye = flow.prompts()[1]
    assert bye.text == (
        "Ouvert du lundi au vendredi, de neuf heures à douze heures trente, "
        "et de treize heures trente à dix-sept heures."
    )
    issue = only(issues(BASE.replace('text: "Au revoir."', 'text: "{name}"')))
    assert (issue.line, issue.field) == (18, "prompt.text")
    assert "unknown placeholder {name}" in issue.message


def test_digits_in_text_warn() -> None:
    flow = load(BASE.replace('text: "Au revoir."', 'text: "Appelez le 3977."'))
    assert [(w.line, w.field) for w in flow.warnings] == [(18, "prompt.text")]


def test_several_issues_reported_together_and_nothing_loads() -> None:
    text = BASE.replace('"1": one', '"1": nowhere').replace("type: hangup", "type: dance")
    with pytest.raises(FlowError) as info:
        load(text)
    assert len(info.value.issues) == 2
    lines = str(info.value).splitlines()
    assert lines[0] == "2 issues in flow:"
    assert "t.yaml:17: node 'one' field 'type'" in lines[1] + lines[2]
    assert "t.yaml:15: node 'menu' field 'choices.1': unknown node 'nowhere'" in lines[1:]


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_not_a_mapping(text: str) -> None:
    issue = only(issues(text))
    assert issue.line == 1


def test_load_flow_reads_files(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(BASE, encoding="utf-8")
    assert load_flow(path).source == str(path)
    with pytest.raises(FlowError) as info:
        load_flow(tmp_path / "missing.yaml")
    issue = only(info.value.issues)
    assert issue.line == 0 and "cannot read file" in issue.message


def test_defaults_apply() -> None:
    text = BASE.replace(
        "  fallback: human\n",
        "  fallback: human\n  menu_timeout_s: 9\n  menu_retries: 4\n  tts_rate: 120\n"
        '  invalid_prompt: {id: oops, text: "Non."}\n',
    )
    flow = load(text)
    menu = flow.nodes["menu"]
    assert isinstance(menu, MenuNode)
    assert (menu.timeout_s, menu.retries) == (9.0, 4)
    assert menu.invalid_prompt is not None and menu.invalid_prompt.prompt_id == "oops"
    assert flow.defaults.tts_rate == 120
    assert flow.prompts()[0].prompt_id == "oops"


def test_model_types() -> None:
    branch = (
        "  check:\n    type: branch\n    conditions:\n"
        "      - variable: lang\n        equals: en\n        next: one\n"
        "    else: menu\n"
    )
    flow = load(BASE.replace("start: menu", "start: check") + branch)
    node = flow.nodes["check"]
    assert isinstance(node, BranchNode)
    assert node.conditions[0].kind is ConditionKind.VARIABLE
    assert node.conditions[0].equals == "en"
    assert isinstance(flow.nodes["human"], QueueNode)
    assert not isinstance(flow.nodes["one"], SayNode)


@pytest.mark.parametrize(
    ("old", "new", "line", "node_id", "field", "message"),
    [
        ("flow: test", "flow: Test", 1, None, "flow", "does not match"),
        ("flow: test", "flow: [a]", 1, None, "flow", "expected a string, got a list"),
        ("  human: human", "  human: nobody", 4, None, "defaults.human", "unknown node 'nobody'"),
        ("  fallback: human", "  fallback: human\n  tts_rate: 1000", 6, None,
         "defaults.tts_rate", "between 80"),
        ("  fallback: human", "  fallback: human\n  menu_timeout_s: 0", 6, None,
         "defaults.menu_timeout_s", "> 0"),
        ("    public_holidays: FR", "    subdivision: '57'", 9, None,
         "hours.office.subdivision", "needs 'public_holidays'"),
        ("    mon-fri:", "    sun-mon:", 8, None, "hours.office.sun-mon", "unknown key"),
        ("  office:", "  Office:", 7, None, "hours.Office", "schedule name"),
        ("    skill: accueil_general", "    skill: Accueil", 21, "human", "skill", "match"),
        ("    type: hangup", "    type: 7", 17, "one", "type", "expected a string, got int"),
        ("    prompt: {id: bye", "    reason: 'Bad Reason'\n    prompt: {id: bye", 18, "one",
         "reason", "match"),
        ("      \"1\": one", "      \"1\": [one]", 15, "menu", "choices.1", "expected a string"),
        ("    choices:\n      \"1\": one", "    choices: {}", 14, "menu", "choices",
         "at least one choice"),
    ],
)  # fmt: skip
def test_more_field_errors(
    old: str, new: str, line: int, node_id: str | None, field: str, message: str
) -> None:
    assert old in BASE
    issue = only(issues(BASE.replace(old, new)))
    assert (issue.line, issue.node_id, issue.field) == (line, node_id, field), str(issue)
    assert message in issue.message


def test_node_level_type_errors() -> None:
    extra = (
        "  s:\n    type: say\n    prompt: bye\n    next: menu\n    interruptible: maybe\n"
        "  v:\n    type: set\n    variables: {Bad: 1, ok: [1]}\n    next: menu\n"
    )
    found = issues(BASE + extra)
    assert [(i.line, i.node_id, i.field) for i in found] == [
        (27, "s", "interruptible"),
        (30, "v", "variables.Bad"),
        (30, "v", "variables.ok"),
    ]
    assert "expected true or false" in found[0].message


def test_nodes_must_be_a_mapping() -> None:
    text = BASE[: BASE.index("nodes:")] + "nodes: [menu]\n"
    found = issues(text)
    assert [(i.line, i.field) for i in found] == [
        (2, "start"),
        (4, "defaults.human"),
        (5, "defaults.fallback"),
        (10, "nodes"),
    ]
    assert found[-1].message == "expected a mapping, got a list"
