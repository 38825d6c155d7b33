"""Generate the Grafana dashboards and the Grafana provisioning files of the call centre.

The dashboards are code: this module describes them with a few frozen dataclasses and writes
``dashboards/json/*.json`` (checked in, mounted by the compose file into
``/var/lib/grafana/dashboards/callcenter``) and the provisioning files under
``dashboards/provisioning/``. ``tests/dashboards`` checks that the checked-in files are this
module's output, that the JSON is well formed for Grafana, and that every metric a query names
is exported by the running service (or is a recording rule of ``deploy/prometheus/alerts.yml``).

Panel titles are French (supervisors read them); code and descriptions of the queries are
English. KPI definitions: ``docs/kpis.md``; catalogue: ``docs/metrics.md``.

    python -m dashboards.generate            # write the files
    python -m dashboards.generate --check    # exit 1 if the checked-in files differ
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

HERE = Path(__file__).resolve().parent
JSON_DIR = HERE / "json"
PROVISIONING_DIR = HERE / "provisioning"

DATASOURCE_UID = "callcenter-prometheus"
"""The uid of the provisioned Prometheus data source every panel refers to."""
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}
PROMETHEUS_URL = "http://prometheus:9090"
"""Prometheus as the compose network names it."""
DASHBOARDS_PATH = "/var/lib/grafana/dashboards/callcenter"
"""Where the compose file mounts ``dashboards/json`` in the Grafana container."""
SCHEMA_VERSION = 39
"""Grafana 10.4/11 dashboard schema."""

# Targets of issue 7 (docs/kpis.md): drawn as thresholds on the KPI panels.
TARGET_ANSWERED = 0.8
"""80 % of the calls offered to a queue answered by an agent."""
TARGET_ABANDONED = 0.05
"""Abandonment under 5 %."""
TARGET_SERVICE_LEVEL = 0.8
"""80 % of the calls answered within 60 s."""

PanelKind = Literal["timeseries", "stat", "gauge", "bargauge"]

# Label filters of the template variables.
INST = 'instance=~"$instance"'
QUEUE = 'queue=~"$queue"'


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL query of a panel."""

    expr: str
    """The PromQL expression (may use ``$instance``, ``$queue``, ``$__range``)."""
    legend: str = ""
    """Legend format, e.g. ``{{queue}}``."""
    instant: bool = False
    """Instant query (stat, gauge, bar gauge over ``$__range``) instead of a range query."""


@dataclass(frozen=True, slots=True)
class Step:
    """One threshold step: from ``value`` upwards the colour is ``color``."""

    value: float | None
    """Lower bound; ``None`` for the base step."""
    color: str
    """Grafana colour name."""


NEUTRAL: tuple[Step, ...] = (Step(None, "green"),)


def at_least(target: float) -> tuple[Step, ...]:
    """Red under ``target``, green from it (a ratio that should be high)."""
    return (Step(None, "red"), Step(target, "green"))


def at_most(target: float) -> tuple[Step, ...]:
    """Green under ``target``, red from it (a ratio or a count that should be low)."""
    return (Step(None, "green"), Step(target, "red"))


@dataclass(frozen=True, slots=True)
class Panel:
    """A panel; its place on the grid is computed from the order and the sizes."""

    title: str
    """French title."""
    kind: PanelKind
    """Grafana panel type."""
    queries: tuple[Query, ...]
    """Queries, refIds A, B, C... in order."""
    unit: str = "short"
    """Grafana unit id (``percentunit``, ``s``, ``bytes``, ``short``, ``cps``...)."""
    width: int = 6
    """Columns out of 24."""
    height: int = 6
    """Grid rows (30 px each)."""
    description: str = ""
    """Shown in the panel's (i) tooltip: what the figure means and how it is computed."""
    thresholds: tuple[Step, ...] = NEUTRAL
    """Colour steps; on time series they are drawn as lines when ``draw_thresholds``."""
    draw_thresholds: bool = False
    """Draw the thresholds as dashed lines on a time series (targets)."""
    min: float | None = None
    """Axis/gauge minimum."""
    max: float | None = None
    """Axis/gauge maximum."""
    stacked: bool = False
    """Stack the series of a time series."""
    bars: bool = False
    """Draw a time series as bars (daily/weekly figures)."""
    interval: str = ""
    """Minimum query step (``1d`` for daily bars)."""
    time_from: str = ""
    """Relative time override of the panel (``30d``), empty to follow the dashboard."""
    decimals: int | None = None
    """Decimals shown, ``None`` for Grafana's choice."""


@dataclass(frozen=True, slots=True)
class Row:
    """A titled row of panels."""

    title: str
    """French title."""
    panels: tuple[Panel, ...]
    """Panels, laid out left to right, wrapping at 24 columns."""


@dataclass(frozen=True, slots=True)
class Dashboard:
    """One dashboard."""

    uid: str
    """Stable uid (links from the panel and the runbooks)."""
    title: str
    """French title."""
    description: str
    """What the dashboard is for."""
    rows: tuple[Row, ...]
    """Rows in order."""
    time_from: str = "now-1h"
    """Default time range start."""
    time_to: str = "now"
    """Default time range end."""
    refresh: str = "30s"
    """Auto-refresh."""
    queue_variable: bool = True
    """Offer the ``$queue`` variable."""
    tags: tuple[str, ...] = field(default=("callcenter",))
    """Grafana tags."""


# --- KPI expressions (the definitions of docs/kpis.md, as in deploy/prometheus/alerts.yml) ---


def _inc(selector: str, window: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group}(increase({selector}[{window}]))"


