"""A work queue of LLMDeployments to reconcile, as controller-runtime keeps one.

Keys, not bodies: a worker reads the newest body when it starts, so a burst of events (20
spec updates in 10 s, every pod of a rollout turning Ready) costs one reconcile, never one
per event on an outdated body. A key is reconciled by one worker at a time; a key added
while it is being reconciled runs again afterwards. Each key is due at the earliest time
anyone asked for it; failures back off exponentially, per key, up to a bound, and no event
brings a key that is backing off forward.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Key = tuple[str, str]
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0


@dataclass
class WorkQueue:
    clock: Callable[[], float] = time.monotonic
    _due: dict[Key, float] = field(default_factory=dict)
    _heap: list[tuple[float, int, Key]] = field(default_factory=list)
    _active: set[Key] = field(default_factory=set)
    _again: dict[Key, float] = field(default_factory=dict)  # added while active
    _failures: dict[Key, int] = field(default_factory=dict)
    _not_before: dict[Key, float] = field(default_factory=dict)  # backing off until
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, key: Key, after: float = 0.0) -> None:
        """Reconcile `key` in `after` seconds, unless it is already due sooner."""
        due = max(self.clock() + max(0.0, after), self._not_before.get(key, 0.0))
        if key in self._active:
            self._again[key] = min(due, self._again.get(key, due))
            return
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))
        self._wake.set()

    async def get(self) -> Key:
        """The next key that is due, waiting as long as none is."""
        while True:
            while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                heapq.heappop(self._heap)  # superseded by an earlier time, or forgotten
            wait = self._heap[0][0] - self.clock() if self._heap else None
            if wait is not None and wait <= 0:
                _, _, key = heapq.heappop(self._heap)
                del self._due[key]
                self._active.add(key)
                return key
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    def done(self, key: Key, *, failed: bool = False, after: float | None = None) -> float | None:
        """Finish a reconcile: schedule the next (`after`), or a backoff when it failed.

        Returns the backoff used, if any.
        """
        self._active.discard(key)
        backoff = None
        if failed:
            count = self._failures.get(key, 0)
            self._failures[key] = count + 1
            backoff = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2**count)
            self._not_before[key] = self.clock() + backoff
            after = backoff
        else:
            self._failures.pop(key, None)
            self._not_before.pop(key, None)
        again = self._again.pop(key, None)
        if after is not None:
            self.add(key, after)
        if again is not None:
            self.add(key, max(0.0, again - self.clock()))
        return backoff

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)
        self._again.pop(key, None)
        self._failures.pop(key, None)
        self._not_before.pop(key, None)

    def clear(self) -> None:
        """Drop every pending key (this replica stopped leading)."""
        self._due.clear()
        self._heap.clear()
        self._again.clear()

    def due(self, key: Key) -> float | None:
        """When `key` is due (on the queue's clock), if it is queued."""
        return self._due.get(key)

    def __len__(self) -> int:
        return len(self._due)
