"""Caller identification end to end: sipp types keys by SIP INFO, the service reads its dossier.

One service for the whole module, over a SQLite store seeded through the repository before it
starts, with one usager per test (each with their own numbers and dossier) so that the service's
in-memory throttling of one test never reaches another, whatever their order. Dialled 3975: the
caller asks where their APA request stands (flow ``ident_keypad``); 3976: when it will be paid
(``ident_payment``); 3977: the original short flow (``ident_e2e``).

* A usager calling from her own number (``0612345678``) only types her birth date and hears the
  status of her request; a wrong birth date is refused and she is asked again.
* A caller from an unknown number types the dossier number, hears it read back, confirms with 1
  and types the birth date.
* Three wrong birth dates hand the call over, without any read of the dossier itself.
* Guesses are throttled per caller number (over several calls) and per dossier (from several
  numbers): the right birth date is then refused too.
* A carer and a guardian declared on a dossier call from their own numbers and are told what
  their role allows (the audit log shows what the store gave for each).

Keys are mostly typed ahead (a caller who knows the questions): the service keeps them for its
next question, so a call with three attempts lasts seconds. Nothing here reads audio: the trail
(``/api/calls/{id}``) and the audit log say what each call did and read. No phone number, name,
birth date or dossier number may reach the service log.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from callcenter.store import db
from callcenter.store import dossiers as repo
from callcenter.store.dossier_models import TiersRole
from tests.loopback import audio
from tests.loopback.service import (
    REPO,
    Service,
    SippResult,
    render_scenario,
    run_service,
    run_sipp,
    service_missing_reason,
    sipp_port_pairs,
    trail_text,
)
from tests.store.seed import seed_apa_usager

pytestmark = [
    pytest.mark.loopback,
    pytest.mark.skipif(service_missing_reason() is not None, reason=str(service_missing_reason())),
    pytest.mark.timeout(180),
]

FLOWS = REPO / "tests" / "data" / "flows"


E2E_LINE = "3977"
"""Dialled for flow ``ident_e2e`` (the usager of ``tests/store/seed.py`` asks about her APA)."""
MARTIN_ID = "U1"
"""``external_id`` of that usager (Jeanne Martin, ``0612345678``, born 5 March 1942)."""
MARTIN_PHONE = "0612345678"
"""Her number: she calls from it."""
MARTIN_SECRETS = ("Martin", "Jeanne", "612345678", "05031942", "1942-03-05", "APA-2025-0456")
STATUS_LINE = "3975"
"""Dialled for flow ``ident_keypad`` (the caller asks where their APA request stands)."""
PAYMENT_LINE = "3976"
"""Dialled for flow ``ident_payment`` (the caller asks when the next payment comes)."""
KEY_GAP_MS = 150
"""Pause before each key a caller types."""
READ_BACK_MS = 13_000
"""Time a caller listens to the read-back of a nine-digit dossier number before pressing 1.
Measured: "vous avez tapé" and the digits end about 9 s after the #, the confirmation question
("exact ? un, ou deux") 2.7 s later, and the flow then waits 10 s for the key: pressing at 13 s
leaves 4 s either way for a slow machine."""
MAX_FAILURES = 5
"""``IdentityService``'s default: mismatches per caller number, or per dossier, in an hour,
after which every attempt is refused (``callcenter/identity.py``; not configurable)."""


def events(trail: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [e.get("data") or {} for e in trail.get("events", []) if e.get("type") == type_]


@dataclass(frozen=True, slots=True)
class Persona:
    """A usager of the seeded store and their APA request."""

    external_id: str
    nom: str
    prenom: str
    born: date
    phone: str
    """The usager's own number (the From of a known caller)."""
    numero: str

    @property
    def birth_keys(self) -> str:
        return self.born.strftime("%d%m%Y")

    @property
    def numero_keys(self) -> str:
        return re.sub(r"\D", "", self.numero)

    def secrets(self) -> tuple[str, ...]:
        """What must never reach the service log about this usager."""
        return (
            self.nom,
            self.prenom,
            self.birth_keys,
            self.born.isoformat(),
            self.numero,
            self.numero_keys,
            self.phone[1:],  # national, E.164 and digits-only forms all contain it
        )


