"""A real Prometheus (Debian's) scrapes the running service while sipp places calls.

Prometheus runs on 127.0.0.1 with a 1 s scrape and evaluation interval and the project's rules
file. Three calls are placed: two callers who hang up 1.5 s into the welcome prompt and one who
presses 1 and is handed to the ``apa`` queue (unstaffed: no agent, so it is refused at the door
with reason ``unstaffed`` and never waits). The expected counts come from the calls' trails
(``GET /api/calls/{id}``), an independent source; PromQL must return them. Every recording and
alerting rule must evaluate without error (the per-queue no-agent alert must be active for apa
exactly when apa is open), and every dashboard query (variables replaced) must be valid PromQL
for the real server; the system dashboard's RTP loss panel must give 0 % on loopback.
"""

from __future__ import annotations

import collections
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.dashboards.prometheus import (
    RULES,
    Prometheus,
    dashboard_exprs,
    grafana_to_promql,
    prometheus_missing_reason,
    run_prometheus,
)
from tests.loopback import audio
from tests.loopback.service import SIPP_DIR, SIPP_PCAPS, Service, render_scenario, run_sipp

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(
        prometheus_missing_reason() is not None, reason=str(prometheus_missing_reason())
    ),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) missing"),
    pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed"),
    pytest.mark.timeout(240),
]


