"""SipEngine over stream connections (TCP, RFC 3261 section 18), driven byte by byte, sans IO."""

from __future__ import annotations

import pytest

from callcenter.sip.engine import CallState, SipEngine
from callcenter.sip.events import CallConfirmed, CallTerminated, IncomingCall, SipResponseSent
from callcenter.sip.headers import NameAddress, parse_vias
from callcenter.sip.message import SipRequest, SipResponse
from callcenter.sip.parser import parse_message
from tests.sip.fixtures import load_rfc4475
from tests.sip.pair import SDP_ANSWER, SDP_OFFER, drain_events, engine_config, new_dialog, request

UAS = ("127.0.0.1", 5060)
PEER = ("127.0.0.1", 40001)
CONN = 7


@pytest.fixture
def uas() -> SipEngine:
    return SipEngine(config=engine_config())


def tcp_request(method: str, **kw: object) -> tuple[bytes, object]:
    d = new_dialog(PEER, UAS)
    via = f"SIP/2.0/TCP {PEER[0]}:{PEER[1]};branch=z9hG4bK{method.lower()}1"
    return request(method, d, via=via, **kw), d  # type: ignore[arg-type]


def sent(uas: SipEngine, conn: int = CONN) -> list[SipRequest | SipResponse]:
    out = uas.stream_data_to_send()
    assert all(c == conn for c, _ in out), out
    return [parse_message(data) for _c, data in out]


def codes(messages: list[SipRequest | SipResponse]) -> list[int]:
    return [m.status_code for m in messages if isinstance(m, SipResponse)]


def test_options_split_anywhere_is_answered_on_the_connection(uas: SipEngine) -> None:
    raw, _d = tcp_request("OPTIONS")
    for i in range(len(raw)):
        uas.receive_stream_data(CONN, raw[i : i + 1], PEER, 1.0)
    (resp,) = sent(uas)
    assert isinstance(resp, SipResponse) and resp.status_code == 200
    # Section 18.2.2: on the connection, never as a datagram (not even to the Via port).
    assert uas.datagrams_to_send() == []
    assert parse_vias(resp.headers)[0].transport == "TCP"
    # Reliable transport: Timer J is zero, the transaction is gone at once.
    uas.handle_timer(1.0)
    assert uas.stats["server_transactions"] == 0
    assert not uas.stream_in_use(CONN)


def test_two_messages_in_one_read(uas: SipEngine) -> None:
    a, _ = tcp_request("OPTIONS")
    b, _ = tcp_request("OPTIONS")
    b = b.replace(b"branch=z9hG4bKoptions1", b"branch=z9hG4bKoptions2")
    uas.receive_stream_data(CONN, a + b, PEER, 1.0)
    assert codes(sent(uas)) == [200, 200]


