"""The agents' side of ``bench/panel.py --sessions N``: N panel sessions in a child process.

Run by ``bench/panel.py`` (not by hand), so that the service's process measures only the
service. Each agent logs in through HTTP (``POST /panel/api/login``: argon2id), opens the panel
WebSocket (``/panel/ws``, waits for its ``hello``) and logs in to routing
(``POST /panel/api/agent/login`` with ``X-CSRF-Token`` and ``Origin``). Then every socket
stamps (``time.time()``) each ``offer`` (routing) and ``ring`` (softphone) message it receives.

Talks with the parent in JSON lines: stdout ``{"ready": ..., "login_ms": [...], ...}`` once
every session is up; stdin ``{"round": "offer"|"ring", "count": n, "timeout_s": t}`` → stdout
``{"round": ..., "received": [[login, call_id, t], ...]}`` once ``n`` such messages arrived (or
the timeout passed); stdin ``{"quit": true}`` → the sockets close and the child exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp


@dataclass
class Agent:
    """One agent's panel session."""

    login: str
    http: aiohttp.ClientSession
    csrf: str = ""
    ws: aiohttp.ClientWebSocketResponse | None = None
    hello: asyncio.Event = field(default_factory=asyncio.Event)


def send(message: dict[str, Any]) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def log_in(agent: Agent, base: str, password: str) -> float:
    """``POST /panel/api/login``; the time it took (ms)."""
    started = time.perf_counter()
    async with agent.http.post(
        f"{base}/panel/api/login",
        json={"login": agent.login, "password": password},
        headers={"Origin": base},
    ) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"login {agent.login}: HTTP {resp.status} {body}")
    agent.csrf = str(body["csrf_token"])
    return (time.perf_counter() - started) * 1000


async def read_socket(
    agent: Agent, seen: dict[str, list[tuple[str, str, float]]], arrived: asyncio.Event
) -> None:
    """Stamp the ``offer`` and ``ring`` messages of one socket until it closes."""
    assert agent.ws is not None
    async for msg in agent.ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            continue
        at = time.time()
        data = json.loads(msg.data)
        kind = data.get("type")
        if kind == "hello":
            agent.hello.set()
        elif kind in seen:
            seen[kind].append((agent.login, str(data.get("call_id")), at))
            arrived.set()


async def open_panel(agent: Agent, base: str) -> float:
    """Open ``/panel/ws``; the time the handshake took (ms)."""
    started = time.perf_counter()
    agent.ws = await agent.http.ws_connect(f"{base}/panel/ws", headers={"Origin": base})
    return (time.perf_counter() - started) * 1000


async def routing_login(agent: Agent, base: str) -> float:
    """``POST /panel/api/agent/login``; the time it took (ms)."""
    started = time.perf_counter()
    async with agent.http.post(
        f"{base}/panel/api/agent/login",
        json={},
        headers={"X-CSRF-Token": agent.csrf, "Origin": base},
    ) as resp:
        if resp.status != 200:
            raise RuntimeError(f"routing login {agent.login}: HTTP {resp.status}")
        await resp.read()
    return (time.perf_counter() - started) * 1000


async def run(base: str, password: str, logins: list[str], concurrency: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # aiohttp's default jar drops cookies set by an IP address host (127.0.0.1).
    agents = [
        Agent(login, aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
        for login in logins
    ]
    seen: dict[str, list[tuple[str, str, float]]] = {"offer": [], "ring": []}
    arrived = asyncio.Event()
    readers: list[asyncio.Task[None]] = []
    try:
        limit = asyncio.Semaphore(concurrency)

        async def one_login(agent: Agent) -> float:
            async with limit:
                return await log_in(agent, base, password)

        started = time.perf_counter()
        login_ms = await asyncio.gather(*(one_login(a) for a in agents))
        logins_s = time.perf_counter() - started
        ws_ms: list[float] = []
        for agent in agents:
            ms = await open_panel(agent, base)
            readers.append(
                asyncio.create_task(read_socket(agent, seen, arrived), name="bench-panel-ws")
            )
            async with asyncio.timeout(10):
                await agent.hello.wait()
            ws_ms.append(ms)
        routing_ms = [await routing_login(agent, base) for agent in agents]
        send(
            {
                "ready": True,
                "login_ms": login_ms,
                "logins_s": logins_s,
                "ws_open_ms": ws_ms,
                "routing_login_ms": routing_ms,
            }
        )
        while line := await reader.readline():
            command = json.loads(line)
            if command.get("quit"):
                break
            kind, count = str(command["round"]), int(command["count"])
            deadline = loop.time() + float(command.get("timeout_s", 10.0))
            while len(seen[kind]) < count and loop.time() < deadline:
                arrived.clear()
                try:
                    async with asyncio.timeout_at(deadline):
                        await arrived.wait()
                except TimeoutError:
                    break
            send({"round": kind, "received": seen[kind]})
            seen[kind] = []
    finally:
        for agent in agents:
            if agent.ws is not None:
                await agent.ws.close()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for agent in agents:
            await agent.http.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", required=True)
    parser.add_argument("--logins", required=True, help="comma-separated")
    parser.add_argument("--concurrency", type=int, default=1, help="logins at once")
    args = parser.parse_args()
    password = sys.stdin.readline().rstrip("\n")  # never on the command line
    asyncio.run(run(args.base, password, args.logins.split(","), args.concurrency))


if __name__ == "__main__":
    main()
