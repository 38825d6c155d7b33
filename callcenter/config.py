"""Service configuration: frozen dataclasses parsed once from TOML and environment variables.

Precedence (lowest to highest): built-in defaults, the TOML file given by ``--config``, environment
variables ``CALLCENTER_<SECTION>_<KEY>`` (e.g. ``CALLCENTER_SIP_PORT=5080``), command-line flags.
Every error names the file (or variable) and the field.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration file or variable is invalid; the message names where and which field."""


@dataclass(frozen=True, slots=True)
class SipConfig:
    """SIP listener and policy."""

    host: str = "127.0.0.1"
    """Address the SIP UDP/TCP listener binds to."""
    port: int = 5060
    """SIP port (UDP and TCP)."""
    advertised_host: str = ""
    """Host written in Via/Contact/SDP when different from ``host`` (e.g. behind NAT)."""
    tcp: bool = True
    """Also accept SIP over TCP on the same port."""
    trusted_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Trunk/IPBX source networks whose INVITEs are accepted without a challenge."""
    untrusted: str = "challenge"
    """INVITEs from elsewhere: ``challenge`` (digest), ``forbid`` (403) or ``allow``."""
    realm: str = "solidarites"
    """Digest realm for challenges."""
    users: tuple[tuple[str, str], ...] = ()
    """Digest users (name, password) allowed to call in from untrusted networks."""
    rate_limit: float = 50.0
    """Sustained SIP messages per second accepted from one untrusted source."""
    rate_burst: float = 100.0
    """Burst of SIP messages accepted from one untrusted source."""
    answer_delay: float = 0.0
    """Seconds of 180 Ringing before answering (0 answers at once)."""
    registrar: str = ""
    """Upstream registrar URI (e.g. ``sip:ipbx.example:5060``); empty disables registration."""
    aor: str = ""
    """Address of record to register (defaults to ``sip:<username>@<registrar host>``)."""
    username: str = ""
    """Digest username for the registrar."""
    password: str = ""
    """Digest password for the registrar."""
    register_expires: int = 300
    """Requested registration lifetime in seconds."""


@dataclass(frozen=True, slots=True)
class RtpConfig:
    """RTP media ports and timeouts."""

    host: str = ""
    """Address RTP binds to (defaults to the SIP host)."""
    port_min: int = 20000
    """Lowest RTP port (even)."""
    port_max: int = 30000
    """Highest RTP port."""
    inactivity_timeout: float = 30.0
    """Hang up when no RTP arrives for this many seconds (0 disables)."""


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """HTTP API listener."""

    host: str = "127.0.0.1"
    """Address the HTTP API binds to."""
    port: int = 8080
    """HTTP port."""
    api_tokens: tuple[tuple[str, str], ...] = ()
    """Clients of the dossier API: name = SHA-256 (hex) of its bearer token. The name is the
    ``actor`` of the audit log; the token itself is never stored (``callcenter api-token NAME``
    prints a new token and its hash). Empty: the dossier API refuses every request."""


@dataclass(frozen=True, slots=True)
class FlowsConfig:
    """IVR flows and the dialled-number map."""

    directory: str = str(PACKAGE_ROOT / "ivr_flows")
    """Folder holding ``<flow_id>.yaml`` files."""
    default: str = "solidarites"
    """Flow used for any dialled number not in ``numbers``."""
    numbers: tuple[tuple[str, str], ...] = ()
    """Dialled number → flow id."""
    now_override: str = ""
    """ISO datetime used instead of the clock for opening hours (tests and demos only)."""
    now_override_anchor: float = 0.0
    """POSIX time at which the routing clock reads ``now_override`` (it runs on from there);
    0: this process's start. Nodes sharing a routing state in a test or demo need one anchor,
    as real nodes need synchronised clocks (NTP)."""
    watch_interval: float = 2.0
    """Seconds between checks of the flow files for changes (0 disables; SIGHUP always reloads)."""

    def flow_for(self, dialled: str) -> str:
        """Return the flow id for a dialled number."""
        return dict(self.numbers).get(dialled, self.default)

    def fixed_now(self) -> datetime | None:
        """Return the override time, if any."""
        return datetime.fromisoformat(self.now_override) if self.now_override else None


@dataclass(frozen=True, slots=True)
class TtsConfig:
    """Speech synthesis for prompts."""

    voice: str = "fr+f3"
    """espeak-ng voice."""
    rate: int = 130
    """Words per minute; slow on purpose (elderly and hard-of-hearing callers)."""
    slow_rate: int = 100
    """Words per minute after a caller says "plus lentement" (every prompt is rendered twice)."""
    recordings_dir: str = ""
    """Folder of recorded ``<prompt_id>.wav`` files overriding TTS (default <data-dir>/prompts)."""
    cache_dir: str = ""
    """Where rendered prompts are kept between runs (default <data-dir>/cache/prompts)."""


@dataclass(frozen=True, slots=True)
class AsrConfig:
    """Speech recognition for the voice bot (``ask`` and ``confirm`` nodes)."""

    engine: str = "whisper"
    """``whisper`` (faster-whisper, offline default), ``vosk``, or ``none`` (keypad only)."""
    cache_dir: str = ""
    """Where the Whisper model joined from its PyPI parts is kept (default <data-dir>/models)."""
    vosk_model_dir: str = ""
    """The unpacked Vosk model folder (``callcenter models install vosk-fr-small``)."""
    whisper_model_dir: str = ""
    """A CTranslate2 Whisper model folder (e.g. ``small`` or ``medium`` converted with
    ``ct2-transformers-converter``) used instead of the bundled Whisper base."""
    threads: int = 2
    """CPU threads per decode."""
    workers: int = 2
    """Decodes running at once (calls beyond wait in a queue)."""
    end_of_turn_s: float = 0.8
    """Silence that ends the caller's turn (elderly callers pause: do not go much lower)."""
    max_utterance_s: float = 20.0
    """Longest utterance; longer speech is cut and recognised as it is."""
    barge_in_min_speech_s: float = 0.3
    """Speech needed before it interrupts a prompt (ignores coughs and clicks)."""


