"""Transaction state machines (RFC 3261 section 17, RFC 6026) driven directly."""

from __future__ import annotations

from callcenter.sip.headers import NameAddress, Via, parse_vias
from callcenter.sip.message import Headers, SipRequest, SipResponse
from callcenter.sip.parser import parse_message
from callcenter.sip.timers import TimerValues, next_interval
from callcenter.sip.transaction import (
    Destination,
    InviteClientState,
    InviteClientTransaction,
    InviteServerState,
    InviteServerTransaction,
    NonInviteClientState,
    NonInviteClientTransaction,
    NonInviteServerState,
    NonInviteServerTransaction,
    is_rfc3261_branch,
    make_response,
    new_branch,
    server_key,
)

TIMERS = TimerValues()
DEST = ("127.0.0.1", 5060)


def req(
    method: str = "INVITE", branch: str | None = "z9hG4bKabc", cseq_method: str | None = None
) -> SipRequest:
    via = "SIP/2.0/UDP 127.0.0.1:5070" + (f";branch={branch}" if branch else "")
    headers = Headers(
        [
            ("Via", via),
            ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKproxy"),
            ("From", "<sip:a@127.0.0.1>;tag=f1"),
            ("To", "<sip:b@127.0.0.1>"),
            ("Call-ID", "call-1"),
            ("CSeq", f"7 {cseq_method or method}"),
            ("Timestamp", "54"),
            ("Route", "<sip:proxy.example;lr>"),
        ]
    )
    return SipRequest(method, "sip:b@127.0.0.1", headers)


def top(r: SipRequest) -> Via:
    return parse_vias(r.headers)[0]


class Wire:
    def __init__(self) -> None:
        self.sent: list[tuple[float, bytes]] = []
        self.now = 0.0

    def send(self, data: bytes, addr: Destination) -> None:
        assert addr == DEST
        self.sent.append((self.now, data))


def run(tx: object, wire: Wire, until: float) -> None:
    while True:
        deadline = tx.deadline()  # type: ignore[attr-defined]
        if deadline is None or deadline > until:
            return
        wire.now = deadline
        tx.handle_timer(deadline)  # type: ignore[attr-defined]


def ist(wire: Wire) -> InviteServerTransaction:
    return InviteServerTransaction(
        key=("k",), request=req(), response_addr=DEST, timers=TIMERS, send=wire.send
    )


def test_server_key_rfc3261_and_ack_folding() -> None:
    invite = req()
    key = server_key(invite, top(invite), from_tag="f1", cseq_number=7)
    assert key == ("3261", "z9hG4bKabc", "127.0.0.1", "5070", "INVITE")
    ack = req("ACK")
    assert server_key(ack, top(ack), from_tag="f1", cseq_number=7) == key
    cancel = req("CANCEL")
    assert server_key(cancel, top(cancel), from_tag="f1", cseq_number=7) != key
    assert server_key(cancel, top(cancel), from_tag="f1", cseq_number=7, method="INVITE") == key


def test_server_key_rfc2543_fallback() -> None:
    for branch in (None, "z9hG4bK", "1234"):
        invite = req(branch=branch)
        key = server_key(invite, top(invite), from_tag=None, cseq_number=7)
        assert key[0] == "2543" and key[-1] == "INVITE"
        other = req(branch=branch)
        other.uri = "sip:c@127.0.0.1"
        assert server_key(other, top(other), from_tag=None, cseq_number=7) != key
    assert not is_rfc3261_branch("z9hG4bK") and is_rfc3261_branch(new_branch())


def test_make_response_copies_and_tags() -> None:
    r = req()
    trying = make_response(r, 100, to_tag="t1")
    assert trying.headers.get_all("Via") == r.headers.get_all("Via")
    assert NameAddress.parse(trying.headers.get("To") or "").tag is None
    assert trying.headers.get("Timestamp") == "54"
    ok = make_response(r, 200, to_tag="t1", headers=[("Contact", "<sip:x@y>")])
    assert NameAddress.parse(ok.headers.get("To") or "").tag == "t1"
    assert ok.headers.get("Timestamp") is None
    assert ok.reason == "OK" and ok.headers.get("CSeq") == "7 INVITE"
    # An existing To tag is kept.
    r.headers.set("To", "<sip:b@127.0.0.1>;tag=keep")
    assert (
        NameAddress.parse(make_response(r, 481, to_tag="t2").headers.get("To") or "").tag == "keep"
    )


