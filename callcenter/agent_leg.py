"""One outbound call to an agent's SIP phone: the agent side of the B2BUA (issue 5, part 4).

A :class:`AgentLeg` opens its own RTP endpoint, offers PCMU/PCMA with RFC 4733 telephone-event,
and places the INVITE through a :class:`Dialer` (the service's ``place_call``), presenting the
service (``"SOLIDARITES accueil_general" <sip:3975@...>``), never the caller's number. The SIP
events of its Call-ID come back through :meth:`AgentLeg.on_sip_event` and leave, translated, as
:data:`LegEvent` values to its owner (the :class:`~callcenter.call.Call`): ringing, answered
(the answer SDP is applied to the RTP session first), failed (with the routing meaning of the
failure, :func:`failure_kind`), ended, DTMF by SIP INFO, hold/resume outcomes.

The leg's media runs in the call's TaskGroup (:meth:`run_media`); :meth:`close` releases the
socket and forgets the Call-ID (idempotent, called from the owner's ``finally``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from callcenter import sdp
from callcenter.rtp.codecs.base import get_codec
from callcenter.rtp.session import RtpEvent, RtpSession
from callcenter.sip import events as sip_events
from callcenter.transport.rtp_udp import RtpEndpoint

logger = logging.getLogger(__name__)

OFFERED_CODECS: tuple[str, ...] = ("PCMU", "PCMA")
"""What an agent leg offers, in order of preference (G.711 both laws, as the caller's leg)."""
TELEPHONE_EVENT_PT = 101
"""Payload type offered for RFC 4733 events."""

REJECTION_CODES: frozenset[int] = frozenset({486, 600, 603})
"""Final responses meaning the agent (or their phone) declined the call: busy, decline."""


class Dialer(Protocol):
    """Places and controls outbound calls (``callcenter.app.Service`` implements it)."""

    def place_call(
        self,
        target_uri: str,
        sdp_offer: bytes,
        *,
        from_user: str,
        from_display: str | None,
        on_event: Callable[[sip_events.SipEvent], None],
    ) -> str:
        """INVITE ``target_uri``; the SIP events of the returned Call-ID go to ``on_event``."""
        ...

    def cancel_call(self, call_id: str) -> None:
        """CANCEL an unanswered outbound call (BYE if it was answered meanwhile)."""
        ...

    def hangup_call(self, call_id: str) -> None:
        """End an outbound call (BYE, or CANCEL before the answer)."""
        ...

    def reinvite_call(self, call_id: str, sdp_offer: bytes) -> bool:
        """Send a re-INVITE; False when the call is not confirmed."""
        ...

    def answer_reinvite_call(self, call_id: str, sdp_answer: bytes | None) -> None:
        """Answer the peer's pending re-INVITE (None: refuse it with 488)."""
        ...

    def forget_call(self, call_id: str) -> None:
        """Stop delivering this Call-ID's events."""
        ...

    def notify_transfer_call(
        self, call_id: str, status_code: int, reason: str | None, refer_id: int
    ) -> bool:
        """Report a transfer's outcome to the phone that asked for it (RFC 3515 NOTIFY)."""
        ...


class Leg(Protocol):
    """The agent side of a bridged call, whatever reaches the agent.

    :class:`AgentLeg` rings a SIP phone; :class:`callcenter.webrtc.leg.WebRtcLeg` rings the
    browser softphone of the agent panel. Both report the same :data:`LegEvent` values, so the
    :class:`~callcenter.call.Call` bridges either without knowing which.
    """

    agent_id: str
    """The agent (login)."""
    call_id: str | None
    """The leg's own identifier (a SIP Call-ID, or ``webrtc-...``), for logs."""
    answered: bool
    """The agent picked up."""
    ended: bool
    """The leg is over (failed, hung up)."""
    endpoint: str
    """``sip`` or ``browser`` (for the trail)."""

    def cancel(self) -> None:
        """Stop ringing the agent."""
        ...

    def hangup(self) -> None:
        """End the leg from our side."""
        ...

    def hold(self) -> bool:
        """Tell the agent's side the caller put the call on hold."""
        ...

    def resume(self) -> bool:
        """Tell the agent's side the caller resumed the call."""
        ...

    def silent_for(self, now: float) -> float:
        """Seconds without audio from the agent's side while it should send."""
        ...

    def send_dtmf(self, digit: str) -> bool:
        """Pass a caller's key on to the agent's side."""
        ...

    def report_transfer(self, status_code: int, reason: str | None, refer_id: int) -> bool:
        """Report a transfer the agent's phone asked for (REFER); False when not applicable."""
        ...

    async def run_media(
        self, source: Callable[[], bytes | None], on_event: Callable[[MediaEvent], None]
    ) -> None:
        """Send ``source``'s audio to the agent and deliver theirs, until the media stops."""
        ...

    def stop_media(self) -> None:
        """End :meth:`run_media` (idempotent)."""
        ...

    @property
    def packets_sent(self) -> int:
        """Audio packets sent to the agent so far."""
        ...

    def close(self) -> None:
        """Release everything the leg holds (idempotent)."""
        ...


@dataclass(frozen=True, slots=True)
class PcmAudio:
    """Decoded audio from a leg that has no RTP of ours (the browser softphone)."""

    pcm: bytes
    """20 ms of PCM16 little-endian mono at 8 kHz."""


MediaEvent = RtpEvent | PcmAudio
"""What a leg's media delivers: RTP audio/keys (SIP phones) or decoded audio (browsers)."""


# -- what the leg tells its owner ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LegRinging:
    """The agent's phone rings (a 18x arrived)."""

    leg: Leg
    """The leg."""


@dataclass(frozen=True, slots=True)
class LegAnswered:
    """The agent picked up; the media is negotiated and the RTP session points at the phone."""

    leg: Leg
    """The leg."""
    codec: str
    """Negotiated codec."""


FailureKind = Literal["rejected", "no_answer", "failed"]


@dataclass(frozen=True, slots=True)
class LegFailed:
    """The INVITE ended without a conversation (busy, declined, unreachable, cancelled)."""

    leg: Leg
    """The leg."""
    status_code: int | None
    """Final status code, None without one."""
    kind: FailureKind
    """What it means for routing (:func:`failure_kind`)."""


@dataclass(frozen=True, slots=True)
class LegEnded:
    """The conversation with the agent's phone is over."""

    leg: Leg
    """The leg."""
    cause: str
    """The engine's termination cause (``bye``, ``local_hangup``...)."""
    by_agent: bool
    """The agent's side ended it (BYE from the phone, or its dialog failed)."""


@dataclass(frozen=True, slots=True)
class LegDtmf:
    """A key the agent pressed, sent by SIP INFO (RFC 4733 keys come through the RTP events)."""

    leg: Leg
    """The leg."""
    digit: str
    """The key."""


@dataclass(frozen=True, slots=True)
class LegTransferRequested:
    """The agent's phone asked for a blind transfer (REFER in the leg's dialog, RFC 3515).

    The engine has answered 202 and "100 Trying"; the owner checks the destination, transfers
    or refuses, and reports the outcome with :meth:`AgentLeg.report_transfer`.
    """

    leg: Leg
    """The leg."""
    target_user: str | None = field(repr=False)
    """User part of the Refer-To URI (a queue id, ``agent-<login>``, a login, or digits)."""
    refer_id: int
    """The REFER's CSeq, for the final report."""


@dataclass(frozen=True, slots=True)
class LegHold:
    """The agent put the caller on hold, or took them off it (browser softphone).

    The caller hears the hold music meanwhile and the agent hears nothing of the caller.
    """

    leg: Leg
    """The leg."""
    held: bool
    """True: on hold; False: resumed."""


LegEvent = (
    LegRinging | LegAnswered | LegFailed | LegEnded | LegDtmf | LegTransferRequested | LegHold
)
"""What a :class:`Leg` reports to its owner."""


def failure_kind(status_code: int | None, reason: str) -> FailureKind:
    """Classify the end of an unanswered INVITE for routing.

    486 Busy Here, 600 Busy Everywhere and 603 Decline are the agent's (or the phone's) refusal:
    the router offers the call to someone else and may offer this agent the next one
    (``OfferRejected``). A timeout or 480/408 means nobody answered (``OfferTimedOut``: the agent
    is paused "non réponse"); anything else (404, 5xx, an unanswerable challenge) is a broken
    phone or URI, treated like no answer so the agent stops being offered calls.

    Args:
        status_code: The final status, None when none came.
        reason: The engine's reason (``"timeout"``, ``"cancelled"``...).

    Returns:
        ``rejected``, ``no_answer`` or ``failed``.
    """
    if status_code in REJECTION_CODES:
        return "rejected"
    if status_code in (None, 408, 480, 487) or reason in ("timeout", "cancelled"):
        return "no_answer"
    return "failed"


def caller_id_display(prefix: str, queue: str) -> str:
    """The display name of an agent leg's From: the service, then the queue.

    Args:
        prefix: The configured name (``SOLIDARITES``).
        queue: The queue the call came through.

    Returns:
        E.g. ``"SOLIDARITES accueil_general"``; quotes and line breaks are removed.
    """
    text = f"{prefix} {queue}".strip()
    return "".join(ch for ch in text if ch not in '"\\\r\n')[:64]


class AgentLeg:
    """One outbound call to an agent's phone, with its own RTP endpoint.

    Args:
        dialer: Places the INVITE and carries the leg's SIP commands.
        agent_id: The agent (login; opaque).
        target_uri: The agent's SIP URI.
        local_host: The address written in our SDP.
        rtp_host: The address the RTP socket binds.
        port_range: RTP ports (min, max).
        on_event: Receives the leg's :data:`LegEvent` values (sync, must not block).
    """

    def __init__(
        self,
        *,
        dialer: Dialer,
        agent_id: str,
        target_uri: str,
        local_host: str,
        rtp_host: str,
        port_range: tuple[int, int],
        on_event: Callable[[LegEvent], None],
    ) -> None:
        self.dialer = dialer
        self.agent_id = agent_id
        self.target_uri = target_uri
        self.call_id: str | None = None
        self.rtp: RtpEndpoint | None = None
        self.media: sdp.NegotiatedMedia | None = None
        self.answered = False
        self.ended = False
        self.endpoint = "sip"
        self.media_since: float | None = None
        """``loop.time()`` of the latest negotiation: inactivity counts from there (a long hold
        must not look like a dead phone at resume)."""
        self._local_host = local_host
        self._rtp_host = rtp_host
        self._ports = port_range
        self._on_event = on_event
        self._session_id = secrets.randbelow(2**31)
        self._version = 1
        self._offer: sdp.SessionDescription | None = None
        self._closed = False

    # -- commands ----------------------------------------------------------------------------
    async def start(self, *, from_user: str, from_display: str) -> str:
        """Open the RTP port and send the INVITE; return the leg's Call-ID.

        Raises:
            OSError: No RTP port could be bound.
            ValueError: The URI cannot be dialled (no IP literal to send to).
        """
        placeholder = RtpSession(codec=get_codec("PCMU"), remote_address=None)
        self.rtp = await RtpEndpoint.open(
            self._rtp_host, self._ports[0], self._ports[1], session=placeholder
        )
        offer = self._make_offer(sdp.Direction.SENDRECV, OFFERED_CODECS)
        self._offer = offer
        self.call_id = self.dialer.place_call(
            self.target_uri,
            bytes(offer),
            from_user=from_user,
            from_display=from_display,
            on_event=self.on_sip_event,
        )
        return self.call_id

    def cancel(self) -> None:
        """Stop ringing the agent (CANCEL; a crossing 200 is acknowledged and hung up)."""
        if self.call_id is not None and not self.ended:
            self.dialer.cancel_call(self.call_id)

    def hangup(self) -> None:
        """End the leg from our side (BYE once answered, CANCEL before)."""
        if self.call_id is not None and not self.ended:
            self.dialer.hangup_call(self.call_id)

    def report_transfer(self, status_code: int, reason: str | None, refer_id: int) -> bool:
        """Tell the phone how the transfer it asked for ended (final NOTIFY, RFC 3515 §2.4.5).

        Args:
            status_code: 200 when done, else the refusal (403, 404, 480...).
            reason: Reason phrase; the standard one when None.
            refer_id: ``LegTransferRequested.refer_id``.

        Returns:
            False when the phone's subscription is already gone.
        """
        if self.call_id is None:
            return False
        return self.dialer.notify_transfer_call(self.call_id, status_code, reason, refer_id)

    def hold(self) -> bool:
        """Put the agent's phone on hold (re-INVITE ``a=sendonly``)."""
        return self._reinvite(sdp.Direction.SENDONLY)

    def resume(self) -> bool:
        """Take the agent's phone off hold (re-INVITE ``a=sendrecv``)."""
        return self._reinvite(sdp.Direction.SENDRECV)

    def _reinvite(self, direction: sdp.Direction) -> bool:
        if self.call_id is None or self.media is None or self.ended:
            return False
        offer = self._make_offer(direction, (self.media.codec,))
        self._offer = offer
        return self.dialer.reinvite_call(self.call_id, bytes(offer))

    def silent_for(self, now: float) -> float:
        """Seconds without RTP from the phone while it is meant to send (0 when it is not).

        Counts from the latest packet or the latest negotiation, whichever is later; a phone
        that was put on hold (or holds us: ``a=sendonly``/``inactive`` towards us) is never
        silent, so hold does not look like a dead phone.
        """
        media = self.media
        if media is None or self.rtp is None or self.ended or not media.direction.receives:
            return 0.0
        last = max(self.rtp.last_rx_time or 0.0, self.media_since or 0.0)
        return max(0.0, now - last)

    def send_dtmf(self, digit: str) -> bool:
        """Send a key to the agent as RFC 4733; False when the phone did not accept events."""
        if self.rtp is None or self.media is None or self.media.telephone_event_pt is None:
            return False
        try:
            self.rtp.send_dtmf(digit)
        except ValueError:
            return False
        return True

    async def run_media(
        self, source: Callable[[], bytes | None], on_event: Callable[[MediaEvent], None]
    ) -> None:
        """Send ``source``'s audio to the phone and deliver what it sends, until closed."""
        if self.rtp is None:
            raise RuntimeError("AgentLeg.run_media() before start()")
        await self.rtp.run(source, on_event)

    def stop_media(self) -> None:
        """Close the RTP socket, which ends :meth:`run_media`."""
        if self.rtp is not None:
            self.rtp.close()

    @property
    def packets_sent(self) -> int:
        """RTP packets sent to the phone."""
        return self.rtp.stats.packets_sent if self.rtp is not None else 0

    def close(self) -> None:
        """Release the RTP socket and stop receiving the Call-ID's events (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self.rtp is not None:
            self.rtp.close()
        if self.call_id is not None:
            self.dialer.forget_call(self.call_id)

    # -- SIP events of the leg's Call-ID --------------------------------------------------------
    def on_sip_event(self, event: sip_events.SipEvent) -> None:
        """Translate one SIP event of this leg for the owner (called by the dialer)."""
        if isinstance(event, sip_events.OutboundCallRinging):
            self._on_event(LegRinging(self))
        elif isinstance(event, sip_events.OutboundCallAnswered):
            self._answered(event)
        elif isinstance(event, sip_events.OutboundCallFailed):
            self.ended = True
            kind = failure_kind(event.status_code, event.reason)
            self._on_event(LegFailed(self, event.status_code, kind))
        elif isinstance(event, sip_events.CallTerminated):
            was_up = self.answered and not self.ended
            self.ended = True
            if was_up:
                self._on_event(LegEnded(self, event.cause, event.side == "caller"))
        elif isinstance(event, sip_events.DtmfInfoReceived):
            self._on_event(LegDtmf(self, event.digit))
        elif isinstance(event, sip_events.ReInviteAnswered):
            self._apply_answer(event.sdp_answer)
        elif isinstance(event, sip_events.ReInviteReceived):
            self._answer_reinvite(event)
        elif isinstance(event, sip_events.TransferRequested):
            self._on_event(LegTransferRequested(self, event.target_user, event.refer_id))

    def _answered(self, event: sip_events.OutboundCallAnswered) -> None:
        if self.ended:
            return
        if not self._apply_answer(event.sdp_answer) or self.media is None:
            logger.info("[%s] agent leg: unusable SDP answer, hanging up", self.call_id)
            self.answered = True  # a dialog exists: its end comes as CallTerminated
            self.hangup()
            self.ended = True
            self._on_event(LegFailed(self, 200, "failed"))
            return
        self.answered = True
        self._on_event(LegAnswered(self, self.media.codec))

    def _apply_answer(self, body: bytes | None) -> bool:
        offer = self._offer
        if offer is None or not body or self.rtp is None:
            return False
        try:
            media = sdp.negotiated_from_answer(offer, sdp.SessionDescription.parse(body))
        except (sdp.SdpParseError, sdp.SdpNegotiationError) as exc:
            logger.info("[%s] agent leg answer refused: %s", self.call_id, type(exc).__name__)
            return False
        if self.media is None:
            session = RtpSession.from_negotiated(media)
            session.deliver_audio = True
            self.rtp.session = session
        else:
            self.rtp.session.update(media)
        self.media = media
        self.media_since = loop_time()
        return True

    def _answer_reinvite(self, event: sip_events.ReInviteReceived) -> None:
        # The phone put us on hold or changed its address: answer with our stream as it is.
        if self.call_id is None or self.media is None or self.rtp is None:
            return
        try:
            if event.sdp_offer is None:
                raise sdp.SdpNegotiationError("offerless re-INVITE")
            media = sdp.negotiate(
                sdp.SessionDescription.parse(event.sdp_offer),
                local_address=self._local_host,
                local_port=self.rtp.local_port,
                session_id=self._session_id,
                session_version=self._version,
            )
        except (sdp.SdpParseError, sdp.SdpNegotiationError):
            self.dialer.answer_reinvite_call(self.call_id, None)
            return
        self._version += 1
        self.rtp.session.update(media)
        self.media = media
        self.media_since = loop_time()
        self.dialer.answer_reinvite_call(self.call_id, bytes(media.answer))

    def _make_offer(
        self, direction: sdp.Direction, codecs: tuple[str, ...]
    ) -> sdp.SessionDescription:
        assert self.rtp is not None
        offer = sdp.make_offer(
            local_address=self._local_host,
            local_port=self.rtp.local_port,
            codecs=codecs,
            telephone_event_pt=TELEPHONE_EVENT_PT,
            direction=direction,
            session_id=self._session_id,
            session_version=self._version,
        )
        self._version += 1
        return offer


def loop_time() -> float:
    """The running loop's clock (the RTP endpoint stamps packets with it)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # no loop (a sans-loop unit test): the default loop clock
        return time.monotonic()