@dataclass(frozen=True, slots=True)
class FaqConfig:
    """The FAQ knowledge base the bot answers from."""

    file: str = ""
    """Knowledge-base YAML (default: the shipped ``faq/solidarites.yaml``); reloaded on change."""


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """How long personal data is kept (GDPR: no longer than needed)."""

    transcript_days: int = 30
    """Transcripts of what callers said are erased after this many days."""
    caller_number_days: int = 90
    """The caller's number is erased from the call trail after this many days."""
    trail_days: int = 365
    """Calls and their event trail are deleted after this many days (the statistics of a year)."""
    audit_days: int = 365
    """Audit entries (who read which dossier) are deleted after this many days."""
    purge_interval_s: float = 3600.0
    """Seconds between purges."""


@dataclass(frozen=True, slots=True)
class DossiersConfig:
    """The dossier store (issue 4)."""

    nir_key_file: str = ""
    """File holding the secret key of the NIR's keyed hash (HMAC-SHA256); the NIR itself is never
    stored. Empty: imports refuse NIR columns (env ``CALLCENTER_DOSSIERS_NIR_KEY_FILE``)."""

    def nir_key(self) -> bytes | None:
        """The key's bytes (surrounding whitespace stripped), or None when none is configured.

        Raises:
            ConfigError: the file cannot be read or holds fewer than 16 bytes.
        """
        if not self.nir_key_file:
            return None
        try:
            key = Path(self.nir_key_file).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"dossiers.nir_key_file: cannot read: {exc.strerror}") from None
        if len(key) < 16:
            raise ConfigError("dossiers.nir_key_file: the key must be at least 16 bytes")
        return key


@dataclass(frozen=True, slots=True)
class CallsConfig:
    """Per-call limits and shutdown."""

    max_duration: float = 3600.0
    """Hang up any call after this many seconds."""
    drain_timeout: float = 60.0
    """On SIGTERM, wait at most this long for running calls to end."""
    max_calls: int = 500
    """Beyond this many concurrent calls new INVITEs get 503."""


