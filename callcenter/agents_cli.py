"""``callcenter agents``: the people who answer the calls the bot hands over (issue 5).

- ``add LOGIN --name NAME [--sip-uri URI] [--skill apa:4 ...] [--role ROLE]``: create an agent
  and print its API token once (only its hash is stored); ``--role`` is the panel role
  (``agent`` by default, ``supervisor``, ``admin``).
- ``list [--json] [--all]``: agents with their skills (``--all``: disabled ones too).
- ``set-skills LOGIN --skill apa:4 [--skill ...]``: replace the skills (``skill`` alone means
  proficiency 3).
- ``token LOGIN``: issue a new API token (the old one stops working).
- ``set-password LOGIN [--role ROLE]``: set the agent's panel password (argon2id), read from
  standard input (first line) or prompted for without echo on a terminal, never from the
  command line (it would show in ``ps`` and the shell history); unlocks the account and ends
  its open panel sessions; ``--role`` also sets the panel role.
- ``disable LOGIN`` / ``enable LOGIN`` (disabling also ends the agent's panel sessions).
- ``demo``: the demo line's two panel accounts, created when missing: ``demo.agent`` (every
  queue of the routing file, proficiency 3) and ``demo.chef`` (supervisor), both with the
  password read from standard input (``make run`` pipes its ``DEMO_PANEL_PASSWORD``).

They take the ``--config`` and ``--data-dir`` options of ``callcenter serve`` and migrate the
database first. Errors name the field (``skill: proficiency of apa must be 1 to 5``) and exit 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence

from sqlalchemy import Engine

import routing
from callcenter.cli import common_options
from callcenter.config import ConfigError, load_config
from callcenter.store import agents, db
from callcenter.store import panel as store_panel


def _engine(args: argparse.Namespace) -> Engine:
    config = load_config(args.config, overrides={"": {"data_dir": args.data_dir}})
    engine = db.make_engine(config.db_url)
    db.create_schema(engine)
    return engine


def _skills(values: Sequence[str] | None) -> dict[str, int]:
    levels: dict[str, int] = {}
    for value in values or ():
        name, level = agents.parse_skill(value)
        levels[name] = level
    return levels


def _show(agent: agents.AgentInfo) -> str:
    skills = ", ".join(f"{s}:{p}" for s, p in agent.skills.items()) or "-"
    state = "" if agent.active else "  (disabled)"
    return f"{agent.login:<20} {agent.sip_uri or '-':<32} {skills}{state}"


def _read_password() -> str:
    """The new password: prompted twice without echo on a terminal, else stdin's first line."""
    if sys.stdin.isatty():
        first = getpass.getpass("Mot de passe : ")
        if getpass.getpass("Confirmation : ") != first:
            raise store_panel.PanelError("password: the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def build_parser(prog: str = "callcenter agents") -> argparse.ArgumentParser:
    """Build the argument parser of ``callcenter agents``."""
    common = common_options()
    parser = argparse.ArgumentParser(prog=prog, description="Agents: logins, skills, tokens.")
    sub = parser.add_subparsers(dest="command", required=True)
    skill_help = "skill[:proficiency 1-5], repeatable (e.g. apa:4)"
    role_help = "panel role (default agent)"

    add = sub.add_parser("add", parents=[common], help="create an agent (prints its API token)")
    add.add_argument("login")
    add.add_argument("--name", required=True, help="display name (shown to supervisors)")
    add.add_argument("--sip-uri", default=None, help="desk phone or softphone SIP URI")
    add.add_argument("--skill", action="append", help=skill_help)
    add.add_argument("--role", choices=store_panel.ROLES, default=None, help=role_help)

    lst = sub.add_parser("list", parents=[common], help="list agents and skills")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--all", action="store_true", help="include disabled agents")

    skills = sub.add_parser("set-skills", parents=[common], help="replace an agent's skills")
    skills.add_argument("login")
    skills.add_argument("--skill", action="append", required=True, help=skill_help)

    password = sub.add_parser(
        "set-password",
        parents=[common],
        help="set the panel password (read from stdin or prompted, never an argument)",
    )
    password.add_argument("login")
    password.add_argument("--role", choices=store_panel.ROLES, default=None, help=role_help)

    sub.add_parser("demo", parents=[common], help="the demo panel accounts (password from stdin)")

    for name, text in (
        ("token", "issue a new API token"),
        ("disable", "disable an agent"),
        ("enable", "enable an agent"),
    ):
        cmd = sub.add_parser(name, parents=[common], help=text)
        cmd.add_argument("login")
    return parser


def _run(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        if args.command == "add":
            agent, token = agents.add_agent(
                engine, args.login, args.name, sip_uri=args.sip_uri, skills=_skills(args.skill)
            )
            if args.role is not None:
                store_panel.set_role(engine, args.login, args.role)
            print(_show(agent))
            print(f"API token (shown once): {token}")
        elif args.command == "list":
            found = agents.list_agents(engine, include_inactive=args.all)
            if args.json:
                print(
                    json.dumps(
                        [
                            {
                                "login": a.login,
                                "display_name": a.display_name,
                                "sip_uri": a.sip_uri,
                                "active": a.active,
                                "skills": dict(a.skills),
                            }
                            for a in found
                        ],
                        ensure_ascii=False,
                        indent=2,
                    )
                )
            else:
                for agent in found:
                    print(_show(agent))
        elif args.command == "set-skills":
            print(_show(agents.set_skills(engine, args.login, _skills(args.skill))))
        elif args.command == "set-password":
            if agents.get_agent(engine, args.login) is None:
                raise agents.AgentError(f"login: no agent {args.login!r}")
            store_panel.set_password(engine, args.login, _read_password(), role=args.role)
            role = store_panel.get_role(engine, args.login)
            print(f"{args.login}: panel password set (role {role})")
        elif args.command == "demo":
            _demo_accounts(engine, args)
        elif args.command == "token":
            print(f"API token (shown once): {agents.new_token(engine, args.login)}")
        else:
            agents.set_active(engine, args.login, args.command == "enable")
            if args.command == "disable":
                store_panel.revoke_sessions(engine, args.login)
            print(f"{args.login}: {args.command}d")
    finally:
        engine.dispose()
    return 0


DEMO_ACCOUNTS = (
    ("demo.agent", "Agent de démonstration", "agent"),
    ("demo.chef", "Superviseur de démonstration", "supervisor"),
)
"""The demo line's panel accounts (``callcenter agents demo``)."""


def _demo_accounts(engine: Engine, args: argparse.Namespace) -> None:
    config = load_config(args.config, overrides={"": {"data_dir": args.data_dir}})
    skills: dict[str, int] = {}
    if config.routing.enabled:
        path = config.routing.file or routing.default_routing_config_path()
        try:
            queues = routing.load_routing_config(path).queues
        except (routing.RoutingConfigError, OSError) as exc:
            raise agents.AgentError(f"routing.file: {exc}") from None
        skills = {name: 3 for name in queues}
    password = sys.stdin.readline().rstrip("\r\n")
    for login, name, role in DEMO_ACCOUNTS:
        if agents.get_agent(engine, login) is None:
            agents.add_agent(engine, login, name, skills=skills if role == "agent" else {})
        store_panel.set_password(engine, login, password, role=role)
        print(f"{login}: panel account ready (role {role})")


def agents_main(argv: Sequence[str], prog: str = "callcenter agents") -> int:
    """Entry point of ``callcenter agents``; 0 on success, 1 on a refused change, 2 on usage."""
    args = build_parser(prog).parse_args(list(argv))
    try:
        return _run(args)
    except (agents.AgentError, store_panel.PanelError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(agents_main(sys.argv[1:]))
