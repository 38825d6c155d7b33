"""Discrete-event simulation of the line's busiest hour or days, driving the real :class:`Router`.

Pure and deterministic: no asyncio, no clock, every draw from :class:`random.Random` seeded
from ``(seed, purpose)``. Callers arrive, are routed by the shipped configuration
(``routing/solidarites.yaml``), wait, hang up, take a keep-place callback, talk and are wrapped
up; agents answer after a ring, sometimes let it ring out (and come back from the "non réponse"
pause), end their wrap-up early. Every router decision feeds a :class:`~routing.kpi.KpiBook`.

Volumes (the seed, ``shared/DESIGN.md`` "Sizes to design for", ``shared/domain/facts.md``
§11): MDPH 31 000 calls/year, APA 22 400 requests/year (about two calls each: the request,
then the follow-up, ~45 000), payment, aide sociale, complaints and general information
~25 000: **~100 000 calls/year** on the numéro vert. 2025 has 261 weekdays, 10 of them public
holidays: 251 working days, **~400 calls/day**, over 7 opening hours (09:00-12:30,
13:30-17:00), 57 calls/hour on average. The busiest hour is a Monday opening (Mondays
~1.25 × an average day, ~500 calls; the first hour after opening holds ~20 % of the day):
**~100 calls in the busiest hour** — the DESIGN.md figure. All of them are assumed to reach
the queues (the voice bot's containment is not counted: conservative).

Assumptions (not measured locally; calibrate them from the trail once the line runs):

- Arrivals: Poisson, rate piecewise constant per quarter hour (:attr:`Scenario.profile`): an
  opening surge (1.3 × the hour's mean rate), then decreasing; a second, calmer hour follows,
  which is when the callbacks of the peak are placed.
- Queue mix (:data:`DEFAULT_MIX`): general information 25 %, APA 22 %, MDPH adults 18 %,
  MDPH children 8 %, payments 12 %, aide sociale 6 %, distress 3 % (priority ``critical``, the
  catalogue's ``urgence_sociale`` intents), complaints 6 %; 15 % repeat callers (contact in
  the last 48 h: priority raised by the configuration).
- Talk time: lognormal, coefficient of variation 0.8, mean per queue
  (:data:`DEFAULT_TALK_MEAN_S`, 2.5 to 10 minutes). Wrap-up: the queue's configured time,
  ended earlier by the agent in 60 % of calls (at 30-100 % of it), with the first-contact
  resolution flag (resolved 75 %).
- Patience (time before a waiting caller hangs up): lognormal, mean 180 s, CV 1.0 — the order
  of magnitude reported for public-service lines; abandons under 5 s count as short.
- Agents (:data:`DEFAULT_TEAMS`, 14 logged in): teams with one main skill at proficiency 4-5
  and secondary skills at 1-4. An offer is answered after 2-8 s; 2 % ring out (the router's ring
  timeout, then the agent comes back from "non réponse" after 30-120 s).
- Callbacks (policy ``callbacks=True``): at joining and every 60 s while waiting, the caller
  hears the estimated wait (:func:`routing.estimate.estimate_for_call`); the first time its
  upper bound exceeds 120 s (the caller hears "2 à 5 minutes" or more) a callback keeping the
  place is offered, and accepted with probability 0.5 (``CallbackKept``). When an agent takes it the
  caller is dialled (agent first): reached with probability 0.8 after 5-20 s of ringing, else
  the attempt costs the agent 30 s and the callback is retried after the back-off of
  :class:`~routing.callbacks.CallbackPolicy` (15 min, then 30 min; 3 attempts).

Each caller ends one way (:attr:`SimulationResult.outcomes`): ``answered``, ``abandoned``,
``max_wait``, ``closed``, ``refused_full``, ``refused_closed``, ``callback_completed`` or
``callback_failed``; the run goes on after the arrivals until every caller has ended.

Days and weeks (:func:`simulate_period`, :class:`PeriodScenario`; the same run, a longer
profile): calls per year / working days per year (100 000 / 251) × a weekday factor (Monday
1.25, Tuesday 1.05, Wednesday 0.95, Thursday 0.9, Friday 0.85) spread over the half hours
the line is open — read from the configuration (``accueil_general``'s hours: 09:00-12:30,
13:30-17:00, public holidays closed) — by :data:`DEFAULT_HOURLY_PROFILE` (the first hour 20 %
of the day). Callers still waiting at 12:30 or 17:00 end ``closed``; kept callbacks carry
over to the next opening. A fixed team (14 agents) stays logged in all along. Four
:data:`POLICIES` see the same callers: baseline, callbacks, the voice bot, both. The bot
(:func:`apply_bot`) ends a share of each queue's calls (:data:`DEFAULT_BOT_CONTAINMENT`,
27 % of the mix, derived from the FAQ matcher's blind-set figures) and hands the others to
the queue after 45 s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from .callbacks import (
    AttemptOutcome,
    Callback,
    CallbackPolicy,
    CallbackStatus,
    attempt_finished,
    dialing,
    enter_queue,
    keep_place,
    queue_closed,
)
from .engine import Router
from .estimate import HandleTimes, estimate_for_call
from .events import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentReady,
    CallAbandoned,
    CallAnswered,
    CallbackKept,
    CallCompleted,
    CallEnded,
    CallEnqueued,
    CallerHungUp,
    CallMaxWaitReached,
    CallQueued,
    CallRejectedClosed,
    CallRejectedQueueFull,
    Decision,
    Event,
    OfferAccepted,
    OfferCall,
    OfferEnded,
    OfferEndReason,
    Tick,
    WrapUpDone,
    WrapUpEnded,
)
from .hours import open_intervals
from .kpi import KpiBook, QueueKpi
from .model import AgentState, Priority, QueuedCall
from .queue_config import RoutingConfig, default_routing_config_path, load_routing_config

DEFAULT_MIX: tuple[tuple[str, float], ...] = (
    ("accueil_general", 25.0),
    ("apa", 22.0),
    ("mdph_adulte", 18.0),
    ("mdph_enfant", 8.0),
    ("paiement", 12.0),
    ("aide_sociale_hebergement", 6.0),
    ("urgence_sociale", 3.0),
    ("reclamation", 6.0),
)
"""Share of the calls reaching each queue (percent; an assumption, see the module docstring)."""

DEFAULT_TALK_MEAN_S: tuple[tuple[str, float], ...] = (
    ("accueil_general", 150.0),
    ("apa", 300.0),
    ("mdph_adulte", 330.0),
    ("mdph_enfant", 360.0),
    ("paiement", 240.0),
    ("aide_sociale_hebergement", 360.0),
    ("urgence_sociale", 600.0),
    ("reclamation", 420.0),
)
"""Mean conversation time per queue (seconds; an assumption)."""


@dataclass(frozen=True, slots=True)
class Team:
    """Agents with the same skills."""

    name: str
    """Team name (agent ids are ``<name>-<n>``)."""
    skills: tuple[tuple[str, int], ...]
    """Skill id and proficiency (1-5)."""
    count: int
    """Agents logged in."""


DEFAULT_TEAMS: tuple[Team, ...] = (
    Team(
        "accueil",
        (("accueil_general", 4), ("apa", 1), ("paiement", 1), ("reclamation", 2)),
        4,
    ),
    Team("apa", (("apa", 5), ("paiement", 3), ("aide_sociale_hebergement", 2)), 3),
    Team("mdph", (("mdph_adulte", 5), ("mdph_enfant", 3)), 3),
    Team("mdph-enfant", (("mdph_enfant", 5), ("mdph_adulte", 4)), 1),
    Team("paiement", (("paiement", 4), ("aide_sociale_hebergement", 4), ("apa", 2)), 2),
    Team("urgence", (("urgence_sociale", 5), ("accueil_general", 3), ("reclamation", 3)), 1),
)
"""Agents on the phones at the peak (14; the seed's service has 20-60 agents in all)."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything a simulation run depends on, apart from the seed and the policy."""

    name: str = "seed_peak_hour"
    """Name in reports."""
    day: dt.date = dt.date(2025, 9, 1)
    """The simulated day (a Monday of the back-to-school peak, not a holiday)."""
    start: dt.time = dt.time(9, 0)
    """Opening time: arrivals and logins start here."""
    peak_calls_per_hour: float = 100.0
    """Mean arrival rate of the busiest hour (calls reaching the queues)."""
    profile: tuple[float, ...] = (1.3, 1.1, 0.85, 0.75, 0.7, 0.65, 0.6, 0.6)
    """Rate of each slot as a multiple of ``peak_calls_per_hour`` (the first hour averages 1)."""
    slot_s: float = 900.0
    """Length of a profile slot."""
    mix: tuple[tuple[str, float], ...] = DEFAULT_MIX
    """Queue and weight of the calls."""
    teams: tuple[Team, ...] = DEFAULT_TEAMS
    """Agents."""
    talk_mean_s: tuple[tuple[str, float], ...] = DEFAULT_TALK_MEAN_S
    """Mean conversation time per queue."""
    talk_cv: float = 0.8
    """Coefficient of variation of conversation times (lognormal)."""
    patience_mean_s: float = 180.0
    """Mean patience of a waiting caller (lognormal)."""
    patience_cv: float = 1.0
    """Coefficient of variation of the patience."""
    repeat_caller_share: float = 0.15
    """Callers who reached the service in the last 48 hours."""
    ring_s: tuple[float, float] = (2.0, 8.0)
    """An agent answers an offer after this long (uniform)."""
    ring_no_answer_p: float = 0.02
    """Probability that an agent lets an offer ring out."""
    no_answer_pause_s: tuple[float, float] = (30.0, 120.0)
    """How long an agent stays in the "non réponse" pause (uniform)."""
    early_wrap_up_p: float = 0.6
    """Probability that the agent ends the wrap-up before the queue's wrap-up time."""
    resolved_p: float = 0.75
    """Probability that an agent flags the request resolved at first contact."""
    announce_every_s: float = 60.0
    """Period of the estimated-wait announcements."""
    callback_offer_above_s: float = 120.0
    """A callback is offered when the estimate's upper bound exceeds this (when the caller
    would hear "2 à 5 minutes" or more)."""
    callback_accept_p: float = 0.5
    """Probability that a caller offered a callback takes it."""
    callback_success_p: float = 0.8
    """Probability that one outbound attempt reaches the caller."""
    outbound_ring_s: tuple[float, float] = (5.0, 20.0)
    """Ringing before the caller picks up a callback (uniform)."""
    failed_attempt_s: float = 30.0
    """Agent time spent on an attempt that does not reach the caller."""
    callback_policy: CallbackPolicy = field(default_factory=CallbackPolicy)
    """Retries and back-off of failed callbacks."""
    config_path: Path | None = None
    """Routing configuration; None: the shipped ``routing/solidarites.yaml``."""
    horizon_s: float | None = None
    """The run stops this long after opening even if callers are still pending (kept
    callbacks carry over lunch and evenings); None: one day."""

    def start_time(self, tz: ZoneInfo) -> float:
        """Return the opening instant of the simulated day (POSIX seconds)."""
        return dt.datetime.combine(self.day, self.start, tzinfo=tz).timestamp()

    @property
    def arrival_window_s(self) -> float:
        """Length of the arrival window (all profile slots)."""
        return self.slot_s * len(self.profile)

    @property
    def agent_count(self) -> int:
        """Agents logged in."""
        return sum(team.count for team in self.teams)


def stressed(scenario: Scenario, *, volume: float = 1.5, name: str = "stressed") -> Scenario:
    """Return the same scenario with ``volume`` times the calls (same agents).

    Args:
        scenario: The base scenario.
        volume: Multiplier of the arrival rate.
        name: Name of the new scenario.

    Returns:
        The stressed scenario.
    """
    return dataclasses.replace(
        scenario, name=name, peak_calls_per_hour=scenario.peak_calls_per_hour * volume
    )


DEFAULT_SCENARIO = Scenario()
"""The seed's busiest hour (100 calls), then a calmer hour."""
STRESSED_SCENARIO = stressed(DEFAULT_SCENARIO)
"""The same with 50 % more calls: 150 in the busiest hour, same 14 agents."""


def lognormal(rng: random.Random, mean: float, cv: float) -> float:
    """Draw from the lognormal law with this mean and coefficient of variation.

    Args:
        rng: Random source.
        mean: Mean (> 0).
        cv: Standard deviation / mean (>= 0).

    Returns:
        A sample.
    """
    sigma2 = math.log(1.0 + cv * cv)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2))


