from __future__ import annotations

import pytest

from callcenter.sip.errors import SipParseError, UnsupportedUriSchemeError
from callcenter.sip.uri import SipUri, uri_scheme


@pytest.mark.parametrize(
    "text",
    [
        "sip:3975@127.0.0.1",
        "sip:3975@127.0.0.1:5060",
        "sips:alice@example.com;transport=tcp",
        "sip:127.0.0.1:5070;lr;ftag=as1d2f3g4h;did=a1c.b2d1",
        "sip:alice:secret@example.com",
        "sip:+33612345678@trunk.example.net;user=phone",
        "sip:user@[2001:db8::1]:5061;transport=tls",
        "sip:[::1]",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E&Subject=hi",
        "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
        "sip:agent_1@docker_host.local",
    ],
)
def test_round_trip(text: str) -> None:
    assert str(SipUri.parse(text)) == text


def test_fields() -> None:
    uri = SipUri.parse("SIP:Alice:pw@Example.COM:5062;Transport=TCP;lr?h=v")
    assert uri.scheme == "sip"
    assert (uri.user, uri.password, uri.host, uri.port) == ("Alice", "pw", "Example.COM", 5062)
    assert uri.params == (("Transport", "TCP"), ("lr", None))
    assert uri.param("transport") == "TCP" and uri.transport == "tcp"
    assert uri.has_param("LR") and uri.param("lr") is None and not uri.has_param("maddr")
    assert uri.headers == (("h", "v"),)


def test_default_transport() -> None:
    assert SipUri.parse("sip:a@h").transport == "udp"
    assert SipUri.parse("sips:a@h").transport == "tls"


def test_ipv6() -> None:
    uri = SipUri.parse("sip:user@[2001:db8::1]:5061")
    assert (uri.host, uri.port) == ("[2001:db8::1]", 5061)


def test_user_unescaped_once() -> None:
    assert SipUri.parse("sip:%2541@h").user_unescaped == "%41"
    assert SipUri.parse("sip:null-%00-null@h").user_unescaped == "null-\x00-null"
    assert SipUri.parse("sip:h").user_unescaped is None


def test_with_params() -> None:
    uri = SipUri.parse("sip:a@h;transport=udp")
    assert str(uri.with_params(transport="tcp", lr=None)) == "sip:a@h;transport=tcp;lr"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sip:", "invalid host '' in URI 'sip:'"),
        ("nothing", "URI 'nothing' has no scheme"),
        ("sip:a@b@c", "more than one '@' in URI 'sip:a@b@c'"),
        ("sip:@h", "empty user part in URI 'sip:@h'"),
        ("sip:a b@h", "invalid character ' ' in the user part of URI 'sip:a b@h'"),
        ("sip:a%4@h", "bad %-escape in the user part of URI 'sip:a%4@h'"),
        ("sip:a@h:0x50", "invalid port '0x50' in URI 'sip:a@h:0x50'"),
        ("sip:a@h:65536", "port 65536 out of range in URI 'sip:a@h:65536'"),
        (
            "sip:a@h:123456789012345678901234567890",
            "invalid port '123456789012345678901234567890' "
            "in URI 'sip:a@h:123456789012345678901234567890'",
        ),
        ("sip:a@[::1", "unterminated IPv6 reference in URI 'sip:a@[::1'"),
        ("sip:a@[zz]", "invalid IPv6 reference '[zz]' in URI 'sip:a@[zz]'"),
        ("sip:a@[::1]x", "junk 'x' after the host of URI 'sip:a@[::1]x'"),
        ("sip:a@-h-", "invalid host '-h-' in URI 'sip:a@-h-'"),
        ("sip:a@h;;lr", "empty parameter in URI 'sip:a@h;;lr'"),
        ("sip:a@h;x=", "parameter 'x' has an empty value in 'sip:a@h;x='"),
        ("sip:a@h;x=<y>", "invalid character '<' in the parameters of URI 'sip:a@h;x=<y>'"),
        ("sip:a@h?nonvalue", "malformed URI header 'nonvalue' in 'sip:a@h?nonvalue'"),
        ("sip:a:p@ss@h", "more than one '@' in URI 'sip:a:p@ss@h'"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert type(info.value) is SipParseError
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("tel:+33612345678", "tel"),
        ("nobodyKnowsThisScheme:totallyopaquecontent", "nobodyknowsthisscheme"),
        ("soap.beep://192.0.2.103:3002", "soap.beep"),
    ],
)
def test_unsupported_scheme(text: str, scheme: str) -> None:
    with pytest.raises(UnsupportedUriSchemeError) as info:
        SipUri.parse(text)
    assert info.value.status_code == 416
    assert str(info.value) == f"unsupported URI scheme {scheme!r}"


@pytest.mark.parametrize(
    ("text", "scheme"),
    [("SIP:a@h", "sip"), ("tel:+1", "tel"), ("1sip:x", None), ("nocolon", None), (":x", None)],
)
def test_uri_scheme(text: str, scheme: str | None) -> None:
    assert uri_scheme(text) == scheme
