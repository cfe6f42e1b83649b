"""``weave-router report``: the analytics views for a window as rich tables, JSON or PNG charts.

chDB allows one process per data dir, so when the service runs the report reads through its analytics
API (``/v1/analytics/*``); only when no service answers does it open the ClickHouse store itself
(:func:`open_source`). Both paths return the very same dicts (the API serves :mod:`queries`).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.client import Client
from rich.console import Console
from rich.table import Table

from streams.analytics import queries
from streams.analytics.window import WindowError, parse_window

# The views a report shows, with their extra parameters.
REPORT_VIEWS: dict[str, dict[str, Any]] = {
    "summary": {},
    "routes": {},
    "task_types": {},
    "timeseries": {},
    "overhead": {},
    "policy_versions": {},
    "fallbacks": {"limit": 10},
    "decisions": {"limit": 10},
    "sessions": {"limit": 10},
}
PLOTS = ("cost_over_time.png", "savings.png", "model_mix.png", "success_by_route.png", "overhead_quantiles.png")


class SourceError(RuntimeError):
    """The analytics source cannot answer (service error, storage locked or unreachable)."""


class HttpSource:
    """Reads views from a running service's ``/v1/analytics`` API."""

    def __init__(self, base_url: str, timeout_s: float = 30.0, api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        # Under reliability.keys.require_key the API wants a key with the ``analytics`` scope.
        self.api_key = api_key if api_key is not None else os.environ.get("WEAVE_API_KEY")

    def describe(self) -> str:
        return f"service at {self.base_url}"

    def view(self, name: str, since: datetime, until: datetime, **params: Any) -> Any:
        query = urllib.parse.urlencode({"since": since.isoformat(), "until": until.isoformat(), **params})
        url = f"{self.base_url}/v1/analytics/{name}?{query}"
        request = urllib.request.Request(url)
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read())["error"]["message"]
            except Exception:
                message = exc.reason
            raise SourceError(f"{self.base_url}: {name}: HTTP {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise SourceError(f"{self.base_url}: {name}: {exc}") from None


class ClientSource:
    """Runs the views directly on a ClickHouse client."""

    def __init__(self, client: Client, prices: queries.Prices | None = None,
                 tiers: dict[str, str] | None = None) -> None:
        self.client = client
        self.prices = prices
        self.tiers = tiers

    def describe(self) -> str:
        return "ClickHouse store (direct)"

    def view(self, name: str, since: datetime, until: datetime, **params: Any) -> Any:
        try:
            data = queries.run_view(self.client, name, since, until, self.prices, **params)
            return queries.with_tiers(data, self.tiers) if name == "summary" else data
        except Exception as exc:
            raise SourceError(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None


def service_url(settings: Any) -> str:
    host = settings.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.server.port}"


def service_answers(base_url: str, timeout_s: float = 2.0) -> bool:
    """Does a Weave Router analytics API answer at ``base_url``? (any HTTP answer from it counts)."""
    try:
        with urllib.request.urlopen(f"{base_url.rstrip('/')}/v1/analytics/summary?since=1m", timeout=timeout_s):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code in (400, 503)  # our API, answering: storage trouble is reported by the view itself
    except (urllib.error.URLError, OSError, ValueError):
        return False


def open_source(settings: Any, base_url: str | None = None) -> str | Client:
    """The running service's base URL when it answers, else a client on the store itself.

    Raises SourceError when the embedded store is locked by another process (a service that does not
    answer on the configured address) or cannot be opened.
    """
    url = base_url or service_url(settings)
    if service_answers(url):
        return url
    from streams.storage.clickhouse import connect_configured, is_embedded
    from streams.storage.migrations import migrate

    store = settings.clickhouse_url
    try:
        client = connect_configured(settings)
        if is_embedded(store):
            migrate(client)  # a fresh data dir reports empty figures instead of missing tables
        return client
    except Exception as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise SourceError(
                f"no service answers at {url} and the data dir is in use by another process; "
                "pass the service's address with --url"
            ) from None
        raise SourceError(f"cannot open the ClickHouse store: {text.splitlines()[0][:300]}") from None


def as_source(source: str | Client | Any, settings: Any = None) -> HttpSource | ClientSource | Any:
    if isinstance(source, str):
        return HttpSource(source)
    if hasattr(source, "view"):
        return source
    return ClientSource(source, queries.frontier_prices(settings), queries.model_tiers(settings))


def collect(source: HttpSource | ClientSource | Any, since: datetime, until: datetime) -> dict[str, Any]:
    """Every report view for the window."""
    return {name: source.view(name, since, until, **params) for name, params in REPORT_VIEWS.items()}


# ---- rendering -----------------------------------------------------------------------------------


def _usd(v: float | None) -> str:
    return "–" if v is None else f"${v:,.4f}" if abs(v) < 1 else f"${v:,.2f}"


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.1f}%"