def _inc0(selector: str, window: str, by: str = "") -> str:
    # 0 rather than no data when the labelled histogram has no such child yet (per group: a
    # 0 for every group that has any wait at all).
    if not by:
        return f"({_inc(selector, window)} or vector(0))"
    return f"({_inc(selector, window, by)} or {_inc(wait(), window, by)} * 0)"


def wait(result: str = "", le: str = "", part: str = "count") -> str:
    """A selector of ``callcenter_queue_wait_seconds`` for the ``$queue`` variable."""
    labels = [QUEUE]
    if result:
        labels.append(f'result="{result}"')
    if le:
        labels.append(f'le="{le}"')
    suffix = "bucket" if le else part
    return f"callcenter_queue_wait_seconds_{suffix}{{{', '.join(labels)}}}"


def short_abandons(window: str, by: str = "") -> str:
    """Abandons within 5 s (misdials): out of both sides of the service level and abandonment."""
    return _inc0(wait("abandoned", "5.0"), window, by)


def ended(window: str, by: str = "") -> str:
    """Calls whose wait ended in the queue, short abandons excluded.

    Ratios divide by ``(ended > 0)``: no call gives "no data" rather than NaN.
    """
    return f"({_inc0(wait(), window, by)} - {short_abandons(window, by)})"


def service_level(seconds: int, window: str, by: str = "") -> str:
    """Answered within ``seconds`` / ended (short abandons excluded), overall or per ``by``."""
    answered = _inc0(wait("answered", f"{seconds}.0"), window, by)
    return f"{answered} / ({ended(window, by)} > 0)"


def abandonment(window: str, by: str = "") -> str:
    """Abandoned after 5 s / ended (short abandons excluded), overall or per ``by``."""
    abandoned = f"({_inc0(wait('abandoned'), window, by)} - {short_abandons(window, by)})"
    return f"{abandoned} / ({ended(window, by)} > 0)"


def answered_rate(window: str) -> str:
    """Answered by an agent / offered (joined the queue)."""
    return (
        f"{_inc0(f'callcenter_queue_answered_total{{{QUEUE}}}', window)}"
        f" / ({_inc(f'callcenter_queue_joined_total{{{QUEUE}}}', window)} > 0)"
    )


def asa(window: str) -> str:
    """Mean wait of answered calls."""
    return f"{_inc(wait('answered', part='sum'), window)} / ({_inc(wait('answered'), window)} > 0)"


def aht(window: str) -> str:
    """Mean handle time (talk + wrap-up)."""
    return (
        f"{_inc(f'callcenter_queue_handle_seconds_sum{{{QUEUE}}}', window)}"
        f" / ({_inc(f'callcenter_queue_handle_seconds_count{{{QUEUE}}}', window)} > 0)"
    )


def first_contact_resolution(window: str) -> str:
    """Wrap-ups flagged resolved / wrap-ups flagged either way."""
    resolved = f'callcenter_queue_wrapups_total{{{QUEUE}, resolved="yes"}}'
    flagged = f'callcenter_queue_wrapups_total{{{QUEUE}, resolved=~"yes|no"}}'
    return f"{_inc(resolved, window)} / ({_inc(flagged, window)} > 0)"


def quantile(q: float, bucket_selector: str, window: str, by: str = "") -> str:
    """``histogram_quantile`` of a classic histogram, summed over instances."""
    labels = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, sum by ({labels}) (rate({bucket_selector}[{window}])))"


# --- the four dashboards ---------------------------------------------------------------------


