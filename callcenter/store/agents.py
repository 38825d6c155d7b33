"""Agents repository: add, list, skills, API tokens (issue 5).

What an administrator sets about an agent (:mod:`callcenter.store.agent_models`); the agent's
live state belongs to the routing state backend. Every function takes an engine (own
transaction) or a connection (the caller's). Tokens are returned once, at creation or rotation,
and only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, Engine, Table, delete, insert, select, update
from sqlmodel import SQLModel

from callcenter.sip.errors import SipError
from callcenter.sip.uri import SipUri
from callcenter.store import agent_models
from callcenter.store.audit import transaction

_ = agent_models  # the tables are registered on import
AGENT: Table = SQLModel.metadata.tables["agent"]
AGENT_SKILL: Table = SQLModel.metadata.tables["agent_skill"]

LOGIN_RE = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
"""Logins: lower-case letters, digits, ``.``, ``_``, ``-`` (2 to 64 characters)."""
SKILL_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
"""Skill identifiers, as in the routing configuration."""
DEFAULT_PROFICIENCY = 3
"""Proficiency of a skill given without one."""


class AgentError(ValueError):
    """An invalid or conflicting agent operation; the message names the field."""


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """An agent as an administrator set it."""

    id: int
    login: str
    display_name: str
    sip_uri: str | None
    active: bool
    skills: Mapping[str, int] = field(default_factory=dict)
    """Skill -> proficiency (1 to 5)."""


def hash_token(token: str) -> str:
    """SHA-256 (hex) of an API token: what is stored and compared.

    Used for agents and for the dossier API's clients; tokens are 256-bit random strings, so a
    fast hash is enough.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def parse_skill(text: str) -> tuple[str, int]:
    """Parse ``skill`` or ``skill:proficiency`` (``apa:4``).

    Raises:
        AgentError: naming the skill field.
    """
    name, _, level = text.strip().partition(":")
    if not SKILL_RE.fullmatch(name):
        raise AgentError(f"skill: not a skill identifier: {name!r}")
    if not level:
        return name, DEFAULT_PROFICIENCY
    if not level.isdigit() or not 1 <= int(level) <= 5:
        raise AgentError(f"skill: proficiency of {name} must be 1 to 5, got {level!r}")
    return name, int(level)


def _check_login(login: str) -> str:
    if not LOGIN_RE.fullmatch(login):
        raise AgentError(
            f"login: {login!r} must be 2-64 lower-case letters, digits, '.', '_' or '-'"
        )
    return login


def _check_sip_uri(uri: str | None) -> str | None:
    if uri is None or not uri.strip():
        return None
    try:
        SipUri.parse(uri.strip())
    except SipError as exc:
        raise AgentError(f"sip_uri: {exc}") from None
    return uri.strip()


def _check_skills(skills: Mapping[str, int], known: frozenset[str] | None) -> dict[str, int]:
    checked: dict[str, int] = {}
    for name, level in skills.items():
        if not SKILL_RE.fullmatch(name):
            raise AgentError(f"skill: not a skill identifier: {name!r}")
        if known is not None and name not in known:
            raise AgentError(f"skill: unknown skill {name!r} (known: {', '.join(sorted(known))})")
        if isinstance(level, bool) or not 1 <= level <= 5:
            raise AgentError(f"skill: proficiency of {name} must be 1 to 5, got {level!r}")
        checked[name] = level
    return checked


def add_agent(
    bind: Engine | Connection,
    login: str,
    display_name: str,
    *,
    sip_uri: str | None = None,
    skills: Mapping[str, int] | None = None,
    known_skills: frozenset[str] | None = None,
    now: datetime | None = None,
) -> tuple[AgentInfo, str]:
    """Create an agent; return it with its API token (shown once, only its hash is stored).

    Raises:
        AgentError: invalid field, unknown skill, or the login is taken.
    """
    _check_login(login)
    name = display_name.strip()
    if not name or len(name) > 128:
        raise AgentError("display_name: required, at most 128 characters")
    uri = _check_sip_uri(sip_uri)
    levels = _check_skills(skills or {}, known_skills)
    token = secrets.token_urlsafe(32)
    at = now or datetime.now(UTC)
    with transaction(bind) as conn:
        if conn.execute(select(AGENT.c.id).where(AGENT.c.login == login)).first() is not None:
            raise AgentError(f"login: {login!r} is already taken")
        agent_id: int = conn.execute(
            insert(AGENT)
            .values(
                login=login,
                display_name=name,
                sip_uri=uri,
                token_hash=hash_token(token),
                active=True,
                created_at=at,
                updated_at=at,
            )
            .returning(AGENT.c.id)
        ).scalar_one()
        _write_skills(conn, agent_id, levels)
    return AgentInfo(agent_id, login, name, uri, True, levels), token


