"""baresip (a real softphone) calls the service; what it heard must be the greeting prompt.

baresip streams a padded caller WAV (aufile) and its ``sndfile`` module dumps what the far end
sent, decoded (``dump-*-dec.wav``). We compare that with the prompt the service rendered into its
cache: the first prompt of the flow must be there, loud, at its own length (±10 %), and correlate
with the rendered audio far better than noise does.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.loopback import audio
from tests.loopback.service import (
    Service,
    free_port,
    run_service,
    service_missing_reason,
    stop_process,
)

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed"),
    pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed"),
    pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason())),
    pytest.mark.timeout(120),
]

CALL_SECONDS = 12


def baresip_config(
    folder: Path,
    *,
    sip_port: int,
    source: Path,
    cons_port: int | None = None,
    user: str = "caller",
    answermode: str = "manual",
    rtp_ports: str = "30000-30100",
) -> Path:
    """Write a baresip config (aufile source, decoded dumps); return the dumps folder.

    ``answermode=auto`` makes it answer every call by itself (an agent's softphone);
    ``cons_port`` opens its console for ``/dial`` commands.
    """
    folder.mkdir(parents=True, exist_ok=True)
    dumps = folder / "dumps"
    dumps.mkdir(exist_ok=True)
    console = [] if cons_port is None else ["module cons.so", f"cons_listen 127.0.0.1:{cons_port}"]
    (folder / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                "net_interface 127.0.0.1",
                f"sip_listen 127.0.0.1:{sip_port}",
                f"audio_source aufile,{source}",
                "audio_player alsa,null",
                "audio_alert alsa,null",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module alsa.so",
                "module sndfile.so",
                "module menu.so",
                "module account.so",
                *console,
                f"snd_path {dumps}",
                f"rtp_ports {rtp_ports}",
                "",
            ]
        )
    )
    (folder / "accounts").write_text(
        f"<sip:{user}@127.0.0.1>;regint=0;audio_codecs=PCMU,PCMA;answermode={answermode}\n"
    )
    (folder / "contacts").write_text("")
    return dumps


def newest_call(svc: Service, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        calls = svc.calls(limit=1)
        if calls:
            return calls[0]
        time.sleep(0.1)
    raise AssertionError("no call in /api/calls")


FLOW_FILE = Path(__file__).resolve().parents[2] / "ivr_flows" / "solidarites.yaml"
OPEN_HOUR = datetime.fromisoformat("2026-12-07T10:00:00+01:00")  # a Monday, as run_service pins


def prompt_wav(svc: Service, prompt_id: str) -> Path:
    """Render ``prompt_id`` exactly as the service does (same cache code, voice and rate)."""
    from callcenter.config import load_config
    from callcenter.media.audio import write_wav_8k
    from callcenter.media.tts.espeak import EspeakConfig, EspeakTts
    from callcenter.media.tts.prompt_cache import PromptCache
    from ivr_flows import load_flow

    config = load_config(env={})
    prompts = {p.prompt_id: p for p in load_flow(FLOW_FILE).prompts()}
    prompt = prompts[prompt_id]
    out = svc.data_dir.parent / f"expected-{prompt_id}.wav"
    if not out.exists():
        tts = EspeakTts(config=EspeakConfig(voice=config.tts.voice, rate=config.tts.rate))
        cache = PromptCache(svc.data_dir.parent / "expected-cache", None, tts)
        asyncio.run(cache.prepare([(prompt_id, prompt.text, None)]))
        write_wav_8k(out, cache.get(prompt_id))
    return out


def first_prompt_id() -> str:
    """The prompt the default flow plays first when the line is open."""
    from ivr_flows import PlayPrompt, load_flow, start

    _, actions = start(load_flow(FLOW_FILE), now=OPEN_HOUR)
    plays = [a for a in actions if isinstance(a, PlayPrompt)]
    assert plays, actions
    return plays[0].prompt_id


def test_baresip_hears_the_greeting(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with run_service(data_dir) as svc:
        src = audio.caller_wav(tmp_path / "caller_s16.wav", "pcm16", pad_s=40)
        sip_port, cons_port = free_port(), free_port()
        dumps = baresip_config(
            tmp_path / "baresip", sip_port=sip_port, cons_port=cons_port, source=src
        )
        log = (tmp_path / "baresip.log").open("wb")
        proc = subprocess.Popen(
            [
                "baresip",
                "-f",
                str(tmp_path / "baresip"),
                "-n",
                "127.0.0.1",
                "-e",
                f"/dial sip:3975@127.0.0.1:{svc.sip_port}",
                "-t",
                str(CALL_SECONDS),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=tmp_path,
        )
        try:
            proc.wait(timeout=CALL_SECONDS + 20)
        finally:
            stop_process(proc, 5)
            log.close()
        baresip_log = (tmp_path / "baresip.log").read_text(errors="replace")

        call = newest_call(svc)
        trail = svc.wait_call_ended(str(call["sip_call_id"]), timeout=10)
        types = [e["type"] for e in trail["events"]]
        assert "answered" in types, (types, baresip_log[-3000:])
        hangup = [e["data"] for e in trail["events"] if e["type"] == "hangup"]
        assert hangup and hangup[0].get("side") == "caller", hangup
        played = [e["data"] for e in trail["events"] if e["type"] == "prompt_played"]
        expected_first = first_prompt_id()
        assert played and played[0]["prompt_id"] == expected_first, played
        assert played[0].get("interrupted") is False, played
        second_id = played[1]["prompt_id"] if len(played) > 1 else None

        decs = sorted(dumps.glob("dump-*-dec.wav"))
        assert decs, f"baresip wrote no decoded dump\n{baresip_log[-3000:]}"
        received, rate = audio.read_wav(decs[0])
        prompt, prompt_rate = audio.read_wav(prompt_wav(svc, expected_first))
        prompt = audio.resample(prompt, prompt_rate, rate)

    # 1. Not silence: the service really sent audio.
    assert received.size > rate * 3, f"only {received.size / rate:.2f}s of audio received"
    assert audio.rms_dbfs(received) > -45, audio.rms_dbfs(received)

    # 2. Correlation: the rendered prompt is in what baresip heard; noise is not.
    peak = audio.xcorr_peak(prompt, received)
    rng = np.random.default_rng(4475)
    shuffled = audio.xcorr_peak(prompt, rng.permutation(received))
    noise = audio.xcorr_peak(prompt, rng.normal(0.0, float(np.std(received)) + 1e-6, received.size))
    assert peak > 0.5, (peak, shuffled, noise)
    assert shuffled < 0.2 and noise < 0.2, (peak, shuffled, noise)

    # 3. Duration: the first spoken segment lasts as long as the prompt's speech (±10 %).
    p_start, p_end = audio.active_span(prompt, rate)
    prompt_speech = p_end - p_start
    r_start, _ = audio.active_span(received, rate)
    end = speech_end(received, rate, r_start, max_gap=max_silence_gap(prompt, rate) + 0.08)
    if second_id is not None:
        second, second_rate = audio.read_wav(prompt_wav(svc, second_id))
        second = audio.resample(second, second_rate, rate)
        offset2 = locate(second, received)
        if offset2 is not None and offset2 / rate > r_start:
            s_start, _ = audio.active_span(second, rate)
            end = min(end, offset2 / rate + s_start)
    heard = end - r_start
    assert abs(heard - prompt_speech) <= 0.10 * prompt_speech, (heard, prompt_speech)


def max_silence_gap(samples: np.ndarray[Any, Any], rate: int, threshold_db: float = -40.0) -> float:
    """Longest run of quiet 20 ms frames inside the speech of ``samples``, in seconds."""
    n = rate // 50
    frames = samples[: samples.size // n * n].reshape(-1, n)
    loud = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) > threshold_db
    idx = np.nonzero(loud)[0]
    if idx.size < 2:
        return 0.0
    return float((np.max(np.diff(idx)) - 1) * n / rate)


def speech_end(samples: np.ndarray[Any, Any], rate: int, start: float, *, max_gap: float) -> float:
    """End of the speech that begins at ``start``: the first quiet run longer than ``max_gap``."""
    n = rate // 50
    frames = samples[: samples.size // n * n].reshape(-1, n)
    loud = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) > -40.0
    first = int(start * rate) // n
    last_loud = first
    for i in range(first, len(loud)):
        if loud[i]:
            last_loud = i
        elif (i - last_loud) * n / rate > max_gap:
            break
    return (last_loud + 1) * n / rate


def locate(reference: np.ndarray[Any, Any], signal: np.ndarray[Any, Any]) -> int | None:
    """Sample offset where ``reference`` best matches ``signal`` (None if peak < 0.5)."""
    m = reference.size
    if signal.size < m:
        return None
    ref = reference - reference.mean()
    sig = signal - signal.mean()
    size = 1 << int(np.ceil(np.log2(sig.size + m)))
    corr = np.fft.irfft(np.fft.rfft(sig, size) * np.conj(np.fft.rfft(ref, size)), size)
    corr = corr[: sig.size - m + 1]
    energy = np.concatenate([[0.0], np.cumsum(sig**2)])
    denom = np.sqrt(np.maximum(energy[m:] - energy[:-m], 1e-12) * float(np.sum(ref**2)))
    score = np.abs(corr) / denom
    best = int(np.argmax(score))
    return best if score[best] >= 0.5 else None


def test_first_prompt_id_follows_the_open_branch() -> None:
    assert re.fullmatch(r"[a-z0-9_]+", first_prompt_id())