KEYPAD = Persona("E2E-1", "Lefort", "Odette", date(1939, 7, 21), "0145678901", "APA-2024-58317")
"""Calls from a number the store does not know."""
HANDOFF = Persona("E2E-2", "Dupuis", "Marcel", date(1944, 2, 9), "0655502345", "APA-2024-61204")
"""Forgets their birth date three times."""
GUESSED = Persona("E2E-3", "Roux", "Simone", date(1950, 5, 30), "0655503456", "APA-2024-70021")
"""Someone calling from her number guesses dossier numbers and birth dates."""
TARGET = Persona("E2E-4", "Morel", "André", date(1936, 12, 3), "0145000004", "APA-2024-80455")
"""Her dossier number is attacked from several numbers."""
CARED = Persona("E2E-5", "Bernard", "Lucien", date(1938, 11, 14), "0145000005", "APA-2024-66207")
"""Has a carer and a guardian declared on his dossier; his first APA payment is due."""
PERSONAS = (KEYPAD, HANDOFF, GUESSED, TARGET, CARED)

UNKNOWN_CALLER = "0655501234"
ATTACKERS = ("0655504001", "0655504002", "0655504003")
AIDANT_PHONE = "0655506001"
MANDATAIRE_PHONE = "0655506002"
CALLER_NUMBERS = (UNKNOWN_CALLER, *ATTACKERS, AIDANT_PHONE, MANDATAIRE_PHONE)
TIERS_NAMES = ("Claire", "Vidal")


def seed_personas(engine: Engine) -> dict[str, int]:
    """Write the usagers (the carer and guardian of ``CARED`` too); return their ids."""
    ids = {MARTIN_ID: seed_apa_usager(engine, deposited=date(2025, 2, 1))}
    for p in PERSONAS:
        usager = repo.upsert_usager(
            engine,
            repo.UsagerRecord(
                external_id=p.external_id,
                nom=p.nom,
                prenom=p.prenom,
                date_naissance=p.born,
                phones=(p.phone,),
            ),
        )
        ids[p.external_id] = usager
        if p is CARED:
            continue
        # Received a few days ago: a short spoken status.
        repo.upsert_demande(
            engine,
            usager,
            repo.DemandeRecord(
                numero=p.numero,
                type="APA_DOMICILE",
                date_depot=date(2025, 2, 20),
                statuses=(repo.StatusRecord("RECU", date(2025, 2, 24)),),
            ),
        )
    # Rights open since 1 March; the first payment (March) is due on 5 April (the flows'
    # clock: 10 March 2025).
    cared = ids[CARED.external_id]
    repo.upsert_demande(
        engine,
        cared,
        repo.DemandeRecord(
            numero=CARED.numero,
            type="APA_DOMICILE",
            date_depot=date(2024, 11, 4),
            statuses=(
                repo.StatusRecord("RECU", date(2024, 11, 6)),
                repo.StatusRecord("COMPLET", date(2024, 11, 22)),
                repo.StatusRecord("DECISION_NOTIFIEE", date(2025, 2, 20)),
                repo.StatusRecord("DROITS_OUVERTS", date(2025, 3, 1)),
            ),
            decisions=(
                repo.DecisionRecord(
                    prestation="APA_DOMICILE",
                    sens="accord",
                    date_decision=date(2025, 2, 18),
                    date_debut=date(2025, 3, 1),
                    date_fin=date(2027, 2, 28),
                    montant_cents=41250,
                    gir=3,
                ),
            ),
        ),
    )
    repo.upsert_paiement(
        engine,
        cared,
        repo.PaiementRecord(
            prestation="APA_DOMICILE",
            periode=date(2025, 3, 1),
            date_paiement=date(2025, 4, 5),
            montant_brut_cents=41250,
            statut="prevu",
            numero=CARED.numero,
        ),
    )
    # Default permissions of each role (DEFAULT_MAY_KNOW): the carer may not know payments.
    for external_id, nom, prenom, role, phone in (
        ("E2E-5-A", "Bernard", "Claire", TiersRole.AIDANT, AIDANT_PHONE),
        ("E2E-5-M", "Vidal", None, TiersRole.MANDATAIRE_JUDICIAIRE, MANDATAIRE_PHONE),
    ):
        repo.upsert_tiers(
            engine,
            cared,
            repo.TiersRecord(
                external_id=external_id, nom=nom, prenom=prenom, role=role, phones=(phone,)
            ),
        )
    return ids


