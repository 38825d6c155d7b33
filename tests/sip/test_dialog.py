"""Dialog state and in-dialog request construction (RFC 3261 section 12)."""

from __future__ import annotations

from callcenter.sip.dialog import Dialog, DialogState, uri_address
from callcenter.sip.headers import NameAddress
from callcenter.sip.message import Headers, SipRequest, SipResponse

PEER = ("127.0.0.1", 5070)


def invite(record_route: list[str]) -> SipRequest:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKp1"),
            ("Via", "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKc1"),
            *[("Record-Route", rr) for rr in record_route],
            ("From", '"Alice" <sip:alice@127.0.0.1>;tag=ft'),
            ("To", "<sip:3975@127.0.0.1>"),
            ("Call-ID", "dlg-1"),
            ("CSeq", "10 INVITE"),
            ("Contact", "<sip:alice@127.0.0.2:5070;transport=udp>"),
        ]
    )
    return SipRequest("INVITE", "sip:3975@127.0.0.1", headers)


def test_uas_dialog_loose_routing() -> None:
    rr = ["<sip:127.0.0.9:5080;lr>", "<sip:edge.example;lr>"]
    d = Dialog.for_uas(invite(rr), local_tag="lt", peer_addr=PEER)
    assert d.id == ("dlg-1", "lt", "ft")
    assert d.route_set == tuple(rr)  # section 12.1.1: in order for the UAS
    assert d.remote_target == "sip:alice@127.0.0.2:5070;transport=udp"
    assert d.remote_cseq == 10 and d.state is DialogState.EARLY
    start = d.local_cseq
    bye = d.create_request("BYE", via="SIP/2.0/UDP me;branch=z9hG4bKx")
    assert bye.uri == d.remote_target
    assert bye.headers.get_all("Route") == rr
    assert bye.headers.get("CSeq") == f"{start + 1} BYE"
    assert NameAddress.parse(bye.headers.get("From") or "").tag == "lt"
    to = NameAddress.parse(bye.headers.get("To") or "")
    assert to.tag == "ft" and to.display_name == "Alice"
    assert d.next_hop() == ("127.0.0.9", 5080)
    ack = d.create_request("ACK", via="v", cseq=10)
    assert ack.headers.get("CSeq") == "10 ACK" and d.local_cseq == start + 1


def test_strict_routing() -> None:
    d = Dialog.for_uas(
        invite(["<sip:127.0.0.9:5080>", "<sip:127.0.0.8;lr>"]), local_tag="lt", peer_addr=PEER
    )
    bye = d.create_request("BYE", via="v")
    # Section 12.2.1.1: the strict router's URI becomes the Request-URI, the target goes last.
    assert bye.uri == "sip:127.0.0.9:5080"
    assert bye.headers.get_all("Route") == ["<sip:127.0.0.8;lr>", f"<{d.remote_target}>"]
    assert d.next_hop() == ("127.0.0.9", 5080)


def test_no_route_set_goes_to_target_or_fallback() -> None:
    d = Dialog.for_uas(invite([]), local_tag="lt", peer_addr=PEER)
    assert d.next_hop() == ("127.0.0.2", 5070)
    d.remote_target = "sip:alice@phone.example"
    assert d.next_hop() == PEER  # host names are resolved by the adapter, not here


def test_uac_dialog_reverses_record_route() -> None:
    inv = invite([])
    inv.headers.set("From", "<sip:svc@127.0.0.1>;tag=mine")
    resp = SipResponse(
        200,
        "OK",
        Headers(
            [
                ("Record-Route", "<sip:127.0.0.9;lr>"),
                ("Record-Route", "<sip:127.0.0.8;lr>"),
                ("To", "<sip:3975@127.0.0.1>;tag=theirs"),
                ("Contact", "<sip:callee@127.0.0.3:5090>"),
            ]
        ),
    )
    d = Dialog.for_uac(inv, resp, peer_addr=PEER)
    assert d.id == ("dlg-1", "mine", "theirs")
    assert d.route_set == ("<sip:127.0.0.8;lr>", "<sip:127.0.0.9;lr>")
    assert d.remote_target == "sip:callee@127.0.0.3:5090"
    assert d.local_cseq == 10 and d.remote_cseq is None
    assert d.next_hop() == ("127.0.0.8", 5060)


def test_remote_cseq_ordering_and_target_refresh() -> None:
    d = Dialog.for_uas(invite([]), local_tag="lt", peer_addr=PEER)
    assert d.check_remote_cseq(11)
    assert d.check_remote_cseq(11)  # equal is not "lower" (section 12.2.2)
    assert not d.check_remote_cseq(5)
    reinv = invite([])
    reinv.headers.set("Contact", "<sip:alice@127.0.0.7:6000>")
    d.refresh_target(reinv)
    assert d.next_hop() == ("127.0.0.7", 6000)


def test_rfc2543_peer_without_from_tag() -> None:
    inv = invite([])
    inv.headers.set("From", "sip:alice@127.0.0.1")
    d = Dialog.for_uas(inv, local_tag="lt", peer_addr=PEER)
    assert d.remote_tag == ""
    bye = d.create_request("BYE", via="v")
    assert NameAddress.parse(bye.headers.get("To") or "").tag is None


def test_uri_address() -> None:
    assert uri_address("sip:a@[::1]:5062", PEER) == ("::1", 5062)
    assert uri_address("sips:a@127.0.0.5", PEER) == ("127.0.0.5", 5061)
    assert uri_address("sip:a@127.0.0.5;maddr=192.0.2.1", PEER) == ("127.0.0.5", 5060)
    assert uri_address("not a uri", PEER) == PEER
