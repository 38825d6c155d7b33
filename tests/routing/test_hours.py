from __future__ import annotations

from types import MappingProxyType

import pytest

from ivr_flows.hours import Schedule, TimeRange
from routing.hours import is_open, next_opening, next_transition, open_intervals, open_state

from .helpers import PARIS, at, office_hours


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (at(2025, 6, 2, 10, 0), at(2025, 6, 2, 12, 30)),  # open: closes for lunch
        (at(2025, 6, 2, 12, 30), at(2025, 6, 2, 13, 30)),  # closing instant: next opening
        (at(2025, 6, 2, 12, 45), at(2025, 6, 2, 13, 30)),
        (at(2025, 6, 2, 8, 0), at(2025, 6, 2, 9, 0)),
        (at(2025, 6, 3, 17, 0), at(2025, 6, 4, 9, 0)),
        (at(2025, 6, 6, 17, 30), at(2025, 6, 10, 9, 0)),  # weekend, then Whit Monday 9 June
        (at(2025, 4, 30, 18, 0), at(2025, 5, 2, 9, 0)),  # 1 May (Thursday) is closed
        (at(2025, 4, 18, 18, 0), at(2025, 4, 22, 9, 0)),  # Easter Monday 21 April
        (at(2025, 12, 24, 17, 0), at(2025, 12, 26, 9, 0)),  # Christmas
        (at(2026, 7, 13, 18, 0), at(2026, 7, 15, 9, 0)),  # 14 July
    ],
)
def test_next_transition(now: float, expected: float) -> None:
    assert next_transition(office_hours(), PARIS, now) == expected


def test_daylight_saving_changes_move_utc_not_local_times() -> None:
    # Spring forward on Sunday 30 March 2025, fall back on Sunday 26 October 2025.
    before = next_transition(office_hours(), PARIS, at(2025, 3, 28, 18, 0))
    after = next_transition(office_hours(), PARIS, at(2025, 10, 24, 18, 0))
    assert before == at(2025, 3, 31, 9, 0)
    assert after == at(2025, 10, 27, 9, 0)
    # 9:00 in Paris is 07:00 UTC in summer and 08:00 UTC in winter.
    assert int(before) % 86400 == 7 * 3600
    assert int(after) % 86400 == 8 * 3600


def test_always_open_and_never_open() -> None:
    assert next_transition(None, PARIS, at(2025, 6, 2, 3, 0)) is None
    assert is_open(None, PARIS, at(2025, 6, 2, 3, 0))
    never = Schedule("never", MappingProxyType({}))
    assert next_transition(never, PARIS, at(2025, 6, 2, 10, 0)) is None
    assert next_opening(never, PARIS, at(2025, 6, 2, 10, 0)) is None


def test_round_the_clock_schedule_closes_only_on_holidays() -> None:
    all_day = (TimeRange(0, 24 * 60),)
    schedule = Schedule(
        "h24", MappingProxyType({day: all_day for day in range(7)}), public_holidays="FR"
    )
    # Open across midnights from Friday 2 May 2025 to Thursday 29 May (Ascension).
    now = at(2025, 5, 2, 12, 0)
    assert next_transition(schedule, PARIS, now) == at(2025, 5, 8, 0, 0)  # 8 May
    assert next_transition(schedule, PARIS, at(2025, 5, 9, 0, 0)) == at(2025, 5, 29, 0, 0)
    state = open_state(schedule, PARIS, now)
    assert state.open and state.valid_at(now + 3600) and not state.valid_at(at(2025, 5, 8, 0))


def test_open_intervals_are_merged_and_skip_closed_days() -> None:
    schedule = office_hours()
    intervals = list(open_intervals(schedule, PARIS, at(2025, 5, 30, 12, 0), at(2025, 6, 3, 0, 0)))
    assert intervals == [
        (at(2025, 5, 30, 9, 0), at(2025, 5, 30, 12, 30)),
        (at(2025, 5, 30, 13, 30), at(2025, 5, 30, 17, 0)),
        (at(2025, 6, 2, 9, 0), at(2025, 6, 2, 12, 30)),
        (at(2025, 6, 2, 13, 30), at(2025, 6, 2, 17, 0)),
    ]
