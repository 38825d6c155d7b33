"""Events the SIP engine hands to the application (aioquic ``events.py`` style).

Every event is a frozen dataclass named in the past tense. ``SipEngine.next_event()`` returns
them in the order they happened. Invariant the call controller relies on: every call that
produced ``IncomingCall`` (or was started with ``SipEngine.invite``) ends with exactly one
``CallTerminated``, except outbound calls that never reached ``OutboundCallAnswered``: they end
with exactly one ``OutboundCallFailed`` instead (rejected, timed out, challenge not answerable,
or cancelled with ``SipEngine.cancel`` — even when the callee's 2xx crossed the CANCEL).

Events never carry parsed phone numbers in their ``repr`` beyond the fields the application
asked for; logging them is the application's decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from callcenter.sip.message import Headers

__all__ = [
    "CallCancelled",
    "CallConfirmed",
    "CallTerminated",
    "DtmfInfoReceived",
    "DropReason",
    "IncomingCall",
    "MessageDropped",
    "OutboundCallAnswered",
    "OutboundCallFailed",
    "OutboundCallProgressed",
    "OutboundCallRinging",
    "ReInviteAnswered",
    "ReInviteConfirmed",
    "ReInviteFailed",
    "ReInviteReceived",
    "RegistrationFailed",
    "RegistrationSucceeded",
    "SipEvent",
    "SipRequestReceived",
    "SipResponseSent",
    "TerminationCause",
    "TransferRequested",
]

TerminationCause = Literal[
    "bye",
    "ack_timeout",
    "cancelled",
    "rejected",
    "bye_timeout",
    "local_hangup",
    "invite_timeout",
    "reinvite_failed",
]
DropReason = Literal[
    "malformed", "rate_limited", "forbidden", "stray_response", "unknown_transaction", "too_big"
]


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A new out-of-dialog INVITE passed every check; 100 Trying has been sent."""

    call_id: str
    """The SIP Call-ID, the key of every later command and event for this call."""
    remote_addr: tuple[str, int]
    """Transport source address of the INVITE."""
    request_uri_user: str
    """User part of the Request-URI, unescaped once (the dialled number); ``""`` if absent."""
    caller_uri: str
    """The From URI as sent."""
    caller_user: str | None
    """User part of the From URI (the caller's number or name), unescaped once."""
    caller_display: str | None
    """The From display name, unquoted."""
    sdp_offer: bytes | None
    """The SDP offer, or ``None`` for an offerless INVITE (the 200 must carry the offer)."""
    headers: Headers = field(repr=False)
    """Every header of the INVITE (read-only by convention)."""
    transport: Literal["udp", "tcp"] = "udp"
    """Transport the INVITE arrived on; the dialog's responses and requests use it too."""


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """The ACK for our 2xx arrived: the dialog is confirmed (RFC 3261 section 13.3.1.4)."""

    call_id: str
    """The call."""
    sdp_answer: bytes | None = None
    """The SDP answer the ACK carried (offerless INVITE, RFC 3261 section 13.2.1)."""


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The caller cancelled before our final response; 200 (CANCEL) and 487 were sent.

    A ``CallTerminated(cause="cancelled")`` follows immediately.
    """

    call_id: str
    """The call."""


@dataclass(frozen=True, slots=True)
class CallTerminated:
    """The call is over; the engine has forgotten it (later requests get 481)."""

    call_id: str
    """The call."""
    cause: TerminationCause
    """Why it ended."""
    side: Literal["caller", "service"]
    """Who ended it: the remote party (``caller``) or this service."""


@dataclass(frozen=True, slots=True)
class ReInviteReceived:
    """A re-INVITE arrived in a confirmed dialog; call ``answer_reinvite``/``reject_reinvite``."""

    call_id: str
    """The call."""
    sdp_offer: bytes | None
    """The new offer (hold, codec change...), or ``None`` when the peer asks for our offer."""


@dataclass(frozen=True, slots=True)
class ReInviteConfirmed:
    """The ACK for our 2xx to a re-INVITE arrived."""

    call_id: str
    """The call."""
    sdp_answer: bytes | None = None
    """The answer in the ACK when the re-INVITE had no offer."""


@dataclass(frozen=True, slots=True)
class DtmfInfoReceived:
    """A DTMF digit arrived in an INFO request (``application/dtmf-relay`` or ``dtmf``)."""

    call_id: str
    """The call."""
    digit: str
    """One of ``0123456789*#ABCD``."""
    duration_ms: int | None
    """The announced duration, if any."""


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """The peer asked for a blind transfer: a REFER in a confirmed dialog (RFC 3515).

    202 Accepted has been sent and, unless the peer declined it (``Refer-Sub: false``, RFC
    4488), the implicit subscription is active: a NOTIFY with ``SIP/2.0 100 Trying`` went out.
    The application places the call to ``refer_to`` (or routes to the queue or agent it names),
    then reports the outcome with ``SipEngine.notify_transfer(call_id, code, reason, now,
    refer_id=refer_id)`` (``200`` when the target answered, the failure code otherwise) and
    usually hangs up this leg with ``SipEngine.hangup``; the peer often sends BYE itself after
    the final NOTIFY. Attended transfer (``Replaces``) is refused before this event.
    """

    call_id: str
    """The call (inbound or outbound) whose peer sent the REFER."""
    refer_to: str = field(repr=False)
    """The Refer-To URI (``sip:``, ``sips:`` or ``tel:``) without embedded headers."""
    target_user: str | None = field(repr=False)
    """User part of ``refer_to`` unescaped once (an extension, a queue name or a number);
    ``None`` when the URI has none."""
    referred_by: str | None = field(repr=False)
    """The Referred-By URI (RFC 3892), or ``None`` when absent or malformed."""
    refer_id: int
    """The REFER's CSeq number: the ``id`` of its subscription (RFC 3515 section 2.4.6)."""
    subscription: bool
    """False when the peer asked for no NOTIFY (``Refer-Sub: false``): ``notify_transfer``
    then does nothing."""
    headers: Headers = field(repr=False)
    """Every header of the REFER (read-only by convention)."""


