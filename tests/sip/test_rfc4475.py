"""RFC 4475 torture messages: parse (+ validate requests) and compare with the expected outcome.

"ok" means the message is accepted (a request then reaches transaction logic); a number is the
status code of the LocalSipError raised (the answer a UAS sends); "drop" means a response that
fails to parse (never answered). Where the RFC allows a choice we document ours next to the entry.
"""

from __future__ import annotations

import csv
from typing import Literal

import pytest

from callcenter.sip.errors import LocalSipError
from callcenter.sip.headers import CSeq, NameAddress, parse_contacts, parse_vias
from callcenter.sip.message import SipRequest, SipResponse
from callcenter.sip.parser import StreamParser, parse_message
from callcenter.sip.uri import SipUri
from callcenter.sip.validation import validate_request
from tests.sip.fixtures import RFC4475_DIR, load_rfc4475

Expected = int | Literal["ok", "drop"]

# name: (expected outcome, RFC 4475 section)
EXPECTED: dict[str, tuple[Expected, str]] = {
    "wsinv": ("ok", "3.1.1.1"),
    "intmeth": (501, "3.1.1.2"),
    "esc01": ("ok", "3.1.1.3"),
    "escnull": ("ok", "3.1.1.4"),
    "esc02": (501, "3.1.1.5"),
    "lwsdisp": ("ok", "3.1.1.6"),
    "longreq": ("ok", "3.1.1.7"),
    "dblreq": ("ok", "3.1.1.8"),
    "semiuri": ("ok", "3.1.1.9"),
    "transports": ("ok", "3.1.1.10"),
    "mpart01": ("ok", "3.1.1.11"),
    "unreason": ("ok", "3.1.1.12"),
    "noreason": ("ok", "3.1.1.13"),
    "badinv01": (400, "3.1.2.1"),
    "clerr": (400, "3.1.2.2"),
    "ncl": (400, "3.1.2.3"),
    "scalar02": (400, "3.1.2.4"),
    "scalarlg": ("drop", "3.1.2.5"),
    "quotbal": (400, "3.1.2.6"),
    "ltgtruri": (400, "3.1.2.7"),
    "lwsruri": (400, "3.1.2.8"),
    "lwsstart": ("ok", "3.1.2.9"),  # choice: tolerate the extra SP, never forward it
    "trws": ("ok", "3.1.2.10"),  # choice: tolerate the trailing SP
    "escruri": ("ok", "3.1.2.11"),  # choice: keep ?Route=... in the URI, never apply it
    "baddate": ("ok", "3.1.2.12"),  # choice: the Date value is never used, so ignore it
    "regbadct": (400, "3.1.2.13"),
    "badaspec": (400, "3.1.2.14"),
    "baddn": (400, "3.1.2.15"),
    "badvers": (505, "3.1.2.16"),
    "mismatch01": (400, "3.1.2.17"),
    "mismatch02": (501, "3.1.2.18"),
    "bigcode": ("drop", "3.1.2.19"),
    "badbranch": ("ok", "3.2.1"),  # the transaction layer decides (RFC 2543 matching)
    "insuf": (400, "3.3.1"),
    "unkscm": (416, "3.3.2"),
    "novelsc": (416, "3.3.3"),
    "unksm2": (400, "3.3.4"),  # registrar view: the AOR must be sip/sips
    "bext01": (420, "3.3.5"),
    "invut": (415, "3.3.6"),
    "regaut01": ("ok", "3.3.7"),  # unknown Authorization scheme: left to the registrar/auth
    "multi01": (400, "3.3.8"),
    "mcl01": (400, "3.3.9"),
    "bcast": ("ok", "3.3.10"),  # parses; the engine discards it (no matching transaction)
    "zeromf": ("ok", "3.3.11"),  # Max-Forwards 0 is fine for a UAS
    "cparam01": ("ok", "3.3.12"),
    "cparam02": ("ok", "3.3.13"),
    "regescrt": ("ok", "3.3.14"),
    "sdp01": (406, "3.3.15"),
    "inv2543": ("ok", "3.4.1"),
}

