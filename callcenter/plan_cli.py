"""``callcenter plan``: Erlang C / Erlang A staffing, and a simulation of days or weeks (issue 7).

- ``erlang --calls-per-hour N --aht S [--target-sl 0.8] [--target-seconds 20] [--patience S]
  [--shrinkage 0.3] [--max-occupancy R] [--max-abandon R] [--json]``: a table of service
  level, average speed of answer, occupancy (and abandonment, with ``--patience``) per number
  of agents, and the smallest staffing meeting the target, on the phones and scheduled
  (:mod:`routing.staffing`).
- ``simulate [--days 5] [--seed 1] [--calls-per-year N] [--agents N] [--bot-containment R]
  [--bot-seconds S] [--png FILE] [--json]``: the seed's volumes over working days through the
  real router (:func:`routing.simulation.compare_period_policies`), four policies — without
  the bot and callbacks, with callbacks, with the bot, with both — as a table and a PNG.

Tables are in French (they go into reports). Bad arguments exit 2 with a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from routing.queue_config import (
    RoutingConfig,
    RoutingConfigError,
    default_routing_config_path,
    load_routing_config,
)
from routing.simulation import (
    PeriodResult,
    PeriodScenario,
    compare_period_policies,
    period_scenario,
    scaled_teams,
)
from routing.staffing import (
    QueueFigures,
    StaffingTarget,
    erlang_a_figures,
    erlang_c_figures,
    required_agents,
    scheduled_agents,
)

POLICY_LABELS = {
    "baseline": "sans bot ni rappel",
    "callbacks": "rappels",
    "bot": "bot",
    "bot+callbacks": "bot + rappels",
}
"""French names of the policies in tables and plots."""


def _positive(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"doit être > 0 (reçu {text!r})")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"doit être >= 0 (reçu {text!r})")
    return value


def _ratio(text: str) -> float:
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"doit être entre 0 et 1 exclus (reçu {text!r})")
    return value


def _share(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"doit être dans [0, 1[ (reçu {text!r})")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"nombre entier attendu (reçu {text!r})") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"doit être >= 1 (reçu {text!r})")
    return value


def _number(text: str) -> float:
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        raise argparse.ArgumentTypeError(f"nombre attendu (reçu {text!r})") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"nombre fini attendu (reçu {text!r})")
    return value


def build_parser(prog: str = "callcenter plan") -> argparse.ArgumentParser:
    """Return the parser of ``callcenter plan``."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Dimensionnement (Erlang C / Erlang A) et simulation du plateau."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    erlang = sub.add_parser("erlang", help="effectif nécessaire par Erlang C et Erlang A")
    erlang.add_argument("--calls-per-hour", type=_non_negative, required=True, help="appels/h")
    erlang.add_argument(
        "--aht", type=_positive, required=True, help="durée moyenne de traitement (s)"
    )
    erlang.add_argument("--target-sl", type=_ratio, default=0.8, help="niveau de service visé")
    erlang.add_argument(
        "--target-seconds", type=_non_negative, default=20.0, help="seuil du niveau de service (s)"
    )
    erlang.add_argument(
        "--patience", type=_positive, default=None, help="patience moyenne (s) : Erlang A"
    )
    erlang.add_argument("--shrinkage", type=_share, default=0.0, help="absentéisme, [0, 1[")
    erlang.add_argument("--max-occupancy", type=_ratio, default=None, help="occupation maximale")
    erlang.add_argument(
        "--max-abandon", type=_ratio, default=None, help="taux d'abandon maximal (Erlang A)"
    )
    erlang.add_argument("--rows", type=_count, default=8, help="lignes du tableau (défaut 8)")
    erlang.add_argument("--json", action="store_true", help="une sortie JSON")

    simulate = sub.add_parser("simulate", help="simuler des jours ouvrés, 4 politiques")
    simulate.add_argument("--days", type=_count, default=5, help="jours ouvrés (défaut 5)")
    simulate.add_argument("--seed", type=int, default=1, help="graine (défaut 1)")
    simulate.add_argument(
        "--calls-per-year", type=_positive, default=None, help="appels par an (défaut 100 000)"
    )
    simulate.add_argument(
        "--agents", type=_count, default=None, help="agents connectés (défaut : équipe de 14)"
    )
    simulate.add_argument(
        "--bot-containment",
        type=_share,
        default=None,
        help="part des appels terminés par le bot, toutes files sauf urgence (défaut : par file)",
    )
    simulate.add_argument(
        "--bot-seconds", type=_non_negative, default=None, help="temps avec le bot (défaut 45 s)"
    )
    simulate.add_argument(
        "--target-sl", type=_ratio, default=0.8, help="niveau de service visé (Erlang C)"
    )
    simulate.add_argument("--target-seconds", type=_non_negative, default=60.0)
    simulate.add_argument("--config", type=Path, default=None, help="routage (YAML)")
    simulate.add_argument("--png", type=Path, default=None, help="écrire un graphique PNG")
    simulate.add_argument("--json", action="store_true", help="une sortie JSON")
    return parser


