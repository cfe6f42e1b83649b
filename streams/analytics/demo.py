"""``weave-router demo``: simulated coding-agent sessions through a running gateway.

Each session speaks one of the three dialects (OpenAI Chat, OpenAI Responses, Anthropic Messages) with
model ``router/auto``, offers tools, runs the tool loop (the simulated provider calls a tool because each
task asks for a fix or a change; the demo sends the tool results back), then reports the test result the
simulated provider gave (``TESTS PASSED`` / ``TESTS FAILED`` for the session's ``x-sim-task``) to
``POST /v1/feedback``. A failed session retries once in the same session (where a cascade escalates).
A live table shows the model mix and outcomes; the dashboard fills at the same time.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

DIALECTS = ("openai_chat", "openai_responses", "anthropic_messages")
PASS, FAIL = "TESTS PASSED", "TESTS FAILED"
# A coding team's day in miniature: a few design questions, many scoped edits and tests, some
# debugging, look-ups and questions. Each task type calls for its own tier (routing.task_tiers).
TASKS = (
    "Plan the migration of the nightly jobs from cron to a worker pool: outline the steps, risks and trade-offs.",
    "Design the module boundaries for splitting billing out of the monolith before we start coding.",
    "Add a --dry-run flag to the deploy command.",
    "Rename the config field timeout to timeout_s everywhere, keeping backward compatibility.",
    "Implement pagination for GET /users (limit/offset).",
    "Refactor the retry helper into a decorator without changing behaviour.",
    "Write unit tests for the CSV exporter's date handling.",
    "Add test cases covering empty input and unicode to the tokenizer tests.",
    "Fix the failing test in tests/test_parser.py: the tokenizer drops the last token.",
    "Fix the race in the connection pool that makes test_concurrent_checkout flaky.",
    "Where is the retry policy configured, and which modules use it?",
    "What does the --since option of the report command accept?",
)
TOOLS = [
    {"name": "read_file", "description": "Read a file from the repository",
     "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
    {"name": "run_tests", "description": "Run the test suite and return the summary",
     "parameters": {"type": "object", "properties": {"target": {"type": "string"}}, "required": []}},
]
SYSTEM = "You are a coding agent. Use the tools to inspect the repository and run the tests."


@dataclass
class DemoStats:
    sessions: int = 0
    requests: int = 0
    tool_calls: int = 0
    passed: int = 0
    failed: int = 0
    retries: int = 0
    errors: int = 0
    feedback_sent: int = 0
    verdict_missing: int = 0
    models: Counter[str] = field(default_factory=Counter)
    dialects: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        done = self.passed + self.failed
        return {
            "sessions": self.sessions, "requests": self.requests, "tool_calls": self.tool_calls,
            "passed": self.passed, "failed": self.failed, "success_rate": self.passed / done if done else None,
            "retries": self.retries, "errors": self.errors, "feedback_sent": self.feedback_sent,
            "verdict_missing": self.verdict_missing, "models": dict(self.models), "dialects": dict(self.dialects),
            "last_error": self.last_error,
        }


class _Conversation:
    """One dialect's request bodies and response parsing for a tool-using conversation."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.history: list[dict[str, Any]] = []

    @property
    def path(self) -> str:
        return {"openai_chat": "/v1/chat/completions", "openai_responses": "/v1/responses",
                "anthropic_messages": "/v1/messages"}[self.dialect]

    def user(self, text: str) -> None:
        self.history.append({"role": "user", "content": text})  # the same shape in all three dialects

    def body(self) -> dict[str, Any]:
        if self.dialect == "openai_chat":
            return {"model": "router/auto", "messages": [{"role": "system", "content": SYSTEM}, *self.history],
                    "tools": [{"type": "function", "function": t} for t in TOOLS]}
        if self.dialect == "openai_responses":
            return {"model": "router/auto", "instructions": SYSTEM, "input": self.history, "store": False,
                    "tools": [{"type": "function", **t} for t in TOOLS]}
        return {"model": "router/auto", "max_tokens": 2048, "system": SYSTEM, "messages": self.history,
                "tools": [{"name": t["name"], "description": t["description"], "input_schema": t["parameters"]}
                          for t in TOOLS]}

    def take(self, resp: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
        """Record the assistant turn; return its text and tool calls as (call id, tool name)."""
        if self.dialect == "openai_chat":
            msg = resp["choices"][0]["message"]
            calls = [(c["id"], c["function"]["name"]) for c in msg.get("tool_calls") or []]
            turn: dict[str, Any] = {"role": "assistant", "content": msg.get("content")}
            if msg.get("tool_calls"):
                turn["tool_calls"] = msg["tool_calls"]
            self.history.append(turn)
            return msg.get("content") or "", calls
        if self.dialect == "openai_responses":
            parts: list[str] = []
            calls = []
            for item in resp.get("output", []):
                if item.get("type") == "function_call":
                    calls.append((item["call_id"], item["name"]))
                    self.history.append({"type": "function_call", "call_id": item["call_id"], "name": item["name"],
                                         "arguments": item.get("arguments", "{}")})
                elif item.get("type") == "message":
                    part = "".join(c.get("text", "") for c in item.get("content", []))
                    parts.append(part)
                    self.history.append({"role": "assistant", "content": part})
            return "".join(parts), calls
        content = resp.get("content", [])
        self.history.append({"role": "assistant", "content": content})
        text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        return text, [(b["id"], b["name"]) for b in content if b.get("type") == "tool_use"]

    def tool_results(self, results: list[tuple[str, str]]) -> None:
        if self.dialect == "openai_chat":
            self.history += [{"role": "tool", "tool_call_id": cid, "content": out} for cid, out in results]
        elif self.dialect == "openai_responses":
            self.history += [{"type": "function_call_output", "call_id": cid, "output": out} for cid, out in results]
        else:
            self.history.append({"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": cid, "content": out} for cid, out in results]})


