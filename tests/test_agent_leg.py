"""AgentLeg: the agent side of the B2BUA, driven with SIP events, over a recording dialer.

The dialer stands in for the service's outbound API (``Service.place_call``...); it records
the commands and the offers. The RTP endpoint is real (127.0.0.1, any port). The SIP path over
real UDP to sipp phones is in ``tests/loopback/test_agent_bridge.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from callcenter import sdp
from callcenter.agent_leg import (
    AgentLeg,
    LegAnswered,
    LegDtmf,
    LegEnded,
    LegEvent,
    LegFailed,
    LegRinging,
    caller_id_display,
    failure_kind,
)
from callcenter.sip import events as sip_events

ANSWER = (
    b"v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


@dataclass
class RecordingDialer:
    commands: list[tuple[str, str]] = field(default_factory=list)
    offers: list[bytes] = field(default_factory=list)
    froms: list[tuple[str, str | None]] = field(default_factory=list)
    reinvite_answers: list[bytes | None] = field(default_factory=list)

    def place_call(
        self,
        target_uri: str,
        sdp_offer: bytes,
        *,
        from_user: str,
        from_display: str | None,
        on_event: Callable[[sip_events.SipEvent], None],
    ) -> str:
        self.offers.append(sdp_offer)
        self.froms.append((from_user, from_display))
        self.commands.append(("invite", target_uri))
        return "leg-1"

    def cancel_call(self, call_id: str) -> None:
        self.commands.append(("cancel", call_id))

    def hangup_call(self, call_id: str) -> None:
        self.commands.append(("hangup", call_id))

    def reinvite_call(self, call_id: str, sdp_offer: bytes) -> bool:
        self.offers.append(sdp_offer)
        self.commands.append(("reinvite", call_id))
        return True

    def answer_reinvite_call(self, call_id: str, sdp_answer: bytes | None) -> None:
        self.reinvite_answers.append(sdp_answer)

    def forget_call(self, call_id: str) -> None:
        self.commands.append(("forget", call_id))

    def notify_transfer_call(
        self, call_id: str, status_code: int, reason: str | None, refer_id: int
    ) -> bool:
        return False


async def _leg() -> tuple[AgentLeg, RecordingDialer, list[LegEvent]]:
    dialer = RecordingDialer()
    seen: list[LegEvent] = []
    leg = AgentLeg(
        dialer=dialer,
        agent_id="ag7",
        target_uri="sip:ag7@127.0.0.1:5099",
        local_host="127.0.0.1",
        rtp_host="127.0.0.1",
        port_range=(0, 0),
        on_event=seen.append,
    )
    call_id = await leg.start(from_user="3975", from_display="SOLIDARITES apa")
    assert call_id == "leg-1"
    return leg, dialer, seen


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        (486, "Busy Here", "rejected"),
        (603, "Decline", "rejected"),
        (600, "Busy Everywhere", "rejected"),
        (480, "Temporarily Unavailable", "no_answer"),
        (408, "Request Timeout", "no_answer"),
        (487, "Request Terminated", "no_answer"),
        (None, "timeout", "no_answer"),
        (200, "cancelled", "no_answer"),
        (404, "Not Found", "failed"),
        (503, "Service Unavailable", "failed"),
        (407, "authentication failed: no credentials", "failed"),
    ],
)
def test_failure_kind(status: int | None, reason: str, kind: str) -> None:
    assert failure_kind(status, reason) == kind


def test_caller_id_display_is_the_service_and_queue_only() -> None:
    assert caller_id_display("SOLIDARITES", "mdph_adulte") == "SOLIDARITES mdph_adulte"
    assert caller_id_display('SOLI"DA\r\nRITES', "apa") == "SOLIDARITES apa"
    assert len(caller_id_display("X" * 100, "apa")) == 64


async def test_offer_then_answer_applies_the_media() -> None:
    leg, dialer, seen = await _leg()
    try:
        assert dialer.froms == [("3975", "SOLIDARITES apa")]
        offer = sdp.SessionDescription.parse(dialer.offers[0])
        (audio,) = offer.media
        assert audio.formats[:3] == ("0", "8", "101")  # PCMU, PCMA, telephone-event
        assert offer.media_direction(audio) is sdp.Direction.SENDRECV
        assert leg.rtp is not None and audio.port == leg.rtp.local_port

        leg.on_sip_event(sip_events.OutboundCallRinging("leg-1", 180))
        leg.on_sip_event(sip_events.OutboundCallAnswered("leg-1", ANSWER))
        assert [type(e) for e in seen] == [LegRinging, LegAnswered]
        assert isinstance(seen[1], LegAnswered) and seen[1].codec == "PCMA"
        assert leg.rtp.session.remote_address == ("127.0.0.1", 40000)
        assert leg.rtp.session.deliver_audio
        assert leg.send_dtmf("5")
        assert leg.rtp.dtmf_pending > 0

        assert leg.hold()
        held = sdp.SessionDescription.parse(dialer.offers[-1])
        assert held.media_direction(held.media[0]) is sdp.Direction.SENDONLY
        assert held.origin.session_version > offer.origin.session_version
        assert leg.resume()
        resumed = sdp.SessionDescription.parse(dialer.offers[-1])
        assert resumed.media_direction(resumed.media[0]) is sdp.Direction.SENDRECV
        assert resumed.media[0].formats[0] == "8"  # only the negotiated codec is offered again

        leg.on_sip_event(sip_events.DtmfInfoReceived("leg-1", "7", 160))
        leg.on_sip_event(sip_events.CallTerminated("leg-1", "bye", "caller"))
        assert isinstance(seen[-2], LegDtmf) and seen[-2].digit == "7"
        assert isinstance(seen[-1], LegEnded) and seen[-1].by_agent and seen[-1].cause == "bye"
        leg.hangup()  # already ended: nothing sent
        assert ("hangup", "leg-1") not in dialer.commands
    finally:
        leg.close()
    assert dialer.commands[-1] == ("forget", "leg-1")
    leg.close()  # idempotent
    assert dialer.commands.count(("forget", "leg-1")) == 1


async def test_busy_is_a_rejection_and_no_end_event_follows() -> None:
    leg, dialer, seen = await _leg()
    try:
        leg.on_sip_event(sip_events.OutboundCallFailed("leg-1", 486, "Busy Here"))
        leg.on_sip_event(sip_events.CallTerminated("leg-1", "rejected", "caller"))
        assert len(seen) == 1
        assert isinstance(seen[0], LegFailed)
        assert (seen[0].status_code, seen[0].kind) == (486, "rejected")
        leg.cancel()  # ended: no CANCEL
        assert [c[0] for c in dialer.commands] == ["invite"]
    finally:
        leg.close()


async def test_unusable_answer_hangs_up_and_fails() -> None:
    leg, dialer, seen = await _leg()
    try:
        video_only = ANSWER.replace(b"m=audio 40000", b"m=audio 0")
        leg.on_sip_event(sip_events.OutboundCallAnswered("leg-1", video_only))
        assert ("hangup", "leg-1") in dialer.commands
        assert len(seen) == 1 and isinstance(seen[0], LegFailed) and seen[0].kind == "failed"
    finally:
        leg.close()


async def test_cancel_before_answer_and_phone_reinvite_is_answered() -> None:
    leg, dialer, seen = await _leg()
    try:
        leg.cancel()
        assert dialer.commands[-1] == ("cancel", "leg-1")
        leg.on_sip_event(sip_events.OutboundCallAnswered("leg-1", ANSWER))  # crossing 200
        leg.on_sip_event(
            sip_events.ReInviteReceived("leg-1", ANSWER.replace(b"a=sendrecv", b"a=sendonly"))
        )
        (answer,) = dialer.reinvite_answers
        assert answer is not None and b"a=recvonly" in answer
        leg.on_sip_event(sip_events.ReInviteReceived("leg-1", None))
        assert dialer.reinvite_answers[-1] is None  # refused (488)
    finally:
        leg.close()
