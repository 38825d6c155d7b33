"""Softphone signalling: between a call's browser leg and the agent's panel, on any node.

A call whose agent has the panel open rings the browser instead of a SIP phone
(:class:`callcenter.webrtc.leg.WebRtcLeg`). The call lives on the node that answered the SIP
INVITE; the agent's panel WebSocket may be held by another node (Kamailio spreads calls, a load
balancer spreads browsers). The :class:`SoftphoneHub` of each node carries the signalling
between the two:

- **call → agent** (``ring``, ``answer_sdp``, ``call_state``): delivered to the agent's panel
  sockets on this node, and published on the Redis channel ``{prefix}:softphone:agent:{login}``,
  to which every node holding a panel of that agent is subscribed.
- **agent → call** (``answer``, ``reject``, ``hangup``, ``dtmf``, ``hold``, ``resume``, ``mute``):
  handed to the call's leg when the call is on this node; otherwise published on
  ``{prefix}:softphone:node:{node}``, the node named by the ``ring`` message that announced
  the call. A browser may only signal a call that rang it (the leg checks the login).
- **presence**: a node holding an agent's panel socket keeps ``{prefix}:softphone:presence:
  {login}`` alive (TTL ``presence_ttl_s``, refreshed at a third of it); a call rings the browser
  when the key exists, the SIP phone otherwise.

Media never crosses nodes: the browser's WebRTC session is with the node that holds the call
(its ICE candidates are that node's addresses). Redis carries only signalling: the screen pop
in ``ring`` holds the caller's number when they were not identified, so Redis must be private
to the service's nodes (it already holds the routing state).

Without Redis (one node) the hub is purely local and every method is synchronous underneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

Message = dict[str, Any]
Sink = Callable[[Message], None]
RequestHandler = Callable[[str, Message], Awaitable[tuple[int, str]]]
"""``(operation, arguments) -> (status, message)``: 200 when done, else an HTTP-like status."""

REQUEST_TIMEOUT_S = 10.0
"""Longest wait for another node's answer to a relayed request."""
REDIS_TIMEOUT_S = 2.0
"""Longest wait for one Redis command (presence, publish)."""
BROWSER_MESSAGES = frozenset({"answer", "reject", "hangup", "dtmf", "hold", "resume", "mute"})
"""Signalling a panel may send about a call."""


@dataclass(slots=True)
class _LegEntry:
    login: str
    handler: Sink


