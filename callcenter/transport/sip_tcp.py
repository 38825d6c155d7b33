"""SIP over TCP: an asyncio server feeding the same sans-IO ``SipEngine`` as the UDP adapter.

RFC 3261 section 18: every connection gets an id; the bytes read go to
``engine.receive_stream_data`` (the engine frames messages by Content-Length per connection),
and what the engine queues for a connection (``stream_data_to_send``) is written back on it.
Connections the engine gives up on after a framing error (``streams_to_close``) are closed.

One engine, two transports: after every input the *shared* flush runs (the UDP adapter's
``flush``: datagrams, events, the single timer), and that flush must also call this adapter's
``send_pending`` (the composition root registers it), because any input — a datagram, a timer,
a call command such as ``answer`` — can queue stream data. This adapter also calls
``send_pending`` itself after its own inputs, so a TCP request is always answered.

Limits (RFC 3261 section 18 leaves them to the implementation): connections in total and per
source address, idle connections (no byte read for ``idle_timeout`` and no live call or
unfinished transaction on them, see ``SipEngine.stream_in_use``), the size of one message
(``SipEngineConfig.max_message_size``, enforced by the engine's stream parser) and the bytes
waiting to be written to a peer that does not read.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from callcenter.sip.engine import SipEngine

__all__ = ["SipTcpTransport", "TcpLimits"]

logger = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """Resource limits of the SIP TCP listener."""

    max_connections: int = 1024
    """Open connections in total; more are closed as soon as they are accepted."""
    max_per_source: int = 32
    """Open connections from one source IP address."""
    idle_timeout: float = 120.0
    """Close a connection after this many seconds without a byte read, unless a call or an
    unfinished transaction still uses it."""
    max_write_buffer: int = 1 << 20
    """Bytes waiting to be written to one peer before the connection is aborted."""


class _SipConnection(asyncio.Protocol):
    """One accepted TCP connection; everything is delegated to the owning transport."""

    def __init__(self, owner: SipTcpTransport) -> None:
        self._owner = owner
        self.conn_id = 0
        self.peer: Address = ("", 0)
        self.transport: asyncio.Transport | None = None
        self.last_read = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peername: tuple[Any, ...] = transport.get_extra_info("peername")
        self.peer = (str(peername[0]), int(peername[1]))
        self._owner._accepted(self)

    def data_received(self, data: bytes) -> None:
        self._owner._data(self, data)

    def eof_received(self) -> bool | None:
        return False  # close our side too: SIP has no use for half-closed connections

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._lost(self)


class SipTcpTransport:
    """Accepts SIP over TCP and drives the shared ``SipEngine`` with it."""

    def __init__(
        self,
        *,
        engine: SipEngine,
        flush: Callable[[], None],
        limits: TcpLimits | None = None,
    ) -> None:
        """Create the adapter (use ``open`` to also start listening).

        Args:
            engine: The engine the UDP adapter drives too.
            flush: The shared flush to run after every input (the UDP adapter's ``flush``),
                which calls ``send_pending`` of this adapter.
            limits: Resource limits (defaults: ``TcpLimits()``).
        """
        self.engine = engine
        self.limits = limits or TcpLimits()
        self._flush = flush
        self._loop = asyncio.get_running_loop()
        self._server: asyncio.Server | None = None
        self._conns: dict[int, _SipConnection] = {}
        self._per_source: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self.stats: Counter[str] = Counter()
        """``accepted``, ``refused``, ``idle_closed``, ``framing_closed``, ``write_overflow``."""

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        engine: SipEngine,
        flush: Callable[[], None],
        limits: TcpLimits | None = None,
    ) -> SipTcpTransport:
        """Listen on ``host:port`` (the UDP adapter's address) and serve SIP over TCP.

        Args:
            host: Address to bind.
            port: TCP port (the SIP UDP port: section 18 uses one port for both).
            engine: The shared engine.
            flush: The shared flush (see ``__init__``).
            limits: Resource limits.

        Returns:
            The listening adapter.

        Raises:
            OSError: The address cannot be bound.
        """
        self = cls(engine=engine, flush=flush, limits=limits)
        self._server = await self._loop.create_server(
            lambda: _SipConnection(self), host, port, reuse_address=True
        )
        return self

    @property
    def local_address(self) -> Address:
        """The bound (host, port)."""
        assert self._server is not None
        sockname: tuple[Any, ...] = self._server.sockets[0].getsockname()
        return (str(sockname[0]), int(sockname[1]))

    @property
    def connection_count(self) -> int:
        """Connections open right now."""
        return len(self._conns)

    def send_pending(self) -> None:
        """Write what the engine queued for connections, then close the ones it gave up on."""
        for conn_id, data in self.engine.stream_data_to_send():
            conn = self._conns.get(conn_id)
            if conn is None or conn.transport is None or conn.transport.is_closing():
                continue
            conn.transport.write(data)
            if conn.transport.get_write_buffer_size() > self.limits.max_write_buffer:
                # A peer that does not read must not make us buffer without bound.
                self.stats["write_overflow"] += 1
                logger.info("SIP TCP %s:%d does not read: aborting", *conn.peer)
                conn.transport.abort()
        for conn_id in self.engine.streams_to_close():
            conn = self._conns.get(conn_id)
            if conn is not None and conn.transport is not None:
                self.stats["framing_closed"] += 1
                conn.transport.close()  # flushes the buffered writes first

    def close(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns.values()):
            if conn.transport is not None:
                conn.transport.close()

    async def wait_closed(self) -> None:
        """Wait until the listening socket is closed."""
        if self._server is not None:
            await self._server.wait_closed()

    # -- connection callbacks ----------------------------------------------------------------

    def _accepted(self, conn: _SipConnection) -> None:
        assert conn.transport is not None
        host = conn.peer[0]
        limits = self.limits
        if len(self._conns) >= limits.max_connections or (
            self._per_source[host] >= limits.max_per_source
        ):
            self.stats["refused"] += 1
            logger.info("SIP TCP connection from %s refused: too many connections", host)
            conn.transport.abort()
            return
        conn.conn_id = next(self._ids)
        self._conns[conn.conn_id] = conn
        self._per_source[host] += 1
        self.stats["accepted"] += 1
        conn.last_read = self._loop.time()
        self._arm_idle(conn, conn.last_read + limits.idle_timeout)

    def _data(self, conn: _SipConnection, data: bytes) -> None:
        if conn.conn_id not in self._conns:
            return  # refused, or already being closed
        conn.last_read = now = self._loop.time()
        self.engine.receive_stream_data(conn.conn_id, data, conn.peer, now)
        self._pump()

    def _lost(self, conn: _SipConnection) -> None:
        if self._conns.pop(conn.conn_id, None) is None:
            return
        host = conn.peer[0]
        self._per_source[host] -= 1
        if self._per_source[host] <= 0:
            del self._per_source[host]
        if conn.idle_timer is not None:
            conn.idle_timer.cancel()
            conn.idle_timer = None
        self.engine.stream_closed(conn.conn_id)

    def _pump(self) -> None:
        try:
            self._flush()
        finally:
            self.send_pending()

    def _arm_idle(self, conn: _SipConnection, at: float) -> None:
        conn.idle_timer = self._loop.call_at(at, self._idle_check, conn)

    def _idle_check(self, conn: _SipConnection) -> None:
        conn.idle_timer = None
        if conn.conn_id not in self._conns or conn.transport is None:
            return
        deadline = conn.last_read + self.limits.idle_timeout
        now = self._loop.time()
        if now < deadline:
            self._arm_idle(conn, deadline)
        elif self.engine.stream_in_use(conn.conn_id):
            self._arm_idle(conn, now + self.limits.idle_timeout)
        else:
            self.stats["idle_closed"] += 1
            logger.debug("SIP TCP %s:%d idle: closing", *conn.peer)
            conn.transport.close()