@dataclass(frozen=True, slots=True)
class RoutingSettings:
    """Skills-based routing of queued calls to agents (issue 5)."""

    file: str = ""
    """Queues YAML (default: the shipped ``routing/solidarites.yaml``); ``none`` disables routing:
    a ``queue`` node then plays its holding message and the flow goes on as without routing."""
    hold_music: str = ""
    """WAV file (any rate) played between wait announcements; empty: silence."""
    announce_interval_s: float = 60.0
    """Seconds between two estimated-wait announcements while a caller waits."""
    from_display: str = "SOLIDARITES"
    """Display name of the From of agent legs (the queue's name is appended)."""
    from_user: str = "3975"
    """User part of the From of agent legs (the service's number, never the caller's)."""
    backend: str = "memory"
    """Where the routing state lives: ``memory`` (one node) or ``redis`` (several nodes sharing
    queues and agents through ``redis_url``; see ``callcenter/routing_redis.py``)."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis of the ``redis`` backend."""
    redis_prefix: str = "callcenter:routing"
    """Prefix of the backend's Redis keys: one per service (all its nodes share it)."""
    node_id: str = ""
    """This node's id among the nodes sharing the prefix; empty: a random one at each start
    (a fixed id lets a restarted node free its previous incarnation's agents at once)."""
    node_ttl_s: float = 15.0
    """A node silent this long is dead: its agents are logged out, its callbacks adopted."""

    @property
    def enabled(self) -> bool:
        """False when ``file = "none"``."""
        return self.file.strip().lower() != "none"


@dataclass(frozen=True, slots=True)
class TransfersConfig:
    """Blind transfers by agents (issue 5; see ``callcenter/transfer.py``)."""

    allowed_numbers: tuple[str, ...] = ()
    """External numbers agents may transfer callers to: E.164 (``+33321000000``), French short
    numbers (``3977``) or prefixes ending in ``*`` (``+33321*``). Empty: queues and colleagues
    only. Dialled through ``callbacks.trunk_uri``."""


@dataclass(frozen=True, slots=True)
class PanelConfig:
    """The agent panel (issue 6; see ``callcenter/web/panel``)."""

    enabled: bool = True
    """Serve the panel under ``/panel/`` (needs routing)."""
    secure_cookies: bool = True
    """Session cookies with ``Secure`` (HTTPS, through a reverse proxy). Only a panel opened at
    ``http://127.0.0.1`` (tests, a demo on one machine) may set false."""
    idle_timeout_s: float = 900.0
    """A session ends after this long without a request."""
    absolute_timeout_s: float = 43200.0
    """A session ends this long after the login, whatever the activity."""
    max_failed_logins: int = 5
    """Failed passwords in a row that lock the account."""
    lockout_s: float = 900.0
    """How long a locked account stays locked."""
    login_rate_per_ip: int = 20
    """Login attempts per minute from one address, then 429."""
    wrapup_motifs: tuple[str, ...] = (
        "Information APA",
        "Information MDPH",
        "Suivi de dossier",
        "Pièce manquante",
        "Paiement",
        "Réclamation",
        "Orientation vers un partenaire",
        "Autre",
    )
    """Motifs offered in the wrap-up form."""
    search_reasons_required: bool = True
    """A dossier search outside a call needs a written reason (the audit log keeps it)."""


@dataclass(frozen=True, slots=True)
class WebRtcConfig:
    """The browser softphone's media (aiortc; see ``callcenter/webrtc``)."""

    host_addresses: tuple[str, ...] = ()
    """Addresses offered as ICE host candidates (the ones agents' browsers can reach); empty:
    every address of the machine but loopback (aioice's choice)."""
    ice_servers: tuple[str, ...] = ()
    """STUN/TURN servers for agents behind NAT: ``stun:host:3478``,
    ``turn:user:password@host:3478?transport=udp``."""
    codecs: tuple[str, ...] = ("opus", "PCMU", "PCMA")
    """Codecs towards the browser, preferred first."""


