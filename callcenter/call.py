"""One call's life, top to bottom: answer → flow → (queue) → hang-up.

This is the module to open first. A :class:`Call` is created by the application when the SIP
engine reports an :class:`~callcenter.sip.events.IncomingCall`. Its :meth:`Call.run` owns one
``asyncio.TaskGroup`` with the call's tasks (RTP receive + paced send, media pipeline, watchdog)
and a control loop that feeds every input — SIP events, keypad digits, prompt notifications,
timeouts — to the pure flow interpreter (``ivr_flows.step``) and performs the actions it returns.
Everything the call does is appended to the event trail (``callcenter.store.trail``).

Inputs reach the control loop through one queue, so the flow sees a single ordered stream of
events and no two handlers ever race on the call's state.

Queue and agent (issue 5): when the flow hands the call to a queue (``QueueCall``) and the
service routes calls (``CallServices.routing``) for that skill, the call joins the router
(``CallQueued``) and *waits* instead of letting the flow hang up: the holding message, then the
estimated-wait range (``routing.estimate``: "moins de 2 minutes"... never a precise promise),
then ``routing.announce_interval_s`` of hold music (or silence), the range again, and so on.
When the router offers the call to an agent, a :class:`~callcenter.webrtc.leg.WebRtcLeg` rings
the agent's browser softphone when their panel is open (issue 6: the ``ring`` carries the screen
pop, :meth:`Call.screen_pop`), otherwise an :class:`~callcenter.agent_leg.AgentLeg` rings the
agent's SIP phone; answered, both legs are bridged (two
:class:`~callcenter.media.relay.AudioRelay`, keys re-sent as RFC 4733 to the other leg). Busy or
declined → ``OfferRejected``, unreachable → ``OfferTimedOut``, the router's ring timeout →
CANCEL. The caller hanging up while waiting is ``CallerHungUp`` (abandoned), while bridged
``CallEnded`` (the agent goes to wrap-up) and a BYE to the agent; the agent hanging up is
``CallEnded``, a short goodbye to the caller, then BYE. A queue that is closed, full or waited
out ends the wait with a French message, then the flow goes on (the queue node's ``next``, or
hang-up). When no agent who could take the call is logged in at all (paused and busy agents
count), the call does not queue: the flow goes on as without routing (``queue_unstaffed`` in the
trail).

A caller whose number (as E.164) started another call within the routing config's
``repeat_caller_window`` is a repeat caller: the call trail is asked in a worker thread when the
call joins (``CallTrail.last_call_from``), the router raises the priority, and ``queue_joined``
says ``repeat``; a store error means "not a repeat caller". While bridged, the caller's hold and
resume (re-INVITE ``a=sendonly``/``inactive``, then ``a=sendrecv``) reach the agent's phone
(``AgentLeg.hold``/``resume``; ``caller_hold``/``caller_resume`` in the trail), and a watchdog
hangs up an agent phone that sends no RTP for ``rtp.inactivity_timeout`` while it should
(``agent_lost``): the caller hears a short apology and the call ends as if the agent hung up.

Voice bot: when the service has a speech recogniser, the pipeline is
``DtmfAggregator → SpeechRecognizer → PromptPlayer`` and the caller's audio goes to the
recogniser only while the flow listens (``ask``/``confirm`` nodes). A transcript is understood
by the service's :class:`~callcenter.bot.VoiceBot` (FAQ matcher, dialogue commands, yes/no) and
given to the flow as ``SpeechHeard``; the trail keeps the transcript (erased after the retention
period), the decision and the answer given.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
import unicodedata
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.exc import SQLAlchemyError

import ivr_flows
import routing
from callcenter import sdp
from callcenter.agent_leg import (
    AgentLeg,
    Dialer,
    Leg,
    LegAnswered,
    LegDtmf,
    LegEnded,
    LegEvent,
    LegFailed,
    LegHold,
    LegRinging,
    LegTransferRequested,
    MediaEvent,
    PcmAudio,
    caller_id_display,
)
from callcenter.bot import VoiceBot
from callcenter.callbacks import CallbackService, dial_string
from callcenter.config import Config
from callcenter.identity import IdentityService, Verification, contact_summary
from callcenter.media.asr.base import AsrService
from callcenter.media.frames import (
    DTMF_DIGITS,
    AudioFrame,
    CollectDigitsFrame,
    DigitsCollectedFrame,
    DigitsTimeoutFrame,
    DtmfFrame,
    Frame,
    ListenFrame,
    PlayPromptFrame,
    PromptFinishedFrame,
    PromptStartedFrame,
    SpeechStartedFrame,
    SpeechTimeoutFrame,
    StopListeningFrame,
    StopPromptFrame,
    TranscriptFrame,
)
from callcenter.media.pipeline import Pipeline
from callcenter.media.processors.dtmf_aggregator import DtmfAggregatorProcessor
from callcenter.media.processors.prompt_player import PromptPlayerProcessor
from callcenter.media.processors.speech_recognizer import SpeechRecognizerProcessor
from callcenter.media.relay import AudioRelay
from callcenter.media.tts.espeak import EspeakTts, TtsError
from callcenter.media.tts.prompt_cache import PromptCache, PromptSpec
from callcenter.metrics import Metrics
from callcenter.routing_service import RoutingBackend
from callcenter.rtp.codecs.base import get_codec
from callcenter.rtp.session import AudioReceived, RtpEvent, RtpSession
from callcenter.sip import events as sip_events
from callcenter.sip.engine import CallState
from callcenter.softphone import SoftphoneHub
from callcenter.store.callbacks import callback_number_allowed
from callcenter.store.dossiers import normalize_phone
from callcenter.store.trail import CallTrail
from callcenter.transfer import (
    TransferError,
    TransferKind,
    TransferPolicy,
    TransferTarget,
    target_from_refer_user,
)
from callcenter.transport.rtp_udp import RtpEndpoint
from callcenter.transport.sip_udp import SipUdpTransport
from callcenter.webrtc.leg import WebRtcLeg
from routing.callbacks import CallbackError, Slot
from routing.estimate import SPOKEN_BUCKETS, HandleTimes, estimate_for_call

logger = logging.getLogger(__name__)


class CallLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with ``[call-id]`` (never a phone number)."""

    def process(
        self, msg: str, kwargs: MutableMapping[str, Any]
    ) -> tuple[str, MutableMapping[str, Any]]:
        return f"[{self.extra['call_id'] if self.extra else '?'}] {msg}", kwargs


@dataclass(frozen=True, slots=True)
class _Timeout:
    """A watchdog decided the call must end."""

    cause: str


@dataclass(frozen=True, slots=True)
class _Dtmf:
    """A keypad digit, from RTP (RFC 4733) or SIP INFO."""

    digit: str
    method: str


@dataclass(frozen=True, slots=True)
class _FlowEvent:
    """An answer of the call to the flow (caller lookup, identity check, dossier answer)."""

    event: ivr_flows.Event


@dataclass(frozen=True, slots=True)
class _Routing:
    """A decision of the router about this call."""

    decision: routing.Decision


@dataclass(frozen=True, slots=True)
class _WaitTick:
    """Time to announce the estimated wait again."""


@dataclass(frozen=True, slots=True)
class _AgentKey:
    """A key the agent pressed (RFC 4733 on the agent leg)."""

    leg: Leg
    digit: str


@dataclass(frozen=True, slots=True)
class _GoodbyeDone:
    """The goodbye after the agent hung up has been played."""


@dataclass(frozen=True, slots=True)
class _AgentLost:
    """The agent's phone sent no RTP for ``rtp.inactivity_timeout`` while bridged."""

    leg: Leg
    silent_s: float


@dataclass(frozen=True, slots=True)
class _CallbackTimeout:
    """The caller did not answer a callback question in time."""

    token: int


@dataclass(frozen=True, slots=True)
class _TransferAsked:
    """An agent asked, through the agent API, to transfer this call (``Call.transfer``)."""

    agent_id: str
    target: TransferTarget
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True)
class _ConsultAsked:
    """An agent asked to consult a colleague or a number, complete or cancel (``Call.consult``)."""

    agent_id: str
    action: str
    """``start``, ``complete`` or ``cancel``."""
    target: TransferTarget | None
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Consult:
    """A consultation in progress: the caller on hold, the agent talking with ``leg``."""

    agent_id: str
    """The agent who consults (A)."""
    target: TransferTarget
    leg: Leg
    """The colleague's phone or browser, or the external number."""
    connected: bool = False
    completed: bool = False
    """The caller was handed to ``leg``: its media now goes to and from the caller."""
    to_target: AudioRelay = field(default_factory=AudioRelay)
    to_agent: AudioRelay = field(default_factory=AudioRelay)


@dataclass(frozen=True, slots=True)
class _TransferRingOut:
    """The external number of a transfer did not answer in time."""

    leg: Leg


_Input = (
    sip_events.SipEvent
    | Frame
    | _Timeout
    | _Dtmf
    | _FlowEvent
    | _Routing
    | _WaitTick
    | _AgentKey
    | _GoodbyeDone
    | _AgentLost
    | _CallbackTimeout
    | _TransferAsked
    | _ConsultAsked
    | _TransferRingOut
    | LegEvent
)

_TRANSFER_TIMEOUT_S = 5.0
"""How long the agent API waits for the call to take a transfer request."""
_TRANSFER_PROMPTS = frozenset(
    {"routing_transfer", "routing_transfer_number", "routing_transfer_failed"}
)
"""Said before waiting again after a transfer (then the estimate, then the music)."""
_SIP_STATUS_OF_REFUSAL = {400: 400, 403: 403, 404: 404, 409: 480}
"""A refused transfer's status (callcenter.transfer) as the SIP status of the final NOTIFY."""

# Messages of the waiting experience (French, rendered at start-up with the flows' prompts).
# The estimates say ranges, never a precise time (routing.estimate picks the bucket).
WAIT_PROMPTS: tuple[str, ...] = (
    "routing_wait_lt2",
    "routing_wait_2_5",
    "routing_wait_5_10",
    "routing_wait_gt10",
)
"""Prompt ids of the spoken buckets, in the order of ``routing.estimate.SPOKEN_BUCKETS``."""
HOLD_MUSIC_PROMPT = "routing_hold_music"
"""Prompt id of the hold music (``routing.hold_music``), when configured."""
ROUTING_PROMPTS: tuple[PromptSpec, ...] = (
    (
        "routing_wait_lt2",
        "Votre temps d'attente est estimé à moins de deux minutes. Merci de rester en ligne.",
        None,
    ),
    (
        "routing_wait_2_5",
        "Votre temps d'attente est estimé entre deux et cinq minutes. Merci de rester en ligne.",
        None,
    ),
    (
        "routing_wait_5_10",
        "Votre temps d'attente est estimé entre cinq et dix minutes. Merci de rester en ligne.",
        None,
    ),
    (
        "routing_wait_gt10",
        "Votre temps d'attente pourrait dépasser dix minutes. Merci de rester en ligne, "
        "ou de rappeler un peu plus tard.",
        None,
    ),
    (
        "routing_closed",
        "Nos conseillers ne sont pas disponibles en ce moment : le service est fermé.",
        None,
    ),
    (
        "routing_full",
        "Tous nos conseillers sont occupés, et nous ne pouvons pas vous faire patienter "
        "davantage. Merci de rappeler un peu plus tard.",
        None,
    ),
    (
        "routing_max_wait",
        "Nous sommes désolés, aucun conseiller n'a pu prendre votre appel. "
        "Merci de rappeler un peu plus tard.",
        None,
    ),
    (
        "routing_agent_gone",
        "Votre conseiller a terminé l'appel. Merci de votre appel, et au revoir.",
        None,
    ),
    (
        "routing_agent_lost",
        "La communication avec votre conseiller a été coupée. Nous sommes désolés. "
        "Merci de rappeler si besoin, au revoir.",
        None,
    ),
    (
        "routing_transfer",
        "Votre conseiller vous transfère vers un autre conseiller. Merci de patienter.",
        None,
    ),
    (
        "routing_transfer_number",
        "Votre conseiller vous transfère vers un autre service. Merci de patienter.",
        None,
    ),
    (
        "routing_transfer_failed",
        "Ce service ne peut pas vous répondre pour le moment. Nous vous remettons en attente "
        "d'un conseiller.",
        None,
    ),
    (
        "routing_transfer_ended",
        "Votre correspondant a terminé l'appel. Merci de votre appel, et au revoir.",
        None,
    ),
)
"""The waiting experience's prompts: (id, French text, no recording)."""
_AHEAD_WORDS = ("deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf")
POSITION_PROMPTS: tuple[PromptSpec, ...] = (
    ("routing_ahead_0", "Vous êtes le premier en attente.", None),
    ("routing_ahead_1", "Une personne attend avant vous.", None),
    *(
        (f"routing_ahead_{n}", f"{word.capitalize()} personnes attendent avant vous.", None)
        for n, word in enumerate(_AHEAD_WORDS, start=2)
    ),
    ("routing_ahead_many", "Plus de neuf personnes attendent avant vous.", None),
)
"""How many callers wait ahead, said before the wait range (a fact of the moment: a caller of
higher priority may still come first, so it is never said as a promise)."""


def position_prompt(position: int) -> str:
    """The prompt id saying how many callers wait ahead of ``position`` (1-based)."""
    ahead = max(0, position - 1)
    return f"routing_ahead_{ahead}" if ahead <= len(_AHEAD_WORDS) + 1 else "routing_ahead_many"


CALLBACK_PROMPTS: tuple[PromptSpec, ...] = (
    (
        "callback_offer",
        "Pour être rappelé sans perdre votre place, appuyez sur 0 ou dites rappel.",
        None,
    ),
    (
        "callback_type",
        "Tapez sur votre clavier le numéro auquel nous pouvons vous rappeler, puis la touche "
        "dièse.",
        None,
    ),
    ("callback_bad_number", "Ce numéro n'est pas valide.", None),
    (
        "callback_kept",
        "C'est noté. Nous vous rappellerons dès qu'un conseiller sera disponible, sans que vous "
        "perdiez votre place. Vous pouvez raccrocher. Au revoir.",
        None,
    ),
    (
        "callback_booked",
        "C'est noté. Nous vous rappellerons pendant le créneau choisi. Au revoir.",
        None,
    ),
    ("callback_stay", "Très bien, vous restez en ligne.", None),
    (
        "callback_error",
        "Nous n'avons pas pu enregistrer votre demande de rappel. Nous en sommes désolés.",
        None,
    ),
    ("callback_declined", "Très bien. Merci de rappeler un peu plus tard. Au revoir.", None),
)
"""Prompts of the callback request (rendered with the routing prompts when callbacks are on)."""
_CALLBACK_ANSWER_S = 10.0
"""Seconds to answer a callback question after it was asked (then asked again, twice)."""
_CALLBACK_TYPE_S = 20.0
"""Seconds to type the number (from the question, then from each key)."""
_CALLBACK_ASKS = 3
"""A callback question is asked at most this many times without an answer."""
_CALLBACK_TYPE_TRIES = 3
"""Invalid numbers typed before the request is given up."""
_LEAVE_PROMPTS = {
    "closed": "routing_closed",
    "full": "routing_full",
    "max_wait": "routing_max_wait",
}
_REPEAT_LOOKUP_TIMEOUT_S = 2.0
"""How long the repeat-caller lookup may delay joining the queue (then: not a repeat caller)."""
_MENU_PATH_MAX = 50
"""Flow nodes kept for the screen pop (a looping menu must not grow it without bound)."""
_REPLY_WINDOW_S = 30.0
"""A reply later than this after the caller's turn is not a reply to it (not measured)."""
_VOICED_PEAK = 300
"""A 20 ms frame whose peak exceeds this (PCM16) counts as voiced in the bridge statistics."""


