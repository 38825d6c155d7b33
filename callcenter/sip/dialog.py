"""SIP dialogs (RFC 3261 section 12).

Rules this file owns:

* Rule 1 (creation, sections 12.1.1 and 12.1.2): the UAS takes its route set from the
  Record-Route of the request in order, the UAC from the 2xx in reverse order; the remote target
  is the peer's Contact URI; the UAS remote sequence number is the INVITE's CSeq.
* Rule 2 (in-dialog requests, section 12.2.1.1): To/From/Call-ID come from the dialog, CSeq
  increments the local sequence number (except ACK/CANCEL), and the Request-URI/Route follow
  the loose (``;lr``) or strict routing rules. Requests go to the first Route or to the
  Request-URI (section 8.1.2; RFC 3263 resolution of host names belongs to the IO adapter: a
  host that is not an IP literal falls back to the peer's transport address).
* Rule 3 (in-dialog UAS checks, section 12.2.2): a request whose CSeq is lower than the remote
  sequence number is out of order (500); target-refresh requests update the remote target.
"""

from __future__ import annotations

import enum
import ipaddress
import secrets
from dataclasses import dataclass

from callcenter.sip.headers import CSeq, NameAddress, parse_contacts
from callcenter.sip.message import Headers, SipRequest, SipResponse
from callcenter.sip.uri import SipUri

__all__ = ["Dialog", "DialogId", "DialogState", "uri_address"]

Address = tuple[str, int]
DialogId = tuple[str, str, str]


