"""Who is calling, and what their dossier says: the call's bridge to the dossier store.

The flow's ``identify`` node asks the call to look the caller's number up, then to check a
dossier number and a birth date; its ``dossier_answer`` node asks for the spoken answer to an
intent. :class:`IdentityService` does that with the store's audited repository
(``callcenter/store/dossiers.py``, every read is audited with actor ``bot``), off the event loop,
and throttles guesses: after ``max_failures`` mismatches within ``window_s`` from one caller
number, or on one dossier, further attempts are refused (enumeration of dossiers or birth dates
by phone). Spoken answers come from the pure templates of ``faq/dossier.py``.

Nothing here logs a phone number, a name, a birth date or a dossier number.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from callcenter.store import dossiers as repo
from callcenter.store.audit import Via
from faq import dossier as spoken

DEFAULT_TZ = ZoneInfo("Europe/Paris")
_VIA = Via.BOT
_ACTOR = "bot"

_APPOINTMENT_KINDS = {
    "evaluation_domicile": spoken.AppointmentKind.EVALUATION_DOMICILE,
    "convocation_mdph": spoken.AppointmentKind.CONVOCATION_MDPH,
}


@dataclass(frozen=True, slots=True)
class Verification:
    """Outcome of a check of what the caller gave."""

    result: str
    """``ok``, ``mismatch`` or ``throttled``."""
    usager_id: int | None = None
    """The identified usager (``ok``)."""
    role: str | None = None
    """Who is calling for that usager: ``usager``, ``aidant``, ``mandataire_judiciaire``…"""
    tiers_id: int | None = None
    """The declared carer or guardian calling, if not the usager."""


def _numero_key(number: str) -> str:
    """A numéro as the store matches it: its digits if it has any (keypad or speech)."""
    return repo.numero_digits(number) or repo.normalize_numero(number)


_SWEEP_ABOVE = 10_000
"""Keys kept before expired ones are swept (memory stays bounded under enumeration)."""


class _Throttle:
    """Failures per key in a sliding window (in memory; one node)."""

    def __init__(self, max_failures: int, window_s: float, clock: Callable[[], float]) -> None:
        self._max = max_failures
        self._window = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str) -> deque[float]:
        times = self._failures[key]
        cutoff = self._clock() - self._window
        while times and times[0] < cutoff:
            times.popleft()
        return times

    def blocked(self, *keys: str | None) -> bool:
        blocked = False
        for key in keys:
            if key and key in self._failures:
                recent = self._recent(key)
                if not recent:
                    del self._failures[key]  # bounded memory under an enumeration attempt
                blocked = blocked or len(recent) >= self._max
        return blocked

    def fail(self, *keys: str | None) -> list[tuple[str, float]]:
        if len(self._failures) > _SWEEP_ABOVE:
            for stale in list(self._failures):
                if not self._recent(stale):
                    del self._failures[stale]
        now = self._clock()
        for key in keys:
            if key:
                self._recent(key).append(now)
        return [(key, now) for key in keys if key]

    def forgive(self, attempts: list[tuple[str, float]]) -> None:
        """Withdraw attempts counted by :meth:`fail` that turned out right."""
        for key, at in attempts:
            times = self._failures.get(key)
            if times is not None and at in times:
                times.remove(at)


class IdentityService:
    """Caller identification and spoken dossier answers for every call of the service."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_failures: int = 5,
        window_s: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        region: str = "FR",
    ) -> None:
        """Create the service.

        Args:
            engine: The store (the same database as the call trail).
            max_failures: Mismatches allowed per caller number, and per dossier, in ``window_s``.
            window_s: The throttling window.
            clock: Monotonic seconds (tests).
            region: Region of national phone numbers.
        """
        self.engine = engine
        self.region = region
        self._throttle = _Throttle(max_failures, window_s, clock)

    # -- identification ------------------------------------------------------------------------
    async def lookup_caller(self, caller: str | None, *, call_id: str) -> bool:
        """Whether the caller's number belongs to exactly one usager (theirs or a declared tiers).

        Args:
            caller: The caller's number as signalled (``From`` user part), if any.
            call_id: The SIP Call-ID (the audit's reason).
        """
        if not caller:
            return False
        refs = await asyncio.to_thread(
            repo.find_by_phone,
            self.engine,
            caller,
            actor=_ACTOR,
            reason=f"call {call_id}: caller lookup",
            via=_VIA,
            region=self.region,
        )
        return len({ref.usager_id for ref in refs}) == 1

    async def verify(
        self, caller: str | None, number: str | None, birth_date: str, *, call_id: str
    ) -> Verification:
        """Check a dossier number (or the caller's number) and a birth date ``JJMMAAAA``.

        Args:
            caller: The caller's number, if signalled.
            number: The dossier number typed or said, or None to use the caller's number.
            birth_date: ``JJMMAAAA`` (a real date, checked by the flow).
            call_id: The SIP Call-ID (the audit's reason).
        """
        # Keys as the store matches them, so that writing the same number otherwise
        # (0612..., +33612..., 0033612...) or the same numéro otherwise does not start afresh.
        caller_key = None
        if caller:
            caller_key = f"caller:{repo.normalize_phone(caller, self.region) or caller}"
        dossier_key = f"dossier:{_numero_key(number)}" if number else None
        if self._throttle.blocked(caller_key, dossier_key):
            return Verification("throttled")
        born = date(int(birth_date[4:]), int(birth_date[2:4]), int(birth_date[:2]))
        reason = f"call {call_id}: identification"
        # Every attempt counts as a failure *before* the store is asked, and is withdrawn if it
        # was right: parallel calls cannot all pass the check while the first ones are verified.
        attempts = self._throttle.fail(caller_key, dossier_key)
        usager_id, refs = await asyncio.to_thread(self._resolve, caller, number, reason)
        if usager_id is None:
            return Verification("mismatch")
        # The usager's own budget: guesses at one person's birth date are limited whichever
        # numbers they come from and whichever of their numéros is typed (or none).
        usager_key = f"usager:{usager_id}"
        if self._throttle.blocked(usager_key):
            return Verification("throttled")
        attempts += self._throttle.fail(usager_key)
        if not await asyncio.to_thread(
            repo.verify_birth_date,
            self.engine,
            usager_id,
            born,
            actor=_ACTOR,
            reason=reason,
            via=_VIA,
        ):
            return Verification("mismatch")
        self._throttle.forgive(attempts)
        # A declared carer or guardian calling from their own number is told what their
        # role allows; anyone else who knows the number and the birth date is the usager.
        tiers = next((r for r in refs if r.usager_id == usager_id and r.tiers_id is not None), None)
        if tiers is not None:
            return Verification("ok", usager_id, tiers.role.value, tiers.tiers_id)
        return Verification("ok", usager_id, repo.Role.USAGER.value)

    def _resolve(
        self, caller: str | None, number: str | None, reason: str
    ) -> tuple[int | None, list[repo.UsagerRef]]:
        """The usager the caller claims (by numéro, else by their number) and the number's refs."""
        refs: list[repo.UsagerRef] = []
        if caller:
            refs = repo.find_by_phone(
                self.engine, caller, actor=_ACTOR, reason=reason, via=_VIA, region=self.region
            )
        if number is not None:
            demande = repo.find_by_dossier_number(
                self.engine, number, actor=_ACTOR, reason=reason, via=_VIA
            )
            return (None if demande is None else demande.usager_id), refs
        usagers = {ref.usager_id for ref in refs}
        return (usagers.pop() if len(usagers) == 1 else None), refs

    # -- dossier answers -----------------------------------------------------------------------
    async def dossier_answer(
        self, who: Verification, intent: str, today: date, *, call_id: str
    ) -> spoken.SpokenAnswer | None:
        """The spoken answer to ``intent`` from the identified caller's dossier.

        Args:
            who: A successful :class:`Verification`.
            intent: The FAQ intent the caller asked about.
            today: The local date (dates are spoken relative to it).
            call_id: The SIP Call-ID (the audit's reason).

        Returns:
            The answer (it may ask for a person), or None when nothing can be said.
        """
        if who.result != "ok" or who.usager_id is None or who.role is None:
            return None
        snapshot = await asyncio.to_thread(
            repo.dossier_snapshot,
            self.engine,
            who.usager_id,
            role=repo.Role(who.role),
            tiers_id=who.tiers_id,
            actor=_ACTOR,
            reason=f"call {call_id}: {intent}",
            via=_VIA,
            today=today,
        )
        if snapshot is None:
            return None
        return spoken.answer(intent, dossier_view(snapshot), today)

    async def record_contact(
        self,
        *,
        sip_call_id: str,
        started_at: datetime,
        ended_at: datetime,
        who: Verification | None,
        bot_path: tuple[str, ...],
        intents: tuple[str, ...],
        outcome: str,
        summary: str | None = None,
    ) -> None:
        """Write the call into the usager's contact history (unidentified calls too).

        ``summary`` (what the caller said, :func:`contact_summary`) is erased with the
        transcripts after the retention period (:func:`repo.purge_contact_summaries`).
        """
        identified = who is not None and who.result == "ok"
        await asyncio.to_thread(
            repo.record_contact,
            self.engine,
            channel="bot" if bot_path else "telephone",
            started_at=started_at,
            ended_at=ended_at,
            sip_call_id=sip_call_id,
            usager_id=who.usager_id if identified and who else None,
            tiers_id=who.tiers_id if identified and who else None,
            handled_by="bot",
            bot_path=bot_path,
            intents=intents,
            summary=summary,
            outcome=outcome,
        )