@dataclass(frozen=True)
class Line:
    """The shared service, its store and the caller's audio."""

    svc: Service
    store: Engine
    """Engine on the service's SQLite file (audit log, contact history)."""
    usagers: dict[str, int]
    """Usager id per persona ``external_id``."""
    caller_wav: Path
    workdir: Path
    calls: Iterator[int] = dataclasses.field(default_factory=itertools.count)
    """Numbers the calls' work folders."""

    def audit(self, call_id: str) -> list[repo.AuditEntry]:
        """Every audited read done for one call (the reason names the Call-ID), oldest first."""
        rows = repo.audit_log(self.store, limit=100_000)
        return [r for r in reversed(rows) if r.reason.startswith(f"call {call_id}:")]

    def assert_log_clean(self) -> None:
        """No phone number, name, birth date or dossier number in the service log."""
        log = self.svc.log_path.read_text(errors="replace")
        secrets = {s for p in PERSONAS for s in p.secrets()}
        secrets |= {n[1:] for n in CALLER_NUMBERS} | set(TIERS_NAMES) | set(MARTIN_SECRETS)
        leaked = sorted(s for s in secrets if s in log)
        assert not leaked, f"personal data in the service log: {leaked}"


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Line]:
    root = tmp_path_factory.mktemp("ident_line")
    data = root / "data"
    data.mkdir()
    store = db.make_engine(f"sqlite:///{data / 'callcenter.sqlite3'}")
    db.create_schema(store)
    usagers = seed_personas(store)
    env = {
        "CALLCENTER_FLOWS_DIRECTORY": str(FLOWS),
        "CALLCENTER_FLOWS_DEFAULT": "ident_keypad",
        "CALLCENTER_FLOWS_NUMBERS": (
            f"{STATUS_LINE}=ident_keypad,{PAYMENT_LINE}=ident_payment,{E2E_LINE}=ident_e2e"
        ),
        "CALLCENTER_ASR_ENGINE": "none",
    }
    wav = audio.caller_wav(root / "caller.wav", "u-law")
    try:
        with run_service(data, env=env) as svc:
            yield Line(svc, store, usagers, wav, root)
    finally:
        store.dispose()


@dataclass(frozen=True, slots=True)
class Caller:
    """One call to place: who calls, where, and what they type."""

    name: str
    number: str
    """The From user part (national or +E.164)."""
    keys: Sequence[str | int]
    """Keys to type (strings), and pauses in ms (ints) between them."""
    dialled: str = STATUS_LINE


@dataclass(frozen=True, slots=True)
class Placed:
    """A call placed by sipp, and its trail once it ended."""

    caller: Caller
    sipp: SippResult
    call_id: str
    trail: dict[str, Any]

    def events(self, type_: str) -> list[dict[str, Any]]:
        return events(self.trail, type_)

    def prompts(self) -> list[tuple[str, bool]]:
        return [(p["prompt_id"], p["interrupted"]) for p in self.events("prompt_played")]


# Compact (sipp refuses scenario files over 64 KiB; a call may type some sixty keys).
_KEY = """<pause milliseconds="{pause}"/>
<send retrans="500"><![CDATA[
INFO [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SIPpTag01[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: {cseq} INFO
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal={key}
Duration=160
]]></send>
<recv response="200"/>
"""


def key_blocks(caller: str, keys: Sequence[str | int]) -> str:
    """One SIP INFO per key, ``KEY_GAP_MS`` apart, plus the pauses given as ints (ms)."""
    blocks: list[str] = []
    pause = 0
    for step in keys:
        if isinstance(step, int):
            pause += step
            continue
        for key in step:
            cseq = len(blocks) + 2
            blocks.append(_KEY.format(pause=pause + KEY_GAP_MS, caller=caller, cseq=cseq, key=key))
            pause = 0
    return "".join(blocks)


