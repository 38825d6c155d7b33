"""The service registers to a real Kamailio registrar (digest auth); a call routed by Kamailio
to the registered address of record reaches the service's flow."""

from __future__ import annotations

import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.loopback.kamailio import KamailioRegistrar, kamailio_available, run_kamailio
from tests.loopback.service import SIPP_DIR, run_service, run_sipp, service_missing_reason

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(not kamailio_available(), reason="kamailio not installed"),
    pytest.mark.skipif(
        shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed"
    ),
    pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason())),
    pytest.mark.timeout(120),
]

AOR_USER = "3975"


def routed_status(registrar: KamailioRegistrar, user: str) -> int | None:
    """Send an OPTIONS for ``user`` through Kamailio; return the final status it gets back.

    Kamailio answers 404 while the user is not registered, and relays to the contact otherwise.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        branch = "z9hG4bK" + secrets.token_hex(8)
        msg = (
            f"OPTIONS sip:{user}@{registrar.host}:{registrar.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
            f"From: <sip:probe@127.0.0.1:{port}>;tag={secrets.token_hex(4)}\r\n"
            f"To: <sip:{user}@{registrar.host}>\r\n"
            f"Call-ID: {secrets.token_hex(8)}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(msg.encode(), registrar.address)
        sock.settimeout(2.0)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                return None
            code = int(data.split(b" ", 2)[1])
            if code >= 200:
                return code
    return None


@pytest.fixture
def registrar(tmp_path: Path) -> Iterator[KamailioRegistrar]:
    with run_kamailio(tmp_path / "kamailio", password="Solid-" + secrets.token_hex(6)) as reg:
        yield reg


def test_call_through_kamailio_reaches_the_flow(
    registrar: KamailioRegistrar, tmp_path: Path
) -> None:
    assert routed_status(registrar, AOR_USER) == 404  # nobody registered yet
    env = {
        "CALLCENTER_SIP_REGISTRAR": registrar.uri,
        "CALLCENTER_SIP_USERNAME": registrar.user,
        "CALLCENTER_SIP_PASSWORD": registrar.password,
        "CALLCENTER_SIP_AOR": f"sip:{AOR_USER}@{registrar.host}:{registrar.port}",
    }
    with run_service(tmp_path / "data", env=env) as svc:
        deadline = time.monotonic() + 15
        status = routed_status(registrar, AOR_USER)
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
            status = routed_status(registrar, AOR_USER)
        assert status == 200, (
            f"OPTIONS via Kamailio -> {status}\n--- kamailio ---\n{registrar.log[-3000:]}\n"
            f"--- service ---\n{svc.log_tail()}"
        )

        # sipp dials Kamailio, not the service: the INVITE is relayed to the registered contact.
        result = run_sipp(
            SIPP_DIR / "uac_bye_during_prompt.xml",
            f"{registrar.host}:{registrar.port}",
            tmp_path / "sipp",
            service=AOR_USER,
            timeout_s=20,
        )
        assert result.returncode == 0, f"{result.describe()}\n{registrar.log[-2000:]}"
        invite_200 = result.received(r"SIP/2.0 200")[0]
        # The answer came back through the proxy: its Via was stripped, ours is on top.
        assert "Via:" in invite_200
        trail = svc.wait_call_ended(result.call_ids[0])
        types = [e["type"] for e in trail["events"]]
        assert "answered" in types, types
        assert any(e["type"] == "flow_node" for e in trail["events"]), types
        assert any(e["type"] == "prompt_played" for e in trail["events"]), types
        hangup = [e["data"] for e in trail["events"] if e["type"] == "hangup"]
        assert hangup and hangup[0]["side"] == "caller", hangup
