"""Outbound calls (agent legs, callbacks) from the engine over real UDP to sipp UAS peers.

The engine runs behind the real asyncio adapter (``callcenter/transport/sip_udp.py``) and a
few lines standing in for the service's future ``place_call`` API (``OutboundStack``): commands
go in with ``loop.time()`` and a ``flush()``, events come out through the adapter's callback.
The far ends are sipp UAS scenarios (``tests/sipp/uas_*.xml.tmpl``): an agent phone that
answers (and accepts a hold re-INVITE), one that challenges with 401 and checks the digest with
``verifyauth``, one that rings until cancelled, and a busy one. The last test places the call
through a real Kamailio proxy that demands proxy authentication (407) and record-routes, so the
ACK, the re-INVITE and the BYE must follow the route set.

Everything binds 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from callcenter.sip.auth import DigestCredentials
from callcenter.sip.engine import SipEngine, SipEngineConfig
from callcenter.sip.events import (
    CallTerminated,
    MessageDropped,
    OutboundCallAnswered,
    OutboundCallFailed,
    OutboundCallRinging,
    ReInviteAnswered,
    SipEvent,
    SipRequestReceived,
    SipResponseSent,
)
from callcenter.transport.sip_udp import SipUdpTransport
from tests.loopback.kamailio import KamailioRegistrar, kamailio_available, run_kamailio
from tests.loopback.service import free_port, free_port_pair, render_scenario

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.timeout(60),
    pytest.mark.skipif(
        shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed"
    ),
]

HOST = "127.0.0.1"
SERVICE_NUMBER = "3975"
OFFER = (
    b"v=0\r\no=callcenter 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 9 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=sendrecv\r\n"
)
HOLD = OFFER.replace(b"1 1 IN", b"1 2 IN").replace(b"a=sendrecv", b"a=sendonly")
_METRIC_EVENTS = (SipRequestReceived, SipResponseSent, MessageDropped)
T = TypeVar("T")


@dataclass
class OutboundStack:
    """The engine behind the real UDP adapter, with the events the application would get.

    This is the shape ``Service.place_call`` would take in ``app.py``: run an engine command at
    ``loop.time()``, then ``flush()`` so the datagrams leave and the timer is re-armed.
    """

    engine: SipEngine
    udp: SipUdpTransport
    events: asyncio.Queue[SipEvent] = field(default_factory=asyncio.Queue)

    def command(self, run: Callable[[float], T]) -> T:
        result = run(self.udp.now())
        self.udp.flush()
        return result

    async def expect(self, kind: type[T], within: float = 10.0) -> T:
        """Return the next application event, which must be a ``kind``."""
        async with asyncio.timeout(within):
            event = await self.events.get()
        assert isinstance(event, kind), event
        return event


@contextlib.asynccontextmanager
async def outbound_stack() -> AsyncIterator[OutboundStack]:
    port = free_port()
    engine = SipEngine(config=SipEngineConfig(local_host=HOST, local_port=port, trace=True))
    queue: asyncio.Queue[SipEvent] = asyncio.Queue()

    def on_event(event: SipEvent) -> None:
        if not isinstance(event, _METRIC_EVENTS):
            queue.put_nowait(event)

    udp = await SipUdpTransport.open(
        SipUdpTransport.bind(HOST, port), engine=engine, on_event=on_event
    )
    try:
        yield OutboundStack(engine=engine, udp=udp, events=queue)
    finally:
        udp.close()
        await udp.wait_closed()


@dataclass
class SippUas:
    """A sipp UAS running one scenario for one call."""

    proc: asyncio.subprocess.Process
    port: int
    workdir: Path

    @property
    def uri_host(self) -> str:
        return f"{HOST}:{self.port}"

    def _read(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def messages(self) -> str:
        return self._read("messages.log")

    @property
    def logs(self) -> str:
        return self._read("logs.log")

    def describe(self) -> str:
        return (
            f"--- sipp errors ---\n{self._read('errors.log')[-3000:]}\n"
            f"--- sipp messages ---\n{self.messages[-6000:]}"
        )

    async def finished(self, within: float = 20.0) -> int:
        """Wait for sipp to end its one call; return its exit code (0: the call succeeded)."""
        async with asyncio.timeout(within):
            return await self.proc.wait()

    def received(self, method: str) -> list[str]:
        """The messages sipp received whose first line starts with ``method``."""
        blocks = self.messages.split("message received")
        return [b for b in blocks[1:] if b.split("\n\n", 1)[-1].lstrip().startswith(method)]


def _scenario(template: str, workdir: Path, values: dict[str, str]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    return render_scenario(template, workdir / template.removesuffix(".tmpl"), **values)


@contextlib.asynccontextmanager
async def sipp_uas(
    template: str, workdir: Path, *, port: int | None = None, **values: str
) -> AsyncIterator[SippUas]:
    """A sipp UAS for one call on ``port`` (a free one by default: a trunk URI may name it)."""
    scenario = _scenario(template, workdir, values)
    port = port or free_port()
    cmd = [
        "sipp",
        "-sf",
        str(scenario),
        "-i",
        HOST,
        "-p",
        str(port),
        "-mi",
        HOST,
        "-mp",
        str(free_port_pair()),
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "40s",
        "-timeout_error",
        "-trace_msg",
        "-message_file",
        str(workdir / "messages.log"),
        "-trace_err",
        "-error_file",
        str(workdir / "errors.log"),
        "-trace_logs",
        "-log_file",
        str(workdir / "logs.log"),
    ]
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=workdir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _wait_udp_bound(port, proc)
        yield SippUas(proc=proc, port=port, workdir=workdir)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _wait_udp_bound(port: int, proc: asyncio.subprocess.Process) -> None:
    """Wait until sipp holds its UDP port (so our first INVITE is not lost to a race)."""
    for _ in range(200):
        if proc.returncode is not None:
            raise RuntimeError(f"sipp exited with {proc.returncode} at start-up")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                return
        await asyncio.sleep(0.02)
    raise RuntimeError("sipp did not bind its port")


# -- (a) answered, held, hung up -------------------------------------------------------------


async def test_agent_answers_then_hold_then_our_bye(tmp_path: Path) -> None:
    async with (
        outbound_stack() as stack,
        sipp_uas("uas_answer.xml.tmpl", tmp_path, ring_ms="300", from_user=SERVICE_NUMBER) as uas,
    ):
        call_id = stack.command(
            lambda now: stack.engine.invite(
                f"sip:agent12@{uas.uri_host}",
                OFFER,
                now,
                from_user=SERVICE_NUMBER,
                from_display="Solidarités",
            )
        )
        ringing = await stack.expect(OutboundCallRinging)
        assert ringing == OutboundCallRinging(call_id, 180, None)
        answered = await stack.expect(OutboundCallAnswered)
        assert answered.call_id == call_id
        assert answered.sdp_answer is not None and b"m=audio" in answered.sdp_answer
        assert stack.command(lambda now: stack.engine.reinvite(call_id, HOLD, now))
        held = await stack.expect(ReInviteAnswered)
        assert held.sdp_answer is not None and b"a=recvonly" in held.sdp_answer
        stack.command(lambda now: stack.engine.hangup(call_id, now))
        ended = await stack.expect(CallTerminated)
        assert ended == CallTerminated(call_id, "local_hangup", "service")
        rc = await uas.finished()
        assert rc == 0, uas.describe()
    (invite,) = [m for m in uas.received("INVITE") if "a=sendonly" not in m]
    assert f"Call-ID: {call_id}" in invite
    assert '"Solidarités" <sip:3975@127.0.0.1>' in invite
    (bye,) = uas.received("BYE")
    assert "CSeq: 3 BYE" in bye  # INVITE 1, re-INVITE 2, BYE 3 (section 12.2.1.1)


# -- (b) 401 challenge answered, checked by sipp's verifyauth ---------------------------------


@pytest.mark.parametrize("password_ok", [True, False])
async def test_agent_challenge_is_answered(tmp_path: Path, password_ok: bool) -> None:
    password = "Agent-" + secrets.token_hex(6)
    values = {
        "realm": "agents.callcenter.test",
        "nonce": secrets.token_hex(16),
        "user": "agent12",
        "password": password,
    }
    uas_context = sipp_uas(
        "uas_auth.xml.tmpl",
        tmp_path,
        realm=values["realm"],
        nonce=values["nonce"],
        user=values["user"],
        password=values["password"],
    )
    async with outbound_stack() as stack, uas_context as uas:
        credentials = DigestCredentials("agent12", password if password_ok else "wrong-one")
        call_id = stack.command(
            lambda now: stack.engine.invite(
                f"sip:agent12@{uas.uri_host}",
                OFFER,
                now,
                from_user=SERVICE_NUMBER,
                credentials=credentials,
            )
        )
        if password_ok:
            await stack.expect(OutboundCallAnswered)
            stack.command(lambda now: stack.engine.hangup(call_id, now))
            await stack.expect(CallTerminated)
        else:
            failed = await stack.expect(OutboundCallFailed)
            assert failed == OutboundCallFailed(call_id, 403, "Forbidden")
        rc = await uas.finished()
        assert rc == 0, uas.describe()
    assert f"AUTH {'true' if password_ok else 'false'}" in uas.logs, uas.logs
    first, second = uas.received("INVITE")
    assert "Authorization:" not in first
    assert 'username="agent12"' in second and "qop=auth" in second and "nc=00000001" in second
    assert "CSeq: 2 INVITE" in second
    # Section 17.1.1.3: the ACK for the 401 uses the first INVITE's branch.
    branch = first.split("branch=", 1)[1].split(";", 1)[0].split()[0]
    assert branch in uas.received("ACK")[0]
    assert password not in uas.messages


# -- (c) rings until we cancel ------------------------------------------------------------------


async def test_ring_timeout_cancel_gets_487(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    async with outbound_stack() as stack, sipp_uas("uas_ring_forever.xml.tmpl", tmp_path) as uas:
        call_id = stack.command(
            lambda now: stack.engine.invite(
                f"sip:agent12@{uas.uri_host}", OFFER, now, from_user=SERVICE_NUMBER
            )
        )
        await stack.expect(OutboundCallRinging)
        await asyncio.sleep(0.3)  # the router's ring timeout, shortened
        started = loop.time()
        stack.command(lambda now: stack.engine.cancel(call_id, now))
        failed = await stack.expect(OutboundCallFailed)
        cancel_to_outcome = loop.time() - started
        assert failed == OutboundCallFailed(call_id, 487, "Request Terminated")
        rc = await uas.finished()
        assert rc == 0, uas.describe()
    assert stack.engine.calls == {}
    assert cancel_to_outcome < 1.0  # one round trip on loopback, no retransmission needed
    (cancel,) = uas.received("CANCEL")
    assert "CSeq: 1 CANCEL" in cancel
    (ack,) = uas.received("ACK")
    assert "CSeq: 1 ACK" in ack


# -- (d) busy -----------------------------------------------------------------------------------


async def test_busy_agent(tmp_path: Path) -> None:
    async with outbound_stack() as stack, sipp_uas("uas_busy.xml.tmpl", tmp_path) as uas:
        call_id = stack.command(
            lambda now: stack.engine.invite(
                f"sip:agent12@{uas.uri_host}", OFFER, now, from_user=SERVICE_NUMBER
            )
        )
        failed = await stack.expect(OutboundCallFailed)
        assert failed == OutboundCallFailed(call_id, 486, "Busy Here")
        rc = await uas.finished()
        assert rc == 0, uas.describe()
    assert len(uas.received("ACK")) == 1


# -- through Kamailio: 407 proxy authentication and Record-Route --------------------------------

# A proxy for the service's outbound calls: every INVITE must carry proxy credentials (RFC 3261
# section 22.3), is record-routed and relayed to its Request-URI; in-dialog requests follow
# their Route (loose routing). The -A defines come from tests/loopback/kamailio.py.
KAMAILIO_PROXY_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
listen=KAM_LISTEN
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
dns_try_ipv6=no
use_dns_cache=off

loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"

modparam("auth", "qop", "auth")
modparam("auth", "nonce_count", 1)
modparam("auth", "nonce_expire", KAM_NONCE_EXPIRE)
modparam("auth", "algorithm", KAM_ALGORITHM)
modparam("rr", "enable_full_lr", 1)

request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {
        sl_send_reply("200", "OK");
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    if (has_totag()) {
        if (loose_route()) {
            xlog("L_INFO", "in-dialog $rm relayed by Route\\n");
            t_relay();
            exit;
        }
        if (is_method("ACK")) {
            if (t_check_trans()) {
                t_relay();
            }
            exit;
        }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (!is_method("INVITE")) {
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }
    if (!t_newtran()) {
        sl_reply_error();
        exit;
    }
    $var(password) = KAM_PASSWORD;
    $var(rc) = pv_proxy_authenticate(KAM_REALM, "$var(password)", "0");
    if ($var(rc) == -2) {
        t_reply("403", "Forbidden");
        exit;
    }
    if ($var(rc) < 0) {
        proxy_challenge(KAM_REALM, "1");
        exit;
    }
    if ($au != KAM_USER) {
        t_reply("403", "Forbidden");
        exit;
    }
    consume_credentials();
    record_route();
    t_relay();
    exit;
}
"""


