from __future__ import annotations

import pytest

from callcenter.sip.errors import LocalSipError, SipParseError, VersionNotSupportedError
from callcenter.sip.headers import CSeq, NameAddress, parse_vias
from callcenter.sip.message import SipRequest, SipResponse
from callcenter.sip.parser import StreamParser, is_keepalive, parse_message
from tests.sip.fixtures import load, names

# Fixtures whose serialization differs from the wire on purpose (whitespace normalization).
NOT_BYTE_EXACT = {
    # sipp pads Content-Length with spaces; values are stored stripped.
    "sipp_uac_invite": (b"Content-Length:   129", b"Content-Length: 129"),
}
VALID = [n for n in names() if not n.startswith("invalid_")]


def request(data: bytes) -> SipRequest:
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    return msg


def response(data: bytes) -> SipResponse:
    msg = parse_message(data)
    assert isinstance(msg, SipResponse)
    return msg


def error(data: bytes) -> LocalSipError:
    with pytest.raises(LocalSipError) as info:
        parse_message(data)
    return info.value


def build(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


BASE = (
    "OPTIONS sip:3975@127.0.0.1 SIP/2.0",
    "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1;rport",
    "From: <sip:a@127.0.0.1>;tag=1",
    "To: <sip:3975@127.0.0.1>",
    "Call-ID: c1@127.0.0.1",
    "CSeq: 1 OPTIONS",
    "Max-Forwards: 70",
)


@pytest.mark.parametrize("name", VALID)
def test_fixture_round_trip(name: str) -> None:
    wire = load(name)
    msg = parse_message(wire)
    expected = wire
    if name in NOT_BYTE_EXACT:
        old, new = NOT_BYTE_EXACT[name]
        assert old in wire
        expected = wire.replace(old, new)
    assert bytes(msg) == expected
    # and the serialized form parses to the same message
    again = parse_message(bytes(msg))
    assert again.headers == msg.headers and again.body == msg.body


def test_baresip_invite_fields() -> None:
    req = request(load("baresip_invite"))
    assert req.method == "INVITE"
    assert req.uri == "sip:3975@127.0.0.1:5688"
    assert req.headers.get("Supported") == ""
    assert req.call_id == "4083819c043fd610"
    assert len(req.body) == int(req.headers.get("Content-Length") or "-1")
    (via,) = parse_vias(req.headers)
    assert via.rport is True and via.branch == "z9hG4bK8cabcbcc7067da62"
    assert CSeq.parse(req.headers.get("CSeq") or "") == CSeq(29709, "INVITE")


def test_kamailio_two_vias_and_record_route() -> None:
    req = request(load("kamailio_proxied_invite"))
    vias = parse_vias(req.headers)
    assert [v.port for v in vias] == [5070, 5090]
    assert vias[1].received == "127.0.0.1" and vias[1].rport == 5090
    assert req.headers.get("Record-Route") == "<sip:127.0.0.1:5070;lr;ftag=as1d2f3g4h;did=a1c.b2d1>"


def test_asterisk_responses() -> None:
    resp = response(load("asterisk_register_401"))
    assert (resp.status_code, resp.reason) == (401, "Unauthorized")
    assert len(resp.headers.get_all("WWW-Authenticate")) == 2
    ok = response(load("asterisk_register_200"))
    assert ok.status_code == 200 and ok.headers.get("Expires") == "300"


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        (
            "invalid_cseq_range",
            400,
            "CSeq number 2147483648 is out of range (0 .. 2**31-1, RFC 3261 section 8.1.1.5)",
        ),
        ("invalid_no_via", 400, "missing mandatory header(s): Via (RFC 3261 section 8.1.1)"),
        ("invalid_max_forwards", 400, "Max-Forwards 256 is out of range (0 .. 255)"),
        (
            "invalid_via_port",
            400,
            "port 70000 out of range in Via 'SIP/2.0/UDP 127.0.0.1:70000;branch=z9hG4bK-bad-4'",
        ),
    ],
)
def test_invalid_fixtures(name: str, status: int, message: str) -> None:
    exc = error(load(name))
    assert exc.status_code == status
    assert str(exc) == message
    assert isinstance(exc.partial, SipRequest)
    assert exc.partial.method == "OPTIONS"