KNOWN = frozenset(
    "INVITE ACK BYE CANCEL OPTIONS REGISTER INFO PRACK UPDATE SUBSCRIBE NOTIFY REFER MESSAGE "
    "PUBLISH".split()
)
# The torture profile: a UAS that also registers and takes MESSAGE, so every path is exercised.
ALLOWED = frozenset("INVITE ACK BYE CANCEL OPTIONS INFO REGISTER MESSAGE".split())
SUPPORTED = frozenset({"replaces", "timer", "100rel"})


def outcome(data: bytes) -> tuple[Expected, SipRequest | SipResponse | LocalSipError]:
    try:
        msg = parse_message(data)
    except LocalSipError as exc:
        if exc.partial is None:
            return "drop", exc
        return exc.status_code, exc
    if isinstance(msg, SipRequest):
        try:
            validate_request(
                msg, supported_extensions=SUPPORTED, known_methods=KNOWN, allowed_methods=ALLOWED
            )
        except LocalSipError as exc:
            return exc.status_code, exc
    return "ok", msg


def index_rows() -> list[dict[str, str]]:
    with (RFC4475_DIR / "INDEX.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_table_covers_index() -> None:
    rows = index_rows()
    assert len(rows) == 49
    assert {r["name"]: r["rfc_section"] for r in rows} == {k: v[1] for k, v in EXPECTED.items()}
    for row in rows:
        expected = EXPECTED[row["name"]][0]
        if row["category"] == "valid":
            assert expected == "ok" or row["name"] in ("intmeth", "esc02")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rfc4475(name: str) -> None:
    expected, _section = EXPECTED[name]
    got, detail = outcome(load_rfc4475(name))
    assert got == expected, f"{name}: {detail!r}"
    if isinstance(detail, LocalSipError) and got != "drop":
        # an answerable error always comes with the request as far as it was parsed
        assert isinstance(detail.partial, SipRequest)


def test_error_details() -> None:
    def err(name: str) -> LocalSipError:
        _, detail = outcome(load_rfc4475(name))
        assert isinstance(detail, LocalSipError)
        return detail

    allow = ("Allow", "ACK, BYE, CANCEL, INFO, INVITE, MESSAGE, OPTIONS, REGISTER")
    assert err("intmeth").extra_headers == (allow,)
    assert err("esc02").extra_headers == (allow,)
    assert err("mismatch02").extra_headers == (allow,)
    assert err("bext01").extra_headers == (
        ("Unsupported", "nothingSupportsThis, nothingSupportsThisEither"),
    )
    assert err("invut").extra_headers == (("Accept", "application/sdp"),)
    assert str(err("clerr")) == "Content-Length 9999 exceeds the 154 body bytes received"
    assert str(err("ncl")) == "invalid Content-Length '-999'"
    assert str(err("mcl01")) == "conflicting Content-Length values 13, 5 (RFC 3261 section 18.3)"
    assert str(err("scalar02")) == (
        "CSeq number 36893488147419103232 is out of range (0 .. 2**31-1, RFC 3261 section 8.1.1.5)"
    )
    assert str(err("insuf")) == (
        "missing mandatory header(s): Call-ID, From, To (RFC 3261 section 8.1.1)"
    )
    assert str(err("multi01")) == "Call-ID header repeated with different values"
    assert str(err("mismatch01")) == (
        "CSeq method 'INVITE' does not match request method 'OPTIONS' (RFC 3261 section 8.1.1.5)"
    )
    assert str(err("baddn")) == (
        "invalid From header: display name 'Bell, Alexander' must be quoted (RFC 3261 section 25.1)"
    )
    assert (
        str(err("badaspec")) == "invalid To header: whitespace inside < sip:t.watson@example.org >"
    )
    assert str(err("quotbal")).startswith("invalid To header: unterminated quoted string")
    assert str(err("badinv01")) == "empty parameter in Via parameters ';;'"
    assert str(err("unkscm")) == "Request-URI scheme 'nobodyknowsthisscheme' is not supported"
    assert str(err("bigcode")) == "status code '4294967301' is not a 3-digit number"


def test_wsinv_values() -> None:
    req = parse_message(load_rfc4475("wsinv"))
    assert isinstance(req, SipRequest)
    h = req.headers
    assert NameAddress.parse(h.get("To") or "").tag == "1918181833n"
    from_ = NameAddress.parse(h.get("From") or "")
    assert (from_.display_name, from_.tag) == ('J Rosenberg \\"', "98asjd8")
    assert CSeq.parse(h.get("CSeq") or "") == CSeq(9, "INVITE")
    assert h.get("Max-Forwards") == "0068"
    assert [(v.transport, v.branch) for v in parse_vias(h)] == [
        ("UDP", "390skdjuw"),
        ("TCP", "z9hG4bK9ikj8"),
        ("UDP", "z9hG4bK30239"),
    ]
    (contact,) = parse_contacts(h)
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert h.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert len(req.body) == 150


def test_escapes_unescaped_once() -> None:
    esc01 = parse_message(load_rfc4475("esc01"))
    assert SipUri.parse(esc01.uri).user_unescaped == "sips:user@example.com"  # type: ignore[union-attr]
    escnull = parse_message(load_rfc4475("escnull"))
    users = [SipUri.parse(c.uri).user_unescaped for c in parse_contacts(escnull.headers)]
    assert users == ["\x00", "\x00\x00"]
    to = SipUri.parse(NameAddress.parse(escnull.headers.get("To") or "").uri)
    assert to.user_unescaped == "null-\x00-null"


def test_intmeth_and_esc02_details() -> None:
    intmeth = parse_message(load_rfc4475("intmeth"))
    assert isinstance(intmeth, SipRequest)
    uri = SipUri.parse(intmeth.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    to = NameAddress.parse(intmeth.headers.get("To") or "")
    assert to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    esc02 = parse_message(load_rfc4475("esc02"))
    assert len(parse_contacts(esc02.headers)) == 2  # C%6Fntact is another header


def test_framing_cases() -> None:
    dblreq = parse_message(load_rfc4475("dblreq"))
    assert isinstance(dblreq, SipRequest) and dblreq.method == "REGISTER" and dblreq.body == b""
    mpart = parse_message(load_rfc4475("mpart01"))
    assert len(mpart.body) == int(mpart.headers.get("Content-Length") or "-1")
    assert b"\x00" in mpart.body
    inv2543 = parse_message(load_rfc4475("inv2543"))
    assert inv2543.body.startswith(b"v=0") and inv2543.body.endswith(b"RTP/AVP 0\r\n")
    longreq = parse_message(load_rfc4475("longreq"))
    assert len(longreq.headers.get("Call-ID") or "") > 100
    semiuri = parse_message(load_rfc4475("semiuri"))
    assert SipUri.parse(semiuri.uri).user == "user;par=u%40example.net"  # type: ignore[union-attr]
    unreason = parse_message(load_rfc4475("unreason"))
    assert isinstance(unreason, SipResponse) and unreason.reason.startswith("= 2**3 * 5**2 ")


def test_cparam_and_regescrt_bindings() -> None:
    (c1,) = parse_contacts(parse_message(load_rfc4475("cparam01")).headers)
    assert c1.params == (("unknownparam", None),) and not SipUri.parse(c1.uri).params
    (c2,) = parse_contacts(parse_message(load_rfc4475("cparam02")).headers)
    assert SipUri.parse(c2.uri).has_param("unknownparam")
    (c3,) = parse_contacts(parse_message(load_rfc4475("regescrt")).headers)
    assert SipUri.parse(c3.uri).headers == (("Route", "%3Csip:sip.example.com%3E"),)


@pytest.mark.parametrize(
    ("name", "broken", "count"),
    [("clerr", False, 0), ("ncl", True, 1), ("mcl01", True, 1), ("wsinv", False, 1)],
)
def test_over_tcp(name: str, broken: bool, count: int) -> None:
    parser = StreamParser()
    out = parser.feed(load_rfc4475(name))
    assert parser.broken is broken
    assert len(out) == count
