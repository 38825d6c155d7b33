"""Voice-bot benchmark: voice-to-voice latency of ``callcenter serve`` over real RTP (loopback).

Each caller is one sipp process streaming PCMU (20 ms) from a WAV made of silence (while the bot
asks "Votre question ?"), a recorded French clip from ``shared/audio/fr-speech`` and silence
again. The service runs the short ``tests/data/flows/bot_e2e.yaml`` flow with the default engine
(faster-whisper) and end-of-turn. ``tcpdump -i lo`` captures both directions of every call's RTP.

Per turn:

* ``speech_end``: the last voiced sample of the clip (10 ms frames above ``peak - 30 dB``,
  runs shorter than 50 ms ignored as clicks), mapped onto the wire through the captured packet
  that carries it: that packet's capture time minus the audio that follows the sample in it
  (a phone sends a packet when its 20 ms of audio are complete).
* ``reply``: the first packet the service sends after ``speech_end`` whose payload is not the
  encoded silence it sends between prompts; ``audible`` is the first one above -40 dBFS.
* ``v2v`` = reply - speech_end, split with the call's trail (``GET /api/calls/{id}``, event
  ``transcript``: recorded when the transcript reaches the call controller, and ``latency_ms``
  = transcript ready - end of turn) into ``eot_wait`` = end of turn - speech_end (the configured
  silence plus the VAD's lag) and ``after_eot`` = reply - end of turn, itself ``asr_ms``
  (``latency_ms``: decoding left after the end of turn) + ``reply_start_ms`` (understanding, flow,
  prompt start, 20 ms pacing).

Levels: ``--calls 1 10`` (concurrent calls per round), at least ``--min-turns`` turns per level
and ``--rounds`` rounds. Also: ASR real-time factor (``decode_ms / audio_s``), service CPU
seconds and RSS per bot call (``/proc/<pid>/stat``, ``status``), whole-machine CPU during each
level (other work on the 2 cores inflates latency: look at it before trusting a figure), and the
FAQ accuracy on the dev set (``python -m faq eval``). Prints one JSON object.

    .venv/bin/python bench/voice.py --calls 1 10

Targets (issue 3, 0.8 s end-of-turn): v2v p50 <= 1.1 s and p95 <= 1.4 s at 1 call, p95 <= 1.8 s
at 10 calls. Needs sipp, tcpdump (root or CAP_NET_RAW), sox, espeak-ng.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from callcenter.rtp.codecs.base import get_codec  # noqa: E402
from tests.loopback import audio  # noqa: E402
from tests.loopback.service import (  # noqa: E402
    PYTHON,
    Service,
    UdpPacket,
    free_port_pair,
    read_pcap_udp,
    render_scenario,
    run_service,
    service_rtp_range,
    sipp_popen,
    stop_process,
    tcpdump,
)

CLIPS_DIR = REPO.parent / "shared" / "audio" / "fr-speech"
DEV_SET = REPO.parent / "shared" / "domain" / "dev_utterances.tsv"
FLOWS = REPO / "tests" / "data" / "flows"
RATE = 8000
PACKET_SAMPLES = 160  # 20 ms at 8 kHz (RFC 3551 section 4.5)
CLK_TCK = os.sysconf("SC_CLK_TCK")
SILENCE_PAYLOAD = get_codec("PCMU").encode(bytes(2 * PACKET_SAMPLES))
"""What the service sends when no prompt plays (encoded digital silence)."""
AUDIBLE_DBFS = -40.0
SPEECH_AT_S = 2.4
"""Where, from the first packet, the caller starts speaking ("Votre question ?" lasts ~1.2 s)."""
REPLY_WINDOW_S = 6.0
"""The caller hangs up this long after the end of its speech, plus 1 s per other concurrent call
(a later reply is "no reply": it counts as an infinite latency in the percentiles)."""

NO_REPLY = "no reply before the caller hung up"

EXCLUDED_CLIPS = {
    "fr_08_allume_toutes_les_lumieres_dans_le_rez_de_chaussee.wav": "a noise at 3.5-3.9 s, after "
    "the speech, is as loud as speech: the energy rule puts the end of speech 1 s late",
}
"""Clips the energy rule gets wrong (found by the consistency check in :func:`analyse_call`)."""
EOT_TOLERANCE_S = 0.1
"""A turn whose end came sooner than ``end_of_turn - EOT_TOLERANCE_S`` after the measured end of
speech is inconsistent (the service heard the speech end earlier): reported, not counted."""

TARGETS = {1: {"p50": 1.1, "p95": 1.4}, 10: {"p95": 1.8}}

FloatArray = npt.NDArray[np.float64]


# --- the caller's audio ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Clip:
    """One recorded French utterance, with where its speech starts and ends."""

    path: Path
    """The 16 kHz WAV."""
    speech_start_s: float
    """First voiced sample, seconds into the clip (8 kHz G.711 version)."""
    speech_end_s: float
    """Last voiced sample, seconds into the clip."""
    duration_s: float
    """Length of the clip."""


def frame_dbfs(samples: FloatArray, frame: int) -> FloatArray:
    """Level (dBFS) of consecutive ``frame``-sample frames."""
    n = len(samples) // frame
    blocks = samples[: n * frame].reshape(n, frame)
    levels: FloatArray = 10.0 * np.log10(np.mean(blocks**2, axis=1) + 1e-12)
    return levels


def voiced_bounds(
    samples: FloatArray,
    rate: int,
    *,
    below_peak_db: float = 30.0,
    min_run_s: float = 0.05,
    min_first_run_s: float = 0.08,
) -> tuple[float, float, float]:
    """(start, end, noise margin dB) of the voiced part: frames above ``peak - below_peak_db``.

    Runs of loud frames shorter than ``min_run_s`` (clicks, breath) do not count; the start needs
    a run of ``min_first_run_s`` (a click before the speech must not move it). The margin is the
    peak level minus the 10th percentile level (the noise floor).
    """
    frame = rate // 100
    db = frame_dbfs(samples, frame)
    if db.size == 0:
        raise ValueError("empty clip")
    peak = float(db.max())
    loud = db > peak - below_peak_db
    runs: list[tuple[int, int]] = []
    i = 0
    while i < loud.size:
        if loud[i]:
            j = i
            while j < loud.size and loud[j]:
                j += 1
            if (j - i) * 0.01 >= min_run_s - 1e-9:
                runs.append((i, j))
            i = j
        else:
            i += 1
    firsts = [r for r in runs if (r[1] - r[0]) * 0.01 >= min_first_run_s - 1e-9]
    if not firsts:
        raise ValueError("no voiced run")
    margin = peak - float(np.percentile(db, 10))
    return firsts[0][0] * 0.01, runs[-1][1] * 0.01, margin


def load_clips(directory: Path, pattern: str, *, min_margin_db: float = 40.0) -> list[Clip]:
    """The clips of ``directory`` matching ``pattern`` whose speech end is well defined.

    A clip is kept when its noise floor is at least ``min_margin_db`` below its peak and its
    speech ends at least 50 ms before the end of the file (otherwise "the end of the speech"
    is a matter of opinion and the latency would be too).
    """
    clips: list[Clip] = []
    for path in sorted(directory.glob(pattern)):
        samples, rate = _as_phone_audio(path)
        start, end, margin = voiced_bounds(samples, rate)
        duration = len(samples) / rate
        if margin >= min_margin_db and end <= duration - 0.05 and path.name not in EXCLUDED_CLIPS:
            clips.append(Clip(path, start, end, duration))
    return clips


def _as_phone_audio(path: Path) -> tuple[FloatArray, int]:
    """The clip as the caller sends it: 8 kHz, through G.711 µ-law and back."""
    with tempfile.TemporaryDirectory(prefix="bench-voice-clip-") as tmp:
        out = Path(tmp) / "clip.wav"
        audio.convert(path, out, "u-law")
        return audio.read_wav(out)


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """The WAV one caller streams, and where its speech ends in it."""

    wav: Path
    """8 kHz µ-law WAV for sipp's ``rtp_stream``."""
    data: bytes
    """Its µ-law samples (the ``data`` chunk)."""
    data_offset: int
    """Where ``data`` starts in the file: this sipp streams the whole file, header included, so
    the samples sit at this offset of the RTP payload stream (160 bytes per packet)."""
    speech_end_sample: int
    """Index of the last voiced sample in ``data``."""
    lead_s: float
    """Silence before the clip."""