def test_call_over_tcp(uas: SipEngine) -> None:
    d = new_dialog(PEER, UAS)
    via = f"SIP/2.0/TCP {PEER[0]}:{PEER[1]};branch=z9hG4bKinvtcp"
    invite = request("INVITE", d, via=via, body=SDP_OFFER, content_type="application/sdp")
    uas.receive_stream_data(CONN, invite, PEER, 1.0)
    assert codes(sent(uas)) == [100]
    events = drain_events(uas)
    (incoming,) = [e for e in events if isinstance(e, IncomingCall)]
    assert incoming.transport == "tcp"
    assert uas.stream_in_use(CONN)
    uas.answer(incoming.call_id, SDP_ANSWER, 1.1)
    (ok,) = sent(uas)
    assert isinstance(ok, SipResponse) and ok.status_code == 200
    # Our target asks for TCP (section 18.1.1), so the peer's BYE comes back on a stream.
    assert (ok.headers.get("Contact") or "").endswith(";transport=tcp>")
    d.to_tag = NameAddress.parse(ok.headers.get("To") or "").tag
    ack = request("ACK", d, via=via.replace("invtcp", "acktcp"), to_tag=d.to_tag)
    uas.receive_stream_data(CONN, ack, PEER, 1.2)
    assert any(isinstance(e, CallConfirmed) for e in drain_events(uas))
    assert uas.datagrams_to_send() == []
    uas.hangup(incoming.call_id, 2.0)
    (bye,) = sent(uas)
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    top = parse_vias(bye.headers)[0]
    assert top.transport == "TCP"
    # Reliable transport: Timer E never retransmits the BYE.
    uas.handle_timer(2.0 + 10)
    assert uas.stream_data_to_send() == []
    resp = (
        f"SIP/2.0 200 OK\r\nVia: {bye.headers.get('Via')}\r\nFrom: {bye.headers.get('From')}\r\n"
        f"To: {bye.headers.get('To')}\r\nCall-ID: {bye.call_id}\r\n"
        f"CSeq: {bye.headers.get('CSeq')}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    uas.receive_stream_data(CONN, resp, PEER, 2.1)
    assert [type(e) for e in drain_events(uas)] == [CallTerminated]
    assert uas.calls == {}


def test_bye_falls_back_to_udp_when_the_connection_closed(uas: SipEngine) -> None:
    d = new_dialog(PEER, UAS)
    via = f"SIP/2.0/TCP {PEER[0]}:{PEER[1]};branch=z9hG4bKinvfb"
    invite = request("INVITE", d, via=via, body=SDP_OFFER, content_type="application/sdp")
    uas.receive_stream_data(CONN, invite, PEER, 1.0)
    (incoming,) = [e for e in drain_events(uas) if isinstance(e, IncomingCall)]
    uas.answer(incoming.call_id, SDP_ANSWER, 1.1)
    (ok,) = sent(uas)[-1:]
    d.to_tag = NameAddress.parse(ok.headers.get("To") or "").tag
    uas.receive_stream_data(CONN, request("ACK", d, via=via, to_tag=d.to_tag), PEER, 1.2)
    assert uas.calls[incoming.call_id] is CallState.CONFIRMED
    uas.stream_closed(CONN)
    uas.hangup(incoming.call_id, 2.0)
    assert uas.stream_data_to_send() == []
    ((data, addr),) = uas.datagrams_to_send()
    bye = parse_message(data)
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert parse_vias(bye.headers)[0].transport == "UDP"
    assert addr == PEER  # the Contact host:port of the hand-written UAC


def test_response_on_a_closed_connection_is_counted_not_sent(uas: SipEngine) -> None:
    d = new_dialog(PEER, UAS)
    via = f"SIP/2.0/TCP {PEER[0]}:{PEER[1]};branch=z9hG4bKinvcl"
    invite = request("INVITE", d, via=via, body=SDP_OFFER, content_type="application/sdp")
    uas.receive_stream_data(CONN, invite, PEER, 1.0)
    (incoming,) = [e for e in drain_events(uas) if isinstance(e, IncomingCall)]
    sent(uas)
    uas.stream_closed(CONN)
    uas.answer(incoming.call_id, SDP_ANSWER, 1.1)
    assert uas.stream_data_to_send() == [] and uas.datagrams_to_send() == []
    assert uas.stats["stream_send_failed"] == 1


def test_reject_over_tcp_is_not_retransmitted(uas: SipEngine) -> None:
    d = new_dialog(PEER, UAS)
    via = f"SIP/2.0/TCP {PEER[0]}:{PEER[1]};branch=z9hG4bKinvrj"
    invite = request("INVITE", d, via=via, body=SDP_OFFER, content_type="application/sdp")
    uas.receive_stream_data(CONN, invite, PEER, 1.0)
    (incoming,) = [e for e in drain_events(uas) if isinstance(e, IncomingCall)]
    uas.reject(incoming.call_id, 486, 1.1)
    assert codes(sent(uas)) == [100, 486]
    for t in (1.7, 2.7, 5.0, 9.0):  # Timer G would have fired at T1, 2*T1, ...
        uas.handle_timer(t)
    assert uas.stream_data_to_send() == []


@pytest.mark.parametrize("name", ["ncl", "mcl01"])
def test_framing_error_closes_the_connection(uas: SipEngine, name: str) -> None:
    # RFC 4475 sections 3.1.2.3 and 3.3.9: over TCP, close the connection.
    uas.receive_stream_data(CONN, load_rfc4475(name), PEER, 1.0)
    assert uas.streams_to_close() == [CONN]
    assert uas.streams_to_close() == []
    assert uas.stream_data_to_send() == []
    assert uas.stats["stream_framing_errors"] == 1
    # Anything after the error is ignored, and nothing is sent on the closing connection.
    raw, _ = tcp_request("OPTIONS")
    uas.receive_stream_data(CONN, raw, PEER, 1.1)
    assert uas.stream_data_to_send() == [] and uas.datagrams_to_send() == []
    # Another connection is unaffected.
    uas.receive_stream_data(CONN + 1, raw, PEER, 1.2)
    assert [c for c, _ in uas.stream_data_to_send()] == [CONN + 1]


def test_content_length_beyond_the_data_waits(uas: SipEngine) -> None:
    # RFC 4475 section 3.1.2.2 (clerr) over TCP: wait for more data (the adapter's idle
    # timeout closes the connection), never answer a truncated message.
    uas.receive_stream_data(CONN, load_rfc4475("clerr"), PEER, 1.0)
    assert uas.stream_data_to_send() == [] and uas.streams_to_close() == []


def test_missing_content_length_is_a_framing_error(uas: SipEngine) -> None:
    raw, _ = tcp_request("OPTIONS")
    uas.receive_stream_data(CONN, raw.replace(b"Content-Length: 0\r\n", b""), PEER, 1.0)
    assert uas.streams_to_close() == [CONN]


def test_oversized_message_is_a_framing_error() -> None:
    uas = SipEngine(config=engine_config(max_message_size=1000))
    raw, _ = tcp_request("OPTIONS", extra=[("X-Padding", "a" * 2000)])
    uas.receive_stream_data(CONN, raw, PEER, 1.0)
    assert uas.streams_to_close() == [CONN]


def test_invalid_request_on_a_stream_gets_400_on_the_connection(uas: SipEngine) -> None:
    # RFC 4475 insuf: no Call-ID/From/To; framed by Content-Length, so the stream survives.
    uas.receive_stream_data(CONN, load_rfc4475("insuf"), PEER, 1.0)
    ((conn, data),) = uas.stream_data_to_send()
    assert conn == CONN and data.startswith(b"SIP/2.0 400 ")
    assert b";received=127.0.0.1" in data  # sent-by 192.0.2.95 != source (section 18.2.1)
    assert b"CSeq: 193942 INVITE\r\n" in data
    assert uas.streams_to_close() == []
    events = drain_events(uas, metrics=True)
    assert SipResponseSent(400) in events


def test_keepalive_ping_gets_a_pong(uas: SipEngine) -> None:
    uas.receive_stream_data(CONN, b"\r\n", PEER, 1.0)
    uas.receive_stream_data(CONN, b"\r\n", PEER, 1.0)
    assert uas.stream_data_to_send() == [(CONN, b"\r\n")]
    raw, _ = tcp_request("OPTIONS")
    uas.receive_stream_data(CONN, b"\r\n\r\n" + raw, PEER, 1.1)
    out = sorted(uas.stream_data_to_send())
    assert out[0] == (CONN, b"\r\n")
    assert out[1][1].startswith(b"SIP/2.0 200 ")


def test_udp_api_unchanged_alongside_streams(uas: SipEngine) -> None:
    d = new_dialog(("127.0.0.1", 5070), UAS)
    uas.receive_datagram(request("OPTIONS", d), ("127.0.0.1", 5070), 1.0)
    ((data, addr),) = uas.datagrams_to_send()
    assert data.startswith(b"SIP/2.0 200 ") and addr == ("127.0.0.1", 5070)
    assert uas.stream_data_to_send() == []