def place(line: Line, *callers: Caller) -> list[Placed]:
    """Place the calls at once (one sipp each) and return them once the service ended them."""
    workdirs = [line.workdir / f"{next(line.calls):02d}-{c.name}" for c in callers]
    ports = sipp_port_pairs(len(callers))

    def run(caller: Caller, workdir: Path, sip_port: int, media_port: int) -> SippResult:
        workdir.mkdir(parents=True)
        sf = render_scenario(
            "uac_ident_keys.xml.tmpl",
            workdir / "uac_ident_keys.xml",
            caller=caller.number,
            audio_wav=str(line.caller_wav),
            pre_keys_ms="1000",
            key_blocks=key_blocks(caller.number, caller.keys),
            bye_timeout_ms="60000",
        )
        return run_sipp(
            sf,
            line.svc.sip_target,
            workdir,
            timeout_s=90,
            local_port=sip_port,
            media_port=media_port,
            service=caller.dialled,
        )

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(callers)) as pool:
        futures = [
            pool.submit(run, caller, workdir, sip_port, media_port)
            for caller, workdir, (sip_port, media_port) in zip(
                callers, workdirs, ports, strict=True
            )
        ]
        results = [f.result() for f in futures]
    placed: list[Placed] = []
    for caller, result in zip(callers, results, strict=True):
        assert len(result.call_ids) == 1, f"{caller.name}: {result.describe()}"
        trail = line.svc.wait_call_ended(result.call_ids[0], timeout=30)
        placed.append(Placed(caller, result, result.call_ids[0], trail))
    return placed


def explain(line: Line, *calls: Placed) -> str:
    """What to print when an assertion fails: the trails, the sipp errors, the service log."""
    parts = []
    for call in calls:
        trail = [(e["type"], e.get("data")) for e in call.trail.get("events", [])]
        parts.append(f"--- {call.caller.name} ({call.call_id}) ---\n{trail}")
        if call.sipp.returncode != 0:
            parts.append(call.sipp.describe())
    parts.append(f"--- service log ---\n{line.svc.log_tail(40)}")
    return "\n".join(parts)


def attempt(numero: str, birth: str) -> list[str]:
    """One identification attempt by dossier number: the number, 1 (it is right), the date."""
    return [f"{numero}#", "1", birth]


def assert_handed_over(call: Placed, reason: str, detail: str) -> None:
    """The call went to a person for ``reason``, and nothing of the dossier was spoken."""
    queued = call.events("queued")
    assert [q["reason"] for q in queued] == [reason], detail
    assert queued[0]["skill"] == "apa" and queued[0]["intent"] == "suivi_dossier_apa", detail
    assert not call.events("dossier_answer") and not call.events("answer"), detail
    assert not any(p.startswith("call-") for p, _ in call.prompts()), detail
    assert call.events("hangup")[0]["cause"] == "queued", detail
    assert call.trail["outcome"] == "queued", detail


# --- the first usager: ``tests/store/seed.py`` (flow ``ident_e2e``) ------------------------------


def test_known_caller_types_birth_date_and_hears_the_dossier(line: Line) -> None:
    contained = 'callcenter_bot_intent_calls_total{intent="suivi_dossier_apa",result="contained"}'
    before = line.svc.metrics().get(contained, 0.0)
    [call] = place(line, Caller("martin", MARTIN_PHONE, ["05031942"], dialled=E2E_LINE))
    trail = call.trail
    detail = explain(line, call)
    assert events(trail, "caller_lookup") == [{"known": True}], detail
    [ident] = events(trail, "identification")
    assert ident["result"] == "ok" and ident["role"] == "usager", detail
    assert ident["by"] == "caller_number" and ident["usager_id"], detail
    assert ident["usager_id"] == line.usagers[MARTIN_ID], detail
    [answer] = events(trail, "dossier_answer")
    assert answer["intent"] == "suivi_dossier_apa" and answer["spoken"] is True, detail
    played = [p["prompt_id"] for p in events(trail, "prompt_played")]
    assert any(p.startswith("call-") for p in played), played
    assert events(trail, "hangup")[0]["cause"] == "satisfied", detail
    # The typed birth date is not kept in the trail: the keys are there, masked.
    keys = events(trail, "dtmf")
    assert len(keys) == 8 and all(k.get("masked") and "digit" not in k for k in keys), keys
    assert "05031942" not in trail_text(trail), detail
    # Self-service containment per intent: the dossier answer ended the call satisfied.
    assert line.svc.metrics().get(contained, 0.0) == before + 1, line.svc.metrics()
    log = line.svc.log_path.read_text(errors="replace")
    assert "0612345678" not in log and "05031942" not in log and "Martin" not in log
    line.assert_log_clean()
    # The call is in the usager's contact history; the bot's reads are audited.
    contacts = repo.contacts_for(
        line.store, int(ident["usager_id"]), actor="test", reason="check", via=repo.Via.CLI
    )
    assert [c.sip_call_id for c in contacts] == [call.call_id]
    assert contacts[0].outcome == "satisfied" and "identify" in contacts[0].bot_path
    reads = [r.action for r in line.audit(call.call_id)]
    assert reads == ["find_by_phone", "find_by_phone", "verify_birth_date", "snapshot"], reads


