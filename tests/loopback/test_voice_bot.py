"""The voice bot end to end: real callers (baresip, sipp) → RTP → speech recognition → FAQ → flow.

* baresip speaks a real recorded French sentence into the line after the bot's open question:
  the trail must show its transcript (Whisper, from G.711 audio), the bot's decision, and the
  bot must answer with audio that baresip receives.
* sipp, silent: the bot asks twice, then hands the call to a person (reason ``no_input``).
* sipp, keypad only, on the shipped SOLIDARITÉS flow: a menu key typed during the greeting goes
  straight to its service during the open question (type-ahead), without saying anything.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from callcenter.store import db
from callcenter.store.dossiers import CONTACT
from tests.loopback import audio
from tests.loopback.service import (
    REPO,
    SIPP_DIR,
    free_port,
    run_service,
    run_sipp,
    service_missing_reason,
    stop_process,
)
from tests.loopback.test_baresip import baresip_config, newest_call

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason())),
    pytest.mark.timeout(180),
]

FLOWS = REPO / "tests" / "data" / "flows"
SPEECH = Path(__file__).resolve().parents[3] / "shared" / "audio" / "fr-speech"
CLIP = SPEECH / "fr_33_quelle_heure_est_il.wav"
BOT_ENV = {"CALLCENTER_FLOWS_DIRECTORY": str(FLOWS), "CALLCENTER_FLOWS_DEFAULT": "bot_e2e"}


def events(trail: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e.get("data") or {} for e in trail.get("events", []) if e.get("type") == type_]


def speech_then_silence(out: Path, clip: Path, *, lead_s: float, tail_s: float) -> Path:
    """``lead_s`` of silence, the clip at 8 kHz, then ``tail_s`` of silence (16-bit WAV)."""
    subprocess.run(
        ["sox", str(clip), "-r", "8000", "-c", "1", "-b", "16", str(out), "pad", str(lead_s),
         str(tail_s)],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return out


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed")
@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
@pytest.mark.skipif(not CLIP.exists(), reason=f"speech clip missing: {CLIP}")
def test_spoken_question_is_transcribed_understood_and_answered(tmp_path: Path) -> None:
    lead_s = 3.0  # "Votre question ?" lasts about 1.2 s
    source = speech_then_silence(tmp_path / "caller.wav", CLIP, lead_s=lead_s, tail_s=30)
    with run_service(tmp_path / "data", env=BOT_ENV) as svc:
        sip_port, cons_port = free_port(), free_port()
        dumps = baresip_config(
            tmp_path / "baresip", sip_port=sip_port, cons_port=cons_port, source=source
        )
        seconds = 12
        with (tmp_path / "baresip.log").open("wb") as log:
            proc = subprocess.Popen(
                ["baresip", "-f", str(tmp_path / "baresip"), "-n", "127.0.0.1",
                 "-e", f"/dial sip:3975@127.0.0.1:{svc.sip_port}", "-t", str(seconds)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=tmp_path,
            )  # fmt: skip
            try:
                proc.wait(timeout=seconds + 20)
            finally:
                stop_process(proc, 5)
        call = newest_call(svc)
        trail = svc.wait_call_ended(str(call["sip_call_id"]), timeout=15)
        detail = f"{trail}\n--- service log ---\n{svc.log_tail()}"

        transcripts = events(trail, "transcript")
        assert transcripts, detail
        first = transcripts[0]
        assert first["engine"].startswith("whisper"), first
        assert "heure" in first["text"].lower(), first  # "Quelle heure est-il ?"
        assert first["latency_ms"] < 2000, first
        decisions = events(trail, "intent")
        assert decisions and decisions[0]["decision"] in ("answer", "clarify", "menu"), decisions
        assert decisions[0]["grammar"] == "open", decisions
        # Not a département question: the bot says it did not understand and asks again.
        types = [e["type"] for e in trail["events"]]
        after = types.index("intent")
        replies = [
            e["data"]["prompt_id"] for e in trail["events"][after:] if e["type"] == "prompt_played"
        ]
        assert replies, detail

        # baresip heard the bot's reply: sound after the end of its own sentence.
        decs = sorted(dumps.glob("dump-*-dec.wav"))
        assert decs, detail
        received, rate = audio.read_wav(decs[0])
        clip, clip_rate = audio.read_wav(CLIP)
        speech_end = lead_s + len(clip) / clip_rate
        reply = received[int((speech_end + 0.9) * rate) : int((speech_end + 4) * rate)]
        assert audio.rms_dbfs(reply) > -40, audio.rms_dbfs(reply)

        metrics = svc.metrics()
        assert metrics['callcenter_asr_latency_seconds_count{engine="whisper"}'] >= 1, metrics
        assert sum(v for k, v in metrics.items() if k.startswith("callcenter_bot_decisions")) >= 1
        # The caller's silence before the bot's reply: measured once per spoken turn, and
        # within what baresip heard (the reply was loud 0.9 s after the speech).
        turns = metrics["callcenter_bot_response_seconds_count"]
        assert turns >= 1, metrics
        assert 0 < metrics["callcenter_bot_response_seconds_sum"] / turns < 5, metrics
        assert metrics['callcenter_asr_errors_total{engine="whisper"}'] == 0, metrics
        assert metrics['callcenter_dependency_up{dependency="database"}'] == 1, metrics

    # The contact history keeps the call, unidentified, with what the caller said.
    engine = db.make_engine(f"sqlite:///{tmp_path / 'data' / 'callcenter.sqlite3'}")
    with engine.connect() as conn:
        [contact] = conn.execute(
            select(CONTACT).where(CONTACT.c.sip_call_id == str(call["sip_call_id"]))
        ).mappings()
    engine.dispose()
    assert contact["usager_id"] is None and contact["channel"] == "bot", contact
    assert "heure" in (contact["summary"] or "").lower(), contact


def test_silent_caller_is_handed_over_after_the_retries(tmp_path: Path) -> None:
    env = {**BOT_ENV, "CALLCENTER_RTP_INACTIVITY_TIMEOUT": "0"}
    with run_service(tmp_path / "data", env=env) as svc:
        result = run_sipp(SIPP_DIR / "uac_silent.xml", svc.sip_target, tmp_path, timeout_s=40)
        assert result.call_ids, result.describe()
        trail = svc.wait_call_ended(result.call_ids[0], timeout=30)
        detail = f"{trail}\n--- service log ---\n{svc.log_tail()}"
        timeouts = events(trail, "speech_timeout")
        assert [t["reason"] for t in timeouts] == ["no_input", "no_input"], detail
        queued = events(trail, "queued")
        assert [(q["skill"], q["reason"]) for q in queued] == [("accueil_general", "no_input")], (
            detail
        )
        played = [p["prompt_id"] for p in events(trail, "prompt_played")]
        assert played[:3] == ["e2e_ask", "e2e_no_input", "e2e_ask"], played
        metrics = svc.metrics()
        assert metrics['callcenter_bot_failures_total{kind="no_input"}'] == 2, metrics
        assert metrics['callcenter_bot_calls_total{result="handed_over"}'] == 1, metrics
        assert metrics['callcenter_handoffs_total{priority="normal",reason="no_input"}'] == 1, (
            metrics
        )


def test_bot_without_speech_recognition_still_serves_by_keypad(tmp_path: Path) -> None:
    """``asr.engine = none``: the open question times out into the same hand-off."""
    env = {**BOT_ENV, "CALLCENTER_ASR_ENGINE": "none", "CALLCENTER_RTP_INACTIVITY_TIMEOUT": "0"}
    with run_service(tmp_path / "data", env=env) as svc:
        result = run_sipp(SIPP_DIR / "uac_silent.xml", svc.sip_target, tmp_path, timeout_s=40)
        trail = svc.wait_call_ended(result.call_ids[0], timeout=30)
        assert [t["reason"] for t in events(trail, "speech_timeout")] == ["no_input"] * 2, trail
        assert not events(trail, "transcript")
        assert [q["reason"] for q in events(trail, "queued")] == ["no_input"], trail


def test_service_refuses_to_start_on_an_invalid_knowledge_base(tmp_path: Path) -> None:
    bad = tmp_path / "faq.yaml"
    bad.write_text("skills: {}\nintents:\n- id: x\n  topic: t\n")
    with (
        pytest.raises(RuntimeError) as info,
        run_service(tmp_path / "data", env={"CALLCENTER_FAQ_FILE": str(bad)}, start_timeout=20),
    ):
        pass
    # File, line and field of the problem.
    assert "faq.yaml:3:" in str(info.value) and "'skill'" in str(info.value), info.value
