from __future__ import annotations

import pytest

from callcenter.sip.errors import (
    BadExtensionError,
    LocalSipError,
    MethodNotAllowedError,
    MethodNotImplementedError,
    NotAcceptableError,
    SipParseError,
    UnsupportedMediaTypeError,
    UnsupportedUriSchemeError,
)
from callcenter.sip.message import SipRequest
from callcenter.sip.parser import parse_message
from callcenter.sip.validation import validate_request
from tests.sip.fixtures import load, names

KNOWN = frozenset("INVITE ACK BYE CANCEL OPTIONS REGISTER INFO PRACK UPDATE MESSAGE REFER".split())
ALLOWED = frozenset("INVITE ACK BYE CANCEL OPTIONS INFO".split())
SUPPORTED = frozenset({"replaces", "timer"})


def req(*lines: str, body: bytes = b"") -> SipRequest:
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    msg = parse_message(data)
    assert isinstance(msg, SipRequest)
    return msg


def invite(
    *extra: str,
    method: str = "INVITE",
    cseq_method: str | None = None,
    uri: str = "sip:3975@127.0.0.1",
    body: bytes = b"",
) -> SipRequest:
    return req(
        f"{method} {uri} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-v;rport",
        "From: <sip:a@127.0.0.1>;tag=1",
        "To: <sip:3975@127.0.0.1>",
        "Call-ID: v1",
        f"CSeq: 1 {cseq_method or method}",
        "Max-Forwards: 70",
        *extra,
        f"Content-Length: {len(body)}",
        body=body,
    )


def check(msg: SipRequest, **kw: frozenset[str]) -> None:
    validate_request(
        msg,
        supported_extensions=kw.get("supported", SUPPORTED),
        known_methods=kw.get("known", KNOWN),
        allowed_methods=kw.get("allowed", ALLOWED),
    )


def fails(msg: SipRequest, exc_type: type[LocalSipError], **kw: frozenset[str]) -> LocalSipError:
    with pytest.raises(LocalSipError) as info:
        check(msg, **kw)
    assert type(info.value) is exc_type
    assert info.value.partial is msg
    return info.value


SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)


@pytest.mark.parametrize(
    "name",
    [n for n in names() if not n.startswith("invalid_") and "register" not in n],
)
def test_real_uas_requests_pass(name: str) -> None:
    msg = parse_message(load(name))
    if isinstance(msg, SipRequest):
        check(msg)


def test_ok_invite_with_sdp_and_max_forwards_zero() -> None:
    check(invite("Max-Forwards: 70", "Content-Type: application/sdp", body=SDP))
    check(
        req(
            "OPTIONS sip:x@h SIP/2.0",
            "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
            "From: <sip:a@h>;tag=1",
            "To: <sip:x@h>",
            "Call-ID: z",
            "CSeq: 1 OPTIONS",
            "Max-Forwards: 0",
        )
    )


def test_unknown_method_is_501_with_allow() -> None:
    exc = fails(invite(method="NEWMETHOD", cseq_method="INVITE"), MethodNotImplementedError)
    assert exc.status_code == 501
    assert exc.extra_headers == (("Allow", "ACK, BYE, CANCEL, INFO, INVITE, OPTIONS"),)
    assert str(exc) == "method 'NEWMETHOD' is not implemented"


def test_known_not_allowed_is_405() -> None:
    exc = fails(invite(method="MESSAGE"), MethodNotAllowedError)
    assert exc.status_code == 405 and exc.extra_headers[0][0] == "Allow"
    assert str(exc) == "method MESSAGE is not allowed here"


def test_method_is_case_sensitive() -> None:
    fails(invite(method="invite"), MethodNotImplementedError)


def test_cseq_mismatch_is_400() -> None:
    exc = fails(invite(method="OPTIONS", cseq_method="INVITE"), SipParseError)
    assert str(exc) == (
        "CSeq method 'INVITE' does not match request method 'OPTIONS' (RFC 3261 section 8.1.1.5)"
    )


