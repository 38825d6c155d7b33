"""Blind transfers end to end: the service between a sipp caller, sipp agents and a sipp "3977".

Same set-up as ``tests/loopback/test_agent_bridge.py`` (the real service in-process, agents in
the store with a sipp UAS as their phone, the shipped routing file):

- The agent's phone presses "transfer" to a colleague: REFER ``agent-ag2`` in the agent leg's
  dialog → 202, NOTIFY "100 Trying", NOTIFY "200 OK" (checked by the sipp scenario) → the caller
  is offered at once to ag2 (``queue_joined`` at position 0), who answers: the caller talks to
  ag2; ag1 is in wrap-up.
- Through the agent API, to another queue: ``POST /api/agent/transfer {"queue": "apa"}`` → ag1's
  phone gets our BYE, the caller waits in ``apa`` with a raised priority and the APA agent
  answers.
- Through the agent API, to an allowed external number (3977): dialled through the trunk
  (``callbacks.trunk_uri``, a sipp UAS), bridged, the far end hangs up → goodbye and BYE.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import routing
from callcenter.app import Service
from callcenter.store import agents as agents_store
from tests.loopback.service import SIPP_DIR, trail_text
from tests.loopback.test_agent_bridge import (
    DISPLAY,
    HOST,
    WAIT_FOR_BYE,
    add_agents,
    events,
    log_in,
    run_caller,
    running_service,
    sipp_caller,
    trail,
    uas_sip,
)
from tests.loopback.test_outbound import sipp_uas

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("sipp") is None or shutil.which("espeak-ng") is None,
        reason="sipp (Debian sip-tester) and espeak-ng are needed",
    ),
]


def target_of(service: Service) -> str:
    assert service.sip is not None
    return f"{HOST}:{service.sip.local_address[1]}"


async def transfer_by_api(
    service: Service, token: str, body: dict[str, str], within: float = 20.0
) -> dict[str, Any]:
    """POST /api/agent/transfer once the agent is in conversation (409 until then)."""
    url = f"http://127.0.0.1:{service.config.http.port}/api/agent/transfer"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http, asyncio.timeout(within):
        while True:
            async with http.post(url, headers=headers, json=body) as resp:
                data: dict[str, Any] = await resp.json()
                if resp.status == 200:
                    return data
                assert resp.status == 409, data
            await asyncio.sleep(0.2)


async def test_agent_phone_refer_to_a_colleague(tmp_path: Path, audio: tuple[Path, Path]) -> None:
    caller_audio, agent_audio = audio
    async with (
        running_service(tmp_path) as service,
        sipp_uas(
            "agent_refer.xml.tmpl", tmp_path / "ag1", talk_ms="1500", refer_user="agent-ag2"
        ) as ag1,
        sipp_uas(
            "agent_answer.xml.tmpl",
            tmp_path / "ag2",
            display=DISPLAY,
            ring_ms="300",
            talk_ms="2500",
            audio_wav=str(agent_audio),
        ) as ag2,
    ):
        add_agents(service, {"ag1": uas_sip(ag1), "ag2": uas_sip(ag2)})
        await log_in(service, "ag1", "ag2")
        async with sipp_caller(
            target_of(service),
            tmp_path / "caller",
            caller_audio,
            zero_ms=1500,
            key_ms=3000,
            end=WAIT_FOR_BYE,
        ) as caller:
            assert await ag1.finished(within=60) == 0, ag1.describe()
            assert await ag2.finished(within=60) == 0, ag2.describe()
            assert await caller.finished() == 0, caller.describe()
            call = await trail(service, caller.call_id)
        assert service.routing is not None
        states = {a: service.routing.router.agent(a).state for a in ("ag1", "ag2")}

    (transferred,) = events(call, "transferred")
    assert transferred == {"agent": "ag1", "kind": "agent", "via": "refer", "to": "ag2"}
    assert [e["agent"] for e in events(call, "agent_answered")] == ["ag1", "ag2"]
    joined = events(call, "queue_joined")
    assert [(j["position"], j["priority"]) for j in joined] == [(1, "normal"), (0, "high")]
    assert states == {"ag1": routing.AgentState.WRAP_UP, "ag2": routing.AgentState.WRAP_UP}
    # Audio reached the caller from ag2 through the second bridge.
    last_bridge = events(call, "bridge_ended")[-1]
    assert last_bridge["agent"] == "ag2" and last_bridge["to_caller_voiced"] > 10, last_bridge


async def test_api_transfer_to_another_queue(tmp_path: Path, audio: tuple[Path, Path]) -> None:
    caller_audio, agent_audio = audio
    async with (
        running_service(tmp_path) as service,
        sipp_uas(
            "agent_answer_until_bye.xml.tmpl",
            tmp_path / "ag1",
            display=DISPLAY,
            ring_ms="300",
            audio_wav=str(agent_audio),
        ) as ag1,
        sipp_uas(
            "agent_answer.xml.tmpl",
            tmp_path / "apa1",
            display="SOLIDARITES apa",
            ring_ms="300",
            talk_ms="2500",
            audio_wav=str(agent_audio),
        ) as apa1,
    ):
        tokens = add_agents(service, {"ag1": uas_sip(ag1)})
        engine = service.store_engine
        assert engine is not None and service.routing is not None
        agents_store.add_agent(
            engine, "apa1", "Agent APA", sip_uri=uas_sip(apa1), skills={"apa": 4}
        )
        await log_in(service, "ag1")
        await service.refresh_agents()
        await service.routing.submit(
            routing.AgentLoggedIn("apa1", {"apa": 4}, at=service.routing.now())
        )
        async with sipp_caller(
            target_of(service),
            tmp_path / "caller",
            caller_audio,
            zero_ms=1500,
            key_ms=3000,
            end=WAIT_FOR_BYE,
        ) as caller:
            me = await transfer_by_api(service, tokens["ag1"], {"queue": "apa"})
            assert me["state"] == "wrap_up", me
            assert await ag1.finished(within=30) == 0, ag1.describe()  # our BYE ended its call
            assert await apa1.finished(within=60) == 0, apa1.describe()
            assert await caller.finished() == 0, caller.describe()
            call = await trail(service, caller.call_id)
        metrics = service.metrics.render()[0].decode()

    (transferred,) = events(call, "transferred")
    assert transferred == {"agent": "ag1", "kind": "queue", "via": "api", "to": "apa"}
    joined = events(call, "queue_joined")
    assert [(j["queue"], j["priority"]) for j in joined] == [
        ("accueil_general", "normal"),
        ("apa", "high"),
    ]
    assert [e["agent"] for e in events(call, "agent_answered")] == ["ag1", "apa1"]
    assert 'callcenter_transfers_total{kind="queue"} 1.0' in metrics


async def test_api_transfer_to_an_allowed_external_number(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    async with (
        sipp_uas(
            "agent_answer.xml.tmpl",
            tmp_path / "ext",
            display="SOLIDARITES transfert",
            ring_ms="300",
            talk_ms="2500",
            audio_wav=str(agent_audio),
        ) as ext,
        running_service(
            tmp_path,
            CALLCENTER_TRANSFERS_ALLOWED_NUMBERS="3977",
            CALLCENTER_CALLBACKS_TRUNK_URI=f"sip:{{number}}@{ext.uri_host}",
        ) as service,
        sipp_uas(
            "agent_answer_until_bye.xml.tmpl",
            tmp_path / "ag1",
            display=DISPLAY,
            ring_ms="300",
            audio_wav=str(agent_audio),
        ) as ag1,
    ):
        tokens = add_agents(service, {"ag1": uas_sip(ag1)})
        await log_in(service, "ag1")
        async with sipp_caller(
            target_of(service),
            tmp_path / "caller",
            caller_audio,
            zero_ms=1500,
            key_ms=3000,
            end=WAIT_FOR_BYE,
        ) as caller:
            await transfer_by_api(service, tokens["ag1"], {"number": "39 77"})
            assert await ag1.finished(within=30) == 0, ag1.describe()
            assert await ext.finished(within=60) == 0, ext.describe()
            assert await caller.finished() == 0, caller.describe()
            call = await trail(service, caller.call_id)

    (invite,) = ext.received("INVITE")
    request_line = next(line for line in invite.splitlines() if line.startswith("INVITE "))
    assert request_line.startswith("INVITE sip:3977@"), request_line
    (transferred,) = events(call, "transferred")
    assert transferred == {"agent": "ag1", "kind": "number", "via": "api", "to": None}
    types = [e["type"] for e in call["events"]]
    for kind in ("transfer_answered", "transfer_hangup"):
        assert kind in types, types
    last_bridge = events(call, "bridge_ended")[-1]
    assert last_bridge["agent"] == "external" and last_bridge["to_caller_voiced"] > 10
    assert "3977" not in trail_text(call["events"])  # the number itself is not in the trail


async def test_a_caller_asking_for_a_transfer_is_refused_at_once(tmp_path: Path) -> None:
    """The caller's own phone sends REFER: 202 (the engine), then a final NOTIFY 603 at once."""
    async with running_service(tmp_path) as service:
        workdir = tmp_path / "caller"
        workdir.mkdir()
        async with run_caller(
            target_of(service), workdir, SIPP_DIR / "uac_refer_refused.xml", timeout_s=20
        ) as caller:
            assert await caller.finished(within=20) == 0, caller.describe()
            call = await trail(service, caller.call_id)
    assert events(call, "transfer_refused") == [{"side": "caller", "status": 603}]
