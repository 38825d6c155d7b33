from __future__ import annotations

import re

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import routing
from callcenter.metrics import Metrics

PHONE = re.compile(r"\+?\d[\d .-]{5,}\d")

EXPECTED = {
    "callcenter_calls",
    "callcenter_active_calls",
    "callcenter_sip_responses",
    "callcenter_sip_requests",
    "callcenter_rtp_late_frames",
    "callcenter_rtp_lost_packets",
    "callcenter_prompt_underruns",
    "callcenter_dtmf_digits",
    "callcenter_sip_dropped",
    "callcenter_call_duration_seconds",
    "callcenter_registration_up",
}


def samples(metrics: Metrics) -> list[Sample]:
    body, _ = metrics.render()
    return [s for fam in text_string_to_metric_families(body.decode()) for s in fam.samples]


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = [s.value for s in samples(metrics) if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def exercise(m: Metrics) -> None:
    m.call_started()
    m.call_started()
    m.call_ended("completed", duration=42.0)
    m.call_ended("+33612345678", duration=3.0)  # junk outcome: bounded
    m.sip_request("INVITE")
    m.sip_request("invite")  # methods are case-sensitive (RFC 3261 section 7.1)
    m.sip_request("0612345678")
    m.sip_response(200)
    m.sip_response(487)
    m.sip_response(299)
    m.sip_response(612345678)
    m.rtp_late_frame()
    m.rtp_lost_packet(3)
    m.prompt_underrun()
    m.dtmf_digit("rfc4733")
    m.dtmf_digit("info")
    m.dtmf_digit("0612345678")
    m.sip_drop("rate_limited", 5)
    m.sip_drop("+33 6 12 34 56 78")
    m.set_registration_up(True)


def test_names_and_types() -> None:
    m = Metrics()
    exercise(m)
    body, content_type = m.render()
    assert content_type.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert EXPECTED <= families.keys()
    assert families["callcenter_calls"].type == "counter"
    assert families["callcenter_active_calls"].type == "gauge"
    assert families["callcenter_call_duration_seconds"].type == "histogram"
    assert any(name.startswith("process_") for name in families)
    # Counters are exposed with the _total suffix.
    names = {s.name for s in samples(m)}
    assert "callcenter_calls_total" in names and "callcenter_sip_dropped_total" in names


def test_values_and_bounded_labels() -> None:
    m = Metrics()
    exercise(m)
    assert value(m, "callcenter_active_calls") == 0
    assert value(m, "callcenter_calls_total", outcome="completed") == 1
    assert value(m, "callcenter_calls_total", outcome="other") == 1
    assert value(m, "callcenter_calls_total", outcome="abandoned") == 0  # pre-initialised
    assert value(m, "callcenter_sip_requests_total", method="INVITE") == 1
    assert value(m, "callcenter_sip_requests_total", method="other") == 2
    assert value(m, "callcenter_sip_responses_total", code="200") == 1
    assert value(m, "callcenter_sip_responses_total", code="487") == 1
    assert value(m, "callcenter_sip_responses_total", code="other") == 2
    assert value(m, "callcenter_rtp_lost_packets_total") == 3
    assert value(m, "callcenter_dtmf_digits_total", method="other") == 1
    assert value(m, "callcenter_sip_dropped_total", reason="rate_limited") == 5
    assert value(m, "callcenter_sip_dropped_total", reason="other") == 1
    assert value(m, "callcenter_registration_up") == 1
    assert value(m, "callcenter_call_duration_seconds_count") == 2
    assert value(m, "callcenter_call_duration_seconds_sum") == 45
    assert value(m, "callcenter_call_duration_seconds_bucket", le="5.0") == 1


def test_no_label_value_looks_like_a_phone_number() -> None:
    m = Metrics()
    exercise(m)
    label_values = [v for s in samples(m) for v in s.labels.values()]
    assert label_values
    assert not [v for v in label_values if PHONE.search(v)]


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics(process_metrics=False)
    a.sip_request("BYE")
    assert value(a, "callcenter_sip_requests_total", method="BYE") == 1
    assert not [s for s in samples(b) if s.name == "callcenter_sip_requests_total"]
    assert not [s for s in samples(b) if s.name.startswith("process_")]


def test_gauge_function() -> None:
    m = Metrics(process_metrics=False)
    pending = [7]
    m.gauge_function(
        "callcenter_trail_pending_operations", "Trail writes queued.", lambda: pending[0]
    )
    assert value(m, "callcenter_trail_pending_operations") == 7
    pending[0] = 0
    assert value(m, "callcenter_trail_pending_operations") == 0


def test_queue_kpis_agents_by_state_and_pause_reason() -> None:
    m = Metrics()
    m.set_queues(["apa", "accueil_general"])
    m.set_pause_reasons(["pause", "non réponse"])
    m.queue_event("joined", "apa")
    m.queue_event("answered", "apa", 14.0)
    m.queue_event("joined", "0612345678")  # not a queue: bounded
    m.wrap_up_ended("apa", 305.0, True)
    m.wrap_up_ended("apa", 95.0, None)
    m.set_waiting({"apa": 3, "accueil_general": 0})
    m.set_agent_states(
        [
            ("available", None),
            ("paused", "non réponse"),
            ("paused", "Mme Dupont"),
            ("on_call", None),
        ]
    )
    assert value(m, "callcenter_queue_joined_total", queue="apa") == 1
    assert value(m, "callcenter_queue_joined_total", queue="other") == 1
    # Service level within 20 s and ASA come from the wait histogram of answered calls.
    assert (
        value(m, "callcenter_queue_wait_seconds_bucket", queue="apa", result="answered", le="20.0")
        == 1
    )
    assert value(m, "callcenter_queue_handle_seconds_sum", queue="apa") == 400
    assert value(m, "callcenter_queue_handle_seconds_count", queue="apa") == 2
    assert value(m, "callcenter_queue_wrapups_total", queue="apa", resolved="yes") == 1
    assert value(m, "callcenter_queue_wrapups_total", queue="apa", resolved="unknown") == 1
    assert value(m, "callcenter_queue_wrapups_total", queue="apa", resolved="no") == 0
    assert value(m, "callcenter_queue_waiting", queue="apa") == 3
    assert value(m, "callcenter_agents", state="paused") == 2
    assert value(m, "callcenter_agents", state="wrap_up") == 0
    assert value(m, "callcenter_agents_paused", reason="non réponse") == 1
    assert value(m, "callcenter_agents_paused", reason="other") == 1  # a free text is not a label
    m.set_agent_states([])
    assert value(m, "callcenter_agents", state="paused") == 0
    assert value(m, "callcenter_agents_paused", reason="non réponse") == 0
    assert value(m, "callcenter_agents_paused", reason="other") == 0


def test_routing_mode_is_read_at_each_scrape_and_transfers_are_counted() -> None:
    metrics = Metrics(process_metrics=False)
    state = {"local": False, "changes": 0}
    metrics.watch_routing_mode(lambda: bool(state["local"]), lambda: int(state["changes"]))
    metrics.transfer("queue")
    metrics.transfer("0612345678")  # an unexpected kind never becomes a label
    text = metrics.render()[0].decode()
    assert "callcenter_routing_local_mode 0.0" in text
    assert 'callcenter_transfers_total{kind="queue"} 1.0' in text
    assert "0612345678" not in text
    state.update(local=True, changes=1)
    text = metrics.render()[0].decode()
    assert "callcenter_routing_local_mode 1.0" in text
    assert "callcenter_routing_mode_changes_total 1.0" in text


def test_supervision_gauges_containment_per_intent_and_asr_errors() -> None:
    m = Metrics(process_metrics=False)
    m.set_intents(["horaires", "suivi_dossier_apa"])
    m.set_queues(["apa"])
    # Each answered intent counts once per call, with how the call ended.
    m.bot_intents(["horaires", "horaires", "suivi_dossier_apa"], "contained")
    m.bot_intents(["horaires"], "handed_over")
    m.bot_intents(["Jean Dupont 0612345678"], "whatever")  # free text never becomes a label
    assert value(m, "callcenter_bot_intent_calls_total", intent="horaires", result="contained") == 1
    assert (
        value(m, "callcenter_bot_intent_calls_total", intent="horaires", result="handed_over") == 1
    )
    assert value(m, "callcenter_bot_intent_calls_total", intent="other", result="other") == 1
    m.bot_replied(0.8)
    m.bot_replied(-1.0)  # a clock step backwards is a zero, not a negative observation
    assert value(m, "callcenter_bot_response_seconds_count") == 2
    assert value(m, "callcenter_bot_response_seconds_sum") == 0.8
    m.set_callbacks(5, 2)
    assert value(m, "callcenter_callbacks_pending") == 5
    assert value(m, "callcenter_callbacks_overdue") == 2
    m.set_queues_open({"apa": True, "inconnue": False})
    assert value(m, "callcenter_queue_open", queue="apa") == 1
    assert value(m, "callcenter_queue_open", queue="other") == 0
    # Only the dependencies a node has are exported (no Redis on one node: no false alarm).
    assert not [s for s in samples(m) if s.name == "callcenter_dependency_up"]
    m.set_dependency("database", True)
    m.set_dependency("redis", False)
    assert value(m, "callcenter_dependency_up", dependency="database") == 1
    assert value(m, "callcenter_dependency_up", dependency="redis") == 0
    errors = {"n": 0}
    m.watch_asr_errors("whisper-base", lambda: errors["n"])
    assert value(m, "callcenter_asr_errors_total", engine="whisper") == 0
    errors["n"] = 3  # read at each scrape
    assert value(m, "callcenter_asr_errors_total", engine="whisper") == 3
    # Refusals at the door have no wait; a place kept as a callback ends the wait unanswered.
    m.queue_event("unstaffed", "apa")
    m.queue_event("full", "apa")
    m.queue_event("callback", "apa", 42.0)
    assert value(m, "callcenter_queue_refused_total", queue="apa", reason="unstaffed") == 1
    assert value(m, "callcenter_queue_wait_seconds_count", queue="apa", result="callback") == 1
    assert not [
        s
        for s in samples(m)
        if s.name.startswith("callcenter_queue_wait") and s.labels.get("result") == "refused"
    ]
    m.set_queue_agents({"apa": 3})
    assert value(m, "callcenter_queue_agents", queue="apa") == 3
    m.set_registration_configured(True)
    assert value(m, "callcenter_registration_configured") == 1
    m.rtp_received_packet(500)
    assert value(m, "callcenter_rtp_received_packets_total") == 500
    [info] = [s for s in samples(m) if s.name == "callcenter_build_info"]
    assert info.value == 1 and info.labels["version"]


def _count(m: Metrics, name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples(m)
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


@pytest.mark.parametrize("callbacks", [False, True])
def test_queue_metrics_count_what_the_kpi_book_counts(callbacks: bool) -> None:
    """The busiest hour's router decisions give Prometheus the KPI book's figures."""
    from callcenter.metrics import QueueMetrics
    from routing import load_routing_config, simulate
    from routing.queue_config import default_routing_config_path

    config = load_routing_config(default_routing_config_path())
    m = Metrics(process_metrics=False)
    m.set_queues(config.queues)
    exporter = QueueMetrics(m)

    def observe(_router: object, decisions: object) -> None:
        for decision in decisions:  # type: ignore[attr-defined]
            exporter.apply(decision)

    result = simulate(callbacks=callbacks, seed=3, config=config, observer=observe)
    assert result.total.offered > 50 and (result.total.callbacks_requested > 0) == callbacks
    for queue, kpi in result.queues.items():
        wait = "callcenter_queue_wait_seconds"
        assert _count(m, "callcenter_queue_joined_total", queue=queue) == kpi.offered
        assert _count(m, "callcenter_queue_answered_total", queue=queue) == kpi.answered
        assert _count(m, "callcenter_queue_abandoned_total", queue=queue) == kpi.abandoned
        short = _count(m, f"{wait}_bucket", queue=queue, result="abandoned", le="5.0")
        assert short == kpi.abandoned_short
        # The service level's denominator and numerators, as the recording rules compute them.
        assert _count(m, f"{wait}_count", queue=queue) - short == kpi.ended, queue
        assert (
            _count(m, f"{wait}_bucket", queue=queue, result="answered", le="20.0")
            == kpi.answered_within_20s
        )
        assert (
            _count(m, f"{wait}_bucket", queue=queue, result="answered", le="60.0")
            == kpi.answered_within_60s
        )
        assert _count(m, f"{wait}_count", queue=queue, result="callback") == kpi.callbacks_requested
        refused = "callcenter_queue_refused_total"
        assert _count(m, refused, queue=queue, reason="full") == kpi.rejected_full
        assert (
            _count(m, refused, queue=queue, reason="closed")
            == kpi.rejected_closed + kpi.closed_while_waiting
        )
        assert _count(m, refused, queue=queue, reason="max_wait") == kpi.max_wait_reached
    # Every callback left the queue by the end: the exporter remembers no call ids.
    assert exporter.outcomes.tracked == 0


_METRIC_EVENTS = {
    routing.QueueOutcome.JOINED: ("joined", None),
    routing.QueueOutcome.ANSWERED: ("answered", 30.0),
    routing.QueueOutcome.ABANDONED: ("abandoned", 30.0),
    routing.QueueOutcome.REMOVED: ("removed", None),
    routing.QueueOutcome.MAX_WAIT: ("max_wait", 30.0),
    routing.QueueOutcome.CLOSED_AT_DOOR: ("closed", None),
    routing.QueueOutcome.CLOSED_WHILE_WAITING: ("closed", 30.0),
    routing.QueueOutcome.REJECTED_FULL: ("full", None),
    routing.QueueOutcome.CALLBACK_KEPT: ("callback", 30.0),
}
"""The queue metric each outcome gives (kind, wait); a callback's later life gives none."""


@pytest.mark.parametrize("outcome", list(routing.QueueOutcome))
def test_each_queue_outcome_gives_its_queue_metric(
    outcome: routing.QueueOutcome, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callcenter.metrics import QueueMetrics

    exporter = QueueMetrics(Metrics(process_metrics=False))
    fact = routing.QueueFact(outcome, "apa", 30.0)
    monkeypatch.setattr(exporter.outcomes, "classify", lambda _decision: fact)
    seen: list[tuple[str, str, float | None]] = []

    def queue_event(kind: str, queue: str, wait_s: float | None = None) -> None:
        seen.append((kind, queue, wait_s))

    monkeypatch.setattr(exporter.metrics, "queue_event", queue_event)
    exporter.apply(routing.CallRejectedQueueFull("c1", "apa", 0.0))  # classified as `fact`
    expected = _METRIC_EVENTS.get(outcome)
    assert seen == ([] if expected is None else [(expected[0], "apa", expected[1])])
