"""Opening hours and French public holidays, evaluated at a time given by the caller.

Nothing here reads the clock: every query takes an aware ``datetime``. Local time is obtained
with :mod:`zoneinfo`, so daylight-saving transitions (last Sunday of March and of October in
Europe/Paris) are handled by the tz database, not by arithmetic.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import holidays

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Weekday keys accepted in ``hours:`` sections, Monday first (``date.weekday()`` order)."""

_DAY_NAMES_FR = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


@dataclass(frozen=True, slots=True, order=True)
class TimeRange:
    """A half-open local time interval ``[start, end)`` within one day, in minutes."""

    start_minutes: int
    """Opening time in minutes since midnight (inclusive)."""
    end_minutes: int
    """Closing time in minutes since midnight (exclusive); 1440 stands for ``24:00``."""

    def contains(self, t: dt.time) -> bool:
        """Tell whether local time ``t`` falls inside the range.

        Args:
            t: A naive local time of day.

        Returns:
            True if ``start <= t < end``.
        """
        minutes = t.hour * 60 + t.minute + (t.second + t.microsecond / 1e6) / 60
        return self.start_minutes <= minutes < self.end_minutes


@dataclass(frozen=True, slots=True)
class Schedule:
    """A named weekly schedule with closures and an optional public-holiday calendar."""

    name: str
    """Name of the schedule in the flow's ``hours:`` section."""
    weekly: Mapping[int, tuple[TimeRange, ...]]
    """Opening ranges per weekday (0 = Monday); missing days are closed."""
    closures: frozenset[dt.date] = field(default_factory=frozenset)
    """Local dates on which the service is exceptionally closed."""
    public_holidays: str | None = None
    """Country code for :func:`holidays.country_holidays` (e.g. ``"FR"``), or ``None``."""
    subdivision: str | None = None
    """Optional subdivision for the holiday calendar (e.g. ``"57"`` for Moselle)."""

    def is_public_holiday(self, day: dt.date) -> bool:
        """Tell whether ``day`` is a public holiday of this schedule's calendar.

        Args:
            day: A local date.

        Returns:
            True if the schedule has a holiday calendar and ``day`` is in it.
        """
        if self.public_holidays is None:
            return False
        return day in _calendar(self.public_holidays, self.subdivision, day.year)

    def is_closed_day(self, day: dt.date) -> bool:
        """Tell whether ``day`` is a public holiday or an exceptional closure.

        Args:
            day: A local date.

        Returns:
            True if the service does not open at all on ``day``.
        """
        return day in self.closures or self.is_public_holiday(day)

    def is_open(self, local: dt.datetime) -> bool:
        """Tell whether the service is open at a local wall-clock time.

        Args:
            local: A datetime already converted to the schedule's timezone.

        Returns:
            True if ``local`` falls inside an opening range of a day that is not closed.
        """
        day = local.date()
        if self.is_closed_day(day):
            return False
        return any(r.contains(local.time()) for r in self.weekly.get(day.weekday(), ()))

    def speak_fr(self) -> str:
        """Describe the weekly hours in spoken French, for TTS.

        Returns:
            E.g. ``"du lundi au vendredi, de neuf heures à douze heures trente, et de treize
            heures trente à dix-sept heures"``.
        """
        groups: dict[tuple[TimeRange, ...], list[int]] = {}
        for day in range(7):
            ranges = self.weekly.get(day, ())
            if ranges:
                groups.setdefault(ranges, []).append(day)
        if not groups:
            return "sur aucun créneau"
        phrases = [
            f"{_speak_days(days)}, {_speak_ranges(ranges)}" for ranges, days in groups.items()
        ]
        if len(phrases) == 1:
            return phrases[0]
        return " ; ".join(phrases[:-1]) + " ; et " + phrases[-1]