def test_wrong_birth_date_is_refused(line: Line) -> None:
    [call] = place(line, Caller("martin-wrong", MARTIN_PHONE, ["01011950"], dialled=E2E_LINE))
    trail = call.trail
    detail = explain(line, call)
    idents = [e["result"] for e in events(trail, "identification")]
    assert idents[:1] == ["mismatch"], detail
    assert not events(trail, "dossier_answer"), detail
    played = [p["prompt_id"] for p in events(trail, "prompt_played")]
    assert "id_retry" in played, played
    line.assert_log_clean()


# --- the other usagers (flows ``ident_keypad`` and ``ident_payment``) -----------------------------


def test_unknown_caller_types_dossier_number_hears_it_read_back(line: Line) -> None:
    keys: list[str | int] = [f"{KEYPAD.numero_keys}#", READ_BACK_MS, "1", KEYPAD.birth_keys]
    [call] = place(line, Caller("keypad", UNKNOWN_CALLER, keys))
    detail = explain(line, call)

    assert call.events("caller_lookup") == [{"known": False}], detail
    prompts = call.prompts()
    # The number is read back in full, digit by digit, then the caller confirms; the trail
    # keeps that digits were read, not which (the number is not rebuilt from it).
    start = prompts.index(("idk_readback", False))
    read_back = prompts[start + 1 : start + 1 + len(KEYPAD.numero_keys)]
    assert read_back == [("digit", False)] * len(KEYPAD.numero_keys), detail
    assert KEYPAD.numero_keys.rstrip("#") not in trail_text(call.trail), detail
    assert prompts[start + 1 + len(KEYPAD.numero_keys)][0] == "idk_confirm", detail
    [ident] = call.events("identification")
    assert ident == {
        "result": "ok",
        "role": "usager",
        "usager_id": line.usagers[KEYPAD.external_id],
        "by": "dossier_number",
    }, detail
    [answer] = call.events("dossier_answer")
    assert answer["intent"] == "suivi_dossier_apa" and answer["spoken"] is True, detail
    assert answer["handover"] is False, detail
    [given] = call.events("answer")
    assert (given["prompt_id"], False) in prompts, detail  # played to the end
    assert not call.events("queued"), detail
    assert call.events("hangup")[0]["cause"] == "satisfied", detail
    assert call.sipp.returncode == 0, detail

    # What was read for this call: the caller's number (the lookup, then whether a declared
    # tiers calls), the dossier number, the birth date check, and only then the dossier.
    reads = line.audit(call.call_id)
    usager = line.usagers[KEYPAD.external_id]
    assert [(r.action, r.usager_id) for r in reads] == [
        ("find_by_phone", None),
        ("find_by_phone", None),
        ("find_by_dossier_number", usager),
        ("verify_birth_date", usager),
        ("snapshot", usager),
    ], reads
    assert reads[3].detail == {"match": True}, reads
    assert reads[4].detail["role"] == "usager" and reads[4].detail["tiers_id"] is None, reads
    line.assert_log_clean()


