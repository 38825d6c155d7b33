from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.sip.access import (
    AccessPolicy,
    SourceGate,
    classify_source,
    is_trusted_source,
    parse_host,
)
from callcenter.sip.auth import (
    DigestChallenge,
    DigestCredentials,
    DigestServer,
    build_authorization,
    choose_challenge,
)
from callcenter.sip.ratelimit import SourceRateLimiter

TRUNKS = AccessPolicy(
    trusted_networks=("203.0.113.0/24", "198.51.100.7", "2001:db8:1::/48", "::1"),
    require_auth_from_untrusted=True,
    allow_untrusted_without_auth=False,
)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("203.0.113.1", "trusted"),
        ("203.0.113.255", "trusted"),
        ("203.0.114.1", "challenge"),
        ("198.51.100.7", "trusted"),
        ("198.51.100.8", "challenge"),
        ("2001:db8:1:ffff::5", "trusted"),
        ("2001:DB8:1::5", "trusted"),
        ("[2001:db8:1::5]", "trusted"),
        ("2001:db8:2::5", "challenge"),
        ("::1", "trusted"),
        ("::ffff:203.0.113.9", "trusted"),  # IPv4-mapped from a dual-stack socket
        ("::ffff:192.0.2.1", "challenge"),
        ("127.0.0.1", "challenge"),
    ],
)
def test_trusted_v4_v6(host: str, expected: str) -> None:
    assert classify_source(TRUNKS, host) == expected


@pytest.mark.parametrize(
    "host",
    [
        "",
        " ",
        "garbage",
        "example.com",
        "256.1.1.1",
        "203.0.113.1/24",
        "1.2.3",
        "[::1",
        "::1]",
        "203.0.113.1:5060",
        "2001:db8:::1",
        "x" * 1000,
        "\x00",
    ],
)
def test_garbage_is_forbidden(host: str) -> None:
    assert classify_source(TRUNKS, host) == "forbidden"
    assert not is_trusted_source(TRUNKS, host)


def test_policy_decision_table() -> None:
    nets = ("10.0.0.0/8",)
    closed = AccessPolicy(
        nets, require_auth_from_untrusted=False, allow_untrusted_without_auth=False
    )
    open_ = AccessPolicy(nets, require_auth_from_untrusted=False, allow_untrusted_without_auth=True)
    both = AccessPolicy(nets, require_auth_from_untrusted=True, allow_untrusted_without_auth=True)
    assert classify_source(closed, "192.0.2.1") == "forbidden"
    assert classify_source(open_, "192.0.2.1") == "trusted"
    assert classify_source(both, "192.0.2.1") == "challenge"  # auth wins over open
    for policy in (closed, open_, both):
        assert classify_source(policy, "10.1.2.3") == "trusted"
    # An open line still does not exempt strangers from rate limiting.
    assert not is_trusted_source(open_, "192.0.2.1")
    assert is_trusted_source(open_, "10.1.2.3")


def test_empty_allow_list() -> None:
    policy = AccessPolicy((), require_auth_from_untrusted=True, allow_untrusted_without_auth=False)
    assert classify_source(policy, "127.0.0.1") == "challenge"


def test_host_bits_and_zone_ids() -> None:
    policy = AccessPolicy(("192.0.2.77/24", "fe80::/10"), True, False)
    assert classify_source(policy, "192.0.2.1") == "trusted"
    assert classify_source(policy, "fe80::1%eth0") == "trusted"
    assert parse_host("fe80::1%eth0") is not None


def test_invalid_network_rejected_at_configuration() -> None:
    with pytest.raises(ValueError, match="invalid trusted network 'not-a-net'"):
        AccessPolicy(("10.0.0.0/8", "not-a-net"), True, False)
    with pytest.raises(ValueError, match="invalid trusted network '10.0.0.0/33'"):
        AccessPolicy(("10.0.0.0/33",), True, False)


