"""Two nodes: the agent's panel on node B, the call on node A, signalling relayed through Redis.

Two ``callcenter serve`` processes share a private Redis (routing and softphone signalling) and
one database (SQLite here: the machine's PostgreSQL is outside this loopback-only namespace).
The agent logs in to **node B's** panel in Chromium; a baresip caller (the usager's number)
dials **node A** and presses 0. Node A rings the browser through Redis (the panel is present
there), the browser's answer reaches node A's call through Redis, and the WebRTC media flows
between the browser and node A (127.0.0.1 at both ends of the ICE pair). The screen pop and the
dossier are served by node B. The agent then transfers the caller to 3977 from the panel: node B
relays the transfer to node A, which dials the trunk (a sipp UAS) and bridges; the wrap-up is
saved on node B. The trail of node A says the agent answered in the browser and transferred.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from callcenter.store import agents as agents_store
from callcenter.store import db
from callcenter.store import panel as panel_store
from tests.browser import chromium, require_chromium
from tests.loopback import audio as sound
from tests.loopback.service import free_port
from tests.loopback.test_multinode import shared_db, shared_redis, two_nodes
from tests.loopback.test_outbound import sipp_uas
from tests.netns.test_panel_softphone import (
    PASSWORD,
    SELECTED_PAIR,
    BaresipCaller,
    _energy,
    _until,
    agent_voice,
    caller_voice,
)
from tests.store.seed import PHONE, seed_apa_usager

__all__ = ["agent_voice", "caller_voice", "shared_db", "shared_redis"]  # fixtures

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        shutil.which("baresip") is None or shutil.which("redis-server") is None,
        reason="baresip and redis-server are needed",
    ),
]


async def call_events(base_url: str, call_id: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            async with http.get(f"{base_url}/api/calls/{call_id}") as resp:
                if resp.status == 200:
                    body = await resp.json()
                    if body.get("ended_at"):
                        return list(body["events"])
            await asyncio.sleep(0.2)
    raise AssertionError("the call's trail was not written")


async def newest_call_id(base_url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/api/calls?limit=1") as resp:
        calls = await resp.json()
    assert calls, "no call in the trail"
    return str(calls[0]["sip_call_id"])


async def test_panel_on_node_b_answers_a_call_held_by_node_a(
    tmp_path: Path, shared_db: str, shared_redis: str, agent_voice: Path, caller_voice: Path
) -> None:
    require_chromium()
    trunk_port = free_port()
    extra = {
        "CALLCENTER_PANEL_SECURE_COOKIES": "false",
        "CALLCENTER_WEBRTC_HOST_ADDRESSES": "127.0.0.1",
        "CALLCENTER_CALLBACKS_ENABLED": "false",
        "CALLCENTER_TRANSFERS_ALLOWED_NUMBERS": "3977",
    }
    with two_nodes(tmp_path, shared_db, shared_redis, trunk_port=trunk_port, extra_env=extra) as (
        a,
        b,
    ):
        engine = db.make_engine(shared_db)
        try:
            seed_apa_usager(engine, deposited=date(2026, 9, 1))
            agents_store.add_agent(engine, "ag1", "Agent ag1", skills={"accueil_general": 3})
            panel_store.set_password(engine, "ag1", PASSWORD)
        finally:
            engine.dispose()
        caller = BaresipCaller(tmp_path / "caller", PHONE, caller_voice)
        await caller.start()
        try:
            async with chromium(microphone_wav=agent_voice) as browser:
                page = await browser.new_page()
                await page.goto(f"{b.base_url}/panel/login")
                await page.fill("#login", "ag1")
                await page.fill("#password", PASSWORD)
                await page.click("#login-submit")
                await page.wait_for_url(f"{b.base_url}/panel/")
                await _until(page, "() => !document.querySelector('#btn-routing-login').disabled")
                await page.click("#btn-routing-login")
                await _until(
                    page,
                    "() => document.querySelector('#btn-routing-logout') && "
                    "!document.querySelector('#btn-routing-logout').disabled",
                )
                await asyncio.sleep(1.0)  # node B's presence key and subscription are in Redis

                await caller.command(f"/dial sip:3975@127.0.0.1:{a.sip_port}\n")
                await asyncio.sleep(2.0)
                await caller.command("0")

                await _until(page, "() => !document.querySelector('#btn-answer').disabled", 30000)
                try:
                    await _until(
                        page,
                        "() => document.querySelector('#dossier').textContent.includes('Usager')",
                    )
                except Exception:
                    shown = await page.inner_text("#dossier")
                    async with aiohttp.ClientSession() as http:
                        async with http.get(f"{a.base_url}/api/calls?limit=1") as resp:
                            last = (await resp.json())[0]["sip_call_id"]
                        async with http.get(f"{a.base_url}/api/calls/{last}") as resp:
                            trail = [(e["type"], e["data"]) for e in (await resp.json())["events"]]
                    raise AssertionError(f"{shown}\n{trail}") from None
                assert "MARTIN" in (await page.inner_text("#dossier")).upper()
                await page.click("#btn-answer")
                await _until(page, "() => !document.querySelector('#btn-hangup').disabled")
                start = await _energy(page)
                await asyncio.sleep(3.0)
                assert await _energy(page) > start, a.log_tail(30) + b.log_tail(30)
                assert await page.evaluate(SELECTED_PAIR) == ["127.0.0.1", "127.0.0.1"]
                # Transfer to 3977 from node B's panel: node A, which holds the call, dials it.
                async with sipp_uas(
                    "agent_answer.xml.tmpl",
                    tmp_path / "trunk",
                    port=trunk_port,
                    display="SOLIDARITES transfert",
                    ring_ms="300",
                    talk_ms="2000",
                    audio_wav=str(trunk_voice(tmp_path)),
                ) as trunk:
                    await page.check("#tr-number")
                    await page.fill("#transfer-target", "3977")
                    await page.click("#btn-transfer")
                    await _until(page, "() => !document.querySelector('#wrapup').hidden")
                    assert await trunk.finished(within=40) == 0, trunk.describe()
                (invite,) = trunk.received("INVITE")
                assert f":{a.sip_port}" in next(
                    line for line in invite.splitlines() if line.startswith("Via:")
                ), invite
                await page.select_option("#wrapup-motif", "Suivi de dossier")
                await page.fill("#wrapup-note", "Appel pris sur le nœud B.")
                await page.click("#btn-wrapup-save")
                await _until(page, "() => document.querySelector('#wrapup').hidden")
        finally:
            await caller.stop()
        call_id = await newest_call_id(a.base_url)
        events = await call_events(a.base_url, call_id)
    kinds = [e["type"] for e in events]
    offered = next(e for e in events if e["type"] == "agent_offered")
    assert offered["data"]["endpoint"] == "browser", events
    for kind in ("agent_answered", "bridged", "transferred", "transfer_answered"):
        assert kind in kinds, kinds
    transferred = next(e for e in events if e["type"] == "transferred")["data"]
    assert transferred == {"agent": "ag1", "kind": "number", "via": "api", "to": None}
    bridge = next(e for e in events if e["type"] == "bridge_ended")["data"]
    assert bridge["to_caller_voiced"] > 25 and bridge["to_agent_voiced"] > 25, bridge


def trunk_voice(tmp_path: Path) -> Path:
    """What 3977 says (µ-law, for the sipp trunk)."""
    return sound.caller_wav(
        tmp_path / "trunk.wav", "u-law", text="Trois neuf sept sept, bonjour, je vous écoute."
    )
