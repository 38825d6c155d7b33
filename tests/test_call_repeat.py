"""The repeat-caller lookup of a call (``Call._previous_call_ago``) on a real SQLite trail.

The SIP transport and the prompts are not used by the lookup: a clock stands in for the
transport, the rest is real (config, trail, metrics).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from callcenter.call import Call, CallServices
from callcenter.config import load_config
from callcenter.metrics import Metrics
from callcenter.sip import events as sip_events
from callcenter.sip.message import Headers
from callcenter.store import CallTrail

WINDOW = 48 * 3600.0


class _Clock:
    def now(self) -> float:
        return 0.0


def _call(trail: CallTrail, tmp_path: Path, caller: str | None) -> Call:
    incoming = sip_events.IncomingCall(
        call_id="this-call",
        remote_addr=("127.0.0.1", 5070),
        request_uri_user="3975",
        caller_uri=f"sip:{caller}@127.0.0.1",
        caller_user=caller,
        caller_display=None,
        sdp_offer=None,
        headers=Headers(),
    )
    services = CallServices(
        config=load_config(env={"CALLCENTER_DATA_DIR": str(tmp_path / "data")}),
        sip=cast(Any, _Clock()),
        flows=lambda _flow_id: cast(Any, None),
        prompts=cast(Any, None),
        trail=trail,
        metrics=Metrics(process_metrics=False),
    )
    return Call(incoming=incoming, services=services)


async def test_previous_call_of_the_same_number_within_the_window(tmp_path: Path) -> None:
    async with CallTrail.from_url(f"sqlite:///{tmp_path / 'trail.sqlite3'}") as trail:
        now = datetime.now(UTC)
        trail.call_started(
            "before",
            dialled="3975",
            caller="+33612345678",
            flow_id="f",
            at=now - timedelta(minutes=5),
        )
        trail.call_started(
            "long-ago", dialled="3975", caller="0698765432", flow_id="f", at=now - timedelta(days=3)
        )
        trail.call_started("this-call", dialled="3975", caller="0612345678", flow_id="f", at=now)
        assert await trail.flush()
        ago = await _call(trail, tmp_path, "0612345678")._previous_call_ago(WINDOW)
        assert ago is not None and 290 < ago < 320
        # Outside the window, another number, no number, an anonymous caller: not a repeat.
        assert await _call(trail, tmp_path, "0698765432")._previous_call_ago(WINDOW) is None
        assert await _call(trail, tmp_path, "0611111111")._previous_call_ago(WINDOW) is None
        assert await _call(trail, tmp_path, "anonymous")._previous_call_ago(WINDOW) is None
        assert await _call(trail, tmp_path, None)._previous_call_ago(WINDOW) is None
        assert await _call(trail, tmp_path, "0612345678")._previous_call_ago(0) is None


async def test_store_error_means_not_a_repeat_caller(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = CallTrail.from_url(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'trail.sqlite3'}")
    call = _call(broken, tmp_path, "0612345678")
    with caplog.at_level(logging.WARNING, logger="callcenter.call"):
        assert await call._previous_call_ago(WINDOW) is None
    (record,) = [r for r in caplog.records if r.name == "callcenter.call"]
    message = record.getMessage()
    assert "repeat-caller lookup failed: OperationalError" in message
    assert "0612345678" not in message and "33612345678" not in message
    broken.engine.dispose()
