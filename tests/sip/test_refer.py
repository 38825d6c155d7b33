"""Blind transfer: REFER (RFC 3515), its implicit subscription and ``Refer-Sub`` (RFC 4488).

The agent's desk phone presses "transfer": it sends REFER inside its dialog with the service,
which is the outbound leg the service placed (the engine is the UAC) or, less often, an
inbound call (the engine is the UAS). Hand-written peers on the in-memory network of
``tests/sip/pair.py`` stand for the phone, with a controlled clock; every NOTIFY field the
referrer matches on (To/From tags, Call-ID, CSeq, Event, Subscription-State, the sipfrag body)
is checked. ``test_sipp_*`` at the end drive the engine over real UDP against sipp.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from callcenter.sip.engine import CallState, SipEngine
from callcenter.sip.events import (
    CallConfirmed,
    CallTerminated,
    IncomingCall,
    OutboundCallAnswered,
    TransferRequested,
)
from callcenter.sip.headers import CSeq, NameAddress
from callcenter.sip.message import SipRequest, SipResponse
from tests.loopback.service import SIPP_DIR, free_port
from tests.loopback.test_outbound import OutboundStack, SippUas, outbound_stack, sipp_uas
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

SERVICE = ("127.0.0.1", 5070)
PHONE = ("127.0.0.1", 5060)
AGENT_URI = "sip:agent12@127.0.0.1:5060"
PHONE_CONTACT = "<sip:agent12@127.0.0.1:5060>"
PHONE_TAG = "phonetag1"
SIPFRAG = "message/sipfrag;version=2.0"


@pytest.fixture
def net() -> Network:
    return Network()


@pytest.fixture
def service(net: Network) -> SipEngine:
    return net.add_engine(engine_config(port=SERVICE[1]))


@pytest.fixture
def phone(net: Network) -> RawPeer:
    return net.add_peer(PHONE)


def tag_of(value: str | None) -> str | None:
    return NameAddress.parse(value or "").tag


def cseq_of(message: SipRequest | SipResponse) -> CSeq:
    return CSeq.parse(message.headers.get("CSeq") or "")


def respond(peer: RawPeer, req: SipRequest, code: int, to: tuple[str, int] = SERVICE) -> None:
    """The phone's response to a request the engine sent (To tag kept/added as needed)."""
    to_value = req.headers.get("To") or ""
    if tag_of(to_value) is None:
        to_value += f";tag={PHONE_TAG}"
    lines = [f"SIP/2.0 {code} X"]
    lines += [f"Via: {v}" for v in req.headers.get_all("Via")]
    lines += [f"From: {req.headers.get('From')}", f"To: {to_value}"]
    lines += [f"Call-ID: {req.call_id}", f"CSeq: {req.headers.get('CSeq')}"]
    body = b""
    if req.method == "INVITE" and code == 200:
        lines.append(f"Contact: {PHONE_CONTACT}")
        lines.append("Content-Type: application/sdp")
        body = SDP_ANSWER
    lines.append(f"Content-Length: {len(body)}")
    peer.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body, to)


def sent(peer: RawPeer, method: str) -> list[SipRequest]:
    return [r for r in peer.requests() if r.method == method]


def answered(peer: RawPeer) -> list[SipResponse]:
    return peer.responses()


class Phone:
    """The callee side of the engine's outbound dialog: it sends REFER and BYE."""

    def __init__(self, peer: RawPeer, invite: SipRequest) -> None:
        self.peer = peer
        self.invite = invite
        self.cseq = 100

    def send(
        self,
        method: str,
        *,
        extra: Iterable[tuple[str, str]] = (),
        cseq: int | None = None,
        to_tag: str | None = None,
        branch: str | None = None,
    ) -> None:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        inv = self.invite
        our = NameAddress.parse(inv.headers.get("From") or "")
        to = our if to_tag is None else our.with_tag(to_tag)
        lines = [
            f"{method} {NameAddress.parse(inv.headers.get('Contact') or '').uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {PHONE[0]}:{PHONE[1]};branch="
            f"{branch or 'z9hG4bK' + secrets.token_hex(6)};rport",
            "Max-Forwards: 70",
            f"From: <{AGENT_URI}>;tag={PHONE_TAG}",
            f"To: {to}",
            f"Call-ID: {inv.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: {PHONE_CONTACT}",
        ]
        lines += [f"{k}: {v}" for k, v in extra]
        lines.append("Content-Length: 0")
        self.peer.send(("\r\n".join(lines) + "\r\n\r\n").encode(), SERVICE)


