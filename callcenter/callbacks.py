"""Callbacks ("rappel") in the running service: persist, schedule, dial, bridge (issue 5).

The pure rules (statuses, back-off, slots inside opening hours) are :mod:`routing.callbacks`;
the store is :mod:`callcenter.store.callbacks`. This module is the IO side:

- **Request** (from a waiting :class:`~callcenter.call.Call`): a ``keep_place`` callback keeps
  the caller's router entry (``CallbackKept``: same id, same place, no maximum wait); a
  ``slot`` callback waits for its slot start.
- **Start-up**: every callback that has not ended is loaded; queued ones are put back in the
  router (``CallQueued`` with the stored id, the original ``joined_at`` and ``callback=True``:
  no maximum wait; another node that already holds it answers with a ``RoutingError``,
  which is ignored), waiting ones are scheduled. One asyncio timer fires at the earliest
  ``due_at``; each due callback is moved ``waiting`` → ``queued`` by a compare-and-set in the
  store before it enters the router, so only one node enqueues it.
- **Offer** (``OfferCall`` with ``dial_out``): the callback is claimed (``queued`` →
  ``dialing``, compare-and-set: two nodes never dial the same callback; an offer this node does
  not dial — claim lost, not queued, store error — is released with ``OfferRejected`` so the
  agent stays available), the agent's phone rings first (an
  :class:`~callcenter.agent_leg.AgentLeg`); an agent not taking it puts the row back to
  ``queued`` *before* the router hears it (it re-offers at once); when the agent answers, the
  caller is dialled through the trunk (``callbacks.trunk_uri``), hears a short French greeting,
  then both legs are bridged (two :class:`~callcenter.media.relay.AudioRelay`, keys re-sent as
  RFC 4733).
  Either side hanging up ends the other and sends ``CallEnded`` (the agent's wrap-up).
- **Outcome** of each attempt: ``connected``, ``no_answer`` (ring timeout, 408/480/487),
  ``busy`` (486/600/603) or ``unreachable`` (anything else); a failed attempt is retried after
  the policy's back-off inside opening hours (:func:`routing.callbacks.attempt_finished`); the
  agent not taking the offer is no attempt (the router re-queues the entry). The final outcome
  goes to the contact history (the usager's, when known), every attempt to the trail (one trail
  call per attempt, ``cb-<id>-<n>``, without the number) and to the metrics.

The number to call is read from the store when dialling and never logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

import routing
from callcenter.agent_leg import (
    AgentLeg,
    Dialer,
    Leg,
    LegAnswered,
    LegDtmf,
    LegEnded,
    LegEvent,
    LegFailed,
    LegRinging,
    MediaEvent,
    PcmAudio,
    caller_id_display,
)
from callcenter.config import Config
from callcenter.media.relay import AudioRelay
from callcenter.media.tts.prompt_cache import PromptCache, PromptSpec
from callcenter.metrics import Metrics
from callcenter.routing_service import RoutingBackend
from callcenter.rtp.session import AudioReceived
from callcenter.softphone import SoftphoneHub
from callcenter.store import callbacks as store
from callcenter.store import dossiers as repo
from callcenter.store.callbacks import StoredCallback
from callcenter.store.trail import CallTrail
from callcenter.webrtc.leg import WebRtcLeg
from routing import callbacks as rules
from routing.callbacks import AttemptOutcome, CallbackPolicy, CallbackStatus, Slot

logger = logging.getLogger(__name__)

GREETING_PROMPT = "callback_greeting"
"""What the called-back caller hears before the agent is connected."""
CALLBACK_SERVICE_PROMPTS: tuple[PromptSpec, ...] = (
    (
        GREETING_PROMPT,
        "Bonjour, ici le service Solidarités du Département, vous avez demandé à être "
        "rappelé. Un conseiller va vous répondre.",
        None,
    ),
)
"""Prompts of the outbound side (rendered at start-up with the others)."""

BUSY_CODES = frozenset({486, 600, 603})
"""Final responses meaning the callee's line is busy or they declined."""
NO_ANSWER_CODES = frozenset({408, 480, 487})
"""Final responses meaning nobody answered (487: our CANCEL at the ring timeout)."""
_FRAME = 320


def attempt_outcome(status_code: int | None, *, timed_out: bool) -> AttemptOutcome:
    """Classify an outbound attempt that did not connect.

    Args:
        status_code: The INVITE's final status, None without one (Timer B).
        timed_out: We cancelled it at the ring timeout.

    Returns:
        ``busy`` for 486/600/603, ``no_answer`` for our ring timeout, 408, 480, 487 or no
        response, ``unreachable`` otherwise (404, 5xx...).
    """
    if status_code in BUSY_CODES:
        return AttemptOutcome.BUSY
    if timed_out or status_code is None or status_code in NO_ANSWER_CODES:
        return AttemptOutcome.NO_ANSWER
    return AttemptOutcome.UNREACHABLE


