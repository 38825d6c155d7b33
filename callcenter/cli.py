"""The ``callcenter`` command line.

``serve``, ``flows check``, ``calls show|list``, ``api-token NAME`` (a client of the dossier API),
``faq check|ask|classify|eval`` (the FAQ matcher, see ``faq/cli.py``), ``models install``
(speech models, see ``callcenter/media/asr/models.py``) and ``dossiers ...``
(``callcenter/dossiers_cli.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from callcenter.config import Config, ConfigError, load_config


def _config_from_args(args: argparse.Namespace) -> Config:
    overrides: dict[str, dict[str, Any]] = {
        "": {"data_dir": args.data_dir},
        "sip": {"host": getattr(args, "sip_host", None), "port": getattr(args, "sip_port", None)},
        "http": {
            "host": getattr(args, "http_host", None),
            "port": getattr(args, "http_port", None),
        },
    }
    return load_config(args.config, overrides=overrides)


def _cmd_serve(args: argparse.Namespace) -> int:
    from callcenter.app import serve

    config = _config_from_args(args)
    return asyncio.run(serve(config))


def _cmd_flows_check(args: argparse.Namespace) -> int:
    from ivr_flows import check_files

    return check_files(args.files)


def _cmd_flows_prompts(args: argparse.Namespace) -> int:
    """Print every prompt the service plays as ``id<TAB>text`` (what a recording must say)."""
    import ivr_flows
    from callcenter.app import FlowRegistry, PromptConflictError, flow_ids, service_prompt_specs
    from callcenter.bot import FaqRegistry
    from faq.loader import FaqError

    config = _config_from_args(args)
    registry = FlowRegistry(Path(config.flows.directory), flow_ids(config))
    try:
        flows, _ = registry.load_all()
        bot, _ = FaqRegistry.from_setting(config.faq.file).load()
        specs = service_prompt_specs(config, flows.values(), registry.directory, bot)
    except (ivr_flows.FlowError, FaqError, PromptConflictError) as exc:
        print(exc, file=sys.stderr)
        return 1
    for prompt_id, text, _ in specs:
        print(f"{prompt_id}\t{' '.join((text or '').split())}")
    return 0


def _cmd_db(args: argparse.Namespace) -> int:
    """``db status``: the database's and the code's Alembic revisions; ``db upgrade``: migrate."""
    from sqlalchemy.exc import SQLAlchemyError

    from callcenter.store import db

    config = _config_from_args(args)
    engine = db.make_engine(config.db_url)
    try:
        if args.db_command == "upgrade":
            db.upgrade_schema(engine)
        current = db.current_revision(engine)
    except SQLAlchemyError as exc:
        print(f"database {db.safe_url(config.db_url)}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    head = db.head_revision()
    print(f"database {current or 'empty'}, code {head}")
    return 0 if current == head else 1


def _cmd_calls_show(args: argparse.Namespace) -> int:
    from callcenter.store.trail import show_call

    config = _config_from_args(args)
    call = asyncio.run(show_call(config.db_url, args.sip_call_id))
    if call is None:
        print(f"no call with SIP Call-ID {args.sip_call_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(call, indent=2, ensure_ascii=False, default=str))
    return 0


def _cmd_calls_list(args: argparse.Namespace) -> int:
    from callcenter.store.trail import show_calls

    config = _config_from_args(args)
    calls = asyncio.run(show_calls(config.db_url, args.limit))
    print(json.dumps(calls, indent=2, ensure_ascii=False, default=str))
    return 0


def _cmd_api_token(args: argparse.Namespace) -> int:
    import re
    import secrets

    from callcenter.store.agents import hash_token

    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.name):
        print("the name must be 1-64 letters, digits, '_', '.' or '-'", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(32)
    digest = hash_token(token)
    print(f"token (give it to the client, it is not stored): {token}")
    print("add to the configuration:")
    print("[http.api_tokens]")
    print(f'"{args.name}" = "{digest}"')
    return 0


def common_options() -> argparse.ArgumentParser:
    """The ``--data-dir`` and ``--config`` options every command that opens the store takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        default=None,
        help="data folder: store, caches, recordings (env CALLCENTER_DATA_DIR, default ./var)",
    )
    common.add_argument("--config", default=None, help="TOML configuration file")
    return common


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser."""
    common = common_options()

    parser = argparse.ArgumentParser(prog="callcenter", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="answer the line (SIP + HTTP)")
    serve.add_argument("--sip-host", default=None, help="SIP bind address (default 127.0.0.1)")
    serve.add_argument("--sip-port", type=int, default=None, help="SIP port (default 5060)")
    serve.add_argument("--http-host", default=None, help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--http-port", type=int, default=None, help="HTTP port (default 8080)")
    serve.set_defaults(func=_cmd_serve)

    flows = sub.add_parser("flows", help="IVR flow files")
    flows_sub = flows.add_subparsers(dest="flows_command", required=True)
    check = flows_sub.add_parser("check", help="validate flow files (exit 1 on errors)")
    check.add_argument("files", nargs="+")
    check.set_defaults(func=_cmd_flows_check)
    prompts = flows_sub.add_parser(
        "prompts",
        parents=[common],
        help="list every prompt the service plays (id<TAB>text), e.g. to record them",
    )
    prompts.set_defaults(func=_cmd_flows_prompts)

    database = sub.add_parser("db", help="the store's schema (Alembic)")
    db_sub = database.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser(
        "status", parents=[common], help="database and code revisions (exit 1 if behind)"
    ).set_defaults(func=_cmd_db)
    db_sub.add_parser(
        "upgrade", parents=[common], help="migrate the database to the code's revision"
    ).set_defaults(func=_cmd_db)

    token = sub.add_parser(
        "api-token", help="make a bearer token for a client of the dossier API (prints its hash)"
    )
    token.add_argument("name", help="client name, the actor in the audit log")
    token.set_defaults(func=_cmd_api_token)

    sub.add_parser("faq", help="FAQ knowledge base: check, ask, classify, eval (see --help)")
    sub.add_parser("models", help="speech models: install whisper-base | vosk-fr-small")
    sub.add_parser(
        "dossiers", help="dossiers: import FILE..., duplicates, merge, demo, list (see --help)"
    )
    sub.add_parser("agents", help="agents: add, list, set-skills, token, disable, enable")
    sub.add_parser("callbacks", help="callbacks callers asked for: list, cancel (see --help)")
    sub.add_parser("plan", help="staffing: erlang (Erlang C/A), simulate (days, 4 policies)")
    calls = sub.add_parser("calls", help="the call event trail")
    calls_sub = calls.add_subparsers(dest="calls_command", required=True)
    show = calls_sub.add_parser(
        "show", parents=[common], help="print one call's event trail as JSON"
    )
    show.add_argument("sip_call_id")
    show.set_defaults(func=_cmd_calls_show)
    lst = calls_sub.add_parser("list", parents=[common], help="print the newest calls as JSON")
    lst.add_argument("--limit", type=int, default=20)
    lst.set_defaults(func=_cmd_calls_list)
    return parser


_DELEGATED = ("faq", "models", "dossiers", "agents", "callbacks", "plan")
"""Sub-commands with a command line of their own (their arguments are passed on as they are)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``callcenter`` command."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in _DELEGATED:
        if args_list[0] == "faq":
            from faq.cli import main as faq_main

            return faq_main(args_list[1:], prog="callcenter faq")
        if args_list[0] == "agents":
            from callcenter.agents_cli import agents_main

            return agents_main(args_list[1:], prog="callcenter agents")
        if args_list[0] == "callbacks":
            from callcenter.callbacks_cli import callbacks_main

            return callbacks_main(args_list[1:], prog="callcenter callbacks")
        if args_list[0] == "plan":
            from callcenter.plan_cli import plan_main

            return plan_main(args_list[1:], prog="callcenter plan")
        if args_list[0] == "dossiers":
            from callcenter.dossiers_cli import dossiers_main

            return dossiers_main(args_list[1:], prog="callcenter dossiers")
        from callcenter.media.asr.models import models_main

        return models_main(args_list[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
