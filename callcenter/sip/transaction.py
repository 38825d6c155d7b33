"""SIP transactions over UDP and streams (RFC 3261 section 17, amended by RFC 6026).

Rules this file owns:

* Rule 1 (matching, section 17.2.3 and 17.1.3): a request belongs to a server transaction by
  (top Via branch, sent-by, method), ACK counting as INVITE; without the ``z9hG4bK`` magic
  cookie the RFC 2543 rule applies (Request-URI, From tag, Call-ID, CSeq number, top Via; the
  To tag is checked by the caller). A response belongs to a client transaction by (branch,
  CSeq method).
* Rule 2 (server state machines, sections 17.2.1 and 17.2.2, RFC 6026 section 7.1): INVITE
  Proceeding -> Completed (3xx-6xx; Timer G retransmits, Timer H gives up) -> Confirmed (ACK;
  Timer I) -> Terminated, or Proceeding -> Accepted (2xx; Timer L) -> Terminated. Non-INVITE
  Trying -> Proceeding -> Completed (Timer J) -> Terminated. Retransmitted requests get the
  last response again; ACKs for non-2xx are absorbed here.
* Rule 3 (client state machines, sections 17.1.1 and 17.1.2, RFC 6026 section 7.2): INVITE
  Calling (Timer A/B) -> Proceeding -> Completed (non-2xx: ACK generated here, Timer D) or
  Accepted (2xx, Timer M; the ACK for 2xx is the UA core's job) -> Terminated. Non-INVITE
  Trying (Timer E/F) -> Proceeding -> Completed (Timer K) -> Terminated.

* Rule 4 (reliable transports, section 17 and table 4 of appendix A): when the destination is
  a ``Connection`` (TCP) the retransmission timers A, E and G never run, and the wait timers
  D, I, J and K are zero; B, F, H, L and M (64*T1) still bound the transaction.

The transactions are sans-IO: they are handed a ``send(data, destination)`` callable (the
engine's outgoing queues) and report to their transaction user through plain callbacks.
Every timer is a deadline; ``deadline()`` returns the earliest one, ``handle_timer(now)``
fires all that are due.
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from callcenter.sip.headers import NameAddress, Via
from callcenter.sip.message import Headers, SipRequest, SipResponse, reason_phrase
from callcenter.sip.timers import TimerValues, next_interval

__all__ = [
    "MAGIC_COOKIE",
    "Address",
    "ClientKey",
    "Connection",
    "Destination",
    "InviteClientState",
    "InviteClientTransaction",
    "InviteServerState",
    "InviteServerTransaction",
    "NonInviteClientState",
    "NonInviteClientTransaction",
    "NonInviteServerState",
    "NonInviteServerTransaction",
    "Send",
    "ServerKey",
    "make_response",
    "new_branch",
    "new_tag",
    "server_key",
]

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 section 8.1.1.7: branches of RFC 3261 elements start with this."""

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Connection:
    """A stream connection (TCP) a message goes out on (RFC 3261 section 18).

    Responses to a request received on a connection go back on it (section 18.2.2); the
    adapter that owns the socket names connections with ``conn_id``.
    """

    conn_id: int
    """The adapter's identifier of the connection."""
    peer: Address
    """The remote (host, port) of the connection."""


Destination = Address | Connection
"""Where a message goes: a UDP address, or an open stream connection."""
Send = Callable[[bytes, Destination], None]
ServerKey = tuple[str, ...]
ClientKey = tuple[str, str]


def new_branch() -> str:
    """Return a fresh, globally unique branch (RFC 3261 section 8.1.1.7)."""
    return MAGIC_COOKIE + secrets.token_hex(10)


def new_tag() -> str:
    """Return a random tag (RFC 3261 section 19.3: at least 32 bits of randomness)."""
    return secrets.token_hex(6)


def is_rfc3261_branch(branch: str | None) -> bool:
    """Tell whether a branch can identify a transaction on its own (section 17.2.3).

    The bare cookie (RFC 4475 badbranch) carries no unique part: it falls back to RFC 2543
    matching like a missing branch.
    """
    return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > 7