def test_invite_server_timer_g_h() -> None:
    wire = Wire()
    timeouts: list[float] = []
    tx = InviteServerTransaction(
        key=("k",), request=req(), response_addr=DEST, timers=TIMERS, send=wire.send
    )
    tx.on_timeout = timeouts.append
    assert tx.respond(make_response(req(), 100), 0)
    tx.receive_retransmission(0.1)
    assert len(wire.sent) == 2 and wire.sent[1][1].startswith(b"SIP/2.0 100")
    tx.respond(make_response(req(), 486, to_tag="x"), 0)
    assert tx.state is InviteServerState.COMPLETED
    assert not tx.respond(make_response(req(), 200, to_tag="x"), 0)
    run(tx, wire, 100)
    times = [t for t, data in wire.sent if data.startswith(b"SIP/2.0 486")]
    assert times == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.terminated and timeouts == [32.0]


def test_invite_server_ack_then_timer_i() -> None:
    wire = Wire()
    tx = InviteServerTransaction(
        key=("k",), request=req(), response_addr=DEST, timers=TIMERS, send=wire.send
    )
    tx.respond(make_response(req(), 404, to_tag="x"), 0)
    assert tx.receive_ack(1.0) is False  # absorbed
    assert tx.state is InviteServerState.CONFIRMED
    tx.receive_retransmission(1.1)  # nothing resent in Confirmed
    assert len(wire.sent) == 1
    assert tx.deadline() == 1.0 + TIMERS.t4
    run(tx, wire, 10)
    assert tx.terminated and len(wire.sent) == 1


def test_invite_server_accepted_passes_ack_up() -> None:
    wire = Wire()
    tx = InviteServerTransaction(
        key=("k",), request=req(), response_addr=DEST, timers=TIMERS, send=wire.send
    )
    tx.respond(make_response(req(), 200, to_tag="x"), 0)
    assert tx.state is InviteServerState.ACCEPTED
    tx.receive_retransmission(0.2)  # absorbed: the UA core retransmits 2xx
    assert len(wire.sent) == 1
    assert tx.receive_ack(0.3) is True
    run(tx, wire, 40)
    assert tx.terminated and len(wire.sent) == 1


def test_non_invite_server_timer_j() -> None:
    wire = Wire()
    r = req("OPTIONS")
    tx = NonInviteServerTransaction(
        key=("k",), request=r, response_addr=DEST, timers=TIMERS, send=wire.send
    )
    tx.receive_retransmission(0)  # Trying: absorbed
    assert wire.sent == []
    tx.respond(make_response(r, 200, to_tag="x"), 0)
    tx.receive_retransmission(5)
    assert wire.sent[0][1] == wire.sent[1][1]
    assert tx.state is NonInviteServerState.COMPLETED and tx.deadline() == 32
    run(tx, wire, 40)
    assert tx.terminated


def _response(r: SipRequest, code: int, to_tag: str = "rt") -> SipResponse:
    return make_response(r, code, to_tag=to_tag)


def test_non_invite_client_timers_e_f() -> None:
    wire = Wire()
    got: list[int] = []
    timeouts: list[float] = []
    r = req("BYE")
    tx = NonInviteClientTransaction(
        request=r,
        branch="z9hG4bKabc",
        destination=DEST,
        timers=TIMERS,
        send=wire.send,
        on_response=lambda resp, t: got.append(resp.status_code),
        on_timeout=timeouts.append,
        now=0,
    )
    run(tx, wire, 100)
    assert [t for t, _ in wire.sent] == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert timeouts == [32] and tx.terminated and got == []