def test_three_wrong_birth_dates_hand_the_call_over(line: Line) -> None:
    # Known number: the birth date first; after a mismatch the dossier number is asked too.
    keys = ["01011950", *attempt(HANDOFF.numero_keys, "02021951")]
    keys += attempt(HANDOFF.numero_keys, "03031952")
    [call] = place(line, Caller("handoff", HANDOFF.phone, keys))
    detail = explain(line, call)

    assert call.events("caller_lookup") == [{"known": True}], detail
    idents = call.events("identification")
    assert [(i["result"], i["by"]) for i in idents] == [
        ("mismatch", "caller_number"),
        ("mismatch", "dossier_number"),
        ("mismatch", "dossier_number"),
    ], detail
    assert all(i["usager_id"] is None and i["role"] is None for i in idents), detail
    assert [p for p, _ in call.prompts()].count("idk_retry") == 2, detail
    assert_handed_over(call, "identification_failed", detail)
    assert call.sipp.returncode == 0, detail

    # Only what identification needs was read: never the dossier itself.
    reads = line.audit(call.call_id)
    usager = line.usagers[HANDOFF.external_id]
    checks = [r for r in reads if r.action == "verify_birth_date"]
    assert [(r.usager_id, r.detail) for r in checks] == [(usager, {"match": False})] * 3, reads
    assert {r.action for r in reads} == {
        "find_by_phone",
        "find_by_dossier_number",
        "verify_birth_date",
    }, reads
    snapshots = [r for r in repo.audit_log(line.store, usager_id=usager) if r.action == "snapshot"]
    assert not snapshots, snapshots
    line.assert_log_clean()


@pytest.fixture(scope="module")
def guessed_from_one_number(line: Line) -> list[Placed]:
    """Two calls at once from GUESSED's number, each with three wrong guesses (six in all).

    Every dossier number guessed is different, so only the caller number accumulates failures.
    """
    wrong = [("01011950", "02021951", "03031952"), ("04041953", "05051954", "06061955")]
    callers = []
    for i, (first, second, third) in enumerate(wrong):
        keys = [first, *attempt(f"9000000{2 * i + 1}", second)]
        keys += attempt(f"9000000{2 * i + 2}", third)
        callers.append(Caller(f"guess-{i}", GUESSED.phone, keys))
    guesses = place(line, *callers)
    results = [i["result"] for call in guesses for i in call.events("identification")]
    # Two checks may race past the limit at the same time; never fewer than the limit.
    assert len(results) == 6 and set(results) <= {"mismatch", "throttled"}, explain(line, *guesses)
    assert results.count("mismatch") >= MAX_FAILURES, explain(line, *guesses)
    return guesses


def test_guesses_from_one_number_are_throttled(
    line: Line, guessed_from_one_number: list[Placed]
) -> None:
    guesses = guessed_from_one_number
    detail = explain(line, *guesses)
    for call in guesses:
        assert call.events("caller_lookup") == [{"known": True}], detail
        assert not call.events("dossier_answer"), detail
        assert [q["reason"] for q in call.events("queued")] in (
            ["identification_failed"],
            ["identification_throttled"],
        ), detail

    # The right birth date, from the same number: refused, and nothing is even checked.
    [call] = place(line, Caller("guess-right", GUESSED.phone, [GUESSED.birth_keys]))
    detail = explain(line, call)
    assert call.events("caller_lookup") == [{"known": True}], detail
    assert call.events("identification") == [
        {"result": "throttled", "role": None, "usager_id": None, "by": "caller_number"}
    ], detail
    assert_handed_over(call, "identification_throttled", detail)
    assert [r.action for r in line.audit(call.call_id)] == ["find_by_phone"], detail
    assert all(c.sipp.returncode == 0 for c in (*guesses, call)), detail
    line.assert_log_clean()


def test_throttle_holds_for_the_same_number_written_otherwise(
    line: Line, guessed_from_one_number: list[Placed]
) -> None:
    international = "+33" + GUESSED.phone[1:]
    [call] = place(line, Caller("guess-e164", international, [GUESSED.birth_keys]))
    detail = explain(line, call)
    assert call.events("caller_lookup") == [{"known": True}], detail  # the same usager's number
    [ident] = call.events("identification")
    assert ident["by"] == "caller_number" and ident["result"] in ("ok", "throttled"), detail
    assert ident["result"] == "throttled", f"identified after {MAX_FAILURES} failures\n{detail}"
    assert_handed_over(call, "identification_throttled", detail)