def live_supervision() -> Dashboard:
    """Queues, waits, agents and callbacks now (the supervisors' wall screen)."""
    queues = Row(
        "Files d'attente",
        (
            Panel(
                "Appels en attente",
                "stat",
                (Query(f"sum(queue:callcenter_queue_waiting:max{{{QUEUE}}})", instant=True),),
                description="Calls waiting or ringing an agent now, all selected queues "
                "(max over nodes: every node sees the shared queues).",
                thresholds=(Step(None, "green"), Step(5, "orange"), Step(10, "red")),
                width=4,
                height=5,
            ),
            Panel(
                "Appels en cours",
                "stat",
                (Query(f"sum(callcenter_active_calls{{{INST}}})", instant=True),),
                description="Calls in progress on the selected nodes (bot, queue, agent).",
                width=4,
                height=5,
            ),
            Panel(
                "Niveau de service 60 s (15 min)",
                "stat",
                (
                    Query(
                        f"sum(queue:callcenter_queue_answered_60s:increase15m{{{QUEUE}}})"
                        f" / (sum(queue:callcenter_queue_ended:increase15m{{{QUEUE}}}) > 0)",
                        instant=True,
                    ),
                ),
                unit="percentunit",
                description="Answered within 60 s / calls that ended in the queue over the last "
                "15 minutes, abandons within 5 s excluded. Target 80 %.",
                thresholds=at_least(TARGET_SERVICE_LEVEL),
                decimals=0,
                width=4,
                height=5,
            ),
            Panel(
                "Taux d'abandon (1 h)",
                "stat",
                (
                    Query(
                        f"sum(queue:callcenter_queue_abandoned:increase1h{{{QUEUE}}})"
                        f" / (sum(queue:callcenter_queue_ended:increase1h{{{QUEUE}}}) > 0)",
                        instant=True,
                    ),
                ),
                unit="percentunit",
                description="Callers who hung up after more than 5 s of waiting / calls that "
                "ended in the queue, last hour. Target under 5 %.",
                thresholds=at_most(TARGET_ABANDONED),
                decimals=1,
                width=4,
                height=5,
            ),
            Panel(
                "Rappels en attente",
                "stat",
                (Query("max(callcenter_callbacks_pending)", instant=True),),
                description="Callbacks waiting to be placed (shared store: max over nodes).",
                width=4,
                height=5,
            ),
            Panel(
                "Rappels en retard",
                "stat",
                (Query("max(callcenter_callbacks_overdue)", instant=True),),
                description="Pending callbacks past their due time.",
                thresholds=at_most(1),
                width=4,
                height=5,
            ),
            Panel(
                "Appels en attente par file",
                "timeseries",
                (Query(f"queue:callcenter_queue_waiting:max{{{QUEUE}}}", "{{queue}}"),),
                description="Calls waiting or ringing per queue (max over nodes).",
                min=0,
                width=12,
                height=8,
            ),
            Panel(
                "Niveau de service 60 s par file (15 min glissantes)",
                "timeseries",
                (Query(f"queue:callcenter_service_level_60s:ratio15m{{{QUEUE}}}", "{{queue}}"),),
                unit="percentunit",
                description="Recording rule queue:callcenter_service_level_60s:ratio15m (the "
                "alert CallcenterServiceLevelLow reads it). Dashed line: the 80 % target.",
                thresholds=at_least(TARGET_SERVICE_LEVEL),
                draw_thresholds=True,
                min=0,
                max=1,
                width=12,
                height=8,
            ),
        ),
    )
    waits = Row(
        "Attente",
        (
            Panel(
                "Attente avant décroché, 90e centile (15 min)",
                "timeseries",
                (
                    Query(
                        quantile(
                            0.9,
                            f'callcenter_queue_wait_seconds_bucket{{{QUEUE}, result="answered"}}',
                            "15m",
                            by="queue",
                        ),
                        "{{queue}}",
                    ),
                ),
                unit="s",
                description="90 % of the answered callers waited less than this (estimated "
                "from the histogram buckets 5, 10, 20, 30, 60, 120 s...).",
                thresholds=(Step(None, "green"), Step(60, "red")),
                draw_thresholds=True,
                min=0,
                width=8,
                height=8,
            ),
            Panel(
                "Temps moyen d'attente avant décroché (ASA, 15 min)",
                "timeseries",
                (
                    Query(
                        "sum by (queue) (increase("
                        f'callcenter_queue_wait_seconds_sum{{{QUEUE}, result="answered"}}[15m]))'
                        " / sum by (queue) (increase("
                        f'callcenter_queue_wait_seconds_count{{{QUEUE}, result="answered"}}[15m]))',
                        "{{queue}}",
                    ),
                ),
                unit="s",
                description="Mean wait of the calls agents answered, last 15 minutes.",
                min=0,
                width=8,
                height=8,
            ),
            Panel(
                "Entrées, décrochés, abandons (par 15 min)",
                "timeseries",
                (
                    Query(
                        _inc(f"callcenter_queue_joined_total{{{QUEUE}, {INST}}}", "15m"),
                        "Entrés en file",
                    ),
                    Query(
                        _inc(f"callcenter_queue_answered_total{{{QUEUE}, {INST}}}", "15m"),
                        "Décrochés",
                    ),
                    Query(
                        _inc(f"callcenter_queue_abandoned_total{{{QUEUE}, {INST}}}", "15m"),
                        "Abandons",
                    ),
                    Query(
                        _inc(
                            f"callcenter_queue_wait_seconds_count{{{QUEUE}, {INST}, "
                            'result="callback"}',
                            "15m",
                        ),
                        "Rappel (place gardée)",
                    ),
                    Query(
                        "sum by (reason) (increase("
                        f"callcenter_queue_refused_total{{{QUEUE}, {INST}}}[15m]))",
                        "Refusés : {{reason}}",
                    ),
                ),
                description="Calls per 15 minutes: joined a queue, answered by an agent, "
                "abandoned, kept their place as a callback, refused or left (closed, maximum "
                "wait, removed on request; full and unstaffed: turned away at the door, they "
                "never joined the queue).",
                min=0,
                width=8,
                height=8,
            ),
        ),
    )
    agents = Row(
        "Conseillers",
        (
            Panel(
                "Conseillers connectés par file",
                "bargauge",
                (
                    Query(
                        f"queue:callcenter_queue_agents:max{{{QUEUE}}}", "{{queue}}", instant=True
                    ),
                ),
                description="Agents logged in (any state but offline, paused included) who "
                "have the queue's skill (max over nodes). Red at 0: an open queue with callers "
                "waiting or turned away raises CallcenterNoAgentLoggedIn.",
                thresholds=at_least(1),
                decimals=0,
                width=6,
                height=8,
            ),
            Panel(
                "Conseillers par état",
                "bargauge",
                (Query("max by (state) (callcenter_agents)", "{{state}}", instant=True),),
                description="Agents logged in to routing, by state (max over nodes).",
                width=6,
                height=8,
            ),
            Panel(
                "Conseillers en pause par motif",
                "bargauge",
                (Query("max by (reason) (callcenter_agents_paused)", "{{reason}}", instant=True),),
                description="Paused agents by the pause reason they chose (routing "
                "configuration's list; 'non réponse' after a call rang out).",
                width=6,
                height=8,
            ),
            Panel(
                "Présentations aux conseillers (par 15 min)",
                "timeseries",
                (
                    Query(
                        f"sum by (result) (increase(callcenter_agent_offers_total{{{INST}}}[15m]))",
                        "{{result}}",
                    ),
                ),
                description="Calls offered to agents' phones by result: answered, rejected, "
                "no_answer (rang out), failed, withdrawn.",
                stacked=True,
                min=0,
                width=6,
                height=8,
            ),
        ),
    )
    callbacks = Row(
        "Rappels",
        (
            Panel(
                "Rappels en attente et en retard",
                "timeseries",
                (
                    Query("max(callcenter_callbacks_pending)", "En attente"),
                    Query("max(callcenter_callbacks_overdue)", "En retard"),
                ),
                min=0,
                width=8,
                height=7,
            ),
            Panel(
                "Rappels demandés (par heure)",
                "timeseries",
                (
                    Query(
                        "sum by (mode) (increase("
                        f"callcenter_callbacks_requested_total{{{INST}}}[1h]))",
                        "{{mode}}",
                    ),
                ),
                description="keep_place: the caller keeps their place; slot: a time slot.",
                min=0,
                width=8,
                height=7,
            ),
            Panel(
                "Rappels passés et aboutis (par heure)",
                "timeseries",
                (
                    Query(
                        "sum by (outcome) (increase("
                        f"callcenter_callback_attempts_total{{{INST}}}[1h]))",
                        "Tentative : {{outcome}}",
                    ),
                    Query(
                        "sum by (result) (increase("
                        f"callcenter_callbacks_ended_total{{{INST}}}[1h]))",
                        "Terminé : {{result}}",
                    ),
                ),
                description="Outbound attempts by outcome (connected = succeeded) and "
                "callbacks ended (completed, failed, cancelled).",
                min=0,
                width=8,
                height=7,
            ),
        ),
    )
    return Dashboard(
        uid="callcenter-live",
        title="Centre d'appels — supervision en direct",
        description="Queues, waits, agents and callbacks now (refreshed every 5 s).",
        rows=(queues, waits, agents, callbacks),
        time_from="now-3h",
        refresh="5s",
        tags=("callcenter", "supervision"),
    )


