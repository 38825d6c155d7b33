"""Media pipeline benchmark: outbound CPU per 20 ms frame, and TTS render time.

Prints JSON. The outbound path per call and per 20 ms tick is what the paced RTP sender does:
``PromptPlayerProcessor.next_frame()`` (plus G.711 µ-law encoding when the codec module is
present), with each call's pipeline ([DtmfAggregatorProcessor, PromptPlayerProcessor]) running
and prompts re-queued by the controller callback as they finish (so notifications are included).

Usage: ``python bench/media_pipeline.py [--calls 100] [--seconds 10] [--skip-tts]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from callcenter.media.frames import Frame, PlayPromptFrame, PromptFinishedFrame
from callcenter.media.pipeline import Pipeline
from callcenter.media.processors import DtmfAggregatorProcessor, PromptPlayerProcessor
from callcenter.media.tts import EspeakConfig, EspeakTts, PromptCache, PromptSpec

ROOT = Path(__file__).resolve().parent.parent

FALLBACK_PROMPTS: list[PromptSpec] = [
    ("welcome", "Bonjour, vous êtes au service solidarités du département.", None),
    ("robot", "Ceci est un service automatique. Tapez 0 pour parler à un conseiller.", None),
    ("emergency", "En cas d'urgence, composez le 15 ou le 112.", None),
    ("menu", "Pour les personnes âgées, tapez 1. Pour le handicap, tapez 2.", None),
    ("closed", "Nos bureaux sont fermés. Rappelez-nous du lundi au vendredi.", None),
]


def flow_prompts() -> list[PromptSpec]:
    try:
        import ivr_flows

        flow = ivr_flows.load_flow(ROOT / "ivr_flows" / "solidarites.yaml")
        return [(p.prompt_id, p.text, None) for p in flow.prompts() if p.text]
    except Exception:  # the flow package may not be there yet: use a few typical prompts
        return FALLBACK_PROMPTS


def encoder() -> Callable[[bytes], bytes] | None:
    try:
        from callcenter.rtp.codecs.g711 import ulaw_encode
    except ImportError:
        return None
    return ulaw_encode


async def bench_outbound(calls: int, seconds: float) -> dict[str, object]:
    cache = PromptCache(Path(tempfile.gettempdir()), None, EspeakTts())
    rng = np.random.default_rng(1)
    cache.add("p", (rng.normal(0, 3000, 8000 * 3)).astype("<i2").tobytes())  # 3 s prompt
    encode = encoder()
    players: list[PromptPlayerProcessor] = []
    pipelines: list[Pipeline] = []
    tasks: list[asyncio.Task[None]] = []
    for i in range(calls):
        holder: list[Pipeline] = []

        async def on_output(frame: Frame, holder: list[Pipeline] = holder) -> None:
            if isinstance(frame, PromptFinishedFrame):
                await holder[0].queue_frame(PlayPromptFrame("p"))

        player = PromptPlayerProcessor(cache)
        pipeline = Pipeline([DtmfAggregatorProcessor(), player], on_output=on_output)
        holder.append(pipeline)
        players.append(player)
        pipelines.append(pipeline)
        tasks.append(asyncio.create_task(pipeline.run(), name=f"bench-pipeline-{i}"))
        await pipeline.queue_frame(PlayPromptFrame("p"))
    await asyncio.sleep(0)
    ticks = int(seconds / 0.020)
    frames = 0
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for _ in range(ticks):
        for player in players:
            pcm = player.next_frame()
            if pcm is not None:
                frames += 1
                if encode is not None:
                    encode(pcm)
        await asyncio.sleep(0)  # let pipelines deliver notifications and re-queue prompts
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    for pipeline in pipelines:
        await pipeline.stop()
    await asyncio.gather(*tasks)
    audio_seconds = ticks * 0.020
    return {
        "calls": calls,
        "audio_seconds_per_call": audio_seconds,
        "frames": frames,
        "g711_encode_included": encode is not None,
        "cpu_us_per_frame": round(cpu / max(frames, 1) * 1e6, 2),
        "cpu_percent_of_one_core_per_call": round(cpu / audio_seconds / calls * 100, 4),
        "wall_seconds": round(wall, 3),
        "underruns": sum(p.underruns for p in players),
    }


async def bench_tts() -> dict[str, object]:
    prompts = flow_prompts()
    tts = EspeakTts(config=EspeakConfig())
    if not tts.is_available():
        return {"error": "espeak-ng not installed"}
    tmp = Path(tempfile.mkdtemp(prefix="bench-prompts-"))
    try:
        cold = PromptCache(tmp, None, tts)
        report = await cold.prepare(prompts)
        warm = await PromptCache(tmp, None, tts).prepare(prompts)
        durations = [cold.duration(pid) for pid, _, _ in prompts]
    finally:
        shutil.rmtree(tmp)
    return {
        "prompts": len(prompts),
        "voice": tts.voice,
        "rate_wpm": tts.rate,
        "cold_render_seconds": round(report.seconds, 3),
        "warm_from_disk_seconds": round(warm.seconds, 3),
        "audio_seconds_total": round(sum(durations), 1),
        "longest_prompt_seconds": round(max(durations), 1),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-tts", action="store_true")
    args = parser.parse_args()
    result: dict[str, object] = {"outbound": await bench_outbound(args.calls, args.seconds)}
    if not args.skip_tts:
        result["tts"] = await bench_tts()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
