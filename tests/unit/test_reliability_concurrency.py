"""Concurrency cap: requests beyond the cap wait in line, beyond the line they get a fast 503/529."""

from __future__ import annotations

import asyncio

import pytest

from streams.reliability.concurrency import ConcurrencyLimiter, Overloaded


async def test_fast_path_and_release() -> None:
    lim = ConcurrencyLimiter(2, max_queue=0)
    async with lim.slot(), lim.slot():
        assert lim.active == 2
        with pytest.raises(Overloaded) as exc:
            await lim.acquire()
        assert exc.value.status == 503 and exc.value.reason == "queue_full"
        assert (b"retry-after", b"1") in exc.value.headers()
    assert lim.active == 0


async def test_queues_then_rejects_under_overload_without_deadlock() -> None:
    lim = ConcurrencyLimiter(4, max_queue=8, queue_timeout_s=5.0, overload_status=529)
    gate = asyncio.Event()
    served: list[int] = []
    rejected: list[Overloaded] = []

    async def request(i: int) -> None:
        try:
            async with lim.slot():
                await gate.wait()
                served.append(i)
        except Overloaded as exc:
            rejected.append(exc)

    tasks = [asyncio.create_task(request(i)) for i in range(40)]
    await asyncio.sleep(0.01)
    assert lim.active == 4 and lim.queued == 8
    assert len(rejected) == 28  # refused at once, not after a timeout
    assert all(r.status == 529 for r in rejected)
    assert rejected[0].error_type_for("anthropic_messages") == "overloaded_error"
    gate.set()
    async with asyncio.timeout(2):
        await asyncio.gather(*tasks)
    assert sorted(served) == list(range(12))  # the 4 running and the 8 queued, all served
    assert lim.active == 0 and lim.queued == 0
    assert lim.snapshot()["rejected_total"] == 28


async def test_waiters_are_served_in_order() -> None:
    lim = ConcurrencyLimiter(1, max_queue=10)
    order: list[int] = []
    await lim.acquire()

    async def waiter(i: int) -> None:
        async with lim.slot():
            order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    await asyncio.sleep(0)
    lim.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_queue_timeout_rejects_and_frees_the_place() -> None:
    lim = ConcurrencyLimiter(1, max_queue=1, queue_timeout_s=0.05)
    await lim.acquire()
    with pytest.raises(Overloaded) as exc:
        await lim.acquire()
    assert exc.value.reason == "queue_timeout" and "0.05 s" in exc.value.message
    assert lim.queued == 0
    lim.release()
    assert lim.active == 0
    await lim.acquire()  # capacity is back
    assert lim.active == 1


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    lim = ConcurrencyLimiter(1, max_queue=5)
    await lim.acquire()
    t = asyncio.create_task(lim.acquire())
    await asyncio.sleep(0)
    lim.release()  # hands the slot to t ...
    t.cancel()  # ... which is cancelled before it runs: the slot must come back
    with pytest.raises(asyncio.CancelledError):
        await t
    assert lim.active == 0 and lim.queued == 0


async def test_many_cycles_leave_no_residue() -> None:
    lim = ConcurrencyLimiter(3, max_queue=3, queue_timeout_s=0.5)

    async def req() -> None:
        try:
            async with lim.slot():
                await asyncio.sleep(0)
        except Overloaded:
            pass

    for _ in range(20):
        await asyncio.gather(*(req() for _ in range(10)))
    assert lim.active == 0 and lim.queued == 0
