"""One replica's continuous batching in real time, driven by the capacity model.

Requests wait for a batch slot (the engine's sequence limit, and KV cache for their prompt and
output), are prefilled one at a time while the running sequences pause (a prefill holds the
GPU), then decode together at one token per `decode_step_seconds(batch, context)` each: the
more sequences, the slower each one. Nothing spins: one timer fires at the next prefill end or
completion, and progress in between is computed, so a replica costs no CPU while it "works".
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kubellm.simulator.metrics import Outcome
from kubellm.sizing.capacity import ReplicaCapacity

DONE = 1e-9  # tokens left below which a sequence has finished (float progress)


@dataclass
class _Sequence:
    prompt_tokens: int
    output_tokens: int
    arrived: float
    done: asyncio.Future[Outcome]
    generated: float = 0.0
    first_token_at: float | None = None

    @property
    def context(self) -> float:
        return self.prompt_tokens + self.generated

    @property
    def reserved(self) -> int:
        return self.prompt_tokens + self.output_tokens


@dataclass
class BatchingEngine:
    """Admission, prefill and decode of one replica; `generate` is the whole API."""

    capacity: ReplicaCapacity
    on_load: Callable[[int, int, float], None] = lambda running, waiting, kv: None
    waiting: deque[_Sequence] = field(default_factory=deque)
    prefilling: deque[_Sequence] = field(default_factory=deque)  # head: on the GPU now
    running: list[_Sequence] = field(default_factory=list)
    prefill_end: float = 0.0
    last: float = -1.0
    timer: asyncio.TimerHandle | None = None

    async def generate(self, prompt_tokens: int, output_tokens: int) -> Outcome:
        """Serve one request; returns when its last token is out."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._advance(now)
        sequence = _Sequence(
            max(1, prompt_tokens), max(1, output_tokens), now, loop.create_future()
        )
        self.waiting.append(sequence)
        self._admit(now)
        self._changed(loop)
        return await sequence.done

    @property
    def kv_usage(self) -> float:
        held = sum(s.context for s in self.running) + sum(s.prompt_tokens for s in self.prefilling)
        return min(1.0, held / max(1, self.capacity.kv_capacity_tokens))

    def _reserved(self) -> int:
        return sum(s.reserved for s in self.running) + sum(s.reserved for s in self.prefilling)

    def _admit(self, now: float) -> None:
        """Move waiting requests into free batch slots (FIFO, as vLLM's scheduler does)."""
        limit = self.capacity.max_sequences
        while self.waiting:
            head = self.waiting[0]
            busy = len(self.running) + len(self.prefilling)
            room = self._reserved() + head.reserved <= self.capacity.kv_capacity_tokens
            if busy >= limit or (busy and not room):
                return
            self.waiting.popleft()
            if not self.prefilling:
                self.prefill_end = now + self.capacity.prefill_seconds(head.prompt_tokens)
            self.prefilling.append(head)

    def _advance(self, now: float) -> None:
        """Progress prefills and decode steps from `self.last` to `now`."""
        t = self.last if self.last >= 0 else now
        while t < now:
            if self.prefilling:
                if self.prefill_end > now:
                    break  # the GPU prefills until after now; decoding waits
                t = self.prefill_end
                self._first_token(self.prefilling.popleft(), t)
                if self.prefilling:
                    head = self.prefilling[0]
                    self.prefill_end = t + self.capacity.prefill_seconds(head.prompt_tokens)
                continue
            if not self.running:
                break
            step = self._step_seconds()
            left = min(s.output_tokens - s.generated for s in self.running)
            finish = t + left * step
            until = min(now, finish)
            progress = (until - t) / step
            for sequence in self.running:
                sequence.generated += progress
            t = until
            if finish <= now:
                self._complete(t)
        self.last = now

    def _step_seconds(self) -> float:
        context = int(sum(s.context for s in self.running))
        return self.capacity.decode_step_seconds(len(self.running), context)

    def _first_token(self, sequence: _Sequence, at: float) -> None:
        sequence.first_token_at = at
        sequence.generated = 1.0
        self.running.append(sequence)
        self._complete(at)

    def _complete(self, at: float) -> None:
        for sequence in [s for s in self.running if s.output_tokens - s.generated <= DONE]:
            self.running.remove(sequence)
            first = sequence.first_token_at if sequence.first_token_at is not None else at
            outcome = Outcome(
                ok=True,
                prompt_tokens=sequence.prompt_tokens,
                generated_tokens=sequence.output_tokens,
                time_to_first_token=first - sequence.arrived,
                latency=at - sequence.arrived,
            )
            if not sequence.done.done():
                sequence.done.set_result(outcome)
        self._admit(at)

    def _next_event(self) -> float | None:
        if self.prefilling:
            return self.prefill_end
        if self.running:
            left = min(s.output_tokens - s.generated for s in self.running)
            return self.last + left * self._step_seconds()
        return None

    def _changed(self, loop: asyncio.AbstractEventLoop) -> None:
        """Report the new load and set the one timer for the next event."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        when = self._next_event()
        if when is not None:
            self.timer = loop.call_at(max(when, loop.time()), self._wake, loop)
        self.on_load(len(self.running) + len(self.prefilling), len(self.waiting), self.kv_usage)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        self.timer = None
        self._advance(loop.time())
        self._changed(loop)
