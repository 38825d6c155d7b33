"""Shared helpers for the ivr_flows tests: a small valid flow and a driver."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from ivr_flows import (
    Action,
    Event,
    Flow,
    FlowError,
    FlowIssue,
    FlowState,
    load_flow_text,
    step,
)

PARIS = ZoneInfo("Europe/Paris")
OPEN_MONDAY = dt.datetime(2025, 6, 2, 10, 0, tzinfo=PARIS)
"""Monday 2 June 2025, 10:00 in Paris: an ordinary open time."""

BASE = """\
flow: test
start: menu
defaults:
  human: human
  fallback: human
hours:
  office:
    mon-fri: "09:00-12:30, 13:30-17:00"
    public_holidays: FR
nodes:
  menu:
    type: menu
    prompt: {id: menu_prompt, text: "Tapez un."}
    choices:
      "1": one
  one:
    type: hangup
    prompt: {id: bye, text: "Au revoir."}
  human:
    type: queue
    skill: accueil_general
    prompt: {id: hold, text: "Un instant."}
"""


def load(text: str, filename: str = "t.yaml") -> Flow:
    return load_flow_text(textwrap.dedent(text), filename=filename)


def issues(text: str, filename: str = "t.yaml") -> list[FlowIssue]:
    try:
        load(text, filename)
    except FlowError as exc:
        return exc.issues
    raise AssertionError("flow loaded without errors")


def run(
    flow: Flow, state: FlowState, events: Iterable[Event], now: dt.datetime = OPEN_MONDAY
) -> tuple[FlowState, list[Action]]:
    """Feed events one after the other; return the final state and all actions."""
    actions: list[Action] = []
    for event in events:
        state, new = step(flow, state, event, now=now)
        actions.extend(new)
    return state, actions
