from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from ivr_flows import SOLIDARITES_FLOW, check_files
from ivr_flows.check import main

from .helpers import BASE


def test_check_ok_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(BASE, encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace('"1": one', '"1": nowhere').replace("type: hangup", "type: x"))
    out, err = io.StringIO(), io.StringIO()
    assert check_files([str(good)], out=out, err=err) == 0
    assert out.getvalue() == f"ok: 3 nodes, 3 prompts ({good})\n" and err.getvalue() == ""
    out, err = io.StringIO(), io.StringIO()
    assert check_files([str(good), str(bad)], out=out, err=err) == 1
    assert err.getvalue().splitlines() == [
        f"{bad}:15: node 'menu' field 'choices.1': unknown node 'nowhere'",
        f"{bad}:17: node 'one' field 'type': unknown node type 'x' (expected: say, menu, goto, "
        "set, branch, queue, hangup, ask, confirm, identify, dossier_answer)",
    ]
    assert out.getvalue().startswith("ok: 3 nodes")


def test_warnings_do_not_fail(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(BASE + "  orphan:\n    type: goto\n    next: menu\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert check_files([str(path)], out=out, err=err) == 0
    assert (
        err.getvalue() == f"{path}:23: warning: node 'orphan': unreachable from start node 'menu'\n"
    )


def test_usage_errors() -> None:
    err = io.StringIO()
    assert check_files([], out=io.StringIO(), err=err) == 1
    assert main(["frobnicate"]) == 2


def test_python_m_entry_point(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    ok = subprocess.run(
        [sys.executable, "-m", "ivr_flows", "check", str(SOLIDARITES_FLOW)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 26 nodes, 39 prompts")
    bad = subprocess.run(
        [sys.executable, "-m", "ivr_flows", "check", str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert f"{missing}:0: cannot read file" in bad.stderr