@dataclass(frozen=True, slots=True)
class Caller:
    """One simulated caller, drawn before the run (the same for both policies)."""

    call_id: str
    """Opaque call id."""
    queue: str
    """Queue the call is handed to."""
    arrival: float
    """When they join the queue."""
    priority: Priority
    """Priority from the intent."""
    previous_contact_at: float | None
    """A contact in the last 48 h (repeat caller), or None."""
    patience_s: float
    """How long they wait before hanging up."""
    talk_s: float
    """Conversation time once connected."""
    accept_draw: float
    """Uniform draw: takes an offered callback when below ``callback_accept_p``."""
    attempt_draws: tuple[float, ...]
    """Uniform draws: callback attempt ``n`` reaches them when below ``callback_success_p``."""


def draw_callers(scenario: Scenario, seed: int, start: float) -> list[Caller]:
    """Draw the callers of a run (arrival times and everything about them).

    The draws depend on the seed only, not on the policy: both policies see the same callers
    (common random numbers), so differences come from the policy.

    Args:
        scenario: The scenario.
        seed: Seed.
        start: Opening instant (POSIX seconds).

    Returns:
        Callers in arrival order.
    """
    rng = random.Random(f"{seed}:callers")
    names = [queue for queue, _ in scenario.mix]
    weights = [weight for _, weight in scenario.mix]
    talk = dict(scenario.talk_mean_s)
    attempts = scenario.callback_policy.max_attempts
    callers: list[Caller] = []
    for slot, factor in enumerate(scenario.profile):
        rate = scenario.peak_calls_per_hour * factor / 3600.0
        if rate <= 0:
            continue
        t = start + slot * scenario.slot_s
        end = t + scenario.slot_s
        while True:
            t += rng.expovariate(rate)
            if t >= end:
                break
            queue = rng.choices(names, weights)[0]
            repeat = rng.random() < scenario.repeat_caller_share
            callers.append(
                Caller(
                    call_id=f"call{len(callers) + 1}",
                    queue=queue,
                    arrival=t,
                    priority=Priority.CRITICAL if queue == "urgence_sociale" else Priority.NORMAL,
                    previous_contact_at=t - rng.uniform(3600.0, 47 * 3600.0) if repeat else None,
                    patience_s=lognormal(rng, scenario.patience_mean_s, scenario.patience_cv),
                    talk_s=lognormal(rng, talk.get(queue, 300.0), scenario.talk_cv),
                    accept_draw=rng.random(),
                    attempt_draws=tuple(rng.random() for _ in range(attempts)),
                )
            )
    return callers


