"""``callcenter agents``: add, list, set-skills, token, disable, with clear errors."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from callcenter.cli import main
from callcenter.store import agents, db, panel


def run(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> tuple[int, str, str]:
    code = main(["agents", *args[:1], "--data-dir", str(data), *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_agents_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "var"
    code, out, _ = run(
        capsys, data, "add", "c.durand", "--name", "Claire Durand", "--skill", "apa:4",
        "--skill", "accueil_general", "--sip-uri", "sip:poste12@127.0.0.1:5070",
    )  # fmt: skip
    assert code == 0, out
    token = out.strip().splitlines()[-1].rsplit(" ", 1)[1]
    engine = db.make_engine(f"sqlite:///{data / 'callcenter.sqlite3'}")
    agent = agents.agent_for_token(engine, token)
    assert agent is not None and agent.skills == {"apa": 4, "accueil_general": 3}

    code, out, _ = run(capsys, data, "set-skills", "c.durand", "--skill", "mdph_adulte:5")
    assert code == 0 and "mdph_adulte:5" in out
    code, out, _ = run(capsys, data, "list", "--json")
    listed = json.loads(out)
    assert listed == [
        {
            "login": "c.durand",
            "display_name": "Claire Durand",
            "sip_uri": "sip:poste12@127.0.0.1:5070",
            "active": True,
            "skills": {"mdph_adulte": 5},
        }
    ]
    code, out, _ = run(capsys, data, "token", "c.durand")
    assert code == 0 and agents.agent_for_token(engine, token) is None
    code, out, _ = run(capsys, data, "disable", "c.durand")
    assert code == 0 and agents.list_agents(engine) == []
    engine.dispose()

    code, _, err = run(capsys, data, "set-skills", "c.durand", "--skill", "apa:9")
    assert code == 1 and "skill: proficiency of apa must be 1 to 5, got '9'" in err
    code, _, err = run(capsys, data, "add", "c.durand", "--name", "Again")
    assert code == 1 and "login: 'c.durand' is already taken" in err


def test_set_password_reads_stdin_and_sets_the_role(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "var"
    code, out, _ = run(capsys, data, "add", "s.chef", "--name", "Sam Chef", "--role", "supervisor")
    assert code == 0, out
    secret = "un long mot de passe"
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    code, out, err = run(capsys, data, "set-password", "s.chef")
    assert code == 0, err
    assert out.strip() == "s.chef: panel password set (role supervisor)"
    assert secret not in out + err
    engine = db.make_engine(f"sqlite:///{data / 'callcenter.sqlite3'}")
    now = datetime.now(UTC)
    result = panel.authenticate(engine, "s.chef", secret, now)
    assert (result.status, result.role) == ("ok", "supervisor")
    session = panel.create_session(engine, "s.chef", now=now, absolute_s=60)

    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "!\n"))
    code, out, _ = run(capsys, data, "set-password", "s.chef", "--role", "admin")
    assert code == 0 and "(role admin)" in out
    assert panel.authenticate(engine, "s.chef", secret, now).status == "bad"
    assert panel.session_for(engine, session.raw_id, now, 900, 60) is None  # revoked

    session = panel.create_session(engine, "s.chef", now=now, absolute_s=60)
    code, _, _ = run(capsys, data, "disable", "s.chef")
    assert code == 0 and panel.revoke_sessions(engine, "s.chef") == 0  # already revoked
    engine.dispose()

    monkeypatch.setattr("sys.stdin", io.StringIO("court\n"))
    code, _, err = run(capsys, data, "set-password", "s.chef")
    assert code == 1 and "password: at least 12 characters" in err
    code, _, err = run(capsys, data, "set-password", "nobody")
    assert code == 1 and "login: no agent 'nobody'" in err
    with pytest.raises(SystemExit):  # never on the command line
        run(capsys, data, "set-password", "s.chef", "--password", secret)


def test_demo_accounts_are_created_once_with_the_password_from_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "var"
    for _ in range(2):  # make run may run again: nothing is created twice
        monkeypatch.setattr("sys.stdin", io.StringIO("mot de passe de démo\n"))
        code, out, err = run(capsys, data, "demo")
        assert code == 0, err
        assert "demo.agent: panel account ready (role agent)" in out
    engine = db.make_engine(f"sqlite:///{data / 'callcenter.sqlite3'}")
    now = datetime.now(UTC)
    assert panel.authenticate(engine, "demo.chef", "mot de passe de démo", now).role == "supervisor"
    demo = agents.get_agent(engine, "demo.agent")
    assert demo is not None and demo.skills["apa"] == 3 and "accueil_general" in demo.skills
    engine.dispose()