@dataclass(frozen=True, slots=True)
class CallServices:
    """What a call needs from the application (explicit objects, no globals)."""

    config: Config
    sip: SipUdpTransport
    flows: Callable[[str], ivr_flows.Flow]
    prompts: PromptCache
    trail: CallTrail
    metrics: Metrics
    bot: VoiceBot | None = None
    """The FAQ side of the voice bot (the version in service when the call started)."""
    asr: AsrService | None = None
    """Speech recognition shared by all calls; None: keypad only (``asr.engine = none``)."""
    identity: IdentityService | None = None
    """Caller identification and dossier answers; None: the flow's checks always fail."""
    tts: tuple[EspeakTts, EspeakTts] | None = None
    """Normal and slow voices, for texts made during the call (dossier answers)."""
    routing: RoutingBackend | None = None
    """The router of queued calls; None: a queue node only plays its holding message."""
    dialer: Dialer | None = None
    """Places the agent legs (the service)."""
    agent_uri: Callable[[str], Awaitable[str | None]] | None = None
    """An agent's SIP URI from their login (the agents store)."""
    handle_times: Mapping[str, HandleTimes] = field(default_factory=dict)
    """Recent handle times per queue, for the wait estimates."""
    callbacks: CallbackService | None = None
    """Callbacks ("rappel"); None: not offered."""
    softphones: SoftphoneHub | None = None
    """Agents' browser softphones (the panel); None: agents are rung on their SIP phones only."""


@dataclass(slots=True)
class _CallbackDialog:
    """Where the caller stands in a callback request (see ``Call._callback_input``)."""

    mode: str
    """``keep_place`` (while waiting) or ``slot`` (closed, full, waited out, unstaffed)."""
    step: str
    """``slots_pending`` (after the holding message), ``slots``, ``confirm``, ``type``,
    ``saving``, ``done`` (confirmation playing, then hang-up), ``leaving``."""
    phone: str | None = None
    """The number to confirm, E.164 (never logged or recorded)."""
    slots: list[Slot] = field(default_factory=list)
    slot: Slot | None = None
    typed: str = ""
    bad_numbers: int = 0
    asks: int = 0
    question: str | None = None
    """Prompt id of the question being asked."""
    reason: str = ""
    """Why slots are offered (``closed``, ``full``, ``max_wait``, ``unstaffed``)."""


# Words a grammar-capable engine (Vosk) expects for a yes/no question.
YES_NO_WORDS: tuple[str, ...] = (
    "oui", "non", "ouais", "si", "d'accord", "exactement", "voilà", "pas", "du", "tout",
    "je", "ne", "sais", "répéter", "répétez", "conseiller", "plus", "lentement", "[unk]",
)  # fmt: skip


# Words a grammar-capable engine (Vosk) expects while the caller waits for an agent.
WAIT_WORDS: tuple[str, ...] = (
    "rappel", "rappeler", "rappelez", "moi", "répéter", "répétez", "s'il", "vous", "plaît",
    "[unk]",
)  # fmt: skip
_WAIT_LISTEN_S = 600.0
"""One wait listen lasts this long without speech (then another starts)."""


def _priority(name: str | None) -> routing.Priority:
    """The queue priority a flow's ``queue`` node names; an unknown or missing one is normal."""
    try:
        return routing.Priority.parse(name or "normal")
    except ValueError:
        return routing.Priority.NORMAL


def _callback_number(raw: str | None) -> str | None:
    """A number we may call back, in E.164, or None.

    French fixed or mobile numbers only: never premium rate, international or satellite ones
    (a caller must not be able to make the service dial them).
    """
    phone = normalize_phone(raw) if raw else None
    return phone if phone is not None and callback_number_allowed(phone) else None