SUMMARY_MAX = 500
"""Longest contact summary kept (characters)."""


def contact_summary(said: Sequence[str], limit: int = SUMMARY_MAX) -> str | None:
    """The contact's summary: what the caller said to the bot, in order, newest kept if too long.

    Args:
        said: The caller's utterances as transcribed.
        limit: Longest summary in characters.

    Returns:
        ``« first » · « second »``..., or None if the caller said nothing.
    """
    parts = [f"« {t.strip()} »" for t in said if t.strip()]
    if not parts:
        return None
    text = " · ".join(parts)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def dossier_view(snapshot: repo.DossierSnapshot, tz: ZoneInfo = DEFAULT_TZ) -> spoken.DossierView:
    """Map the store's snapshot onto the spoken templates' view (what the role may know).

    Args:
        snapshot: What the store returned for the caller's role.
        tz: Local time zone (appointment times are stored in UTC and spoken locally).
    """
    uid = str(snapshot.usager_id)
    demandes = tuple(_demande(uid, d) for d in snapshot.demandes or () if d.status is not None)
    payments = {
        (p.prestation, p.periode, p.date_paiement): _payment(uid, p)
        for p in (
            *(snapshot.recent_payments or ()),
            *(x for x in (snapshot.last_payment, snapshot.next_payment) if x is not None),
        )
    }
    appointments = tuple(
        spoken.AppointmentView(
            usager_id=uid,
            kind=_APPOINTMENT_KINDS.get(a.type, spoken.AppointmentKind.AUTRE),
            when=a.debut.astimezone(tz),
            place=a.lieu or "",
        )
        for a in snapshot.appointments or ()
    )
    return spoken.DossierView(
        usager_id=uid,
        role=spoken.Role(snapshot.role.value),
        permissions=frozenset(spoken.Permission(t.value) for t in snapshot.topics),
        demandes=demandes,
        payments=tuple(payments.values()),
        appointments=appointments,
    )