@dataclass(frozen=True, slots=True)
class CallerRecord:
    """How one caller ended."""

    call_id: str
    """Opaque call id."""
    queue: str
    """Queue the call was handed to."""
    arrival: float
    """When they joined the queue (POSIX seconds)."""
    outcome: str
    """One of the outcomes of the module docstring."""
    end_s: float
    """Seconds from joining the queue to the outcome (the wait of an answered or abandoned
    caller)."""


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """What one run measured."""

    scenario: str
    """Scenario name."""
    callbacks: bool
    """Callbacks were offered."""
    seed: int
    """Seed."""
    callers: int
    """Callers who called."""
    agents: int
    """Agents logged in."""
    outcomes: Mapping[str, int]
    """How each caller ended, counted (see the module docstring)."""
    queues: Mapping[str, QueueKpi]
    """KPIs per queue."""
    total: QueueKpi
    """KPIs of all queues together."""
    occupancy: float | None
    """Agents' occupancy over the arrival window."""
    events: int
    """Router events and timer firings processed."""
    last_outcome_s: float
    """Seconds from opening until the last caller's outcome (answer, abandon, callback
    completed or failed...)."""
    records: tuple[CallerRecord, ...] = ()
    """How each caller ended and when, in arrival order."""
    busy_s: float = 0.0
    """Agent time spent ringing, talking and wrapping up, summed over the agents."""

    def summary(self) -> dict[str, Any]:
        """Return the figures as plain data (JSON-ready), overall and per queue."""
        return {
            "scenario": self.scenario,
            "callbacks": self.callbacks,
            "seed": self.seed,
            "callers": self.callers,
            "agents": self.agents,
            "occupancy": _round(self.occupancy),
            "last_outcome_min": round(self.last_outcome_s / 60.0, 1),
            "outcomes": dict(self.outcomes),
            "overall": kpi_summary(self.total),
            "queues": {name: kpi_summary(kpi) for name, kpi in self.queues.items()},
        }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def kpi_summary(kpi: QueueKpi) -> dict[str, Any]:
    """Return the headline KPIs of a queue as plain data.

    Args:
        kpi: The queue's (or the total's) figures.

    Returns:
        offered, answered, abandoned, service levels, ASA, AHT, abandonment rate, longest
        wait, callbacks, lost callers, FCR.
    """
    return {
        "offered": kpi.offered,
        "answered": kpi.answered,
        "abandoned": kpi.abandoned,
        "abandoned_short": kpi.abandoned_short,
        "max_wait_reached": kpi.max_wait_reached,
        "closed_while_waiting": kpi.closed_while_waiting,
        "service_level_20s": _round(kpi.service_level(20.0)),
        "service_level_60s": _round(kpi.service_level(60.0)),
        "service_level_20s_live": _round(kpi.service_level(20.0, live_only=True)),
        "service_level_60s_live": _round(kpi.service_level(60.0, live_only=True)),
        "asa_s": _round(kpi.asa_s, 1),
        "aht_s": _round(kpi.aht_s, 1),
        "abandonment_rate": _round(kpi.abandonment_rate),
        "longest_wait_s": round(kpi.longest_wait_s, 1),
        "callbacks_requested": kpi.callbacks_requested,
        "callbacks_completed": kpi.callbacks_completed,
        "callbacks_failed": kpi.callbacks_failed,
        "lost": kpi.lost,
        "lost_rate": _round(kpi.lost / kpi.offered if kpi.offered else None),
        "fcr_rate": _round(kpi.fcr_rate),
    }


# -- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Announce:
    call_id: str


@dataclass(frozen=True, slots=True)
class _CallbackDue:
    call_id: str


@dataclass(frozen=True, slots=True)
class _Arrival:
    caller: Caller


@dataclass(frozen=True, slots=True)
class _Mark:
    """End of the arrival window: read the agents' occupancy."""


_Action = Event | _Announce | _CallbackDue | _Arrival | _Mark


@dataclass(slots=True)
class _Contact:
    """The run's mutable record of one caller."""

    caller: Caller
    callback: Callback | None = None
    offered_callback: bool = False
    connected: bool | None = None  # the current callback attempt reaches the caller
    outcome: str | None = None
    ended_at: float = 0.0


