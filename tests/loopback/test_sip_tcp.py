"""SIP over TCP on loopback: the asyncio adapter around the shared engine, raw clients and sipp.

The UDP adapter and the TCP adapter drive one ``SipEngine``. ``PumpedUdp`` stands in for the
composition root's wiring (the UDP adapter's ``flush`` also runs ``SipTcpTransport.send_pending``),
and a few lines of "application" answer calls, so these tests need neither ``app.py`` nor
``call.py``. The last test runs sipp over TCP against the real service when it listens on TCP.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from callcenter.sip.engine import SipEngine, SipEngineConfig
from callcenter.sip.events import CallConfirmed, CallTerminated, IncomingCall, SipEvent
from callcenter.sip.message import SipResponse
from callcenter.sip.parser import StreamParser
from callcenter.transport.sip_tcp import SipTcpTransport, TcpLimits
from callcenter.transport.sip_udp import SipUdpTransport
from tests.loopback.service import (
    SIPP_DIR,
    free_port,
    run_service,
    run_sipp,
    service_missing_reason,
)

pytestmark = [pytest.mark.loopback, pytest.mark.timeout(60)]

RFC4475 = Path(__file__).resolve().parents[2].parent / "shared" / "sip" / "rfc4475"
HOST = "127.0.0.1"
SDP = (
    b"v=0\r\no=callcenter 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)
needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")


@dataclass
class Stack:
    engine: SipEngine
    udp: SipUdpTransport
    tcp: SipTcpTransport
    port: int
    events: list[SipEvent] = field(default_factory=list)
    hangup_after: float | None = None
    """Seconds after CallConfirmed at which the "application" hangs up (None: never)."""

    def flush(self) -> None:
        self.udp.flush()


def make_on_event(holder: list[Stack]) -> Callable[[SipEvent], None]:
    """A minimal application: answer every call; optionally hang up after a while."""

    def on_event(event: SipEvent) -> None:
        stack = holder[0]
        stack.events.append(event)
        engine, loop = stack.engine, asyncio.get_running_loop()
        if isinstance(event, IncomingCall):
            engine.ring(event.call_id, loop.time())
            engine.answer(event.call_id, SDP, loop.time())
            stack.flush()
        elif isinstance(event, CallConfirmed) and stack.hangup_after is not None:

            def hangup(call_id: str = event.call_id) -> None:
                engine.hangup(call_id, loop.time())
                stack.flush()

            loop.call_later(stack.hangup_after, hangup)

    return on_event


async def open_stack(limits: TcpLimits | None = None) -> Stack:
    port = free_port()
    engine = SipEngine(config=SipEngineConfig(local_host=HOST, local_port=port))
    holder: list[Stack] = []
    udp = await SipUdpTransport.open(
        SipUdpTransport.bind(HOST, port), engine=engine, on_event=make_on_event(holder)
    )
    tcp = await SipTcpTransport.open(HOST, port, engine=engine, flush=udp.flush, limits=limits)
    udp.flush_hooks.append(tcp.send_pending)  # as the composition root does
    stack = Stack(engine=engine, udp=udp, tcp=tcp, port=port)
    holder.append(stack)
    return stack


async def close_stack(stack: Stack) -> None:
    stack.tcp.close()
    stack.udp.close()
    await stack.tcp.wait_closed()
    await stack.udp.wait_closed()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    s = await open_stack()
    yield s
    await close_stack(s)


def options(local_port: int, *, transport: str = "TCP", call_id: str | None = None) -> bytes:
    call_id = call_id or f"tcp-{secrets.token_hex(6)}"
    return (
        "OPTIONS sip:3975@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={secrets.token_hex(4)}\r\nTo: <sip:3975@127.0.0.1>\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def connect(stack: Stack) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection(HOST, stack.port)
    return reader, writer, int(writer.get_extra_info("sockname")[1])


async def read_messages(reader: asyncio.StreamReader, n: int, limit_s: float = 3.0) -> list[bytes]:
    """Read ``n`` complete SIP messages from the stream (framed like the engine does)."""
    parser = StreamParser()
    out: list[bytes] = []
    async with asyncio.timeout(limit_s):
        while len(out) < n:
            data = await reader.read(65536)
            assert data, f"connection closed after {len(out)} message(s)"
            for item in parser.feed(data):
                assert isinstance(item, SipResponse), item
                out.append(bytes(item))
    return out


async def test_options_over_tcp_is_answered_on_the_connection(stack: Stack) -> None:
    reader, writer, local_port = await connect(stack)
    raw = options(local_port)
    # Split at awkward places: framing is the engine's job, not the read size's.
    for chunk in (raw[:7], raw[7:90], raw[90:-3], raw[-3:]):
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.01)
    (resp,) = await read_messages(reader, 1)
    assert resp.startswith(b"SIP/2.0 200 ")
    assert b"Via: SIP/2.0/TCP 127.0.0.1:" in resp
    # Two pipelined requests in one write: two answers, in order.
    a, b = options(local_port, call_id="first"), options(local_port, call_id="second")
    writer.write(a + b)
    first, second = await read_messages(reader, 2)
    assert b"Call-ID: first\r\n" in first and b"Call-ID: second\r\n" in second
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("name", ["ncl", "mcl01"])
async def test_framing_error_closes_the_connection(stack: Stack, name: str) -> None:
    # RFC 4475 sections 3.1.2.3 and 3.3.9: over TCP, close the connection (no answer).
    reader, writer, _ = await connect(stack)
    writer.write((RFC4475 / f"{name}.dat").read_bytes())
    async with asyncio.timeout(3):
        rest = await reader.read()
    assert rest == b""
    assert stack.tcp.stats["framing_closed"] == 1
    writer.close()
    # The listener and the UDP side still serve.
    reader2, writer2, port2 = await connect(stack)
    writer2.write(options(port2))
    (resp,) = await read_messages(reader2, 1)
    assert resp.startswith(b"SIP/2.0 200 ")
    writer2.close()


async def test_udp_still_served_next_to_tcp(stack: Stack) -> None:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        s.setblocking(False)
        s.sendto(options(s.getsockname()[1], transport="UDP"), (HOST, stack.port))
        async with asyncio.timeout(3):
            data = await loop.sock_recv(s, 65535)
    assert data.startswith(b"SIP/2.0 200 ")


async def test_keepalive_ping_gets_a_pong(stack: Stack) -> None:
    reader, writer, _ = await connect(stack)
    writer.write(b"\r\n\r\n")
    async with asyncio.timeout(3):
        assert await reader.readexactly(2) == b"\r\n"
    writer.close()


async def test_connections_per_source_are_limited() -> None:
    stack = await open_stack(TcpLimits(max_per_source=2))
    try:
        kept = [await connect(stack) for _ in range(2)]
        reader, writer, _ = await connect(stack)
        async with asyncio.timeout(3):
            assert await reader.read() == b""  # refused: closed at once
        assert stack.tcp.stats["refused"] == 1
        assert stack.tcp.connection_count == 2
        # The connections within the limit work.
        r0, w0, p0 = kept[0]
        w0.write(options(p0))
        (resp,) = await read_messages(r0, 1)
        assert resp.startswith(b"SIP/2.0 200 ")
        for _r, w, _p in kept:
            w.close()
        writer.close()
    finally:
        await close_stack(stack)


async def test_idle_connection_is_closed_but_not_one_carrying_a_call() -> None:
    stack = await open_stack(TcpLimits(idle_timeout=0.3))
    try:
        reader, writer, _ = await connect(stack)
        async with asyncio.timeout(3):
            assert await reader.read() == b""
        assert stack.tcp.stats["idle_closed"] == 1
        writer.close()
        # A call on the connection keeps it open past the idle timeout.
        reader, writer, local_port = await connect(stack)
        call_id = f"tcpcall-{secrets.token_hex(4)}"
        invite = (
            "INVITE sip:3975@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 127.0.0.1:{local_port};branch=z9hG4bK{secrets.token_hex(6)}\r\n"
            "From: <sip:caller@127.0.0.1>;tag=abc\r\nTo: <sip:3975@127.0.0.1>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:caller@127.0.0.1:{local_port};transport=tcp>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(SDP)}\r\n\r\n"
        ).encode() + SDP
        writer.write(invite)
        messages = await read_messages(reader, 3)
        assert [m.split(b" ", 2)[1] for m in messages] == [b"100", b"180", b"200"]
        assert b";transport=tcp>" in messages[2]
        await asyncio.sleep(0.8)  # > idle_timeout: still open, the 2xx awaits its ACK
        assert stack.tcp.connection_count == 1
        assert stack.tcp.stats["idle_closed"] == 1
        writer.close()
    finally:
        await close_stack(stack)


@needs_sipp
async def test_sipp_options_over_tcp(stack: Stack, tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        run_sipp,
        SIPP_DIR / "options.xml",
        f"{HOST}:{stack.port}",
        tmp_path,
        timeout_s=10,
        extra_args=["-t", "t1"],
    )
    assert result.returncode == 0, result.describe()
    assert "Via: SIP/2.0/TCP" in result.messages
    assert stack.tcp.stats["accepted"] >= 1


@needs_sipp
async def test_sipp_call_over_tcp_caller_hangs_up(stack: Stack, tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        run_sipp,
        SIPP_DIR / "uac_bye_during_prompt.xml",
        f"{HOST}:{stack.port}",
        tmp_path,
        timeout_s=15,
        extra_args=["-t", "t1"],
    )
    assert result.returncode == 0, result.describe()
    ended = [e for e in stack.events if isinstance(e, CallTerminated)]
    assert [(e.cause, e.side) for e in ended] == [("bye", "caller")]
    assert any(isinstance(e, IncomingCall) and e.transport == "tcp" for e in stack.events)


UAC_WAITS_FOR_BYE = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="uac waits for the service's BYE">
  <send retrans="500"><![CDATA[
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "sipp" <sip:0612345678@[local_ip]:[local_port]>;tag=[pid]SIPpTagT[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "sipp" <sip:0612345678@[local_ip]:[local_port]>;tag=[pid]SIPpTagT[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv request="BYE" timeout="5000"/>
  <send><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

  ]]></send>
</scenario>
"""