def outbound_call(net: Network, service: SipEngine, peer: RawPeer) -> tuple[str, Phone]:
    """The engine calls the agent's phone, which answers; the dialog is confirmed."""
    call_id = service.invite(AGENT_URI, SDP_OFFER, net.now, from_user="3975")
    net.transfer()
    (inv,) = sent(peer, "INVITE")
    respond(peer, inv, 200)
    assert_events(service, [OutboundCallAnswered])
    assert len(sent(peer, "ACK")) == 1
    peer.inbox.clear()
    return call_id, Phone(peer, inv)


def refer_headers(target: str = "<sip:3975*2@127.0.0.1>") -> list[tuple[str, str]]:
    return [("Refer-To", target), ("Referred-By", f"<{AGENT_URI}>")]


# -- the outbound leg (the agent's phone transfers) -------------------------------------------


def test_refer_in_outbound_dialog_202_then_notify_100_and_200(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers("<sip:0612345678@127.0.0.1;user=phone?X-Foo=bar>"))
    accepted, *_ = answered(phone)
    assert accepted.status_code == 202
    assert accepted.reason == "Accepted"
    assert tag_of(accepted.headers.get("To")) == tag_of(ph.invite.headers.get("From"))
    assert accepted.headers.get("Contact") == "<sip:callcenter@127.0.0.1:5070>"
    assert accepted.headers.get("Refer-Sub") is None
    (event,) = assert_events(service, [TransferRequested])
    assert isinstance(event, TransferRequested)
    assert event.call_id == call_id
    # Embedded URI headers are never applied to the new call; URI parameters stay.
    assert event.refer_to == "sip:0612345678@127.0.0.1;user=phone"
    assert event.target_user == "0612345678"
    assert event.referred_by == AGENT_URI
    assert event.refer_id == 101
    assert event.subscription is True
    assert event.headers.get("Refer-To") is not None
    assert "0612345678" not in repr(event)

    # RFC 3515 section 2.4.4: the immediate NOTIFY, in the REFER's dialog.
    (notify,) = sent(phone, "NOTIFY")
    invite_cseq = cseq_of(ph.invite).number
    assert notify.uri == AGENT_URI  # the phone's Contact, the dialog's remote target
    assert cseq_of(notify) == CSeq(invite_cseq + 1, "NOTIFY")
    assert notify.call_id == call_id
    assert notify.headers.get("From") == ph.invite.headers.get("From")  # our URI and tag
    assert tag_of(notify.headers.get("To")) == PHONE_TAG
    assert NameAddress.parse(notify.headers.get("To") or "").uri == AGENT_URI
    assert notify.headers.get("Event") == "refer"
    assert notify.headers.get("Subscription-State") == "active;expires=120"
    assert notify.headers.get("Content-Type") == SIPFRAG
    assert notify.headers.get("Contact") == "<sip:callcenter@127.0.0.1:5070>"
    assert notify.body == b"SIP/2.0 100 Trying\r\n"
    respond(phone, notify, 200)
    phone.inbox.clear()

    # The transfer target answered 30 s later: the final NOTIFY ends the subscription.
    net.advance(30)
    assert service.notify_transfer(call_id, 200, None, net.now) is True
    net.transfer()
    (final,) = sent(phone, "NOTIFY")
    assert cseq_of(final) == CSeq(invite_cseq + 2, "NOTIFY")
    assert final.headers.get("Event") == "refer"
    assert final.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert final.body == b"SIP/2.0 200 OK\r\n"
    respond(phone, final, 200)
    assert service.notify_transfer(call_id, 200, None, net.now) is False  # it is over
    assert drain_events(service) == []
    assert service.call_state(call_id) is CallState.CONFIRMED

    # Phones hang up after the final NOTIFY (RFC 5589 section 6.1).
    phone.inbox.clear()
    ph.send("BYE")
    assert [r.status_code for r in answered(phone)] == [200]
    (ended,) = assert_events(service, [CallTerminated])
    assert ended == CallTerminated(call_id, "bye", "caller")
    net.advance(60)
    assert sent(phone, "NOTIFY") == [] and service.get_timer() is None


