"""The repeat-caller lookup on the call trail (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine
from sqlalchemy import exc as sa_exc

from callcenter.store import CallTrail
from callcenter.store.trail import caller_forms, last_call_from

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NUMBER = "+33612345678"


def test_caller_forms_cover_the_ways_a_trunk_writes_a_number() -> None:
    assert caller_forms(NUMBER) == ("+33612345678", "33612345678", "0033612345678", "0612345678")
    assert caller_forms("0612345678") == ()  # not E.164: matches nothing
    assert caller_forms("+33abc") == ()


async def test_last_call_from_finds_the_latest_call_in_the_window(trail: CallTrail) -> None:
    calls = [
        ("old", "+33612345678", NOW - timedelta(hours=49)),  # outside a 48 h window
        ("plain", "0612345678", NOW - timedelta(minutes=5)),
        ("other", "+33612345679", NOW - timedelta(minutes=1)),
        ("anonymous", None, NOW - timedelta(minutes=1)),
        ("self", "+33612345678", NOW),
    ]
    for call_id, caller, at in calls:
        trail.call_started(call_id, dialled="3975", caller=caller, flow_id="f", at=at)
    assert await trail.flush()
    since = NOW - timedelta(hours=48)
    found = await trail.last_call_from(NUMBER, since=since, exclude_sip_call_id="self")
    assert found == NOW - timedelta(minutes=5)
    # Without excluding itself, the asking call is the latest.
    assert await trail.last_call_from(NUMBER, since=since) == NOW
    # "0033..." stored form, other window.
    trail.call_started("intl", dialled="3975", caller="0033612345678", flow_id="f", at=NOW)
    assert await trail.flush()
    assert (
        await trail.last_call_from(
            NUMBER, since=NOW - timedelta(seconds=1), exclude_sip_call_id="self"
        )
        == NOW
    )
    assert await trail.last_call_from("+33612345670", since=since) is None
    old_only = NOW - timedelta(hours=50)
    assert last_call_from(trail.engine, NUMBER, since=old_only, exclude_sip_call_id="self") == NOW


def test_last_call_from_raises_when_the_store_is_unreachable() -> None:
    engine = create_engine("sqlite:////nonexistent-dir/x.sqlite3")
    try:
        with pytest.raises(sa_exc.OperationalError):  # the call: "not a repeat caller"
            last_call_from(engine, NUMBER, since=NOW)
    finally:
        engine.dispose()