@given(st.ip_addresses())
def test_any_address_matches_ipaddress_semantics(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    nets = [ipaddress.ip_network(n, strict=False) for n in TRUNKS.trusted_networks]
    probe = (
        address.ipv4_mapped
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped
        else address
    )
    inside = any(probe.version == n.version and probe in n for n in nets)
    assert classify_source(TRUNKS, str(address)) == ("trusted" if inside else "challenge")


@given(st.text(max_size=80))
def test_never_raises(text: str) -> None:
    assert classify_source(TRUNKS, text) in ("trusted", "challenge", "forbidden")


# --- SourceGate ------------------------------------------------------------------------------


def make_gate(*, burst: float = 100) -> SourceGate:
    policy = AccessPolicy(("203.0.113.0/24",), True, False)
    return SourceGate(
        policy=policy,
        limiter=SourceRateLimiter(
            rate=1.0, burst=burst, exempt=lambda h: is_trusted_source(policy, h)
        ),
        digest=DigestServer(
            realm="cc", secret=b"k" * 32, users={"trunk": "pw"}, algorithms=("SHA-256", "MD5")
        ),
    )


def test_gate_trusted_invite_processed_without_auth() -> None:
    gate = make_gate(burst=1)
    for _ in range(50):  # exempt from the rate limit too
        admission = gate.check(
            host="203.0.113.9", method="INVITE", uri="sip:3975@x", authorization=None, now=0.0
        )
        assert admission.action == "process"


def test_gate_challenges_untrusted_invite_then_accepts_credentials() -> None:
    gate = make_gate()
    first = gate.check(
        host="192.0.2.1", method="INVITE", uri="sip:3975@x", authorization=None, now=1.0
    )
    assert (first.action, first.status_code) == ("respond", 401)
    assert [name for name, _ in first.headers] == ["WWW-Authenticate"] * 2
    challenge = choose_challenge([v for _, v in first.headers])
    assert challenge is not None and challenge.algorithm == "SHA-256"
    value = build_authorization(
        challenge,
        DigestCredentials("trunk", "pw"),
        method="INVITE",
        uri="sip:3975@x",
        nc=1,
        cnonce="c",
    )
    ok = gate.check(
        host="192.0.2.1", method="INVITE", uri="sip:3975@x", authorization=value, now=2.0
    )
    assert (ok.action, ok.username) == ("process", "trunk")
    replay = gate.check(
        host="192.0.2.1", method="INVITE", uri="sip:3975@x", authorization=value, now=3.0
    )
    assert (replay.action, replay.status_code, replay.reason) == (
        "respond",
        401,
        "replayed nonce-count",
    )
    stale = gate.check(
        host="192.0.2.1", method="INVITE", uri="sip:3975@x", authorization=value, now=1000.0
    )
    assert stale.status_code == 401
    assert DigestChallenge.parse(stale.headers[0][1]).stale


def test_gate_does_not_challenge_ack_options_or_in_dialog() -> None:
    gate = make_gate()
    for method, in_dialog in (
        ("ACK", False),
        ("CANCEL", False),
        ("OPTIONS", False),
        ("INVITE", True),
        ("BYE", True),
    ):
        admission = gate.check(
            host="192.0.2.1",
            method=method,
            uri="sip:x",
            authorization=None,
            now=0.0,
            in_dialog=in_dialog,
        )
        assert admission.action == "process", method


def test_gate_forbidden_and_rate_limited() -> None:
    gate = make_gate(burst=3)
    bad = gate.check(host="not-an-ip", method="INVITE", uri="sip:x", authorization=None, now=0.0)
    assert (bad.action, bad.status_code) == ("respond", 403)
    ack = gate.check(host="not-an-ip", method="ACK", uri="sip:x", authorization=None, now=0.0)
    assert ack.action == "drop"
    actions = [
        gate.check(
            host="192.0.2.7", method="OPTIONS", uri="sip:x", authorization=None, now=0.0
        ).action
        for _ in range(5)
    ]
    assert actions == ["process"] * 3 + ["drop"] * 2


def test_gate_requires_digest_server_when_auth_required() -> None:
    with pytest.raises(ValueError, match="needs a DigestServer"):
        SourceGate(policy=AccessPolicy((), True, False))