def _tool_output(name: str, rng: random.Random) -> str:
    if name == "run_tests":
        return f"collected {rng.randint(20, 200)} items; {rng.randint(0, 4)} failed"
    return "def handler(request):\n    return process(request.body)\n"


async def _session(
    client: Any, base_url: str, index: int, run_id: str, rng: random.Random, stats: DemoStats,
    max_tool_rounds: int, feedback: bool,
) -> None:
    import httpx

    dialect = DIALECTS[index % len(DIALECTS)]
    session_id = f"demo-{run_id}-{index:03d}"
    task_key = f"demo-task-{rng.randrange(40)}"
    headers = {"x-router-session": session_id, "x-sim-task": task_key, "authorization": "Bearer demo",
               "x-api-key": "demo", "anthropic-version": "2023-06-01", "user-agent": "weave-router-demo/1"}
    convo = _Conversation(dialect)
    stats.dialects[dialect] += 1
    attempts = 2  # the first try, and one retry in the same session when the tests fail
    prompt = TASKS[rng.randrange(len(TASKS))]
    routed_session = session_id
    for attempt in range(attempts):
        convo.user(prompt if attempt == 0 else "The tests still fail. Please look again and fix it.")
        text = ""
        for _ in range(max_tool_rounds + 1):
            try:
                r = await client.post(base_url + convo.path, json=convo.body(), headers=headers)
            except httpx.HTTPError as exc:
                stats.errors += 1
                stats.last_error = f"{type(exc).__name__}: {exc}"
                return
            stats.requests += 1
            if r.status_code != 200:
                stats.errors += 1
                stats.last_error = f"HTTP {r.status_code} on {convo.path}: {r.text[:200]}"
                return
            resp = r.json()
            # Report the outcome on the session the gateway recorded the decisions under (it echoes it):
            # the learner joins outcomes to decisions by that id.
            routed_session = r.headers.get("x-router-session") or routed_session
            stats.models[r.headers.get("x-router-model") or resp.get("model", "?")] += 1
            text, calls = convo.take(resp)
            if not calls:
                break
            stats.tool_calls += len(calls)
            convo.tool_results([(cid, _tool_output(name, rng)) for cid, name in calls])
        if PASS in text:
            success = True
        elif FAIL in text:
            success = False
        else:  # a gateway that does not pass x-sim-task on: no verdict, draw one so learning still sees outcomes
            stats.verdict_missing += 1
            success = rng.random() < 0.6
        if feedback:
            body = {"session_id": routed_session, "success": 1.0 if success else 0.0,
                    "tests_passed": 10 if success else 7, "tests_failed": 0 if success else 3,
                    "metadata": {"task": task_key, "dialect": dialect, "attempt": str(attempt + 1)}}
            try:
                fr = await client.post(base_url + "/v1/feedback", json=body, headers=headers)
                if fr.status_code < 300:
                    stats.feedback_sent += 1
                else:
                    stats.last_error = f"feedback: HTTP {fr.status_code}: {fr.text[:200]}"
            except httpx.HTTPError as exc:
                stats.last_error = f"feedback: {type(exc).__name__}: {exc}"
        if success:
            stats.passed += 1
            break
        if attempt + 1 < attempts:
            stats.retries += 1
        else:
            stats.failed += 1
    stats.sessions += 1