def _kpi_gauge(title: str, expr: str, steps: tuple[Step, ...], description: str) -> Panel:
    return Panel(
        title,
        "gauge",
        (Query(expr, instant=True),),
        unit="percentunit",
        description=description,
        thresholds=steps,
        min=0,
        max=1,
        decimals=1,
        width=6,
        height=7,
    )


def _series(title: str, expr: str, steps: tuple[Step, ...], *, period: str) -> Panel:
    daily = period == "1d"
    return Panel(
        title,
        "timeseries",
        (Query(expr, "Toutes files sélectionnées"),),
        unit="percentunit",
        description=f"One bar per {'day' if daily else 'week'} (windows of {period}); "
        "dashed line: the target.",
        thresholds=steps,
        draw_thresholds=True,
        bars=True,
        min=0,
        max=1,
        interval=period,
        time_from="30d" if daily else "12w",
        width=8,
        height=8,
    )


def kpis() -> Dashboard:
    """Daily and weekly KPIs against the targets (80 % answered, < 5 % abandoned, SL 80 %/60 s)."""
    r = "$__range"
    period = Row(
        "Sur la période choisie (par défaut : aujourd'hui)",
        (
            _kpi_gauge(
                "Taux de décroché (objectif 80 %)",
                answered_rate(r),
                at_least(TARGET_ANSWERED),
                "Calls an agent answered / calls that joined a queue.",
            ),
            _kpi_gauge(
                "Taux d'abandon (objectif < 5 %)",
                abandonment(r),
                at_most(TARGET_ABANDONED),
                "Abandoned after more than 5 s of waiting / calls that ended in the queue "
                "(abandons within 5 s, misdials, left out of both).",
            ),
            _kpi_gauge(
                "Niveau de service 60 s (objectif 80 %)",
                service_level(60, r),
                at_least(TARGET_SERVICE_LEVEL),
                "Answered within 60 s / calls that ended in the queue (short abandons excluded).",
            ),
            _kpi_gauge(
                "Niveau de service 20 s",
                service_level(20, r),
                NEUTRAL,
                "Answered within 20 s / calls that ended in the queue (short abandons excluded).",
            ),
            Panel(
                "Appels entrés en file",
                "stat",
                (Query(_inc(f"callcenter_queue_joined_total{{{QUEUE}}}", r), instant=True),),
                decimals=0,
                width=4,
                height=5,
            ),
            Panel(
                "Appels décrochés",
                "stat",
                (Query(_inc(f"callcenter_queue_answered_total{{{QUEUE}}}", r), instant=True),),
                decimals=0,
                width=4,
                height=5,
            ),
            Panel(
                "Appels abandonnés",
                "stat",
                (Query(_inc(f"callcenter_queue_abandoned_total{{{QUEUE}}}", r), instant=True),),
                decimals=0,
                width=4,
                height=5,
            ),
            Panel(
                "Temps moyen d'attente (ASA)",
                "stat",
                (Query(asa(r), instant=True),),
                unit="s",
                description="Mean wait of the calls agents answered.",
                width=4,
                height=5,
            ),
            Panel(
                "Durée moyenne de traitement (DMT)",
                "stat",
                (Query(aht(r), instant=True),),
                unit="s",
                description="Mean handle time: talk + wrap-up.",
                width=4,
                height=5,
            ),
            Panel(
                "Résolution au premier contact",
                "stat",
                (Query(first_contact_resolution(r), instant=True),),
                unit="percentunit",
                description="Wrap-ups the agent flagged resolved / wrap-ups flagged either way.",
                decimals=0,
                width=4,
                height=5,
            ),
            Panel(
                "Niveau de service 60 s par file",
                "bargauge",
                (Query(service_level(60, r, by="queue"), "{{queue}}", instant=True),),
                unit="percentunit",
                description="Answered within 60 s / calls that ended in the queue, per queue "
                "(short abandons excluded, as the overall figure).",
                thresholds=at_least(TARGET_SERVICE_LEVEL),
                min=0,
                max=1,
                width=12,
                height=8,
            ),
            Panel(
                "Abandons par file",
                "bargauge",
                (Query(abandonment(r, by="queue"), "{{queue}}", instant=True),),
                unit="percentunit",
                description="Abandoned after 5 s / calls that ended in the queue, per queue "
                "(short abandons excluded, as the overall figure).",
                thresholds=at_most(TARGET_ABANDONED),
                min=0,
                max=1,
                width=12,
                height=8,
            ),
        ),
    )
    refused = f"callcenter_queue_refused_total{{{QUEUE}}}"
    unserved = Row(
        "Appels sans conseiller : refus et rappels",
        (
            Panel(
                "Refus et sorties de file par motif",
                "bargauge",
                (Query(f"sum by (reason) (increase({refused}[{r}]))", "{{reason}}", instant=True),),
                description="Calls no agent took, by reason: unstaffed (no agent logged in who "
                "could take them: they never joined the queue), full (turned away at the door), "
                "closed (queue closed on arrival or while waiting), max_wait (left at the "
                "maximum wait), removed (taken out of the queue on request: transfer, another "
                "way chosen). Full, unstaffed and closed on arrival are not offered calls (not "
                "in 'entrés en file'); closed while waiting and max_wait ended in the queue, "
                "unanswered. The first refusal of a queue and reason after a node start is not "
                "counted (its series is created at 1).",
                thresholds=NEUTRAL,
                decimals=0,
                width=8,
                height=8,
            ),
            Panel(
                "Refus par file et motif",
                "bargauge",
                (
                    Query(
                        f"sum by (queue, reason) (increase({refused}[{r}])) > 0",
                        "{{queue}} : {{reason}}",
                        instant=True,
                    ),
                ),
                description="The same refusals per queue (only the queue/reason pairs that "
                "happened over the period).",
                decimals=0,
                width=8,
                height=8,
            ),
            Panel(
                "Rappels demandés en gardant sa place, par file",
                "bargauge",
                (
                    Query(
                        f"sum by (queue) (increase({wait('callback')}[{r}]))",
                        "{{queue}}",
                        instant=True,
                    ),
                ),
                description="Callers who kept their place as a callback: their wait ended "
                "without an answer (counted as offered and not answered in time, as KpiBook "
                "does). The callbacks themselves: live supervision, row 'Rappels'.",
                decimals=0,
                width=8,
                height=8,
            ),
        ),
    )
    daily = Row(
        "Jour par jour (30 jours)",
        (
            _series("Taux de décroché par jour", answered_rate("1d"), at_least(0.8), period="1d"),
            _series("Taux d'abandon par jour", abandonment("1d"), at_most(0.05), period="1d"),
            _series(
                "Niveau de service 60 s par jour",
                service_level(60, "1d"),
                at_least(0.8),
                period="1d",
            ),
        ),
    )
    weekly = Row(
        "Semaine par semaine (12 semaines)",
        (
            _series(
                "Taux de décroché par semaine", answered_rate("7d"), at_least(0.8), period="7d"
            ),
            _series("Taux d'abandon par semaine", abandonment("7d"), at_most(0.05), period="7d"),
            _series(
                "Niveau de service 60 s par semaine",
                service_level(60, "7d"),
                at_least(0.8),
                period="7d",
            ),
        ),
    )
    return Dashboard(
        uid="callcenter-kpis",
        title="Centre d'appels — indicateurs et objectifs",
        description="Daily and weekly KPIs against the targets: 80 % answered, abandonment "
        "under 5 %, 80 % answered within 60 s. Definitions: docs/kpis.md.",
        rows=(period, unserved, daily, weekly),
        time_from="now/d",
        time_to="now",
        refresh="1m",
        tags=("callcenter", "kpi"),
    )


