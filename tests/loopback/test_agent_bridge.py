"""Queued calls reach SIP agents: the service as a B2BUA between a sipp caller and sipp agents.

The service runs in-process (the real :class:`callcenter.app.Service`: SIP over UDP, RTP, the
flows, the SQLite store, the router), so a test can log agents in through
``await service.routing.submit(AgentLoggedIn(...))`` (the agent API is built elsewhere) and read the
router's state. Agents are created in the agents store with their SIP URI (a sipp UAS on
127.0.0.1). The routing file is the shipped one with a 3 s ring timeout; the routing clock
follows ``flows.now_override`` (a Monday 10:00), so the queues are open.

- A caller presses 0 → joins ``accueil_general`` → the agent's phone rings (From: the service,
  "SOLIDARITES accueil_general") → answers → speech flows both ways through the bridge (counted
  per direction by the service: frames whose peak is above silence) → the caller's key 5 is
  re-sent to the agent as RFC 4733 → the agent hangs up → the caller gets the goodbye and BYE;
  the agent is in wrap-up. The caller hanging up while bridged sends BYE to the agent (wrap-up).
- The first agent never answers: ring timeout → CANCEL → paused "non réponse" → the second agent
  gets the call. The first agent is busy (486): the call goes to the second one.
- The caller hangs up while waiting (the only agent is on a break): ``CallAbandoned``, the queue
  is empty. With nobody logged in at all, the call does not queue (the flow goes on as without
  routing).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import routing
from callcenter.app import Service
from callcenter.config import load_config
from callcenter.store import agents as agents_store
from tests.loopback.service import (
    OPEN_NOW,
    REPO,
    SHARED_CACHE,
    free_port,
    free_port_pair,
    render_scenario,
    service_rtp_range,
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

HOST = "127.0.0.1"
DISPLAY = "SOLIDARITES accueil_general"


def wait_for_bye_block(timeout_ms: int = 40000) -> str:
    """sipp: the caller waits for the service's BYE (the agent hung up) and answers 200."""
    return f"""  <recv request="BYE" timeout="{timeout_ms}"/>
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <timewait milliseconds="300"/>"""


def hang_up_block(from_user: str = "caller") -> str:
    """sipp: the caller sends BYE (RFC 3261 section 15.1.1) and expects 200."""
    return f"""  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "sipp" <sip:{from_user}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 4 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>"""


WAIT_FOR_BYE = wait_for_bye_block()
HANG_UP = hang_up_block()


