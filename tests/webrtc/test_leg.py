"""WebRtcLeg: the browser softphone as the agent side of a call, against a real aiortc "browser".

The leg rings the agent's panel through a softphone hub; the test plays the panel (it reads the
hub's messages and answers with an aiortc peer's offer) and the call (it reads the leg events and
runs the media with a tone as the caller). Loopback only.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from callcenter.agent_leg import LegAnswered, LegEnded, LegEvent, LegFailed, LegHold, LegRinging
from callcenter.config import WebRtcConfig
from callcenter.softphone import SoftphoneHub
from callcenter.webrtc import leg as leg_module
from callcenter.webrtc.leg import WebRtcLeg
from tests.webrtc.support import BrowserPeer, eventually, tone_source

pytestmark = pytest.mark.loopback

CONFIG = WebRtcConfig(host_addresses=("127.0.0.1",))


class Panel:
    """The agent's panel: what the hub delivers, and the "browser" peers it answered with."""

    def __init__(self, hub: SoftphoneHub) -> None:
        self.hub = hub
        self.messages: list[dict[str, Any]] = []
        hub.attach("ag1", self.messages.append)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def answer(self, browser: BrowserPeer) -> None:
        seen = len(self.of("answer_sdp"))
        await self.hub.from_browser(
            "ag1", {"type": "answer", "call_id": "call-1", "sdp": await browser.offer()}
        )
        await eventually(lambda: len(self.of("answer_sdp")) > seen)
        await browser.accept(self.of("answer_sdp")[-1]["sdp"])


async def start_leg() -> tuple[WebRtcLeg, Panel, list[LegEvent]]:
    hub = SoftphoneHub()
    panel = Panel(hub)
    events: list[LegEvent] = []
    leg = WebRtcLeg(
        hub=hub,
        config=CONFIG,
        agent_id="ag1",
        owner_call_id="call-1",
        pop={"call_id": "call-1", "queue": "apa"},
        on_event=events.append,
    )
    await leg.start()
    return leg, panel, events


async def test_ring_answer_media_hold_and_hang_up() -> None:
    leg, panel, events = await start_leg()
    browser = BrowserPeer(440.0)
    media: asyncio.Task[None] | None = None
    try:
        assert isinstance(events[0], LegRinging)
        (ring,) = panel.of("ring")
        assert ring["pop"] == {"call_id": "call-1", "queue": "apa"}
        await panel.answer(browser)
        await eventually(lambda: any(isinstance(e, LegAnswered) for e in events))
        heard: list[bytes] = []
        media = asyncio.create_task(
            leg.run_media(tone_source(1000.0), lambda e: heard.append(getattr(e, "pcm", b"")))
        )
        await eventually(lambda: len(heard) > 50 and len(browser.received) > 8000)
        # Hold: the call is told, nothing is exchanged meanwhile; resume.
        await panel.hub.from_browser("ag1", {"type": "hold", "call_id": "call-1"})
        held = events[-1]
        assert isinstance(held, LegHold) and held.held
        assert leg.silent_for(10**9) == 0.0  # a held browser is never "silent"
        await panel.hub.from_browser("ag1", {"type": "resume", "call_id": "call-1"})
        resumed = events[-1]
        assert isinstance(resumed, LegHold) and not resumed.held
        await panel.hub.from_browser("ag1", {"type": "hangup", "call_id": "call-1"})
        ended = events[-1]
        assert isinstance(ended, LegEnded) and ended.by_agent
        await asyncio.wait_for(media, 5)
    finally:
        leg.close()
        await browser.close()
        if media is not None and not media.done():
            media.cancel()


async def test_a_reloaded_browser_reconnects_within_the_grace_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(leg_module, "RECONNECT_GRACE_S", 2.0)
    leg, panel, events = await start_leg()
    first, second = BrowserPeer(440.0), BrowserPeer(660.0)
    try:
        await panel.answer(first)
        await eventually(lambda: any(isinstance(e, LegAnswered) for e in events))
        old_peer = leg.peer
        await first.close()  # the page goes away without hanging up
        await asyncio.sleep(0.5)
        await panel.answer(second)  # the reloaded page offers again
        await eventually(lambda: leg.peer is not old_peer)
        await eventually(lambda: any(m.get("reason") == "reconnected" for m in panel.messages))
        await asyncio.sleep(2.5)  # beyond the grace period of the first peer
        assert not any(isinstance(e, LegEnded | LegFailed) for e in events), events
        assert not leg.ended
    finally:
        leg.close()
        await first.close()
        await second.close()


async def test_a_browser_gone_for_good_ends_the_leg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(leg_module, "RECONNECT_GRACE_S", 0.5)
    leg, panel, events = await start_leg()
    browser = BrowserPeer(440.0)
    try:
        await panel.answer(browser)
        await eventually(lambda: any(isinstance(e, LegAnswered) for e in events))
        await browser.close()
        await eventually(lambda: any(isinstance(e, LegEnded) for e in events), within=15)
        (ended,) = [e for e in events if isinstance(e, LegEnded)]
        assert ended.cause == "media_failed"
    finally:
        leg.close()
        await browser.close()


async def test_only_the_agent_rung_can_answer_and_a_late_answer_opens_nothing() -> None:
    leg, panel, events = await start_leg()
    browser = BrowserPeer(440.0)
    try:
        refused = await panel.hub.from_browser(
            "ag2", {"type": "answer", "call_id": "call-1", "sdp": await browser.offer()}
        )
        assert refused == "this call is not yours"
        leg.cancel()  # the ring timed out
        await eventually(lambda: any(m.get("state") == "ended" for m in panel.of("call_state")))
        await panel.hub.from_browser(
            "ag1", {"type": "answer", "call_id": "call-1", "sdp": await browser.offer()}
        )
        await asyncio.sleep(0.3)
        assert leg.peer is None and not panel.of("answer_sdp")
    finally:
        leg.close()
        await browser.close()


async def test_a_reject_after_the_answer_is_a_hang_up() -> None:
    leg, panel, events = await start_leg()
    browser = BrowserPeer(440.0)
    try:
        await panel.answer(browser)
        await eventually(lambda: any(isinstance(e, LegAnswered) for e in events))
        await panel.hub.from_browser("ag1", {"type": "reject", "call_id": "call-1"})
        ended = events[-1]
        assert isinstance(ended, LegEnded) and ended.by_agent  # the call ends, not left hanging
        assert not any(isinstance(e, LegFailed) for e in events)
    finally:
        leg.close()
        await browser.close()
