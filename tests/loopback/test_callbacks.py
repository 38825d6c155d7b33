"""Callbacks end to end: a sipp caller asks to be called back, the service calls them back.

The service runs in-process (as in ``test_agent_bridge.py``): SIP over UDP, RTP, the flows, the
SQLite store, the router and the :class:`~callcenter.callbacks.CallbackService`. The trunk is a
sipp UAS on 127.0.0.1 (``callbacks.trunk_uri``), the agent's phone another sipp UAS.

- The caller (caller ID ``0612345678``) presses 0 (a person), waits (the only agent is on a
  break), presses 0 again (callback), hears the number read back, confirms with 1 and is hung up
  on after the confirmation → the callback is stored (E.164, queued) and its router entry keeps
  its place. The agent becomes ready → their phone rings first, answers → the service dials
  ``sip:0612345678@trunk`` presenting the service → the callee answers → greeting, then audio
  both ways through the bridge → the callee hangs up → BYE to the agent, wrap-up; ``connected``
  in the contact history and the trail.
- The callee's line is busy (486): the attempt is recorded ``busy``, a retry is scheduled.
- Restart: a kept callback survives a service restart (loaded from the store, back in the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import routing
from callcenter.app import Service
from callcenter.media.asr.base import Transcript
from callcenter.store import callbacks as cb_store
from callcenter.store.dossiers import CONTACT
from routing.callbacks import CallbackStatus
from tests.loopback.audio import espeak_wav
from tests.loopback.service import SHARED_CACHE, free_port, render_scenario, trail_text
from tests.loopback.test_agent_bridge import (
    HANG_UP,
    HOST,
    WAIT_FOR_BYE,
    Caller,
    add_agents,
    events,
    run_caller,
    running_service,
    trail,
)
from tests.loopback.test_outbound import SippUas, sipp_uas

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        shutil.which("sipp") is None or shutil.which("espeak-ng") is None,
        reason="sipp (Debian sip-tester) and espeak-ng are needed",
    ),
]

CALLER_ID = "0612345678"
E164 = "+33612345678"
AGENT_DISPLAY = "SOLIDARITES rappel accueil_general"
CALLEE_DISPLAY = "Departement Solidarites"


def _info(cseq: int, digit: str) -> str:
    return f"""  <send retrans="500">
    <![CDATA[
      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "sipp" <sip:{CALLER_ID}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={digit}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>"""


@contextlib.asynccontextmanager
async def callback_caller(
    service: Service,
    workdir: Path,
    audio: Path,
    keys: list[tuple[int, str]],
    *,
    end: str = WAIT_FOR_BYE,
    timeout_s: int = 40,
) -> AsyncIterator[Caller]:
    """A sipp caller pressing ``keys`` ((pause before, digit)...), then waiting for our BYE."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    blocks = []
    for cseq, (pause_ms, digit) in enumerate(keys, start=2):
        blocks.append(f'  <pause milliseconds="{pause_ms}"/>')
        blocks.append(_info(cseq, digit))
    scenario = render_scenario(
        "callback_caller.xml.tmpl",
        workdir / "callback_caller.xml",
        caller=CALLER_ID,
        audio_wav=str(audio),
        keys="\n".join(blocks),
        end_block=end,
    )
    assert service.sip is not None
    target = f"{HOST}:{service.sip.local_address[1]}"
    async with run_caller(target, workdir, scenario, timeout_s=timeout_s) as caller:
        yield caller


def trunk_uas(
    port: int, template: str, workdir: Path, **values: str
) -> contextlib.AbstractAsyncContextManager[SippUas]:
    """A sipp UAS for one call on a port chosen in advance (the service's trunk URI names it)."""
    return sipp_uas(template, workdir, port=port, **values)


def _service(
    folder: Path, trunk_port: int | None
) -> contextlib.AbstractAsyncContextManager[Service]:
    """The service with a short callback policy, dialling the trunk at ``trunk_port``."""
    return running_service(
        folder,
        CALLCENTER_CALLBACKS_TRUNK_URI=f"sip:{{number}}@127.0.0.1:{trunk_port or 9}",
        CALLCENTER_CALLBACKS_RING_TIMEOUT_S="8",
        CALLCENTER_CALLBACKS_FIRST_RETRY_S="120",
        CALLCENTER_CALLBACKS_MAX_ATTEMPTS="2",
        CALLCENTER_CALLBACKS_NODE="test-node",
    )


async def _paused_agent(service: Service, uri: str) -> None:
    add_agents(service, {"ag1": uri})
    await service.refresh_agents()
    rs = service.routing
    assert rs is not None
    await rs.submit(
        routing.AgentLoggedIn("ag1", {"accueil_general": 3}, at=rs.now(), pause_reason="pause")
    )


async def _ask_callback(service: Service, tmp_path: Path, audio: Path) -> tuple[str, Any]:
    """Run the caller through the request; return its Call-ID and the stored callback."""
    keys = [(1500, "0"), (1500, "0"), (2500, "1")]
    async with callback_caller(service, tmp_path / "caller", audio, keys) as caller:
        assert await caller.finished(within=40) == 0, caller.describe()
        call = await trail(service, caller.call_id)
    types = [e["type"] for e in call["events"]]
    assert "callback_requested" in types, types
    assert events(call, "hangup")[-1]["cause"] == "callback_requested"
    (requested,) = events(call, "callback_requested")
    assert requested["mode"] == "keep_place"
    assert E164 not in trail_text(call["events"]) and CALLER_ID not in trail_text(call["events"])
    engine = service.store_engine
    assert engine is not None
    stored = cb_store.get(engine, requested["callback"])
    assert stored is not None
    return caller.call_id, stored


async def _wait_status(service: Service, callback_id: str, status: CallbackStatus) -> Any:
    engine = service.store_engine
    assert engine is not None
    async with asyncio.timeout(20):
        while True:
            stored = cb_store.get(engine, callback_id)
            if stored is not None and stored.status is status:
                return stored
            await asyncio.sleep(0.1)


async def test_callback_kept_then_agent_and_caller_connected(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    trunk_port = free_port()
    async with _service(tmp_path, trunk_port) as service:
        rs = service.routing
        engine = service.store_engine
        assert rs is not None and service.callbacks is not None and engine is not None
        await _paused_agent(service, "sip:agent@127.0.0.1:9")
        call_id, stored = await _ask_callback(service, tmp_path, caller_audio)
        # Stored in E.164, kept in the queue under the caller's entry (same place).
        assert stored.phone == E164 and stored.status is CallbackStatus.QUEUED
        assert stored.queue_call_id == call_id
        assert rs.router.call_phase(call_id) == "waiting"
        assert rs.router.waiting("accueil_general")[0].call_id == call_id

        async with (
            # The callee talks longer than the greeting (~7 s), then hangs up.
            trunk_uas(
                trunk_port,
                "agent_answer.xml.tmpl",
                tmp_path / "callee",
                display=CALLEE_DISPLAY,
                ring_ms="300",
                talk_ms="11000",
                audio_wav=str(caller_audio),
            ) as callee,
            sipp_uas(
                "agent_answer_until_bye.xml.tmpl",
                tmp_path / "agent",
                display=AGENT_DISPLAY,
                ring_ms="300",
                audio_wav=str(agent_audio),
            ) as agent,
        ):
            service.agent_uris["ag1"] = f"sip:agent@{agent.uri_host}"  # its port is new
            await rs.submit(routing.AgentReady("ag1", rs.now()))
            assert await agent.finished(within=40) == 0, agent.describe()
            assert await callee.finished(within=40) == 0, callee.describe()
            done = await _wait_status(service, stored.id, CallbackStatus.COMPLETED)
        attempt = await trail(service, f"cb-{stored.id}-1")
        ag1 = rs.router.agent("ag1")
        with engine.connect() as conn:
            contacts = conn.execute(
                select(CONTACT.c.outcome, CONTACT.c.handled_by, CONTACT.c.sip_call_id)
            ).all()
        metrics = service.metrics.render()[0].decode()

    # The agent's phone rang first, then the callee, presenting the service (never a caller).
    (callee_invite,) = callee.received("INVITE")
    assert f"INVITE sip:{CALLER_ID}@127.0.0.1:{callee.port} SIP/2.0" in callee_invite
    assert f'"{CALLEE_DISPLAY}" <sip:3975@' in callee_invite
    types = [e["type"] for e in attempt["events"]]
    assert types.index("agent_answered") < types.index("bridged"), types
    (bridge,) = events(attempt, "bridge_ended")
    # After the greeting, the agent's voice reaches the callee; the callee's the agent throughout.
    assert bridge["to_agent_frames"] > 300 and bridge["to_callee_frames"] > 50, bridge
    assert bridge["agent_packets_sent"] > 80 and bridge["callee_packets_sent"] > 80, bridge
    assert events(attempt, "callback_outcome") == [{"outcome": "connected"}]
    assert done.last_outcome == "connected" and len(done.callback.attempts) == 1
    assert ag1.state is routing.AgentState.WRAP_UP
    assert sorted((c.outcome, c.handled_by) for c in contacts) == [
        ("callback", "bot"),  # the call that asked
        ("connected", "ag1"),  # the callback
    ]
    assert 'callcenter_callbacks_requested_total{mode="keep_place"} 1.0' in metrics
    assert 'callcenter_callback_attempts_total{outcome="connected"} 1.0' in metrics
    assert 'callcenter_callbacks_ended_total{result="completed"} 1.0' in metrics
    # The agent taking the callback is not a queue answer (nobody waited on the line).
    assert 'callcenter_queue_answered_total{queue="accueil_general"} 0.0' in metrics


async def test_busy_line_schedules_a_retry(tmp_path: Path, audio: tuple[Path, Path]) -> None:
    caller_audio, agent_audio = audio
    async with (
        sipp_uas("uas_busy.xml.tmpl", tmp_path / "callee") as callee,
        sipp_uas(
            "agent_answer_until_bye.xml.tmpl",
            tmp_path / "agent",
            display=AGENT_DISPLAY,
            ring_ms="200",
            audio_wav=str(agent_audio),
        ) as agent,
        _service(tmp_path, callee.port) as service,
    ):
        rs = service.routing
        assert rs is not None
        await _paused_agent(service, f"sip:agent@{agent.uri_host}")
        _, stored = await _ask_callback(service, tmp_path, caller_audio)
        await rs.submit(routing.AgentReady("ag1", rs.now()))
        assert await callee.finished(within=30) == 0, callee.describe()
        assert await agent.finished(within=30) == 0, agent.describe()  # our BYE
        waiting = await _wait_status(service, stored.id, CallbackStatus.WAITING)
        now = rs.now()
        ag1 = rs.router.agent("ag1")
        await service.probe()  # what the periodic probe sets for the supervisors' gauges
        metrics = service.metrics.render()[0].decode()
    assert waiting.last_outcome == "busy" and len(waiting.callback.attempts) == 1
    # The retry waits for its due time: pending, not overdue. The queue took the call: open.
    assert "callcenter_callbacks_pending 1.0" in metrics, metrics
    assert "callcenter_callbacks_overdue 0.0" in metrics, metrics
    assert 'callcenter_queue_open{queue="accueil_general"} 1.0' in metrics, metrics
    assert 'callcenter_dependency_up{dependency="database"} 1.0' in metrics, metrics
    assert waiting.callback.due_at is not None
    assert 100 < waiting.callback.due_at - now <= 121  # first_retry_s after the attempt
    assert ag1.state is routing.AgentState.AVAILABLE  # nobody talked: no wrap-up
    assert 'callcenter_callback_attempts_total{outcome="busy"} 1.0' in metrics


async def test_kept_callback_survives_a_restart(tmp_path: Path, audio: tuple[Path, Path]) -> None:
    caller_audio, _ = audio
    async with _service(tmp_path, None) as service:
        await _paused_agent(service, "sip:agent@127.0.0.1:9")
        call_id, stored = await _ask_callback(service, tmp_path, caller_audio)
    async with _service(tmp_path, None) as again:
        rs = again.routing
        assert rs is not None
        waiting = rs.router.waiting("accueil_general")
        assert [c.call_id for c in waiting] == [call_id]
        assert waiting[0].callback
        assert rs.router.call_phase(call_id) == "waiting"
        engine = again.store_engine
        assert engine is not None
        back = cb_store.get(engine, stored.id)
        assert back is not None and back.status is CallbackStatus.QUEUED


async def test_unstaffed_queue_offers_slots(tmp_path: Path, audio: tuple[Path, Path]) -> None:
    caller_audio, _ = audio
    async with _service(tmp_path, None) as service:
        rs = service.routing
        assert rs is not None and service.callbacks is not None
        offered = service.callbacks.slots("accueil_general")
        keys = [(1500, "0"), (5500, "1"), (4000, "1")]  # a person; the first slot; confirm
        async with callback_caller(service, tmp_path / "caller", caller_audio, keys) as caller:
            assert await caller.finished(within=40) == 0, caller.describe()
            call = await trail(service, caller.call_id)
        engine = service.store_engine
        assert engine is not None
        (requested,) = events(call, "callback_requested")
        stored = cb_store.get(engine, requested["callback"])
        metrics = service.metrics.render()[0].decode()
    types = [e["type"] for e in call["events"]]
    assert "queue_unstaffed" in types and "queue_joined" not in types
    assert requested["mode"] == "slot"
    assert events(call, "callback_slot_chosen") == [{"choice": 1}]
    assert stored is not None and stored.status is CallbackStatus.WAITING
    assert stored.callback.slot == offered[0] and stored.callback.due_at == offered[0].start
    assert stored.phone == E164
    assert rs.router.queue_size("accueil_general") == 0  # it enters at the slot start
    assert 'callcenter_callbacks_requested_total{mode="slot"} 1.0' in metrics


@pytest.fixture(scope="module")
def said_rappel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of silence, "Pouvez-vous me rappeler ?" (espeak-ng), then 40 s of silence."""
    folder = tmp_path_factory.mktemp("rappel")
    raw = espeak_wav(folder / "raw.wav", "Pouvez-vous me rappeler ?", voice="fr", speed=120)
    out = folder / "rappel.wav"
    subprocess.run(
        ["sox", str(raw), "-r", "8000", "-c", "1", "-e", "u-law", str(out), "pad", "4", "40"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return out


def _whisper_service(tmp_path: Path) -> contextlib.AbstractAsyncContextManager[Service]:
    return running_service(
        tmp_path,
        CALLCENTER_ASR_ENGINE="whisper",
        CALLCENTER_ASR_CACHE_DIR=str(SHARED_CACHE / "models"),
        CALLCENTER_CALLBACKS_TRUNK_URI="sip:{number}@127.0.0.1:9",
    )


async def test_speech_while_waiting_is_heard_and_the_wait_goes_on(
    tmp_path: Path, said_rappel: Path
) -> None:
    """Real Whisper: the caller speaks while waiting; the utterance is decoded (its words are
    not kept), and the wait goes on (the announcements continue) until the caller hangs up.

    What Whisper base reads from espeak-ng through G.711 varies from run to run, so this test
    checks the listening itself; the next one scripts the words to check what they trigger.
    """
    async with _whisper_service(tmp_path) as service:
        await _paused_agent(service, "sip:agent@127.0.0.1:9")
        hang_up = '  <pause milliseconds="14000"/>\n' + HANG_UP
        async with callback_caller(
            service, tmp_path / "caller", said_rappel, [(1500, "0")], end=hang_up
        ) as caller:
            assert await caller.finished(within=40) == 0, caller.describe()
            call = await trail(service, caller.call_id)
    heard = events(call, "wait_heard")
    assert heard, [e["type"] for e in call["events"]]
    assert events(call, "transcript") == []  # the words are not kept
    assert len(events(call, "wait_announced")) >= 1
    assert events(call, "hangup")[-1]["side"] == "caller"


async def test_saying_rappel_while_waiting_asks_for_a_callback(
    tmp_path: Path, said_rappel: Path
) -> None:
    """The real pipeline (RTP, VAD, end of turn, the wait listen) with the transcription
    scripted to what the caller says: "Pouvez-vous me rappeler ?" starts the callback dialog."""
    async with _whisper_service(tmp_path) as service:
        assert service.asr is not None
        engine = service.asr.engine

        def scripted(audio: Any) -> Transcript:
            return Transcript("Pouvez-vous me rappeler ?", 0.9, "scripted", audio.size / 16000, 0.0)

        engine.transcribe = scripted  # type: ignore[attr-defined]
        await _paused_agent(service, "sip:agent@127.0.0.1:9")
        keys = [(1500, "0"), (20000, "1")]  # 0: a person; 1: the number read back is right
        async with callback_caller(
            service, tmp_path / "caller", said_rappel, keys, timeout_s=60
        ) as caller:
            assert await caller.finished(within=60) == 0, caller.describe()
            call = await trail(service, caller.call_id)
    assert events(call, "wait_heard") == [{"request": "callback", "words": True}]
    assert events(call, "transcript") == []  # heard and acted on, the words are not kept
    (requested,) = events(call, "callback_requested")
    assert requested["mode"] == "keep_place"