class _Run:
    def __init__(
        self,
        scenario: Scenario,
        config: RoutingConfig,
        *,
        callbacks: bool,
        seed: int,
        callers: Sequence[Caller] | None,
        observer: Callable[[Router, Sequence[Decision]], None] | None = None,
    ) -> None:
        self.observer = observer
        self.scenario = scenario
        self.config = config
        self.callbacks = callbacks
        self.seed = seed
        self.router = Router(config=config)
        self.book = KpiBook()
        self.rng = random.Random(f"{seed}:agents")
        self.start = scenario.start_time(config.timezone)
        if callers is None:
            callers = draw_callers(scenario, seed, self.start)
        self.callers = sorted(callers, key=lambda c: c.arrival)
        self.contacts: dict[str, _Contact] = {c.call_id: _Contact(c) for c in self.callers}
        self.open_contacts = len(self.callers)
        self.outcomes: dict[str, int] = {}
        self.handle_times: dict[str, HandleTimes] = {q: HandleTimes() for q in config.queues}
        self.heap: list[tuple[float, int, _Action]] = []
        self.seq = 0
        self.events = 0
        self.occupancy: float | None = None
        self.last_end = self.start

    def push(self, at: float, action: _Action) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (at, self.seq, action))

    def run(self) -> SimulationResult:
        scenario = self.scenario
        for team in scenario.teams:
            for index in range(team.count):
                agent_id = f"{team.name}-{index + 1}"
                self.handle(AgentLoggedIn(agent_id, dict(team.skills), self.start))
        for caller in self.callers:
            self.push(caller.arrival, _Arrival(caller))
        self.push(self.start + scenario.arrival_window_s, _Mark())
        window_end = self.start + scenario.arrival_window_s
        # Safety horizon: by default the next morning (kept callbacks carry over lunch and
        # evening).
        horizon = self.start + (86400.0 if scenario.horizon_s is None else scenario.horizon_s)
        while self.open_contacts > 0 or self._agents_busy():
            timer = self.router.get_timer()
            nxt = self.heap[0][0] if self.heap else None
            if timer is not None and (nxt is None or timer <= nxt):
                if timer > horizon:
                    break
                self.handle(Tick(timer))
                continue
            if nxt is None or nxt > horizon:
                break
            at, _, action = heapq.heappop(self.heap)
            self.act(at, action)
        if self.occupancy is None:
            # Everybody was done before the end of the window: agents stayed available.
            self.occupancy = self.book.occupancy(max(window_end, self.router.now or window_end))
        end = max(self.router.now or self.start, self.start)
        for agent_id in list(self.router.agents):
            self.handle(AgentLoggedOut(agent_id, end))
        total = self.book.total()
        busy = sum(kpi.busy_s for kpi in self.book.agent_snapshots(end).values())
        records = tuple(
            CallerRecord(
                c.caller.call_id,
                c.caller.queue,
                c.caller.arrival,
                c.outcome,
                c.ended_at - c.caller.arrival,
            )
            for c in (self.contacts[caller.call_id] for caller in self.callers)
            if c.outcome is not None
        )
        return SimulationResult(
            scenario=scenario.name,
            callbacks=self.callbacks,
            seed=self.seed,
            callers=len(self.callers),
            agents=scenario.agent_count,
            outcomes=MappingProxyType(dict(sorted(self.outcomes.items()))),
            queues=MappingProxyType(self.book.snapshots()),
            total=total,
            occupancy=self.occupancy,
            events=self.events,
            last_outcome_s=self.last_end - self.start,
            records=records,
            busy_s=busy,
        )

    def _agents_busy(self) -> bool:
        return any(
            a.state in (AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP)
            for a in self.router.agents.values()
        )

    # -- actions ----------------------------------------------------------------------------

    def act(self, at: float, action: _Action) -> None:
        match action:
            case _Arrival(caller=caller):
                call = QueuedCall(
                    caller.call_id,
                    caller.queue,
                    priority=caller.priority,
                    joined_at=caller.arrival,
                    previous_contact_at=caller.previous_contact_at,
                )
                self.handle(CallQueued(call, at))
            case _Mark():
                self.occupancy = self.book.occupancy(at)
            case _Announce(call_id=call_id):
                self.announce(call_id, at)
            case _CallbackDue(call_id=call_id):
                self.callback_due(call_id, at)
            case CallerHungUp(call_id=call_id):
                contact = self.contacts[call_id]
                if contact.callback is None and self.router.call_phase(call_id) in (
                    "waiting",
                    "offered",
                ):
                    self.handle(action)
            case OfferAccepted(agent_id=agent_id, call_id=call_id):
                agent = self.router.agents.get(agent_id)
                if agent is not None and agent.state is AgentState.RESERVED:
                    if agent.call_id == call_id:
                        self.handle(action)
            case CallEnded(agent_id=agent_id, call_id=call_id):
                if self.router.call_phase(call_id) == "connected":
                    self.handle(action)
            case WrapUpDone(agent_id=agent_id):
                agent = self.router.agents.get(agent_id)
                if agent is not None and agent.state is AgentState.WRAP_UP:
                    self.handle(action)
            case AgentReady(agent_id=agent_id):
                agent = self.router.agents.get(agent_id)
                if agent is not None and agent.state is AgentState.PAUSED:
                    self.handle(action)
            case _:
                raise AssertionError(f"unexpected action {action!r}")

    def announce(self, call_id: str, now: float) -> None:
        """Tell the caller the estimated wait; offer a callback when it is long."""
        contact = self.contacts[call_id]
        if contact.outcome is not None or contact.callback is not None:
            return
        phase = self.router.call_phase(call_id)
        if phase is None or phase == "connected":
            return
        if phase == "waiting" and not contact.offered_callback:
            queue = contact.caller.queue
            estimate = estimate_for_call(self.router, call_id, self.handle_times[queue].samples)
            if estimate is not None and (
                estimate.high_s is None or estimate.high_s > self.scenario.callback_offer_above_s
            ):
                contact.offered_callback = True
                if contact.caller.accept_draw < self.scenario.callback_accept_p:
                    call = self.router.waiting_call(call_id)
                    contact.callback = keep_place(call, now)
                    self.handle(CallbackKept(call_id, now))
                    return
        self.push(now + self.scenario.announce_every_s, _Announce(call_id))

    def callback_due(self, call_id: str, now: float) -> None:
        contact = self.contacts[call_id]
        callback = contact.callback
        assert callback is not None and callback.status is CallbackStatus.WAITING
        callback, call = enter_queue(callback, now)
        contact.callback = callback
        self.handle(CallQueued(call, now))

    # -- the router ---------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        decisions = self.router.handle(event)
        self.events += 1
        if self.observer is not None:
            self.observer(self.router, decisions)
        for decision in decisions:
            self.book.apply(decision)
            self.react(decision)

    def finish(self, contact: _Contact, outcome: str, at: float) -> None:
        assert contact.outcome is None, (contact.caller.call_id, contact.outcome, outcome)
        contact.outcome = outcome
        contact.ended_at = at
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.open_contacts -= 1
        self.last_end = max(self.last_end, at)

    def react(self, d: Decision) -> None:  # noqa: C901 (one branch per decision kind)
        scenario, rng = self.scenario, self.rng
        match d:
            case CallEnqueued(call_id=call_id, at=at):
                contact = self.contacts[call_id]
                if contact.callback is None:
                    caller = contact.caller
                    self.push(
                        caller.arrival + caller.patience_s,
                        CallerHungUp(call_id, caller.arrival + caller.patience_s),
                    )
                    if self.callbacks:
                        self.push(at, _Announce(call_id))
            case OfferCall(agent_id=agent_id, call=call, at=at):
                if rng.random() >= scenario.ring_no_answer_p:
                    ring = rng.uniform(*scenario.ring_s)
                    self.push(at + ring, OfferAccepted(agent_id, call.call_id, at + ring))
            case OfferEnded(agent_id=agent_id, reason=OfferEndReason.RING_TIMEOUT, at=at):
                back = at + rng.uniform(*scenario.no_answer_pause_s)
                self.push(back, AgentReady(agent_id, back))
            case CallAnswered(agent_id=agent_id, call_id=call_id, at=at):
                contact = self.contacts[call_id]
                if contact.callback is None:
                    self.finish(contact, "answered", at)
                    end = at + contact.caller.talk_s
                else:
                    callback = contact.callback
                    contact.callback = dialing(callback, at)
                    attempt = len(callback.attempts)
                    draws = contact.caller.attempt_draws
                    reached = attempt < len(draws) and draws[attempt] < scenario.callback_success_p
                    contact.connected = reached
                    if reached:
                        end = at + rng.uniform(*scenario.outbound_ring_s) + contact.caller.talk_s
                    else:
                        end = at + scenario.failed_attempt_s
                self.push(end, CallEnded(agent_id, call_id, end))
            case CallCompleted(agent_id=agent_id, call_id=call_id, queue=queue, at=at):
                contact = self.contacts[call_id]
                wrap_up = self.config.queues[queue].wrap_up_s
                flag: bool | None = None
                if contact.callback is not None:
                    self.attempt_done(contact, at)
                    if not contact.connected:
                        done = at + rng.uniform(3.0, 10.0)  # nothing to note
                        self.push(done, WrapUpDone(agent_id, done, None))
                        return
                if rng.random() < scenario.early_wrap_up_p:
                    flag = rng.random() < scenario.resolved_p
                    done = at + wrap_up * rng.uniform(0.3, 1.0)
                    self.push(done, WrapUpDone(agent_id, done, flag))
            case WrapUpEnded(queue=queue, handle_s=handle) if queue:
                self.handle_times[queue].add(handle)
            case CallAbandoned(call_id=call_id, at=at):
                self.finish(self.contacts[call_id], "abandoned", at)
            case CallMaxWaitReached(call_id=call_id, at=at):
                self.finish(self.contacts[call_id], "max_wait", at)
            case CallRejectedQueueFull(call_id=call_id, at=at):
                contact = self.contacts[call_id]
                if contact.callback is not None:
                    # A callback finding its queue full tries again in 5 minutes.
                    contact.callback = dataclasses.replace(
                        contact.callback, status=CallbackStatus.WAITING, due_at=at + 300.0
                    )
                    self.push(at + 300.0, _CallbackDue(call_id))
                else:
                    self.finish(contact, "refused_full", at)
            case CallRejectedClosed(call_id=call_id, queue=queue, wait_s=wait, at=at):
                contact = self.contacts[call_id]
                if contact.callback is not None:
                    callback = queue_closed(
                        contact.callback,
                        at,
                        schedule=self.config.queues[queue].hours,
                        tz=self.config.timezone,
                        policy=scenario.callback_policy,
                    )
                    self.callback_next(contact, callback, at)
                else:
                    self.finish(contact, "closed" if wait > 0 else "refused_closed", at)
            case _:
                pass

    def attempt_done(self, contact: _Contact, at: float) -> None:
        """Record the outcome of a callback attempt and schedule what follows."""
        assert contact.callback is not None
        queue = contact.caller.queue
        outcome = AttemptOutcome.CONNECTED if contact.connected else AttemptOutcome.NO_ANSWER
        callback = attempt_finished(
            contact.callback,
            outcome,
            at,
            schedule=self.config.queues[queue].hours,
            tz=self.config.timezone,
            policy=self.scenario.callback_policy,
        )
        self.callback_next(contact, callback, at)

    def callback_next(self, contact: _Contact, callback: Callback, at: float) -> None:
        contact.callback = callback
        call_id = contact.caller.call_id
        if callback.status is CallbackStatus.COMPLETED:
            self.book.record_callback_outcome(callback.skill, True, call_id=call_id)
            self.finish(contact, "callback_completed", at)
        elif callback.status is CallbackStatus.FAILED:
            self.book.record_callback_outcome(callback.skill, False, call_id=call_id)
            self.finish(contact, "callback_failed", at)
        else:
            assert callback.due_at is not None
            self.push(callback.due_at, _CallbackDue(call_id))