def test_service_hangs_up_the_referrer_after_the_final_notify(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers())
    (notify,) = sent(phone, "NOTIFY")
    respond(phone, notify, 200)
    phone.inbox.clear()
    service.notify_transfer(call_id, 200, "OK", net.now)
    service.hangup(call_id, net.now)
    net.transfer()
    final, bye = phone.requests()
    assert (final.method, bye.method) == ("NOTIFY", "BYE")
    assert cseq_of(bye).number == cseq_of(final).number + 1
    respond(phone, final, 200)
    respond(phone, bye, 200)
    assert_events(service, [TransferRequested, CallTerminated])


def test_tel_uri_and_compact_forms(net: Network, service: SipEngine, phone: RawPeer) -> None:
    _call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=[("r", "<tel:+33612345678;phone-context=+33>"), ("b", "<sip:x@h>")])
    assert answered(phone)[0].status_code == 202
    (event,) = assert_events(service, [TransferRequested])
    assert isinstance(event, TransferRequested)
    assert event.refer_to == "tel:+33612345678;phone-context=+33"
    assert event.target_user == "+33612345678"
    assert event.referred_by == "sip:x@h"


def test_addr_spec_refer_to_and_no_referred_by(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    _call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=[("Refer-To", "sip:queue-apa@127.0.0.1"), ("Referred-By", "<bad")])
    assert answered(phone)[0].status_code == 202
    (event,) = assert_events(service, [TransferRequested])
    assert isinstance(event, TransferRequested)
    assert (event.refer_to, event.target_user) == ("sip:queue-apa@127.0.0.1", "queue-apa")
    assert event.referred_by is None


@pytest.mark.parametrize(
    ("extra", "code", "warning"),
    [
        ([], 400, "exactly one Refer-To"),
        ([("Refer-To", "<sip:a@h>"), ("Refer-To", "<sip:b@h>")], 400, "exactly one Refer-To"),
        ([("Refer-To", "<sip:a@h>, <sip:b@h>")], 400, "exactly one Refer-To"),
        ([("r", "<sip:a@h>"), ("Refer-To", "<sip:b@h>")], 400, "exactly one Refer-To"),
        ([("Refer-To", "<sip:a@h")], 400, "malformed Refer-To"),
        ([("Refer-To", "")], 400, "exactly one Refer-To"),
        (
            [("Refer-To", "<sip:b@h?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2>")],
            403,
            "attended transfer (Replaces) is not supported",
        ),
        ([("Refer-To", "<sip:b@h?replaces=x&Require=replaces>")], 403, "Replaces"),
        ([("Refer-To", "<sip:b@h;method=BYE>")], 403, "only INVITE references"),
        ([("Refer-To", "<http://example.org/>")], 403, "sip, sips or tel URI"),
        ([("Refer-To", "<mailto:a@example.org>")], 403, "sip, sips or tel URI"),
    ],
)
def test_refer_errors(
    net: Network,
    service: SipEngine,
    phone: RawPeer,
    extra: list[tuple[str, str]],
    code: int,
    warning: str,
) -> None:
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=extra)
    (resp,) = answered(phone)
    assert resp.status_code == code
    assert warning in (resp.headers.get("Warning") or "")
    assert tag_of(resp.headers.get("To")) == tag_of(ph.invite.headers.get("From"))
    assert sent(phone, "NOTIFY") == []
    assert drain_events(service) == []
    assert service.call_state(call_id) is CallState.CONFIRMED  # the call goes on
    assert service.notify_transfer(call_id, 200, None, net.now) is False


def test_explicit_method_invite_is_accepted(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    _call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=[("Refer-To", "<sip:b@h;method=INVITE>")])
    assert answered(phone)[0].status_code == 202


def test_refer_on_an_unknown_dialog_is_481(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    _call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers(), to_tag="not-our-tag")
    assert [r.status_code for r in answered(phone)] == [481]
    assert drain_events(service) == []


