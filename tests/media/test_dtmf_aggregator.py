import asyncio
from pathlib import Path

import numpy as np

from callcenter.media.frames import (
    BargeInFrame,
    CollectDigitsFrame,
    DigitsCollectedFrame,
    DigitsTimeoutFrame,
    DtmfFrame,
    PlayPromptFrame,
    PromptFinishedFrame,
    PromptStartedFrame,
)
from callcenter.media.processors.dtmf_aggregator import DtmfAggregatorProcessor
from callcenter.media.processors.prompt_player import PromptPlayerProcessor
from callcenter.media.tts.espeak import EspeakConfig, EspeakTts
from callcenter.media.tts.prompt_cache import PromptCache
from tests.media.harness import PipelineHarness, SleepFrame, run_test


def digits(text: str) -> list[DtmfFrame]:
    return [DtmfFrame(d) for d in text]


def make_player(tmp_path: Path) -> PromptPlayerProcessor:
    cache = PromptCache(tmp_path, None, EspeakTts(config=EspeakConfig(binary="no-espeak")))
    cache.add("menu", np.ones(1600, dtype="<i2").tobytes())  # 10 frames
    cache.add("legal", np.ones(480, dtype="<i2").tobytes())  # 3 frames
    return PromptPlayerProcessor(cache)


async def test_terminator_ends_collection_and_is_not_included() -> None:
    down, _ = await run_test(
        DtmfAggregatorProcessor(),
        frames_to_send=[CollectDigitsFrame(max_digits=8, timeout_s=5), *digits("042#")],
        expected_down_frames=[DigitsCollectedFrame],
    )
    assert down == [DigitsCollectedFrame("042")]


async def test_custom_terminator_and_single_digit_hash() -> None:
    down, _ = await run_test(
        DtmfAggregatorProcessor(),
        frames_to_send=[
            CollectDigitsFrame(max_digits=4, terminator="*"),
            *digits("1#*"),
            CollectDigitsFrame(max_digits=1),  # terminator ignored for one digit
            DtmfFrame("#"),
        ],
        expected_down_frames=[DigitsCollectedFrame, DigitsCollectedFrame],
    )
    assert down == [DigitsCollectedFrame("1#"), DigitsCollectedFrame("#")]


async def test_max_digits_then_extra_digit_is_type_ahead() -> None:
    agg = DtmfAggregatorProcessor()
    async with PipelineHarness(agg) as h:
        for frame in [CollectDigitsFrame(max_digits=3), *digits("1234")]:
            await h.send(frame)
        assert h.down == [DigitsCollectedFrame("123")]
        assert agg.typeahead == "4"
    assert agg.typeahead == ""  # teardown drops it


async def test_inter_digit_timeout_emits_partial_digits() -> None:
    down, _ = await run_test(
        DtmfAggregatorProcessor(),
        frames_to_send=[
            CollectDigitsFrame(max_digits=5, timeout_s=0.05),
            DtmfFrame("7"),
            SleepFrame(0.03),
            DtmfFrame("8"),  # restarts the timer
            SleepFrame(0.03),
            DtmfFrame("9"),
            SleepFrame(0.12),
        ],
        expected_down_frames=[DigitsCollectedFrame],
    )
    assert down == [DigitsCollectedFrame("789")]


async def test_timeout_without_digits() -> None:
    agg = DtmfAggregatorProcessor()
    await run_test(
        agg,
        frames_to_send=[CollectDigitsFrame(timeout_s=0.05), SleepFrame(0.12)],
        expected_down_frames=[DigitsTimeoutFrame],
    )
    assert not agg.collecting


async def test_type_ahead_is_used_by_next_collection() -> None:
    agg = DtmfAggregatorProcessor()
    down, _ = await run_test(
        agg,
        frames_to_send=[
            *digits("12"),
            CollectDigitsFrame(max_digits=1),
            CollectDigitsFrame(max_digits=3, timeout_s=0.05),
            DtmfFrame("5"),
            SleepFrame(0.12),
        ],
        expected_down_frames=[DigitsCollectedFrame, DigitsCollectedFrame],
    )
    assert down == [DigitsCollectedFrame("1"), DigitsCollectedFrame("25")]


