from pathlib import Path

import numpy as np

from callcenter.media.frames import (
    BargeInFrame,
    PlayPromptFrame,
    PromptFinishedFrame,
    PromptStartedFrame,
    StopPromptFrame,
)
from callcenter.media.processors.prompt_player import FRAME_BYTES, PromptPlayerProcessor
from callcenter.media.tts.espeak import EspeakConfig, EspeakTts
from callcenter.media.tts.prompt_cache import PromptCache
from tests.media.harness import PipelineHarness, run_test


def ramp(samples: int, start: int = 1) -> bytes:
    return np.arange(start, start + samples, dtype="<i2").tobytes()


def make_cache(tmp_path: Path) -> PromptCache:
    cache = PromptCache(tmp_path, None, EspeakTts(config=EspeakConfig(binary="no-espeak")))
    cache.add("a", ramp(400))  # 2.5 frames
    cache.add("b", ramp(320, start=1000))  # exactly 2 frames
    cache.add("legal", ramp(800, start=2000))  # 5 frames
    return cache


def pull(player: PromptPlayerProcessor, n: int) -> list[bytes | None]:
    return [player.next_frame() for _ in range(n)]


async def test_idle_player_returns_none(tmp_path: Path) -> None:
    player = PromptPlayerProcessor(make_cache(tmp_path))
    assert player.next_frame() is None
    assert player.underruns == 0


async def test_frames_are_320_bytes_and_last_is_zero_padded(tmp_path: Path) -> None:
    player = PromptPlayerProcessor(make_cache(tmp_path))
    async with PipelineHarness(player) as h:
        await h.send(PlayPromptFrame("a"))
        await h.send(PlayPromptFrame("b"))
        frames = pull(player, 6)
        await h.settle()
        assert [len(f) if f is not None else None for f in frames] == [FRAME_BYTES] * 5 + [None]
        real = [f for f in frames if f is not None]
        audio = b"".join(real)
        assert audio[:800] == ramp(400)
        assert audio[800:960] == bytes(160)  # padding of the third frame of "a"
        assert audio[960:] == ramp(320, start=1000)  # "b" starts on the next frame, no gap
        assert h.up == [
            PromptStartedFrame("a"),
            PromptFinishedFrame("a", interrupted=False),
            PromptStartedFrame("b"),
            PromptFinishedFrame("b", interrupted=False),
        ]
        assert h.output == h.up  # notifications reach the controller
        assert h.down == []  # PlayPromptFrame is consumed


async def test_barge_in_stops_interruptible_prompt_and_flushes_queue(tmp_path: Path) -> None:
    player = PromptPlayerProcessor(make_cache(tmp_path))
    async with PipelineHarness(player) as h:
        for pid in ("a", "b"):
            await h.send(PlayPromptFrame(pid))
        assert player.next_frame() is not None
        await h.send(BargeInFrame())
        assert player.next_frame() is None
        assert player.playing is None and player.pending == ()
        assert h.up == [
            PromptStartedFrame("a"),
            PromptFinishedFrame("a", interrupted=True),
            PromptFinishedFrame("b", interrupted=True),
        ]
        assert h.down == [BargeInFrame()]


async def test_non_interruptible_prompt_keeps_playing(tmp_path: Path) -> None:
    player = PromptPlayerProcessor(make_cache(tmp_path))
    async with PipelineHarness(player) as h:
        await h.send(PlayPromptFrame("legal", interruptible=False))
        await h.send(PlayPromptFrame("a"))
        await h.send(PlayPromptFrame("legal", interruptible=False))
        first = player.next_frame()
        await h.send(BargeInFrame())
        await h.send(StopPromptFrame())
        rest = pull(player, 10)
        await h.settle()
        played = [f for f in [first, *rest] if f is not None]
        assert len(played) == 10  # both legal notices in full, "a" flushed
        assert b"".join(played) == ramp(800, start=2000) * 2
        assert PromptFinishedFrame("a", interrupted=True) in h.up
        assert h.up.count(PromptFinishedFrame("legal", interrupted=False)) == 2


async def test_stop_prompt_frame(tmp_path: Path) -> None:
    player = PromptPlayerProcessor(make_cache(tmp_path))
    down, up = await run_test(
        player,
        frames_to_send=[PlayPromptFrame("b"), StopPromptFrame()],
        expected_down_frames=[],
        expected_up_frames=[PromptFinishedFrame],
    )
    assert up == [PromptFinishedFrame("b", interrupted=True)]


async def test_underrun_counts_then_skips_missing_prompt(tmp_path: Path) -> None:
    cache = make_cache(tmp_path)
    player = PromptPlayerProcessor(cache, max_wait_frames=3)
    async with PipelineHarness(player) as h:
        await h.send(PlayPromptFrame("late"))
        await h.send(PlayPromptFrame("b"))
        assert player.next_frame() is None
        assert player.underruns == 1
        cache.add("late", ramp(160))  # audio becomes ready: plays at once
        assert player.next_frame() == ramp(160)
        await h.send(PlayPromptFrame("missing"))
        out = pull(player, 6)
        await h.settle()
        assert out == [ramp(160, start=1000), ramp(160, start=1160), None, None, None, None]
        assert player.underruns == 1 + 3  # waits twice, the third tick gives up
        assert PromptFinishedFrame("missing", interrupted=True) in h.up
