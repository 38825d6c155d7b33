"""Blind transfers: where an agent may send the caller, read from the agent API or a REFER.

An agent in conversation sends the caller on, without consulting (a *blind* transfer):

- to a **queue** (another skill): the call waits there again, raised priority;
- to a named **agent**: offered to them at once if available, else it waits in the call's
  queue (``routing.QueuedCall.target_agent``);
- to an external **number** (e.g. the 3977 line, a CLIC): dialled through the trunk and bridged.

External numbers are refused unless the operator listed them (``TransferPolicy``): an agent
account must not be a way to place arbitrary calls at the département's expense (toll fraud),
and the caller's dossier must not be handed to an unknown party. A desk phone's transfer key
sends ``REFER`` with ``Refer-To: <sip:apa@service>``; the user part says where to
(:func:`target_from_refer_user`): a queue id, ``agent-<login>`` or a login, or digits.

Nothing here performs the transfer: :class:`callcenter.call.Call` does. This module parses and
checks, so that the agent API answers 4xx before anything happens to the call.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from callcenter.store.dossiers import normalize_phone

_SHORT_NUMBER = re.compile(r"^[13]\d{2,5}$")
"""French short numbers (3977, 3114, 115, 119...: 1 or 3 then digits), with no E.164 form."""
_DIGITS = re.compile(r"^\+?[\d .()-]{3,30}$")


class TransferKind(enum.Enum):
    """Where a transfer goes."""

    QUEUE = "queue"
    AGENT = "agent"
    NUMBER = "number"


@dataclass(frozen=True, slots=True)
class TransferTarget:
    """A checked transfer destination."""

    kind: TransferKind
    """Queue, agent or external number."""
    value: str
    """Queue id, agent login, or the number (E.164, or a short number as dialled)."""


class TransferError(Exception):
    """A transfer that cannot be done; ``status`` is the HTTP status the agent API answers.

    400 malformed, 403 not allowed (a number not on the list), 404 unknown queue or agent,
    409 not possible now (the caller is not in conversation with this agent).
    """

    def __init__(self, status: int, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True, slots=True)
class TransferPolicy:
    """What agents may transfer to (``[transfers]`` in the configuration)."""

    allowed_numbers: tuple[str, ...] = ()
    """External numbers agents may transfer to: E.164 numbers, French short numbers, or
    prefixes ending in ``*`` (``+33321*``). Empty: no external transfer."""
    region: str = "FR"
    """Region for numbers written in national form."""


def normalize_number(raw: str, region: str = "FR") -> str | None:
    """The number in E.164, a short number as is, or None if it is not a phone number."""
    text = raw.strip()
    if not _DIGITS.match(text):
        return None
    compact = re.sub(r"[ .()-]", "", text)
    if _SHORT_NUMBER.match(compact):
        return compact
    return normalize_phone(compact, region)


def number_allowed(number: str, policy: TransferPolicy) -> bool:
    """Tell whether ``number`` (normalised) matches the policy's list."""
    for entry in policy.allowed_numbers:
        if entry.endswith("*"):
            if number.startswith(entry[:-1]):
                return True
        elif number == entry:
            return True
    return False


def check_target(
    kind: str,
    value: object,
    *,
    queues: Collection[str],
    agent_exists: Callable[[str], bool],
    policy: TransferPolicy,
    from_agent: str | None = None,
) -> TransferTarget:
    """Check a destination given as ``kind`` (``queue``/``agent``/``number``) and ``value``.

    Args:
        kind: The destination's kind.
        value: Queue id, agent login or number, as received.
        queues: The configured queue ids.
        agent_exists: Whether a login names an agent (active or not).
        policy: Allowed external numbers.
        from_agent: The transferring agent (an agent cannot transfer to themselves).

    Returns:
        The target.

    Raises:
        TransferError: 400, 403 or 404 (see the class).
    """
    if not isinstance(value, str) or not value.strip():
        raise TransferError(400, f"{kind} must be a non-empty string", field=kind)
    text = value.strip()
    if kind == "queue":
        if text not in queues:
            raise TransferError(404, f"unknown queue {text!r}", field="queue")
        return TransferTarget(TransferKind.QUEUE, text)
    if kind == "agent":
        if text == from_agent:
            raise TransferError(400, "an agent cannot transfer a call to themselves", field=kind)
        if not agent_exists(text):
            raise TransferError(404, f"unknown agent {text!r}", field="agent")
        return TransferTarget(TransferKind.AGENT, text)
    if kind == "number":
        number = normalize_number(text, policy.region)
        if number is None:
            raise TransferError(400, "not a phone number", field="number")
        if not number_allowed(number, policy):
            # The number is not echoed: it may be a private one.
            raise TransferError(403, "this number is not in the allowed transfer list", field=kind)
        return TransferTarget(TransferKind.NUMBER, number)
    raise TransferError(400, f"unknown transfer kind {kind!r}", field="kind")


def target_from_refer_user(
    user: str,
    *,
    queues: Collection[str],
    agent_exists: Callable[[str], bool],
    policy: TransferPolicy,
    from_agent: str | None = None,
) -> TransferTarget:
    """Read a REFER's ``Refer-To`` user part: a queue id, ``agent-<login>``, a login, or digits.

    Raises:
        TransferError: as :func:`check_target`; SIP answers with the matching final NOTIFY.
    """
    if user in queues:
        return check_target("queue", user, queues=queues, agent_exists=agent_exists, policy=policy)
    if user.startswith("agent-"):
        return check_target(
            "agent",
            user.removeprefix("agent-"),
            queues=queues,
            agent_exists=agent_exists,
            policy=policy,
            from_agent=from_agent,
        )
    if agent_exists(user):
        return check_target(
            "agent",
            user,
            queues=queues,
            agent_exists=agent_exists,
            policy=policy,
            from_agent=from_agent,
        )
    if _DIGITS.match(user):
        return check_target("number", user, queues=queues, agent_exists=agent_exists, policy=policy)
    raise TransferError(404, "unknown transfer destination", field="refer_to")
