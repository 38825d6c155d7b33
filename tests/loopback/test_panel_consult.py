"""Consult, then transfer, from the panel's API, with real SIP peers.

The agent ``ag1`` answers on a sipp phone and drives the consultation through the panel's
session API (logged in with a password, CSRF header): ``POST /panel/api/agent/consult
{"number": "3977"}`` → the caller is put on hold (music), the trunk (a sipp UAS) is dialled and
answers → ``.../consult/complete`` → ag1's phone gets our BYE, ag1 goes to wrap-up, the caller
talks with 3977, which hangs up → goodbye and BYE. A second run cancels instead: the number is
hung up and the agent is back with the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import routing
from callcenter.app import Service
from callcenter.store import panel as panel_store
from tests.loopback.service import trail_text
from tests.loopback.test_agent_bridge import (
    DISPLAY,
    HANG_UP,
    WAIT_FOR_BYE,
    add_agents,
    events,
    log_in,
    running_service,
    sipp_caller,
    trail,
    uas_sip,
)
from tests.loopback.test_outbound import sipp_uas
from tests.loopback.test_transfer import target_of
from tests.test_routing_redis import until

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("sipp") is None or shutil.which("espeak-ng") is None,
        reason="sipp (Debian sip-tester) and espeak-ng are needed",
    ),
]

PASSWORD = "consultation-mot-de-passe"


async def panel_session(service: Service, login: str) -> tuple[aiohttp.ClientSession, str]:
    """A logged-in panel session (cookie jar) and its CSRF token."""
    engine = service.store_engine
    assert engine is not None
    panel_store.set_password(engine, login, PASSWORD)
    base = f"http://127.0.0.1:{service.config.http.port}"
    http = aiohttp.ClientSession(base, cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.post(
        "/panel/api/login",
        json={"login": login, "password": PASSWORD},
        headers={"Origin": base},
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
    return http, str(body["csrf_token"])


async def post_until(
    http: aiohttp.ClientSession, path: str, csrf: str, body: Any = None, within: float = 20.0
) -> dict[str, Any]:
    """POST until 200 (409 while the call is not yet in the right state)."""
    origin = str(http._base_url)  # noqa: SLF001 - the session's own origin
    headers = {"X-CSRF-Token": csrf, "Origin": origin.rstrip("/")}
    async with asyncio.timeout(within):
        while True:
            async with http.post(path, json=body, headers=headers) as resp:
                data: dict[str, Any] = await resp.json()
                if resp.status == 200:
                    return data
                assert resp.status == 409, data
            await asyncio.sleep(0.2)


@dataclass
class Line:
    """The service, agent ag1 on a sipp phone (logged in, with a panel session), the trunk."""

    service: Service
    ag1: Any
    ext: Any
    http: aiohttp.ClientSession
    csrf: str


def _uas(name: str, folder: Path, agent_audio: Path, talk_ms: str | None, display: str) -> Any:
    """A sipp phone: answers and talks ``talk_ms`` then hangs up, or (None) waits for our BYE."""
    if talk_ms is None:
        return sipp_uas(
            "agent_answer_until_bye.xml.tmpl",
            folder / name,
            display=display,
            ring_ms="300",
            audio_wav=str(agent_audio),
        )
    return sipp_uas(
        "agent_answer.xml.tmpl",
        folder / name,
        display=display,
        ring_ms="300",
        talk_ms=talk_ms,
        audio_wav=str(agent_audio),
    )


@contextlib.asynccontextmanager
async def consult_line(
    tmp_path: Path, agent_audio: Path, *, ext_talk_ms: str | None, ag1_talk_ms: str | None
) -> AsyncIterator[Line]:
    """The set-up shared by these tests (3977 allowed, dialled through the sipp trunk)."""
    consult_display = "SOLIDARITES consultation"
    async with (
        _uas("ext", tmp_path, agent_audio, ext_talk_ms, consult_display) as ext,
        running_service(
            tmp_path,
            CALLCENTER_TRANSFERS_ALLOWED_NUMBERS="3977",
            CALLCENTER_CALLBACKS_TRUNK_URI=f"sip:{{number}}@{ext.uri_host}",
            CALLCENTER_PANEL_SECURE_COOKIES="false",
        ) as service,
        _uas("ag1", tmp_path, agent_audio, ag1_talk_ms, DISPLAY) as ag1,
    ):
        add_agents(service, {"ag1": uas_sip(ag1)})
        await log_in(service, "ag1")
        http, csrf = await panel_session(service, "ag1")
        try:
            yield Line(service, ag1, ext, http, csrf)
        finally:
            await http.close()


async def test_consult_a_number_then_hand_the_caller_over(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    async with consult_line(tmp_path, agent_audio, ext_talk_ms="6000", ag1_talk_ms=None) as line:
        service, http, csrf = line.service, line.http, line.csrf
        async with sipp_caller(
            target_of(service),
            tmp_path / "caller",
            caller_audio,
            zero_ms=1500,
            key_ms=3000,
            end=WAIT_FOR_BYE,
        ) as caller:
            await post_until(http, "/panel/api/agent/consult", csrf, {"number": "39 77"})
            me = await post_until(http, "/panel/api/agent/consult/complete", csrf)
            assert me["state"] == "wrap_up", me
            assert await line.ag1.finished(within=30) == 0, line.ag1.describe()
            assert await line.ext.finished(within=60) == 0, line.ext.describe()
            assert await caller.finished() == 0, caller.describe()
            call = await trail(service, caller.call_id)
        assert service.routing is not None
        assert service.routing.router.agent("ag1").state is routing.AgentState.WRAP_UP

    types = [e["type"] for e in call["events"]]
    for kind in ("consult_started", "agent_hold", "consult_answered", "transferred"):
        assert kind in types, types
    (transferred,) = events(call, "transferred")
    assert transferred == {"agent": "ag1", "kind": "number", "via": "consult", "to": None}
    last_bridge = events(call, "bridge_ended")[-1]
    # After the hand-over the caller heard the far end (its talk reached the caller).
    assert last_bridge["to_caller_voiced"] > 10, last_bridge
    assert "3977" not in trail_text(call["events"])


async def test_consult_cancelled_brings_the_agent_back(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    async with consult_line(tmp_path, agent_audio, ext_talk_ms=None, ag1_talk_ms="9000") as line:
        async with sipp_caller(
            target_of(line.service),
            tmp_path / "caller",
            caller_audio,
            zero_ms=1500,
            key_ms=3000,
            end=WAIT_FOR_BYE,
        ) as caller:
            await post_until(line.http, "/panel/api/agent/consult", line.csrf, {"number": "3977"})
            await asyncio.sleep(1.5)  # the number answers
            me = await post_until(line.http, "/panel/api/agent/consult/cancel", line.csrf)
            assert me["state"] == "on_call", me
            assert await line.ext.finished(within=30) == 0, line.ext.describe()  # got our BYE
            assert await line.ag1.finished(within=30) == 0, line.ag1.describe()  # ag1 hangs up
            assert await caller.finished() == 0, caller.describe()
            call = await trail(line.service, caller.call_id)

    types = [e["type"] for e in call["events"]]
    for kind in ("consult_started", "consult_cancelled", "agent_resume", "agent_hangup"):
        assert kind in types, types
    assert "transferred" not in types


async def test_consult_a_colleague_then_the_router_gives_them_the_call(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    async with (
        running_service(tmp_path, CALLCENTER_PANEL_SECURE_COOKIES="false") as service,
        sipp_uas(
            "agent_answer_until_bye.xml.tmpl",
            tmp_path / "ag1",
            display=DISPLAY,
            ring_ms="300",
            audio_wav=str(agent_audio),
        ) as ag1,
        sipp_uas(
            "agent_answer.xml.tmpl",
            tmp_path / "ag2",
            display="SOLIDARITES consultation",
            ring_ms="300",
            talk_ms="7000",
            audio_wav=str(agent_audio),
        ) as ag2,
    ):
        add_agents(service, {"ag1": uas_sip(ag1)})
        await log_in(service, "ag1")
        http, csrf = await panel_session(service, "ag1")
        assert service.routing is not None
        router = service.routing.router
        try:
            async with sipp_caller(
                target_of(service),
                tmp_path / "caller",
                caller_audio,
                zero_ms=1500,
                key_ms=3000,
                end=WAIT_FOR_BYE,
            ) as caller:
                await until(lambda: router.agent("ag1").state is routing.AgentState.ON_CALL, 20)
                # ag2 logs in only now, so that the router offers the caller to ag1 first.
                add_agents(service, {"ag2": uas_sip(ag2)})
                await service.refresh_agents()
                await log_in(service, "ag2")
                await post_until(http, "/panel/api/agent/consult", csrf, {"agent": "ag2"})
                me = await post_until(http, "/panel/api/agent/consult/complete", csrf)
                assert me["state"] == "wrap_up", me
                assert router.agent("ag2").state is routing.AgentState.ON_CALL
                assert await ag1.finished(within=30) == 0, ag1.describe()
                assert await ag2.finished(within=60) == 0, ag2.describe()  # ag2 hangs up
                assert await caller.finished() == 0, caller.describe()
                call = await trail(service, caller.call_id)
        finally:
            await http.close()
        assert router.agent("ag2").state is routing.AgentState.WRAP_UP
        assert router.call_phase(caller.call_id) is None  # no entry left in the router

    answered = events(call, "agent_answered")
    assert [a["agent"] for a in answered] == ["ag1", "ag2"], answered
    assert answered[1]["via"] == "consult" and answered[1]["accepted"] is True
    (transferred,) = events(call, "transferred")
    assert transferred == {"agent": "ag1", "kind": "agent", "via": "consult", "to": "ag2"}
    assert events(call, "agent_hangup")[-1]["agent"] == "ag2"


async def test_the_caller_hanging_up_during_a_consultation_ends_everything(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    async with consult_line(tmp_path, agent_audio, ext_talk_ms=None, ag1_talk_ms=None) as line:
        async with sipp_caller(
            target_of(line.service),
            tmp_path / "caller",
            caller_audio,
            zero_ms=1500,
            key_ms=8000,
            end=HANG_UP,  # the caller, on hold, gives up
        ) as caller:
            await post_until(line.http, "/panel/api/agent/consult", line.csrf, {"number": "3977"})
            assert await caller.finished() == 0, caller.describe()
            assert await line.ext.finished(within=30) == 0, line.ext.describe()  # our BYE
            assert await line.ag1.finished(within=30) == 0, line.ag1.describe()  # our BYE
            call = await trail(line.service, caller.call_id)
        assert line.service.routing is not None
        assert line.service.routing.router.agent("ag1").state is routing.AgentState.WRAP_UP

    (left,) = events(call, "consult_hangup")
    assert left == {"cause": "caller_left"}
    assert "transferred" not in [e["type"] for e in call["events"]]
