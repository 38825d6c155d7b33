"""Source allow-list for incoming SIP requests.

Trunk/IPBX addresses listed in ``AccessPolicy.trusted_networks`` are trusted; requests from any
other source are challenged (RFC 3261 section 22.1, see ``auth.DigestServer``), accepted or
refused with 403 according to the policy. Sans-IO: pure functions over address strings.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Literal

from callcenter.sip.auth import AuthStatus, DigestServer
from callcenter.sip.ratelimit import SourceRateLimiter

__all__ = [
    "AccessPolicy",
    "Admission",
    "Decision",
    "SourceGate",
    "classify_source",
    "is_trusted_source",
    "parse_host",
]

Decision = Literal["trusted", "challenge", "forbidden"]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=64)
def _parse_networks(networks: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    parsed: list[IPNetwork] = []
    for text in networks:
        try:
            # strict=False: "192.0.2.1/24" means the /24 (operators write host bits).
            parsed.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"invalid trusted network {text!r}: {exc}") from None
    return tuple(parsed)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """Who may send us requests.

    Decision table for a source outside ``trusted_networks``:
    ``require_auth_from_untrusted`` → ``challenge``; else ``allow_untrusted_without_auth`` →
    ``trusted`` (an open line, e.g. a demo on loopback); else ``forbidden``.
    """

    trusted_networks: tuple[str, ...] = ()
    """CIDRs or single addresses, IPv4 and IPv6 (``"203.0.113.0/24"``, ``"2001:db8::/32"``)."""
    require_auth_from_untrusted: bool = True
    """Digest-challenge INVITEs from other sources (401 + ``WWW-Authenticate``)."""
    allow_untrusted_without_auth: bool = False
    """Accept other sources without authentication (only when no challenge is required)."""

    def __post_init__(self) -> None:
        # Validate once at configuration time, with the offending entry in the message.
        _parse_networks(tuple(self.trusted_networks))

    @property
    def networks(self) -> tuple[IPNetwork, ...]:
        """The parsed trusted networks."""
        return _parse_networks(tuple(self.trusted_networks))


def parse_host(host: str) -> IPAddress | None:
    """Parse a transport source address (``192.0.2.1``, ``::1``, ``[::1]``, ``fe80::1%eth0``).

    IPv4-mapped IPv6 addresses (``::ffff:192.0.2.1``, seen on dual-stack sockets) are returned as
    IPv4. Host names and anything else return None: only literal addresses identify a source.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if not text or len(text) > 64:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted_source(policy: AccessPolicy, host: str) -> bool:
    """Return True when ``host`` lies in one of the policy's trusted networks.

    Use this (not ``classify_source``) for rate-limit exemption: an open policy classifies every
    source as ``trusted`` but must not exempt scanners from rate limiting.
    """
    address = parse_host(host)
    if address is None:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        # A zone index does not change which network the address belongs to.
        address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return any(address.version == net.version and address in net for net in policy.networks)


def classify_source(policy: AccessPolicy, host: str) -> Decision:
    """Decide what to do with a request from ``host`` (the transport source address).

    Returns:
        ``"trusted"`` (process it), ``"challenge"`` (answer 401 unless it carries valid
        credentials) or ``"forbidden"`` (answer 403). Malformed addresses are forbidden.
    """
    if parse_host(host) is None:
        return "forbidden"
    if is_trusted_source(policy, host):
        return "trusted"
    if policy.require_auth_from_untrusted:
        return "challenge"
    if policy.allow_untrusted_without_auth:
        return "trusted"
    return "forbidden"


@dataclass(frozen=True, slots=True)
class Admission:
    """What to do with one incoming request (see ``SourceGate.check``)."""

    action: Literal["process", "drop", "respond"]
    """``process`` it, ``drop`` it silently (rate limited), or ``respond`` with ``status_code``."""
    status_code: int | None = None
    """401 (challenge) or 403 when ``action`` is ``respond``."""
    headers: tuple[tuple[str, str], ...] = ()
    """Extra response headers (``WWW-Authenticate`` challenges for a 401)."""
    reason: str = ""
    """Why, for logs and the SIP trace (never contains secrets)."""
    username: str | None = None
    """The authenticated digest username, when the request was authenticated."""


class SourceGate:
    """Admission control in front of the transaction layer: rate limit, allow-list, digest.

    Order: the per-source rate limit first (cheapest, and a flood gets no answer at all), then
    the allow-list; from ``challenge`` sources, out-of-dialog INVITEs must carry valid digest
    credentials (401 otherwise); other requests from those sources pass (OPTIONS keep-alives,
    in-dialog BYE...). ``forbidden`` sources get 403 (ACK is dropped: it has no response).
    """

    def __init__(
        self,
        *,
        policy: AccessPolicy,
        limiter: SourceRateLimiter | None = None,
        digest: DigestServer | None = None,
    ) -> None:
        if policy.require_auth_from_untrusted and digest is None:
            raise ValueError("require_auth_from_untrusted needs a DigestServer")
        self.policy = policy
        self.limiter = limiter
        self.digest = digest

    def check(
        self,
        *,
        host: str,
        method: str,
        uri: str,
        authorization: str | None,
        now: float,
        in_dialog: bool = False,
        body: bytes = b"",
    ) -> Admission:
        """Decide about one request.

        Args:
            host: Transport source address.
            method: Request method.
            uri: Request-URI (checked against the digest ``uri`` parameter).
            authorization: The ``Authorization`` header value, if any.
            now: Monotonic seconds.
            in_dialog: True when the request belongs to an existing dialog (has a To tag).
            body: Request body (for ``qop=auth-int``).

        Returns:
            The admission decision.
        """
        if self.limiter is not None and not self.limiter.allow(host, now):
            return Admission("drop", reason="rate limited")
        decision = classify_source(self.policy, host)
        if decision == "forbidden":
            if method == "ACK":
                return Admission("drop", reason="source not allowed")
            return Admission("respond", 403, reason="source not allowed")
        if decision == "trusted":
            return Admission("process", reason="trusted source")
        # Only out-of-dialog INVITEs are challenged: ACK and CANCEL cannot be (RFC 3261 section
        # 22.1), and in-dialog requests ride on a dialog whose INVITE was already admitted.
        if method != "INVITE" or in_dialog:
            return Admission("process", reason="not challenged")
        assert self.digest is not None  # guaranteed by __init__
        if authorization is None:
            return Admission(
                "respond",
                401,
                tuple(self.digest.challenge_headers(now)),
                reason="credentials required",
            )
        result = self.digest.verify(authorization, method=method, now=now, uri=uri, body=body)
        if result.status is AuthStatus.OK:
            return Admission("process", reason="authenticated", username=result.username)
        stale = result.status is AuthStatus.STALE
        return Admission(
            "respond",
            401,
            tuple(self.digest.challenge_headers(now, stale=stale)),
            reason=result.reason,
            username=result.username,
        )
