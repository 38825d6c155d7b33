"""Engine-pair harness (aioquic ``client_and_server`` / h11 ``ConnectionPair`` style).

A ``Network`` carries datagrams between sans-IO ``SipEngine``s and raw peers (tests that write
SIP by hand) by address, with a controlled clock and an optional loss hook. Nothing touches a
socket: the addresses are only dictionary keys.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from callcenter.sip.engine import SipEngine, SipEngineConfig
from callcenter.sip.events import (
    MessageDropped,
    SipEvent,
    SipRequestReceived,
    SipResponseSent,
)
from callcenter.sip.message import SipRequest, SipResponse
from callcenter.sip.parser import parse_message

Address = tuple[str, int]
Loss = Callable[[bytes, Address, Address], bool]
"""``loss(data, src, dst)`` returns True to drop the datagram."""

METRIC_EVENTS = (SipRequestReceived, SipResponseSent, MessageDropped)

SDP_OFFER = (
    b"v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)
SDP_ANSWER = (
    b"v=0\r\no=svc 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
)


@dataclass
class RawPeer:
    """A hand-written SIP endpoint: what it sends is up to the test, what it gets is kept."""

    network: Network
    addr: Address
    inbox: list[tuple[float, bytes, Address]] = field(default_factory=list)

    def send(self, data: bytes | SipRequest | SipResponse, to: Address) -> None:
        """Queue a datagram; it is delivered by the next ``transfer``."""
        raw = data if isinstance(data, bytes) else bytes(data)
        self.network.queue(raw, self.addr, to)
        self.network.transfer()

    def messages(self) -> list[SipRequest | SipResponse]:
        return [parse_message(data) for _t, data, _src in self.inbox]

    def responses(self) -> list[SipResponse]:
        return [m for m in self.messages() if isinstance(m, SipResponse)]

    def requests(self) -> list[SipRequest]:
        return [m for m in self.messages() if isinstance(m, SipRequest)]

    def codes(self) -> list[int]:
        return [r.status_code for r in self.responses()]

    def take(self) -> list[SipRequest | SipResponse]:
        """Return the messages received so far and empty the inbox."""
        out = self.messages()
        self.inbox.clear()
        return out


class Network:
    """Loss-hookable in-memory UDP between engines and raw peers, with a clock."""

    def __init__(self, *, now: float = 0.0, loss: Loss | None = None) -> None:
        self.now = now
        self.loss = loss
        self.engines: dict[Address, SipEngine] = {}
        self.peers: dict[Address, RawPeer] = {}
        self._queue: list[tuple[bytes, Address, Address]] = []
        self.delivered: list[tuple[float, bytes, Address, Address]] = []
        self.lost: list[tuple[float, bytes, Address, Address]] = []

    def add_engine(self, config: SipEngineConfig) -> SipEngine:
        engine = SipEngine(config=config)
        self.engines[(config.local_host, config.local_port)] = engine
        return engine

    def add_peer(self, addr: Address) -> RawPeer:
        peer = RawPeer(self, addr)
        self.peers[addr] = peer
        return peer

    def queue(self, data: bytes, src: Address, dst: Address) -> None:
        self._queue.append((data, src, dst))

    def _collect(self) -> None:
        for addr, engine in self.engines.items():
            for data, dst in engine.datagrams_to_send():
                self._queue.append((data, addr, dst))

    def transfer(self) -> int:
        """Deliver every pending datagram (and what they trigger) at the current time."""
        count = 0
        self._collect()
        while self._queue:
            data, src, dst = self._queue.pop(0)
            if self.loss is not None and self.loss(data, src, dst):
                self.lost.append((self.now, data, src, dst))
                continue
            count += 1
            self.delivered.append((self.now, data, src, dst))
            if dst in self.engines:
                self.engines[dst].receive_datagram(data, src, self.now)
            elif dst in self.peers:
                self.peers[dst].inbox.append((self.now, data, src))
            # Anything else goes nowhere (an address nobody listens on).
            self._collect()
        return count

    def next_timer(self) -> float | None:
        timers = [t for t in (e.get_timer() for e in self.engines.values()) if t is not None]
        return min(timers) if timers else None

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing every timer on its deadline."""
        self.run_until(self.now + seconds)

    def run_until(self, end: float) -> None:
        self.transfer()
        while True:
            deadline = self.next_timer()
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            for engine in self.engines.values():
                timer = engine.get_timer()
                if timer is not None and timer <= self.now:
                    engine.handle_timer(self.now)
            self.transfer()
        self.now = end


def drain_events(engine: SipEngine, *, metrics: bool = False) -> list[SipEvent]:
    """Return the engine's pending events (metric events only when ``metrics``)."""
    out: list[SipEvent] = []
    while (event := engine.next_event()) is not None:
        if metrics or not isinstance(event, METRIC_EVENTS):
            out.append(event)
    return out


def assert_events(engine: SipEngine, expected: Sequence[type]) -> list[SipEvent]:
    """Assert the types of the pending (non-metric) events, in order; return the events."""
    events = drain_events(engine)
    assert [type(e) for e in events] == list(expected), events
    return events


def engine_config(host: str = "127.0.0.1", port: int = 5060, **kw: object) -> SipEngineConfig:
    return SipEngineConfig(local_host=host, local_port=port, trace=True, **kw)  # type: ignore[arg-type]


@dataclass
class RawDialog:
    """What a hand-written UAC needs to remember about its call."""

    call_id: str
    from_tag: str
    uas: Address
    uac: Address
    cseq: int = 1
    to_tag: str | None = None
    user: str = "3975"


def new_dialog(uac: Address, uas: Address, *, user: str = "3975") -> RawDialog:
    return RawDialog(
        call_id=f"{secrets.token_hex(8)}@test",
        from_tag=secrets.token_hex(4),
        uas=uas,
        uac=uac,
        user=user,
    )


def request(
    method: str,
    d: RawDialog,
    *,
    branch: str | None = None,
    cseq: int | None = None,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    extra: Iterable[tuple[str, str]] = (),
    rport: bool = True,
    via: str | None = None,
    uri: str | None = None,
) -> bytes:
    """Build a raw request from the hand-written UAC of ``d``."""
    host, port = d.uac
    if via is None:
        b = branch or f"z9hG4bK{secrets.token_hex(6)}"
        via = f"SIP/2.0/UDP {host}:{port};branch={b}" + (";rport" if rport else "")
    tag = to_tag if to_tag is not None else None
    to = f"<sip:{d.user}@{d.uas[0]}>" + (f";tag={tag}" if tag else "")
    lines = [
        f"{method} {uri or f'sip:{d.user}@{d.uas[0]}:{d.uas[1]}'} SIP/2.0",
        f"Via: {via}",
        "Max-Forwards: 70",
        f'From: "Caller" <sip:0612345678@{host}>;tag={d.from_tag}',
        f"To: {to}",
        f"Call-ID: {d.call_id}",
        f"CSeq: {cseq if cseq is not None else d.cseq} {cseq_method or method}",
        f"Contact: <sip:caller@{host}:{port}>",
    ]
    lines.extend(f"{k}: {v}" for k, v in extra)
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
