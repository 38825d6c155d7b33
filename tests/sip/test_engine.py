"""SipEngine UAS/UAC behaviour through the in-memory harness (tests/sip/pair.py)."""

from __future__ import annotations

import random

import pytest

from callcenter.sip.access import AccessPolicy, is_trusted_source
from callcenter.sip.auth import (
    DigestCredentials,
    DigestServer,
    build_authorization,
    choose_challenge,
)
from callcenter.sip.engine import CallState, RegistrationConfig, SipEngine, parse_dtmf_info
from callcenter.sip.events import (
    CallCancelled,
    CallConfirmed,
    CallTerminated,
    DtmfInfoReceived,
    IncomingCall,
    MessageDropped,
    OutboundCallAnswered,
    OutboundCallFailed,
    OutboundCallProgressed,
    RegistrationFailed,
    RegistrationSucceeded,
    ReInviteConfirmed,
    ReInviteReceived,
)
from callcenter.sip.headers import NameAddress, Via, parse_vias
from callcenter.sip.message import SipRequest, SipResponse
from callcenter.sip.parser import parse_message
from callcenter.sip.ratelimit import SourceRateLimiter
from tests.sip.pair import (
    SDP_ANSWER,
    SDP_OFFER,
    Network,
    RawDialog,
    RawPeer,
    assert_events,
    drain_events,
    engine_config,
    new_dialog,
    request,
)

UAS = ("127.0.0.1", 5060)
UAC = ("127.0.0.1", 5070)


@pytest.fixture
def net() -> Network:
    return Network()


@pytest.fixture
def uas(net: Network) -> SipEngine:
    return net.add_engine(engine_config())


@pytest.fixture
def peer(net: Network) -> RawPeer:
    return net.add_peer(UAC)


def to_tag_of(resp: SipResponse) -> str | None:
    return NameAddress.parse(resp.headers.get("To") or "").tag


def invite(peer: RawPeer, d: RawDialog, *, branch: str = "z9hG4bKinv1", **kw: object) -> None:
    peer.send(
        request("INVITE", d, branch=branch, body=SDP_OFFER, content_type="application/sdp", **kw),  # type: ignore[arg-type]
        d.uas,
    )


def establish(net: Network, uas: SipEngine, peer: RawPeer) -> tuple[RawDialog, IncomingCall]:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    (event,) = assert_events(uas, [IncomingCall])
    assert isinstance(event, IncomingCall)
    uas.answer(d.call_id, SDP_ANSWER, net.now)
    net.transfer()
    ok = peer.responses()[-1]
    assert ok.status_code == 200
    d.to_tag = to_tag_of(ok)
    peer.send(request("ACK", d, to_tag=d.to_tag, cseq=1), UAS)
    assert_events(uas, [CallConfirmed])
    peer.inbox.clear()
    return d, event


# -- basic calls ------------------------------------------------------------------------------


