"""Caller identification end to end: sipp types keys by SIP INFO, the service reads its dossier.

The store is seeded through the repository before the service starts (same SQLite file). The
caller's number (``From: 0612345678``, what sipp sends) is a usager's: the flow only asks for the
birth date, the service checks it against the store, reads the dossier (audited) and speaks the
status of the APA request. A wrong birth date is refused and the caller asked again.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from callcenter.store import db
from callcenter.store import dossiers as repo
from tests.loopback import audio
from tests.loopback.service import (
    REPO,
    render_scenario,
    run_service,
    run_sipp,
    service_missing_reason,
)
from tests.store.seed import seed_apa_usager

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason())),
    pytest.mark.timeout(180),
]

FLOWS = REPO / "tests" / "data" / "flows"
ENV = {
    "CALLCENTER_FLOWS_DIRECTORY": str(FLOWS),
    "CALLCENTER_FLOWS_DEFAULT": "ident_e2e",
    "CALLCENTER_ASR_ENGINE": "none",
}

_INFO = """  <pause milliseconds="250"/>
  <send retrans="500">
    <![CDATA[
      INFO [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: "sipp" <sip:0612345678@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      [routes]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={digit}
      Duration=160
    ]]>
  </send>
  <recv response="200"/>
"""


def scenario(tmp_path: Path, digits: str) -> Path:
    blocks = "".join(_INFO.format(cseq=i + 2, digit=d) for i, d in enumerate(digits))
    return render_scenario(
        "uac_info_digits.xml.tmpl",
        tmp_path / "uac_info_digits.xml",
        audio_wav=str(audio.caller_wav(tmp_path / "caller.wav", "u-law")),
        digit_blocks=blocks,
        pre_digit_ms="1000",
        bye_timeout_ms="60000",
    )


def seed(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(f"sqlite:///{data_dir / 'callcenter.sqlite3'}")
    db.create_schema(engine)
    seed_apa_usager(engine, deposited=date(2025, 2, 1))
    engine.dispose()


def events(trail: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e.get("data") or {} for e in trail.get("events", []) if e.get("type") == type_]


def test_known_caller_types_birth_date_and_hears_the_dossier(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed(data)
    with run_service(data, env=ENV) as svc:
        result = run_sipp(scenario(tmp_path, "05031942"), svc.sip_target, tmp_path, timeout_s=90)
        assert result.call_ids, result.describe()
        trail = svc.wait_call_ended(result.call_ids[0], timeout=30)
        detail = f"{trail}\n--- service log ---\n{svc.log_tail()}"
        assert events(trail, "caller_lookup") == [{"known": True}], detail
        [ident] = events(trail, "identification")
        assert ident["result"] == "ok" and ident["role"] == "usager", detail
        assert ident["by"] == "caller_number" and ident["usager_id"], detail
        [answer] = events(trail, "dossier_answer")
        assert answer["intent"] == "suivi_dossier_apa" and answer["spoken"] is True, detail
        played = [p["prompt_id"] for p in events(trail, "prompt_played")]
        assert any(p.startswith("call-") for p in played), played
        assert events(trail, "hangup")[0]["cause"] == "satisfied", detail
        log = svc.log_path.read_text(errors="replace")
        assert "0612345678" not in log and "05031942" not in log and "Martin" not in log
    # The call is in the usager's contact history; the bot's reads are audited.
    engine = db.make_engine(f"sqlite:///{data / 'callcenter.sqlite3'}")
    contacts = repo.contacts_for(
        engine, int(ident["usager_id"]), actor="test", reason="check", via=repo.Via.CLI
    )
    assert [c.sip_call_id for c in contacts] == [result.call_ids[0]]
    assert contacts[0].outcome == "satisfied" and "identify" in contacts[0].bot_path


def test_wrong_birth_date_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    seed(data)
    with run_service(data, env=ENV) as svc:
        result = run_sipp(scenario(tmp_path, "01011950"), svc.sip_target, tmp_path, timeout_s=90)
        trail = svc.wait_call_ended(result.call_ids[0], timeout=60)
        detail = f"{trail}\n--- service log ---\n{svc.log_tail()}"
        idents = [e["result"] for e in events(trail, "identification")]
        assert idents[:1] == ["mismatch"], detail
        assert not events(trail, "dossier_answer"), detail
        played = [p["prompt_id"] for p in events(trail, "prompt_played")]
        assert "id_retry" in played, played