def voice_bot() -> Dashboard:
    """Self-service quality: containment, intents, no-match, latency, hand-offs."""
    r = "$__range"
    calls = f"callcenter_bot_calls_total{{{INST}}}"
    summary = Row(
        "Sur la période choisie",
        (
            Panel(
                "Appels traités par le robot",
                "stat",
                (Query(_inc(calls, r), instant=True),),
                decimals=0,
                description="Calls that talked to the bot (contained, handed over, abandoned).",
                width=6,
                height=5,
            ),
            Panel(
                "Autonomie (sans conseiller)",
                "stat",
                (
                    Query(
                        _inc0(f'callcenter_bot_calls_total{{{INST}, result="contained"}}', r)
                        + f" / ({_inc(calls, r)} > 0)",
                        instant=True,
                    ),
                ),
                unit="percentunit",
                description="Containment: calls that ended satisfied with the bot's answer "
                "without an agent / calls that talked to the bot.",
                decimals=0,
                width=6,
                height=5,
            ),
            Panel(
                "Non-compréhension (question ouverte)",
                "stat",
                (
                    Query(
                        _inc0(f'callcenter_bot_decisions_total{{{INST}, decision="none"}}', r)
                        + f" / ({_inc(f'callcenter_bot_decisions_total{{{INST}}}', r)} > 0)",
                        instant=True,
                    ),
                ),
                unit="percentunit",
                description="No-match rate: utterances to the open question the FAQ matched to "
                "nothing / all utterances to the open question.",
                thresholds=(Step(None, "green"), Step(0.2, "orange"), Step(0.35, "red")),
                decimals=0,
                width=6,
                height=5,
            ),
            Panel(
                "Délai de réponse du robot (90e centile)",
                "stat",
                (
                    Query(
                        "histogram_quantile(0.9, sum by (le) (increase("
                        f"callcenter_bot_response_seconds_bucket{{{INST}}}[{r}])))",
                        instant=True,
                    ),
                ),
                unit="s",
                description="From the end of the caller's turn to the first audio of the reply.",
                thresholds=(Step(None, "green"), Step(1.5, "orange"), Step(3, "red")),
                decimals=2,
                width=6,
                height=5,
            ),
        ),
    )
    intents = Row(
        "Motifs d'appel",
        (
            Panel(
                "Autonomie par motif",
                "bargauge",
                (
                    Query(
                        "sum by (intent) (increase(callcenter_bot_intent_calls_total"
                        f'{{{INST}, result="contained"}}[{r}]))'
                        " / (sum by (intent) (increase(callcenter_bot_intent_calls_total"
                        f"{{{INST}}}[{r}])) > 0)",
                        "{{intent}}",
                        instant=True,
                    ),
                ),
                unit="percentunit",
                description="Per FAQ intent the bot answered: calls contained / calls in "
                "which it answered this intent.",
                min=0,
                max=1,
                width=12,
                height=12,
            ),
            Panel(
                "Motifs les plus fréquents",
                "bargauge",
                (
                    Query(
                        "topk(15, sum by (intent) (increase(callcenter_bot_decisions_total"
                        f'{{{INST}, intent!="none"}}[{r}])))',
                        "{{intent}}",
                        instant=True,
                    ),
                ),
                description="Utterances the FAQ matched to each intent (top 15).",
                width=12,
                height=12,
            ),
        ),
    )
    flow = Row(
        "Issue des appels",
        (
            Panel(
                "Issue des appels du robot (par heure)",
                "timeseries",
                (
                    Query(
                        f"sum by (result) (increase({calls}[1h]))",
                        "{{result}}",
                    ),
                ),
                stacked=True,
                min=0,
                width=8,
                height=8,
            ),
            Panel(
                "Transferts vers un conseiller, par motif",
                "bargauge",
                (
                    Query(
                        f"sum by (reason) (increase(callcenter_handoffs_total{{{INST}}}[{r}]))",
                        "{{reason}}",
                        instant=True,
                    ),
                ),
                description="Hand-off reasons (menu choice, asked for a person, not helped, "
                "no input...), identifiers of the flow file.",
                width=8,
                height=8,
            ),
            Panel(
                "Échecs du robot par type (par heure)",
                "timeseries",
                (
                    Query(
                        f"sum by (kind) (increase(callcenter_bot_failures_total{{{INST}}}[1h]))",
                        "{{kind}}",
                    ),
                ),
                description="no_input (silence), no_match, not_understood, invalid_key.",
                min=0,
                width=8,
                height=8,
            ),
        ),
    )
    latency = Row(
        "Latence et reconnaissance vocale",
        (
            Panel(
                "Délai de réponse du robot",
                "timeseries",
                (
                    Query(
                        quantile(0.5, f"callcenter_bot_response_seconds_bucket{{{INST}}}", "5m"),
                        "médiane",
                    ),
                    Query(
                        quantile(0.9, f"callcenter_bot_response_seconds_bucket{{{INST}}}", "5m"),
                        "90e centile",
                    ),
                ),
                unit="s",
                min=0,
                width=8,
                height=8,
            ),
            Panel(
                "Reconnaissance vocale : latence (90e centile)",
                "timeseries",
                (
                    Query(
                        quantile(
                            0.9,
                            f"callcenter_asr_latency_seconds_bucket{{{INST}}}",
                            "5m",
                            by="engine",
                        ),
                        "{{engine}}",
                    ),
                ),
                unit="s",
                description="End of the caller's turn to the transcript, by engine.",
                min=0,
                width=8,
                height=8,
            ),
            Panel(
                "Reconnaissance vocale : taux d'erreur",
                "timeseries",
                (Query("engine:callcenter_asr_errors:ratio_rate5m", "{{engine}}"),),
                unit="percentunit",
                description="Failed recognitions / all recognitions, by engine (recording "
                "rule; alert CallcenterAsrFailing above 20 %).",
                thresholds=at_most(0.2),
                draw_thresholds=True,
                min=0,
                max=1,
                width=8,
                height=8,
            ),
        ),
    )
    return Dashboard(
        uid="callcenter-bot",
        title="Centre d'appels — robot vocal",
        description="Voice bot quality: containment, intents, no-match, latency, hand-offs.",
        rows=(summary, intents, flow, latency),
        time_from="now-24h",
        refresh="1m",
        queue_variable=False,
        tags=("callcenter", "bot"),
    )