@contextlib.contextmanager
def kamailio_proxy(workdir: Path, algorithm: str, password: str) -> Iterator[KamailioRegistrar]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "proxy.cfg"
    config.write_text(KAMAILIO_PROXY_CFG)
    with run_kamailio(
        workdir / "run", config=config, algorithm=algorithm, password=password, user="callcenter"
    ) as proxy:
        yield proxy


@pytest.mark.skipif(not kamailio_available(), reason="kamailio not installed")
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_outbound_call_through_kamailio_with_proxy_auth(
    tmp_path: Path, algorithm: str
) -> None:
    password = "Trunk-" + secrets.token_hex(6)
    with kamailio_proxy(tmp_path / "kamailio", algorithm, password) as proxy:
        async with (
            outbound_stack() as stack,
            sipp_uas(
                "uas_answer.xml.tmpl", tmp_path / "sipp", ring_ms="100", from_user=SERVICE_NUMBER
            ) as uas,
        ):
            call_id = stack.command(
                lambda now: stack.engine.invite(
                    f"sip:0612345678@{uas.uri_host}",
                    OFFER,
                    now,
                    from_user=SERVICE_NUMBER,
                    destination=proxy.address,
                    credentials=DigestCredentials(proxy.user, password),
                )
            )
            await stack.expect(OutboundCallRinging)
            await stack.expect(OutboundCallAnswered)
            assert stack.command(lambda now: stack.engine.reinvite(call_id, HOLD, now))
            await stack.expect(ReInviteAnswered)
            stack.command(lambda now: stack.engine.hangup(call_id, now))
            ended = await stack.expect(CallTerminated)
            assert ended.cause == "local_hangup"
            rc = await uas.finished()
            assert rc == 0, uas.describe() + "\n--- kamailio ---\n" + proxy.log[-3000:]
        trace = stack.engine.trace
        assert trace is not None
        out = [(line, addr) for _t, way, line, addr in trace if way == "out"]
        # A Timer A/E retransmission (a loaded machine) repeats the line before it: drop it.
        out = [m for i, m in enumerate(out) if i == 0 or m != out[i - 1]]
        sent = [(line.split(" ", 1)[0], addr) for line, addr in out]
        # 407, then everything - both INVITEs, the ACKs, the re-INVITE, the BYE - went to the
        # proxy: nothing to the agent's Contact directly (route set, section 12.1.2).
        assert [m for m, _a in sent] == ["INVITE", "ACK", "INVITE", "ACK", "INVITE", "ACK", "BYE"]
        assert {a for _m, a in sent} == {proxy.address}
        received = [line for _t, way, line, _a in trace if way == "in"]
        assert received[0].startswith("SIP/2.0 407")
        (bye,) = uas.received("BYE")
        assert f"{HOST}:{proxy.port}" in bye.split("Via:", 2)[1]  # relayed by Kamailio
        assert "in-dialog BYE relayed by Route" in proxy.log
