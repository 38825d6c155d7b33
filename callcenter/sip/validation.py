"""UAS request validation (RFC 3261 section 8.2), run after parsing, before any transaction logic.

Rules this file owns, in the order RFC 3261 section 8.2 applies them (the first failure wins):

1. Method inspection (section 8.2.1): an unknown method → 501, a known but not allowed one →
   405, both with ``Allow``. This runs before the CSeq check so that an unknown method with a
   mismatching CSeq gets 501 (RFC 4475 section 3.1.2.18).
2. CSeq method equals the request method (section 8.1.1.5; RFC 4475 section 3.1.2.17) → 400.
3. Request-URI scheme (section 8.2.2.1): sip/sips (syntax already checked by the parser) or one
   of ``uri_schemes`` (``tel`` by default), else 416.
4. REGISTER only: the To URI (the address-of-record) must be sip/sips (section 10.3 step 3;
   RFC 4475 section 3.3.4) → 400.
5. Require (section 8.2.2.3): unknown option tags → 420 with ``Unsupported`` listing them.
   Proxy-Require is for proxies and is ignored by a UAS; ACK and CANCEL are not checked.
6. Content processing (section 8.2.3), for the methods that carry session descriptions
   (INVITE, PRACK, UPDATE): a body type not in ``accepted_content_types`` → 415 with
   ``Accept``; a Content-Encoding other than identity → 415 with ``Accept-Encoding``; an
   INVITE whose Accept excludes every type we answer with → 406 (RFC 4475 section 3.3.15).

ACK is never answered (RFC 3261 section 17.1.1.3): callers must drop an ACK that fails here.
Max-Forwards 0 is fine for a UAS (RFC 4475 section 3.3.11); a Date in any zone is ignored.
"""

from __future__ import annotations

from callcenter.sip.errors import (
    BadExtensionError,
    LocalSipError,
    MethodNotAllowedError,
    MethodNotImplementedError,
    NotAcceptableError,
    SipParseError,
    UnsupportedMediaTypeError,
    UnsupportedUriSchemeError,
)
from callcenter.sip.headers import CSeq, NameAddress, parse_option_tags
from callcenter.sip.message import SipRequest
from callcenter.sip.uri import uri_scheme

__all__ = ["DEFAULT_ACCEPTED_CONTENT_TYPES", "SDP_METHODS", "validate_request"]

SDP_METHODS = frozenset({"INVITE", "PRACK", "UPDATE"})
"""Methods whose body is an offer or answer (RFC 3264) and is checked against Content-Type."""
DEFAULT_ACCEPTED_CONTENT_TYPES = frozenset({"application/sdp"})
"""Body types a UAS of this service understands in ``SDP_METHODS``."""


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].replace(" ", "").replace("\t", "").lower()


def _accepts(accept_values: list[str], wanted: frozenset[str]) -> bool:
    for item in accept_values:
        media = _media_type(item)
        if media in wanted or media == "*/*":
            return True
        major, _, minor = media.partition("/")
        if minor == "*" and any(w.startswith(major + "/") for w in wanted):
            return True
    return False


def validate_request(
    req: SipRequest,
    *,
    supported_extensions: frozenset[str],
    known_methods: frozenset[str],
    allowed_methods: frozenset[str],
    uri_schemes: frozenset[str] = frozenset({"tel"}),
    accepted_content_types: frozenset[str] = DEFAULT_ACCEPTED_CONTENT_TYPES,
) -> None:
    """Check a parsed request the way a UAS must before transaction and dialog logic.

    Args:
        req: A request returned by ``parse_message``.
        supported_extensions: Option tags we support (compared case-insensitively).
        known_methods: Methods we understand at all; others get 501.
        allowed_methods: Methods accepted here (subset of ``known_methods``); others get 405.
            Also the value of the ``Allow`` header of 405/501.
        uri_schemes: Request-URI schemes accepted besides sip and sips.
        accepted_content_types: Body types accepted in INVITE/PRACK/UPDATE (lower-case).

    Raises:
        LocalSipError: A subclass carrying the status code and extra headers of the answer;
            ``partial`` is the request itself.
    """
    try:
        _validate(
            req,
            supported_extensions=supported_extensions,
            known_methods=known_methods,
            allowed_methods=allowed_methods,
            uri_schemes=uri_schemes,
            accepted_content_types=accepted_content_types,
        )
    except LocalSipError as exc:
        exc.partial = req
        raise