def test_refer_outside_a_dialog_is_403(net: Network, service: SipEngine, phone: RawPeer) -> None:
    d = new_dialog(PHONE, SERVICE)
    phone.send(request("REFER", d, extra=refer_headers()), SERVICE)
    (resp,) = answered(phone)
    assert resp.status_code == 403
    assert "inside a call only" in (resp.headers.get("Warning") or "")
    assert tag_of(resp.headers.get("To")) is not None
    assert drain_events(service) == []


def test_refer_sub_false_no_implicit_subscription(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    call_id, ph = outbound_call(net, service, phone)
    # RFC 4488 section 4: Require: norefersub is understood (no 420).
    ph.send("REFER", extra=[*refer_headers(), ("Refer-Sub", "false"), ("Require", "norefersub")])
    (resp,) = answered(phone)
    assert resp.status_code == 202
    assert resp.headers.get("Refer-Sub") == "false"
    (event,) = assert_events(service, [TransferRequested])
    assert isinstance(event, TransferRequested) and event.subscription is False
    net.advance(300)
    assert sent(phone, "NOTIFY") == []
    assert service.notify_transfer(call_id, 200, None, net.now) is False
    assert sent(phone, "NOTIFY") == []


def test_refer_sub_true_keeps_the_subscription(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    _call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=[*refer_headers(), ("Refer-Sub", "true")])
    assert answered(phone)[0].headers.get("Refer-Sub") is None
    assert len(sent(phone, "NOTIFY")) == 1


def test_retransmitted_refer_gets_the_same_202_once(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    _call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers(), cseq=7, branch="z9hG4bKrefer1")
    ph.send("REFER", extra=refer_headers(), cseq=7, branch="z9hG4bKrefer1")
    assert [r.status_code for r in answered(phone)] == [202, 202]
    assert len(sent(phone, "NOTIFY")) == 1
    assert_events(service, [TransferRequested])


def test_only_one_notify_in_flight_and_the_latest_state_wins(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers())
    (trying,) = sent(phone, "NOTIFY")
    phone.inbox.clear()
    # RFC 6665 section 4.2.2: nothing new before the first NOTIFY is answered...
    assert service.notify_transfer(call_id, 180, "Ringing", net.now) is True
    assert service.notify_transfer(call_id, 486, None, net.now) is True
    net.transfer()
    assert sent(phone, "NOTIFY") == []
    assert service.notify_transfer(call_id, 200, None, net.now) is False  # final already queued
    respond(phone, trying, 200)
    # ...then only the latest state goes (the 180 was superseded).
    (final,) = sent(phone, "NOTIFY")
    assert final.body == b"SIP/2.0 486 Busy Here\r\n"
    assert final.headers.get("Subscription-State") == "terminated;reason=noresource"
    assert cseq_of(final).number == cseq_of(trying).number + 1


def test_provisional_report_keeps_the_subscription_active(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers())
    respond(phone, sent(phone, "NOTIFY")[0], 200)
    phone.inbox.clear()
    net.advance(20.2)
    service.notify_transfer(call_id, 180, "Ringing", net.now)
    net.transfer()
    (ringing,) = sent(phone, "NOTIFY")
    assert ringing.headers.get("Subscription-State") == "active;expires=100"
    assert ringing.body == b"SIP/2.0 180 Ringing\r\n"
    respond(phone, ringing, 200)
    phone.inbox.clear()
    # final=True on a provisional status ends it too (e.g. the application gives up).
    service.notify_transfer(call_id, 100, "Trying", net.now, final=True)
    net.transfer()
    (last,) = sent(phone, "NOTIFY")
    assert last.headers.get("Subscription-State") == "terminated;reason=noresource"


def test_481_to_notify_ends_the_subscription_quietly(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers())
    respond(phone, sent(phone, "NOTIFY")[0], 481)
    assert_events(service, [TransferRequested])
    assert service.call_state(call_id) is CallState.CONFIRMED
    assert service.notify_transfer(call_id, 200, None, net.now) is False
    net.advance(300)
    assert len(sent(phone, "NOTIFY")) == 1  # no retry, no timeout NOTIFY


def test_unanswered_notify_times_out_quietly(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers())
    net.advance(40)  # Timer F = 64*T1 = 32 s
    notifies = sent(phone, "NOTIFY")
    assert len(notifies) > 3 and len({n.headers.get("Via") for n in notifies}) == 1
    assert service.call_state(call_id) is CallState.CONFIRMED
    assert service.notify_transfer(call_id, 200, None, net.now) is False
    assert_events(service, [TransferRequested])


def test_subscription_expires_with_reason_timeout(net: Network, phone: RawPeer) -> None:
    service = net.add_engine(engine_config(port=SERVICE[1], refer_expires=10))
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers())
    (first,) = sent(phone, "NOTIFY")
    assert first.headers.get("Subscription-State") == "active;expires=10"
    respond(phone, first, 200)
    phone.inbox.clear()
    net.advance(9.9)
    assert sent(phone, "NOTIFY") == []
    net.advance(0.2)
    (last,) = sent(phone, "NOTIFY")
    # RFC 6665 section 4.1.3: expiry says reason=timeout, with the last known state.
    assert last.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert last.body == b"SIP/2.0 100 Trying\r\n"
    respond(phone, last, 200)
    assert service.notify_transfer(call_id, 200, None, net.now) is False


