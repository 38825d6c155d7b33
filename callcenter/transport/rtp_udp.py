"""The asyncio RTP endpoint: one UDP socket per call, and one shared 20 ms pacing clock.

The protocol logic lives in the sans-IO :class:`~callcenter.rtp.session.RtpSession`; this module
only moves datagrams and keeps time.

Pacing design: all endpoints of an event loop share one :class:`RtpPacer` task that wakes on
absolute deadlines ``t0 + n * 20 ms`` of ``loop.time()`` (a monotonic clock) and sends one frame
for every registered endpoint. There is no ``sleep(0.02)`` accumulation, so no drift; 100 calls
cost 50 wake-ups per second instead of 5000. When the loop was blocked and a deadline is missed
by up to ``max_catch_up`` frames, the missed frames are sent at once (a short catch-up); beyond
that they are skipped (the RTP timestamp jumps, the next packet has the marker bit) and counted
in ``late_frames`` instead of bursting.

Receive design: the sockets are not registered with the event loop. On every tick the pacer asks
its own selector (one ``epoll_wait`` with timeout 0 for all calls) which sockets are readable
and drains each one (at most ``MAX_READS_PER_TICK`` datagrams), as media engines read RTP on
their frame clock. This halves the per-packet cost of asyncio's one-callback-per-datagram path
(measured in ``docs/benchmarks.md``), bounds the work a flooded socket can cause per tick (the
rest is dropped by the kernel when its buffer fills), and adds at most one frame (20 ms) of
latency, which the jitter buffer and DTMF handling do not notice.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import random
import selectors
import socket
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callcenter.rtp.codecs.base import Codec
from callcenter.rtp.codecs.g711 import FRAME_BYTES, SAMPLES_PER_FRAME
from callcenter.rtp.session import RtpEvent, RtpSession

__all__ = ["EndpointStats", "RtpEndpoint", "RtpPacer"]

FRAME_INTERVAL = 0.020
"""Seconds between two packets (RFC 3551 section 4.5: 20 ms is the default packetization)."""
MAX_READS_PER_TICK = 32
"""Datagrams read from one socket per tick; a flood beyond that is left to the kernel."""


@dataclass(slots=True)
class EndpointStats:
    """Counters of one endpoint's transport (mutable; see ``session.stats`` for RTP)."""

    packets_sent: int = 0
    """Datagrams handed to the socket."""
    frames_silence: int = 0
    """Frames for which the source had nothing and encoded silence was sent."""
    frames_held: int = 0
    """Frames not sent because the session does not send (hold, recvonly, no address)."""
    late_frames: int = 0
    """Frames skipped because the loop was more than ``max_catch_up`` frames late."""
    catch_up_frames: int = 0
    """Frames sent late, right after a missed deadline."""
    send_errors: int = 0
    """Send failures: ICMP errors reported by the socket (port unreachable), full buffers."""
    datagrams_received: int = 0
    """Datagrams received, valid or not."""


class RtpPacer:
    """One timer task driving the paced senders of many endpoints."""

    _default: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RtpPacer] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, *, interval: float = FRAME_INTERVAL, max_catch_up: int = 3) -> None:
        """Create a pacer (it starts when the first endpoint runs).

        Args:
            interval: seconds between frames.
            max_catch_up: missed frames sent late at once; more are skipped and counted.
        """
        self.interval = interval
        self.max_catch_up = max_catch_up
        self._endpoints: dict[RtpEndpoint, None] = {}
        self._selector = selectors.DefaultSelector()
        self._task: asyncio.Task[None] | None = None
        self.wakeups = 0
        """Timer wake-ups so far (for benchmarks)."""

    @classmethod
    def for_loop(cls, loop: asyncio.AbstractEventLoop | None = None) -> RtpPacer:
        """The pacer shared by all endpoints of ``loop`` (the running loop by default)."""
        loop = loop or asyncio.get_running_loop()
        pacer = cls._default.get(loop)
        if pacer is None:
            pacer = cls._default[loop] = cls()
        return pacer

    def __len__(self) -> int:
        return len(self._endpoints)

    def add(self, endpoint: RtpEndpoint) -> None:
        self._endpoints[endpoint] = None
        self._selector.register(endpoint._sock, selectors.EVENT_READ, endpoint)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="rtp-pacer")

    def remove(self, endpoint: RtpEndpoint) -> None:
        if self._endpoints.pop(endpoint, False) is None:
            self._selector.unregister(endpoint._sock)
        if not self._endpoints and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval
        t0 = loop.time()
        n = 0
        while self._endpoints:
            n += 1
            deadline = t0 + n * interval
            delay = deadline - loop.time()
            await asyncio.sleep(delay if delay > 0 else 0)
            self.wakeups += 1
            late = int((loop.time() - deadline) / interval)
            if late > self.max_catch_up:
                # Skip ahead rather than burst: the frames are counted, not sent.
                n += late
                for endpoint in list(self._endpoints):
                    endpoint._skip(late)
                late = 0
            for key, _ in self._selector.select(0):
                key.data._drain()
            for i in range(late + 1):
                for endpoint in list(self._endpoints):
                    endpoint._tick(catch_up=i > 0)
            n += late