def caller_audio(clip: Clip, out: Path, *, lead_s: float, tail_s: float) -> CallerAudio:
    """Write ``lead_s`` of silence + the clip + ``tail_s`` of silence as an 8 kHz µ-law WAV."""
    subprocess.run(
        ["sox", "-D", str(clip.path), "-r", str(RATE), "-c", "1", "-e", "u-law", str(out),
         "pad", f"{lead_s:.3f}", f"{tail_s:.3f}"],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    data, data_offset = wav_data(out)
    end = int(round((lead_s + clip.speech_end_s) * RATE)) - 1
    return CallerAudio(out, data, data_offset, min(end, len(data) - 1), lead_s)


def wav_data(path: Path) -> tuple[bytes, int]:
    """The bytes of the ``data`` chunk of a RIFF/WAVE file and their offset in the file."""
    blob = path.read_bytes()
    pos = 12
    while pos + 8 <= len(blob):
        size = int.from_bytes(blob[pos + 4 : pos + 8], "little")
        if blob[pos : pos + 4] == b"data":
            return blob[pos + 8 : pos + 8 + size], pos + 8
        pos += 8 + size + (size & 1)
    raise ValueError(f"{path}: no data chunk")


# --- one call: plan, run, analyse ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallPlan:
    """One caller of a round."""

    index: int
    """Position in the round."""
    clip: Clip
    """What it says."""
    caller: CallerAudio
    """What it streams."""
    media_port: int
    """sipp's RTP port."""
    workdir: Path
    """sipp's files."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One measured turn (all times in seconds unless the name says ms)."""

    level: int
    """Concurrent calls in the round."""
    round: int
    """Round number within the level."""
    clip: str
    """Clip file name."""
    ok: bool
    """Whether every figure below could be measured."""
    problem: str | None
    """Why not, when ``ok`` is false."""
    v2v_s: float | None = None
    """End of the caller's speech → first non-silent reply packet."""
    audible_s: float | None = None
    """End of the caller's speech → first reply packet above -40 dBFS."""
    eot_wait_s: float | None = None
    """End of the caller's speech → end of turn declared by the service."""
    after_eot_s: float | None = None
    """End of turn → first reply packet."""
    asr_ms: int | None = None
    """Trail ``latency_ms``: transcript ready - end of turn."""
    reply_start_ms: float | None = None
    """Transcript reached the controller → first reply packet."""
    decode_ms: int | None = None
    """Trail ``decode_ms`` of the transcript used."""
    audio_s: float | None = None
    """Trail ``audio_s``: audio the decoder got."""
    speculative: bool | None = None
    """Whether the speculative decode (started when silence began) was used."""
    text: str | None = None
    """What the service heard."""
    decision: str | None = None
    """The bot's decision on it."""


def reply_window(level: int) -> float:
    """How long a caller of a round of ``level`` calls waits for the reply before hanging up."""
    return REPLY_WINDOW_S + (level - 1)


def plan_round(
    level: int, round_no: int, clips: Sequence[Clip], offset: int, work: Path
) -> list[CallPlan]:
    """``level`` callers, each with the next clip in rotation and its own ports and files."""
    plans = []
    for i in range(level):
        clip = clips[(offset + i) % len(clips)]
        # Speech starts at SPEECH_AT_S plus a per-call spread of up to 0.6 s.
        speech_at = SPEECH_AT_S + ((offset + i) * 0.137) % 0.6
        lead = max(0.0, speech_at - clip.speech_start_s)
        d = work / f"level{level}" / f"round{round_no}" / f"call{i}"
        d.mkdir(parents=True, exist_ok=True)
        tail = reply_window(level) + 4.0
        caller = caller_audio(clip, d / "caller.wav", lead_s=lead, tail_s=tail)
        plans.append(CallPlan(i, clip, caller, free_port_pair(), d))
    return plans


def run_round(
    svc: Service, plans: Sequence[CallPlan], pcap: Path, stagger_s: float, window_s: float
) -> list[str | None]:
    """Place the round's calls (one sipp each) under capture; return their Call-IDs."""
    ports = " or ".join(f"port {p.media_port}" for p in plans)
    procs: list[tuple[CallPlan, subprocess.Popen[bytes]]] = []
    with tcpdump(pcap, f"udp and ({ports})"):
        try:
            for plan in plans:
                length_s = len(plan.caller.data) / RATE
                hangup_ms = int((plan.caller.speech_end_sample / RATE + window_s) * 1000)
                scenario = render_scenario(
                    "bench_voice.xml.tmpl",
                    plan.workdir / "bench_voice.xml",
                    audio_wav=str(plan.caller.wav),
                    hangup_ms=str(hangup_ms),
                )
                proc, _ = sipp_popen(
                    scenario,
                    svc.sip_target,
                    plan.workdir,
                    media_port=plan.media_port,
                    timeout_s=length_s + 30,
                    trace_msg=False,
                )
                procs.append((plan, proc))
                time.sleep(stagger_s)
            for plan, proc in procs:
                proc.wait(timeout=len(plan.caller.data) / RATE + 60)
        finally:
            for _, proc in procs:
                stop_process(proc, 5)
    call_ids: list[str | None] = []
    for plan in plans:
        log = plan.workdir / "bench_voice_bg_logs.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        ids = [line.split()[1] for line in text.splitlines() if line.startswith("CALLID ")]
        call_ids.append(ids[0] if ids else None)
    return call_ids


def _is_rtp(payload: bytes) -> bool:
    return len(payload) >= 12 and payload[0] >> 6 == 2


def _rtp_body(payload: bytes) -> bytes:
    cc = payload[0] & 0x0F
    start = 12 + 4 * cc
    if payload[0] & 0x10 and len(payload) >= start + 4:  # header extension (RFC 3550 5.3.1)
        start += 4 + 4 * int.from_bytes(payload[start + 2 : start + 4], "big")
    return payload[start:]


def _parse_at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def analyse_call(
    plan: CallPlan,
    packets: Sequence[UdpPacket],
    trail: dict[str, Any] | None,
    *,
    level: int,
    round_no: int,
    end_of_turn_s: float,
) -> Turn:
    """Measure one turn from the capture and the call's trail."""
    name = plan.clip.path.name
    sent = [p for p in packets if p.src[1] == plan.media_port and _is_rtp(p.payload)]
    received = [p for p in packets if p.dst[1] == plan.media_port and _is_rtp(p.payload)]
    if not sent or not received:
        return Turn(level, round_no, name, False, "no RTP captured in one direction")
    # The packet carrying the last voiced sample, found by its payload (the file is sent once).
    # sipp streams the file from its first byte (header included) or from its samples: try both.
    caller = plan.caller
    speech_end: float | None = None
    for skew in (caller.data_offset, 0):
        stream = bytes(skew) + caller.data
        k, offset = divmod(skew + caller.speech_end_sample, PACKET_SAMPLES)
        chunk = stream[k * PACKET_SAMPLES : (k + 1) * PACKET_SAMPLES]
        carrier = next((p for p in sent if _rtp_body(p.payload) == chunk), None)
        if carrier is not None:
            speech_end = carrier.ts - (PACKET_SAMPLES - 1 - offset) / RATE
            break
    if speech_end is None:
        return Turn(level, round_no, name, False, "packet with the end of speech not captured")
    after = [p for p in received if p.ts > speech_end]
    reply = next((p for p in after if _rtp_body(p.payload) != SILENCE_PAYLOAD), None)
    if reply is None:
        return Turn(level, round_no, name, False, NO_REPLY)
    audible = next(
        (
            p
            for p in after
            if p.ts >= reply.ts
            and audio.rms_dbfs(audio.decode_ulaw(_rtp_body(p.payload)) / 32768.0) > AUDIBLE_DBFS
        ),
        None,
    )
    v2v = reply.ts - speech_end
    base = Turn(
        level,
        round_no,
        name,
        False,
        None,
        v2v_s=v2v,
        audible_s=None if audible is None else audible.ts - speech_end,
    )
    if trail is None:
        return _replace(base, problem="no trail")
    events = trail.get("events", [])
    transcripts = [e for e in events if e.get("type") == "transcript"]
    if not transcripts:
        return _replace(base, problem="no transcript in the trail")
    first = transcripts[0]
    data = first.get("data") or {}
    intents = [e.get("data") or {} for e in events if e.get("type") == "intent"]
    recorded = _parse_at(str(first.get("ts")))
    end_of_turn = recorded - float(data["latency_ms"]) / 1000
    problem = None
    if recorded > reply.ts:
        problem = "reply before the transcript (something else answered)"
    elif end_of_turn - speech_end < end_of_turn_s - EOT_TOLERANCE_S:
        problem = "the turn ended before the measured end of speech (speech end mismeasured)"
    return _replace(
        base,
        ok=problem is None,
        problem=problem,
        eot_wait_s=end_of_turn - speech_end,
        after_eot_s=reply.ts - end_of_turn,
        asr_ms=int(data["latency_ms"]),
        reply_start_ms=(reply.ts - recorded) * 1000,
        decode_ms=int(data["decode_ms"]),
        audio_s=float(data["audio_s"]),
        speculative=bool(data.get("speculative")),
        text=str(data.get("text", "")),
        decision=str(intents[0].get("decision")) if intents else None,
    )


def _replace(turn: Turn, **changes: Any) -> Turn:
    return Turn(**{**asdict(turn), **changes})


# --- process and machine figures --------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (fields 14 and 15 of ``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (``/proc/stat``)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    return (total - idle) / CLK_TCK, total / CLK_TCK


class RssSampler:
    """Samples a process's RSS every 0.2 s in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        """Start sampling ``pid``."""
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.peak = max(self.peak, rss_mb(self.pid))
            except OSError:
                return

    def close(self) -> float:
        """Stop and return the peak RSS (MiB)."""
        self._stop.set()
        self._thread.join()
        return self.peak


# --- statistics and the whole run ------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    frac = k - lo
    if frac == 0 or ordered[hi] == ordered[lo]:
        return ordered[lo]  # also right for infinite values (no NaN from inf - inf)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * frac


def summary(values: Sequence[float], digits: int = 3) -> dict[str, float | int | None]:
    """n, p50, p95, max of ``values``."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}

    def fmt(v: float) -> float | None:
        return round(v, digits) if math.isfinite(v) else None  # None: no reply (infinite)

    return {
        "n": len(values),
        "p50": fmt(percentile(values, 0.5)),
        "p95": fmt(percentile(values, 0.95)),
        "max": fmt(max(values)),
    }


def level_report(turns: Sequence[Turn], level: int) -> dict[str, Any]:
    """Latency percentiles and their split for one level; target verdicts."""
    ok = [t for t in turns if t.ok]

    def values(attr: str, scale: float = 1.0) -> list[float]:
        out = []
        for t in ok:
            v = getattr(t, attr)
            if v is not None:
                out.append(float(v) * scale)
        return out

    # A turn left without a reply is slower than any measured one: +inf, not left out.
    no_reply = sum(1 for t in turns if t.problem == NO_REPLY)
    v2v = values("v2v_s") + [math.inf] * no_reply
    rtf = [t.decode_ms / 1000 / t.audio_s for t in ok if t.decode_ms and t.audio_s]
    report: dict[str, Any] = {
        "turns": len(turns),
        "turns_measured": len(ok),
        "failures": [{"clip": t.clip, "problem": t.problem} for t in turns if not t.ok],
        "no_reply": no_reply,
        "v2v_s": summary(v2v),
        "audible_s": summary(values("audible_s")),
        "eot_wait_s": summary(values("eot_wait_s")),
        "after_eot_s": summary(values("after_eot_s")),
        "asr_after_eot_ms": summary(values("asr_ms"), 0),
        "reply_start_ms": summary(values("reply_start_ms"), 1),
        "decode_ms": summary(values("decode_ms"), 0),
        "asr_rtf": summary(rtf),
        "speculative_used": round(sum(1 for t in ok if t.speculative) / len(ok), 3) if ok else None,
    }
    verdicts = {}
    for name, limit in TARGETS.get(level, {}).items():
        got = report["v2v_s"][name]
        verdicts[f"v2v_{name}<={limit}"] = got is not None and bool(got <= limit)
    if len(ok) < len(turns):
        verdicts["all_turns_measured"] = False
    report["targets"] = verdicts
    return report


def faq_accuracy(dev_set: Path) -> dict[str, Any]:
    """``python -m faq eval DEV --json`` (top-1 accuracy, out-of-scope P/R/F1)."""
    proc = subprocess.run(
        [str(PYTHON if PYTHON.exists() else sys.executable), "-m", "faq", "eval", str(dev_set),
         "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-500:]}
    result = json.loads(proc.stdout)
    return {k: result[k] for k in ("total", "accuracy", "oos_precision", "oos_recall", "oos_f1")}


def fetch_trail(svc: Service, call_id: str) -> dict[str, Any] | None:
    """The call's trail once it has ended (None if it never shows up)."""
    try:
        return svc.wait_call_ended(call_id, timeout=20)
    except AssertionError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one JSON object; 0 if every turn was measured."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 10], help="levels")
    parser.add_argument("--min-turns", type=int, default=12, help="turns per level, at least")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per level, at least")
    parser.add_argument("--stagger", type=float, default=0.1, help="s between call starts")
    parser.add_argument("--end-of-turn", type=float, default=0.8, help="asr.end_of_turn_s")
    parser.add_argument("--clips", type=Path, default=CLIPS_DIR)
    parser.add_argument(
        "--pattern",
        default="fr_*.wav",
        help="clip glob; clips with a noise floor less than 40 dB below their peak are "
        "left out (the noisy generated ones)",
    )
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured calls first")
    parser.add_argument("--no-faq", action="store_true", help="skip the FAQ evaluation")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-voice-"))
    work.mkdir(parents=True, exist_ok=True)

    clips = load_clips(args.clips, args.pattern)
    if not clips:
        print(json.dumps({"error": f"no usable clip in {args.clips}/{args.pattern}"}))
        return 2
    rtp_min, rtp_max = service_rtp_range()
    env = {
        "CALLCENTER_FLOWS_DIRECTORY": str(FLOWS),
        "CALLCENTER_FLOWS_DEFAULT": "bot_e2e",
        "CALLCENTER_ASR_ENGINE": "whisper",
        "CALLCENTER_ASR_END_OF_TURN_S": f"{args.end_of_turn:g}",
        "CALLCENTER_SIP_RATE_LIMIT": "100000",
        "CALLCENTER_SIP_RATE_BURST": "100000",
        "CALLCENTER_RTP_PORT_MIN": str(rtp_min),
        "CALLCENTER_RTP_PORT_MAX": str(rtp_max),
    }
    result: dict[str, Any] = {
        "engine": "whisper",
        "end_of_turn_s": args.end_of_turn,
        "clips": len(clips),
        "clips_excluded": EXCLUDED_CLIPS,
        "levels": {},
    }
    all_turns: list[Turn] = []
    offset = 0
    with run_service(work / "data", env=env, stop_timeout=20) as svc:
        pid = svc.proc.pid
        time.sleep(1.0)
        result["rss_mb_at_start"] = round(rss_mb(pid), 1)
        for w in range(args.warmup):
            plans = plan_round(1, -1 - w, clips, offset, work / "warmup")
            offset += 1
            ids = run_round(svc, plans, work / f"warmup{w}.pcap", args.stagger, reply_window(1))
            for call_id in ids:
                if call_id:
                    fetch_trail(svc, call_id)
        for level in args.calls:
            rounds = max(args.rounds, math.ceil(args.min_turns / level))
            turns: list[Turn] = []
            rss_before = rss_mb(pid)
            sampler = RssSampler(pid)
            cpu0 = cpu_seconds(pid)
            busy0, total0 = machine_busy_seconds()
            load0 = os.getloadavg()[0]
            wall0 = time.monotonic()
            for r in range(rounds):
                plans = plan_round(level, r, clips, offset, work)
                offset += level
                pcap = work / f"level{level}" / f"round{r}.pcap"
                ids = run_round(svc, plans, pcap, args.stagger, reply_window(level))
                trails = [fetch_trail(svc, i) if i else None for i in ids]
                packets = read_pcap_udp(pcap)
                for plan, trail in zip(plans, trails, strict=True):
                    turns.append(
                        analyse_call(
                            plan,
                            packets,
                            trail,
                            level=level,
                            round_no=r,
                            end_of_turn_s=args.end_of_turn,
                        )
                    )
            wall = time.monotonic() - wall0
            cpu = cpu_seconds(pid) - cpu0
            busy1, total1 = machine_busy_seconds()
            rss_peak = sampler.close()
            calls = rounds * level
            report = level_report(turns, level)
            report.update(
                rounds=rounds,
                cpu_s_per_call=round(cpu / calls, 3),
                # In % of one core; "other" is everything else on the machine (sipp, tcpdump,
                # this script, and whatever else runs): high values make the latencies suspect.
                service_cpu_core_percent=round(cpu / wall * 100, 1),
                other_cpu_core_percent=round(((busy1 - busy0) - cpu) / wall * 100, 1),
                machine_busy_percent=round((busy1 - busy0) / (total1 - total0) * 100, 1),
                loadavg_1min_start=round(load0, 2),
                rss_mb_before=round(rss_before, 1),
                rss_mb_peak=round(rss_peak, 1),
                rss_mb_per_call=round((rss_peak - rss_before) / level, 2),
            )
            result["levels"][str(level)] = report
            all_turns += turns
    peaks = [(int(k), v["rss_mb_peak"]) for k, v in result["levels"].items()]
    if len(peaks) >= 2 and peaks[-1][0] > peaks[0][0]:
        # The first decodes grow the process (CTranslate2 buffers) whatever the load: the cost
        # of one more concurrent call is the slope between the levels.
        (n0, r0), (n1, r1) = peaks[0], peaks[-1]
        result["rss_mb_per_extra_call"] = round((r1 - r0) / (n1 - n0), 2)
    if not args.no_faq:
        result["faq_dev"] = faq_accuracy(DEV_SET)
    result["turns"] = [asdict(t) for t in all_turns]
    result["workdir"] = str(work)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0 if all(t.ok for t in all_turns) else 1


if __name__ == "__main__":
    sys.exit(main())
