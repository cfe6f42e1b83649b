"""A small Python client for agents that talk to the router over Kafka instead of HTTP.

Example::

    async with RouterClient("127.0.0.1:9092") as client:
        body = {"model": "router/auto", "messages": [{"role": "user", "content": "fix the failing test"}]}
        resp = await client.request(body, "openai_chat", session_id="task-42")
        print(resp["status"], resp["model"], json.loads(resp["body"])["choices"][0]["message"]["content"])
        await client.send_outcome("task-42", success=True, tests_passed=12, tests_failed=0)

``request`` publishes a RouteRequest on router.requests (keyed by session) and awaits the RouteResponse
with the same ``request_id`` on the reply topic (``mode="decide"``: awaits the Decision on
router.decisions instead; nothing is executed). ``send_outcome`` publishes an Outcome the learner
credits to the session's decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from typing import Any, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streams.agents.feedback import build_outcome
from streams.agents.records import now_ms
from streams.agents.topics import Topics
from streams.events.codec import DecodeError, EventCodec

Mode = Literal["execute", "decide"]


class RouterClient:
    def __init__(self, bootstrap_servers: str, *, topics: Topics | None = None, reply_topic: str | None = None,
                 timeout_s: float = 120.0) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topics = topics or Topics()
        self.reply_topic = reply_topic or self.topics.responses
        self.timeout_s = timeout_s
        self.codec = EventCodec()
        self._producer: AIOKafkaProducer | None = None
        self._listeners: dict[str, tuple[AIOKafkaConsumer, asyncio.Task[None]]] = {}
        self._waiting: dict[tuple[str, str], asyncio.Future[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        if self._producer is None:
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=1)
            await self._producer.start()

    async def close(self) -> None:
        for consumer, task in self._listeners.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                await consumer.stop()
        self._listeners.clear()
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> RouterClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self,
        body: dict[str, Any] | str,
        dialect: str,
        session_id: str,
        mode: Mode = "execute",
        *,
        hints: dict[str, str] | None = None,
        request_id: str | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Publish a RouteRequest; return the RouteResponse (execute) or the Decision (decide) as a dict."""
        await self.start()
        assert self._producer is not None
        request_id = request_id or str(uuid.uuid4())
        listen_topic, record = (self.reply_topic, "RouteResponse") if mode == "execute" else (
            self.topics.decisions, "Decision")
        await self._listen(listen_topic)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[(record, request_id)] = fut
        event = {
            "event_id": str(uuid.uuid4()),
            "ts_ms": now_ms(),
            "request_id": request_id,
            "session_id": session_id,
            "dialect": dialect,
            "body": body if isinstance(body, str) else json.dumps(body),
            "hints": dict(hints or {}),
            "reply_topic": self.reply_topic,
            "mode": mode,
        }
        try:
            await self._producer.send_and_wait(self.topics.requests, self.codec.encode("RouteRequest", event),
                                               key=session_id.encode())
            return await asyncio.wait_for(fut, timeout_s or self.timeout_s)
        finally:
            self._waiting.pop((record, request_id), None)

    async def send_outcome(self, session_id: str, success: bool | float, **fields: Any) -> str:
        """Report a session's outcome (tests_passed, tests_failed, cost_usd, request_id, metadata …)."""
        await self.start()
        assert self._producer is not None
        payload: dict[str, Any] = {"session_id": session_id, **fields}
        if isinstance(success, bool):
            payload["success"] = success
        else:
            payload["score"] = success
        outcome = build_outcome(payload, source="kafka")
        await self._producer.send_and_wait(self.topics.outcomes, self.codec.encode("Outcome", outcome),
                                           key=session_id.encode())
        return str(outcome["event_id"])

    async def _listen(self, topic: str) -> None:
        async with self._lock:
            if topic in self._listeners:
                return
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, group_id=None,
                                        enable_auto_commit=False, fetch_max_wait_ms=50)
            await consumer.start()
            await consumer.topics()  # fetches the cluster metadata
            partitions = consumer.partitions_for_topic(topic) or {0}
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            # Only answers to requests sent from now on matter (older ones are filtered by id anyway).
            await consumer.seek_to_end(*tps)
            for tp in tps:
                await consumer.position(tp)
            self._listeners[topic] = (consumer, asyncio.create_task(self._dispatch(consumer)))

    async def _dispatch(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    try:
                        name, value = self.codec.decode(r.value)
                    except DecodeError:
                        continue
                    fut = self._waiting.get((name, value.get("request_id") or ""))
                    if fut is not None and not fut.done():
                        fut.set_result(value)
