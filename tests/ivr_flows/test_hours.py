from __future__ import annotations

import datetime as dt
from types import MappingProxyType
from zoneinfo import ZoneInfo

import pytest

from ivr_flows import SOLIDARITES_FLOW, EnterNode, Flow, Schedule, TimeRange, load_flow, start
from ivr_flows.hours import number_fr, speak_time_fr

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.UTC


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(SOLIDARITES_FLOW)


def entered(flow: Flow, now: dt.datetime) -> str:
    """Which branch the shipped flow takes at ``now``."""
    _, actions = start(flow, now=now)
    entered_node = actions[1]
    assert isinstance(entered_node, EnterNode)
    return entered_node.node_id


def schedule(flow: Flow) -> Schedule:
    return flow.schedules["solidarites"]


@pytest.mark.parametrize(
    ("when", "is_open"),
    [
        (dt.datetime(2025, 6, 2, 10, 0, tzinfo=PARIS), True),  # Monday 10:00
        (dt.datetime(2025, 6, 2, 9, 0, tzinfo=PARIS), True),  # opening minute
        (dt.datetime(2025, 6, 2, 8, 59, 59, tzinfo=PARIS), False),
        (dt.datetime(2025, 6, 2, 12, 29, tzinfo=PARIS), True),
        (dt.datetime(2025, 6, 2, 12, 30, tzinfo=PARIS), False),  # closing time is exclusive
        (dt.datetime(2025, 6, 2, 12, 45, tzinfo=PARIS), False),  # lunch break
        (dt.datetime(2025, 6, 2, 13, 30, tzinfo=PARIS), True),
        (dt.datetime(2025, 6, 6, 16, 59, tzinfo=PARIS), True),  # Friday
        (dt.datetime(2025, 6, 6, 17, 0, tzinfo=PARIS), False),
        (dt.datetime(2025, 6, 7, 10, 0, tzinfo=PARIS), False),  # Saturday
        (dt.datetime(2025, 6, 8, 10, 0, tzinfo=PARIS), False),  # Sunday
    ],
)
def test_opening_hours(flow: Flow, when: dt.datetime, is_open: bool) -> None:
    assert schedule(flow).is_open(when) is is_open
    assert entered(flow, when) == ("welcome" if is_open else "welcome_closed")


@pytest.mark.parametrize(
    "day",
    [
        dt.date(2025, 5, 1),  # fête du Travail (Thursday)
        dt.date(2025, 7, 14),  # fête nationale (Monday)
        dt.date(2025, 4, 21),  # lundi de Pâques
        dt.date(2026, 4, 6),  # lundi de Pâques 2026
        dt.date(2025, 11, 11),
        dt.date(2025, 12, 25),
    ],
)
def test_public_holidays(flow: Flow, day: dt.date) -> None:
    when = dt.datetime.combine(day, dt.time(10, 0), tzinfo=PARIS)
    assert schedule(flow).is_public_holiday(day)
    assert not schedule(flow).is_open(when)
    assert entered(flow, when) == "welcome_holiday"


def test_ordinary_days_are_not_holidays(flow: Flow) -> None:
    assert not schedule(flow).is_public_holiday(dt.date(2025, 6, 2))
    # Good Friday is a holiday only in Alsace-Moselle, not in the national calendar.
    assert not schedule(flow).is_public_holiday(dt.date(2025, 4, 18))


def test_subdivision_calendar() -> None:
    moselle = Schedule("m", MappingProxyType({}), public_holidays="FR", subdivision="57")
    assert moselle.is_public_holiday(dt.date(2025, 4, 18))  # vendredi saint
    assert moselle.is_public_holiday(dt.date(2025, 12, 26))


def test_holiday_uses_local_date(flow: Flow) -> None:
    # 30 April 2025 22:30 UTC is already 1 May 00:30 in Paris.
    assert entered(flow, dt.datetime(2025, 4, 30, 22, 30, tzinfo=UTC)) == "welcome_holiday"
    assert entered(flow, dt.datetime(2025, 4, 30, 21, 30, tzinfo=UTC)) == "welcome_closed"


