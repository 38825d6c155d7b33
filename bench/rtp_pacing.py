"""Benchmark of the paced RTP sender: N endpoints over loopback for D seconds.

A child process echoes every packet back (so each endpoint also receives 50 packets/s, like
a call) and timestamps arrivals; it reports inter-packet gaps as seen by the far end. The parent
runs N :class:`RtpEndpoint` on one event loop and measures its own CPU time.

Usage: ``python bench/rtp_pacing.py --endpoints 100 --duration 10`` (prints JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from typing import Any

import numpy as np

from callcenter.rtp.codecs.base import get_codec
from callcenter.rtp.session import RtpEvent, RtpSession
from callcenter.transport.rtp_udp import RtpEndpoint, RtpPacer

HOST = "127.0.0.1"


def sink(port_pipe: Connection, stop: EventType, echo: bool) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((HOST, 0))
    sock.settimeout(0.1)
    port_pipe.send(sock.getsockname()[1])
    arrivals: dict[int, list[float]] = {}
    now = time.monotonic
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(2048)
        except TimeoutError:
            continue
        arrivals.setdefault(addr[1], []).append(now())
        if echo:
            sock.sendto(data, addr)
    sock.close()
    gaps: list[float] = []
    drifts: list[float] = []
    for times in arrivals.values():
        if len(times) < 3:
            continue
        gaps.extend(np.diff(times).tolist())
        # Clock drift: slope of arrival time against packet index (least squares), so that
        # the jitter of the first and last packets does not count as drift.
        slope = float(np.polyfit(np.arange(len(times)), np.asarray(times) - times[0], 1)[0])
        drifts.append(slope / 0.020 - 1)
    port_pipe.send({"gaps": gaps, "drifts": drifts, "streams": len(arrivals)})


def percentiles_ms(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values) * 1000
    return {
        "p50": round(float(np.percentile(array, 50)), 3),
        "p99": round(float(np.percentile(array, 99)), 3),
        "max": round(float(array.max()), 3),
    }


async def run(endpoints: int, duration: float, echo: bool) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    stop = ctx.Event()
    proc = ctx.Process(target=sink, args=(child, stop, echo), daemon=True)
    proc.start()
    sink_port = parent.recv()
    t = np.arange(160 * 50)
    pcm = (np.sin(2 * np.pi * 440 * t / 8000) * 6000).astype("<i2").tobytes()
    frames = [pcm[i : i + 320] for i in range(0, len(pcm), 320)]

    eps: list[RtpEndpoint] = []
    for _ in range(endpoints):
        session = RtpSession(
            codec=get_codec("PCMU"), remote_address=(HOST, sink_port), telephone_event_pt=101
        )
        eps.append(await RtpEndpoint.open(HOST, 0, 0, session=session, record_send_times=True))

    received = [0]

    def on_event(event: RtpEvent) -> None:
        received[0] += 1

    def make_source() -> Any:
        index = [0]

        def source() -> bytes:
            index[0] += 1
            return frames[index[0] % len(frames)]

        return source

    cpu0, wall0 = time.process_time(), time.monotonic()
    async with asyncio.TaskGroup() as tg:
        tasks = [
            tg.create_task(ep.run(make_source(), on_event), name=f"rtp-{i}")
            for i, ep in enumerate(eps)
        ]
        await asyncio.sleep(duration)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        for task in tasks:
            task.cancel()
    stop.set()
    result = parent.recv()
    proc.join(5)
    send_gaps: list[float] = []
    for ep in eps:
        send_gaps.extend(np.diff(ep.send_times or []).tolist())
        ep.close()
    drifts = result["drifts"]
    return {
        "endpoints": endpoints,
        "duration_s": duration,
        "echo": echo,
        "cpu_percent_total": round(100 * cpu / wall, 3),
        "cpu_percent_per_endpoint": round(100 * cpu / wall / endpoints, 4),
        "packets_sent": sum(ep.stats.packets_sent for ep in eps),
        "events_received": received[0],
        "late_frames": sum(ep.stats.late_frames for ep in eps),
        "catch_up_frames": sum(ep.stats.catch_up_frames for ep in eps),
        "pacer_wakeups": RtpPacer.for_loop().wakeups,
        "streams_seen_by_sink": result["streams"],
        "gap_ms_at_receiver": percentiles_ms(result["gaps"]),
        "gap_ms_at_sender": percentiles_ms(send_gaps),
        "drift_max_abs": round(max((abs(d) for d in drifts), default=0.0), 6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--no-echo", action="store_true", help="the sink does not echo")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.endpoints, args.duration, not args.no_echo)), indent=2))


if __name__ == "__main__":
    main()