def simulate(
    scenario: Scenario = DEFAULT_SCENARIO,
    *,
    callbacks: bool,
    seed: int = 1,
    config: RoutingConfig | None = None,
    callers: Sequence[Caller] | None = None,
    observer: Callable[[Router, Sequence[Decision]], None] | None = None,
) -> SimulationResult:
    """Run one simulation.

    Args:
        scenario: Volumes, agents and behaviours.
        callbacks: Offer keep-place callbacks when the announced wait is long.
        seed: Seed of every random draw (same seed, same result).
        config: Routing configuration (default: ``scenario.config_path`` or the shipped one).
        callers: These callers instead of drawing them from the scenario (tests: a scenario
            small enough to compute by hand).
        observer: Called with the router and its decisions after every event (tests: check
            invariants on realistic traffic).

    Returns:
        The figures.
    """
    if config is None:
        config = load_routing_config(scenario.config_path or default_routing_config_path())
    run = _Run(scenario, config, callbacks=callbacks, seed=seed, callers=callers, observer=observer)
    return run.run()


def compare_policies(
    scenario: Scenario = DEFAULT_SCENARIO,
    *,
    seeds: Sequence[int] = (1, 2, 3, 4, 5),
    config: RoutingConfig | None = None,
) -> dict[str, Any]:
    """Run a scenario with and without callbacks over several seeds; average the headlines.

    Args:
        scenario: The scenario.
        seeds: Seeds (each seed gives both policies the same callers).
        config: Routing configuration (default: the scenario's).

    Returns:
        ``{"scenario", "peak_calls_per_hour", "agents", "seeds", "without_callbacks",
        "with_callbacks"}``, each policy with means over the seeds.
    """
    if config is None:
        config = load_routing_config(scenario.config_path or default_routing_config_path())
    out: dict[str, Any] = {
        "scenario": scenario.name,
        "peak_calls_per_hour": scenario.peak_calls_per_hour,
        "agents": scenario.agent_count,
        "seeds": list(seeds),
    }
    for label, flag in (("without_callbacks", False), ("with_callbacks", True)):
        runs = [simulate(scenario, callbacks=flag, seed=seed, config=config) for seed in seeds]
        out[label] = _mean_summary(runs)
    return out