@dataclass(frozen=True, slots=True)
class RegistrationSucceeded:
    """The registrar accepted our REGISTER (``expires == 0`` after ``stop_registration``)."""

    expires: int
    """The binding lifetime the registrar granted, in seconds."""


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    """A REGISTER failed; the engine retries with back-off unless stopped."""

    status_code: int | None
    """The final status code, or ``None`` on timeout."""
    reason: str
    """What went wrong (no secrets)."""


@dataclass(frozen=True, slots=True)
class OutboundCallRinging:
    """A provisional response other than 100 to our INVITE (180 Ringing, 183 Session Progress...).

    The application starts its ring timeout here and may play the early media the SDP
    describes. Several may arrive (forking, 180 then 183); none arrives once ``cancel`` was
    called.
    """

    call_id: str
    """The call returned by ``invite``."""
    status_code: int
    """The 1xx code (101-199): 180 ringing, 181 forwarded, 182 queued, 183 session progress."""
    sdp: bytes | None = None
    """The early-media SDP answer the provisional response carried, if any."""


OutboundCallProgressed = OutboundCallRinging
"""Former name of ``OutboundCallRinging``, kept for existing callers."""


@dataclass(frozen=True, slots=True)
class OutboundCallAnswered:
    """Our INVITE was answered with 2xx; the ACK has been sent."""

    call_id: str
    """The call returned by ``invite``."""
    sdp_answer: bytes | None
    """The SDP answer of the 2xx."""


@dataclass(frozen=True, slots=True)
class OutboundCallFailed:
    """Our INVITE ended without a call: the last event of that Call-ID.

    ``status_code``/``reason`` pairs: a final 3xx-6xx and its reason phrase (486 Busy Here...;
    after ``cancel`` the callee's 487 Request Terminated); ``None``/``"timeout"``: no response
    at all before Timer B; ``None``/``"cancelled"``: cancelled before any response (or the
    callee never answered our CANCEL within 64*T1); 2xx/``"cancelled"``: the callee answered
    as our CANCEL crossed its 2xx, and the engine acknowledged it and hung up with BYE (RFC 3261
    section 9.1); 401/407 with a reason starting ``"authentication failed"``: the challenge
    could not be answered, or was repeated after we answered it (RFC 3261 section 22.2).
    """

    call_id: str
    """The call returned by ``invite``."""
    status_code: int | None
    """The final status code, or ``None`` when no final response came."""
    reason: str
    """The reason phrase, ``"timeout"``, ``"cancelled"`` or ``"authentication failed: ..."``
    (never a password, a nonce or a number)."""


@dataclass(frozen=True, slots=True)
class ReInviteAnswered:
    """Our re-INVITE (``SipEngine.reinvite``: hold, resume) got a 2xx; the ACK has been sent."""

    call_id: str
    """The call."""
    sdp_answer: bytes | None
    """The peer's SDP answer (e.g. ``a=recvonly`` to our ``a=sendonly`` hold offer)."""


@dataclass(frozen=True, slots=True)
class ReInviteFailed:
    """Our re-INVITE got a final non-2xx response or no answer; the old session stays.

    RFC 3261 section 14.1: the session is unchanged. 491 (glare) is retried by the engine and
    only reported when it keeps coming; 401/407 are answered once. After 481, 408 or a timeout
    the dialog is over (section 12.2.1.2): a ``CallTerminated(cause="reinvite_failed")``
    follows (after our BYE for 408 and timeouts).
    """

    call_id: str
    """The call."""
    status_code: int | None
    """The final status code, or ``None`` on timeout."""
    reason: str
    """The reason phrase or ``"timeout"``."""


@dataclass(frozen=True, slots=True)
class SipRequestReceived:
    """A request was parsed (cheap, for metrics)."""

    method: str
    """The request method."""
    retransmission: bool = False
    """True when it matched an existing server transaction."""


@dataclass(frozen=True, slots=True)
class SipResponseSent:
    """A response was sent for the first time (retransmissions are not reported)."""

    status_code: int
    """The status code."""


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """A datagram was discarded without an answer."""

    reason: DropReason
    """Why (a small fixed set, usable as a metric label)."""


SipEvent = (
    IncomingCall
    | CallConfirmed
    | CallCancelled
    | CallTerminated
    | ReInviteReceived
    | ReInviteConfirmed
    | DtmfInfoReceived
    | TransferRequested
    | RegistrationSucceeded
    | RegistrationFailed
    | OutboundCallRinging
    | OutboundCallAnswered
    | OutboundCallFailed
    | ReInviteAnswered
    | ReInviteFailed
    | SipRequestReceived
    | SipResponseSent
    | MessageDropped
)