# -- erlang ---------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def _secs(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.0f} s"


def _figures_json(figures: QueueFigures | None) -> dict[str, Any] | None:
    if figures is None:
        return None
    out = dataclasses.asdict(figures)
    for key, value in out.items():
        if isinstance(value, float):
            out[key] = round(value, 4) if math.isfinite(value) else None
    return out


def _cmd_erlang(args: argparse.Namespace) -> int:
    target = StaffingTarget(
        service_level=args.target_sl,
        target_s=args.target_seconds,
        max_occupancy=args.max_occupancy,
        max_abandon=args.max_abandon,
    )
    if args.max_abandon is not None and args.patience is None:
        raise ValueError("--max-abandon demande --patience (l'abandon vient d'Erlang A)")
    try:
        c_best = required_agents(
            args.calls_per_hour, args.aht, dataclasses.replace(target, max_abandon=None)
        )
        a_best = (
            None
            if args.patience is None
            else required_agents(args.calls_per_hour, args.aht, target, patience_s=args.patience)
        )
    except ValueError:
        raise ValueError(
            "aucun effectif raisonnable n'atteint l'objectif : vérifiez la charge et la cible"
        ) from None
    best = [c_best.agents, *([a_best.agents] if a_best else [])]
    low = max(1, min(best) - 2)
    rows = []
    # Both recommendations and two rows beyond the larger are in the table.
    for n in range(low, low + max(args.rows, max(best) - low + 3)):
        rows.append(
            (
                erlang_c_figures(n, args.calls_per_hour, args.aht, args.target_seconds),
                None
                if args.patience is None
                else erlang_a_figures(
                    n, args.calls_per_hour, args.aht, args.target_seconds, args.patience
                ),
            )
        )
    c_scheduled = scheduled_agents(c_best.agents, args.shrinkage)
    recommended = {
        "erlang_c": {"on_phones": c_best.agents, "scheduled": c_scheduled},
        "erlang_a": None
        if a_best is None
        else {
            "on_phones": a_best.agents,
            "scheduled": scheduled_agents(a_best.agents, args.shrinkage),
        },
    }
    if args.json:
        print(
            json.dumps(
                {
                    "calls_per_hour": args.calls_per_hour,
                    "aht_s": args.aht,
                    "load_erlangs": round(c_best.load, 4),
                    "target": dataclasses.asdict(target),
                    "patience_s": args.patience,
                    "shrinkage": args.shrinkage,
                    "recommended": recommended,
                    "table": [
                        {
                            "agents": c.agents,
                            "erlang_c": _figures_json(c),
                            "erlang_a": _figures_json(a),
                        }
                        for c, a in rows
                    ],
                },
                ensure_ascii=False,
            )
        )
        return 0
    seconds = f"{args.target_seconds:g} s"
    print(
        f"Charge : {args.calls_per_hour:g} appels/h × {args.aht:g} s = {c_best.load:.2f} Erlangs"
        f" ; objectif : {_pct(args.target_sl)} en {seconds}"
    )
    head = ["Agents", "Occupation (C)", "Attente (C)", f"NS {seconds} (C)", "ASA (C)"]
    if args.patience is not None:
        head += ["Attente (A)", f"NS {seconds} (A)", "ASA (A)", "Abandons (A)"]
    table = []
    for c, a in rows:
        line = [str(c.agents), _pct(c.occupancy), _pct(c.p_wait), _pct(c.service_level)]
        line.append(_secs(c.asa_s))
        if a is not None:
            line += [_pct(a.p_wait), _pct(a.service_level), _secs(a.asa_s), _pct(a.p_abandon)]
        table.append(line)
    _print_table(head, table)
    shrink = f" (absentéisme {_pct(args.shrinkage)})"
    print(
        f"Effectif recommandé, Erlang C : {c_best.agents} au téléphone,"
        f" {c_scheduled} planifiés{shrink}"
    )
    if a_best is not None:
        print(
            f"Effectif recommandé, Erlang A (patience {args.patience:g} s) : {a_best.agents}"
            f" au téléphone, {scheduled_agents(a_best.agents, args.shrinkage)} planifiés{shrink}"
        )
    return 0