def test_non_invite_client_proceeding_then_final_timer_k() -> None:
    wire = Wire()
    got: list[int] = []
    r = req("BYE")
    tx = NonInviteClientTransaction(
        request=r,
        branch="z9hG4bKabc",
        destination=DEST,
        timers=TIMERS,
        send=wire.send,
        on_response=lambda resp, t: got.append(resp.status_code),
        on_timeout=lambda t: None,
        now=0,
    )
    tx.receive_response(_response(r, 100), 0.1)
    assert tx.state is NonInviteClientState.PROCEEDING
    run(tx, wire, 5)
    # Section 17.1.2.2: in Proceeding the request is retransmitted every T2.
    assert [t for t, _ in wire.sent] == [0, 0.5, 4.5]
    tx.receive_response(_response(r, 200), 5)
    tx.receive_response(_response(r, 200), 5.1)  # retransmission absorbed
    assert got == [100, 200]
    assert tx.deadline() == 5 + TIMERS.t4
    run(tx, wire, 20)
    assert tx.terminated


def test_invite_client_non_2xx_generates_ack() -> None:
    wire = Wire()
    got: list[int] = []
    r = req()
    tx = InviteClientTransaction(
        request=r,
        branch="z9hG4bKabc",
        destination=DEST,
        timers=TIMERS,
        send=wire.send,
        on_response=lambda resp, t: got.append(resp.status_code),
        on_timeout=lambda t: None,
        now=0,
    )
    tx.receive_response(_response(r, 180), 0.2)
    run(tx, wire, 10)
    assert len(wire.sent) == 1  # no retransmission in Proceeding
    tx.receive_response(_response(r, 486), 10)
    tx.receive_response(_response(r, 486), 10.5)
    assert got == [180, 486]
    acks = [parse_message(data) for _t, data in wire.sent[1:]]
    assert len(acks) == 2
    ack = acks[0]
    assert isinstance(ack, SipRequest) and ack.method == "ACK"
    # Section 17.1.1.3: same branch, To from the response, CSeq number with ACK, Route kept.
    assert parse_vias(ack.headers)[0].branch == "z9hG4bKabc"
    assert len(parse_vias(ack.headers)) == 1
    assert NameAddress.parse(ack.headers.get("To") or "").tag == "rt"
    assert ack.headers.get("CSeq") == "7 ACK"
    assert ack.headers.get("Route") == "<sip:proxy.example;lr>"
    assert tx.state is InviteClientState.COMPLETED
    run(tx, wire, 100)
    assert tx.terminated


def test_invite_client_timer_a_b_and_2xx_retransmissions() -> None:
    wire = Wire()
    timeouts: list[float] = []
    r = req()
    tx = InviteClientTransaction(
        request=r,
        branch="z9hG4bKabc",
        destination=DEST,
        timers=TIMERS,
        send=wire.send,
        on_response=lambda resp, t: None,
        on_timeout=timeouts.append,
        now=0,
    )
    run(tx, wire, 100)
    assert [t for t, _ in wire.sent] == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert timeouts == [32]
    got: list[int] = []
    tx2 = InviteClientTransaction(
        request=r,
        branch="z9hG4bKabc",
        destination=DEST,
        timers=TIMERS,
        send=wire.send,
        on_response=lambda resp, t: got.append(resp.status_code),
        on_timeout=timeouts.append,
        now=0,
    )
    tx2.receive_response(_response(r, 200), 1)
    tx2.receive_response(_response(r, 200), 2)  # RFC 6026: retransmitted 2xx reach the TU
    assert got == [200, 200] and tx2.state is InviteClientState.ACCEPTED


def test_timer_values() -> None:
    t = TimerValues(t1=0.5, t2=4.0, t4=5.0)
    assert (t.timeout, t.timer_d, t.timer_i, t.timer_k) == (32.0, 32.0, 5.0, 5.0)
    assert TimerValues(t1=1.0).timer_d == 64.0
    assert next_interval(2.0, 4.0) == 4.0 and next_interval(4.0, 4.0) == 4.0
    assert next_interval(4.0, None) == 8.0
