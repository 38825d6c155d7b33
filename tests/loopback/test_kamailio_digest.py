"""Our digest client against a real Kamailio registrar on 127.0.0.1 (MD5 and SHA-256)."""

from __future__ import annotations

import contextlib
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callcenter.sip.auth import (
    DigestChallenge,
    DigestClient,
    DigestCredentials,
    build_authorization,
    choose_challenge,
)
from callcenter.sip.message import Headers, SipRequest
from tests.loopback.kamailio import (
    CONFIG,
    KamailioFactory,
    KamailioRegistrar,
    skip_without_kamailio,
)

pytestmark = [pytest.mark.loopback, skip_without_kamailio]

AOR_USER = "3975"


@dataclass
class Reply:
    status: int
    reason: str
    headers: Headers


def parse_reply(data: bytes) -> Reply:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    version, code, reason = (lines[0].split(" ", 2) + [""])[:3]
    assert version == "SIP/2.0", lines[0]
    headers = Headers()
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.add(name.strip(), value.strip())
    return Reply(int(code), reason, headers)


class UdpPeer:
    """A bare UDP SIP endpoint on 127.0.0.1 for driving Kamailio by hand."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3.0)
        self.port: int = self.sock.getsockname()[1]
        self.call_id = f"{secrets.token_hex(8)}@127.0.0.1"
        self.tag = secrets.token_hex(4)
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def request(
        self,
        method: str,
        uri: str,
        *,
        to_user: str = AOR_USER,
        extra: list[tuple[str, str]] | None = None,
    ) -> SipRequest:
        self.cseq += 1
        headers = Headers(
            [
                ("Via", f"SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{secrets.token_hex(8)}"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:{to_user}@127.0.0.1>;tag={self.tag}"),
                ("To", f"<sip:{to_user}@127.0.0.1>"),
                ("Call-ID", self.call_id),
                ("CSeq", f"{self.cseq} {method}"),
                ("Contact", f"<sip:{to_user}@127.0.0.1:{self.port}>"),
            ]
        )
        for name, value in extra or []:
            headers.add(name, value)
        return SipRequest(method=method, uri=uri, headers=headers)

    def send(self, message: bytes, addr: tuple[str, int]) -> None:
        self.sock.sendto(message, addr)

    def recv(self) -> bytes:
        data, _ = self.sock.recvfrom(65535)
        return data

    def final_reply(self) -> Reply:
        """Wait for a final (non-1xx) response."""
        while True:
            reply = parse_reply(self.recv())
            if reply.status >= 200:
                return reply

    def transact(self, request: SipRequest, addr: tuple[str, int]) -> Reply:
        self.send(bytes(request), addr)
        return self.final_reply()


@pytest.fixture
def start_registrar(tmp_path: Path) -> Iterator[KamailioFactory]:
    """``start_registrar(algorithm=..., password=...)``; all stopped at teardown."""
    with contextlib.ExitStack() as stack:
        yield KamailioFactory(stack, tmp_path)


@pytest.fixture
def peer() -> Iterator[UdpPeer]:
    p = UdpPeer()
    yield p
    p.close()


def register(
    peer: UdpPeer, registrar: KamailioRegistrar, credentials: DigestCredentials
) -> tuple[Reply, Reply]:
    """REGISTER, answer the 401 with build_authorization; return (challenge reply, final)."""
    first = peer.transact(
        peer.request("REGISTER", registrar.uri, extra=[("Expires", "60")]), registrar.address
    )
    assert first.status == 401, first
    challenge = choose_challenge(first.headers.get_all("WWW-Authenticate"))
    assert challenge is not None, first.headers
    authorization = build_authorization(
        challenge,
        credentials,
        method="REGISTER",
        uri=registrar.uri,
        nc=1,
        cnonce=secrets.token_hex(8),
    )
    second = peer.transact(
        peer.request(
            "REGISTER",
            registrar.uri,
            extra=[("Expires", "60"), ("Authorization", authorization)],
        ),
        registrar.address,
    )
    return first, second


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_register_with_digest(
    start_registrar: KamailioFactory, peer: UdpPeer, algorithm: str
) -> None:
    registrar = start_registrar(algorithm=algorithm)
    credentials = DigestCredentials(registrar.user, registrar.password)
    first, second = register(peer, registrar, credentials)

    challenge = DigestChallenge.parse(first.headers.get_all("WWW-Authenticate")[0])
    assert challenge.algorithm == algorithm
    assert challenge.realm == registrar.realm
    assert "auth" in challenge.qop
    assert second.status == 200, (second, registrar.log[-2000:])
    # The registrar echoes the binding it stored (RFC 3261 section 10.3 step 8).
    contacts = " ".join(second.headers.get_all("Contact"))
    assert f"127.0.0.1:{peer.port}" in contacts


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_wrong_password_is_refused(
    start_registrar: KamailioFactory, peer: UdpPeer, algorithm: str
) -> None:
    registrar = start_registrar(algorithm=algorithm, password="right-one")
    _, second = register(peer, registrar, DigestCredentials(registrar.user, "wrong-one"))
    assert second.status == 403, second


def test_unknown_user_is_refused(start_registrar: KamailioFactory, peer: UdpPeer) -> None:
    registrar = start_registrar()
    _, second = register(peer, registrar, DigestCredentials("intruder", registrar.password))
    assert second.status == 403, second


def test_replayed_nonce_count_rechallenged_then_client_recovers(
    start_registrar: KamailioFactory, peer: UdpPeer
) -> None:
    registrar = start_registrar(algorithm="SHA-256")
    credentials = DigestCredentials(registrar.user, registrar.password)
    first, second = register(peer, registrar, credentials)
    assert second.status == 200
    challenge = choose_challenge(first.headers.get_all("WWW-Authenticate"))
    assert challenge is not None

    # Same nonce, same nc=1 in a new transaction: a replay (RFC 2617 section 3.2.2).
    replay = build_authorization(
        challenge, credentials, method="REGISTER", uri=registrar.uri, nc=1, cnonce="abc"
    )
    reply = peer.transact(
        peer.request("REGISTER", registrar.uri, extra=[("Authorization", replay)]),
        registrar.address,
    )
    assert reply.status == 401, reply

    # DigestClient: fresh challenge, then nc=1, 2 on the same nonce both succeed.
    client = DigestClient(credentials)
    assert client.on_challenge(reply.headers.get_all("WWW-Authenticate"))
    for expected_nc in ("00000001", "00000002"):
        value = client.authorization(method="REGISTER", uri=registrar.uri)
        assert value is not None and f"nc={expected_nc}" in value
        ok = peer.transact(
            peer.request("REGISTER", registrar.uri, extra=[("Authorization", value)]),
            registrar.address,
        )
        assert ok.status == 200, (ok, registrar.log[-2000:])


def test_invite_routed_to_registered_contact(
    start_registrar: KamailioFactory, peer: UdpPeer
) -> None:
    """lookup("location") + t_relay: what a later sipp-through-Kamailio call relies on."""
    registrar = start_registrar()
    _, second = register(peer, registrar, DigestCredentials(registrar.user, registrar.password))
    assert second.status == 200

    caller = UdpPeer()
    try:
        invite = caller.request("INVITE", f"sip:{AOR_USER}@127.0.0.1:{registrar.port}")
        caller.send(bytes(invite), registrar.address)
        relayed = peer.recv()
        assert relayed.startswith(f"INVITE sip:{AOR_USER}@127.0.0.1:{peer.port} ".encode())
        # Answer 486 from the "service" and check the caller gets it back through Kamailio.
        head = relayed.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        keep = ("via", "from", "to", "call-id", "cseq")
        lines = [h for h in head[1:] if h.split(":", 1)[0].strip().lower() in keep]
        lines = [f"{h};tag=svc" if h.lower().startswith("to:") else h for h in lines]
        response = (
            "SIP/2.0 486 Busy Here\r\n" + "\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n"
        )
        peer.send(response.encode(), registrar.address)
        assert caller.final_reply().status == 486
    finally:
        caller.close()


def test_invite_for_unknown_user_gets_404(start_registrar: KamailioFactory) -> None:
    registrar = start_registrar()
    caller = UdpPeer()
    try:
        invite = caller.request("INVITE", f"sip:nobody@127.0.0.1:{registrar.port}")
        assert caller.transact(invite, registrar.address).status == 404
    finally:
        caller.close()


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_config_syntax(tmp_path: Path, algorithm: str) -> None:
    result = subprocess.run(
        [
            "kamailio",
            "-c",
            "-f",
            str(CONFIG),
            "-A",
            f'KAM_ALGORITHM="{algorithm}"',
            "-A",
            "KAM_LISTEN=udp:127.0.0.1:5999",
        ],
        capture_output=True,
        text=True,
        timeout=20,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "udp: 127.0.0.1 [127.0.0.1]:5999" in result.stdout + result.stderr


def test_expired_nonce_gets_stale_challenge(
    start_registrar: KamailioFactory, peer: UdpPeer
) -> None:
    registrar = start_registrar(algorithm="SHA-256", nonce_expire=1)
    client = DigestClient(DigestCredentials(registrar.user, registrar.password))
    first = peer.transact(peer.request("REGISTER", registrar.uri), registrar.address)
    assert first.status == 401
    assert client.on_challenge(first.headers.get_all("WWW-Authenticate"))
    time.sleep(2.1)  # let the nonce expire (Kamailio's nonce_expire is in whole seconds)
    value = client.authorization(method="REGISTER", uri=registrar.uri)
    assert value is not None
    stale = peer.transact(
        peer.request("REGISTER", registrar.uri, extra=[("Authorization", value)]),
        registrar.address,
    )
    assert stale.status == 401, stale
    challenge = choose_challenge(stale.headers.get_all("WWW-Authenticate"))
    assert challenge is not None and challenge.stale
    # Right password + stale=true: the client retries with the new nonce, and succeeds.
    assert client.on_challenge(stale.headers.get_all("WWW-Authenticate"), already_sent=True)
    value = client.authorization(method="REGISTER", uri=registrar.uri)
    assert value is not None
    ok = peer.transact(
        peer.request("REGISTER", registrar.uri, extra=[("Authorization", value)]),
        registrar.address,
    )
    assert ok.status == 200, ok