@dataclass(frozen=True, slots=True)
class CallbacksConfig:
    """Callbacks ("rappel"): the caller hangs up and is called back (issue 5)."""

    enabled: bool = True
    """Offer callbacks (needs routing)."""
    offer_after_s: float = 120.0
    """The wait announcement offers a callback when the estimated wait is at least this long
    (0 or 0 pressed works whatever the estimate; on a closed or unstaffed queue, slots are
    offered whenever some exist)."""
    trunk_uri: str = "sip:{number}@127.0.0.1:5070"
    """SIP URI the outbound call is sent to; ``{number}`` is replaced by the number."""
    number_format: str = "national"
    """How ``{number}`` is written: ``national`` (``0612345678``) or ``e164`` (``+33612345678``)."""
    caller_id_user: str = "3975"
    """User part of the From of the outbound call (the service's number)."""
    caller_id_display: str = "Departement Solidarites"
    """Display name of the From of the outbound call."""
    ring_timeout_s: float = 30.0
    """Ring the callee this long, then count the attempt as ``no_answer``."""
    max_attempts: int = 3
    """Outbound attempts before giving up."""
    first_retry_s: float = 900.0
    """Delay before the second attempt."""
    backoff_factor: float = 2.0
    """Each further delay is this much longer."""
    max_retry_s: float = 14400.0
    """Longest delay between attempts."""
    slot_count: int = 3
    """Slots offered on a closed or unstaffed line."""
    slot_s: float = 3600.0
    """Length of an offered slot."""
    retention_days: int = 30
    """The number of an ended callback is erased after this many days."""
    node: str = ""
    """This node's name in the callbacks it claims (default: the host name)."""


@dataclass(frozen=True, slots=True)
class Config:
    """The whole service configuration."""

    data_dir: str = "./var"
    """SQLite store, caches and recordings (env ``CALLCENTER_DATA_DIR``)."""
    database_url: str = ""
    """SQLAlchemy URL (env ``DATABASE_URL``); empty means SQLite in the data dir."""
    sip: SipConfig = field(default_factory=SipConfig)
    """SIP settings."""
    rtp: RtpConfig = field(default_factory=RtpConfig)
    """RTP settings."""
    http: HttpConfig = field(default_factory=HttpConfig)
    """HTTP settings."""
    flows: FlowsConfig = field(default_factory=FlowsConfig)
    """Flow settings."""
    tts: TtsConfig = field(default_factory=TtsConfig)
    """TTS settings."""
    calls: CallsConfig = field(default_factory=CallsConfig)
    """Call limits."""
    asr: AsrConfig = field(default_factory=AsrConfig)
    """Speech recognition."""
    faq: FaqConfig = field(default_factory=FaqConfig)
    """FAQ knowledge base."""
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    """Personal data retention."""
    dossiers: DossiersConfig = field(default_factory=DossiersConfig)
    """Dossier store."""
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    """Queues and agents."""
    callbacks: CallbacksConfig = field(default_factory=CallbacksConfig)
    """Callbacks."""
    transfers: TransfersConfig = field(default_factory=TransfersConfig)
    """Blind transfers."""
    panel: PanelConfig = field(default_factory=PanelConfig)
    """The agent panel."""
    webrtc: WebRtcConfig = field(default_factory=WebRtcConfig)
    """The browser softphone's media."""

    @property
    def data_path(self) -> Path:
        """The data dir as a path."""
        return Path(self.data_dir)

    @property
    def db_url(self) -> str:
        """The effective database URL."""
        return self.database_url or f"sqlite:///{self.data_path / 'callcenter.sqlite3'}"