def _table(stats: DemoStats, total: int, elapsed: float) -> Table:
    table = Table(title=f"weave-router demo: {stats.sessions}/{total} sessions, {stats.requests} requests, "
                        f"{elapsed:.1f}s", title_justify="left", min_width=72)
    table.add_column("model")
    table.add_column("requests", justify="right")
    table.add_column("share", justify="right")
    n = sum(stats.models.values()) or 1
    for model, count in stats.models.most_common():
        table.add_row(model, str(count), f"{100 * count / n:.0f}%")
    d = stats.as_dict()
    rate = "–" if d["success_rate"] is None else f"{100 * d['success_rate']:.0f}%"
    table.caption = (f"passed {stats.passed} · failed {stats.failed} · success {rate} · retries {stats.retries} · "
                     f"tool calls {stats.tool_calls} · feedback {stats.feedback_sent} · errors {stats.errors}")
    return table


async def _stored(client: Any, base_url: str) -> dict[str, Any] | None:
    """The analytics summary of the last hour, or None when the stack serves no analytics."""
    import httpx

    try:
        r = await client.get(base_url + "/v1/analytics/summary", params={"since": "1h"})
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    body = r.json()
    return body if isinstance(body, dict) and "requests" in body else None


async def _wait_stored(
    client: Any, base_url: str, before: dict[str, Any] | None, stats: DemoStats, wait_s: float
) -> dict[str, Any] | None:
    """Poll (bounded) until this run's requests and outcomes are in ClickHouse; the last summary read.

    Traces and outcomes reach ClickHouse through Kafka and the sink's batches, a second or two after the
    responses: waiting here means the dashboard shows the whole run when the demo says it is done."""
    want_requests = (before or {}).get("requests", 0) + stats.requests
    want_outcomes = (before or {}).get("outcomes", 0) + stats.feedback_sent
    deadline = time.monotonic() + wait_s
    while True:
        summary = await _stored(client, base_url)
        if summary is None:
            return None
        if (summary.get("requests", 0) >= want_requests and summary.get("outcomes", 0) >= want_outcomes) \
                or time.monotonic() >= deadline:
            return summary
        await asyncio.sleep(0.5)


