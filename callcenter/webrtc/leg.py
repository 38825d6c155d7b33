"""The browser softphone as the agent side of a call: a :class:`~callcenter.agent_leg.Leg`.

Where :class:`~callcenter.agent_leg.AgentLeg` INVITEs a SIP phone, a :class:`WebRtcLeg` rings
the agent's panel through the :class:`~callcenter.softphone.SoftphoneHub` (a ``ring`` message
with the screen pop), and, when the agent answers, takes the browser's SDP offer, answers it
with a :class:`~callcenter.webrtc.peer.WebRtcPeer` (aiortc) and reports ``LegAnswered`` once
the peer connection is up (ICE and DTLS done: media can flow at once). From then on the call
bridges it like a SIP phone: ``run_media`` exchanges 20 ms frames of 8 kHz PCM with the call's
relays; the agent's keypad, hold and hang-up arrive as panel messages and leave as the same
leg events a phone would cause (``LegDtmf``, ``LegHold``, ``LegEnded``).

Messages the leg sends to the panel (see :mod:`callcenter.web.panel.ws`): ``ring``,
``answer_sdp``, ``call_state`` (``connected``, ``held``, ``resumed``, ``muted``, ``unmuted``,
``caller_held``, ``caller_resumed``, ``ended`` with a reason) and ``caller_dtmf``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from callcenter.agent_leg import (
    LegAnswered,
    LegDtmf,
    LegEnded,
    LegEvent,
    LegFailed,
    LegHold,
    LegRinging,
    MediaEvent,
    PcmAudio,
    loop_time,
)
from callcenter.config import WebRtcConfig
from callcenter.softphone import Message, SoftphoneHub
from callcenter.webrtc.peer import WebRtcError, WebRtcPeer

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0
"""From the agent's answer to a connected peer; beyond, the answer failed."""
RECONNECT_GRACE_S = 20.0
"""A browser whose connection dropped without a hang-up may come back (a reload) this long."""
DTMF_KEYS = frozenset("0123456789*#")


