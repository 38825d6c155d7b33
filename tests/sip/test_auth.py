from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.sip.auth import (
    AuthError,
    AuthStatus,
    DigestChallenge,
    DigestClient,
    DigestCredentials,
    DigestServer,
    build_authorization,
    choose_challenge,
    parse_auth_params,
)

SECRET = b"0123456789abcdef0123456789abcdef"


# --- known-answer vectors ------------------------------------------------------------------


def test_rfc2617_section_3_5_md5_vector() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = build_authorization(
        challenge,
        DigestCredentials("Mufasa", "Circle Of Life"),
        method="GET",
        uri="/dir/index.html",
        nc=1,
        cnonce="0a4f113b",
    )
    params = parse_auth_params(value.removeprefix("Digest "))
    assert params["response"] == "6629fae49393a05397450978507c4ef1"
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"
    assert params["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert params["uri"] == "/dir/index.html"


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm: str, response: str) -> None:
    challenge = DigestChallenge.parse(
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    assert challenge.algorithm == algorithm
    assert challenge.qop == ("auth", "auth-int")
    value = build_authorization(
        challenge,
        DigestCredentials("Mufasa", "Circle of Life"),
        method="GET",
        uri="/dir/index.html",
        nc=1,
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    params = parse_auth_params(value.removeprefix("Digest "))
    assert params["response"] == response
    assert params["algorithm"] == algorithm


def _h(data: str) -> str:
    return hashlib.md5(data.encode()).hexdigest()


def test_auth_int_and_sess_follow_rfc2617_formulas() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="r", nonce="n", qop="auth-int", algorithm=MD5-sess'
    )
    assert challenge.algorithm == "MD5-sess"
    body = b"v=0\r\n"
    value = build_authorization(
        challenge,
        DigestCredentials("u", "p"),
        method="INVITE",
        uri="sip:x@y",
        nc=2,
        cnonce="c",
        body=body,
    )
    ha1 = _h(f"{_h('u:r:p')}:n:c")
    ha2 = _h(f"INVITE:sip:x@y:{hashlib.md5(body).hexdigest()}")
    params = parse_auth_params(value.removeprefix("Digest "))
    assert params["qop"] == "auth-int"
    assert params["response"] == _h(f"{ha1}:n:00000002:c:auth-int:{ha2}")


def test_rfc2069_mode_without_qop() -> None:
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n"')
    value = build_authorization(
        challenge, DigestCredentials("u", "p"), method="REGISTER", uri="sip:r", nc=1, cnonce="c"
    )
    params = parse_auth_params(value.removeprefix("Digest "))
    assert "qop" not in params and "nc" not in params and "cnonce" not in params
    assert params["response"] == _h(f"{_h('u:r:p')}:n:{_h('REGISTER:sip:r')}")


# --- parsing -------------------------------------------------------------------------------


def test_challenge_parsing_with_odd_spacing_case_and_quoting() -> None:
    challenge = DigestChallenge.parse(
        'digest   REALM = "atlanta.com" ,NONCE="84a4cc6f\\"3082121f32b42a2187831a9e7d" ,,'
        '\t algorithm = sha-256 , qop="auth-int ,AUTH", stale=TRUE,opaque=""'
    )
    assert challenge.realm == "atlanta.com"
    assert challenge.nonce == '84a4cc6f"3082121f32b42a2187831a9e7d'
    assert challenge.algorithm == "SHA-256"
    assert challenge.qop == ("auth-int", "auth")
    assert challenge.stale is True
    assert challenge.opaque == ""


def test_challenge_roundtrip_and_defaults() -> None:
    challenge = DigestChallenge.parse('Digest nonce="abc", realm="r"')
    assert challenge.algorithm == "MD5"
    assert challenge.qop == () and challenge.opaque is None and challenge.stale is False
    again = DigestChallenge.parse(str(challenge))
    assert again == challenge


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty authentication header"),
        ('Basic realm="x"', "unsupported authentication scheme 'Basic'"),
        ('Digest realm="x"', "challenge lacks the 'nonce' parameter"),
        ('Digest nonce="x"', "challenge lacks the 'realm' parameter"),
        ('Digest realm="x, nonce=y', "unterminated quoted value for parameter 'realm'"),
        ('Digest realm="x, nonce="y', "expected ',' after parameter 'realm'"),
        ('Digest realm="x", realm="y", nonce="z"', "duplicated parameter 'realm'"),
        ('Digest realm, nonce="z"', "parameter 'realm' has no value"),
        ('Digest realm="r" nonce="z"', "expected ',' after parameter 'realm'"),
        ('realm="r", nonce="z"', "missing authentication scheme"),
        ('Digest realm=, nonce="z"', "parameter 'realm' has an empty value"),
    ],
)
def test_challenge_garbage_raises(value: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        DigestChallenge.parse(value)


@given(st.text(max_size=200))
def test_parse_never_raises_anything_but_auth_error(text: str) -> None:
    try:
        DigestChallenge.parse("Digest " + text)
    except AuthError:
        pass


def test_choose_challenge_prefers_sha256_and_skips_garbage() -> None:
    values = [
        'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
        "garbage",
        'Basic realm="r"',
        'Digest realm="r", nonce="n3", algorithm=SHA-1024, qop="auth"',
        'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"',
        'Digest realm="r", nonce="n4", algorithm=SHA-256, qop="auth"',
    ]
    chosen = choose_challenge(values)
    assert chosen is not None
    assert (chosen.algorithm, chosen.nonce) == ("SHA-256", "n2")
    assert choose_challenge(values[:1]) == DigestChallenge.parse(values[0])


def test_choose_challenge_none_when_nothing_usable() -> None:
    assert choose_challenge([]) is None
    assert (
        choose_challenge(['Basic realm="r"', "Digest ,,,", 'Digest realm="r", nonce="n", qop="x"'])
        is None
    )


def test_build_refuses_wrong_realm_and_bad_nc() -> None:
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n", qop="auth"')
    with pytest.raises(AuthError, match="no credentials for realm 'r'"):
        build_authorization(
            challenge,
            DigestCredentials("u", "p", realm="other"),
            method="X",
            uri="u",
            nc=1,
            cnonce="c",
        )
    with pytest.raises(AuthError, match="nonce-count 0 out of range"):
        build_authorization(
            challenge, DigestCredentials("u", "p"), method="X", uri="u", nc=0, cnonce="c"
        )


def test_credentials_repr_hides_password() -> None:
    assert "hunter2" not in repr(DigestCredentials("u", "hunter2"))


def test_username_is_escaped() -> None:
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n", qop="auth"')
    value = build_authorization(
        challenge, DigestCredentials('a"b\\c', "p"), method="X", uri="u", nc=1, cnonce="c"
    )
    assert parse_auth_params(value.removeprefix("Digest "))["username"] == 'a"b\\c'


# --- client state --------------------------------------------------------------------------


def test_digest_client_counts_and_gives_up_on_non_stale_rechallenge() -> None:
    client = DigestClient(DigestCredentials("u", "p"), cnonce_factory=lambda: "cn")
    assert client.authorization(method="REGISTER", uri="sip:r") is None
    assert client.on_challenge(['Digest realm="r", nonce="n", qop="auth"'])
    first = client.authorization(method="REGISTER", uri="sip:r")
    second = client.authorization(method="REGISTER", uri="sip:r")
    assert first is not None and "nc=00000001" in first
    assert second is not None and "nc=00000002" in second
    # Credentials were sent and rejected without stale=true: wrong password, stop.
    assert not client.on_challenge(['Digest realm="r", nonce="m", qop="auth"'], already_sent=True)
    assert client.on_challenge(
        ['Digest realm="r", nonce="m", qop="auth", stale=true'], already_sent=True
    )
    again = client.authorization(method="REGISTER", uri="sip:r")
    assert again is not None and "nc=00000001" in again and 'nonce="m"' in again


# --- server --------------------------------------------------------------------------------


def make_server(**kwargs: object) -> DigestServer:
    return DigestServer(
        realm="callcenter.test",
        secret=SECRET,
        users={"alice": "s3cret"},
        **kwargs,  # type: ignore[arg-type]
    )


def answer(
    server: DigestServer,
    now: float,
    *,
    algorithm: str = "SHA-256",
    password: str = "s3cret",
    nc: int = 1,
    method: str = "INVITE",
    username: str = "alice",
) -> tuple[str, DigestChallenge]:
    values = [v for _, v in server.challenge_headers(now)]
    challenge = next(c for c in map(DigestChallenge.parse, values) if c.algorithm == algorithm)
    value = build_authorization(
        challenge,
        DigestCredentials(username, password),
        method=method,
        uri="sip:3975@127.0.0.1",
        nc=nc,
        cnonce="xyz",
    )
    return value, challenge


def test_server_challenge_headers_one_per_algorithm_sha256_first() -> None:
    server = make_server()
    headers = server.challenge_headers(10.0)
    assert [name for name, _ in headers] == ["WWW-Authenticate", "WWW-Authenticate"]
    challenges = [DigestChallenge.parse(v) for _, v in headers]
    assert [c.algorithm for c in challenges] == ["SHA-256", "MD5"]
    assert all(c.qop == ("auth",) and c.realm == "callcenter.test" for c in challenges)
    assert challenges[0].nonce != DigestChallenge.parse(server.challenge_headers(10.0)[0][1]).nonce
    assert all(
        c.stale
        for c in map(
            DigestChallenge.parse, (v for _, v in server.challenge_headers(1.0, stale=True))
        )
    )


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_server_accepts_our_client(algorithm: str) -> None:
    server = make_server()
    value, _ = answer(server, 100.0, algorithm=algorithm)
    result = server.verify(value, method="INVITE", now=101.0, uri="sip:3975@127.0.0.1")
    assert result.status is AuthStatus.OK and result.ok
    assert result.username == "alice"


def test_server_rejects_wrong_password_without_leaking_it() -> None:
    server = make_server()
    value, _ = answer(server, 100.0, password="guess")
    result = server.verify(value, method="INVITE", now=100.0)
    assert result.status is AuthStatus.FAILED
    assert result.reason == "wrong credentials"
    assert "s3cret" not in repr(result) and "guess" not in repr(result)


def test_server_rejects_unknown_user_and_wrong_method_and_uri() -> None:
    server = make_server()
    value, _ = answer(server, 100.0, username="mallory")
    assert server.verify(value, method="INVITE", now=100.0).reason == "wrong credentials"
    value, _ = answer(server, 100.0)
    assert server.verify(value, method="BYE", now=100.0).status is AuthStatus.FAILED
    result = server.verify(value, method="INVITE", now=100.0, uri="sip:other@127.0.0.1")
    assert result.reason == "digest uri does not match Request-URI"


def test_server_nonce_expiry_gives_stale_only_for_a_right_digest() -> None:
    server = make_server(nonce_ttl=30.0)
    value, _ = answer(server, 100.0)
    stale = server.verify(value, method="INVITE", now=130.5)
    assert stale.status is AuthStatus.STALE
    assert stale.reason == "nonce expired"
    wrong, _ = answer(server, 100.0, password="nope")
    assert server.verify(wrong, method="INVITE", now=130.5).status is AuthStatus.FAILED
    # Just inside the lifetime it is fine.
    fresh, _ = answer(server, 100.0, nc=1)
    assert server.verify(fresh, method="INVITE", now=129.9).ok


def test_server_rejects_replayed_nonce_count() -> None:
    server = make_server()
    value, challenge = answer(server, 100.0)
    assert server.verify(value, method="INVITE", now=100.0).ok
    replay = server.verify(value, method="INVITE", now=100.1)
    assert replay.status is AuthStatus.FAILED
    assert replay.reason == "replayed nonce-count"
    nc2 = build_authorization(
        challenge,
        DigestCredentials("alice", "s3cret"),
        method="INVITE",
        uri="sip:3975@127.0.0.1",
        nc=2,
        cnonce="xyz",
    )
    assert server.verify(nc2, method="INVITE", now=100.2).ok
    assert server.verify(value, method="INVITE", now=100.3).reason == "replayed nonce-count"


def test_server_nc_table_is_bounded_and_eviction_does_not_reopen_replay() -> None:
    server = make_server(max_nonces=3)
    accepted = []
    for i in range(5):
        value, _ = answer(server, 100.0 + i)
        assert server.verify(value, method="INVITE", now=100.0 + i).ok
        accepted.append(value)
    assert server.tracked_nonces == 3
    # The two oldest were evicted: replaying them must not succeed.
    for value in accepted[:2]:
        assert server.verify(value, method="INVITE", now=105.0).status is AuthStatus.STALE
    for value in accepted[2:]:
        assert server.verify(value, method="INVITE", now=105.0).status is AuthStatus.FAILED


def test_server_rejects_forged_and_future_nonces() -> None:
    server = make_server()
    other = DigestServer(realm="callcenter.test", secret=b"x" * 32, users={"alice": "s3cret"})
    forged, _ = answer(other, 100.0)
    assert server.verify(forged, method="INVITE", now=100.0).reason == "nonce not issued by us"
    future, _ = answer(server, 500.0)
    assert server.verify(future, method="INVITE", now=100.0).reason == "nonce from the future"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Basic YWxhZGRpbjpvcGVuc2VzYW1l", "unsupported scheme 'Basic'"),
        (
            'Digest username="alice',
            "malformed credentials: unterminated quoted value for parameter 'username'",
        ),
        (
            'Digest username="alice", realm="callcenter.test"',
            "missing parameter(s) nonce, uri, response",
        ),
        (
            'Digest username="a", realm="elsewhere", nonce="n", uri="u", response="r"',
            "wrong realm",
        ),
        (
            'Digest username="a", realm="callcenter.test", nonce="n", uri="u", response="r", '
            "algorithm=SHA-512-256",
            "algorithm 'SHA-512-256' not offered",
        ),
        (
            'Digest username="a", realm="callcenter.test", nonce="n", uri="u", response="r", '
            "algorithm=MD5",
            "qop missing",
        ),
        (
            'Digest username="a", realm="callcenter.test", nonce="n", uri="u", response="r", '
            "qop=auth, nc=1, cnonce=c",
            "qop without valid nc/cnonce",
        ),
        (
            'Digest username="a", realm="callcenter.test", nonce="n", uri="u", response="r", '
            "qop=auth, nc=0000000g, cnonce=c",
            "nc is not hexadecimal",
        ),
        (
            'Digest username="a", realm="callcenter.test", nonce="!!", uri="u", response="r", '
            "qop=auth, nc=00000001, cnonce=c",
            "nonce not issued by us",
        ),
    ],
)
def test_server_failure_reasons(value: str, reason: str) -> None:
    result = make_server().verify(value, method="INVITE", now=1.0)
    assert result.status is AuthStatus.FAILED
    assert result.reason == reason


def test_server_config_validation() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        DigestServer(realm="r", secret=b"short", users={})
    with pytest.raises(ValueError, match="unsupported digest algorithm 'SHA-1'"):
        DigestServer(realm="r", secret=SECRET, users={}, algorithms=("SHA-1",))
