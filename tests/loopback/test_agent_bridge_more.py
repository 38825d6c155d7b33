"""Three routing behaviours of the bridged call, end to end with sipp callers and sipp agents.

Same set-up as ``tests/loopback/test_agent_bridge.py`` (the real service in-process, agents in
the store with a sipp UAS as their phone, the shipped routing file with a 3 s ring timeout):

- A repeat caller: the same number (the From user part) called earlier; its second call is
  queued with ``repeat: true`` at a raised priority and served before a first-time caller who
  joined the queue earlier.
- The caller puts the bridged call on hold (re-INVITE ``a=sendonly``) and resumes it: the agent's
  phone receives a re-INVITE ``a=sendonly``, then ``a=sendrecv``.
- The agent's phone stops sending RTP: after ``rtp.inactivity_timeout`` (3 s here) the service
  hangs it up, tells the caller, and the agent goes to wrap-up (``agent_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import routing
from callcenter.app import Service
from tests.loopback.service import (
    render_scenario,
    trail_text,
)
from tests.loopback.test_agent_bridge import (
    DISPLAY,
    HOST,
    WAIT_FOR_BYE,
    Caller,
    add_agents,
    events,
    run_caller,
    running_service,
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

QUEUE = "accueil_general"


def hang_up(number: str, cseq: int = 9) -> str:
    """The caller's BYE (From: the caller's number)."""
    return f"""  <send retrans="500">
    <![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "sipp" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: {cseq} BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>"""


def reinvite(number: str, cseq: int, direction: str, version: int) -> str:
    """A re-INVITE from the caller with ``a=<direction>`` (hold: sendonly), then its ACK."""
    return f"""  <send retrans="500">
    <![CDATA[
      INVITE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "sipp" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a={direction}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "sipp" <sip:{number}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>"""


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>'


def _number_scenario(workdir: Path, audio: Path, *, number: str, after_zero: str, end: str) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    return render_scenario(
        "agent_caller_number.xml.tmpl",
        workdir / "agent_caller.xml",
        audio_wav=str(audio),
        zero_ms="1500",
        from_user=number,
        after_zero=after_zero,
        end_block=end,
    )


@contextlib.asynccontextmanager
async def number_caller(
    target: str, workdir: Path, audio: Path, *, number: str, after_zero: str, end: str
) -> AsyncIterator[Caller]:
    """A sipp caller from ``number`` (``agent_caller_number.xml.tmpl``)."""
    scenario = _number_scenario(workdir, audio, number=number, after_zero=after_zero, end=end)
    async with run_caller(target, workdir, scenario, timeout_s=90) as caller:
        yield caller


async def log_in(service: Service, login: str, *, paused: bool = False) -> None:
    await service.refresh_agents()
    assert service.routing is not None
    await service.routing.submit(
        routing.AgentLoggedIn(
            login,
            {QUEUE: 3},
            at=service.routing.now(),
            pause_reason="pause" if paused else None,
        )
    )


async def waiting_count(service: Service, count: int, within: float = 20.0) -> None:
    """Wait until ``count`` calls wait in the queue."""
    assert service.routing is not None
    for _ in range(int(within / 0.05)):
        if len(service.routing.router.waiting(QUEUE)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} calls queued after {within} s")


async def test_repeat_caller_is_served_before_an_earlier_first_time_caller(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    repeat_number, first_number = "0612345678", "0698765432"
    async with (
        running_service(tmp_path) as service,
        sipp_uas(
            "agent_answer.xml.tmpl",
            tmp_path / "agent",
            display=DISPLAY,
            ring_ms="300",
            talk_ms="1500",
            audio_wav=str(agent_audio),
        ) as agent,
    ):
        add_agents(service, {"ag1": uas_sip(agent)})
        await log_in(service, "ag1", paused=True)  # staffs the queue; nobody is offered yet
        assert service.sip is not None and service.routing is not None
        router = service.routing
        decisions: list[routing.Decision] = []
        router.listen(decisions.append)
        target = f"{HOST}:{service.sip.local_address[1]}"

        # 1. The number calls, queues, gives up.
        async with number_caller(
            target,
            tmp_path / "earlier",
            caller_audio,
            number=repeat_number,
            after_zero=pause(1500),
            end=hang_up(repeat_number),
        ) as earlier:
            assert await earlier.finished() == 0, earlier.describe()
            earlier_call = await trail(service, earlier.call_id)

        # 2. A first-time caller joins the queue, then 3. the same number again.
        async with (
            number_caller(
                target,
                tmp_path / "first",
                caller_audio,
                number=first_number,
                after_zero=pause(14000),
                end=hang_up(first_number),
            ) as first,
        ):
            await waiting_count(service, 1)
            async with number_caller(
                target,
                tmp_path / "repeat",
                caller_audio,
                number=repeat_number,
                after_zero=pause(500),
                end=WAIT_FOR_BYE,
            ) as repeat:
                await waiting_count(service, 2)
                order = [c.call_id for c in router.router.waiting(QUEUE)]
                await router.submit(routing.AgentReady("ag1", at=router.now()))
                assert await agent.finished(within=30) == 0, agent.describe()
                assert await repeat.finished() == 0, repeat.describe()
                repeat_call = await trail(service, repeat.call_id)
            assert await first.finished() == 0, first.describe()
            first_call = await trail(service, first.call_id)

    assert order == [repeat.call_id, first.call_id]  # served first although it joined later
    (offer, *_) = [d for d in decisions if isinstance(d, routing.OfferCall)]
    assert offer.call.call_id == repeat.call_id and offer.agent_id == "ag1"
    (joined_earlier,) = events(earlier_call, "queue_joined")
    (joined_first,) = events(first_call, "queue_joined")
    (joined_repeat,) = events(repeat_call, "queue_joined")
    assert joined_earlier["repeat"] is False and joined_first["repeat"] is False
    assert joined_repeat["repeat"] is True
    assert joined_first["priority"] == "normal" and joined_repeat["priority"] == "high"
    assert events(repeat_call, "agent_answered")[0]["agent"] == "ag1"
    assert "agent_offered" not in [e["type"] for e in first_call["events"]]
    # The number stays in call.caller only: never in an event.
    for call in (earlier_call, first_call, repeat_call):
        text = trail_text(call["events"])
        assert repeat_number not in text and first_number not in text


async def test_caller_hold_and_resume_reach_the_agent(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    number = "0612345678"
    after_zero = "\n".join(
        [
            pause(5000),  # bridged by then (ring 300 ms)
            reinvite(number, 3, "sendonly", 2353687638),
            pause(2000),
            reinvite(number, 4, "sendrecv", 2353687639),
            pause(1500),
        ]
    )
    async with (
        running_service(tmp_path) as service,
        sipp_uas(
            "agent_answer_hold.xml.tmpl",
            tmp_path / "agent",
            ring_ms="300",
            audio_wav=str(agent_audio),
        ) as agent,
    ):
        add_agents(service, {"ag1": uas_sip(agent)})
        await log_in(service, "ag1")
        assert service.sip is not None
        target = f"{HOST}:{service.sip.local_address[1]}"
        async with number_caller(
            target,
            tmp_path / "caller",
            caller_audio,
            number=number,
            after_zero=after_zero,
            end=hang_up(number),
        ) as caller:
            assert await caller.finished() == 0, caller.describe()
            assert await agent.finished(within=20) == 0, agent.describe()
            call = await trail(service, caller.call_id)

    invites = agent.received("INVITE")
    assert len(invites) == 3, agent.describe()
    assert "a=sendonly" in invites[1] and "a=sendrecv" in invites[2]
    types = [e["type"] for e in call["events"]]
    assert types.index("bridged") < types.index("caller_hold") < types.index("caller_resume")
    assert events(call, "caller_hold") == [{"agent": "ag1", "sent": True}]
    assert events(call, "caller_resume") == [{"agent": "ag1", "sent": True}]
    assert [e["direction"] for e in events(call, "reinvite")] == ["recvonly", "sendrecv"]
    assert events(call, "hangup")[-1] == {"cause": "bye", "side": "caller"}


async def test_silent_agent_phone_is_hung_up_after_the_timeout(
    tmp_path: Path, audio: tuple[Path, Path]
) -> None:
    caller_audio, agent_audio = audio
    async with (
        running_service(tmp_path, CALLCENTER_RTP_INACTIVITY_TIMEOUT="3") as service,
        sipp_uas(
            "agent_answer_mute.xml.tmpl",
            tmp_path / "agent",
            ring_ms="300",
            talk_ms="2000",
            audio_wav=str(agent_audio),
        ) as agent,
    ):
        add_agents(service, {"ag1": uas_sip(agent)})
        await log_in(service, "ag1")
        assert service.sip is not None and service.routing is not None
        decisions: list[routing.Decision] = []
        service.routing.listen(decisions.append)
        target = f"{HOST}:{service.sip.local_address[1]}"
        async with number_caller(
            target,
            tmp_path / "caller",
            caller_audio,
            number="0612345678",
            after_zero=pause(100),
            end=WAIT_FOR_BYE,
        ) as caller:
            assert await agent.finished(within=40) == 0, agent.describe()  # got our BYE
            assert await caller.finished() == 0, caller.describe()  # got the goodbye's BYE
            call = await trail(service, caller.call_id)
        ag1 = service.routing.router.agent("ag1")

    types = [e["type"] for e in call["events"]]
    assert types.index("bridged") < types.index("agent_lost") < types.index("bridge_ended")
    assert "agent_hangup" not in types
    ts = {e["type"]: e["ts"] for e in call["events"]}
    assert ts["bridged"] < ts["agent_lost"]
    (lost,) = events(call, "agent_lost")
    assert lost["agent"] == "ag1" and 3.0 < lost["silent_s"] < 5.0, lost
    (bridge,) = events(call, "bridge_ended")
    assert bridge["to_caller_voiced"] > 20, bridge  # the agent did talk for 2 s first
    assert events(call, "hangup")[-1] == {"cause": "agent_lost", "side": "service"}
    assert call["outcome"] == "completed"
    (completed,) = [d for d in decisions if isinstance(d, routing.CallCompleted)]
    assert completed.agent_id == "ag1"
    assert ag1.state is routing.AgentState.WRAP_UP
