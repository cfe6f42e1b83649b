"""``weave-router evaluate``: what would a candidate routing policy have earned on the logged decisions?

Logged decisions carry the served arm's propensity under the policy that served it, so the candidate
can be scored off-policy (``streams.evaluation.ope``: IPS, SNIPS, doubly robust, with 95% CIs) without
serving it. Records come from a JSONL file or from ClickHouse:

- JSONL, one decision a line: ``arm`` (or ``model``), ``propensity``, ``reward`` (or ``success`` and
  ``cost_usd``, turned into ``alpha * success - beta * cost_usd``), optional ``context`` (the bandit's
  numeric context) and ``features`` (``Features.to_dict()``: what routes and rules match on).
- ClickHouse: routed decisions in the window (explicit/passthrough ones are not the policy's) joined to
  their session's latest outcome by ``session_id`` (decisions without an outcome are left out); cost =
  the decision's traces' cost (by ``decision_id``); reward weights from the main config.

The candidate's probability of each arm for a logged record: the route its features select, then the
route's pattern; deterministic patterns give probability 1 to their choice, the bandit pattern is
sampled (``draws`` times, through the serving rule: sigma guarding the task's prior tier) from the
candidate's bandit: a prior-only one built from its settings, or a learned ``policy`` snapshot. Sessions are not replayed:
stickiness and cascade rungs (state of a session) are not reconstructed, each record is scored alone.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from streams.config import ConfigError, Settings
from streams.evaluation.ope import Z95, Estimate, LoggedDecision, doubly_robust, ips, snips
from streams.routing.bandit.base import BanditLike
from streams.routing.catalog import Catalog
from streams.routing.features import Features
from streams.routing.patterns import BanditPattern, PolicyContext
from streams.routing.routes import compile_routes, select_route

NOT_ROUTED = ("explicit", "passthrough", "fallback", "override")
_FEATURE_FIELDS = {f.name for f in fields(Features)}


@dataclass(slots=True)
class Record:
    """One logged decision with what the candidate needs to score it."""

    arm: str
    propensity: float
    reward: float
    context: dict[str, float] = field(default_factory=dict)
    features: dict[str, Any] | None = None


# --- loading ---------------------------------------------------------------------------------------


def _reward(row: Mapping[str, Any], alpha: float, beta: float) -> float:
    if row.get("reward") is not None:
        return float(row["reward"])
    if row.get("success") is None:
        raise ValueError("a record needs reward, or success (and cost_usd)")
    return alpha * float(row["success"]) - beta * float(row.get("cost_usd") or 0.0)


def _record(row: Mapping[str, Any], alpha: float, beta: float) -> Record:
    arm = row.get("arm") or row.get("model")
    if not arm:
        raise ValueError("a record needs arm (or model)")
    p = float(row["propensity"])
    if not 0.0 < p <= 1.0:
        raise ValueError(f"propensity must be in (0, 1], got {p}")
    features = row.get("features")
    if isinstance(features, str):
        features = json.loads(features) if features.strip() else None
    context = {str(k): float(v) for k, v in (row.get("context") or {}).items()}
    return Record(str(arm), p, _reward(row, alpha, beta), context, dict(features) if features else None)


def load_jsonl(path: str | Path, alpha: float = 1.0, beta: float = 1.0) -> list[Record]:
    out = []
    with Path(path).open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(_record(json.loads(line), alpha, beta))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{n}: {exc}") from None
    return out


def logged_rows(client: Any, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Routed decisions in ``[since, until)`` with their session's latest outcome and their traces' cost."""
    from streams.analytics.queries.sql import BEFORE, WINDOW, query_rows, window_params

    sql = (
        "WITH so AS (SELECT session_id, argMax(success, (ts, event_id)) AS success FROM outcomes FINAL "
        f"WHERE {BEFORE} GROUP BY session_id), "
        f"tc AS (SELECT decision_id, sum(cost_usd) AS cost_usd FROM traces FINAL WHERE {BEFORE} GROUP BY decision_id) "
        "SELECT d.event_id AS decision_id, d.model AS arm, d.propensity AS propensity, d.context AS context, "
        "d.features AS features, so.success AS success, tc.cost_usd AS cost_usd "
        f"FROM (SELECT * FROM decisions FINAL WHERE {WINDOW} AND NOT has({{skip:Array(String)}}, policy) "
        "AND propensity > 0) AS d "
        "INNER JOIN so ON so.session_id = d.session_id "
        "LEFT JOIN tc ON tc.decision_id = d.event_id ORDER BY d.ts, d.event_id"
    )
    return query_rows(client, sql, window_params(since, until, skip=list(NOT_ROUTED)))


def load_clickhouse(client: Any, since: datetime, until: datetime, alpha: float, beta: float) -> list[Record]:
    return [_record(r, alpha, beta) for r in logged_rows(client, since, until)]