def test_basic_call_caller_hangs_up(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    # RFC 3261 section 17.2.1: 100 Trying at once, without a To tag.
    (trying,) = peer.responses()
    assert trying.status_code == 100 and to_tag_of(trying) is None
    (event,) = assert_events(uas, [IncomingCall])
    assert isinstance(event, IncomingCall)
    assert event.request_uri_user == "3975"
    assert event.caller_user == "0612345678"
    assert event.caller_display == "Caller"
    assert event.sdp_offer == SDP_OFFER
    assert event.remote_addr == UAC
    uas.ring(d.call_id, net.now)
    uas.answer(d.call_id, SDP_ANSWER, net.now)
    net.transfer()
    _, ringing, ok = peer.responses()
    assert ringing.status_code == 180 and ok.status_code == 200
    assert to_tag_of(ringing) == to_tag_of(ok) is not None
    assert ok.body == SDP_ANSWER
    assert ok.headers.get("Content-Type") == "application/sdp"
    assert ok.headers.get("Contact") == "<sip:callcenter@127.0.0.1:5060>"
    assert uas.calls == {d.call_id: CallState.ANSWERED}
    d.to_tag = to_tag_of(ok)
    peer.send(request("ACK", d, to_tag=d.to_tag), UAS)
    assert_events(uas, [CallConfirmed])
    assert uas.calls == {d.call_id: CallState.CONFIRMED}
    d.cseq = 2
    peer.send(request("BYE", d, to_tag=d.to_tag), UAS)
    assert peer.codes()[-1] == 200
    (end,) = assert_events(uas, [CallTerminated])
    assert end == CallTerminated(d.call_id, "bye", "caller")
    assert uas.calls == {}


def test_service_hangs_up_with_bye(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d, _ = establish(net, uas, peer)
    uas.hangup(d.call_id, net.now)
    net.transfer()
    (bye,) = peer.requests()
    assert bye.method == "BYE"
    # RFC 3261 section 12.2.1.1: Request-URI = remote target, tags swapped, fresh branch.
    assert bye.uri == "sip:caller@127.0.0.1:5070"
    assert NameAddress.parse(bye.headers.get("From") or "").tag == d.to_tag
    assert NameAddress.parse(bye.headers.get("To") or "").tag == d.from_tag
    top = parse_vias(bye.headers)[0]
    assert top.branch is not None and top.branch.startswith("z9hG4bK")
    assert top.rport is True
    assert drain_events(uas) == []  # ended only once the BYE completes
    peer.send(_response_to(bye, 200), UAS)
    assert_events(uas, [CallTerminated])
    assert uas.calls == {}


def _response_to(req: SipRequest, code: int) -> bytes:
    lines = [f"SIP/2.0 {code} Whatever"]
    lines += [f"Via: {v}" for v in req.headers.get_all("Via")]
    for name in ("From", "To", "Call-ID", "CSeq"):
        lines.append(f"{name}: {req.headers.get(name)}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_bye_timeout_still_ends_the_call(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d, _ = establish(net, uas, peer)
    uas.hangup(d.call_id, net.now)
    net.advance(40)
    byes = [r for r in peer.requests() if r.method == "BYE"]
    # Timer E: 0, 0.5, 1.5, 3.5, 7.5, then every T2 (4 s) until Timer F (32 s).
    assert [t for t, _data, _src in peer.inbox][:5] == [0, 0.5, 1.5, 3.5, 7.5]
    assert len(byes) == 11
    (end,) = assert_events(uas, [CallTerminated])
    assert isinstance(end, CallTerminated) and end.cause == "bye_timeout"


def test_bye_481_ends_the_call(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d, _ = establish(net, uas, peer)
    uas.hangup(d.call_id, net.now)
    net.transfer()
    peer.send(_response_to(peer.requests()[0], 481), UAS)
    (end,) = assert_events(uas, [CallTerminated])
    assert isinstance(end, CallTerminated) and end.cause == "local_hangup"


def test_hangup_before_ack_waits_for_ack(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.answer(d.call_id, SDP_ANSWER, 0)
    uas.hangup(d.call_id, 0)
    net.transfer()
    assert not peer.requests()  # RFC 3261 section 15: no BYE before the ACK
    d.to_tag = to_tag_of(peer.responses()[-1])
    peer.send(request("ACK", d, to_tag=d.to_tag), UAS)
    assert [r.method for r in peer.requests()] == ["BYE"]


def test_hangup_before_answer_sends_480(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.hangup(d.call_id, 0)
    net.transfer()
    assert peer.codes() == [100, 480]
    (end,) = assert_events(uas, [CallTerminated])
    assert end == CallTerminated(d.call_id, "local_hangup", "service")


# -- retransmissions ---------------------------------------------------------------------------


def test_invite_retransmission_absorbed(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    invite(peer, d)
    assert_events(uas, [IncomingCall])
    assert peer.codes() == [100, 100]
    uas.ring(d.call_id, 0)
    invite(peer, d)
    # Proceeding: the latest provisional response is sent again.
    assert peer.codes() == [100, 100, 180, 180]
    assert uas.stats["retransmissions_received"] == 2


def test_2xx_retransmitted_until_ack_timeout(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.answer(d.call_id, SDP_ANSWER, 0)
    net.advance(40)
    ok_times = [t for t, data, _ in peer.inbox if data.startswith(b"SIP/2.0 200")]
    # RFC 3261 section 13.3.1.4: T1, doubling, capped at T2, until 64*T1.
    assert ok_times == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    byes = [r for r in peer.requests() if r.method == "BYE"]
    assert byes and [t for t, data, _ in peer.inbox if data.startswith(b"BYE")][0] == 32
    (end,) = assert_events(uas, [CallTerminated])
    assert end == CallTerminated(d.call_id, "ack_timeout", "service")


def test_2xx_retransmission_stops_on_ack(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.answer(d.call_id, SDP_ANSWER, 0)
    net.advance(1.0)
    d.to_tag = to_tag_of(peer.responses()[-1])
    peer.send(request("ACK", d, to_tag=d.to_tag), UAS)
    before = len(peer.inbox)
    net.advance(60)
    assert len(peer.inbox) == before
    assert_events(uas, [CallConfirmed])
    # Retransmitted INVITE after the 2xx: absorbed by the Accepted state (RFC 6026).
    invite(peer, d)
    assert len(peer.inbox) == before and drain_events(uas) == []


def test_lost_ack_then_late_ack_confirms(uas: SipEngine, peer: RawPeer, net: Network) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.answer(d.call_id, SDP_ANSWER, 0)
    net.advance(10)
    d.to_tag = to_tag_of(peer.responses()[-1])
    peer.send(request("ACK", d, to_tag=d.to_tag), UAS)
    peer.send(request("ACK", d, to_tag=d.to_tag), UAS)  # duplicate ACK: absorbed
    assert_events(uas, [CallConfirmed])


def test_final_non_2xx_timer_g_until_ack(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.reject(d.call_id, 486, 0)
    assert_events(uas, [CallTerminated])
    net.advance(8)
    busy_times = [t for t, data, _ in peer.inbox if data.startswith(b"SIP/2.0 486")]
    # Timer G: T1, 2*T1, 4*T1, then T2.
    assert busy_times == [0, 0.5, 1.5, 3.5, 7.5]
    d.to_tag = to_tag_of(peer.responses()[-1])
    # ACK for a non-2xx: same branch as the INVITE (RFC 3261 section 17.1.1.3).
    peer.send(request("ACK", d, branch="z9hG4bKinv1", to_tag=d.to_tag), UAS)
    before = len(peer.inbox)
    net.advance(30)
    assert len(peer.inbox) == before
    assert uas.stats["server_transactions"] == 0  # Timer I ended it


def test_final_non_2xx_timer_h_gives_up(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.reject(d.call_id, 603, 0, reason="Decline")
    net.advance(100)
    times = [t for t, data, _ in peer.inbox if data.startswith(b"SIP/2.0 603")]
    assert times[-1] < 32 and len(times) == 11
    assert uas.get_timer() is None
    assert uas.stats["server_transactions"] == 0


def test_non_invite_retransmission_gets_cached_response(
    net: Network, uas: SipEngine, peer: RawPeer
) -> None:
    d = new_dialog(UAC, UAS)
    options = request("OPTIONS", d, branch="z9hG4bKopt1")
    peer.send(options, UAS)
    peer.send(options, UAS)
    first, second = [data for _t, data, _ in peer.inbox]
    assert first == second  # byte for byte, To tag included
    net.advance(31)
    peer.send(options, UAS)
    assert len(peer.inbox) == 3
    net.advance(2)  # Timer J (64*T1) has fired: the transaction is gone
    assert uas.stats["server_transactions"] == 0


# -- CANCEL ----------------------------------------------------------------------------------


def test_cancel_before_answer(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.ring(d.call_id, 0)
    peer.send(request("CANCEL", d, branch="z9hG4bKinv1"), UAS)
    responses = peer.responses()
    assert [(r.status_code, r.headers.get("CSeq")) for r in responses] == [
        (100, "1 INVITE"),
        (180, "1 INVITE"),
        (200, "1 CANCEL"),
        (487, "1 INVITE"),
    ]
    # RFC 3261 section 9.2: same To tag on the CANCEL's 200 and the INVITE's responses.
    assert len({to_tag_of(r) for r in responses[1:]}) == 1
    cancelled, end = assert_events(uas, [CallCancelled, CallTerminated])
    assert end == CallTerminated(d.call_id, "cancelled", "caller")
    # The application's answer raced the CANCEL: ignored, the 487 stands.
    uas.answer(d.call_id, SDP_ANSWER, 0)
    net.transfer()
    assert peer.codes()[-1] == 487
    peer.send(request("ACK", d, branch="z9hG4bKinv1", to_tag=to_tag_of(responses[3])), UAS)
    net.advance(40)
    assert [c for c in peer.codes() if c == 487] == [487]


def test_cancel_after_answer_does_not_affect_invite(
    net: Network, uas: SipEngine, peer: RawPeer
) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.answer(d.call_id, SDP_ANSWER, 0)
    net.transfer()
    peer.send(request("CANCEL", d, branch="z9hG4bKinv1"), UAS)
    assert peer.codes() == [100, 200, 200]
    assert peer.responses()[-1].headers.get("CSeq") == "1 CANCEL"
    assert drain_events(uas) == []
    assert uas.calls == {d.call_id: CallState.ANSWERED}


def test_cancel_without_match_gets_481(uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    peer.send(request("CANCEL", d, branch="z9hG4bKnothing"), UAS)
    assert peer.codes() == [481]


def test_cancel_race_with_answer(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    # The 200 and the CANCEL cross on the wire: the CANCEL arrives after the final response.
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    drain_events(uas)
    uas.answer(d.call_id, SDP_ANSWER, 0)  # not yet transferred
    peer.send(request("CANCEL", d, branch="z9hG4bKinv1"), UAS)
    assert sorted(peer.codes()) == [100, 200, 200]
    d.to_tag = to_tag_of(peer.responses()[1])
    peer.send(request("ACK", d, to_tag=d.to_tag), UAS)
    assert_events(uas, [CallConfirmed])


# -- re-INVITE, INFO, OPTIONS ----------------------------------------------------------------


def reinvite(d: RawDialog) -> bytes:
    return request("INVITE", d, to_tag=d.to_tag, body=SDP_OFFER, content_type="application/sdp")


def test_reinvite_answered(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d, _ = establish(net, uas, peer)
    d.cseq = 2
    hold = SDP_OFFER.replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n")
    peer.send(request("INVITE", d, to_tag=d.to_tag, body=hold, content_type="application/sdp"), UAS)
    (event,) = assert_events(uas, [ReInviteReceived])
    assert event == ReInviteReceived(d.call_id, hold)
    uas.answer_reinvite(d.call_id, SDP_ANSWER, net.now)
    net.transfer()
    assert peer.codes() == [100, 200]
    peer.send(request("ACK", d, to_tag=d.to_tag), UAS)
    assert_events(uas, [ReInviteConfirmed])


def test_second_reinvite_while_pending_gets_500(
    net: Network, uas: SipEngine, peer: RawPeer
) -> None:
    d, _ = establish(net, uas, peer)
    d.cseq = 2
    peer.send(
        request("INVITE", d, to_tag=d.to_tag, body=SDP_OFFER, content_type="application/sdp"), UAS
    )
    d.cseq = 3
    peer.send(
        request("INVITE", d, to_tag=d.to_tag, body=SDP_OFFER, content_type="application/sdp"), UAS
    )
    codes = peer.codes()
    assert codes == [100, 100, 500]
    # RFC 3261 section 14.2: 500 with a Retry-After between 0 and 10 seconds.
    retry = int(peer.responses()[-1].headers.get("Retry-After") or "-1")
    assert 0 <= retry <= 10
    assert_events(uas, [ReInviteReceived])


def test_reinvite_glare_with_unacknowledged_2xx_gets_491(
    net: Network, uas: SipEngine, peer: RawPeer
) -> None:
    d = new_dialog(UAC, UAS)
    # Offerless INVITE: our 2xx carries the offer, the ACK will carry the answer.
    peer.send(request("INVITE", d, branch="z9hG4bKinv1"), UAS)
    (incoming,) = assert_events(uas, [IncomingCall])
    assert isinstance(incoming, IncomingCall) and incoming.sdp_offer is None
    uas.answer(d.call_id, SDP_ANSWER, 0)
    net.transfer()
    d.to_tag = to_tag_of(peer.responses()[-1])
    d.cseq = 2
    peer.send(
        request("INVITE", d, to_tag=d.to_tag, body=SDP_OFFER, content_type="application/sdp"), UAS
    )
    assert peer.codes()[-1] == 491
    d.cseq = 1
    peer.send(
        request("ACK", d, to_tag=d.to_tag, body=SDP_OFFER, content_type="application/sdp"), UAS
    )
    (confirmed,) = assert_events(uas, [CallConfirmed])
    assert confirmed == CallConfirmed(d.call_id, SDP_OFFER)


def test_info_dtmf(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d, _ = establish(net, uas, peer)
    d.cseq = 2
    peer.send(
        request(
            "INFO",
            d,
            to_tag=d.to_tag,
            body=b"Signal=5\r\nDuration=160\r\n",
            content_type="application/dtmf-relay",
        ),
        UAS,
    )
    d.cseq = 3
    peer.send(request("INFO", d, to_tag=d.to_tag, body=b"#", content_type="application/dtmf"), UAS)
    d.cseq = 4
    peer.send(request("INFO", d, to_tag=d.to_tag, body=b"hello", content_type="text/plain"), UAS)
    assert peer.codes() == [200, 200, 415]
    assert peer.responses()[-1].headers.get("Accept") == "application/dtmf-relay, application/dtmf"
    events = assert_events(uas, [DtmfInfoReceived, DtmfInfoReceived])
    assert events == [
        DtmfInfoReceived(d.call_id, "5", 160),
        DtmfInfoReceived(d.call_id, "#", None),
    ]


@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal= 1\r\nDuration= 250", ("1", 250)),
        ("application/dtmf-relay", b"Signal=*", ("*", None)),
        ("Application/DTMF-Relay; charset=x", b"signal=10\nduration=100", ("*", 100)),
        ("application/dtmf", b" 7 ", ("7", None)),
        ("application/dtmf-relay", b"Signal=Z", None),
        ("application/dtmf-relay", b"Duration=100", None),
        ("text/plain", b"5", None),
    ],
)
def test_parse_dtmf_info(ctype: str, body: bytes, expected: tuple[str, int | None] | None) -> None:
    assert parse_dtmf_info(ctype, body) == expected


def test_options_out_of_dialog(uas: SipEngine, peer: RawPeer) -> None:
    peer.send(request("OPTIONS", new_dialog(UAC, UAS)), UAS)
    (resp,) = peer.responses()
    assert resp.status_code == 200
    assert resp.headers.get("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER"
    assert resp.headers.get("Supported") == "norefersub"
    assert resp.headers.get("Accept") == "application/sdp"
    assert "Supported" in resp.headers
    assert to_tag_of(resp) is not None


def test_in_dialog_out_of_order_cseq_gets_500(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d, _ = establish(net, uas, peer)
    d.cseq = 5
    peer.send(request("INFO", d, to_tag=d.to_tag), UAS)
    d.cseq = 4
    peer.send(request("INFO", d, to_tag=d.to_tag), UAS)
    assert peer.codes() == [200, 500]


# -- errors ----------------------------------------------------------------------------------


def test_unknown_dialog_bye_gets_481(uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    peer.send(request("BYE", d, to_tag="nosuchtag"), UAS)
    peer.send(request("BYE", new_dialog(UAC, UAS)), UAS)  # no To tag at all
    assert peer.codes() == [481, 481]


def test_405_and_501_carry_allow(uas: SipEngine, peer: RawPeer) -> None:
    peer.send(request("SUBSCRIBE", new_dialog(UAC, UAS), extra=[("Event", "presence")]), UAS)
    peer.send(request("FROBNICATE", new_dialog(UAC, UAS)), UAS)
    r405, r501 = peer.responses()
    assert (r405.status_code, r501.status_code) == (405, 501)
    for resp in (r405, r501):
        assert "INVITE" in (resp.headers.get("Allow") or "")


def test_merged_request_gets_482(uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d, branch="z9hG4bKpath1")
    invite(peer, d, branch="z9hG4bKpath2")  # same From tag, Call-ID, CSeq: forked copy
    assert peer.codes() == [100, 482]
    assert_events(uas, [IncomingCall])


def test_rport_and_received(net: Network, uas: SipEngine) -> None:
    nat = net.add_peer(("127.0.0.9", 40123))
    d = new_dialog(("10.0.0.5", 5062), UAS)
    d.uac = ("10.0.0.5", 5062)
    data = request("OPTIONS", d)  # Via says 10.0.0.5:5062;rport, the packet comes from NAT
    nat.send(data, UAS)
    (resp,) = nat.responses()
    top = parse_vias(resp.headers)[0]
    assert top.received == "127.0.0.9" and top.rport == 40123


def test_no_rport_answers_received_and_sent_by_port(net: Network, uas: SipEngine) -> None:
    sent_by_port = net.add_peer(("127.0.0.9", 5062))
    source = net.add_peer(("127.0.0.9", 40123))
    d = new_dialog(("10.0.0.5", 5062), UAS)
    source.send(request("OPTIONS", d, rport=False), UAS)
    assert source.responses() == []
    (resp,) = sent_by_port.responses()
    assert parse_vias(resp.headers)[0].received == "127.0.0.9"


def test_drain_refuses_invites_but_answers_options(
    net: Network, uas: SipEngine, peer: RawPeer
) -> None:
    existing, _ = establish(net, uas, peer)
    uas.drain()
    invite(peer, new_dialog(UAC, UAS), branch="z9hG4bKdrain")
    peer.send(request("OPTIONS", new_dialog(UAC, UAS)), UAS)
    assert peer.codes() == [100, 503, 200]
    assert peer.responses()[1].headers.get("Retry-After") == "60"
    assert drain_events(uas) == []
    existing.cseq = 2
    peer.send(request("BYE", existing, to_tag=existing.to_tag), UAS)
    assert_events(uas, [CallTerminated])


def test_validation_errors_answered(uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    peer.send(request("INVITE", d, cseq_method="OPTIONS"), UAS)
    peer.send(request("INVITE", new_dialog(UAC, UAS), extra=[("Require", "100rel")]), UAS)
    peer.send(
        request("INVITE", new_dialog(UAC, UAS), body=b"<x/>", content_type="application/xml"),
        UAS,
    )
    bad, ext, media = peer.responses()
    assert bad.status_code == 400 and "does not match" in (bad.headers.get("Warning") or "")
    assert (ext.status_code, ext.headers.get("Unsupported")) == (420, "100rel")
    assert (media.status_code, media.headers.get("Accept")) == (415, "application/sdp")
    assert drain_events(uas) == []


def test_malformed_with_headers_gets_400_else_dropped(uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    raw = request("OPTIONS", d).replace(b"Content-Length: 0", b"Content-Length: 500")
    peer.send(raw, UAS)
    (resp,) = peer.responses()
    assert resp.status_code == 400
    assert "Content-Length" in (resp.headers.get("Warning") or "")
    peer.inbox.clear()
    peer.send(request("OPTIONS", d).replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), UAS)
    assert peer.codes() == [505]
    peer.inbox.clear()
    # RFC 4475 scalar02: CSeq out of range is echoed verbatim in the 400.
    peer.inbox.clear()
    peer.send(request("OPTIONS", d, cseq=2**31 + 5), UAS)
    ((_t, raw_400, _src),) = peer.inbox
    assert raw_400.startswith(b"SIP/2.0 400 ")
    assert f"CSeq: {2**31 + 5} OPTIONS\r\n".encode() in raw_400
    peer.inbox.clear()
    # RFC 4475 section 3.3.1 (insuf): no Via/From/To/CSeq is still answered, to the source
    # address and port (nothing else can route it), copying what exists and inventing nothing.
    peer.send(b"OPTIONS sip:x@y SIP/2.0\r\nCall-ID: 1\r\n\r\n", UAS)
    ((_t, raw_400, _src),) = peer.inbox
    assert raw_400.startswith(b"SIP/2.0 400 ")
    assert b"Call-ID: 1\r\n" in raw_400
    for absent in (b"\r\nVia:", b"\r\nFrom:", b"\r\nTo:", b"\r\nCSeq:"):
        assert absent not in raw_400
    peer.inbox.clear()
    # RFC 4475 section 3.1.2.1 (badinv01): an unparseable Via is echoed verbatim and the 400
    # goes to the source port, not to the Via's 5060.
    bad_via = request("OPTIONS", d, cseq=7).replace(
        b"Via: SIP/2.0/UDP 127.0.0.1:5070", b"Via: SIP/2.0/UDP 192.0.2.15:5060;;,;,,", 1
    )
    assert b";;,;,," in bad_via
    peer.send(bad_via, UAS)
    ((_t, raw_400, _src),) = peer.inbox
    assert raw_400.startswith(b"SIP/2.0 400 ")
    assert b"Via: SIP/2.0/UDP 192.0.2.15:5060;;,;,," in raw_400
    peer.inbox.clear()
    # Never answered: an ACK, a response, a request line without a method.
    peer.send(b"ACK sip:x@y SIP/2.0\r\nCall-ID: 1\r\n\r\n", UAS)
    peer.send(b"SIP/2.0 200 OK\r\nCall-ID: 1\r\n\r\n", UAS)
    peer.send(b"sip:x@y SIP/2.0\r\nCall-ID: 1\r\n\r\n", UAS)
    assert peer.inbox == []
    events = drain_events(uas, metrics=True)
    assert MessageDropped("malformed") in events


def test_garbage_never_raises(uas: SipEngine, peer: RawPeer) -> None:
    rng = random.Random(1234)
    valid = request("INVITE", new_dialog(UAC, UAS), body=SDP_OFFER, content_type="application/sdp")
    samples: list[bytes] = [b"", b"\r\n\r\n", b"\x00" * 100, b"SIP/2.0 200 OK\r\n\r\n"]
    for _ in range(300):
        samples.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        mutated = bytearray(valid)
        for _ in range(rng.randrange(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        samples.append(bytes(mutated[: rng.randrange(1, len(mutated) + 1)]))
    for data in samples:
        uas.receive_datagram(data, UAC, 0.0)
        uas.handle_timer(1.0)
    assert uas.stats["internal_errors"] == 0
    # Still serving calls afterwards.
    fresh = new_dialog(UAC, UAS)
    peer.inbox.clear()
    drain_events(uas)
    peer.send(request("INVITE", fresh, body=SDP_OFFER, content_type="application/sdp"), UAS)
    assert_events(uas, [IncomingCall])


def test_rfc2543_invite_without_branch(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    # RFC 4475 inv2543: no branch, no From tag, no Max-Forwards, no Content-Length.
    data = (
        b"INVITE sip:UserB@127.0.0.1 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5070\r\n"
        b"From: sip:UserA@127.0.0.1\r\n"
        b"To: sip:UserB@127.0.0.1\r\n"
        b"Call-ID: 2543@127.0.0.1\r\n"
        b"CSeq: 1 INVITE\r\n"
        b"Contact: sip:UserA@127.0.0.1:5070\r\n\r\n"
    )
    peer.send(data, UAS)
    peer.send(data, UAS)
    (event,) = assert_events(uas, [IncomingCall])
    assert peer.codes() == [100, 100]
    uas.answer(event.call_id, SDP_ANSWER, 0)  # type: ignore[union-attr]
    net.transfer()
    tag = to_tag_of(peer.responses()[-1])
    ack = (
        "ACK sip:UserB@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070\r\n"
        "From: sip:UserA@127.0.0.1\r\n"
        f"To: sip:UserB@127.0.0.1;tag={tag}\r\n"
        "Call-ID: 2543@127.0.0.1\r\n"
        "CSeq: 1 ACK\r\n\r\n"
    ).encode()
    peer.send(ack, UAS)
    assert_events(uas, [CallConfirmed])
    bye = ack.replace(b"ACK sip", b"BYE sip").replace(b"1 ACK", b"2 BYE")
    peer.send(bye, UAS)
    assert peer.codes()[-1] == 200
    assert_events(uas, [CallTerminated])


# -- security --------------------------------------------------------------------------------


def _secured(net: Network) -> tuple[SipEngine, DigestServer]:
    digest = DigestServer(
        realm="solidarites", secret=b"0123456789abcdef0123", users={"trunk": "pw"}
    )
    policy = AccessPolicy(trusted_networks=("127.0.0.0/8",), require_auth_from_untrusted=True)
    engine = net.add_engine(engine_config(access=policy, digest=digest))
    return engine, digest


def test_untrusted_source_is_challenged(net: Network) -> None:
    engine, _digest = _secured(net)
    stranger = net.add_peer(("192.0.2.10", 5060))
    d = new_dialog(("192.0.2.10", 5060), UAS)
    stranger.send(request("INVITE", d, body=SDP_OFFER, content_type="application/sdp"), UAS)
    assert stranger.codes() == [100, 401]
    challenge_resp = stranger.responses()[-1]
    challenge = choose_challenge(challenge_resp.headers.get_all("WWW-Authenticate"))
    assert challenge is not None and challenge.algorithm == "SHA-256"
    assert drain_events(engine) == []
    stranger.send(request("ACK", d, branch="z9hG4bKinv1", to_tag=to_tag_of(challenge_resp)), UAS)
    uri = f"sip:3975@{UAS[0]}:{UAS[1]}"
    auth = build_authorization(
        challenge, DigestCredentials("trunk", "pw"), method="INVITE", uri=uri, nc=1, cnonce="abc"
    )
    d.cseq = 2
    stranger.send(
        request(
            "INVITE",
            d,
            branch="z9hG4bKinv2",
            body=SDP_OFFER,
            content_type="application/sdp",
            extra=[("Authorization", auth)],
        ),
        UAS,
    )
    assert_events(engine, [IncomingCall])
    # Wrong password: challenged again, no call.
    d2 = new_dialog(("192.0.2.10", 5060), UAS)
    bad = build_authorization(
        challenge, DigestCredentials("trunk", "nope"), method="INVITE", uri=uri, nc=2, cnonce="x"
    )
    stranger.inbox.clear()
    stranger.send(request("INVITE", d2, extra=[("Authorization", bad)]), UAS)
    assert stranger.codes() == [100, 401]
    assert drain_events(engine) == []


def test_stale_nonce_gets_stale_challenge(net: Network) -> None:
    engine, digest = _secured(net)
    stranger = net.add_peer(("192.0.2.10", 5060))
    old = choose_challenge([v for _n, v in digest.challenge_headers(0.0)])
    assert old is not None
    uri = f"sip:3975@{UAS[0]}:{UAS[1]}"
    auth = build_authorization(
        old, DigestCredentials("trunk", "pw"), method="INVITE", uri=uri, nc=1, cnonce="c"
    )
    net.now = 1000.0
    stranger.send(
        request("INVITE", new_dialog(("192.0.2.10", 5060), UAS), extra=[("Authorization", auth)]),
        UAS,
    )
    resp = stranger.responses()[-1]
    assert resp.status_code == 401
    fresh = choose_challenge(resp.headers.get_all("WWW-Authenticate"))
    assert fresh is not None and fresh.stale
    assert drain_events(engine) == []


def test_forbidden_source_gets_403(net: Network) -> None:
    policy = AccessPolicy(trusted_networks=("127.0.0.0/8",), require_auth_from_untrusted=False)
    engine = net.add_engine(engine_config(access=policy))
    stranger = net.add_peer(("192.0.2.10", 5060))
    stranger.send(request("INVITE", new_dialog(("192.0.2.10", 5060), UAS)), UAS)
    stranger.send(request("OPTIONS", new_dialog(("192.0.2.10", 5060), UAS)), UAS)
    assert stranger.codes() == [100, 403]
    assert MessageDropped("forbidden") in drain_events(engine, metrics=True)


def test_rate_limited_flood_does_not_stop_trusted_caller(net: Network) -> None:
    policy = AccessPolicy(trusted_networks=("127.0.0.0/8",), require_auth_from_untrusted=True)
    limiter = SourceRateLimiter(
        rate=1.0, burst=5, exempt=lambda host: is_trusted_source(policy, host)
    )
    digest = DigestServer(realm="r", secret=b"0123456789abcdef0123", users={})
    engine = net.add_engine(engine_config(access=policy, digest=digest, rate_limiter=limiter))
    scanner = net.add_peer(("198.51.100.7", 5060))
    trunk = net.add_peer(UAC)
    d = new_dialog(UAC, UAS)
    for i in range(500):
        scanner.send(request("OPTIONS", new_dialog(("198.51.100.7", 5060), UAS)), UAS)
        if i == 250:
            trunk.send(request("INVITE", d, body=SDP_OFFER, content_type="application/sdp"), UAS)
    assert len(scanner.inbox) == 5
    events = drain_events(engine, metrics=True)
    assert sum(1 for e in events if e == MessageDropped("rate_limited")) == 495
    assert [e for e in events if isinstance(e, IncomingCall)][0].call_id == d.call_id


# -- UAC: engine pairs -----------------------------------------------------------------------


def _pair(net: Network) -> tuple[SipEngine, SipEngine]:
    caller = net.add_engine(engine_config(port=5070))
    callee = net.add_engine(engine_config(port=5060))
    return caller, callee


def test_engine_pair_call_and_bye_both_ways(net: Network) -> None:
    caller, callee = _pair(net)
    for who_hangs_up in ("caller", "callee"):
        call_id = caller.invite("sip:3975@127.0.0.1:5060", SDP_OFFER, net.now, from_user="cb")
        net.transfer()
        (incoming,) = assert_events(callee, [IncomingCall])
        assert incoming.call_id == call_id  # type: ignore[union-attr]
        assert incoming.sdp_offer == SDP_OFFER  # type: ignore[union-attr]
        callee.ring(call_id, net.now)
        callee.answer(call_id, SDP_ANSWER, net.now)
        net.transfer()
        assert_events(caller, [OutboundCallProgressed, OutboundCallAnswered])
        assert_events(callee, [CallConfirmed])
        (caller if who_hangs_up == "caller" else callee).hangup(call_id, net.now)
        net.transfer()
        (a,) = assert_events(caller, [CallTerminated])
        (b,) = assert_events(callee, [CallTerminated])
        assert isinstance(a, CallTerminated) and isinstance(b, CallTerminated)
        if who_hangs_up == "caller":
            assert (a.cause, a.side, b.cause, b.side) == (
                "local_hangup",
                "service",
                "bye",
                "caller",
            )
        else:
            assert (a.cause, a.side, b.cause, b.side) == (
                "bye",
                "caller",
                "local_hangup",
                "service",
            )
        net.advance(40)
        assert caller.calls == {} and callee.calls == {}
        assert caller.get_timer() is None and callee.get_timer() is None


def test_engine_pair_with_loss(net: Network) -> None:
    dropped: set[bytes] = set()

    def lose_first_of_each(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        first = data.split(b"\r\n", 1)[0]
        if first not in dropped:
            dropped.add(first)
            return True
        return False

    net.loss = lose_first_of_each
    caller, callee = _pair(net)
    call_id = caller.invite("sip:3975@127.0.0.1:5060", SDP_OFFER, 0, from_user="cb")
    net.advance(1)  # the INVITE is retransmitted by Timer A
    assert_events(callee, [IncomingCall])
    callee.answer(call_id, SDP_ANSWER, net.now)
    net.advance(2)  # the 200 is retransmitted, the lost ACK is regenerated
    assert_events(caller, [OutboundCallAnswered])
    assert_events(callee, [CallConfirmed])
    caller.hangup(call_id, net.now)
    net.advance(2)
    assert_events(caller, [CallTerminated])
    assert_events(callee, [CallTerminated])
    assert len(net.lost) >= 4


def test_engine_pair_cancel(net: Network) -> None:
    caller, callee = _pair(net)
    call_id = caller.invite("sip:3975@127.0.0.1:5060", SDP_OFFER, 0, from_user="cb")
    net.transfer()
    drain_events(callee)
    caller.hangup(call_id, 0)  # 100 Trying already received: CANCEL goes now
    net.transfer()
    assert_events(callee, [CallCancelled, CallTerminated])
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(call_id, 487, "Request Terminated")
    net.advance(40)
    assert caller.get_timer() is None and callee.get_timer() is None


def test_outbound_timeout(net: Network) -> None:
    caller = net.add_engine(engine_config(port=5070))
    call_id = caller.invite("sip:3975@127.0.0.1:5999", SDP_OFFER, 0, from_user="cb")
    net.advance(40)
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(call_id, None, "timeout")
    sent = [t for t, data, _s, _d in net.delivered if data.startswith(b"INVITE")]
    assert sent == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # Timer A doubles without cap


# -- REGISTER --------------------------------------------------------------------------------


def test_register_with_digest_and_refresh(net: Network) -> None:
    registrar_digest = DigestServer(
        realm="pbx", secret=b"registrar-secret-0123", users={"svc": "s3cret"}
    )
    registrar = net.add_peer(("127.0.0.1", 5080))
    engine = net.add_engine(
        engine_config(
            registration=RegistrationConfig(
                registrar_uri="sip:127.0.0.1:5080",
                aor="sip:3975@127.0.0.1",
                username="svc",
                password="s3cret",
                expires=120,
            )
        )
    )

    def answer(req: SipRequest, code: int, extra: list[tuple[str, str]]) -> None:
        lines = [f"SIP/2.0 {code} X"]
        lines += [f"Via: {v}" for v in req.headers.get_all("Via")]
        for name in ("From", "To", "Call-ID", "CSeq"):
            lines.append(f"{name}: {req.headers.get(name)}")
        lines += [f"{k}: {v}" for k, v in extra]
        lines.append("Content-Length: 0")
        registrar.send(("\r\n".join(lines) + "\r\n\r\n").encode(), UAS)

    def serve() -> SipRequest:
        (req,) = registrar.take()
        assert isinstance(req, SipRequest) and req.method == "REGISTER"
        auth = req.headers.get("Authorization")
        if auth is None:
            answer(req, 401, registrar_digest.challenge_headers(net.now))
        else:
            result = registrar_digest.verify(auth, method="REGISTER", now=net.now)
            assert result.ok, result.reason
            contact = f"{req.headers.get('Contact')};expires=60"
            answer(req, 200, [("Contact", contact)])
        return req

    engine.start_registration(0)
    net.transfer()
    first = serve()
    assert first.headers.get("Expires") == "120"
    second = serve()
    assert second.headers.get("Call-ID") == first.headers.get("Call-ID")
    assert second.headers.get("CSeq") == "2 REGISTER"
    assert "algorithm=SHA-256" in (second.headers.get("Authorization") or "")
    (ok,) = assert_events(engine, [RegistrationSucceeded])
    assert ok == RegistrationSucceeded(60)  # the Contact's expires wins
    net.advance(47)
    assert registrar.inbox == []
    net.advance(1.2)  # refresh at 80 % of 60 s (48 s), before its Timer E (48.5 s)
    refresh = serve()
    assert refresh.headers.get("CSeq") == "3 REGISTER"
    assert_events(engine, [RegistrationSucceeded])
    engine.stop_registration(net.now)
    net.transfer()
    (unreg,) = registrar.take()
    assert isinstance(unreg, SipRequest) and unreg.headers.get("Expires") == "0"


def test_register_failure_backs_off(net: Network) -> None:
    registrar = net.add_peer(("127.0.0.1", 5080))
    engine = net.add_engine(
        engine_config(
            registration=RegistrationConfig(
                registrar_uri="sip:127.0.0.1:5080",
                aor="sip:3975@127.0.0.1",
                username="svc",
                password="x",
                retry_min=10,
            )
        )
    )
    engine.start_registration(0)
    net.advance(100)
    times = sorted({round(t) for t, data, _src in registrar.inbox})
    # Timer F (32 s) then back-off 10 s: the second attempt starts at 42 s.
    assert times[0] == 0 and 42 in times
    failures = assert_events(engine, [RegistrationFailed, RegistrationFailed])
    assert failures[0] == RegistrationFailed(None, "timeout")


def test_register_wrong_password_fails_once(net: Network) -> None:
    server = DigestServer(realm="pbx", secret=b"registrar-secret-0123", users={"svc": "right"})
    registrar = net.add_peer(("127.0.0.1", 5080))
    engine = net.add_engine(
        engine_config(
            registration=RegistrationConfig(
                registrar_uri="sip:127.0.0.1:5080",
                aor="sip:3975@127.0.0.1",
                username="svc",
                password="wrong",
            )
        )
    )
    engine.start_registration(0)
    net.transfer()
    for _ in range(2):
        (req,) = registrar.take()
        assert isinstance(req, SipRequest)
        lines = [
            "SIP/2.0 401 Unauthorized",
            *[f"Via: {v}" for v in req.headers.get_all("Via")],
            *[f"{n}: {req.headers.get(n)}" for n in ("From", "To", "Call-ID", "CSeq")],
            *[f"{k}: {v}" for k, v in server.challenge_headers(0)],
            "Content-Length: 0",
        ]
        registrar.send(("\r\n".join(lines) + "\r\n\r\n").encode(), UAS)
    assert registrar.inbox == []  # no third attempt with the same wrong password
    (failed,) = assert_events(engine, [RegistrationFailed])
    assert failed == RegistrationFailed(401, "authentication rejected")


def test_stray_response_dropped(uas: SipEngine, peer: RawPeer) -> None:
    peer.send(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 BYE\r\n\r\n",
        UAS,
    )
    assert peer.inbox == []
    assert MessageDropped("stray_response") in drain_events(uas, metrics=True)


def test_trace_records_first_lines(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    establish(net, uas, peer)
    assert uas.trace is not None
    lines = [(direction, first.split(" ")[0]) for _t, direction, first, _a in uas.trace]
    assert lines[:4] == [("in", "INVITE"), ("out", "SIP/2.0"), ("out", "SIP/2.0"), ("in", "ACK")]


def test_invalid_reject_code(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    d = new_dialog(UAC, UAS)
    invite(peer, d)
    with pytest.raises(ValueError, match="3xx-6xx"):
        uas.reject(d.call_id, 200, 0)


def test_messages_parse_back(net: Network, uas: SipEngine, peer: RawPeer) -> None:
    # Everything the engine sends must be parseable by our own parser.
    d, _ = establish(net, uas, peer)
    uas.hangup(d.call_id, net.now)
    net.advance(40)
    for _t, data, _s, _dst in net.delivered:
        message = parse_message(data)
        assert isinstance(message, SipRequest | SipResponse)
        for via in parse_vias(message.headers):
            assert isinstance(via, Via)


def test_answers_to_malformed_requests_keep_no_state(uas: SipEngine, peer: RawPeer) -> None:
    # Throwaway transactions must not stay scheduled (Timer J) after their single response:
    # a flood of garbage would otherwise keep tens of thousands alive for 32 s each.
    d = new_dialog(UAC, UAS)
    for cseq in range(1, 501):
        raw = request("OPTIONS", d, cseq=cseq).replace(b"Content-Length: 0", b"Content-Length: 9")
        peer.send(raw, UAS)
    assert peer.codes() == [400] * 500
    assert uas.get_timer() is None
