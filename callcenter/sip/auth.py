"""HTTP Digest authentication for SIP (RFC 3261 section 22, RFC 2617, RFC 7616, RFC 8760).

Rules this module owns:

* Rule 1 (parsing): challenges and credentials are ``Digest`` followed by comma-separated
  ``name=value`` auth-params, values being tokens or quoted-strings (RFC 7616 section 3.3,
  RFC 3261 section 25.1). Parameter names are case-insensitive; a duplicated parameter or an
  unterminated quoted-string is an error.
* Rule 2 (client): among several challenges the strongest supported algorithm wins
  (SHA-512-256 > SHA-256 > MD5, RFC 8760 section 2.4); ``qop=auth`` is preferred over
  ``auth-int`` (RFC 3261 section 22.4 only requires ``auth``).
* Rule 3 (server): nonces are stateless (issue time + random salt + HMAC over both and the
  realm), expire after ``nonce_ttl`` seconds (answered ``stale=true`` when the digest itself was
  right, RFC 2617 section 3.2.1), and each nonce's nonce-count must strictly increase
  (RFC 2617 section 3.2.2), tracked in a bounded table.

Sans-IO: no sockets, no clock; ``now`` is monotonic seconds supplied by the caller.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "AuthError",
    "AuthResult",
    "AuthStatus",
    "DigestChallenge",
    "DigestClient",
    "DigestCredentials",
    "DigestServer",
    "build_authorization",
    "choose_challenge",
    "parse_auth_params",
]


class AuthError(ValueError):
    """A malformed challenge or credentials header, or an unusable challenge."""


# RFC 7616 section 3.7 + RFC 8760 section 2: algorithm name -> hashlib name. Strength order is
# the dict order reversed (later = stronger). "-sess" variants share the hash function.
_HASHES: dict[str, str] = {
    "MD5": "md5",
    "SHA-256": "sha256",
    "SHA-512-256": "sha512_256",
}
_STRENGTH: dict[str, int] = {name: rank for rank, name in enumerate(_HASHES)}


def _hash_available(hash_name: str) -> bool:
    try:
        hashlib.new(hash_name)
    except ValueError:  # OpenSSL builds without SHA-512/256
        return False
    return True


_AVAILABLE: frozenset[str] = frozenset(
    name for name, hash_name in _HASHES.items() if _hash_available(hash_name)
)


def _canonical_algorithm(value: str) -> str:
    """Return the canonical spelling of an algorithm token (they are case-insensitive)."""
    upper = value.strip().upper()
    sess = upper.endswith("-SESS")
    base = upper[:-5] if sess else upper
    return base + ("-sess" if sess else "")


def _base_algorithm(algorithm: str) -> str:
    return algorithm[:-5] if algorithm.endswith("-sess") else algorithm


def _hex(algorithm: str, data: str | bytes) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.new(_HASHES[_base_algorithm(algorithm)], raw).hexdigest()


def _is_supported(algorithm: str) -> bool:
    return _base_algorithm(algorithm) in _AVAILABLE


_TOKEN_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~/:@?[]=&$;#^{}|"
)


def _quote(value: str) -> str:
    # RFC 3261 section 25.1 quoted-pair: escape backslash and double quote.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_scheme(header_value: str) -> tuple[str, str]:
    text = header_value.strip()
    if not text:
        raise AuthError("empty authentication header")
    head, _, rest = text.partition(" ")
    if "\t" in head:
        head, _, tail = head.partition("\t")
        rest = tail + " " + rest
    if "=" in head or "," in head:
        raise AuthError(f"missing authentication scheme in {header_value!r}")
    return head, rest.strip(" \t")


def parse_auth_params(text: str) -> dict[str, str]:
    """Parse ``name=value, name="quoted"`` auth-params (RFC 7616 section 3.3).

    Names are returned lower-cased, quoted values unescaped. Whitespace (spaces, tabs, CR/LF
    of folded lines) around names, ``=`` and commas is ignored; empty list elements are allowed
    (RFC 7230 section 7 ``#rule``).

    Raises:
        AuthError: on an unterminated quoted-string, a missing ``=``, an empty name or value, or a
            duplicated parameter.
    """
    params: dict[str, str] = {}
    i = 0
    n = len(text)
    ws = " \t\r\n"
    while i < n:
        while i < n and (text[i] in ws or text[i] == ","):
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in ws and text[i] not in '=,"':
            i += 1
        name = text[start:i].lower()
        if not name:
            raise AuthError(f"expected a parameter name at offset {start}")
        while i < n and text[i] in ws:
            i += 1
        if i >= n or text[i] != "=":
            raise AuthError(f"parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in ws:
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            closed = False
            while i < n:
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    closed = True
                    i += 1
                    break
                chars.append(ch)
                i += 1
            if not closed:
                raise AuthError(f"unterminated quoted value for parameter {name!r}")
            value = "".join(chars)
        else:
            start = i
            while i < n and text[i] not in ws and text[i] != ",":
                i += 1
            value = text[start:i]
            if not value:
                raise AuthError(f"parameter {name!r} has an empty value")
            if any(ch not in _TOKEN_CHARS for ch in value):
                raise AuthError(f"parameter {name!r} has an invalid token value {value!r}")
        while i < n and text[i] in ws:
            i += 1
        if i < n and text[i] != ",":
            raise AuthError(f"expected ',' after parameter {name!r} at offset {i}")
        if name in params:
            raise AuthError(f"duplicated parameter {name!r}")
        params[name] = value
    return params


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A ``WWW-Authenticate``/``Proxy-Authenticate`` Digest challenge (RFC 7616 section 3.3)."""

    realm: str
    """The protection space; credentials are chosen by realm (RFC 3261 section 22.1)."""
    nonce: str
    """Server-chosen opaque value echoed in the credentials."""
    algorithm: str = "MD5"
    """Canonical algorithm name: ``MD5``, ``SHA-256``, ``SHA-512-256``, with ``-sess`` variants.

    RFC 2617 section 3.2.1: absent means MD5."""
    qop: tuple[str, ...] = ()
    """Offered quality-of-protection values, lower-cased (``auth``, ``auth-int``); empty for
    RFC 2069 compatibility mode."""
    opaque: str | None = None
    """Echoed back unchanged when present."""
    stale: bool = False
    """True when the previous credentials were right but their nonce expired (retry silently)."""

    @classmethod
    def parse(cls, header_value: str) -> DigestChallenge:
        """Parse one challenge header value.

        Raises:
            AuthError: when the value is not a well-formed Digest challenge.
        """
        scheme, rest = _split_scheme(header_value)
        if scheme.lower() != "digest":
            raise AuthError(f"unsupported authentication scheme {scheme!r}")
        params = parse_auth_params(rest)
        for required in ("realm", "nonce"):
            if required not in params:
                raise AuthError(f"challenge lacks the {required!r} parameter")
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        stale = params.get("stale", "false").strip().lower() == "true"
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=_canonical_algorithm(params.get("algorithm", "MD5")),
            qop=qop,
            opaque=params.get("opaque"),
            stale=stale,
        )

    def __str__(self) -> str:
        parts = [f"realm={_quote(self.realm)}", f"nonce={_quote(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={_quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        parts.append(f"algorithm={self.algorithm}")
        if self.qop:
            parts.append(f"qop={_quote(','.join(self.qop))}")
        return "Digest " + ", ".join(parts)

    @property
    def usable(self) -> bool:
        """True when this module can answer the challenge (algorithm and qop understood)."""
        if not _is_supported(self.algorithm):
            return False
        return not self.qop or "auth" in self.qop or "auth-int" in self.qop


def choose_challenge(values: Sequence[str]) -> DigestChallenge | None:
    """Pick the challenge to answer among several header values.

    RFC 8760 section 2.4 lets a UAS offer one challenge per algorithm; RFC 7616 section 3.7 asks
    servers to list them most preferred first. We answer the strongest algorithm we support
    (so an MD5 challenge listed first cannot downgrade us) and keep header order among equals.
    Unparseable, non-Digest and unusable challenges are skipped.

    Returns:
        The chosen challenge, or None when none is usable.
    """
    best: DigestChallenge | None = None
    for value in values:
        try:
            challenge = DigestChallenge.parse(value)
        except AuthError:
            continue
        if not challenge.usable:
            continue
        rank = _STRENGTH[_base_algorithm(challenge.algorithm)]
        if best is None or rank > _STRENGTH[_base_algorithm(best.algorithm)]:
            best = challenge
    return best


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """A username/password pair for answering challenges."""

    username: str
    """The digest username (often, but not always, the user part of the AOR)."""
    password: str
    """The shared secret; never logged or put in error messages."""
    realm: str | None = None
    """Restrict these credentials to one realm; None answers any realm."""

    def __repr__(self) -> str:
        return (
            f"DigestCredentials(username={self.username!r}, password='***', realm={self.realm!r})"
        )


def _response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str | None,
    body: bytes,
) -> str:
    # RFC 7616 section 3.4.2 (A1) and 3.4.3 (A2), RFC 2617 section 3.2.2.
    ha1 = _hex(algorithm, f"{username}:{realm}:{password}")
    if algorithm.endswith("-sess"):
        ha1 = _hex(algorithm, f"{ha1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        ha2 = _hex(algorithm, f"{method}:{uri}:{_hex(algorithm, body)}")
    else:
        ha2 = _hex(algorithm, f"{method}:{uri}")
    if qop is None:
        # RFC 2069 compatibility (RFC 2617 section 3.2.2.1).
        return _hex(algorithm, f"{ha1}:{nonce}:{ha2}")
    return _hex(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def build_authorization(
    challenge: DigestChallenge,
    credentials: DigestCredentials,
    *,
    method: str,
    uri: str,
    nc: int,
    cnonce: str,
    body: bytes = b"",
) -> str:
    """Build the ``Authorization``/``Proxy-Authorization`` value answering ``challenge``.

    Args:
        challenge: The challenge being answered (see ``choose_challenge``).
        credentials: Username and password; their realm, when set, must match.
        method: The request method (for ACK/CANCEL: as RFC 3261 section 22.1 says, the INVITE's
            credentials are reused, so pass ``INVITE`` there).
        uri: The Request-URI of the request being authenticated, exactly as sent.
        nc: The nonce-count, starting at 1 for each new nonce (RFC 2617 section 3.2.2).
        cnonce: A client nonce (random, unquoted token characters recommended).
        body: The message body, used only with ``qop=auth-int``.

    Returns:
        The header value, starting with ``Digest``.

    Raises:
        AuthError: when the challenge is unusable, the realm does not match, or nc is out of
            range.
    """
    if not challenge.usable:
        raise AuthError(
            f"cannot answer a challenge with algorithm {challenge.algorithm} "
            f"and qop {','.join(challenge.qop) or 'none'}"
        )
    if credentials.realm is not None and credentials.realm != challenge.realm:
        raise AuthError(f"no credentials for realm {challenge.realm!r}")
    if not 1 <= nc <= 0xFFFFFFFF:
        raise AuthError(f"nonce-count {nc} out of range")
    qop: str | None
    if not challenge.qop:
        qop = None
    elif "auth" in challenge.qop:
        qop = "auth"
    else:
        qop = "auth-int"
    nc_text = f"{nc:08x}"
    response = _response(
        algorithm=challenge.algorithm,
        username=credentials.username,
        realm=challenge.realm,
        password=credentials.password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        nc=nc_text,
        cnonce=cnonce,
        qop=qop,
        body=body,
    )
    parts = [
        f"username={_quote(credentials.username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if qop is not None or challenge.algorithm.endswith("-sess"):
        parts.append(f"cnonce={_quote(cnonce)}")
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    if qop is not None:
        parts.append(f"qop={qop}")
        parts.append(f"nc={nc_text}")
    return "Digest " + ", ".join(parts)


class DigestClient:
    """Client-side digest state for one registration or dialog (nonce-count bookkeeping).

    Feed it every 401/407 challenge list with ``on_challenge``; then ``authorization`` returns
    the header value for each (re)sent request, incrementing nc while the nonce stays the same
    (RFC 2617 section 3.2.2: reusing a nonce needs a fresh nc).
    """

    def __init__(
        self,
        credentials: DigestCredentials,
        *,
        cnonce_factory: Callable[[], str] | None = None,
    ) -> None:
        self.credentials = credentials
        self._cnonce_factory = cnonce_factory or (lambda: secrets.token_hex(8))
        self._challenge: DigestChallenge | None = None
        self._nc = 0
        self._cnonce = ""

    @property
    def challenge(self) -> DigestChallenge | None:
        """The challenge currently answered, if any."""
        return self._challenge

    def on_challenge(self, values: Sequence[str], *, already_sent: bool = False) -> bool:
        """Record a 401/407 response's challenges.

        Args:
            values: Every ``WWW-Authenticate`` (or ``Proxy-Authenticate``) value.
            already_sent: True when the request that got this response carried credentials for
                this realm; then only a ``stale=true`` challenge is worth a retry (RFC 3261
                section 22.2: otherwise the password is wrong).

        Returns:
            True when the request should be retried with ``authorization()``.
        """
        challenge = choose_challenge(values)
        if challenge is None:
            return False
        if self.credentials.realm is not None and self.credentials.realm != challenge.realm:
            return False
        if already_sent and not challenge.stale:
            return False
        self._challenge = challenge
        self._nc = 0
        self._cnonce = self._cnonce_factory()
        return True

    def authorization(self, *, method: str, uri: str, body: bytes = b"") -> str | None:
        """Return the credentials for the next request, or None before any challenge."""
        if self._challenge is None:
            return None
        self._nc += 1
        return build_authorization(
            self._challenge,
            self.credentials,
            method=method,
            uri=uri,
            nc=self._nc,
            cnonce=self._cnonce,
            body=body,
        )


class AuthStatus(enum.Enum):
    """Outcome of ``DigestServer.verify``."""

    OK = "ok"
    STALE = "stale"
    """Right digest, expired nonce: re-challenge with ``stale=true``."""
    FAILED = "failed"
    """Wrong or malformed credentials: re-challenge (or 403)."""


@dataclass(frozen=True, slots=True)
class AuthResult:
    """What ``DigestServer.verify`` decided."""

    status: AuthStatus
    """OK, STALE or FAILED."""
    reason: str = ""
    """Human-readable cause for logs; never contains the password, the expected digest or the
    secret."""
    username: str | None = None
    """The username the credentials claimed (authenticated only when status is OK)."""

    @property
    def ok(self) -> bool:
        """True when the request is authenticated."""
        return self.status is AuthStatus.OK


_NONCE_STRUCT = struct.Struct("!Q8s")  # issue time in microseconds, 8 random bytes
_NONCE_MAC_LEN = 16
# A nonce "from the future" beyond this is forged or from another clock: reject.
_CLOCK_SLACK = 1.0


class DigestServer:
    """Challenge and verify digest credentials (our UAS side, RFC 3261 section 22.1).

    Nonces carry their issue time and an HMAC (keyed with ``secret``) so they need no state;
    only the highest nonce-count seen per nonce is kept, in a table bounded by ``max_nonces``.
    When the table overflows, the oldest entries go and every nonce issued at or before the
    newest evicted one is answered STALE, so eviction can never re-open a replay.
    """

    def __init__(
        self,
        *,
        realm: str,
        secret: bytes,
        users: Mapping[str, str],
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        nonce_ttl: float = 300.0,
        max_nonces: int = 10000,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the nonce secret must be at least 16 bytes")
        canonical = tuple(_canonical_algorithm(a) for a in algorithms)
        if not canonical:
            raise ValueError("at least one algorithm is required")
        for algorithm in canonical:
            if not _is_supported(algorithm):
                raise ValueError(f"unsupported digest algorithm {algorithm!r}")
        if nonce_ttl <= 0 or max_nonces < 1:
            raise ValueError("nonce_ttl and max_nonces must be positive")
        self.realm = realm
        self.algorithms = canonical
        self.nonce_ttl = nonce_ttl
        self._secret = secret
        self._users = dict(users)
        self._max_nonces = max_nonces
        # nonce -> (issue time, highest nc accepted); insertion order = first accepted use.
        self._nc_table: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._evicted_up_to = float("-inf")

    # -- nonces -------------------------------------------------------------------------------

    def _mac(self, payload: bytes) -> bytes:
        msg = payload + self.realm.encode("utf-8")
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:_NONCE_MAC_LEN]

    def make_nonce(self, now: float) -> str:
        """Return a fresh stateless nonce issued at ``now``."""
        payload = _NONCE_STRUCT.pack(max(0, round(now * 1_000_000)), secrets.token_bytes(8))
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode("ascii")

    def _nonce_time(self, nonce: str) -> float | None:
        """Return the issue time of a nonce we made, or None when it is not ours."""
        try:
            raw = base64.urlsafe_b64decode(nonce.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            return None
        if len(raw) != _NONCE_STRUCT.size + _NONCE_MAC_LEN:
            return None
        payload, mac = raw[: _NONCE_STRUCT.size], raw[_NONCE_STRUCT.size :]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        micros, _salt = _NONCE_STRUCT.unpack(payload)
        return float(micros) / 1_000_000

    # -- challenge ----------------------------------------------------------------------------

    def challenge_headers(self, now: float, *, stale: bool = False) -> list[tuple[str, str]]:
        """Return the ``WWW-Authenticate`` headers for a 401 response.

        One header per configured algorithm, most preferred first (RFC 8760 section 2.4), all
        sharing one fresh nonce and offering ``qop="auth"``.
        """
        nonce = self.make_nonce(now)
        return [
            (
                "WWW-Authenticate",
                str(
                    DigestChallenge(
                        realm=self.realm,
                        nonce=nonce,
                        algorithm=algorithm,
                        qop=("auth",),
                        stale=stale,
                    )
                ),
            )
            for algorithm in self.algorithms
        ]

    # -- verification -------------------------------------------------------------------------

    def verify(
        self,
        authorization_value: str,
        *,
        method: str,
        now: float,
        uri: str | None = None,
        body: bytes = b"",
    ) -> AuthResult:
        """Check an ``Authorization`` header value.

        Args:
            authorization_value: The header value (``Digest username=...``).
            method: The method of the request carrying it.
            now: Monotonic time in seconds (the clock the nonces were issued with).
            uri: The Request-URI; when given, the ``uri`` parameter must equal it
                (RFC 2617 section 3.2.2.5).
            body: The request body, for ``qop=auth-int``.

        Returns:
            OK (authenticated; the nonce-count is recorded), STALE (right digest, expired or
            forgotten nonce) or FAILED with a reason.
        """
        try:
            scheme, rest = _split_scheme(authorization_value)
            if scheme.lower() != "digest":
                return AuthResult(AuthStatus.FAILED, f"unsupported scheme {scheme[:20]!r}")
            params = parse_auth_params(rest)
        except AuthError as exc:
            return AuthResult(AuthStatus.FAILED, f"malformed credentials: {exc}")
        missing = [p for p in ("username", "realm", "nonce", "uri", "response") if p not in params]
        if missing:
            return AuthResult(AuthStatus.FAILED, f"missing parameter(s) {', '.join(missing)}")
        username = params["username"]
        if params["realm"] != self.realm:
            return AuthResult(AuthStatus.FAILED, "wrong realm", username)
        algorithm = _canonical_algorithm(params.get("algorithm", "MD5"))
        if algorithm not in self.algorithms:
            return AuthResult(
                AuthStatus.FAILED, f"algorithm {algorithm[:20]!r} not offered", username
            )
        qop = params.get("qop")
        if qop is None:
            # We always offer qop=auth; refusing RFC 2069 responses keeps nc replay protection.
            return AuthResult(AuthStatus.FAILED, "qop missing", username)
        qop = qop.lower()
        if qop not in ("auth", "auth-int"):
            return AuthResult(AuthStatus.FAILED, f"unsupported qop {qop[:20]!r}", username)
        nc_text = params.get("nc", "")
        cnonce = params.get("cnonce")
        if cnonce is None or len(nc_text) != 8:
            return AuthResult(AuthStatus.FAILED, "qop without valid nc/cnonce", username)
        try:
            nc = int(nc_text, 16)
        except ValueError:
            return AuthResult(AuthStatus.FAILED, "nc is not hexadecimal", username)
        if uri is not None and params["uri"] != uri:
            return AuthResult(AuthStatus.FAILED, "digest uri does not match Request-URI", username)
        nonce = params["nonce"]
        issued = self._nonce_time(nonce)
        if issued is None:
            return AuthResult(AuthStatus.FAILED, "nonce not issued by us", username)
        if issued > now + _CLOCK_SLACK:
            return AuthResult(AuthStatus.FAILED, "nonce from the future", username)

        password = self._users.get(username)
        # Compute a digest even for unknown users so timing does not reveal which exist.
        expected = _response(
            algorithm=algorithm,
            username=username,
            realm=self.realm,
            password=password if password is not None else secrets.token_hex(16),
            method=method,
            uri=params["uri"],
            nonce=nonce,
            nc=nc_text,
            cnonce=cnonce,
            qop=qop,
            body=body,
        )
        matches = hmac.compare_digest(expected.encode(), params["response"].lower().encode())
        if password is None or not matches:
            return AuthResult(AuthStatus.FAILED, "wrong credentials", username)

        # RFC 2617 section 3.2.1: stale only when the digest was valid but the nonce is not.
        if now - issued > self.nonce_ttl:
            return AuthResult(AuthStatus.STALE, "nonce expired", username)
        entry = self._nc_table.get(nonce)
        if entry is None:
            if issued <= self._evicted_up_to:
                return AuthResult(AuthStatus.STALE, "nonce forgotten (table full)", username)
            last_nc = 0
        else:
            last_nc = entry[1]
        # RFC 2617 section 3.2.2: the nc must increase for every request with the same nonce.
        if nc <= last_nc:
            return AuthResult(AuthStatus.FAILED, "replayed nonce-count", username)
        self._nc_table[nonce] = (issued, nc)
        if len(self._nc_table) > self._max_nonces:
            self._prune(now)
        while len(self._nc_table) > self._max_nonces:
            _, (evicted_issued, _nc) = self._nc_table.popitem(last=False)
            self._evicted_up_to = max(self._evicted_up_to, evicted_issued)
        return AuthResult(AuthStatus.OK, "", username)

    def _prune(self, now: float) -> None:
        """Forget nonce-counts of expired nonces (they are answered STALE anyway)."""
        horizon = now - self.nonce_ttl
        expired = [n for n, (issued, _) in self._nc_table.items() if issued < horizon]
        for nonce in expired:
            del self._nc_table[nonce]

    @property
    def tracked_nonces(self) -> int:
        """How many nonces currently have a recorded nonce-count."""
        return len(self._nc_table)