# --- the candidate's action probabilities --------------------------------------------------------


def _features(fd: Mapping[str, Any] | None) -> Features:
    f = Features()
    for k, v in (fd or {}).items():
        if k in _FEATURE_FIELDS and v is not None:
            try:
                setattr(f, k, v)
            except (TypeError, ValueError):
                continue
    return f


class CandidateModel:
    """The candidate policy as P(arm | logged record)."""

    def __init__(self, settings: Settings, bandit: BanditLike | None = None, *, draws: int = 32, seed: int = 0) -> None:
        from streams.routing.bandit import bandit_for

        default = settings.frontier_default()
        if default is None:
            raise ConfigError("candidate: no models configured")
        self.settings = settings
        self.catalog = Catalog(settings)
        self.routes = compile_routes(settings.routing.routes, self.catalog)
        self.default = default
        self.sigma = settings.routing.bandit.sigma
        self.task_tiers = settings.routing.task_tiers
        if bandit is None:
            bandit = bandit_for(settings)
        # Our own copy with its own seed: scoring never moves the candidate's state, and is repeatable.
        self.bandit = copy.deepcopy(bandit)
        if hasattr(self.bandit, "_rng"):
            self.bandit._rng = np.random.default_rng(seed)
        deterministic = getattr(self.bandit, "exploration", "thompson") == "ucb"
        self.draws = 1 if deterministic else max(1, int(draws))

    def distribution(self, record: Record) -> dict[str, float]:
        f = _features(record.features)
        fd = f.to_dict() if record.features else {}
        route = select_route(self.routes, fd)
        ctx = PolicyContext(self.catalog, self.default, self.sigma, self.bandit, task_tiers=self.task_tiers)
        if not isinstance(route.pattern, BanditPattern):
            return {route.pattern.choose(f, None, ctx).model: 1.0}
        context = dict(record.context) or f.vector()
        counts: dict[str, float] = {}
        for _ in range(self.draws):  # the serving rule itself (sigma guarding the task's prior tier)
            chosen = route.pattern.choose(f, None, ctx, context=context).model
            counts[chosen] = counts.get(chosen, 0.0) + 1.0
        return {a: c / self.draws for a, c in counts.items()}


# --- estimates -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Evaluation:
    n: int
    logged: Estimate
    ips: Estimate
    snips: Estimate
    dr: Estimate
    ess: float  # effective sample size of the importance weights
    support: float  # mean candidate probability on arms that were ever logged
    agreement: float  # mean candidate probability of the logged arm
    arms: list[str]

    def as_dict(self) -> dict[str, Any]:
        def est(e: Estimate) -> dict[str, float | None]:
            return {"value": _num(e.value), "low": _num(e.low), "high": _num(e.high)}

        return {
            "n": self.n, "ess": self.ess, "support": self.support, "agreement": self.agreement, "arms": self.arms,
            "logged": est(self.logged), "ips": est(self.ips), "snips": est(self.snips), "dr": est(self.dr),
        }


def _num(v: float) -> float | None:
    return None if math.isnan(v) or math.isinf(v) else float(v)


