"""``callcenter plan erlang|simulate`` run as the operator runs them (``python -m callcenter``
in a subprocess): the tables, the recommended staffing, the PNG, and exit 2 on bad arguments."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def plan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callcenter", "plan", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_erlang_table_and_recommended_staffing() -> None:
    # The Call Centre Helper worked example (tests/routing/test_staffing.py): 100 calls per
    # half hour, 180 s, 80 % in 20 s -> 14 agents; 30 % shrinkage -> 20 scheduled.
    proc = plan(
        "erlang",
        "--calls-per-hour",
        "200",
        "--aht",
        "180",
        "--target-sl",
        "0.8",
        "--target-seconds",
        "20",
        "--patience",
        "180",
        "--shrinkage",
        "0.3",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "10.00 Erlangs" in out
    assert "NS 20 s (C)" in out and "Abandons (A)" in out
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["14"])
    assert row[1:5] == ["71.4", "%", "17.4", "%"]  # occupancy, P(wait) of the example
    assert "Erlang C : 14 au téléphone, 20 planifiés" in out
    assert "Erlang A (patience 180 s) :" in out


def test_erlang_json() -> None:
    proc = plan("erlang", "--calls-per-hour", "100", "--aht", "300", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["load_erlangs"] == pytest.approx(8.3333, abs=1e-4)
    assert data["recommended"]["erlang_a"] is None
    rows = {row["agents"]: row for row in data["table"]}
    best = data["recommended"]["erlang_c"]["on_phones"]
    assert (
        rows[best]["erlang_c"]["service_level"] >= 0.8 > rows[best - 1]["erlang_c"]["service_level"]
    )


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data[-8:-4] == b"IEND"
    return width, height


def test_simulate_prints_the_four_policies_and_writes_a_png(tmp_path: Path) -> None:
    png = tmp_path / "out" / "semaine.png"
    proc = plan("simulate", "--days", "2", "--seed", "3", "--png", str(png))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("2 jours ouvrés à partir du 01/09/2025")
    header = lines[1]
    for column in ("Politique", "Appels", "Perdus", "NS 20 s", "NS 60 s", "Attente p90"):
        assert column in header
    labels = ["sans bot ni rappel", "rappels", "bot", "bot + rappels"]
    columns = re.split(r"\s{2,}", header.strip())
    rows = [
        dict(zip(columns, re.split(r"\s{2,}", line.strip()), strict=True)) for line in lines[2:6]
    ]
    assert [row["Politique"] for row in rows] == labels
    assert len({row["Appels"] for row in rows}) == 1  # the same callers for every policy
    assert rows[0]["Bot"] == "0" and int(rows[2]["Bot"]) > 0
    assert rows[0]["Rappels dem./faits/échoués"] == "0/0/0"
    assert any("Erlang C" in line for line in lines)
    assert png_size(png) == (1200, 900)
    assert png.stat().st_size > 30_000  # three panels of curves, not an empty canvas


def test_simulate_json_matches_the_policies() -> None:
    proc = plan("simulate", "--days", "1", "--json", "--agents", "10", "--bot-containment", "0.3")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["agents"] == 10
    assert data["bot_containment"]["urgence_sociale"] == 0.0
    assert data["bot_containment"]["apa"] == 0.3
    policies = {p["policy"]: p for p in data["policies"]}
    assert list(policies) == ["baseline", "callbacks", "bot", "bot+callbacks"]
    assert policies["baseline"]["bot_ended"] == 0
    assert 0.2 < policies["bot"]["bot_ended"] / policies["bot"]["calls"] < 0.4
    assert (
        data["peak_staffing"]["with_bot"]["erlang_c"]
        < data["peak_staffing"]["without_bot"]["erlang_c"]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["erlang", "--calls-per-hour", "100", "--aht", "0"], "--aht: doit être > 0"),
        (["erlang", "--calls-per-hour", "cent", "--aht", "300"], "nombre attendu"),
        (["erlang", "--aht", "300"], "--calls-per-hour"),
        (["erlang", "--calls-per-hour", "100", "--aht", "300", "--target-sl", "1.2"], "entre 0"),
        (["erlang", "--calls-per-hour", "100", "--aht", "300", "--shrinkage", "1"], "[0, 1["),
        (["simulate", "--days", "0"], "--days: doit être >= 1"),
        (["simulate", "--config", "/nonexistent/routing.yaml"], "/nonexistent/routing.yaml"),
        (["forecast"], "invalid choice"),
        (
            ["erlang", "--calls-per-hour", "100", "--aht", "300", "--max-abandon", "0.01"],
            "--max-abandon demande --patience",
        ),
        (["erlang", "--calls-per-hour", "1e9", "--aht", "300"], "aucun effectif raisonnable"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args: list[str], message: str) -> None:
    proc = plan(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


def test_a_broken_routing_file_names_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "routing.yaml"
    broken.write_text("timezone: Europe/Paris\nqueues: [\n", encoding="utf-8")
    proc = plan("simulate", "--days", "1", "--config", str(broken))
    assert proc.returncode == 2
    assert f"{broken}:3" in proc.stderr


def test_the_erlang_a_recommendation_is_in_the_table_when_it_needs_more_agents() -> None:
    # Impatient callers and at most 1 % abandons: Erlang A needs more than Erlang C's 80/60.
    proc = plan(
        "erlang",
        *("--calls-per-hour", "100", "--aht", "300", "--target-sl", "0.8"),
        *("--target-seconds", "60", "--patience", "60", "--max-abandon", "0.01", "--json"),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    need_a = data["recommended"]["erlang_a"]["on_phones"]
    assert need_a > data["recommended"]["erlang_c"]["on_phones"]
    rows = {row["agents"]: row for row in data["table"]}
    assert need_a in rows and need_a + 1 in rows
    assert rows[need_a]["erlang_a"]["p_abandon"] <= 0.01 < rows[need_a - 1]["erlang_a"]["p_abandon"]
