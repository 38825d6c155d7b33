"""Agents repository on SQLite and PostgreSQL: creation, skills, tokens, disabling."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select

from callcenter.store import agents, db
from callcenter.store.agents import AGENT, AgentError


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    db.create_schema(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def test_add_list_and_token(engine: Engine) -> None:
    agent, token = agents.add_agent(
        engine,
        "c.durand",
        "Claire Durand",
        sip_uri="sip:poste12@127.0.0.1:5070",
        skills={"apa": 4, "accueil_general": 2},
    )
    assert agent.skills == {"apa": 4, "accueil_general": 2}
    agents.add_agent(engine, "b.martin", "Bruno Martin")
    assert [a.login for a in agents.list_agents(engine)] == ["b.martin", "c.durand"]
    found = agents.agent_for_token(engine, token)
    assert found is not None and found.login == "c.durand" and found.skills["apa"] == 4
    assert agents.agent_for_token(engine, token + "x") is None
    assert agents.agent_for_token(engine, "") is None
    # Only the hash is stored.
    with engine.connect() as conn:
        stored = conn.execute(select(AGENT.c.token_hash).where(AGENT.c.login == "c.durand"))
        assert stored.scalar_one() == agents.hash_token(token) != token


def test_skills_are_replaced_and_validated(engine: Engine) -> None:
    agents.add_agent(engine, "c.durand", "Claire Durand", skills={"apa": 4})
    agent = agents.set_skills(engine, "c.durand", {"mdph_adulte": 5, "paiement": 1})
    assert agent.skills == {"mdph_adulte": 5, "paiement": 1}
    for bad, field in (({"apa": 6}, "proficiency"), ({"APA!": 3}, "skill"), ({"apa": 0}, "1 to 5")):
        with pytest.raises(AgentError, match=field):
            agents.set_skills(engine, "c.durand", bad)
    with pytest.raises(AgentError, match="unknown skill 'apa_typo'"):
        agents.set_skills(engine, "c.durand", {"apa_typo": 3}, known_skills=frozenset({"apa"}))
    assert agents.get_agent(engine, "c.durand") == agent  # nothing half-written
    with pytest.raises(AgentError, match="login: no agent"):
        agents.set_skills(engine, "nobody", {"apa": 3})


def test_refusals_name_the_field(engine: Engine) -> None:
    agents.add_agent(engine, "c.durand", "Claire Durand")
    with pytest.raises(AgentError, match="login: 'c.durand' is already taken"):
        agents.add_agent(engine, "c.durand", "Other")
    with pytest.raises(AgentError, match="login: 'Claire Durand'"):
        agents.add_agent(engine, "Claire Durand", "Claire")
    with pytest.raises(AgentError, match="display_name"):
        agents.add_agent(engine, "x.y", "  ")
    with pytest.raises(AgentError, match="sip_uri"):
        agents.add_agent(engine, "x.y", "X", sip_uri="tel:+33123")
    assert [a.login for a in agents.list_agents(engine)] == ["c.durand"]
    assert agents.parse_skill("apa") == ("apa", 3)
    assert agents.parse_skill(" mdph_enfant:5 ") == ("mdph_enfant", 5)
    with pytest.raises(AgentError, match="proficiency of apa must be 1 to 5, got 'x'"):
        agents.parse_skill("apa:x")


def test_rotation_and_disabling_stop_the_old_token(engine: Engine) -> None:
    _, first = agents.add_agent(engine, "c.durand", "Claire Durand")
    second = agents.new_token(engine, "c.durand")
    assert agents.agent_for_token(engine, first) is None
    assert agents.agent_for_token(engine, second) is not None
    agents.set_active(engine, "c.durand", False)
    assert agents.agent_for_token(engine, second) is None
    assert agents.list_agents(engine) == []
    [disabled] = agents.list_agents(engine, include_inactive=True)
    assert not disabled.active
    agents.set_active(engine, "c.durand", True)
    assert agents.agent_for_token(engine, second) is not None
