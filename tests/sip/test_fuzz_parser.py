"""Fuzzing: whatever arrives, the wire layer raises nothing but SipError subclasses.

5 000 examples in all (derandomized, so CI is reproducible): random bytes, byte-level mutations
(flip/insert/delete/truncate/splice) of the valid fixtures and RFC 4475 messages, and
header-level recombinations. ``bench/fuzz_sip.py`` runs 100 000 of the same kind.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callcenter.sip.engine import ALLOWED_METHODS, KNOWN_METHODS
from callcenter.sip.errors import LocalSipError, SipError
from callcenter.sip.headers import (
    CSeq,
    NameAddress,
    Via,
    parse_contacts,
    parse_int_header,
    parse_name_addresses,
    parse_vias,
)
from callcenter.sip.message import SipRequest, SipResponse
from callcenter.sip.parser import StreamParser, parse_message
from callcenter.sip.uri import SipUri
from callcenter.sip.validation import validate_request
from tests.sip.fixtures import RFC4475_DIR, load, names

SEEDS = [load(n) for n in names()] + [p.read_bytes() for p in sorted(RFC4475_DIR.glob("*.dat"))]
INTERESTING = [
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b";",
    b",",
    b"<",
    b">",
    b'"',
    b"\\",
    b"@",
    b"%",
    b"=",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"9" * 30,
    b"-1",
    b"SIP/2.0",
    b"\r\n ",
]


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def without_length(msg: SipRequest | SipResponse) -> list[tuple[str, str]]:
    # bytes() adds a Content-Length when the datagram had none (RFC 3261 section 18.3)
    return [(n, v) for n, v in msg.headers if n.lower() not in ("content-length", "l")]


def exercise(data: bytes) -> str:
    """Run every entry point on ``data``; return the outcome, let only bugs escape."""
    try:
        msg = parse_message(data)
    except LocalSipError as exc:
        assert exc.partial is None or isinstance(exc.partial, SipRequest)
        if exc.partial is not None:
            bytes(exc.partial)  # a 4xx is built from it: it must serialize
        return "error"
    wire = bytes(msg)
    again = parse_message(wire)  # what we serialize parses again, to the same message
    assert again.body == msg.body
    assert without_length(again) == without_length(msg)
    for value in msg.headers.get_all("Via"):
        try:
            Via.parse(value)
        except SipError:
            pass
    parse_vias(msg.headers)
    parse_contacts(msg.headers)
    parse_name_addresses(msg.headers, "Record-Route")
    CSeq.parse(msg.headers.get("CSeq") or "")
    for name in ("From", "To"):
        na = NameAddress.parse(msg.headers.get(name) or "")
        assert NameAddress.parse(str(na.with_tag("x"))).tag == "x"
        try:
            SipUri.parse(na.uri)
        except SipError:
            pass
    parse_int_header(msg.headers, "Max-Forwards", maximum=255)
    for via in parse_vias(msg.headers):
        try:
            _ = via.rport
        except SipError:
            pass
    if isinstance(msg, SipRequest):
        try:
            validate_request(
                msg,
                supported_extensions=frozenset({"timer"}),
                known_methods=KNOWN_METHODS,
                allowed_methods=ALLOWED_METHODS,
            )
        except LocalSipError:
            return "invalid"
    return "ok"


def stream(data: bytes, cut: int) -> None:
    parser = StreamParser()
    for chunk in (data[:cut], data[cut:]):
        for item in parser.feed(chunk):
            assert isinstance(item, (SipError, SipRequest)) or bytes(item)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice", "dup"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(INTERESTING) | st.binary(max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":
            other = draw(st.sampled_from(SEEDS))
            start = draw(st.integers(0, len(other)))
            data[pos:pos] = other[start : start + draw(st.integers(1, 200))]
        elif op == "dup":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 80))]
    return bytes(data)


HEADER_NAMES = [
    "Via",
    "v",
    "From",
    "f",
    "To",
    "t",
    "Call-ID",
    "i",
    "CSeq",
    "Contact",
    "m",
    "Max-Forwards",
    "Content-Length",
    "l",
    "Route",
    "Record-Route",
    "Require",
    "Expires",
    "Content-Type",
    "c",
    "Accept",
    "Retry-After",
    "X-Junk",
]
VALUE_ALPHABET = st.sampled_from(
    list('abc09 ;:,<>"\\@%=/.-*[]\t?&+') + ["sip:", "z9hG4bK", "SIP/2.0/UDP ", "\u00e9"]
)


@st.composite
def recombined(draw: st.DrawFn) -> bytes:
    start = draw(
        st.sampled_from(
            [
                "INVITE sip:3975@127.0.0.1 SIP/2.0",
                "OPTIONS sip:x@h SIP/2.0",
                "SIP/2.0 200 OK",
                "BYE tel:+3312 SIP/2.0",
                "REGISTER sip:h SIP/2.0",
                "SIP/2.0 99999 X",
            ]
        )
    )
    lines = [start]
    for _ in range(draw(st.integers(0, 12))):
        name = draw(st.sampled_from(HEADER_NAMES))
        value = "".join(draw(st.lists(VALUE_ALPHABET, max_size=20)))
        lines.append(f"{name}: {value}")
    body = draw(st.binary(max_size=40))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@fuzz(1000)
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    exercise(data)


@fuzz(1500)
@given(mutated(), st.integers(0, 2000))
def test_mutated_fixtures(data: bytes, cut: int) -> None:
    exercise(data)
    stream(data, cut)


@fuzz(1500)
@given(mutated(), st.integers(0, 2000))
def test_mutated_fixtures_over_tcp(data: bytes, cut: int) -> None:
    # the same mutations, fed as two TCP reads with keepalives around them
    stream(b"\r\n\r\n" + data + b"\r\n" + data, cut)


@fuzz(1000)
@given(recombined())
def test_recombined_headers(data: bytes) -> None:
    exercise(data)
