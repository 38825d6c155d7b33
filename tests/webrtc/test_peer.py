"""WebRtcPeer against a real aiortc peer (standing in for the browser) over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from callcenter.webrtc import (
    WebRtcConfig,
    WebRtcError,
    WebRtcPeer,
    candidate_addresses,
    ice_host_addresses,
    ice_servers,
)
from tests.webrtc.support import BrowserPeer, dominant_frequency, eventually, tone_source

pytestmark = pytest.mark.loopback

LOOPBACK_CONFIG = WebRtcConfig(host_addresses=("127.0.0.1",))


class Server:
    """A WebRtcPeer with a 1 kHz tone as source, recording frames and states."""

    def __init__(self, config: WebRtcConfig = LOOPBACK_CONFIG) -> None:
        self.frames: list[bytes] = []
        self.states: list[str] = []
        self.peer = WebRtcPeer(
            config,
            source=tone_source(1000.0),
            on_audio=self.frames.append,
            on_state=self.states.append,
        )


@pytest.fixture
async def browser() -> AsyncIterator[BrowserPeer]:
    peer = BrowserPeer(440.0)
    yield peer
    await peer.close()


async def connect(server: Server, browser: BrowserPeer) -> str:
    answer = await server.peer.answer(await browser.offer())
    await browser.accept(answer)
    await eventually(lambda: "connected" in server.states)
    return answer


@pytest.mark.parametrize(("codecs", "expected"), [(("opus",), "opus"), (("PCMU",), "PCMU")])
async def test_audio_flows_both_ways(
    browser: BrowserPeer, codecs: tuple[str, ...], expected: str
) -> None:
    server = Server(WebRtcConfig(host_addresses=("127.0.0.1",), codecs=codecs))
    try:
        answer = await connect(server, browser)
        assert server.peer.codec == expected
        assert f" {expected}/" in answer
        # One second of media each way.
        await eventually(lambda: server.peer.stats()["voiced_received"] >= 50)
        await eventually(lambda: len(browser.received) >= 8000 * 2)
        assert all(len(f) == 320 for f in server.frames)
        loop = asyncio.get_running_loop()
        assert server.peer.last_rx_time is not None
        assert loop.time() - server.peer.last_rx_time < 0.5
        # The browser's 440 Hz tone reached on_audio, the server's 1 kHz tone reached the browser.
        assert abs(dominant_frequency(b"".join(server.frames[-25:])) - 440) < 20
        assert abs(dominant_frequency(bytes(browser.received[-8000:])) - 1000) < 20
        stats = server.peer.stats()
        assert stats["frames_sent"] >= 50
        assert stats["frames_silent_sent"] == 0
        assert stats["voiced_sent"] == stats["frames_sent"]
        assert stats["pacing_resets"] == 0
    finally:
        await server.peer.close()
    assert server.states == ["connected", "closed"]


async def test_codec_preference_order(browser: BrowserPeer) -> None:
    # The browser offers opus first; our preference for PCMU wins in the answer.
    server = Server(WebRtcConfig(host_addresses=("127.0.0.1",), codecs=("PCMU", "opus")))
    try:
        answer = await server.peer.answer(await browser.offer())
        assert server.peer.codec == "PCMU"
        audio = next(line for line in answer.splitlines() if line.startswith("m=audio"))
        assert audio.split()[3:] == ["0", "96"]
    finally:
        await server.peer.close()


async def test_no_common_codec(browser: BrowserPeer) -> None:
    offer_browser = BrowserPeer(codecs=("opus",))
    server = Server(WebRtcConfig(host_addresses=("127.0.0.1",), codecs=("PCMA",)))
    try:
        with pytest.raises(WebRtcError):
            await server.peer.answer(await offer_browser.offer())
    finally:
        await server.peer.close()
        await offer_browser.close()


async def test_candidates_are_loopback_only(browser: BrowserPeer) -> None:
    server = Server()
    try:
        offer = await browser.offer()
        answer = await server.peer.answer(offer)
        assert candidate_addresses(answer) == {"127.0.0.1"}
        assert candidate_addresses(offer) == {"127.0.0.1"}
    finally:
        await server.peer.close()


@pytest.mark.parametrize(
    "offer",
    [
        "",
        "not an sdp",
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",  # no media at all
    ],
)
async def test_bad_offer(offer: str) -> None:
    server = Server()
    with pytest.raises(WebRtcError):
        await server.peer.answer(offer)
    await server.peer.close()
    assert server.states == ["closed"]


async def test_close_is_idempotent(browser: BrowserPeer) -> None:
    server = Server()
    await connect(server, browser)
    await asyncio.gather(server.peer.close(), server.peer.close())
    await server.peer.close()
    assert server.states == ["connected", "closed"]
    other = BrowserPeer()
    try:
        with pytest.raises(WebRtcError, match="closed"):
            await server.peer.answer(await other.offer())
    finally:
        await other.close()


async def test_second_offer_refused(browser: BrowserPeer) -> None:
    server = Server()
    try:
        offer = await browser.offer()
        await server.peer.answer(offer)
        with pytest.raises(WebRtcError):
            await server.peer.answer(offer)
    finally:
        await server.peer.close()


async def test_silence_when_source_gives_none(browser: BrowserPeer) -> None:
    frames: list[bytes] = []
    states: list[str] = []
    peer = WebRtcPeer(
        LOOPBACK_CONFIG, source=lambda: None, on_audio=frames.append, on_state=states.append
    )
    try:
        await browser.accept(await peer.answer(await browser.offer()))
        await eventually(lambda: len(browser.received) >= 8000)
        assert max(abs(b) for b in browser.received[-4000:]) < 10
        assert peer.stats()["frames_silent_sent"] == peer.stats()["frames_sent"]
        # Paced at 50 frames/s (source() called every 20 ms).
        before = peer.stats()["frames_sent"]
        await asyncio.sleep(1.0)
        assert 45 <= peer.stats()["frames_sent"] - before <= 55
    finally:
        await peer.close()


async def test_far_end_close_stops_reception(browser: BrowserPeer) -> None:
    server = Server()
    try:
        await connect(server, browser)
        await eventually(lambda: server.peer.stats()["frames_received"] >= 10)
        await browser.close()
        # Our side notices (DTLS close_notify ends the connection) and audio stops arriving.
        await eventually(lambda: server.states[-1] in ("closed", "failed"), within=40)
        count = server.peer.stats()["frames_received"]
        await asyncio.sleep(0.2)
        assert server.peer.stats()["frames_received"] == count
    finally:
        await server.peer.close()
    assert server.states[-1] == "closed"


def test_ice_servers_parsing() -> None:
    servers = ice_servers(
        ["stun:stun.example.org:3478", "turn:alice:s%40cret@turn.example.org:3478?transport=udp"]
    )
    assert servers[0].urls == "stun:stun.example.org:3478"
    assert servers[0].username is None
    assert servers[1].urls == "turn:turn.example.org:3478?transport=udp"
    assert (servers[1].username, servers[1].credential) == ("alice", "s@cret")
    for bad in ["http://x", "turn:turn.example.org:3478", "stun:", "stun:host:notaport"]:
        with pytest.raises(ValueError):
            ice_servers([bad])


def test_invalid_config() -> None:
    for config in [
        WebRtcConfig(codecs=("speex",)),
        WebRtcConfig(host_addresses=("localhost",)),
        WebRtcConfig(ice_servers=("sip:x",)),
    ]:
        with pytest.raises(ValueError):
            WebRtcPeer(
                config, source=lambda: None, on_audio=lambda _: None, on_state=lambda _: None
            )


def test_host_address_override_is_scoped() -> None:
    import aioice.ice

    with ice_host_addresses(["127.0.0.1", "::1"]):
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, True)


async def test_on_audio_error_is_logged_not_lost(
    browser: BrowserPeer, caplog: pytest.LogCaptureFixture
) -> None:
    states: list[str] = []

    def on_audio(pcm: bytes) -> None:
        raise RuntimeError("bridge gone")

    peer = WebRtcPeer(
        LOOPBACK_CONFIG, source=lambda: None, on_audio=on_audio, on_state=states.append
    )
    try:
        await browser.accept(await peer.answer(await browser.offer()))
        await eventually(lambda: "receiving the browser's audio failed" in caplog.text)
        assert peer.stats()["frames_received"] == 1
    finally:
        await peer.close()
    assert states[-1] == "closed"


async def test_unreachable_browser_reports_failed() -> None:
    gone = BrowserPeer()
    offer = await gone.offer()
    await gone.close()  # its ICE sockets are closed: no check can succeed
    states: list[str] = []
    peer = WebRtcPeer(
        LOOPBACK_CONFIG,
        source=lambda: None,
        on_audio=lambda _: None,
        on_state=states.append,
        connect_timeout_s=1.0,
    )
    try:
        await peer.answer(offer)
        await eventually(lambda: states == ["failed"], within=5)
    finally:
        await peer.close()
    assert states == ["failed", "closed"]


def test_a_loopback_peer_drops_the_browsers_other_candidates() -> None:
    from callcenter.webrtc.peer import loopback_candidates_only

    offer = (
        "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n"
        "a=candidate:1 1 udp 2122260223 192.0.2.2 50000 typ host\r\n"
        "a=candidate:2 1 udp 2122194687 127.0.0.1 50001 typ host\r\n"
        "a=candidate:3 1 udp 2122129151 5f0e.local 50002 typ host\r\n"
        "a=candidate:4 1 udp 2122063615 ::1 50003 typ host\r\n"
        "a=rtpmap:111 opus/48000/2\r\n"
    )
    kept = loopback_candidates_only(offer)
    assert "192.0.2.2" not in kept and ".local" not in kept
    assert "127.0.0.1 50001" in kept and "::1 50003" in kept
    assert kept.startswith("v=0\r\n") and kept.endswith("a=rtpmap:111 opus/48000/2\r\n")