@pytest.mark.parametrize(
    ("utc", "is_open"),
    [
        # Friday 28 March 2025, still winter time (UTC+1).
        (dt.datetime(2025, 3, 28, 7, 30, tzinfo=UTC), False),  # 08:30 local
        (dt.datetime(2025, 3, 28, 8, 30, tzinfo=UTC), True),  # 09:30 local
        (dt.datetime(2025, 3, 28, 15, 30, tzinfo=UTC), True),  # 16:30 local
        # Monday 31 March 2025, summer time (UTC+2) since Sunday 30 March.
        (dt.datetime(2025, 3, 31, 7, 30, tzinfo=UTC), True),  # 09:30 local
        (dt.datetime(2025, 3, 31, 15, 30, tzinfo=UTC), False),  # 17:30 local
        # Friday 24 October 2025, summer time; Monday 27 October, winter time again.
        (dt.datetime(2025, 10, 24, 6, 30, tzinfo=UTC), False),  # 08:30 local
        (dt.datetime(2025, 10, 24, 14, 30, tzinfo=UTC), True),  # 16:30 local
        (dt.datetime(2025, 10, 27, 7, 30, tzinfo=UTC), False),  # 08:30 local
        (dt.datetime(2025, 10, 27, 15, 30, tzinfo=UTC), True),  # 16:30 local
        (dt.datetime(2025, 10, 27, 16, 30, tzinfo=UTC), False),  # 17:30 local
    ],
)
def test_dst_boundaries(flow: Flow, utc: dt.datetime, is_open: bool) -> None:
    assert entered(flow, utc) == ("welcome" if is_open else "welcome_closed")


def test_closures_and_other_timezones() -> None:
    sched = Schedule(
        "s",
        MappingProxyType({0: (TimeRange(9 * 60, 17 * 60),)}),
        closures=frozenset({dt.date(2025, 6, 2)}),
    )
    assert not sched.is_open(dt.datetime(2025, 6, 2, 10, 0, tzinfo=PARIS))
    assert sched.is_open(dt.datetime(2025, 6, 9, 10, 0, tzinfo=PARIS))
    assert not sched.is_public_holiday(dt.date(2025, 5, 1))  # no calendar configured


def test_speak_fr() -> None:
    weekly = {
        0: (TimeRange(9 * 60, 12 * 60 + 30), TimeRange(13 * 60 + 30, 17 * 60)),
        1: (TimeRange(9 * 60, 12 * 60 + 30), TimeRange(13 * 60 + 30, 17 * 60)),
        2: (TimeRange(9 * 60, 12 * 60 + 30), TimeRange(13 * 60 + 30, 17 * 60)),
        3: (TimeRange(9 * 60, 12 * 60 + 30), TimeRange(13 * 60 + 30, 17 * 60)),
        5: (TimeRange(9 * 60, 12 * 60),),
        6: (TimeRange(21 * 60 + 15, 24 * 60),),
    }
    sched = Schedule("s", MappingProxyType(weekly))
    assert sched.speak_fr() == (
        "du lundi au jeudi, de neuf heures à douze heures trente, et de treize heures trente à "
        "dix-sept heures ; le samedi, de neuf heures à douze heures ; "
        "et le dimanche, de vingt et une heures quinze à minuit"
    )
    two = Schedule("t", MappingProxyType({0: (TimeRange(60, 120),), 2: (TimeRange(60, 120),)}))
    assert two.speak_fr() == "le lundi et le mercredi, d'une heure à deux heures"


@pytest.mark.parametrize(
    ("n", "word"),
    [(0, "zéro"), (1, "un"), (16, "seize"), (17, "dix-sept"), (20, "vingt"), (21, "vingt et un"),
     (31, "trente et un"), (45, "quarante-cinq"), (59, "cinquante-neuf")],
)  # fmt: skip
def test_number_fr(n: int, word: str) -> None:
    assert number_fr(n) == word


def test_number_fr_limits() -> None:
    assert speak_time_fr(21 * 60) == "vingt et une heures"
    assert speak_time_fr(60 + 5) == "une heure cinq"
    with pytest.raises(ValueError):
        number_fr(60)
