from __future__ import annotations

import pytest

from callcenter.sip.errors import SipParseError
from callcenter.sip.headers import (
    CSeq,
    NameAddress,
    Via,
    parse_contacts,
    parse_int_header,
    parse_name_addresses,
    parse_option_tags,
    parse_params,
    parse_vias,
    quote_string,
)
from callcenter.sip.message import Headers

# -- Via -------------------------------------------------------------------------------------


def test_via_fields_and_round_trip() -> None:
    text = "SIP/2.0/UDP 127.0.0.1:5090;received=10.0.0.1;rport=5090;branch=z9hG4bK9f8e"
    via = Via.parse(text)
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "UDP",
        "127.0.0.1",
        5090,
    )
    assert (via.branch, via.received, via.rport, via.maddr) == (
        "z9hG4bK9f8e",
        "10.0.0.1",
        5090,
        None,
    )
    assert via.sent_by == ("127.0.0.1", 5090)
    assert str(via) == text


def test_via_lws_and_case() -> None:
    via = Via.parse("sip  /  2.0 / tcp   [2001:db8::9] : 5061 ; branch = z9hG4bK1 ; rport")
    assert (via.protocol, via.transport, via.host, via.port) == (
        "SIP/2.0",
        "TCP",
        "[2001:db8::9]",
        5061,
    )
    assert via.rport is True and via.branch == "z9hG4bK1"
    assert str(via) == "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bK1;rport"


def test_via_rport_absent_and_bad() -> None:
    assert Via.parse("SIP/2.0/UDP h;branch=z9hG4bK1").rport is None
    with pytest.raises(SipParseError, match="invalid rport value '99999999'"):
        _ = Via.parse("SIP/2.0/UDP h;rport=99999999").rport


def test_via_with_params() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK1")
    out = via.with_params(received="127.0.0.1", rport=40000)
    assert str(out) == "SIP/2.0/UDP 10.0.0.1:5060;rport=40000;branch=z9hG4bK1;received=127.0.0.1"
    assert str(out.with_params(rport=True, branch=False)) == (
        "SIP/2.0/UDP 10.0.0.1:5060;rport;received=127.0.0.1"
    )
    assert via.params == (("rport", None), ("branch", "z9hG4bK1"))  # frozen, unchanged


def test_bare_magic_cookie_branch_parses() -> None:
    assert Via.parse("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK").branch == "z9hG4bK"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("SIP/2.0/UDP", "malformed Via 'SIP/2.0/UDP'"),
        ("SIP/2.0 h", "malformed Via 'SIP/2.0 h'"),
        ("SIP/2.0/UDP h:123456", "invalid port '123456' in Via 'SIP/2.0/UDP h:123456'"),
        ("SIP/2.0/UDP h:65536", "port 65536 out of range in Via 'SIP/2.0/UDP h:65536'"),
        ("SIP/2.0/UDP h;;", "empty parameter in Via parameters ';;'"),
        ("SIP/2.0/UDP h junk", "unexpected 'junk' where Via parameters should start"),
        ("SIP/2.0/UDP h;branch=", "parameter 'branch' has an empty value in Via"),
        ("SIP/2.0/UDP h;branch=a b", "invalid value 'a b' for parameter 'branch' in Via"),
    ],
)
def test_via_errors(value: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        Via.parse(value)
    assert str(info.value) == message


def test_parse_vias_lists_and_lines() -> None:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2"),
            ("v", "SIP/2.0/SCTP c;branch=z9hG4bK3"),
        ]
    )
    assert [(v.host, v.transport) for v in parse_vias(headers)] == [
        ("a", "UDP"),
        ("b", "TCP"),
        ("c", "SCTP"),
    ]
    with pytest.raises(SipParseError, match="empty element in Via"):
        parse_vias(Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, ,")]))


# -- NameAddress -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "display", "uri", "params", "text"),
    [
        ("<sip:a@h>", None, "sip:a@h", (), "<sip:a@h>"),
        ("sip:a@h;tag=1", None, "sip:a@h", (("tag", "1"),), "<sip:a@h>;tag=1"),
        (
            '"Agent 42" <sip:a@h>;tag=x',
            "Agent 42",
            "sip:a@h",
            (("tag", "x"),),
            '"Agent 42" <sip:a@h>;tag=x',
        ),
        ("Agent 42 <sip:a@h>", "Agent 42", "sip:a@h", (), '"Agent 42" <sip:a@h>'),
        (
            "caller<sip:caller@h>;tag=323",
            "caller",
            "sip:caller@h",
            (("tag", "323"),),
            '"caller" <sip:caller@h>;tag=323',
        ),
        ('"a\\"b\\\\c" <sip:a@h>', 'a"b\\c', "sip:a@h", (), '"a\\"b\\\\c" <sip:a@h>'),
        ('"" <sip:a@h>', "", "sip:a@h", (), '"" <sip:a@h>'),
        (
            "<sip:u@h;lr>;expires=60;q=0.5",
            None,
            "sip:u@h;lr",
            (("expires", "60"), ("q", "0.5")),
            "<sip:u@h;lr>;expires=60;q=0.5",
        ),
        ("<tel:+33612345678>", None, "tel:+33612345678", (), "<tel:+33612345678>"),
        ("isbn:2983792873", None, "isbn:2983792873", (), "<isbn:2983792873>"),
        (
            '<sip:a@h>;x="quoted;value"',
            None,
            "sip:a@h",
            (("x", '"quoted;value"'),),
            '<sip:a@h>;x="quoted;value"',
        ),
    ],
)
def test_name_address(
    value: str, display: str | None, uri: str, params: tuple[tuple[str, str | None], ...], text: str
) -> None:
    na = NameAddress.parse(value)
    assert (na.display_name, na.uri, na.params) == (display, uri, params)
    assert str(na) == text
    assert NameAddress.parse(str(na)) == na