def test_subscription_outlives_the_call(net: Network, service: SipEngine, phone: RawPeer) -> None:
    # The phone hangs up right after the 202 (some do): the final NOTIFY still goes out in the
    # dialog (RFC 5057 section 4: the BYE ends the invite usage only), and its 481 is quiet.
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers())
    respond(phone, sent(phone, "NOTIFY")[0], 200)
    ph.send("BYE")
    assert_events(service, [TransferRequested, CallTerminated])
    phone.inbox.clear()
    assert service.notify_transfer(call_id, 503, None, net.now) is True
    net.transfer()
    (final,) = sent(phone, "NOTIFY")
    assert final.body == b"SIP/2.0 503 Service Unavailable\r\n"
    respond(phone, final, 481)
    assert drain_events(service) == []
    assert service.notify_transfer(call_id, 200, None, net.now) is False
    phone.inbox.clear()
    net.advance(300)
    assert phone.inbox == []  # no retransmission, no expiry NOTIFY


def test_second_refer_notifies_with_an_event_id(
    net: Network, service: SipEngine, phone: RawPeer
) -> None:
    call_id, ph = outbound_call(net, service, phone)
    ph.send("REFER", extra=refer_headers("<sip:a@127.0.0.1>"))
    respond(phone, sent(phone, "NOTIFY")[0], 200)
    phone.inbox.clear()
    ph.send("REFER", extra=refer_headers("<sip:b@127.0.0.1>"))
    (second,) = sent(phone, "NOTIFY")
    # RFC 3515 section 2.4.6: the REFER's CSeq number in the Event id.
    assert second.headers.get("Event") == "refer;id=102"
    first_event, second_event = assert_events(service, [TransferRequested, TransferRequested])
    assert isinstance(first_event, TransferRequested)
    assert isinstance(second_event, TransferRequested)
    assert (first_event.refer_id, second_event.refer_id) == (101, 102)
    respond(phone, second, 200)
    phone.inbox.clear()
    service.notify_transfer(call_id, 200, None, net.now, refer_id=101)
    net.transfer()
    (final,) = sent(phone, "NOTIFY")
    assert final.headers.get("Event") == "refer"
    respond(phone, final, 200)
    phone.inbox.clear()
    service.notify_transfer(call_id, 603, "Declined", net.now)  # the latest: 102
    net.transfer()
    (other,) = sent(phone, "NOTIFY")
    assert other.headers.get("Event") == "refer;id=102"
    assert other.body == b"SIP/2.0 603 Declined\r\n"


def test_too_many_transfers_in_progress(net: Network, service: SipEngine, phone: RawPeer) -> None:
    _call_id, ph = outbound_call(net, service, phone)
    for _ in range(5):
        ph.send("REFER", extra=refer_headers())
    assert [r.status_code for r in answered(phone)] == [202] * 4 + [403]


