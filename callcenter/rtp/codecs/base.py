"""The audio codec interface and the codec registry.

PCM is always little-endian signed 16-bit mono bytes at the codec's clock rate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

__all__ = ["Codec", "UnsupportedCodecError", "get_codec", "register_codec"]


class UnsupportedCodecError(ValueError):
    """No codec with this name is available."""


class Codec(ABC):
    """An RTP audio codec."""

    name: str = ""
    """Encoding name as in SDP ``a=rtpmap`` (upper case)."""
    clock_rate: int = 8000
    """RTP clock rate in Hz."""
    static_payload_type: int | None = None
    """Static payload type from RFC 3551 section 6, if any."""

    def __init__(self, payload_type: int | None = None) -> None:
        pt = self.static_payload_type if payload_type is None else payload_type
        if pt is None:
            raise ValueError(f"codec {self.name} needs a dynamic payload type")
        self.payload_type: int = pt
        """The payload type used on this session."""

    @abstractmethod
    def encode(self, pcm: bytes) -> bytes:
        """Encode PCM16 little-endian mono samples into one payload."""

    @abstractmethod
    def decode(self, payload: bytes) -> bytes:
        """Decode one payload into PCM16 little-endian mono samples."""

    @abstractmethod
    def samples(self, payload: bytes) -> int:
        """Number of samples carried by an encoded payload (the RTP timestamp step)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(payload_type={self.payload_type})"


_REGISTRY: dict[str, Callable[[int | None], Codec]] = {}


def register_codec(name: str, factory: Callable[[int | None], Codec]) -> None:
    """Make a codec available to :func:`get_codec` under ``name`` (case-insensitive)."""
    _REGISTRY[name.upper()] = factory


def get_codec(name: str, payload_type: int | None = None) -> Codec:
    """A codec instance by SDP encoding name (``PCMU``, ``PCMA``).

    Args:
        name: encoding name, case-insensitive.
        payload_type: the negotiated payload type; defaults to the static one.

    Raises:
        UnsupportedCodecError: if no codec has this name.
    """
    if not _REGISTRY:
        # Registration happens on import of the implementations.
        from callcenter.rtp.codecs import g711  # noqa: F401

    factory = _REGISTRY.get(name.upper())
    if factory is None:
        raise UnsupportedCodecError(f"unsupported codec {name!r}")
    return factory(payload_type)