def _mean_summary(runs: Sequence[SimulationResult]) -> dict[str, Any]:
    def mean(values: Sequence[float | None], digits: int = 3) -> float | None:
        present = [v for v in values if v is not None]
        return round(statistics.fmean(present), digits) if present else None

    totals = [r.total for r in runs]
    return {
        "callers": mean([r.callers for r in runs], 1),
        "service_level_20s": mean([t.service_level(20.0) for t in totals]),
        "service_level_60s": mean([t.service_level(60.0) for t in totals]),
        "service_level_20s_live": mean([t.service_level(20.0, live_only=True) for t in totals]),
        "service_level_60s_live": mean([t.service_level(60.0, live_only=True) for t in totals]),
        "abandonment_rate": mean([t.abandonment_rate for t in totals]),
        "abandoned": mean([t.abandoned - t.abandoned_short for t in totals], 1),
        "max_wait_reached": mean([t.max_wait_reached for t in totals], 1),
        "lost_rate": mean([t.lost / t.offered if t.offered else None for t in totals]),
        "asa_s": mean([t.asa_s for t in totals], 1),
        "aht_s": mean([t.aht_s for t in totals], 1),
        "longest_wait_s": mean([t.longest_wait_s for t in totals], 1),
        "callbacks_requested": mean([t.callbacks_requested for t in totals], 1),
        "callbacks_completed": mean([t.callbacks_completed for t in totals], 1),
        "callbacks_failed": mean([t.callbacks_failed for t in totals], 1),
        "occupancy": mean([r.occupancy for r in runs]),
        "last_outcome_min": mean([r.last_outcome_s / 60.0 for r in runs], 1),
    }


# -- days and weeks ----------------------------------------------------------------------------

DEFAULT_WEEKDAY_FACTORS: tuple[float, ...] = (1.25, 1.05, 0.95, 0.9, 0.85, 0.0, 0.0)
"""Calls of each weekday (Monday first) as a multiple of an average working day (mean 1 over
Monday-Friday; D21: a Monday runs at ~1.25 × an average day)."""

DEFAULT_HOURLY_PROFILE: tuple[tuple[str, float], ...] = (
    ("09:00", 11.0),
    ("09:30", 9.0),
    ("10:00", 8.5),
    ("10:30", 8.5),
    ("11:00", 7.0),
    ("11:30", 7.0),
    ("12:00", 5.0),
    ("13:30", 9.0),
    ("14:00", 8.0),
    ("14:30", 7.0),
    ("15:00", 6.5),
    ("15:30", 5.5),
    ("16:00", 4.5),
    ("16:30", 3.5),
)
"""Share of a day's calls per half hour (local start time, weight). The first hour holds 20 %
of the day (the opening peak, D21), the afternoon reopening a smaller second peak. Half hours
the line is closed (read from the configuration) are dropped and the rest renormalised."""

DEFAULT_BOT_CONTAINMENT: tuple[tuple[str, float], ...] = (
    ("accueil_general", 0.16),
    ("apa", 0.40),
    ("mdph_adulte", 0.28),
    ("mdph_enfant", 0.32),
    ("paiement", 0.26),
    ("aide_sociale_hebergement", 0.32),
    ("urgence_sociale", 0.0),
    ("reclamation", 0.32),
)
"""Share of each queue's calls the voice bot ends without an agent (27 % of the default mix).

Derived from the FAQ matcher measured on the blind set ``tests/faq/data/holdout.tsv`` (never
tuned on): the share of utterances whose intent the dialogue gets right (answered at once or
confirmed) *and* whose hand-off policy is ``never`` or ``on_request`` (the answer is complete),
per skill — apa 0.66, mdph_adulte 0.46, paiement 0.43, accueil_general 0.27 (out-of-scope
callers land there through the menu), 0.54 pooled for the skills with fewer than 30
utterances, 0 for distress — times 0.6, the assumed share of those callers who accept the
answer and hang up rather than asking for a person (not measured: calibrate it from the
trail's containment counts). The dev set (tuned on) gives 0.55 instead of 0.45 before that
factor."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What the line offers callers."""

    name: str
    """Name in reports (``baseline``, ``callbacks``, ``bot``, ``bot+callbacks``)."""
    bot: bool
    """The voice bot answers first: some calls end there, the others reach the queue later."""
    callbacks: bool
    """Keep-place callbacks are offered when the announced wait is long."""


POLICIES: tuple[Policy, ...] = (
    Policy("baseline", bot=False, callbacks=False),
    Policy("callbacks", bot=False, callbacks=True),
    Policy("bot", bot=True, callbacks=False),
    Policy("bot+callbacks", bot=True, callbacks=True),
)
"""The four policies compared by :func:`compare_period_policies`."""


@dataclass(frozen=True, slots=True)
class PeriodScenario:
    """Days or weeks of the line: yearly volume spread over weekdays and half hours.

    Staffing is a fixed team logged in from the first opening to the end (``base.teams``;
    :func:`scaled_teams` resizes it): the simulation shows what a given roster gives, and
    :mod:`routing.staffing` says what roster a target needs.
    """

    name: str = "seed_week"
    """Name in reports."""
    first_day: dt.date = dt.date(2025, 9, 1)
    """First simulated day (a Monday of the back-to-school peak)."""
    days: int = 5
    """Working days simulated (days the line is closed — weekends, public holidays — are
    skipped)."""
    calls_per_year: float = 100_000.0
    """Calls to the line per year (D21: MDPH 31 000, APA ~45 000, the rest ~25 000)."""
    working_days_per_year: float = 251.0
    """Days the line is open in a year (2025: 261 weekdays, 10 public holidays)."""
    weekday_factors: tuple[float, ...] = DEFAULT_WEEKDAY_FACTORS
    """Calls per weekday (Monday first, 7 values) as a multiple of the average day."""
    hourly_profile: tuple[tuple[str, float], ...] = DEFAULT_HOURLY_PROFILE
    """Share of the day's calls per half hour (``"HH:MM"`` start, weight)."""
    hours_queue: str = "accueil_general"
    """Queue whose opening hours are the line's hours."""
    bot_containment: tuple[tuple[str, float], ...] = DEFAULT_BOT_CONTAINMENT
    """Share of each queue's calls the bot ends (policies with the bot)."""
    bot_s: float = 45.0
    """Time with the bot before a call it does not end joins the queue (not counted as a
    wait)."""
    base: Scenario = DEFAULT_SCENARIO
    """Behaviours (mix, talk times, patience, callbacks...) and the team."""

    @property
    def calls_per_day(self) -> float:
        """Calls on an average working day."""
        return self.calls_per_year / self.working_days_per_year


