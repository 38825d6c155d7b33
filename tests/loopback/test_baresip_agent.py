"""A real softphone as the agent: baresip in auto-answer takes a queued call through the bridge.

The service runs in-process (as in ``test_agent_bridge.py``); the agent ``ag1`` is baresip
listening on 127.0.0.1 with ``answermode=auto``, streaming an agent's sentence (aufile) and
dumping what it hears, decoded (``sndfile``). A sipp caller presses 0 → the queue → baresip rings
and answers by itself → speech both ways through the bridge (the agent's dump holds the caller's
speech; the service counts the agent's voiced frames towards the caller) → the caller hangs up →
our BYE to baresip → the agent is in wrap-up, which ends through the agent API.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest

import routing
from tests.loopback import audio as sound
from tests.loopback.service import free_port
from tests.loopback.test_agent_bridge import (
    HANG_UP,
    HOST,
    add_agents,
    events,
    log_in_by_api,
    running_service,
    sipp_caller,
    trail,
)
from tests.loopback.test_baresip import baresip_config

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("baresip") is None
        or shutil.which("sipp") is None
        or shutil.which("espeak-ng") is None,
        reason="baresip, sipp (Debian sip-tester) and espeak-ng are needed",
    ),
]


async def test_baresip_agent_answers_by_itself_and_talks_with_the_caller(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, _ = audio
    agent_source = agent_voice(tmp_path)
    sip_port = free_port()
    # An agent's softphone: answers every call by itself.
    dumps = baresip_config(
        tmp_path / "baresip",
        sip_port=sip_port,
        source=agent_source,
        user="agent",
        answermode="auto",
        rtp_ports="30200-30300",
    )
    log_path = tmp_path / "baresip.log"
    with log_path.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            "baresip",
            "-f",
            str(tmp_path / "baresip"),
            "-n",
            "127.0.0.1",
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )
    try:
        await asyncio.sleep(1.0)  # baresip binds its port
        async with running_service(tmp_path) as service:
            tokens = add_agents(service, {"ag1": f"sip:agent@{HOST}:{sip_port}"})
            await service.refresh_agents()
            await log_in_by_api(service, tokens["ag1"])
            assert service.sip is not None and service.routing is not None
            target = f"{HOST}:{service.sip.local_address[1]}"
            async with sipp_caller(
                target, tmp_path / "caller", caller_audio, zero_ms=1500, key_ms=7000, end=HANG_UP
            ) as caller:
                assert await caller.finished() == 0, caller.describe()
                call = await trail(service, caller.call_id)
            ag1 = service.routing.router.agent("ag1")
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
    baresip_log = log_path.read_text(errors="replace")

    types = [e["type"] for e in call["events"]]
    for kind in ("queue_joined", "agent_offered", "agent_answered", "bridged", "bridge_ended"):
        assert kind in types, (types, baresip_log[-2000:])
    (bridge,) = events(call, "bridge_ended")
    # The agent's sentence reached the caller, the caller's speech reached the agent's phone.
    assert bridge["to_caller_voiced"] > 25, bridge
    assert bridge["to_agent_voiced"] > 25, bridge
    assert ag1.state is routing.AgentState.WRAP_UP
    decoded = sorted(dumps.glob("dump-*-dec.wav"))
    assert decoded, baresip_log[-2000:]
    heard, rate = sound.read_wav(decoded[0])
    assert heard.size > rate * 2 and sound.rms_dbfs(heard) > -45, sound.rms_dbfs(heard)


def agent_voice(tmp_path: Path) -> Path:
    """The agent's voice for aufile: 16-bit PCM, a sentence then silence."""
    return sound.caller_wav(
        tmp_path / "agent_s16.wav",
        "pcm16",
        text="Bonjour madame, service autonomie du département, je vous écoute.",
        pad_s=30,
    )
