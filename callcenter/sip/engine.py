"""The SIP user agent engine: UAS for incoming calls, UAC for REGISTER, (re-)INVITE, BYE (sans-IO).

Shaped like aioquic's ``QuicConnection``: datagrams go in with ``receive_datagram``, come out of
``datagrams_to_send``; stream bytes go in with ``receive_stream_data`` and come out of
``stream_data_to_send`` (``streams_to_close``/``stream_closed`` manage connections); time is
always a parameter; ``get_timer``/``handle_timer`` expose every transaction, dialog and
registration timer; the application reads ``next_event`` and issues
commands (``ring``, ``answer``, ``reject``, ``hangup``...). No asyncio, no sockets.

Rules this file owns (the UA core, RFC 3261 sections 8, 9, 12-15, 18):

* Rule 1 (input hygiene): rate limiting happens before parsing; a request that fails to parse
  gets the error's status code whenever its request line could be split (section 8.2.6, with a
  Warning naming the problem), copying whichever of Via/From/To/Call-ID/CSeq exist (RFC 4475
  section 3.3.1); responses and ACKs are never answered (sections 18.1.2 and 17.1.1.3).
  Nothing raises out of ``receive_datagram``/``receive_stream_data``/``handle_timer``.
* Rule 2 (response routing, section 18.2.2 and RFC 3581): ``received`` is added to the top Via
  when the source differs from sent-by; ``rport`` is filled with the source port. Over a stream
  the answer goes back on the connection the request came on. Over UDP it goes to the source
  address and port when ``rport`` was asked for, otherwise to ``received`` and the sent-by port
  (5060); when the top Via is missing or unparseable, to the source address and port (the only
  route left, RFC 4475 section 3.1.2.1).
* Rule 3 (UAS order, section 8.2): transaction match (retransmissions), then validation
  (405/501/400/416/420/415/406), merged requests (482, section 8.2.2.2), then CANCEL (section
  9.2), in-dialog routing (481, 500 for out-of-order CSeq, section 12.2.2), then the
  out-of-dialog methods with the access policy and digest challenge for INVITE (section 22).
* Rule 4 (2xx reliability, section 13.3.1.4): the UA core retransmits a 2xx to INVITE from T1
  doubling up to T2 until the ACK; after 64*T1 the call is confirmed and ended with BYE. The
  callee sends no BYE before the ACK (section 15).
* Rule 5 (re-INVITE, section 14.2): a re-INVITE while an earlier one is still unanswered gets
  500 with Retry-After; one arriving while an offer/answer exchange of ours is incomplete (our
  2xx not yet acknowledged) gets 491.
* Rule 6 (streams, section 18): each connection the adapter reports has its own
  ``StreamParser``; a framing error (bad, missing or conflicting Content-Length, oversized
  message) loses the message boundaries, so the connection is handed back to the adapter to be
  closed (RFC 4475 sections 3.1.2.3 and 3.3.9) without an answer. A call set up over a
  connection carries ``;transport=tcp`` in our Contact, and our in-dialog requests reuse the
  connection (Via ``SIP/2.0/TCP``) while it is open, else fall back to UDP to the dialog's
  next hop. A response whose connection has closed is dropped (the section 18.2.2 SHOULD of
  opening a new connection is not implemented: the adapter never dials out). Double-CRLF
  keepalives get a CRLF pong (RFC 5626 section 4.4.1).
* Rule 7 (outbound INVITE, sections 8.1.3.5, 9.1, 13.2.2.4 and 22.2): a 401/407 is answered by
  a new INVITE (same Call-ID, From tag and To, CSeq + 1, new branch) carrying Authorization or
  Proxy-Authorization; a challenge repeated with the same nonce, or without ``stale=true``
  after we sent credentials, fails the call. The transaction acknowledges non-2xx responses;
  the UA core acknowledges every 2xx (with the INVITE's credentials) through the route set of
  the dialog (the reversed Record-Route, section 12.1.2). A CANCEL is only sent once a
  provisional response arrived; if none comes, Timer B ends the call; if no final response
  comes 64*T1 after the CANCEL the INVITE is abandoned; a 2xx that crosses the CANCEL is
  acknowledged and hung up with BYE. Every outcome is reported exactly once.
* Rule 8 (re-INVITE we send, sections 14.1 and 12.2.1.2): at most one INVITE transaction per
  dialog in either direction: a new offer waits for the running one, and a re-INVITE received
  while ours is unanswered gets 491. A 491 to ours is retried after 2.1-4 s when we generated
  the Call-ID, 0-2 s otherwise; 481 ends the call, 408 or a timeout ends it with BYE; any
  other failure leaves the session as it was.
* Rule 9 (blind transfer, RFC 3515 and RFC 4488): a REFER is accepted only inside a confirmed
  dialog (out of dialog: 403, section 2.4.2 leaves acceptance to local policy and we never
  let an unknown party make us place calls). Exactly one Refer-To (400 otherwise, section
  2.4.2) naming a sip/sips/tel URI; an embedded ``Replaces`` (attended transfer, RFC 3891) or a
  ``method`` other than INVITE is declined with 403 (see ``_on_refer``). The 202 is followed
  by the implicit subscription's NOTIFYs (sections 2.4.4-2.4.7): ``message/sipfrag`` bodies,
  ``Event: refer`` (with ``;id=`` from the second REFER of a dialog), one NOTIFY transaction
  at a time with the latest state queued (RFC 6665 section 4.2.2), the final one
  ``terminated;reason=noresource``. A subscription outlives the INVITE usage (RFC 5057: the
  peer's BYE ends the call, not the subscription); a failed NOTIFY (481 included) or a
  timeout removes it quietly, and it ends with ``reason=timeout`` at ``refer_expires``.
  ``Refer-Sub: false`` is honoured and echoed in the 202 (RFC 4488 section 4).
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import random
import secrets
import traceback
from collections import deque
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from callcenter.sip.access import AccessPolicy, classify_source
from callcenter.sip.auth import (
    AuthStatus,
    DigestClient,
    DigestCredentials,
    DigestServer,
    choose_challenge,
)
from callcenter.sip.dialog import Dialog, DialogState, uri_address
from callcenter.sip.errors import LocalSipError, SipError
from callcenter.sip.events import (
    CallCancelled,
    CallConfirmed,
    CallTerminated,
    DropReason,
    DtmfInfoReceived,
    IncomingCall,
    MessageDropped,
    OutboundCallAnswered,
    OutboundCallFailed,
    OutboundCallRinging,
    RegistrationFailed,
    RegistrationSucceeded,
    ReInviteAnswered,
    ReInviteConfirmed,
    ReInviteFailed,
    ReInviteReceived,
    SipEvent,
    SipRequestReceived,
    SipResponseSent,
    TerminationCause,
    TransferRequested,
)
from callcenter.sip.headers import (
    CSeq,
    NameAddress,
    Via,
    name_addresses_from_values,
    parse_contacts,
    parse_int_header,
    parse_vias,
    quote_string,
)
from callcenter.sip.message import Headers, SipRequest, SipResponse, reason_phrase
from callcenter.sip.parser import StreamParser, is_keepalive, parse_message
from callcenter.sip.ratelimit import SourceRateLimiter
from callcenter.sip.timers import TimerValues, next_interval
from callcenter.sip.transaction import (
    Address,
    Connection,
    Destination,
    InviteClientState,
    InviteClientTransaction,
    InviteServerState,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    ServerKey,
    make_response,
    new_branch,
    new_tag,
    server_key,
)
from callcenter.sip.uri import SipUri, uri_scheme
from callcenter.sip.validation import validate_request

__all__ = [
    "ALLOWED_METHODS",
    "KNOWN_METHODS",
    "CallState",
    "RegistrationConfig",
    "RegistrationState",
    "SipEngine",
    "SipEngineConfig",
    "parse_dtmf_info",
]

logger = logging.getLogger(__name__)

KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "UPDATE",
        "PUBLISH",
    }
)
"""Methods this UA understands; others get 501 (RFC 3261 section 21.5.2)."""
ALLOWED_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "REFER"})
"""Methods accepted; other known methods get 405 (RFC 3261 section 21.4.6)."""
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset({"norefersub"})
"""Option tags we support: only RFC 4488 ``norefersub`` (no 100rel, no session timers, no
``replaces``)."""
_ALLOW_VALUE = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, REFER"
_SUPPORTED_VALUE = "norefersub"
_DTMF_TYPES = ("application/dtmf-relay", "application/dtmf")
_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_MAX_CHALLENGES = 3
"""Challenges answered per request: a proxy's 407, the UAS's 401, one stale nonce."""
_MAX_REFER_SUBSCRIPTIONS = 4
"""Live transfer subscriptions per call; a further REFER is declined (bounds our state)."""
_SIPFRAG_TYPE = "message/sipfrag;version=2.0"
_MAX_GLARE_RETRIES = 5
"""491 answers to our re-INVITE retried before giving up (section 14.1 sets no bound)."""
_ENGINE_HEADERS = frozenset(
    {
        "via",
        "v",
        "from",
        "f",
        "to",
        "t",
        "call-id",
        "i",
        "cseq",
        "contact",
        "m",
        "max-forwards",
        "route",
        "content-length",
        "l",
        "content-type",
        "c",
        "authorization",
        "proxy-authorization",
        "p-asserted-identity",
        "allow",
        "supported",
        "k",
        "user-agent",
    }
)
"""Headers ``invite`` builds itself; callers may not pass them in ``headers``."""


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    """Where and how the engine registers (RFC 3261 section 10.2)."""

    registrar_uri: str
    """Request-URI of the REGISTER, e.g. ``sip:pbx.example.org``."""
    aor: str
    """Address-of-record put in From/To, e.g. ``sip:3975@pbx.example.org``."""
    username: str
    """Digest username."""
    password: str = field(repr=False)
    """Digest password (never logged)."""
    expires: int = 300
    """Requested binding lifetime in seconds."""
    refresh_ratio: float = 0.8
    """Refresh when this fraction of the granted lifetime has elapsed."""
    retry_min: float = 5.0
    """First back-off delay after a failure, doubled on each further failure."""
    retry_max: float = 300.0
    """Longest back-off delay."""
    registrar_addr: tuple[str, int] | None = None
    """Transport address of the registrar (resolved by the adapter); by default the IP literal
    of ``registrar_uri`` and its port (5060)."""
    contact_user: str | None = None
    """User part of our Contact; defaults to the AOR's user."""


@dataclass(frozen=True, slots=True)
class SipEngineConfig:
    """Static configuration of a ``SipEngine``."""

    local_host: str
    """Address the UDP socket is bound to."""
    local_port: int
    """UDP port the socket is bound to."""
    user_agent: str = "callcenter-solidarites/0.1"
    """``User-Agent``/``Server`` header value."""
    advertised_host: str | None = None
    """Host put in Via/Contact when it differs from ``local_host`` (NAT, 0.0.0.0 binds)."""
    t1: float = 0.5
    """RFC 3261 T1 (RTT estimate)."""
    t2: float = 4.0
    """RFC 3261 T2 (maximum retransmission interval)."""
    t4: float = 5.0
    """RFC 3261 T4 (maximum message lifetime)."""
    access: AccessPolicy | None = None
    """Source allow-list for out-of-dialog INVITEs; ``None`` trusts everybody."""
    digest: DigestServer | None = None
    """Digest server challenging INVITEs the access policy classifies as ``challenge``."""
    rate_limiter: SourceRateLimiter | None = None
    """Per-source rate limiting, applied before parsing."""
    registration: RegistrationConfig | None = None
    """Upstream registration (started by ``start_registration``)."""
    max_message_size: int = 65535
    """Larger datagrams are dropped unparsed; on a stream, a larger header section or body is a
    framing error that closes the connection."""
    contact_user: str = "callcenter"
    """User part of our Contact in dialogs."""
    drain_retry_after: int = 60
    """Retry-After (seconds) of the 503 sent while draining."""
    trace: bool = False
    """Keep ``SipEngine.trace``: (now, "in"|"out", first line, peer address) per message."""
    refer_expires: int = 120
    """Lifetime (seconds) of the implicit subscription a REFER creates (RFC 3515 section 2.4.4):
    without a final ``notify_transfer`` by then, the engine ends it with ``reason=timeout``."""


class CallState(enum.Enum):
    """The UA core's view of one call."""

    INCOMING = "incoming"
    """UAS: INVITE received, no final response yet (ringing or not)."""
    ANSWERED = "answered"
    """UAS: 2xx sent, waiting for the ACK."""
    CALLING = "calling"
    """UAC: INVITE sent, no final response yet."""
    CANCELLING = "cancelling"
    """UAC: ``cancel`` was called; waiting for the INVITE's outcome (section 9.1)."""
    CONFIRMED = "confirmed"
    """Dialog confirmed, media flowing."""
    TERMINATING = "terminating"
    """Our BYE is in flight."""
    TERMINATED = "terminated"
    """Over."""


class RegistrationState(enum.Enum):
    """Lifecycle of the upstream registration."""

    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    BACKING_OFF = "backing_off"
    UNREGISTERING = "unregistering"


class _CallLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = self.extra or {}
        return f"[{extra.get('call_id', '-')}] {msg}", kwargs


@dataclass(slots=True, eq=False)
class _PendingOk:
    """A 2xx to an INVITE the UA core retransmits until the ACK (section 13.3.1.4)."""

    data: bytes
    addr: Destination
    cseq: int
    kind: Literal["initial", "reinvite"]
    offer_in_2xx: bool
    interval: float
    next_at: float
    give_up_at: float