class RtpEndpoint:
    """A UDP socket carrying one :class:`RtpSession`, with a paced sender."""

    def __init__(
        self,
        *,
        session: RtpSession,
        sock: socket.socket,
        local_address: tuple[str, int],
        pacer: RtpPacer,
        record_send_times: bool = False,
    ) -> None:
        """Use :meth:`open` instead."""
        self.session = session
        self.stats = EndpointStats()
        self.local_address = local_address
        self.last_rx_time: float | None = None
        """``loop.time()`` of the last valid RTP packet, for the inactivity timeout."""
        self.send_times: list[float] | None = [] if record_send_times else None
        """``loop.time()`` of every packet sent, when recording was asked (benchmarks)."""
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._pacer = pacer
        self._dtmf: deque[bytes] = deque()
        self._source: Callable[[], bytes | None] | None = None
        self._on_event: Callable[[RtpEvent], None] | None = None
        self._done: asyncio.Future[None] | None = None
        self._closed = asyncio.Event()
        self._silence_codec: Codec | None = None
        self._silence = b""

    @classmethod
    async def open(
        cls,
        host: str,
        port_min: int,
        port_max: int,
        *,
        session: RtpSession,
        pacer: RtpPacer | None = None,
        record_send_times: bool = False,
        rng: random.Random | None = None,
    ) -> RtpEndpoint:
        """Bind an even UDP port in ``[port_min, port_max]`` on ``host``.

        Ports are tried from a random even start, wrapping around, skipping those in use.
        ``port_min == port_max == 0`` binds any free port (tests).

        Args:
            host: local IP address to bind (IPv4 or IPv6 literal, or a name).
            port_min: lowest port of the RTP range.
            port_max: highest port of the RTP range.
            session: the sans-IO RTP session this endpoint carries.
            pacer: the pacing clock; the loop's shared one by default.
            record_send_times: keep the send time of every packet in ``send_times``.
            rng: random source for the first port tried.

        Raises:
            OSError: when no port of the range is free (``EADDRINUSE``) or binding fails.
        """
        family, address = _resolve(host)
        if port_min == 0 and port_max == 0:
            candidates = [0]
        else:
            first = port_min + (port_min & 1)
            evens = list(range(first, port_max + 1, 2))
            if not evens:
                raise ValueError(f"no even port in [{port_min}, {port_max}]")
            start = (rng or random).randrange(len(evens))
            candidates = evens[start:] + evens[:start]
        sock: socket.socket | None = None
        for port in candidates:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address, port))
            except OSError as exc:
                sock.close()
                sock = None
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            break
        if sock is None:
            raise OSError(errno.EADDRINUSE, f"no free RTP port in [{port_min}, {port_max}]")
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        bound = sock.getsockname()
        endpoint = cls(
            session=session,
            sock=sock,
            local_address=(bound[0], bound[1]),
            pacer=pacer or RtpPacer.for_loop(loop),
            record_send_times=record_send_times,
        )
        return endpoint

    @property
    def local_port(self) -> int:
        """The bound UDP port."""
        return self.local_address[1]

    def set_remote(self, host: str, port: int) -> None:
        """Send to ``host:port`` (from a new SDP); latching starts over."""
        self.session.set_remote((host, port))

    def send_dtmf(self, digit: str, *, duration_ms: int = 100, volume: int = 10) -> None:
        """Queue one RFC 4733 event; its packets replace audio frames on the same clock.

        Raises:
            ValueError: if telephone-event was not negotiated or the digit is invalid.
        """
        self._dtmf.extend(
            self.session.build_dtmf_packets(digit, duration_ms=duration_ms, volume=volume)
        )

    @property
    def dtmf_pending(self) -> int:
        """Queued telephone-event packets not sent yet."""
        return len(self._dtmf)

    async def run(
        self, source: Callable[[], bytes | None], on_event: Callable[[RtpEvent], None]
    ) -> None:
        """Send paced audio from ``source`` and deliver received events until cancelled.

        Every 20 ms ``source()`` is called: it returns 320 bytes of PCM16 (160 samples at 8 kHz)
        or None, for which encoded silence is sent (the peer and NATs keep seeing packets).
        While DTMF packets are queued they are sent instead and ``source`` is not called (the
        audio is delayed, not lost). ``on_event`` is called for every decoded event.

        Returns when :meth:`close` is called; an exception raised by ``source`` or
        ``on_event`` ends it with that exception.
        """
        if self._done is not None:
            raise RuntimeError("RtpEndpoint.run() is already running")
        if self._closed.is_set():
            raise RuntimeError("RtpEndpoint is closed")
        self._source = source
        self._on_event = on_event
        self._done = self._loop.create_future()
        self._pacer.add(self)
        try:
            await self._done
        finally:
            self._pacer.remove(self)
            self._source = None
            self._on_event = None
            self._done = None

    def close(self) -> None:
        """Close the socket; a running :meth:`run` returns."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._pacer.remove(self)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
        self._sock.close()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` was called."""
        await self._closed.wait()

    async def __aenter__(self) -> RtpEndpoint:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    # -- called by the pacer and the protocol ----------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        self._pacer.remove(self)
        if self._done is not None and not self._done.done():
            self._done.set_exception(exc)

    def _skip(self, frames: int) -> None:
        self.stats.late_frames += frames
        self.session.skip(SAMPLES_PER_FRAME * frames)

    def _tick(self, catch_up: bool = False) -> None:
        session = self.session
        stats = self.stats
        if catch_up:
            stats.catch_up_frames += 1
        if self._dtmf:
            data = self._dtmf.popleft()
            if not session.sends:
                stats.frames_held += 1
                return
        else:
            if not session.sends:
                # On hold (or recvonly): the source is not pulled either, so prompts and the
                # timeouts that follow them wait for the caller to come back.
                stats.frames_held += 1
                session.skip(SAMPLES_PER_FRAME)
                return
            source = self._source
            try:
                pcm = source() if source is not None else None
            except Exception as exc:  # handed to run()'s caller, not swallowed
                self._fail(exc)
                return
            if pcm is None:
                stats.frames_silence += 1
                codec = session.codec
                if codec is not self._silence_codec:
                    self._silence_codec = codec
                    self._silence = codec.encode(bytes(FRAME_BYTES))
                data = session.build_audio_packet(self._silence)
            else:
                data = session.encode_audio_packet(pcm)
        remote = session.remote_address
        assert remote is not None  # session.sends checked it
        try:
            # Straight to the non-blocking socket: skips the transport's buffering, which RTP
            # does not want anyway (a frame that cannot leave now is better dropped).
            self._sock.sendto(data, remote)
        except OSError:
            stats.send_errors += 1
            return
        stats.packets_sent += 1
        if self.send_times is not None:
            self.send_times.append(self._loop.time())

    def _drain(self) -> None:
        """Read what the socket holds (bounded), called by the pacer when it is readable."""
        sock = self._sock
        for _ in range(MAX_READS_PER_TICK):
            try:
                data, addr = sock.recvfrom(2048)
            except BlockingIOError:
                return
            except OSError:  # e.g. ECONNREFUSED from an earlier ICMP port unreachable
                self.stats.send_errors += 1
                continue
            self._datagram_received(data, addr)
            if self._done is None:  # run() ended (close() or a failing callback)
                return

    def _datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.stats.datagrams_received += 1
        # IPv6 addresses come with flowinfo and scope id: keep (host, port).
        source: tuple[str, int] = (addr[0], addr[1])
        now = self._loop.time()
        events = self.session.receive(data, source, now)
        if self.session.stats.last_received == now:
            self.last_rx_time = now
        on_event = self._on_event
        if on_event is None:
            return
        for event in events:
            try:
                on_event(event)
            except Exception as exc:  # handed to run()'s caller, not swallowed
                self._fail(exc)
                return


def _resolve(host: str) -> tuple[socket.AddressFamily, str]:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        info = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        family, _, _, _, sockaddr = info[0]
        return family, str(sockaddr[0])
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), host
