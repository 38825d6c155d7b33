"""Helpers for the WebRTC tests: tones, their analysis, and an aiortc peer standing in for the
browser (it offers, like the panel's ``softphone.js``)."""

from __future__ import annotations

import asyncio
import fractions
import math
from collections.abc import Callable

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from callcenter.webrtc import FRAME_BYTES, ice_host_addresses

LOOPBACK = ("127.0.0.1",)


def tone_source(freq: float, amplitude: int = 8000, rate: int = 8000) -> Callable[[], bytes]:
    """A ``source()`` for :class:`WebRtcPeer`: consecutive 20 ms frames of a sine."""
    n = 0

    def source() -> bytes:
        nonlocal n
        t = (np.arange(rate // 50) + n) / rate
        n += rate // 50
        return (amplitude * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()

    return source


def dominant_frequency(pcm: bytes, rate: int = 8000) -> float:
    """Frequency (Hz) of the largest FFT bin of s16le mono PCM."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    spectrum[0] = 0
    return float(np.argmax(spectrum) * rate / len(samples))


class ToneTrack(MediaStreamTrack):
    """What the fake browser microphone sends: a 48 kHz sine, 20 ms frames, paced."""

    kind = "audio"

    def __init__(self, freq: float, amplitude: int = 8000, rate: int = 48000) -> None:
        super().__init__()
        self._freq, self._amplitude, self._rate = freq, amplitude, rate
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        samples = self._rate // 50
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += samples
            await asyncio.sleep(max(0.0, self._start + self._pts / self._rate - loop.time()))
        t = (np.arange(samples) + self._pts) / self._rate
        pcm = (self._amplitude * np.sin(2 * math.pi * self._freq * t)).astype("<i2")
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self._rate)
        return frame


class BrowserPeer:
    """An aiortc peer acting as the agent's browser: sends a tone, records what it receives."""

    def __init__(self, freq: float = 440.0, *, codecs: tuple[str, ...] | None = None) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = ToneTrack(freq)
        self.transceiver = self.pc.addTransceiver(self.track, direction="sendrecv")
        if codecs is not None:
            from callcenter.webrtc.peer import codec_preferences

            self.transceiver.setCodecPreferences(codec_preferences(codecs))
        self.received = bytearray()
        """What the server sent, decoded and resampled to 8 kHz mono s16le."""
        self.states: list[str] = []
        self._rx: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", lambda: self.states.append(self.pc.connectionState))
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._rx = asyncio.create_task(self._receive(track), name="browser-rx")

    async def _receive(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=8000)
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, av.AudioFrame)
            for out in resampler.resample(frame):
                self.received += out.to_ndarray().tobytes()

    async def offer(self) -> str:
        offer = await self.pc.createOffer()
        with ice_host_addresses(LOOPBACK):
            await self.pc.setLocalDescription(offer)
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    async def close(self) -> None:
        await self.pc.close()
        if self._rx is not None:
            await asyncio.wait({self._rx}, timeout=2)


def frame_peaks(frames: list[bytes]) -> list[int]:
    return [int(np.abs(np.frombuffer(f, dtype="<i2").astype(np.int32)).max()) for f in frames]


assert FRAME_BYTES == 320


async def eventually(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Poll ``predicate`` (aiortc exposes no event for media counters) until true or fail."""
    step = 0.02
    for _ in range(int(within / step)):
        if predicate():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"not true within {within} s")