def _demande(uid: str, d: repo.DemandeSnapshot) -> spoken.DemandeView:
    assert d.status is not None
    decision = None
    if d.decisions:
        last = d.decisions[0]  # the snapshot lists decisions newest first
        decision = spoken.Decision(
            sens=spoken.DecisionSens(last.sens),
            decided_on=last.date_decision,
            start=last.date_debut,
            end=last.date_fin,
            sans_limitation=last.sans_limitation,
            monthly_amount_cents=last.montant_cents,
        )
    return spoken.DemandeView(
        usager_id=uid,
        type=d.type,
        numero=d.numero,
        status=d.status.code,
        status_date=d.status.date,
        history=tuple(spoken.StatusChange(s.code, s.date) for s in d.history),
        missing_documents=tuple(
            spoken.MissingDocument(m.piece, m.date_demande) for m in d.missing_documents or ()
        ),
        decision=decision,
    )


def _payment(uid: str, p: repo.PaymentInfo) -> spoken.PaymentView:
    last_day = calendar.monthrange(p.periode.year, p.periode.month)[1]
    motif = None
    if p.motif_ecart:
        try:
            motif = spoken.PaymentMotif(p.motif_ecart)
        except ValueError:
            motif = None
    return spoken.PaymentView(
        usager_id=uid,
        prestation=p.prestation,
        period_start=p.periode.replace(day=1),
        period_end=p.periode.replace(day=last_day),
        date=p.date_paiement,
        amount_cents=p.montant_verse_cents
        if p.montant_verse_cents is not None
        else p.montant_brut_cents,
        status=spoken.PaymentStatus(p.statut),
        motif_ecart=motif,
    )
