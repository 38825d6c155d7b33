"""Thin asyncio adapter around the sans-IO SIP engine (aioquic ``asyncio/protocol.py`` style).

The adapter owns the UDP socket and one timer handle. Every input (a datagram, a timer, a
command from a call) is fed to the engine with ``loop.time()``; then ``flush()`` sends what the
engine queued, hands its events to the application callback and re-arms the single timer.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

from callcenter.sip.engine import SipEngine
from callcenter.sip.events import SipEvent

logger = logging.getLogger(__name__)

Address = tuple[str, int]


class SipUdpTransport(asyncio.DatagramProtocol):
    """Feeds UDP datagrams to a ``SipEngine`` and drives its timers."""

    def __init__(self, *, engine: SipEngine, on_event: Callable[[SipEvent], None]) -> None:
        self.engine = engine
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = asyncio.Event()
        self.send_errors = 0
        self.flush_hooks: list[Callable[[], None]] = []
        """Run by ``flush`` after the datagrams (the TCP adapter's ``send_pending``)."""

    @staticmethod
    def bind(host: str, port: int) -> socket.socket:
        """Bind the UDP socket first, so the engine can be told the real port (``port`` 0)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    @classmethod
    async def open(
        cls, sock: socket.socket, *, engine: SipEngine, on_event: Callable[[SipEvent], None]
    ) -> SipUdpTransport:
        """Serve the bound socket from :meth:`bind`."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: cls(engine=engine, on_event=on_event), sock=sock
        )
        # connection_made() is only scheduled (call_soon); the transport is usable now.
        protocol._transport = transport
        return protocol

    @property
    def local_address(self) -> Address:
        """The bound (host, port)."""
        assert self._transport is not None
        sockname: tuple[Any, ...] = self._transport.get_extra_info("sockname")
        return (str(sockname[0]), int(sockname[1]))

    def now(self) -> float:
        """The engine's clock: the event loop's monotonic time."""
        return self._loop.time()

    # asyncio.DatagramProtocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.engine.receive_datagram(data, (str(addr[0]), int(addr[1])), self._loop.time())
        self.flush()

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the engine's timers handle the consequences.
        logger.debug("SIP UDP error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()

    # driving the engine ------------------------------------------------------------------
    def flush(self) -> None:
        """Send queued datagrams, deliver events and re-arm the timer."""
        transport = self._transport
        for data, addr in self.engine.datagrams_to_send():
            if transport is None or transport.is_closing():
                break
            try:
                transport.sendto(data, addr)
            except (OSError, ValueError) as exc:  # e.g. an unresolvable Via host
                self.send_errors += 1
                logger.debug("SIP send failed: %s", exc)
        for hook in self.flush_hooks:
            hook()
        while (event := self.engine.next_event()) is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("SIP event handler failed for %s", type(event).__name__)
        self._arm_timer()

    def _arm_timer(self) -> None:
        at = self.engine.get_timer()
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.engine.handle_timer(self._loop.time())
        self.flush()

    def close(self) -> None:
        """Close the socket and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        """Wait until the socket is closed."""
        await self._closed.wait()
