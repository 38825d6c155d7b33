"""One WebRTC peer connection between the service and an agent's browser, for one call.

The browser is the offerer: it calls ``getUserMedia``, creates its offer, waits for ICE
gathering to complete and sends the whole SDP over the panel WebSocket. :meth:`WebRtcPeer.answer`
applies it and returns an answer that already carries every local ICE candidate (no trickle ICE,
RFC 8838 is not used), so the signalling is one message each way.

Media is carried by aiortc (ICE, DTLS-SRTP, Opus or G.711). Towards the call, both directions
are 20 ms frames of 8 kHz mono signed 16-bit little-endian PCM (320 bytes), like the telephony
side (``callcenter.rtp``):

- outbound, :class:`_SourceTrack` pulls one frame from ``source()`` every 20 ms (``None`` means
  silence) and hands it to aiortc's encoder (which resamples to 48 kHz for Opus);
- inbound, a task reads the browser's track, resamples the decoded audio (48 kHz stereo for
  Opus) to 8 kHz mono with ``av.AudioResampler`` and delivers exact 320-byte frames to
  ``on_audio``.

ICE host addresses: aioice gathers every interface address *except* loopback (its
``get_host_addresses``). :data:`WebRtcConfig.host_addresses` pins the host candidates to the
listed addresses instead (tests use ``("127.0.0.1",)``, a server behind NAT lists the address the
agents can reach); see :func:`ice_host_addresses` for how.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fractions
import ipaddress
import itertools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import unquote

import aioice.ice
import av
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcicetransport import parse_stun_turn_uri
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

# The lead's config module holds the dataclass (parsed from [webrtc]); re-exported here.
from callcenter.config import WebRtcConfig, is_loopback_host

logger = logging.getLogger(__name__)

SAMPLE_RATE = 8000
"""Sample rate of the PCM exchanged with the call (Hz)."""
FRAME_SAMPLES = 160
"""Samples per 20 ms frame (aiortc ``AUDIO_PTIME``, G.711 packetisation)."""
FRAME_BYTES = FRAME_SAMPLES * 2
"""Bytes per frame: signed 16-bit little-endian mono."""
PTIME = FRAME_SAMPLES / SAMPLE_RATE
"""Frame duration (s)."""
VOICED_PEAK = 500
"""A received frame whose absolute peak reaches this (about -36 dBFS) counts as voiced."""
MAX_LATE_S = 1.0
"""Outbound pacing: when ``recv()`` comes later than this behind the 20 ms grid, restart the
clock (frames are lost) instead of catching up. Smaller delays are caught up (frames go out
back to back) so ``source()`` is still called 50 times a second on average: aiortc calls
``recv()`` only after encoding the previous frame in its thread pool, which is late by tens of
milliseconds now and then on a busy host, and the browser's jitter buffer absorbs the burst."""
CONNECT_TIMEOUT_S = 20.0
"""Default ``connect_timeout_s`` of :class:`WebRtcPeer`: ICE and DTLS done within it."""
CLOSE_TIMEOUT_S = 2.0
"""How long :meth:`WebRtcPeer.close` waits for the receive task to finish after cancelling it."""

_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
_SILENCE = bytes(FRAME_BYTES)
_STATES = frozenset({"connected", "failed", "closed"})
_peer_ids = itertools.count(1)

__all__ = [
    "WebRtcConfig",
    "WebRtcError",
    "WebRtcPeer",
    "candidate_addresses",
    "codec_preferences",
    "ice_host_addresses",
    "ice_servers",
]


class WebRtcError(Exception):
    """The browser's offer cannot be answered: bad SDP, no common codec, no audio, ICE failure."""


# --- ICE host addresses -------------------------------------------------------------------------
#
# aioice 0.13 gathers host candidates in ``Connection.gather_candidates`` from the module-level
# ``aioice.ice.get_host_addresses(use_ipv4, use_ipv6)``, which lists every interface address
# except 127.0.0.1 and ::1; neither aioice's ``Connection`` nor aiortc's ``RTCConfiguration``
# has an option to choose the addresses. Alternatives considered:
#   - pre-gathering on the private ``RTCIceGatherer._connection`` (``get_component_candidates``
#     then setting ``_local_candidates*``): depends on three private attributes of two libraries;
#   - a plain monkeypatch of ``get_host_addresses`` during ``setLocalDescription``: global, so
#     two peers answering concurrently with different settings (or an aiortc client in the same
#     process, as in the tests) would see each other's addresses.
# Chosen: the module function is replaced once by a wrapper that returns the addresses held by a
# ``ContextVar`` and defers to the original when none is set. ``setLocalDescription`` runs the
# gathering in tasks that copy the caller's context (``asyncio.gather`` of coroutines), so the
# override is scoped to one ``with ice_host_addresses(...)`` block and is concurrency-safe;
# outside such blocks aioice behaves exactly as shipped.