def test_leading_crlf_compact_and_case() -> None:
    data = b"\r\n\r\n" + build(
        "INVITE sip:x@127.0.0.1 SIP/2.0",
        "v: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK-2",
        "f: <sip:a@127.0.0.1>;tag=1",
        "t: sip:x@127.0.0.1",
        "i: c2",
        "cSeQ: 3 INVITE",
        "c: application/sdp",
        "l: 3",
        body=b"v=0",
    )
    req = request(data)
    assert req.headers.get("Call-ID") == "c2"
    assert req.headers.get("Content-Type") == "application/sdp"
    assert req.body == b"v=0"
    assert [name for name, _ in req.headers][:2] == ["v", "f"]  # names kept as received


def test_folding_and_whitespace_around_colon() -> None:
    data = build(
        "OPTIONS sip:x@127.0.0.1 SIP/2.0",
        "Via  :  SIP/2.0/UDP 127.0.0.1",
        "\t;branch=z9hG4bK-3",
        "From: <sip:a@127.0.0.1>",
        "  ;tag=9",
        "To: <sip:x@127.0.0.1>",
        "Call-ID: c3",
        "CSeq: 7",
        " OPTIONS",
        "X-Empty:",
        "Subject: a,",
        "  b",
    )
    req = request(data)
    assert req.headers.get("Via") == "SIP/2.0/UDP 127.0.0.1 ;branch=z9hG4bK-3"
    assert NameAddress.parse(req.headers.get("From") or "").tag == "9"
    assert req.headers.get("CSeq") == "7 OPTIONS"
    assert req.headers.get("X-Empty") == ""
    assert req.headers.get("Subject") == "a, b"


def test_repeated_and_multi_value_headers() -> None:
    req = request(
        build(
            *BASE,
            "Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-a, SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK-b",
            "Supported: timer",
            "Supported: replaces, 100rel",
        )
    )
    assert [v.host for v in parse_vias(req.headers)] == ["127.0.0.1", "10.0.0.1", "10.0.0.2"]
    assert req.headers.get_list("Supported") == ["timer", "replaces", "100rel"]


def test_identical_repeated_single_value_header_is_tolerated() -> None:
    req = request(build(*BASE, "Call-ID: c1@127.0.0.1"))
    assert req.call_id == "c1@127.0.0.1"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("Call-ID: other",), "Call-ID header repeated with different values"),
        (("To: <sip:b@127.0.0.1>",), "To header repeated with different values"),
        (("CSeq: 2 OPTIONS",), "CSeq header repeated with different values"),
        (("Max-Forwards: 3",), "Max-Forwards header repeated with different values"),
        (
            ("Content-Length: 0", "l: 1"),
            "conflicting Content-Length values 0, 1 (RFC 3261 section 18.3)",
        ),
        (("Content-Length: -1",), "invalid Content-Length '-1'"),
        (("Content-Length: 12345678901",), "Content-Length 12345678901 is too large"),
        (("Content-Length: 10",), "Content-Length 10 exceeds the 0 body bytes received"),
        (("Expires: 4294967296",), "Expires 4294967296 is out of range (0 .. 4294967295)"),
        (("Contact: <sip:a@127.0.0.1>;;",), "empty parameter in <sip:a@127.0.0.1> parameters ';;'"),
        (
            ("Route: <sip:p@127.0.0.1;lr>, ,<sip:q@127.0.0.1>",),
            "empty element in Route '<sip:p@127.0.0.1;lr>, ,<sip:q@127.0.0.1>'",
        ),
        (("Content-Type: sdp",), "invalid Content-Type 'sdp'"),
        (("Bad Header: x",), "invalid header name 'Bad Header'"),
        (("NoColon",), "header line without a colon: 'NoColon'"),
    ],
)
def test_header_errors(extra: tuple[str, ...], message: str) -> None:
    exc = error(build(*BASE, *extra))
    assert type(exc) is SipParseError
    assert str(exc) == message
    assert isinstance(exc.partial, SipRequest) and exc.partial.call_id == "c1@127.0.0.1"


def test_continuation_before_any_header() -> None:
    exc = error(b"OPTIONS sip:x@h SIP/2.0\r\n folded\r\n" + build(*BASE[1:]))
    assert str(exc) == "continuation line before any header"


def test_udp_framing_without_content_length_takes_rest_of_datagram() -> None:
    req = request(build(*BASE, "Content-Type: text/plain", body=b"hello\r\nworld"))
    assert req.body == b"hello\r\nworld"


def test_udp_framing_ignores_trailing_junk() -> None:
    req = request(build(*BASE, "Content-Length: 2", body=b"okJUNK"))
    assert req.body == b"ok"


def test_body_with_nul_and_bare_lf() -> None:
    body = b"\x00\x01\n\r\x00binary"
    req = request(
        build(
            *BASE,
            "Content-Type: application/octet-stream",
            f"Content-Length: {len(body)}",
            body=body,
        )
    )
    assert req.body == body


