"""WebRtcPeer against Debian's Chromium (headless, fake microphone) over loopback only.

In tests/netns: it runs inside a loopback-only network namespace, where 127.0.0.1 is the only
address Chromium can gather (see tests/netns/conftest.py).

A test-only page (``tests/webrtc/page/``) served on 127.0.0.1 offers from the fake microphone
(a 440 Hz WAV), POSTs its offer, and applies the answer our :class:`WebRtcPeer` returns
(source: 1 kHz).
"""

from __future__ import annotations

import asyncio
import math
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from callcenter.webrtc import WebRtcConfig, WebRtcError, WebRtcPeer, candidate_addresses
from tests.browser import chromium, require_chromium
from tests.webrtc.support import dominant_frequency, eventually, tone_source

pytestmark = pytest.mark.loopback

PAGE = Path(__file__).resolve().parents[1] / "webrtc" / "page"


def write_tone_wav(
    path: Path, freq: float = 440.0, seconds: float = 2.0, rate: int = 48000
) -> None:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (8000 * np.sin(2 * math.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm.tobytes())


class Service:
    """The aiohttp side: serves the page and answers offers with WebRtcPeer."""

    def __init__(self, config: WebRtcConfig) -> None:
        self.config = config
        self.peers: list[WebRtcPeer] = []
        self.frames: list[bytes] = []
        self.states: list[str] = []
        self.offers: list[str] = []
        app = web.Application()
        app.router.add_post("/offer", self.offer)
        app.router.add_get("/", self.index)
        app.router.add_static("/", PAGE)
        self.server = TestServer(app, host="127.0.0.1")

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE / "index.html")

    async def offer(self, request: web.Request) -> web.Response:
        sdp = await request.text()
        self.offers.append(sdp)
        peer = WebRtcPeer(
            self.config,
            source=tone_source(1000.0),
            on_audio=self.frames.append,
            on_state=self.states.append,
        )
        self.peers.append(peer)
        try:
            answer = await peer.answer(sdp)
        except WebRtcError as exc:
            return web.Response(status=400, text=str(exc))
        return web.Response(text=answer, content_type="application/sdp")

    async def close(self) -> None:
        for peer in self.peers:
            await peer.close()
        await self.server.close()


@pytest.fixture
def microphone(tmp_path: Path) -> Path:
    path = tmp_path / "mic.wav"
    write_tone_wav(path)
    return path


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    require_chromium()
    svc = Service(WebRtcConfig(host_addresses=("127.0.0.1",)))
    await svc.server.start_server()
    yield svc
    await svc.close()


async def poll(page: Any, expression: str, predicate: Any) -> Any:
    """Evaluate ``expression`` in the page until ``predicate`` holds (15 s at most)."""
    value = None
    for _ in range(75):
        value = await page.evaluate(expression)
        if predicate(value):
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"{expression} stayed {value!r}")


async def test_chromium_two_way_audio_over_loopback(service: Service, microphone: Path) -> None:
    async with chromium(microphone_wav=microphone) as browser:
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(str(service.server.make_url("/")))
        sdp = await page.evaluate("start()")
        assert not errors
        # ICE on loopback only: every candidate (and c= line) of both SDPs is 127.0.0.1.
        assert candidate_addresses(sdp["offer"]) == {"127.0.0.1"}, sdp["offer"]
        assert candidate_addresses(sdp["answer"]) == {"127.0.0.1"}
        peer = service.peers[0]
        assert peer.codec == "opus"

        await eventually(
            lambda: "connected" in service.states and peer.stats()["voiced_received"] >= 50,
            within=15,
        )
        # The nominated pair is 127.0.0.1 at both ends. This file runs in a loopback-only
        # namespace (tests/netns): outside it Chromium could also pair its LAN address with
        # our 127.0.0.1 (RFC 8445 section 6.1.2.2), and our answers would go to that address.
        pair = await page.evaluate("selectedPair()")
        assert (pair["local"], pair["remote"]) == ("127.0.0.1", "127.0.0.1"), pair

        # (a) The fake microphone's 440 Hz tone reached on_audio (Opus, resampled to 8 kHz).
        assert all(len(f) == 320 for f in service.frames)
        assert abs(dominant_frequency(b"".join(service.frames[-25:])) - 440) < 20

        # (b) Chromium decodes our 1 kHz tone: its inbound-rtp audio energy grows.
        first = await poll(page, "inboundAudio()", lambda v: v and v["totalAudioEnergy"] > 0)
        assert first["codec"] == "audio/opus"
        later = await poll(
            page,
            "inboundAudio()",
            lambda v: v["totalAudioEnergy"] > first["totalAudioEnergy"] and v["audioLevel"] > 0.05,
        )
        assert later["packetsReceived"] > 25
        await page.close()
    # The browser went away: the peer still closes cleanly and reports it once.
    await peer.close()
    assert service.states.count("closed") == 1


async def test_chromium_pcmu_only(microphone: Path) -> None:
    require_chromium()
    svc = Service(WebRtcConfig(host_addresses=("127.0.0.1",), codecs=("PCMU",)))
    await svc.server.start_server()
    try:
        async with chromium(microphone_wav=microphone) as browser:
            page = await browser.new_page()
            await page.goto(str(svc.server.make_url("/")))
            await page.evaluate("start()")
            assert svc.peers[0].codec == "PCMU"
            await eventually(lambda: svc.peers[0].stats()["voiced_received"] >= 50, within=15)
            assert abs(dominant_frequency(b"".join(svc.frames[-25:])) - 440) < 20
            stats = await poll(page, "inboundAudio()", lambda v: v and v["audioLevel"] > 0.05)
            assert stats["codec"] == "audio/PCMU"
            await page.close()
    finally:
        await svc.close()
