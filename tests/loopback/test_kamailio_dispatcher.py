"""deploy/kamailio/dispatcher.cfg in front of two nodes: round robin, failover, probing.

The nodes here are sipp UAS (tests/sipp/uas_answer_routed.xml, answering OPTIONS probes with
``-aa``); the test with two
real service processes sharing Redis is tests/loopback/test_multinode.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.loopback.kamailio import kamailio_available, run_dispatcher
from tests.loopback.service import SIPP_DIR, free_port, run_sipp, sipp_background

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(not kamailio_available(), reason="kamailio not installed"),
    pytest.mark.skipif(
        shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed"
    ),
    pytest.mark.timeout(120),
]

HOST = "127.0.0.1"
SCENARIO = SIPP_DIR / "uac_short_call_routed.xml"


class Node:
    """A sipp UAS standing for one service node."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.messages = workdir / "messages.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [
            "sipp", "-sf", str(SIPP_DIR / "uas_answer_routed.xml"), "-aa",
            "-i", HOST, "-p", str(self.port), "-nostdin",
            "-trace_msg", "-message_file", str(self.messages),
        ]  # fmt: skip

    def invites(self) -> int:
        text = self.messages.read_text(errors="replace") if self.messages.exists() else ""
        return text.count("INVITE sip:")


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[list[Node]]:
    made = []
    for name in ("a", "b"):
        workdir = tmp_path / name
        workdir.mkdir()
        made.append(Node(workdir))
    with sipp_background(made[0].command(), made[0].workdir) as p0:
        made[0].proc = p0
        with sipp_background(made[1].command(), made[1].workdir) as p1:
            made[1].proc = p1
            time.sleep(0.3)
            yield made


def calls(dispatcher_port: int, workdir: Path, count: int) -> None:
    result = run_sipp(
        SCENARIO,
        f"{HOST}:{dispatcher_port}",
        workdir,
        calls=count,
        limit=1,
        rate=20,
        timeout_s=20,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.errors[-2000:]


def test_round_robin_then_failover_when_a_node_dies(tmp_path: Path, nodes: list[Node]) -> None:
    a, b = nodes
    with run_dispatcher(
        tmp_path / "kamailio", [(HOST, a.port), (HOST, b.port)], fr_timer_ms=1000
    ) as dispatcher:
        calls(dispatcher.port, tmp_path / "uac1", 4)
        assert (a.invites(), b.invites()) == (2, 2)

        assert b.proc is not None
        b.proc.kill()
        b.proc.wait()
        # Calls still succeed: the dead node is skipped after a probe, or after the INVITE to it
        # times out (fr_timer) and fails over to the next node.
        calls(dispatcher.port, tmp_path / "uac2", 4)
        assert a.invites() == 6