@needs_sipp
async def test_sipp_call_over_tcp_service_hangs_up(stack: Stack, tmp_path: Path) -> None:
    stack.hangup_after = 0.5
    scenario = tmp_path / "uac_waits_for_bye.xml"
    scenario.write_text(UAC_WAITS_FOR_BYE)
    result = await asyncio.to_thread(
        run_sipp, scenario, f"{HOST}:{stack.port}", tmp_path, timeout_s=15, extra_args=["-t", "t1"]
    )
    assert result.returncode == 0, result.describe()
    # Our BYE went on sipp's connection, with a TCP Via.
    assert "BYE sip:sipp@" in result.messages
    assert "Via: SIP/2.0/TCP" in result.messages.split("BYE sip:sipp@", 1)[1]
    for _ in range(50):
        if any(isinstance(e, CallTerminated) for e in stack.events):
            break
        await asyncio.sleep(0.05)
    ended = [e for e in stack.events if isinstance(e, CallTerminated)]
    assert [(e.cause, e.side) for e in ended] == [("local_hangup", "service")]
    assert stack.engine.stats["datagrams_sent"] == 0  # everything went over TCP


@needs_sipp
@pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason()))
def test_real_service_over_tcp(tmp_path: Path) -> None:
    """sipp over TCP against ``callcenter serve`` once the composition root wires SIP TCP."""
    with run_service(tmp_path / "data") as svc:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1)
            if probe.connect_ex((svc.sip_host, svc.sip_port)) != 0:
                pytest.skip("the service does not listen on SIP TCP yet (app.py wiring)")
        result = run_sipp(
            SIPP_DIR / "options.xml", svc.sip_target, tmp_path / "o", extra_args=["-t", "t1"]
        )
        assert result.returncode == 0, result.describe()
        result = run_sipp(
            SIPP_DIR / "uac_bye_during_prompt.xml",
            svc.sip_target,
            tmp_path / "c",
            timeout_s=20,
            extra_args=["-t", "t1"],
        )
        assert result.returncode == 0, result.describe()
        trail = svc.wait_call_ended(result.call_ids[0])
        assert "answered" in [e["type"] for e in trail["events"]]