@dataclass(slots=True, eq=False)
class _Auth:
    """Digest state of one outbound call (RFC 3261 section 22.2/22.3).

    One ``DigestClient`` per header answered: a proxy's 407 (``Proxy-Authorization``) and the
    UAS's 401 (``Authorization``) may both have to be carried by the same request.
    """

    credentials: DigestCredentials | None
    clients: dict[str, DigestClient] = field(default_factory=dict)
    answered: int = 0
    """Challenges answered for the current request (bounded by ``_MAX_CHALLENGES``); a new
    request (not a resend with credentials) starts again from zero."""

    def headers(self, method: str, uri: str, body: bytes) -> list[tuple[str, str]]:
        """Credentials for the next request (a fresh nonce-count for each, RFC 2617 3.2.2)."""
        out: list[tuple[str, str]] = []
        for name, client in self.clients.items():
            value = client.authorization(method=method, uri=uri, body=body)
            if value is not None:
                out.append((name, value))
        return out


@dataclass(slots=True, eq=False)
class _OutReInvite:
    """A re-INVITE we sent (section 14.1): its offer, transaction and the ACK for its 2xx."""

    sdp: bytes
    request: SipRequest
    ctx: InviteClientTransaction | None = None
    ack: bytes | None = None
    ack_addr: Destination | None = None


@dataclass(slots=True, eq=False)
class _Call:
    call_id: str
    role: Literal["uas", "uac"]
    state: CallState
    invite: SipRequest
    remote_addr: Address
    log: _CallLog
    conn: Connection | None = None
    dialog: Dialog | None = None
    invite_stx: InviteServerTransaction | None = None
    invite_ctx: InviteClientTransaction | None = None
    pending_ok: _PendingOk | None = None
    reinvite_stx: InviteServerTransaction | None = None
    reinvite_offer: bool = False
    bye_after_ack: bool = False
    cancel_requested: bool = False
    """UAC: ``cancel`` was called (the CANCEL waits for a provisional response, section 9.1)."""
    cancel_sent: bool = False
    cancel_deadline: float | None = None
    """UAC: give up on the INVITE this long after our CANCEL (section 9.1: 64*T1)."""
    provisional_seen: bool = False
    """UAC: the current INVITE transaction got a 1xx (a CANCEL may be sent)."""
    auth: _Auth | None = None
    forks: dict[str, bytes] = field(default_factory=dict)
    """UAC: To tag -> ACK of every extra 2xx (another fork) we acknowledged and hung up."""
    reinvite_out: _OutReInvite | None = None
    """Our re-INVITE in progress (no final response yet)."""
    reinvite_queued: bytes | None = None
    """SDP of a re-INVITE to send once no INVITE transaction is in progress (section 14.1)."""
    reinvite_retry_at: float | None = None
    """When to retry after a 491 (section 14.1 glare)."""
    reinvite_glares: int = 0
    bye_cause: TerminationCause = "local_hangup"
    ack_data: bytes | None = None
    ended: bool = False
    refers: int = 0
    """REFERs accepted in this dialog (the second and later NOTIFYs carry ``;id=``)."""


@dataclass(slots=True, eq=False)
class _ReferSubscription:
    """The implicit subscription of one accepted REFER (RFC 3515 sections 2.4.4-2.4.7).

    It keeps its own reference to the dialog: it outlives the call (RFC 5057 section 4).
    """

    call_id: str
    refer_id: int
    event: str
    """``refer`` or ``refer;id=<CSeq>`` (section 2.4.6)."""
    dialog: Dialog
    conn: Connection | None
    log: _CallLog
    expires_at: float | None
    """When the engine ends it with ``reason=timeout``; None once the final NOTIFY is queued."""
    last_frag: str = "SIP/2.0 100 Trying\r\n"
    tx: NonInviteClientTransaction | None = None
    queued: tuple[str, bool, str] | None = None
    """(sipfrag, final, termination reason) waiting for the NOTIFY in flight (RFC 6665 4.2.2)."""
    final_queued: bool = False
    final_sent: bool = False


@dataclass(slots=True, eq=False)
class _Registration:
    config: RegistrationConfig
    destination: Address
    call_id: str
    from_tag: str
    digest: DigestClient
    state: RegistrationState = RegistrationState.IDLE
    cseq: int = 0
    tx: NonInviteClientTransaction | None = None
    next_at: float | None = None
    failures: int = 0
    expires: int = 0
    sent_auth: bool = False
    auth_retries: int = 0
    unregister_requested: bool = False
    auth_header: str = "Authorization"


@dataclass(slots=True, eq=False)
class _Stream:
    """One stream connection reported by the adapter (Rule 6)."""

    peer: Address
    parser: StreamParser
    pings: int = 0
    closing: bool = False
    """A framing error handed it to the adapter to close: nothing more is read or sent."""


_Timed = (
    InviteServerTransaction
    | NonInviteServerTransaction
    | InviteClientTransaction
    | NonInviteClientTransaction
    | _Call
    | _Registration
    | _ReferSubscription
)


def parse_dtmf_info(content_type: str, body: bytes) -> tuple[str, int | None] | None:
    """Parse an INFO DTMF body (``application/dtmf-relay`` or ``application/dtmf``).

    Args:
        content_type: The Content-Type value.
        body: The body.

    Returns:
        ``(digit, duration_ms)`` or ``None`` when the body carries no valid digit.
    """
    media = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace")
    signal: str | None = None
    duration: int | None = None
    if media == "application/dtmf-relay":
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if not sep:
                continue
            key = name.strip().lower()
            if key == "signal":
                signal = value.strip()
            elif key == "duration":
                digits = value.strip()
                if digits.isascii() and digits.isdigit() and len(digits) <= 6:
                    duration = int(digits)
    elif media == "application/dtmf":
        signal = text.strip()
    if signal is None:
        return None
    # Some gateways send the RFC 4733 event codes 10/11 for * and #.
    signal = {"10": "*", "11": "#"}.get(signal, signal.upper())
    if len(signal) != 1 or signal not in _DTMF_DIGITS:
        return None
    return signal, duration


def _warning_text(text: str) -> str:
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)[:200]
    return quote_string(cleaned)


def _media_type(message: SipRequest | SipResponse) -> str:
    value = message.headers.get("Content-Type") or ""
    return value.split(";", 1)[0].strip().lower()


def _sdp_of(message: SipRequest | SipResponse) -> bytes | None:
    if message.body and _media_type(message) == "application/sdp":
        return message.body
    return None


def _format_host(host: str) -> str:
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _uri_user(uri: str) -> str | None:
    scheme = uri_scheme(uri)
    if scheme in ("sip", "sips"):
        try:
            return SipUri.parse(uri).user_unescaped
        except SipError:
            return None
    if scheme == "tel":
        # RFC 3966: the number runs up to the first parameter.
        return uri[4:].split(";", 1)[0] or None
    return None


