"""The work queue: one reconcile per key at a time, the earliest time wins, backoff bounds."""

from __future__ import annotations

import asyncio

from kubellm.controller.queue import BACKOFF_MAX_SECONDS, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_a_burst_of_adds_is_one_reconcile_at_the_earliest_time() -> None:
    async def scenario() -> None:
        clock = Clock()
        queue = WorkQueue(clock=clock)
        for after in (5, 3, 9, 3):
            queue.add(("ns", "a"), after)
        assert len(queue) == 1
        clock.now = 3
        assert await queue.get() == ("ns", "a")
        assert len(queue) == 0

    run(scenario())


def test_a_key_added_while_it_runs_runs_again_afterwards_never_twice_at_once() -> None:
    async def scenario() -> None:
        clock = Clock()
        queue = WorkQueue(clock=clock)
        queue.add(("ns", "a"))
        key = await queue.get()
        queue.add(key)  # an event while it is reconciled
        assert len(queue) == 0  # not handed to a second worker
        queue.done(key, after=60)
        assert await asyncio.wait_for(queue.get(), 1) == key  # the event wins over the 60 s

    run(scenario())


def test_failures_back_off_exponentially_and_events_do_not_bypass_it() -> None:
    async def scenario() -> None:
        clock = Clock()
        queue = WorkQueue(clock=clock)
        key = ("ns", "a")
        backoffs = []
        for _ in range(12):
            queue.add(key)
            clock.now += 10**6
            got = await queue.get()
            backoffs.append(queue.done(got, failed=True))
            queue.add(key)  # an event right after the failure
            assert queue.due(key) == clock.now + (backoffs[-1] or 0)
        assert backoffs[:4] == [1, 2, 4, 8] and max(b or 0 for b in backoffs) == BACKOFF_MAX_SECONDS
        clock.now += 10**6
        queue.done(await queue.get())  # a success resets the backoff
        queue.add(key)
        assert queue.due(key) == clock.now

    run(scenario())


def test_forget_and_clear_drop_pending_keys() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add(("ns", "a"))
        queue.add(("ns", "b"))
        queue.forget(("ns", "a"))
        assert await asyncio.wait_for(queue.get(), 1) == ("ns", "b")
        queue.add(("ns", "c"))
        queue.clear()
        assert len(queue) == 0

    run(scenario())