class DialogState(enum.Enum):
    """Section 12: early (after a 1xx with a To tag) or confirmed (after a 2xx)."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def uri_address(uri: str, fallback: Address) -> Address:
    """Return the UDP address for a SIP URI (RFC 3263 section 4 for IP literals).

    ``maddr`` is ignored on purpose: honouring it lets any peer aim our requests at a third
    party. Host names cannot be resolved in a sans-IO core: they use ``fallback`` (the peer's
    transport address), which is what a symmetric UDP peer expects anyway.
    """
    try:
        parsed = SipUri.parse(uri)
    except Exception:
        return fallback
    if not _is_ip_literal(parsed.host):
        return fallback
    default_port = 5061 if parsed.scheme == "sips" else 5060
    return parsed.host.strip("[]"), parsed.port if parsed.port is not None else default_port


def _contact_uri(headers: Headers) -> str | None:
    try:
        contacts = parse_contacts(headers)
    except Exception:
        return None
    for contact in contacts:
        if not contact.is_wildcard:
            return contact.uri
    return None


def _without_tag(value: str) -> NameAddress:
    name_addr = NameAddress.parse(value)
    return name_addr.with_params(tag=False)


@dataclass(slots=True, eq=False)
class Dialog:
    """The state of one dialog (section 12: Call-ID, tags, sequence numbers, route set)."""

    call_id: str
    """The Call-ID."""
    local_tag: str
    """Our tag."""
    remote_tag: str
    """The peer's tag; ``""`` for an RFC 2543 peer that sent none (section 12.1.1)."""
    local_party: NameAddress
    """Our URI as in From (UAC) or To (UAS), without tag."""
    remote_party: NameAddress
    """The peer's URI, without tag."""
    remote_target: str
    """The peer's Contact URI (updated by target refreshes)."""
    route_set: tuple[str, ...]
    """Route values in the order our requests carry them."""
    local_cseq: int
    """The last CSeq number we used."""
    remote_cseq: int | None
    """The highest CSeq number received, ``None`` before any (UAC)."""
    peer_addr: Address
    """Transport address of the peer, used when the next hop is not an IP literal."""
    state: DialogState = DialogState.EARLY
    """Early or confirmed."""

    @property
    def id(self) -> DialogId:
        """(Call-ID, local tag, remote tag): the dialog ID of section 12."""
        return (self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def for_uas(cls, invite: SipRequest, *, local_tag: str, peer_addr: Address) -> Dialog:
        """Create the UAS side of a dialog from an INVITE (section 12.1.1).

        Raises:
            SipParseError: From/To/CSeq are malformed (validated earlier, so a bug).
        """
        from_na = NameAddress.parse(invite.headers.get("From") or "")
        to_na = _without_tag(invite.headers.get("To") or "")
        cseq = CSeq.parse(invite.headers.get("CSeq") or "")
        target = _contact_uri(invite.headers) or from_na.uri
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=from_na.tag or "",
            local_party=to_na,
            remote_party=from_na.with_params(tag=False),
            remote_target=target,
            route_set=tuple(invite.headers.get_list("Record-Route")),
            # Section 12.1.1: the local sequence number is empty; pick a random start well
            # below 2**31 so many increments stay valid (section 8.1.1.5).
            local_cseq=secrets.randbelow(2**16),
            remote_cseq=cseq.number,
            peer_addr=peer_addr,
        )

    @classmethod
    def for_uac(cls, invite: SipRequest, response: SipResponse, *, peer_addr: Address) -> Dialog:
        """Create the UAC side of a dialog from a 2xx/1xx with a To tag (section 12.1.2)."""
        from_na = NameAddress.parse(invite.headers.get("From") or "")
        to_na = NameAddress.parse(response.headers.get("To") or "")
        cseq = CSeq.parse(invite.headers.get("CSeq") or "")
        target = _contact_uri(response.headers) or str(invite.uri)
        return cls(
            call_id=invite.call_id,
            local_tag=from_na.tag or "",
            remote_tag=to_na.tag or "",
            local_party=from_na.with_params(tag=False),
            remote_party=to_na.with_params(tag=False),
            remote_target=target,
            route_set=tuple(reversed(response.headers.get_list("Record-Route"))),
            local_cseq=cseq.number,
            remote_cseq=None,
            peer_addr=peer_addr,
        )

    def check_remote_cseq(self, number: int) -> bool:
        """Record a new request's CSeq; False when it is out of order (section 12.2.2: 500)."""
        if self.remote_cseq is not None and number < self.remote_cseq:
            return False
        self.remote_cseq = number
        return True

    def refresh_target(self, message: SipRequest | SipResponse) -> None:
        """Apply a target refresh (re-INVITE or its 2xx, section 12.2)."""
        target = _contact_uri(message.headers)
        if target is not None:
            self.remote_target = target

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        try:
            first_uri = NameAddress.parse(first).uri
            loose = SipUri.parse(first_uri).has_param("lr")
        except Exception:
            return self.remote_target, list(self.route_set)
        if loose:
            return self.remote_target, list(self.route_set)
        # Strict routing (section 12.2.1.1): the first route becomes the Request-URI and the
        # remote target goes last in the Route header.
        return first_uri, [*self.route_set[1:], f"<{self.remote_target}>"]

    def next_hop(self) -> Address:
        """The transport address of the next hop for in-dialog requests (section 8.1.2)."""
        uri, routes = self._request_uri_and_routes()
        hop = uri
        if routes and uri == self.remote_target:
            # Loose routing: the request goes to the first Route; with strict routing (or
            # no route set) it goes to the Request-URI.
            try:
                hop = NameAddress.parse(routes[0]).uri
            except Exception:
                return self.peer_addr
        return uri_address(hop, self.peer_addr)

    def create_request(
        self,
        method: str,
        *,
        via: str,
        max_forwards: int = 70,
        cseq: int | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> SipRequest:
        """Build an in-dialog request (section 12.2.1.1).

        Args:
            method: The method.
            via: Our complete Via value (with a fresh branch).
            max_forwards: Max-Forwards value.
            cseq: Use this CSeq number (ACK for 2xx reuses the INVITE's); by default the local
                sequence number is incremented.
            headers: Extra headers (Contact, Content-Type, User-Agent...).
            body: The body.

        Returns:
            The request.
        """
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        uri, routes = self._request_uri_and_routes()
        out = Headers()
        out.add("Via", via)
        out.add("Max-Forwards", str(max_forwards))
        for route in routes:
            out.add("Route", route)
        out.add("From", str(self.local_party.with_tag(self.local_tag)))
        remote = self.remote_party
        out.add("To", str(remote.with_tag(self.remote_tag) if self.remote_tag else remote))
        out.add("Call-ID", self.call_id)
        out.add("CSeq", f"{cseq} {method}")
        for name, value in headers:
            out.add(name, value)
        return SipRequest(method, uri, out, body)
