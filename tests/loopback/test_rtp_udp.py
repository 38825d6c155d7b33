from __future__ import annotations

import asyncio
import errno
import socket
import statistics
import time

import numpy as np
import pytest

from callcenter.rtp.codecs.base import get_codec
from callcenter.rtp.session import AudioReceived, DtmfReceived, RtpEvent, RtpSession
from callcenter.transport.rtp_udp import RtpEndpoint, RtpPacer

pytestmark = pytest.mark.loopback

HOST = "127.0.0.1"


def make_session(codec: str = "PCMU") -> RtpSession:
    return RtpSession(codec=get_codec(codec), remote_address=None, telephone_event_pt=101)


async def open_pair(codec: str = "PCMU") -> tuple[RtpEndpoint, RtpEndpoint]:
    a = await RtpEndpoint.open(HOST, 0, 0, session=make_session(codec), record_send_times=True)
    b = await RtpEndpoint.open(HOST, 0, 0, session=make_session(codec), record_send_times=True)
    a.set_remote(HOST, b.local_port)
    b.set_remote(HOST, a.local_port)
    return a, b


def tone_frames() -> list[bytes]:
    t = np.arange(160 * 50)
    pcm = (np.sin(2 * np.pi * 440 * t / 8000) * 6000).astype("<i2").tobytes()
    return [pcm[i : i + 320] for i in range(0, len(pcm), 320)]


async def test_two_endpoints_exchange_audio_and_dtmf() -> None:
    a, b = await open_pair("PCMA")
    frames = tone_frames()
    sent = iter(frames)
    a_events: list[RtpEvent] = []
    b_events: list[tuple[float, RtpEvent]] = []
    loop = asyncio.get_running_loop()

    def b_on_event(event: RtpEvent) -> None:
        b_events.append((loop.time(), event))

    async with asyncio.TaskGroup() as tg:
        ta = tg.create_task(a.run(lambda: next(sent, None), a_events.append), name="a")
        tb = tg.create_task(b.run(lambda: None, b_on_event), name="b")
        await asyncio.sleep(0.3)
        for digit in "12#":
            a.send_dtmf(digit, duration_ms=60)
        await asyncio.sleep(0.45)  # 18 DTMF frames of 20 ms
        assert a.dtmf_pending == 0
        await asyncio.sleep(0.2)
        ta.cancel()
        tb.cancel()
    a.close()
    b.close()

    digits = [e.digit for _, e in b_events if isinstance(e, DtmfReceived)]
    assert digits == ["1", "2", "#"]
    audio = [(t, e) for t, e in b_events if isinstance(e, AudioReceived)]
    assert len(audio) >= 20
    # What B decoded is what A sent (A-law round trip of the tone, in order).
    received = b"".join(e.pcm for _, e in audio[:10])
    expected = get_codec("PCMA").decode(get_codec("PCMA").encode(b"".join(frames[:10])))
    assert received == expected
    # Gaps between audio arrivals before the digits are ~20 ms: paced, no bursts.
    first_digit = next(t for t, e in b_events if isinstance(e, DtmfReceived))
    times = [t for t, _ in audio if t < first_digit]
    gaps = np.diff(times) * 1000
    assert len(gaps) >= 10
    assert 18 < statistics.median(gaps) < 22
    assert max(gaps) < 30
    # The 3 digits (3 + 3 end packets each) took the place of 18 audio frames.
    after = [t for t, _ in audio if t > first_digit]
    assert 0.34 < after[0] - times[-1] < 0.40
    send_gaps = np.diff(a.send_times or []) * 1000
    assert 19 < statistics.median(send_gaps) < 21 and max(send_gaps) < 30
    # Both sides latched and saw the other's packets; B sent silence, A received it.
    assert a.session.latched and b.session.latched
    assert any(isinstance(e, AudioReceived) for e in a_events)
    assert b.stats.frames_silence > 10 and a.last_rx_time is not None
    assert b.session.stats.packets_lost == 0 and b.session.stats.dtmf_received == 3
    # Long-run timing: packets sent over the elapsed time are 50 per second.
    assert a.send_times is not None
    span = a.send_times[-1] - a.send_times[0]
    assert abs((len(a.send_times) - 1) * 0.020 - span) < 0.003


async def test_binds_an_even_port_in_the_range_and_skips_busy_ones() -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for _ in range(50):
        busy.bind((HOST, 0))
        if busy.getsockname()[1] % 2 == 0 and busy.getsockname()[1] < 65530:
            break
        busy.close()
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    port = busy.getsockname()[1]
    try:
        with pytest.raises(OSError) as info:
            await RtpEndpoint.open(HOST, port, port + 1, session=make_session())
        assert info.value.errno == errno.EADDRINUSE
        endpoint = await RtpEndpoint.open(HOST, port - 1, port + 3, session=make_session())
        try:
            assert endpoint.local_port == port + 2
        finally:
            endpoint.close()
    finally:
        busy.close()