def scaled_teams(teams: Sequence[Team], agents: int) -> tuple[Team, ...]:
    """Resize a roster to ``agents`` agents, keeping the teams' proportions.

    Largest remainders; every team keeps at least one agent when ``agents`` allows it.

    Args:
        teams: The roster.
        agents: Agents wanted (>= 1).

    Returns:
        The resized teams.

    Raises:
        ValueError: If ``agents`` < 1.
    """
    if agents < 1:
        raise ValueError(f"agents must be >= 1, got {agents}")
    total = sum(team.count for team in teams)
    quotas = [team.count * agents / total for team in teams]
    counts = [math.floor(q) for q in quotas]
    order = sorted(range(len(teams)), key=lambda i: (counts[i] > 0, counts[i] - quotas[i]))
    for i in order[: agents - sum(counts)]:
        counts[i] += 1
    return tuple(dataclasses.replace(team, count=n) for team, n in zip(teams, counts, strict=True))


def _minutes(text: str) -> int:
    hour, _, minute = text.partition(":")
    return int(hour) * 60 + int(minute)


def _open_days(period: PeriodScenario, config: RoutingConfig) -> list[dt.date]:
    schedule = config.queues[period.hours_queue].hours
    days: list[dt.date] = []
    day = period.first_day
    while len(days) < period.days:
        if (
            schedule is None
            or not schedule.is_closed_day(day)
            and schedule.weekly.get(day.weekday())
        ):
            days.append(day)
        day += dt.timedelta(days=1)
        if (day - period.first_day).days > 366 + period.days * 7:
            raise ValueError(f"queue {period.hours_queue!r} is never open")
    return days


