"""The executor against an in-memory API: converge from any state, never at the stable's cost.

Hypothesis drives random interleavings of spec updates, child deletions and edits, pods
turning Ready (or not: no node, no free GPU, a crashing image), operator restarts, failing
Events and, always, stale reads: watch events reach the operator's cache only when a rule
delivers them. The real `Reconciler` and `Cache` run; only the API server and the
controllers around kubellm are fakes (tests/fake_cluster.py).

Invariants, checked after every step: observedGeneration never goes back; the stable never
loses a pod to a canary the operator does not see Ready, except one while canary pods wait
for GPUs. At the end, with the watch caught up and the controllers run to a standstill:
everything the spec asks for exists exactly as rendered, and one more reconcile writes
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conftest import llmd
from fake_cluster import BROKEN_IMAGE, Controllers, FakeApi, operator
from kubellm.controller.children import SNAPSHOT_KIND
from kubellm.controller.drift import desired_digest
from kubellm.controller.reconcile import ReconcileError
from kubellm.render import RenderContext, render_children, resolve
from kubellm.rollout.targets import RevisionTarget

NAMESPACE, NAME = "team-a", "demo"
KEY = (NAMESPACE, NAME)
MODELS = (
    "meta-llama/Llama-3.1-8B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3",
)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.seconds = 0.0

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds


def spec_body(model: str, replicas: int, fault: str) -> dict[str, Any]:
    obj = llmd(
        model={"name": model},
        replicas=replicas,
        rollout={"canary": {"steps": [{"weight": 50}]}, "progressDeadline": "60s"},
    )
    if fault == "no-node":
        obj["spec"]["scheduling"] = {"nodeSelector": {"pool": "nowhere"}}
    if fault == "crash":
        obj["spec"]["engine"]["image"] = BROKEN_IMAGE
    obj["metadata"] = {"name": NAME, "namespace": NAMESPACE}
    return obj


class Convergence(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = Clock()
        self.api = FakeApi()
        self.controllers = Controllers(self.api)
        self.generations: list[int] = []
        self.start_operator()

    def start_operator(self) -> None:
        """A fresh operator process: empty memory, and a cache filled by a listing."""
        self.cache, self.reconciler = operator(self.api, self.clock, unavailable_grace=120)
        for kind, _, body in [(k[0], None, o) for k, o in self.api.objects.items()]:
            self.cache.observe(kind, None, copy.deepcopy(body))

    # ------------------------------------------------------------------ world

    @initialize(
        gpus=st.integers(3, 8),
        model=st.sampled_from(MODELS),
        replicas=st.integers(1, 3),
    )
    def create(self, gpus: int, model: str, replicas: int) -> None:
        self.controllers.gpus = gpus
        self.api.put_object(spec_body(model, replicas, "none"), manager="kubectl")

    @rule(
        model=st.sampled_from(MODELS),
        replicas=st.integers(1, 3),
        fault=st.sampled_from(("none", "none", "no-node", "crash")),
    )
    def update_spec(self, model: str, replicas: int, fault: str) -> None:
        current = self.api.objects[("LLMDeployment", NAMESPACE, NAME)]
        body = spec_body(model, replicas, fault)
        body["metadata"] = copy.deepcopy(current["metadata"])
        self.api.put_object(body, manager="kubectl")

    @rule(kind=st.sampled_from(("Deployment", "Service", "PodDisruptionBudget", SNAPSHOT_KIND)))
    def delete_child(self, kind: str) -> None:
        victims = [k for k in self.api.objects if k[0] == kind]
        if victims:
            self.api.remove(victims[0])

    @rule()
    def edit_service_port(self) -> None:
        if ("Service", NAMESPACE, NAME) in self.api.objects:
            self.api.edit_service_port(("Service", NAMESPACE, NAME))

    @rule(replicas=st.integers(0, 6))
    def scale_a_workload_by_hand(self, replicas: int) -> None:
        workloads = [k for k in self.api.objects if k[0] == "Deployment"]
        if workloads:
            self.api.edit_replicas(workloads[-1], replicas)

    @rule(report=st.booleans())
    def controllers_step(self, report: bool) -> None:
        """`report=False`: the pods change but the Deployments' status lags behind them."""
        self.controllers.step(report=report)

    @rule(seconds=st.sampled_from((1, 5, 30, 90)))
    def time_passes(self, seconds: int) -> None:
        self.clock.seconds += seconds

    @rule(failing=st.booleans())
    def events_fail(self, failing: bool) -> None:
        self.api.fail_events = failing

    @rule()
    def restart_operator(self) -> None:
        self.start_operator()

    # --------------------------------------------------------------- operator

    @rule(count=st.integers(1, 40))
    def deliver_watch_events(self, count: int) -> None:
        self.deliver(count)

    @rule()
    def watch_hands_over_only_the_newest_owner_event(self) -> None:
        """As Kopf does with a burst: the older events of the LLMDeployment are skipped."""
        owner = [e for e in self.api.pending if e[0] == "LLMDeployment"]
        if len(owner) > 1:
            skipped = {id(e) for e in owner[:-1]}
            self.api.pending = [e for e in self.api.pending if id(e) not in skipped]

    def deliver(self, count: int | None = None) -> None:
        ready, self.api.pending = (
            (self.api.pending, [])
            if count is None
            else (self.api.pending[:count], self.api.pending[count:])
        )
        for kind, event, body in ready:
            self.cache.observe(kind, event, body)
            if kind == "LLMDeployment" and event != "DELETED":
                self.reconciler.saw(body)

    @precondition(lambda self: self.cache.owner(KEY) is not None)
    @rule()
    def reconcile(self) -> None:
        before = self._stable_view()
        with contextlib.suppress(ReconcileError):  # in the status; the runtime backs off
            self.loop.run_until_complete(self.reconciler.reconcile(KEY))
        self._check_stable_kept(before)

    # ------------------------------------------------------------- invariants

    @invariant()
    def observed_generation_never_goes_back(self) -> None:
        owner = self.api.objects.get(("LLMDeployment", NAMESPACE, NAME))
        if owner is None:
            return
        observed = (owner.get("status") or {}).get("observedGeneration")
        if observed is not None:
            assert not self.generations or observed >= self.generations[-1]
            self.generations.append(observed)

    def _stable_view(self) -> dict[str, Any] | None:
        """What the operator knows before a reconcile: the stable, the canary, their pods."""
        body = self.cache.owner(KEY)
        rollout = ((body or {}).get("status") or {}).get("rollout") or {}
        stable, canary = rollout.get("stableRevision"), rollout.get("canaryRevision")
        if not (body and stable and canary):
            return None
        workloads = {c.revision: c for c in self.cache.children_of(KEY) if c.kind == "Deployment"}
        pods = [p for p in self.cache.pods_of(KEY) if p.revision == canary and not p.deleting]
        live = self.api.objects.get(("Deployment", NAMESPACE, f"{NAME}-{stable}"))
        return {
            "stable": stable,
            "total": body["spec"]["replicas"],
            "replicas": live["spec"]["replicas"] if live else None,
            "canary_ready": workloads[canary].ready_replicas if canary in workloads else 0,
            "waiting": any(not p.ready_since and not p.waiting for p in pods),
        }

    def _check_stable_kept(self, before: dict[str, Any] | None) -> None:
        if before is None or before["replicas"] is None:
            return
        live = self.api.objects.get(("Deployment", NAMESPACE, f"{NAME}-{before['stable']}"))
        if live is None:
            return  # the rollout ended: the revision the status named is not stable any more
        allowed = before["total"] - before["canary_ready"] - (1 if before["waiting"] else 0)
        assert live["spec"]["replicas"] >= min(before["replicas"], allowed), (before, live["spec"])

    # ------------------------------------------------------------------ the end

    def teardown(self) -> None:
        try:
            self.api.fail_events = False
            for _ in range(80):
                writes = sum(self.api.writes.values())
                self.controllers.step()
                self.deliver()
                self.clock.seconds += 20
                for _ in range(3):
                    with contextlib.suppress(ReconcileError):
                        self.loop.run_until_complete(self.reconciler.reconcile(KEY))
                    self.deliver()
                owner = self.api.objects[("LLMDeployment", NAMESPACE, NAME)]
                rolling = ((owner.get("status") or {}).get("rollout") or {}).get("canaryRevision")
                if sum(self.api.writes.values()) == writes and not self.api.pending and not rolling:
                    break
            self.check_converged()
        finally:
            self.loop.close()

    def check_converged(self) -> None:
        owner = self.api.objects[("LLMDeployment", NAMESPACE, NAME)]
        status = owner["status"]
        assert status["observedGeneration"] == owner["metadata"]["generation"]
        rollout = status.get("rollout") or {}
        assert not rollout.get("canaryRevision"), f"a rollout never ended: {rollout}"
        stable = rollout["stableRevision"]
        expected = self._desired(owner, stable)
        for obj in expected:
            key = (obj["kind"], NAMESPACE, obj["metadata"]["name"])
            assert key in self.api.objects, f"missing {key}"
            if obj["kind"] != SNAPSHOT_KIND:
                live = self.api.objects[key]
                digest = live["metadata"]["annotations"]["kubellm.io/applied-hash"]
                assert digest == desired_digest(obj), f"not as rendered: {key}"
                assert not [
                    e
                    for e in live["metadata"]["managedFields"]
                    if e["manager"] != "kubellm" and not e.get("subresource")
                ], key
        wanted = {(o["kind"], o["metadata"]["name"]) for o in expected}
        kinds = {o["kind"] for o in expected}
        extra = [k for k in self.api.objects if k[0] in kinds and (k[0], k[2]) not in wanted]
        assert not extra, f"children not wanted: {extra}"
        writes = sum(self.api.writes.values())
        self.loop.run_until_complete(self.reconciler.reconcile(KEY))
        assert sum(self.api.writes.values()) == writes, "a converged object still costs writes"
        # Nothing held back either (a status waiting to be written, a look skipped): an
        # operator that starts now, with no memory, finds nothing to write.
        self.start_operator()
        self.loop.run_until_complete(self.reconciler.reconcile(KEY))
        assert sum(self.api.writes.values()) == writes, "the status was not up to date"

    def _desired(self, owner: dict[str, Any], stable: str) -> list[dict[str, Any]]:
        """What the spec (and, after a rollback, the stable's snapshot) renders."""
        resolved = resolve(owner)
        snapshot_obj = self.api.objects[(SNAPSHOT_KIND, NAMESPACE, f"{NAME}-{stable}")]
        if stable != resolved.revision:
            from kubellm.rollout.revision import known_values, restore, spec_literals

            spec = restore(
                snapshot_obj["data"], resolved.spec, known_values(spec_literals(resolved.spec))
            )
            other = resolve(
                {**owner, "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True)}
            )
            from dataclasses import replace

            others = {stable: replace(other, revision=stable)}
        else:
            others = {}

        target = RevisionTarget(stable, resolved.engine.name, resolved.spec.replicas, 100)
        ctx = RenderContext(
            resolved,
            (target,),
            frozenset(),
            others=others,
            numbers={stable: snapshot_obj["revision"]},
        )
        objects = render_children(ctx)
        for obj in objects:
            obj["metadata"].setdefault("annotations", {})
        return objects


def test_the_executor_converges_from_any_interleaving() -> None:
    profile = settings.default
    run_state_machine_as_test(
        Convergence,
        settings=settings(profile, max_examples=profile.max_examples // 2, stateful_step_count=40),
    )
