"""Staffing formulas: Erlang B, Erlang C (M/M/n) and Erlang A (M/M/n+M, Palm), pure functions.

Notation: ``calls_per_hour`` λ, mean handle time ``aht_s`` (talk + wrap-up, 1/μ), offered load
``A = λ · aht`` in Erlangs, ``agents`` n on the phones, mean patience ``patience_s`` (1/θ) of a
waiting caller (exponential).

Erlang B and C
--------------
Erlang B by the recursion ``B(0) = 1``, ``B(k) = A·B(k-1) / (k + A·B(k-1))``: no factorial,
no power, stable for thousands of agents. Erlang C from it:
``C = n·B / (n - A·(1 - B))`` when ``n > A`` (else every caller waits: 1). Then, for callers
who never hang up: service level ``SL(T) = 1 - C·exp(-(n - A)·T / aht)``, average speed of
answer ``ASA = C·aht / (n - A)``, occupancy ``A / n``.

Erlang A: an exact birth-death chain
------------------------------------
The number of callers in the system is a birth-death chain: births λ, deaths
``min(k, n)·μ + max(k - n, 0)·θ`` (conversations ending, waiting callers hanging up). Its
stationary law ``π`` is computed term by term (each term from the previous one, normalised
at the end) up to a state ``K`` where the tail is below 1e-15 — the death rate grows without
bound when θ > 0, so the tail falls faster than geometrically and the truncation error is
negligible. By PASTA an arriving caller finds ``k`` with probability ``π_k``:

- ``P(wait) = Σ_{k≥n} π_k``; ``P(abandon) = θ·E[queue] / λ`` (rate balance of abandons).
- Waiting time, by conditioning on the arrival state (FCFS): a caller finding ``k ≥ n`` is
  ``j = k - n + 1``-th in line. In position ``i`` they move up at rate ``r_i = n·μ + (i-1)·θ``
  (a conversation ends or one of the ``i - 1`` callers ahead hangs up) and hang up at rate θ.
  Each position is left after an ``Exp(r_i + θ)`` time, independently of *how* it is left,
  so ``P(answered) = Π_{i≤j} r_i / (r_i + θ)``, the wait of an answered caller is the sum of
  ``Exp(n·μ + i·θ)``, ``i = 1..j`` (mean ``Σ 1/(n·μ + i·θ)``), and
  ``P(answered within T) = P(answered) · P(that sum ≤ T)``. The distribution of the sum
  (hypoexponential) comes from uniformisation: the pure-death chain of positions observed at
  the jumps of a Poisson clock of rate ``Λ = max rate``, summed over the Poisson law of the
  number of jumps in ``T`` (terms up to where the Poisson tail is below 1e-13).
- Service level ``SL(T)`` = callers answered within ``T`` / all callers (an abandoned caller
  counts as not answered, whatever their wait); ``ASA`` = mean wait of the answered callers.

Cross-checks (tests/routing/test_staffing.py): published Erlang B/C figures; Erlang A tends to
Erlang C as the patience grows; ``1 - P(abandon)`` from the state law equals ``P(answered)``
from the tagged-caller argument; an independent M/M/n+M simulation.

Staffing: the smallest ``n`` meeting a service level (and optionally a maximum occupancy or
abandonment rate); scheduled agents = agents on the phones / (1 - shrinkage).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_TAIL = 1e-15
_POISSON_TAIL = 1e-13
_MAX_STATES = 200_000


def offered_load(calls_per_hour: float, aht_s: float) -> float:
    """Return the offered load in Erlangs.

    Args:
        calls_per_hour: Arrival rate.
        aht_s: Mean handle time (seconds).

    Returns:
        ``calls_per_hour · aht_s / 3600``.
    """
    _check_rate(calls_per_hour, aht_s)
    return calls_per_hour * aht_s / 3600.0


def erlang_b(agents: int, load: float) -> float:
    """Return the Erlang B blocking probability (M/M/n/n).

    Args:
        agents: Servers, >= 0.
        load: Offered load in Erlangs, >= 0.

    Returns:
        The probability that an arrival finds every server busy.

    Raises:
        ValueError: If an argument is negative.
    """
    if agents < 0 or load < 0 or math.isnan(load):
        raise ValueError(f"erlang_b needs agents >= 0 and load >= 0 (got {agents}, {load})")
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return b


def erlang_c(agents: int, load: float) -> float:
    """Return the Erlang C probability of waiting (M/M/n, callers never hang up).

    Args:
        agents: Agents on the phones, >= 1.
        load: Offered load in Erlangs, >= 0.

    Returns:
        P(wait > 0); 1.0 when ``load >= agents`` (the queue grows without bound).

    Raises:
        ValueError: If ``agents < 1`` or ``load < 0``.
    """
    if agents < 1:
        raise ValueError(f"erlang_c needs at least one agent (got {agents})")
    if load >= agents:
        return 1.0
    b = erlang_b(agents, load)
    return agents * b / (agents - load * (1.0 - b))


@dataclass(frozen=True, slots=True)
class QueueFigures:
    """What a queueing model predicts for one number of agents."""

    model: str
    """``"erlang_c"`` or ``"erlang_a"``."""
    agents: int
    """Agents on the phones."""
    load: float
    """Offered load (Erlangs)."""
    p_wait: float
    """Probability that a caller waits (all agents busy on arrival)."""
    service_level: float
    """Share of callers answered within ``target_s`` (abandoned callers count as not)."""
    target_s: float
    """The service-level threshold (seconds)."""
    asa_s: float
    """Average speed of answer: mean wait of the answered callers (``inf`` if unstable)."""
    p_abandon: float
    """Share of callers who hang up while waiting (0 for Erlang C)."""
    occupancy: float
    """Share of the agents' time spent handling calls."""

    @property
    def stable(self) -> bool:
        """False when the queue grows without bound (Erlang C with ``load >= agents``)."""
        return math.isfinite(self.asa_s)


