"""Benchmark of the browser softphone's media: CPU of N concurrent :class:`WebRtcPeer` calls.

The parent process runs N server peers (``WebRtcPeer``, host candidates pinned to 127.0.0.1)
on one event loop, each sending a 1 kHz tone (``source()`` every 20 ms) and receiving the far
end's audio (decoded, resampled to 8 kHz, delivered to ``on_audio``). A **child process**
(this script with ``--client``) runs the N far ends: plain aiortc peers standing in for the
agents' browsers, each offering and sending a 440 Hz tone. Signalling is JSON lines over the
child's stdin/stdout. Only the parent's CPU is the measured figure (``time.process_time()``
over the steady window, all calls connected, after a warm-up); the child reports its own.

Usage: ``python bench/webrtc_media.py --calls 10 --duration 20 [--codec opus --codec PCMU]``
(prints JSON; one run per codec, each with a fresh child).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import math
import resource
import sys
import time
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from callcenter.webrtc import WebRtcConfig, WebRtcPeer, ice_host_addresses
from callcenter.webrtc.peer import codec_preferences

LOOPBACK = ("127.0.0.1",)
WARMUP_S = 3.0


def tone(freq: float, rate: int) -> np.ndarray[Any, Any]:
    """One second of a sine (integer frequencies: it loops seamlessly), s16."""
    t = np.arange(rate) / rate
    return (8000 * np.sin(2 * math.pi * freq * t)).astype("<i2")


def tone_frame(second: np.ndarray[Any, Any], n: int, samples: int) -> np.ndarray[Any, Any]:
    """Samples ``n`` to ``n + samples`` of a looped one-second tone (precomputed: the benchmark
    measures the peer, not the tone generator)."""
    start = n % len(second)
    return second[start : start + samples]


# --- child: the browsers ----------------------------------------------------------------------


class ToneTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pts = 0
        self._start: float | None = None
        self._tone = tone(440.0, 48000)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += 960
            await asyncio.sleep(max(0.0, self._start + self._pts / 48000 - loop.time()))
        pcm = tone_frame(self._tone, self._pts, 960)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = 48000
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


async def client(calls: int, codec: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pcs: list[RTCPeerConnection] = []
    received = [0]
    tasks: set[asyncio.Task[None]] = set()

    async def consume(track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            received[0] += 1

    def on_track(track: MediaStreamTrack) -> None:
        task = asyncio.create_task(consume(track), name="bench-client-rx")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def send(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    for i in range(calls):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.on("track", on_track)
        transceiver = pc.addTransceiver(ToneTrack(), direction="sendrecv")
        transceiver.setCodecPreferences(codec_preferences([codec]))
        with ice_host_addresses(LOOPBACK):
            await pc.setLocalDescription(await pc.createOffer())
        pcs.append(pc)
        send({"i": i, "offer": pc.localDescription.sdp})
    cpu_start = None
    while line := await reader.readline():
        message = json.loads(line)
        if "answer" in message:
            pc = pcs[message["i"]]
            await pc.setRemoteDescription(RTCSessionDescription(message["answer"], "answer"))
        elif message.get("measure") == "start":
            cpu_start, received[0] = time.process_time(), 0
        elif message.get("measure") == "stop":
            cpu = time.process_time() - (cpu_start or 0.0)
            send({"client_cpu_s": cpu, "client_frames_received": received[0]})
            break
    for pc in pcs:
        await pc.close()
    if tasks:
        await asyncio.wait(tasks, timeout=2)


# --- parent: the service ----------------------------------------------------------------------


async def run(calls: int, duration: float, codec: str) -> dict[str, Any]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        "--calls",
        str(calls),
        "--codec",
        codec,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    config = WebRtcConfig(host_addresses=LOOPBACK, codecs=(codec,))
    peers: list[WebRtcPeer] = []
    states: list[str] = []
    received = [0]

    second = tone(1000.0, 8000)

    def make_source() -> Any:
        n = 0

        def source() -> bytes:
            nonlocal n
            frame = tone_frame(second, n, 160).tobytes()
            n += 160
            return frame

        return source

    def on_audio(pcm: bytes) -> None:
        received[0] += 1

    try:
        for _ in range(calls):
            message = json.loads(await child.stdout.readline())
            peer = WebRtcPeer(
                config, source=make_source(), on_audio=on_audio, on_state=states.append
            )
            peers.append(peer)
            answer = await peer.answer(message["offer"])
            child.stdin.write((json.dumps({"i": message["i"], "answer": answer}) + "\n").encode())
            await child.stdin.drain()
        async with asyncio.timeout(30):
            while states.count("connected") < calls:  # noqa: ASYNC110 - no event for "all"
                await asyncio.sleep(0.1)
        await asyncio.sleep(WARMUP_S)
        child.stdin.write(b'{"measure": "start"}\n')
        await child.stdin.drain()
        sent_before = sum(int(p.stats()["frames_sent"]) for p in peers)
        received[0] = 0
        wall0, cpu0 = time.monotonic(), time.process_time()
        await asyncio.sleep(duration)
        wall, cpu = time.monotonic() - wall0, time.process_time() - cpu0
        sent = sum(int(p.stats()["frames_sent"]) for p in peers) - sent_before
        child.stdin.write(b'{"measure": "stop"}\n')
        await child.stdin.drain()
        child_report = json.loads(await child.stdout.readline())
    finally:
        for peer in peers:
            await peer.close()
        if child.stdin is not None:
            child.stdin.close()
        await child.wait()
    expected = calls * wall / 0.020
    return {
        "codec": codec,
        "calls": calls,
        "window_s": round(wall, 2),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_s_per_s": round(cpu / wall, 4),
        "server_cpu_s_per_s_per_call": round(cpu / wall / calls, 5),
        "server_frames_sent_ratio": round(sent / expected, 4),
        "server_frames_received_ratio": round(received[0] / expected, 4),
        "client_cpu_s_per_s": round(child_report["client_cpu_s"] / wall, 4),
        "client_frames_received_ratio": round(child_report["client_frames_received"] / expected, 4),
        "server_pacing_resets": sum(int(p.stats()["pacing_resets"]) for p in peers),
        "server_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--codec", action="append", help="opus, PCMU... (repeatable)")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    codecs = args.codec or ["opus", "PCMU"]
    if args.client:
        asyncio.run(client(args.calls, codecs[0]))
        return
    results = [asyncio.run(run(args.calls, args.duration, codec)) for codec in codecs]
    print(json.dumps({"webrtc_media": results}, indent=2))


if __name__ == "__main__":
    main()