def server_key(
    request: SipRequest,
    top_via: Via,
    *,
    from_tag: str | None,
    cseq_number: int,
    method: str | None = None,
) -> ServerKey:
    """Return the key matching ``request`` to a server transaction (RFC 3261 section 17.2.3).

    Args:
        request: The received request.
        top_via: Its top Via as received (before ``received``/``rport`` are added).
        from_tag: The From tag, if any.
        cseq_number: The CSeq sequence number.
        method: Override the method (e.g. ``"INVITE"`` to find the transaction a CANCEL
            targets); ACK is always folded onto INVITE.

    Returns:
        A hashable key. RFC 3261 keys are (branch, sent-by, method); RFC 2543 keys are
        (Request-URI, From tag, Call-ID, CSeq number, top Via, method).
    """
    name = method or request.method
    if name == "ACK":
        name = "INVITE"
    branch = top_via.branch
    if is_rfc3261_branch(branch):
        assert branch is not None
        port = top_via.port if top_via.port is not None else 5060
        return ("3261", branch, top_via.host.lower(), str(port), name)
    return (
        "2543",
        request.uri,
        from_tag or "",
        request.call_id,
        str(cseq_number),
        str(top_via).lower(),
        name,
    )


def _with_to_tag(value: str, tag: str) -> str:
    """Add our tag to a To value that has none (RFC 3261 section 8.2.6.2)."""
    try:
        name_addr = NameAddress.parse(value)
    except Exception:
        # The To header was good enough to reach us; keep it verbatim.
        if ";tag=" in value.lower():
            return value
        return f"{value};tag={tag}"
    if name_addr.tag is not None:
        return value
    return str(name_addr.with_tag(tag))