_SECTIONS: dict[str, type[Any]] = {
    "sip": SipConfig,
    "rtp": RtpConfig,
    "http": HttpConfig,
    "flows": FlowsConfig,
    "tts": TtsConfig,
    "calls": CallsConfig,
    "asr": AsrConfig,
    "faq": FaqConfig,
    "retention": RetentionConfig,
    "dossiers": DossiersConfig,
    "routing": RoutingSettings,
    "callbacks": CallbacksConfig,
    "transfers": TransfersConfig,
    "panel": PanelConfig,
    "webrtc": WebRtcConfig,
}


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a TOML or environment value to the annotated type, or raise ConfigError."""
    origin = get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        args = get_args(hint)
        if args and get_origin(args[0]) is tuple:  # tuple[tuple[str, str], ...]: a TOML table
            if isinstance(value, str):  # env: "a=b,c=d"
                pairs = [p.split("=", 1) for p in value.split(",") if p.strip()]
                if any(len(p) != 2 for p in pairs):
                    raise ConfigError(f"{where}: expected key=value pairs, got {value!r}")
                return tuple((k.strip(), v.strip()) for k, v in pairs)
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: expected a table of key = value, got {value!r}")
            return tuple((str(k), str(v)) for k, v in value.items())
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{where}: unsupported type {hint!r}")  # pragma: no cover


def _apply(section_cls: type[Any], current: Any, values: Mapping[str, Any], where: str) -> Any:
    hints = get_type_hints(section_cls)
    known = {f.name for f in dataclasses.fields(section_cls)}
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown field {key!r} (known: {', '.join(sorted(known))})")
        field_where = where if where.startswith("environment ") else f"{where}.{key}"
        changes[key] = _coerce(raw, hints[key], field_where)
    return dataclasses.replace(current, **changes)


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build the configuration from defaults, a TOML file, the environment and overrides.

    Args:
        path: optional TOML file.
        env: environment mapping (defaults to ``os.environ``).
        overrides: ``{section: {field: value}}`` from the command line (``""`` section = top level).

    Raises:
        ConfigError: naming the file or variable and the field at fault.
    """
    env = os.environ if env is None else env
    config = Config()
    sections: dict[str, Any] = {name: getattr(config, name) for name in _SECTIONS}
    top: dict[str, Any] = {}

    if path is not None:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: {exc}") from None
        for key, value in data.items():
            if key in _SECTIONS:
                if not isinstance(value, Mapping):
                    raise ConfigError(f"{file}: [{key}] must be a table")
                sections[key] = _apply(_SECTIONS[key], sections[key], value, f"{file}: {key}")
            elif key in ("data_dir", "database_url"):
                top[key] = _coerce(value, str, f"{file}: {key}")
            else:
                raise ConfigError(f"{file}: unknown section or field {key!r}")

    if "CALLCENTER_DATA_DIR" in env:
        top["data_dir"] = env["CALLCENTER_DATA_DIR"]
    if "DATABASE_URL" in env:
        top["database_url"] = env["DATABASE_URL"]
    for name, cls in _SECTIONS.items():
        prefix = f"CALLCENTER_{name.upper()}_"
        for var in sorted(k for k in env if k.startswith(prefix)):
            key = var[len(prefix) :].lower()
            sections[name] = _apply(cls, sections[name], {key: env[var]}, f"environment {var}")

    for name, given in (overrides or {}).items():
        clean: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if name == "":
            top.update(clean)
        elif clean:
            sections[name] = _apply(_SECTIONS[name], sections[name], clean, "command line")

    config = dataclasses.replace(config, **top, **sections)
    _check(config)
    return config


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _check(config: Config) -> None:
    if config.sip.untrusted not in ("challenge", "forbid", "allow"):
        raise ConfigError(
            f"sip.untrusted: expected challenge, forbid or allow, got {config.sip.untrusted!r}"
        )
    if not 0 < config.rtp.port_min <= config.rtp.port_max <= 65535:
        raise ConfigError("rtp.port_min/port_max: expected 0 < port_min <= port_max <= 65535")
    if config.rtp.port_max - config.rtp.port_min < 1 and config.rtp.port_min % 2:
        raise ConfigError("rtp.port_min/port_max: the range holds no even port (RFC 3550 11)")
    sip = config.sip
    for host, name in ((sip.host, "sip.host"), (config.rtp.host, "rtp.host")):
        if host and _is_wildcard(host) and not sip.advertised_host:
            # We would write 0.0.0.0 in Contact and in the SDP c= line, which means "hold".
            raise ConfigError(
                f"{name}: binding {host} needs sip.advertised_host (the address callers reach)"
            )
    for name, digest in config.http.api_tokens:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(
                f"http.api_tokens.{name}: expected the SHA-256 hex of the token, not the token"
            )
    for network in sip.trusted_networks:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"sip.trusted_networks: not a network: {network!r}") from None
    positive: list[tuple[str, float]] = [
        ("sip.rate_limit", sip.rate_limit),
        ("sip.rate_burst", sip.rate_burst),
        ("sip.register_expires", sip.register_expires),
        ("calls.max_duration", config.calls.max_duration),
        ("calls.max_calls", config.calls.max_calls),
        ("asr.threads", config.asr.threads),
        ("asr.workers", config.asr.workers),
        ("asr.end_of_turn_s", config.asr.end_of_turn_s),
        ("asr.max_utterance_s", config.asr.max_utterance_s),
        ("retention.transcript_days", config.retention.transcript_days),
        ("retention.caller_number_days", config.retention.caller_number_days),
        ("retention.trail_days", config.retention.trail_days),
        ("retention.audit_days", config.retention.audit_days),
        ("retention.purge_interval_s", config.retention.purge_interval_s),
    ]
    not_negative: list[tuple[str, float]] = [
        ("sip.answer_delay", sip.answer_delay),
        ("rtp.inactivity_timeout", config.rtp.inactivity_timeout),
        ("calls.drain_timeout", config.calls.drain_timeout),
        ("flows.watch_interval", config.flows.watch_interval),
        ("asr.barge_in_min_speech_s", config.asr.barge_in_min_speech_s),
    ]
    for name, value in positive:
        if not value > 0:
            raise ConfigError(f"{name}: must be > 0, got {value}")
    for name, value in not_negative:
        if not value >= 0:
            raise ConfigError(f"{name}: must be >= 0, got {value}")
    if config.asr.engine not in ("whisper", "vosk", "none"):
        raise ConfigError(f"asr.engine: expected whisper, vosk or none, got {config.asr.engine!r}")
    if config.asr.engine == "vosk" and not config.asr.vosk_model_dir:
        raise ConfigError(
            "asr.vosk_model_dir: the vosk engine needs a model folder "
            "(callcenter models install vosk-fr-small)"
        )
    kept = config.retention
    if kept.trail_days < max(kept.caller_number_days, kept.transcript_days):
        raise ConfigError(
            f"retention.trail_days: must be >= retention.caller_number_days "
            f"({kept.caller_number_days}) and retention.transcript_days "
            f"({kept.transcript_days}), got {kept.trail_days}"
        )
    if not 80 <= config.tts.rate <= 450:
        raise ConfigError(
            f"tts.rate: espeak-ng needs 80..450 words per minute, got {config.tts.rate}"
        )
    if not 80 <= config.tts.slow_rate <= config.tts.rate:
        raise ConfigError(
            f"tts.slow_rate: expected 80..tts.rate ({config.tts.rate}), got {config.tts.slow_rate}"
        )
    routing = config.routing
    if not routing.announce_interval_s >= 5:
        raise ConfigError(
            f"routing.announce_interval_s: must be >= 5, got {routing.announce_interval_s}"
        )
    if routing.hold_music and not Path(routing.hold_music).is_file():
        raise ConfigError(f"routing.hold_music: no such file: {routing.hold_music!r}")
    if routing.enabled and routing.file and not Path(routing.file).is_file():
        raise ConfigError(f"routing.file: no such file: {routing.file!r}")
    if not re.fullmatch(r"[A-Za-z0-9._+-]{1,32}", routing.from_user):
        raise ConfigError(f"routing.from_user: expected a SIP user part, got {routing.from_user!r}")
    if any(ch in routing.from_display for ch in '"\\\r\n'):
        raise ConfigError("routing.from_display: no quotes, backslashes or line breaks")
    _check_callbacks(config.callbacks)
    _check_transfers(config.transfers)
    _check_panel(config.panel, config.webrtc)
    if not config.panel.secure_cookies and not is_loopback_host(config.http.host):
        # A session cookie without Secure would travel in clear beyond this machine.
        raise ConfigError(
            "panel.secure_cookies: may be false only while http.host is loopback "
            f"(127.0.0.1), got http.host = {config.http.host!r}"
        )
    _check_routing(config.routing)
    if config.flows.now_override:
        try:
            now = datetime.fromisoformat(config.flows.now_override)
        except ValueError:
            raise ConfigError(
                f"flows.now_override: not an ISO datetime: {config.flows.now_override!r}"
            ) from None
        if now.tzinfo is None:
            raise ConfigError(
                "flows.now_override: must include a UTC offset, e.g. 2026-12-07T10:00:00+01:00"
            )