def erlang_c_figures(
    agents: int, calls_per_hour: float, aht_s: float, target_s: float
) -> QueueFigures:
    """Return the Erlang C predictions for ``agents`` agents.

    Args:
        agents: Agents on the phones, >= 1.
        calls_per_hour: Arrival rate.
        aht_s: Mean handle time (seconds, > 0).
        target_s: Service-level threshold (seconds, >= 0).

    Returns:
        The figures (``asa_s`` infinite and service level 0 when the load is not below the
        number of agents).

    Raises:
        ValueError: If an argument is out of range.
    """
    load = offered_load(calls_per_hour, aht_s)
    _check_target(target_s)
    c = erlang_c(agents, load)
    if load >= agents:
        return QueueFigures("erlang_c", agents, load, 1.0, 0.0, target_s, math.inf, 0.0, 1.0)
    spare = agents - load
    return QueueFigures(
        model="erlang_c",
        agents=agents,
        load=load,
        p_wait=c,
        service_level=1.0 - c * math.exp(-spare * target_s / aht_s),
        target_s=target_s,
        asa_s=c * aht_s / spare,
        p_abandon=0.0,
        occupancy=load / agents,
    )


def _stationary(agents: int, lam: float, mu: float, theta: float) -> list[float]:
    """Stationary law of the M/M/n+M birth-death chain, truncated where the tail is < 1e-15."""
    terms = [1.0]
    total = 1.0
    k = 0
    while True:
        k += 1
        death = min(k, agents) * mu + max(k - agents, 0) * theta
        term = terms[-1] * lam / death
        if term > 1e250:  # rescale to keep the ratios in range (huge loads)
            terms = [t / term for t in terms]
            total /= term
            term = 1.0
        terms.append(term)
        total += term
        if k > agents and term < _TAIL * total and lam < death:
            break
        if k >= _MAX_STATES:
            raise ValueError("Erlang A: the state space did not converge (patience too long)")
    return [t / total for t in terms]