def make_response(
    request: SipRequest,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """Build a response to ``request`` (RFC 3261 section 8.2.6).

    Via (all values, in order), From, Call-ID and CSeq are copied when present (an invalid
    request answered with 400 may lack some); To is copied and gets
    ``to_tag`` when it had none and the response is not 100 (section 8.2.6.2). A 100 Trying
    copies Timestamp (section 8.2.6.1).

    Args:
        request: The request answered (its top Via already carries received/rport).
        status_code: 100..699.
        reason: Reason phrase; the standard one when None.
        to_tag: Our tag for the To header.
        headers: Extra header lines, appended in order.
        body: The body (Content-Type must be among ``headers``).

    Returns:
        The response.
    """
    out = Headers()
    for value in request.headers.get_all("Via"):
        out.add("Via", value)
    from_value = request.headers.get("From")
    if from_value is not None:
        out.add("From", from_value)
    to_value = request.headers.get("To")
    if to_value is not None:
        if to_tag is not None and status_code != 100:
            to_value = _with_to_tag(to_value, to_tag)
        out.add("To", to_value)
    if request.call_id:
        # An invalid request may lack it (RFC 4475 section 3.3.1); never invent one.
        out.add("Call-ID", request.call_id)
    cseq = request.headers.get("CSeq")
    if cseq is not None:
        out.add("CSeq", cseq)
    if status_code == 100:
        timestamp = request.headers.get("Timestamp")
        if timestamp is not None:
            out.add("Timestamp", timestamp)
    for name, value in headers:
        out.add(name, value)
    phrase = reason if reason is not None else reason_phrase(status_code)
    return SipResponse(status_code, phrase, out, body)


# -- server transactions ---------------------------------------------------------------------


class InviteServerState(enum.Enum):
    """RFC 3261 figure 7 with the RFC 6026 Accepted state."""

    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class InviteServerTransaction:
    """An INVITE server transaction (RFC 3261 section 17.2.1, RFC 6026 section 7.1)."""

    def __init__(
        self,
        *,
        key: ServerKey,
        request: SipRequest,
        response_addr: Destination,
        timers: TimerValues,
        send: Send,
    ) -> None:
        self.key = key
        self.request = request
        self.response_addr = response_addr
        self.state = InviteServerState.PROCEEDING
        self.final_status: int | None = None
        self.response_to_tag: str | None = None
        """The To tag of our responses (RFC 2543 ACK matching, section 17.2.3)."""
        self.on_timeout: Callable[[float], None] | None = None
        """Called when Timer H fires (no ACK for our non-2xx final response)."""
        self._timers = timers
        self._send = send
        self._last: bytes | None = None
        self._g_at: float | None = None
        self._g_interval = timers.t1
        self._h_at: float | None = None
        self._i_at: float | None = None
        self._l_at: float | None = None

    @property
    def terminated(self) -> bool:
        return self.state is InviteServerState.TERMINATED

    @property
    def reliable(self) -> bool:
        """True when responses go out on a stream connection (Rule 4)."""
        return isinstance(self.response_addr, Connection)

    def respond(self, response: SipResponse, now: float) -> bool:
        """Send a response from the TU; return False when the transaction is past Proceeding."""
        if self.state is not InviteServerState.PROCEEDING:
            return False
        data = bytes(response)
        code = response.status_code
        self._last = data
        self._send(data, self.response_addr)
        if code < 200:
            return True
        self.final_status = code
        if 200 <= code < 300:
            # RFC 6026 section 7.1: Accepted absorbs INVITE retransmissions for Timer L; the
            # UA core retransmits the 2xx itself (RFC 3261 section 13.3.1.4).
            self.state = InviteServerState.ACCEPTED
            self._l_at = now + self._timers.timeout
        else:
            # Section 17.2.1: Timer G starts at T1 (unreliable transport only), Timer H at
            # 64*T1 whatever the transport.
            self.state = InviteServerState.COMPLETED
            self._g_interval = self._timers.t1
            self._g_at = None if self.reliable else now + self._g_interval
            self._h_at = now + self._timers.timeout
        return True

    def receive_retransmission(self, now: float) -> None:
        """A retransmitted INVITE: resend the latest provisional or the final non-2xx response."""
        if self.state in (InviteServerState.PROCEEDING, InviteServerState.COMPLETED):
            if self._last is not None:
                self._send(self._last, self.response_addr)

    def receive_ack(self, now: float) -> bool:
        """Handle an ACK matching this transaction; return True when the TU must see it.

        In Completed the ACK (for our non-2xx) is absorbed and Timer I starts; in Accepted it
        acknowledges the 2xx and belongs to the UA core (RFC 6026 section 7.1).
        """
        if self.state is InviteServerState.COMPLETED:
            self.state = InviteServerState.CONFIRMED
            self._g_at = self._h_at = None
            # Timer I: T4 over UDP, zero over a reliable transport (Rule 4).
            self._i_at = now + (0.0 if self.reliable else self._timers.timer_i)
            return False
        return self.state is InviteServerState.ACCEPTED

    def deadline(self) -> float | None:
        candidates = [t for t in (self._g_at, self._h_at, self._i_at, self._l_at) if t is not None]
        return min(candidates) if candidates else None

    def handle_timer(self, now: float) -> None:
        if self.state is InviteServerState.COMPLETED:
            if self._h_at is not None and now >= self._h_at:
                # Timer H: the ACK never came (section 17.2.1); tell the TU.
                self._terminate()
                if self.on_timeout is not None:
                    self.on_timeout(now)
                return
            if self._g_at is not None and now >= self._g_at and self._last is not None:
                # Timer G: retransmit, doubling up to T2.
                self._send(self._last, self.response_addr)
                self._g_interval = next_interval(self._g_interval, self._timers.t2)
                self._g_at = now + self._g_interval
        elif self.state is InviteServerState.CONFIRMED:
            if self._i_at is not None and now >= self._i_at:
                self._terminate()
        elif self.state is InviteServerState.ACCEPTED:
            if self._l_at is not None and now >= self._l_at:
                self._terminate()

    def _terminate(self) -> None:
        self.state = InviteServerState.TERMINATED
        self._g_at = self._h_at = self._i_at = self._l_at = None


class NonInviteServerState(enum.Enum):
    """RFC 3261 figure 8."""

    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class NonInviteServerTransaction:
    """A non-INVITE server transaction (RFC 3261 section 17.2.2)."""

    def __init__(
        self,
        *,
        key: ServerKey,
        request: SipRequest,
        response_addr: Destination,
        timers: TimerValues,
        send: Send,
    ) -> None:
        self.key = key
        self.request = request
        self.response_addr = response_addr
        self.state = NonInviteServerState.TRYING
        self.final_status: int | None = None
        self._timers = timers
        self._send = send
        self._last: bytes | None = None
        self._j_at: float | None = None

    @property
    def terminated(self) -> bool:
        return self.state is NonInviteServerState.TERMINATED

    @property
    def reliable(self) -> bool:
        """True when responses go out on a stream connection (Rule 4)."""
        return isinstance(self.response_addr, Connection)

    def respond(self, response: SipResponse, now: float) -> bool:
        if self.state not in (NonInviteServerState.TRYING, NonInviteServerState.PROCEEDING):
            return False
        data = bytes(response)
        self._last = data
        self._send(data, self.response_addr)
        if response.status_code < 200:
            self.state = NonInviteServerState.PROCEEDING
        else:
            self.final_status = response.status_code
            # Timer J: 64*T1 over UDP, absorbing request retransmissions; zero over a
            # reliable transport (Rule 4).
            self.state = NonInviteServerState.COMPLETED
            self._j_at = now + (0.0 if self.reliable else self._timers.timeout)
        return True

    def receive_retransmission(self, now: float) -> None:
        """Section 17.2.2: Trying absorbs; Proceeding/Completed resend the last response."""
        if self._last is not None and self.state in (
            NonInviteServerState.PROCEEDING,
            NonInviteServerState.COMPLETED,
        ):
            self._send(self._last, self.response_addr)

    def deadline(self) -> float | None:
        return self._j_at

    def handle_timer(self, now: float) -> None:
        if self._j_at is not None and now >= self._j_at:
            self.state = NonInviteServerState.TERMINATED
            self._j_at = None


# -- client transactions ---------------------------------------------------------------------


ResponseHandler = Callable[[SipResponse, float], None]
TimeoutHandler = Callable[[float], None]


class NonInviteClientState(enum.Enum):
    """RFC 3261 figure 6."""

    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class NonInviteClientTransaction:
    """A non-INVITE client transaction (RFC 3261 section 17.1.2)."""

    def __init__(
        self,
        *,
        request: SipRequest,
        branch: str,
        destination: Destination,
        timers: TimerValues,
        send: Send,
        on_response: ResponseHandler,
        on_timeout: TimeoutHandler,
        now: float,
    ) -> None:
        self.request = request
        self.key: ClientKey = (branch, request.method)
        self.destination = destination
        self.state = NonInviteClientState.TRYING
        self._timers = timers
        self._send = send
        self._on_response = on_response
        self._on_timeout = on_timeout
        self._data = bytes(request)
        self._e_interval = timers.t1
        # Timer E retransmits over UDP only (Rule 4).
        self._e_at: float | None = None if self.reliable else now + timers.t1
        self._f_at: float | None = now + timers.timeout
        self._k_at: float | None = None
        send(self._data, destination)

    @property
    def terminated(self) -> bool:
        return self.state is NonInviteClientState.TERMINATED

    @property
    def reliable(self) -> bool:
        """True when the request went out on a stream connection (Rule 4)."""
        return isinstance(self.destination, Connection)

    def receive_response(self, response: SipResponse, now: float) -> None:
        code = response.status_code
        if self.state in (NonInviteClientState.TRYING, NonInviteClientState.PROCEEDING):
            if code < 200:
                self.state = NonInviteClientState.PROCEEDING
                self._on_response(response, now)
                return
            # Final response: Timer K absorbs retransmissions of it (T4 over UDP, zero over
            # a reliable transport).
            self.state = NonInviteClientState.COMPLETED
            self._e_at = self._f_at = None
            self._k_at = now + (0.0 if self.reliable else self._timers.timer_k)
            self._on_response(response, now)
        # Completed: retransmitted final responses are absorbed.

    def deadline(self) -> float | None:
        candidates = [t for t in (self._e_at, self._f_at, self._k_at) if t is not None]
        return min(candidates) if candidates else None

    def handle_timer(self, now: float) -> None:
        if self._k_at is not None and now >= self._k_at:
            self.state = NonInviteClientState.TERMINATED
            self._k_at = None
            return
        if self._f_at is not None and now >= self._f_at:
            # Timer F: the request timed out (section 17.1.2.2); the TU sees a timeout.
            self.state = NonInviteClientState.TERMINATED
            self._e_at = self._f_at = None
            self._on_timeout(now)
            return
        if self._e_at is not None and now >= self._e_at:
            self._send(self._data, self.destination)
            if self.state is NonInviteClientState.PROCEEDING:
                # Section 17.1.2.2: in Proceeding, Timer E fires every T2.
                self._e_interval = self._timers.t2
            else:
                self._e_interval = next_interval(self._e_interval, self._timers.t2)
            self._e_at = now + self._e_interval


class InviteClientState(enum.Enum):
    """RFC 3261 figure 5 with the RFC 6026 Accepted state."""

    CALLING = "calling"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


def make_ack_for_non_2xx(invite: SipRequest, response: SipResponse) -> SipRequest:
    """Build the ACK a client transaction sends for a 3xx-6xx (RFC 3261 section 17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and top Via (same branch) as the INVITE, the
    To of the response (with its tag), and the INVITE's Route headers.
    """
    headers = Headers()
    vias = invite.headers.get_list("Via")
    if vias:
        headers.add("Via", vias[0])
    for name in ("Max-Forwards", "From"):
        value = invite.headers.get(name)
        if value is not None:
            headers.add(name, value)
    to_value = response.headers.get("To")
    if to_value is not None:
        headers.add("To", to_value)
    headers.add("Call-ID", invite.call_id)
    cseq = invite.headers.get("CSeq") or "1 INVITE"
    headers.add("CSeq", f"{cseq.split()[0]} ACK")
    for value in invite.headers.get_all("Route"):
        headers.add("Route", value)
    return SipRequest("ACK", invite.uri, headers)


class InviteClientTransaction:
    """An INVITE client transaction (RFC 3261 section 17.1.1, RFC 6026 section 7.2)."""

    def __init__(
        self,
        *,
        request: SipRequest,
        branch: str,
        destination: Destination,
        timers: TimerValues,
        send: Send,
        on_response: ResponseHandler,
        on_timeout: TimeoutHandler,
        now: float,
    ) -> None:
        self.request = request
        self.key: ClientKey = (branch, "INVITE")
        self.destination = destination
        self.state = InviteClientState.CALLING
        self._timers = timers
        self._send = send
        self._on_response = on_response
        self._on_timeout = on_timeout
        self._data = bytes(request)
        self._ack: bytes | None = None
        self._a_interval = timers.t1
        # Timer A retransmits over UDP only (Rule 4).
        self._a_at: float | None = None if self.reliable else now + timers.t1
        self._b_at: float | None = now + timers.timeout
        self._d_at: float | None = None
        self._m_at: float | None = None
        send(self._data, destination)

    @property
    def terminated(self) -> bool:
        return self.state is InviteClientState.TERMINATED

    @property
    def reliable(self) -> bool:
        """True when the request went out on a stream connection (Rule 4)."""
        return isinstance(self.destination, Connection)

    def receive_response(self, response: SipResponse, now: float) -> None:
        code = response.status_code
        state = self.state
        if state in (InviteClientState.CALLING, InviteClientState.PROCEEDING):
            self._a_at = None
            if code < 200:
                self.state = InviteClientState.PROCEEDING
                # Section 17.1.1.2: Timer B only bounds the Calling state; the UA core
                # bounds Proceeding (section 13.3.1.1 Expires / our ring timeout).
                self._b_at = None
                self._on_response(response, now)
            elif code < 300:
                self.state = InviteClientState.ACCEPTED
                self._b_at = None
                self._m_at = now + self._timers.timeout
                self._on_response(response, now)
            else:
                self.state = InviteClientState.COMPLETED
                self._b_at = None
                self._ack = bytes(make_ack_for_non_2xx(self.request, response))
                self._send(self._ack, self.destination)
                # Timer D: >= 32 s over UDP, zero over a reliable transport (Rule 4).
                self._d_at = now + (0.0 if self.reliable else self._timers.timer_d)
                self._on_response(response, now)
        elif state is InviteClientState.COMPLETED:
            # Retransmitted final response: resend the ACK, do not tell the TU.
            if code >= 300 and self._ack is not None:
                self._send(self._ack, self.destination)
        elif state is InviteClientState.ACCEPTED:
            # RFC 6026 section 7.2: 2xx retransmissions go to the TU (it resends the ACK).
            if 200 <= code < 300:
                self._on_response(response, now)

    def deadline(self) -> float | None:
        candidates = [t for t in (self._a_at, self._b_at, self._d_at, self._m_at) if t is not None]
        return min(candidates) if candidates else None

    def handle_timer(self, now: float) -> None:
        if self.state is InviteClientState.CALLING:
            if self._b_at is not None and now >= self._b_at:
                self._terminate()
                self._on_timeout(now)
                return
            if self._a_at is not None and now >= self._a_at:
                # Timer A doubles without cap (section 17.1.1.2).
                self._send(self._data, self.destination)
                self._a_interval = next_interval(self._a_interval, None)
                self._a_at = now + self._a_interval
        elif self.state is InviteClientState.COMPLETED:
            if self._d_at is not None and now >= self._d_at:
                self._terminate()
        elif self.state is InviteClientState.ACCEPTED:
            if self._m_at is not None and now >= self._m_at:
                self._terminate()

    def _terminate(self) -> None:
        self.state = InviteClientState.TERMINATED
        self._a_at = self._b_at = self._d_at = self._m_at = None