def _validate(
    req: SipRequest,
    *,
    supported_extensions: frozenset[str],
    known_methods: frozenset[str],
    allowed_methods: frozenset[str],
    uri_schemes: frozenset[str],
    accepted_content_types: frozenset[str],
) -> None:
    allow = (("Allow", ", ".join(sorted(allowed_methods))),)
    method = req.method
    if method not in known_methods:
        raise MethodNotImplementedError(
            f"method {method[:40]!r} is not implemented", extra_headers=allow
        )
    if method not in allowed_methods:
        raise MethodNotAllowedError(f"method {method} is not allowed here", extra_headers=allow)

    cseq = CSeq.parse(req.headers.get("CSeq") or "")
    if cseq.method != method:
        raise SipParseError(
            f"CSeq method {cseq.method[:40]!r} does not match request method {method!r} "
            "(RFC 3261 section 8.1.1.5)"
        )

    scheme = uri_scheme(req.uri)
    if scheme is None:
        raise SipParseError(f"Request-URI {req.uri[:80]!r} has no scheme")
    if scheme not in ("sip", "sips") and scheme not in uri_schemes:
        raise UnsupportedUriSchemeError(
            f"Request-URI scheme {scheme[:40]!r} is not supported",
            extra_headers=(),
        )

    if method == "REGISTER":
        to_scheme = uri_scheme(NameAddress.parse(req.headers.get("To") or "").uri)
        if to_scheme not in ("sip", "sips"):
            raise SipParseError(
                f"REGISTER address-of-record scheme {to_scheme!r} is not sip or sips "
                "(RFC 3261 section 10.3)"
            )

    if method in ("ACK", "CANCEL"):
        return
    supported = {tag.lower() for tag in supported_extensions}
    unknown = [
        tag for tag in parse_option_tags(req.headers, "Require") if tag.lower() not in supported
    ]
    if unknown:
        raise BadExtensionError(
            f"unsupported extension(s) required: {', '.join(unknown)}",
            extra_headers=(("Unsupported", ", ".join(unknown)),),
        )

    if method not in SDP_METHODS:
        return
    accept_header = (("Accept", ", ".join(sorted(accepted_content_types))),)
    content_type = req.headers.get("Content-Type")
    has_body = bool(req.body.strip(b"\r\n"))
    if has_body and content_type is None:
        raise SipParseError(f"{method} has a body but no Content-Type (RFC 3261 section 20.15)")
    if has_body and content_type is not None:
        media = _media_type(content_type)
        if media not in accepted_content_types:
            raise UnsupportedMediaTypeError(
                f"body type {media!r} is not supported", extra_headers=accept_header
            )
    for encoding in req.headers.get_list("Content-Encoding"):
        if encoding.strip().lower() != "identity":
            raise UnsupportedMediaTypeError(
                f"Content-Encoding {encoding!r} is not supported",
                extra_headers=(("Accept-Encoding", "identity"),),
            )
    if method == "INVITE":
        accept = req.headers.get_list("Accept")
        # An Accept with elements that all exclude SDP leaves us nothing to answer with. An
        # empty Accept is read liberally as "no preference" (RFC 3261 section 20.1 says "no
        # format", which would make every INVITE unanswerable).
        if accept and not _accepts(accept, accepted_content_types):
            wanted = ", ".join(sorted(accepted_content_types))
            raise NotAcceptableError(
                f"Accept {', '.join(accept)[:80]!r} excludes {wanted}",
                extra_headers=accept_header,
            )
