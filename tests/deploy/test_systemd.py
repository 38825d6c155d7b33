"""deploy/systemd: the unit, its environment file and the admin wrapper.

The unit is checked three ways: parsed here (sections, hardening keys, the ExecStart command line
through the real CLI parser, the stop timeout against the drain timeout), by
``systemd-analyze verify`` and ``systemd-analyze security --offline`` when systemd is installed,
and the environment file is loaded by the real configuration loader.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from callcenter.cli import build_parser
from callcenter.config import load_config
from tests.deploy import config_key, parse_env_file

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD / "callcenter.service"
ENV_FILE = SYSTEMD / "callcenter.env"
ADMIN = SYSTEMD / "callcenter-admin"
EXAMPLE_TOML = ROOT / "deploy" / "callcenter.example.toml"
INSTALLED_BIN = "/opt/callcenter/venv/bin/callcenter"

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """Parse a systemd unit: {section: {key: [values in order]}} (keys may repeat)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    logical = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not logical and (not line or line.startswith(("#", ";"))):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        line, logical = logical + line, ""
        if line.startswith("["):
            assert line.endswith("]"), f"{UNIT.name}:{number}: bad section header"
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{UNIT.name}:{number}: key outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{UNIT.name}:{number}: expected Key=value"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text())


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values, f"[{section}] {key}= is missing"
    return values[-1]


def test_sections_and_install(unit: Unit) -> None:
    assert set(unit) == {"Unit", "Service", "Install"}
    assert one(unit, "Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in one(unit, "Unit", "After")
    assert "network-online.target" in one(unit, "Unit", "Wants")


def test_exec_start_is_a_real_serve_command_line(unit: Unit) -> None:
    argv = shlex.split(one(unit, "Service", "ExecStart"))
    assert argv[0] == INSTALLED_BIN
    args = build_parser().parse_args(argv[1:])
    assert args.command == "serve"
    assert args.config == "/etc/callcenter/callcenter.toml"
    # The data dir comes from the environment file, not from a flag that would hide it.
    assert args.data_dir is None
    assert one(unit, "Service", "EnvironmentFile") == "/etc/callcenter/callcenter.env"
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_stop_waits_longer_than_the_drain(unit: Unit) -> None:
    drain = load_config(EXAMPLE_TOML, env={}).calls.drain_timeout
    stop = float(one(unit, "Service", "TimeoutStopSec"))
    assert stop >= drain + 15, f"TimeoutStopSec={stop} must exceed calls.drain_timeout={drain}"
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    assert one(unit, "Service", "KillMode") == "mixed"
    assert one(unit, "Service", "Restart") == "on-failure"


def test_hardening(unit: Unit) -> None:
    service = unit["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "StateDirectory": "callcenter",
        "User": "callcenter",
    }
    for key, value in expected.items():
        assert service.get(key, [None])[-1] == value, f"{key}= should be {value!r}"
    families = set(one(unit, "Service", "RestrictAddressFamilies").split())
    # AF_NETLINK: aioice lists the machine's addresses for the WebRTC host candidates.
    assert families == {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}
    max_calls = load_config(EXAMPLE_TOML, env={}).calls.max_calls
    # Per call: RTP + RTCP sockets on each leg, plus the panel's websockets and the database.
    assert int(one(unit, "Service", "LimitNOFILE")) >= 8 * max_calls
    assert "ReadWritePaths" in service


def test_state_directory_is_the_data_dir(unit: Unit) -> None:
    env = parse_env_file(ENV_FILE.read_text(), commented=False)
    state = "/var/lib/" + one(unit, "Service", "StateDirectory")
    assert env["CALLCENTER_DATA_DIR"] == state
    assert one(unit, "Service", "WorkingDirectory") == state


@pytest.mark.parametrize("commented", [False, True], ids=["set", "with-examples"])
def test_environment_file_holds_real_configuration_keys(commented: bool) -> None:
    env = parse_env_file(ENV_FILE.read_text(), commented=commented)
    assert env, "no variables found"
    for var in env:
        config_key(var)
    config = load_config(EXAMPLE_TOML, env=env)
    assert config.data_dir == "/var/lib/callcenter"
    if commented:
        assert config.routing.backend == "redis"
        assert config.database_url.startswith("postgresql+psycopg://")
        assert config.sip.untrusted == "forbid"


def test_environment_file_has_no_real_secret() -> None:
    env = parse_env_file(ENV_FILE.read_text(), commented=True)
    for var, value in env.items():
        if "PASSWORD" in var:
            assert value == "CHANGE-ME", var
    assert "CHANGE-ME@" in env["DATABASE_URL"]


def _unit_for_this_machine(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's ``callcenter`` (verify checks it exists)."""
    binary = Path(sys.executable).parent / "callcenter"
    assert binary.exists(), binary
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED_BIN, str(binary)))
    return copy


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd not installed")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(_unit_for_this_machine(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd not installed")
def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    # Exposure levels run from 0 (locked down) to 10 (unprotected); the threshold is in tenths.
    result = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            "--threshold=20",
            str(_unit_for_this_machine(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    level = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert level is not None and float(level.group(1)) <= 2.0, result.stdout[-500:]


needs_root_and_setpriv = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="the admin wrapper switches users: root and setpriv (util-linux) needed",
)


def run_admin(env_file: Path, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``callcenter-admin`` as root with ``program`` standing for the installed CLI."""
    return subprocess.run(
        ["sh", str(ADMIN), *args],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "CALLCENTER_USER": "root",
            "CALLCENTER_ENV_FILE": str(env_file),
            "CALLCENTER_BIN": program,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_root_and_setpriv
def test_admin_wrapper_runs_the_cli_with_the_service_environment(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env_file = tmp_path / "callcenter.env"
    env_file.write_text(
        ENV_FILE.read_text().replace(
            "CALLCENTER_DATA_DIR=/var/lib/callcenter", f"CALLCENTER_DATA_DIR={data}"
        )
    )
    result = run_admin(
        env_file, str(Path(sys.executable).parent / "callcenter"), "calls", "list", "--limit", "1"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"
    # The store was created in the data dir named by the environment file (SQLite by default).
    assert (data / "callcenter.sqlite3").exists()


@needs_root_and_setpriv
def test_admin_wrapper_reads_the_environment_file_as_systemd(tmp_path: Path) -> None:
    """Values are taken literally (no shell expansion), blanks and CRs trimmed, junk skipped."""
    data = tmp_path / "data"
    data.mkdir()
    env_file = tmp_path / "callcenter.env"
    env_file.write_text(
        f"CALLCENTER_DATA_DIR={data}  \r\n"
        "  # a comment\n"
        'PASSWORD_LIKE="a b $HOME `id` ; rm"\n'
        "NO_EQUALS_SIGN\n"
        "  INDENTED = kept\n"
        "SINGLE='quoted'\n"
    )
    result = run_admin(env_file, shutil.which("env") or "/usr/bin/env")
    assert result.returncode == 0, result.stderr
    seen = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert seen["CALLCENTER_DATA_DIR"] == str(data)
    assert seen["PASSWORD_LIKE"] == "a b $HOME `id` ; rm"
    assert seen["INDENTED"] == "kept" and seen["SINGLE"] == "quoted"
    assert "NO_EQUALS_SIGN" not in seen