_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "callcenter_webrtc_host_addresses", default=None
)
_aioice_get_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    addresses = _host_addresses.get()
    if addresses is None:
        return _aioice_get_host_addresses(use_ipv4, use_ipv6)
    wanted = {4: use_ipv4, 6: use_ipv6}
    return [a for a in addresses if wanted[ipaddress.ip_address(a).version]]


def _install_host_address_hook() -> None:
    if aioice.ice.get_host_addresses is not _get_host_addresses:
        aioice.ice.get_host_addresses = _get_host_addresses


_install_host_address_hook()


@contextlib.contextmanager
def ice_host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Make ICE gathering started inside the block use exactly ``addresses`` as host candidates.

    Wrap ``RTCPeerConnection.setLocalDescription`` (where aiortc gathers) with it; loopback
    addresses are allowed. An empty sequence means aioice's default.

    Args:
        addresses: IPv4/IPv6 literals to bind the ICE sockets to.
    """
    for address in addresses:
        ipaddress.ip_address(address)  # ValueError on a name or a typo
    _install_host_address_hook()
    token = _host_addresses.set(tuple(addresses) if addresses else None)
    try:
        yield
    finally:
        _host_addresses.reset(token)


def ice_servers(urls: Sequence[str]) -> list[RTCIceServer]:
    """Turn ``"stun:host:port"`` / ``"turn:user:pass@host:port?transport=udp"`` into RTCIceServer.

    Credentials are the URL's userinfo (percent-decoded), as RFC 7065 URIs carry none.

    Raises:
        ValueError: For a malformed URL (unknown scheme, missing host, bad port).
    """
    servers: list[RTCIceServer] = []
    for url in urls:
        scheme, colon, rest = url.partition(":")
        if not colon or scheme not in ("stun", "stuns", "turn", "turns"):
            raise ValueError("ICE server URL must start with stun:, stuns:, turn: or turns:")
        username: str | None = None
        credential: str | None = None
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
            user, _, password = userinfo.partition(":")
            username, credential = unquote(user), unquote(password)
        uri = f"{scheme}:{rest}"
        parse_stun_turn_uri(uri)  # aiortc's own grammar (RFC 7064/7065): ValueError if bad
        if scheme.startswith("turn") and (username is None or credential is None):
            raise ValueError("TURN server URL needs user:password@")
        servers.append(RTCIceServer(urls=uri, username=username, credential=credential))
    return servers


def codec_preferences(names: Sequence[str]) -> list[RTCRtpCodecCapability]:
    """The audio codec capabilities of aiortc for ``names`` (case-insensitive), in that order.

    Raises:
        ValueError: For a codec aiortc does not implement.
    """
    capabilities = RTCRtpSender.getCapabilities("audio").codecs
    by_name = {c.mimeType.split("/", 1)[1].lower(): c for c in capabilities}
    preferences = []
    for name in names:
        capability = by_name.get(name.lower())
        if capability is None:
            raise ValueError(f"unsupported WebRTC audio codec {name!r} (known: {sorted(by_name)})")
        preferences.append(capability)
    return preferences


# --- Media ----------------------------------------------------------------------------------------


def _peak(pcm: bytes) -> int:
    """Absolute peak of s16le samples (int32 first: abs(-32768) overflows int16)."""
    return int(np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32)).max())


class _SourceTrack(MediaStreamTrack):
    """Outbound audio: one 20 ms frame from ``source()`` per ``recv()``, paced by the loop clock."""

    kind = "audio"

    def __init__(self, source: Callable[[], bytes | None], counters: dict[str, int]) -> None:
        super().__init__()
        self._source = source
        self._counters = counters
        self._start: float | None = None
        self._pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        else:
            self._pts += FRAME_SAMPLES
            wait = self._start + self._pts / SAMPLE_RATE - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            elif wait < -MAX_LATE_S:
                self._start = loop.time() - self._pts / SAMPLE_RATE
                self._counters["pacing_resets"] += 1
        pcm = self._source()
        if pcm is None:
            pcm = _SILENCE
            self._counters["frames_silent_sent"] += 1
        elif len(pcm) != FRAME_BYTES:
            pcm = _SILENCE
            self._counters["source_bad_frames"] += 1
        elif _peak(pcm) >= VOICED_PEAK:
            self._counters["voiced_sent"] += 1
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        # RTP timestamps derive from pts in the sample-rate time base (RFC 3550 section 5.1).
        frame.pts = self._pts
        frame.time_base = _TIME_BASE
        self._counters["frames_sent"] += 1
        return frame


class _PeerLog(logging.LoggerAdapter[logging.Logger]):
    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['peer'] if self.extra else '?'}] {msg}", kwargs


class WebRtcPeer:
    """One aiortc RTCPeerConnection between the service and an agent's browser, for one call."""

    def __init__(
        self,
        config: WebRtcConfig,
        *,
        source: Callable[[], bytes | None],
        on_audio: Callable[[bytes], None],
        on_state: Callable[[str], None],
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        """Prepare the peer (nothing is sent before :meth:`answer`).

        Args:
            config: Host addresses, ICE servers, codec preferences.
            source: Called every 20 ms for the next frame to the browser (320 bytes, or ``None``
                for silence).
            on_audio: Receives the browser's audio as 320-byte frames (8 kHz mono s16le).
            on_state: Receives ``"connected"``, ``"failed"`` and finally ``"closed"``.
            connect_timeout_s: ``"failed"`` is reported when the connection is not up this long
                after :meth:`answer` (aioice may keep checking an unreachable browser for
                minutes).

        Raises:
            ValueError: For an invalid configuration (address, ICE server URL, codec).
        """
        self._config = config
        self._on_audio = on_audio
        self._on_state = on_state
        self._log = _PeerLog(logger, {"peer": f"webrtc-{next(_peer_ids)}"})
        self._preferences = codec_preferences(config.codecs)
        for address in config.host_addresses:
            ipaddress.ip_address(address)
        # An explicit empty list: with None aiortc would fall back to Google's public STUN
        # server (RTCIceGatherer.getDefaultIceServers), which must not be contacted.
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers(config.ice_servers)))
        self._counters: dict[str, int] = dict.fromkeys(
            (
                "frames_sent",
                "frames_silent_sent",
                "voiced_sent",
                "source_bad_frames",
                "frames_received",
                "voiced_received",
                "pacing_resets",
            ),
            0,
        )
        self._track = _SourceTrack(source, self._counters)
        self._rx_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._answered = False
        self._connect_timeout_s = connect_timeout_s
        self._connect_timer: asyncio.TimerHandle | None = None
        self._last_state: str | None = None
        self.codec: str | None = None
        """Negotiated audio codec towards the browser ("opus", "PCMU"...), once answered."""
        self.last_rx_time: float | None = None
        """``loop.time()`` of the latest audio frame received from the browser."""
        self._pc.on("connectionstatechange", self._connection_state_changed)

    # -- signalling --------------------------------------------------------------------------

    async def answer(self, offer_sdp: str) -> str:
        """Apply the browser's offer; return the answer SDP with every ICE candidate gathered.

        Raises:
            WebRtcError: Bad offer, no audio, no common codec, peer closed, or no candidate.
        """
        if self._close_task is not None:
            raise WebRtcError("peer closed")
        if self._answered:
            raise WebRtcError("offer already answered")
        self._answered = True
        try:
            # Our transceiver exists before the offer is applied, so aiortc binds the offer's
            # first audio m-line to it and negotiates with our codec order (it filters the
            # common codecs by the transceiver's preferences in setRemoteDescription).
            transceiver = self._pc.addTransceiver(self._track, direction="sendrecv")
            transceiver.setCodecPreferences(self._preferences)
            if self._config.host_addresses and all(
                is_loopback_host(a) for a in self._config.host_addresses
            ):
                offer_sdp = loopback_candidates_only(offer_sdp)
            await self._pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
            if transceiver.mid is None:
                raise WebRtcError("offer has no audio stream")
            answer = await self._pc.createAnswer()
            with ice_host_addresses(self._config.host_addresses):
                # aiortc gathers all candidates here (no trickle).
                await self._pc.setLocalDescription(answer)
        except WebRtcError:
            raise
        except Exception as exc:  # aiortc raises ValueError, OperationError, InvalidStateError...
            self._log.info("cannot answer the browser's offer: %s", type(exc).__name__)
            raise WebRtcError(f"cannot answer the offer: {exc}") from exc
        local = self._pc.localDescription
        parsed = aiortc_sdp.SessionDescription.parse(local.sdp)
        audio = next(m for m in parsed.media if m.kind == "audio")
        if not audio.ice_candidates:
            raise WebRtcError("no ICE candidate gathered (check webrtc.host_addresses)")
        self.codec = audio.rtp.codecs[0].mimeType.split("/", 1)[1]
        self._start_receiving(transceiver)
        self._connect_timer = asyncio.get_running_loop().call_later(
            self._connect_timeout_s, self._connect_timed_out
        )
        self._log.info(
            "answered: codec %s, %d ICE candidates", self.codec, len(audio.ice_candidates)
        )
        return local.sdp

    def _start_receiving(self, transceiver: RTCRtpTransceiver) -> None:
        track = transceiver.receiver.track
        if transceiver.direction == "inactive" or track is None:
            return
        self._rx_task = asyncio.create_task(self._receive(track), name="webrtc-rx")
        self._rx_task.add_done_callback(self._rx_done)

    # -- media -------------------------------------------------------------------------------

    async def _receive(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        pending = bytearray()
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return  # the browser's track ended (peer closed)
            assert isinstance(frame, av.AudioFrame)
            for out in resampler.resample(frame):
                # to_ndarray() honours the sample count (a plane's buffer may be padded).
                pending += out.to_ndarray().tobytes()
            while len(pending) >= FRAME_BYTES:
                pcm = bytes(pending[:FRAME_BYTES])
                del pending[:FRAME_BYTES]
                self.last_rx_time = loop.time()
                self._counters["frames_received"] += 1
                if _peak(pcm) >= VOICED_PEAK:
                    self._counters["voiced_received"] += 1
                self._on_audio(pcm)

    def _rx_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._log.error("receiving the browser's audio failed", exc_info=exc)

    def stats(self) -> dict[str, float | int]:
        """Media counters of this peer.

        Returns:
            frames_sent, voiced_sent (peak ≥ :data:`VOICED_PEAK`), frames_silent_sent
            (``source()`` gave None), source_bad_frames (not 320 bytes), frames_received,
            voiced_received, pacing_resets (outbound clock restarted after a stall longer
            than :data:`MAX_LATE_S`).
        """
        return dict(self._counters)

    # -- state -------------------------------------------------------------------------------

    def _connection_state_changed(self) -> None:
        state = self._pc.connectionState
        if state in _STATES:
            self._report(state)

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if self._last_state is None:
            self._log.info("not connected after %.0f s", self._connect_timeout_s)
            self._report("failed")

    def _report(self, state: str) -> None:
        if self._connect_timer is not None and state != "failed":
            self._connect_timer.cancel()
            self._connect_timer = None
        if state == self._last_state or self._last_state == "closed":
            return
        self._last_state = state
        self._log.info("connection %s", state)
        try:
            self._on_state(state)
        except Exception:
            # Called from aiortc's state machinery (pyee emit): an error escaping here would
            # break the peer connection's own bookkeeping, so it is logged, not raised.
            self._log.exception("on_state(%s) failed", state)

    async def close(self) -> None:
        """Stop the media and the peer connection (idempotent; reports ``"closed"`` once)."""
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._close(), name="webrtc-close")
        # Shielded: a caller cancelled while waiting must not leave the peer half-closed.
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        self._track.stop()
        if self._rx_task is not None and not self._rx_task.done():
            self._rx_task.cancel()
            # asyncio.wait neither raises the child's CancelledError nor swallows ours.
            await asyncio.wait({self._rx_task}, timeout=CLOSE_TIMEOUT_S)
        await self._pc.close()
        c = self._counters
        self._log.info(
            "media: sent %d frames (%d voiced, %d silent), received %d (%d voiced)",
            c["frames_sent"],
            c["voiced_sent"],
            c["frames_silent_sent"],
            c["frames_received"],
            c["voiced_received"],
        )
        self._report("closed")

    @property
    def connection_state(self) -> str:
        """Aiortc's ``connectionState``: new, connecting, connected, failed or closed."""
        return str(self._pc.connectionState)

    def __repr__(self) -> str:
        return f"<WebRtcPeer codec={self.codec} state={self.connection_state}>"


def loopback_candidates_only(sdp_text: str) -> str:
    """The SDP without its non-loopback ICE candidates.

    A peer that gathers on loopback addresses only can reach nothing else: checks towards the
    browser's other candidates (its LAN address, ``.local`` names) could only fail, and on a
    test machine they would send packets beyond 127.0.0.1. Lines are kept byte for byte.
    """
    kept = []
    for line in sdp_text.splitlines(keepends=True):
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) < 5 or not is_loopback_host(fields[4]):
                continue
        kept.append(line)
    return "".join(kept)


def candidate_addresses(sdp_text: str) -> set[str]:
    """Addresses of every ICE candidate (``a=candidate``, RFC 8839 section 5.1) in an SDP.

    Raises:
        ValueError: When the SDP cannot be parsed.
    """
    parsed = aiortc_sdp.SessionDescription.parse(sdp_text)
    return {c.ip for m in parsed.media for c in m.ice_candidates}