class SipEngine:
    """A sans-IO SIP user agent (UDP datagrams and TCP streams).

    Commands on a call that has already ended (e.g. ``answer`` racing a CANCEL the application
    has not read yet) are ignored and logged at debug level: the event explaining why is in the
    queue.
    """

    def __init__(self, *, config: SipEngineConfig) -> None:
        """Create an engine.

        Args:
            config: The engine configuration.
        """
        self.config = config
        self.timers = TimerValues(t1=config.t1, t2=config.t2, t4=config.t4)
        self.trace: list[tuple[float, str, str, Address]] | None = [] if config.trace else None
        self._host = config.advertised_host or config.local_host
        self._outgoing: list[tuple[bytes, Address]] = []
        self._stream_out: list[tuple[int, bytes]] = []
        self._to_close: list[int] = []
        self._streams: dict[int, _Stream] = {}
        self._events: deque[SipEvent] = deque()
        self._server_tx: dict[ServerKey, InviteServerTransaction | NonInviteServerTransaction] = {}
        self._merge_index: dict[tuple[str, str, int, str], ServerKey] = {}
        self._merge_keys: dict[ServerKey, tuple[str, str, int, str]] = {}
        self._client_tx: dict[
            tuple[str, str], InviteClientTransaction | NonInviteClientTransaction
        ] = {}
        self._calls: dict[str, _Call] = {}
        self._refer_subs: dict[tuple[str, int], _ReferSubscription] = {}
        self._heap: list[tuple[float, int, _Timed]] = []
        self._scheduled: dict[_Timed, float] = {}
        self._seq = itertools.count()
        self._draining = False
        self._now = 0.0
        # Glare back-off only (section 14.1): no secret depends on it.
        self._random = random.Random()
        self._stats: dict[str, int] = {
            "datagrams_received": 0,
            "datagrams_sent": 0,
            "requests_received": 0,
            "responses_received": 0,
            "retransmissions_received": 0,
            "dropped": 0,
            "internal_errors": 0,
            "calls_incoming": 0,
            "calls_outgoing": 0,
            "stream_messages_received": 0,
            "stream_framing_errors": 0,
            "stream_send_failed": 0,
            "transfers_requested": 0,
        }
        self._registration: _Registration | None = None
        if config.registration is not None:
            self._registration = self._make_registration(config.registration)

    # -- public API: IO side ------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: tuple[str, int], now: float) -> None:
        """Handle one UDP datagram from ``addr``. Never raises: bad input is counted, dropped.

        Args:
            data: The datagram.
            addr: The source (host, port).
            now: Monotonic time in seconds.
        """
        self._now = now
        self._stats["datagrams_received"] += 1
        try:
            self._receive(data, (addr[0], addr[1]), now)
        except Exception as exc:  # noqa: BLE001 - Rule 1: one bad message must not kill the UA
            self._internal_error(exc, "receive")

    def datagrams_to_send(self) -> list[tuple[bytes, tuple[str, int]]]:
        """Return and forget the datagrams to send, in order."""
        out = self._outgoing
        self._outgoing = []
        return out

    def receive_stream_data(
        self, conn_id: int, data: bytes, addr: tuple[str, int], now: float
    ) -> None:
        """Handle bytes read from stream connection ``conn_id`` (TCP). Never raises.

        The first call for a ``conn_id`` opens it; messages are cut by Content-Length (RFC 3261
        section 18.3). After a framing error the connection is listed by ``streams_to_close``
        and later data is ignored.

        Args:
            conn_id: The adapter's identifier of the connection.
            data: The bytes read (any split).
            addr: The remote (host, port) of the connection.
            now: Monotonic time in seconds.
        """
        self._now = now
        stream = self._streams.get(conn_id)
        if stream is None:
            limit = self.config.max_message_size
            stream = _Stream(
                peer=(addr[0], addr[1]), parser=StreamParser(max_header=limit, max_body=limit)
            )
            self._streams[conn_id] = stream
        try:
            self._receive_stream(conn_id, stream, data, now)
        except Exception as exc:  # noqa: BLE001 - Rule 1: one bad message must not kill the UA
            self._internal_error(exc, "receive_stream")

    def stream_closed(self, conn_id: int) -> None:
        """Forget connection ``conn_id`` (closed by the peer, the adapter or us).

        Calls set up over it keep going: later in-dialog requests fall back to UDP (Rule 6).
        """
        self._streams.pop(conn_id, None)

    def stream_in_use(self, conn_id: int) -> bool:
        """Tell whether a live call or an unfinished server transaction still uses ``conn_id``.

        The adapter's idle timeout should spare such connections: the peer's BYE, or our 2xx
        retransmissions, travel on them.
        """
        if any(
            call.conn is not None and call.conn.conn_id == conn_id for call in self._calls.values()
        ):
            return True
        return any(
            isinstance(tx.response_addr, Connection)
            and tx.response_addr.conn_id == conn_id
            and not tx.terminated
            for tx in self._server_tx.values()
        )

    def stream_data_to_send(self) -> list[tuple[int, bytes]]:
        """Return and forget the ``(conn_id, bytes)`` to write on stream connections, in order."""
        out = self._stream_out
        self._stream_out = []
        return out

    def streams_to_close(self) -> list[int]:
        """Return and forget the connections the adapter must close (framing errors, Rule 6).

        Write what ``stream_data_to_send`` returned first: it may hold a last response.
        """
        out = self._to_close
        self._to_close = []
        return out

    def get_timer(self) -> float | None:
        """Return the earliest deadline of every transaction, call and the registration."""
        heap = self._heap
        while heap:
            deadline, _seq, obj = heap[0]
            if self._scheduled.get(obj) == deadline and self._deadline_of(obj) == deadline:
                return deadline
            heapq.heappop(heap)
            if self._scheduled.get(obj) == deadline:
                del self._scheduled[obj]
            self._touch(obj)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``. Never raises.

        Args:
            now: Monotonic time in seconds.
        """
        self._now = now
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _seq, obj = heapq.heappop(heap)
            if self._scheduled.get(obj) != deadline:
                continue  # superseded entry
            del self._scheduled[obj]
            if self._deadline_of(obj) != deadline:
                self._touch(obj)  # moved without notice: reschedule
                continue
            try:
                self._fire(obj, now)
            except Exception as exc:  # noqa: BLE001 - Rule 1
                self._internal_error(exc, "timer")
            self._touch(obj)

    # Timers live in one heap of (deadline, seq, object) with lazy invalidation, so that
    # get_timer/handle_timer cost O(log n) with hundreds of calls: every place that sets a
    # deadline calls _touch(obj); entries whose deadline no longer matches are skipped.

    def _deadline_of(self, obj: _Timed) -> float | None:
        if isinstance(obj, _Call):
            ok = obj.pending_ok
            times = [obj.cancel_deadline, obj.reinvite_retry_at]
            if ok is not None:
                times += [ok.next_at, ok.give_up_at]
            due = [t for t in times if t is not None]
            return min(due) if due else None
        if isinstance(obj, _Registration):
            return obj.next_at
        if isinstance(obj, _ReferSubscription):
            return obj.expires_at
        return obj.deadline()

    def _touch(self, obj: _Timed) -> None:
        deadline = self._deadline_of(obj)
        if deadline is None:
            self._scheduled.pop(obj, None)
            return
        if self._scheduled.get(obj) == deadline:
            return
        self._scheduled[obj] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), obj))

    def _fire(self, obj: _Timed, now: float) -> None:
        if isinstance(obj, _Call):
            self._call_timer(obj, now)
        elif isinstance(obj, _Registration):
            self._registration_timer(now)
        elif isinstance(obj, _ReferSubscription):
            self._refer_expired(obj, now)
        elif isinstance(obj, InviteServerTransaction | NonInviteServerTransaction):
            obj.handle_timer(now)
            if obj.terminated:
                self._forget_server_tx(obj.key, obj)
        else:
            obj.handle_timer(now)
            if obj.terminated and self._client_tx.get(obj.key) is obj:
                del self._client_tx[obj.key]

    def _add_ctx(self, ctx: InviteClientTransaction | NonInviteClientTransaction) -> None:
        self._client_tx[ctx.key] = ctx
        self._touch(ctx)

    def next_event(self) -> SipEvent | None:
        """Return the next event, or None."""
        return self._events.popleft() if self._events else None

    @property
    def calls(self) -> Mapping[str, CallState]:
        """Live calls by Call-ID (a snapshot)."""
        return {call_id: call.state for call_id, call in self._calls.items()}

    def call_state(self, call_id: str) -> CallState | None:
        """The state of one call, or None once it is over (cheaper than ``calls``)."""
        call = self._calls.get(call_id)
        return None if call is None else call.state

    @property
    def stats(self) -> Mapping[str, int]:
        """Counters for metrics (a snapshot)."""
        out = dict(self._stats)
        out["active_calls"] = len(self._calls)
        out["server_transactions"] = len(self._server_tx)
        out["client_transactions"] = len(self._client_tx)
        return out

    @property
    def registration_state(self) -> RegistrationState:
        """State of the upstream registration (IDLE when none is configured)."""
        reg = self._registration
        return reg.state if reg is not None else RegistrationState.IDLE

    @property
    def draining(self) -> bool:
        """True after ``drain()``."""
        return self._draining

    # -- public API: call control -------------------------------------------------------------

    def ring(self, call_id: str, now: float) -> None:
        """Send 180 Ringing with our To tag (an early dialog, RFC 3261 section 13.3.1.1)."""
        self._now = now
        call = self._uas_call(call_id, "ring", (CallState.INCOMING,))
        if call is None or call.invite_stx is None or call.dialog is None:
            return
        response = self._dialog_response(call, call.invite, 180, now)
        self._respond(call.invite_stx, response, now)
        call.dialog.state = DialogState.EARLY

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        """Send 200 OK with ``sdp``; the 2xx is retransmitted until the ACK (section 13.3.1.4).

        Args:
            call_id: The call.
            sdp: Our SDP answer (or offer, when the INVITE had none).
            now: Monotonic time in seconds.
        """
        self._now = now
        call = self._uas_call(call_id, "answer", (CallState.INCOMING,))
        if call is None or call.invite_stx is None or call.dialog is None:
            return
        response = self._dialog_response(
            call,
            call.invite,
            200,
            now,
            body=sdp,
            extra=(("Content-Type", "application/sdp"),),
        )
        if not self._respond(call.invite_stx, response, now):
            return
        call.dialog.state = DialogState.CONFIRMED
        call.state = CallState.ANSWERED
        call.pending_ok = self._pending_ok(
            response,
            call.invite_stx.response_addr,
            cseq=call.dialog.remote_cseq or 0,
            kind="initial",
            offer_in_2xx=_sdp_of(call.invite) is None,
            now=now,
        )
        self._touch(call)
        call.log.debug("answered")

    def reject(
        self,
        call_id: str,
        status_code: int,
        now: float,
        *,
        reason: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        """Send a final non-2xx response to a call not yet answered; the call ends.

        Args:
            call_id: The call.
            status_code: 300..699 (e.g. 486, 488, 603).
            now: Monotonic time in seconds.
            reason: Reason phrase (standard one by default).
            headers: Extra headers (e.g. Retry-After, Warning).

        Raises:
            ValueError: ``status_code`` is not a final non-2xx code.
        """
        if not 300 <= status_code <= 699:
            raise ValueError(f"reject needs a 3xx-6xx status code, not {status_code}")
        self._now = now
        call = self._uas_call(call_id, "reject", (CallState.INCOMING,))
        if call is None or call.invite_stx is None:
            return
        response = self._dialog_response(
            call, call.invite, status_code, now, reason=reason, extra=tuple(headers), contact=False
        )
        self._respond(call.invite_stx, response, now)
        self._end_call(call, "rejected", "service")

    def hangup(self, call_id: str, now: float) -> None:
        """End a call from our side.

        Confirmed: BYE (CallTerminated follows its outcome: ``local_hangup``, or
        ``bye_timeout``). Answered but not yet acknowledged: the BYE waits for the ACK
        (section 15). Not answered: 480 Temporarily Unavailable. Outbound and not answered:
        ``cancel``.
        """
        self._now = now
        call = self._calls.get(call_id)
        if call is None or call.ended:
            logger.debug("[%s] hangup ignored: call already ended", call_id)
            return
        if call.state is CallState.INCOMING and call.invite_stx is not None:
            response = self._dialog_response(call, call.invite, 480, now, contact=False)
            self._respond(call.invite_stx, response, now)
            self._end_call(call, "local_hangup", "service")
        elif call.state is CallState.ANSWERED:
            call.bye_after_ack = True
        elif call.state is CallState.CONFIRMED:
            self._send_bye(call, now, cause="local_hangup")
        elif call.state is CallState.CALLING:
            self.cancel(call_id, now)

    def cancel(self, call_id: str, now: float) -> None:
        """Cancel an outbound call before it is answered (RFC 3261 section 9.1).

        The CANCEL goes out once the INVITE got a provisional response (at once if it already
        has; section 9.1 forbids it earlier). The call then ends with exactly one
        ``OutboundCallFailed``: 487 (the usual outcome), another final code the callee sent
        first, ``None``/``"cancelled"`` when no provisional came before Timer B or no final
        response came within 64*T1 of the CANCEL, or 2xx/``"cancelled"`` when the callee
        answered as the CANCEL crossed it (the engine acknowledges that 2xx and sends BYE,
        sections 9.1 and 15). No ``OutboundCallRinging`` is reported after this call. On a call
        that is already answered (its ``OutboundCallAnswered`` may still be queued) this is
        ``hangup``; an unknown or ended call is ignored.
        """
        self._now = now
        call = self._calls.get(call_id)
        if call is None or call.ended:
            logger.debug("[%s] cancel ignored: call already ended", call_id)
            return
        if call.state is CallState.CANCELLING:
            return
        if call.state is not CallState.CALLING:
            self.hangup(call_id, now)
            return
        call.cancel_requested = True
        call.state = CallState.CANCELLING
        if call.provisional_seen:
            self._send_cancel(call, now)
        else:
            call.log.debug("cancel deferred until a provisional response (section 9.1)")

    def answer_reinvite(self, call_id: str, sdp: bytes, now: float) -> None:
        """Answer the pending re-INVITE with 200 OK and ``sdp`` (retransmitted until ACK)."""
        self._now = now
        call = self._calls.get(call_id)
        if call is None or call.reinvite_stx is None or call.dialog is None:
            logger.debug("[%s] answer_reinvite ignored: no pending re-INVITE", call_id)
            return
        stx = call.reinvite_stx
        call.reinvite_stx = None
        response = self._dialog_response(
            call, stx.request, 200, now, body=sdp, extra=(("Content-Type", "application/sdp"),)
        )
        if not self._respond(stx, response, now):
            return
        cseq = CSeq.parse(stx.request.headers.get("CSeq") or "").number
        call.pending_ok = self._pending_ok(
            response,
            stx.response_addr,
            cseq=cseq,
            kind="reinvite",
            offer_in_2xx=not call.reinvite_offer,
            now=now,
        )
        self._touch(call)

    def reject_reinvite(self, call_id: str, status_code: int, now: float) -> None:
        """Reject the pending re-INVITE (e.g. 488); the session continues unchanged."""
        if not 300 <= status_code <= 699:
            raise ValueError(f"reject_reinvite needs a 3xx-6xx status code, not {status_code}")
        self._now = now
        call = self._calls.get(call_id)
        if call is None or call.reinvite_stx is None:
            logger.debug("[%s] reject_reinvite ignored: no pending re-INVITE", call_id)
            return
        stx = call.reinvite_stx
        call.reinvite_stx = None
        self._respond(stx, self._dialog_response(call, stx.request, status_code, now), now)
        self._start_queued_reinvite(call, now)

    def drain(self) -> None:
        """Refuse new INVITEs with 503 + Retry-After; OPTIONS and existing calls continue."""
        self._draining = True

    def invite(
        self,
        target_uri: str,
        sdp: bytes,
        now: float,
        *,
        from_user: str,
        destination: tuple[str, int] | None = None,
        from_display: str | None = None,
        from_host: str | None = None,
        asserted_identity: str | None = None,
        credentials: DigestCredentials | None = None,
        route: Sequence[str] = (),
        headers: Sequence[tuple[str, str]] = (),
    ) -> str:
        """Place an outbound call (INVITE client transaction, Timer A/B).

        Caller ID: ``From: "from_display" <sip:from_user@from_host>`` (a callback presents the
        service's number: ``from_user="3975"``; trunks often want their own domain in
        ``from_host``); ``asserted_identity`` adds an RFC 3325 ``P-Asserted-Identity`` (only
        towards a trunk that trusts us). A 401/407 challenge is answered once per challenger
        with ``credentials``, by default the registration's username and password (RFC 3261
        section 22.2); Timer B bounds the wait for the first response only: the ring timeout
        after ``OutboundCallRinging`` is the application's (``cancel``).

        Args:
            target_uri: The Request-URI and To URI (e.g. the agent's phone, or
                ``sip:0612345678@trunk`` for a callback).
            sdp: Our SDP offer.
            now: Monotonic time in seconds.
            from_user: User part of our From URI.
            destination: Transport address of the next hop (the trunk or outbound proxy); by
                default the first ``route``'s, else the IP literal of ``target_uri``.
            from_display: Display name of our From (caller ID name).
            from_host: Host of our From URI; by default our advertised address.
            asserted_identity: A ``P-Asserted-Identity`` value (name-addr or URI).
            credentials: Digest credentials for this call's challenges.
            route: A pre-loaded route set (section 8.1.2: ``<sip:proxy;lr>`` values), in order.
            headers: Extra headers (``Alert-Info``, ``Privacy``...); the ones the engine
                builds (Via, From, To, Call-ID, CSeq, Contact, Route...) are refused.

        Returns:
            The Call-ID, key of the events (OutboundCallRinging/Answered/Failed,
            CallTerminated).

        Raises:
            ValueError: No destination and no IP literal to send to, a From or
                P-Asserted-Identity that would not parse, or an engine-built header in
                ``headers`` (the messages name the argument, never its value).
        """
        self._now = now
        from_na = self._from_header(from_user, from_display, from_host)
        for name, value in headers:
            if name.strip().lower() in _ENGINE_HEADERS:
                raise ValueError(f"header {name!r} is built by the engine: not allowed here")
            if not name.strip() or any(ch in value for ch in "\r\n"):
                raise ValueError(f"header {name!r}: empty name or line break in the value")
        if asserted_identity is not None:
            try:
                NameAddress.parse(asserted_identity)
            except SipError:
                raise ValueError("asserted_identity is not a valid name-addr or URI") from None
        for value in route:
            try:
                NameAddress.parse(value)
            except SipError:
                raise ValueError("a route value is not a valid name-addr") from None
        dest = destination
        if dest is None and route:
            dest = uri_address(NameAddress.parse(route[0]).uri, ("", 0))
        if dest is None:
            dest = uri_address(target_uri, ("", 0))
        if not dest[0]:
            raise ValueError("the next hop is not an IP literal: pass destination=")
        call_id = f"{secrets.token_hex(12)}@{self._host}"
        branch = new_branch()
        out = Headers()
        out.add("Via", self._via(branch))
        out.add("Max-Forwards", "70")
        for value in route:
            out.add("Route", value)
        out.add("From", str(from_na.with_tag(new_tag())))
        out.add("To", f"<{target_uri}>")
        out.add("Call-ID", call_id)
        out.add("CSeq", "1 INVITE")
        out.add("Contact", self._contact())
        if asserted_identity is not None:
            out.add("P-Asserted-Identity", asserted_identity)
        out.add("Allow", _ALLOW_VALUE)
        out.add("Supported", _SUPPORTED_VALUE)
        out.add("User-Agent", self.config.user_agent)
        for name, value in headers:
            out.add(name.strip(), value)
        out.add("Content-Type", "application/sdp")
        request = SipRequest("INVITE", target_uri, out, sdp)
        if credentials is None and self.config.registration is not None:
            reg = self.config.registration
            credentials = DigestCredentials(reg.username, reg.password)
        call = _Call(
            call_id=call_id,
            role="uac",
            state=CallState.CALLING,
            invite=request,
            remote_addr=dest,
            log=_CallLog(logger, {"call_id": call_id}),
            auth=_Auth(credentials),
        )
        self._calls[call_id] = call
        self._stats["calls_outgoing"] += 1
        self._start_invite_ctx(call, request, branch, now)
        return call_id

    def reinvite(self, call_id: str, sdp: bytes, now: float) -> bool:
        """Send a re-INVITE with a new offer (hold ``a=sendonly``, resume ``a=sendrecv``).

        RFC 3261 section 14.1: no re-INVITE while another INVITE transaction is in progress on
        the dialog in either direction, so the offer waits for it (a later call replaces a
        waiting offer: the last one wins). A 491 (glare) is retried after 2.1-4 s when we
        generated the Call-ID, 0-2 s otherwise; a 401/407 is answered with the call's
        credentials. The outcome is ``ReInviteAnswered`` or ``ReInviteFailed`` (an offer still
        waiting when the call ends is dropped: ``CallTerminated`` says why).

        Args:
            call_id: A confirmed call (inbound or outbound).
            sdp: The new offer (same origin, version incremented: RFC 3264 section 8).
            now: Monotonic time in seconds.

        Returns:
            False when the call is not confirmed (unknown, ringing, ending): nothing is sent.
        """
        self._now = now
        call = self._calls.get(call_id)
        if call is None or call.ended or call.state is not CallState.CONFIRMED:
            logger.debug("[%s] reinvite ignored: call not confirmed", call_id)
            return False
        call.reinvite_queued = sdp
        self._start_queued_reinvite(call, now)
        return True

    def start_registration(self, now: float) -> None:
        """Register (and keep refreshing) the configured binding.

        Raises:
            ValueError: No registration is configured.
        """
        self._now = now
        reg = self._registration
        if reg is None:
            raise ValueError("no registration configured")
        reg.unregister_requested = False
        reg.failures = 0
        if reg.tx is None:
            self._send_register(reg, now, reg.config.expires)

    def stop_registration(self, now: float) -> None:
        """Remove our binding (REGISTER with ``Expires: 0``, RFC 3261 section 10.2.2)."""
        self._now = now
        reg = self._registration
        if reg is None or reg.state is RegistrationState.IDLE:
            return
        reg.unregister_requested = True
        reg.next_at = None
        if reg.tx is None:
            self._send_register(reg, now, 0)

    # -- plumbing -----------------------------------------------------------------------------

    def _send(self, data: bytes, dest: Destination) -> None:
        if isinstance(dest, Connection):
            stream = self._streams.get(dest.conn_id)
            if stream is None or stream.closing:
                # Rule 6: the connection is gone; we do not dial out (section 18.2.2 SHOULD).
                self._stats["stream_send_failed"] += 1
                logger.debug("SIP connection %d is closed: message not sent", dest.conn_id)
                return
            self._stream_out.append((dest.conn_id, data))
            addr = dest.peer
        else:
            self._outgoing.append((data, dest))
            self._stats["datagrams_sent"] += 1
            addr = dest
        if self.trace is not None:
            first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            self.trace.append((self._now, "out", first, addr))

    def _event(self, event: SipEvent) -> None:
        self._events.append(event)

    def _drop(self, reason: DropReason) -> None:
        self._stats["dropped"] += 1
        self._stats[f"dropped_{reason}"] = self._stats.get(f"dropped_{reason}", 0) + 1
        self._event(MessageDropped(reason))

    def _internal_error(self, exc: BaseException, where: str, call_id: str = "-") -> None:
        # Log the exception type and the stack (code locations only): exception messages may
        # quote URIs, i.e. phone numbers, which must never reach the logs.
        self._stats["internal_errors"] += 1
        stack = "".join(traceback.format_tb(exc.__traceback__))
        logger.error("[%s] internal error in %s: %s\n%s", call_id, where, type(exc).__name__, stack)

    def _via(self, branch: str, transport: str = "UDP") -> str:
        # RFC 3581 section 3: ask for rport so answers come back through NATs.
        host = _format_host(self._host)
        return f"SIP/2.0/{transport} {host}:{self.config.local_port};branch={branch};rport"

    def _contact(self, user: str | None = None, *, tcp: bool = False) -> str:
        host = _format_host(self._host)
        # Section 19.1.1 / 18.1.1: a dialog set up over TCP asks for TCP in our target.
        params = ";transport=tcp" if tcp else ""
        return f"<sip:{user or self.config.contact_user}@{host}:{self.config.local_port}{params}>"

    def _open_conn(self, call: _Call) -> Connection | None:
        """The call's connection while the adapter still has it open (Rule 6)."""
        conn = call.conn
        if conn is None:
            return None
        stream = self._streams.get(conn.conn_id)
        return conn if stream is not None and not stream.closing else None

    def _respond(
        self,
        tx: InviteServerTransaction | NonInviteServerTransaction,
        response: SipResponse,
        now: float,
        *,
        schedule: bool = True,
    ) -> bool:
        if response.headers.get("Server") is None:
            response.headers.add("Server", self.config.user_agent)
        if isinstance(tx, InviteServerTransaction):
            tag_value = response.headers.get("To")
            if tag_value and response.status_code > 100:
                try:
                    tx.response_to_tag = NameAddress.parse(tag_value).tag
                except SipError:
                    pass
        sent = tx.respond(response, now)
        if schedule:
            self._touch(tx)
        if sent:
            self._event(SipResponseSent(response.status_code))
        return sent

    def _forget_server_tx(
        self, key: ServerKey, stx: InviteServerTransaction | NonInviteServerTransaction
    ) -> None:
        self._server_tx.pop(key, None)
        mkey = self._merge_keys.pop(key, None)
        if mkey is not None and self._merge_index.get(mkey) == key:
            del self._merge_index[mkey]

    def _pending_ok(
        self,
        response: SipResponse,
        addr: Destination,
        *,
        cseq: int,
        kind: Literal["initial", "reinvite"],
        offer_in_2xx: bool,
        now: float,
    ) -> _PendingOk:
        return _PendingOk(
            data=bytes(response),
            addr=addr,
            cseq=cseq,
            kind=kind,
            offer_in_2xx=offer_in_2xx,
            interval=self.timers.t1,
            next_at=now + self.timers.t1,
            give_up_at=now + self.timers.timeout,
        )

    def _dialog_response(
        self,
        call: _Call,
        request: SipRequest,
        status_code: int,
        now: float,
        *,
        reason: str | None = None,
        body: bytes = b"",
        extra: tuple[tuple[str, str], ...] = (),
        contact: bool = True,
    ) -> SipResponse:
        assert call.dialog is not None
        headers: list[tuple[str, str]] = []
        if request.method == "INVITE" and 100 < status_code < 300:
            # Section 12.1.1: dialog-creating responses copy Record-Route and carry Contact.
            headers.extend(("Record-Route", v) for v in request.headers.get_all("Record-Route"))
            if contact:
                headers.append(("Contact", self._contact(tcp=call.conn is not None)))
        if 200 <= status_code < 300 and request.method == "INVITE":
            headers.append(("Allow", _ALLOW_VALUE))
            headers.append(("Supported", _SUPPORTED_VALUE))
        headers.extend(extra)
        return make_response(
            request,
            status_code,
            reason,
            to_tag=call.dialog.local_tag,
            headers=headers,
            body=body,
        )

    # -- receive path -------------------------------------------------------------------------

    def _receive(self, data: bytes, src: Address, now: float) -> None:
        limiter = self.config.rate_limiter
        if limiter is not None and not limiter.allow(src[0], now):
            self._drop("rate_limited")
            return
        if len(data) > self.config.max_message_size:
            self._drop("too_big")
            return
        if is_keepalive(data):
            return
        try:
            message = parse_message(data)
        except LocalSipError as exc:
            self._answer_unparsable(exc, src, None, now)
            return
        except SipError:
            self._drop("malformed")
            return
        self._dispatch(message, src, None, now)

    def _receive_stream(self, conn_id: int, stream: _Stream, data: bytes, now: float) -> None:
        parser = stream.parser  # once broken, feed() ignores everything
        src = stream.peer
        conn = Connection(conn_id, src)
        for item in parser.feed(data):
            if isinstance(item, LocalSipError):
                if parser.broken:
                    # Rule 6: the message boundaries are lost; nothing after this can be
                    # trusted to be a message, and a response could land mid-garbage.
                    logger.info("closing SIP connection %d: %s", conn_id, item.message)
                    self._stats["stream_framing_errors"] += 1
                    self._drop("malformed")
                    self._to_close.append(conn_id)
                    stream.closing = True
                    return
                self._stats["stream_messages_received"] += 1
                if self._stream_limited(src, now):
                    continue
                self._answer_unparsable(item, src, conn, now)
                continue
            self._stats["stream_messages_received"] += 1
            if self._stream_limited(src, now):
                continue
            self._dispatch(item, src, conn, now)
        while stream.pings < parser.keepalive_pings:
            # RFC 5626 section 4.4.1: a CRLFCRLF ping gets a CRLF pong.
            stream.pings += 1
            self._stream_out.append((conn_id, b"\r\n"))

    def _stream_limited(self, src: Address, now: float) -> bool:
        limiter = self.config.rate_limiter
        if limiter is not None and not limiter.allow(src[0], now):
            self._drop("rate_limited")
            return True
        return False

    def _dispatch(
        self, message: SipRequest | SipResponse, src: Address, conn: Connection | None, now: float
    ) -> None:
        if self.trace is not None:
            if isinstance(message, SipRequest):
                first = f"{message.method} {message.uri} {message.version}"
            else:
                first = f"{message.version} {message.status_code} {message.reason}"
            self.trace.append((now, "in", first, src))
        if isinstance(message, SipResponse):
            self._stats["responses_received"] += 1
            self._handle_response(message, now)
        else:
            self._stats["requests_received"] += 1
            self._handle_request(message, src, conn, now)

    def _answer_unparsable(
        self, exc: LocalSipError, src: Address, conn: Connection | None, now: float
    ) -> None:
        request = exc.partial
        if not isinstance(request, SipRequest) or request.method == "ACK":
            # Section 17.1.1.3 / 18.1.2: ACKs and responses are never answered.
            self._drop("malformed")
            return
        # Section 8.2.6: a UAS answers an invalid request with whatever it could read; the
        # response copies the Via, From, To, Call-ID and CSeq values that exist, verbatim (RFC
        # 4475 section 3.3.1 "insuf": no Call-ID/From/To still gets a 400; scalar02/quotbal:
        # a bad CSeq or To is echoed as received).
        try:
            vias = parse_vias(request.headers)
        except SipError:
            vias = []
        dest: Destination
        if vias:
            _top, dest = self._response_route(request, vias[0], src, conn)
        elif conn is not None:
            dest = conn
        else:
            # Section 18.2.2 routes a UDP response by the top Via's sent-by; when that Via is
            # missing or unparseable (RFC 4475 section 3.1.2.1 "badinv01") the only address
            # known to reach the sender is the datagram's source address and port, the one
            # RFC 3581 would use too. Over a stream the response simply goes back on the
            # connection (section 18.2.2, first rule).
            dest = src
        self._event(SipRequestReceived(request.method))
        # A throwaway transaction (never stored, never scheduled): it only sends the one
        # response. Its timers would keep it, and the request, alive for Timer J (32 s) for
        # nothing: nothing can match it, and under a flood of garbage the collector would
        # walk tens of thousands of them (measured: 155 ms pauses, audio gaps).
        tx = NonInviteServerTransaction(
            key=("invalid",),
            request=request,
            response_addr=dest,
            timers=self.timers,
            send=self._send,
        )
        headers = [
            *exc.extra_headers,
            ("Warning", f"399 {self._host} {_warning_text(exc.message)}"),
        ]
        response = make_response(request, exc.status_code, to_tag=new_tag(), headers=headers)
        self._respond(tx, response, now, schedule=False)
        logger.info("[%s] answered %d to an invalid request", request.call_id, exc.status_code)

    def _response_route(
        self, request: SipRequest, top: Via, src: Address, conn: Connection | None
    ) -> tuple[Via, Destination]:
        """Rule 2: add received/rport to the top Via and pick where responses go."""
        host, port = src
        try:
            rport = top.rport
        except SipError:
            rport = None
        changes: dict[str, str | int | bool | None] = {}
        dest: Destination
        if rport is True:
            # RFC 3581 section 4: received is added even when it equals sent-by.
            changes["received"] = host
            changes["rport"] = str(port)
            dest = (host, port)
        else:
            if top.host.strip("[]").lower() != host.lower():
                changes["received"] = host
            dest = (host, top.port if top.port is not None else 5060)
        if conn is not None:
            # Section 18.2.2: over a reliable transport the response uses the connection the
            # request arrived on (received/rport are still recorded, section 18.2.1).
            dest = conn
        new_top = top.with_params(**changes) if changes else top
        if changes:
            values = request.headers.get_list("Via")
            values[0] = str(new_top)
            rebuilt = Headers()
            done = False
            for name, value in request.headers:
                if name.lower() in ("via", "v"):
                    if not done:
                        for via_value in values:
                            rebuilt.add("Via", via_value)
                        done = True
                    continue
                rebuilt.add(name, value)
            request.headers = rebuilt
        return new_top, dest

    def _handle_request(
        self, req: SipRequest, src: Address, conn: Connection | None, now: float
    ) -> None:
        vias = parse_vias(req.headers)
        top = vias[0]
        from_na = NameAddress.parse(req.headers.get("From") or "")
        to_na = NameAddress.parse(req.headers.get("To") or "")
        cseq = CSeq.parse(req.headers.get("CSeq") or "")
        from_tag, to_tag = from_na.tag, to_na.tag
        key = server_key(req, top, from_tag=from_tag, cseq_number=cseq.number)
        invite_key = (
            server_key(req, top, from_tag=from_tag, cseq_number=cseq.number, method="INVITE")
            if req.method == "CANCEL"
            else None
        )
        _new_top, dest = self._response_route(req, top, src, conn)
        method = req.method

        # Rule 3, step 1: retransmissions and ACKs for our non-2xx (section 17.2.3).
        existing = self._server_tx.get(key)
        if method == "ACK":
            if isinstance(existing, InviteServerTransaction) and (
                key[0] == "3261" or to_tag == existing.response_to_tag
            ):
                to_tu = existing.receive_ack(now)
                self._touch(existing)
                self._event(SipRequestReceived("ACK", retransmission=not to_tu))
                if to_tu:
                    self._ack_for_2xx(req, to_tag, from_tag, cseq.number, now)
                return
            self._event(SipRequestReceived("ACK"))
            self._ack_for_2xx(req, to_tag, from_tag, cseq.number, now)
            return
        if existing is None and method == "INVITE" and to_tag is None:
            live = self._calls.get(req.call_id)
            if (
                live is not None
                and live.role == "uas"
                and live.dialog is not None
                and live.dialog.remote_tag == (from_tag or "")
                and CSeq.parse(live.invite.headers.get("CSeq") or "").number == cseq.number
                and self._merge_index.get((from_tag or "", req.call_id, cseq.number, method))
                not in self._server_tx
            ):
                # A copy of the initial INVITE arriving after its transaction ended (Timer
                # L): nothing left to answer, the UA core already did (RFC 6026 section 7.1).
                self._stats["retransmissions_received"] += 1
                self._event(SipRequestReceived(method, retransmission=True))
                return
        if existing is not None:
            self._stats["retransmissions_received"] += 1
            self._event(SipRequestReceived(method, retransmission=True))
            existing.receive_retransmission(now)
            return
        self._event(SipRequestReceived(method))

        stx: InviteServerTransaction | NonInviteServerTransaction
        if method == "INVITE":
            stx = InviteServerTransaction(
                key=key, request=req, response_addr=dest, timers=self.timers, send=self._send
            )
        else:
            stx = NonInviteServerTransaction(
                key=key, request=req, response_addr=dest, timers=self.timers, send=self._send
            )
        self._server_tx[key] = stx

        # Rule 3, step 2: validation (section 8.2.1-8.2.3).
        try:
            validate_request(
                req,
                supported_extensions=SUPPORTED_EXTENSIONS,
                known_methods=KNOWN_METHODS,
                allowed_methods=ALLOWED_METHODS,
            )
        except LocalSipError as exc:
            headers = [*exc.extra_headers]
            if exc.status_code == 400:
                headers.append(("Warning", f"399 {self._host} {_warning_text(exc.message)}"))
            self._respond(
                stx, make_response(req, exc.status_code, to_tag=new_tag(), headers=headers), now
            )
            return

        # Rule 3, step 3: merged requests (section 8.2.2.2).
        if to_tag is None:
            merge_key = (from_tag or "", req.call_id, cseq.number, method)
            other = self._merge_index.get(merge_key)
            if other is not None and other != key and other in self._server_tx:
                self._respond(stx, make_response(req, 482, to_tag=new_tag()), now)
                return
            self._merge_index[merge_key] = key
            self._merge_keys[key] = merge_key

        if method == "CANCEL":
            assert invite_key is not None
            self._on_cancel(req, stx, invite_key, now)
        elif to_tag is not None:
            self._in_dialog(req, stx, from_tag or "", to_tag, cseq.number, now)
        elif method == "INVITE":
            assert isinstance(stx, InviteServerTransaction)
            self._on_invite(req, stx, from_na, src, conn, cseq.number, now)
        elif method == "OPTIONS":
            if self._source_decision(src[0]) == "forbidden":
                self._drop("forbidden")
                return
            self._respond(stx, self._options_response(req), now)
        elif method == "REFER":
            # RFC 3515 section 2.4.2: accepting a REFER is local policy. Out of a dialog
            # nobody we talk to has a reason to send one, and accepting it would let any
            # source make the service place calls (toll fraud): 403, not 405, since REFER is
            # in our Allow (RFC 3261 section 21.4.6 requires 405 to list what is allowed).
            warning = ("Warning", f'399 {self._host} "REFER is accepted inside a call only"')
            self._respond(stx, make_response(req, 403, to_tag=new_tag(), headers=[warning]), now)
        else:
            # BYE/INFO outside any dialog (section 12.2.2).
            self._respond(stx, make_response(req, 481, to_tag=new_tag()), now)

    def _options_response(self, req: SipRequest) -> SipResponse:
        # Section 11.2: Allow, Accept, Supported (and no body: we describe no session here).
        return make_response(
            req,
            200,
            to_tag=new_tag(),
            headers=[
                ("Allow", _ALLOW_VALUE),
                ("Accept", "application/sdp"),
                ("Accept-Language", "fr, en"),
                ("Supported", _SUPPORTED_VALUE),
            ],
        )

    def _source_decision(self, host: str) -> str:
        policy = self.config.access
        if policy is None:
            return "trusted"
        return classify_source(policy, host)

    # -- out-of-dialog INVITE ---------------------------------------------------------------

    def _on_invite(
        self,
        req: SipRequest,
        stx: InviteServerTransaction,
        from_na: NameAddress,
        src: Address,
        conn: Connection | None,
        cseq: int,
        now: float,
    ) -> None:
        # Section 17.2.1: 100 Trying at once, so the caller stops retransmitting.
        self._respond(stx, make_response(req, 100), now)

        # Section 22.1 / issue 2: allow-list, then digest challenge.
        decision = self._source_decision(src[0])
        if decision == "forbidden":
            self._respond(stx, make_response(req, 403, to_tag=new_tag()), now)
            return
        if decision == "challenge":
            if not self._authorized(req, stx, now):
                return
        if self._draining:
            # Section 21.5.4: 503 with Retry-After while shutting down.
            retry = (("Retry-After", str(self.config.drain_retry_after)),)
            self._respond(stx, make_response(req, 503, to_tag=new_tag(), headers=retry), now)
            return
        existing = self._calls.get(req.call_id)
        if existing is not None:
            # The Call-ID is taken by a live call: a late copy of its INVITE (through another
            # path, after Timer L) or a collision. Section 8.2.2.2 treats it as merged.
            self._respond(stx, make_response(req, 482, to_tag=new_tag()), now)
            return

        local_tag = new_tag()
        dialog = Dialog.for_uas(req, local_tag=local_tag, peer_addr=src)
        call = _Call(
            call_id=req.call_id,
            role="uas",
            state=CallState.INCOMING,
            invite=req,
            remote_addr=src,
            log=_CallLog(logger, {"call_id": req.call_id}),
            conn=conn,
            dialog=dialog,
            invite_stx=stx,
        )
        stx.on_timeout = None
        self._calls[call.call_id] = call
        self._stats["calls_incoming"] += 1
        call.log.debug("incoming call")
        uri_user = _uri_user(req.uri) or ""
        self._event(
            IncomingCall(
                call_id=call.call_id,
                remote_addr=src,
                request_uri_user=uri_user,
                caller_uri=from_na.uri,
                caller_user=_uri_user(from_na.uri),
                caller_display=from_na.display_name,
                sdp_offer=_sdp_of(req),
                headers=req.headers,
                transport="udp" if conn is None else "tcp",
            )
        )

    def _authorized(self, req: SipRequest, stx: InviteServerTransaction, now: float) -> bool:
        digest = self.config.digest
        if digest is None:
            self._respond(stx, make_response(req, 403, to_tag=new_tag()), now)
            return False
        credentials = req.headers.get("Authorization")
        if credentials is None:
            headers = digest.challenge_headers(now)
            self._respond(stx, make_response(req, 401, to_tag=new_tag(), headers=headers), now)
            return False
        result = digest.verify(credentials, method=req.method, now=now, uri=req.uri)
        if result.status is AuthStatus.OK:
            return True
        # RFC 2617 section 3.2.1 / RFC 3261 section 22.1: re-challenge; stale=true tells the
        # client its password was right and only the nonce expired.
        stale = result.status is AuthStatus.STALE
        logger.info("[%s] digest authentication refused: %s", req.call_id, result.reason)
        headers = digest.challenge_headers(now, stale=stale)
        self._respond(stx, make_response(req, 401, to_tag=new_tag(), headers=headers), now)
        return False

    # -- CANCEL -----------------------------------------------------------------------------

    def _on_cancel(
        self,
        req: SipRequest,
        stx: InviteServerTransaction | NonInviteServerTransaction,
        invite_key: ServerKey,
        now: float,
    ) -> None:
        target = self._server_tx.get(invite_key)
        if not isinstance(target, InviteServerTransaction):
            # Section 9.2: no matching transaction → 481.
            self._respond(stx, make_response(req, 481, to_tag=new_tag()), now)
            return
        call = self._calls.get(req.call_id)
        tag = call.dialog.local_tag if call is not None and call.dialog is not None else new_tag()
        # Section 9.2: the CANCEL gets 200 with the same To tag as the INVITE's responses.
        self._respond(stx, make_response(req, 200, to_tag=target.response_to_tag or tag), now)
        if target.state is not InviteServerState.PROCEEDING:
            return  # Already answered: the CANCEL has no effect on the INVITE.
        if call is not None and call.invite_stx is target and call.dialog is not None:
            self._respond(target, self._dialog_response(call, call.invite, 487, now), now)
            self._event(CallCancelled(call.call_id))
            self._end_call(call, "cancelled", "caller")
        elif call is not None and call.reinvite_stx is target and call.dialog is not None:
            call.reinvite_stx = None
            self._respond(target, self._dialog_response(call, target.request, 487, now), now)
            self._start_queued_reinvite(call, now)
        else:
            self._respond(target, make_response(target.request, 487, to_tag=tag), now)

    # -- in-dialog requests -----------------------------------------------------------------

    def _find_dialog_call(self, call_id: str, to_tag: str, from_tag: str) -> _Call | None:
        call = self._calls.get(call_id)
        if call is None or call.dialog is None:
            return None
        if call.dialog.local_tag != to_tag or call.dialog.remote_tag != from_tag:
            return None
        return call

    def _ack_for_2xx(
        self, req: SipRequest, to_tag: str | None, from_tag: str | None, cseq: int, now: float
    ) -> None:
        call = self._find_dialog_call(req.call_id, to_tag or "", from_tag or "")
        ok = call.pending_ok if call is not None else None
        if call is None or ok is None or ok.cseq != cseq:
            # Section 17.2.3 / 13.3.1.4: an ACK matching nothing (retransmitted ACK, ACK for a
            # 2xx already acknowledged) is silently absorbed.
            return
        call.pending_ok = None
        answer = _sdp_of(req) if ok.offer_in_2xx else None
        if ok.kind == "initial":
            call.state = CallState.CONFIRMED
            self._event(CallConfirmed(call.call_id, answer))
            if call.bye_after_ack:
                self._send_bye(call, now, cause="local_hangup")
        else:
            self._event(ReInviteConfirmed(call.call_id, answer))
            self._start_queued_reinvite(call, now)

    def _in_dialog(
        self,
        req: SipRequest,
        stx: InviteServerTransaction | NonInviteServerTransaction,
        from_tag: str,
        to_tag: str,
        cseq: int,
        now: float,
    ) -> None:
        call = self._find_dialog_call(req.call_id, to_tag, from_tag)
        method = req.method
        if call is None or call.dialog is None or call.ended:
            # Section 12.2.2: a request for a dialog we do not know → 481.
            self._respond(stx, make_response(req, 481), now)
            return
        dialog = call.dialog
        if not dialog.check_remote_cseq(cseq):
            # Section 12.2.2: out of order.
            self._respond(stx, make_response(req, 500, headers=[("Retry-After", "1")]), now)
            return
        if method == "BYE":
            self._respond(stx, make_response(req, 200), now)
            self._on_remote_bye(call, now)
        elif method == "INFO":
            self._on_info(call, req, stx, now)
        elif method == "OPTIONS":
            self._respond(stx, self._options_response(req), now)
        elif method == "INVITE":
            assert isinstance(stx, InviteServerTransaction)
            self._on_reinvite(call, req, stx, now)
        elif method == "REFER":
            self._on_refer(call, req, stx, cseq, now)
        else:  # pragma: no cover - validation admits only the methods above
            self._respond(stx, make_response(req, 405, headers=[("Allow", _ALLOW_VALUE)]), now)

    def _on_remote_bye(self, call: _Call, now: float) -> None:
        call.pending_ok = None
        if call.state is CallState.INCOMING and call.invite_stx is not None:
            # Section 15.1.2: pending requests of the dialog get 487.
            self._respond(call.invite_stx, self._dialog_response(call, call.invite, 487, now), now)
        if call.reinvite_stx is not None:
            stx = call.reinvite_stx
            call.reinvite_stx = None
            self._respond(stx, self._dialog_response(call, stx.request, 487, now), now)
        if call.state is CallState.TERMINATING:
            return  # BYEs crossed: our own BYE's outcome ends the call.
        self._end_call(call, "bye", "caller")

    def _on_info(
        self,
        call: _Call,
        req: SipRequest,
        stx: InviteServerTransaction | NonInviteServerTransaction,
        now: float,
    ) -> None:
        package = req.headers.get("Info-Package")
        media = _media_type(req)
        if package is not None and package.strip().lower() != "dtmf":
            # RFC 6086 section 5.2.2: an Info Package we did not negotiate → 469.
            self._respond(stx, make_response(req, 469, "Bad Info Package"), now)
            return
        if not req.body:
            # RFC 6086 section 4.2.2: an INFO without body (keepalive style) is accepted.
            self._respond(stx, make_response(req, 200), now)
            return
        if media not in _DTMF_TYPES:
            accept = (("Accept", ", ".join(_DTMF_TYPES)),)
            self._respond(stx, make_response(req, 415, headers=accept), now)
            return
        parsed = parse_dtmf_info(req.headers.get("Content-Type") or "", req.body)
        if parsed is None:
            warning = ("Warning", f'399 {self._host} "no DTMF signal in the body"')
            self._respond(stx, make_response(req, 400, headers=[warning]), now)
            return
        self._respond(stx, make_response(req, 200), now)
        self._event(DtmfInfoReceived(call.call_id, parsed[0], parsed[1]))

    def _on_reinvite(
        self, call: _Call, req: SipRequest, stx: InviteServerTransaction, now: float
    ) -> None:
        assert call.dialog is not None
        self._respond(stx, make_response(req, 100), now)
        if call.reinvite_stx is not None:
            # Section 14.2: an INVITE before our final response to the previous one.
            retry = (("Retry-After", str(secrets.randbelow(11))),)
            self._respond(stx, self._dialog_response(call, req, 500, now, extra=retry), now)
            return
        if (
            call.pending_ok is not None
            or call.reinvite_out is not None
            or call.state is not CallState.CONFIRMED
        ):
            # Section 14.2: our offer/answer exchange is still in progress (our 2xx not yet
            # acknowledged, our own re-INVITE unanswered: glare, or the dialog is
            # early/terminating) → 491 Request Pending.
            self._respond(stx, self._dialog_response(call, req, 491, now), now)
            return
        call.dialog.refresh_target(req)
        call.reinvite_stx = stx
        offer = _sdp_of(req)
        call.reinvite_offer = offer is not None
        self._event(ReInviteReceived(call.call_id, offer))

    # -- REFER: blind transfer (Rule 9) ------------------------------------------------------

    def _decline_refer(
        self,
        call: _Call,
        req: SipRequest,
        stx: InviteServerTransaction | NonInviteServerTransaction,
        code: int,
        why: str,
        now: float,
    ) -> None:
        call.log.info("REFER declined with %d: %s", code, why)
        warning = ("Warning", f"399 {self._host} {_warning_text(why)}")
        self._respond(stx, self._dialog_response(call, req, code, now, extra=(warning,)), now)

    def _on_refer(
        self,
        call: _Call,
        req: SipRequest,
        stx: InviteServerTransaction | NonInviteServerTransaction,
        cseq: int,
        now: float,
    ) -> None:
        assert call.dialog is not None
        if call.state not in (CallState.CONFIRMED, CallState.ANSWERED):
            # An early dialog (we have not answered) or one we are hanging up: there is no
            # call to transfer. RFC 3515 section 2.4.2 allows any 4xx-6xx.
            self._decline_refer(call, req, stx, 403, "no established call to transfer", now)
            return
        try:
            targets = name_addresses_from_values(req.headers.get_all("Refer-To"), "Refer-To")
        except SipError:
            self._decline_refer(call, req, stx, 400, "malformed Refer-To", now)
            return
        if len(targets) != 1:
            # RFC 3515 section 2.4.2: zero or several Refer-To values MUST get 400.
            self._decline_refer(call, req, stx, 400, "exactly one Refer-To is required", now)
            return
        uri = targets[0].uri
        scheme = uri_scheme(uri)
        refer_to = uri
        if scheme in ("sip", "sips"):
            parsed = SipUri.parse(uri)  # already checked by NameAddress.parse
            if any(name.lower() == "replaces" for name, _value in parsed.headers):
                # Attended transfer (RFC 3891 Replaces, RFC 5589 section 7) is not
                # implemented. 403, not 501: REFER itself is implemented and in our Allow, and
                # RFC 3261 section 21.5.2 ties 501 to an unrecognised method (phones read a
                # 501 to REFER as "no transfer at all"); section 21.4.4 403 says the request
                # was understood and will not be honoured, which is exact, and RFC 3515
                # section 2.4.2 lets the REFER recipient decline with any 4xx-6xx.
                self._decline_refer(
                    call, req, stx, 403, "attended transfer (Replaces) is not supported", now
                )
                return
            method = parsed.param("method")
            if method is not None and method.upper() != "INVITE":
                # RFC 3515 section 2.1: the method parameter names the request to send; we
                # only ever place calls.
                self._decline_refer(call, req, stx, 403, "only INVITE references", now)
                return
            # Other embedded headers (section 19.1.5) are not applied to the new call.
            refer_to = str(
                SipUri(
                    parsed.scheme,
                    parsed.user,
                    parsed.password,
                    parsed.host,
                    parsed.port,
                    parsed.params,
                )
            )
        elif scheme != "tel":
            # RFC 3515 section 2.4.2: a UA that cannot access non-SIP URIs SHOULD NOT accept
            # a REFER to them.
            self._decline_refer(call, req, stx, 403, "Refer-To must be a sip, sips or tel URI", now)
            return
        live = [key for key in self._refer_subs if key[0] == call.call_id]
        if len(live) >= _MAX_REFER_SUBSCRIPTIONS:
            self._decline_refer(call, req, stx, 403, "too many transfers in progress", now)
            return
        referred_by: str | None = None
        by_value = req.headers.get("Referred-By")
        if by_value is not None:
            try:
                referred_by = NameAddress.parse(by_value).uri
            except SipError:
                referred_by = None
        refer_sub = (req.headers.get("Refer-Sub") or "").split(";", 1)[0].strip().lower()
        subscribe = refer_sub != "false"
        extra: list[tuple[str, str]] = [("Contact", self._contact(tcp=call.conn is not None))]
        if not subscribe:
            # RFC 4488 section 4: accepting without the implicit subscription, say so.
            extra.append(("Refer-Sub", "false"))
        self._respond(stx, self._dialog_response(call, req, 202, now, extra=tuple(extra)), now)
        call.refers += 1
        self._stats["transfers_requested"] += 1
        if subscribe:
            # RFC 3515 section 2.4.6: from the second REFER of a dialog on, the NOTIFYs carry
            # the REFER's CSeq number in the Event id.
            event = "refer" if call.refers == 1 else f"refer;id={cseq}"
            sub = _ReferSubscription(
                call_id=call.call_id,
                refer_id=cseq,
                event=event,
                dialog=call.dialog,
                conn=call.conn,
                log=call.log,
                expires_at=now + self.config.refer_expires,
            )
            self._refer_subs[(call.call_id, cseq)] = sub
            self._touch(sub)
            # RFC 3515 sections 2.4.4/2.4.5: the subscription starts with an immediate NOTIFY.
            self._send_notify(sub, sub.last_frag, final=False, reason="noresource", now=now)
        call.log.debug("transfer requested (REFER %d, subscription %s)", cseq, subscribe)
        self._event(
            TransferRequested(
                call_id=call.call_id,
                refer_to=refer_to,
                target_user=_uri_user(refer_to),
                referred_by=referred_by,
                refer_id=cseq,
                subscription=subscribe,
                headers=req.headers,
            )
        )

    def notify_transfer(
        self,
        call_id: str,
        status_code: int,
        reason: str | None,
        now: float,
        *,
        final: bool | None = None,
        refer_id: int | None = None,
    ) -> bool:
        """Report the progress of a transfer to the peer that asked for it (a NOTIFY).

        RFC 3515 sections 2.4.4-2.4.7: the body is ``message/sipfrag`` with the status line
        ``SIP/2.0 <status_code> <reason>``; a final report (``status_code >= 200`` by default:
        200 when the transfer target answered, its failure code or 503/603 otherwise) carries
        ``Subscription-State: terminated;reason=noresource`` and ends the subscription, a
        provisional one ``active;expires=<left>``. Only one NOTIFY is in flight at a time
        (RFC 6665 section 4.2.2): a report made meanwhile waits, and a newer one replaces it.
        This works after the call has ended too (the subscription outlives the INVITE
        usage, RFC 5057); the peer answering 481 just ends the subscription.

        Args:
            call_id: The call of the ``TransferRequested`` event.
            status_code: The status of the transfer (100-699).
            reason: The reason phrase; the standard one when None.
            now: Monotonic time in seconds.
            final: Whether this report ends the subscription; by default
                ``status_code >= 200``.
            refer_id: ``TransferRequested.refer_id``; by default the latest transfer of the
                call.

        Returns:
            False when there is no such subscription any more (``Refer-Sub: false``, already
            ended, expired, or refused by the peer): nothing is sent.

        Raises:
            ValueError: ``status_code`` is outside 100-699 or ``reason`` has a line break.
        """
        if not 100 <= status_code <= 699:
            raise ValueError(f"notify_transfer needs a 1xx-6xx status code, not {status_code}")
        if reason is not None and any(ch in reason for ch in "\r\n"):
            raise ValueError("reason contains a line break")
        self._now = now
        if refer_id is None:
            ids = [key[1] for key in self._refer_subs if key[0] == call_id]
            refer_id = max(ids) if ids else None
        sub = self._refer_subs.get((call_id, refer_id)) if refer_id is not None else None
        if sub is None or sub.final_queued:
            logger.debug("[%s] notify_transfer ignored: no live transfer subscription", call_id)
            return False
        is_final = status_code >= 200 if final is None else final
        frag = f"SIP/2.0 {status_code} {reason or reason_phrase(status_code)}\r\n"
        self._queue_notify(sub, frag, final=is_final, reason="noresource", now=now)
        return True

    def _queue_notify(
        self, sub: _ReferSubscription, frag: str, *, final: bool, reason: str, now: float
    ) -> None:
        sub.last_frag = frag
        if final:
            sub.final_queued = True
            sub.expires_at = None
            self._touch(sub)
        if sub.tx is not None:
            # RFC 6665 section 4.2.2: no new NOTIFY before the previous one got its final
            # response; state is what matters, so the latest report replaces a waiting one.
            sub.queued = (frag, final, reason)
            return
        self._send_notify(sub, frag, final=final, reason=reason, now=now)

    def _send_notify(
        self, sub: _ReferSubscription, frag: str, *, final: bool, reason: str, now: float
    ) -> None:
        dialog = sub.dialog
        if final:
            state = f"terminated;reason={reason}"
            sub.final_sent = True
        else:
            left = max(0, int((sub.expires_at or now) - now + 0.999))
            state = f"active;expires={left}"
        conn = sub.conn
        stream = self._streams.get(conn.conn_id) if conn is not None else None
        if stream is None or stream.closing:
            conn = None
        branch = new_branch()
        # RFC 3515 section 2.4.4: the NOTIFY belongs to the REFER's dialog (To, From and
        # Call-ID as if the REFER were a SUBSCRIBE), with a CSeq of our own sequence.
        request = dialog.create_request(
            "NOTIFY",
            via=self._via(branch, "UDP" if conn is None else "TCP"),
            headers=(
                ("Event", sub.event),
                ("Subscription-State", state),
                # RFC 6665 section 4.1.3: NOTIFY is a target refresh request.
                ("Contact", self._contact(tcp=sub.conn is not None)),
                ("User-Agent", self.config.user_agent),
                ("Content-Type", _SIPFRAG_TYPE),
            ),
            body=frag.encode("utf-8"),
        )
        ctx = NonInviteClientTransaction(
            request=request,
            branch=branch,
            destination=conn if conn is not None else dialog.next_hop(),
            timers=self.timers,
            send=self._send,
            on_response=lambda resp, t: self._notify_response(sub, resp, t),
            on_timeout=lambda t: self._notify_failed(sub, "timeout"),
            now=now,
        )
        sub.tx = ctx
        self._add_ctx(ctx)

    def _notify_response(self, sub: _ReferSubscription, resp: SipResponse, now: float) -> None:
        code = resp.status_code
        if code < 200:
            return
        sub.tx = None
        if code >= 300:
            self._notify_failed(sub, str(code))
            return
        if sub.final_sent:
            self._forget_refer(sub)
            return
        queued = sub.queued
        if queued is not None:
            sub.queued = None
            self._send_notify(sub, queued[0], final=queued[1], reason=queued[2], now=now)

    def _notify_failed(self, sub: _ReferSubscription, why: str) -> None:
        # RFC 6665 section 4.2.2: a NOTIFY that fails (481: the peer forgot the dialog, often
        # because it sent BYE; or Timer F) removes the subscription. RFC 5057 section 5: it
        # does not end the call, and the transfer itself goes on (RFC 3515 section 2.4.4).
        sub.log.debug("transfer subscription %d ended by the NOTIFY outcome: %s", sub.refer_id, why)
        sub.tx = None
        self._forget_refer(sub)

    def _forget_refer(self, sub: _ReferSubscription) -> None:
        sub.expires_at = None
        sub.queued = None
        sub.final_queued = True
        if self._refer_subs.get((sub.call_id, sub.refer_id)) is sub:
            del self._refer_subs[(sub.call_id, sub.refer_id)]
        self._touch(sub)

    def _refer_expired(self, sub: _ReferSubscription, now: float) -> None:
        if sub.expires_at is None or now < sub.expires_at or sub.final_queued:
            return
        # RFC 6665 section 4.1.3: a subscription ending at its expiry says reason=timeout.
        sub.log.info("transfer subscription %d expired without a final report", sub.refer_id)
        self._queue_notify(sub, sub.last_frag, final=True, reason="timeout", now=now)

    # -- ending calls -----------------------------------------------------------------------

    def _end_call(
        self, call: _Call, cause: TerminationCause, side: Literal["caller", "service"]
    ) -> None:
        if call.ended:
            return
        call.ended = True
        call.state = CallState.TERMINATED
        call.pending_ok = None
        call.reinvite_queued = None
        call.reinvite_retry_at = None
        call.cancel_deadline = None
        if call.dialog is not None:
            call.dialog.state = DialogState.TERMINATED
        self._calls.pop(call.call_id, None)
        call.log.debug("terminated: %s by %s", cause, side)
        self._event(CallTerminated(call.call_id, cause, side))

    def _send_bye(self, call: _Call, now: float, *, cause: TerminationCause) -> None:
        dialog = call.dialog
        assert dialog is not None
        if call.reinvite_stx is not None:
            stx = call.reinvite_stx
            call.reinvite_stx = None
            self._respond(stx, self._dialog_response(call, stx.request, 487, now), now)
        branch = new_branch()
        conn = self._open_conn(call)
        request = dialog.create_request(
            "BYE",
            via=self._via(branch, "UDP" if conn is None else "TCP"),
            headers=(("User-Agent", self.config.user_agent),),
        )
        call.state = CallState.TERMINATING
        call.bye_cause = cause
        # Rule 6: the dialog's connection while it is open, else UDP to the next hop.
        destination: Destination = conn if conn is not None else dialog.next_hop()
        ctx = NonInviteClientTransaction(
            request=request,
            branch=branch,
            destination=destination,
            timers=self.timers,
            send=self._send,
            on_response=lambda resp, t: self._bye_response(call, resp),
            # A BYE sent for a reason of ours (a failed re-INVITE...) keeps that reason.
            on_timeout=lambda t: self._end_call(
                call, "bye_timeout" if cause == "local_hangup" else cause, "service"
            ),
            now=now,
        )
        self._add_ctx(ctx)

    def _bye_response(self, call: _Call, response: SipResponse) -> None:
        if response.status_code < 200:
            return
        # Section 15.1.1: any final response (2xx, 481, 408...) ends the session.
        self._end_call(call, call.bye_cause, "service")

    def _pending_ok_timer(self, call: _Call, now: float) -> None:
        ok = call.pending_ok
        if ok is None:
            return
        if now >= ok.give_up_at:
            # Section 13.3.1.4: no ACK within 64*T1 → confirm, then end the session with BYE.
            call.pending_ok = None
            call.log.info("no ACK for our 2xx: hanging up")
            if call.dialog is not None:
                call.state = CallState.CONFIRMED
                self._send_bye(call, now, cause="ack_timeout")
            self._end_call(call, "ack_timeout", "service")
            return
        self._send(ok.data, ok.addr)
        ok.interval = next_interval(ok.interval, self.timers.t2)
        ok.next_at = now + ok.interval

    def _uas_call(self, call_id: str, command: str, states: tuple[CallState, ...]) -> _Call | None:
        call = self._calls.get(call_id)
        if call is None or call.role != "uas" or call.state not in states:
            logger.debug("[%s] %s ignored: call not in %s", call_id, command, states)
            return None
        return call

    # -- responses (UAC side) ---------------------------------------------------------------

    def _handle_response(self, resp: SipResponse, now: float) -> None:
        vias = parse_vias(resp.headers)
        cseq = CSeq.parse(resp.headers.get("CSeq") or "")
        branch = vias[0].branch or ""
        ctx = self._client_tx.get((branch, cseq.method))
        if ctx is None:
            # Section 18.1.2: a response matching no client transaction is dropped (except
            # 2xx retransmissions for a terminated INVITE transaction, handled by its TU).
            self._drop("stray_response")
            return
        ctx.receive_response(resp, now)
        self._touch(ctx)

    def _from_header(self, user: str, display: str | None, host: str | None) -> NameAddress:
        uri = f"sip:{user}@{_format_host(host or self._host)}"
        try:
            SipUri.parse(uri)
        except SipError:
            raise ValueError("from_user/from_host do not make a valid SIP URI") from None
        if display is not None and any(ch in display for ch in "\r\n"):
            raise ValueError("from_display contains a line break")
        return NameAddress(display, uri)

    def _start_invite_ctx(self, call: _Call, request: SipRequest, branch: str, now: float) -> None:
        call.invite = request
        call.provisional_seen = False
        ctx = InviteClientTransaction(
            request=request,
            branch=branch,
            destination=call.remote_addr,
            timers=self.timers,
            send=self._send,
            on_response=lambda resp, t: self._uac_invite_response(call, resp, t),
            on_timeout=lambda t: self._uac_invite_timeout(call, t),
            now=now,
        )
        call.invite_ctx = ctx
        self._add_ctx(ctx)

    def _call_auth(self, call: _Call) -> _Auth:
        if call.auth is None:
            reg = self.config.registration
            creds = DigestCredentials(reg.username, reg.password) if reg is not None else None
            call.auth = _Auth(creds)
        return call.auth

    def _answer_challenge(self, call: _Call, request: SipRequest, resp: SipResponse) -> str | None:
        """Take a 401/407 to ``request`` in; return why it cannot be answered, or None.

        RFC 3261 section 22.2: a 401 carries WWW-Authenticate and is answered in
        Authorization, a 407 (a proxy's) Proxy-Authenticate and Proxy-Authorization. A second
        challenge to credentials we sent means they were refused, unless it says
        ``stale=true`` with a new nonce (RFC 2617 section 3.2.1); the same nonce again is a
        refusal whatever it says (answering it would loop).
        """
        auth = self._call_auth(call)
        proxy = resp.status_code == 407
        challenge_name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        header = "Proxy-Authorization" if proxy else "Authorization"
        if auth.credentials is None:
            return "no credentials configured"
        if auth.answered >= _MAX_CHALLENGES:
            return "too many challenges"
        values = resp.headers.get_all(challenge_name)
        challenge = choose_challenge(values)
        if challenge is None:
            return "no usable challenge (scheme, algorithm or qop not supported)"
        realm = auth.credentials.realm
        if realm is not None and realm != challenge.realm:
            return "no credentials for the challenged realm"
        client = auth.clients.get(header)
        already_sent = request.headers.get(header) is not None
        previous = client.challenge if client is not None else None
        if already_sent and previous is not None and previous.nonce == challenge.nonce:
            return "challenged again with the same nonce (credentials refused)"
        if client is None:
            client = DigestClient(auth.credentials)
            auth.clients[header] = client
        if not client.on_challenge(values, already_sent=already_sent):
            return "challenged again without stale=true (credentials refused)"
        auth.answered += 1
        return None

    def _resend_invite(self, call: _Call, now: float) -> None:
        """Section 8.1.3.5 / 22.2: the INVITE again with credentials, CSeq + 1, new branch."""
        old = call.invite
        number = CSeq.parse(old.headers.get("CSeq") or "").number + 1
        branch = new_branch()
        assert call.auth is not None
        credentials = call.auth.headers("INVITE", old.uri, old.body)
        out = Headers()
        for name, value in old.headers:
            key = name.lower()
            if key in ("via", "v"):
                out.add("Via", self._via(branch))
            elif key == "cseq":
                out.add("CSeq", f"{number} INVITE")
            elif key in ("authorization", "proxy-authorization"):
                continue
            elif key in ("content-type", "c"):
                for cred_name, cred_value in credentials:
                    out.add(cred_name, cred_value)
                credentials = []
                out.add(name, value)
            else:
                out.add(name, value)
        for cred_name, cred_value in credentials:
            out.add(cred_name, cred_value)
        self._start_invite_ctx(call, SipRequest("INVITE", old.uri, out, old.body), branch, now)

    def _uac_invite_response(self, call: _Call, resp: SipResponse, now: float) -> None:
        code = resp.status_code
        if code < 200:
            if call.ended:
                return
            call.provisional_seen = True
            if call.cancel_requested:
                self._send_cancel(call, now)
            elif code > 100:
                self._event(OutboundCallRinging(call.call_id, code, _sdp_of(resp)))
            return
        if code >= 300:
            if call.ended:
                return
            if code in (401, 407) and not call.cancel_requested:
                problem = self._answer_challenge(call, call.invite, resp)
                if problem is None:
                    call.log.debug("answering a %d challenge", code)
                    self._resend_invite(call, now)
                    return
                call.log.info("authentication failed: %s", problem)
                self._fail_outbound(call, code, f"authentication failed: {problem}")
                return
            self._fail_outbound(call, code, resp.reason or reason_phrase(code))
            return
        self._uac_invite_2xx(call, resp, now)

    def _uac_invite_2xx(self, call: _Call, resp: SipResponse, now: float) -> None:
        # The UA core acknowledges every 2xx itself (section 13.2.2.4), retransmissions too.
        to_tag = NameAddress.parse(resp.headers.get("To") or "").tag or ""
        dialog = call.dialog
        if dialog is not None:
            if to_tag == dialog.remote_tag:
                if call.ack_data is not None:
                    self._send(call.ack_data, dialog.next_hop())
                return
            # A 2xx from another fork (section 13.2.2.4): acknowledge it and hang it up.
            fork_ack = call.forks.get(to_tag)
            other = Dialog.for_uac(call.invite, resp, peer_addr=call.remote_addr)
            if fork_ack is None:
                fork_ack = bytes(self._ack_for_our_invite(call, other))
                call.forks[to_tag] = fork_ack
                self._send(fork_ack, other.next_hop())
                self._detached_bye(other, now)
            else:
                self._send(fork_ack, other.next_hop())
            return
        dialog = Dialog.for_uac(call.invite, resp, peer_addr=call.remote_addr)
        dialog.state = DialogState.CONFIRMED
        call.dialog = dialog
        call.ack_data = bytes(self._ack_for_our_invite(call, dialog))
        self._send(call.ack_data, dialog.next_hop())
        call.cancel_deadline = None
        if call.cancel_requested or call.ended:
            # Sections 9.1 and 15: the 2xx crossed our CANCEL. The callee is answered, so
            # acknowledge and end the session with BYE; for the application the call failed.
            call.log.debug("2xx crossed our CANCEL: ACK then BYE")
            self._detached_bye(dialog, now)
            self._fail_outbound(call, resp.status_code, "cancelled")
            return
        call.state = CallState.CONFIRMED
        self._event(OutboundCallAnswered(call.call_id, _sdp_of(resp)))

    def _ack_for_our_invite(self, call: _Call, dialog: Dialog) -> SipRequest:
        # Section 13.2.2.4: same CSeq number as the INVITE, and the INVITE's credentials.
        cseq = CSeq.parse(call.invite.headers.get("CSeq") or "").number
        credentials = tuple(
            (name, value)
            for name, value in call.invite.headers
            if name.lower() in ("authorization", "proxy-authorization")
        )
        return dialog.create_request(
            "ACK", via=self._via(new_branch()), cseq=cseq, headers=credentials
        )

    def _detached_bye(self, dialog: Dialog, now: float) -> None:
        """BYE for a dialog no call tracks any more (a fork, a 2xx crossing our CANCEL)."""
        branch = new_branch()
        bye = dialog.create_request(
            "BYE", via=self._via(branch), headers=(("User-Agent", self.config.user_agent),)
        )
        ctx = NonInviteClientTransaction(
            request=bye,
            branch=branch,
            destination=dialog.next_hop(),
            timers=self.timers,
            send=self._send,
            on_response=lambda r, t: None,
            on_timeout=lambda t: None,
            now=now,
        )
        self._add_ctx(ctx)

    def _fail_outbound(self, call: _Call, status: int | None, reason: str) -> None:
        if call.ended:
            return
        call.ended = True
        call.state = CallState.TERMINATED
        call.cancel_deadline = None
        call.pending_ok = None
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        self._event(OutboundCallFailed(call.call_id, status, reason))

    def _uac_invite_timeout(self, call: _Call, now: float) -> None:
        # Timer B: no response at all. After ``cancel`` that is the outcome asked for.
        self._fail_outbound(call, None, "cancelled" if call.cancel_requested else "timeout")

    def _send_cancel(self, call: _Call, now: float) -> None:
        ctx = call.invite_ctx
        if call.cancel_sent or ctx is None or ctx.state is not InviteClientState.PROCEEDING:
            return
        call.cancel_sent = True
        invite = call.invite
        # Section 9.1: same Request-URI, Call-ID, To, From, CSeq number and top Via (branch),
        # and the INVITE's Route headers; no credentials (a CANCEL cannot be challenged,
        # section 22.1).
        headers = Headers()
        headers.add("Via", invite.headers.get_list("Via")[0])
        headers.add("Max-Forwards", "70")
        for value in invite.headers.get_all("Route"):
            headers.add("Route", value)
        for name in ("From", "To", "Call-ID"):
            headers.add(name, invite.headers.get(name) or "")
        number = CSeq.parse(invite.headers.get("CSeq") or "").number
        headers.add("CSeq", f"{number} CANCEL")
        headers.add("User-Agent", self.config.user_agent)
        cancel = SipRequest("CANCEL", invite.uri, headers)
        cancel_tx = NonInviteClientTransaction(
            request=cancel,
            branch=ctx.key[0],
            destination=ctx.destination,
            timers=self.timers,
            send=self._send,
            on_response=lambda r, t: None,
            on_timeout=lambda t: None,
            now=now,
        )
        self._add_ctx(cancel_tx)
        # Section 9.1: without a final response 64*T1 after the CANCEL, the INVITE is
        # considered cancelled and its client transaction destroyed.
        call.cancel_deadline = now + self.timers.timeout
        self._touch(call)

    def _cancel_timer(self, call: _Call, now: float) -> None:
        call.cancel_deadline = None
        ctx = call.invite_ctx
        if ctx is not None and self._client_tx.get(ctx.key) is ctx:
            del self._client_tx[ctx.key]
        call.log.info("no final response 64*T1 after our CANCEL: giving up")
        self._fail_outbound(call, None, "cancelled")

    # -- timers of a call -------------------------------------------------------------------

    def _call_timer(self, call: _Call, now: float) -> None:
        ok = call.pending_ok
        if ok is not None and now >= min(ok.next_at, ok.give_up_at):
            self._pending_ok_timer(call, now)
        if call.cancel_deadline is not None and now >= call.cancel_deadline:
            self._cancel_timer(call, now)
        if call.reinvite_retry_at is not None and now >= call.reinvite_retry_at:
            call.reinvite_retry_at = None
            self._start_queued_reinvite(call, now)

    # -- re-INVITE we send (section 14.1) ---------------------------------------------------

    def _start_queued_reinvite(self, call: _Call, now: float) -> None:
        if (
            call.reinvite_queued is None
            or call.ended
            or call.state is not CallState.CONFIRMED
            or call.dialog is None
            # Section 14.1: never while an INVITE transaction runs in either direction.
            or call.reinvite_out is not None
            or call.reinvite_stx is not None
            or call.pending_ok is not None
            or call.reinvite_retry_at is not None
        ):
            return
        sdp = call.reinvite_queued
        call.reinvite_queued = None
        if call.auth is not None:
            call.auth.answered = 0  # a new request, not a resend with credentials
        self._send_reinvite(call, sdp, now, with_credentials=False)

    def _send_reinvite(
        self, call: _Call, sdp: bytes, now: float, *, with_credentials: bool
    ) -> None:
        dialog = call.dialog
        assert dialog is not None
        branch = new_branch()
        conn = self._open_conn(call)
        # Section 12.2.1.1 / 14.1: a target refresh request carries our Contact.
        request = dialog.create_request(
            "INVITE",
            via=self._via(branch, "UDP" if conn is None else "TCP"),
            headers=(
                ("Contact", self._contact(tcp=call.conn is not None)),
                ("Allow", _ALLOW_VALUE),
                ("Supported", _SUPPORTED_VALUE),
                ("User-Agent", self.config.user_agent),
            ),
            body=sdp,
        )
        if with_credentials:
            for name, value in self._call_auth(call).headers("INVITE", request.uri, sdp):
                request.headers.add(name, value)
        request.headers.add("Content-Type", "application/sdp")
        out = _OutReInvite(sdp=sdp, request=request)
        call.reinvite_out = out
        out.ctx = InviteClientTransaction(
            request=request,
            branch=branch,
            destination=conn if conn is not None else dialog.next_hop(),
            timers=self.timers,
            send=self._send,
            on_response=lambda resp, t: self._reinvite_response(call, out, resp, t),
            on_timeout=lambda t: self._reinvite_timeout(call, out, t),
            now=now,
        )
        self._add_ctx(out.ctx)
        call.log.debug("re-INVITE sent")

    def _reinvite_response(
        self, call: _Call, out: _OutReInvite, resp: SipResponse, now: float
    ) -> None:
        code = resp.status_code
        if code < 200:
            return
        if code < 300:
            self._reinvite_2xx(call, out, resp, now)
            return
        if call.reinvite_out is not out:
            return
        call.reinvite_out = None
        if call.ended or call.state is not CallState.CONFIRMED:
            return
        reason = resp.reason or reason_phrase(code)
        if code == 491 and call.reinvite_glares < _MAX_GLARE_RETRIES:
            # Section 14.1: glare. The owner of the Call-ID (the UA that generated it: us for
            # our outbound calls) retries after 2.1-4 s, the other side after 0-2 s, both in
            # units of 10 ms, so that one of the two re-INVITEs gets through first.
            call.reinvite_glares += 1
            centis = (
                self._random.randint(210, 400)
                if call.role == "uac"
                else self._random.randint(0, 200)
            )
            if call.reinvite_queued is None:
                call.reinvite_queued = out.sdp
            call.reinvite_retry_at = now + centis / 100
            self._touch(call)
            call.log.debug("re-INVITE glare: retry in %.2f s", centis / 100)
            return
        call.reinvite_glares = 0
        if code in (401, 407):
            problem = self._answer_challenge(call, out.request, resp)
            if problem is None:
                self._send_reinvite(call, out.sdp, now, with_credentials=True)
                return
            reason = f"authentication failed: {problem}"
        self._event(ReInviteFailed(call.call_id, code, reason))
        if code == 481:
            # Section 12.2.1.2: the peer has lost the dialog.
            self._end_call(call, "reinvite_failed", "service")
        elif code == 408:
            self._send_bye(call, now, cause="reinvite_failed")
        else:
            self._start_queued_reinvite(call, now)

    def _reinvite_2xx(self, call: _Call, out: _OutReInvite, resp: SipResponse, now: float) -> None:
        if out.ack is not None and out.ack_addr is not None:
            # A retransmitted 2xx: the same ACK again (section 13.2.2.4).
            self._send(out.ack, out.ack_addr)
            return
        dialog = call.dialog
        assert dialog is not None
        # Section 12.2.1.2: the 2xx to a target refresh request updates the remote target.
        dialog.refresh_target(resp)
        conn = self._open_conn(call)
        cseq = CSeq.parse(out.request.headers.get("CSeq") or "").number
        credentials = tuple(
            (name, value)
            for name, value in out.request.headers
            if name.lower() in ("authorization", "proxy-authorization")
        )
        ack = dialog.create_request(
            "ACK",
            via=self._via(new_branch(), "UDP" if conn is None else "TCP"),
            cseq=cseq,
            headers=credentials,
        )
        out.ack = bytes(ack)
        out.ack_addr = conn if conn is not None else dialog.next_hop()
        self._send(out.ack, out.ack_addr)
        if call.reinvite_out is out:
            call.reinvite_out = None
        call.reinvite_glares = 0
        if not call.ended and call.state is CallState.CONFIRMED:
            self._event(ReInviteAnswered(call.call_id, _sdp_of(resp)))
            self._start_queued_reinvite(call, now)

    def _reinvite_timeout(self, call: _Call, out: _OutReInvite, now: float) -> None:
        if call.reinvite_out is not out:
            return
        call.reinvite_out = None
        if call.ended or call.state is not CallState.CONFIRMED:
            return
        # Sections 12.2.1.2 and 14.1: a timed-out re-INVITE ends the dialog.
        self._event(ReInviteFailed(call.call_id, None, "timeout"))
        self._send_bye(call, now, cause="reinvite_failed")

    # -- registration (UAC, RFC 3261 section 10.2) -------------------------------------------

    def _make_registration(self, config: RegistrationConfig) -> _Registration:
        destination = config.registrar_addr or uri_address(config.registrar_uri, ("", 0))
        if not destination[0]:
            raise ValueError("registrar host is not an IP literal: set registrar_addr")
        return _Registration(
            config=config,
            destination=destination,
            # Section 10.2.4: one Call-ID for all registrations of this boot cycle.
            call_id=f"{secrets.token_hex(12)}@{self._host}",
            from_tag=new_tag(),
            digest=DigestClient(DigestCredentials(config.username, config.password)),
        )

    def _send_register(self, reg: _Registration, now: float, expires: int) -> None:
        config = reg.config
        reg.cseq += 1
        branch = new_branch()
        contact_user = config.contact_user or _uri_user(config.aor) or self.config.contact_user
        headers = Headers()
        headers.add("Via", self._via(branch))
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{config.aor}>;tag={reg.from_tag}")
        headers.add("To", f"<{config.aor}>")
        headers.add("Call-ID", reg.call_id)
        headers.add("CSeq", f"{reg.cseq} REGISTER")
        headers.add("Contact", self._contact(contact_user))
        headers.add("Expires", str(expires))
        headers.add("Allow", _ALLOW_VALUE)
        headers.add("User-Agent", self.config.user_agent)
        authorization = reg.digest.authorization(method="REGISTER", uri=config.registrar_uri)
        reg.sent_auth = authorization is not None
        if authorization is not None:
            headers.add(reg.auth_header, authorization)
        request = SipRequest("REGISTER", config.registrar_uri, headers)
        reg.state = (
            RegistrationState.UNREGISTERING if expires == 0 else RegistrationState.REGISTERING
        )
        reg.expires = expires
        reg.next_at = None
        reg.tx = NonInviteClientTransaction(
            request=request,
            branch=branch,
            destination=reg.destination,
            timers=self.timers,
            send=self._send,
            on_response=lambda resp, t: self._register_response(reg, resp, t),
            on_timeout=lambda t: self._register_failed(reg, None, "timeout", t),
            now=now,
        )
        self._add_ctx(reg.tx)

    def _register_response(self, reg: _Registration, resp: SipResponse, now: float) -> None:
        code = resp.status_code
        if code < 200:
            return
        reg.tx = None
        if code in (401, 407):
            name = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
            reg.auth_header = "Authorization" if code == 401 else "Proxy-Authorization"
            retry = reg.auth_retries < 2 and reg.digest.on_challenge(
                resp.headers.get_all(name), already_sent=reg.sent_auth
            )
            if retry:
                reg.auth_retries += 1
                self._send_register(reg, now, reg.expires)
                return
            self._register_failed(reg, code, "authentication rejected", now)
            return
        reg.auth_retries = 0
        if code == 423 and reg.expires != 0:
            # Section 10.2.8: Interval Too Brief → retry with Min-Expires.
            try:
                minimum = parse_int_header(resp.headers, "Min-Expires")
            except SipError:
                minimum = None
            if minimum is not None and minimum > reg.expires:
                self._send_register(reg, now, minimum)
                return
        if code >= 300:
            self._register_failed(reg, code, resp.reason or reason_phrase(code), now)
            return
        if reg.state is RegistrationState.UNREGISTERING:
            reg.state = RegistrationState.IDLE
            reg.next_at = None
            self._event(RegistrationSucceeded(0))
            return
        granted = self._granted_expires(reg, resp)
        reg.failures = 0
        reg.state = RegistrationState.REGISTERED
        if reg.unregister_requested:
            self._send_register(reg, now, 0)
        else:
            reg.next_at = now + max(1.0, granted * reg.config.refresh_ratio)
            self._touch(reg)
        self._event(RegistrationSucceeded(granted))

    def _granted_expires(self, reg: _Registration, resp: SipResponse) -> int:
        # Section 10.2.4: the expires parameter of our own Contact wins over Expires.
        ours = self._contact(
            reg.config.contact_user or _uri_user(reg.config.aor) or self.config.contact_user
        )
        our_uri = ours[1:-1]
        try:
            for contact in parse_contacts(resp.headers):
                value = contact.param("expires")
                if contact.uri == our_uri and value is not None and value.isdigit():
                    return int(value)
            header = parse_int_header(resp.headers, "Expires")
        except SipError:
            header = None
        return header if header is not None else reg.expires

    def _register_failed(
        self, reg: _Registration, status: int | None, reason: str, now: float
    ) -> None:
        reg.tx = None
        reg.auth_retries = 0
        if reg.state is RegistrationState.UNREGISTERING or reg.unregister_requested:
            reg.state = RegistrationState.IDLE
            reg.next_at = None
            self._event(RegistrationFailed(status, reason))
            return
        reg.failures += 1
        delay = min(reg.config.retry_max, reg.config.retry_min * 2 ** (reg.failures - 1))
        reg.state = RegistrationState.BACKING_OFF
        reg.next_at = now + delay
        self._touch(reg)
        logger.warning("registration failed (%s): retrying in %.0f s", status or reason, delay)
        self._event(RegistrationFailed(status, reason))

    def _registration_timer(self, now: float) -> None:
        reg = self._registration
        if reg is None or reg.next_at is None or reg.next_at > now or reg.tx is not None:
            return
        reg.next_at = None
        self._send_register(reg, now, reg.config.expires)
