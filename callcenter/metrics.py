"""Prometheus metrics of the service, on a registry owned by a :class:`Metrics` object.

No module-level registry: the composition root creates one ``Metrics`` and passes it to whoever
counts (tests create their own). Label values are bounded sets chosen here — an unknown SIP
method, response code, outcome or reason becomes ``other`` — so that a scanner sending junk
cannot grow the series count, and no label can carry a phone number or a name.

Names follow the Prometheus conventions: base units (seconds), ``_total`` for counters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

import routing

OTHER = "other"
"""Label value for anything outside a bounded set."""

# IANA "Response Codes" registry of SIP (RFC 3261 section 21 and later RFCs).
SIP_RESPONSE_CODES: frozenset[int] = frozenset(
    {
        *(100, 180, 181, 182, 183, 199),
        *(200, 202, 204),
        *(300, 301, 302, 305, 380),
        *(400, 401, 402, 403, 404, 405, 406, 407, 408, 410, 412, 413, 414, 415, 416, 417),
        *(420, 421, 422, 423, 424, 425, 428, 429, 430, 433, 436, 437, 438, 439, 440),
        *(469, 470, 480, 481, 482, 483, 484, 485, 486, 487, 488, 489, 491, 493, 494),
        *(500, 501, 502, 503, 504, 505, 513, 555, 580),
        *(600, 603, 604, 606, 607, 608),
    }
)
"""Response codes counted under their own label; others count as ``other``."""

# IANA "Methods and Response Codes" registry. Methods are case-sensitive (RFC 3261 section 7.1).
SIP_METHODS: frozenset[str] = frozenset(
    {
        "ACK",
        "BYE",
        "CANCEL",
        "INFO",
        "INVITE",
        "MESSAGE",
        "NOTIFY",
        "OPTIONS",
        "PRACK",
        "PUBLISH",
        "REFER",
        "REGISTER",
        "SUBSCRIBE",
        "UPDATE",
    }
)
"""SIP methods counted under their own label; others count as ``other``."""

CALL_OUTCOMES: tuple[str, ...] = ("completed", "abandoned", "cancelled", "failed", "queued")
"""Values of the ``outcome`` label (see ``callcenter.store.models.CallOutcome``)."""

DTMF_METHODS: tuple[str, ...] = ("rfc4733", "info")
"""Values of the ``method`` label of DTMF digits."""

SIP_DROP_REASONS: tuple[str, ...] = ("malformed", "rate_limited", "forbidden")
"""Values of the ``reason`` label of dropped SIP messages."""

BOT_FAILURES: tuple[str, ...] = ("no_input", "no_match", "not_understood", "invalid_key")
"""Values of the ``kind`` label of ``callcenter_bot_failures_total``."""

BOT_DECISIONS: tuple[str, ...] = ("answer", "clarify", "menu", "handover", "none")
"""Values of the ``decision`` label of ``callcenter_bot_decisions_total``."""

QUEUE_REFUSALS: tuple[str, ...] = ("closed", "full", "max_wait", "removed", "unstaffed")
"""Values of the ``reason`` label of ``callcenter_queue_refused_total``."""

AGENT_OFFER_RESULTS: tuple[str, ...] = ("answered", "rejected", "no_answer", "failed", "withdrawn")
"""Values of the ``result`` label of ``callcenter_agent_offers_total``."""

CALLBACK_MODES: tuple[str, ...] = ("keep_place", "slot")
"""Values of the ``mode`` label of ``callcenter_callbacks_requested_total``."""
CALLBACK_ATTEMPT_OUTCOMES: tuple[str, ...] = ("connected", "no_answer", "busy", "unreachable")
"""Values of the ``outcome`` label of ``callcenter_callback_attempts_total``."""
CALLBACK_RESULTS: tuple[str, ...] = ("completed", "failed", "cancelled")
"""Values of the ``result`` label of ``callcenter_callbacks_ended_total``."""
TRANSFER_KINDS: tuple[str, ...] = ("queue", "agent", "number")
PANEL_ACTIONS: tuple[str, ...] = ("answer", "reject", "hangup", "hold", "resume", "mute")
"""Softphone actions counted from the agent panel."""
DOSSIER_VIEWS: tuple[str, ...] = ("call", "search")
"""Why an agent opened a dossier in the panel."""
"""Values of the ``kind`` label of ``callcenter_transfers_total``."""

QUEUE_WAIT_BUCKETS: tuple[float, ...] = (5, 10, 20, 30, 60, 120, 180, 300, 600, 900, 1800)
HANDLE_BUCKETS: tuple[float, ...] = (30, 60, 120, 180, 300, 420, 600, 900, 1200, 1800, 3600)
"""Buckets of the handle-time histogram (talk + wrap-up), seconds."""
AGENT_STATES: tuple[str, ...] = ("available", "reserved", "on_call", "wrap_up", "paused")
"""Values of the ``state`` label of ``callcenter_agents`` (offline agents are not counted)."""
RESOLVED: tuple[str, ...] = ("yes", "no", "unknown")
"""Values of the ``resolved`` label of ``callcenter_queue_wrapups_total`` (first contact)."""
"""Buckets of the queue wait histogram (20 s and 60 s are the service-level thresholds)."""

BOT_RESULTS: tuple[str, ...] = ("contained", "handed_over", "abandoned")
"""Values of the ``result`` label of ``callcenter_bot_calls_total``."""

ASR_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
"""Buckets of the speech-recognition latency histograms, in seconds."""

ASR_ENGINES: tuple[str, ...] = ("whisper", "vosk", "scripted")
"""Values of the ``engine`` label (the engine family; others count as ``other``)."""

BOT_RESPONSE_BUCKETS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
"""Buckets of ``callcenter_bot_response_seconds`` (the caller's silence before the reply)."""

DEPENDENCIES: tuple[str, ...] = ("database", "redis")
"""Values of the ``dependency`` label of ``callcenter_dependency_up``."""

CALL_DURATION_BUCKETS: tuple[float, ...] = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)
"""Buckets of ``callcenter_call_duration_seconds``: a few seconds to an hour."""


_REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,47}")


def _bounded(value: str, allowed: tuple[str, ...] | frozenset[str]) -> str:
    return value if value in allowed else OTHER


def _engine_family(engine: str) -> str:
    # "whisper-base", "vosk-model-small-fr"...: the family is the label.
    return _bounded(engine.split("-", 1)[0], ASR_ENGINES)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("callcenter")
    except PackageNotFoundError:
        return "unknown"
    return value if re.fullmatch(r"[0-9A-Za-z.+_-]{1,32}", value) else OTHER


class _FunctionCounters(Collector):
    """Counters read from functions at scrape time (counts kept elsewhere, e.g. in a thread).

    ``sources`` maps a label value (or ``""`` without a label) to the function returning the
    count; it may gain entries after registration.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        label: str | None,
        sources: Mapping[str, Callable[[], int]],
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._label = label
        self._sources = sources

    def collect(self) -> Iterable[CounterMetricFamily]:
        labels = [self._label] if self._label else []
        family = CounterMetricFamily(self._name, self._documentation, labels=labels)
        for value, read in sorted(self._sources.items()):
            family.add_metric([value] if self._label else [], float(read()))
        yield family


class Metrics:
    """All the service's metrics, on a dedicated ``CollectorRegistry``.

    The instruments are public attributes (``prometheus_client`` objects) for code that needs
    them directly; the methods below apply the label bounds and are the preferred way to count.
    """

    def __init__(
        self, *, registry: CollectorRegistry | None = None, process_metrics: bool = True
    ) -> None:
        """Create the metrics.

        Args:
            registry: Registry to register on; a new one by default.
            process_metrics: Also export ``process_*`` (CPU, memory, file descriptors).
        """
        # No ``*_created`` samples: Prometheus does not need them (counter resets are seen in the
        # values) and they were a third of the exposition (bench/metrics_scrape.py). The switch
        # is process-wide in prometheus_client; this service has no other registry.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry if registry is not None else CollectorRegistry()
        self._refreshers: list[Callable[[], None]] = []
        r = self.registry
        self.calls = Counter(
            "callcenter_calls", "Calls ended, by outcome.", ["outcome"], registry=r
        )
        self.active_calls = Gauge("callcenter_active_calls", "Calls in progress.", registry=r)
        self.sip_responses = Counter(
            "callcenter_sip_responses",
            "SIP responses sent, by status code (unknown codes as 'other').",
            ["code"],
            registry=r,
        )
        self.sip_requests = Counter(
            "callcenter_sip_requests",
            "SIP requests received, by method (unknown methods as 'other').",
            ["method"],
            registry=r,
        )
        self.rtp_late_frames = Counter(
            "callcenter_rtp_late_frames",
            "Inbound RTP frames that arrived too late for the jitter buffer.",
            registry=r,
        )
        self.rtp_lost_packets = Counter(
            "callcenter_rtp_lost_packets",
            "Inbound RTP packets never received (sequence gaps).",
            registry=r,
        )
        self.prompt_underruns = Counter(
            "callcenter_prompt_underruns",
            "Outbound 20 ms audio frames that were not ready in time during prompt playback.",
            registry=r,
        )
        self.dtmf_digits = Counter(
            "callcenter_dtmf_digits",
            "DTMF digits received, by method (rfc4733, info).",
            ["method"],
            registry=r,
        )
        self.sip_dropped = Counter(
            "callcenter_sip_dropped",
            "SIP messages dropped without a response, by reason.",
            ["reason"],
            registry=r,
        )
        self.call_duration = Histogram(
            "callcenter_call_duration_seconds",
            "Duration of ended calls, from INVITE to hang-up.",
            buckets=CALL_DURATION_BUCKETS,
            registry=r,
        )
        self.registration_up = Gauge(
            "callcenter_registration_up",
            "1 if the registration to the upstream IPBX/trunk is valid, else 0.",
            registry=r,
        )
        self.asr_latency = Histogram(
            "callcenter_asr_latency_seconds",
            "Time from the end of the caller's turn to the transcript, by engine.",
            ["engine"],
            buckets=ASR_BUCKETS,
            registry=r,
        )
        self.asr_decode = Histogram(
            "callcenter_asr_decode_seconds",
            "CPU-bound decoding time of one utterance (speculative decodes included), by engine.",
            ["engine"],
            buckets=ASR_BUCKETS,
            registry=r,
        )
        self.bot_failures = Counter(
            "callcenter_bot_failures",
            "Bot questions that failed: no input, no match, not understood, invalid key.",
            ["kind"],
            registry=r,
        )
        self.bot_decisions = Counter(
            "callcenter_bot_decisions",
            "FAQ decisions on caller utterances, by intent and decision.",
            ["intent", "decision"],
            registry=r,
        )
        self.bot_answers = Counter(
            "callcenter_bot_answers", "FAQ answers spoken, by intent.", ["intent"], registry=r
        )
        self.bot_calls = Counter(
            "callcenter_bot_calls",
            "Calls that talked to the bot, by result: contained (ended satisfied without an "
            "agent), handed_over, abandoned.",
            ["result"],
            registry=r,
        )
        self.bot_intent_calls = Counter(
            "callcenter_bot_intent_calls",
            "Calls in which the bot answered an intent, by intent and by how the call ended "
            "(contained, handed_over, abandoned): containment per intent.",
            ["intent", "result"],
            registry=r,
        )
        self.bot_response = Histogram(
            "callcenter_bot_response_seconds",
            "From the end of the caller's spoken turn to the first audio of the bot's reply.",
            buckets=BOT_RESPONSE_BUCKETS,
            registry=r,
        )
        self.handoffs = Counter(
            "callcenter_handoffs",
            "Hand-offs to a skill queue, by reason (menu choice, agent request, not helped...).",
            ["reason", "priority"],
            registry=r,
        )
        self.queue_joined = Counter(
            "callcenter_queue_joined",
            "Calls that joined a queue, by queue (skill).",
            ["queue"],
            registry=r,
        )
        self.queue_answered = Counter(
            "callcenter_queue_answered",
            "Queued calls an agent took, by the call's own queue.",
            ["queue"],
            registry=r,
        )
        self.queue_abandoned = Counter(
            "callcenter_queue_abandoned",
            "Callers who hung up while waiting (or while an agent rang), by queue.",
            ["queue"],
            registry=r,
        )
        self.queue_refused = Counter(
            "callcenter_queue_refused",
            "Calls that left or could not join a queue without an agent, by queue and reason "
            "(closed, full, max_wait).",
            ["queue", "reason"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "callcenter_queue_wait_seconds",
            "Wait from joining the queue to an agent taking the call or the caller leaving, by "
            "queue and result (answered, abandoned, callback: the place kept as a callback, "
            "refused: closed or maximum wait).",
            ["queue", "result"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=r,
        )
        self.queue_handle = Histogram(
            "callcenter_queue_handle_seconds",
            "Handle time of calls agents took (talk + wrap-up), by queue: AHT = sum / count.",
            ["queue"],
            buckets=HANDLE_BUCKETS,
            registry=r,
        )
        self.queue_wrapups = Counter(
            "callcenter_queue_wrapups",
            "Wrap-ups ended, by queue and first-contact resolution as the agent set it "
            "(yes, no, unknown when not given or timed out).",
            ["queue", "resolved"],
            registry=r,
        )
        self.queue_waiting = Gauge(
            "callcenter_queue_waiting",
            "Calls waiting in each queue now (ringing ones included).",
            ["queue"],
            registry=r,
        )
        self.agents = Gauge(
            "callcenter_agents",
            "Agents logged in, by routing state.",
            ["state"],
            registry=r,
        )
        self.agents_paused = Gauge(
            "callcenter_agents_paused",
            "Paused agents, by pause reason (the routing configuration's list).",
            ["reason"],
            registry=r,
        )
        self.agent_offers = Counter(
            "callcenter_agent_offers",
            "Calls offered to agents' SIP phones, by result (answered, rejected, no_answer, "
            "failed, withdrawn).",
            ["result"],
            registry=r,
        )
        self.callbacks_requested = Counter(
            "callcenter_callbacks_requested",
            "Callbacks callers asked for, by mode (keep_place, slot).",
            ["mode"],
            registry=r,
        )
        self.callback_attempts = Counter(
            "callcenter_callback_attempts",
            "Outbound callback attempts, by outcome (connected, no_answer, busy, unreachable).",
            ["outcome"],
            registry=r,
        )
        self.callbacks_ended = Counter(
            "callcenter_callbacks_ended",
            "Callbacks that ended, by result (completed, failed, cancelled).",
            ["result"],
            registry=r,
        )
        self.callbacks_pending = Gauge(
            "callcenter_callbacks_pending",
            "Callbacks waiting to be placed (all nodes: read from the shared store).",
            registry=r,
        )
        self.callbacks_overdue = Gauge(
            "callcenter_callbacks_overdue",
            "Callbacks waiting to be placed whose due time has passed.",
            registry=r,
        )
        self.queue_open = Gauge(
            "callcenter_queue_open",
            "1 while the queue's opening hours say open (holidays and closures included), else 0.",
            ["queue"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "callcenter_dependency_up",
            "1 if the last probe of a dependency (database, redis) succeeded, else 0.",
            ["dependency"],
            registry=r,
        )
        self.build_info = Gauge(
            "callcenter_build_info",
            "Always 1; the version label tells which release this node runs.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version=_version()).set(1)
        self._asr_errors: dict[str, Callable[[], int]] = {}
        r.register(
            _FunctionCounters(
                "callcenter_asr_errors",
                "Speech recognitions that failed with an engine error, by engine.",
                "engine",
                self._asr_errors,
            )
        )
        self.registration_configured = Gauge(
            "callcenter_registration_configured",
            "1 if this node registers to an upstream IPBX/trunk ([sip] registrar set), else 0.",
            registry=r,
        )
        self.queue_agents = Gauge(
            "callcenter_queue_agents",
            "Agents logged in (any state but offline) who may serve the queue (its skill or one "
            "of its overflow queues'), by queue; 0 is when its calls are turned away unstaffed.",
            ["queue"],
            registry=r,
        )
        self.rtp_received_packets = Counter(
            "callcenter_rtp_received_packets",
            "Inbound RTP packets received from callers (the denominator of the loss rate).",
            registry=r,
        )
        self.routing_local_mode = Gauge(
            "callcenter_routing_local_mode",
            "1 while the Redis routing backend is unreachable and this node routes its own calls "
            "to its own agents (reconciled when Redis is back); 0 otherwise.",
            registry=r,
        )
        self._mode_changes: dict[str, Callable[[], int]] = {}
        r.register(
            _FunctionCounters(
                "callcenter_routing_mode_changes",
                "Switches between shared (Redis) and local routing since the node started.",
                None,
                self._mode_changes,
            )
        )
        self.transfers = Counter(
            "callcenter_transfers",
            "Blind transfers made by agents, by kind (queue, agent, number).",
            ["kind"],
            registry=r,
        )
        self.panel_actions = Counter(
            "callcenter_panel_actions",
            "Softphone actions of agents in the panel (answer, reject, hangup, hold...).",
            ["action"],
            registry=r,
        )
        self.panel_dossier_views = Counter(
            "callcenter_panel_dossier_views",
            "Dossiers opened by agents in the panel, by why (the current call, a search).",
            ["via"],
            registry=r,
        )
        self.screen_pop_seconds = Histogram(
            "callcenter_panel_screen_pop_seconds",
            "From the offer to an agent's panel to its dossier sent to the browser.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0),
            registry=r,
        )
        if process_metrics:
            ProcessCollector(registry=r)
        # Known label values start at 0 so that rate() and absent() behave from the start.
        for outcome in CALL_OUTCOMES:
            self.calls.labels(outcome=outcome)
        for method in DTMF_METHODS:
            self.dtmf_digits.labels(method=method)
        for reason in SIP_DROP_REASONS:
            self.sip_dropped.labels(reason=reason)
        for kind in BOT_FAILURES:
            self.bot_failures.labels(kind=kind)
        for result in BOT_RESULTS:
            self.bot_calls.labels(result=result)
        self._intents: frozenset[str] = frozenset()
        self._queues: frozenset[str] = frozenset()
        self._pause_reasons: frozenset[str] = frozenset()
        for state in AGENT_STATES:
            self.agents.labels(state=state)
        for action in PANEL_ACTIONS:
            self.panel_actions.labels(action=action)
        for via in DOSSIER_VIEWS:
            self.panel_dossier_views.labels(via=via)
        for mode in CALLBACK_MODES:
            self.callbacks_requested.labels(mode=mode)
        for outcome in CALLBACK_ATTEMPT_OUTCOMES:
            self.callback_attempts.labels(outcome=outcome)
        for result in CALLBACK_RESULTS:
            self.callbacks_ended.labels(result=result)
        for kind in TRANSFER_KINDS:
            self.transfers.labels(kind=kind)

    def set_intents(self, intents: Iterable[str]) -> None:
        """Declare the knowledge base's intent ids (label values; others count as ``other``)."""
        self._intents = frozenset(intents) | {"none"}

    def watch_asr_errors(self, engine: str, errors: Callable[[], int]) -> None:
        """Export ``callcenter_asr_errors_total`` for ``engine`` read from ``errors`` at scrape.

        The speech service counts failed recognitions itself (they happen in worker threads);
        the counter is read when Prometheus scrapes, like a process counter.
        """
        self._asr_errors[_engine_family(engine)] = errors

    def bot_replied(self, seconds: float) -> None:
        """Observe the silence between the end of the caller's turn and the bot's reply."""
        self.bot_response.observe(max(0.0, seconds))

    def bot_intents(self, intents: Iterable[str], result: str) -> None:
        """Count one call's answered intents (each once) with how the call ended."""
        label = _bounded(result, BOT_RESULTS)
        for intent in sorted(set(intents)):
            self.bot_intent_calls.labels(intent=_bounded(intent, self._intents), result=label).inc()

    def set_callbacks(self, pending: int, overdue: int) -> None:
        """Set the callbacks waiting to be placed and those past their due time."""
        self.callbacks_pending.set(pending)
        self.callbacks_overdue.set(overdue)

    def set_queues_open(self, open_now: Mapping[str, bool]) -> None:
        """Set whether each queue is open now (by its opening hours)."""
        for queue, is_open in open_now.items():
            self.queue_open.labels(queue=self._queue(queue)).set(1 if is_open else 0)

    def set_dependency(self, dependency: str, up: bool) -> None:
        """Record the result of the last probe of ``database`` or ``redis``."""
        self.dependency_up.labels(dependency=_bounded(dependency, DEPENDENCIES)).set(1 if up else 0)

    def asr_result(self, engine: str, latency: float, decode: float) -> None:
        """Observe one recognised utterance.

        Args:
            engine: Engine name (``whisper``, ``vosk``).
            latency: Seconds from the end of the turn to the transcript.
            decode: Seconds spent decoding.
        """
        label = _engine_family(engine)
        self.asr_latency.labels(engine=label).observe(max(0.0, latency))
        self.asr_decode.labels(engine=label).observe(max(0.0, decode))

    def bot_failure(self, kind: str) -> None:
        """Count a failed bot question (``no_input``, ``no_match``...)."""
        self.bot_failures.labels(kind=_bounded(kind, BOT_FAILURES)).inc()

    def bot_decision(self, intent: str | None, decision: str) -> None:
        """Count an FAQ decision; intents outside the knowledge base count as ``other``."""
        self.bot_decisions.labels(
            intent=_bounded(intent or "none", self._intents),
            decision=_bounded(decision, BOT_DECISIONS),
        ).inc()

    def bot_answer(self, intent: str) -> None:
        """Count a spoken FAQ answer."""
        self.bot_answers.labels(intent=_bounded(intent, self._intents)).inc()

    def bot_call(self, result: str) -> None:
        """Count a call that talked to the bot by how it ended (see ``BOT_RESULTS``)."""
        self.bot_calls.labels(result=_bounded(result, BOT_RESULTS)).inc()

    def handoff(self, reason: str, priority: str) -> None:
        """Count a hand-off; reasons are flow identifiers (bounded by the flow files)."""
        safe = reason if _REASON_RE.fullmatch(reason) else OTHER
        self.handoffs.labels(
            reason=safe, priority=_bounded(priority, ("low", "normal", "high", "critical"))
        ).inc()

    def set_queues(self, queues: Iterable[str]) -> None:
        """Declare the queue names (label values; others count as ``other``)."""
        self._queues = frozenset(queues)
        for queue in self._queues:
            self.queue_joined.labels(queue=queue)
            self.queue_answered.labels(queue=queue)
            self.queue_abandoned.labels(queue=queue)
            self.queue_waiting.labels(queue=queue)
            self.queue_agents.labels(queue=queue)
            for reason in QUEUE_REFUSALS:
                # At 0 from the start, so that increase() sees the first refusal.
                self.queue_refused.labels(queue=queue, reason=reason)
            for flag in RESOLVED:
                self.queue_wrapups.labels(queue=queue, resolved=flag)

    def set_pause_reasons(self, reasons: Iterable[str]) -> None:
        """Declare the pause reasons (label values; others count as ``other``)."""
        self._pause_reasons = frozenset(reasons)
        for reason in self._pause_reasons:
            self.agents_paused.labels(reason=reason)

    def wrap_up_ended(self, queue: str, handle_s: float, resolved: bool | None) -> None:
        """Count a finished wrap-up: handle time and first-contact resolution."""
        label = self._queue(queue)
        self.queue_handle.labels(queue=label).observe(max(0.0, handle_s))
        flag = "unknown" if resolved is None else ("yes" if resolved else "no")
        self.queue_wrapups.labels(queue=label, resolved=flag).inc()

    def set_queue_agents(self, counts: Mapping[str, int]) -> None:
        """Set how many logged-in agents may serve each queue (overflow queues' included)."""
        for queue, count in counts.items():
            self.queue_agents.labels(queue=self._queue(queue)).set(count)

    def set_registration_configured(self, configured: bool) -> None:
        """Record whether this node registers upstream (the registration alert needs it)."""
        self.registration_configured.set(1 if configured else 0)

    def rtp_received_packet(self, count: int = 1) -> None:
        """Count inbound RTP packets received."""
        self.rtp_received_packets.inc(count)

    def set_waiting(self, sizes: Mapping[str, int]) -> None:
        """Set the number of calls waiting per queue."""
        for queue, size in sizes.items():
            self.queue_waiting.labels(queue=self._queue(queue)).set(size)

    def set_agent_states(self, states: Iterable[tuple[str, str | None]]) -> None:
        """Set the agents-by-state gauges from (state, pause reason) of every logged-in agent."""
        by_state = dict.fromkeys(AGENT_STATES, 0)
        by_reason = dict.fromkeys((*self._pause_reasons, OTHER), 0)
        for state, reason in states:
            if state in by_state:
                by_state[state] += 1
            if state == "paused":
                key = _bounded(reason or "", self._pause_reasons)
                by_reason[key] = by_reason.get(key, 0) + 1
        for state, count in by_state.items():
            self.agents.labels(state=state).set(count)
        for reason, count in by_reason.items():
            self.agents_paused.labels(reason=reason).set(count)

    def _queue(self, queue: str) -> str:
        return _bounded(queue, self._queues)

    def queue_event(self, kind: str, queue: str, wait_s: float | None = None) -> None:
        """Count a queue event, with its wait in the histogram when given.

        ``kind``: ``joined``, ``answered``, ``abandoned``, ``callback`` (the place kept as a
        callback), or a reason for leaving without an agent (``closed``, ``full``, ``max_wait``,
        ``removed`` on request, ``unstaffed``).
        Refusals at the door (``full``, ``unstaffed``) come without a wait: they are not calls
        that ended in the queue.
        """
        label = self._queue(queue)
        if kind == "joined":
            self.queue_joined.labels(queue=label).inc()
            return
        if kind == "callback":
            # The caller kept their place as a callback: the wait ended without an answer (the
            # service level counts it as not answered in time, as routing.kpi does).
            result = "callback"
        elif kind == "answered":
            self.queue_answered.labels(queue=label).inc()
            result = "answered"
        elif kind == "abandoned":
            self.queue_abandoned.labels(queue=label).inc()
            result = "abandoned"
        else:
            self.queue_refused.labels(queue=label, reason=_bounded(kind, QUEUE_REFUSALS)).inc()
            result = "refused"
        if wait_s is not None:
            self.queue_wait.labels(queue=label, result=result).observe(max(0.0, wait_s))

    def agent_offer(self, result: str) -> None:
        """Count the end of one offer to an agent's phone."""
        self.agent_offers.labels(result=_bounded(result, AGENT_OFFER_RESULTS)).inc()

    def watch_routing_mode(self, local: Callable[[], bool], changes: Callable[[], int]) -> None:
        """Read the routing backend's mode at each scrape (the Redis backend)."""
        self.routing_local_mode.set_function(lambda: 1.0 if local() else 0.0)
        self._mode_changes[""] = changes

    def panel_action(self, action: str) -> None:
        """Count a softphone action from the panel."""
        self.panel_actions.labels(action=_bounded(action, PANEL_ACTIONS)).inc()

    def panel_dossier_view(self, via: str) -> None:
        """Count a dossier opened in the panel (``call`` or ``search``)."""
        self.panel_dossier_views.labels(via=_bounded(via, DOSSIER_VIEWS)).inc()

    def transfer(self, kind: str) -> None:
        """Count a blind transfer (``queue``, ``agent`` or ``number``)."""
        self.transfers.labels(kind=_bounded(kind, TRANSFER_KINDS)).inc()

    def callback_requested(self, mode: str) -> None:
        """Count a callback a caller asked for (``keep_place`` or ``slot``)."""
        self.callbacks_requested.labels(mode=_bounded(mode, CALLBACK_MODES)).inc()

    def callback_attempt(self, outcome: str) -> None:
        """Count the end of one outbound callback attempt."""
        self.callback_attempts.labels(outcome=_bounded(outcome, CALLBACK_ATTEMPT_OUTCOMES)).inc()

    def callback_ended(self, result: str) -> None:
        """Count a callback that ended (``completed``, ``failed``, ``cancelled``)."""
        self.callbacks_ended.labels(result=_bounded(result, CALLBACK_RESULTS)).inc()

    def call_started(self) -> None:
        """Count a call in progress."""
        self.active_calls.inc()

    def call_ended(self, outcome: str, duration: float | None = None) -> None:
        """Count an ended call.

        Args:
            outcome: A ``CallOutcome`` value (others count as ``other``).
            duration: Seconds from INVITE to hang-up, if known.
        """
        self.active_calls.dec()
        self.calls.labels(outcome=_bounded(str(outcome), CALL_OUTCOMES)).inc()
        if duration is not None and duration >= 0:
            self.call_duration.observe(duration)

    def set_active_calls(self, count: int) -> None:
        """Set the number of calls in progress (instead of ``call_started``/``call_ended``)."""
        self.active_calls.set(count)

    def sip_response(self, code: int) -> None:
        """Count a SIP response sent with status ``code``."""
        self.sip_responses.labels(code=str(code) if code in SIP_RESPONSE_CODES else OTHER).inc()

    def sip_request(self, method: str) -> None:
        """Count a SIP request received."""
        self.sip_requests.labels(method=_bounded(method, SIP_METHODS)).inc()

    def rtp_late_frame(self, count: int = 1) -> None:
        """Count inbound RTP frames that came too late."""
        self.rtp_late_frames.inc(count)

    def rtp_lost_packet(self, count: int = 1) -> None:
        """Count inbound RTP packets lost."""
        self.rtp_lost_packets.inc(count)

    def prompt_underrun(self, count: int = 1) -> None:
        """Count outbound frames missing during prompt playback."""
        self.prompt_underruns.inc(count)

    def dtmf_digit(self, method: str) -> None:
        """Count one DTMF digit received by ``method`` (``rfc4733`` or ``info``)."""
        self.dtmf_digits.labels(method=_bounded(method, DTMF_METHODS)).inc()

    def sip_drop(self, reason: str, count: int = 1) -> None:
        """Count SIP messages dropped (``malformed``, ``rate_limited``, ``forbidden``)."""
        self.sip_dropped.labels(reason=_bounded(reason, SIP_DROP_REASONS)).inc(count)

    def set_registration_up(self, up: bool) -> None:
        """Record whether the upstream registration is currently valid."""
        self.registration_up.set(1 if up else 0)

    def gauge_function(self, name: str, documentation: str, function: Callable[[], float]) -> None:
        """Export a gauge read from ``function`` at scrape time (e.g. a queue length).

        Args:
            name: Metric name (``callcenter_...``).
            documentation: Help text.
            function: Called on every scrape; must be cheap and thread-safe.
        """
        Gauge(name, documentation, registry=self.registry).set_function(function)

    def before_render(self, refresh: Callable[[], None]) -> None:
        """Call ``refresh`` before each rendering (gauges read from shared state at scrape)."""
        self._refreshers.append(refresh)

    def render(self) -> tuple[bytes, str]:
        """Return the exposition text and its content type, for ``GET /metrics``."""
        for refresh in self._refreshers:
            refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_QUEUE_EVENTS: Mapping[routing.QueueOutcome, tuple[str, bool]] = MappingProxyType(
    {
        routing.QueueOutcome.JOINED: ("joined", False),
        routing.QueueOutcome.ANSWERED: ("answered", True),
        routing.QueueOutcome.ABANDONED: ("abandoned", True),
        # Left on request (a caller's own choice, not a wait that ended): no wait.
        routing.QueueOutcome.REMOVED: ("removed", False),
        routing.QueueOutcome.MAX_WAIT: ("max_wait", True),
        routing.QueueOutcome.CLOSED_AT_DOOR: ("closed", False),
        routing.QueueOutcome.CLOSED_WHILE_WAITING: ("closed", True),
        routing.QueueOutcome.REJECTED_FULL: ("full", False),
        routing.QueueOutcome.CALLBACK_KEPT: ("callback", True),
    }
)
"""Queue outcome → (:meth:`Metrics.queue_event` kind, with its wait). The other outcomes are a
callback's later life (entering the queue again, dialled, closed out, cancelled): the callbacks'
metrics count them, not a second queue outcome of the same caller."""


class QueueMetrics:
    """Turns the router's decisions into the queue metrics, counted as ``routing.kpi.KpiBook``.

    Both classify decisions with :class:`routing.QueueOutcomes`. A refusal at the door has no
    wait; a place kept as a callback ends the caller's wait once (``callback``). So
    ``callcenter_queue_wait_seconds_count`` minus the short abandons is the book's ``ended``.
    """

    def __init__(self, metrics: Metrics) -> None:
        """Count into ``metrics``."""
        self.metrics = metrics
        self.outcomes = routing.QueueOutcomes()

    def apply(self, decision: routing.Decision) -> None:
        """Account for one decision of this node's calls (others are ignored)."""
        if isinstance(decision, routing.WrapUpEnded):
            self.metrics.wrap_up_ended(decision.queue, decision.handle_s, decision.resolved)
            return
        fact = self.outcomes.classify(decision)
        if fact is None or fact.outcome not in _QUEUE_EVENTS:
            return
        kind, timed = _QUEUE_EVENTS[fact.outcome]
        self.metrics.queue_event(kind, fact.queue, fact.wait_s if timed else None)