def system_health() -> Dashboard:
    """Nodes, calls, CPU/memory, RTP, SIP, Redis and database."""
    job = 'job="callcenter"'
    lost = f"sum by (instance) (rate(callcenter_rtp_lost_packets_total{{{INST}}}[15m]))"
    received = f"sum by (instance) (rate(callcenter_rtp_received_packets_total{{{INST}}}[15m]))"
    rtp_loss = f"{lost} / (({lost} + {received}) > 0)"
    nodes = Row(
        "Nœuds",
        (
            Panel(
                "Nœuds joignables",
                "stat",
                (Query(f"sum(up{{{job}, {INST}}})", instant=True),),
                description="Nodes Prometheus scrapes successfully (up is written by "
                "Prometheus itself).",
                width=6,
                height=5,
            ),
            Panel(
                "Enregistrement SIP",
                "stat",
                (
                    Query(
                        f"callcenter_registration_up{{{INST}}} and on (instance) "
                        f"callcenter_registration_configured{{{INST}}} == 1",
                        "{{instance}}",
                        instant=True,
                    ),
                ),
                description="1 while the node's registration to the trunk/IPBX is valid, for "
                "the nodes that register upstream ([sip] registrar set); no data when no node "
                "does (calls come through Kamailio).",
                thresholds=at_least(1),
                width=6,
                height=5,
            ),
            Panel(
                "Base de données et Redis",
                "stat",
                (
                    Query(
                        f"callcenter_dependency_up{{{INST}}}",
                        "{{instance}} {{dependency}}",
                        instant=True,
                    ),
                ),
                description="1 if the last probe of the dependency succeeded.",
                thresholds=at_least(1),
                width=6,
                height=5,
            ),
            Panel(
                "Routage local (Redis injoignable)",
                "stat",
                (Query(f"callcenter_routing_local_mode{{{INST}}}", "{{instance}}", instant=True),),
                description="1 while the node routes its own calls only (Redis unreachable).",
                thresholds=at_most(1),
                width=6,
                height=5,
            ),
        ),
    )
    calls = Row(
        "Appels",
        (
            Panel(
                "Appels en cours par nœud",
                "timeseries",
                (Query(f"callcenter_active_calls{{{INST}}}", "{{instance}}"),),
                stacked=True,
                min=0,
                width=8,
                height=8,
            ),
            Panel(
                "Appels terminés par issue (par minute)",
                "timeseries",
                (
                    Query(
                        f"sum by (outcome) (rate(callcenter_calls_total{{{INST}}}[5m])) * 60",
                        "{{outcome}}",
                    ),
                ),
                min=0,
                width=8,
                height=8,
            ),
            Panel(
                "Durée des appels",
                "timeseries",
                (
                    Query(
                        quantile(0.5, f"callcenter_call_duration_seconds_bucket{{{INST}}}", "15m"),
                        "médiane",
                    ),
                    Query(
                        quantile(0.9, f"callcenter_call_duration_seconds_bucket{{{INST}}}", "15m"),
                        "90e centile",
                    ),
                ),
                unit="s",
                min=0,
                width=8,
                height=8,
            ),
        ),
    )
    process = Row(
        "Processus",
        (
            Panel(
                "CPU par nœud",
                "timeseries",
                (
                    Query(
                        f"rate(process_cpu_seconds_total{{{job}, {INST}}}[5m])",
                        "{{instance}}",
                    ),
                ),
                unit="percentunit",
                description="CPU time of the service process per second (1 = one full core).",
                min=0,
                width=8,
                height=8,
            ),
            Panel(
                "Mémoire résidente par nœud",
                "timeseries",
                (Query(f"process_resident_memory_bytes{{{job}, {INST}}}", "{{instance}}"),),
                unit="bytes",
                min=0,
                width=8,
                height=8,
            ),
            Panel(
                "Descripteurs de fichiers utilisés",
                "timeseries",
                (
                    Query(
                        f"process_open_fds{{{job}, {INST}}} / process_max_fds{{{job}, {INST}}}",
                        "{{instance}}",
                    ),
                ),
                unit="percentunit",
                thresholds=at_most(0.8),
                draw_thresholds=True,
                min=0,
                max=1,
                width=8,
                height=8,
            ),
        ),
    )
    media = Row(
        "Média et SIP",
        (
            Panel(
                "RTP : taux de perte des paquets entrants",
                "timeseries",
                (Query(rtp_loss, "{{instance}}"),),
                unit="percentunit",
                description="Inbound RTP packets lost (sequence gaps) / (lost + received), per "
                "node over 15 minutes. Both counters grow when a call ends, hence the long "
                "window. Above 1 % callers and the speech recognition start to suffer.",
                thresholds=(Step(None, "green"), Step(0.01, "orange"), Step(0.03, "red")),
                draw_thresholds=True,
                min=0,
                width=6,
                height=8,
            ),
            Panel(
                "RTP : trames en retard et trames sortantes manquées",
                "timeseries",
                (
                    Query(
                        f"sum by (instance) (rate(callcenter_rtp_late_frames_total{{{INST}}}[5m]))",
                        "en retard {{instance}}",
                    ),
                    Query(
                        "sum by (instance) (rate("
                        f"callcenter_prompt_underruns_total{{{INST}}}[5m]))",
                        "trames sortantes manquées {{instance}}",
                    ),
                ),
                unit="cps",
                description="Inbound frames too late for the jitter buffer, outbound prompt "
                "frames not ready in time.",
                min=0,
                width=6,
                height=8,
            ),
            Panel(
                "SIP : réponses d'erreur par code",
                "timeseries",
                (
                    Query(
                        "sum by (code) (rate("
                        f'callcenter_sip_responses_total{{{INST}, code=~"[456]..|other"}}[5m]))',
                        "{{code}}",
                    ),
                ),
                unit="cps",
                min=0,
                width=6,
                height=8,
            ),
            Panel(
                "SIP : messages rejetés sans réponse",
                "timeseries",
                (
                    Query(
                        f"sum by (reason) (rate(callcenter_sip_dropped_total{{{INST}}}[5m]))",
                        "{{reason}}",
                    ),
                ),
                unit="cps",
                description="malformed, rate_limited (a scanner?), forbidden.",
                min=0,
                width=6,
                height=8,
            ),
            Panel(
                "SIP : requêtes reçues par méthode",
                "timeseries",
                (
                    Query(
                        f"sum by (method) (rate(callcenter_sip_requests_total{{{INST}}}[5m]))",
                        "{{method}}",
                    ),
                ),
                unit="cps",
                min=0,
                width=12,
                height=8,
            ),
            Panel(
                "Journal d'appels : écritures en attente",
                "timeseries",
                (Query(f"callcenter_trail_pending_operations{{{INST}}}", "{{instance}}"),),
                description="Call trail operations waiting to be written to the database "
                "(grows when the database is slow or down).",
                min=0,
                width=12,
                height=8,
            ),
        ),
    )
    return Dashboard(
        uid="callcenter-system",
        title="Centre d'appels — santé du système",
        description="Nodes, calls, CPU and memory, RTP, SIP, Redis and the database.",
        rows=(nodes, calls, process, media),
        time_from="now-6h",
        refresh="30s",
        queue_variable=False,
        tags=("callcenter", "system"),
    )