def test_name_address_tag() -> None:
    na = NameAddress.parse("<sip:a@h>;TAG=abc")
    assert na.tag == "abc"
    assert str(na.with_tag("new")) == "<sip:a@h>;TAG=new"
    assert NameAddress.parse("<sip:a@h>").tag is None
    assert str(NameAddress.parse("<sip:a@h>").with_tag("t1")) == "<sip:a@h>;tag=t1"
    assert str(na.with_params(tag=False)) == "<sip:a@h>"


def test_quote_string_escapes_controls() -> None:
    assert quote_string('a"\\\x00\x07\tz\r\n') == '"a\\"\\\\\\\x00\\\x07\tz  "'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty name-addr"),
        (
            '"Mr. J. User <sip:j.user@example.com>',
            "unterminated quoted string in '\"Mr. J. User <sip:j.user@example.com>'",
        ),
        (
            "Bell, Alexander <sip:a@h>",
            "display name 'Bell, Alexander' must be quoted (RFC 3261 section 25.1)",
        ),
        ('"x" sip:a@h', "quoted display name not followed by <URI> in '\"x\" sip:a@h'"),
        ("<sip:a@h", "missing '>' in '<sip:a@h'"),
        ("< sip:a@h >", "whitespace inside < sip:a@h >"),
        (
            "sip:a@h?Route=x",
            "URI 'sip:a@h?Route=x' with '?' or ',' must be enclosed in <> (RFC 3261 section 20.10)",
        ),
        ("<sip:a@h>;;", "empty parameter in <sip:a@h> parameters ';;'"),
        ("<sip:a@h> junk", "unexpected 'junk' where <sip:a@h> parameters should start"),
        ("<nothing>", "'nothing' is not an absolute URI"),
        ("<sip:a@h:99999>", "port 99999 out of range in URI 'sip:a@h:99999'"),
        ('<x:"bad">', "invalid character in URI 'x:\"bad\"'"),
    ],
)
def test_name_address_errors(value: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        NameAddress.parse(value)
    assert str(info.value) == message


def test_contacts() -> None:
    h = Headers(
        [
            ("Contact", '"A, B" <sip:a@h>;expires=60, <sip:b@h;transport=tcp>;q=0.1'),
            ("m", "sip:c@h"),
        ]
    )
    contacts = parse_contacts(h)
    assert [c.uri for c in contacts] == ["sip:a@h", "sip:b@h;transport=tcp", "sip:c@h"]
    assert contacts[0].display_name == "A, B" and contacts[0].param("expires") == "60"
    (star,) = parse_contacts(Headers([("Contact", "*")]))
    assert star.is_wildcard and str(star) == "*"
    with pytest.raises(SipParseError, match=r"Contact '\*' mixed with other contacts"):
        parse_contacts(Headers([("Contact", "*, <sip:a@h>")]))
    assert parse_contacts(Headers()) == []


def test_route_list() -> None:
    h = Headers([("Route", "<sip:p1@h;lr>,<sip:p2@h;lr>"), ("Route", "<sip:p3@h;lr>")])
    assert [r.uri for r in parse_name_addresses(h, "Route")] == [
        "sip:p1@h;lr",
        "sip:p2@h;lr",
        "sip:p3@h;lr",
    ]


# -- CSeq, numbers, params, option tags ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cseq"),
    [
        ("1 INVITE", CSeq(1, "INVITE")),
        ("0009  INVITE ", CSeq(9, "INVITE")),
        ("2147483647 BYE", CSeq(2**31 - 1, "BYE")),
        ("0 ACK", CSeq(0, "ACK")),
    ],
)
def test_cseq(value: str, cseq: CSeq) -> None:
    assert CSeq.parse(value) == cseq
    assert str(cseq) == f"{cseq.number} {cseq.method}"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "2147483648 INVITE",
            "CSeq number 2147483648 is out of range (0 .. 2**31-1, RFC 3261 section 8.1.1.5)",
        ),
        (
            "36893488147419103232 REGISTER",
            "CSeq number 36893488147419103232 is out of range "
            "(0 .. 2**31-1, RFC 3261 section 8.1.1.5)",
        ),
        ("INVITE", "malformed CSeq 'INVITE'"),
        ("-1 INVITE", "malformed CSeq '-1 INVITE'"),
        ("1", "malformed CSeq '1'"),
        ("1 IN VITE", "malformed CSeq '1 IN VITE'"),
        ("١ INVITE", "malformed CSeq '١ INVITE'"),  # Arabic-Indic digit: not DIGIT
    ],
)
def test_cseq_errors(value: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        CSeq.parse(value)
    assert str(info.value) == message


def test_parse_int_header() -> None:
    h = Headers(
        [("Max-Forwards", "0068"), ("Expires", "3600"), ("Retry-After", "5 (busy);duration=9")]
    )
    assert parse_int_header(h, "Max-Forwards", maximum=255) == 68
    assert parse_int_header(h, "Expires") == 3600
    assert parse_int_header(h, "Retry-After", allow_trailing=True) == 5
    assert parse_int_header(h, "Min-Expires") is None
    for headers, message in [
        (Headers([("Expires", "1e3")]), "invalid Expires value '1e3'"),
        (Headers([("Expires", "")]), "invalid Expires value ''"),
        (
            Headers([("Expires", "1" + "0" * 100)]),
            f"Expires 1{'0' * 100} is out of range (0 .. 4294967295)",
        ),
        (
            Headers([("Expires", "1"), ("Expires", "2")]),
            "Expires header repeated with different values",
        ),
        (Headers([("Retry-After", "5x")]), "invalid Retry-After value '5x'"),
    ]:
        with pytest.raises(SipParseError) as info:
            name = next(iter(headers))[0]
            parse_int_header(headers, name, allow_trailing=name == "Retry-After")
        assert str(info.value) == message


def test_parse_params() -> None:
    assert parse_params("") == ()
    assert parse_params(' ; a = 1 ;b; c="x;y" ;d=[::1]') == (
        ("a", "1"),
        ("b", None),
        ("c", '"x;y"'),
        ("d", "[::1]"),
    )
    with pytest.raises(SipParseError, match="invalid parameter name"):
        parse_params(";a b=1")
    with pytest.raises(SipParseError, match="malformed quoted value"):
        parse_params(';a="x"y')
    with pytest.raises(SipParseError, match="unterminated quoted string"):
        parse_params(';a="x')


def test_option_tags() -> None:
    h = Headers([("Supported", ""), ("k", "timer, 100rel"), ("Require", "replaces")])
    assert parse_option_tags(h, "Supported") == ["timer", "100rel"]
    assert parse_option_tags(h, "Require") == ["replaces"]
    with pytest.raises(SipParseError, match="invalid option tag"):
        parse_option_tags(Headers([("Require", "a b")]), "Require")