@dataclass(slots=True)
class SoftphoneHub:
    """One node's softphone signalling (see the module docstring).

    Args:
        node_id: This node's id (the routing backend's), named in ``ring`` messages.
        redis_url: Redis shared by the nodes; None: this node only.
        prefix: Key prefix (the routing backend's ``redis_prefix``).
        presence_ttl_s: Lifetime of a presence key without refresh.
    """

    node_id: str = "local"
    redis_url: str | None = None
    prefix: str = "callcenter"
    presence_ttl_s: float = 30.0
    _sinks: dict[str, list[Sink]] = field(default_factory=dict)
    _legs: dict[str, _LegEntry] = field(default_factory=dict)
    _call_nodes: dict[str, str] = field(default_factory=dict)
    _rung: dict[str, str] = field(default_factory=dict)
    requests: RequestHandler | None = None
    """Runs a request another node relayed for a call held here (the service's transfers)."""
    _waiting: dict[str, asyncio.Future[tuple[int, str]]] = field(default_factory=dict)
    _redis: Any = None
    _sub_client: Any = None
    _pubsub: Any = None
    _subscribed: set[str] = field(default_factory=set)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _started: bool = False

    # -- life ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect to Redis (when configured) and start relaying."""
        if self._started:
            return
        self._started = True
        if self.redis_url is None:
            return
        import redis.asyncio as aioredis

        # Commands time out (a call must not wait on a Redis that does not answer); the
        # subscription's connection only reads, with its own timeout in _listen.
        self._redis = aioredis.from_url(
            self.redis_url,
            decode_responses=True,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        self._sub_client = aioredis.from_url(
            self.redis_url, decode_responses=True, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self._pubsub = self._sub_client.pubsub(ignore_subscribe_messages=True)
        await self._resubscribe()  # Redis down: _listen retries; panels ring locally meanwhile
        self._tasks.append(asyncio.create_task(self._listen(), name="softphone-relay"))
        self._tasks.append(asyncio.create_task(self._keep_presence(), name="softphone-presence"))

    async def aclose(self) -> None:
        """Stop relaying; forget this node's presence keys."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                for login in list(self._sinks):
                    await self._redis.delete(self._presence_key(login))
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            await self._redis.aclose()
            await self._sub_client.aclose()
            self._redis = None
            self._sub_client = None
            self._pubsub = None

    # -- the panel's side ------------------------------------------------------------------------
    def attach(self, login: str, sink: Sink) -> Callable[[], None]:
        """A panel socket of ``login`` with its softphone ready; returns the detach function."""
        sinks = self._sinks.setdefault(login, [])
        first = not sinks
        sinks.append(sink)
        if first and self._redis is not None:
            self._spawn(self._subscribe_agent(login))

        def detach() -> None:
            current = self._sinks.get(login)
            if current is None or sink not in current:
                return
            current.remove(sink)
            if not current:
                del self._sinks[login]
                if self._redis is not None:
                    self._spawn(self._unsubscribe_agent(login))

        return detach

    def calls_of(self, login: str) -> list[str]:
        """The calls ringing or in progress on ``login``'s softphone, known to this node.

        A panel reloaded during a call asks to renegotiate its audio for these.
        """
        here = [call_id for call_id, entry in self._legs.items() if entry.login == login]
        relayed = [call_id for call_id, rung in self._rung.items() if rung == login]
        return list(dict.fromkeys([*here, *relayed]))

    def present_here(self, login: str) -> bool:
        """Whether a panel of ``login`` is attached on this node."""
        return bool(self._sinks.get(login))

    async def is_present(self, login: str) -> bool:
        """Whether ``login`` has a panel softphone attached on any node."""
        if self.present_here(login):
            return True
        if self._redis is None:
            return False
        try:
            return bool(await self._redis.exists(self._presence_key(login)))
        except Exception as exc:  # noqa: BLE001 - Redis down: only local panels ring
            logger.warning("softphone presence unreadable (%s)", type(exc).__name__)
            return False

    async def from_browser(self, login: str, message: Message) -> str | None:
        """Route a panel's signalling message to the call's leg; an error text, or None."""
        kind = message.get("type")
        call_id = message.get("call_id")
        if kind not in BROWSER_MESSAGES or not isinstance(call_id, str):
            return "unknown softphone message"
        entry = self._legs.get(call_id)
        if entry is not None:
            if entry.login != login:
                return "this call is not yours"
            entry.handler(message)
            return None
        node = self._call_nodes.get(call_id)
        if node is None or self._redis is None or node == self.node_id:
            return "unknown call"
        await self._publish(self._node_channel(node), {"login": login, "message": message})
        return None

    def node_of(self, call_id: str) -> str | None:
        """The node holding ``call_id`` (learnt from its ring), if another one."""
        node = self._call_nodes.get(call_id)
        return None if node is None or node == self.node_id else node

    async def request(self, node: str, operation: str, arguments: Message) -> tuple[int, str]:
        """Ask ``node`` to run ``operation`` on a call it holds (a transfer, a consultation).

        Returns the other node's ``(status, message)``; 503 when Redis or the node does not
        answer within :data:`REQUEST_TIMEOUT_S`.
        """
        if self._redis is None:
            return 503, "the call is on another node and Redis is not configured"
        request_id = uuid.uuid4().hex
        future: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            await self._publish(
                self._node_channel(node),
                {
                    "request": {"id": request_id, "op": operation, "args": arguments},
                    "reply_to": self.node_id,
                },
            )
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await future
        except TimeoutError:
            return 503, "the node holding the call did not answer"
        finally:
            self._waiting.pop(request_id, None)

    async def _serve_request(self, payload: Message) -> None:
        request = payload.get("request")
        reply_to = payload.get("reply_to")
        if not isinstance(request, dict) or not isinstance(reply_to, str):
            return
        handler = self.requests
        if handler is None:
            status, text = 501, "this node runs no requests"
        else:
            status, text = await handler(str(request.get("op")), dict(request.get("args") or {}))
        await self._publish(
            self._node_channel(reply_to),
            {"reply": {"id": request.get("id"), "status": status, "message": text}},
        )

    # -- the call's side -------------------------------------------------------------------------
    def register_leg(self, call_id: str, login: str, handler: Sink) -> Callable[[], None]:
        """The browser leg of ``call_id`` for agent ``login`` takes the panel's messages."""
        entry = _LegEntry(login, handler)
        self._legs[call_id] = entry

        def unregister() -> None:
            if self._legs.get(call_id) is entry:
                del self._legs[call_id]

        return unregister

    async def to_agent(self, login: str, message: Message) -> None:
        """Deliver a message of a call to every panel of ``login`` (this node and others)."""
        if message.get("type") == "ring":
            message = {**message, "node": self.node_id}
        self._deliver(login, message)
        if self._redis is not None:
            await self._publish(
                self._agent_channel(login), {"origin": self.node_id, "message": message}
            )

    # -- plumbing --------------------------------------------------------------------------------
    def _deliver(self, login: str, message: Message) -> None:
        call_id = message.get("call_id")
        kind = message.get("type")
        if kind == "ring" and isinstance(call_id, str):
            self._call_nodes[call_id] = str(message.get("node", self.node_id))
            self._rung[call_id] = login
            _bound(self._call_nodes)
            _bound(self._rung)
        elif kind == "call_renamed" and isinstance(call_id, str):
            # A consultation handed over: the colleague's leg now carries the caller's id.
            old = str(message.get("from"))
            node = self._call_nodes.pop(old, None)
            if node is not None:
                self._call_nodes[call_id] = node
            if self._rung.pop(old, None) is not None:
                self._rung[call_id] = login
        elif (
            kind == "call_state"
            and message.get("state") == "ended"
            and self._rung.get(str(call_id)) == login  # not another agent's leg of that call
        ):
            self._call_nodes.pop(str(call_id), None)
            self._rung.pop(str(call_id), None)
        for sink in list(self._sinks.get(login, ())):
            try:
                sink(message)
            except Exception:  # one broken socket must not starve the others
                logger.exception("softphone sink failed")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("softphone relay task failed (%s)", type(task.exception()).__name__)

    async def _resubscribe(self) -> bool:
        """Subscribe to this node's channel and its panels' agents; False when Redis is down."""
        wanted = {self._node_channel(self.node_id)} | {self._agent_channel(a) for a in self._sinks}
        missing = sorted(wanted - self._subscribed)
        if not missing:
            return True
        try:
            await self._pubsub.subscribe(*missing)
        except Exception as exc:  # noqa: BLE001 - retried by _listen and _keep_presence
            logger.warning("softphone relay not subscribed (%s)", type(exc).__name__)
            return False
        self._subscribed.update(missing)
        return True

    async def _subscribe_agent(self, login: str) -> None:
        """Listen for the agent's messages, then say the panel is here (in that order)."""
        if self._pubsub is None:
            return
        if await self._resubscribe():
            await self._redis.set(
                self._presence_key(login), self.node_id, px=int(self.presence_ttl_s * 1000)
            )

    async def _unsubscribe_agent(self, login: str) -> None:
        if self._pubsub is None or login in self._sinks:
            return
        channel = self._agent_channel(login)
        self._subscribed.discard(channel)
        await self._pubsub.unsubscribe(channel)
        if login in self._sinks:  # attached again meanwhile (a reload)
            await self._resubscribe()
            return
        key = self._presence_key(login)
        if await self._redis.get(key) == self.node_id:  # not another node's panel
            await self._redis.delete(key)

    async def _publish(self, channel: str, payload: Message) -> None:
        try:
            await self._redis.publish(channel, json.dumps(payload))
        except Exception as exc:  # noqa: BLE001 - Redis down: the message is lost, say so
            logger.warning("softphone message not relayed (%s)", type(exc).__name__)

    async def _listen(self) -> None:
        """Deliver what other nodes publish for this node's panels and calls."""
        node_channel = self._node_channel(self.node_id)
        while True:
            if not await self._resubscribe():
                await asyncio.sleep(1.0)
                continue
            try:
                item = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - subscribed again on the next round
                logger.warning("softphone relay read failed (%s)", type(exc).__name__)
                self._subscribed.clear()  # a new connection starts with no channel
                await asyncio.sleep(1.0)
                continue
            if item is None or item.get("type") != "message":
                if not self._pubsub.subscribed:
                    await asyncio.sleep(0.05)  # get_message returns at once without channels
                continue
            try:
                payload = json.loads(item["data"])
            except (TypeError, ValueError):
                continue
            if not isinstance(payload, dict):
                continue
            if item["channel"] == node_channel and "request" in payload:
                self._spawn(self._serve_request(payload))
                continue
            if item["channel"] == node_channel and isinstance(payload.get("reply"), dict):
                reply = payload["reply"]
                waiting = self._waiting.get(str(reply.get("id")))
                if waiting is not None and not waiting.done():
                    try:
                        status = int(reply.get("status", 500))
                    except (TypeError, ValueError):
                        status = 500
                    waiting.set_result((status, str(reply.get("message"))))
                continue
            if not isinstance(payload.get("message"), dict):
                continue
            if item["channel"] == node_channel:
                login = payload.get("login")
                message = payload["message"]
                entry = self._legs.get(str(message.get("call_id")))
                if entry is not None and entry.login == login:
                    entry.handler(message)
            elif payload.get("origin") != self.node_id:
                login = str(item["channel"]).rsplit(":", 1)[-1]
                self._deliver(login, payload["message"])

    async def _keep_presence(self) -> None:
        while True:
            await asyncio.sleep(self.presence_ttl_s / 3)
            if not await self._resubscribe():
                continue  # no presence while this node cannot hear the agent's channel
            for login in list(self._sinks):
                try:
                    await self._redis.set(
                        self._presence_key(login), self.node_id, px=int(self.presence_ttl_s * 1000)
                    )
                except Exception as exc:  # noqa: BLE001 - next round retries
                    logger.warning("softphone presence not refreshed (%s)", type(exc).__name__)
                    break

    def _agent_channel(self, login: str) -> str:
        return f"{self.prefix}:softphone:agent:{login}"

    def _node_channel(self, node: str) -> str:
        return f"{self.prefix}:softphone:node:{node}"

    def _presence_key(self, login: str) -> str:
        return f"{self.prefix}:softphone:presence:{login}"


MAX_TRACKED_CALLS = 10_000
"""Calls remembered for relaying (oldest forgotten: their ``ended`` may have been missed)."""


def _bound(table: dict[str, str]) -> None:
    while len(table) > MAX_TRACKED_CALLS:
        del table[next(iter(table))]
