"""The gateway's recent-requests store (bounded by count and age) and the stream events that carry a
request's cost (``usage.cost_usd`` put into the final usage event, everything else left as it was)."""

from __future__ import annotations

import gc
import json
import tracemalloc

import pytest

from streams.events.ids import new_id
from streams.ingress.recent import RecentRequests
from streams.ingress.stream_cost import cost_comment, might_carry_usage, tag_usage
from streams.ingress.trace import Trace


def trace(request_id: str | None = None, **fields: object) -> Trace:
    """A trace as the gateway builds one: fresh ids, a session id, names shared with the settings."""
    values: dict[str, object] = {
        "event_id": new_id(), "ts_ms": 1_796_000_000_000, "request_id": request_id or new_id(),
        "session_id": "claude-code-" + new_id()[:12], "decision_id": new_id(), "client_dialect": "anthropic_messages",
        "provider_dialect": "openai_chat", "model": "m-chat", "provider": "p-chat", "policy": "bandit",
        "status": 200, "stream": True, "latency_ms": 812.5, "ttft_ms": 240.1, "overhead_ms": 0.61,
        "input_tokens": 41_873, "output_tokens": 912, "cached_tokens": 40_960, "cost_usd": 0.0123456,
        "baseline_cost_usd": 0.21, "task_type": "debugging", "client": "claude_code", "key_id": "cfg:dev",
    }
    values.update(fields)
    return Trace(**values)  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keeps_the_last_n_in_arrival_order() -> None:
    store = RecentRequests(max_entries=3, max_age_s=60)
    ids = [f"r{i}" for i in range(5)]
    for rid in ids:
        store.add(trace(rid), reason="cheapest that passes")
    assert len(store) == 3
    assert [store.get(rid) is not None for rid in ids] == [False, False, True, True, True]
    entry = store.get("r4")
    assert entry is not None and entry.trace.request_id == "r4" and entry.reason == "cheapest that passes"


def test_forgets_what_is_older_than_the_age_bound() -> None:
    clock = Clock()
    store = RecentRequests(max_entries=100, max_age_s=60, clock=clock)
    store.add(trace("old"))
    clock.now += 30
    store.add(trace("young"))
    clock.now += 31  # "old" is 61 s old, "young" 31 s
    assert store.get("old") is None and store.get("young") is not None
    assert len(store) == 1  # dropped, not only hidden
    clock.now += 30
    assert store.get("young") is None and len(store) == 0


def test_a_request_id_seen_again_replaces_its_entry_and_is_the_newest() -> None:
    store = RecentRequests(max_entries=2, max_age_s=60)
    store.add(trace("a", cost_usd=1.0))
    store.add(trace("b"))
    store.add(trace("a", cost_usd=2.0))  # a Kafka redelivery of the same request
    store.add(trace("c"))  # evicts the oldest: b, not the re-added a
    a = store.get("a")
    assert a is not None and a.trace.cost_usd == 2.0
    assert store.get("b") is None and store.get("c") is not None


def test_a_zero_sized_store_keeps_nothing() -> None:
    store = RecentRequests(max_entries=0)
    store.add(trace("a"))
    assert len(store) == 0 and store.get("a") is None
    with pytest.raises(ValueError):
        RecentRequests(max_entries=-1)


def test_memory_per_entry_stays_small() -> None:
    """The figure the module quotes: what 10,000 entries hold (trace, its strings, the dict slot)."""
    n = 10_000
    traces = [trace() for _ in range(n)]  # built by the request path anyway; kept alive by the store
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        store = RecentRequests(max_entries=n)
        for t in traces:
            store.add(t, reason="cheapest model above the confidence threshold")
        store_only = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    del traces
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        store = RecentRequests(max_entries=n)
        for _ in range(n):
            store.add(trace(), reason="cheapest model above the confidence threshold")
        whole = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert len(store) == n
    per_entry, per_entry_whole = store_only / n, whole / n
    print(f"\nrecent requests: {per_entry:.0f} B/entry of index, {per_entry_whole:.0f} B/entry with the trace "
          f"kept alive ({whole / 1e6:.1f} MB for {n})")
    assert per_entry < 300
    assert per_entry_whole < 1200  # ~7 MB measured at the default cap of 10,000 (a 12 MB ceiling)


# --- the cost in the final usage event -------------------------------------------------------------


def test_chat_usage_chunk_gets_the_cost_and_other_chunks_stay_byte_for_byte() -> None:
    delta = b'data: {"choices":[{"delta":{"content":"\\"usage\\":{ hi"}}],"usage":null}\n\n'
    final = (b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
             b"data: [DONE]\n\n")
    assert not might_carry_usage("openai_chat", delta)  # an escaped quote inside text is no marker
    assert tag_usage("openai_chat", delta, 0.5) == delta
    out = tag_usage("openai_chat", delta + final, 0.00012)
    assert out.startswith(delta) and out.endswith(b"data: [DONE]\n\n")
    usage = json.loads(out[len(delta):].split(b"\n\n")[0][6:])["usage"]
    assert usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost_usd": 0.00012}


def test_responses_and_anthropic_final_events_get_the_cost() -> None:
    done = b'event: response.completed\ndata: {"type":"response.completed","response":{"usage":{"input_tokens":1}}}\n\n'
    out = tag_usage("openai_responses", done, 0.25)
    assert out.startswith(b"event: response.completed\ndata: ") and out.endswith(b"\n\n")
    assert json.loads(out.split(b"\n")[1][6:])["response"]["usage"] == {"input_tokens": 1, "cost_usd": 0.25}
    failed_without_usage = b'data: {"type":"response.failed","response":{"usage":null}}\n\n'
    assert tag_usage("openai_responses", failed_without_usage, 0.25) == failed_without_usage

    # Data split over several lines is one value (the SSE rule): it goes back as one line.
    delta = b'event: message_delta\ndata: {"type":"message_delta",\ndata: "usage":{"output_tokens":7}}\n\n'
    out = tag_usage("anthropic_messages", delta, 1e-6)
    assert out.count(b"data:") == 1
    assert json.loads(out.split(b"\n")[1][6:])["usage"] == {"output_tokens": 7, "cost_usd": 1e-6}


def test_gemini_and_undecodable_events_are_left_alone() -> None:
    chunk = b'data: {"candidates":[],"usageMetadata":{"promptTokenCount":3}}\n\n'
    assert tag_usage("gemini", chunk, 0.5) == chunk
    broken = b'event: message_delta\ndata: {"type":"message_delta","usage":{\n\n'
    assert tag_usage("anthropic_messages", broken, 0.5) == broken


def test_the_closing_comment_reads_like_the_header() -> None:
    assert cost_comment("anthropic_messages", 0.000123456789) == b": x-router-cost-usd: 0.00012346\n\n"
    assert cost_comment("openai_chat", 0.0) == b": x-router-cost-usd: 0.00000000\n\n"
    assert cost_comment("gemini", 0.5) == b""  # Google's stream readers take any non-data line for JSON
