"""Routing events and queued calls to JSON and back (the Redis backend's wire format).

An explicit codec, no pickle: a stream entry written by one node is read by every other node,
possibly a newer or older build, so the format is plain JSON with a ``type`` tag and the
event's fields, and decoding checks every field's type and raises :class:`CodecError` with a
precise message rather than building a half-valid event.

Floats are written with Python's shortest round-trip representation, so every replica decodes
the very same ``at`` and ``joined_at`` values (the router's decisions depend on them).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import routing
from routing.events import Event


class CodecError(ValueError):
    """A stream entry that is not a valid routing event or queued call."""


_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        routing.CallQueued,
        routing.CallerHungUp,
        routing.CallCancelled,
        routing.CallbackKept,
        routing.AgentLoggedIn,
        routing.AgentLoggedOut,
        routing.AgentSkillsChanged,
        routing.AgentReady,
        routing.AgentPauseRequested,
        routing.OfferAccepted,
        routing.OfferRejected,
        routing.OfferTimedOut,
        routing.CallEnded,
        routing.WrapUpDone,
        routing.Tick,
    )
}
"""Every event type of :data:`routing.Event`, by name (the ``type`` tag)."""


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise CodecError(f"{name}: expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: object, name: str) -> str | None:
    return None if value is None else _str(value, name)


def _float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CodecError(f"{name}: expected a number, got {type(value).__name__}")
    return float(value)


def _opt_float(value: object, name: str) -> float | None:
    return None if value is None else _float(value, name)


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise CodecError(f"{name}: expected true/false, got {type(value).__name__}")
    return value


def _opt_bool(value: object, name: str) -> bool | None:
    return None if value is None else _bool(value, name)


def _skills(value: object, name: str) -> dict[str, int]:
    if not isinstance(value, dict):
        raise CodecError(f"{name}: expected an object, got {type(value).__name__}")
    out: dict[str, int] = {}
    for skill, level in value.items():
        if isinstance(level, bool) or not isinstance(level, int):
            raise CodecError(f"{name}.{skill}: expected an integer proficiency")
        out[skill] = level
    return out


def _priority(value: object, name: str) -> routing.Priority:
    try:
        return routing.Priority.parse(_str(value, name))
    except ValueError as exc:
        raise CodecError(f"{name}: {exc}") from None


_CALL_READERS: dict[str, Callable[[object, str], object]] = {
    "call_id": _str,
    "skill": _str,
    "priority": _priority,
    "joined_at": _float,
    "previous_contact_at": _opt_float,
    "callback": _bool,
    "usager_id": _opt_str,
    "intent": _opt_str,
    "target_agent": _opt_str,
}
"""How each :class:`routing.QueuedCall` field is read (a test checks that all are listed)."""


def queued_call_to_dict(call: routing.QueuedCall) -> dict[str, Any]:
    """Return a queued call as a JSON-ready mapping.

    Args:
        call: The call.

    Returns:
        Its fields, the priority by name.
    """
    data: dict[str, Any] = {}
    for f in dataclasses.fields(call):
        value = getattr(call, f.name)
        data[f.name] = value.label if isinstance(value, routing.Priority) else value
    return data


def queued_call_from_dict(data: object) -> routing.QueuedCall:
    """Rebuild a queued call from :func:`queued_call_to_dict`'s mapping.

    Fields with a default may be absent (entries written before the field existed).

    Args:
        data: The decoded JSON object.

    Returns:
        The call.

    Raises:
        CodecError: If a field is missing, unknown or of the wrong type.
    """
    if not isinstance(data, dict):
        raise CodecError(f"call: expected an object, got {type(data).__name__}")
    fields = dataclasses.fields(routing.QueuedCall)
    required = {f.name for f in fields if f.default is dataclasses.MISSING}
    _check_keys(data, {f.name for f in fields}, "call", required=required)
    kwargs: dict[str, Any] = {
        key: _CALL_READERS[key](value, f"call.{key}") for key, value in data.items()
    }
    return routing.QueuedCall(**kwargs)


def encode_queued_call(call: routing.QueuedCall) -> str:
    """Return a queued call as compact JSON (the callbacks hash's values)."""
    return json.dumps(queued_call_to_dict(call), separators=(",", ":"))


def decode_queued_call(text: str | bytes) -> routing.QueuedCall:
    """Parse :func:`encode_queued_call`'s output.

    Raises:
        CodecError: If the text is not such JSON.
    """
    return queued_call_from_dict(_loads(text))


def encode_event(event: Event) -> str:
    """Return a routing event as compact JSON: ``{"type": name, field: value, ...}``.

    Args:
        event: Any event of :data:`routing.Event`.

    Returns:
        The JSON text.

    Raises:
        CodecError: If the object is not a routing event.
    """
    name = type(event).__name__
    if _EVENT_TYPES.get(name) is not type(event):
        raise CodecError(f"not a routing event: {name}")
    data: dict[str, Any] = {"type": name}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if f.name == "call":
            value = queued_call_to_dict(value)
        elif f.name == "skills":
            value = dict(value)
        data[f.name] = value
    return json.dumps(data, separators=(",", ":"))


_FIELD_READERS: dict[str, Callable[[object, str], object]] = {
    "call": lambda value, _name: queued_call_from_dict(value),
    "call_id": _str,
    "agent_id": _str,
    "reason": _str,
    "pause_reason": _opt_str,
    "skills": _skills,
    "resolved": _opt_bool,
    "at": _float,
}
"""How each event field is read: every field name of every event type is listed here."""


def decode_event(text: str | bytes) -> Event:
    """Parse :func:`encode_event`'s output.

    Args:
        text: The JSON text.

    Returns:
        The event.

    Raises:
        CodecError: If the text is not a routing event (unknown type, missing, extra or
            mistyped field).
    """
    data = _loads(text)
    if not isinstance(data, dict):
        raise CodecError("event: expected a JSON object")
    name = data.pop("type", None)
    cls = _EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise CodecError(f"event: unknown type {name!r}")
    fields = dataclasses.fields(cls)
    required = {f.name for f in fields if f.default is dataclasses.MISSING}
    _check_keys(data, {f.name for f in fields}, name, required=required)
    kwargs = {key: _FIELD_READERS[key](value, f"{name}.{key}") for key, value in data.items()}
    event: Event = cls(**kwargs)
    return event


def _check_keys(
    data: Mapping[str, object], allowed: set[str], where: str, *, required: set[str] | None = None
) -> None:
    extra = set(data) - allowed
    if extra:
        raise CodecError(f"{where}: unexpected field(s) {', '.join(sorted(extra))}")
    missing = (allowed if required is None else required) - set(data)
    if missing:
        raise CodecError(f"{where}: missing field(s) {', '.join(sorted(missing))}")


def _loads(text: str | bytes) -> object:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"not JSON: {exc}") from None