DASHBOARDS = (live_supervision, kpis, voice_bot, system_health)
"""Every dashboard, in file order."""


# --- rendering to Grafana JSON -----------------------------------------------------------------


def _thresholds(steps: Sequence[Step]) -> dict[str, Any]:
    return {
        "mode": "absolute",
        "steps": [{"color": s.color, "value": s.value} for s in steps],
    }


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "color": {"mode": "thresholds" if panel.kind != "timeseries" else "palette-classic"},
        "thresholds": _thresholds(panel.thresholds),
        "mappings": [],
    }
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    if panel.decimals is not None:
        defaults["decimals"] = panel.decimals
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "bars" if panel.bars else "line",
            "lineWidth": 1,
            "fillOpacity": 60 if panel.bars else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "thresholdsStyle": {"mode": "dashed" if panel.draw_thresholds else "off"},
            "axisSoftMin": panel.min,
        }
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "stat":
        return {
            "reduceOptions": reduce,
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": "auto",
        }
    if panel.kind == "gauge":
        return {
            "reduceOptions": reduce,
            "orientation": "auto",
            "showThresholdLabels": False,
            "showThresholdMarkers": True,
        }
    return {
        "reduceOptions": reduce,
        "displayMode": "gradient",
        "orientation": "horizontal",
        "showUnfilled": True,
        "valueMode": "color",
        "minVizHeight": 16,
        "minVizWidth": 0,
    }


