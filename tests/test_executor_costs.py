"""What the executor costs the API server per object: the writes a create needs and no more,
nothing for a look that finds nothing new, children written at once.

The real `Reconciler`, `Cache` and `Runtime` against the in-memory API of
tests/fake_cluster.py, with a clock the test moves.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

import pytest

from conftest import llmd
from fake_cluster import Controllers, FakeApi, operator
from kubellm import metrics
from kubellm.controller.reconcile import (
    FULL_LOOK_SECONDS,
    STATUS_BATCH_SECONDS,
    ReconcileError,
)
from kubellm.controller.runtime import Runtime
from kubellm.k8s.client import ApiError
from test_convergence import Clock

KEY = ("team-a", "demo")


class World:
    """One LLMDeployment, the controllers around it, and one operator."""

    def __init__(self, api: FakeApi | None = None, replicas: int = 2) -> None:
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.api = api or FakeApi()
        self.controllers = Controllers(self.api)
        self.cache, self.reconciler = operator(self.api, self.clock)
        self.body = llmd(replicas=replicas)
        self.body["metadata"] = {"name": "demo", "namespace": "team-a"}
        self.api.put_object(self.body, manager="kubectl")
        self.deliver()

    def deliver(self) -> None:
        pending, self.api.pending = self.api.pending, []
        for kind, event, body in pending:
            self.cache.observe(kind, event, body)
            if kind == "LLMDeployment" and event != "DELETED":
                self.reconciler.saw(body)

    def reconcile(self) -> float | None:
        return self.loop.run_until_complete(self.reconciler.reconcile(KEY))

    def later(self, seconds: float) -> None:
        """Time passes; the controllers take one step; the watch catches up."""
        self.clock.seconds += seconds
        self.controllers.step()
        self.deliver()

    def status(self) -> Mapping[str, Any]:
        status: Mapping[str, Any] = self.api.objects[("LLMDeployment", *KEY)]["status"]
        return status

    def children(self) -> int:
        """Children the operator made (the controllers made the pods)."""
        return sum(1 for kind, *_ in self.api.objects if kind not in ("LLMDeployment", "Pod"))


def test_a_create_costs_its_children_two_status_writes_and_one_event() -> None:
    world = World()
    world.reconcile()  # status (no pods yet), the children, one Event
    world.deliver()
    world.later(1)  # pods created and scheduled: the engine loads the model
    world.reconcile()
    world.later(1)  # pods Ready
    world.reconcile()
    world.deliver()
    assert world.status()["phase"] == "Ready"
    assert dict(world.api.writes) == {"apply": world.children(), "status": 2, "event": 1}


def test_a_status_that_only_tells_progress_waits_for_the_batch_then_is_written() -> None:
    world = World()
    world.reconcile()
    world.deliver()
    written = world.api.writes["status"]
    world.later(1)
    after = world.reconcile()
    assert world.api.writes["status"] == written  # held: only how far the pods have come
    assert after is not None and after <= STATUS_BATCH_SECONDS - 1
    world.clock.seconds += after
    world.reconcile()
    assert world.api.writes["status"] == written + 1
    assert "loading the model" in world.status()["conditions"][0]["message"]


def test_a_look_that_finds_nothing_new_is_skipped_until_something_changes() -> None:
    world = World()
    for _ in range(3):
        world.reconcile()
        world.later(1)
    world.reconcile()  # converged: writes nothing, remembers what it read
    writes = sum(world.api.writes.values())
    skipped = metrics.RECONCILES_UNCHANGED._value.get()
    after = world.reconcile()
    assert metrics.RECONCILES_UNCHANGED._value.get() == skipped + 1
    assert after is not None and after > FULL_LOOK_SECONDS - 5
    assert sum(world.api.writes.values()) == writes

    world.api.remove(("Service", "team-a", "demo"))  # an event: the next look is full
    world.deliver()
    world.reconcile()
    assert ("Service", "team-a", "demo") in world.api.objects
    assert metrics.RECONCILES_UNCHANGED._value.get() == skipped + 1

    world.deliver()
    world.reconcile()
    skipped = metrics.RECONCILES_UNCHANGED._value.get()
    world.clock.seconds += FULL_LOOK_SECONDS  # a full reconcile still runs now and then
    world.reconcile()
    assert metrics.RECONCILES_UNCHANGED._value.get() == skipped


def test_the_echo_of_our_own_status_write_queues_nothing() -> None:
    world = World()
    runtime = Runtime(world.reconciler, world.cache, client=None)  # type: ignore[arg-type]
    world.reconcile()
    owner = copy.deepcopy(world.api.objects[("LLMDeployment", *KEY)])
    runtime.observe("LLMDeployment", "MODIFIED", owner)
    assert len(runtime.queue) == 0
    owner["metadata"]["resourceVersion"] = "999"  # someone else's change
    runtime.observe("LLMDeployment", "MODIFIED", owner)
    assert runtime.queue.due(KEY) is not None


class SlowApi(FakeApi):
    """Each apply takes a few turns of the event loop; counts how many run at once."""

    def __init__(self, refuse: str | None = None) -> None:
        super().__init__()
        self.in_flight = self.most = 0
        self.refuse = refuse

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        self.in_flight -= 1
        if obj["kind"] == self.refuse:
            raise ApiError(422, f"{obj['kind']} is invalid", "Invalid", ("spec: invalid",))
        return await super().apply(obj)


def test_the_children_of_one_reconcile_are_written_at_once() -> None:
    api = SlowApi()
    world = World(api)
    world.reconcile()
    assert api.most == world.children()


def test_a_refused_child_fails_the_reconcile_once_the_others_are_written() -> None:
    api = SlowApi(refuse="PodDisruptionBudget")
    world = World(api)
    with pytest.raises(ReconcileError):
        world.reconcile()
    kinds = {kind for kind, *_ in api.objects}
    assert {"ControllerRevision", "Deployment", "Service"} <= kinds
    assert "PodDisruptionBudget" not in kinds
    valid = next(c for c in world.status()["conditions"] if c["type"] == "SpecValid")
    assert (valid["status"], valid["reason"]) == ("False", "RefusedByAPIServer")
