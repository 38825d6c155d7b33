"""The service's life: start-up errors, flow reloads (SIGHUP and file change), drain on SIGTERM.

Real service subprocess, real sipp caller, loopback only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.loopback import audio
from tests.loopback.service import (
    SIPP_DIR,
    Service,
    run_service,
    run_sipp,
    service_missing_reason,
    sipp_popen,
)
from tests.loopback.test_sipp_calls import call_scenario

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason())),
]

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "ivr_flows" / "solidarites.yaml"


def sip_request(target: tuple[str, int], method: str, *, timeout: float = 3.0) -> str:
    """Send one out-of-dialog request from a fresh UDP socket and return the final response."""
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        body = (
            "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            if method == "INVITE"
            else ""
        )
        lines = [
            f"{method} sip:3975@{target[0]}:{target[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id[:16]};rport",
            "Max-Forwards: 70",
            f"From: <sip:test@127.0.0.1:{port}>;tag=t{call_id[:8]}",
            f"To: <sip:3975@{target[0]}:{target[1]}>",
            f"Call-ID: {call_id}",
            f"CSeq: 1 {method}",
            f"Contact: <sip:test@127.0.0.1:{port}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        sock.sendto(("\r\n".join(lines) + "\r\n\r\n" + body).encode(), target)
        sock.settimeout(timeout)
        while True:
            data = sock.recv(65535).decode()
            status = int(data.split(" ", 2)[1])
            if status >= 200:
                return data


def sip_addr(svc: Service) -> tuple[str, int]:
    host, port = svc.sip_target.rsplit(":", 1)
    return host, int(port)


def wait_for_log(svc: Service, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in svc.log_path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the service log:\n{svc.log_tail()}")


def first_prompt_of_newest_call(svc: Service, tmp_path: Path) -> str:
    """Call, hang up during the first prompt, and return that prompt's id from the trail."""
    result = run_sipp(
        SIPP_DIR / "uac_bye_during_prompt.xml", svc.sip_target, tmp_path, timeout_s=20
    )
    assert result.returncode == 0, result.describe()
    trail = svc.wait_call_ended(result.call_ids[0])
    played = [e["data"]["prompt_id"] for e in trail["events"] if e["type"] == "prompt_played"]
    assert played, trail
    return str(played[0])


def test_flow_reload_keeps_the_last_good_version(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    shutil.copy(FLOW, flows / "solidarites.yaml")
    env = {"CALLCENTER_FLOWS_DIRECTORY": str(flows), "CALLCENTER_FLOWS_WATCH_INTERVAL": "0.3"}
    with run_service(tmp_path / "data", env=env) as svc:
        assert first_prompt_of_newest_call(svc, tmp_path / "c1") == "welcome"

        # An invalid version (SIGHUP): refused with file and line, the old flow keeps serving.
        (flows / "solidarites.yaml").write_text(
            FLOW.read_text().replace("type: menu", "type: menuu", 1)
        )
        svc.proc.send_signal(signal.SIGHUP)
        wait_for_log(svc, "flow reload refused")
        assert "solidarites.yaml:" in svc.log_path.read_text()
        assert first_prompt_of_newest_call(svc, tmp_path / "c2") == "welcome"
        assert svc.health()[0] == 200

        # A valid new version, picked up by the file watcher without a signal.
        (flows / "solidarites.yaml").write_text(
            FLOW.read_text()
            .replace("id: welcome\n", "id: welcome_v2\n")
            .replace("prompt: welcome\n", "prompt: welcome_v2\n")
        )
        wait_for_log(svc, "flows reloaded")
        assert first_prompt_of_newest_call(svc, tmp_path / "c3") == "welcome_v2"


def test_sigterm_drains_calls_then_exits(tmp_path: Path) -> None:
    env = {"CALLCENTER_CALLS_DRAIN_TIMEOUT": "3"}
    with run_service(tmp_path / "data", env=env) as svc:
        scenario = call_scenario(tmp_path, codec="PCMU", digit="1")
        proc, _ = sipp_popen(scenario, svc.sip_target, tmp_path / "sipp", timeout_s=60)
        try:
            deadline = time.monotonic() + 10
            while svc.health()[1].get("active_calls") != 1:
                assert time.monotonic() < deadline, svc.log_tail()
                time.sleep(0.1)
            svc.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            status, body = svc.health()
            assert (status, body.get("status")) == (503, "draining")
            # New calls are refused while draining; OPTIONS still answered.
            assert sip_request(sip_addr(svc), "INVITE").startswith("SIP/2.0 503")
            assert sip_request(sip_addr(svc), "OPTIONS").startswith("SIP/2.0 200")
            # After drain_timeout the running call is hung up (BYE) and the process exits 0.
            assert svc.proc.wait(timeout=15) == 0
            assert proc.wait(timeout=15) == 0, "sipp did not get the service's BYE"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # The trail was flushed before exit: the call ended with cause "shutdown".
    out = subprocess.run(
        [sys.executable, "-m", "callcenter", "calls", "list", "--limit", "1"],
        env={**os.environ, "CALLCENTER_DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"hangup_cause": "shutdown"' in out.stdout, out.stdout


def test_missing_espeak_is_a_clear_start_up_error(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    proc = subprocess.run(
        [sys.executable, "-m", "callcenter", "serve", "--sip-port", "0", "--http-port", "0"],
        env={**os.environ, "PATH": str(bindir), "CALLCENTER_DATA_DIR": str(tmp_path / "d")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert "espeak-ng" in proc.stderr and "apt-get install espeak-ng" in proc.stderr, proc.stderr


def test_invalid_flow_is_a_clear_start_up_error(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "solidarites.yaml").write_text(
        FLOW.read_text().replace("next: ask_question", "next: nowhere")
    )
    proc = subprocess.run(
        [sys.executable, "-m", "callcenter", "serve", "--sip-port", "0", "--http-port", "0"],
        env={
            **os.environ,
            "CALLCENTER_DATA_DIR": str(tmp_path / "d"),
            "CALLCENTER_FLOWS_DIRECTORY": str(flows),
        },
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert "solidarites.yaml:" in proc.stderr and "nowhere" in proc.stderr, proc.stderr


def test_cli_flows_check_and_calls_show(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "callcenter", "flows", "check", str(FLOW)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok
    bad = tmp_path / "bad.yaml"
    bad.write_text(FLOW.read_text().replace("type: menu", "type: menuu", 1))
    ko = subprocess.run(
        [sys.executable, "-m", "callcenter", "flows", "check", str(bad)],
        capture_output=True,
        text=True,
    )
    assert ko.returncode == 1 and f"{bad}:" in ko.stderr, ko

    with run_service(tmp_path / "data") as svc:
        wav = audio.caller_wav(tmp_path / "w.wav", "u-law")
        assert wav.exists()
        prompt = first_prompt_of_newest_call(svc, tmp_path / "c")
        call_id = svc.calls(limit=1)[0]["sip_call_id"]
    env = {**os.environ, "CALLCENTER_DATA_DIR": str(tmp_path / "data")}
    shown = subprocess.run(
        [sys.executable, "-m", "callcenter", "calls", "show", call_id],
        env=env,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert call_id in shown.stdout and prompt in shown.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "callcenter", "calls", "show", "no-such-call"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 1 and "no call" in missing.stderr