@dataclass
class Caller:
    """A sipp UAC running ``agent_caller.xml.tmpl`` for one call."""

    proc: asyncio.subprocess.Process
    workdir: Path

    def _read(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def call_id(self) -> str:
        for line in self._read("caller_logs.log").splitlines():
            if "CALLID " in line:
                return line.split("CALLID ", 1)[1].strip()
        raise AssertionError("the caller logged no Call-ID:\n" + self.describe())

    def describe(self) -> str:
        return (
            f"--- caller errors ---\n{self._read('caller_errors.log')[-3000:]}\n"
            f"--- caller messages ---\n{self._read('caller_messages.log')[-5000:]}"
        )

    async def finished(self, within: float = 60.0) -> int:
        async with asyncio.timeout(within):
            return await self.proc.wait()


def _caller_scenario(workdir: Path, audio: Path, *, zero_ms: int, key_ms: int, end: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    return render_scenario(
        "agent_caller.xml.tmpl",
        workdir / "agent_caller.xml",
        audio_wav=str(audio),
        zero_ms=str(zero_ms),
        key_ms=str(key_ms),
        end_block=end,
    )


@contextlib.asynccontextmanager
async def sipp_caller(
    target: str, workdir: Path, audio: Path, *, zero_ms: int, key_ms: int, end: str
) -> AsyncIterator[Caller]:
    scenario = _caller_scenario(workdir, audio, zero_ms=zero_ms, key_ms=key_ms, end=end)
    async with run_caller(target, workdir, scenario, timeout_s=70) as caller:
        yield caller


@contextlib.asynccontextmanager
async def run_caller(
    target: str, workdir: Path, scenario: Path, *, timeout_s: int
) -> AsyncIterator[Caller]:
    """Run one sipp caller on ``scenario`` against ``target``, its traces in ``workdir``."""
    # fmt: off
    cmd = [
        "sipp", target, "-sf", str(scenario), "-s", "3975", "-i", HOST, "-p", str(free_port()),
        "-mi", HOST, "-mp", str(free_port_pair()), "-m", "1", "-l", "1", "-nostdin",
        "-timeout", f"{timeout_s}s", "-timeout_error",
        "-trace_msg", "-message_file", str(workdir / "caller_messages.log"),
        "-trace_err", "-error_file", str(workdir / "caller_errors.log"),
        "-trace_logs", "-log_file", str(workdir / "caller_logs.log"),
    ]
    # fmt: on
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield Caller(proc, workdir)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Hold music: 20 s of a 440 Hz tone at 16 kHz (the service resamples it)."""
    out = tmp_path_factory.mktemp("music") / "music.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(out), "synth", "20", "sine", "440"],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return out


def _routing_file(folder: Path, *, max_wait: str | None = None) -> Path:
    text = (REPO / "routing" / "solidarites.yaml").read_text(encoding="utf-8")
    text = text.replace(
        "catalogue: ../faq/solidarites.yaml", f"catalogue: {REPO}/faq/solidarites.yaml"
    )
    assert "ring_timeout: 20s" in text
    text = text.replace("ring_timeout: 20s", "ring_timeout: 3s")
    if max_wait is not None:
        old = "  accueil_general:\n    max_wait: 20m"
        assert old in text
        text = text.replace(old, f"  accueil_general:\n    max_wait: {max_wait}")
    out = folder / "routing.yaml"
    out.write_text(text, encoding="utf-8")
    return out


@contextlib.asynccontextmanager
async def running_service(
    folder: Path,
    *,
    hold_music: Path | None = None,
    max_wait: str | None = None,
    **extra_env: str,
) -> AsyncIterator[Service]:
    rtp_min, rtp_max = service_rtp_range()
    env = {
        "CALLCENTER_DATA_DIR": str(folder / "data"),
        "CALLCENTER_FLOWS_NOW_OVERRIDE": OPEN_NOW,
        "CALLCENTER_FLOWS_WATCH_INTERVAL": "0",
        "CALLCENTER_RTP_PORT_MIN": str(rtp_min),
        "CALLCENTER_RTP_PORT_MAX": str(rtp_max),
        "CALLCENTER_TTS_CACHE_DIR": str(SHARED_CACHE / "prompts"),
        "CALLCENTER_ASR_ENGINE": "none",
        "CALLCENTER_SIP_PORT": str(free_port()),
        "CALLCENTER_SIP_TCP": "false",
        "CALLCENTER_HTTP_PORT": str(free_port(socket.SOCK_STREAM)),
        "CALLCENTER_ROUTING_FILE": str(_routing_file(folder, max_wait=max_wait)),
        "CALLCENTER_ROUTING_ANNOUNCE_INTERVAL_S": "5",
    }
    if hold_music is not None:
        env["CALLCENTER_ROUTING_HOLD_MUSIC"] = str(hold_music)
    env.update(extra_env)
    service = Service(load_config(env=env))
    try:
        await service.start()
        yield service
    finally:
        await service.drain()
        await service.close()


def add_agents(service: Service, agents: dict[str, str]) -> dict[str, str]:
    """Create agents (login → SIP URI) with the accueil_general skill; return their API tokens."""
    engine = service.store_engine
    assert engine is not None
    tokens: dict[str, str] = {}
    for login, uri in agents.items():
        _, tokens[login] = agents_store.add_agent(
            engine, login, f"Agent {login}", sip_uri=uri, skills={"accueil_general": 3}
        )
    return tokens


async def log_in_by_api(service: Service, token: str) -> dict[str, Any]:
    """Log an agent in through the service's own agent API (HTTP on 127.0.0.1)."""
    base = f"http://127.0.0.1:{service.config.http.port}"
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/api/agent/login", headers=headers, json={}) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(f"{base}/api/agent/me", headers=headers) as resp:
            me: dict[str, Any] = await resp.json()
    return me


async def log_in(service: Service, *logins: str) -> None:
    """Log agents in, one after the other (the first has been idle longest: offered first)."""
    await service.refresh_agents()
    assert service.routing is not None
    for login in logins:
        await service.routing.submit(
            routing.AgentLoggedIn(login, {"accueil_general": 3}, at=service.routing.now())
        )
        await asyncio.sleep(0.05)


async def trail(service: Service, call_id: str, within: float = 10.0) -> dict[str, Any]:
    """The call's trail once it has ended."""
    async with asyncio.timeout(within):
        while True:
            await service.trail.flush()
            call = await service.trail.get_call(call_id)
            if call is not None and call.get("ended_at"):
                return call
            await asyncio.sleep(0.1)


def events(call: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in call["events"] if e["type"] == kind]


def uas_sip(uas: SippUas) -> str:
    return f"sip:agent@{uas.uri_host}"


async def test_agent_answers_audio_both_ways_then_hangs_up(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    async with (
        running_service(tmp_path) as service,
        sipp_uas(
            "agent_answer.xml.tmpl",
            tmp_path / "agent",
            display=DISPLAY,
            ring_ms="500",
            talk_ms="4000",
            audio_wav=str(agent_audio),
        ) as agent,
    ):
        tokens = add_agents(service, {"ag1": uas_sip(agent)})
        await service.refresh_agents()
        me = await log_in_by_api(service, tokens["ag1"])  # the agent API the service mounts
        assert me["login"] == "ag1" and me["state"] == "available", me
        decisions: list[routing.Decision] = []
        assert service.routing is not None
        service.routing.listen(decisions.append)
        assert service.sip is not None
        target = f"{HOST}:{service.sip.local_address[1]}"
        async with sipp_caller(
            target, tmp_path / "caller", caller_audio, zero_ms=1500, key_ms=3000, end=WAIT_FOR_BYE
        ) as caller:
            assert await agent.finished(within=60) == 0, agent.describe()
            assert await caller.finished() == 0, caller.describe()
            call = await trail(service, caller.call_id)
        ag1 = service.routing.router.agent("ag1")
        metrics = service.metrics.render()[0].decode()

    (invite,) = [m for m in agent.received("INVITE")]
    assert f'"{DISPLAY}" <sip:3975@' in invite
    from_line = next(line for line in invite.splitlines() if line.startswith("From:"))
    assert "caller" not in from_line and "sipp" not in from_line  # never the caller's identity
    types = [e["type"] for e in call["events"]]
    for kind in ("queue_joined", "agent_offered", "agent_answered", "bridged", "agent_hangup"):
        assert kind in types, types
    assert types.index("agent_offered") < types.index("agent_answered") < types.index("bridged")
    (answered,) = events(call, "agent_answered")
    assert answered["agent"] == "ag1" and answered["within_20s"] and answered["within_60s"]
    (relayed,) = [d for d in events(call, "dtmf_relayed") if d["source"] == "caller"]
    assert relayed == {"source": "caller", "sent": True}  # which key is not kept
    (bridge,) = events(call, "bridge_ended")
    # ~4 s of talk: 200 frames each way; speech (not silence) in both directions.
    assert bridge["to_agent_frames"] > 100 and bridge["to_caller_frames"] > 100, bridge
    assert bridge["to_agent_voiced"] > 40 and bridge["to_caller_voiced"] > 40, bridge
    assert bridge["agent_packets_sent"] > 100, bridge  # RTP really left towards the phone
    assert events(call, "hangup")[-1]["cause"] == "agent_hangup"
    assert call["outcome"] == "completed"
    assert ag1.state is routing.AgentState.WRAP_UP
    kinds = [type(d).__name__ for d in decisions]
    for kind in ("CallEnqueued", "OfferCall", "CallAnswered", "CallCompleted"):
        assert kind in kinds, kinds
    assert 'callcenter_queue_answered_total{queue="accueil_general"} 1.0' in metrics
    assert 'callcenter_queue_joined_total{queue="accueil_general"} 1.0' in metrics
    # The agent is in wrap-up and the supervision gauges say so; nobody waits any more.
    assert 'callcenter_agents{state="wrap_up"} 1.0' in metrics
    assert 'callcenter_agents{state="available"} 0.0' in metrics
    assert 'callcenter_queue_waiting{queue="accueil_general"} 0.0' in metrics


async def test_caller_hangs_up_while_bridged(tmp_path: Path, audio: tuple[Path, Path]) -> None:
    caller_audio, agent_audio = audio
    async with (
        running_service(tmp_path) as service,
        sipp_uas(
            "agent_answer_until_bye.xml.tmpl",
            tmp_path / "agent",
            display=DISPLAY,
            ring_ms="300",
            audio_wav=str(agent_audio),
        ) as agent,
    ):
        add_agents(service, {"ag1": uas_sip(agent)})
        await log_in(service, "ag1")
        decisions: list[routing.Decision] = []
        assert service.sip is not None and service.routing is not None
        service.routing.listen(decisions.append)
        target = f"{HOST}:{service.sip.local_address[1]}"
        async with sipp_caller(
            target, tmp_path / "caller", caller_audio, zero_ms=1500, key_ms=3000, end=HANG_UP
        ) as caller:
            assert await caller.finished() == 0, caller.describe()
            assert await agent.finished(within=20) == 0, agent.describe()  # it got our BYE
            call = await trail(service, caller.call_id)
        ag1 = service.routing.router.agent("ag1")

    types = [e["type"] for e in call["events"]]
    assert "bridged" in types and "agent_hangup" not in types
    (bridge,) = events(call, "bridge_ended")
    assert bridge["to_agent_voiced"] > 20 and bridge["to_caller_voiced"] > 20, bridge
    assert events(call, "hangup")[-1] == {"cause": "bye", "side": "caller"}
    (completed,) = [d for d in decisions if isinstance(d, routing.CallCompleted)]
    assert completed.agent_id == "ag1" and completed.talk_s > 1
    assert ag1.state is routing.AgentState.WRAP_UP


@pytest.mark.parametrize("first", ["ring_timeout", "busy"])
async def test_first_agent_misses_second_agent_takes_the_call(
    tmp_path: Path, audio: tuple[Path, Path], first: str
) -> None:
    caller_audio, agent_audio = audio
    first_template = "uas_ring_forever.xml.tmpl" if first == "ring_timeout" else "uas_busy.xml.tmpl"
    async with (
        running_service(tmp_path) as service,
        sipp_uas(first_template, tmp_path / "first") as missing,
        sipp_uas(
            "agent_answer.xml.tmpl",
            tmp_path / "second",
            display=DISPLAY,
            ring_ms="300",
            talk_ms="2000",
            audio_wav=str(agent_audio),
        ) as second,
    ):
        add_agents(service, {"ag1": uas_sip(missing), "ag2": uas_sip(second)})
        await log_in(service, "ag1", "ag2")
        assert service.sip is not None and service.routing is not None
        target = f"{HOST}:{service.sip.local_address[1]}"
        async with sipp_caller(
            target, tmp_path / "caller", caller_audio, zero_ms=1500, key_ms=500, end=WAIT_FOR_BYE
        ) as caller:
            assert await missing.finished(within=60) == 0, missing.describe()
            assert await second.finished(within=60) == 0, second.describe()
            assert await caller.finished() == 0, caller.describe()
            call = await trail(service, caller.call_id)
        ag1 = service.routing.router.agent("ag1")
        ag2 = service.routing.router.agent("ag2")

    offered = [d["agent"] for d in events(call, "agent_offered")]
    assert offered == ["ag1", "ag2"]
    (missed,) = events(call, "agent_missed")
    assert missed["agent"] == "ag1"
    if first == "ring_timeout":
        assert missing.received("CANCEL"), missing.describe()
        assert missed["reason"] == "ring_timeout"
        assert ag1.state is routing.AgentState.PAUSED and ag1.pause_reason == "non réponse"
    else:
        assert missed == {"agent": "ag1", "status": 486, "reason": "rejected"}
        assert ag1.state is routing.AgentState.AVAILABLE
    assert events(call, "agent_answered")[0]["agent"] == "ag2"
    assert ag2.state is routing.AgentState.WRAP_UP


async def test_caller_hangs_up_while_waiting(
    tmp_path: Path, audio: tuple[Path, Path], music: Path
) -> None:
    caller_audio, _ = audio
    async with running_service(tmp_path, hold_music=music) as service:
        assert service.sip is not None and service.routing is not None
        # One agent staffs the queue but is on a break: the caller waits.
        await service.routing.submit(
            routing.AgentLoggedIn(
                "ag1", {"accueil_general": 3}, at=service.routing.now(), pause_reason="pause"
            )
        )
        decisions: list[routing.Decision] = []
        service.routing.listen(decisions.append)
        target = f"{HOST}:{service.sip.local_address[1]}"
        async with sipp_caller(
            target, tmp_path / "caller", caller_audio, zero_ms=1500, key_ms=24000, end=HANG_UP
        ) as caller:
            assert await caller.finished() == 0, caller.describe()
            call = await trail(service, caller.call_id)
        waiting = service.routing.router.waiting("accueil_general")
        metrics = service.metrics.render()[0].decode()

    (abandoned,) = [d for d in decisions if isinstance(d, routing.CallAbandoned)]
    assert abandoned.call_id == caller.call_id and abandoned.queue == "accueil_general"
    assert abandoned.wait_s > 18
    assert waiting == []
    types = [e["type"] for e in call["events"]]
    assert "queue_joined" in types and "agent_offered" not in types
    # Nobody available staffs the queue: the only honest range is "plus de 10 minutes". The
    # holding message, nobody ahead, the range and (a long wait) the callback offer, 5 s of music
    # cut by the position and the range again (themselves cut by the hang-up).
    announced = events(call, "wait_announced")
    assert [a["bucket"] for a in announced] == ["plus de 10 minutes"] * 2, announced
    assert [a["position"] for a in announced] == [1, 1], announced
    played = [(d["prompt_id"], d["interrupted"]) for d in events(call, "prompt_played")]
    i = played.index(("hold_accueil", False))
    assert played[i + 1 : i + 5] == [
        ("routing_ahead_0", False),
        ("routing_wait_gt10", False),
        ("callback_offer", False),
        ("routing_hold_music", True),
    ], played
    assert played[i + 5][0] == "routing_ahead_0", played  # the announcement again
    assert events(call, "hangup")[-1]["side"] == "caller"
    assert 'callcenter_queue_abandoned_total{queue="accueil_general"} 1.0' in metrics


async def test_nobody_logged_in_the_flow_goes_on(tmp_path: Path, audio: tuple[Path, Path]) -> None:
    caller_audio, _ = audio
    # Without callbacks (with them, slots are offered: tests/loopback/test_callbacks.py).
    async with running_service(tmp_path, CALLCENTER_CALLBACKS_ENABLED="false") as service:
        assert service.sip is not None
        target = f"{HOST}:{service.sip.local_address[1]}"
        async with sipp_caller(
            target, tmp_path / "caller", caller_audio, zero_ms=1500, key_ms=500, end=WAIT_FOR_BYE
        ) as caller:
            assert await caller.finished() == 0, caller.describe()
            call = await trail(service, caller.call_id)
    types = [e["type"] for e in call["events"]]
    assert "queue_unstaffed" in types and "queue_joined" not in types
    assert events(call, "hangup")[-1]["cause"] == "queued"  # the flow's goodbye, as before


async def test_max_wait_message_then_the_flow_goes_on(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, _ = audio
    # Without callbacks (with them, slots are offered: tests/loopback/test_callbacks.py).
    async with running_service(
        tmp_path, max_wait="6s", CALLCENTER_CALLBACKS_ENABLED="false"
    ) as service:
        assert service.sip is not None and service.routing is not None
        await service.routing.submit(
            routing.AgentLoggedIn(
                "ag1", {"accueil_general": 3}, at=service.routing.now(), pause_reason="pause"
            )
        )
        target = f"{HOST}:{service.sip.local_address[1]}"
        async with sipp_caller(
            target, tmp_path / "caller", caller_audio, zero_ms=1500, key_ms=500, end=WAIT_FOR_BYE
        ) as caller:
            assert await caller.finished() == 0, caller.describe()
            call = await trail(service, caller.call_id)
        metrics = service.metrics.render()[0].decode()
    (left,) = events(call, "queue_left")
    assert left["reason"] == "max_wait" and left["wait_s"] >= 6, left
    played = [d["prompt_id"] for d in events(call, "prompt_played")]
    # The apology, then the queue node's next node (the flow's goodbye), then BYE.
    assert played[-2:] == ["routing_max_wait", "goodbye_queued"], played
    assert events(call, "hangup")[-1] == {"cause": "queued", "side": "service"}
    assert (
        'callcenter_queue_refused_total{queue="accueil_general",reason="max_wait"} 1.0' in metrics
    )
