"""AgentLeg.silent_for: what the call's dead-phone watchdog reads (hold is never silence)."""

from __future__ import annotations

import asyncio

from callcenter.sip import events as sip_events
from tests.test_agent_leg import ANSWER, _leg

RECVONLY_ANSWER = ANSWER.replace(b"a=sendrecv", b"a=recvonly")


async def test_silence_counts_from_the_answer_and_stops_on_hold() -> None:
    leg, dialer, _ = await _leg()
    loop = asyncio.get_running_loop()
    try:
        assert leg.silent_for(loop.time() + 100) == 0.0  # not answered: nothing expected
        leg.on_sip_event(sip_events.OutboundCallAnswered("leg-1", ANSWER))
        answered = loop.time()
        assert 9.5 < leg.silent_for(answered + 10) <= 10.5
        assert leg.rtp is not None
        leg.rtp.last_rx_time = answered + 8  # a packet 8 s after the answer
        assert 1.5 < leg.silent_for(answered + 10) <= 2.0

        # We hold the phone (a=sendonly, it answers recvonly): it is not meant to send.
        assert leg.hold()
        leg.on_sip_event(sip_events.ReInviteAnswered("leg-1", RECVONLY_ANSWER))
        assert leg.media is not None and not leg.media.direction.receives
        assert leg.silent_for(answered + 1000) == 0.0

        # Resumed: silence counts from the resume, not from the last packet before the hold.
        leg.rtp.last_rx_time = loop.time() - 50  # the last packet came long before the resume
        assert leg.resume()
        leg.on_sip_event(sip_events.ReInviteAnswered("leg-1", ANSWER))
        resumed = loop.time()
        assert leg.silent_for(resumed + 3) <= 3.0 + 0.5
        assert leg.silent_for(resumed + 3) >= 2.5

        leg.on_sip_event(sip_events.CallTerminated("leg-1", "bye", "caller"))
        assert leg.silent_for(resumed + 1000) == 0.0  # ended: not the watchdog's business
        assert dialer.commands[-2:] == [("reinvite", "leg-1"), ("reinvite", "leg-1")]
    finally:
        leg.close()