def period_scenario(period: PeriodScenario, config: RoutingConfig) -> Scenario:
    """Build the :class:`Scenario` of a period: one profile slot per half hour.

    The arrival rate of a half hour is ``calls_per_day × weekday factor × its share`` when the
    line is open for the whole half hour (opening hours of ``period.hours_queue``), else 0.

    Args:
        period: The period.
        config: Routing configuration (opening hours, timezone).

    Returns:
        A scenario starting at the first day's first profile slot.

    Raises:
        ValueError: If the hours queue is unknown, never open, or the profile is empty.
    """
    if period.hours_queue not in config.queues:
        raise ValueError(f"unknown queue {period.hours_queue!r} for the opening hours")
    if len(period.weekday_factors) != 7:
        raise ValueError("weekday_factors needs 7 values, Monday first")
    if not period.hourly_profile:
        raise ValueError("the hourly profile is empty")
    tz = config.timezone
    schedule = config.queues[period.hours_queue].hours
    slot_s = 1800.0
    days = _open_days(period, config)
    first = min(_minutes(start) for start, _ in period.hourly_profile)
    start = dt.datetime.combine(days[0], dt.time(first // 60, first % 60), tzinfo=tz)
    rates: list[float] = []
    for day in days:
        open_slots: list[tuple[int, float]] = []
        for text, weight in period.hourly_profile:
            minutes = _minutes(text)
            at = dt.datetime.combine(day, dt.time(minutes // 60, minutes % 60), tzinfo=tz)
            last = at + dt.timedelta(seconds=slot_s - 1)
            if schedule is None or (schedule.is_open(at) and schedule.is_open(last)):
                index = round((at.timestamp() - start.timestamp()) / slot_s)
                open_slots.append((index, weight))
        weights = sum(w for _, w in open_slots)
        if weights <= 0:
            continue
        day_calls = period.calls_per_day * period.weekday_factors[day.weekday()]
        for index, weight in open_slots:
            while len(rates) <= index:
                rates.append(0.0)
            rates[index] += day_calls * weight / weights * (3600.0 / slot_s)
    peak = max(rates, default=0.0)
    if peak <= 0:
        raise ValueError("no calls in the period (closed line or zero volume)")
    return dataclasses.replace(
        period.base,
        name=period.name,
        day=days[0],
        start=start.time(),
        peak_calls_per_hour=peak,
        profile=tuple(rate / peak for rate in rates),
        slot_s=slot_s,
        horizon_s=len(rates) * slot_s + 3 * 86400.0,
    )


def apply_bot(
    callers: Sequence[Caller],
    containment: Mapping[str, float],
    bot_s: float,
    seed: int,
) -> tuple[list[Caller], dict[str, int]]:
    """Let the voice bot take the calls first.

    One uniform draw per caller (its own random stream: the callers stay the same as without
    the bot): below the queue's containment the bot ends the call; the others join the
    queue ``bot_s`` later — so a caller who calls in the last ``bot_s`` before a closing is
    handed over after it and refused as closed, as the service would do.

    Args:
        callers: Callers in arrival order.
        containment: Share of each queue's calls the bot ends (missing queues: 0).
        bot_s: Time with the bot before joining the queue.
        seed: The run's seed.

    Returns:
        The callers who reach a queue, and the count the bot ended per queue.
    """
    rng = random.Random(f"{seed}:bot")
    reached: list[Caller] = []
    ended: dict[str, int] = {}
    for caller in callers:
        if rng.random() < containment.get(caller.queue, 0.0):
            ended[caller.queue] = ended.get(caller.queue, 0) + 1
            continue
        shift = bot_s
        reached.append(
            dataclasses.replace(
                caller,
                arrival=caller.arrival + shift,
                previous_contact_at=None
                if caller.previous_contact_at is None
                else caller.previous_contact_at + shift,
            )
        )
    return reached, ended


LOST_OUTCOMES = frozenset(
    {"abandoned", "max_wait", "closed", "refused_full", "refused_closed", "callback_failed"}
)
"""Outcomes of a caller who got no conversation (abandons under the short threshold are not
lost: they are counted apart, as in :mod:`routing.kpi`)."""


@dataclass(frozen=True, slots=True)
class HourFigures:
    """One clock hour of a period run (callers by the hour they called)."""

    start: float
    """Start of the hour (POSIX seconds)."""
    calls: int
    """Calls to the line (before the bot)."""
    bot_ended: int
    """Calls the bot ended."""
    reached_queue: int
    """Calls handed to a queue (after the bot, if any), those refused at the door included."""
    answered: int
    """Answered live."""
    answered_20s: int
    """Answered live within 20 s."""
    answered_60s: int
    """Answered live within 60 s."""
    lost: int
    """Callers who got no conversation (:data:`LOST_OUTCOMES`, short abandons excluded)."""


@dataclass(frozen=True, slots=True)
class PeriodResult:
    """What a period run measured, for one policy."""

    policy: Policy
    """The policy."""
    run: SimulationResult
    """The underlying run (KPIs per queue, outcomes, records)."""
    calls: int
    """Calls to the line (before the bot)."""
    bot_ended: Mapping[str, int]
    """Calls the bot ended, per queue."""
    lost: int
    """Callers who got no conversation (:data:`LOST_OUTCOMES`, short abandons excluded)."""
    short_abandoned: int
    """Callers who hung up within the short-abandon threshold."""
    wait_p90_s: float | None
    """90th percentile of the wait of the callers answered live."""
    open_s: float
    """Opening time of the line over the period (seconds)."""
    occupancy: float | None
    """Agents' busy time / (agents × opening time)."""
    hours: tuple[HourFigures, ...]
    """Per clock hour with calls."""
    elapsed_events: int
    """Router events processed (cost of the run)."""

    def summary(self) -> dict[str, Any]:
        """Return the headline figures as plain data (JSON-ready)."""
        total = self.run.total
        bot = sum(self.bot_ended.values())
        return {
            "policy": self.policy.name,
            "calls": self.calls,
            "bot_ended": bot,
            "offered": total.offered,
            "answered": total.answered,
            "answered_rate": _round(total.answered / self.calls if self.calls else None),
            "served_rate": _round(
                (total.answered + bot + total.callbacks_completed) / self.calls
                if self.calls
                else None
            ),
            "abandoned": total.abandoned - total.abandoned_short,
            "abandoned_rate": _round(total.abandonment_rate),
            "lost": self.lost,
            "lost_rate": _round(self.lost / self.calls if self.calls else None),
            "service_level_20s": _round(total.service_level(20.0)),
            "service_level_60s": _round(total.service_level(60.0)),
            "asa_s": _round(total.asa_s, 1),
            "wait_p90_s": _round(self.wait_p90_s, 1),
            "callbacks_requested": total.callbacks_requested,
            "callbacks_completed": total.callbacks_completed,
            "callbacks_failed": total.callbacks_failed,
            "occupancy": _round(self.occupancy),
            "agents": self.run.agents,
        }


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[index]


def _open_seconds(period: PeriodScenario, scenario: Scenario, config: RoutingConfig) -> float:
    schedule = config.queues[period.hours_queue].hours
    begin = scenario.start_time(config.timezone)
    end = begin + scenario.arrival_window_s
    if schedule is None:
        return end - begin
    return sum(
        min(close, end) - max(opening, begin)
        for opening, close in open_intervals(schedule, config.timezone, begin, end)
    )


def simulate_period(
    period: PeriodScenario = PeriodScenario(),  # noqa: B008 (frozen, immutable default)
    *,
    policy: Policy,
    seed: int = 1,
    config: RoutingConfig | None = None,
) -> PeriodResult:
    """Simulate days or weeks of the line under one policy, driving the real router.

    Every policy sees the same callers for a seed (common random numbers); the bot removes
    some and delays the others (:func:`apply_bot`).

    Args:
        period: Volumes, profiles, bot figures, behaviours and team.
        policy: Bot and/or callbacks.
        seed: Seed of every random draw.
        config: Routing configuration (default: ``period.base.config_path`` or the shipped one).

    Returns:
        The figures, overall and per hour.
    """
    if config is None:
        config = load_routing_config(period.base.config_path or default_routing_config_path())
    scenario = period_scenario(period, config)
    start = scenario.start_time(config.timezone)
    drawn = draw_callers(scenario, seed, start)
    callers: list[Caller] = drawn
    bot_ended: dict[str, int] = {}
    if policy.bot:
        callers, bot_ended = apply_bot(drawn, dict(period.bot_containment), period.bot_s, seed)
    runner = _Run(scenario, config, callbacks=policy.callbacks, seed=seed, callers=callers)
    run = runner.run()
    lost = short = 0
    waits: list[float] = []
    hours: dict[int, list[int]] = {}

    def bucket(at: float) -> list[int]:
        return hours.setdefault(int((at - start) // 3600.0), [0] * 7)

    for caller in drawn:
        bucket(caller.arrival)[0] += 1
    bot_s = period.bot_s if policy.bot else 0.0
    for record in run.records:
        row = bucket(record.arrival - bot_s)
        row[2] += 1
        if record.outcome == "answered":
            row[3] += 1
            row[4] += int(record.end_s <= 20.0)
            row[5] += int(record.end_s <= 60.0)
            waits.append(record.end_s)
        elif record.outcome == "abandoned" and runner.book.is_short_abandon(record.end_s):
            short += 1
        elif record.outcome in LOST_OUTCOMES:
            row[6] += 1
            lost += 1
    for row in hours.values():
        row[1] = row[0] - row[2]
    open_s = _open_seconds(period, scenario, config)
    staffed = open_s * scenario.agent_count
    return PeriodResult(
        policy=policy,
        run=run,
        calls=len(drawn),
        bot_ended=MappingProxyType(dict(sorted(bot_ended.items()))),
        lost=lost,
        short_abandoned=short,
        wait_p90_s=_percentile(waits, 0.9),
        open_s=open_s,
        occupancy=run.busy_s / staffed if staffed > 0 else None,
        hours=tuple(
            HourFigures(start + index * 3600.0, *row) for index, row in sorted(hours.items())
        ),
        elapsed_events=run.events,
    )


def compare_period_policies(
    period: PeriodScenario = PeriodScenario(),  # noqa: B008 (frozen, immutable default)
    *,
    policies: Sequence[Policy] = POLICIES,
    seed: int = 1,
    config: RoutingConfig | None = None,
) -> list[PeriodResult]:
    """Run a period under several policies with the same callers.

    Args:
        period: The period.
        policies: Policies to compare.
        seed: Seed (the same callers for every policy).
        config: Routing configuration (default: the period's).

    Returns:
        One result per policy, in order.
    """
    if config is None:
        config = load_routing_config(period.base.config_path or default_routing_config_path())
    return [simulate_period(period, policy=p, seed=seed, config=config) for p in policies]