def _ms(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _table(title: str, columns: list[tuple[str, str]], rows: list[dict[str, Any]],
           formats: Mapping[str, Callable[[Any], str]] | None = None) -> Table:
    formats = formats or {}
    table = Table(title=title, title_justify="left", header_style="bold")
    for label, key in columns:
        table.add_column(label, justify="left" if key in ("model", "route", "task_type", "policy", "reason",
                                                          "client_dialect", "provider", "message", "session_id") else "right")
    for r in rows:
        table.add_row(*[formats.get(key, lambda v: "–" if v is None else str(v))(r.get(key)) for _, key in columns])
    return table


_MONEY = {k: _usd for k in ("cost_usd", "baseline_cost_usd", "saved_usd")}
_RATES = {"success_rate": _pct, "saved_pct": _pct, "share": _pct, "fallback_rate": _pct}


def render(console: Console, data: dict[str, Any], source: str) -> None:
    s = data["summary"]
    w = s["window"]
    console.print(f"[bold]Weave Router report[/bold]  {w['since']} → {w['until']}  [dim]({source})[/dim]")
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_column(style="dim")
    head.add_column(justify="right")
    for label, value in (
        ("requests", f"{s['requests']:,}"), ("sessions", f"{s['sessions']:,}"),
        ("cost", _usd(s["cost_usd"])), ("baseline (frontier)", _usd(s["baseline_cost_usd"])),
        ("saved", f"{_usd(s['saved_usd'])} ({_pct(s['saved_pct'])})"),
        ("success rate", f"{_pct(s['success_rate'])} of {s['outcome_sessions']} sessions ({s['outcomes']} outcomes)"),
        ("overhead p50 / p99", f"{_ms(s['overhead_ms_p50'])} / {_ms(s['overhead_ms_p99'])} ms"),
        ("fallbacks / errors", f"{s['fallbacks']} / {s['errors']}"),
    ):
        head.add_row(label, value)
    console.print(head)
    total = s["requests"] or 0
    models = [{**m, "share": m["requests"] / total if total else None} for m in s["models"]]
    fmt = {**_MONEY, **_RATES, "overhead_ms_p50": _ms, "overhead_ms_p99": _ms}
    columns = [("model", "model"), ("requests", "requests"), ("share", "share"), ("cost", "cost_usd"),
               ("baseline", "baseline_cost_usd"), ("saved", "saved_usd"), ("success", "success_rate"),
               ("ovh p50 ms", "overhead_ms_p50"), ("ovh p99 ms", "overhead_ms_p99"), ("in tok", "input_tokens"),
               ("out tok", "output_tokens")]
    if console.width < 140:  # a narrow terminal: keep the columns that answer "what did it cost, did it work"
        columns = [c for c in columns if c[1] not in ("baseline_cost_usd", "overhead_ms_p50", "input_tokens",
                                                      "output_tokens")]
    console.print(_table("Models", columns, models, fmt))
    for title, key in (("Routes", "route"), ("Task types", "task_type")):
        console.print(_table(title, [(key.replace("_", " "), key), ("requests", "requests"), ("cost", "cost_usd"),
                                     ("saved", "saved_usd"), ("sessions w/ outcome", "outcome_sessions"),
                                     ("success", "success_rate")], data[key + "s"], fmt))
    o = data["overhead"]
    rows = [{"client_dialect": "all", **o["overall"]}] + o["by_dialect"]
    console.print(_table("Latency and overhead (ms)", [("dialect", "client_dialect"), ("requests", "requests"),
                                                       ("ovh p50", "overhead_ms_p50"), ("ovh p90", "overhead_ms_p90"),
                                                       ("ovh p99", "overhead_ms_p99"), ("lat p50", "latency_ms_p50"),
                                                       ("lat p99", "latency_ms_p99"), ("ttft p50", "ttft_ms_p50")],
                             rows, {k: _ms for k in ("overhead_ms_p50", "overhead_ms_p90", "overhead_ms_p99",
                                                     "latency_ms_p50", "latency_ms_p99", "ttft_ms_p50")}))
    console.print(_table("Policy versions", [("policy", "policy"), ("version", "policy_version"),
                                             ("decisions", "decisions"), ("sessions", "sessions"), ("cost", "cost_usd"),
                                             ("saved", "saved_usd"), ("success", "success_rate")],
                         data["policy_versions"], fmt))
    fb = data["fallbacks"]
    console.print(f"[bold]Fallbacks[/bold] {fb['fallbacks']} ({_pct(fb['fallback_rate'])})  "
                  f"[bold]errors[/bold] {fb['errors']} ({_pct(fb['error_rate'])})  "
                  f"[bold]circuit-breaker events[/bold] {fb['breaker_events']}")
    if fb["errors_by"]:
        console.print(_table("Errors", [("provider", "provider"), ("status", "status"), ("error", "message"),
                                        ("count", "count")], fb["errors_by"]))
    console.print(_table("Recent decisions", [("session", "session_id"), ("model", "model"), ("route", "route"),
                                              ("policy v", "policy_version"), ("reason", "reason"),
                                              ("outcome", "session_success")], data["decisions"],
                         {"session_success": lambda v: "pending" if v is None else ("passed" if v >= 0.5 else "failed")}))


def write_plots(data: dict[str, Any], directory: Path) -> list[Path]:
    """Five PNG charts (matplotlib, Agg backend): cost over time, savings, model mix, success by route,
    overhead quantiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.dates import date2num

    directory.mkdir(parents=True, exist_ok=True)
    points = data["timeseries"]["points"]
    times = [float(date2num(datetime.fromisoformat(p["t"].replace("Z", "+00:00")))) for p in points]
    written: list[Path] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        path = directory / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    fig, ax = plt.subplots(figsize=(8, 4))
    cost = baseline = 0.0
    cum_cost, cum_base = [], []
    for p in points:
        cost += p["cost_usd"]
        baseline += p["baseline_cost_usd"]
        cum_cost.append(cost)
        cum_base.append(baseline)
    ax.plot(times, cum_base, label="baseline (frontier default)", color="#f5a524")
    ax.plot(times, cum_cost, label="actual cost", color="#4c6ef5")
    ax.fill_between(times, cum_cost, cum_base, color="#3ecf8e", alpha=0.2, label="saved")
    ax.set_title("Cumulative cost vs frontier baseline")
    ax.set_ylabel("USD")
    ax.legend()
    ax.xaxis_date()
    fig.autofmt_xdate()
    save(fig, "cost_over_time.png")

    models = data["summary"]["models"]
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [m["model"] for m in models]
    ax.bar(names, [m["saved_usd"] for m in models], color="#3ecf8e")
    ax.set_title(f"Saved vs frontier baseline: {_usd(data['summary']['saved_usd'])} total")
    ax.set_ylabel("USD saved")
    ax.tick_params(axis="x", rotation=20)
    save(fig, "savings.png")

    fig, ax = plt.subplots(figsize=(8, 4))
    all_models = sorted({m for p in points for m in p["models"]})
    if points:
        ax.stackplot(times, [[p["models"].get(m, 0) for p in points] for m in all_models], labels=all_models)
        ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Model mix (requests per bucket)")
    ax.xaxis_date()
    fig.autofmt_xdate()
    save(fig, "model_mix.png")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "route", "routes"), (axes[1], "task_type", "task_types")):
        rows = [r for r in data[title] if r["success_rate"] is not None]
        ax.barh([r[key] or "(none)" for r in rows], [r["success_rate"] for r in rows], color="#4c6ef5")
        ax.set_xlim(0, 1)
        ax.set_title(f"Success rate by {key.replace('_', ' ')}")
    save(fig, "success_by_route.png")

    fig, ax = plt.subplots(figsize=(8, 4))
    o = data["overhead"]
    groups = [("all", o["overall"])] + [(r["client_dialect"], r) for r in o["by_dialect"]]
    width = 0.25
    for i, q in enumerate(("p50", "p90", "p99")):
        ax.bar([j + i * width for j in range(len(groups))], [g[1].get(f"overhead_ms_{q}") or 0 for g in groups],
               width, label=q)
    ax.set_xticks([j + width for j in range(len(groups))], [g[0] for g in groups])
    ax.set_ylabel("ms")
    ax.set_title("Router overhead quantiles")
    ax.legend()
    save(fig, "overhead_quantiles.png")
    return written


def run_report(
    source: str | Client | Any,
    since: datetime,
    until: datetime,
    as_json: bool = False,
    plot_dir: str | Path | None = None,
    settings: Any = None,
    console: Console | None = None,
) -> int:
    """Print the report for ``[since, until)`` from a service URL or a ClickHouse client; 0 on success,
    1 when the source cannot answer (the message says why)."""
    out = console or Console(file=sys.stdout)
    err = Console(stderr=True)
    src = as_source(source, settings)
    try:
        data = collect(src, since, until)
    except SourceError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1
    if as_json:
        # Top level: exactly what GET /v1/analytics/summary returns; the other views under "views".
        doc = {**data["summary"], "views": {k: v for k, v in data.items() if k != "summary"}}
        out.file.write(json.dumps(doc, indent=2) + "\n")
    else:
        render(out, data, src.describe())
    if plot_dir:
        for path in write_plots(data, Path(plot_dir)):
            err.print(f"wrote {path}")
    return 0


def main(
    settings: Any,
    since: str | None = "24h",
    until: str | None = None,
    as_json: bool = False,
    plot_dir: str | Path | None = None,
    url: str | None = None,
) -> int:
    """The whole ``weave-router report`` command: parse the window, pick the source, print."""
    err = Console(stderr=True)
    try:
        start, end = parse_window(since, until)
        source = open_source(settings, url)
    except (WindowError, SourceError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2 if isinstance(exc, WindowError) else 1
    try:
        return run_report(source, start, end, as_json, plot_dir, settings=settings)
    finally:
        if not isinstance(source, str):
            source.close()
