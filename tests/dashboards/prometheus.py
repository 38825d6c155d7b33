"""Run Debian's ``/usr/bin/prometheus`` on 127.0.0.1 against services under test.

Used by ``tests/dashboards/test_prometheus_scrape.py`` and ``bench/metrics_scrape.py``. The
server gets a temporary configuration and TSDB directory, listens on a free loopback port,
scrapes only the given loopback targets, and is stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.loopback.service import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


def prometheus_missing_reason() -> str | None:
    """Why a real Prometheus cannot run here, or None."""
    for binary in (PROMETHEUS, PROMTOOL):
        if shutil.which(binary) is None:
            return f"{binary} not installed (Debian package prometheus)"
    return None


class PrometheusError(RuntimeError):
    """The HTTP API answered an error."""


@dataclass
class Prometheus:
    """A running Prometheus server."""

    proc: subprocess.Popen[bytes]
    """The server process."""
    port: int
    """HTTP port on 127.0.0.1."""
    log_path: Path
    """Its combined stdout/stderr."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; return ``data`` or raise :class:`PrometheusError`."""
        url = f"{self.base_url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Evaluate an instant query; return the vector (or a scalar as one sample)."""
        data = self.api("query", query=expr)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def values(self, expr: str) -> dict[str, float]:
        """``{label set as text (``__name__`` left out): value}`` of an instant vector query."""
        out = {}
        for sample in self.query(expr):
            metric = sorted(sample["metric"].items())
            labels = ",".join(f'{k}="{v}"' for k, v in metric if k != "__name__")
            out[labels] = float(sample["value"][1])
        return out

    def wait_targets_up(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``count`` active targets report health "up"; return them."""
        deadline = time.monotonic() + timeout
        targets: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, PrometheusError):
                targets = self.api("targets")["activeTargets"]
                if len(targets) >= count and all(t["health"] == "up" for t in targets):
                    return targets
            time.sleep(0.2)
        raise AssertionError(f"targets not up after {timeout}s: {targets}\n{self.log_tail()}")


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    """(where, expr) of every query of the checked-in dashboards."""
    for path in sorted((REPO / "dashboards" / "json").glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                yield f"{path.name} « {panel['title']} »", str(target["expr"])


def grafana_to_promql(expr: str, range_: str = "1h") -> str:
    """Replace the Grafana variables as Grafana does for "All" over a ``range_`` time range."""
    return (
        expr.replace("$__range", range_)
        .replace("$__rate_interval", "1m")
        .replace("$instance", ".*")
        .replace("$queue", ".*")
    )


def write_config(
    path: Path,
    targets: Sequence[str],
    *,
    rule_files: Sequence[Path] = (RULES,),
    interval: str = "1s",
) -> Path:
    """A configuration scraping ``targets`` (host:port on loopback) as job ``callcenter``."""
    for target in targets:
        host = target.rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "[::1]", "localhost"):
            raise ValueError(f"{target}: tests scrape loopback targets only")
    lines = [
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {interval}",
        "rule_files:",
        *(f"  - {json.dumps(str(p))}" for p in rule_files),
        "scrape_configs:",
        "  - job_name: callcenter",
        "    static_configs:",
        f"      - targets: {json.dumps(list(targets))}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def run_prometheus(
    workdir: Path,
    targets: Sequence[str],
    *,
    rule_files: Sequence[Path] = (RULES,),
    interval: str = "1s",
    retention: str = "1h",
    start_timeout: float = 30.0,
) -> Iterator[Prometheus]:
    """Start Prometheus scraping ``targets``; wait for ``/-/ready``.

    The TSDB is ``workdir/tsdb``: blocks written there beforehand (a backfill) are served.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(
        workdir / "prometheus.yml", targets, rule_files=rule_files, interval=interval
    )
    port = free_port(socket.SOCK_STREAM)
    log_path = workdir / "prometheus.log"
    cmd = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.retention.time={retention}",
        "--log.level=warn",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    prom = Prometheus(proc, port, log_path)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{prom.log_tail()}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(prom.base_url + "/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after {start_timeout}s")
            time.sleep(0.1)
        yield prom
    finally:
        stop_process(proc, 10.0)