def _write_skills(conn: Connection, agent_id: int, levels: Mapping[str, int]) -> None:
    conn.execute(delete(AGENT_SKILL).where(AGENT_SKILL.c.agent_id == agent_id))
    if levels:
        conn.execute(
            insert(AGENT_SKILL),
            [{"agent_id": agent_id, "skill": s, "proficiency": p} for s, p in levels.items()],
        )


def _load(conn: Connection, where: ColumnElement[bool]) -> list[AgentInfo]:
    rows = conn.execute(select(AGENT).where(where).order_by(AGENT.c.login)).mappings().all()
    if not rows:
        return []
    skills: dict[int, dict[str, int]] = {r["id"]: {} for r in rows}
    for s in conn.execute(
        select(AGENT_SKILL.c.agent_id, AGENT_SKILL.c.skill, AGENT_SKILL.c.proficiency)
        .where(AGENT_SKILL.c.agent_id.in_(list(skills)))
        .order_by(AGENT_SKILL.c.agent_id, AGENT_SKILL.c.skill)
    ):
        skills[s.agent_id][s.skill] = s.proficiency
    return [
        AgentInfo(
            r["id"], r["login"], r["display_name"], r["sip_uri"], r["active"], skills[r["id"]]
        )
        for r in rows
    ]


def list_agents(bind: Engine | Connection, *, include_inactive: bool = False) -> list[AgentInfo]:
    """All agents by login (active ones only unless ``include_inactive``)."""
    with transaction(bind) as conn:
        where = AGENT.c.id.is_not(None) if include_inactive else AGENT.c.active.is_(True)
        return _load(conn, where)


def get_agent(bind: Engine | Connection, login: str) -> AgentInfo | None:
    """One agent by login (active or not), or None."""
    with transaction(bind) as conn:
        found = _load(conn, AGENT.c.login == login)
    return found[0] if found else None


def agent_for_token(bind: Engine | Connection, token: str) -> AgentInfo | None:
    """The active agent whose API token this is, or None."""
    if not token:
        return None
    with transaction(bind) as conn:
        found = _load(conn, (AGENT.c.token_hash == hash_token(token)) & AGENT.c.active.is_(True))
    return found[0] if found else None


def _agent_id(conn: Connection, login: str) -> int:
    row = conn.execute(select(AGENT.c.id).where(AGENT.c.login == login)).first()
    if row is None:
        raise AgentError(f"login: no agent {login!r}")
    agent_id: int = row.id
    return agent_id


def set_skills(
    bind: Engine | Connection,
    login: str,
    skills: Mapping[str, int],
    *,
    known_skills: frozenset[str] | None = None,
    now: datetime | None = None,
) -> AgentInfo:
    """Replace an agent's skills; return the agent.

    Raises:
        AgentError: unknown agent, invalid or unknown skill.
    """
    levels = _check_skills(skills, known_skills)
    with transaction(bind) as conn:
        agent_id = _agent_id(conn, login)
        _write_skills(conn, agent_id, levels)
        conn.execute(
            update(AGENT).where(AGENT.c.id == agent_id).values(updated_at=now or datetime.now(UTC))
        )
        [agent] = _load(conn, AGENT.c.id == agent_id)
    return agent


def new_token(bind: Engine | Connection, login: str, *, now: datetime | None = None) -> str:
    """Replace an agent's API token (the old one stops working); return the new one.

    Raises:
        AgentError: unknown agent.
    """
    token = secrets.token_urlsafe(32)
    with transaction(bind) as conn:
        agent_id = _agent_id(conn, login)
        conn.execute(
            update(AGENT)
            .where(AGENT.c.id == agent_id)
            .values(token_hash=hash_token(token), updated_at=now or datetime.now(UTC))
        )
    return token


def set_active(
    bind: Engine | Connection, login: str, active: bool, *, now: datetime | None = None
) -> None:
    """Enable or disable an agent (a disabled agent keeps its history; its token stops working).

    Raises:
        AgentError: unknown agent.
    """
    with transaction(bind) as conn:
        agent_id = _agent_id(conn, login)
        conn.execute(
            update(AGENT)
            .where(AGENT.c.id == agent_id)
            .values(active=active, updated_at=now or datetime.now(UTC))
        )
