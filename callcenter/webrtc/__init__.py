"""The browser softphone's media: one WebRTC peer per agent call (aiortc)."""

from callcenter.webrtc.peer import (
    FRAME_BYTES,
    WebRtcConfig,
    WebRtcError,
    WebRtcPeer,
    candidate_addresses,
    ice_host_addresses,
    ice_servers,
)

__all__ = [
    "FRAME_BYTES",
    "WebRtcConfig",
    "WebRtcError",
    "WebRtcPeer",
    "candidate_addresses",
    "ice_host_addresses",
    "ice_servers",
]