@functools.lru_cache(maxsize=64)
def _calendar(country: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    return holidays.country_holidays(country, subdiv=subdivision, years=year)


def check_calendar(country: str, subdivision: str | None) -> str | None:
    """Check that a holiday calendar exists.

    Args:
        country: ISO 3166 country code, e.g. ``"FR"``.
        subdivision: Optional subdivision code.

    Returns:
        ``None`` if the calendar is usable, else an error message.
    """
    try:
        _calendar(country, subdivision, 2000)
    except (NotImplementedError, KeyError, ValueError) as exc:
        return (
            f"unknown holiday calendar {country!r}"
            + (f" subdivision {subdivision!r}" if subdivision else "")
            + f" ({exc})"
        )
    return None


_UNITS_FR = (
    "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
    "onze", "douze", "treize", "quatorze", "quinze", "seize", "dix-sept", "dix-huit", "dix-neuf",
)  # fmt: skip
_TENS_FR = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante"}


def number_fr(n: int, *, feminine: bool = False) -> str:
    """Spell a number from 0 to 59 in French words.

    Args:
        n: The number.
        feminine: Use "une" for 1 (as in "une heure", "vingt et une heures").

    Returns:
        The number in words, e.g. ``"vingt et un"``, ``"dix-sept"``.

    Raises:
        ValueError: If ``n`` is outside 0-59.
    """
    if not 0 <= n <= 59:
        raise ValueError(f"number_fr handles 0-59, got {n}")
    tens, unit = divmod(n, 10)
    if n < 20:
        word = _UNITS_FR[n]
    elif unit == 0:
        word = _TENS_FR[tens]
    elif unit == 1:
        word = f"{_TENS_FR[tens]} et un"
    else:
        word = f"{_TENS_FR[tens]}-{_UNITS_FR[unit]}"
    if feminine and word.endswith("un"):
        word += "e"
    return word


def speak_time_fr(minutes: int) -> str:
    """Say a time of day in French words, e.g. 810 → ``"treize heures trente"``.

    Args:
        minutes: Minutes since midnight (0-1440).

    Returns:
        The time in words.
    """
    hour, minute = divmod(minutes, 60)
    if hour == 24 and minute == 0:
        return "minuit"
    word = "heure" if hour in (0, 1) else "heures"
    text = f"{number_fr(hour, feminine=True)} {word}"
    if minute:
        text += f" {number_fr(minute)}"
    return text


def _speak_days(days: list[int]) -> str:
    runs: list[list[int]] = []
    for day in days:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts: list[str] = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"du {_DAY_NAMES_FR[run[0]]} au {_DAY_NAMES_FR[run[-1]]}")
        else:
            parts.extend(f"le {_DAY_NAMES_FR[d]}" for d in run)
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " et " + parts[-1]


def _speak_ranges(ranges: tuple[TimeRange, ...]) -> str:
    parts: list[str] = []
    for r in ranges:
        start = speak_time_fr(r.start_minutes)
        # French elides "de une" into "d'une" (but not "de onze", "de huit").
        de = "d'" if start.startswith("une ") else "de "
        parts.append(f"{de}{start} à {speak_time_fr(r.end_minutes)}")
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + ", et " + parts[-1]


_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})")


def parse_weekdays(key: str) -> list[int] | None:
    """``mon-fri``, ``sat``, ``mon,wed`` -> day indexes (Monday 0), or None if invalid."""
    days: list[int] = []
    for part in key.split(","):
        part = part.strip().lower()
        first, sep, last = part.partition("-")
        if first not in WEEKDAYS or (sep and last not in WEEKDAYS):
            return None
        lo = WEEKDAYS.index(first)
        hi = WEEKDAYS.index(last) if sep else lo
        if hi < lo:
            return None
        days.extend(range(lo, hi + 1))
    return days


def _parse_time(text: str, *, allow_midnight_end: bool) -> int | None:
    match = _TIME_RE.fullmatch(text.strip())
    if match is None:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if allow_midnight_end and hour == 24 and minute == 0:
        return 24 * 60
    if hour > 23 or minute > 59:
        return None
    return hour * 60 + minute


def parse_time_range(text: str) -> TimeRange | None:
    """``09:00-12:30`` -> minutes from midnight (``24:00`` allowed as an end), or None."""
    start_text, sep, end_text = text.partition("-")
    if not sep:
        return None
    start = _parse_time(start_text, allow_midnight_end=False)
    end = _parse_time(end_text, allow_midnight_end=True)
    if start is None or end is None or end <= start:
        return None
    return TimeRange(start, end)
