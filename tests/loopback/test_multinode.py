"""Two service processes sharing Redis (routing) and one database, behind Kamailio's dispatcher.

Each node is a real ``python -m callcenter serve`` with ``routing.backend = "redis"`` (the same
key prefix), the same database (a PostgreSQL schema, or one SQLite file without PostgreSQL), its
own SIP port and data directory. Agents are sipp UAS phones in the shared agents store, logged in
through **node B's** agent API.

- Two callers dial Kamailio (``deploy/kamailio/dispatcher.cfg``): round robin sends one call to
  each node. Both are answered by the agents attached to node B: the call that landed on node A
  (the 200's Contact names A's port) rings B's agent from node A (the agent's INVITE comes from
  A's SIP port) — routing decisions taken on the shared replicated log.
- Killing a node loses no callback: a caller on node A asks to be called back (keeps their
  place), node A is killed (SIGKILL); after its heartbeat expires node B adopts the entry; the
  agent becomes ready on B → B rings the agent and dials the caller through the trunk → connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callcenter.store import agents as agents_store
from callcenter.store import callbacks as cb_store
from callcenter.store import db
from routing.callbacks import CallbackStatus
from tests.loopback.kamailio import kamailio_available, run_dispatcher
from tests.loopback.service import Service, free_port, render_scenario, run_service
from tests.loopback.test_agent_bridge import (
    DISPLAY,
    HOST,
    WAIT_FOR_BYE,
    _routing_file,
    run_caller,
    sipp_caller,
)
from tests.loopback.test_callbacks import CALLEE_DISPLAY, CALLER_ID, _info, trunk_uas
from tests.loopback.test_outbound import sipp_uas
from tests.store.conftest import PG_URL, pg_skip_reason
from tests.test_routing_backends import private_redis

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        shutil.which("sipp") is None or shutil.which("espeak-ng") is None,
        reason="sipp (Debian sip-tester) and espeak-ng are needed",
    ),
]

AGENT_DISPLAY_CALLBACK = "SOLIDARITES rappel accueil_general"


@pytest.fixture
def shared_db(tmp_path: Path) -> Iterator[str]:
    """One database for both nodes: a fresh PostgreSQL schema, else one SQLite file."""
    if pg_skip_reason() is not None:
        yield f"sqlite:///{tmp_path / 'shared.sqlite3'}"
        return
    import psycopg

    conninfo = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    schema = f"test_nodes_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def shared_redis(tmp_path: Path) -> Iterator[str]:
    """A private redis-server (nothing else shares it; killed afterwards)."""
    folder = tmp_path / "redis"
    folder.mkdir()
    with private_redis(folder) as (url, _proc):
        yield url


@contextlib.contextmanager
def two_nodes(
    tmp_path: Path,
    db_url: str,
    redis_url: str,
    *,
    trunk_port: int,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[Service, Service]]:
    routing_file = _routing_file(tmp_path)
    prefix = f"test:{uuid.uuid4().hex[:8]}"
    # One routing clock for both nodes (the router takes the latest event time: a node whose
    # clock runs ahead would make ring timeouts fire early; real nodes use NTP).
    anchor = f"{time.time():.3f}"

    def env(node: str) -> dict[str, str]:
        return {
            "DATABASE_URL": db_url,
            "CALLCENTER_ROUTING_BACKEND": "redis",
            "CALLCENTER_ROUTING_REDIS_URL": redis_url,
            "CALLCENTER_ROUTING_REDIS_PREFIX": prefix,
            "CALLCENTER_ROUTING_NODE_ID": node,
            "CALLCENTER_ROUTING_NODE_TTL_S": "2",
            "CALLCENTER_ROUTING_FILE": str(routing_file),
            "CALLCENTER_ROUTING_ANNOUNCE_INTERVAL_S": "5",
            "CALLCENTER_ASR_ENGINE": "none",
            "CALLCENTER_SIP_TCP": "false",
            "CALLCENTER_FLOWS_WATCH_INTERVAL": "0",
            "CALLCENTER_FLOWS_NOW_OVERRIDE_ANCHOR": anchor,
            "CALLCENTER_CALLBACKS_TRUNK_URI": f"sip:{{number}}@127.0.0.1:{trunk_port}",
            "CALLCENTER_CALLBACKS_RING_TIMEOUT_S": "8",
            "CALLCENTER_CALLBACKS_NODE": node,
            "CALLCENTER_CALLBACKS_ENABLED": "true",
            **(extra_env or {}),
        }

    # One after the other: the first one migrates the shared database.
    with (
        run_service(tmp_path / "node-a", env=env("a")) as a,
        run_service(tmp_path / "node-b", env=env("b")) as b,
    ):
        yield a, b


def add_agent(db_url: str, login: str, uri: str) -> str:
    engine = db.make_engine(db_url)
    try:
        _, token = agents_store.add_agent(
            engine, login, f"Agent {login}", sip_uri=uri, skills={"accueil_general": 3}
        )
    finally:
        engine.dispose()
    return token


async def agent_api(node: Service, token: str, action: str, body: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{node.base_url}/api/agent/{action}", headers=headers, json=body) as resp,
    ):
        assert resp.status == 200, (action, await resp.text())


def contact_port(messages: str) -> int:
    """The SIP port in the Contact of the 200 OK to the INVITE (the node that took the call)."""
    for block in messages.split("-----------------------------------------------"):
        if "SIP/2.0 200 OK" in block and "CSeq: 1 INVITE" in block:
            found = re.search(r"^Contact:.*?@[\d.]+:(\d+)", block, re.MULTILINE)
            if found:
                return int(found.group(1))
    raise AssertionError("no 200 OK to the INVITE in the caller's trace")


def via_port(invite: str) -> int:
    found = re.search(r"^Via: SIP/2.0/UDP [\d.]+:(\d+)", invite, re.MULTILINE)
    assert found, invite
    return int(found.group(1))


@pytest.mark.skipif(not kamailio_available(), reason="kamailio not installed")
async def test_calls_through_the_dispatcher_reach_agents_attached_to_the_other_node(
    tmp_path: Path, audio: tuple[Path, Path], shared_db: str, shared_redis: str
) -> None:
    caller_audio, agent_audio = audio
    with two_nodes(tmp_path, shared_db, shared_redis, trunk_port=9) as (a, b):
        nodes = {a.sip_port: "a", b.sip_port: "b"}
        with run_dispatcher(
            tmp_path / "kamailio", [(HOST, a.sip_port), (HOST, b.sip_port)]
        ) as dispatcher:
            taken: list[tuple[str, str]] = []  # (node of the call, node that rang the agent)
            for n, login in enumerate(("ag1", "ag2")):
                async with sipp_uas(
                    "agent_answer.xml.tmpl",
                    tmp_path / login,
                    display=DISPLAY,
                    ring_ms="300",
                    talk_ms="2000",
                    audio_wav=str(agent_audio),
                ) as phone:
                    token = add_agent(shared_db, login, f"sip:agent@{phone.uri_host}")
                    await agent_api(b, token, "login", {})
                    async with sipp_caller(
                        f"{HOST}:{dispatcher.port}",
                        tmp_path / f"caller{n}",
                        caller_audio,
                        zero_ms=1500,
                        key_ms=3000,
                        end=WAIT_FOR_BYE,
                    ) as caller:
                        assert await phone.finished(within=60) == 0, (
                            phone.describe()[-2000:] + a.log_tail(20) + b.log_tail(20)
                        )
                        assert await caller.finished() == 0, caller.describe()
                        messages = (caller.workdir / "caller_messages.log").read_text()
                    (invite,) = phone.received("INVITE")
                    taken.append((nodes[contact_port(messages)], nodes[via_port(invite)]))
                    await agent_api(b, token, "wrapup", {"resolved": True})
    # Round robin: one call per node; each node rang the agent (attached to B) for its own call.
    assert sorted(taken) == [("a", "a"), ("b", "b")], taken


def callback_scenario(workdir: Path, audio: Path) -> Path:
    """A caller who presses 0 (a person), 0 (a callback), 1 (the number read back is right)."""
    blocks = []
    for cseq, (pause_ms, digit) in enumerate([(1500, "0"), (1500, "0"), (2500, "1")], start=2):
        blocks.append(f'  <pause milliseconds="{pause_ms}"/>')
        blocks.append(_info(cseq, digit))
    workdir.mkdir(parents=True, exist_ok=True)
    return render_scenario(
        "callback_caller.xml.tmpl",
        workdir / "callback_caller.xml",
        caller=CALLER_ID,
        audio_wav=str(audio),
        keys="\n".join(blocks),
        end_block=WAIT_FOR_BYE,
    )


async def wait_status(db_url: str, status: CallbackStatus, within: float = 40.0) -> Any:
    engine = db.make_engine(db_url)
    try:
        async with asyncio.timeout(within):
            while True:
                found = cb_store.list_callbacks(engine)
                if found and found[0].status is status:
                    return found[0]
                await asyncio.sleep(0.2)
    finally:
        engine.dispose()


async def test_killing_a_node_loses_no_callback(
    tmp_path: Path, audio: tuple[Path, Path], shared_db: str, shared_redis: str
) -> None:
    caller_audio, agent_audio = audio
    trunk_port, agent_port = free_port(), free_port()
    with two_nodes(tmp_path, shared_db, shared_redis, trunk_port=trunk_port) as (a, b):
        token = add_agent(shared_db, "ag1", f"sip:agent@127.0.0.1:{agent_port}")
        await agent_api(b, token, "login", {"pause_reason": "pause"})  # on B, on a break
        scenario = callback_scenario(tmp_path / "caller", caller_audio)
        async with run_caller(a.sip_target, tmp_path / "caller", scenario, timeout_s=40) as caller:
            assert await caller.finished(within=40) == 0, caller.describe() + a.log_tail()
        kept = await wait_status(shared_db, CallbackStatus.QUEUED)
        assert kept.node == "a" and kept.queue_call_id == caller.call_id

        a.proc.kill()  # no goodbye: no logout, no heartbeat any more
        a.proc.wait(timeout=10)
        await asyncio.sleep(5.0)  # > node_ttl_s (2 s): B reaps A and adopts its callback

        async with (
            trunk_uas(
                trunk_port,
                "agent_answer.xml.tmpl",
                tmp_path / "callee",
                display=CALLEE_DISPLAY,
                ring_ms="300",
                talk_ms="9000",
                audio_wav=str(caller_audio),
            ) as callee,
            trunk_uas(
                agent_port,
                "agent_answer_until_bye.xml.tmpl",
                tmp_path / "agent",
                display=AGENT_DISPLAY_CALLBACK,
                ring_ms="300",
                audio_wav=str(agent_audio),
            ) as agent,
        ):
            await agent_api(b, token, "ready", {})
            assert await agent.finished(within=60) == 0, agent.describe() + b.log_tail()
            assert await callee.finished(within=60) == 0, callee.describe() + b.log_tail()
            done = await wait_status(shared_db, CallbackStatus.COMPLETED)
        log_b = b.log_tail(400)

    assert done.last_outcome == "connected" and done.node == "b"
    (callee_invite,) = callee.received("INVITE")
    assert via_port(callee_invite) == b.sip_port  # node B dialled the caller back
    assert "0612345678" not in log_b and "+33612345678" not in log_b
