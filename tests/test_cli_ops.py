"""Operator commands: ``callcenter flows prompts`` and ``callcenter db status|upgrade``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callcenter", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
        check=False,
    )


def test_prompts_are_listed_with_the_text_a_recording_must_say() -> None:
    result = run("flows", "prompts")
    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert all(len(row) == 2 and row[0] and row[1].strip() for row in rows), rows[:5]
    ids = [row[0] for row in rows]
    assert len(ids) == len(set(ids))
    texts = dict(rows)
    assert texts["welcome"].startswith("Bonjour")
    # FAQ answers are listed with the département's values filled in, and the queue messages.
    answers = [i for i in ids if i.startswith("faq_answer_")]
    assert len(answers) >= 40
    assert not any("{" in texts[i] for i in answers)
    assert any(i.startswith("routing_") for i in ids)


def test_a_broken_flow_is_named_when_listing_prompts(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    shutil.copytree(REPO / "ivr_flows", flows, ignore=shutil.ignore_patterns("*.py", "__*"))
    (flows / "solidarites.yaml").write_text("flow: [unclosed\n")
    import os

    env = dict(os.environ, CALLCENTER_FLOWS_DIRECTORY=str(flows))
    result = run("flows", "prompts", env=env)
    assert result.returncode == 1
    assert "solidarites.yaml" in result.stderr and result.stdout == ""


def test_db_status_and_upgrade(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    before = run("db", "status", "--data-dir", data)
    assert before.returncode == 1, before.stderr
    assert before.stdout.startswith("database empty, code ")
    upgraded = run("db", "upgrade", "--data-dir", data)
    assert upgraded.returncode == 0, upgraded.stderr
    head = upgraded.stdout.split("code ")[1].strip()
    assert upgraded.stdout.strip() == f"database {head}, code {head}"
    assert run("db", "status", "--data-dir", data).returncode == 0


@pytest.mark.parametrize("command", [("db", "upgrade")])
def test_db_unreachable_is_a_clear_error(command: tuple[str, ...]) -> None:
    import os

    # A closed port on loopback: connection refused at once.
    env = dict(os.environ, DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:9/none")
    result = run(*command, env=env)
    assert result.returncode == 1
    assert "database postgresql" in result.stderr and "nobody@" not in result.stderr.split()[1]