def _answered_within(
    agents: int, mu: float, theta: float, positions: int, target_s: float
) -> list[float]:
    """``P(the pure-death chain from position j is absorbed by target_s)``, j = 0..positions.

    Position ``i`` is left at rate ``n·μ + i·θ`` (uniformisation; see the module docstring).
    """
    rates = [0.0] + [agents * mu + i * theta for i in range(1, positions + 1)]
    if target_s <= 0 or positions == 0:
        return [1.0] + [0.0] * positions
    clock = max(rates)
    steps = clock * target_s
    # f[j]: P(absorbed within m jumps of the uniformised chain from position j).
    f = [1.0] + [0.0] * positions
    move = [r / clock for r in rates]
    result = [0.0] * (positions + 1)
    weight = math.exp(-steps) if steps < 700 else 0.0
    log_weight = -steps
    cumulative = 0.0
    m = 0
    while True:
        if weight > 0:
            for j in range(positions + 1):
                result[j] += weight * f[j]
            cumulative += weight
        if cumulative >= 1.0 - _POISSON_TAIL:
            break
        if f[positions] >= 1.0 - _POISSON_TAIL:
            # Every position is absorbed within m jumps: later terms all count in full.
            rest = 1.0 - cumulative
            for j in range(positions + 1):
                result[j] += rest
            break
        # One more jump of the uniformised chain: position j moves to j - 1 with prob move[j].
        for j in range(positions, 0, -1):
            f[j] = move[j] * f[j - 1] + (1.0 - move[j]) * f[j]
        m += 1
        log_weight += math.log(steps) - math.log(m)
        weight = math.exp(log_weight) if log_weight > -745 else 0.0
    return result


def erlang_a_figures(
    agents: int,
    calls_per_hour: float,
    aht_s: float,
    target_s: float,
    patience_s: float,
) -> QueueFigures:
    """Return the Erlang A (M/M/n+M) predictions for ``agents`` agents.

    Exact up to a truncation of the state space far in the tail (module docstring).

    Args:
        agents: Agents on the phones, >= 1.
        calls_per_hour: Arrival rate.
        aht_s: Mean handle time (seconds, > 0).
        target_s: Service-level threshold (seconds, >= 0).
        patience_s: Mean patience of a waiting caller (seconds, > 0, exponential).

    Returns:
        The figures.

    Raises:
        ValueError: If an argument is out of range.
    """
    load = offered_load(calls_per_hour, aht_s)
    _check_target(target_s)
    if agents < 1:
        raise ValueError(f"Erlang A needs at least one agent (got {agents})")
    if not patience_s > 0 or math.isinf(patience_s):
        raise ValueError(f"Erlang A needs a finite patience > 0 (got {patience_s})")
    if load == 0:
        return QueueFigures("erlang_a", agents, 0.0, 0.0, 1.0, target_s, 0.0, 0.0, 0.0)
    lam = calls_per_hour / 3600.0
    mu = 1.0 / aht_s
    theta = 1.0 / patience_s
    pi = _stationary(agents, lam, mu, theta)
    positions = len(pi) - agents
    p_wait = sum(pi[agents:])
    queue = sum((k - agents) * p for k, p in enumerate(pi) if k > agents)
    busy = sum(min(k, agents) * p for k, p in enumerate(pi))
    p_abandon = theta * queue / lam
    within = _answered_within(agents, mu, theta, positions, target_s)
    answered_within = sum(pi[:agents])
    answered_wait = 0.0
    reach = 1.0  # P(answered) from position j, built up j = 1, 2, ...
    mean_wait = 0.0  # mean wait of an answered caller from position j
    for j in range(1, positions + 1):
        rate = agents * mu + j * theta
        reach *= (rate - theta) / rate
        mean_wait += 1.0 / rate
        p = pi[agents + j - 1]
        answered_within += p * reach * within[j]
        answered_wait += p * reach * mean_wait
    answered = 1.0 - p_abandon
    return QueueFigures(
        model="erlang_a",
        agents=agents,
        load=load,
        p_wait=p_wait,
        service_level=min(1.0, answered_within),
        target_s=target_s,
        asa_s=answered_wait / answered if answered > 0 else math.inf,
        p_abandon=p_abandon,
        occupancy=busy / agents,
    )


def scheduled_agents(on_phones: int, shrinkage: float) -> int:
    """Return the agents to schedule so that ``on_phones`` are on the phones.

    Args:
        on_phones: Agents needed on the phones.
        shrinkage: Share of paid time off the phones (breaks, training, absence), in [0, 1).

    Returns:
        ``ceil(on_phones / (1 - shrinkage))``.

    Raises:
        ValueError: If ``shrinkage`` is out of range.
    """
    if not 0.0 <= shrinkage < 1.0:
        raise ValueError(f"shrinkage must be in [0, 1), got {shrinkage}")
    return math.ceil(on_phones / (1.0 - shrinkage) - 1e-9)