def _targets(queries: Sequence[Query]) -> list[dict[str, Any]]:
    out = []
    for i, q in enumerate(queries):
        out.append(
            {
                "refId": chr(ord("A") + i),
                "datasource": dict(DATASOURCE),
                "expr": q.expr,
                "legendFormat": q.legend or "__auto",
                "instant": q.instant,
                "range": not q.instant,
                "editorMode": "code",
            }
        )
    return out


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "datasource": dict(DATASOURCE),
        "targets": _targets(panel.queries),
        "fieldConfig": _field_config(panel),
        "options": _options(panel),
    }
    if panel.interval:
        out["interval"] = panel.interval
    if panel.time_from:
        out["timeFrom"] = panel.time_from
    return out


def _layout(rows: Iterable[Row]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    next_id = 1
    y = 0
    for row in rows:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if not 1 <= panel.width <= 24:
                raise ValueError(f"{row.title} / {panel.title}: width {panel.width} not in 1..24")
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(panel, next_id, x, y))
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def _variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": dict(DATASOURCE),
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
        "skipUrlSync": False,
    }


def to_json(dashboard: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model of ``dashboard`` (schema version 39)."""
    variables = []
    if any("$instance" in q.expr for row in dashboard.rows for p in row.panels for q in p.queries):
        # Only where a query filters on it (the KPI dashboard sums over every node).
        variables.append(
            _variable("instance", "Nœud", "label_values(callcenter_build_info, instance)")
        )
    if dashboard.queue_variable:
        variables.append(
            _variable("queue", "File", "label_values(callcenter_queue_waiting, queue)")
        )
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": list(dashboard.tags),
        "timezone": "Europe/Paris",
        "editable": False,
        "graphTooltip": 1,
        "liveNow": False,
        "refresh": dashboard.refresh,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": dashboard.time_from, "to": dashboard.time_to},
        "timepicker": {},
        "fiscalYearStartMonth": 0,
        "weekStart": "monday",
        "links": [
            {
                "title": "Tableaux du centre d'appels",
                "type": "dashboards",
                "tags": ["callcenter"],
                "asDropdown": True,
                "includeVars": True,
                "keepTime": False,
            }
        ],
        "annotations": {"list": []},
        "templating": {"list": variables},
        "panels": _layout(dashboard.rows),
    }


def datasource_provisioning() -> str:
    """Grafana's data source provisioning file (fixed uid, the compose Prometheus)."""
    return (
        "# Generated by dashboards/generate.py: do not edit.\n"
        "apiVersion: 1\n"
        "datasources:\n"
        "  - name: Prometheus\n"
        f"    uid: {DATASOURCE_UID}\n"
        "    type: prometheus\n"
        "    access: proxy\n"
        f"    url: {PROMETHEUS_URL}\n"
        "    isDefault: true\n"
        "    editable: false\n"
        "    jsonData:\n"
        "      timeInterval: 5s\n"
    )


def dashboard_provisioning() -> str:
    """Grafana's dashboard provider file: the JSON files mounted at ``DASHBOARDS_PATH``."""
    return (
        "# Generated by dashboards/generate.py: do not edit.\n"
        "apiVersion: 1\n"
        "providers:\n"
        "  - name: callcenter\n"
        "    orgId: 1\n"
        "    folder: Centre d'appels\n"
        "    type: file\n"
        "    disableDeletion: true\n"
        "    allowUiUpdates: false\n"
        "    updateIntervalSeconds: 30\n"
        "    options:\n"
        f"      path: {DASHBOARDS_PATH}\n"
        "      foldersFromFilesStructure: false\n"
    )


def render_all() -> dict[Path, str]:
    """Every generated file (absolute path -> text)."""
    out: dict[Path, str] = {}
    for make in DASHBOARDS:
        model = to_json(make())
        name = str(model["uid"]).removeprefix("callcenter-")
        text = json.dumps(model, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
        out[JSON_DIR / f"{name}.json"] = text
    out[PROVISIONING_DIR / "datasources" / "prometheus.yaml"] = datasource_provisioning()
    out[PROVISIONING_DIR / "dashboards" / "callcenter.yaml"] = dashboard_provisioning()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Write the files, or with ``--check`` report those that differ (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render_all().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(HERE.parent)}")
    for path in stale:
        print(f"{path.relative_to(HERE.parent)}: differs from dashboards/generate.py's output")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