def evaluate_records(records: Sequence[Record], candidate: CandidateModel) -> Evaluation:
    if not records:
        raise ValueError("no logged decisions to evaluate")
    # Each LoggedDecision gets its own context dict: the estimators hand it back to ``policy``, which
    # finds the record's candidate distribution by that dict's identity.
    logged = [LoggedDecision(dict(r.context), r.arm, r.propensity, r.reward) for r in records]
    dists = {id(ld.context): candidate.distribution(r) for ld, r in zip(logged, records, strict=True)}

    def policy(context: Mapping[str, float], arms: list[str]) -> Mapping[str, float]:
        return dists[id(context)]  # the very dict of the LoggedDecision being scored

    arms = sorted({r.arm for r in records})
    rewards = np.array([r.reward for r in records])
    w = np.array([dists[id(ld.context)].get(ld.arm, 0.0) / ld.propensity for ld in logged])
    ess = float(w.sum() ** 2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0
    half = Z95 * float(rewards.std(ddof=1)) / math.sqrt(len(rewards)) if len(rewards) > 1 else math.inf
    mean = float(rewards.mean())
    return Evaluation(
        n=len(records),
        logged=Estimate(mean, mean - half, mean + half, len(records)),
        ips=ips(logged, policy),
        snips=snips(logged, policy),
        dr=doubly_robust(logged, policy),
        ess=ess,
        support=float(np.mean([sum(p for a, p in d.items() if a in arms) for d in dists.values()])),
        agreement=float(np.mean([dists[id(ld.context)].get(ld.arm, 0.0) for ld in logged])),
        arms=arms,
    )


# --- CLI -------------------------------------------------------------------------------------------


def render(console: Console, ev: Evaluation, candidate: str, source: str) -> None:
    t = Table(title=f"off-policy evaluation of {candidate}  ({source})", title_justify="left", header_style="bold")
    t.add_column("policy / estimator")
    t.add_column("value", justify="right")
    t.add_column("95% CI", justify="right")
    t.add_column("vs logged", justify="right")

    def row(label: str, e: Estimate) -> None:
        diff = "" if e is ev.logged else f"{e.value - ev.logged.value:+.4f}"
        t.add_row(label, f"{e.value:.4f}", f"[{e.low:.4f}, {e.high:.4f}]", diff)

    row("logged policy (observed)", ev.logged)
    row("candidate: IPS", ev.ips)
    row("candidate: SNIPS", ev.snips)
    row("candidate: doubly robust", ev.dr)
    console.print(t)
    console.print(
        f"n = {ev.n:,} logged decisions, effective sample size {ev.ess:,.1f} ({ev.ess / ev.n:.1%}); "
        f"candidate agrees with the logged arm {ev.agreement:.1%} of the time; "
        f"its mass on logged arms {ev.support:.1%}"
    )
    if ev.support < 0.99:
        console.print("[yellow]the candidate picks arms never logged: the estimates cannot see them (biased)[/yellow]")
    if ev.ess < max(30.0, 0.05 * ev.n):
        console.print("[yellow]few logged decisions match the candidate: wide intervals, collect more data[/yellow]")


def _clickhouse_records(settings: Settings, since: datetime, until: datetime, console: Console) -> list[Record] | None:
    from streams.analytics.report import service_answers, service_url
    from streams.storage.clickhouse import connect_configured, is_embedded, redact_url
    from streams.storage.migrations import migrate

    url = settings.clickhouse_url
    b = settings.routing.bandit
    must_file = (
        "pass the logged decisions with --file LOGGED.jsonl (one {arm, propensity, reward | success+cost_usd, "
        "context, features} a line), or point CLICKHOUSE_URL at a ClickHouse server"
    )
    if is_embedded(url) and service_answers(service_url(settings)):
        console.print(
            f"[red]error:[/red] a running Weave Router at {service_url(settings)} owns the embedded ClickHouse "
            f"({redact_url(url)}), which only one process can open, and its API serves no decision log: {must_file}"
        )
        return None
    try:
        client = connect_configured(settings)
        if is_embedded(url):
            migrate(client)
        return load_clickhouse(client, since, until, b.alpha, b.beta)
    except Exception as exc:
        text = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        hint = "the data dir is in use by another process; " if "lock" in text.lower() else ""
        console.print(f"[red]error:[/red] cannot read decisions from {redact_url(url)}: {text}; {hint}{must_file}")
        return None


def main(
    settings: Settings,
    candidate_path: str | Path,
    since: str = "7d",
    file: str | Path | None = None,
    as_json: bool = False,
    *,
    until: str | None = None,
    policy: str | Path | None = None,
    draws: int = 32,
    console: Console | None = None,
) -> int:
    """Score the candidate config on logged decisions; print a table (or JSON). Exit code 0, 1 when there is
    nothing to evaluate, 2 on bad input."""
    from streams.analytics.window import WindowError, parse_window
    from streams.routing.experiments import candidate_settings

    out = console or Console()
    err = Console(stderr=True)
    try:
        cand = candidate_settings(settings, candidate_path)
    except ConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    bandit = None
    if policy is not None:
        from streams.routing.bandit import ContextualBandit

        try:
            bandit = ContextualBandit.restore(Path(policy).read_bytes())
        except Exception as exc:
            err.print(f"[red]error:[/red] cannot read policy snapshot {policy}: {exc}")
            return 2
    b = settings.routing.bandit
    if file is not None:
        source = str(file)
        try:
            records = load_jsonl(file, b.alpha, b.beta)
        except (OSError, ValueError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
    else:
        try:
            start, end = parse_window(since, until)
        except WindowError as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
        source = f"ClickHouse, {start.isoformat(timespec='seconds')} → {end.isoformat(timespec='seconds')}"
        loaded = _clickhouse_records(settings, start, end, err)
        if loaded is None:
            return 2
        records = loaded
    if not records:
        err.print(f"no logged decisions with an outcome in {source}: nothing to evaluate")
        return 1
    name = Path(candidate_path).name
    ev = evaluate_records(records, CandidateModel(cand, bandit, draws=draws))
    if as_json:
        print(json.dumps({"candidate": str(candidate_path), "source": source, **ev.as_dict()}, indent=2))
    else:
        render(out, ev, name, source)
    return 0


def write_jsonl(path: str | Path, records: Iterable[Record]) -> None:
    """Write records in the format ``load_jsonl`` reads (exports, fixtures)."""
    with Path(path).open("w") as f:
        for r in records:
            f.write(json.dumps({"arm": r.arm, "propensity": r.propensity, "reward": r.reward,
                                "context": r.context, "features": r.features}) + "\n")
