"""The engine as a UAC for agent legs and callbacks: challenges, ringing, CANCEL, re-INVITE, routes.

Engine pairs and hand-written peers on the in-memory network of ``tests/sip/pair.py`` with a
controlled clock. The hand-written peers stand for what an engine UAS cannot do (a proxy's 407,
a 2xx crossing a CANCEL, a repeated challenge, Record-Route).
"""

from __future__ import annotations

import pytest

from callcenter.sip.access import AccessPolicy
from callcenter.sip.auth import DigestCredentials, DigestServer
from callcenter.sip.engine import CallState, RegistrationConfig, SipEngine
from callcenter.sip.events import (
    CallCancelled,
    CallConfirmed,
    CallTerminated,
    IncomingCall,
    OutboundCallAnswered,
    OutboundCallFailed,
    OutboundCallProgressed,
    OutboundCallRinging,
    ReInviteAnswered,
    ReInviteConfirmed,
    ReInviteFailed,
    ReInviteReceived,
    SipEvent,
)
from callcenter.sip.headers import CSeq, NameAddress, parse_vias
from callcenter.sip.message import SipRequest, SipResponse
from callcenter.sip.parser import parse_message
from tests.sip.pair import (
    SDP_ANSWER,
    SDP_OFFER,
    Network,
    RawPeer,
    assert_events,
    drain_events,
    engine_config,
)

CALLER = ("127.0.0.1", 5070)
CALLEE = ("127.0.0.1", 5060)
PROXY = ("127.0.0.1", 5080)
TARGET = "sip:agent12@127.0.0.1:5060"
HOLD = SDP_OFFER.replace(b"m=audio", b"a=sendonly\r\nm=audio")
HOLD_ANSWER = SDP_ANSWER.replace(b"m=audio", b"a=recvonly\r\nm=audio")
SECRET = b"uas-digest-secret-0123456789"


@pytest.fixture
def net() -> Network:
    return Network()


@pytest.fixture
def caller(net: Network) -> SipEngine:
    return net.add_engine(engine_config(port=CALLER[1]))


def to_tag_of(message: SipRequest | SipResponse) -> str | None:
    return NameAddress.parse(message.headers.get("To") or "").tag


def cseq_of(message: SipRequest | SipResponse) -> CSeq:
    return CSeq.parse(message.headers.get("CSeq") or "")


def branch_of(message: SipRequest | SipResponse) -> str | None:
    return parse_vias(message.headers)[0].branch


def reply(
    peer: RawPeer,
    req: SipRequest,
    code: int,
    *,
    to_tag: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    reason: str = "X",
    contact: str | None = None,
) -> None:
    """A hand-written response to ``req``, sent back to the caller engine."""
    lines = [f"SIP/2.0 {code} {reason}"]
    lines += [f"Via: {v}" for v in req.headers.get_all("Via")]
    to = req.headers.get("To") or ""
    if to_tag is not None and ";tag=" not in to:
        to += f";tag={to_tag}"
    lines += [f"From: {req.headers.get('From')}", f"To: {to}"]
    lines += [f"Call-ID: {req.call_id}", f"CSeq: {req.headers.get('CSeq')}"]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    lines += [f"{k}: {v}" for k, v in headers or []]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    peer.send(("\r\n".join(lines) + "\r\n\r\n").encode() + body, CALLER)


def requests(peer: RawPeer, method: str) -> list[SipRequest]:
    return [r for r in peer.requests() if r.method == method]


def events_within(net: Network, engine: SipEngine, seconds: float) -> list[SipEvent]:
    """Advance the clock in 10 ms steps until ``engine`` has events; fail after ``seconds``."""
    end = net.now + seconds
    while net.now < end:
        if events := drain_events(engine):
            return events
        net.advance(0.01)
    raise AssertionError(f"no event within {seconds} s")


def one_request(peer: RawPeer, method: str) -> SipRequest:
    found = requests(peer, method)
    assert len(found) == 1, [f"{r.method} {cseq_of(r)}" for r in peer.requests()]
    return found[0]


# -- caller ID, route, headers ----------------------------------------------------------------