def test_guesses_on_one_dossier_from_several_numbers_are_throttled(line: Line) -> None:
    # Two numbers, three wrong birth dates each on TARGET's dossier: below the per-number limit,
    # above the per-dossier one.
    numero = TARGET.numero_keys
    callers = [
        Caller(
            f"attack-{i}",
            number,
            [
                *attempt(numero, f"0{i + 1}011950"),
                *attempt(numero, f"0{i + 1}021951"),
                *attempt(numero, f"0{i + 1}031952"),
            ],
        )
        for i, number in enumerate(ATTACKERS[:2])
    ]
    attacks = place(line, *callers)
    detail = explain(line, *attacks)
    per_call = [[i["result"] for i in call.events("identification")] for call in attacks]
    assert all(len(r) == 3 and set(r) <= {"mismatch", "throttled"} for r in per_call), detail
    assert sum(r.count("mismatch") for r in per_call) >= MAX_FAILURES, detail
    for call in attacks:
        assert call.events("caller_lookup") == [{"known": False}], detail
        assert not call.events("dossier_answer"), detail

    # A third number, with the right birth date: the dossier is closed to guesses for now.
    [call] = place(line, Caller("attack-right", ATTACKERS[2], attempt(numero, TARGET.birth_keys)))
    detail = explain(line, call)
    assert call.events("caller_lookup") == [{"known": False}], detail
    assert call.events("identification") == [
        {"result": "throttled", "role": None, "usager_id": None, "by": "dossier_number"}
    ], detail
    assert_handed_over(call, "identification_throttled", detail)
    # Refused before any read of the dossier (only the caller-number lookup happened).
    assert [r.action for r in line.audit(call.call_id)] == ["find_by_phone"], detail
    assert all(c.sipp.returncode == 0 for c in (*attacks, call)), detail
    line.assert_log_clean()


@pytest.fixture(scope="module")
def carer_calls(line: Line) -> dict[str, Placed]:
    """The carer and the guardian of CARED ask, at the same time, when his APA is paid."""
    aidant, mandataire = place(
        line,
        Caller("aidant", AIDANT_PHONE, [CARED.birth_keys], dialled=PAYMENT_LINE),
        Caller("mandataire", MANDATAIRE_PHONE, [CARED.birth_keys], dialled=PAYMENT_LINE),
    )
    return {"aidant": aidant, "mandataire_judiciaire": mandataire}


def test_carer_and_guardian_are_told_what_their_role_allows(
    line: Line, carer_calls: dict[str, Placed]
) -> None:
    detail = explain(line, *carer_calls.values())
    usager = line.usagers[CARED.external_id]
    topics: dict[str, set[str]] = {}
    for role, call in carer_calls.items():
        assert call.events("caller_lookup") == [{"known": True}], detail
        assert call.events("identification") == [
            {"result": "ok", "role": role, "usager_id": usager, "by": "caller_number"}
        ], detail
        # Both hear an answer made from the dossier: the guardian the next payment, the carer
        # that payments are not for her role and that the person or their legal representative
        # may call (she is not handed over; the trail marks the refusal: see the test below).
        [answer] = call.events("dossier_answer")
        assert answer["intent"] == "paiement_date" and answer["spoken"] is True, detail
        [given] = call.events("answer")
        assert (given["prompt_id"], False) in call.prompts(), detail
        # What the store handed over for the answer is what the role may know.
        [snapshot] = [r for r in line.audit(call.call_id) if r.action == "snapshot"]
        assert snapshot.usager_id == usager and snapshot.detail["role"] == role, detail
        assert snapshot.detail["tiers_id"] is not None, detail
        topics[role] = set(snapshot.detail["topics"])
        assert call.sipp.returncode == 0, detail
    guardian = carer_calls["mandataire_judiciaire"]
    [answer] = guardian.events("dossier_answer")
    assert answer["handover"] is False and not guardian.events("queued"), detail
    assert guardian.events("hangup")[0]["cause"] == "satisfied", detail
    # A carer (default rights) is never given the payments, so no amount can be spoken to
    # her; the guardian acts for the person and is given everything.
    assert topics["aidant"] == {"status", "documents", "appointments"}, topics
    assert topics["mandataire_judiciaire"] == {
        "status",
        "documents",
        "decisions",
        "appointments",
        "payments",
    }, topics
    line.assert_log_clean()


def test_trail_shows_a_topic_refused_for_the_role(carer_calls: dict[str, Placed]) -> None:
    [refused] = carer_calls["aidant"].events("dossier_answer")
    [answered] = carer_calls["mandataire_judiciaire"].events("dossier_answer")
    assert refused["intent"] == answered["intent"] == "paiement_date", (refused, answered)
    assert refused["detail"] == "not_permitted:payments", (refused, answered)
    assert answered["detail"] == "" and not refused["handover"], (refused, answered)
