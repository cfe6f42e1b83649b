"""Rendering of a replay: rich table on stdout, JSON report, PNG plot; ``main`` for the CLI."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from streams.evaluation.replay import DEFAULT_KAFKA_MAX_LAG, DEFAULT_MAX_ATTEMPTS, ReplayReport, run_replay

if TYPE_CHECKING:
    from streams.evaluation.kafka_replay import KafkaComparison


def render_table(report: ReplayReport, console: Console | None = None) -> None:
    console = console or Console()
    t = Table(
        title=f"replay: {report.dataset} ({report.tasks} tasks, {report.models} models, "
        f"{report.seeds} seeds, up to {report.max_attempts} attempts)"
    )
    t.add_column("policy")
    t.add_column("success", justify="right")
    t.add_column("cost / task (USD)", justify="right")
    t.add_column("vs best", justify="right")
    knob = f"quality target {report.quality_target:g}" if report.quality_target is not None else f"beta={report.beta:g}"
    noise = f", label noise {report.label_noise:g}" if report.label_noise else ""
    t.add_row(
        f"learned ({report.exploration}, {knob}{noise})",
        f"{report.success_rate:.3f} ± {report.success_std:.3f}",
        f"{report.cost_per_task:.4g} ± {report.cost_std:.2g}",
        f"success x{report.success_vs_best:.3f}, cost x{report.cost_vs_best:.3f}",
    )
    t.add_row(
        f"best single: {report.best_model}", f"{report.best_success_rate:.3f}", f"{report.best_cost_per_task:.4g}", ""
    )
    t.add_row(
        f"cheapest: {report.cheapest_model}",
        f"{report.cheapest_success_rate:.3f}",
        f"{report.cheapest_cost_per_task:.4g}",
        "",
    )
    t.add_row(
        "oracle (cheapest successful per task)",
        f"{report.oracle_success_rate:.3f}",
        f"{report.oracle_cost_per_task:.4g}",
        "",
    )
    for label, row in _ceiling_rows(report):
        t.add_row(label, f"{row['success_rate']:.3f}", f"{row['cost_per_task']:.4g}", _vs_best(report, row))
    console.print(t)
    name = "quality target" if report.quality_target is not None else "beta"
    curve = Table(title=f"cost-quality curve (knob = {name})   AIQ {report.aiq:.3f}   APGR {report.apgr:.3f}")
    curve.add_column(name, justify="right")
    curve.add_column("success", justify="right")
    curve.add_column("cost / task", justify="right")
    curve.add_column("vs best", justify="right")
    for p in report.curve:
        vs = (f"x{p['success_rate'] / report.best_success_rate:.3f} at x{p['cost_per_task'] / report.best_cost_per_task:.3f}"
              if report.best_success_rate and report.best_cost_per_task else "")
        curve.add_row(f"{p['knob']:.4g}", f"{p['success_rate']:.3f}", f"{p['cost_per_task']:.4g}", vs)
    console.print(curve)
    verdict = "meets" if report.meets_target else "misses"
    console.print(
        f"target (>= best success at <= 25% of its cost): {verdict}; "
        f"attempts per task {report.attempts_per_task:.2f}; "
        f"final regret {report.regret[-1]['regret'] if report.regret else 0:.2f}"
    )


def _vs_best(report: ReplayReport, row: dict[str, Any]) -> str:
    if not (report.best_success_rate and report.best_cost_per_task):
        return ""
    return (f"success x{row['success_rate'] / report.best_success_rate:.3f}, "
            f"cost x{row['cost_per_task'] / report.best_cost_per_task:.3f}")


def _ceiling_rows(report: ReplayReport) -> list[tuple[str, dict[str, Any]]]:
    """Table rows of ``replay --ceilings`` (none without it)."""
    c = report.ceilings
    if not c:
        return []
    full = c["full_information"]
    rows = [(f"ceiling: same learner, full information (APGR {full['apgr']:.3f})", full)]
    for key, where in (("static_order_at_replay_cost", "at the learned cost"),
                       ("static_order_at_best_cost", "at the best model's cost")):
        o = c.get(key)
        if o:
            names = " > ".join(m if len(m) <= 24 else m[:23] + "…" for m in o["models"])
            rows.append((f"ceiling: best fixed order in hindsight {where}: {names}", o))
    return rows


def render_comparison(cmp: KafkaComparison, console: Console | None = None) -> None:
    """Through Kafka next to in-process, same seeds and task orders, plus how the transport went."""
    console = console or Console()
    k, p, st = cmp.kafka, cmp.in_process, cmp.stats
    t = Table(title=f"through Kafka vs in-process ({k.seeds} seeds, same task orders)")
    t.add_column("replay")
    for col in ("success", "cost / task (USD)", "success vs best", "cost vs best", "attempts / task"):
        t.add_column(col, justify="right")
    for name, r in ((f"through Kafka (max lag {st.max_lag})", k), ("in-process", p)):
        t.add_row(name, f"{r.success_rate:.3f}", f"{r.cost_per_task:.4g}", f"x{r.success_vs_best:.3f}",
                  f"x{r.cost_vs_best:.3f}", f"{r.attempts_per_task:.2f}")
    console.print(t)
    console.print(
        f"broker {st.bootstrap_servers} ({'embedded' if st.embedded else 'external'}): "
        f"{st.decisions} decisions, {st.outcomes_learned} outcomes learned by the learner agent, "
        f"{st.policy_swaps} policy swaps; {st.waits} waits ({st.wait_s:.1f}s), {st.timeouts} timeouts; "
        f"policy lag at decision mean {st.mean_lag:.2f} / max {st.max_seen_lag} outcomes; "
        f"start-up {st.startup_s:.1f}s, wall {st.wall_s:.1f}s"
    )


def write_json(report: ReplayReport | KafkaComparison, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(report.to_dict(), indent=2))
    return p


def write_plot(report: ReplayReport, out_dir: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers and CI
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5))
    xs = [m["cost_per_task"] for m in report.single_models]
    ys = [m["success_rate"] for m in report.single_models]
    ax1.scatter(xs, ys, c="grey", s=18, label="single models")
    pts = sorted((p["cost_per_task"], p["success_rate"]) for p in report.curve)
    ax1.plot([c for c, _ in pts], [s for _, s in pts], "o-", c="tab:blue", label="learned router (beta sweep)")
    ax1.errorbar(
        [report.cost_per_task],
        [report.success_rate],
        xerr=[report.cost_std],
        yerr=[report.success_std],
        fmt="*",
        c="tab:red",
        ms=12,
        label="default",
    )
    ax1.scatter([report.oracle_cost_per_task], [report.oracle_success_rate], marker="^", c="tab:green", label="oracle")
    ax1.axvline(0.25 * report.best_cost_per_task, ls=":", c="tab:orange", label="25% of best cost")
    ax1.axhline(report.best_success_rate, ls=":", c="tab:purple", label=f"best: {report.best_model}")
    ax1.set_xscale("log")
    ax1.set_xlabel("cost per task (USD)")
    ax1.set_ylabel("success rate")
    ax1.set_title(f"{report.dataset}: AIQ {report.aiq:.3f}, APGR {report.apgr:.3f}")
    ax1.legend(fontsize=7)
    ax2.plot([r["task"] for r in report.regret], [r["regret"] for r in report.regret], c="tab:blue")
    ax2.set_xlabel("tasks seen")
    ax2.set_ylabel("cumulative regret vs per-task oracle (reward units)")
    ax2.set_title("regret over time")
    fig.tight_layout()
    path = out / f"replay_{report.dataset}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(
    dataset: str | Path,
    config: str | Path | None = None,
    seeds: int = 5,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    report: str | Path | None = None,
    plot: str | Path | None = None,
    knobs: Sequence[float] | None = None,
    console: Console | None = None,
    through_kafka: bool = False,
    kafka_max_lag: int = DEFAULT_KAFKA_MAX_LAG,
    quality_target: float | None = None,
    label_noise: float = 0.0,
    ceilings: bool = False,
) -> ReplayReport:
    """What ``weave-router replay`` runs: replay, print the table, write JSON and PNG if asked.

    ``through_kafka``: the learning goes through the real topics and learner agent
    (``streams.evaluation.kafka_replay``), default beta only; the in-process replay of the same
    seeds is shown next to it and included in the JSON report (``in_process``).
    """
    console = console or Console()
    comparison: KafkaComparison | None = None
    if through_kafka:
        from streams.evaluation.kafka_replay import run_kafka_replay

        comparison = run_kafka_replay(dataset, seeds=seeds, max_attempts=max_attempts, config=config,
                                      max_lag=kafka_max_lag, quality_target=quality_target)
        result = comparison.kafka
    else:
        result = run_replay(dataset, seeds=seeds, max_attempts=max_attempts, config=config, knob_values=knobs,
                            quality_target=quality_target, label_noise=label_noise, ceilings=ceilings)
    render_table(result, console)
    if comparison is not None:
        render_comparison(comparison, console)
    if report:
        console.print(f"report: {write_json(comparison or result, report)}")
    if plot:
        console.print(f"plot: {write_plot(result, plot)}")
    return result


def _cli(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m streams.evaluation.report", description="replay the router")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--config")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS)
    ap.add_argument("--report")
    ap.add_argument("--plot")
    ap.add_argument("--through-kafka", action="store_true", help="learn through the real topics and learner agent")
    ap.add_argument("--quality-target", type=float, default=None)
    ap.add_argument("--label-noise", type=float, default=0.0)
    ap.add_argument("--ceilings", action="store_true", help="add the full-information and hindsight ceilings")
    ap.add_argument("--kafka-max-lag", type=int, default=DEFAULT_KAFKA_MAX_LAG,
                    help="outcomes the gateway's policy may be behind before a decision waits (0: strict)")
    a = ap.parse_args(argv)
    main(a.dataset, a.config, a.seeds, a.max_attempts, a.report, a.plot,
         through_kafka=a.through_kafka, kafka_max_lag=a.kafka_max_lag, quality_target=a.quality_target,
         label_noise=a.label_noise, ceilings=a.ceilings)
    return 0


if __name__ == "__main__":
    raise SystemExit(_cli())
