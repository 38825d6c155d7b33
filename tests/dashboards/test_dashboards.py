"""Dashboards, rules and catalogue against the code and against the live service.

- the checked-in ``dashboards/**`` files are ``dashboards/generate.py``'s output;
- the Grafana JSON is well formed (no Grafana on this machine: checked structurally);
- every metric a dashboard query, a variable or a rule names is in the live exposition of a
  running ``callcenter serve`` (or is a recording rule of the rules file, or ``up``);
- ``promtool check config|rules|metrics`` and ``promtool test rules`` pass;
- ``docs/metrics.md`` lists every exported metric family and no metric that does not exist.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import generate
from tests.dashboards.prometheus import PROMTOOL, RULES, prometheus_missing_reason
from tests.dashboards.promql import (
    PromqlScanError,
    exposition_names,
    metric_names,
    variable_metric_names,
)

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "deploy" / "prometheus"
CATALOGUE = REPO / "docs" / "metrics.md"
KPI_DOC = REPO / "docs" / "kpis.md"
JSON_FILES = sorted((REPO / "dashboards" / "json").glob("*.json"))
SYNTHETIC = frozenset({"up"})
"""Series Prometheus writes itself for every target (``up``), not the service."""
UNITS = frozenset({"short", "none", "percentunit", "s", "bytes", "cps"})
PANEL_TYPES = frozenset({"timeseries", "stat", "gauge", "bargauge"})

needs_promtool = pytest.mark.skipif(
    prometheus_missing_reason() is not None, reason=str(prometheus_missing_reason())
)


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def recorded_names() -> set[str]:
    return {str(rule["record"]) for rule in rules() if "record" in rule}


def queries() -> Iterator[tuple[str, str, str]]:
    """(where, kind, expr) of every dashboard target, variable and rule."""
    for path in JSON_FILES:
        model = load(path)
        for var in model["templating"]["list"]:
            yield f"{path.name} variable ${var['name']}", "variable", var["query"]["query"]
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name} « {panel['title']} » {target['refId']}", "expr", target["expr"]
    for rule in rules():
        name = rule.get("record") or rule.get("alert")
        yield f"alerts.yml {name}", "expr", str(rule["expr"])


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args],
        cwd=PROM_DIR,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- generated files ---------------------------------------------------------------------------


def test_checked_in_files_are_the_generator_output() -> None:
    rendered = generate.render_all()
    assert len(rendered) == 6
    stale = [
        str(path.relative_to(REPO))
        for path, text in rendered.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"run `python -m dashboards.generate`: {stale} differ"
    assert sorted(p for p in rendered if p.suffix == ".json") == JSON_FILES


def test_generator_check_mode_reports_a_stale_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "json" / "live.json"
    stale.parent.mkdir()
    stale.write_text("{}\n")
    monkeypatch.setattr(generate, "JSON_DIR", tmp_path / "json")
    monkeypatch.setattr(generate, "PROVISIONING_DIR", tmp_path / "provisioning")
    monkeypatch.setattr(generate, "HERE", tmp_path / "dashboards")
    assert generate.main(["--check"]) == 1
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    assert json.loads(stale.read_text())["uid"] == "callcenter-live"


# --- PromQL name extraction --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (queue) (rate(a_total{queue=~"$queue", le="5.0"}[5m]))', {"a_total"}),
        ("histogram_quantile(0.9, sum by (le) (rate(b_bucket[$__rate_interval])))", {"b_bucket"}),
        ("x / on (queue) group_left (state) y > bool 0.8", {"x", "y"}),
        ("a unless ignoring (instance) b or c and d offset 1h30m", {"a", "b", "c", "d"}),
        ("sum without (instance) (m) * 1e+3 - 0x1F + Inf", {"m"}),
        ('topk(15, sum by (intent) (increase(m{intent!="none"}[$__range])))', {"m"}),
        (
            "queue:rule:ratio15m{queue=~'a|b'} < 0.8 # comment metric_in_comment",
            {"queue:rule:ratio15m"},
        ),
        ('count(up{job="callcenter"} == 1) + vector(0)', {"up"}),
        ("max_over_time(reg_up[7d:1m]) == 1", {"reg_up"}),
        ('{__name__="hidden"}', set()),
        ('m{label="with } brace and \\" quote"}', {"m"}),
    ],
)
def test_metric_names_tokenizer(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_variable_queries_and_errors() -> None:
    assert variable_metric_names("label_values(callcenter_queue_waiting, queue)") == {
        "callcenter_queue_waiting"
    }
    assert variable_metric_names('label_values(m{job="x"}, instance)') == {"m"}
    assert variable_metric_names("label_values(instance)") == set()
    with pytest.raises(PromqlScanError, match="unbalanced"):
        metric_names("sum(m{a='b')")


def test_exposition_names_from_type_lines() -> None:
    text = (
        "# TYPE c_total counter\n# TYPE h_seconds histogram\n# TYPE g gauge\n# HELP x help\ng 1\n"
    )
    names = exposition_names(text)
    assert set(names) == {"c_total", "h_seconds", "h_seconds_bucket", "h_seconds_sum"} | {
        "h_seconds_count",
        "g",
    }


# --- Grafana JSON structure --------------------------------------------------------------------


def provisioned_datasource() -> dict[str, Any]:
    path = REPO / "dashboards" / "provisioning" / "datasources" / "prometheus.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert doc["apiVersion"] == 1
    (source,) = doc["datasources"]
    assert isinstance(source, dict)
    return source


def test_provisioning_files() -> None:
    source = provisioned_datasource()
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["uid"] == generate.DATASOURCE_UID
    path = REPO / "dashboards" / "provisioning" / "dashboards" / "callcenter.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/callcenter"


def _overlap(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


@pytest.mark.parametrize("path", JSON_FILES, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    model = load(path)
    uid = provisioned_datasource()["uid"]
    assert model["schemaVersion"] == generate.SCHEMA_VERSION
    assert re.fullmatch(r"[a-z0-9-]{1,40}", model["uid"]), model["uid"]
    assert model["title"] and model["time"]["from"] and model["refresh"]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    # Every variable offered filters something; the KPI dashboard sums over every node.
    used = json.dumps(model["panels"])
    assert all(f"${name}" in used for name in variables), sorted(variables)
    assert ("instance" in variables) == (model["uid"] != "callcenter-kpis"), sorted(variables)
    for var in variables.values():
        assert var["datasource"]["uid"] == uid, var
        assert var["query"]["query"].startswith("label_values("), var
    panels = model["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    grid = [p["gridPos"] for p in panels]
    for panel, pos in zip(panels, grid, strict=True):
        assert all(isinstance(pos[k], int) for k in "xywh"), panel["title"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["y"] >= 0 and pos["h"] > 0, panel["title"]
    for i, a in enumerate(grid):
        for b in grid[i + 1 :]:
            assert not _overlap(a, b), (a, b)
    assert panels[0]["type"] == "row", "every dashboard starts with a row"
    for panel in panels:
        if panel["type"] == "row":
            assert panel["gridPos"]["w"] == 24 and panel["title"]
            continue
        where = f"{path.name} « {panel['title']} »"
        assert panel["type"] in PANEL_TYPES, where
        assert panel["datasource"]["uid"] == uid, where
        # Variables used in a query exist on the dashboard.
        targets = panel["targets"]
        assert targets, where
        assert len({t["refId"] for t in targets}) == len(targets), where
        for target in targets:
            assert target["expr"].strip(), where
            assert target["datasource"]["uid"] == uid, where
            for var in re.findall(r"\$(\w+)", target["expr"]):
                assert var.startswith("__") or var in variables, f"{where}: ${var}"
            if panel["type"] != "timeseries":
                assert target["instant"], f"{where}: single-value panels use instant queries"
        defaults = panel["fieldConfig"]["defaults"]
        assert defaults["unit"] in UNITS, where
        steps = defaults["thresholds"]["steps"]
        assert steps[0]["value"] is None, where
        values = [s["value"] for s in steps[1:]]
        assert values == sorted(values), where
        if defaults["unit"] == "percentunit" and "max" in defaults:
            assert defaults["max"] == 1, where


def test_kpi_dashboard_draws_the_targets() -> None:
    model = load(REPO / "dashboards" / "json" / "kpis.json")
    by_title = {p["title"]: p for p in model["panels"]}

    def steps(title: str) -> list[tuple[str, float | None]]:
        defaults = by_title[title]["fieldConfig"]["defaults"]
        return [(s["color"], s["value"]) for s in defaults["thresholds"]["steps"]]

    assert steps("Taux de décroché (objectif 80 %)") == [("red", None), ("green", 0.8)]
    assert steps("Taux d'abandon (objectif < 5 %)") == [("green", None), ("red", 0.05)]
    assert steps("Niveau de service 60 s (objectif 80 %)") == [("red", None), ("green", 0.8)]
    for title in ("Taux d'abandon par jour", "Niveau de service 60 s par semaine"):
        custom = by_title[title]["fieldConfig"]["defaults"]["custom"]
        assert custom["thresholdsStyle"]["mode"] == "dashed", title
        assert custom["drawStyle"] == "bars", title
    assert by_title["Taux d'abandon par jour"]["interval"] == "1d"
    assert "[1d]" in by_title["Taux d'abandon par jour"]["targets"][0]["expr"]
    assert "[7d]" in by_title["Taux d'abandon par semaine"]["targets"][0]["expr"]


def _panel_exprs(name: str) -> dict[str, list[str]]:
    model = load(REPO / "dashboards" / "json" / name)
    return {
        p["title"]: [t["expr"] for t in p["targets"]] for p in model["panels"] if "targets" in p
    }


def test_dashboards_show_the_kpi_book_metrics() -> None:
    # Agents per queue on the wall screen (the per-queue no-agent alert reads the same rule).
    live = _panel_exprs("live.json")
    assert live["Conseillers connectés par file"] == [
        'queue:callcenter_queue_agents:max{queue=~"$queue"}'
    ]
    flows = " ".join(live["Entrées, décrochés, abandons (par 15 min)"])
    assert 'result="callback"' in flows and "callcenter_queue_refused_total" in flows
    # Calls no agent took, by refusal reason, over the chosen period.
    kpi = _panel_exprs("kpis.json")
    (by_reason,) = kpi["Refus et sorties de file par motif"]
    assert by_reason.startswith("sum by (reason) (increase(callcenter_queue_refused_total{"), (
        by_reason
    )
    assert "$__range" in by_reason
    # RTP loss as a share of the inbound packets, not a packet rate.
    system = _panel_exprs("system.json")
    (loss,) = system["RTP : taux de perte des paquets entrants"]
    assert "callcenter_rtp_lost_packets_total" in loss
    assert "callcenter_rtp_received_packets_total" in loss
    (registration,) = system["Enregistrement SIP"]
    assert "callcenter_registration_configured" in registration


def test_panel_titles_are_french() -> None:
    # User-facing text is French: a few English words that would betray an untranslated title.
    english = re.compile(r"\b(calls?|queue|waiting|agents?|rate|errors?|latency)\b", re.I)
    for path in JSON_FILES:
        for panel in load(path)["panels"]:
            assert not english.search(panel["title"]), f"{path.name}: {panel['title']}"


# --- rules -------------------------------------------------------------------------------------


def test_rules_have_durations_severities_and_french_summaries() -> None:
    alerts = [r for r in rules() if "alert" in r]
    assert {a["alert"] for a in alerts} >= {
        "CallcenterServiceLevelLow",
        "CallcenterAbandonmentHigh",
        "CallcenterNoAgentLoggedIn",
        "CallcenterCallbacksOverdue",
        "CallcenterAsrFailing",
        "CallcenterSipRegistrationLost",
        "CallcenterNodeDown",
    }
    tests = yaml.safe_load((PROM_DIR / "alerts.test.yml").read_text(encoding="utf-8"))
    tested = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", [])}
    for alert in alerts:
        name = alert["alert"]
        assert re.fullmatch(r"\d+[smh]", alert["for"]), name
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
        assert name in tested, f"{name} has no promtool unit test"
    for rule in rules():
        if "record" in rule:
            assert re.fullmatch(r"[a-z]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


@needs_promtool
def test_promtool_check_config_and_rules() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    result = promtool("test", "rules", "alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
@pytest.mark.parametrize(
    ("rule", "mutated", "alert"),
    [
        # The service-level alert at 40 % instead of 80 %.
        ("ratio15m < 0.8", "ratio15m < 0.4", "CallcenterServiceLevelLow"),
        # The ASR alert without its volume floor (3 errors in 5 minutes).
        ("[5m])) >= 3", "[5m])) >= 0", "CallcenterAsrFailing"),
        # Refusals counted over a scrape gap (the rule before the series existed at 0).
        (
            'increase(callcenter_queue_refused_total{reason="unstaffed"}[10m])',
            '(callcenter_queue_refused_total{reason="unstaffed"} unless '
            'callcenter_queue_refused_total{reason="unstaffed"} offset 10m) or '
            'increase(callcenter_queue_refused_total{reason="unstaffed"}[10m])',
            "callcenter_queue_refused_unstaffed",
        ),
    ],
)
def test_promtool_rule_unit_tests_can_fail(
    tmp_path: Path, rule: str, mutated: str, alert: str
) -> None:
    # The unit tests are not vacuous: each mutation of a rule makes them fail.
    source = RULES.read_text(encoding="utf-8")
    assert source.count(rule) == 1, rule
    broken = source.replace(rule, mutated)
    (tmp_path / "alerts.yml").write_text(broken, encoding="utf-8")
    (tmp_path / "alerts.test.yml").write_text(
        (PROM_DIR / "alerts.test.yml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert alert in result.stdout + result.stderr


AMTOOL = shutil.which("amtool")


@pytest.mark.skipif(
    AMTOOL is None, reason="amtool missing (Debian package prometheus-alertmanager)"
)
def test_alertmanager_config_routes_every_alert_to_someone() -> None:
    assert AMTOOL is not None
    config = str(PROM_DIR / "alertmanager.yml")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
        )

    checked = run("check-config", config)
    assert checked.returncode == 0 and "SUCCESS" in checked.stdout, checked.stdout + checked.stderr
    prometheus = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    [target] = prometheus["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert target == "alertmanager:9093"
    for rule in rules():
        if "alert" not in rule:
            continue
        labels = [f"alertname={rule['alert']}", f"severity={rule['labels']['severity']}"]
        routed = run("config", "routes", "test", f"--config.file={config}", *labels)
        receivers = set(routed.stdout.strip().split(","))
        # Everything reaches the supervisors; outages reach IT on-call as well.
        expected = {"supervision", "exploitation"} if "critical" in labels[1] else {"supervision"}
        assert receivers == expected, (rule["alert"], routed.stdout, routed.stderr)


# --- against the live exposition ---------------------------------------------------------------


@pytest.mark.loopback
def test_every_queried_metric_is_exported(exposition: str) -> None:
    exported = set(exposition_names(exposition)) | SYNTHETIC
    recorded = recorded_names()
    missing: list[str] = []
    seen: set[str] = set()
    for where, kind, expr in queries():
        names = variable_metric_names(expr) if kind == "variable" else metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in sorted(names):
            seen.add(name)
            if ":" in name:
                if name not in recorded:
                    missing.append(f"{where}: recording rule {name} not in alerts.yml")
            elif name not in exported:
                missing.append(f"{where}: {name}")
    assert not missing, "not in the live exposition:\n" + "\n".join(missing)
    # The check saw the whole range of the dashboards, not a handful of names.
    assert len({n for n in seen if n.startswith("callcenter_")}) >= 40, sorted(seen)


@pytest.mark.loopback
@needs_promtool
def test_promtool_check_metrics_on_the_live_exposition(exposition: str) -> None:
    result = promtool("check", "metrics", stdin=exposition)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr
    )


@pytest.mark.loopback
def test_no_created_samples(exposition: str) -> None:
    # Metrics calls disable_created_metrics(): no *_created gauge per counter and histogram child.
    created = [line for line in exposition.splitlines() if "_created" in line]
    assert not created, created[:5]
    assert "callcenter_calls_total" in exposition  # the exposition is not empty


@pytest.mark.loopback
def test_labels_carry_no_personal_data(exposition: str) -> None:
    label_names = set(re.findall(r"[{,]([a-zA-Z_]\w*)=\"", exposition))
    forbidden = re.compile(r"caller|phone|number|name|login|agent|nir|user|email", re.I)
    assert not {n for n in label_names if forbidden.search(n)}, label_names
    values = re.findall(r'="([^"]*)"', exposition)
    assert not [v for v in values if re.search(r"\d{6,}", v.replace(" ", ""))], "digits in a label"


@pytest.mark.loopback
def test_catalogue_matches_the_exposition(exposition: str) -> None:
    text = CATALOGUE.read_text(encoding="utf-8")
    types = exposition_names(exposition)
    families = [line.split()[2] for line in exposition.splitlines() if line.startswith("# TYPE ")]
    undocumented = [name for name in families if f"`{name}`" not in text]
    assert not undocumented, f"docs/metrics.md does not list: {undocumented}"
    documented = set(re.findall(r"`((?:callcenter|process)_[a-z0-9_]*[a-z0-9])\b", text))
    unknown = sorted(documented - set(types))
    assert not unknown, f"docs/metrics.md names metrics the service does not export: {unknown}"


def test_docs_use_the_exposed_bucket_labels() -> None:
    # prometheus_client writes le="20.0": a query with le="20" matches nothing.
    for path in (CATALOGUE, KPI_DOC):
        text = path.read_text(encoding="utf-8")
        assert 'le="5.0"' in text and 'le="60.0"' in text, path.name
        bad = re.findall(r'le="\d+"', text)
        assert not bad, f"{path.name}: {bad}"
    for path in JSON_FILES:
        assert not re.findall(r'le=\\"\d+\\"', path.read_text(encoding="utf-8")), path.name
    assert not re.findall(r'le="\d+"', RULES.read_text(encoding="utf-8"))


@pytest.mark.loopback
def test_kpi_page_names_only_exported_metrics(exposition: str) -> None:
    text = KPI_DOC.read_text(encoding="utf-8")
    named = set(re.findall(r"\b(callcenter_[a-z0-9_]*[a-z0-9])\b", text))
    assert len(named) >= 15, named
    unknown = sorted(named - set(exposition_names(exposition)))
    assert not unknown, f"docs/kpis.md names metrics the service does not export: {unknown}"
    for result in ("answered", "abandoned", "callback", "refused"):
        assert f"`{result}`" in text, result
    for reason in ("closed", "full", "max_wait", "removed", "unstaffed"):
        assert f"`{reason}`" in text, reason