def test_very_long_values() -> None:
    long_id = "x" * 20000
    req = request(build(*BASE[:4], f"Call-ID: {long_id}", *BASE[5:], f"X-Long: {'y' * 50000}"))
    assert req.call_id == long_id
    assert len(req.headers.get("X-Long") or "") == 50000


def test_header_section_without_empty_line_is_tolerated_over_udp() -> None:
    data = "\r\n".join(BASE).encode()
    req = request(data)
    assert req.body == b"" and req.call_id == "c1@127.0.0.1"


def test_bare_lf_line_endings() -> None:
    req = request(("\n".join(BASE) + "\n\n").encode())
    assert req.headers.get("CSeq") == "1 OPTIONS"


def test_latin1_header_section_is_decoded() -> None:
    data = build(*BASE[:2], 'From: "H\xe9l\xe8ne" <sip:a@127.0.0.1>;tag=1', *BASE[3:])
    data = data.replace("H\xe9l\xe8ne".encode(), "H\xe9l\xe8ne".encode("latin-1"))
    req = request(data)
    assert NameAddress.parse(req.headers.get("From") or "").display_name == "H\xe9l\xe8ne"


def test_utf8_display_name() -> None:
    req = request(build(*BASE[:2], 'From: "Zoé Lefèvre" <sip:a@127.0.0.1>;tag=1', *BASE[3:]))
    assert NameAddress.parse(req.headers.get("From") or "").display_name == "Zoé Lefèvre"


@pytest.mark.parametrize(
    ("start", "exc_type", "message"),
    [
        (
            "OPTIONS <sip:x@h> SIP/2.0",
            SipParseError,
            "Request-URI '<sip:x@h>' must not be enclosed in <> (RFC 3261 section 25.1)",
        ),
        (
            "OPTIONS sip:x@h; lr SIP/2.0",
            SipParseError,
            "whitespace inside the Request-URI 'sip:x@h; lr'",
        ),
        (
            "OPTIONS sip:x@h SIP/3.0",
            VersionNotSupportedError,
            "SIP version 'SIP/3.0' is not supported (only SIP/2.0)",
        ),
        ("OPTIONS sip:x@h HTTP/1.1", SipParseError, "malformed SIP-Version 'HTTP/1.1'"),
        ("OPTIONS nothing SIP/2.0", SipParseError, "Request-URI 'nothing' has no scheme"),
        (
            "OPTIONS sip:x@h:99999 SIP/2.0",
            SipParseError,
            "invalid Request-URI: port 99999 out of range in URI 'sip:x@h:99999'",
        ),
    ],
)
def test_request_line_errors_keep_partial(
    start: str, exc_type: type[LocalSipError], message: str
) -> None:
    exc = error(build(start, *BASE[1:]))
    assert type(exc) is exc_type
    assert str(exc) == message
    assert isinstance(exc.partial, SipRequest)
    assert exc.partial.headers.get("Call-ID") == "c1@127.0.0.1"


def test_version_error_wins_over_header_errors() -> None:
    exc = error(build("OPTIONS sip:x@h SIP/7.0", "Via: SIP/7.0/UDP h", "CSeq: 1 OPTIONS"))
    assert exc.status_code == 505


@pytest.mark.parametrize("start", ["GARBAGE", "", "A B", "IN(VITE sip:x@h SIP/2.0"])
def test_unanswerable_request_line_has_no_partial(start: str) -> None:
    exc = error(build(start, *BASE[1:]))
    assert exc.status_code == 400 and exc.partial is None
    assert str(exc).startswith("malformed request line")


def test_extra_spaces_in_request_line_tolerated() -> None:
    req = request(build("OPTIONS  sip:x@127.0.0.1  SIP/2.0  ", *BASE[1:]))
    assert (req.method, req.uri, req.version) == ("OPTIONS", "sip:x@127.0.0.1", "SIP/2.0")


RESP = (
    "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-r",
    "From: <sip:a@127.0.0.1>;tag=1",
    "To: <sip:b@127.0.0.1>;tag=2",
    "Call-ID: r1",
    "CSeq: 1 INVITE",
    "Content-Length: 0",
)


@pytest.mark.parametrize(
    ("status_line", "code", "reason"),
    [
        ("SIP/2.0 180 Ringing", 180, "Ringing"),
        ("SIP/2.0 100 ", 100, ""),
        ("SIP/2.0 200", 200, ""),
        ("SIP/2.0 603 Décliné  par  l'usager", 603, "Décliné  par  l'usager"),
    ],
)
def test_responses(status_line: str, code: int, reason: str) -> None:
    resp = response(build(status_line, *RESP))
    assert (resp.status_code, resp.reason) == (code, reason)


