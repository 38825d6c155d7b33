"""SIP error hierarchy (h11 style): local errors are answered, remote errors are ours to handle.

Rules this file owns:

* ``LocalSipError`` is a problem in a message *we received*. Its class-level ``status_code``
  and ``reason`` say which response a UAS sends back (RFC 3261 section 8.2 and 21.4);
  ``partial`` is what could be parsed so the transaction layer can copy Via/From/To/Call-ID/
  CSeq into that response (RFC 3261 section 8.2.6.2). ``partial is None`` means: drop the
  message silently (nothing to answer, or the message was a response, RFC 3261 section 18.1.2).
* ``RemoteSipError`` is a problem with what the peer did to us (a bad answer to our request,
  a message we failed to build); it never turns into a response.

The error text always names what is wrong, e.g. ``"Content-Length 9999 exceeds the 150 body
bytes received"``: it goes into logs and may be sent as the reason phrase of a 400.
"""

from __future__ import annotations

from typing import ClassVar

from callcenter.sip.message import SipRequest, SipResponse

__all__ = [
    "BadExtensionError",
    "LocalSipError",
    "MethodNotAllowedError",
    "MethodNotImplementedError",
    "NotAcceptableError",
    "RemoteSipError",
    "SipError",
    "SipParseError",
    "UnsupportedMediaTypeError",
    "UnsupportedUriSchemeError",
    "VersionNotSupportedError",
]


class SipError(Exception):
    """Base class of every error raised by the SIP core."""


class LocalSipError(SipError):
    """A problem in a message we received; the transaction layer answers it.

    Args:
        message: Human-readable text naming exactly what is wrong.
        partial: What could be parsed (start line and headers), so that a response can be
            built; ``None`` when nothing can be answered (the caller drops the message).
        extra_headers: Headers the response must carry (``Unsupported`` for 420, ``Allow`` for
            405/501, ``Accept`` for 415...).
    """

    status_code: ClassVar[int] = 400
    """The response code a UAS answers with (RFC 3261 section 21)."""
    reason: ClassVar[str] = "Bad Request"
    """The default reason phrase for ``status_code``."""

    def __init__(
        self,
        message: str,
        *,
        partial: SipRequest | SipResponse | None = None,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        """The diagnostic text (also ``str(error)``)."""
        self.partial = partial
        """The request as far as it was parsed, or ``None`` (always ``None`` for responses)."""
        self.extra_headers = extra_headers
        """Header lines to add to the error response, as ``(name, value)`` pairs."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status_code={self.status_code})"


class SipParseError(LocalSipError):
    """The message breaks the RFC 3261 grammar (section 25) or its framing: 400."""

    status_code = 400
    reason = "Bad Request"


class VersionNotSupportedError(LocalSipError):
    """The request line names a SIP version other than 2.0 (RFC 3261 section 8.2.1): 505."""

    status_code = 505
    reason = "Version Not Supported"


class UnsupportedUriSchemeError(LocalSipError):
    """The Request-URI scheme is not one we serve (RFC 3261 section 8.2.2.1): 416."""

    status_code = 416
    reason = "Unsupported URI Scheme"


class BadExtensionError(LocalSipError):
    """Require names an option tag we do not support (RFC 3261 section 8.2.2.3): 420."""

    status_code = 420
    reason = "Bad Extension"


class MethodNotAllowedError(LocalSipError):
    """A method we understand but do not accept here (RFC 3261 section 8.2.1): 405."""

    status_code = 405
    reason = "Method Not Allowed"


class MethodNotImplementedError(LocalSipError):
    """A method we do not know at all (RFC 3261 section 8.2.1 and 21.5.2): 501."""

    status_code = 501
    reason = "Not Implemented"


class UnsupportedMediaTypeError(LocalSipError):
    """The body type or encoding is not one we understand (RFC 3261 section 8.2.3): 415."""

    status_code = 415
    reason = "Unsupported Media Type"


class NotAcceptableError(LocalSipError):
    """Accept excludes every body type we could answer with (RFC 3261 section 21.4.7): 406."""

    status_code = 406
    reason = "Not Acceptable"


class RemoteSipError(SipError):
    """A problem with what the remote peer did (bad answers to our requests, timeouts).

    Raised and handled by the transaction/dialog engine; never turned into a response.
    """