def _print_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    for line in (head, *rows):
        # The first column (a name or a number of agents) on the left, figures on the right.
        cells = [line[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)]
        print("  ".join(cells).rstrip())


# -- simulate -------------------------------------------------------------------------------------


def _period(args: argparse.Namespace) -> PeriodScenario:
    period = PeriodScenario(days=args.days)
    base = period.base
    if args.config is not None:
        base = dataclasses.replace(base, config_path=args.config)
    if args.agents is not None:
        base = dataclasses.replace(base, teams=scaled_teams(base.teams, args.agents))
    changes: dict[str, Any] = {"base": base}
    if args.calls_per_year is not None:
        changes["calls_per_year"] = args.calls_per_year
    if args.bot_seconds is not None:
        changes["bot_s"] = args.bot_seconds
    if args.bot_containment is not None:
        changes["bot_containment"] = tuple(
            (queue, 0.0 if queue == "urgence_sociale" else args.bot_containment)
            for queue, _ in period.bot_containment
        )
    return dataclasses.replace(period, **changes)


def _cmd_simulate(args: argparse.Namespace) -> int:
    period = _period(args)
    config = load_routing_config(period.base.config_path or default_routing_config_path())
    scenario = period_scenario(period, config)
    results = compare_period_policies(period, seed=args.seed, config=config)
    target = StaffingTarget(args.target_sl, args.target_seconds)
    peak = scenario.peak_calls_per_hour
    staffing = {
        "without_bot": peak_staffing(period, config, peak, target, bot=False),
        "with_bot": peak_staffing(period, config, peak, target, bot=True),
    }
    summaries = [r.summary() for r in results]
    if args.png is not None:
        write_png(args.png, results, title=_title(period, scenario.agent_count), tz=config.timezone)
    if args.json:
        print(
            json.dumps(
                {
                    "days": period.days,
                    "first_day": period.first_day.isoformat(),
                    "seed": args.seed,
                    "calls_per_year": period.calls_per_year,
                    "agents": scenario.agent_count,
                    "bot_s": period.bot_s,
                    "bot_containment": dict(period.bot_containment),
                    "peak_half_hour_calls_per_hour": round(peak, 1),
                    "peak_staffing": staffing,
                    "policies": summaries,
                    "png": None if args.png is None else str(args.png),
                },
                ensure_ascii=False,
            )
        )
        return 0
    print(_title(period, scenario.agent_count) + f", graine {args.seed}")
    head = [
        "Politique",
        "Appels",
        "Bot",
        "Offerts",
        "Traités",
        "Répondus",
        "Abandons",
        "Perdus",
        "NS 20 s",
        "NS 60 s",
        "ASA",
        "Attente p90",
        "Rappels dem./faits/échoués",
        "Occupation",
    ]
    rows = []
    for s in summaries:
        rows.append(
            [
                POLICY_LABELS.get(s["policy"], s["policy"]),
                str(s["calls"]),
                str(s["bot_ended"]),
                str(s["offered"]),
                _pct(s["served_rate"]),
                _pct(s["answered_rate"]),
                _pct(s["abandoned_rate"]),
                f"{s['lost']} ({_pct(s['lost_rate'])})",
                _pct(s["service_level_20s"]),
                _pct(s["service_level_60s"]),
                _secs(s["asa_s"]),
                _secs(s["wait_p90_s"]),
                f"{s['callbacks_requested']}/{s['callbacks_completed']}/{s['callbacks_failed']}",
                _pct(s["occupancy"]),
            ]
        )
    _print_table(head, rows)
    target_text = f"{_pct(args.target_sl)} en {args.target_seconds:g} s"
    for key, label in (("without_bot", "sans bot"), ("with_bot", "avec bot")):
        st = staffing[key]
        print(
            f"Demi-heure de pointe {label} : {st['calls_per_hour']:g} appels/h vers les files,"
            f" DMT {st['aht_s']:g} s → {st['erlang_c']} agents (Erlang C), {st['erlang_a']}"
            f" (Erlang A) pour {target_text} ; équipe simulée : {scenario.agent_count}"
        )
    print(
        "Traités (par un conseiller, le bot ou un rappel), répondus (par un conseiller) et "
        "perdus : part des appels reçus ; abandons : part des appels offerts aux files (hors "
        "abandons de moins de 5 s) ; NS : part des appels offerts, rappels comptés hors délai."
    )
    if args.png is not None:
        print(f"Graphique : {args.png}")
    return 0