async def test_digits_outside_allowed_wait_for_a_later_collection() -> None:
    down, _ = await run_test(
        DtmfAggregatorProcessor(),
        frames_to_send=[
            CollectDigitsFrame(allowed="0", timeout_s=0.05),
            DtmfFrame("1"),  # the menu key pressed during a message that only accepts 0
            SleepFrame(0.2),
            CollectDigitsFrame(allowed=frozenset("1234*0")),
        ],
        expected_down_frames=[DigitsTimeoutFrame, DigitsCollectedFrame],
    )
    assert down == [DigitsTimeoutFrame(), DigitsCollectedFrame("1")]


async def test_digit_outside_allowed_does_not_barge_in(tmp_path: Path) -> None:
    player = make_player(tmp_path)
    async with PipelineHarness([DtmfAggregatorProcessor(), player]) as h:
        await h.send(PlayPromptFrame("menu"))
        await h.send(CollectDigitsFrame(max_digits=1, timeout_s=5, allowed="0"))
        assert player.next_frame() is not None
        await h.send(DtmfFrame("3"))
        assert player.next_frame() is not None  # still playing
        assert BargeInFrame() not in h.down


async def test_digit_during_prompt_barges_in(tmp_path: Path) -> None:
    player = make_player(tmp_path)
    async with PipelineHarness([DtmfAggregatorProcessor(), player]) as h:
        await h.send(PlayPromptFrame("menu"))
        await h.send(CollectDigitsFrame(max_digits=1, timeout_s=5))
        assert player.next_frame() is not None
        await h.send(DtmfFrame("3"))
        assert player.next_frame() is None  # prompt stopped
        assert h.down == [BargeInFrame(), DigitsCollectedFrame("3")]
        assert h.up == [PromptStartedFrame("menu"), PromptFinishedFrame("menu", interrupted=True)]
        # The controller sees everything: barge-in, result and notifications.
        assert set(h.output) == set(h.down) | set(h.up)


async def test_type_ahead_during_announcement_barges_into_menu(tmp_path: Path) -> None:
    player = make_player(tmp_path)
    async with PipelineHarness([DtmfAggregatorProcessor(), player]) as h:
        await h.send(PlayPromptFrame("legal", interruptible=False))
        assert player.next_frame() is not None
        await h.send(DtmfFrame("2"))  # no collection: buffered, no barge-in
        assert h.down == []
        await h.send(PlayPromptFrame("menu"))
        await h.send(CollectDigitsFrame(max_digits=1))
        assert h.down == [BargeInFrame(), DigitsCollectedFrame("2")]
        frames = [player.next_frame() for _ in range(4)]
        assert [f is not None for f in frames] == [True, True, False, False]  # legal ends, no menu
        await h.settle()
        assert PromptFinishedFrame("menu", interrupted=True) in h.up
        assert PromptFinishedFrame("legal", interrupted=False) in h.up


async def test_timeout_counts_from_end_of_prompt(tmp_path: Path) -> None:
    player = make_player(tmp_path)
    async with PipelineHarness([DtmfAggregatorProcessor(), player]) as h:
        await h.send(PlayPromptFrame("legal"))
        await h.send(CollectDigitsFrame(timeout_s=0.05))
        await h.send(SleepFrame(0.1))
        assert h.down == []  # prompt still queued/playing: no timeout yet
        while player.next_frame() is not None:
            pass
        await h.send(SleepFrame(0.03))
        assert h.down == []
        await h.send(SleepFrame(0.08))
        assert h.down == [DigitsTimeoutFrame()]


async def test_teardown_cancels_timer() -> None:
    agg = DtmfAggregatorProcessor()
    async with PipelineHarness(agg) as h:
        await h.send(CollectDigitsFrame(timeout_s=0.05))
        timer = agg._timer
        assert timer is not None
    assert timer.cancelled()
    assert not agg.collecting
    await asyncio.sleep(0.08)
    assert h.output == []