class WebRtcLeg:
    """The agent's browser softphone for one call (same interface as ``AgentLeg``).

    Args:
        hub: The node's softphone hub.
        config: WebRTC settings (ICE addresses and servers, codecs).
        agent_id: The agent's login.
        owner_call_id: The caller's Call-ID (the routing call id the panel knows).
        pop: The screen pop sent with the ring (see :mod:`callcenter.web.panel.api`).
        on_event: Receives the leg's events (sync, must not block).
    """

    endpoint = "browser"

    def __init__(
        self,
        *,
        hub: SoftphoneHub,
        config: WebRtcConfig,
        agent_id: str,
        owner_call_id: str,
        pop: Message,
        on_event: Callable[[LegEvent], None],
    ) -> None:
        self.hub = hub
        self.config = config
        self.agent_id = agent_id
        self.owner_call_id = owner_call_id
        self.call_id: str | None = f"webrtc-{owner_call_id}"
        self.answered = False
        self.ended = False
        self.held = False
        """The agent put the caller on hold."""
        self.muted = False
        self.peer: WebRtcPeer | None = None
        self._pop = pop
        self._on_event = on_event
        self._source: Callable[[], bytes | None] | None = None
        self._media: Callable[[MediaEvent], None] | None = None
        self._media_done = asyncio.Event()
        self._media_since: float | None = None
        self._unregister: Callable[[], None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._answering = False
        self._reconnecting = False
        self._lost_since: float | None = None
        self._reconnect_idle = asyncio.Event()
        self._reconnect_idle.set()

    # -- commands from the call ------------------------------------------------------------------
    async def start(self) -> str:
        """Ring the agent's panel; return the leg's id."""
        self._unregister = self.hub.register_leg(self.owner_call_id, self.agent_id, self.on_browser)
        await self.hub.to_agent(
            self.agent_id, {"type": "ring", "call_id": self.owner_call_id, "pop": self._pop}
        )
        self._on_event(LegRinging(self))
        assert self.call_id is not None
        return self.call_id

    def rebind(self, owner_call_id: str) -> None:
        """This leg now carries another call id (a consultation handed the caller over)."""
        previous = self.owner_call_id
        if self._unregister is not None:
            self._unregister()
        self.owner_call_id = owner_call_id
        self._unregister = self.hub.register_leg(owner_call_id, self.agent_id, self.on_browser)
        self._send({"type": "call_renamed", "call_id": owner_call_id, "from": previous})

    def cancel(self) -> None:
        """Stop ringing (the offer ended): the panel stops its ring."""
        if not self.ended and not self.answered:
            self.ended = True
            self._state("ended", "cancelled")
            self._close_peer()

    def hangup(self) -> None:
        """End the leg from the service's side (the caller left, a transfer...)."""
        if self.ended:
            return
        self.ended = True
        self._state("ended", "caller_hangup" if self.answered else "cancelled")
        self._close_peer()

    def hold(self) -> bool:
        """The caller put the call on hold: the panel says so."""
        self._state("caller_held")
        return True

    def resume(self) -> bool:
        """The caller resumed the call."""
        self._state("caller_resumed")
        return True

    def silent_for(self, now: float) -> float:
        """Seconds without audio from the browser while connected and not on hold."""
        peer = self.peer
        if peer is None or not self.answered or self.ended or self.held:
            return 0.0
        if self._lost_since is not None:  # within the reload grace, which decides
            return 0.0
        last = max(peer.last_rx_time or 0.0, self._media_since or 0.0)
        return max(0.0, now - last)

    def send_dtmf(self, digit: str) -> bool:
        """Show the caller's key on the panel (a browser has no use for RFC 4733 tones)."""
        if not self.answered or self.ended:
            return False
        self._send({"type": "caller_dtmf", "call_id": self.owner_call_id, "digit": digit})
        return True

    def report_transfer(self, status_code: int, reason: str | None, refer_id: int) -> bool:
        """Browsers transfer through the panel API, never by REFER."""
        return False

    async def run_media(
        self, source: Callable[[], bytes | None], on_event: Callable[[MediaEvent], None]
    ) -> None:
        """Exchange audio with the bridge until :meth:`stop_media` or :meth:`close`."""
        self._source = source
        self._media = on_event
        try:
            await self._media_done.wait()
        finally:
            self._source = None
            self._media = None

    def stop_media(self) -> None:
        """End :meth:`run_media`."""
        self._media_done.set()

    @property
    def packets_sent(self) -> int:
        """Audio frames sent to the browser."""
        if self.peer is None:
            return 0
        return int(self.peer.stats().get("frames_sent", 0))

    def close(self) -> None:
        """Forget the panel's messages, end the media, close the peer (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._unregister is not None:
            self._unregister()
        self.stop_media()
        self._close_peer()

    # -- messages from the panel -----------------------------------------------------------------
    def on_browser(self, message: Message) -> None:
        """One signalling message of the agent's panel about this call (the hub checked who)."""
        kind = message.get("type")
        if self.ended:
            return
        if kind == "answer":
            sdp = message.get("sdp")
            if not isinstance(sdp, str):
                return
            if not self._answering:
                self._answering = True  # one answer per leg (two tabs, a repeated click)
                self._spawn(self._answer(sdp))
            elif self.answered and not self._reconnecting:
                # The panel was reloaded (or its network changed) during the call: a new
                # peer connection replaces the old one; the call and the bridge go on.
                self._reconnecting = True
                self._reconnect_idle.clear()
                self._spawn(self._reconnect(sdp))
        elif kind in ("reject", "hangup") and not self.answered:
            self.ended = True
            self._close_peer()
            self._state("ended", "rejected")
            self._on_event(LegFailed(self, 603, "rejected"))
        elif kind in ("hangup", "reject"):  # answered: a late "reject" is a hang-up
            self.ended = True
            self._state("ended", "agent_hangup")
            self._close_peer()
            self._on_event(LegEnded(self, "agent_hangup", True))
        elif kind == "dtmf" and self.answered:
            digit = message.get("digit")
            if isinstance(digit, str) and digit in DTMF_KEYS:
                self._on_event(LegDtmf(self, digit))
        elif kind in ("hold", "resume") and self.answered:
            held = kind == "hold"
            if held != self.held:
                self.held = held
                self._media_since = loop_time()
                self._state("held" if held else "resumed")
                self._on_event(LegHold(self, held))
        elif kind == "mute" and self.answered:
            self.muted = bool(message.get("muted"))
            self._state("muted" if self.muted else "unmuted")

    def _new_peer(self) -> tuple[WebRtcPeer, asyncio.Event, asyncio.Event]:
        """A peer whose failure ends the leg only while it is the leg's current peer."""
        connected = asyncio.Event()
        failed = asyncio.Event()
        peer: WebRtcPeer | None = None

        def on_state(state: str) -> None:
            if state == "connected":
                connected.set()
            elif state in ("failed", "closed"):
                failed.set()
                if peer is not None and peer is self.peer and self.answered and not self.ended:
                    # The browser went away without hanging up (a reload, a crash, a network
                    # change): it may come back with a new offer; the call ends only if not.
                    self._spawn(self._lost(peer))

        peer = WebRtcPeer(self.config, source=self._pull, on_audio=self._push, on_state=on_state)
        return peer, connected, failed

    async def _negotiate(
        self, peer: WebRtcPeer, connected: asyncio.Event, failed: asyncio.Event, offer_sdp: str
    ) -> None:
        """Answer the browser's offer and wait for the connection (raises when it fails)."""
        answer = await peer.answer(offer_sdp)
        await self.hub.to_agent(
            self.agent_id, {"type": "answer_sdp", "call_id": self.owner_call_id, "sdp": answer}
        )
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            waiter = asyncio.ensure_future(connected.wait())
            failer = asyncio.ensure_future(failed.wait())
            try:
                await asyncio.wait({waiter, failer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                failer.cancel()
        if not connected.is_set():
            raise WebRtcError("the peer connection failed")

    async def _lost(self, peer: WebRtcPeer) -> None:
        self._lost_since = loop_time()
        await asyncio.sleep(RECONNECT_GRACE_S)
        await self._reconnect_idle.wait()  # an offer came in time: let it finish
        if peer is self.peer:
            self._lost_since = None
        if peer is self.peer and not self.ended:
            self.ended = True
            self._state("ended", "media_failed")
            self._on_event(LegEnded(self, "media_failed", True))

    async def _reconnect(self, offer_sdp: str) -> None:
        peer, connected, failed = self._new_peer()
        try:
            await self._negotiate(peer, connected, failed, offer_sdp)
        except (WebRtcError, TimeoutError) as exc:
            logger.info("[%s] browser leg not reconnected: %s", self.call_id, type(exc).__name__)
            await peer.close()
            return
        finally:
            self._reconnecting = False
            self._reconnect_idle.set()
        old, self.peer = self.peer, peer
        self._lost_since = None
        if self._has_ended():
            self._close_peer()
            return
        self._media_since = loop_time()
        if old is not None:
            self._spawn(old.close())
        self._state("connected", "reconnected")
        if self.held:  # the reloaded panel shows the hold it had put
            self._state("held")

    async def _answer(self, offer_sdp: str) -> None:
        if self.ended:  # the offer ended while the answer was on its way
            return
        peer, connected, failed = self._new_peer()
        self.peer = peer
        try:
            await self._negotiate(peer, connected, failed, offer_sdp)
        except (WebRtcError, TimeoutError) as exc:
            logger.info("[%s] browser leg not connected: %s", self.call_id, type(exc).__name__)
            if not self.ended:
                self.ended = True
                self._state("ended", "media_failed")
                self._close_peer()
                self._on_event(LegFailed(self, None, "failed"))
            return
        if self._has_ended():  # cancelled while connecting: nobody would close this peer
            self._close_peer()
            return
        self.answered = True
        self._media_since = loop_time()
        self._state("connected")
        self._on_event(LegAnswered(self, peer.codec or "opus"))

    def _has_ended(self) -> bool:
        # A method, not the attribute: it changes while _answer awaits.
        return self.ended

    # -- media -----------------------------------------------------------------------------------
    def _pull(self) -> bytes | None:
        source = self._source
        if source is None or self.held:
            return None
        return source()

    def _push(self, pcm: bytes) -> None:
        media = self._media
        if media is not None and not self.held:
            media(PcmAudio(pcm))

    # -- plumbing --------------------------------------------------------------------------------
    def _state(self, state: str, reason: str | None = None) -> None:
        self._send(
            {"type": "call_state", "call_id": self.owner_call_id, "state": state, "reason": reason}
        )

    def _send(self, message: Message) -> None:
        self._spawn(self.hub.to_agent(self.agent_id, message))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no loop (closing outside one): nothing left to tell
            coro.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("[%s] browser leg task failed", self.call_id, exc_info=task.exception())

    def _close_peer(self) -> None:
        peer = self.peer
        if peer is not None:
            self._spawn(peer.close())
        self.stop_media()
