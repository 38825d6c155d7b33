"""Opening hours on the routing clock: open intervals, next opening, next change.

Routing time is a float: POSIX seconds (``time.time()`` in production, anything in tests).
Schedules are the :class:`ivr_flows.hours.Schedule` the flows already use (weekly ranges,
French public holidays through ``holidays``, local closures): this module only converts them
to absolute intervals on that clock, through :mod:`zoneinfo` so daylight-saving changes are the
tz database's business. ``None`` as a schedule means "always open".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ivr_flows.hours import Schedule

_DAY = dt.timedelta(days=1)
_CHUNK_DAYS = 14
DEFAULT_HORIZON_DAYS = 400
"""How far ahead :func:`next_transition` and :func:`next_opening` look (a year and a bit)."""


def local_time(now: float, tz: ZoneInfo) -> dt.datetime:
    """Convert routing time to an aware local datetime.

    Args:
        now: POSIX seconds.
        tz: The service's timezone.

    Returns:
        The local wall-clock time.
    """
    return dt.datetime.fromtimestamp(now, tz)


def is_open(schedule: Schedule | None, tz: ZoneInfo, now: float) -> bool:
    """Tell whether a schedule is open at ``now``.

    Args:
        schedule: The schedule, or None for "always open".
        tz: Timezone of the schedule.
        now: POSIX seconds.

    Returns:
        True when open (never on a public holiday or a closure day).
    """
    return schedule is None or schedule.is_open(local_time(now, tz))


def _at(day: dt.date, minutes: int, tz: ZoneInfo) -> float:
    if minutes >= 24 * 60:
        day, minutes = day + _DAY, minutes - 24 * 60
    hour, minute = divmod(minutes, 60)
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz).timestamp()


def _day_intervals(schedule: Schedule, tz: ZoneInfo, day: dt.date) -> list[tuple[float, float]]:
    if schedule.is_closed_day(day):
        return []
    return [
        (_at(day, r.start_minutes, tz), _at(day, r.end_minutes, tz))
        for r in schedule.weekly.get(day.weekday(), ())
    ]


def open_intervals(
    schedule: Schedule, tz: ZoneInfo, start: float, end: float
) -> Iterator[tuple[float, float]]:
    """Yield the open intervals ``[open, close)`` that overlap ``[start, end)``, in order.

    Intervals that touch (``24:00`` one day, ``00:00`` the next) are merged, so a yielded
    close is a real closing time. The first and last intervals are not clipped.

    Args:
        schedule: The schedule.
        tz: Its timezone.
        start: Beginning of the window (POSIX seconds).
        end: End of the window.

    Yields:
        ``(open, close)`` pairs in POSIX seconds.
    """
    day = local_time(start, tz).date() - _DAY
    last_day = local_time(end, tz).date() + _DAY
    pending: tuple[float, float] | None = None
    while day <= last_day:
        for opening, closing in _day_intervals(schedule, tz, day):
            if pending is not None and opening <= pending[1]:
                pending = (pending[0], max(pending[1], closing))
                continue
            if pending is not None and pending[1] > start:
                yield pending
            if opening >= end:
                return
            pending = (opening, closing)
        day += _DAY
    if pending is not None and pending[1] > start and pending[0] < end:
        yield pending


def next_transition(
    schedule: Schedule | None,
    tz: ZoneInfo,
    now: float,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
) -> float | None:
    """Return when the schedule next opens (if closed at ``now``) or closes (if open).

    Args:
        schedule: The schedule, or None for "always open".
        tz: Its timezone.
        now: POSIX seconds.
        horizon_days: How far ahead to look.

    Returns:
        The instant of the next change, strictly after ``now``, or None if the state does not
        change within the horizon.
    """
    if schedule is None:
        return None
    chunk = _CHUNK_DAYS * 86400.0
    horizon = now + horizon_days * 86400.0
    t = now
    if is_open(schedule, tz, now):
        # Follow the interval holding ``t``; it may run past the chunk (open all week).
        while t < horizon:
            closing = next(
                (c for o, c in open_intervals(schedule, tz, t, t + chunk) if o <= t < c), None
            )
            if closing is None:
                return t
            if closing < t + chunk:
                return closing
            t = closing
        return None
    while t < horizon:
        for opening, _ in open_intervals(schedule, tz, t, t + chunk):
            if opening > now:
                return opening
        t += chunk
    return None


def next_opening(
    schedule: Schedule | None,
    tz: ZoneInfo,
    now: float,
    *,
    horizon_days: int = DEFAULT_HORIZON_DAYS,
) -> float | None:
    """Return ``now`` if open, else the next opening time.

    Args:
        schedule: The schedule, or None for "always open".
        tz: Its timezone.
        now: POSIX seconds.
        horizon_days: How far ahead to look.

    Returns:
        The instant, or None if the schedule never opens within the horizon.
    """
    if is_open(schedule, tz, now):
        return now
    return next_transition(schedule, tz, now, horizon_days=horizon_days)


@dataclass(frozen=True, slots=True)
class OpenState:
    """Whether a queue is open, and until when that answer holds."""

    open: bool
    """Open at the instant it was computed."""
    until: float | None
    """When it changes (exclusive); None if it does not change within the horizon."""

    def valid_at(self, now: float) -> bool:
        """Tell whether this state still holds at ``now``.

        Args:
            now: POSIX seconds, not before the instant the state was computed.

        Returns:
            True if ``now`` is before the next change.
        """
        return self.until is None or now < self.until


def open_state(schedule: Schedule | None, tz: ZoneInfo, now: float) -> OpenState:
    """Compute whether a schedule is open at ``now`` and until when.

    Args:
        schedule: The schedule, or None for "always open".
        tz: Its timezone.
        now: POSIX seconds.

    Returns:
        The state and its end.
    """
    return OpenState(is_open(schedule, tz, now), next_transition(schedule, tz, now))