def test_invite_presents_the_service_number_and_asserted_identity(
    net: Network, caller: SipEngine
) -> None:
    callee = net.add_peer(CALLEE)
    call_id = caller.invite(
        "sip:0612345678@127.0.0.1:5060",
        SDP_OFFER,
        0,
        from_user="3975",
        from_display="Département - Solidarités",
        from_host="trunk.example.org",
        asserted_identity="<sip:+33500003975@trunk.example.org>",
        headers=[("Alert-Info", "<http://127.0.0.1/ring>;info=alert-autoanswer")],
    )
    net.transfer()
    inv = one_request(callee, "INVITE")
    assert inv.call_id == call_id
    from_na = NameAddress.parse(inv.headers.get("From") or "")
    assert from_na.display_name == "Département - Solidarités"
    assert from_na.uri == "sip:3975@trunk.example.org"
    assert from_na.tag is not None
    assert inv.headers.get("To") == "<sip:0612345678@127.0.0.1:5060>"
    assert inv.headers.get("P-Asserted-Identity") == "<sip:+33500003975@trunk.example.org>"
    assert inv.headers.get("Alert-Info") == "<http://127.0.0.1/ring>;info=alert-autoanswer"
    assert inv.headers.get("Contact") == "<sip:callcenter@127.0.0.1:5070>"
    assert inv.headers.get("Route") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"from_user": "a b"}, "from_user/from_host do not make a valid SIP URI"),
        ({"from_user": "3975", "headers": [("Call-ID", "x")]}, "header 'Call-ID' is built"),
        ({"from_user": "3975", "headers": [("X-A", "1\r\nVia: x")]}, "line break"),
        ({"from_user": "3975", "asserted_identity": "<sip:a"}, "asserted_identity is not"),
        ({"from_user": "3975", "from_display": "a\r\nb"}, "from_display contains a line"),
    ],
)
def test_invite_refuses_bad_arguments(
    caller: SipEngine, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        caller.invite(TARGET, SDP_OFFER, 0, **kwargs)  # type: ignore[arg-type]
    assert caller.calls == {}


def test_invite_without_ip_literal_needs_a_destination(caller: SipEngine) -> None:
    with pytest.raises(ValueError, match="pass destination="):
        caller.invite("sip:agent@pbx.example.org", SDP_OFFER, 0, from_user="3975")


def test_preloaded_route_goes_to_the_outbound_proxy(net: Network, caller: SipEngine) -> None:
    proxy = net.add_peer(PROXY)
    caller.invite(
        "sip:agent@pbx.example.org",
        SDP_OFFER,
        0,
        from_user="3975",
        route=["<sip:127.0.0.1:5080;lr>"],
    )
    net.transfer()
    inv = one_request(proxy, "INVITE")
    assert inv.uri == "sip:agent@pbx.example.org"
    assert inv.headers.get_all("Route") == ["<sip:127.0.0.1:5080;lr>"]


def test_record_route_set_carries_ack_and_bye(net: Network, caller: SipEngine) -> None:
    # RFC 3261 section 12.1.2: the UAC's route set is the 2xx's Record-Route reversed; ACK and
    # BYE go to its first element (our proxy) with Route headers in that order.
    proxy = net.add_peer(PROXY)
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975", destination=PROXY)
    net.transfer()
    inv = one_request(proxy, "INVITE")
    assert inv.uri == TARGET and inv.headers.get("Route") is None
    proxy.inbox.clear()
    record_route = [("Record-Route", "<sip:127.0.0.1:5081;lr>, <sip:127.0.0.1:5080;lr;ftag=x>")]
    reply(
        proxy,
        inv,
        200,
        to_tag="agent1",
        headers=record_route,
        body=SDP_ANSWER,
        contact="<sip:agent12@127.0.0.1:5090>",
    )
    assert_events(caller, [OutboundCallAnswered])
    ack = one_request(proxy, "ACK")
    assert ack.uri == "sip:agent12@127.0.0.1:5090"
    assert ack.headers.get_all("Route") == [
        "<sip:127.0.0.1:5080;lr;ftag=x>",
        "<sip:127.0.0.1:5081;lr>",
    ]
    assert cseq_of(ack) == CSeq(1, "ACK")
    assert to_tag_of(ack) == "agent1"
    proxy.inbox.clear()
    caller.hangup(call_id, net.now)
    net.transfer()
    bye = one_request(proxy, "BYE")
    assert bye.uri == "sip:agent12@127.0.0.1:5090"
    assert bye.headers.get_all("Route") == ack.headers.get_all("Route")
    assert cseq_of(bye) == CSeq(2, "BYE")
    reply(proxy, bye, 200)
    (end,) = assert_events(caller, [CallTerminated])
    assert end == CallTerminated(call_id, "local_hangup", "service")
    # Nothing went straight to the agent's Contact.
    assert all(dst == PROXY for _t, _d, src, dst in net.delivered if src == CALLER)


# -- provisional responses ----------------------------------------------------------------------


def test_ringing_and_early_media_are_reported(net: Network, caller: SipEngine) -> None:
    callee = net.add_peer(CALLEE)
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    inv = one_request(callee, "INVITE")
    reply(callee, inv, 100)
    assert drain_events(caller) == []  # 100 Trying is hop-by-hop: no event
    reply(callee, inv, 180, to_tag="t1")
    reply(callee, inv, 183, to_tag="t1", body=SDP_ANSWER)
    ringing, progress = assert_events(caller, [OutboundCallRinging, OutboundCallRinging])
    assert ringing == OutboundCallRinging(call_id, 180, None)
    assert progress == OutboundCallRinging(call_id, 183, SDP_ANSWER)
    assert OutboundCallProgressed is OutboundCallRinging  # the former name still works
    # Ringing has no timer of the engine's: no INVITE retransmission, no Timer B.
    net.advance(120)
    assert caller.call_state(call_id) is CallState.CALLING
    assert len(requests(callee, "INVITE")) == 1


# -- challenges -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_401_from_an_engine_uas_is_answered(net: Network, algorithm: str) -> None:
    digest = DigestServer(
        realm="agents", secret=SECRET, users={"svc": "pw"}, algorithms=[algorithm]
    )
    # 127.0.0.1 is not trusted here, so the callee challenges every INVITE (RFC 3261 22.2).
    policy = AccessPolicy(trusted_networks=("10.0.0.0/8",), require_auth_from_untrusted=True)
    callee = net.add_engine(engine_config(access=policy, digest=digest))
    caller = net.add_engine(engine_config(port=CALLER[1]))
    call_id = caller.invite(
        TARGET,
        SDP_OFFER,
        0,
        from_user="3975",
        credentials=DigestCredentials("svc", "pw"),
    )
    net.transfer()
    (incoming,) = assert_events(callee, [IncomingCall])
    assert incoming.call_id == call_id  # type: ignore[union-attr]
    invites = [d for _t, d, src, _dst in net.delivered if src == CALLER]
    first_lines = [d.split(b"\r\n", 1)[0] for d in invites]
    assert first_lines == [
        f"INVITE {TARGET} SIP/2.0".encode(),
        f"ACK {TARGET} SIP/2.0".encode(),  # the transaction's ACK for the 401 (17.1.1.3)
        f"INVITE {TARGET} SIP/2.0".encode(),
    ]
    assert f"algorithm={algorithm}".encode() in invites[2]
    callee.answer(call_id, SDP_ANSWER, net.now)
    net.transfer()
    assert_events(caller, [OutboundCallAnswered])
    assert_events(callee, [CallConfirmed])
    assert caller.calls == {call_id: CallState.CONFIRMED}


@pytest.mark.parametrize("code", [401, 407])
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_challenge_answered_with_the_right_header(
    net: Network, caller: SipEngine, code: int, algorithm: str
) -> None:
    server = DigestServer(
        realm="trunk", secret=SECRET, users={"svc": "s3cret"}, algorithms=[algorithm]
    )
    proxy = net.add_peer(PROXY)
    call_id = caller.invite(
        TARGET,
        SDP_OFFER,
        0,
        from_user="3975",
        destination=PROXY,
        credentials=DigestCredentials("svc", "s3cret"),
    )
    net.transfer()
    first = one_request(proxy, "INVITE")
    proxy.inbox.clear()
    challenge_name = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
    answer_name = "Authorization" if code == 401 else "Proxy-Authorization"
    challenge = [(challenge_name, v) for _n, v in server.challenge_headers(net.now)]
    reply(proxy, first, code, to_tag="p1", headers=challenge)
    # Section 17.1.1.3: the ACK for the challenge reuses the INVITE's branch and CSeq number.
    ack = one_request(proxy, "ACK")
    assert branch_of(ack) == branch_of(first) and cseq_of(ack) == CSeq(1, "ACK")
    assert to_tag_of(ack) == "p1"
    # Sections 8.1.3.5 and 22.2: same Call-ID, From tag and To, CSeq + 1, new branch.
    second = one_request(proxy, "INVITE")
    assert second.call_id == call_id
    assert second.headers.get("From") == first.headers.get("From")
    assert second.headers.get("To") == first.headers.get("To")
    assert cseq_of(second) == CSeq(2, "INVITE")
    assert branch_of(second) != branch_of(first)
    assert second.body == SDP_OFFER
    other_name = "Proxy-Authorization" if code == 401 else "Authorization"
    assert second.headers.get(other_name) is None
    credentials = second.headers.get(answer_name)
    assert credentials is not None and f"algorithm={algorithm}" in credentials
    verdict = server.verify(credentials, method="INVITE", now=net.now, uri=TARGET)
    assert verdict.ok, verdict.reason
    assert drain_events(caller) == []
    proxy.inbox.clear()
    reply(proxy, second, 180, to_tag="a1")
    reply(proxy, second, 200, to_tag="a1", body=SDP_ANSWER, contact="<sip:a@127.0.0.1:5080>")
    assert_events(caller, [OutboundCallRinging, OutboundCallAnswered])
    # Section 13.2.2.4: the ACK for the 2xx carries the INVITE's credentials.
    ack2 = one_request(proxy, "ACK")
    assert ack2.headers.get(answer_name) == credentials
    assert cseq_of(ack2) == CSeq(2, "ACK")


def test_proxy_then_uas_challenge_are_both_carried(net: Network, caller: SipEngine) -> None:
    proxy_digest = DigestServer(realm="proxy", secret=SECRET, users={"svc": "pw"})
    uas_digest = DigestServer(realm="uas", secret=SECRET, users={"svc": "pw"})
    proxy = net.add_peer(PROXY)
    caller.invite(
        TARGET, SDP_OFFER, 0, from_user="3975", destination=PROXY,
        credentials=DigestCredentials("svc", "pw"),
    )  # fmt: skip
    net.transfer()
    first = one_request(proxy, "INVITE")
    proxy.inbox.clear()
    challenge = [("Proxy-Authenticate", v) for _n, v in proxy_digest.challenge_headers(0)]
    reply(proxy, first, 407, to_tag="p", headers=challenge)
    second = one_request(proxy, "INVITE")
    proxy.inbox.clear()
    reply(proxy, second, 401, to_tag="u", headers=uas_digest.challenge_headers(0))
    third = one_request(proxy, "INVITE")
    assert cseq_of(third) == CSeq(3, "INVITE")
    proxy_auth = third.headers.get("Proxy-Authorization") or ""
    uas_auth = third.headers.get("Authorization") or ""
    assert proxy_digest.verify(proxy_auth, method="INVITE", now=0, uri=TARGET).ok
    assert uas_digest.verify(uas_auth, method="INVITE", now=0, uri=TARGET).ok
    # The proxy's nonce is reused with the next nonce-count (RFC 2617 section 3.2.2).
    assert "nc=00000002" in proxy_auth and "nc=00000001" in uas_auth


def test_registration_credentials_answer_by_default(net: Network) -> None:
    server = DigestServer(realm="trunk", secret=SECRET, users={"reg-user": "reg-pw"})
    caller = net.add_engine(
        engine_config(
            port=CALLER[1],
            registration=RegistrationConfig(
                registrar_uri="sip:127.0.0.1:5080",
                aor="sip:3975@127.0.0.1",
                username="reg-user",
                password="reg-pw",
            ),
        )
    )
    proxy = net.add_peer(PROXY)
    caller.invite(TARGET, SDP_OFFER, 0, from_user="3975", destination=PROXY)
    net.transfer()
    first = one_request(proxy, "INVITE")
    proxy.inbox.clear()
    challenge = [("Proxy-Authenticate", v) for _n, v in server.challenge_headers(0)]
    reply(proxy, first, 407, headers=challenge)
    second = one_request(proxy, "INVITE")
    assert server.verify(
        second.headers.get("Proxy-Authorization") or "", method="INVITE", now=0, uri=TARGET
    ).ok


def _challenged_twice(
    net: Network, caller: SipEngine, *, same_nonce: bool, stale: bool
) -> tuple[RawPeer, str]:
    server = DigestServer(realm="trunk", secret=SECRET, users={"svc": "pw"}, algorithms=["MD5"])
    proxy = net.add_peer(PROXY)
    call_id = caller.invite(
        TARGET, SDP_OFFER, 0, from_user="3975", destination=PROXY,
        credentials=DigestCredentials("svc", "wrong"),
    )  # fmt: skip
    net.transfer()
    first = one_request(proxy, "INVITE")
    proxy.inbox.clear()
    challenge = [("Proxy-Authenticate", v) for _n, v in server.challenge_headers(0)]
    reply(proxy, first, 407, to_tag="p", headers=challenge)
    second = one_request(proxy, "INVITE")
    proxy.inbox.clear()
    again = challenge if same_nonce else server.challenge_headers(1, stale=stale)
    again = [("Proxy-Authenticate", v) for _n, v in again]
    if same_nonce and stale:
        again = [(n, v + ", stale=true") for n, v in again]
    reply(proxy, second, 407, to_tag="p", headers=again)
    return proxy, call_id


@pytest.mark.parametrize(
    ("same_nonce", "stale", "reason"),
    [
        (True, False, "challenged again with the same nonce"),
        (True, True, "challenged again with the same nonce"),
        (False, False, "challenged again without stale=true"),
    ],
)
def test_second_challenge_fails_the_call(
    net: Network, caller: SipEngine, same_nonce: bool, stale: bool, reason: str
) -> None:
    proxy, call_id = _challenged_twice(net, caller, same_nonce=same_nonce, stale=stale)
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert isinstance(failed, OutboundCallFailed)
    assert failed.call_id == call_id and failed.status_code == 407
    assert failed.reason.startswith(f"authentication failed: {reason}")
    assert "wrong" not in failed.reason and "nonce=" not in failed.reason
    assert [r.method for r in proxy.requests()] == ["ACK"]  # no third INVITE
    assert caller.calls == {}


def test_stale_challenge_with_a_new_nonce_is_answered_again(
    net: Network, caller: SipEngine
) -> None:
    proxy, _call_id = _challenged_twice(net, caller, same_nonce=False, stale=True)
    assert drain_events(caller) == []
    third = [r for r in proxy.requests() if r.method == "INVITE"]
    assert len(third) == 1 and cseq_of(third[0]) == CSeq(3, "INVITE")


def test_wrong_password_against_an_engine_uas_fails_once(net: Network) -> None:
    digest = DigestServer(realm="agents", secret=SECRET, users={"svc": "pw"})
    policy = AccessPolicy(trusted_networks=("10.0.0.0/8",), require_auth_from_untrusted=True)
    callee = net.add_engine(engine_config(access=policy, digest=digest))
    caller = net.add_engine(engine_config(port=CALLER[1]))
    call_id = caller.invite(
        TARGET, SDP_OFFER, 0, from_user="3975", credentials=DigestCredentials("svc", "nope")
    )
    net.transfer()
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(
        call_id, 401, "authentication failed: challenged again without stale=true "
        "(credentials refused)",
    )  # fmt: skip
    assert drain_events(callee) == []
    sent = [d.split(b" ", 1)[0] for _t, d, src, _dst in net.delivered if src == CALLER]
    assert sent == [b"INVITE", b"ACK", b"INVITE", b"ACK"]


def test_challenge_without_credentials_fails(net: Network, caller: SipEngine) -> None:
    server = DigestServer(realm="trunk", secret=SECRET, users={})
    callee = net.add_peer(CALLEE)
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    reply(callee, one_request(callee, "INVITE"), 401, headers=server.challenge_headers(0))
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(
        call_id, 401, "authentication failed: no credentials configured"
    )


# -- outcomes -----------------------------------------------------------------------------------


def test_busy_is_acknowledged_and_reported(net: Network, caller: SipEngine) -> None:
    callee = net.add_engine(engine_config())
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    assert_events(callee, [IncomingCall])
    callee.reject(call_id, 486, net.now)
    net.transfer()
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(call_id, 486, "Busy Here")
    net.advance(40)  # Timer D, and the callee's Timer I: everything is forgotten
    assert caller.get_timer() is None and callee.get_timer() is None
    assert caller.stats["client_transactions"] == 0


# -- CANCEL -------------------------------------------------------------------------------------


def test_cancel_after_ringing_gets_487(net: Network, caller: SipEngine) -> None:
    callee = net.add_engine(engine_config())
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    assert_events(callee, [IncomingCall])
    callee.ring(call_id, net.now)
    net.transfer()
    assert_events(caller, [OutboundCallRinging])
    net.advance(20)  # the application's ring timeout
    caller.cancel(call_id, net.now)
    assert caller.calls == {call_id: CallState.CANCELLING}
    net.transfer()
    assert_events(callee, [CallCancelled, CallTerminated])
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(call_id, 487, "Request Terminated")
    sent = [d for _t, d, src, _dst in net.delivered if src == CALLER]
    cancel = sent_request(sent, b"CANCEL")
    invite = sent_request(sent, b"INVITE")
    ack = sent_request(sent, b"ACK")
    # Section 9.1: the CANCEL matches the INVITE (branch, CSeq number, Request-URI).
    assert branch_of(cancel) == branch_of(invite) == branch_of(ack)
    assert cseq_of(cancel) == CSeq(1, "CANCEL") and cancel.uri == invite.uri
    caller.cancel(call_id, net.now)  # too late: ignored
    net.advance(40)
    assert caller.get_timer() is None and callee.get_timer() is None
    assert drain_events(caller) == []


def sent_request(sent: list[bytes], method: bytes) -> SipRequest:
    (data,) = [d for d in sent if d.startswith(method + b" ")]
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def test_cancel_before_any_provisional_waits_for_one(net: Network, caller: SipEngine) -> None:
    # Section 9.1: no CANCEL before a provisional response; it goes out when one arrives.
    callee = net.add_peer(CALLEE)
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    inv = one_request(callee, "INVITE")
    caller.cancel(call_id, 0.2)
    net.advance(1)
    assert requests(callee, "CANCEL") == []
    assert len(requests(callee, "INVITE")) == 2  # Timer A keeps retransmitting the INVITE
    callee.inbox.clear()
    reply(callee, inv, 180, to_tag="r")
    cancel = one_request(callee, "CANCEL")
    assert branch_of(cancel) == branch_of(inv)
    assert drain_events(caller) == []  # no Ringing once cancelled
    reply(callee, cancel, 200, to_tag="r")
    reply(callee, inv, 487, to_tag="r")
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(call_id, 487, "X")
    assert to_tag_of(one_request(callee, "ACK")) == "r"


def test_cancel_without_any_response_ends_at_timer_b(net: Network, caller: SipEngine) -> None:
    callee = net.add_peer(CALLEE)
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    caller.cancel(call_id, 0)
    net.advance(31.9)
    assert drain_events(caller) == []
    net.advance(0.2)
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(call_id, None, "cancelled")
    assert requests(callee, "CANCEL") == []
    assert caller.calls == {} and caller.get_timer() is None


def test_cancel_never_answered_gives_up_after_64_t1(net: Network, caller: SipEngine) -> None:
    callee = net.add_peer(CALLEE)
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    reply(callee, one_request(callee, "INVITE"), 180, to_tag="r")
    net.advance(1.0)
    caller.cancel(call_id, net.now)
    net.advance(31.9)  # the CANCEL went at 1.0: its 64*T1 ends at 33.0
    assert drain_events(caller) == [OutboundCallRinging(call_id, 180, None)]
    assert len(requests(callee, "CANCEL")) > 1  # Timer E retransmitted it
    net.advance(0.2)
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(call_id, None, "cancelled")
    net.advance(10)
    assert caller.stats["client_transactions"] == 0 and caller.get_timer() is None


def test_200_crossing_the_cancel_is_acknowledged_then_hung_up(
    net: Network, caller: SipEngine
) -> None:
    callee = net.add_peer(CALLEE)
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    inv = one_request(callee, "INVITE")
    reply(callee, inv, 180, to_tag="x")
    drain_events(caller)
    callee.inbox.clear()
    caller.cancel(call_id, 0)
    net.transfer()
    cancel = one_request(callee, "CANCEL")
    # The callee had answered already: its 2xx crosses our CANCEL, which it answers 200.
    reply(callee, inv, 200, to_tag="x", body=SDP_ANSWER, contact="<sip:agent12@127.0.0.1:5060>")
    reply(callee, cancel, 200, to_tag="x")
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(call_id, 200, "cancelled")
    ack, bye = one_request(callee, "ACK"), one_request(callee, "BYE")
    assert [r.method for r in callee.requests()] == ["CANCEL", "ACK", "BYE"]
    assert to_tag_of(ack) == to_tag_of(bye) == "x"
    assert cseq_of(ack) == CSeq(1, "ACK") and cseq_of(bye) == CSeq(2, "BYE")
    # A retransmitted 2xx gets the same ACK again, not a second BYE.
    reply(callee, inv, 200, to_tag="x", body=SDP_ANSWER, contact="<sip:agent12@127.0.0.1:5060>")
    assert [r.method for r in callee.requests()] == ["CANCEL", "ACK", "BYE", "ACK"]
    reply(callee, bye, 200)
    assert drain_events(caller) == []  # exactly one outcome for the application
    assert caller.calls == {}
    net.advance(40)
    assert caller.get_timer() is None


def test_engine_pair_answer_and_cancel_cross(net: Network, caller: SipEngine) -> None:
    callee = net.add_engine(engine_config())
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    assert_events(callee, [IncomingCall])
    callee.ring(call_id, net.now)
    net.transfer()
    assert_events(caller, [OutboundCallRinging])
    # Same instant on both sides: the agent picks up as the ring timeout fires.
    callee.answer(call_id, SDP_ANSWER, net.now)
    caller.cancel(call_id, net.now)
    net.transfer()
    (failed,) = assert_events(caller, [OutboundCallFailed])
    assert failed == OutboundCallFailed(call_id, 200, "cancelled")
    confirmed, ended = assert_events(callee, [CallConfirmed, CallTerminated])
    assert ended == CallTerminated(call_id, "bye", "caller")
    net.advance(40)
    assert caller.calls == {} and callee.calls == {}
    assert caller.get_timer() is None and callee.get_timer() is None


def test_hangup_of_a_ringing_call_is_a_cancel(net: Network, caller: SipEngine) -> None:
    callee = net.add_engine(engine_config())
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    callee.ring(call_id, net.now)
    net.transfer()
    drain_events(caller)
    caller.hangup(call_id, net.now)
    assert caller.call_state(call_id) is CallState.CANCELLING
    net.transfer()
    assert_events(caller, [OutboundCallFailed])


# -- re-INVITE: hold and resume -----------------------------------------------------------------


def _established(net: Network, caller: SipEngine) -> tuple[SipEngine, str]:
    callee = net.add_engine(engine_config())
    call_id = caller.invite(TARGET, SDP_OFFER, net.now, from_user="3975")
    net.transfer()
    assert_events(callee, [IncomingCall])
    callee.answer(call_id, SDP_ANSWER, net.now)
    net.transfer()
    assert_events(caller, [OutboundCallAnswered])
    assert_events(callee, [CallConfirmed])
    return callee, call_id


def _sent_invites(net: Network, src: tuple[str, int]) -> list[tuple[float, SipRequest]]:
    out = []
    for t, data, s, _dst in net.delivered:
        if s == src and data.startswith(b"INVITE "):
            message = parse_message(data)
            assert isinstance(message, SipRequest)
            out.append((t, message))
    return out


@pytest.mark.parametrize("side", ["caller", "callee"])
def test_hold_and_resume(net: Network, caller: SipEngine, side: str) -> None:
    callee, call_id = _established(net, caller)
    ours, theirs = (caller, callee) if side == "caller" else (callee, caller)
    for offer, answer in ((HOLD, HOLD_ANSWER), (SDP_OFFER, SDP_ANSWER)):
        assert ours.reinvite(call_id, offer, net.now)
        net.transfer()
        (received,) = assert_events(theirs, [ReInviteReceived])
        assert received == ReInviteReceived(call_id, offer)
        theirs.answer_reinvite(call_id, answer, net.now)
        net.transfer()
        (answered,) = assert_events(ours, [ReInviteAnswered])
        assert answered == ReInviteAnswered(call_id, answer)
        assert_events(theirs, [ReInviteConfirmed])
    src = CALLER if side == "caller" else CALLEE
    reinvites = [r for _t, r in _sent_invites(net, src) if to_tag_of(r)]
    assert [cseq_of(r).method for r in reinvites] == ["INVITE", "INVITE"]
    assert cseq_of(reinvites[1]).number == cseq_of(reinvites[0]).number + 1
    assert all(r.headers.get("Contact") for r in reinvites)  # target refresh (12.2.1.1)
    ours.hangup(call_id, net.now)
    net.transfer()
    assert_events(ours, [CallTerminated])
    assert_events(theirs, [CallTerminated])


def test_reinvite_waits_for_the_running_one_and_the_last_offer_wins(
    net: Network, caller: SipEngine
) -> None:
    callee, call_id = _established(net, caller)
    caller.reinvite(call_id, HOLD, net.now)
    caller.reinvite(call_id, b"v=0 first resume\r\n", net.now)
    caller.reinvite(call_id, SDP_OFFER, net.now)  # replaces the waiting one
    net.transfer()
    (first,) = assert_events(callee, [ReInviteReceived])
    assert first == ReInviteReceived(call_id, HOLD)
    callee.answer_reinvite(call_id, HOLD_ANSWER, net.now)
    net.transfer()
    assert_events(caller, [ReInviteAnswered])
    assert_events(callee, [ReInviteConfirmed, ReInviteReceived])  # the resume follows at once
    callee.answer_reinvite(call_id, SDP_ANSWER, net.now)
    net.transfer()
    (resumed,) = assert_events(caller, [ReInviteAnswered])
    assert resumed == ReInviteAnswered(call_id, SDP_ANSWER)
    assert len([r for _t, r in _sent_invites(net, CALLER) if to_tag_of(r)]) == 2


def test_reinvite_refused_on_a_call_not_confirmed(net: Network, caller: SipEngine) -> None:
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    assert not caller.reinvite(call_id, HOLD, 0)
    assert not caller.reinvite("unknown@x", HOLD, 0)


def test_rejected_reinvite_keeps_the_session(net: Network, caller: SipEngine) -> None:
    callee, call_id = _established(net, caller)
    caller.reinvite(call_id, HOLD, net.now)
    net.transfer()
    assert_events(callee, [ReInviteReceived])
    callee.reject_reinvite(call_id, 488, net.now)
    net.transfer()
    (failed,) = assert_events(caller, [ReInviteFailed])
    assert failed == ReInviteFailed(call_id, 488, "Not Acceptable Here")
    assert caller.calls == {call_id: CallState.CONFIRMED}
    assert callee.calls == {call_id: CallState.CONFIRMED}


@pytest.mark.parametrize("seed", range(6))
def test_glare_491_retry_timing(net: Network, caller: SipEngine, seed: int) -> None:
    # Both sides re-INVITE at once: each answers the other 491 (section 14.2). The owner of
    # the Call-ID (the caller, who generated it) retries after 2.1-4 s, the callee after 0-2 s
    # (section 14.1), so the callee's retry goes first and the caller's follows it.
    callee, call_id = _established(net, caller)
    caller._random.seed(seed)
    callee._random.seed(seed + 100)
    start = net.now
    caller.reinvite(call_id, HOLD, net.now)
    callee.reinvite(call_id, SDP_OFFER, net.now)
    net.transfer()
    assert drain_events(caller) == [] and drain_events(callee) == []
    glare = [d for _t, d, _s, _dst in net.delivered if d.startswith(b"SIP/2.0 491")]
    assert len(glare) == 2
    # The callee's retry: answered by the caller's application.
    events = events_within(net, caller, 5.0)
    assert events == [ReInviteReceived(call_id, SDP_OFFER)]
    caller.answer_reinvite(call_id, SDP_ANSWER, net.now)
    net.transfer()
    assert_events(callee, [ReInviteAnswered])
    assert_events(caller, [ReInviteConfirmed])
    # The caller's retry.
    events = events_within(net, callee, 5.0)
    assert events == [ReInviteReceived(call_id, HOLD)]
    callee.answer_reinvite(call_id, HOLD_ANSWER, net.now)
    net.transfer()
    assert_events(caller, [ReInviteAnswered])
    callee_times = [t - start for t, r in _sent_invites(net, CALLEE)]
    caller_times = [t - start for t, r in _sent_invites(net, CALLER) if to_tag_of(r)]
    assert len(callee_times) == len(caller_times) == 2
    assert callee_times[0] == caller_times[0] == 0
    assert 0 <= callee_times[1] <= 2.0 + 1e-9
    assert 2.1 - 1e-9 <= caller_times[1] <= 4.0 + 1e-9
    # In units of 10 ms (section 14.1).
    for t in (callee_times[1], caller_times[1]):
        assert abs(t * 100 - round(t * 100)) < 1e-6


def test_glare_retries_are_bounded(net: Network, caller: SipEngine) -> None:
    peer = net.add_peer(CALLEE)
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    inv = one_request(peer, "INVITE")
    reply(peer, inv, 200, to_tag="g", body=SDP_ANSWER, contact="<sip:agent12@127.0.0.1:5060>")
    assert_events(caller, [OutboundCallAnswered])
    peer.inbox.clear()
    caller.reinvite(call_id, HOLD, net.now)
    net.transfer()
    sent = 0
    deadline = net.now + 60
    while net.now < deadline:
        invites = requests(peer, "INVITE")
        if invites:
            # The first copy (Timer A may have retransmitted it meanwhile).
            assert len({branch_of(r) for r in invites}) == 1
            sent += 1
            peer.inbox.clear()
            reply(peer, invites[0], 491, to_tag="g")
        net.advance(0.01)
    assert sent == 6  # the first try and five retries
    (failed,) = assert_events(caller, [ReInviteFailed])
    assert failed == ReInviteFailed(call_id, 491, "X")
    assert caller.calls == {call_id: CallState.CONFIRMED}


@pytest.mark.parametrize("code", [481, 408, None])
def test_reinvite_481_408_timeout_end_the_dialog(
    net: Network, caller: SipEngine, code: int | None
) -> None:
    peer = net.add_peer(CALLEE)
    call_id = caller.invite(TARGET, SDP_OFFER, 0, from_user="3975")
    net.transfer()
    reply(
        peer,
        one_request(peer, "INVITE"),
        200,
        to_tag="d",
        body=SDP_ANSWER,
        contact="<sip:agent12@127.0.0.1:5060>",
    )
    assert_events(caller, [OutboundCallAnswered])
    peer.inbox.clear()
    caller.reinvite(call_id, HOLD, net.now)
    net.transfer()
    reinv = one_request(peer, "INVITE")
    peer.inbox.clear()
    if code is None:
        net.advance(32.1)  # Timer B
        peer.inbox[:] = [m for m in peer.inbox if not m[1].startswith(b"INVITE")]
    else:
        reply(peer, reinv, code, to_tag="d", reason="Gone")
    failed, *rest = drain_events(caller)
    assert failed == ReInviteFailed(call_id, code, "Gone" if code else "timeout")
    if code == 481:
        assert rest == [CallTerminated(call_id, "reinvite_failed", "service")]
        assert requests(peer, "BYE") == []
        return
    assert rest == []
    bye = one_request(peer, "BYE")  # section 12.2.1.2: the dialog is ended with BYE
    reply(peer, bye, 200)
    assert_events(caller, [CallTerminated])


def test_our_reinvite_waits_for_the_peers_one(net: Network, caller: SipEngine) -> None:
    callee, call_id = _established(net, caller)
    callee.reinvite(call_id, HOLD, net.now)
    net.transfer()
    assert_events(caller, [ReInviteReceived])
    # The caller's application has not answered yet; its own re-INVITE waits (section 14.1).
    assert caller.reinvite(call_id, SDP_OFFER, net.now)
    net.transfer()
    assert [r for _t, r in _sent_invites(net, CALLER) if to_tag_of(r)] == []
    caller.answer_reinvite(call_id, HOLD_ANSWER, net.now)
    net.transfer()
    # The caller's ACK frees the dialog: its waiting offer follows at once.
    _answered, offer = assert_events(callee, [ReInviteAnswered, ReInviteReceived])
    assert offer == ReInviteReceived(call_id, SDP_OFFER)
    assert_events(caller, [ReInviteConfirmed])


def test_reinvite_challenge_is_answered(net: Network, caller: SipEngine) -> None:
    server = DigestServer(realm="pbx", secret=SECRET, users={"svc": "pw"})
    peer = net.add_peer(CALLEE)
    call_id = caller.invite(
        TARGET, SDP_OFFER, 0, from_user="3975", credentials=DigestCredentials("svc", "pw")
    )
    net.transfer()
    reply(peer, one_request(peer, "INVITE"), 200, to_tag="c", body=SDP_ANSWER,
          contact="<sip:agent12@127.0.0.1:5060>")  # fmt: skip
    assert_events(caller, [OutboundCallAnswered])
    # Four hold/resume cycles, each challenged: the bound on challenges is per request.
    for offer, answer in [(HOLD, HOLD_ANSWER), (SDP_OFFER, SDP_ANSWER)] * 2:
        peer.inbox.clear()
        caller.reinvite(call_id, offer, net.now)
        net.transfer()
        first = one_request(peer, "INVITE")
        assert first.headers.get("Proxy-Authorization") is None  # never sent preemptively
        peer.inbox.clear()
        challenge = [("Proxy-Authenticate", v) for _n, v in server.challenge_headers(net.now)]
        reply(peer, first, 407, headers=challenge)
        second = one_request(peer, "INVITE")
        assert cseq_of(second).number == cseq_of(first).number + 1
        assert second.body == offer
        creds = second.headers.get("Proxy-Authorization") or ""
        assert server.verify(creds, method="INVITE", now=net.now, uri=second.uri).ok
        peer.inbox.clear()
        reply(peer, second, 200, body=answer)
        (answered,) = assert_events(caller, [ReInviteAnswered])
        assert answered == ReInviteAnswered(call_id, answer)
        ack = one_request(peer, "ACK")
        assert ack.headers.get("Proxy-Authorization") == creds
        net.advance(1)
