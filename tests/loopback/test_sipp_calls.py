"""sipp against the real service on loopback: audio + RFC 4733, PCMA, SIP INFO, CANCEL, BYE, hold.

Each test starts ``callcenter serve`` (module-scoped where the configuration allows), runs one sipp
scenario from ``tests/sipp/`` and checks both the SIP exchange (sipp's verdict and message trace)
and the call's event trail from ``GET /api/calls/{sip_call_id}``. The three calls through the whole
main flow (a minute each) are placed at once by one fixture (``menu_calls``).
"""

from __future__ import annotations

import concurrent.futures
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.loopback import audio
from tests.loopback.service import (
    SIPP_DIR,
    SIPP_PCAPS,
    Service,
    SippResult,
    render_scenario,
    run_service,
    run_sipp,
    service_missing_reason,
    sipp_port_pairs,
)

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(
        shutil.which("sipp") is None, reason="sipp (Debian sip-tester) not installed"
    ),
    pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed"),
    pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason())),
    pytest.mark.timeout(120),
]

DTMF_PCAP = SIPP_PCAPS / "dtmf_2833_{}.pcap"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp("callcenter-data")
    with run_service(data_dir) as service:
        yield service


@pytest.fixture(scope="module")
def ringing_svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service that rings 2 s before answering: the window for a CANCEL."""
    data_dir = tmp_path_factory.mktemp("callcenter-ringing")
    with run_service(data_dir, env={"CALLCENTER_SIP_ANSWER_DELAY": "2.0"}) as service:
        yield service


@pytest.fixture(scope="module")
def menu_calls(svc: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, SippResult]:
    """Three calls through the whole main flow, placed at once: PCMU + RFC 4733 "1", PCMA + "4",
    SIP INFO "2". Each lasts about a minute whatever the caller does (the welcome, the notice that
    answers are automated and the emergency numbers are not interruptible), so they overlap
    rather than follow one another; every test below reads its own call once all three ended.
    """
    folder = tmp_path_factory.mktemp("menu-calls")
    scenarios = {
        "pcmu": call_scenario(folder, codec="PCMU", digit="1"),
        "pcma": call_scenario(folder, codec="PCMA", digit="4"),
        "info": render_scenario(
            "uac_info_dtmf.xml.tmpl",
            folder / "uac_info_dtmf.xml",
            audio_wav=str(audio.caller_wav(folder / "caller_info.wav", "u-law")),
            digit="2",
            pre_digit_ms="1500",
            bye_timeout_ms="80000",
        ),
    }
    ports = sipp_port_pairs(len(scenarios))  # chosen here, not by three threads at once
    with concurrent.futures.ThreadPoolExecutor(len(scenarios)) as pool:
        running = {
            name: pool.submit(
                run_sipp,
                scenario,
                svc.sip_target,
                folder / name,
                timeout_s=90,
                local_port=local,
                media_port=media,
            )
            for (name, scenario), (local, media) in zip(scenarios.items(), ports, strict=True)
        }
        results = {name: future.result() for name, future in running.items()}
    # Every call has ended in the service too (its trail is closed after the call's metrics are),
    # so no test reads a gauge while another call is still winding down.
    for result in results.values():
        for call_id in result.call_ids:
            svc.wait_call_ended(call_id)
    return results


def events(trail: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e.get("data") or {} for e in trail.get("events", []) if e.get("type") == type_]


def event_types(trail: dict[str, Any]) -> list[str]:
    return [str(e.get("type")) for e in trail.get("events", [])]


def only_call_id(result: SippResult) -> str:
    assert result.call_ids, f"the scenario logged no Call-ID\n{result.describe()}"
    return result.call_ids[0]


def assert_sipp_ok(result: SippResult, svc: Service) -> None:
    assert result.returncode == 0, f"{result.describe()}\n--- service log ---\n{svc.log_tail()}"


def call_scenario(tmp_path: Path, *, codec: str, digit: str, bye_timeout_ms: int = 80000) -> Path:
    """Render uac_call.xml.tmpl for ``codec`` (PCMU/PCMA) pressing ``digit`` by RFC 4733."""
    pt, encoding = {"PCMU": ("0", "u-law"), "PCMA": ("8", "a-law")}[codec]
    wav = audio.caller_wav(tmp_path / f"caller_{codec.lower()}.wav", encoding)  # type: ignore[arg-type]
    name = {"*": "star", "#": "pound"}.get(digit, digit)
    return render_scenario(
        "uac_call.xml.tmpl",
        tmp_path / f"uac_call_{codec.lower()}.xml",
        codec_pt=pt,
        codec_name=codec,
        audio_wav=str(wav),
        digit_pcap=str(DTMF_PCAP).format(name),
        pre_digit_ms="1500",
        bye_timeout_ms=str(bye_timeout_ms),
    )


def test_full_call_pcmu_rfc4733_menu_to_queue(
    svc: Service, menu_calls: dict[str, SippResult]
) -> None:
    result = menu_calls["pcmu"]
    assert_sipp_ok(result, svc)
    assert "BYE received from service" in result.logs

    trail = svc.wait_call_ended(only_call_id(result))
    types = event_types(trail)
    assert types[0] == "answered", types
    answered = events(trail, "answered")[0]
    assert answered.get("codec", "PCMU") in ("PCMU", "pcmu", 0), answered
    assert events(trail, "prompt_played"), types
    assert {"digit": "1", "method": "rfc4733"} in [
        {"digit": d.get("digit"), "method": d.get("method")} for d in events(trail, "dtmf")
    ], events(trail, "dtmf")
    # Keypad only: "1", typed during the greeting, answers the open question as the menu would.
    nodes = [n.get("node_id") for n in events(trail, "flow_node")]
    assert nodes[-3:] == ["ask_question", "queue_apa", "goodbye_queued"], nodes
    assert [q.get("skill") for q in events(trail, "queued")] == ["apa"], trail
    assert not events(trail, "transcript"), trail
    hangup = events(trail, "hangup")
    assert len(hangup) == 1 and hangup[0].get("side") == "service", hangup
    assert (
        types.index("answered")
        < types.index("dtmf")
        < types.index("queued")
        < types.index("hangup")
    )
    # Metrics are derived from the same events (sipp's own calls share this service).
    metrics = svc.metrics()
    assert metrics['callcenter_calls_total{outcome="queued"}'] >= 1, metrics
    assert metrics['callcenter_dtmf_digits_total{method="rfc4733"}'] >= 1, metrics
    assert metrics['callcenter_sip_responses_total{code="200"}'] >= 1, metrics
    assert metrics['callcenter_sip_requests_total{method="INVITE"}'] >= 1, metrics
    assert metrics["callcenter_active_calls"] == 0, metrics
    assert not [k for k in metrics if "0612345678" in k], "a phone number in a metric label"
    assert "0612345678" not in svc.log_path.read_text(errors="replace"), "a phone number logged"
    assert trail.get("caller") == "0612345678"  # stored with the call only
    # The 200 OK answered with PCMU and offered our telephone-event payload type back.
    ok = result.received(r"SIP/2.0 200")[0]
    assert re.search(r"m=audio \d+ RTP/AVP 0\b", ok), ok
    assert re.search(r"a=rtpmap:101 telephone-event/8000", ok, re.I), ok


def test_pcma_call(svc: Service, menu_calls: dict[str, SippResult]) -> None:
    result = menu_calls["pcma"]
    assert_sipp_ok(result, svc)
    ok = result.received(r"SIP/2.0 200")[0]
    assert re.search(r"m=audio \d+ RTP/AVP 8\b", ok), ok
    assert "PCMU" not in ok, "answer lists a codec that was not offered"
    trail = svc.wait_call_ended(only_call_id(result))
    assert "answered" in event_types(trail)
    assert [q.get("skill") for q in events(trail, "queued")] == ["paiement"], trail


def test_sip_info_dtmf(svc: Service, menu_calls: dict[str, SippResult]) -> None:
    result = menu_calls["info"]
    assert_sipp_ok(result, svc)
    trail = svc.wait_call_ended(only_call_id(result))
    dtmf = events(trail, "dtmf")
    assert dtmf and all(d.get("method") == "info" and d.get("digit") == "2" for d in dtmf), dtmf
    assert [q.get("skill") for q in events(trail, "queued")] == ["mdph_adulte"], trail
    assert events(trail, "hangup")[0].get("side") == "service"


def test_cancel_before_answer(ringing_svc: Service, tmp_path: Path) -> None:
    result = run_sipp(SIPP_DIR / "uac_cancel.xml", ringing_svc.sip_target, tmp_path, timeout_s=20)
    assert_sipp_ok(result, ringing_svc)
    # RFC 3261 section 9.2: 200 to the CANCEL (CSeq 1 CANCEL) and 487 to the INVITE.
    ok_cancel = [m for m in result.received(r"SIP/2.0 200") if re.search(r"CSeq:\s*1 CANCEL", m)]
    assert ok_cancel, result.describe()
    r487 = result.received(r"SIP/2.0 487")
    assert r487 and re.search(r"CSeq:\s*1 INVITE", r487[0]), result.describe()
    assert not [m for m in result.received(r"SIP/2.0 200") if "INVITE" in m.split("CSeq:")[1][:20]]
    trail = ringing_svc.wait_call_ended(only_call_id(result))
    assert trail.get("outcome") == "cancelled", trail
    assert "answered" not in event_types(trail)


def test_caller_bye_during_welcome_prompt(svc: Service, tmp_path: Path) -> None:
    result = run_sipp(
        SIPP_DIR / "uac_bye_during_prompt.xml", svc.sip_target, tmp_path, timeout_s=20
    )
    assert_sipp_ok(result, svc)
    trail = svc.wait_call_ended(only_call_id(result))
    hangup = events(trail, "hangup")
    assert len(hangup) == 1 and hangup[0].get("side") == "caller", hangup
    assert not events(trail, "queued")
    # Hung up 1.5 s in: the welcome prompt cannot have finished uninterrupted.
    finished = [p for p in events(trail, "prompt_played") if not p.get("interrupted")]
    assert len(finished) == 0, finished


def test_reinvite_hold_unhold(svc: Service, tmp_path: Path) -> None:
    result = run_sipp(SIPP_DIR / "uac_hold_unhold.xml", svc.sip_target, tmp_path, timeout_s=20)
    assert_sipp_ok(result, svc)
    oks = [m for m in result.received(r"SIP/2.0 200") if re.search(r"CSeq:\s*\d+ INVITE", m)]
    by_cseq = {int(re.search(r"CSeq:\s*(\d+)", m).group(1)): m for m in oks}  # type: ignore[union-attr]
    assert set(by_cseq) >= {1, 2, 3}, result.describe()

    def direction(msg: str) -> str:
        found = re.findall(r"a=(sendrecv|sendonly|recvonly|inactive)", msg)
        return found[-1] if found else "sendrecv"  # RFC 4566 section 6: sendrecv is the default

    # RFC 3264 section 6.1: an offer of sendonly is answered recvonly (or inactive).
    assert direction(by_cseq[2]) == "recvonly", by_cseq[2]
    assert direction(by_cseq[3]) == "sendrecv", by_cseq[3]
    trail = svc.wait_call_ended(only_call_id(result))
    assert events(trail, "hangup")[0].get("side") == "caller"


def test_options_ping(svc: Service, tmp_path: Path) -> None:
    result = run_sipp(SIPP_DIR / "options.xml", svc.sip_target, tmp_path, timeout_s=10)
    assert_sipp_ok(result, svc)
    ok = result.received(r"SIP/2.0 200")[0]
    allow = re.search(r"^Allow:\s*(.*)$", ok, re.M | re.I)
    assert allow, ok
    methods = {m.strip().upper() for m in allow.group(1).split(",")}
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO"} <= methods, methods


def test_bye_unknown_dialog_gets_481(svc: Service, tmp_path: Path) -> None:
    result = run_sipp(SIPP_DIR / "bye_unknown_dialog.xml", svc.sip_target, tmp_path, timeout_s=10)
    assert_sipp_ok(result, svc)
    assert result.received(r"SIP/2.0 481"), result.describe()
    status, body = svc.health()
    assert status == 200, body


def test_rtp_inactivity_hangs_up(tmp_path: Path) -> None:
    env = {"CALLCENTER_RTP_INACTIVITY_TIMEOUT": "3"}
    with run_service(tmp_path / "data", env=env) as svc:
        result = run_sipp(SIPP_DIR / "uac_silent.xml", svc.sip_target, tmp_path, timeout_s=30)
        assert_sipp_ok(result, svc)
        trail = svc.wait_call_ended(only_call_id(result))
        assert events(trail, "hangup") == [{"cause": "rtp_timeout", "side": "service"}], trail
        elapsed = datetime.fromisoformat(trail["ended_at"]) - datetime.fromisoformat(
            trail["answered_at"]
        )
        assert 3 <= elapsed.total_seconds() < 6, elapsed


def test_offerless_reinvite_gets_our_offer(svc: Service, tmp_path: Path) -> None:
    result = run_sipp(SIPP_DIR / "uac_reinvite_no_sdp.xml", svc.sip_target, tmp_path, timeout_s=20)
    assert_sipp_ok(result, svc)
    ok = [m for m in result.received(r"SIP/2.0 200") if re.search(r"CSeq:\s*2 INVITE", m)]
    assert ok and "a=rtpmap:0 PCMU/8000" in ok[0], result.describe()
    trail = svc.wait_call_ended(only_call_id(result))
    # The answer that came in the ACK was applied.
    assert events(trail, "reinvite") == [{"direction": "sendrecv", "codec": "PCMU"}], trail


def test_delayed_offer_answered_in_the_ack(svc: Service, tmp_path: Path) -> None:
    result = run_sipp(SIPP_DIR / "uac_delayed_offer.xml", svc.sip_target, tmp_path, timeout_s=20)
    assert_sipp_ok(result, svc)
    ok = result.received(r"SIP/2.0 200")[0]
    assert re.search(r"m=audio \d+ RTP/AVP 0 8 101", ok), ok  # our offer: PCMU, PCMA, events
    trail = svc.wait_call_ended(only_call_id(result))
    # The caller chose PCMA in its answer (in the ACK); the flow ran.
    assert events(trail, "answered") == [{"codec": "PCMA"}], trail
    assert events(trail, "prompt_played"), trail
    assert events(trail, "hangup")[0].get("side") == "caller"