@pytest.mark.parametrize(
    ("status_line", "extra", "message"),
    [
        ("SIP/2.0 4294967301 big", (), "status code '4294967301' is not a 3-digit number"),
        ("SIP/2.0 099 low", (), "status code 99 is outside 100..699 (RFC 3261 section 7.2)"),
        ("SIP/2.0 700 high", (), "status code 700 is outside 100..699 (RFC 3261 section 7.2)"),
        ("SIP/2.0 abc x", (), "status code 'abc' is not a 3-digit number"),
        ("SIP/3.0 200 OK", (), "unsupported SIP version 'SIP/3.0' in status line"),
        (
            "SIP/2.0 503 Busy",
            ("Retry-After: 949302838503028349304023988",),
            "Retry-After 949302838503028349304023988 is out of range (0 .. 4294967295)",
        ),
    ],
)
def test_bad_responses_are_dropped(status_line: str, extra: tuple[str, ...], message: str) -> None:
    exc = error(build(status_line, *RESP, *extra))
    assert str(exc) == message
    assert exc.partial is None  # responses are never answered


def test_retry_after_with_comment_and_params() -> None:
    resp = response(build("SIP/2.0 503 Busy", *RESP, "Retry-After: 120 (in a meeting);duration=60"))
    assert resp.status_code == 503


def test_empty_message() -> None:
    assert str(error(b"\r\n\r\n")) == "empty message"


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"\r\n\r\n", True), (b"\r\n", True), (b"", False), (b"\r\nOPTIONS", False), (b"\x00", False)],
)
def test_is_keepalive(data: bytes, expected: bool) -> None:
    assert is_keepalive(data) is expected


# -- StreamParser (TCP framing, RFC 3261 section 18.3) ---------------------------------------


def test_stream_byte_by_byte_with_keepalives() -> None:
    one = load("baresip_invite")
    two = load("kamailio_options")
    stream = b"\r\n\r\n" + one + b"\r\n\r\n" + two
    parser = StreamParser()
    out: list[object] = []
    for i in range(len(stream)):
        out.extend(parser.feed(stream[i : i + 1]))
    assert [type(m) for m in out] == [SipRequest, SipRequest]
    assert bytes(out[1]) == two  # type: ignore[call-overload]
    assert parser.keepalive_pings == 2
    assert not parser.broken


def test_stream_pipelined_in_one_chunk() -> None:
    msgs = [load("baresip_ack"), load("baresip_bye"), load("asterisk_register_200")]
    out = StreamParser().feed(b"".join(msgs))
    assert [bytes(m) for m in out if not isinstance(m, LocalSipError)] == msgs


def test_stream_waits_for_body() -> None:
    data = load("linphone_invite")
    parser = StreamParser()
    assert parser.feed(data[:-10]) == []
    (msg,) = parser.feed(data[-10:])
    assert isinstance(msg, SipRequest) and msg.body.endswith(b"ccm tmmbr\r\n")


def test_stream_per_message_error_does_not_break() -> None:
    bad = build(*BASE[:5], "CSeq: 99999999999 OPTIONS", "Content-Length: 0")
    out = StreamParser().feed(bad + load("kamailio_options"))
    assert isinstance(out[0], SipParseError) and isinstance(out[1], SipRequest)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (build(*BASE), "missing Content-Length on a stream (RFC 3261 section 18.3)"),
        (build(*BASE, "Content-Length: -999"), "invalid Content-Length '-999'"),
        (
            build(*BASE, "Content-Length: 13", "l: 5"),
            "conflicting Content-Length values 13, 5 (RFC 3261 section 18.3)",
        ),
        (build(*BASE, "Content-Length: 2000000"), "Content-Length 2000000 exceeds 1048576"),
    ],
)
def test_stream_framing_errors_break(data: bytes, message: str) -> None:
    parser = StreamParser()
    out = parser.feed(data)
    assert len(out) == 1 and str(out[0]) == message
    assert parser.broken
    assert parser.feed(load("kamailio_options")) == []


def test_stream_oversized_header_section_breaks() -> None:
    parser = StreamParser(max_header=1000)
    out = parser.feed(b"OPTIONS sip:x@h SIP/2.0\r\nX: " + b"a" * 2000)
    assert [str(e) for e in out] == ["header section exceeds 1000 bytes"]
    assert parser.broken