def test_notify_transfer_refuses_bad_arguments(service: SipEngine) -> None:
    with pytest.raises(ValueError, match="1xx-6xx"):
        service.notify_transfer("x", 99, None, 0)
    with pytest.raises(ValueError, match="1xx-6xx"):
        service.notify_transfer("x", 700, None, 0)
    with pytest.raises(ValueError, match="line break"):
        service.notify_transfer("x", 200, "OK\r\nEvil: 1", 0)
    assert service.notify_transfer("unknown", 200, None, 0) is False


def test_allow_lists_refer(net: Network, service: SipEngine, phone: RawPeer) -> None:
    service.invite(AGENT_URI, SDP_OFFER, net.now, from_user="3975")
    net.transfer()
    (inv,) = sent(phone, "INVITE")
    assert inv.headers.get("Allow") == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER"
    assert inv.headers.get("Supported") == "norefersub"


# -- the inbound leg (the engine is the UAS) --------------------------------------------------


def inbound_call(net: Network, service: SipEngine, caller: RawPeer) -> RawDialog:
    d = new_dialog(PHONE, SERVICE)
    caller.send(request("INVITE", d, body=SDP_OFFER, content_type="application/sdp"), SERVICE)
    assert_events(service, [IncomingCall])
    service.answer(d.call_id, SDP_ANSWER, net.now)
    net.transfer()
    ok = caller.responses()[-1]
    assert ok.status_code == 200
    d.to_tag = tag_of(ok.headers.get("To"))
    caller.send(request("ACK", d, to_tag=d.to_tag), SERVICE)
    assert_events(service, [CallConfirmed])
    caller.inbox.clear()
    return d


def test_refer_in_inbound_dialog(net: Network, service: SipEngine, phone: RawPeer) -> None:
    d = inbound_call(net, service, phone)
    d.cseq = 2
    phone.send(request("REFER", d, to_tag=d.to_tag, extra=refer_headers()), SERVICE)
    (resp,) = answered(phone)
    assert resp.status_code == 202 and tag_of(resp.headers.get("To")) == d.to_tag
    (event,) = assert_events(service, [TransferRequested])
    assert isinstance(event, TransferRequested)
    assert (event.call_id, event.refer_id, event.target_user) == (d.call_id, 2, "3975*2")
    (notify,) = sent(phone, "NOTIFY")
    # The UAS side: From is our To (with our tag), To is the caller's From (with its tag).
    assert tag_of(notify.headers.get("From")) == d.to_tag
    assert tag_of(notify.headers.get("To")) == d.from_tag
    assert notify.uri == "sip:caller@127.0.0.1:5060"  # the caller's Contact
    assert notify.headers.get("Subscription-State") == "active;expires=120"
    first = cseq_of(notify).number
    respond(phone, notify, 200)
    phone.inbox.clear()
    service.notify_transfer(d.call_id, 200, None, net.now)
    net.transfer()
    (final,) = sent(phone, "NOTIFY")
    assert cseq_of(final) == CSeq(first + 1, "NOTIFY")
    assert final.headers.get("Subscription-State") == "terminated;reason=noresource"
    respond(phone, final, 200)
    d.cseq = 3
    phone.send(request("BYE", d, to_tag=d.to_tag), SERVICE)
    assert_events(service, [CallTerminated])


def test_refer_before_answer_is_refused(net: Network, service: SipEngine, phone: RawPeer) -> None:
    d = new_dialog(PHONE, SERVICE)
    phone.send(request("INVITE", d, body=SDP_OFFER, content_type="application/sdp"), SERVICE)
    assert_events(service, [IncomingCall])
    service.ring(d.call_id, net.now)
    net.transfer()
    to_tag = tag_of(phone.responses()[-1].headers.get("To"))
    phone.inbox.clear()
    d.cseq = 2
    phone.send(request("REFER", d, to_tag=to_tag, extra=refer_headers()), SERVICE)
    (resp,) = answered(phone)
    assert resp.status_code == 403
    assert "no established call" in (resp.headers.get("Warning") or "")
    assert drain_events(service) == []
    assert service.call_state(d.call_id) is CallState.INCOMING


# -- sipp, over real UDP ----------------------------------------------------------------------
# The engine behind the real asyncio UDP adapter (tests/loopback/test_outbound.py's stack); a
# few lines stand for the application: answer the inbound call, and report the transfer as
# answered 300 ms after TransferRequested (where the service would have dialled the target).