def _check_routing(settings: RoutingSettings) -> None:
    if settings.backend not in ("memory", "redis"):
        raise ConfigError(f"routing.backend: expected memory or redis, got {settings.backend!r}")
    if settings.backend == "redis" and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError(
            f"routing.redis_url: expected redis://host:port/db, got {settings.redis_url!r}"
        )
    if not re.fullmatch(r"[A-Za-z0-9:._-]{1,64}", settings.redis_prefix):
        raise ConfigError(f"routing.redis_prefix: invalid key prefix {settings.redis_prefix!r}")
    if settings.node_id and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", settings.node_id):
        raise ConfigError(f"routing.node_id: invalid node id {settings.node_id!r}")
    if settings.node_ttl_s < 1.0:
        raise ConfigError(f"routing.node_ttl_s: must be at least 1 s, got {settings.node_ttl_s}")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` is a loopback address or name (127.0.0.1, ::1, localhost)."""
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_panel(panel: PanelConfig, webrtc: WebRtcConfig) -> None:
    for name in ("idle_timeout_s", "absolute_timeout_s", "lockout_s"):
        if not getattr(panel, name) > 0:
            raise ConfigError(f"panel.{name}: must be positive, got {getattr(panel, name)}")
    if panel.max_failed_logins < 1 or panel.login_rate_per_ip < 1:
        raise ConfigError("panel.max_failed_logins and panel.login_rate_per_ip: must be >= 1")
    if not panel.wrapup_motifs or any(not m.strip() or len(m) > 64 for m in panel.wrapup_motifs):
        raise ConfigError("panel.wrapup_motifs: a non-empty list of motifs of 1..64 characters")
    for address in webrtc.host_addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(
                f"webrtc.host_addresses: expected IP addresses, got {address!r}"
            ) from None
    for server in webrtc.ice_servers:
        if not re.match(r"(stun|stuns|turn|turns):", server):
            raise ConfigError(f"webrtc.ice_servers: expected stun:/turn: URLs, got {server!r}")
    unknown = [c for c in webrtc.codecs if c not in ("opus", "PCMU", "PCMA")]
    if not webrtc.codecs or unknown:
        raise ConfigError(f"webrtc.codecs: expected some of opus, PCMU, PCMA, got {unknown}")


def _check_transfers(transfers: TransfersConfig) -> None:
    for entry in transfers.allowed_numbers:
        # Destinations are compared in E.164 (+33...) or as short numbers (3977): a national
        # form (0321...) would never match, so it is refused here rather than silently.
        if not re.fullmatch(r"\+[0-9]{3,15}\*?|\+[0-9]{1,14}\*|[13][0-9]{2,5}", entry):
            raise ConfigError(
                "transfers.allowed_numbers: expected E.164 numbers (+33321000000), prefixes "
                f"ending in * (+33321*) or French short numbers (3977), got {entry!r}"
            )


def _check_callbacks(cb: CallbacksConfig) -> None:
    if cb.number_format not in ("national", "e164"):
        raise ConfigError(
            f"callbacks.number_format: expected national or e164, got {cb.number_format!r}"
        )
    if "{number}" not in cb.trunk_uri or not cb.trunk_uri.startswith(("sip:", "sips:")):
        raise ConfigError(
            "callbacks.trunk_uri: expected a SIP URI with {number}, e.g. "
            f"sip:{{number}}@127.0.0.1:5070, got {cb.trunk_uri!r}"
        )
    try:
        cb.trunk_uri.format(number="0123456789")
    except (KeyError, IndexError, ValueError):
        raise ConfigError(
            f"callbacks.trunk_uri: only {{number}} may be substituted, got {cb.trunk_uri!r}"
        ) from None
    if not re.fullmatch(r"[A-Za-z0-9._+-]{1,32}", cb.caller_id_user):
        raise ConfigError(
            f"callbacks.caller_id_user: expected a SIP user part, got {cb.caller_id_user!r}"
        )
    if any(ch in cb.caller_id_display for ch in '"\\\r\n'):
        raise ConfigError("callbacks.caller_id_display: no quotes, backslashes or line breaks")
    positive: list[tuple[str, float]] = [
        ("callbacks.ring_timeout_s", cb.ring_timeout_s),
        ("callbacks.max_attempts", cb.max_attempts),
        ("callbacks.slot_count", cb.slot_count),
        ("callbacks.slot_s", cb.slot_s),
        ("callbacks.retention_days", cb.retention_days),
        ("callbacks.max_retry_s", cb.max_retry_s),
    ]
    for name, value in positive:
        if not value > 0:
            raise ConfigError(f"{name}: must be > 0, got {value}")
    for name, value in (
        ("callbacks.offer_after_s", cb.offer_after_s),
        ("callbacks.first_retry_s", cb.first_retry_s),
    ):
        if not value >= 0:
            raise ConfigError(f"{name}: must be >= 0, got {value}")
    if not cb.backoff_factor >= 1:
        raise ConfigError(f"callbacks.backoff_factor: must be >= 1, got {cb.backoff_factor}")
    if cb.node and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", cb.node):
        raise ConfigError(f"callbacks.node: expected a short name, got {cb.node!r}")
