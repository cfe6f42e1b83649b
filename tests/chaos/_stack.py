"""The chaos harness: the whole service wired as ``weave-router up`` wires it, inside the test process,
plus the load generator that drives it and the checks that judge every answer.

One ``ChaosStack`` per scenario: a fresh ClickHouse database (on the session's one chDB engine), fresh
topic names, its own spill directory, the simulated provider, ``start_streams`` (event producer with
spill and replay, policy follower, sink) and the gateway from ``build_gateway_app`` served by uvicorn
on 127.0.0.1:0. The scenario injects its fault through the handles kept here (simulator faults, the
broker process, the sink, the sink's ClickHouse client).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import clickhouse_connect
import httpx

from streams.agents.service import StreamServices, start_streams
from streams.agents.sink import SinkAgent
from streams.agents.topics import Topics
from streams.config import Settings
from streams.infra.runtime import build_gateway_app, feedback_handler, make_router
from streams.infra.serve import HttpServer
from streams.providers.sim.config import SimConfig
from streams.providers.sim.server import running_sim
from streams.storage.migrations import migrate
from tests._support import sse_frames

PATHS = {"openai_chat": "/v1/chat/completions", "openai_responses": "/v1/responses",
         "anthropic_messages": "/v1/messages"}
DIALECTS = tuple(PATHS)
# The default configuration's models (one provider per dialect behind them) and the router's auto model:
# a client of any dialect may land on a provider of any dialect, so translation paths are exercised too.
MODELS = ("claude-opus-sim", "claude-haiku-sim", "gpt-frontier-sim", "gpt-mini-sim", "deepseek-sim", "router/auto")
ARTIFACT = Path(__file__).resolve().parents[2] / "artifacts" / "chaos.txt"
CLIENT_TIMEOUT_S = 20.0  # a request still open after this is a hung connection


# --- ClickHouse -----------------------------------------------------------------------------------------


def open_database(chdb_url: str, database: str) -> Any:
    """A client on a fresh, migrated database of the session's chDB engine.

    clickhouse-connect directly (not ``streams.storage.clickhouse.connect``, which leaves its bootstrap
    client open): the chaos module closes every client it opened, so the engine is released for a test
    file that runs after it in the same worker (chDB allows one engine path per process while any client
    is open)."""
    dsn = chdb_url
    admin = clickhouse_connect.get_client(dsn=dsn)
    try:
        admin.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    finally:
        admin.close()
    client = clickhouse_connect.get_client(dsn=dsn, database=database)
    migrate(client)
    return client


class FlakyClickHouse:
    """The sink's ClickHouse client with an outage switch.

    chDB runs inside this process, so "the ClickHouse server is down" cannot be a killed process: this
    proxy makes every write and probe of the sink raise the connection error clickhouse-connect raises
    for an unreachable server, for a given time; reads (the test's own checks) go straight through. The
    real engine behind it stores whatever the sink writes once the outage is over, so the end counts
    check the real retry path (StorageUnavailable -> nothing committed -> backoff -> write again)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.down_until = 0.0
        self.refused = 0

    def outage(self, seconds: float) -> None:
        self.down_until = time.monotonic() + seconds

    def _check(self) -> None:
        if time.monotonic() < self.down_until:
            self.refused += 1
            raise ConnectionError("[Errno 111] Connection refused (simulated ClickHouse outage)")

    def insert(self, *a: Any, **kw: Any) -> Any:
        self._check()
        return self.inner.insert(*a, **kw)

    def command(self, *a: Any, **kw: Any) -> Any:
        self._check()
        return self.inner.command(*a, **kw)

    def query(self, *a: Any, **kw: Any) -> Any:
        self._check()
        return self.inner.query(*a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# --- the stack ------------------------------------------------------------------------------------------


@dataclass
class ChaosStack:
    settings: Settings
    bootstrap: str
    clickhouse: Any  # the test's own reader on the scenario's database
    sink_client: FlakyClickHouse
    topics: Topics
    services: StreamServices
    sim_url: str
    url: str
    sinks_started: int = 1

    async def sim_fault(self, http: httpx.AsyncClient, **fault: Any) -> None:
        r = await http.post(f"{self.sim_url}/sim/faults", json=fault)
        assert r.status_code == 200, r.text

    async def clear_sim_faults(self, http: httpx.AsyncClient) -> None:
        r = await http.delete(f"{self.sim_url}/sim/faults")
        assert r.status_code == 200, r.text

    def new_sink(self) -> SinkAgent:
        """A sink worker as ``start_streams`` makes it (same group, same client), e.g. after a crash."""
        self.sinks_started += 1
        return SinkAgent.from_settings(self.settings, self.bootstrap, self.sink_client, topics=self.topics,
                                       embedded=True, worker_id=f"chaos-{self.sinks_started}")

    async def query_one(self, sql: str) -> tuple[Any, ...]:
        rows = (await asyncio.to_thread(self.clickhouse.query, sql)).result_rows
        return tuple(rows[0])


def chaos_settings(base: Settings, bootstrap: str, chdb_url: str, data_dir: Path, database: str) -> Settings:
    """The default configuration (three simulated providers, five models, the bandit router) pointed at
    this scenario's broker, database and data dir; timeouts short enough for a bounded test."""
    providers = [p.model_copy(update={"first_byte_timeout_s": 1.0, "idle_timeout_s": 1.0, "connect_timeout_s": 1.0})
                 for p in base.providers]
    return base.model_copy(update={
        "kafka": base.kafka.model_copy(update={"bootstrap_servers": bootstrap, "partitions": 4}),
        "clickhouse": base.clickhouse.model_copy(
            update={"url": chdb_url, "database": database, "batch_size": 500, "flush_interval_s": 0.2}),
        "data_dir": str(data_dir),
        "providers": providers,
    })


@contextlib.asynccontextmanager
async def running_stack(base: Settings, bootstrap: str, chdb_url: str, data_dir: Path) -> AsyncIterator[ChaosStack]:
    database = f"chaos_{uuid.uuid4().hex[:10]}"
    settings = chaos_settings(base, bootstrap, chdb_url, data_dir, database)
    data_dir.mkdir(parents=True, exist_ok=True)
    clickhouse = await asyncio.to_thread(open_database, chdb_url, database)
    sink_client = FlakyClickHouse(await asyncio.to_thread(clickhouse_connect.get_client, dsn=chdb_url,
                                                          database=database))
    topics = Topics.prefixed(f"chaos{uuid.uuid4().hex[:8]}.")
    services: StreamServices | None = None
    server: HttpServer | None = None
    try:
        async with running_sim(SimConfig.from_settings(settings)) as sim_url:
            router = make_router(settings)
            # As run_service wires it, minus the Faust worker (router/learner agents): HTTP traffic does
            # not go through them, and their group joins would cost seconds per scenario.
            services = await start_streams(
                settings, bootstrap, embedded=True, clickhouse=sink_client, gateway_router=router,
                sim_url=sim_url, worker_id="chaos-1", roles=(), with_emitter=True, topics=topics,
            )
            shim = SimpleNamespace(sim_url=sim_url, clickhouse=clickhouse, components=lambda: {})
            app = build_gateway_app(settings, shim, services.emitter, router=router,  # type: ignore[arg-type]
                                    feedback=feedback_handler(router, services.emitter))
            server = HttpServer(app, "127.0.0.1", 0)
            await server.start()
            yield ChaosStack(settings, bootstrap, clickhouse, sink_client, topics, services, sim_url, server.url)
            await server.stop()
            server = None
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                await server.stop()
        if services is not None:
            await services.stop()
        with contextlib.suppress(Exception):
            await asyncio.to_thread(clickhouse.command, f"DROP DATABASE IF EXISTS {database}")
        for c in (clickhouse, sink_client.inner):
            with contextlib.suppress(Exception):
                c.close()


# --- load and judgement ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    index: int
    dialect: str
    stream: bool
    kind: str  # "ok" | "clean" (an error in the caller's dialect) | "other"
    status: int
    request_id: str | None
    detail: str = ""


def request_body(dialect: str, model: str, stream: bool, i: int) -> dict[str, Any]:
    text = f"chaos request {i}: fix the failing test in parser.py"
    if dialect == "openai_chat":
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}]}
    elif dialect == "openai_responses":
        body = {"model": model, "input": text}
    else:
        body = {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": text}]}
    if stream:
        body["stream"] = True
    return body


def _error_shape(dialect: str, body: Any) -> str | None:
    """None when ``body`` is the dialect's error object, else what is wrong with it."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return f"not an error object: {str(body)[:200]}"
    if dialect == "anthropic_messages" and body.get("type") != "error":
        return "anthropic error without type=error"
    err = body["error"]
    if not isinstance(err.get("message"), str) or not err["message"]:
        return "error without a message"
    if dialect == "anthropic_messages" and not isinstance(err.get("type"), str):
        return "anthropic error without a type"
    return None


def judge_stream(dialect: str, raw: bytes) -> tuple[str, str]:
    """("ok" | "clean" | "other", detail) for a 200 SSE body: it must be well formed to the end and end
    either with the dialect's completion or with the dialect's error event."""
    if b"Traceback" in raw:
        return "other", "traceback in stream"
    frames = sse_frames(raw)
    if not frames:
        return "other", "empty stream"
    objs: list[tuple[str | None, Any]] = []
    for event, data in frames:
        if data == "[DONE]":
            objs.append((event, "[DONE]"))
            continue
        try:
            objs.append((event, json.loads(data)))
        except ValueError:
            return "other", f"non-JSON frame: {data[:80]!r}"
    last_event, last = objs[-1]
    if dialect == "openai_chat":
        errors = [o for _, o in objs if isinstance(o, dict) and "error" in o]
        if errors:
            problem = _error_shape(dialect, errors[-1])
            return ("clean", errors[-1]["error"]["message"]) if problem is None else ("other", problem)
        finished = any(isinstance(o, dict) and any(c.get("finish_reason") for c in o.get("choices") or [])
                       for _, o in objs)
        return ("ok", "") if last == "[DONE]" and finished else ("other", "chat stream cut short")
    if dialect == "openai_responses":
        types = [o.get("type") for _, o in objs if isinstance(o, dict)]
        if "error" in types or "response.failed" in types:
            return "clean", "error event"
        return ("ok", "") if types[-1] in ("response.completed", "response.incomplete") else (
            "other", f"responses stream ended with {types[-1]}")
    if last_event == "error" or (isinstance(last, dict) and last.get("type") == "error"):
        problem = _error_shape(dialect, last)
        return ("clean", last["error"]["message"]) if problem is None else ("other", problem)
    return ("ok", "") if isinstance(last, dict) and last.get("type") == "message_stop" else (
        "other", f"messages stream ended with {last.get('type') if isinstance(last, dict) else last}")


def judge_body(dialect: str, status: int, raw: bytes) -> tuple[str, str]:
    if b"Traceback" in raw:
        return "other", "traceback in body"
    try:
        body = json.loads(raw)
    except ValueError:
        return "other", f"HTTP {status} body is not JSON: {raw[:120]!r}"
    if 200 <= status < 300:
        ok = {"openai_chat": "choices", "openai_responses": "output", "anthropic_messages": "content"}[dialect]
        return ("ok", "") if isinstance(body, dict) and ok in body else ("other", f"2xx without {ok}")
    problem = _error_shape(dialect, body)
    return ("clean", f"{status} {body['error']['message'][:80]}") if problem is None else ("other", problem)


async def send_one(http: httpx.AsyncClient, url: str, i: int, rng: random.Random,
                   headers: dict[str, str] | None = None) -> Outcome:
    dialect = DIALECTS[i % 3]
    model = rng.choice(MODELS)
    stream = rng.random() < 0.5
    body = request_body(dialect, model, stream, i)
    h = {"x-session-id": f"chaos-s{i % 17}", **(headers or {})}
    h["x-api-key" if dialect == "anthropic_messages" else "authorization"] = (
        "chaos" if dialect == "anthropic_messages" else "Bearer chaos")
    status, rid = 0, None
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            async with http.stream("POST", url + PATHS[dialect], json=body, headers=h) as resp:
                status, rid = resp.status_code, resp.headers.get("x-request-id")
                raw = await resp.aread()
                is_sse = resp.headers.get("content-type", "").startswith("text/event-stream")
    except TimeoutError:
        return Outcome(i, dialect, stream, "other", status, rid, "hung: no complete answer in "
                       f"{CLIENT_TIMEOUT_S:.0f} s")
    except httpx.HTTPError as exc:
        return Outcome(i, dialect, stream, "other", status, rid, f"{type(exc).__name__}: {exc}")
    if status == 200 and is_sse:
        kind, detail = judge_stream(dialect, raw)
    else:
        kind, detail = judge_body(dialect, status, raw)
    return Outcome(i, dialect, stream, kind, status, rid, detail)


Hook = Callable[[], Awaitable[None]]


async def drive(http: httpx.AsyncClient, url: str, n: int, *, rate: float, concurrency: int = 16,
                hooks: dict[int, Hook] | None = None, seed: int = 7,
                headers: Callable[[int], dict[str, str] | None] | None = None) -> list[Outcome]:
    """``n`` requests at ``rate`` per second (at most ``concurrency`` in flight); ``hooks[i]`` runs (in the
    background, so the load keeps its pace) just before request ``i`` is sent."""
    rng = random.Random(seed)
    slots = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task[Outcome]] = []
    side: list[asyncio.Task[None]] = []
    t0 = time.monotonic()

    async def one(i: int, r: random.Random) -> Outcome:
        try:
            return await send_one(http, url, i, r, headers(i) if headers else None)
        finally:
            slots.release()

    for i in range(n):
        if hooks and i in hooks:
            side.append(asyncio.create_task(hooks[i]()))
        delay = t0 + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await slots.acquire()
        tasks.append(asyncio.create_task(one(i, random.Random(rng.random()))))
    outcomes = list(await asyncio.gather(*tasks))
    await asyncio.gather(*side)
    return outcomes


@dataclass
class Observed:
    scenario: str
    injected: str
    sent: int
    ok: int
    clean: int
    other: int
    traces: int
    duplicates: int
    seconds: float
    notes: str = ""
    problems: list[str] = field(default_factory=list)


async def settle(stack: ChaosStack, expected: int, timeout_s: float = 30.0) -> int:
    """Wait (bounded) until the stored trace count reaches ``expected`` and holds for a second."""
    assert stack.services.emitter is not None
    await stack.services.emitter.idle(timeout_s / 2)
    deadline = time.monotonic() + timeout_s
    n, since, last = -1, time.monotonic(), -2
    while time.monotonic() < deadline:
        n = int((await stack.query_one("SELECT count() FROM traces FINAL"))[0])
        if n != last:
            last, since = n, time.monotonic()
        elif n >= expected and time.monotonic() - since >= 1.0:
            break
        await asyncio.sleep(0.2)
    return n


async def observe(stack: ChaosStack, scenario: str, injected: str, outcomes: list[Outcome], t0: float,
                  notes: str = "") -> Observed:
    """Settle, then compare what callers saw with what ClickHouse stored."""
    served = {o.request_id for o in outcomes if o.request_id}
    await settle(stack, len(served))
    count, uniq_events, uniq_requests = await stack.query_one(
        "SELECT count(), uniqExact(event_id), uniqExact(request_id) FROM traces FINAL")
    raw_rows, raw_ids = await stack.query_one("SELECT count(), uniqExact(event_id) FROM traces")
    stored = {r[0] for r in (await asyncio.to_thread(
        stack.clickhouse.query, "SELECT DISTINCT request_id FROM traces FINAL")).result_rows}
    decisions = int((await stack.query_one("SELECT count() FROM decisions FINAL"))[0])
    obs = Observed(
        scenario, injected, len(outcomes), sum(o.kind == "ok" for o in outcomes),
        sum(o.kind == "clean" for o in outcomes), sum(o.kind == "other" for o in outcomes), int(count),
        int(count) - int(uniq_requests) + int(count) - int(uniq_events), time.monotonic() - t0,
    )
    extra = [] if raw_rows == count else [f"raw rows {raw_rows} (re-delivered, merged away)"]
    obs.notes = "; ".join(x for x in (notes, *extra) if x)
    problems = obs.problems
    for o in outcomes:
        if o.kind == "other":
            problems.append(f"request {o.index} ({o.dialect}, stream={o.stream}): HTTP {o.status}: {o.detail}")
    if len(served) != len(outcomes):
        problems.append(f"{len(outcomes) - len(served)} answers without x-request-id")
    if int(count) != len(served):
        problems.append(f"{count} traces stored for {len(served)} requests served")
    if served - stored:
        lost = sorted(o.index for o in outcomes if o.request_id in served - stored)
        problems.append(f"{len(lost)} served requests have no trace: request numbers {_ranges(lost)}")
    if stored - served:
        problems.append(f"{len(stored - served)} traces of requests nobody was answered for")
    if obs.duplicates:
        problems.append(f"{obs.duplicates} duplicate traces under FINAL")
    if int(raw_ids) > len(served):
        problems.append(f"raw table holds {raw_ids} distinct event ids for {len(served)} requests")
    if decisions != len(served):
        problems.append(f"{decisions} decisions stored for {len(served)} requests served")
    return obs


def _ranges(numbers: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3, 7"."""
    out: list[str] = []
    for n in numbers:
        if out and n == int(out[-1].split("-")[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


COLUMNS = ("scenario", "injected", "sent", "2xx", "clean errors", "other", "traces stored", "duplicates", "time")


def render_table(rows: list[Observed]) -> str:
    cells = [[r.scenario, r.injected, str(r.sent), str(r.ok), str(r.clean), str(r.other), str(r.traces),
              str(r.duplicates), f"{r.seconds:.1f}s"] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(COLUMNS)]
    numeric = set(range(2, len(COLUMNS)))

    def line(values: list[str] | tuple[str, ...]) -> str:
        return "  ".join(v.rjust(w) if i in numeric else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))

    out = [line(COLUMNS), "  ".join("-" * w for w in widths), *(line(c) for c in cells)]
    notes = [f"  {r.scenario}: {r.notes}" for r in rows if r.notes]
    if notes:
        out += ["", "notes:", *notes]
    problems = [f"  {r.scenario}: {p}" for r in rows for p in r.problems[:10]]
    if problems:
        out += ["", "PROBLEMS:", *problems]
    return "\n".join(out) + "\n"


def publish(rows: list[Observed]) -> str:
    """Write the table to artifacts/chaos.txt; return it."""
    table = render_table(rows)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(table)
    return table
