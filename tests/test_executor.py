"""The executor's failure paths, one scenario each, against the in-memory API.

Each scenario reproduces a finding of the executor review (issue 9) and shows what the
executor does now: stale reads never act, a status write carries a precondition, failures
become conditions (once), Events never abort a reconcile, optional APIs appear without a
restart, quiet objects are not polled, and a stable revision is rebuilt from its snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from conftest import llmd
from fake_cluster import Controllers, FakeApi
from kubellm.controller.cache import Cache
from kubellm.controller.reconcile import (
    FULL_LOOK_SECONDS,
    STALE_RETRY_SECONDS,
    ReconcileError,
    Reconciler,
)
from kubellm.k8s.client import ApiError
from kubellm.render.context import LWS_API

NAMESPACE, NAME = "team-a", "demo"
KEY = (NAMESPACE, NAME)


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return datetime(2026, 3, 1, 12, tzinfo=UTC) + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds


class World:
    """The fake API and controllers, and one operator with its cache."""

    def __init__(self, apis: frozenset[str] = frozenset(), **spec: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.api = FakeApi()
        self.controllers = Controllers(self.api)
        self.clock = Clock()
        self.apis = apis
        self.restart()
        self.update(**spec)
        self.deliver()

    def restart(self) -> None:
        self.cache = Cache(clock=self.clock.monotonic)
        self.reconciler = Reconciler(
            self.api, self.cache, self.apis, clock=self.clock.now, monotonic=self.clock.monotonic
        )
        for key, body in self.api.objects.items():
            self.cache.observe(key[0], None, copy.deepcopy(body))

    def update(self, **spec: Any) -> None:
        obj = llmd(**spec)
        obj["metadata"] = {"name": NAME, "namespace": NAMESPACE}
        current = self.api.objects.get(("LLMDeployment", NAMESPACE, NAME))
        if current:
            obj["metadata"] = copy.deepcopy(current["metadata"])
        self.api.put_object(obj, manager="kubectl")

    def deliver(self) -> None:
        pending, self.api.pending = self.api.pending, []
        for kind, event, body in pending:
            self.cache.observe(kind, event, body)
            if kind == "LLMDeployment":
                self.reconciler.saw(body)

    def reconcile(self) -> float | None:
        return self.loop.run_until_complete(self.reconciler.reconcile(KEY))

    def settle(self, rounds: int = 12, seconds: float = 5) -> None:
        """Controllers, watch and operator until nothing moves."""
        for _ in range(rounds):
            self.controllers.step()
            self.deliver()
            with contextlib.suppress(ReconcileError):
                self.reconcile()
            self.deliver()
            self.clock.seconds += seconds

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.api.objects[("LLMDeployment", NAMESPACE, NAME)]["status"]
        return status

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == kind)

    def deployments(self) -> dict[str, dict[str, Any]]:
        return {k[2]: o for k, o in self.api.objects.items() if k[0] == "Deployment"}

    def writes(self) -> int:
        return sum(self.api.writes.values())


QUICK = {"canary": {"steps": [{"weight": 50}]}, "progressDeadline": "60s"}


def test_a_body_older_than_our_own_status_write_never_acts() -> None:
    """Review finding: a generation-1 body deleted a running canary and wrote `Superseded`."""
    world = World(rollout=QUICK)
    world.settle()
    world.update(model={"name": "Qwen/Qwen2.5-7B-Instruct"}, rollout=QUICK)
    world.deliver()
    world.reconcile()  # starts the canary: status written first, then its children
    assert world.status["rollout"]["canaryRevision"]
    writes = world.writes()
    assert world.reconcile() == STALE_RETRY_SECONDS  # the cache still has the older body
    assert world.writes() == writes
    world.deliver()
    world.settle()
    assert world.status["history"][0]["result"] == "Succeeded"


def test_a_status_computed_from_a_stale_read_is_refused_and_touches_no_child() -> None:
    world = World(rollout=QUICK)
    world.settle()
    world.update(model={"name": "Qwen/Qwen2.5-7B-Instruct"}, rollout=QUICK)  # not delivered
    world.api.pending.clear()  # the watch lost it: only a precondition can tell
    world.reconciler.written.clear()
    before = copy.deepcopy(world.deployments())
    world.update(replicas=3, rollout=QUICK)  # and another change, also unseen
    world.api.pending = [e for e in world.api.pending if e[0] != "LLMDeployment"]
    stale = copy.deepcopy(world.cache.owner(KEY))
    assert stale is not None
    stale["status"] = {**stale["status"], "observedGeneration": 0}  # make the status differ
    world.cache.observe("LLMDeployment", "MODIFIED", stale)
    assert world.reconcile() == STALE_RETRY_SECONDS  # the write's precondition failed
    assert world.deployments() == before


def test_a_missing_optional_api_is_a_condition_and_is_picked_up_without_a_restart() -> None:
    """Review finding: a multi-node spec without LeaderWorkerSet retried forever, silently."""
    model = {"name": "meta-llama/Llama-3.1-405B-Instruct"}
    world = World(model=model, engine={"type": "vllm", "maxContextLength": 8192})
    world.settle(rounds=2)
    valid = world.condition("SpecValid")
    assert valid["status"] == "False" and "leaderworkerset.x-k8s.io" in valid["message"]
    assert [e for e in world.api.events if e[1] == "InvalidSpec"] and not world.deployments()
    world.reconciler.apis = frozenset({LWS_API})  # the ticker rediscovered the APIs
    world.settle(rounds=2)
    assert world.condition("SpecValid")["status"] == "True"
    assert [k for k in world.api.objects if k[0] == "LeaderWorkerSet"]


def test_a_child_the_api_server_refuses_is_a_condition_reported_once() -> None:
    """Review finding: free-form input failed with a 422 halfway through the apply loop."""
    world = World()
    original = world.api.apply

    async def refusing(obj: Any) -> dict[str, Any]:
        if obj["kind"] == "Deployment":
            cause = "spec.template.spec.containers[0].env[0].valueFrom: Invalid value"
            raise ApiError(422, "Deployment is invalid", "Invalid", (cause,))
        return await original(obj)

    world.api.apply = refusing  # type: ignore[method-assign]
    with pytest.raises(ReconcileError):
        world.reconcile()
    valid = world.condition("SpecValid")
    assert (valid["status"], valid["reason"]) == ("False", "RefusedByAPIServer")
    assert "env[0].valueFrom" in valid["message"]
    refusals = [e for e in world.api.events if e[1] == "InvalidSpec"]
    assert len(refusals) == 1
    world.deliver()
    writes = world.writes()
    for _ in range(3):  # the same refusal again and again: no status flapping, no new Event
        with pytest.raises(ReconcileError):
            world.reconcile()
        world.deliver()
    assert world.writes() == writes  # nothing but the refused apply itself
    world.api.apply = original  # type: ignore[method-assign]
    world.settle()
    assert world.condition("SpecValid")["status"] == "True"


def test_failing_events_never_abort_a_reconcile() -> None:
    """Review finding: a failed Event (timeout, non-JSON body) aborted after partial applies."""
    world = World()
    world.api.fail_events = True
    world.settle()
    assert world.status["phase"] == "Ready" and world.deployments()
    assert world.api.events == []


def not_before_the_resync(after: float | None) -> bool:
    """No look of its own (None), or only the full look of a quiet object, minutes away."""
    return after is None or after > FULL_LOOK_SECONDS / 5


def test_a_quiet_or_degraded_object_waits_for_the_resync() -> None:
    """Review finding: Degraded or RolledBack objects were re-reconciled every 5 s forever."""
    world = World(rollout=QUICK)
    world.settle()
    assert not_before_the_resync(world.reconcile())
    world.update(scheduling={"nodeSelector": {"pool": "nowhere"}}, rollout=QUICK)
    world.settle(rounds=20, seconds=10)
    assert world.status["history"][0]["result"] == "RolledBack"
    assert world.condition("Degraded")["reason"] == "ProgressDeadlineExceeded"
    assert not_before_the_resync(world.reconcile())


def test_a_rollback_rebuilds_the_deleted_stable_from_its_snapshot() -> None:
    """Review finding: only the spec's revision could be rendered: zero serving pods."""
    world = World(rollout=QUICK)
    world.settle()
    [stable] = world.deployments()
    template = copy.deepcopy(world.deployments()[stable]["spec"]["template"])
    world.update(scheduling={"nodeSelector": {"pool": "nowhere"}}, rollout=QUICK)
    world.settle(rounds=1)
    world.api.remove(("Deployment", NAMESPACE, stable))
    world.settle(rounds=20, seconds=10)
    assert world.status["history"][0]["result"] == "RolledBack"
    assert list(world.deployments()) == [stable]
    assert world.deployments()[stable]["spec"]["template"] == template
    assert world.status["readyReplicas"] == 2