sipp_marks = pytest.mark.skipif(
    shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed"
)


async def _transfer_flow(stack: OutboundStack, *, answer: bool) -> TransferRequested:
    """Play the application's part until the final NOTIFY is sent; return the transfer."""
    if answer:
        incoming = await stack.expect(IncomingCall)
        stack.command(lambda now: stack.engine.answer(incoming.call_id, SDP_ANSWER, now))
        await stack.expect(CallConfirmed)
    transfer = await stack.expect(TransferRequested)
    await asyncio.sleep(0.3)
    sent_final = stack.command(
        lambda now: stack.engine.notify_transfer(
            transfer.call_id, 200, "OK", now, refer_id=transfer.refer_id
        )
    )
    assert sent_final
    ended = await stack.expect(CallTerminated)
    assert ended == CallTerminated(transfer.call_id, "bye", "caller")
    return transfer


def _notify_checks(notifies: list[str]) -> None:
    trying, final = notifies
    for notify in notifies:
        assert re.search(r"^Event: refer\r?$", notify, re.M), notify
        assert re.search(r"^Content-Type: message/sipfrag;version=2.0\r?$", notify, re.M), notify
    assert re.search(r"^Subscription-State: active;expires=\d+", trying, re.M), trying
    assert "SIP/2.0 100 Trying" in trying
    assert re.search(r"^Subscription-State: terminated;reason=noresource", final, re.M), final
    assert "SIP/2.0 200 OK" in final
    first = int(re.search(r"^CSeq: (\d+) NOTIFY", trying, re.M).group(1))  # type: ignore[union-attr]
    second = int(re.search(r"^CSeq: (\d+) NOTIFY", final, re.M).group(1))  # type: ignore[union-attr]
    assert second == first + 1


@sipp_marks
@pytest.mark.loopback
@pytest.mark.timeout(60)
async def test_sipp_agent_phone_transfers_our_outbound_leg(tmp_path: Path) -> None:
    """The agent's case: our INVITE is answered by sipp, which then sends REFER and BYE."""
    async with (
        outbound_stack() as stack,
        sipp_uas("uas_refer.xml", tmp_path) as uas,
    ):
        call_id = stack.command(
            lambda now: stack.engine.invite(
                f"sip:agent12@{uas.uri_host}", SDP_OFFER, now, from_user="3975"
            )
        )
        await stack.expect(OutboundCallAnswered)
        transfer = await _transfer_flow(stack, answer=False)
        code = await uas.finished()
        assert code == 0, uas.describe()
    assert transfer.call_id == call_id
    assert transfer.target_user == "3975*2"
    assert transfer.refer_to.startswith("sip:3975*2@127.0.0.1")
    assert transfer.referred_by is not None and transfer.referred_by.startswith("sip:agent@")
    _notify_checks(uas.received("NOTIFY"))


@sipp_marks
@pytest.mark.loopback
@pytest.mark.timeout(60)
async def test_sipp_caller_transfers_an_inbound_call(tmp_path: Path) -> None:
    """A sipp UAC calls the engine, sends REFER in the dialog, answers both NOTIFYs, hangs up."""
    async with outbound_stack() as stack:
        target = f"127.0.0.1:{stack.engine.config.local_port}"
        async with sipp_uac("uac_refer.xml", target, tmp_path) as uac:
            transfer = await _transfer_flow(stack, answer=True)
            code = await uac.finished()
            assert code == 0, uac.describe()
    assert transfer.target_user == "3975*2"
    _notify_checks(uac.received("NOTIFY"))


@contextlib.asynccontextmanager
async def sipp_uac(scenario: str, target: str, workdir: Path) -> AsyncIterator[SippUas]:
    """A sipp UAC placing one call with ``tests/sipp/<scenario>`` to ``target``."""
    port = free_port()
    cmd = [
        "sipp",
        target,
        "-sf",
        str(SIPP_DIR / scenario),
        "-s",
        "3975",
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        "1",
        "-l",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
        "-timeout_error",
        "-trace_msg",
        "-message_file",
        str(workdir / "messages.log"),
        "-trace_err",
        "-error_file",
        str(workdir / "errors.log"),
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield SippUas(proc=proc, port=port, workdir=workdir)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