@pytest.mark.parametrize("uri", ["tel:+33612345678", "sips:3975@127.0.0.1"])
def test_accepted_schemes(uri: str) -> None:
    check(invite(uri=uri))


def test_unknown_scheme_is_416() -> None:
    exc = fails(invite(uri="mailto:x@example.com"), UnsupportedUriSchemeError)
    assert exc.status_code == 416
    with pytest.raises(UnsupportedUriSchemeError):
        validate_request(
            invite(uri="tel:+1"),
            supported_extensions=SUPPORTED,
            known_methods=KNOWN,
            allowed_methods=ALLOWED,
            uri_schemes=frozenset(),
        )


def test_require_unknown_is_420_with_unsupported() -> None:
    exc = fails(invite("Require: timer, Foo, bar"), BadExtensionError)
    assert exc.status_code == 420
    assert exc.extra_headers == (("Unsupported", "Foo, bar"),)
    check(
        invite("Require: TIMER", "Proxy-Require: nothing-we-know")
    )  # case-insensitive; PR ignored


def test_require_ignored_for_ack_and_cancel() -> None:
    check(invite("Require: foo", method="ACK"))
    check(invite("Require: foo", method="CANCEL"))


def test_unknown_body_type_is_415_with_accept() -> None:
    exc = fails(
        invite("Content-Type: application/unknownformat", body=b"<audio/>"),
        UnsupportedMediaTypeError,
    )
    assert exc.status_code == 415
    assert exc.extra_headers == (("Accept", "application/sdp"),)
    assert str(exc) == "body type 'application/unknownformat' is not supported"


def test_content_type_parameters_and_case() -> None:
    check(invite("Content-Type: Application/SDP; charset=utf-8", body=SDP))


def test_info_body_not_checked_against_sdp() -> None:
    check(invite("Content-Type: application/dtmf-relay", method="INFO", body=b"Signal=5\r\n"))


def test_body_without_content_type_is_400() -> None:
    exc = fails(invite(body=SDP), SipParseError)
    assert str(exc) == "INVITE has a body but no Content-Type (RFC 3261 section 20.15)"


def test_content_encoding_is_415() -> None:
    exc = fails(
        invite("Content-Type: application/sdp", "Content-Encoding: gzip", body=SDP),
        UnsupportedMediaTypeError,
    )
    assert exc.extra_headers == (("Accept-Encoding", "identity"),)


@pytest.mark.parametrize(
    ("accept", "ok"),
    [
        ("application/sdp", True),
        ("text/plain, application/SDP;level=1", True),
        ("application/*", True),
        ("*/*", True),
        ("", True),  # liberal: an empty Accept is read as no preference
        ("text/nobodyKnowsThis", False),
        ("text/*", False),
    ],
)
def test_accept(accept: str, ok: bool) -> None:
    msg = invite(f"Accept: {accept}")
    if ok:
        check(msg)
    else:
        exc = fails(msg, NotAcceptableError)
        assert exc.status_code == 406 and exc.extra_headers == (("Accept", "application/sdp"),)


def test_register_aor_must_be_sip() -> None:
    allowed = ALLOWED | {"REGISTER"}
    reg = parse_message(load("baresip_register"))
    assert isinstance(reg, SipRequest)
    check(reg, allowed=allowed)
    bad = req(
        "REGISTER sip:example.com SIP/2.0",
        "To: isbn:2983792873",
        "From: <http://www.example.com>;tag=3",
        "Call-ID: r",
        "CSeq: 1 REGISTER",
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        "l: 0",
    )
    exc = fails(bad, SipParseError, allowed=allowed)
    assert str(exc) == (
        "REGISTER address-of-record scheme 'isbn' is not sip or sips (RFC 3261 section 10.3)"
    )


def test_order_method_before_everything() -> None:
    msg = invite(
        "Require: foo",
        "Content-Type: x/y",
        uri="mailto:a@b",
        method="FOO",
        cseq_method="BAR",
        body=b"x",
    )
    fails(msg, MethodNotImplementedError)