def test_a_stable_whose_literal_env_changed_is_rebuilt_from_its_running_workload() -> None:
    env = {"type": "vllm", "maxContextLength": 8192, "env": [{"name": "MODE", "value": "a"}]}
    world = World(engine=env, rollout=QUICK)
    world.settle()
    [stable] = world.deployments()
    changed = {**env, "env": [{"name": "MODE", "value": "b"}]}
    world.update(engine=changed, scheduling={"nodeSelector": {"pool": "nowhere"}}, rollout=QUICK)
    world.settle(rounds=20, seconds=10)
    container = world.deployments()[stable]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "MODE", "value": "a"} in container["env"]
    assert world.status["history"][0]["result"] == "RolledBack"
    assert (
        "value"
        not in str(
            world.api.objects[("ControllerRevision", NAMESPACE, stable)]["data"]["engine"]["env"][
                0
            ]["value"]
        ).split(":")[0]
    )


def serving_ready(world: World) -> int:
    return sum(
        1
        for (kind, _, _), pod in world.api.objects.items()
        if kind == "Pod"
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"])
    )


def test_a_stale_ready_count_never_drops_a_superseded_canary_that_still_serves() -> None:
    """e2e finding (20 spec updates in 10 s): the stable had just been scaled down while its
    Deployment still reported the pod gone as Ready, so a superseded canary's only Ready pod
    was deleted and one serving pod was lost."""
    world = World(rollout=QUICK)
    world.settle()
    world.update(model={"name": "Qwen/Qwen2.5-7B-Instruct"}, rollout=QUICK)
    world.deliver()
    canary = ""
    for _ in range(10):  # until the canary's step pod is Ready and the stable gave one up
        world.reconcile()
        world.deliver()
        canary = world.status["rollout"].get("canaryRevision") or canary
        stable = world.status["rollout"]["stableRevision"]
        if world.deployments()[f"{NAME}-{stable}"]["spec"]["replicas"] == 1:
            break
        world.controllers.step()
        world.deliver()
        world.clock.seconds += 1
    assert canary and serving_ready(world) == 3  # the stable was just told to give one up
    world.controllers.step(report=False)  # the stable's pod goes; its status still counts it
    world.deliver()
    assert serving_ready(world) == 2
    world.update(model={"name": "mistralai/Mistral-7B-Instruct-v0.3"}, rollout=QUICK)
    world.deliver()
    world.reconcile()
    world.deliver()
    assert f"{NAME}-{canary}" in world.deployments()  # still serving: it drains, not goes
    lowest = serving_ready(world)
    for _ in range(12):
        world.controllers.step()
        world.deliver()
        lowest = min(lowest, serving_ready(world))
        with contextlib.suppress(ReconcileError):
            world.reconcile()
        world.deliver()
        world.clock.seconds += 5
    assert lowest == 2
    assert world.status["history"][0]["result"] == "Succeeded"


def test_a_spec_change_whose_watch_event_hides_our_status_write_acts_at_once() -> None:
    """Fault bench finding (20 spec updates in 10 s): Kopf hands over only the newest event of
    a burst, so the echo of our own status write can be skipped; the newer body was then taken
    for a stale one for 30 s, and the last spec change waited that long."""
    world = World(rollout=QUICK)
    world.settle()
    world.update(model={"name": "Qwen/Qwen2.5-7B-Instruct"}, rollout=QUICK)
    world.deliver()
    world.reconcile()  # starts the canary: our status write is not seen yet
    assert world.reconciler.written
    world.update(model={"name": "mistralai/Mistral-7B-Instruct-v0.3"}, rollout=QUICK)
    # The watch collapses the burst: only the newest body arrives.
    newest = [e for e in world.api.pending if e[0] == "LLMDeployment"][-1]
    world.api.pending = [e for e in world.api.pending if e[0] != "LLMDeployment"] + [newest]
    world.deliver()
    generation = world.api.objects[("LLMDeployment", NAMESPACE, NAME)]["metadata"]["generation"]
    assert world.reconcile() != STALE_RETRY_SECONDS
    assert world.status["observedGeneration"] == generation