def peak_staffing(
    period: PeriodScenario,
    config: RoutingConfig,
    rate: float,
    target: StaffingTarget,
    *,
    bot: bool,
) -> dict[str, Any]:
    """Erlang C / Erlang A staffing of one arrival rate with the period's mix, for comparison.

    The handle time is the mix-weighted mean of talk time plus the queue's wrap-up time; with
    the bot, the contained share is taken off the rate and the mix. Erlang A uses the mean
    patience of the period (exponential instead of the simulation's lognormal).

    Args:
        period: The period (mix, talk times, patience, bot containment).
        config: Routing configuration (wrap-up times).
        rate: Calls per hour to the line (before the bot).
        target: Service-level target.
        bot: Take the bot's containment off.

    Returns:
        ``{"calls_per_hour", "aht_s", "erlang_c", "erlang_a"}`` (agents on the phones).
    """
    base = period.base
    talk = dict(base.talk_mean_s)
    containment = dict(period.bot_containment) if bot else {}
    weights = {q: w * (1.0 - containment.get(q, 0.0)) for q, w in base.mix}
    total = sum(weights.values())
    aht = (
        sum(w * (talk.get(q, 300.0) + config.queues[q].wrap_up_s) for q, w in weights.items())
        / total
    )
    calls = rate * total / sum(w for _, w in base.mix)
    c = required_agents(calls, aht, target)
    a = required_agents(calls, aht, target, patience_s=base.patience_mean_s)
    return {
        "calls_per_hour": round(calls, 1),
        "aht_s": round(aht, 1),
        "erlang_c": c.agents,
        "erlang_a": a.agents,
    }


def _title(period: PeriodScenario, agents: int) -> str:
    calls = f"{period.calls_per_year:,.0f}".replace(",", " ")
    return (
        f"{period.days} {'jour ouvré' if period.days == 1 else 'jours ouvrés'} à partir du"
        f" {period.first_day.strftime('%d/%m/%Y')},"
        f" {calls} appels/an, {agents} agents"
    )


_DAYS = ("lun", "mar", "mer", "jeu", "ven", "sam", "dim")


def write_png(path: Path, results: Sequence[PeriodResult], *, title: str, tz: ZoneInfo) -> None:
    """Plot calls, lost calls and service level per hour for each policy.

    Args:
        path: PNG file to write.
        results: One period result per policy (same callers).
        title: Figure title.
        tz: Timezone of the hour labels.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = results[0]
    stamps = [dt.datetime.fromtimestamp(h.start, tz) for h in first.hours]
    labels = [f"{_DAYS[t.weekday()]} {t.hour:02d}h" for t in stamps]
    x = list(range(len(first.hours)))
    fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    axes[0].bar(x, [h.calls for h in first.hours], color="#c8d6e5", label="appels reçus")
    for result in results:
        if result.policy.bot:
            axes[0].plot(
                x,
                [h.reached_queue for h in result.hours],
                color="#10ac84",
                label="vers les conseillers (avec bot)",
            )
            break
    axes[0].set_ylabel("appels / heure")
    axes[0].legend(loc="upper right")
    for result in results:
        label = POLICY_LABELS.get(result.policy.name, result.policy.name)
        axes[1].plot(x, [h.lost for h in result.hours], marker=".", label=label)
        axes[2].plot(
            x,
            [
                100.0 * h.answered_60s / h.reached_queue if h.reached_queue else math.nan
                for h in result.hours
            ],
            marker=".",
            label=label,
        )
    axes[1].set_ylabel("appels perdus / heure")
    axes[1].legend(loc="upper right")
    axes[2].set_ylabel("répondus en 60 s (%)")
    axes[2].set_ylim(0, 105)
    step = max(1, len(x) // 20)
    axes[2].set_xticks(x[::step], labels[::step], rotation=45, ha="right")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plan_main(argv: Sequence[str], prog: str = "callcenter plan") -> int:
    """Entry point of ``callcenter plan``; 0 on success, 2 on bad arguments."""
    parser = build_parser(prog)
    args = parser.parse_args(list(argv))
    try:
        if args.command == "erlang":
            return _cmd_erlang(args)
        return _cmd_simulate(args)
    except RoutingConfigError as exc:
        print(f"erreur de configuration du routage : {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"erreur de fichier : {exc.filename} : {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"erreur : {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(plan_main(sys.argv[1:]))
