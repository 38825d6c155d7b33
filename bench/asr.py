"""Speech recognition benchmark: model load, RTF, decode latency, WER, VAD CPU, RSS.

Prints one JSON object:

* ``load_s``: joining/checking the cached Whisper model plus loading it (and its warm-up);
* ``rss_added_mib``: VmRSS after loading the engine and the VAD minus before;
* ``wer``: word error rate on all ``fr-speech`` clips through a simulated G.711 µ-law line,
  with ``per_subset`` (contributed recordings vs generated noisy clips);
* ``rtf``: decode time / audio time over all clips, one stream;
* ``decode_s``: per-utterance decode p50/p95/max with 1 stream and with 2 concurrent streams
  (two clips decoded at once through the service's thread pool);
* ``vad_us_per_frame``: CPU µs per 20 ms frame of the listening path's audio work (2x
  upsampling + Silero VAD), over all clips plus silence;
* ``speculation``: the processor fed each clip in real time over a simulated line: share of
  turns where the speculative decode was used, and the transcript's latency after the end of
  turn (p50/p95) with the default 0.8 s end-of-turn.

Usage: ``python bench/asr.py [--clips DIR] [--cache DIR] [--beam N] [--realtime N]``
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from callcenter.media.asr import AsrService, AsrSettings, load_engine
from callcenter.media.asr.evaluation import (
    load_clip_16k,
    phone_line,
    phone_line_8k,
    read_transcripts,
    wer,
)
from callcenter.media.asr.resample import Upsampler2x
from callcenter.media.asr.vad import SileroVadModel
from callcenter.media.asr.whisper import WhisperEngine
from callcenter.media.frames import AudioFrame, Frame, ListenFrame, TranscriptFrame
from callcenter.media.pipeline import Pipeline
from callcenter.media.processors.speech_recognizer import SpeechRecognizerProcessor

ROOT = Path(__file__).resolve().parent.parent


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def as_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def vad_cpu(clips: list[bytes], model: SileroVadModel) -> float:
    vad = model.stream()
    up = Upsampler2x()
    frames = 0
    cpu = 0.0
    for pcm8 in [*clips, bytes(8000 * 2 * 10)]:
        vad.reset()
        started = time.process_time()
        for offset in range(0, len(pcm8) - 319, 320):
            vad.feed(up.process(as_float(pcm8[offset : offset + 320])))
        cpu += time.process_time() - started
        frames += len(pcm8) // 320
    return cpu / frames * 1e6


async def speculation(service: AsrService, clips: list[bytes], limit: int) -> dict[str, object]:
    """Feed clips in real time through the processor; measure latency after the end of turn."""
    latencies: list[float] = []
    used = 0
    for pcm8 in clips[:limit]:
        results: list[TranscriptFrame] = []
        ready = asyncio.Event()

        def on_output(
            frame: Frame, results: list[TranscriptFrame] = results, ready: asyncio.Event = ready
        ) -> None:
            if isinstance(frame, TranscriptFrame):
                results.append(frame)
                ready.set()

        proc = SpeechRecognizerProcessor(service)
        pipeline = Pipeline([proc], on_output=on_output)
        async with pipeline:
            await pipeline.queue_frame(ListenFrame())
            loop = asyncio.get_running_loop()
            start = loop.time()
            padded = pcm8 + bytes(320 * 60)
            for i, offset in enumerate(range(0, len(padded) - 319, 320)):
                await asyncio.sleep(max(0.0, start + i * 0.02 - loop.time()))
                await pipeline.queue_frame(AudioFrame(padded[offset : offset + 320], 8000, 1, i))
                if results:
                    break
            try:
                await asyncio.wait_for(ready.wait(), 30)
            except TimeoutError:
                pass
        if results:
            latencies.append(results[0].latency_s)
            used += results[0].speculative
    return {
        "turns": len(latencies),
        "speculative_used": used,
        "latency_after_end_of_turn_p50_s": round(pct(latencies, 50), 3),
        "latency_after_end_of_turn_p95_s": round(pct(latencies, 95), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=Path, default=ROOT.parent / "shared/audio/fr-speech")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "asr-bench")
    parser.add_argument("--beam", type=int, default=AsrSettings().beam_size)
    parser.add_argument("--realtime", type=int, default=12, help="clips fed in real time")
    args = parser.parse_args()

    rows = read_transcripts(args.clips)
    clean = [load_clip_16k(path) for path, _ in rows]
    line16 = [phone_line(pcm) for pcm in clean]
    line8 = [phone_line_8k(pcm) for pcm in clean]
    audio_s = sum(len(p) / 32000 for p in line16)

    settings = AsrSettings(cache_dir=args.cache, beam_size=args.beam)
    rss0 = rss_mib()
    started = time.perf_counter()
    engine = load_engine(settings)
    load_s = time.perf_counter() - started
    vad_model = SileroVadModel()
    rss_added = rss_mib() - rss0
    assert isinstance(engine, WhisperEngine)
    service = AsrService(engine, settings, vad_model=vad_model)

    hyps: list[str] = []
    single: list[float] = []
    for pcm in line16:
        t = engine.transcribe(as_float(pcm))
        hyps.append(t.text)
        single.append(t.decode_s)
    refs = [ref for _, ref in rows]
    subsets: dict[str, list[tuple[str, str]]] = {"contributed": [], "generated": []}
    for i, (ref, hyp) in enumerate(zip(refs, hyps, strict=True)):
        subsets["contributed" if i < 43 else "generated"].append((ref, hyp))

    two: list[float] = []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    for a, b in zip(line16[0::2], line16[1::2], strict=False):
        futures = [pool.submit(engine.transcribe, as_float(p)) for p in (a, b)]
        two.extend(f.result().decode_s for f in futures)
    pool.shutdown()

    spec = asyncio.run(speculation(service, line8, args.realtime))
    service.close()
    result = {
        "engine": engine.name,
        "beam_size": args.beam,
        "threads": settings.threads,
        "clips": len(rows),
        "audio_s": round(audio_s, 1),
        "load_s": round(load_s, 2),
        "rss_added_mib": round(rss_added, 1),
        "wer": round(wer(zip(refs, hyps, strict=True)), 3),
        "wer_per_subset": {k: round(wer(v), 3) for k, v in subsets.items()},
        "rtf": round(sum(single) / audio_s, 3),
        "decode_s_1_stream": {
            "p50": round(statistics.median(single), 3),
            "p95": round(pct(single, 95), 3),
            "max": round(max(single), 3),
        },
        "decode_s_2_streams": {
            "p50": round(statistics.median(two), 3),
            "p95": round(pct(two, 95), 3),
            "max": round(max(two), 3),
        },
        "vad_us_per_frame": round(vad_cpu(line8, vad_model), 1),
        "speculation": spec,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