def _folded(text: str) -> str:
    """Lower case without accents: "Répétez" → "repetez"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


class Call:
    """One inbound call, from the INVITE to the end of the dialog."""

    def __init__(self, *, incoming: sip_events.IncomingCall, services: CallServices) -> None:
        """Prepare a call; nothing is sent until :meth:`run`."""
        self.incoming = incoming
        self.call_id = incoming.call_id
        self.services = services
        self.log = CallLogger(logger, {"call_id": self.call_id})
        self._inputs: asyncio.Queue[_Input] = asyncio.Queue()
        self._config = services.config
        self._dialled = incoming.request_uri_user or ""
        self.flow_id = self._config.flows.flow_for(self._dialled)
        self._flow: ivr_flows.Flow | None = None
        self._flow_state: ivr_flows.FlowState | None = None
        self._rtp: RtpEndpoint | None = None
        self._sdp_version = 1
        self._media: sdp.NegotiatedMedia | None = None
        self._pending_offer: sdp.SessionDescription | None = None
        self._media_since = 0.0
        self._sdp_session_id = secrets.randbelow(2**31)
        self._queued = False
        self._answered_at: float | None = None
        self._ended = False
        self._created_at = services.sip.now()
        self._started_utc = datetime.now(UTC)
        self._player: PromptPlayerProcessor | None = None
        self._cut_prompt: str | None = None
        self._pipeline: Pipeline | None = None
        self._recognizer: SpeechRecognizerProcessor | None = None
        self._bot = services.bot
        self._grammar = "open"  # of the current Listen
        self._listen_fallback: float | None = None  # no recogniser: digits' timeout instead
        self._slow = False
        self._bot_used = False
        self._handed_over = False
        self._audio_pts = 0
        self._who: Verification | None = None
        self._own_prompts: list[str] = []
        self._bot_path: list[str] = []
        self._reply_from: float | None = None
        """Loop time of the end of the caller's last spoken turn, until the bot's reply starts."""
        self._typing_number = False
        """The flow collects several keys (a date, a number): they are masked in the trail."""
        self._intents: list[str] = []
        self._answered: list[str] = []
        """Intents the bot answered in this call (FAQ answers and dossier answers)."""
        self._said: list[str] = []
        """What the caller said to the bot (the contact's summary; erased after retention)."""
        # Queue and agent (see the module docstring).
        self._tg: asyncio.TaskGroup | None = None
        self._routing_state = "none"  # none, waiting, offered, bridged, leaving, goodbye, done
        self._queue_name: str | None = None
        self._unlisten: Callable[[], None] | None = None
        self._leg: Leg | None = None
        self._old_legs: list[Leg] = []
        self._menu_path: list[str] = []  # flow nodes entered (the screen pop's "parcours")
        self._handoff_reason: str | None = None
        self._held_relays: tuple[AudioRelay | None, AudioRelay | None] | None = None
        self._last_offer: routing.OfferCall | None = None
        self._consult: _Consult | None = None
        self._handover_to: str | None = None  # a consulted colleague the router must offer to
        self._announcer: asyncio.Task[None] | None = None
        self._waiting_prompt: str | None = None  # of ours, playing while waiting
        self._to_agent: AudioRelay | None = None
        self._to_caller: AudioRelay | None = None
        self._relay_stats = {"to_agent": [0, 0], "to_caller": [0, 0]}  # frames, voiced
        self._goodbye: bytes | None = None
        self._goodbye_at = 0
        self._agent_answered = False
        self._repeat = False  # the same number called within the repeat-caller window
        self._caller_held = False  # the caller's last re-INVITE put us on hold
        self._goodbye_cause = "agent_hangup"
        self._agent_watch: asyncio.Task[None] | None = None
        self._cb: _CallbackDialog | None = None
        self._cb_token = 0
        self._cb_timer: asyncio.Task[None] | None = None
        self._offer_callback = False  # the estimate is long: the next announcement offers it
        self._queue_priority: str | None = None  # of the QueueCall (a slot callback keeps it)
        self._queue_intent: str | None = None
        self._external = False  # self._leg is a transfer's external number, not an agent
        self._wait_listening = False  # a ListenFrame for "rappel" / "répéter" is open
        self._wait_barged = False  # the caller's speech cut a waiting prompt or the music
        self._transfer_timer: asyncio.Task[None] | None = None

    # -- inputs from the application (sync, never block) -----------------------------------
    def on_sip_event(self, event: sip_events.SipEvent) -> None:
        """Called by the application for every SIP event of this call."""
        if isinstance(event, sip_events.DtmfInfoReceived):
            if event.digit in DTMF_DIGITS:  # anything else in an INFO body is ignored
                self._inputs.put_nowait(_Dtmf(event.digit, "info"))
        elif isinstance(event, sip_events.TransferRequested):
            # A caller's phone asking us to transfer it elsewhere: the engine has answered 202
            # (RFC 3515 section 2.4.2); the final NOTIFY says no at once (603), rather than let
            # the subscription time out. Only agents transfer callers.
            self._record("transfer_refused", side="caller", status=603)
            sip = self.services.sip
            sip.engine.notify_transfer(self.call_id, 603, None, sip.now(), refer_id=event.refer_id)
            sip.flush()
        else:
            self._inputs.put_nowait(event)

    def _on_rtp_event(self, event: RtpEvent) -> None:
        if isinstance(event, AudioReceived) and self._to_agent is not None:
            pcm = event.pcm
            self._count("to_agent", pcm)
            self._to_agent.push(pcm)
        elif isinstance(event, AudioReceived):
            recognizer = self._recognizer
            if recognizer is not None and recognizer.wants_audio and self._pipeline is not None:
                pcm = event.pcm
                # Not flushed by barge-in: the recogniser needs every frame of the utterance.
                self._pipeline.queue_frame_nowait(AudioFrame(pcm, 8000, 1, self._audio_pts))
                self._audio_pts += len(pcm) // 2
        elif event.digit in DTMF_DIGITS:
            self._inputs.put_nowait(_Dtmf(event.digit, "rfc4733"))

    def _on_media_frame(self, frame: Frame) -> None:
        if isinstance(frame, PromptStartedFrame):
            if self._reply_from is not None:
                # The caller's silence after their turn: recognition, understanding, the
                # answer's synthesis and the first frame's pacing.
                reply_from, self._reply_from = self._reply_from, None
                waited = asyncio.get_running_loop().time() - reply_from
                if waited <= _REPLY_WINDOW_S:
                    self.services.metrics.bot_replied(waited)
            return
        if isinstance(
            frame,
            PromptFinishedFrame
            | DigitsCollectedFrame
            | DigitsTimeoutFrame
            | TranscriptFrame
            | SpeechTimeoutFrame,
        ):
            self._inputs.put_nowait(frame)

    # -- helpers ---------------------------------------------------------------------------
    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _flow_now(self) -> datetime:
        return self._config.flows.fixed_now() or datetime.now(UTC)

    def _sip(self, command: Callable[[float], None]) -> None:
        """Run one engine command with the engine's clock, then flush the transport."""
        sip = self.services.sip
        command(sip.now())
        sip.flush()

    def _record(self, type_: str, **data: Any) -> None:
        self.services.trail.record(self.call_id, type_, data, self._now())

    def _local_host(self) -> str:
        cfg = self._config
        return cfg.sip.advertised_host or cfg.rtp.host or cfg.sip.host

    # -- the call's life -------------------------------------------------------------------
    async def run(self) -> None:
        """Answer, run the flow until either side hangs up, and record everything."""
        services = self.services
        metrics = services.metrics
        incoming = self.incoming
        services.trail.call_started(
            self.call_id,
            dialled=self._dialled,
            caller=incoming.caller_user,
            flow_id=self.flow_id,
            at=self._now(),
        )
        metrics.call_started()
        outcome, cause, side = "failed", "error", "service"
        try:
            outcome, cause, side = await self._run()
        except asyncio.CancelledError:
            # Service shutdown: hang up politely, record, and let the cancellation propagate.
            self._abort(503)
            outcome, cause, side = (
                "completed" if self._answered_at else "failed",
                "shutdown",
                "service",
            )
            raise
        except Exception:
            self.log.exception("call failed")
            self._abort(500)
        finally:
            if self._rtp is not None:
                self._rtp.close()
                metrics.rtp_lost_packet(self._rtp.session.stats.packets_lost)
                metrics.rtp_received_packet(self._rtp.session.stats.packets_received)
                metrics.rtp_late_frame(self._rtp.session.stats.packets_late)
            if self._player is not None:
                metrics.prompt_underrun(self._player.underruns)
            if self._cut_prompt is not None:  # a prompt cut short by the hang-up
                self._record_prompt(self._cut_prompt, True)
            try:
                await self._leave_routing()
            except Exception:  # the trail and the caller's end must still be recorded
                self.log.exception("leaving the queue failed")
            if self._queued and outcome == "completed" and not self._agent_answered:
                outcome = "queued"
            if self._bot_used:
                if self._handed_over:
                    bot_result = "handed_over"
                elif cause == "satisfied":
                    bot_result = "contained"
                else:
                    bot_result = "abandoned"
                metrics.bot_call(bot_result)
                metrics.bot_intents(self._answered, bot_result)
            metrics.call_ended(outcome, self.services.sip.now() - self._created_at)
            self._record("hangup", cause=cause, side=side)
            for prompt_id in self._own_prompts:
                services.prompts.discard(prompt_id)
            await self._record_contact(outcome, cause)
            services.trail.call_ended(
                self.call_id, outcome=outcome, cause=cause, side=side, at=self._now()
            )

    def _abort(self, status: int) -> None:
        """End the call from our side, whatever its stage: BYE once answered, else ``status``."""
        if self._ended:
            return
        engine = self.services.sip.engine
        if self._answered_at is not None:
            self._sip(lambda now: engine.hangup(self.call_id, now))
        else:
            self._sip(lambda now: engine.reject(self.call_id, status, now))

    def _refuse(
        self, status: int, cause: str, *, reason: str | None = None
    ) -> tuple[str, str, str]:
        """Answer the INVITE with an error and end the call (before any answer)."""
        engine = self.services.sip.engine
        self._sip(lambda now: engine.reject(self.call_id, status, now, reason=reason))
        self._ended = True
        return "failed", cause, "service"

    async def _run(self) -> tuple[str, str, str]:
        cfg = self._config
        engine = self.services.sip.engine
        try:
            self._flow = self.services.flows(self.flow_id)
        except KeyError:
            self.log.error("no flow %r for this number", self.flow_id)
            return self._refuse(404, "no_flow")

        # Media first: the answer SDP carries our RTP port.
        offer: sdp.SessionDescription | None = None
        if self.incoming.sdp_offer:
            try:
                offer = sdp.SessionDescription.parse(self.incoming.sdp_offer)
            except sdp.SdpParseError as exc:
                self.log.info("bad SDP offer: %s", _redacted(exc))
                return self._refuse(400, "bad_sdp", reason="Bad SDP")

        # The port must be bound before we can answer; the session gets its codec from the answer.
        placeholder = RtpSession(codec=get_codec("PCMU"), remote_address=None)
        rtp_host = cfg.rtp.host or cfg.sip.host
        self._rtp = await RtpEndpoint.open(
            rtp_host, cfg.rtp.port_min, cfg.rtp.port_max, session=placeholder
        )
        our_offer: sdp.SessionDescription | None = None
        if offer is not None:
            try:
                body = bytes(self._negotiate(offer).answer)
            except sdp.SdpNegotiationError as exc:
                self.log.info("SDP offer refused: %s", _redacted(exc))
                return self._refuse(488, "no_common_codec")
        else:
            # Delayed offer (RFC 3261 section 13.2.1, RFC 3264 section 5): our offer goes in
            # the 200 OK and the caller's answer comes back in the ACK.
            our_offer = self._offer(("PCMU", "PCMA"), 101, sdp.Direction.SENDRECV)
            body = bytes(our_offer)

        if cfg.sip.answer_delay > 0:
            self._sip(lambda now: engine.ring(self.call_id, now))
            ended = await self._wait_before_answer(cfg.sip.answer_delay)
            if ended is not None:
                return ended
        if engine.call_state(self.call_id) is not CallState.INCOMING:
            # Cancelled while we prepared the answer (e.g. INVITE and CANCEL back to back):
            # the events saying so are queued.
            while not self._inputs.empty():
                ended = self._ending(self._inputs.get_nowait())
                if ended is not None:
                    return ended
            self._ended = True
            return "cancelled", "cancel", "caller"
        self._sip(lambda now: engine.answer(self.call_id, body, now))
        self._answered_at = self.services.sip.now()
        if our_offer is not None:
            ended = await self._await_answer_in_ack(our_offer)
            if ended is not None:
                return ended
        assert self._media is not None
        self._record("answered", codec=self._media.codec)

        player = PromptPlayerProcessor(self.services.prompts)
        self._player = player
        recognizer = (
            SpeechRecognizerProcessor(self.services.asr)
            if self.services.asr is not None and self._bot is not None
            else None
        )
        self._recognizer = recognizer
        processors = [DtmfAggregatorProcessor(), *([recognizer] if recognizer else []), player]
        pipeline = Pipeline(
            processors,
            on_output=self._on_media_frame,
            logger=self.log,
            name=f"pipeline-{self.call_id}",
        )
        self._pipeline = pipeline
        rtp = self._rtp
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            tasks = [
                tg.create_task(pipeline.run(), name=f"pipeline-{self.call_id}"),
                tg.create_task(
                    rtp.run(self._caller_source, self._on_rtp_event), name=f"rtp-{self.call_id}"
                ),
                tg.create_task(self._watchdog(rtp), name=f"watchdog-{self.call_id}"),
            ]
            try:
                return await self._control_loop(pipeline)
            finally:
                self._cut_prompt = player.playing  # before the pipeline's teardown resets it
                self._tg = None
                for task in tasks:
                    task.cancel()
                for leg in (self._leg, *self._old_legs):
                    if leg is not None:
                        leg.stop_media()  # ends its media task, if any
                if self._consult is not None:
                    self._consult.leg.stop_media()
                # Every timer of this call: the task group would otherwise wait for them before
                # the router hears that the caller left.
                self._stop_announcer()
                if self._agent_watch is not None:
                    self._agent_watch.cancel()
                self._cb_stop_timer()
                self._stop_transfer_timer()

    def _negotiate(self, offer: sdp.SessionDescription) -> sdp.NegotiatedMedia:
        assert self._rtp is not None
        media = sdp.negotiate(
            offer,
            local_address=self._local_host(),
            local_port=self._rtp.local_port,
            session_id=self._sdp_session_id,
            session_version=self._sdp_version,
        )
        self._sdp_version += 1
        self._apply_media(media)
        return media

    def _apply_media(self, media: sdp.NegotiatedMedia) -> None:
        """Point the RTP session at what the offer/answer exchange settled."""
        assert self._rtp is not None
        if media.remote_address is not None and not _is_ip_literal(media.remote_address[0]):
            # RFC 4566 allows a host name in c=, but resolving it would block the shared media
            # clock (sendto resolves synchronously): refuse rather than stall every call.
            raise sdp.SdpNegotiationError("the c= address must be an IP address")
        # Inactivity counts from the latest negotiation (a long hold must not time out at unhold).
        self._media_since = asyncio.get_running_loop().time()
        if self._media is not None:
            self._rtp.session.update(media)
        else:
            session = RtpSession.from_negotiated(media)
            # Without speech recognition the caller's audio is never decoded (saves CPU).
            session.deliver_audio = self.services.asr is not None and self._bot is not None
            self._rtp.session = session
        self._media = media

    async def _wait_before_answer(self, delay: float) -> tuple[str, str, str] | None:
        """Ring for ``delay`` seconds; return the end of the call if it ends meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (remaining := deadline - loop.time()) > 0:
            try:
                event = await asyncio.wait_for(self._inputs.get(), remaining)
            except TimeoutError:
                break
            ended = self._ending(event)
            if ended is not None:
                return ended
        return None

    def _ending(self, event: _Input) -> tuple[str, str, str] | None:
        """Return (outcome, cause, side) if this event ends the call."""
        if isinstance(event, sip_events.CallCancelled):
            self._ended = True
            return "cancelled", "cancel", "caller"
        if isinstance(event, sip_events.CallTerminated):
            self._ended = True
            if event.cause == "ack_timeout":  # our 200 OK was never confirmed: set-up failed
                outcome = "failed"
            elif self._answered_at is not None:
                outcome = "completed"
            else:
                outcome = "abandoned"
            return outcome, event.cause, event.side
        return None

    async def _watchdog(self, rtp: RtpEndpoint) -> None:
        """End the call on RTP inactivity or when it lasts too long."""
        cfg = self._config
        loop = asyncio.get_running_loop()
        started = loop.time()
        timeout = cfg.rtp.inactivity_timeout
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            if now - started > cfg.calls.max_duration:
                self._inputs.put_nowait(_Timeout("max_duration"))
                return
            # Only when the caller is meant to send to us (not on hold with a=inactive, say).
            if timeout > 0 and (self._media is None or self._media.direction.receives):
                last = max(rtp.last_rx_time or started, self._media_since)
                if now - last > timeout:
                    self._inputs.put_nowait(_Timeout("rtp_timeout"))
                    return

    async def _control_loop(self, pipeline: Pipeline) -> tuple[str, str, str]:
        assert self._flow is not None
        flow = self._flow
        state, actions = ivr_flows.start(
            flow, now=self._flow_now(), variables={"dialled": self._dialled}
        )
        self._flow_state = state
        ended = await self._perform(actions, pipeline)
        if ended is not None:
            return ended
        while True:
            item = await self._inputs.get()
            ended = self._ending(item)
            if ended is not None:
                return ended
            if (
                self._routing_state != "none" or isinstance(item, _TransferAsked | _ConsultAsked)
            ) and self._routing_handles(item):
                ended = await self._routing_input(item, pipeline)
                if ended is not None:
                    return ended
                continue
            flow_event: ivr_flows.Event | None = None
            if isinstance(item, _Timeout):
                self._sip(lambda now: self.services.sip.engine.hangup(self.call_id, now))
                self._ended = True
                return "completed", item.cause, "service"
            if isinstance(item, _Dtmf):
                self._record_key(item, secret=self._typing_number)
                await pipeline.queue_frame(DtmfFrame(item.digit))
                continue
            if isinstance(item, sip_events.ReInviteReceived):
                self._on_reinvite(item)
                continue
            if isinstance(item, sip_events.ReInviteConfirmed):
                self._on_reinvite_confirmed(item)
                continue
            if isinstance(item, _FlowEvent):
                flow_event = item.event
            if isinstance(item, PromptFinishedFrame):
                self._record_prompt(item.prompt_id, item.interrupted)
                flow_event = ivr_flows.PromptFinished(item.prompt_id, item.interrupted)
            elif isinstance(item, DigitsCollectedFrame):
                flow_event = ivr_flows.DigitsCollected(item.digits)
            elif isinstance(item, DigitsTimeoutFrame):
                if self._listen_fallback is not None:
                    # No recogniser: the silence after a question is a speech no-input.
                    self._listen_fallback = None
                    flow_event = self._speech_timeout("no_input")
                else:
                    flow_event = ivr_flows.InputTimedOut()
            elif isinstance(item, TranscriptFrame):
                flow_event = self._heard(item)
            elif isinstance(item, SpeechTimeoutFrame):
                if item.reason == "max_length" and item.transcript and item.transcript.text:
                    flow_event = self._heard_text(item.transcript.text, None)
                else:
                    flow_event = self._speech_timeout(item.reason)
            if flow_event is None:
                continue
            assert self._flow_state is not None
            self._flow_state, actions = ivr_flows.step(
                flow, self._flow_state, flow_event, now=self._flow_now()
            )
            ended = await self._perform(actions, pipeline)
            if ended is not None:
                return ended

    async def _perform(
        self, actions: list[ivr_flows.Action], pipeline: Pipeline
    ) -> tuple[str, str, str] | None:
        """Carry out the flow's actions; return the end of the call on HangUp."""
        for action in actions:
            if isinstance(action, ivr_flows.EnterNode):
                self._record("flow_node", node_id=action.node_id, node_type=action.node_type)
                if len(self._menu_path) < _MENU_PATH_MAX:
                    self._menu_path.append(action.node_id)
                if action.node_type in ("ask", "confirm", "identify", "dossier_answer"):
                    self._bot_path.append(action.node_id)
            elif isinstance(action, ivr_flows.PlayPrompt):
                prompt_id = action.prompt_id
                if self._slow and f"{prompt_id}.slow" in self.services.prompts:
                    prompt_id = f"{prompt_id}.slow"
                await pipeline.queue_frame(PlayPromptFrame(prompt_id, action.interruptible))
            elif isinstance(action, ivr_flows.CollectDigits):
                # Several keys are a date, a dossier or a phone number: not kept in the trail.
                self._typing_number = action.max_digits != 1
                timeout = action.timeout_s
                if timeout == float("inf") and self._listen_fallback is not None:
                    timeout = self._listen_fallback
                await pipeline.queue_frame(
                    CollectDigitsFrame(
                        max_digits=action.max_digits,
                        timeout_s=timeout,
                        terminator=action.terminator,
                        allowed=action.allowed,
                    )
                )
            elif isinstance(action, ivr_flows.Listen):
                await self._listen(action, pipeline)
            elif isinstance(action, ivr_flows.StopListening):
                self._listen_fallback = None
                if self._recognizer is not None:
                    await pipeline.queue_frame(StopListeningFrame())
            elif isinstance(action, ivr_flows.SlowDown):
                self._slow = True
                self._record("slow_down")
            elif isinstance(action, ivr_flows.AnswerGiven):
                self._record("answer", intent=action.intent, prompt_id=action.prompt_id)
                self.services.metrics.bot_answer(action.intent)
                self._intents.append(action.intent)
                self._answered.append(action.intent)
                self._bot_used = True
            elif isinstance(action, ivr_flows.LookupCaller | ivr_flows.VerifyIdentity):
                self._inputs.put_nowait(_FlowEvent(await self._identify(action)))
            elif isinstance(action, ivr_flows.PrepareDossierAnswer):
                self._inputs.put_nowait(_FlowEvent(await self._dossier_answer(action.intent)))
            elif isinstance(action, ivr_flows.StopPrompt):
                await pipeline.queue_frame(StopPromptFrame())
            elif isinstance(action, ivr_flows.QueueCall):
                self._queued = True
                self._handed_over = self._bot_used
                self._handoff_reason = action.reason
                self._record(
                    "queued",
                    skill=action.skill,
                    reason=action.reason,
                    priority=action.priority,
                    intent=action.intent,
                )
                self.services.metrics.handoff(action.reason, action.priority)
                await self._join_queue(action)
            elif isinstance(action, ivr_flows.HangUp):
                self._sip(lambda now: self.services.sip.engine.hangup(self.call_id, now))
                self._ended = True
                return "completed", action.reason, "service"
        return None

    # -- queue, agent leg, bridge ----------------------------------------------------------
    async def _join_queue(self, action: ivr_flows.QueueCall) -> None:
        """Join the router's queue for ``action.skill``; without routing nothing changes."""
        router = self.services.routing
        if router is None or self.services.dialer is None or self._routing_state != "none":
            return
        if action.skill not in router.config.queues:
            self._record("queue_unrouted", skill=action.skill)
            return
        self._queue_priority = action.priority
        self._queue_intent = action.intent
        if not _staffed(router, action.skill):
            # Nobody is logged in who could ever take it: waiting would only run into the
            # maximum wait. The flow goes on as without routing (holding message, then next).
            self._record("queue_unstaffed", skill=action.skill)
            self.services.metrics.queue_event("unstaffed", action.skill)
            self._queue_name = action.skill
            if self._callbacks_on() and self.services.callbacks is not None:
                if self.services.callbacks.slots(action.skill):
                    # After the holding message: slots, instead of the flow going on.
                    self._routing_state = "callback"
                    self._cb = _CallbackDialog(
                        mode="slot", step="slots_pending", reason="unstaffed"
                    )
            return
        priority = _priority(action.priority)
        usager_id = self._who.usager_id if self._who is not None else None
        window = router.config.priorities.repeat_caller_window_s
        ago = await self._previous_call_ago(window)
        self._repeat = ago is not None and ago <= window
        joined_at = router.now()
        queued = routing.QueuedCall(
            call_id=self.call_id,
            skill=action.skill,
            priority=priority,
            joined_at=joined_at,
            previous_contact_at=joined_at - ago if ago is not None else None,
            usager_id=str(usager_id) if usager_id is not None else None,
            intent=action.intent,
        )
        self._unlisten = router.listen_call(
            self.call_id, lambda decision: self._inputs.put_nowait(_Routing(decision))
        )
        self._routing_state = "waiting"
        self._queue_name = action.skill
        try:
            await router.submit(routing.CallQueued(queued, router.now()))
        except routing.RoutingError as exc:
            self.log.error("queue refused the call: %s", exc)
            self._record("queue_unrouted", skill=action.skill)
            self._stop_routing()

    async def _previous_call_ago(self, window_s: float) -> float | None:
        """Seconds since another call from this caller's number started, within ``window_s``.

        Read from the call trail in a worker thread. No usable number, nothing found or a
        store error (logged without the number) all mean "not a repeat caller".
        """
        raw = self.incoming.caller_user
        number = normalize_phone(raw) if raw else None
        if number is None or window_s <= 0:
            return None
        now = self._now()
        try:
            async with asyncio.timeout(_REPEAT_LOOKUP_TIMEOUT_S):
                previous = await self.services.trail.last_call_from(
                    number,
                    since=now - timedelta(seconds=window_s),
                    exclude_sip_call_id=self.call_id,
                )
        except (SQLAlchemyError, TimeoutError) as exc:
            self.log.warning("repeat-caller lookup failed: %s", type(exc).__name__)
            return None
        if previous is None:
            return None
        return max(0.0, (now - previous).total_seconds())

    def _routing_handles(self, item: _Input) -> bool:
        """Whether an input belongs to the waiting / bridged life rather than to the flow."""
        if isinstance(
            item,
            _Routing
            | _WaitTick
            | _AgentKey
            | _GoodbyeDone
            | _AgentLost
            | _CallbackTimeout
            | _TransferAsked
            | _ConsultAsked
            | _TransferRingOut
            | PromptFinishedFrame
            | TranscriptFrame
            | SpeechTimeoutFrame
            | SpeechStartedFrame
            | _Dtmf,
        ):
            return True
        return isinstance(
            item,
            LegRinging
            | LegAnswered
            | LegFailed
            | LegEnded
            | LegDtmf
            | LegTransferRequested
            | LegHold,
        )

    async def _routing_input(self, item: _Input, pipeline: Pipeline) -> tuple[str, str, str] | None:
        """One input while the call is queued, ringing an agent, bridged or saying goodbye."""
        if isinstance(item, TranscriptFrame | SpeechTimeoutFrame | SpeechStartedFrame):
            await self._wait_speech(item, pipeline)
            ended = None
        else:
            ended = await self._routing_step(item, pipeline)
        if ended is None and self._routing_state == "waiting" and self._cb is None:
            await self._wait_listen(pipeline)  # (again) after the offer, the dialog, a result
        return ended

    async def _routing_step(self, item: _Input, pipeline: Pipeline) -> tuple[str, str, str] | None:
        state = self._routing_state
        if isinstance(item, _TransferAsked | _TransferRingOut | LegTransferRequested):
            await self._transfer_input(item, pipeline)
            return None
        if isinstance(item, _ConsultAsked):
            await self._consult_input(item, pipeline)
            return None
        consult = self._consult
        if (
            consult is not None
            and isinstance(
                item, LegRinging | LegAnswered | LegFailed | LegEnded | LegDtmf | LegHold
            )
            and item.leg is consult.leg
            and not consult.completed
        ):
            await self._on_consult_leg(item, pipeline)
            return None
        if self._cb is not None and not isinstance(item, _Routing):
            consumed, ended = await self._callback_input(item, pipeline)
            if consumed:
                return ended
        if isinstance(item, _Routing):
            return await self._on_decision(item.decision, pipeline)
        if isinstance(item, LegRinging | LegAnswered | LegFailed | LegEnded | LegDtmf | LegHold):
            if self._external and item.leg is self._leg:
                return await self._on_external_leg(item, pipeline)
            return await self._on_leg_event(item, pipeline)
        if isinstance(item, _AgentKey):
            if item.leg is self._leg and state == "bridged" and self._rtp is not None:
                self._relay_key(item.digit, "agent")
            return None
        if isinstance(item, _Dtmf):
            # Keys to an agent may be anything the conversation asks for (a date, a number).
            self._record_key(item, secret=state == "bridged")
            if state == "bridged" and self._leg is not None:
                self._relay_key(item.digit, "caller")
            elif state in ("waiting", "offered") and item.digit == "*":
                await self._announce_wait(pipeline)  # "répéter"
            elif state == "waiting" and item.digit == "0" and self._callbacks_on():
                await self._start_keep_place(pipeline)
            return None
        if isinstance(item, _WaitTick):
            if state in ("waiting", "offered"):
                await self._announce_wait(pipeline)
            return None
        if isinstance(item, _GoodbyeDone):
            self._sip(lambda now: self.services.sip.engine.hangup(self.call_id, now))
            self._ended = True
            return "completed", self._goodbye_cause, "service"
        if isinstance(item, _AgentLost):
            if item.leg is self._leg and state == "bridged":
                await self._agent_lost(item.leg, item.silent_s)
            return None
        if isinstance(item, PromptFinishedFrame):
            self._record_prompt(item.prompt_id, item.interrupted)
            base_id = item.prompt_id.removesuffix(".slow")
            if state == "leaving" and base_id in _LEAVE_PROMPTS.values():
                return await self._resume_flow(pipeline)
            if state == "transferring" and not item.interrupted:
                await self._play_music(pipeline)  # while the external number rings
                return None
            if state in ("waiting", "offered") and not item.interrupted:
                if base_id in WAIT_PROMPTS and self._offer_callback and self._callbacks_on():
                    self._waiting_prompt = "callback_offer"
                    await pipeline.queue_frame(
                        PlayPromptFrame(self._voiced("callback_offer"), True)
                    )
                elif base_id in WAIT_PROMPTS or base_id == "callback_offer":
                    await self._play_music(pipeline)
                    self._schedule_announcement()
                elif item.prompt_id == HOLD_MUSIC_PROMPT:
                    await self._play_music(pipeline)  # loop it
                elif base_id in _TRANSFER_PROMPTS:
                    self._waiting_prompt = "silence"  # then the estimate, then the music
                    await self._announce_wait(pipeline)
                elif self._waiting_prompt is None and self._is_hold_prompt(item.prompt_id):
                    self._waiting_prompt = "silence"  # the flow's holding message ended
                    await self._announce_wait(pipeline)
            elif (
                state == "bridged"
                and self._held_relays is not None
                and item.prompt_id == HOLD_MUSIC_PROMPT
                and not item.interrupted
            ):
                await self._play_music(pipeline)  # the agent holds: loop the music
            return None
        return None

    async def _resume_flow(self, pipeline: Pipeline) -> tuple[str, str, str] | None:
        """The wait ended without an agent: the flow goes on after its holding message."""
        self._stop_routing()
        assert self._flow is not None and self._flow_state is not None
        hold = self._flow_state.awaiting_prompt
        if hold is None:
            return None
        self._flow_state, actions = ivr_flows.step(
            self._flow,
            self._flow_state,
            ivr_flows.PromptFinished(hold, False),
            now=self._flow_now(),
        )
        return await self._perform(actions, pipeline)

    async def _on_decision(
        self, decision: routing.Decision, pipeline: Pipeline
    ) -> tuple[str, str, str] | None:
        state = self._routing_state
        if isinstance(decision, routing.CallEnqueued):
            self._record(
                "queue_joined",
                queue=decision.queue,
                priority=decision.priority.label,
                position=decision.position,
                repeat=self._repeat,
            )
        elif isinstance(decision, routing.CallOverflowed):
            self._record("queue_overflowed", queue=decision.from_queue, to=decision.to_queue)
        elif isinstance(
            decision,
            routing.CallRejectedClosed | routing.CallRejectedQueueFull | routing.CallMaxWaitReached,
        ):
            if state not in ("waiting", "offered"):
                return None
            reason = (
                "closed"
                if isinstance(decision, routing.CallRejectedClosed)
                else "full"
                if isinstance(decision, routing.CallRejectedQueueFull)
                else "max_wait"
            )
            wait = getattr(decision, "wait_s", 0.0)
            self._record("queue_left", queue=decision.queue, reason=reason, wait_s=round(wait, 1))
            self._routing_state = "leaving"
            self._stop_announcer()
            await self._wait_unlisten(pipeline)
            if self._leg is not None:  # cannot be ringing (the router withdrew it), but be safe
                self._drop_leg()
            await pipeline.queue_frame(StopPromptFrame())
            self._cb_stop()
            intro = _LEAVE_PROMPTS[reason] if reason == "closed" else None
            if await self._offer_slots(pipeline, reason, intro=intro):
                return None
            leave = self._voiced(_LEAVE_PROMPTS[reason])
            await pipeline.queue_frame(PlayPromptFrame(leave, False))
        elif isinstance(decision, routing.OfferCall) and decision.agent_id == self._handover_to:
            await self._handover_accepted(decision)
        elif isinstance(decision, routing.OfferCall):
            if state == "waiting" and not decision.dial_out:
                if self._cb is not None:  # an agent is free: better than a callback
                    self._record("callback_abandoned", step=self._cb.step, reason="agent_free")
                    self._cb_stop()
                    await pipeline.queue_frame(StopPromptFrame())
                await self._offer_to(decision)
        elif isinstance(decision, routing.OfferEnded):
            leg = self._leg
            if leg is not None and leg.agent_id == decision.agent_id and state == "offered":
                reason = decision.reason.value
                self._record("agent_missed", agent=decision.agent_id, reason=reason)
                self.services.metrics.agent_offer(
                    "no_answer"
                    if decision.reason is routing.OfferEndReason.RING_TIMEOUT
                    else "withdrawn"
                )
                leg.cancel()
                self._retire_leg()
                self._routing_state = "waiting"
        elif isinstance(decision, routing.EventIgnored):
            self.log.info("routing ignored %s: %s", decision.event, decision.reason)
        return None

    async def _offer_to(self, offer: routing.OfferCall) -> None:
        """Ring the agent: their panel's softphone when it is open, else their SIP phone."""
        services = self.services
        router = services.routing
        dialer = services.dialer
        assert router is not None and dialer is not None
        self._last_offer = offer
        hub = services.softphones
        browser = hub is not None and await hub.is_present(offer.agent_id)
        uri = None
        if not browser and services.agent_uri is not None:
            uri = await services.agent_uri(offer.agent_id)
        self._record(
            "agent_offered",
            agent=offer.agent_id,
            queue=offer.queue,
            wait_s=round(offer.wait_s, 1),
            reachable=browser or uri is not None,
            endpoint="browser" if browser else "sip",
        )
        if self._routing_state != "waiting":  # the caller left while the store answered
            return
        if browser and hub is not None:
            await self._ring_browser(hub, offer)
            return
        if uri is None:
            services.metrics.agent_offer("failed")
            await router.submit(routing.OfferTimedOut(offer.agent_id, self.call_id, router.now()))
            return
        cfg = self._config
        leg = AgentLeg(
            dialer=dialer,
            agent_id=offer.agent_id,
            target_uri=uri,
            local_host=self._local_host(),
            rtp_host=cfg.rtp.host or cfg.sip.host,
            port_range=(cfg.rtp.port_min, cfg.rtp.port_max),
            on_event=self._inputs.put_nowait,
        )
        self._leg = leg
        self._routing_state = "offered"
        try:
            await leg.start(
                from_user=cfg.routing.from_user,
                from_display=caller_id_display(cfg.routing.from_display, offer.queue),
            )
        except (OSError, ValueError, RuntimeError) as exc:
            self.log.warning("agent leg not placed: %s", type(exc).__name__)
            self._leg = None
            leg.close()
            self._routing_state = "waiting"
            services.metrics.agent_offer("failed")
            await router.submit(routing.OfferTimedOut(offer.agent_id, self.call_id, router.now()))

    async def _ring_browser(self, hub: SoftphoneHub, offer: routing.OfferCall) -> None:
        """Ring the agent's panel (a WebRtcLeg) with the screen pop."""
        leg = WebRtcLeg(
            hub=hub,
            config=self._config.webrtc,
            agent_id=offer.agent_id,
            owner_call_id=self.call_id,
            pop=self.screen_pop(offer),
            on_event=self._inputs.put_nowait,
        )
        self._leg = leg
        self._routing_state = "offered"
        await leg.start()

    def screen_pop(self, offer: routing.OfferCall) -> dict[str, Any]:
        """What the agent sees before answering: who calls, why, how the bot went.

        The caller's number is given only when they were not identified (the agent then
        sees "non identifié" and the number); an identified caller is shown by their dossier,
        which the panel reads (audited) with the ``usager_id``.
        """
        who = self._who
        identified = who is not None and who.result == "ok" and who.usager_id is not None
        number = None
        if not identified and self.incoming.caller_user:
            number = normalize_phone(self.incoming.caller_user) or None
        router = self.services.routing
        priority = (
            router.config.priorities.effective(offer.call).label if router is not None else None
        )
        intents = list(dict.fromkeys([*self._intents, *filter(None, [self._queue_intent])]))
        return {
            "call_id": self.call_id,
            "queue": offer.queue,
            "wait_s": round(offer.wait_s, 1),
            "priority": priority,
            "repeat": self._repeat,
            "identified": identified,
            "identification": who.role if identified and who is not None else None,
            "usager_id": who.usager_id if identified and who is not None else None,
            "tiers_id": who.tiers_id if identified and who is not None else None,
            "caller_number": number,
            "handoff_reason": self._handoff_reason,
            "intents": intents,
            "transcript": list(self._said),
            "menu_path": list(self._menu_path),
            "dial_out": offer.dial_out,
        }

    async def _on_leg_event(
        self, event: LegEvent, pipeline: Pipeline
    ) -> tuple[str, str, str] | None:
        leg = event.leg
        current = leg is self._leg
        router = self.services.routing
        metrics = self.services.metrics
        assert router is not None
        if isinstance(event, LegRinging):
            if current:
                self._record("agent_ringing", agent=leg.agent_id)
        elif isinstance(event, LegAnswered):
            if not current or self._routing_state != "offered":
                leg.hangup()  # answered after the offer ended (a crossing 200)
                self._forget_leg(leg)
                return None
            decisions = await router.submit(
                routing.OfferAccepted(leg.agent_id, self.call_id, router.now())
            )
            answered = next(
                (
                    d
                    for d in decisions
                    if isinstance(d, routing.CallAnswered) and d.call_id == self.call_id
                ),
                None,
            )
            if answered is None:  # the router had already moved on
                leg.hangup()
                self._retire_leg()
                self._routing_state = "waiting"
                return None
            metrics.agent_offer("answered")
            self._agent_answered = True
            self._record(
                "agent_answered",
                agent=leg.agent_id,
                queue=answered.queue,
                wait_s=round(answered.wait_s, 1),
                # The call's service level (routing.kpi: answered within 20 s, within 60 s).
                within_20s=answered.wait_s <= 20.0,
                within_60s=answered.wait_s <= 60.0,
                codec=event.codec,
            )
            await self._bridge(leg, pipeline)
        elif isinstance(event, LegFailed):
            if current and self._routing_state == "offered":
                self._record(
                    "agent_missed", agent=leg.agent_id, status=event.status_code, reason=event.kind
                )
                metrics.agent_offer(event.kind)
                self._retire_leg()
                self._routing_state = "waiting"
                now = router.now()
                if event.kind == "rejected":
                    await router.submit(routing.OfferRejected(leg.agent_id, self.call_id, now))
                else:
                    await router.submit(routing.OfferTimedOut(leg.agent_id, self.call_id, now))
            else:
                self._forget_leg(leg)
        elif isinstance(event, LegEnded):
            if current and self._routing_state == "bridged":
                self._record("agent_hangup", agent=leg.agent_id, cause=event.cause)
                self._end_bridge(leg)
                if self._handover_to is not None:  # the router never offered the colleague
                    self._handover_to = None
                    await router.submit(routing.CallCancelled(self.call_id, router.now()))
                else:
                    await router.submit(routing.CallEnded(leg.agent_id, self.call_id, router.now()))
                self._stop_routing(state="goodbye")
                self._start_goodbye()
            else:
                self._forget_leg(leg)
        elif isinstance(event, LegDtmf):
            if current and self._routing_state == "bridged":
                self._relay_key(event.digit, "agent")
        elif isinstance(event, LegHold):
            # During a consultation the caller is already on hold: the agent's own hold and
            # resume would only cut the music and the consultation's audio.
            if current and self._routing_state == "bridged" and self._consult is None:
                await self._agent_hold(event.held, pipeline)
        return None

    async def _agent_hold(self, held: bool, pipeline: Pipeline) -> None:
        """The agent put the caller on hold (music, nothing relayed) or took them back."""
        leg = self._leg
        assert leg is not None
        self._record("agent_hold" if held else "agent_resume", agent=leg.agent_id)
        if held and self._held_relays is None:
            self._held_relays = (self._to_agent, self._to_caller)
            self._to_agent = None
            self._to_caller = None
            await self._play_music(pipeline)
        elif not held and self._held_relays is not None:
            await pipeline.queue_frame(StopPromptFrame())
            self._to_agent, self._to_caller = self._held_relays
            self._held_relays = None

    async def _bridge(self, leg: Leg, pipeline: Pipeline) -> None:
        """Connect the caller and the agent: audio both ways, keys both ways."""
        assert self._rtp is not None and self._tg is not None
        self._stop_announcer()
        await self._wait_unlisten(pipeline)
        await pipeline.queue_frame(StopPromptFrame())
        self._to_agent = AudioRelay()
        self._to_caller = AudioRelay()
        self._rtp.session.deliver_audio = True  # decoded for the relay from now on
        self._routing_state = "bridged"
        self._tg.create_task(
            leg.run_media(self._agent_source, self._on_agent_rtp),
            name=f"agent-rtp-{self.call_id}",
        )
        timeout = self._config.rtp.inactivity_timeout
        if timeout > 0:
            self._agent_watch = self._tg.create_task(
                self._agent_watchdog(leg, timeout), name=f"agent-watchdog-{self.call_id}"
            )
        self._record("bridged", agent=leg.agent_id)
        if self._caller_held:  # the caller was already on hold when the agent answered
            self._record("caller_hold", agent=leg.agent_id, sent=leg.hold())

    async def _agent_watchdog(self, leg: Leg, limit_s: float) -> None:
        """Report a dead agent phone: no RTP from it for ``limit_s`` while it should send."""
        loop = asyncio.get_running_loop()
        while leg is self._leg and self._routing_state == "bridged" and not leg.ended:
            await asyncio.sleep(min(1.0, limit_s / 4))
            silent = leg.silent_for(loop.time())
            if silent > limit_s:
                self._inputs.put_nowait(_AgentLost(leg, silent))
                return

    async def _agent_lost(self, leg: Leg, silent_s: float) -> None:
        """The agent's phone went silent: hang it up, tell the caller, end as an agent hang-up."""
        router = self.services.routing
        assert router is not None
        self.log.warning("agent leg silent for %.0f s: hanging it up", silent_s)
        self._record("agent_lost", agent=leg.agent_id, silent_s=round(silent_s, 1))
        self._end_bridge(leg)
        leg.hangup()
        if not self._external:
            await router.submit(routing.CallEnded(leg.agent_id, self.call_id, router.now()))
        self._stop_routing(state="goodbye")
        self._goodbye_cause = "agent_lost"
        self._start_goodbye("routing_agent_lost")

    def _agent_source(self) -> bytes | None:
        consult = self._consult
        if consult is not None and consult.connected and not consult.completed:
            return consult.to_agent.pull()  # the agent hears the colleague, not the caller
        relay = self._to_agent
        return relay.pull() if relay is not None else None

    def _on_agent_rtp(self, event: MediaEvent) -> None:
        consult = self._consult
        if consult is not None and consult.connected and not consult.completed:
            if isinstance(event, AudioReceived | PcmAudio):
                consult.to_target.push(event.pcm)
            return
        relay = self._to_caller
        if isinstance(event, AudioReceived | PcmAudio):
            if relay is not None:
                pcm = event.pcm
                self._count("to_caller", pcm)
                relay.push(pcm)
        elif self._leg is not None:
            self._inputs.put_nowait(_AgentKey(self._leg, event.digit))

    def _count(self, direction: str, pcm: bytes) -> None:
        stats = self._relay_stats[direction]
        stats[0] += 1
        if len(pcm) >= 2 and len(pcm) % 2 == 0:
            samples = memoryview(pcm).cast("h")  # C loops: cheap at 50 frames/s per direction
            if max(samples) > _VOICED_PEAK or min(samples) < -_VOICED_PEAK:
                stats[1] += 1

    def _caller_source(self) -> bytes | None:
        """What the caller hears: the prompts, the agent once bridged, then the goodbye."""
        relay = self._to_caller
        if relay is not None:
            return relay.pull()
        goodbye = self._goodbye
        if goodbye is not None:
            start = self._goodbye_at
            if start >= len(goodbye):
                self._goodbye = None
                self._inputs.put_nowait(_GoodbyeDone())
                return None
            self._goodbye_at = start + 320
            chunk = goodbye[start : start + 320]
            return chunk + bytes(320 - len(chunk))
        player = self._player
        return player.next_frame() if player is not None else None

    def _relay_key(self, digit: str, source: str) -> None:
        """Re-send a key to the other leg as RFC 4733."""
        if source == "caller":
            sent = self._leg.send_dtmf(digit) if self._leg is not None else False
        else:
            sent = False
            if self._rtp is not None and self._media is not None:
                try:
                    self._rtp.send_dtmf(digit)
                    sent = True
                except ValueError:
                    sent = False
        # Which key is not kept: keys to an agent may be a date or a number (see _record_key).
        self._record("dtmf_relayed", source=source, sent=sent)

    def _end_bridge(self, leg: Leg) -> None:
        """Stop relaying; record what went through the bridge.

        The agent's leg ending during a consultation (they hung up, their phone went silent)
        ends the consultation too: its party is hung up.
        """
        consult = self._consult
        if consult is not None and leg is not consult.leg:
            self._consult = None
            self._record("consult_hangup", cause="agent_left")
            self._end_leg(consult.leg)
        if self._agent_watch is not None:
            self._agent_watch.cancel()
            self._agent_watch = None
        to_agent, to_caller = self._relay_stats["to_agent"], self._relay_stats["to_caller"]
        self._to_agent = None
        self._to_caller = None
        self._record(
            "bridge_ended",
            agent=leg.agent_id,
            to_agent_frames=to_agent[0],
            to_agent_voiced=to_agent[1],
            to_caller_frames=to_caller[0],
            to_caller_voiced=to_caller[1],
            agent_packets_sent=leg.packets_sent,
        )
        self._held_relays = None
        leg.stop_media()

    def _start_goodbye(self, prompt_id: str = "routing_agent_gone") -> None:
        prompts = self.services.prompts
        if prompt_id in prompts:
            self._goodbye = prompts.get(self._voiced(prompt_id))
            self._goodbye_at = 0
        else:
            self._inputs.put_nowait(_GoodbyeDone())

    def _voiced(self, prompt_id: str) -> str:
        """The slow variant of one of our prompts after "plus lentement", when rendered."""
        slow = f"{prompt_id}.slow"
        return slow if self._slow and slow in self.services.prompts else prompt_id

    def _is_hold_prompt(self, prompt_id: str) -> bool:
        state = self._flow_state
        return state is not None and prompt_id.removesuffix(".slow") == state.awaiting_prompt

    async def _announce_wait(self, pipeline: Pipeline) -> None:
        """Say the estimated wait range, cutting the music (not while an agent rings).

        Nothing happens while the holding message or an announcement still plays.
        """
        router = self.services.routing
        queue = self._queue_name
        playing = self._waiting_prompt
        if router is None or queue is None or playing is None or playing in WAIT_PROMPTS:
            return
        if playing == "callback_offer" or self._cb is not None:
            return
        times = self.services.handle_times.get(queue)
        estimate = estimate_for_call(
            router.router, self.call_id, times.samples if times is not None else ()
        )
        if estimate is None:  # an agent's phone rings: the caller is next
            if playing != HOLD_MUSIC_PROMPT:
                await self._play_music(pipeline)
            self._schedule_announcement()
            return
        if playing == HOLD_MUSIC_PROMPT:
            await pipeline.queue_frame(StopPromptFrame())
        self._offer_callback = (
            self._callbacks_on() and estimate.expected_s >= self._config.callbacks.offer_after_s
        )
        index = next(i for i, (_, words) in enumerate(SPOKEN_BUCKETS) if words == estimate.bucket)
        prompt_id = WAIT_PROMPTS[index]
        self._record("wait_announced", bucket=estimate.bucket, position=estimate.position)
        self._waiting_prompt = prompt_id
        ahead = position_prompt(estimate.position)
        if ahead in self.services.prompts:
            await pipeline.queue_frame(PlayPromptFrame(self._voiced(ahead), True))
        await pipeline.queue_frame(PlayPromptFrame(self._voiced(prompt_id), True))

    async def _play_music(self, pipeline: Pipeline) -> None:
        if HOLD_MUSIC_PROMPT in self.services.prompts:
            self._waiting_prompt = HOLD_MUSIC_PROMPT
            await pipeline.queue_frame(PlayPromptFrame(HOLD_MUSIC_PROMPT, True))
        else:
            self._waiting_prompt = "silence"

    def _schedule_announcement(self) -> None:
        """The next estimate after ``announce_interval_s`` of music (or silence)."""
        self._stop_announcer()
        if self._tg is None:
            return
        interval = self._config.routing.announce_interval_s

        async def tick() -> None:
            await asyncio.sleep(interval)
            self._inputs.put_nowait(_WaitTick())

        self._announcer = self._tg.create_task(tick(), name=f"announce-{self.call_id}")

    def _stop_announcer(self) -> None:
        if self._announcer is not None:
            self._announcer.cancel()
            self._announcer = None

    def _retire_leg(self) -> None:
        """The current leg no longer matters for routing; its last SIP events may still come."""
        leg = self._leg
        self._leg = None
        if leg is not None:
            if leg.ended:
                leg.close()
            else:
                self._old_legs.append(leg)

    def _forget_leg(self, leg: Leg) -> None:
        if leg is self._leg:
            self._leg = None
        if leg in self._old_legs:
            self._old_legs.remove(leg)
        if leg.ended or not leg.answered:
            leg.close()
        else:
            self._old_legs.append(leg)

    def _drop_leg(self) -> None:
        leg = self._leg
        if leg is not None:
            leg.cancel()
            self._retire_leg()

    def _stop_routing(self, state: str = "none") -> None:
        """Leave the routing life (the router no longer talks to this call)."""
        self._stop_announcer()
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        self._routing_state = state

    async def _leave_routing(self) -> None:
        """The call is over: tell the router and end the agent leg (from ``run``'s finally)."""
        state = self._routing_state
        router = self.services.routing
        leg = self._leg
        consult = self._consult
        if consult is not None:  # the caller left during a consultation
            self._consult = None
            self._record("consult_hangup", cause="caller_left")
            self._end_leg(consult.leg)
        if router is not None and state in ("waiting", "offered", "bridged"):
            if state == "bridged" and leg is not None:
                self._end_bridge(leg)
                if self._handover_to is not None:  # the router never offered the colleague
                    await router.submit(routing.CallCancelled(self.call_id, router.now()))
                elif not self._external:
                    await router.submit(routing.CallEnded(leg.agent_id, self.call_id, router.now()))
            else:
                await router.submit(routing.CallerHungUp(self.call_id, router.now()))
                if state == "offered":
                    self.services.metrics.agent_offer("withdrawn")
                    self._record(
                        "agent_missed", agent=leg.agent_id if leg else None, reason="caller_hung_up"
                    )
        self._stop_routing(state="done" if state != "none" else "none")
        for other in (leg, *self._old_legs):
            if other is not None:
                self._end_leg(other)
        self._leg = None
        self._old_legs.clear()

    # -- speech while waiting ("rappel", "répéter") -----------------------------------------
    async def _wait_listen(self, pipeline: Pipeline) -> None:
        """Listen for "rappel" and "répéter" while the caller waits (speech cuts the music)."""
        if self._recognizer is None or self._wait_listening:
            return
        self._wait_listening = True
        await pipeline.queue_frame(
            ListenFrame(
                no_input_s=_WAIT_LISTEN_S, max_utterance_s=6.0, grammar=WAIT_WORDS, barge_in=True
            )
        )

    async def _wait_unlisten(self, pipeline: Pipeline) -> None:
        if self._wait_listening:
            self._wait_listening = False
            await pipeline.queue_frame(StopListeningFrame())

    async def _wait_speech(
        self, item: TranscriptFrame | SpeechTimeoutFrame | SpeechStartedFrame, pipeline: Pipeline
    ) -> None:
        """What the waiting caller said: a callback, a repeat, or nothing for us."""
        if isinstance(item, SpeechStartedFrame):
            if item.barge_in and self._wait_listening:
                self._wait_barged = True
            return
        if not self._wait_listening:
            return  # the late result of a listen we stopped
        self._wait_listening = False
        barged, self._wait_barged = self._wait_barged, False
        heard = ""
        if isinstance(item, TranscriptFrame):
            transcript = item.transcript
            self.services.metrics.asr_result(transcript.engine, item.latency_s, transcript.decode_s)
            heard = _folded(transcript.text)
            # What a waiting caller says is mostly not for us (someone in the room, a number):
            # only what we act on is recorded, never the words.
        state = self._routing_state
        if state not in ("waiting", "offered") or self._cb is not None:
            return
        request: str | None = None
        if state == "waiting" and "rappel" in heard and self._callbacks_on():
            request = "callback"
        elif state == "waiting" and "repet" in heard:
            request = "repeat"
        if isinstance(item, TranscriptFrame):
            self._record("wait_heard", request=request, words=bool(heard))
        if request == "callback":
            await self._start_keep_place(pipeline)
            return
        if request == "repeat":
            self._waiting_prompt = "silence"
            await self._announce_wait(pipeline)
        elif barged:
            # The caller spoke over the music or an announcement (to someone else, say):
            # the music goes on, the next announcement at its time.
            await self._play_music(pipeline)
            self._schedule_announcement()

    # -- blind transfers (issue 5; callcenter/transfer.py) ----------------------------------
    async def transfer(self, agent_id: str, target: TransferTarget) -> None:
        """Transfer the caller away from ``agent_id`` (the agent API; the call does it).

        Raises:
            TransferError: 409 when the caller is not in conversation with that agent (or the
                call is ending).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inputs.put_nowait(_TransferAsked(agent_id, target, done))
        try:
            async with asyncio.timeout(_TRANSFER_TIMEOUT_S):
                await done
        except TimeoutError:
            raise TransferError(409, "the call is ending") from None

    async def _transfer_input(
        self, item: _TransferAsked | _TransferRingOut | LegTransferRequested, pipeline: Pipeline
    ) -> None:
        if isinstance(item, _TransferAsked):
            if item.done.done():  # the agent API gave up waiting
                return
            try:
                await self._transfer(item.agent_id, item.target, pipeline)
            except TransferError as exc:
                if not item.done.done():
                    item.done.set_exception(exc)
            else:
                if not item.done.done():  # the agent API may have stopped waiting meanwhile
                    item.done.set_result(None)
        elif isinstance(item, _TransferRingOut):
            leg = item.leg
            if leg is self._leg and self._routing_state == "transferring" and not leg.answered:
                leg.cancel()  # LegFailed follows: back to the queue
        else:
            await self._on_refer(item, pipeline)

    def _transfer_policy(self) -> TransferPolicy:
        return TransferPolicy(allowed_numbers=self._config.transfers.allowed_numbers)

    async def _on_refer(self, event: LegTransferRequested, pipeline: Pipeline) -> None:
        """The agent's phone asked for a blind transfer (REFER): check, transfer, report."""
        leg = event.leg
        router = self.services.routing
        if router is None or leg is not self._leg or self._external:
            leg.report_transfer(403, None, event.refer_id)
            return
        try:
            target = target_from_refer_user(
                event.target_user or "",
                queues=router.config.queues,
                agent_exists=router.router.is_logged_in,
                policy=self._transfer_policy(),
                from_agent=leg.agent_id,
            )
            await self._transfer(leg.agent_id, target, pipeline, refer_id=event.refer_id)
        except TransferError as exc:
            self._record("transfer_refused", agent=leg.agent_id, status=exc.status)
            leg.report_transfer(_SIP_STATUS_OF_REFUSAL.get(exc.status, 403), None, event.refer_id)

    async def _transfer(
        self,
        agent_id: str,
        target: TransferTarget,
        pipeline: Pipeline,
        *,
        refer_id: int | None = None,
    ) -> None:
        """End the agent's part of the call and send the caller on (queue, agent or number)."""
        leg = self._leg
        router = self.services.routing
        if (
            router is None
            or leg is None
            or self._external
            or self._routing_state != "bridged"
            or leg.agent_id != agent_id
        ):
            raise TransferError(409, "the caller is not in conversation with this agent")
        own_queue = self._queue_name
        self._end_bridge(leg)
        if refer_id is None:
            leg.hangup()
        else:
            # Blind: done once we hold the caller. The phone hangs up after this final NOTIFY
            # (RFC 5589 section 6.1); its leg is hung up with the call if it does not.
            leg.report_transfer(200, None, refer_id)
        self._retire_leg()
        await router.submit(routing.CallEnded(agent_id, self.call_id, router.now()))
        self.services.metrics.transfer(target.kind.value)
        self._record(
            "transferred",
            agent=agent_id,
            kind=target.kind.value,
            via="refer" if refer_id is not None else "api",
            # An external number is not recorded: only that it was one of the allowed list.
            to=None if target.kind is TransferKind.NUMBER else target.value,
        )
        if target.kind is TransferKind.NUMBER:
            await self._dial_external(target.value, pipeline)
            return
        skill = target.value if target.kind is TransferKind.QUEUE else (own_queue or "")
        to_agent = target.value if target.kind is TransferKind.AGENT else None
        await self._queue_again(skill, pipeline, prompt="routing_transfer", to_agent=to_agent)

    async def _queue_again(
        self, skill: str, pipeline: Pipeline, *, prompt: str, to_agent: str | None = None
    ) -> None:
        """Wait again, in ``skill``, priority raised: after a transfer or a failed one."""
        router = self.services.routing
        assert router is not None
        base = _priority(self._queue_priority)
        now = router.now()
        usager_id = self._who.usager_id if self._who is not None else None
        queued = routing.QueuedCall(
            call_id=self.call_id,
            skill=skill,
            priority=max(base, routing.Priority.HIGH),
            joined_at=now,
            usager_id=str(usager_id) if usager_id is not None else None,
            intent=self._queue_intent,
            target_agent=to_agent,
        )
        self._routing_state = "waiting"
        self._queue_name = skill
        self._waiting_prompt = prompt
        await pipeline.queue_frame(PlayPromptFrame(self._voiced(prompt), True))
        if self._unlisten is None:
            self._unlisten = router.listen_call(
                self.call_id, lambda decision: self._inputs.put_nowait(_Routing(decision))
            )
        try:
            await router.submit(routing.CallQueued(queued, now))
        except routing.RoutingError as exc:
            self.log.error("queue refused the transferred call: %s", exc)
            self._record("queue_unrouted", skill=skill)
            self._stop_routing(state="goodbye")
            self._start_goodbye("routing_max_wait")

    async def _dial_external(self, number: str, pipeline: Pipeline) -> None:
        """Call an allowed external number through the trunk; bridged once it answers."""
        cfg = self._config
        dialer = self.services.dialer
        assert dialer is not None and self._tg is not None
        dial = number if number.isdigit() else dial_string(number, cfg.callbacks.number_format)
        leg = AgentLeg(
            dialer=dialer,
            agent_id="external",
            target_uri=cfg.callbacks.trunk_uri.format(number=dial),
            local_host=self._local_host(),
            rtp_host=cfg.rtp.host or cfg.sip.host,
            port_range=(cfg.rtp.port_min, cfg.rtp.port_max),
            on_event=self._inputs.put_nowait,
        )
        self._leg = leg
        self._external = True
        self._routing_state = "transferring"
        self._waiting_prompt = "routing_transfer_number"
        await pipeline.queue_frame(PlayPromptFrame(self._voiced("routing_transfer_number"), True))
        try:
            await leg.start(
                from_user=cfg.routing.from_user,
                from_display=caller_id_display(cfg.routing.from_display, "transfert"),
            )
        except (OSError, ValueError, RuntimeError) as exc:
            self.log.warning("external transfer leg not placed: %s", type(exc).__name__)
            self._leg = None
            self._external = False
            leg.close()
            await self._queue_again(
                self._queue_name or "", pipeline, prompt="routing_transfer_failed"
            )
            return
        limit = cfg.callbacks.ring_timeout_s

        async def ring_out() -> None:
            await asyncio.sleep(limit)
            self._inputs.put_nowait(_TransferRingOut(leg))

        self._transfer_timer = self._tg.create_task(ring_out(), name=f"transfer-{self.call_id}")

    # -- consult, then transfer (issue 6) ----------------------------------------------------
    async def consult(
        self, agent_id: str, action: str, target: TransferTarget | None = None
    ) -> None:
        """Consult a colleague or a number with the caller on hold, then hand over or come back.

        ``action``: ``start`` (``target`` is a colleague or an allowed number; the caller hears
        the hold music, the agent talks with the target once it answers), ``complete`` (the
        caller is handed to the target: a colleague takes the call through the router, as a
        transfer offered to them and accepted at once; a number is bridged) or ``cancel`` (the
        target is hung up, the agent is back with the caller).

        Raises:
            TransferError: 409 when the call is not in a state for it; 400 for a queue target.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inputs.put_nowait(_ConsultAsked(agent_id, action, target, done))
        try:
            async with asyncio.timeout(_TRANSFER_TIMEOUT_S):
                await done
        except TimeoutError:
            raise TransferError(409, "the call is ending") from None

    async def _consult_input(self, item: _ConsultAsked, pipeline: Pipeline) -> None:
        if item.done.done():
            return
        try:
            if item.action == "start":
                assert item.target is not None
                await self._consult_start(item.agent_id, item.target, pipeline)
            elif item.action == "complete":
                await self._consult_complete(item.agent_id, pipeline)
            else:
                await self._consult_end(item.agent_id, pipeline, "cancelled")
        except TransferError as exc:
            if not item.done.done():
                item.done.set_exception(exc)
        else:
            if not item.done.done():
                item.done.set_result(None)

    async def _consult_start(
        self, agent_id: str, target: TransferTarget, pipeline: Pipeline
    ) -> None:
        leg = self._leg
        services = self.services
        router = services.routing
        if (
            router is None
            or leg is None
            or self._external
            or self._routing_state != "bridged"
            or leg.agent_id != agent_id
            or self._consult is not None
        ):
            raise TransferError(409, "no conversation of this agent to consult from")
        if getattr(leg, "held", False):
            raise TransferError(409, "take the caller off hold before consulting")
        if target.kind is TransferKind.QUEUE:
            raise TransferError(
                400, "a consultation is with a colleague or a number", field="queue"
            )
        if target.kind is TransferKind.AGENT:
            colleague = router.router.agents.get(target.value)
            if colleague is None or colleague.state is not routing.AgentState.AVAILABLE:
                raise TransferError(409, "the colleague is not available")
        consult_leg = await self._consult_leg(agent_id, target)
        self._consult = _Consult(agent_id, target, consult_leg)
        self._record("consult_started", agent=agent_id, kind=target.kind.value)
        await self._agent_hold(True, pipeline)  # the caller hears the music meanwhile
        self._consult_state("ringing")
        try:
            if isinstance(consult_leg, WebRtcLeg):
                await consult_leg.start()
            else:
                assert isinstance(consult_leg, AgentLeg)
                cfg = self._config
                await consult_leg.start(
                    from_user=cfg.routing.from_user,
                    from_display=caller_id_display(cfg.routing.from_display, "consultation"),
                )
        except (OSError, ValueError, RuntimeError) as exc:
            self.log.warning("consultation leg not placed: %s", type(exc).__name__)
            consult_leg.close()
            await self._consult_back(pipeline, "failed")
            raise TransferError(502, "the consultation could not be placed") from None

    async def _consult_leg(self, agent_id: str, target: TransferTarget) -> Leg:
        """The leg to the consulted colleague (browser or phone) or number (trunk)."""
        services = self.services
        cfg = self._config
        dialer = services.dialer
        assert dialer is not None

        def sip_leg(leg_agent: str, uri: str) -> AgentLeg:
            return AgentLeg(
                dialer=dialer,
                agent_id=leg_agent,
                target_uri=uri,
                local_host=self._local_host(),
                rtp_host=cfg.rtp.host or cfg.sip.host,
                port_range=(cfg.rtp.port_min, cfg.rtp.port_max),
                on_event=self._inputs.put_nowait,
            )

        if target.kind is TransferKind.NUMBER:
            number = target.value
            dial = number if number.isdigit() else dial_string(number, cfg.callbacks.number_format)
            return sip_leg("external", cfg.callbacks.trunk_uri.format(number=dial))
        colleague = target.value
        hub = services.softphones
        if hub is not None and await hub.is_present(colleague):
            pop = self.screen_pop(self._last_offer) if self._last_offer is not None else {}
            return WebRtcLeg(
                hub=hub,
                config=cfg.webrtc,
                agent_id=colleague,
                owner_call_id=f"{self.call_id}~consult",
                pop={**pop, "call_id": f"{self.call_id}~consult", "consult_from": agent_id},
                on_event=self._inputs.put_nowait,
            )
        uri = await services.agent_uri(colleague) if services.agent_uri is not None else None
        if uri is None:
            raise TransferError(409, "the colleague has no phone or panel to ring")
        return sip_leg(colleague, uri)

    async def _on_consult_leg(self, event: LegEvent, pipeline: Pipeline) -> None:
        consult = self._consult
        assert consult is not None
        if isinstance(event, LegAnswered):
            if consult.connected:
                return
            consult.connected = True
            self._record("consult_answered", agent=consult.agent_id, codec=event.codec)
            assert self._tg is not None
            self._tg.create_task(
                consult.leg.run_media(self._consult_source, self._on_consult_media),
                name=f"consult-rtp-{self.call_id}",
            )
            self._consult_state("connected")
        elif isinstance(event, LegFailed):
            self._record("consult_failed", status=event.status_code, reason=event.kind)
            await self._consult_back(pipeline, "failed")
        elif isinstance(event, LegEnded):
            self._record("consult_hangup", cause=event.cause)
            await self._consult_back(pipeline, "ended")

    def _consult_source(self) -> bytes | None:
        """What the consulted party hears: the agent, then (completed) the caller."""
        consult = self._consult
        if consult is None:
            relay = self._to_agent if self._leg is not None else None
            return relay.pull() if relay is not None else None
        return consult.to_target.pull()

    def _on_consult_media(self, event: MediaEvent) -> None:
        consult = self._consult
        if not isinstance(event, AudioReceived | PcmAudio):
            if self._consult is None and self._leg is not None:
                self._inputs.put_nowait(_AgentKey(self._leg, event.digit))
            return
        pcm = event.pcm
        if consult is not None:
            consult.to_agent.push(pcm)
        elif self._to_caller is not None:  # completed: the consulted party talks to the caller
            self._count("to_caller", pcm)
            self._to_caller.push(pcm)

    async def _consult_back(self, pipeline: Pipeline, how: str) -> None:
        """The consultation is over without a hand-over: the agent is back with the caller."""
        consult = self._consult
        self._consult = None
        if consult is None:
            return
        self._end_leg(consult.leg)
        self._consult_state(how, agent=consult.agent_id)
        if self._routing_state == "bridged" and self._leg is not None:
            await self._agent_hold(False, pipeline)

    @staticmethod
    def _end_leg(leg: Leg) -> None:
        """Hang up (answered) or cancel (ringing) a leg, and release it."""
        if not leg.ended:
            if leg.answered:
                leg.hangup()
            else:
                leg.cancel()
        leg.stop_media()
        leg.close()

    async def _consult_end(self, agent_id: str, pipeline: Pipeline, how: str) -> None:
        consult = self._consult
        if consult is None or consult.agent_id != agent_id:
            raise TransferError(409, "no consultation of this agent")
        self._record("consult_cancelled", agent=agent_id)
        await self._consult_back(pipeline, how)

    async def _consult_complete(self, agent_id: str, pipeline: Pipeline) -> None:
        """Hand the caller to the consulted party; the agent goes to wrap-up."""
        consult = self._consult
        router = self.services.routing
        leg = self._leg
        if consult is None or consult.agent_id != agent_id or leg is None or router is None:
            raise TransferError(409, "no consultation of this agent")
        if not consult.connected:
            raise TransferError(409, "the consulted party has not answered yet")
        target = consult.target
        if target.kind is TransferKind.AGENT:
            colleague = router.router.agents.get(target.value)
            if colleague is None or colleague.state is not routing.AgentState.AVAILABLE:
                # Offered another call meanwhile, paused or gone: the router could not give
                # them this one. The agent cancels, or transfers to the queue.
                raise TransferError(409, "the colleague is no longer available")
        self._consult = None  # before _end_bridge: the consultation goes on, handed over
        self._end_bridge(leg)  # the agent's leg: stats, media stopped
        leg.hangup()
        self._retire_leg()
        await router.submit(routing.CallEnded(agent_id, self.call_id, router.now()))
        self.services.metrics.transfer(target.kind.value)
        self._record(
            "transferred",
            agent=agent_id,
            kind=target.kind.value,
            via="consult",
            to=None if target.kind is TransferKind.NUMBER else target.value,
        )
        # The consulted party now talks with the caller: its media switches from the agent.
        self._held_relays = None
        self._to_agent = AudioRelay()
        self._to_caller = AudioRelay()
        self._leg = consult.leg
        await pipeline.queue_frame(StopPromptFrame())
        self._consult_state("completed", agent=agent_id)
        if target.kind is TransferKind.NUMBER:
            self._external = True
            self._record("bridged", agent="external")
            return
        # A colleague: the router offers them the call (a transfer to a named agent) and the
        # offer is accepted at once on the leg already connected.
        self._handover_to = target.value
        usager_id = self._who.usager_id if self._who is not None else None
        now = router.now()
        queued = routing.QueuedCall(
            call_id=self.call_id,
            skill=self._queue_name or "",
            priority=max(_priority(self._queue_priority), routing.Priority.HIGH),
            joined_at=now,
            usager_id=str(usager_id) if usager_id is not None else None,
            intent=self._queue_intent,
            target_agent=target.value,
        )
        try:
            decisions = await router.submit(routing.CallQueued(queued, now))
        except routing.RoutingError as exc:
            self.log.error("router refused the consultation hand-over: %s", exc)
            decisions = []
        offer = next(
            (
                d
                for d in decisions
                if isinstance(d, routing.OfferCall)
                and d.call.call_id == self.call_id
                and d.agent_id == target.value
            ),
            None,
        )
        if offer is not None:
            await self._handover_accepted(offer)
            if isinstance(self._leg, WebRtcLeg):  # the colleague's panel: the caller's call id
                self._leg.rebind(self.call_id)
            return
        # Not offered to them (taken meanwhile): the call leaves the router rather than wait
        # there while they talk; the conversation goes on outside it, as with a number.
        self._handover_to = None
        with contextlib.suppress(routing.RoutingError):
            await router.submit(routing.CallCancelled(self.call_id, router.now()))
        self._external = True
        self._record("consult_unrouted", agent=target.value)

    async def _handover_accepted(self, offer: routing.OfferCall) -> None:
        """The router offered the call to the consulted colleague: they already have it."""
        router = self.services.routing
        assert router is not None
        if self._handover_to != offer.agent_id:
            return  # accepted already (from the submit's own decisions)
        self._handover_to = None
        decisions = await router.submit(
            routing.OfferAccepted(offer.agent_id, self.call_id, router.now())
        )
        answered = any(
            isinstance(d, routing.CallAnswered) and d.call_id == self.call_id for d in decisions
        )
        self._record(
            "agent_answered",
            agent=offer.agent_id,
            queue=offer.queue,
            via="consult",
            wait_s=round(offer.wait_s, 1),
            accepted=answered,
        )

    def _consult_state(self, state: str, *, agent: str | None = None) -> None:
        """Tell the consulting agent's panel how the consultation goes."""
        hub = self.services.softphones
        consult = self._consult
        login = agent or (consult.agent_id if consult is not None else None)
        if hub is None or login is None or self._tg is None:
            return
        message = {"type": "consult_state", "call_id": self.call_id, "state": state}
        self._tg.create_task(hub.to_agent(login, message), name=f"consult-state-{self.call_id}")

    async def _on_external_leg(
        self, event: LegEvent, pipeline: Pipeline
    ) -> tuple[str, str, str] | None:
        """The external number of a transfer rang, answered, failed or hung up."""
        leg = event.leg
        state = self._routing_state
        if isinstance(event, LegAnswered) and state == "transferring":
            self._stop_transfer_timer()
            self._record("transfer_answered", codec=event.codec)
            await self._bridge(leg, pipeline)
        elif isinstance(event, LegFailed) and state == "transferring":
            self._stop_transfer_timer()
            self._record("transfer_failed", status=event.status_code, reason=event.kind)
            self._retire_leg()
            self._external = False
            await self._queue_again(
                self._queue_name or "", pipeline, prompt="routing_transfer_failed"
            )
        elif isinstance(event, LegEnded) and state == "bridged":
            self._record("transfer_hangup", cause=event.cause)
            self._end_bridge(leg)
            self._stop_routing(state="goodbye")
            self._goodbye_cause = "transfer_ended"
            self._start_goodbye("routing_transfer_ended")
        elif isinstance(event, LegDtmf) and state == "bridged":
            self._relay_key(event.digit, "agent")
        return None

    def _stop_transfer_timer(self) -> None:
        if self._transfer_timer is not None:
            self._transfer_timer.cancel()
            self._transfer_timer = None

    # -- callback request ("rappel", issue 5) -----------------------------------------------
    def _callbacks_on(self) -> bool:
        return self.services.callbacks is not None and self._config.callbacks.enabled

    async def _start_keep_place(self, pipeline: Pipeline) -> None:
        """The waiting caller pressed 0: confirm their number, then keep their place."""
        self._stop_announcer()
        await self._wait_unlisten(pipeline)
        await pipeline.queue_frame(StopPromptFrame())
        self._waiting_prompt = "silence"
        phone = _callback_number(self.incoming.caller_user)
        self._cb = _CallbackDialog(mode="keep_place", step="confirm", phone=phone)
        self._record("callback_asked", mode="keep_place", caller_id=phone is not None)
        await self._cb_confirm_or_type(pipeline)

    async def _offer_slots(self, pipeline: Pipeline, reason: str, *, intro: str | None) -> bool:
        """Offer slots on a closed or waited-out queue; False when there are none to offer."""
        callbacks = self.services.callbacks
        queue = self._queue_name
        if callbacks is None or queue is None or not self._callbacks_on():
            return False
        slots = callbacks.slots(queue)
        if not slots:
            return False
        self._routing_state = "callback"
        self._cb = _CallbackDialog(mode="slot", step="slots", slots=slots, reason=reason)
        if intro is not None:
            self._cb.step = "intro"
            self._cb.question = intro
            await pipeline.queue_frame(PlayPromptFrame(self._voiced(intro), False))
            return True
        await self._cb_ask_slots(pipeline)
        return True

    async def _cb_ask_slots(self, pipeline: Pipeline) -> None:
        dialog = self._cb
        callbacks = self.services.callbacks
        assert dialog is not None and callbacks is not None
        dialog.step = "slots"
        self._record("callback_asked", mode="slot", reason=dialog.reason, slots=len(dialog.slots))
        tz = callbacks.routing.config.timezone
        parts = [
            f"{spoken_slot(slot, tz)} : appuyez sur {i}." for i, slot in enumerate(dialog.slots, 1)
        ]
        text = (
            "Nous pouvons vous rappeler "
            + " Ou ".join(parts)
            + " Si vous ne souhaitez pas être rappelé, appuyez sur 0."
        )
        await self._cb_ask(pipeline, text)

    async def _cb_confirm_or_type(self, pipeline: Pipeline) -> None:
        dialog = self._cb
        assert dialog is not None
        if dialog.phone is None or self.services.tts is None:
            dialog.step = "type"
            dialog.typed = ""
            await self._cb_ask(pipeline, None, prompt_id="callback_type")
            return
        dialog.step = "confirm"
        text = (
            f"Nous vous rappellerons au {spoken_number(dialog.phone)}. Appuyez sur 1 pour "
            "confirmer, sur 2 pour indiquer un autre numéro."
        )
        await self._cb_ask(pipeline, text)

    async def _cb_ask(
        self, pipeline: Pipeline, text: str | None, *, prompt_id: str | None = None
    ) -> None:
        """Ask a question (a text made now, slowly, or a prepared prompt); answer timer after it."""
        dialog = self._cb
        assert dialog is not None
        self._cb_stop_timer()
        dialog.asks = 0
        if text is not None:
            prompt_id = await self._say(text, slow=True)
        if prompt_id is None:
            # No speech synthesis: nothing can be read back; the number must be typed.
            prompt_id = "callback_type"
            dialog.step = "type"
        dialog.question = prompt_id
        await pipeline.queue_frame(PlayPromptFrame(self._voiced(prompt_id), True))

    async def _cb_repeat(self, pipeline: Pipeline) -> None:
        dialog = self._cb
        assert dialog is not None and dialog.question is not None
        self._cb_stop_timer()
        await pipeline.queue_frame(StopPromptFrame())
        await pipeline.queue_frame(PlayPromptFrame(self._voiced(dialog.question), True))

    def _cb_arm(self, seconds: float) -> None:
        self._cb_stop_timer()
        if self._tg is None:
            return
        self._cb_token += 1
        token = self._cb_token

        async def expire() -> None:
            await asyncio.sleep(seconds)
            self._inputs.put_nowait(_CallbackTimeout(token))

        self._cb_timer = self._tg.create_task(expire(), name=f"callback-timer-{self.call_id}")

    def _cb_stop_timer(self) -> None:
        self._cb_token += 1
        if self._cb_timer is not None:
            self._cb_timer.cancel()
            self._cb_timer = None

    def _cb_stop(self) -> None:
        """Forget the request (an agent is free, or the queue closed meanwhile)."""
        self._cb_stop_timer()
        self._cb = None

    async def _callback_input(
        self, item: _Input, pipeline: Pipeline
    ) -> tuple[bool, tuple[str, str, str] | None]:
        """One input during a callback request: (consumed, end of the call)."""
        dialog = self._cb
        assert dialog is not None
        if isinstance(item, PromptFinishedFrame):
            base_id = item.prompt_id.removesuffix(".slow")
            if dialog.step == "slots_pending":
                if not self._is_hold_prompt(item.prompt_id):
                    return False, None
                self._record_prompt(item.prompt_id, False)
                dialog.slots = (
                    self.services.callbacks.slots(self._queue_name or "")
                    if (self.services.callbacks is not None)
                    else []
                )
                if not dialog.slots:
                    self._cb = None
                    return True, await self._resume_flow(pipeline)
                await self._cb_ask_slots(pipeline)
                return True, None
            if base_id != dialog.question and base_id not in ("callback_bad_number",):
                return False, None
            self._record_prompt(item.prompt_id, item.interrupted)
            if dialog.step == "intro":
                await self._cb_ask_slots(pipeline)
            elif dialog.step == "done":
                self._cb = None
                self._sip(lambda now: self.services.sip.engine.hangup(self.call_id, now))
                self._ended = True
                return True, ("completed", "callback_requested", "service")
            elif dialog.step == "leaving":
                self._cb = None
                if dialog.mode == "keep_place":
                    self._routing_state = "waiting"
                    await self._announce_wait(pipeline)
                    return True, None
                return True, await self._resume_flow(pipeline)
            elif not item.interrupted:
                self._cb_arm(_CALLBACK_TYPE_S if dialog.step == "type" else _CALLBACK_ANSWER_S)
            return True, None
        if isinstance(item, _CallbackTimeout):
            if item.token != self._cb_token or dialog.step in ("done", "leaving", "saving"):
                return True, None
            if dialog.step == "type" and dialog.typed:
                await self._cb_typed(pipeline)  # no '#': take what was typed
                return True, None
            dialog.asks += 1
            if dialog.asks >= _CALLBACK_ASKS:
                await self._cb_give_up(pipeline, "timeout")
            else:
                await self._cb_repeat(pipeline)
            return True, None
        if isinstance(item, _Dtmf):
            self._record_key(item, secret=dialog.step == "type")  # a phone number typed
            await self._cb_key(item.digit, pipeline)
            return True, None
        if isinstance(item, _WaitTick):
            return True, None  # no wait announcement during the request
        return False, None

    async def _cb_key(self, digit: str, pipeline: Pipeline) -> None:
        dialog = self._cb
        assert dialog is not None
        step = dialog.step
        if step in ("done", "saving", "leaving", "slots_pending", "intro"):
            return
        if digit == "*":  # "répéter"
            if step == "type":
                dialog.typed = ""
            await self._cb_repeat(pipeline)
            return
        if step == "type":
            if digit == "#":
                await self._cb_typed(pipeline)
                return
            if digit.isdigit():
                if not dialog.typed:
                    await pipeline.queue_frame(StopPromptFrame())
                dialog.typed = (dialog.typed + digit)[:20]
                self._cb_arm(_CALLBACK_TYPE_S)
            return
        if step == "confirm":
            if digit == "1":
                await self._cb_save(pipeline)
            elif digit == "2":
                await pipeline.queue_frame(StopPromptFrame())
                dialog.phone = None
                await self._cb_confirm_or_type(pipeline)
            return
        if step == "slots":
            if digit == "0":
                await self._cb_give_up(pipeline, "declined")
            elif digit.isdigit() and 1 <= int(digit) <= len(dialog.slots):
                dialog.slot = dialog.slots[int(digit) - 1]
                await pipeline.queue_frame(StopPromptFrame())
                raw = self.incoming.caller_user
                dialog.phone = _callback_number(raw)
                self._record("callback_slot_chosen", choice=int(digit))
                await self._cb_confirm_or_type(pipeline)

    async def _cb_typed(self, pipeline: Pipeline) -> None:
        dialog = self._cb
        assert dialog is not None
        phone = _callback_number(dialog.typed)
        dialog.typed = ""
        self._cb_stop_timer()
        if phone is None:
            dialog.bad_numbers += 1
            self._record("callback_number_invalid", tries=dialog.bad_numbers)
            if dialog.bad_numbers >= _CALLBACK_TYPE_TRIES:
                await self._cb_give_up(pipeline, "invalid_number")
                return
            await pipeline.queue_frame(StopPromptFrame())
            await pipeline.queue_frame(PlayPromptFrame(self._voiced("callback_bad_number"), False))
            await pipeline.queue_frame(PlayPromptFrame(self._voiced("callback_type"), True))
            dialog.question = "callback_type"
            return
        self._record("callback_number_typed")
        dialog.phone = phone
        await self._cb_confirm_or_type(pipeline)

    async def _cb_save(self, pipeline: Pipeline) -> None:
        """Persist the request; confirm it and hang up, or say it failed."""
        dialog = self._cb
        callbacks = self.services.callbacks
        assert dialog is not None and callbacks is not None and dialog.phone is not None
        self._cb_stop_timer()
        dialog.step = "saving"
        await pipeline.queue_frame(StopPromptFrame())
        try:
            if dialog.mode == "keep_place":
                if self._routing_state != "waiting":
                    raise routing.RoutingError("the call no longer waits")
                stored = await callbacks.keep_place(
                    self.call_id, dialog.phone, origin_call_id=self.call_id
                )
                # The router keeps the entry (same place): this call no longer answers for it.
                self._stop_routing(state="callback")
            else:
                assert dialog.slot is not None and self._queue_name is not None
                priority = _priority(self._queue_priority)
                usager = self._who.usager_id if self._who is not None else None
                stored = await callbacks.book(
                    self._queue_name,
                    dialog.slot,
                    dialog.phone,
                    origin_call_id=self.call_id,
                    priority=priority,
                    usager_id=str(usager) if usager is not None else None,
                    intent=self._queue_intent,
                )
        except (routing.RoutingError, CallbackError, ValueError, SQLAlchemyError) as exc:
            self.log.error("callback not saved: %s", type(exc).__name__)
            self._record("callback_failed", mode=dialog.mode, error=type(exc).__name__)
            dialog.step = "leaving"
            dialog.question = "callback_error"
            await pipeline.queue_frame(PlayPromptFrame(self._voiced("callback_error"), False))
            return
        self._record(
            "callback_requested",
            mode=dialog.mode,
            callback=stored.id,
            queue=stored.callback.skill,
            slot_start=(
                datetime.fromtimestamp(dialog.slot.start, UTC).isoformat() if dialog.slot else None
            ),
        )
        dialog.step = "done"
        done = "callback_kept" if dialog.mode == "keep_place" else "callback_booked"
        dialog.question = done
        await pipeline.queue_frame(PlayPromptFrame(self._voiced(done), False))

    async def _cb_give_up(self, pipeline: Pipeline, reason: str) -> None:
        """No callback after all: back to waiting, or (slots) a goodbye and the flow goes on."""
        dialog = self._cb
        assert dialog is not None
        self._cb_stop_timer()
        self._record("callback_abandoned", step=dialog.step, reason=reason)
        dialog.step = "leaving"
        prompt = "callback_stay" if dialog.mode == "keep_place" else "callback_declined"
        dialog.question = prompt
        await pipeline.queue_frame(StopPromptFrame())
        await pipeline.queue_frame(PlayPromptFrame(self._voiced(prompt), False))

    # -- identification and dossier answers ------------------------------------------------
    async def _identify(
        self, action: ivr_flows.LookupCaller | ivr_flows.VerifyIdentity
    ) -> ivr_flows.Event:
        identity = self.services.identity
        caller = self.incoming.caller_user or None
        if isinstance(action, ivr_flows.LookupCaller):
            known = identity is not None and await identity.lookup_caller(
                caller, call_id=self.call_id
            )
            self._record("caller_lookup", known=known)
            return ivr_flows.CallerLookedUp(known)
        who = (
            await identity.verify(caller, action.number, action.birth_date, call_id=self.call_id)
            if identity is not None
            else Verification("mismatch")
        )
        # The usager's internal id links the call to the dossier; nothing the caller typed.
        self._record(
            "identification",
            result=who.result,
            role=who.role,
            usager_id=who.usager_id,
            by="dossier_number" if action.number else "caller_number",
        )
        if who.result == "ok":
            self._who = who
        return ivr_flows.IdentityChecked(who.result, who.role)

    async def _dossier_answer(self, intent: str) -> ivr_flows.Event:
        identity = self.services.identity
        answer = None
        if identity is not None and self._who is not None:
            answer = await identity.dossier_answer(
                self._who, intent, self._flow_now().date(), call_id=self.call_id
            )
        reason = answer.reason.value if answer is not None and answer.reason else ""
        self._record(
            "dossier_answer",
            intent=intent,
            spoken=answer is not None,
            handover=answer.handover if answer is not None else True,
            reason=reason,
            detail=answer.detail if answer is not None else "",
        )
        if answer is None:
            return ivr_flows.DossierAnswerReady(None, handover=True, reason="no_dossier_answer")
        prompt_id = await self._say(answer.text)
        if prompt_id is None:
            return ivr_flows.DossierAnswerReady(None, handover=True, reason="tts_failed")
        self._answered.append(intent)
        self._bot_used = True  # a self-service answer, even by keypad
        return ivr_flows.DossierAnswerReady(prompt_id, answer.handover, reason)

    async def _say(self, text: str, *, slow: bool = False) -> str | None:
        """Render a text made for this call (normal or slow voice) as a prompt of its own."""
        voices = self.services.tts
        if voices is None:
            return None
        try:
            pcm = await voices[1 if self._slow or slow else 0].render(text)
        except TtsError as exc:
            self.log.error("speech synthesis failed: %s", type(exc).__name__)
            return None
        prompt_id = f"call-{self._sdp_session_id}-{len(self._own_prompts)}"
        self.services.prompts.add(prompt_id, pcm)
        self._own_prompts.append(prompt_id)
        return prompt_id

    async def _record_contact(self, outcome: str, cause: str) -> None:
        identity = self.services.identity
        if identity is None or self._answered_at is None:
            return
        try:
            await identity.record_contact(
                sip_call_id=self.call_id,
                started_at=self._started_utc,
                ended_at=self._now(),
                who=self._who,
                bot_path=tuple(self._bot_path),
                intents=tuple(self._intents),
                summary=contact_summary(self._said),
                outcome=(
                    "satisfied"
                    if cause == "satisfied"
                    else "callback"
                    if cause == "callback_requested"
                    else outcome
                ),
            )
        except Exception as exc:  # the store is down: the trail still has the call
            self.log.error("contact history not written: %s", type(exc).__name__)

    # -- the voice bot ----------------------------------------------------------------------
    async def _listen(self, action: ivr_flows.Listen, pipeline: Pipeline) -> None:
        self._bot_used = True
        self._grammar = action.grammar
        if self._recognizer is None:
            # Keypad only: the digits' own timer stands for the speech no-input timer.
            self._listen_fallback = action.no_input_s
            return
        await pipeline.queue_frame(
            ListenFrame(
                no_input_s=action.no_input_s,
                grammar=YES_NO_WORDS if action.grammar == "yes_no" else None,
                barge_in=action.barge_in,
            )
        )

    def _record_prompt(self, prompt_id: str, interrupted: bool) -> None:
        """Trail a prompt played (or cut short); a digit read back keeps no value."""
        self._record("prompt_played", prompt_id=_trail_prompt(prompt_id), interrupted=interrupted)

    def _record_key(self, item: _Dtmf, *, secret: bool) -> None:
        """Trail one key: its value for a menu choice, only the fact for typed numbers.

        A birth date, a dossier number or a phone number typed on the keypad is personal data
        that the trail would keep for ``retention.trail_days``; the flow's own events
        (``identification``, ``callback_requested``) say what came of it.
        """
        if secret:
            self._record("dtmf", method=item.method, masked=True)
        else:
            self._record("dtmf", digit=item.digit, method=item.method)
        self.services.metrics.dtmf_digit(item.method)

    def _speech_timeout(self, reason: str) -> ivr_flows.SpeechTimedOut:
        self._record("speech_timeout", reason=reason, grammar=self._grammar)
        self.services.metrics.bot_failure("no_input" if reason == "no_input" else "no_match")
        return ivr_flows.SpeechTimedOut(reason)

    def _heard(self, frame: TranscriptFrame) -> ivr_flows.Event:
        transcript = frame.transcript
        latency = frame.latency_s
        self._reply_from = frame.end_of_turn
        self._record(
            "transcript",
            text=transcript.text,
            engine=transcript.engine,
            confidence=round(transcript.confidence, 3),
            audio_s=round(transcript.audio_s, 2),
            decode_ms=round(transcript.decode_s * 1000),
            latency_ms=round(latency * 1000),
            speculative=frame.speculative,
        )
        self.services.metrics.asr_result(transcript.engine, latency, transcript.decode_s)
        return self._heard_text(transcript.text, transcript.confidence)

    def _heard_text(self, text: str, confidence: float | None) -> ivr_flows.Event:
        self._said.append(text)
        bot = self._bot
        assert bot is not None  # a recogniser is only set up with a bot
        understood = bot.understand(text, self._grammar)
        understanding = understood.understanding
        self._record("intent", **understood.trail)
        metrics = self.services.metrics
        if self._grammar == "open" and understanding.command is None:
            metrics.bot_decision(understood.trail.get("intent"), understanding.decision.value)
            if understanding.decision is ivr_flows.Decision.NONE:
                metrics.bot_failure("no_match")
            elif understanding.decision is ivr_flows.Decision.MENU:
                metrics.bot_failure("not_understood")
        elif (
            self._grammar == "yes_no" and understanding.yes_no is None and not understanding.command
        ):
            metrics.bot_failure("no_match")
        return ivr_flows.SpeechHeard(text, understanding)

    def _on_reinvite(self, event: sip_events.ReInviteReceived) -> None:
        engine = self.services.sip.engine
        if not event.sdp_offer:
            # RFC 3261 section 14.2: an offerless re-INVITE (a session refresh from some PBXs)
            # gets our offer in the 2xx; the answer comes in the ACK (ReInviteConfirmed).
            offer = self._current_offer()
            self._pending_offer = offer
            self._sip(lambda now: engine.answer_reinvite(self.call_id, bytes(offer), now))
            return
        try:
            media = self._negotiate(sdp.SessionDescription.parse(event.sdp_offer))
        except (sdp.SdpParseError, sdp.SdpNegotiationError) as exc:
            status = exc.status_code
            self.log.info("re-INVITE refused (%s): %s", status, _redacted(exc))
            self._sip(lambda now: engine.reject_reinvite(self.call_id, status, now))
            return
        answer = bytes(media.answer)
        self._sip(lambda now: engine.answer_reinvite(self.call_id, answer, now))
        self._record("reinvite", direction=media.direction, codec=media.codec)
        self._propagate_hold(media)

    def _current_offer(self) -> sdp.SessionDescription:
        """Our side of the session as it stands, offered anew (version incremented)."""
        assert self._media is not None
        media = self._media
        return self._offer((media.codec,), media.telephone_event_pt, media.direction)

    def _offer(
        self, codecs: tuple[str, ...], telephone_event_pt: int | None, direction: sdp.Direction
    ) -> sdp.SessionDescription:
        assert self._rtp is not None
        offer = sdp.make_offer(
            local_address=self._local_host(),
            local_port=self._rtp.local_port,
            codecs=codecs,
            telephone_event_pt=telephone_event_pt,
            direction=direction,
            session_id=self._sdp_session_id,
            session_version=self._sdp_version,
        )
        self._sdp_version += 1
        return offer

    async def _await_answer_in_ack(
        self, offer: sdp.SessionDescription
    ) -> tuple[str, str, str] | None:
        """Delayed offer: wait for the ACK's answer and apply it; return the end if it fails."""
        deferred: list[_Input] = []
        try:
            while True:
                item = await self._inputs.get()
                ended = self._ending(item)  # CANCEL is over by now; a BYE or ack_timeout is not
                if ended is not None:
                    return ended
                if not isinstance(item, sip_events.CallConfirmed):
                    deferred.append(item)  # e.g. an INFO digit racing the ACK: handled after
                    continue
                try:
                    if not item.sdp_answer:
                        raise sdp.SdpNegotiationError("the ACK carries no SDP answer")
                    answer = sdp.SessionDescription.parse(item.sdp_answer)
                    self._apply_media(sdp.negotiated_from_answer(offer, answer))
                except (sdp.SdpParseError, sdp.SdpNegotiationError) as exc:
                    self.log.info("answer in ACK refused: %s", _redacted(exc))
                    self._sip(lambda now: self.services.sip.engine.hangup(self.call_id, now))
                    self._ended = True
                    return "failed", "bad_sdp_answer", "service"
                return None
        finally:
            for item in deferred:
                self._inputs.put_nowait(item)

    def _on_reinvite_confirmed(self, event: sip_events.ReInviteConfirmed) -> None:
        offer, self._pending_offer = self._pending_offer, None
        if offer is None or not event.sdp_answer:
            return
        try:
            media = sdp.negotiated_from_answer(
                offer, sdp.SessionDescription.parse(event.sdp_answer)
            )
            self._apply_media(media)
        except (sdp.SdpParseError, sdp.SdpNegotiationError) as exc:
            # The dialog stays up with the media as it was; nothing better to do with a bad ACK.
            self.log.info("answer in ACK refused: %s", _redacted(exc))
            return
        self._record("reinvite", direction=media.direction, codec=media.codec)
        self._propagate_hold(media)

    def _propagate_hold(self, media: sdp.NegotiatedMedia) -> None:
        """While bridged, the caller's hold and resume reach the agent's phone (re-INVITE)."""
        leg = self._leg
        held = media.on_hold  # the caller wants nothing from us: a=sendonly/inactive, 0.0.0.0
        if held == self._caller_held:
            return
        self._caller_held = held
        if self._routing_state != "bridged" or leg is None:
            return
        sent = leg.hold() if held else leg.resume()
        self._record("caller_hold" if held else "caller_resume", agent=leg.agent_id, sent=sent)


_DIGIT_PROMPT = re.compile(r"digit_[0-9*#]")


def _trail_prompt(prompt_id: str) -> str:
    """Return the prompt id as the trail keeps it.

    A digit read back (of a dossier or phone number) is only ``digit``: the number cannot be
    rebuilt from the trail (D34).
    """
    return "digit" if _DIGIT_PROMPT.fullmatch(prompt_id.removesuffix(".slow")) else prompt_id


def _staffed(service: RoutingBackend, queue: str) -> bool:
    """Whether an agent is logged in (even paused or busy) with a skill that may serve ``queue``."""
    queues = {name for name, _ in routing.overflow_chain(service.config, queue)}
    return any(
        agent.state is not routing.AgentState.OFFLINE
        and any(agent.proficiency(name) > 0 for name in queues)
        for agent in service.router.agents.values()
    )


def _redacted(exc: Exception) -> str:
    """An SDP error message without the quoted values (an o= line may carry a phone number)."""
    return re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", str(exc))


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


_DAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip


def spoken_number(e164: str) -> str:
    """A French number read digit pair by digit pair (``06 12 34 56 78``).

    Args:
        e164: The number, E.164 (``+33612345678``).

    Returns:
        ``zéro 6, 12, 34, 56, 78`` for a French number (a leading zero is said), the digits in
        groups of two otherwise.
    """
    digits = e164.removeprefix("+33")
    if digits != e164:
        digits = "0" + digits
    else:
        digits = e164.lstrip("+")
    pairs = [digits[i : i + 2] for i in range(0, len(digits), 2)]
    spoken = [f"zéro {p[1:]}" if p.startswith("0") and len(p) == 2 else p for p in pairs]
    return ", ".join(spoken)


def _hour(moment: datetime) -> str:
    text = "midi" if moment.hour == 12 and moment.minute == 0 else f"{moment.hour} heures"
    return text if moment.minute == 0 else f"{moment.hour} heures {moment.minute}"


def spoken_slot(slot: Slot, tz: ZoneInfo) -> str:
    """A slot as said to the caller: ``lundi 7 décembre entre 9 heures et 10 heures``.

    Args:
        slot: The slot (POSIX seconds).
        tz: The queue's timezone.
    """
    start = datetime.fromtimestamp(slot.start, tz)
    end = datetime.fromtimestamp(slot.end, tz)
    day = f"{_DAYS[start.weekday()]} {'1er' if start.day == 1 else start.day}"
    return f"{day} {_MONTHS[start.month - 1]} entre {_hour(start)} et {_hour(end)}"