@dataclass(frozen=True, slots=True)
class StaffingTarget:
    """What a staffing must achieve."""

    service_level: float = 0.8
    """Share of callers answered within ``target_s``."""
    target_s: float = 20.0
    """Service-level threshold (seconds)."""
    max_occupancy: float | None = None
    """Upper bound on the agents' occupancy (e.g. 0.85), None for none."""
    max_abandon: float | None = None
    """Upper bound on the abandonment rate (Erlang A only), None for none."""


def meets(figures: QueueFigures, target: StaffingTarget) -> bool:
    """Tell whether predictions meet a target.

    Args:
        figures: Predictions for one number of agents.
        target: The target.

    Returns:
        True when service level, occupancy and abandonment are all within the target.
    """
    if not figures.stable or figures.service_level < target.service_level - 1e-12:
        return False
    if target.max_occupancy is not None and figures.occupancy > target.max_occupancy + 1e-12:
        return False
    return target.max_abandon is None or figures.p_abandon <= target.max_abandon + 1e-12


def required_agents(
    calls_per_hour: float,
    aht_s: float,
    target: StaffingTarget,
    *,
    patience_s: float | None = None,
    max_agents: int = 10_000,
) -> QueueFigures:
    """Return the figures of the smallest number of agents meeting ``target``.

    Erlang C when ``patience_s`` is None, else Erlang A with that mean patience. The service
    level grows with the number of agents, so the search starts at the load (Erlang C) or at
    one agent (Erlang A) and goes up.

    Args:
        calls_per_hour: Arrival rate.
        aht_s: Mean handle time (seconds).
        target: Service level, threshold, and optional occupancy / abandonment bounds.
        patience_s: Mean patience for Erlang A, None for Erlang C.
        max_agents: Give up above this.

    Returns:
        The figures of the staffing found.

    Raises:
        ValueError: If an argument is out of range or no staffing up to ``max_agents`` meets
            the target.
    """
    if not 0.0 < target.service_level < 1.0:
        raise ValueError(f"target service level must be in (0, 1), got {target.service_level}")
    _check_target(target.target_s)
    load = offered_load(calls_per_hour, aht_s)
    if patience_s is None:
        start = max(1, math.floor(load) + 1)
    else:
        # With abandonment the load can exceed n; the occupancy bound, if any, still needs
        # n >= load · (1 - P(abandon)) -- start low and let the check decide.
        start = max(1, math.floor(load * 0.5))
    for agents in range(start, max_agents + 1):
        figures = (
            erlang_c_figures(agents, calls_per_hour, aht_s, target.target_s)
            if patience_s is None
            else erlang_a_figures(agents, calls_per_hour, aht_s, target.target_s, patience_s)
        )
        if meets(figures, target):
            return figures
    raise ValueError(f"no staffing up to {max_agents} agents meets the target")


def staffing_table(
    calls_per_hour: float,
    aht_s: float,
    target_s: float,
    agents: range,
    *,
    patience_s: float | None = None,
) -> list[tuple[QueueFigures, QueueFigures | None]]:
    """Return Erlang C (and Erlang A when ``patience_s`` is given) figures per number of agents.

    Args:
        calls_per_hour: Arrival rate.
        aht_s: Mean handle time (seconds).
        target_s: Service-level threshold (seconds).
        agents: Numbers of agents to tabulate (each >= 1).
        patience_s: Mean patience for the Erlang A column, None to leave it out.

    Returns:
        ``(erlang_c, erlang_a or None)`` per number of agents.
    """
    return [
        (
            erlang_c_figures(n, calls_per_hour, aht_s, target_s),
            None
            if patience_s is None
            else erlang_a_figures(n, calls_per_hour, aht_s, target_s, patience_s),
        )
        for n in agents
    ]


def _check_rate(calls_per_hour: float, aht_s: float) -> None:
    if not calls_per_hour >= 0 or math.isinf(calls_per_hour):
        raise ValueError(f"calls per hour must be a finite number >= 0, got {calls_per_hour}")
    if not aht_s > 0 or math.isinf(aht_s):
        raise ValueError(f"handle time must be a finite number > 0, got {aht_s}")


def _check_target(target_s: float) -> None:
    if not target_s >= 0 or math.isinf(target_s):
        raise ValueError(f"service-level threshold must be a finite number >= 0, got {target_s}")