async def test_source_exception_ends_run() -> None:
    a, b = await open_pair()

    def broken() -> bytes | None:
        raise RuntimeError("prompt decoder failed")

    with pytest.raises(RuntimeError, match="prompt decoder failed"):
        await asyncio.wait_for(a.run(broken, lambda e: None), timeout=2)
    assert len(RtpPacer.for_loop()) == 0
    a.close()
    b.close()


async def test_on_event_exception_ends_run() -> None:
    a, b = await open_pair()

    def on_event(event: RtpEvent) -> None:
        raise ValueError("handler bug")

    async with asyncio.TaskGroup() as tg:
        sender = tg.create_task(a.run(lambda: None, lambda e: None), name="sender")
        with pytest.raises(ValueError, match="handler bug"):
            await asyncio.wait_for(b.run(lambda: None, on_event), timeout=2)
        sender.cancel()
    a.close()
    b.close()


async def test_cancellation_propagates_and_close_ends_run() -> None:
    a, b = await open_pair()
    task = asyncio.create_task(a.run(lambda: None, lambda e: None), name="rtp")
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(RtpPacer.for_loop()) == 0
    task = asyncio.create_task(b.run(lambda: None, lambda e: None), name="rtp")
    await asyncio.sleep(0.05)
    b.close()
    await asyncio.wait_for(task, timeout=1)  # returns normally
    await b.wait_closed()
    a.close()


async def test_blocked_loop_skips_frames_instead_of_bursting() -> None:
    a, b = await open_pair()
    received: list[float] = []
    loop = asyncio.get_running_loop()

    async with asyncio.TaskGroup() as tg:
        ta = tg.create_task(a.run(lambda: None, lambda e: None), name="a")
        tb = tg.create_task(b.run(lambda: None, lambda e: received.append(loop.time())), name="b")
        await asyncio.sleep(0.1)
        loop.call_soon(time.sleep, 0.2)  # a blocking callback stalls the loop for 10 frames
        await asyncio.sleep(0.2)
        ta.cancel()
        tb.cancel()
    a.close()
    b.close()
    assert a.stats.late_frames >= 6
    times = a.send_times or []
    # Never more than one frame per tick plus nothing queued: no burst of packets.
    bursts = sum(1 for x, y in zip(times, times[1:], strict=False) if y - x < 0.002)
    assert bursts == 0
    # The receiver sees the RTP timestamp jump (time passed) but no loss.
    assert b.session.stats.packets_lost == 0


async def test_hold_sends_nothing_but_keeps_receiving() -> None:
    a, b = await open_pair()
    a.session.set_remote(None)  # c=0.0.0.0 hold (RFC 3264 section 8.4)
    got: list[RtpEvent] = []
    async with asyncio.TaskGroup() as tg:
        ta = tg.create_task(a.run(lambda: None, got.append), name="a")
        tb = tg.create_task(b.run(lambda: None, lambda e: None), name="b")
        await asyncio.sleep(0.2)
        # A receives B and latches, but the hold wins: A sends nothing.
        assert got and a.session.latched
        assert a.stats.packets_sent == 0 and a.stats.frames_held >= 5
        a.set_remote(HOST, b.local_port)  # unhold
        await asyncio.sleep(0.1)
        ta.cancel()
        tb.cancel()
    a.close()
    b.close()
    assert a.stats.packets_sent >= 3 and b.session.stats.packets_received >= 3


async def test_garbage_datagrams_do_not_disturb_the_stream() -> None:
    a, b = await open_pair()
    got: list[RtpEvent] = []
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        async with asyncio.TaskGroup() as tg:
            ta = tg.create_task(a.run(lambda: None, lambda e: None), name="a")
            tb = tg.create_task(b.run(lambda: None, got.append), name="b")
            await asyncio.sleep(0.1)
            for payload in (b"", b"\x80", b"\xff" * 100, bytes([0x80, 0]) + bytes(10)):
                attacker.sendto(payload, (HOST, b.local_port))
            await asyncio.sleep(0.1)
            ta.cancel()
            tb.cancel()
    finally:
        attacker.close()
    a.close()
    b.close()
    stats = b.session.stats
    assert stats.packets_invalid + stats.packets_foreign + stats.packets_rtcp >= 3
    assert stats.packets_lost == 0 and len(got) >= 8