@pytest.fixture(scope="module")
def prometheus(
    live_service: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    with run_prometheus(workdir, [f"127.0.0.1:{live_service.http_port}"]) as prom:
        prom.wait_targets_up(1)
        yield prom


def eventually(check: Callable[[], None], timeout: float = 15.0) -> None:
    """Retry ``check`` (it asserts) until it passes: Prometheus scrapes every second."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def keypad_scenario(tmp_path: Path) -> Path:
    wav = audio.caller_wav(tmp_path / "caller.wav", "u-law")
    return render_scenario(
        "uac_call.xml.tmpl",
        tmp_path / "uac_call_apa.xml",
        codec_pt="0",
        codec_name="PCMU",
        audio_wav=str(wav),
        digit_pcap=str(SIPP_PCAPS / "dtmf_2833_1.pcap"),
        pre_digit_ms="1500",
        bye_timeout_ms="80000",
    )


def test_prometheus_counts_the_calls_placed(
    live_service: Service, prometheus: Prometheus, tmp_path: Path
) -> None:
    svc, prom = live_service, prometheus
    job = 'job="callcenter"'
    target = prom.api("targets")["activeTargets"][0]
    assert target["labels"]["instance"] == f"127.0.0.1:{svc.http_port}"
    # Nothing yet: the service was started for these tests and no call was placed.
    assert prom.values(f"sum(callcenter_calls_total{{{job}}})") == {"": 0.0}

    short = run_sipp(
        SIPP_DIR / "uac_bye_during_prompt.xml", svc.sip_target, tmp_path / "short", calls=2
    )
    assert short.returncode == 0, short.describe() + svc.log_tail()
    keypad = run_sipp(keypad_scenario(tmp_path), svc.sip_target, tmp_path / "keypad", timeout_s=90)
    assert keypad.returncode == 0, keypad.describe() + svc.log_tail()
    call_ids = short.call_ids + keypad.call_ids
    assert len(call_ids) == 3, (short.logs, keypad.logs)
    trails = [svc.wait_call_ended(call_id) for call_id in call_ids]
    outcomes = collections.Counter(str(t["outcome"]) for t in trails)
    assert outcomes["queued"] == 1, outcomes  # the keypad call, left in the unstaffed queue

    def counts_match() -> None:
        got = prom.values(f"sum by (outcome) (callcenter_calls_total{{{job}}})")
        expected = {f'outcome="{o}"': float(outcomes.get(o, 0)) for o in outcomes}
        assert {k: v for k, v in got.items() if v} == expected, got

    eventually(counts_match)
    # The keypad call was handed to the apa queue, unstaffed: a hand-off, not an offered call.
    events = [e for t in trails for e in t["events"]]
    queued = [e["data"] for e in events if e["type"] == "queued"]
    assert [q["skill"] for q in queued] == ["apa"], queued
    assert [e["data"]["skill"] for e in events if e["type"] == "queue_unstaffed"] == ["apa"]
    handoffs = collections.Counter((q["reason"], q["priority"]) for q in queued)
    assert prom.values(f"sum by (reason, priority) (callcenter_handoffs_total{{{job}}})") == {
        f'priority="{priority}",reason="{reason}"': float(n)
        for (reason, priority), n in handoffs.items()
    }
    assert prom.values(f'sum(callcenter_queue_joined_total{{{job}, queue="apa"}})') == {"": 0.0}
    # Turned away at the door as unstaffed: a refusal by reason, without a wait observation.
    unstaffed = [e for e in events if e["type"] == "queue_unstaffed"]
    refused = prom.values(f"sum by (queue, reason) (callcenter_queue_refused_total{{{job}}})")
    assert len(refused) == 40  # every queue and reason from the start, at 0
    assert {k: v for k, v in refused.items() if v} == {
        'queue="apa",reason="unstaffed"': float(len(unstaffed))
    }
    assert prom.values(f"sum(callcenter_queue_wait_seconds_count{{{job}}})") in ({}, {"": 0.0})
    assert prom.values(f'callcenter_queue_agents{{{job}, queue="apa"}}') == {
        f'instance="127.0.0.1:{svc.http_port}",{job},queue="apa"': 0.0
    }
    digits = collections.Counter(e["data"]["method"] for e in events if e["type"] == "dtmf")
    assert digits, events
    got = prom.values(f"sum by (method) (callcenter_dtmf_digits_total{{{job}}})")
    assert {k: v for k, v in got.items() if v} == {
        f'method="{m}"': float(n) for m, n in digits.items()
    }
    assert prom.values(f'sum(callcenter_sip_requests_total{{{job}, method="INVITE"}})') == {"": 3.0}
    assert prom.values("sum(callcenter_active_calls)") == {"": 0.0}
    # A rate query: increase() extrapolates to the window's edges; rounded, it is the count.
    assert prom.values(f"round(sum(increase(callcenter_calls_total{{{job}}}[5m])))") == {"": 3.0}
    # The duration histogram: 3 observations, the two 1.5 s calls in the first bucket (5 s).
    assert prom.values(f"sum(callcenter_call_duration_seconds_count{{{job}}})") == {"": 3.0}
    first_bucket = prom.values(f'sum(callcenter_call_duration_seconds_bucket{{{job}, le="5.0"}})')
    assert first_bucket[""] >= 2.0, first_bucket
    median = prom.values(
        f"histogram_quantile(0.5, sum by (le) (callcenter_call_duration_seconds_bucket{{{job}}}))"
    )
    assert 0.0 < median[""] <= 5.0, median

    # Recording rules computed from the live gauges (max over instances).
    def rules_evaluated() -> None:
        waiting = prom.values("queue:callcenter_queue_waiting:max")
        queues = prom.values("count(callcenter_queue_waiting)")[""]
        assert len(waiting) == queues >= 8 and waiting['queue="apa"'] == 0.0, waiting
        assert prom.values("callcenter:agents_logged_in:max") == {"": 0.0}

        assert prom.values('queue:callcenter_queue_agents:max{queue="apa"}') == {'queue="apa"': 0.0}
        unstaffed_10m = prom.values("round(queue:callcenter_queue_refused_unstaffed:increase10m)")
        assert {k: v for k, v in unstaffed_10m.items() if v} == {'queue="apa"': 1.0}, unstaffed_10m

    eventually(rules_evaluated)
    groups = prom.api("rules")["groups"]
    evaluated = [rule for group in groups for rule in group["rules"]]
    in_file = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert len(evaluated) == sum(len(group["rules"]) for group in in_file) >= 20
    broken = [(r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"]
    assert not broken, broken
    # apa has no agent and turned a caller away: CallcenterNoAgentLoggedIn is active (pending,
    # firing after 2 minutes) if and only if apa is within its opening hours right now.
    apa_open = prom.values(f'callcenter_queue_open{{{job}, queue="apa"}}')
    expected = ["apa"] if list(apa_open.values()) == [1.0] else []

    def no_agent_alert() -> None:
        alerts = prom.api("alerts")["alerts"]
        no_agent = [
            a["labels"]["queue"]
            for a in alerts
            if a["labels"]["alertname"] == "CallcenterNoAgentLoggedIn"
        ]
        assert no_agent == expected, (apa_open, alerts)

    eventually(no_agent_alert)
    alerts = prom.api("alerts")["alerts"]
    others = [a for a in alerts if a["labels"]["alertname"] != "CallcenterNoAgentLoggedIn"]
    assert not [a for a in others if a["state"] == "firing"], others
    # The system dashboard's RTP loss: the callers' packets were received, none lost on loopback.
    (loss_expr,) = [e for w, e in dashboard_exprs() if "taux de perte" in w]

    def rtp_loss_is_zero() -> None:
        assert prom.values(f"sum(callcenter_rtp_received_packets_total{{{job}}})")[""] > 0
        loss = prom.values(grafana_to_promql(loss_expr))
        assert loss == {f'instance="127.0.0.1:{svc.http_port}"': 0.0}, loss

    eventually(rtp_loss_is_zero)


def test_every_dashboard_query_is_valid_promql(prometheus: Prometheus) -> None:
    errors = []
    count = 0
    for where, expr in dashboard_exprs():
        count += 1
        try:
            prometheus.query(grafana_to_promql(expr))
        except Exception as exc:  # noqa: BLE001 (collect every failure, report them together)
            errors.append(f"{where}: {exc}")
    assert count >= 60
    assert not errors, "\n".join(errors)
    # The variables' lists are not empty on a live service.
    assert prometheus.values('count(callcenter_build_info{job="callcenter"})') == {"": 1.0}
    assert prometheus.values("count(callcenter_queue_waiting)")[""] >= 1
