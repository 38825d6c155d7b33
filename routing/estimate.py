"""Estimated wait: a range and a spoken bucket that never promises too little.

Method
------
A caller at position ``k`` is answered when ``k`` conversations have ended among the ``N``
agents staffing the queue (agents being busy is why the caller waits). If conversations end
independently, departures form a Poisson process of rate ``N / H`` (``H`` the mean handle time:
talk plus wrap-up), so the wait is Erlang distributed: ``Gamma(k, N / H)``, mean ``k H / N``.

- ``H`` comes from recent handle times of the queue (:class:`HandleTimes`, the last 200
  ``WrapUpEnded.handle_s``). With fewer than ``min_samples`` samples it is shrunk towards
  ``default_handle_s`` (as if the missing samples had the default value).
- The **upper bound** uses a pessimistic ``H``: the upper one-sided ``confidence`` limit of the
  mean (``H + z·s/√m``), and the ``confidence`` quantile of the Erlang law (0.95 by default).
  The **lower bound** uses ``H`` and the ``1 - confidence`` quantile.
- ``N`` is the *effective* number of agents (:func:`effective_servers`): an agent with several
  skills whose queues all have callers waiting counts for a share of each.
- When nobody staffs the queue the wait has no upper bound: ``high_s`` is None.

The spoken bucket is the first of :data:`SPOKEN_BUCKETS` whose limit is at least ``high_s``: the
announced upper limit is never below the estimate's upper bound, and "plus de 10 minutes" is
said rather than a precise number. The calibration is checked by simulation in
``tests/routing/test_estimate.py`` (announced bound exceeded by fewer than 10 % of callers).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .engine import Router
from .model import STAFFED_STATES, Agent

SPOKEN_BUCKETS: tuple[tuple[float, str], ...] = (
    (120.0, "moins de 2 minutes"),
    (300.0, "2 à 5 minutes"),
    (600.0, "5 à 10 minutes"),
    (math.inf, "plus de 10 minutes"),
)
"""(upper limit in seconds, French words) in increasing order; the last has no limit."""

_EXACT_MAX_K = 60


@dataclass(frozen=True, slots=True)
class WaitEstimate:
    """An estimated wait for one caller."""

    position: int
    """1-based position in the queue."""
    servers: float
    """Effective number of agents serving the queue."""
    handle_s: float
    """Mean handle time used (seconds)."""
    low_s: float
    """Lower bound of the wait (seconds)."""
    expected_s: float
    """Expected wait (seconds); ``inf`` when nobody staffs the queue."""
    high_s: float | None
    """Upper bound of the wait (seconds); None when nobody staffs the queue."""
    bucket: str
    """What to say: one of the :data:`SPOKEN_BUCKETS` words."""
    bucket_limit_s: float
    """Upper limit of the announced bucket (``inf`` for "plus de 10 minutes")."""


class HandleTimes:
    """The recent handle times (talk + wrap-up) of one queue.

    Args:
        maxlen: How many recent samples to keep.
    """

    def __init__(self, maxlen: int = 200) -> None:
        self._samples: deque[float] = deque(maxlen=maxlen)

    def add(self, handle_s: float) -> None:
        """Record one handle time.

        Args:
            handle_s: Seconds (negative values are ignored).
        """
        if handle_s >= 0:
            self._samples.append(handle_s)

    def extend(self, samples: Iterable[float]) -> None:
        """Record several handle times.

        Args:
            samples: Seconds each.
        """
        for sample in samples:
            self.add(sample)

    @property
    def samples(self) -> tuple[float, ...]:
        """The samples kept, oldest first."""
        return tuple(self._samples)

    def __len__(self) -> int:
        return len(self._samples)


def effective_servers(agents: Iterable[Agent], queue: str, busy_queues: Collection[str]) -> float:
    """Count the agents serving ``queue``, sharing multi-skilled agents between busy queues.

    Args:
        agents: Agents (any state; only logged-in, unpaused ones count).
        queue: The queue.
        busy_queues: Queues that have callers waiting (``queue`` counts as one of them).

    Returns:
        Sum over staffed agents with the skill of ``1 / number of their busy queues``.
    """
    total = 0.0
    for agent in agents:
        if agent.state not in STAFFED_STATES or agent.proficiency(queue) <= 0:
            continue
        shared = sum(1 for skill in agent.skills if skill == queue or skill in busy_queues)
        total += 1.0 / max(1, shared)
    return total


def spoken_bucket(high_s: float | None) -> tuple[str, float]:
    """Return the words and limit of the smallest bucket covering ``high_s``.

    Args:
        high_s: Upper bound of the wait, None for unbounded.

    Returns:
        ``(words, limit_s)``.
    """
    bound = math.inf if high_s is None else high_s
    for limit, words in SPOKEN_BUCKETS:
        if bound <= limit:
            return words, limit
    return SPOKEN_BUCKETS[-1][1], SPOKEN_BUCKETS[-1][0]


def erlang_quantile(k: int, rate: float, p: float) -> float:
    """Return the ``p`` quantile of the Erlang law (sum of ``k`` exponentials of ``rate``).

    Exact (bisection on the Poisson sum) up to k = 60, Wilson-Hilferty beyond (error < 0.5 %).

    Args:
        k: Shape, at least 1.
        rate: Rate of each exponential (per second).
        p: Probability, in (0, 1).

    Returns:
        The quantile in seconds.

    Raises:
        ValueError: If an argument is out of range.
    """
    if k < 1 or rate <= 0 or not 0 < p < 1:
        raise ValueError(
            f"erlang_quantile needs k >= 1, rate > 0, 0 < p < 1 (got {k}, {rate}, {p})"
        )
    if k == 1:
        return -math.log1p(-p) / rate
    if k > _EXACT_MAX_K:
        z = statistics.NormalDist().inv_cdf(p)
        x = k * (1 - 1 / (9 * k) + z / (3 * math.sqrt(k))) ** 3
        return max(0.0, x) / rate

    def cdf(x: float) -> float:
        # P(Gamma(k, 1) <= x) = 1 - sum_{n<k} e^-x x^n / n!
        term = math.exp(-x)
        total = term
        for n in range(1, k):
            term *= x / n
            total += term
        return 1.0 - total

    low, high = 0.0, float(k)
    while cdf(high) < p:
        high *= 2
    for _ in range(60):
        mid = (low + high) / 2
        if cdf(mid) < p:
            low = mid
        else:
            high = mid
    return high / rate


def estimate_wait(
    position: int,
    servers: float,
    handle_times: Iterable[float],
    *,
    default_handle_s: float = 300.0,
    min_samples: int = 20,
    confidence: float = 0.95,
) -> WaitEstimate:
    """Estimate the wait of the caller at ``position`` (see the module docstring).

    Args:
        position: 1-based position in the queue.
        servers: Effective number of agents (:func:`effective_servers`).
        handle_times: Recent handle times of the queue, seconds.
        default_handle_s: Prior mean handle time when samples are few.
        min_samples: Samples needed before the prior stops weighing.
        confidence: Coverage of the upper bound (0.5-0.999).

    Returns:
        The estimate, with the spoken bucket.

    Raises:
        ValueError: If ``position`` < 1 or ``confidence`` is out of range.
    """
    if position < 1:
        raise ValueError(f"position must be >= 1, got {position}")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence}")
    samples = [s for s in handle_times if s >= 0]
    count = len(samples)
    missing = max(0, min_samples - count)
    weight = count + missing
    mean = (sum(samples) + missing * default_handle_s) / weight if weight else default_handle_s
    if count >= 2:
        spread = statistics.stdev(samples)
    else:
        spread = default_handle_s  # exponential-like prior: standard deviation = mean
    z = statistics.NormalDist().inv_cdf(confidence)
    pessimistic = mean + z * spread / math.sqrt(max(weight, 1))
    if servers <= 0 or mean <= 0:
        words, limit = spoken_bucket(None)
        return WaitEstimate(position, servers, mean, 0.0, math.inf, None, words, limit)
    expected = position * mean / servers
    high = erlang_quantile(position, servers / pessimistic, confidence)
    low = erlang_quantile(position, servers / mean, 1 - confidence)
    words, limit = spoken_bucket(high)
    return WaitEstimate(position, servers, mean, low, expected, high, words, limit)


def estimate_for_call(
    router: Router,
    call_id: str,
    handle_times: Iterable[float],
    *,
    default_handle_s: float = 300.0,
    confidence: float = 0.95,
) -> WaitEstimate | None:
    """Estimate the wait of a call waiting in a router (position and staffing from the router).

    Args:
        router: The router holding the call.
        call_id: The call.
        handle_times: Recent handle times of the call's queue.
        default_handle_s: Prior mean handle time when samples are few.
        confidence: Coverage of the upper bound.

    Returns:
        The estimate, or None if the call is not waiting (unknown, ringing or answered).
    """
    position = router.position(call_id)
    if position is None:
        return None
    queue = router.waiting_call(call_id).skill
    busy = {q for q in router.config.queues if router.waiting(q)}
    servers = effective_servers(router.agents.values(), queue, busy)
    return estimate_wait(
        position,
        servers,
        handle_times,
        default_handle_s=default_handle_s,
        confidence=confidence,
    )