def _print_summary(
    console: Console, base_url: str, stats: DemoStats, elapsed: float,
    before: dict[str, Any] | None, after: dict[str, Any] | None,
) -> None:
    d = stats.as_dict()
    rate = "–" if d["success_rate"] is None else f"{100 * d['success_rate']:.0f}%"
    mix = ", ".join(f"{m} {100 * n / (sum(stats.models.values()) or 1):.0f}%" for m, n in stats.models.most_common())
    console.print(
        f"demo finished: {stats.sessions} sessions, {stats.requests} requests, {stats.tool_calls} tool calls "
        f"in {elapsed:.1f}s; passed {stats.passed}, failed {stats.failed} (success {rate}, {stats.retries} "
        f"retries), {stats.feedback_sent} outcomes reported, {stats.errors} errors"
    )
    console.print(f"model mix: {mix or '–'}")
    if stats.verdict_missing:
        console.print(f"[yellow]{stats.verdict_missing} attempts had no simulator verdict[/yellow] "
                      "(x-sim-task not forwarded?): outcomes were drawn at random")
    if stats.last_error:
        console.print(f"[yellow]last error:[/yellow] {stats.last_error}")
    if after is not None:
        new_requests = after.get("requests", 0) - (before or {}).get("requests", 0)
        new_outcomes = after.get("outcomes", 0) - (before or {}).get("outcomes", 0)
        state = "all stored" if new_requests >= stats.requests and new_outcomes >= stats.feedback_sent \
            else "still arriving"
        success = after.get("success_rate")
        console.print(
            f"ClickHouse ({state}): {new_requests} of this run's requests, {new_outcomes} outcomes; last hour "
            f"{after.get('requests', 0)} requests, cost ${after.get('cost_usd') or 0:.4f}, saved "
            f"${after.get('saved_usd') or 0:.4f} vs the frontier default "
            f"({after.get('frontier_model') or '?'}), success "
            f"{'–' if success is None else f'{100 * success:.0f}%'}"
        )
    else:
        console.print("ClickHouse: no analytics at this address (GET /v1/analytics/summary failed)")
    console.print(f"dashboard: {base_url}/dashboard   report: weave-router report --since 1h")


async def run_demo_async(
    base_url: str,
    sessions: int = 24,
    concurrency: int = 4,
    seed: int | None = None,
    max_tool_rounds: int = 2,
    feedback: bool = True,
    console: Console | None = None,
    timeout_s: float = 60.0,
    wait_stored_s: float = 15.0,
) -> dict[str, Any]:
    """Run ``sessions`` sessions, then wait (at most ``wait_stored_s``) until ClickHouse has them all."""
    import httpx

    base_url = base_url.rstrip("/")
    console = console or Console()
    rng = random.Random(seed)
    run_id = uuid.UUID(int=rng.getrandbits(128)).hex[:8]
    stats = DemoStats()
    gate = asyncio.Semaphore(max(1, concurrency))
    started = time.perf_counter()

    async with httpx.AsyncClient(timeout=timeout_s) as client:
        before = await _stored(client, base_url)

        async def one(i: int) -> None:
            async with gate:
                await _session(client, base_url, i, run_id, random.Random(rng.random()), stats, max_tool_rounds,
                               feedback)

        tasks = [asyncio.create_task(one(i)) for i in range(sessions)]
        if console.is_terminal:  # a live table on a terminal; in a pipe or a log, only the final one
            with Live(_table(stats, sessions, 0.0), console=console, refresh_per_second=4) as live:
                for fut in asyncio.as_completed(tasks):
                    await fut
                    live.update(_table(stats, sessions, time.perf_counter() - started))
        else:
            await asyncio.gather(*tasks)
            console.print(_table(stats, sessions, time.perf_counter() - started))
        elapsed = time.perf_counter() - started
        after = await _wait_stored(client, base_url, before, stats, wait_stored_s) if before is not None else None
    result = stats.as_dict()
    result["elapsed_s"] = elapsed
    result["analytics"] = after
    _print_summary(console, base_url, stats, elapsed, before, after)
    return result


def run_demo(base_url: str, sessions: int = 24, **kwargs: Any) -> dict[str, Any]:
    """Run the demo to completion (blocking); returns the figures it printed."""
    return asyncio.run(run_demo_async(base_url, sessions, **kwargs))
