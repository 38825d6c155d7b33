"""Composition root and lifecycle of ``callcenter serve``.

Start-up order: data dir → HTTP (``/health`` says ``starting``, 503) → flows (validated) → FAQ
knowledge base (validated) → prompt cache (espeak-ng renders every prompt and FAQ answer once, at
the normal and the slow rate) → speech recognition model → event trail store → SIP listener (UDP,
and TCP on the same port) → upstream registration → ``/health`` ok. SIGHUP (or a changed flow or
FAQ file) reloads them, keeping the last good version when the new one is invalid. Transcripts
are erased after ``retention.transcript_days``. SIGTERM/SIGINT drain: new INVITEs
get 503 and ``/health`` 503, running calls finish (bounded by ``calls.drain_timeout``, then they are
hung up), then the service exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

import ivr_flows
import routing
from callcenter import call as call_module
from callcenter.bot import FaqRegistry, VoiceBot
from callcenter.call import Call, CallServices
from callcenter.callbacks import CALLBACK_SERVICE_PROMPTS, CallbackService
from callcenter.config import Config, is_loopback_host
from callcenter.identity import IdentityService
from callcenter.media.asr import AsrError, AsrService, AsrSettings, load_service
from callcenter.media.audio import AudioFormatError, load_wav_8k
from callcenter.media.tts.espeak import EspeakConfig, EspeakTts, TtsUnavailableError
from callcenter.media.tts.prompt_cache import PromptCache, PromptCacheError, PromptSpec
from callcenter.metrics import Metrics, QueueMetrics
from callcenter.routing_redis import RedisRoutingConfig, RedisRoutingService
from callcenter.routing_service import RoutingBackend, RoutingService
from callcenter.sip import events as sip_events
from callcenter.sip.access import AccessPolicy, is_trusted_source
from callcenter.sip.auth import DigestServer
from callcenter.sip.engine import RegistrationConfig, SipEngine, SipEngineConfig
from callcenter.sip.ratelimit import SourceRateLimiter
from callcenter.softphone import SoftphoneHub
from callcenter.store import agents as agents_store
from callcenter.store import audit as audit_store
from callcenter.store import callbacks as callbacks_store
from callcenter.store import db
from callcenter.store import dossiers as repo
from callcenter.store.trail import CallTrail
from callcenter.transfer import TransferError, TransferPolicy, TransferTarget, check_target
from callcenter.transport.sip_tcp import SipTcpTransport
from callcenter.transport.sip_udp import SipUdpTransport
from callcenter.web.agent_api import add_agent_routes
from callcenter.web.app import DossierApi, HealthState, make_app
from faq.loader import FaqError
from routing.estimate import HandleTimes

logger = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
"""The département's time zone (the panel's "today")."""
# faster-whisper logs every utterance's duration at INFO: one line per caller turn is noise.
logging.getLogger("faster_whisper").setLevel(logging.WARNING)


class StartupError(Exception):
    """The service cannot start; the message says why and what to do."""


@dataclass(slots=True)
class FlowRegistry:
    """The flows in service, by id, reloaded in place; invalid new versions are refused.

    Calls take their flow when they start, so a reload never changes a running call.
    """

    directory: Path
    flow_ids: tuple[str, ...]
    flows: dict[str, ivr_flows.Flow] = field(default_factory=dict)
    mtimes: dict[str, float] = field(default_factory=dict)

    def path(self, flow_id: str) -> Path:
        return self.directory / f"{flow_id}.yaml"

    def load_all(self) -> tuple[dict[str, ivr_flows.Flow], dict[str, float]]:
        """Load and validate every flow; raise FlowError (all issues) without changing anything.

        Returns the flows and the files' modification times taken *before* reading them, so
        that an edit saved while prompts render is seen as a change and loaded next.
        """
        mtimes = self.current_mtimes()
        loaded: dict[str, ivr_flows.Flow] = {}
        for flow_id in self.flow_ids:
            loaded[flow_id] = ivr_flows.load_flow(self.path(flow_id))
        return loaded, mtimes

    def install(self, flows: dict[str, ivr_flows.Flow], mtimes: dict[str, float]) -> None:
        self.flows = flows
        self.mtimes = mtimes
        for flow in flows.values():
            for warning in flow.warnings:  # e.g. unreachable nodes: served, but worth a look
                logger.warning("%s", warning)

    def changed(self) -> bool:
        return self.current_mtimes() != self.mtimes

    def current_mtimes(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for flow_id in self.flow_ids:
            with contextlib.suppress(OSError):
                out[flow_id] = self.path(flow_id).stat().st_mtime
        return out

    def get(self, flow_id: str) -> ivr_flows.Flow:
        return self.flows[flow_id]


class PromptConflictError(Exception):
    """Two flows define the same prompt id differently (the cache is keyed by prompt id)."""


def prompt_specs(flows: Iterable[ivr_flows.Flow], flow_dir: Path) -> list[PromptSpec]:
    """Every prompt of the flows, for the prompt cache (recordings are relative to the flow).

    Raises:
        PromptConflictError: naming the prompt id and both flows.
    """
    specs: dict[str, PromptSpec] = {}
    owners: dict[str, str] = {}
    for flow in flows:
        for prompt in flow.prompts():
            recording = flow_dir / prompt.recording if prompt.recording else None
            spec: PromptSpec = (prompt.prompt_id, prompt.text, recording)
            known = specs.get(prompt.prompt_id)
            if known is not None and known != spec:
                raise PromptConflictError(
                    f"prompt {prompt.prompt_id!r} is defined differently in flows "
                    f"{owners[prompt.prompt_id]!r} and {flow.flow_id!r}: give one of them "
                    "another id"
                )
            specs[prompt.prompt_id] = spec
            owners.setdefault(prompt.prompt_id, flow.flow_id)
    return list(specs.values())


def service_prompt_specs(
    config: Config, flows: Iterable[ivr_flows.Flow], flow_dir: Path, bot: VoiceBot
) -> list[PromptSpec]:
    """Every prompt the service plays: flows, FAQ answers, queue and callback messages.

    Raises:
        PromptConflictError: A flow uses an id reserved for the FAQ, or two flows disagree.
    """
    specs = prompt_specs(flows, flow_dir)
    taken = {spec[0] for spec in specs}
    for spec in bot.prompt_specs():
        if spec[0] in taken:
            raise PromptConflictError(
                f"prompt {spec[0]!r}: ids starting with 'faq_answer_' or 'faq_label_' are "
                "reserved for the FAQ answers; rename the flow's prompt"
            )
        specs.append(spec)
    if config.routing.enabled:
        specs.extend(call_module.ROUTING_PROMPTS)
        specs.extend(call_module.POSITION_PROMPTS)
        if config.callbacks.enabled:
            specs.extend(call_module.CALLBACK_PROMPTS)
            specs.extend(CALLBACK_SERVICE_PROMPTS)
    return specs


def flow_ids(config: Config) -> tuple[str, ...]:
    """The flows in service: the default one and those the numbers map to."""
    return tuple(dict.fromkeys([config.flows.default, *(f for _, f in config.flows.numbers)]))


class Service:
    """The running service: SIP, calls, HTTP, flows, store and metrics."""

    def __init__(self, config: Config) -> None:
        """Create the service objects; nothing is bound until :meth:`start`."""
        self.config = config
        self.metrics = Metrics()
        self.health = HealthState()
        data = config.data_path
        self.flows = FlowRegistry(Path(config.flows.directory), flow_ids(config))
        recordings = (
            Path(config.tts.recordings_dir) if config.tts.recordings_dir else data / "prompts"
        )
        self.tts = EspeakTts(config=EspeakConfig(voice=config.tts.voice, rate=config.tts.rate))
        slow = EspeakConfig(voice=config.tts.voice, rate=config.tts.slow_rate)
        self.slow_tts = EspeakTts(config=slow)
        cache = Path(config.tts.cache_dir) if config.tts.cache_dir else data / "cache" / "prompts"
        self.prompts = PromptCache(cache, recordings, self.tts)
        self.slow_prompts = PromptCache(cache, recordings, self.slow_tts)
        self.faq = FaqRegistry.from_setting(config.faq.file)
        self.asr: AsrService | None = None
        self.identity: IdentityService | None = None
        self.trail = CallTrail.from_url(config.db_url)
        self.calls: dict[str, Call] = {}
        self.call_tasks: set[asyncio.Task[None]] = set()
        self.sip: SipUdpTransport | None = None
        self.sip_tcp: SipTcpTransport | None = None
        self._runner: web.AppRunner | None = None
        self._reload_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self.outbound: dict[str, Callable[[sip_events.SipEvent], None]] = {}
        """Owners of outbound Call-IDs (agent legs): their SIP events go there."""
        self.routing: RoutingBackend | None = None
        self._queue_metrics = QueueMetrics(self.metrics)
        """Callback entries being offered (their answer is not a queue answer time)."""
        """The router of queued calls; None when ``routing.file = "none"``."""
        self.handle_times: dict[str, HandleTimes] = {}
        """Recent handle times per queue (wait estimates)."""
        self.agent_uris: dict[str, str] = {}
        """Agent login to SIP URI, from the agents store (loaded at start, refreshed on a miss)."""
        self.store_engine: Engine | None = None
        """The store (dossiers, agents, trail database), once started."""
        self.callbacks: CallbackService | None = None
        """Callbacks ("rappel"), when routing and ``callbacks.enabled``."""
        self.softphones: SoftphoneHub | None = None
        """Browser softphones of the agent panel (``panel.enabled`` with routing)."""

    # -- start-up --------------------------------------------------------------------------
    async def start(self) -> None:
        """Bring everything up; raise StartupError with a clear message on failure."""
        cfg = self.config
        cfg.data_path.mkdir(parents=True, exist_ok=True)
        store = db.make_engine(cfg.db_url)  # connects on first use (after the migrations)
        if cfg.routing.enabled:
            self._start_routing()  # before HTTP: the agent API's routes need the router
            assert self.routing is not None
            # Redis backend: replays the shared state (a Redis down: local mode, reconciled).
            await self.routing.start()
        # HTTP first, so /health answers 503 "starting" while prompts render.
        app = make_app(
            trail=self.trail,
            metrics=self.metrics,
            health=self.health,
            dossier_api=DossierApi(store=store, tokens=dict(cfg.http.api_tokens)),
            # Beyond the machine, the call trail (callers' numbers) needs a token too.
            trail_requires_token=not is_loopback_host(cfg.http.host),
        )
        if self.routing is not None:
            # Agents' REST + WebSocket API (503 until the store is migrated below).
            add_agent_routes(
                app,
                routing=self.routing,
                store=store,
                transfer=self.transfer_call,
                transfer_policy=TransferPolicy(allowed_numbers=cfg.transfers.allowed_numbers),
            )
            if cfg.panel.enabled:
                self._add_panel(app, store)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.http.host, cfg.http.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on HTTP {cfg.http.host}:{cfg.http.port}: {exc.strerror}"
            ) from None

        try:
            self.tts.check_available()
        except TtsUnavailableError as exc:
            raise StartupError(str(exc)) from None
        try:
            flows, mtimes = self.flows.load_all()
        except ivr_flows.FlowError as exc:
            raise StartupError(f"invalid flow file(s):\n{exc}") from None
        try:
            bot, faq_mtime = await asyncio.to_thread(self.faq.load)
        except FaqError as exc:
            raise StartupError(f"invalid FAQ knowledge base:\n{exc}") from None
        try:
            await self._prepare_prompts(flows.values(), bot)
        except (PromptCacheError, PromptConflictError) as exc:
            raise StartupError(str(exc)) from None
        self.flows.install(flows, mtimes)
        self.faq.install(bot, faq_mtime)
        self.metrics.set_intents(bot.intent_ids)
        if cfg.asr.engine != "none":
            try:
                self.asr = await asyncio.to_thread(load_service, self._asr_settings())
                asr = self.asr
                self.metrics.watch_asr_errors(asr.engine.name, lambda: asr.errors)
            except AsrError as exc:
                raise StartupError(f"speech recognition: {exc}") from None
        try:
            # Migrations first (the trail and the dossiers share the database).
            await asyncio.to_thread(db.create_schema, store)
        except SQLAlchemyError as exc:
            raise StartupError(f"database {db.safe_url(cfg.db_url)}: {exc}") from None
        self.identity = IdentityService(store)
        self.store_engine = store
        await self.trail.start()
        if self.routing is not None:
            await self.refresh_agents()

        try:
            sock = SipUdpTransport.bind(cfg.sip.host, cfg.sip.port)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on SIP {cfg.sip.host}:{cfg.sip.port}: {exc.strerror}"
            ) from None
        # The engine writes the bound port in Via and Contact (``--sip-port 0`` picks one).
        engine = SipEngine(config=self._engine_config(port=sock.getsockname()[1]))
        self.sip = await SipUdpTransport.open(sock, engine=engine, on_event=self._on_sip_event)
        if cfg.sip.tcp:
            # The same engine serves TCP on the same port (RFC 3261 section 18).
            port = self.sip.local_address[1]
            try:
                self.sip_tcp = await SipTcpTransport.open(
                    cfg.sip.host, port, engine=engine, flush=self.sip.flush
                )
            except OSError as exc:
                raise StartupError(
                    f"cannot listen on SIP TCP {cfg.sip.host}:{port}: {exc.strerror}"
                ) from None
            self.sip.flush_hooks.append(self.sip_tcp.send_pending)
        if cfg.sip.registrar:
            engine.start_registration(self.sip.now())
            self.sip.flush()
        if self.routing is not None and cfg.callbacks.enabled:
            # After SIP (it dials) and the migrations (it reads the store).
            self.callbacks = CallbackService(
                config=cfg,
                routing_service=self.routing,
                engine=store,
                dialer=self,
                agent_uri=self.agent_uri,
                trail=self.trail,
                metrics=self.metrics,
                prompts=self.prompts,
                softphones=self.softphones,
            )
            try:
                await self.callbacks.start()
            except SQLAlchemyError as exc:
                raise StartupError(f"callbacks: cannot load from the store: {exc}") from None
        self.metrics.gauge_function(
            "callcenter_trail_pending_operations",
            "Call trail operations waiting to be written to the store.",
            lambda: float(self.trail.pending),
        )
        # Start-up objects (flows, prompt audio, modules) live for the whole run: keep them out
        # of the collector's full passes, which would otherwise walk them during calls.
        self.metrics.set_registration_configured(bool(cfg.sip.registrar))
        await self.probe()
        gc.collect()
        gc.freeze()
        self.health.state = "ok"
        logger.info(
            "serving: SIP udp%s %s:%d, HTTP %s:%d, flows %s",
            "+tcp" if self.sip_tcp is not None else "",
            cfg.sip.host,
            self.sip.local_address[1],
            cfg.http.host,
            cfg.http.port,
            ", ".join(self.flows.flow_ids),
        )

    def _asr_settings(self) -> AsrSettings:
        asr = self.config.asr
        cache = Path(asr.cache_dir) if asr.cache_dir else self.config.data_path / "models"
        return AsrSettings(
            engine="vosk" if asr.engine == "vosk" else "whisper",
            cache_dir=cache,
            vosk_model_dir=Path(asr.vosk_model_dir) if asr.vosk_model_dir else None,
            whisper_model_dir=Path(asr.whisper_model_dir) if asr.whisper_model_dir else None,
            threads=asr.threads,
            workers=asr.workers,
            end_of_turn_s=asr.end_of_turn_s,
            max_utterance_s=asr.max_utterance_s,
            barge_in_min_speech_s=asr.barge_in_min_speech_s,
        )

    async def _prepare_prompts(self, flows: Iterable[ivr_flows.Flow], bot: VoiceBot) -> None:
        """Render every prompt of the flows and of the bot, at the normal and the slow rate."""
        specs = service_prompt_specs(self.config, flows, self.flows.directory, bot)
        await self.prompts.prepare(specs)
        # "plus lentement": the same prompts, slower (a recording is played as it is).
        await self.slow_prompts.prepare(specs)
        for prompt_id in self.slow_prompts.prompt_ids:
            entry = self.slow_prompts.entry(prompt_id)
            self.prompts.add(f"{prompt_id}.slow", entry.pcm, source=entry.source)
        music = self.config.routing.hold_music
        if self.config.routing.enabled and music:
            try:
                pcm = await asyncio.to_thread(load_wav_8k, Path(music), normalise_level=False)
            except (AudioFormatError, OSError) as exc:
                raise PromptCacheError(f"routing.hold_music: {exc}") from None
            self.prompts.add(call_module.HOLD_MUSIC_PROMPT, pcm, source="recording")

    # -- routing -----------------------------------------------------------------------------
    def _start_routing(self) -> None:
        """Load the queues and start the router (its clock follows ``flows.now_override``)."""
        cfg = self.config
        path = cfg.routing.file or routing.default_routing_config_path()
        try:
            config = routing.load_routing_config(path)
        except routing.RoutingConfigError as exc:
            raise StartupError(f"invalid routing file:\n{exc}") from None
        except OSError as exc:
            raise StartupError(f"routing.file: cannot read {path}: {exc.strerror}") from None
        fixed = cfg.flows.fixed_now()
        clock: Callable[[], float] = time.time
        if fixed is not None:
            # Demo and tests: the routing clock starts at the pinned instant and then runs, so
            # opening hours match the flow's and ring timeouts still fire.
            anchor = cfg.flows.now_override_anchor or time.time()
            offset = fixed.timestamp() - anchor

            def clock() -> float:
                return time.time() + offset

        settings = cfg.routing
        if settings.backend == "redis":
            redis_routing = RedisRoutingService(
                config=config,
                redis_config=RedisRoutingConfig(
                    url=settings.redis_url,
                    prefix=settings.redis_prefix,
                    node_id=settings.node_id,
                    node_ttl_s=settings.node_ttl_s,
                ),
                clock=clock,
            )
            self.metrics.watch_routing_mode(
                lambda: redis_routing.mode == "local", lambda: redis_routing.mode_changes
            )
            self.routing = redis_routing
        else:
            self.routing = RoutingService(config=config, clock=clock)
        self.metrics.set_queues(config.queues)
        self.metrics.set_pause_reasons(config.pause_reasons)
        self.handle_times = {queue: HandleTimes() for queue in config.queues}
        self.routing.listen(self._on_routing_decision)
        self.metrics.before_render(self._refresh_router_gauges)
        logger.info("routing: %d queues from %s", len(config.queues), path)

    def _on_routing_decision(self, decision: routing.Decision) -> None:
        """Global listener: handle times for the estimates, queue metrics."""
        if isinstance(decision, routing.WrapUpEnded):
            times = self.handle_times.get(decision.queue)
            if times is not None:
                times.add(decision.handle_s)
        self._queue_metrics.apply(decision)

    def _refresh_router_gauges(self) -> None:
        """Waiting calls and agents from this node's router replica, at every scrape.

        Every node holds the whole shared state (D22), so every node exports it fresh; setting
        these after this node's own decisions only left another node's values stale.
        """
        router = self.routing.router if self.routing is not None else None
        if router is None:
            return
        metrics = self.metrics
        queues = router.config.queues
        metrics.set_waiting({q: router.queue_size(q) for q in queues})
        logged_in = [a for a in router.agents.values() if a.state is not routing.AgentState.OFFLINE]
        # As ``call._staffed``: an agent of a queue it overflows to can serve it too, so 0 here
        # is exactly when a call handed to the queue is turned away ``unstaffed``.
        chains = {q: [n for n, _ in routing.overflow_chain(router.config, q)] for q in queues}
        metrics.set_queue_agents(
            {
                q: sum(1 for a in logged_in if any(a.proficiency(n) > 0 for n in chains[q]))
                for q in queues
            }
        )
        metrics.set_agent_states((a.state.value, a.pause_reason) for a in logged_in)

    def _add_panel(self, app: web.Application, store: Engine) -> None:
        """The agent panel: login, pages, JSON API, WebSocket, softphone hub (issue 6)."""
        from callcenter.web.panel import mount_panel

        cfg = self.config
        assert self.routing is not None
        redis_url = cfg.routing.redis_url if cfg.routing.backend == "redis" else None
        self.softphones = SoftphoneHub(
            node_id=getattr(self.routing, "node_id", "") or "local",
            redis_url=redis_url,
            prefix=cfg.routing.redis_prefix,
            requests=self._relayed,
        )
        routing_service = self.routing

        def today() -> date:
            return datetime.fromtimestamp(routing_service.now(), PARIS).date()

        def intent_labels() -> dict[str, str]:
            bot = self.faq.bot
            if bot is None:
                return {}
            return {i.id: i.label or i.description or i.id for i in bot.kb.intents}

        mount_panel(
            app,
            store=store,
            hub=self.softphones,
            config=cfg.panel,
            webrtc=cfg.webrtc,
            metrics=self.metrics,
            today=today,
            intent_labels=intent_labels,
            callbacks_view=self._callbacks_view,
            consult=self.consult_call,
        )

    async def _callbacks_view(self) -> dict[str, Any]:
        """Callbacks for the supervisor page: pending, overdue, the next due (no numbers)."""
        store = self.store_engine
        if store is None or self.callbacks is None:
            return {"pending": 0, "overdue": 0, "next_due": None}
        pending = await asyncio.to_thread(callbacks_store.open_callbacks, store)
        # Due times are on the routing clock (pinned on the demo line), not the wall clock.
        now = self.routing.now() if self.routing is not None else time.time()
        dues = sorted(c.callback.due_at for c in pending if c.callback.due_at is not None)
        return {
            "pending": len(pending),
            "overdue": sum(1 for d in dues if d < now),
            "next_due": (
                datetime.fromtimestamp(dues[0], UTC).isoformat(timespec="seconds") if dues else None
            ),
        }

    async def probe(self) -> None:
        """Refresh the gauges read outside the call path: dependencies, callbacks, opening hours.

        Run at start-up and every ``_PROBE_INTERVAL_S`` seconds; a failing probe sets its gauge
        to 0 (that is what the alert rules watch) and never stops the loop.
        """
        metrics = self.metrics
        store = self.store_engine
        if store is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(db.ping, store), _PROBE_TIMEOUT_S)
            except (SQLAlchemyError, TimeoutError) as exc:
                logger.warning("database probe failed (%s)", type(exc).__name__)
                metrics.set_dependency("database", False)
            else:
                metrics.set_dependency("database", True)
        service = self.routing
        if isinstance(service, RedisRoutingService):
            metrics.set_dependency("redis", service.mode != "local")
        if service is not None:
            router = service.router
            now = service.now()
            metrics.set_queues_open({q: router.is_open(q, now) for q in router.config.queues})
        if self.callbacks is not None:
            try:
                view = await asyncio.wait_for(self._callbacks_view(), _PROBE_TIMEOUT_S)
            except (SQLAlchemyError, TimeoutError) as exc:
                logger.warning("callbacks probe failed (%s)", type(exc).__name__)
            else:
                metrics.set_callbacks(view["pending"], view["overdue"])

    async def _probe_periodically(self) -> None:
        while True:
            await asyncio.sleep(_PROBE_INTERVAL_S)
            try:
                await self.probe()
            except Exception:  # a surprise must not end the probing (CancelledError passes)
                logger.exception("metrics probe failed; retried in %.0f s", _PROBE_INTERVAL_S)

    async def refresh_agents(self) -> None:
        """Reload the agents' SIP URIs from the store (a store error keeps the last ones)."""
        store = self.store_engine
        if store is None:
            return
        try:
            agents = await asyncio.to_thread(agents_store.list_agents, store)
        except SQLAlchemyError as exc:
            logger.warning("agents not loaded (%s); keeping the last list", type(exc).__name__)
            return
        self.agent_uris = {a.login: a.sip_uri for a in agents if a.sip_uri}

    async def agent_uri(self, agent_id: str) -> str | None:
        """The SIP URI of an agent (the store is read again when the login is not known)."""
        uri = self.agent_uris.get(agent_id)
        if uri is None:
            await self.refresh_agents()
            uri = self.agent_uris.get(agent_id)
        return uri

    # -- outbound calls (agent legs; callbacks later) ---------------------------------------
    def place_call(
        self,
        target_uri: str,
        sdp_offer: bytes,
        *,
        from_user: str,
        from_display: str | None,
        on_event: Callable[[sip_events.SipEvent], None],
    ) -> str:
        """INVITE ``target_uri``; the SIP events of the returned Call-ID go to ``on_event``.

        Raises:
            RuntimeError: SIP is not started.
            ValueError: The URI cannot be dialled (see ``SipEngine.invite``).
        """
        sip = self.sip
        if sip is None:
            raise RuntimeError("SIP is not started")
        call_id = sip.engine.invite(
            target_uri, sdp_offer, sip.now(), from_user=from_user, from_display=from_display
        )
        self.outbound[call_id] = on_event
        sip.flush()
        return call_id

    def cancel_call(self, call_id: str) -> None:
        """CANCEL an unanswered outbound call (BYE if it was answered meanwhile)."""
        if self.sip is not None:
            self.sip.engine.cancel(call_id, self.sip.now())
            self.sip.flush()

    def hangup_call(self, call_id: str) -> None:
        """End an outbound call (BYE once answered, CANCEL before)."""
        if self.sip is not None:
            self.sip.engine.hangup(call_id, self.sip.now())
            self.sip.flush()

    def reinvite_call(self, call_id: str, sdp_offer: bytes) -> bool:
        """Send a re-INVITE (hold/resume); False when the call is not confirmed."""
        if self.sip is None:
            return False
        sent = self.sip.engine.reinvite(call_id, sdp_offer, self.sip.now())
        self.sip.flush()
        return sent

    def answer_reinvite_call(self, call_id: str, sdp_answer: bytes | None) -> None:
        """Answer the peer's pending re-INVITE on an outbound call (None: 488)."""
        if self.sip is None:
            return
        now = self.sip.now()
        if sdp_answer is None:
            self.sip.engine.reject_reinvite(call_id, 488, now)
        else:
            self.sip.engine.answer_reinvite(call_id, sdp_answer, now)
        self.sip.flush()

    async def transfer_call(self, call_id: str, agent_id: str, target: TransferTarget) -> None:
        """Blind-transfer a call in conversation with ``agent_id`` (the agent API's transfer).

        Raises:
            TransferError: 409 when the call is not on this node or not with that agent.
        """
        call = self.calls.get(call_id)
        if call is None:
            # With several nodes the call may live on another one: a browser agent's request
            # is relayed to it (the node learnt from the call's ring); a phone agent can use
            # the phone's transfer key (REFER reaches the node holding the call).
            await self._relay(call_id, "transfer", agent_id, None, target)
            return
        await call.transfer(agent_id, target)

    async def consult_call(
        self, call_id: str, agent_id: str, action: str, target: TransferTarget | None
    ) -> None:
        """Consult-then-transfer on a call in conversation with ``agent_id`` (the panel's).

        Raises:
            TransferError: 409 when the call is not on this node or not with that agent.
        """
        call = self.calls.get(call_id)
        if call is None:
            await self._relay(call_id, "consult", agent_id, action, target)
            return
        await call.consult(agent_id, action, target)

    async def _relay(
        self,
        call_id: str,
        operation: str,
        agent_id: str,
        action: str | None,
        target: TransferTarget | None,
    ) -> None:
        """Run a transfer or consultation on the node holding the call (through Redis)."""
        hub = self.softphones
        node = hub.node_of(call_id) if hub is not None else None
        if hub is None or node is None:
            raise TransferError(409, "the call is not handled by this node")
        arguments = {
            "call_id": call_id,
            "agent": agent_id,
            "action": action,
            "kind": target.kind.value if target is not None else None,
            "value": target.value if target is not None else None,
        }
        status, message = await hub.request(node, operation, arguments)
        if status != 200:
            raise TransferError(status, message)

    async def _relayed(self, operation: str, arguments: dict[str, Any]) -> tuple[int, str]:
        """A transfer or consultation relayed by the node of the agent's panel."""
        call_id = str(arguments.get("call_id"))
        agent_id = str(arguments.get("agent"))
        kind = arguments.get("kind")
        action = str(arguments.get("action"))
        if call_id not in self.calls or self.routing is None:
            return 409, "the call is not handled by this node"
        try:
            target = None
            if isinstance(kind, str):
                # Checked again here: this node's queues, colleagues and allowed numbers.
                target = check_target(
                    kind,
                    arguments.get("value"),
                    queues=self.routing.config.queues,
                    agent_exists=self.routing.router.is_logged_in,
                    policy=TransferPolicy(allowed_numbers=self.config.transfers.allowed_numbers),
                    from_agent=agent_id,
                )
            if (operation == "transfer" or action == "start") and target is None:
                return 400, "a destination is required"
            if operation == "transfer" and target is not None:
                await self.transfer_call(call_id, agent_id, target)
            elif operation == "consult" and action in ("start", "complete", "cancel"):
                await self.consult_call(call_id, agent_id, action, target)
            else:
                return 400, f"unknown request {operation!r}"
        except TransferError as exc:
            return exc.status, exc.message
        except ValueError:
            return 400, "malformed request"
        return 200, "done"

    def notify_transfer_call(
        self, call_id: str, status_code: int, reason: str | None, refer_id: int
    ) -> bool:
        """Send the final NOTIFY of a transfer asked by REFER on an outbound call."""
        if self.sip is None:
            return False
        sent = self.sip.engine.notify_transfer(
            call_id, status_code, reason, self.sip.now(), refer_id=refer_id
        )
        self.sip.flush()
        return sent

    def forget_call(self, call_id: str) -> None:
        """Stop delivering an outbound Call-ID's events (its owner is gone)."""
        self.outbound.pop(call_id, None)

    def _engine_config(self, *, port: int) -> SipEngineConfig:
        sip = self.config.sip
        access = AccessPolicy(
            trusted_networks=sip.trusted_networks,
            require_auth_from_untrusted=sip.untrusted == "challenge",
            allow_untrusted_without_auth=sip.untrusted == "allow",
        )
        digest = None
        if sip.untrusted == "challenge":
            digest = DigestServer(
                realm=sip.realm, secret=secrets.token_bytes(32), users=dict(sip.users)
            )
        # Trunks are exempt from rate limiting; an open policy must not exempt a scanner.
        limiter = SourceRateLimiter(
            rate=sip.rate_limit,
            burst=sip.rate_burst,
            exempt=lambda host: is_trusted_source(access, host),
        )
        registration = None
        if sip.registrar:
            registration = RegistrationConfig(
                registrar_uri=sip.registrar,
                aor=sip.aor or _default_aor(sip.registrar, sip.username),
                username=sip.username,
                password=sip.password,
                expires=sip.register_expires,
            )
        return SipEngineConfig(
            local_host=sip.host,
            local_port=port,
            advertised_host=sip.advertised_host or None,
            access=access,
            digest=digest,
            rate_limiter=limiter,
            registration=registration,
        )

    # -- SIP events ------------------------------------------------------------------------
    def _on_sip_event(self, event: sip_events.SipEvent) -> None:
        metrics = self.metrics
        if isinstance(event, sip_events.SipRequestReceived):
            metrics.sip_request(event.method)
        elif isinstance(event, sip_events.SipResponseSent):
            metrics.sip_response(event.status_code)
        elif isinstance(event, sip_events.MessageDropped):
            metrics.sip_drop(event.reason)
        elif isinstance(event, sip_events.RegistrationSucceeded):
            metrics.set_registration_up(True)
            logger.info("registered upstream for %d s", event.expires)
        elif isinstance(event, sip_events.RegistrationFailed):
            metrics.set_registration_up(False)
            logger.warning("upstream registration failed: %s %s", event.status_code, event.reason)
        elif isinstance(event, sip_events.IncomingCall):
            self._start_call(event)
        else:
            call_id = getattr(event, "call_id", None)
            if not isinstance(call_id, str):
                return
            call = self.calls.get(call_id)
            if call is not None:
                call.on_sip_event(event)
                return
            owner = self.outbound.get(call_id)
            if owner is not None:
                if isinstance(event, sip_events.OutboundCallFailed | sip_events.CallTerminated):
                    del self.outbound[call_id]  # the last event of that Call-ID
                try:
                    owner(event)
                except Exception:
                    logger.exception("outbound call event handler failed")

    def _start_call(self, event: sip_events.IncomingCall) -> None:
        assert self.sip is not None
        engine = self.sip.engine
        if self.health.state != "ok" or len(self.calls) >= self.config.calls.max_calls:
            engine.reject(event.call_id, 503, self.sip.now(), headers=[("Retry-After", "30")])
            self.sip.flush()  # we are inside flush's event delivery: send it now
            return
        if event.call_id in self.calls:  # a call with this Call-ID is still tearing down
            engine.reject(event.call_id, 500, self.sip.now())
            self.sip.flush()
            return
        services = CallServices(
            config=self.config,
            sip=self.sip,
            flows=self.flows.get,
            prompts=self.prompts,
            trail=self.trail,
            metrics=self.metrics,
            bot=self.faq.bot,
            asr=self.asr,
            identity=self.identity,
            tts=(self.tts, self.slow_tts),
            routing=self.routing,
            dialer=self,
            agent_uri=self.agent_uri,
            handle_times=self.handle_times,
            callbacks=self.callbacks,
            softphones=self.softphones,
        )
        call = Call(incoming=event, services=services)
        self.calls[event.call_id] = call
        self.health.active_calls = len(self.calls)
        task = asyncio.create_task(call.run(), name=f"call-{event.call_id}")
        self.call_tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self.call_tasks.discard(t)
            self.calls.pop(event.call_id, None)
            self.health.active_calls = len(self.calls)

        task.add_done_callback(done)

    # -- flows reload ----------------------------------------------------------------------
    async def reload_flows(self) -> bool:
        """Reload every flow and the FAQ; keep the current ones if any new file is invalid."""
        async with self._reload_lock:
            mtimes = self.flows.current_mtimes()
            faq_mtime = self.faq.current_mtime()
            try:
                flows, mtimes = self.flows.load_all()
                # Training the matcher takes seconds: never on the event loop (live calls).
                bot, faq_mtime = await asyncio.to_thread(self.faq.load)
                await self._prepare_prompts(flows.values(), bot)
            except (ivr_flows.FlowError, FaqError, PromptCacheError, PromptConflictError) as exc:
                # Not retried until a file changes again.
                self.flows.mtimes = mtimes
                self.faq.mtime = faq_mtime
                what = "FAQ" if isinstance(exc, FaqError) else "flow"
                logger.error("%s reload refused, keeping the last good version:\n%s", what, exc)
                return False
            self.flows.install(flows, mtimes)
            self.faq.install(bot, faq_mtime)
            self.metrics.set_intents(bot.intent_ids)
            if self.routing is not None:
                await self.refresh_agents()
            logger.info("flows reloaded: %s (FAQ: %s)", ", ".join(flows), self.faq.path.name)
            return True

    async def _watch_flows(self) -> None:
        interval = self.config.flows.watch_interval
        if interval <= 0:
            return
        while True:
            await asyncio.sleep(interval)
            if self.flows.changed() or self.faq.changed():
                await self._reload_logged()

    async def _apply_retention(self) -> None:
        """Apply the retention periods now and then periodically (D17, D34).

        In order: transcripts and contact summaries (what callers said), caller numbers and
        then whole calls of the trail, audit entries, ended callbacks' numbers.
        """
        retention = self.config.retention
        while True:
            now = datetime.now(UTC)
            cutoff = now - timedelta(days=retention.transcript_days)
            await self._purge(
                "transcript",
                self.trail.purge_transcripts(cutoff),
                f"erased %d transcript(s) older than {cutoff}",
            )
            if self.identity is not None:
                await self._purge(
                    "contact summary",
                    asyncio.to_thread(repo.purge_contact_summaries, self.identity.engine, cutoff),
                    "erased %d contact summaries",
                )
            await self._purge(
                "call trail",
                self.trail.apply_retention(
                    numbers_before=now - timedelta(days=retention.caller_number_days),
                    calls_before=now - timedelta(days=retention.trail_days),
                ),
                "deleted %d call(s) and their trail",
            )
            if self.store_engine is not None:
                await self._purge(
                    "audit",
                    asyncio.to_thread(
                        audit_store.purge_audit,
                        self.store_engine,
                        now - timedelta(days=retention.audit_days),
                    ),
                    "deleted %d audit entries",
                )
            if self.callbacks is not None:
                await self._purge(
                    "callback number", self.callbacks.erase_numbers(), "erased %d callback numbers"
                )
            await asyncio.sleep(retention.purge_interval_s)

    @staticmethod
    async def _purge(what: str, work: Awaitable[int], done: str) -> None:
        """Await one purge; a database error is logged and the purge retried at the next round."""
        try:
            count = await work
        except SQLAlchemyError as exc:
            logger.warning("%s purge failed (%s); retried later", what, type(exc).__name__)
        else:
            if count:
                logger.info("retention: " + done, count)

    async def _reload_logged(self) -> None:
        """Reload for the watcher and SIGHUP: a surprise (e.g. a full disk) is logged, not fatal."""
        try:
            await self.reload_flows()
        except Exception:
            logger.exception("flow reload failed; the last good flows stay in service")

    # -- shutdown --------------------------------------------------------------------------
    async def drain(self) -> None:
        """Refuse new calls, let running ones finish (bounded), then hang up the rest."""
        self.health.state = "draining"
        if self.sip is not None:
            self.sip.engine.drain()
        if self.call_tasks:
            logger.info("draining: waiting for %d call(s)", len(self.call_tasks))
            _, pending = await asyncio.wait(
                set(self.call_tasks), timeout=self.config.calls.drain_timeout
            )
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)

    async def close(self) -> None:
        """Release every resource (after :meth:`drain`)."""
        if self.callbacks is not None:
            await self.callbacks.close()  # hangs up the legs of attempts in progress
        if self.sip is not None:
            if self.config.sip.registrar:
                self.sip.engine.stop_registration(self.sip.now())
                self.sip.flush()
                await asyncio.sleep(0.2)  # let the un-REGISTER leave; its answer is not awaited
            # Let final BYEs/responses go out.
            self.sip.flush()
            if self.sip_tcp is not None:
                self.sip_tcp.close()
            self.sip.close()
        if self.routing is not None:
            await self.routing.aclose()
        if self.softphones is not None:
            await self.softphones.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.asr is not None:
            self.asr.close()
        if self.identity is not None:
            await asyncio.to_thread(self.identity.engine.dispose)
        await self.trail.close()

    async def run_until_stopped(self) -> None:
        """Serve until SIGTERM/SIGINT; SIGHUP reloads the flows."""
        loop = asyncio.get_running_loop()
        stop = self._stop
        reload_tasks: set[asyncio.Task[None]] = set()

        def on_hup() -> None:
            task = loop.create_task(self._reload_logged(), name="flows-reload")
            reload_tasks.add(task)
            task.add_done_callback(reload_tasks.discard)

        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        watcher = asyncio.create_task(self._watch_flows(), name="flows-watch")
        purger = asyncio.create_task(self._apply_retention(), name="retention")
        prober = asyncio.create_task(self._probe_periodically(), name="metrics-probe")
        try:
            await stop.wait()
            logger.info("stopping: draining calls")
            await self.drain()
        finally:
            watcher.cancel()
            purger.cancel()
            prober.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def stop(self) -> None:
        """Ask :meth:`run_until_stopped` to drain and return."""
        self._stop.set()


_PROBE_INTERVAL_S = 10.0
"""Seconds between two refreshes of the probed gauges (a Prometheus scrape is every 15 s)."""
_PROBE_TIMEOUT_S = 5.0
"""A dependency that does not answer a probe in this time counts as down."""


def _default_aor(registrar: str, username: str) -> str:
    host = registrar.split(":", 1)[1] if ":" in registrar else registrar
    host = host.split(";", 1)[0]
    return f"sip:{username}@{host}"


async def serve(config: Config) -> int:
    """Run the service until SIGTERM; return the process exit code."""
    service = Service(config)
    try:
        try:
            await service.start()
        except StartupError as exc:
            logger.error("cannot start: %s", exc)
            return 2
        await service.run_until_stopped()
    finally:
        await service.close()
    return 0