def dial_string(e164: str, number_format: str) -> str:
    """The number as the trunk wants it (``national``: ``0612345678``; ``e164``: as is)."""
    if number_format == "e164":
        return e164
    number = phonenumbers.parse(e164, None)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit() or ch == "+")


@dataclass(frozen=True, slots=True)
class _RingTimeout:
    """The callee rang for ``callbacks.ring_timeout_s``."""


@dataclass(frozen=True, slots=True)
class _Key:
    """A key pressed on one leg (RFC 4733), to re-send on the other."""

    leg: Leg
    digit: str


_AttemptInput = routing.Decision | LegEvent | _RingTimeout | _Key


class CallbackService:
    """Callbacks of one service node.

    Args:
        config: The service configuration (``callbacks``, ``routing``, ``rtp``, ``sip``).
        routing_service: The routing backend (only ``submit``, ``listen*``, ``now``, ``config``
            and read-only ``router`` are used).
        engine: The store.
        dialer: Places the outbound legs (the service).
        agent_uri: An agent's SIP URI from their login.
        trail: The call trail.
        metrics: The metrics.
        prompts: The prompt cache (the greeting).
        softphones: Agents' browser softphones: an agent whose panel is open is rung there
            (None: SIP phones only).
    """

    def __init__(
        self,
        *,
        config: Config,
        routing_service: RoutingBackend,
        engine: Engine,
        dialer: Dialer,
        agent_uri: Callable[[str], Awaitable[str | None]],
        trail: CallTrail,
        metrics: Metrics,
        prompts: PromptCache,
        softphones: SoftphoneHub | None = None,
    ) -> None:
        self.config = config
        self.softphones = softphones
        self.settings = config.callbacks
        self.routing = routing_service
        self.engine = engine
        self.dialer = dialer
        self.agent_uri = agent_uri
        self.trail = trail
        self.metrics = metrics
        self.prompts = prompts
        self.node = (self.settings.node or socket.gethostname() or "node")[:64]
        cb = self.settings
        self.policy = CallbackPolicy(
            max_attempts=cb.max_attempts,
            first_retry_s=cb.first_retry_s,
            backoff_factor=cb.backoff_factor,
            max_retry_s=cb.max_retry_s,
            slot_s=cb.slot_s,
        )
        self._waiting: dict[str, StoredCallback] = {}
        """Callbacks waiting for their ``due_at`` (slot or retry), by id."""
        self._entries: dict[str, str] = {}
        """Router entry id → callback id, for the entries this node put in the router."""
        self._attempts: dict[str, asyncio.Task[None]] = {}
        """Running attempts by callback id."""
        self._offers: dict[str, tuple[int, int]] = {}
        """Callback id → (attempt number, offers of it so far): trail ids stay unique."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._unlisten: Callable[[], None] | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> int:
        """Load every callback that has not ended and put it back to work; return how many.

        Raises:
            SQLAlchemyError: The store cannot be read.
        """
        self._unlisten = self.routing.listen(self._on_decision)
        loaded = await asyncio.to_thread(store.open_callbacks, self.engine)
        for stored in loaded:
            status = stored.status
            if status is CallbackStatus.DIALING:
                # The node dialling it stopped (or this one restarted): no attempt was counted.
                back = dataclasses.replace(
                    stored.callback, status=CallbackStatus.QUEUED, updated_at=self.routing.now()
                )
                again = await asyncio.to_thread(
                    store.transition, self.engine, back, expected=CallbackStatus.DIALING
                )
                if again is None:
                    continue
                stored, status = again, CallbackStatus.QUEUED
            if status is CallbackStatus.QUEUED:
                await self._enqueue(stored)
            elif status is CallbackStatus.WAITING:
                self._waiting[stored.id] = stored
        self._arm()
        if loaded:
            logger.info("callbacks: %d loaded (%d waiting)", len(loaded), len(self._waiting))
        return len(loaded)

    async def close(self) -> None:
        """Stop the timer and end the running attempts (their legs are hung up)."""
        self._closed = True
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = [*self._attempts.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)

    # -- requests from a call ----------------------------------------------------------------
    def slots(self, skill: str) -> list[Slot]:
        """The slots a caller of ``skill`` may choose now (inside its opening hours)."""
        queue = self.routing.config.queues.get(skill)
        if queue is None:
            return []
        return rules.offer_slots(
            queue.hours,
            self.routing.config.timezone,
            self.routing.now(),
            self.policy,
            count=self.settings.slot_count,
        )

    async def keep_place(self, call_id: str, phone: str, *, origin_call_id: str) -> StoredCallback:
        """Persist a callback that keeps the waiting call's place, then tell the router.

        Args:
            call_id: The router's id of the waiting call (its entry stays, same place).
            phone: The confirmed number, E.164.
            origin_call_id: SIP Call-ID of the call (its trail).

        Raises:
            routing.RoutingError: The call is no longer waiting, or the router did not keep it
                (the stored callback is then cancelled).
            store.CallbackStoreError: The number is not E.164 or may not be called back
                (:func:`~callcenter.store.callbacks.callback_number_allowed`).
            SQLAlchemyError: The store failed (nothing was kept).
        """
        now = self.routing.now()
        try:
            queued = self.routing.router.waiting_call(call_id)
        except KeyError:
            raise routing.RoutingError(f"call {call_id} is not waiting") from None
        usager = queued.usager_id if queued.usager_id and queued.usager_id.isdigit() else None
        callback = dataclasses.replace(
            rules.keep_place(queued, now), id=store.new_id(), usager_id=usager
        )
        stored = await asyncio.to_thread(
            store.create,
            self.engine,
            callback,
            phone=phone,
            origin_call_id=origin_call_id,
            queue_call_id=call_id,
            node=self.node,
        )
        # The router must keep the entry: the call may have stopped waiting since it was read
        # (answered, hung up, closed out); then no entry would ever offer the row.
        why = "the router did not keep the call"
        try:
            decisions = await self.routing.submit(routing.CallbackKept(call_id, self.routing.now()))
        except (routing.RoutingError, ConnectionError) as exc:
            decisions, why = [], f"the router failed ({type(exc).__name__})"
        if not any(
            isinstance(d, routing.CallKeptForCallback) and d.call_id == call_id for d in decisions
        ):
            await self._cancel_unkept(stored.id, why)
            raise routing.RoutingError(f"call {call_id} no longer waits: callback not kept")
        if not any(
            isinstance(d, routing.CallRejectedClosed) and d.call_id == call_id for d in decisions
        ):
            # (Kept while an agent rang, just after closing: closed out at once, and already
            # carried to the reopening by _on_decision, found in the store by its entry.)
            self._entries[call_id] = stored.id
        self.metrics.callback_requested("keep_place")
        return stored

    async def _cancel_unkept(self, callback_id: str, reason: str) -> None:
        """Cancel a kept-place callback the router did not keep (no entry would offer it)."""
        try:
            await asyncio.to_thread(store.cancel, self.engine, callback_id, reason=reason)
        except (SQLAlchemyError, store.CallbackStoreError) as exc:
            logger.error(
                "callback %s: not kept and not cancelled (%s)", callback_id, type(exc).__name__
            )

    async def book(
        self,
        skill: str,
        slot: Slot,
        phone: str,
        *,
        origin_call_id: str,
        priority: routing.Priority = routing.Priority.NORMAL,
        usager_id: str | None = None,
        intent: str | None = None,
    ) -> StoredCallback:
        """Persist a callback in a slot the caller chose; it enters the queue at the slot start.

        Raises:
            routing.callbacks.CallbackError: The slot cannot be booked.
            store.CallbackStoreError: The number is not E.164 or may not be called back.
            SQLAlchemyError: The store failed.
        """
        queue = self.routing.config.queues[skill]
        callback = rules.book_slot(
            store.new_id(),
            skill,
            slot,
            self.routing.now(),
            schedule=queue.hours,
            tz=self.routing.config.timezone,
            policy=self.policy,
            priority=priority,
            usager_id=usager_id if usager_id and usager_id.isdigit() else None,
            intent=intent,
        )
        stored = await asyncio.to_thread(
            store.create, self.engine, callback, phone=phone, origin_call_id=origin_call_id
        )
        self._waiting[stored.id] = stored
        self._arm()
        self.metrics.callback_requested("slot")
        return stored

    # -- the queue ---------------------------------------------------------------------------
    async def _enqueue(self, stored: StoredCallback) -> None:
        """Put a ``queued`` callback in the router (start-up, due, or re-queue)."""
        cb = stored.callback
        entry = stored.queue_call_id or f"cb-{cb.id}"
        now = self.routing.now()
        joined = min(cb.joined_at, now)  # never in the future (a clock behind the store's)
        # ``callback=True``: the router applies no maximum wait, so the place is kept whole.
        call = routing.QueuedCall(
            call_id=entry,
            skill=cb.skill,
            priority=cb.priority,
            joined_at=joined,
            callback=True,
            usager_id=cb.usager_id,
            intent=cb.intent,
        )
        self._entries[entry] = cb.id
        try:
            await self.routing.submit(routing.CallQueued(call, now))
        except routing.RoutingError as exc:
            logger.info("callback %s already in the router: %s", cb.id, type(exc).__name__)

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._closed or not self._waiting:
            return
        due = min(s.callback.due_at or 0.0 for s in self._waiting.values())
        delay = max(0.0, due - self.routing.now())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._spawn(self._enter_due(), "callbacks-due")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("callback task %s failed", task.get_name(), exc_info=task.exception())

    async def _enter_due(self) -> None:
        now = self.routing.now()
        for stored in [s for s in self._waiting.values() if rules.is_due(s.callback, now)]:
            self._waiting.pop(stored.id, None)
            queued, _ = rules.enter_queue(stored.callback, now)
            entry = f"cb-{stored.id}"
            try:
                moved = await asyncio.to_thread(
                    store.transition,
                    self.engine,
                    queued,
                    expected=CallbackStatus.WAITING,
                    node=self.node,
                    queue_call_id=entry,
                )
            except SQLAlchemyError as exc:
                logger.warning("callback %s not enqueued (%s)", stored.id, type(exc).__name__)
                self._waiting[stored.id] = stored
                continue
            if moved is None:  # cancelled, or another node took it
                continue
            # Entering now: the place counts from the slot start or the retry.
            await self._enqueue(dataclasses.replace(moved, callback=queued))
        self._arm()

    def _on_decision(self, decision: routing.Decision) -> None:
        """Global listener: offers to dial out, queues closing on callback entries."""
        if isinstance(decision, routing.OfferCall) and decision.dial_out:
            entry = decision.call.call_id
            self._spawn(self._attempt(decision), f"callback-offer-{entry}")
        elif isinstance(decision, routing.CallRejectedClosed):
            entry = decision.call_id
            callback_id = self._entries.pop(entry, None)
            if callback_id is not None:
                self._spawn(self._closed_out(callback_id), f"callback-closed-{callback_id}")
            elif decision.kept_callback:
                # A callback this node adopted from a dead node: its entry is unknown here,
                # the store knows it by its router entry (a kept place's original Call-ID).
                self._spawn(self._closed_out(None, entry=entry), f"callback-closed-{entry}")

    async def _closed_out(self, callback_id: str | None, *, entry: str | None = None) -> None:
        """The queue closed with the callback in it: carry it over to the next opening.

        Args:
            callback_id: The callback, or None to find it by its router ``entry``.
            entry: The router entry of a callback this node did not enqueue.
        """
        if callback_id is not None:
            stored = await asyncio.to_thread(store.get, self.engine, callback_id)
        else:
            assert entry is not None
            stored = await asyncio.to_thread(store.by_queue_call_id, self.engine, entry)
        if stored is None or stored.status is not CallbackStatus.QUEUED:
            return
        queue = self.routing.config.queues[stored.callback.skill]
        later = rules.queue_closed(
            stored.callback,
            self.routing.now(),
            schedule=queue.hours,
            tz=self.routing.config.timezone,
            policy=self.policy,
        )
        saved = await asyncio.to_thread(
            store.transition, self.engine, later, expected=CallbackStatus.QUEUED
        )
        if saved is None:
            return
        if saved.status is CallbackStatus.WAITING:
            self._waiting[saved.id] = saved
            self._arm()
        else:
            self.metrics.callback_ended("failed")

    # -- one attempt -------------------------------------------------------------------------
    async def _attempt(self, offer: routing.OfferCall) -> None:
        entry = offer.call.call_id
        try:
            stored = await self._read_offered(entry)
            if stored is not None and stored.status is CallbackStatus.DIALING:
                # Re-offered while this node's attempt for it is still ending (the router's
                # ring timeout re-offers at once): that attempt puts it back to ``queued``.
                previous = self._attempts.get(stored.id)
                if previous is not None and previous is not asyncio.current_task():
                    await asyncio.wait({previous})
                    stored = await asyncio.to_thread(store.get, self.engine, stored.id)
        except SQLAlchemyError as exc:
            logger.warning("callback offer %s: store failed (%s)", entry, type(exc).__name__)
            await self._release(offer, "store_error")
            return
        if stored is None or stored.status in rules.TERMINAL_STATUSES:
            # Cancelled meanwhile (CLI), or not ours to know: take it out of the queue.
            if stored is not None or self._known(entry):
                await self.routing.submit(routing.CallCancelled(entry, self.routing.now()))
            else:
                await self._release(offer, "unknown")
            return
        if stored.status is not CallbackStatus.QUEUED:
            await self._release(offer, "not_queued")  # another node is dialling it
            return
        dialing = rules.dialing(stored.callback, self.routing.now())
        try:
            claimed = await asyncio.to_thread(
                store.transition,
                self.engine,
                dialing,
                expected=CallbackStatus.QUEUED,
                node=self.node,
            )
        except SQLAlchemyError as exc:
            logger.warning("callback %s: not claimed (%s)", stored.id, type(exc).__name__)
            claimed = None
        if claimed is None:
            await self._release(offer, "claim_lost")  # another node won the claim
            return
        self._entries[entry] = claimed.id
        task = asyncio.current_task()
        assert task is not None
        self._attempts[claimed.id] = task
        try:
            await _Attempt(self, claimed, offer).run()
        finally:
            if self._attempts.get(claimed.id) is task:
                del self._attempts[claimed.id]

    def _known(self, entry: str) -> bool:
        return entry in self._entries or entry.startswith("cb-")

    async def _read_offered(self, entry: str) -> StoredCallback | None:
        """The callback behind an offered router entry, or None."""
        callback_id = self._entries.get(entry)
        if callback_id is None and entry.startswith("cb-"):
            callback_id = entry[3:]
        if callback_id is not None:
            return await asyncio.to_thread(store.get, self.engine, callback_id)
        # A kept place asked on another node (adopted when that node died): its entry is the
        # original Call-ID, recorded with the callback.
        return await asyncio.to_thread(store.by_queue_call_id, self.engine, entry)

    async def _release(self, offer: routing.OfferCall, why: str) -> None:
        """Free the agent offered a callback this node does not dial.

        ``OfferRejected`` leaves the agent available (no "non réponse" pause, unlike
        ``OfferTimedOut``) and the router does not offer them this entry again; the entry goes
        back to its place for the other agents.
        """
        entry = offer.call.call_id
        logger.info("callback offer %s released (%s)", entry, why)
        try:
            await self.routing.submit(
                routing.OfferRejected(offer.agent_id, entry, self.routing.now())
            )
        except (routing.RoutingError, ConnectionError) as exc:
            logger.warning("callback offer %s not released (%s)", entry, type(exc).__name__)

    def trail_id(self, stored: StoredCallback) -> str:
        """The trail id of a new try: ``cb-<id>-<attempt>``, ``.<k>`` for the k-th re-offer.

        An agent declining is no attempt: the next agent's try has the same attempt number.
        """
        number = len(stored.callback.attempts) + 1
        last, offers = self._offers.get(stored.id, (number, 0))
        offers = offers + 1 if last == number else 1
        self._offers[stored.id] = (number, offers)
        suffix = f".{offers - 1}" if offers > 1 else ""
        return f"cb-{stored.id}-{number}{suffix}"

    async def finish(
        self,
        stored: StoredCallback,
        outcome: AttemptOutcome,
        *,
        entry_gone: bool,
        agent_id: str,
        started: datetime,
        sip_call_id: str | None,
    ) -> StoredCallback | None:
        """Record how an attempt ended (store, metrics, contact history); schedule what follows."""
        cb = stored.callback
        queue = self.routing.config.queues[cb.skill]
        now = self.routing.now()
        after = rules.attempt_finished(
            cb,
            outcome,
            now,
            schedule=queue.hours,
            tz=self.routing.config.timezone,
            policy=self.policy,
        )
        if outcome is not AttemptOutcome.AGENT_UNAVAILABLE:
            self.metrics.callback_attempt(outcome.value)
        saved = await asyncio.to_thread(
            store.transition, self.engine, after, expected=CallbackStatus.DIALING
        )
        if saved is None:  # cancelled during the attempt: nothing more to do
            return None
        if saved.status is CallbackStatus.WAITING:
            self._waiting[saved.id] = saved
            self._arm()
        elif saved.status is CallbackStatus.QUEUED and entry_gone:
            await self._enqueue(saved)
        elif saved.status in (CallbackStatus.COMPLETED, CallbackStatus.FAILED):
            self._offers.pop(saved.id, None)
            result = "completed" if saved.status is CallbackStatus.COMPLETED else "failed"
            self.metrics.callback_ended(result)
            await self._record_contact(saved, agent_id, started, sip_call_id, result)
        return saved

    async def _record_contact(
        self,
        saved: StoredCallback,
        agent_id: str,
        started: datetime,
        sip_call_id: str | None,
        result: str,
    ) -> None:
        usager = saved.callback.usager_id
        try:
            await asyncio.to_thread(
                repo.record_contact,
                self.engine,
                channel="telephone",
                started_at=started,
                ended_at=datetime.now(UTC),
                sip_call_id=sip_call_id if result == "completed" else None,
                usager_id=int(usager) if usager and usager.isdigit() else None,
                handled_by=agent_id,
                intents=(saved.callback.intent,) if saved.callback.intent else (),
                outcome="connected" if result == "completed" else "callback_failed",
            )
        except SQLAlchemyError as exc:  # the trail still has it
            logger.error("callback %s: contact not recorded (%s)", saved.id, type(exc).__name__)

    async def erase_numbers(self) -> int:
        """Erase the numbers of callbacks that ended more than ``retention_days`` ago."""
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        return await asyncio.to_thread(store.erase_phones, self.engine, cutoff)

    def trunk_uri(self, phone: str) -> str:
        """The Request-URI for calling ``phone`` (E.164) through the trunk."""
        return self.settings.trunk_uri.format(
            number=dial_string(phone, self.settings.number_format)
        )


class _Attempt:
    """One outbound attempt: ring the agent, dial the caller, bridge, record the outcome."""

    def __init__(
        self, service: CallbackService, stored: StoredCallback, offer: routing.OfferCall
    ) -> None:
        self.service = service
        self.stored = stored
        self.offer = offer
        self.entry = offer.call.call_id
        self.agent_id = offer.agent_id
        self.trail_id = service.trail_id(stored)
        self.inputs: asyncio.Queue[_AttemptInput] = asyncio.Queue()
        self.agent: Leg | None = None
        self.callee: AgentLeg | None = None
        self.to_agent: AudioRelay | None = None
        self.to_callee: AudioRelay | None = None
        self.greeting = b""
        self.greeting_at = 0
        self.frames = {"to_agent": 0, "to_callee": 0}
        """Frames relayed each way while bridged (the trail's ``bridge_ended``)."""
        self.started = datetime.now(UTC)
        self.log = logging.LoggerAdapter(logger, {"callback": stored.id})
        self.finished = False
        """The store has the attempt's end (:meth:`_finish` ran)."""
        self.saved: StoredCallback | None = None

    def record(self, type_: str, **data: Any) -> None:
        self.service.trail.record(self.trail_id, type_, data, datetime.now(UTC))

    def _leg(self, agent_id: str, uri: str) -> AgentLeg:
        cfg = self.service.config
        return AgentLeg(
            dialer=self.service.dialer,
            agent_id=agent_id,
            target_uri=uri,
            local_host=cfg.sip.advertised_host or cfg.rtp.host or cfg.sip.host,
            rtp_host=cfg.rtp.host or cfg.sip.host,
            port_range=(cfg.rtp.port_min, cfg.rtp.port_max),
            on_event=self.inputs.put_nowait,
        )

    async def run(self) -> None:
        service = self.service
        routing_service = service.routing
        cfg = service.config
        trail = service.trail
        trail.call_started(
            self.trail_id,
            dialled=cfg.callbacks.caller_id_user,
            caller=None,  # the number stays in the callback row only
            flow_id="callback",
            at=self.started,
        )
        self.record(
            "callback_attempt",
            callback=self.stored.id,
            attempt=len(self.stored.callback.attempts) + 1,
            agent=self.agent_id,
            queue=self.offer.queue,
            origin=self.stored.origin_call_id,
        )
        unlisten = routing_service.listen_call(self.entry, self.inputs.put_nowait)
        outcome = AttemptOutcome.AGENT_UNAVAILABLE
        entry_gone = False
        cause = "agent_unavailable"
        try:
            async with asyncio.TaskGroup() as tg:
                answered = await self._ring_agent()
                if answered:
                    outcome, cause = await self._dial_and_bridge(tg)
                    entry_gone = True
                for leg in (self.agent, self.callee):
                    if leg is not None:
                        leg.stop_media()
        finally:
            unlisten()
            for leg in (self.agent, self.callee):
                if leg is None:
                    continue
                if leg.answered and not leg.ended:
                    leg.hangup()
                elif not leg.ended:
                    leg.cancel()
                leg.close()
            self.to_agent = None
            self.to_callee = None
            self.record("callback_outcome", outcome=outcome.value)
            trail.call_ended(
                self.trail_id,
                outcome="completed" if outcome is AttemptOutcome.CONNECTED else "failed",
                cause=cause,
                side="service",
                at=datetime.now(UTC),
            )
        if not self.finished:
            await self._finish(outcome, entry_gone=entry_gone)
        if self.saved is not None:
            self.log.info("callback attempt: %s → %s", outcome.value, self.saved.status.value)

    async def _finish(self, outcome: AttemptOutcome, *, entry_gone: bool) -> None:
        """Record the attempt's end in the store (once)."""
        self.finished = True
        self.saved = await self.service.finish(
            self.stored,
            outcome,
            entry_gone=entry_gone,
            agent_id=self.agent_id,
            started=self.started,
            sip_call_id=self.callee.call_id if self.callee is not None else None,
        )

    async def _give_back(self, event: routing.OfferRejected | routing.OfferTimedOut) -> None:
        """The agent did not take the callback: back to ``queued`` in the store, then the router.

        In this order: the router may re-offer the entry to another agent while handling
        ``event``, and that agent's attempt must find the callback ``queued`` to claim it.
        """
        try:
            await self._finish(AttemptOutcome.AGENT_UNAVAILABLE, entry_gone=False)
        except SQLAlchemyError as exc:
            # Left ``dialing``: a restart puts it back; the agent must be freed all the same.
            self.log.error("callback not given back (%s)", type(exc).__name__)
        await self.service.routing.submit(event)

    def _screen_pop(self) -> dict[str, object]:
        """The panel's screen pop of a callback: who is to be called back, for which queue."""
        callback = self.stored.callback
        raw = callback.usager_id or ""
        usager = int(raw) if raw.isdigit() else None
        return {
            "call_id": self.entry,
            "queue": self.offer.queue,
            "wait_s": round(self.offer.wait_s, 1),
            "priority": self.service.routing.config.priorities.effective(self.offer.call).label,
            "identified": usager is not None,
            "identification": "rappel" if usager is not None else None,
            "usager_id": usager,
            "caller_number": None if usager is not None else self.stored.phone,
            "handoff_reason": "rappel",
            "intents": [callback.intent] if callback.intent else [],
            "transcript": [],
            "menu_path": [],
            "dial_out": True,
        }

    async def _ring_agent(self) -> bool:
        """Ring the agent; True once they answered and the router connected them."""
        service = self.service
        rs = service.routing
        cfg = service.config
        hub = service.softphones
        browser = hub is not None and await hub.is_present(self.agent_id)
        uri = None if browser else await service.agent_uri(self.agent_id)
        if not browser and uri is None:
            service.metrics.agent_offer("failed")
            await self._give_back(routing.OfferTimedOut(self.agent_id, self.entry, rs.now()))
            return False
        leg: Leg
        if hub is not None and browser:
            leg = WebRtcLeg(
                hub=hub,
                config=cfg.webrtc,
                agent_id=self.agent_id,
                owner_call_id=self.entry,
                pop=self._screen_pop(),
                on_event=self.inputs.put_nowait,
            )
        else:
            assert uri is not None
            leg = self._leg(self.agent_id, uri)
        self.agent = leg
        try:
            if isinstance(leg, WebRtcLeg):
                await leg.start()
            else:
                assert isinstance(leg, AgentLeg)
                await leg.start(
                    from_user=cfg.routing.from_user,
                    from_display=caller_id_display(
                        cfg.routing.from_display, f"rappel {self.offer.queue}"
                    ),
                )
        except (OSError, ValueError, RuntimeError) as exc:
            self.log.warning("agent leg not placed: %s", type(exc).__name__)
            service.metrics.agent_offer("failed")
            await self._give_back(routing.OfferTimedOut(self.agent_id, self.entry, rs.now()))
            return False
        while True:
            item = await self.inputs.get()
            if isinstance(item, LegRinging) and item.leg is leg:
                self.record("agent_ringing", agent=self.agent_id)
            elif isinstance(item, LegAnswered) and item.leg is leg:
                decisions = await rs.submit(
                    routing.OfferAccepted(self.agent_id, self.entry, rs.now())
                )
                if not any(
                    isinstance(d, routing.CallAnswered) and d.call_id == self.entry
                    for d in decisions
                ):
                    leg.hangup()
                    return False
                service.metrics.agent_offer("answered")
                self.record("agent_answered", agent=self.agent_id, codec=item.codec)
                return True
            elif isinstance(item, LegFailed) and item.leg is leg:
                service.metrics.agent_offer(item.kind)
                self.record(
                    "agent_missed", agent=self.agent_id, status=item.status_code, reason=item.kind
                )
                event = (
                    routing.OfferRejected(self.agent_id, self.entry, rs.now())
                    if item.kind == "rejected"
                    else routing.OfferTimedOut(self.agent_id, self.entry, rs.now())
                )
                await self._give_back(event)
                return False
            elif isinstance(item, routing.OfferEnded) and item.agent_id == self.agent_id:
                service.metrics.agent_offer(
                    "no_answer"
                    if item.reason is routing.OfferEndReason.RING_TIMEOUT
                    else "withdrawn"
                )
                self.record("agent_missed", agent=self.agent_id, reason=item.reason.value)
                leg.cancel()
                return False

    async def _dial_and_bridge(self, tg: asyncio.TaskGroup) -> tuple[AttemptOutcome, str]:
        """The agent is on the line: call the caller, greet, bridge; return the outcome."""
        service = self.service
        rs = service.routing
        agent = self.agent
        assert agent is not None
        cb_cfg = service.config.callbacks
        self.to_agent = AudioRelay()
        tg.create_task(
            agent.run_media(self._agent_source, self._on_agent_rtp), name=f"{self.trail_id}-agent"
        )
        phone = self.stored.phone
        outcome: AttemptOutcome | None = None
        cause = ""
        if phone is None:
            outcome, cause = AttemptOutcome.UNREACHABLE, "no_number"
        else:
            callee = self._leg("callee", service.trunk_uri(phone))
            self.callee = callee
            try:
                await callee.start(
                    from_user=cb_cfg.caller_id_user, from_display=cb_cfg.caller_id_display
                )
            except (OSError, ValueError, RuntimeError) as exc:
                self.log.warning("outbound call not placed: %s", type(exc).__name__)
                outcome, cause = AttemptOutcome.UNREACHABLE, "not_placed"
        if outcome is None:
            outcome, cause = await self._await_callee(tg)
        # The conversation (or the attempt) is over for the agent: wrap-up.
        now = rs.now()
        if not agent.ended:
            agent.hangup()
        await rs.submit(routing.CallEnded(self.agent_id, self.entry, now))
        if outcome is not AttemptOutcome.CONNECTED:
            # Nobody talked: the agent needs no wrap-up for this attempt.
            try:
                await rs.submit(routing.WrapUpDone(self.agent_id, rs.now(), resolved=None))
            except routing.RoutingError:
                pass
        return outcome, cause

    async def _await_callee(self, tg: asyncio.TaskGroup) -> tuple[AttemptOutcome, str]:
        callee = self.callee
        agent = self.agent
        assert callee is not None and agent is not None
        loop = asyncio.get_running_loop()
        ring = loop.call_later(
            self.service.settings.ring_timeout_s, self.inputs.put_nowait, _RingTimeout()
        )
        timed_out = False
        bridged = False
        try:
            while True:
                item = await self.inputs.get()
                if isinstance(item, _RingTimeout) and not bridged:
                    timed_out = True
                    callee.cancel()
                elif isinstance(item, LegRinging) and item.leg is callee:
                    self.record("callee_ringing")
                elif isinstance(item, LegAnswered) and item.leg is callee and not bridged:
                    ring.cancel()
                    bridged = True
                    self._bridge(tg, callee)
                elif isinstance(item, LegFailed) and item.leg is callee:
                    outcome = attempt_outcome(item.status_code, timed_out=timed_out)
                    self.record("callee_missed", status=item.status_code, outcome=outcome.value)
                    return outcome, outcome.value
                elif isinstance(item, LegFailed) and item.leg is agent:
                    continue
                elif isinstance(item, LegEnded) and item.leg is agent:
                    self.record("agent_hangup", agent=self.agent_id, cause=item.cause)
                    if bridged:
                        callee.hangup()
                        self._end_bridge()
                        return AttemptOutcome.CONNECTED, "agent_hangup"
                    callee.cancel()
                    return AttemptOutcome.AGENT_UNAVAILABLE, "agent_hangup"
                elif isinstance(item, LegEnded) and item.leg is callee:
                    self.record("callee_hangup", cause=item.cause)
                    agent.hangup()
                    self._end_bridge()
                    return AttemptOutcome.CONNECTED, "callee_hangup"
                elif isinstance(item, LegDtmf | _Key):
                    self._relay_key(item.leg, item.digit)
        finally:
            ring.cancel()

    def _bridge(self, tg: asyncio.TaskGroup, callee: AgentLeg) -> None:
        prompts = self.service.prompts
        self.greeting = prompts.get(GREETING_PROMPT) if GREETING_PROMPT in prompts else b""
        self.greeting_at = 0
        self.to_callee = AudioRelay()
        tg.create_task(
            callee.run_media(self._callee_source, self._on_callee_rtp),
            name=f"{self.trail_id}-callee",
        )
        self.record("bridged", agent=self.agent_id, greeting=bool(self.greeting))

    def _end_bridge(self) -> None:
        stats = {
            "agent_packets_sent": 0,
            "callee_packets_sent": 0,
            "to_agent_frames": self.frames["to_agent"],
            "to_callee_frames": self.frames["to_callee"],
        }
        if self.agent is not None:
            stats["agent_packets_sent"] = self.agent.packets_sent
        if self.callee is not None:
            stats["callee_packets_sent"] = self.callee.packets_sent
        self.to_agent = None
        self.to_callee = None
        self.record("bridge_ended", **stats)

    # -- media -------------------------------------------------------------------------------
    def _agent_source(self) -> bytes | None:
        relay = self.to_agent
        return relay.pull() if relay is not None else None

    def _callee_source(self) -> bytes | None:
        greeting = self.greeting
        if self.greeting_at < len(greeting):
            start = self.greeting_at
            self.greeting_at = start + _FRAME
            chunk = greeting[start : start + _FRAME]
            return chunk + bytes(_FRAME - len(chunk))
        relay = self.to_callee
        return relay.pull() if relay is not None else None

    def _on_agent_rtp(self, event: MediaEvent) -> None:
        if isinstance(event, AudioReceived | PcmAudio):
            relay = self.to_callee
            if relay is not None and self.greeting_at >= len(self.greeting):
                self.frames["to_callee"] += 1
                relay.push(event.pcm)
        elif self.agent is not None:
            self.inputs.put_nowait(_Key(self.agent, event.digit))

    def _on_callee_rtp(self, event: MediaEvent) -> None:
        if isinstance(event, AudioReceived | PcmAudio):
            relay = self.to_agent
            if relay is not None and self.to_callee is not None:  # bridged
                self.frames["to_agent"] += 1
                relay.push(event.pcm)
        elif self.callee is not None:
            self.inputs.put_nowait(_Key(self.callee, event.digit))

    def _relay_key(self, source: Leg, digit: str) -> None:
        other = self.callee if source is self.agent else self.agent
        sent = other.send_dtmf(digit) if other is not None else False
        # Which key is not kept: it may be a date or a number typed to the agent (D34).
        self.record("dtmf_relayed", source="agent" if source is self.agent else "callee", sent=sent)
