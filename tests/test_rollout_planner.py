"""The rollout planner, reconcile by reconcile against a fake cluster and a fake clock.

The fake cluster places pods on a limited number of GPUs (the stable's pods keep theirs),
can refuse to place a revision's pods at all (no matching node), and makes placed pods
Ready at the next reconcile unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import llmd
from kubellm.api.models import (
    AnalysisStatus,
    HistoryEntry,
    LLMDeploymentSpec,
    RolloutStats,
    RolloutStatus,
)
from kubellm.engines import get_engine
from kubellm.rollout.planner import (
    DEFAULT_PROGRESS_DEADLINE,
    LiveRevision,
    Observed,
    Plan,
    analysis_due,
    canary_replicas,
    plan,
    promote_token,
    rollout_id,
    timestamp,
)
from kubellm.rollout.pods import RevisionPods
from kubellm.rollout.revision import revision_of, snapshot
from kubellm.rollout.targets import RevisionTarget

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LLAMA = "meta-llama/Llama-3.1-8B-Instruct"
QWEN = "Qwen/Qwen2.5-7B-Instruct"
MISTRAL = "mistralai/Mistral-7B-Instruct-v0.3"
ANALYSIS = {"prometheusUrl": "http://prometheus:9090", "interval": "1m", "failureLimit": 1}


def spec_of(model: str = LLAMA, replicas: int = 4, **changes: Any) -> LLMDeploymentSpec:
    obj = llmd(model={"name": model}, replicas=replicas, **changes)
    return LLMDeploymentSpec.model_validate(obj["spec"])


def canary(steps: list[dict[str, Any]] | None = None, **more: Any) -> dict[str, Any]:
    """A `rollout` section with canary steps and settings."""
    body: dict[str, Any] = {"steps": steps} if steps is not None else {}
    body.update(more)
    return {"strategy": "canary", "canary": body}


def image_of(spec: LLMDeploymentSpec) -> str:
    return spec.engine.image or get_engine(spec.engine.type).default_image


def revision(spec: LLMDeploymentSpec) -> str:
    return revision_of(spec, image_of(spec))


def verdict(kind: str, at: datetime, failures: int = 0, inconclusive: int = 0) -> AnalysisStatus:
    return AnalysisStatus(
        time=timestamp(at),
        verdict=kind,
        failures=failures,
        inconclusive=inconclusive,
        requests=100,
    )


@dataclass
class Cluster:
    """Applies each plan like the executor and the scheduler would."""

    spec: LLMDeploymentSpec
    now: datetime = T0
    total: int | None = None  # the autoscaler's number; the spec's replicas when None
    gpus: int | None = None  # pods that fit; None: as many as asked
    auto_ready: bool = True  # placed pods are Ready at the next reconcile
    no_node: set[str] = field(default_factory=set)  # revisions no node accepts
    live: dict[str, LiveRevision] = field(default_factory=dict)
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: RolloutStatus | None = None
    ready_before: dict[str, int] = field(default_factory=dict)
    history: tuple[HistoryEntry, ...] = ()
    stats: RolloutStats | None = None
    promote: str | None = None
    abort: str | None = None
    deadline: float = DEFAULT_PROGRESS_DEADLINE
    plans: list[Plan] = field(default_factory=list)

    def observed(self, analysis: AnalysisStatus | None = None) -> Observed:
        self.snapshots[revision(self.spec)] = snapshot(self.spec, image_of(self.spec))
        return Observed(
            now=self.now,
            desired_revision=revision(self.spec),
            desired_engine=self.spec.engine.type,
            total_replicas=self.spec.replicas if self.total is None else self.total,
            live=tuple(self.live.values()),
            snapshots=dict(self.snapshots),
            previous=self.status,
            history=self.history,
            stats=self.stats,
            analysis=analysis,
            promote=self.promote,
            abort=self.abort,
            previous_ready=dict(self.ready_before),
            progress_deadline=self.deadline,
        )

    def reconcile(self, analysis: AnalysisStatus | None = None, after: float = 0) -> Plan:
        self.now += timedelta(seconds=after)
        result = plan(self.spec, self.observed(analysis))
        self._place(result)
        # Restart safety: the next reconcile sees only what the status (as JSON) kept.
        self.status = RolloutStatus.model_validate(result.rollout.model_dump(by_alias=True))
        self.history, self.stats = result.history, result.stats
        self.plans.append(result)
        return result

    def _place(self, result: Plan) -> None:
        """Scale workloads as planned; placed pods keep their GPUs, new ones take the rest."""
        self.ready_before = {
            t.revision: min(self.live[t.revision].ready_replicas, t.replicas)
            for t in result.targets
            if t.revision in self.live
        }
        for gone in result.delete:
            self.live.pop(gone, None)
        placed = {
            t.revision: min(
                self.live[t.revision].pods.ready + self.live[t.revision].pods.loading, t.replicas
            )
            if t.revision in self.live
            else 0
            for t in result.targets
        }
        free = None if self.gpus is None else self.gpus - sum(placed.values())
        for target in result.targets:
            rev = target.revision
            more = 0 if rev in self.no_node else target.replicas - placed[rev]
            if free is not None:
                more = max(0, min(more, free))
                free -= more
            placed[rev] += more
        for target in result.targets:
            rev, old = target.revision, self.live.get(target.revision)
            on_node = placed[rev]
            was_ready = old.ready_replicas if old else 0
            ready = on_node if self.auto_ready else min(was_ready, on_node)
            waiting = target.replicas - on_node
            pods = RevisionPods(
                total=target.replicas,
                ready=ready,
                pending=waiting,
                gpu_starved=0 if rev in self.no_node else waiting,
                loading=on_node - ready,
                pending_message="no node matches" if rev in self.no_node and waiting else None,
            )
            self.live[rev] = LiveRevision(rev, target.engine, target.replicas, ready, pods)

    def set_ready(self, rev: str, ready: int) -> None:
        w = self.live[rev]
        placed = w.pods.ready + w.pods.loading
        ready = min(ready, placed)
        pods = RevisionPods(**{**w.pods.__dict__, "ready": ready, "loading": placed - ready})
        self.live[rev] = LiveRevision(w.revision, w.engine, w.replicas, ready, pods)

    def change(self, model: str, **spec_changes: Any) -> str:
        rollout = self.spec.rollout.model_dump(by_alias=True, exclude_unset=True)
        self.spec = spec_of(model, self.spec.replicas, rollout=rollout, **spec_changes)
        return revision(self.spec)

    def ask_promote(self) -> None:
        assert self.status is not None
        self.promote = promote_token(self.status)

    def ask_abort(self) -> None:
        assert self.status is not None
        self.abort = rollout_id(self.status)


def shares(p: Plan) -> dict[str, tuple[int, int]]:
    return {t.revision: (t.replicas, t.weight) for t in p.targets}


def replicas(p: Plan) -> dict[str, int]:
    return {t.revision: t.replicas for t in p.targets}


def reasons(p: Plan) -> list[str]:
    return [e.reason for e in p.events]


def deployed(spec: LLMDeploymentSpec, **kw: Any) -> tuple[Cluster, str]:
    c = Cluster(spec, **kw)
    c.reconcile()
    return c, revision(spec)


def until_outcome(c: Cluster, limit: int = 8) -> str | None:
    """Reconcile (pods becoming Ready) until the rollout ends."""
    for _ in range(limit):
        if outcome := c.reconcile(after=1).outcome:
            return outcome
    return None


# --------------------------------------------------------------------------- first deploy


def test_first_revision_deploys_directly_without_history() -> None:
    c = Cluster(spec_of())
    p = c.reconcile()
    rev = revision(c.spec)
    assert p.targets == (RevisionTarget(rev, "vllm", 4, 100),)
    assert p.delete == () and p.history == () and p.events == () and p.outcome is None
    assert p.stats == RolloutStats() and p.degraded is None
    assert p.rollout.stable_revision == rev and p.rollout.canary_revision is None
    again = c.reconcile(after=60)
    assert again.targets == p.targets and again.events == ()


def test_replica_or_rollout_changes_do_not_start_a_rollout() -> None:
    c, rev = deployed(spec_of(rollout=canary()))
    c.spec = spec_of(replicas=7, rollout=canary([{"weight": 5}]))
    p = c.reconcile(after=5)
    assert p.targets == (RevisionTarget(rev, "vllm", 7, 100),) and p.events == ()


# -------------------------------------------------------------------- canary walk-through


def test_model_change_walks_every_step_to_promotion_without_touching_the_stable_first() -> None:
    c, old = deployed(spec_of(rollout=canary()))
    new = c.change(QWEN)

    p = c.reconcile()
    assert reasons(p) == ["RolloutStarted"]
    assert replicas(p) == {old: 4, new: 1}  # the canary starts beside the full stable
    assert p.rollout.current_step == 0 and p.rollout.started_at == timestamp(T0)
    assert "0/1 new pods Ready (no pods yet); progress deadline 2026-03-01T12:10:00Z" in (
        p.rollout.message
    )
    assert p.rollout.canary_weight == 0 and p.rollout.step_weight == 10
    assert p.requeue_after == pytest.approx(DEFAULT_PROGRESS_DEADLINE)

    p = c.reconcile(after=10)  # canary Ready: the stable gives up one pod, hold 5m
    assert replicas(p) == {old: 3, new: 1}
    assert (
        p.rollout.message == f"step 1/2: holding 10% until {timestamp(T0 + timedelta(minutes=5))}"
    )
    assert p.rollout.canary_weight == 25  # 1 of 4 Ready pods: what is really served
    assert p.requeue_after == pytest.approx(290)
    assert p.events == ()

    p = c.reconcile(after=290)  # 5m: next step
    assert reasons(p) == ["StepAdvanced"]
    assert replicas(p) == {old: 3, new: 2}
    assert p.rollout.current_step == 1
    assert p.rollout.step_started_at == timestamp(T0 + timedelta(minutes=5))

    p = c.reconcile(after=10)
    assert replicas(p) == {old: 2, new: 2} and p.rollout.canary_weight == 50
    assert "holding 50%" in p.rollout.message

    p = c.reconcile(after=290)  # promotion: the new revision scales to the total beside
    assert reasons(p) == ["StepAdvanced"]
    assert replicas(p) == {old: 2, new: 4}
    assert p.rollout.message.startswith("promoting: 2/4 new pods Ready")

    p = c.reconcile(after=10)  # all four Ready: done
    assert reasons(p) == ["RolloutSucceeded"] and p.outcome == "Succeeded"
    assert p.targets == (RevisionTarget(new, "vllm", 4, 100),) and p.delete == (old,)
    assert p.rollout == RolloutStatus(stable_revision=new)
    [entry] = p.history
    assert (entry.revision, entry.result, entry.changed) == (new, "Succeeded", ["model"])
    assert entry.model == QWEN and entry.image and entry.image.startswith("vllm/vllm-openai")
    assert entry.start_time == timestamp(T0) and entry.end_time == timestamp(c.now)
    assert p.stats == RolloutStats(total=1, succeeded=1, failed=0, success_rate=1.0)

    p = c.reconcile(after=60)
    assert p.outcome is None and p.events == ()
    assert p.targets == (RevisionTarget(new, "vllm", 4, 100),)


def test_promotion_drains_the_old_stable_only_as_new_pods_become_ready() -> None:
    c, old = deployed(spec_of(rollout=canary([{"weight": 50, "pause": {"duration": "1m"}}])))
    new = c.change(QWEN)
    c.reconcile()
    c.reconcile(after=1)
    c.auto_ready = False
    p = c.reconcile(after=60)
    assert replicas(p) == {old: 2, new: 4}
    c.set_ready(new, 3)
    p = c.reconcile(after=10)
    assert replicas(p) == {old: 1, new: 4}
    c.set_ready(new, 1)  # pods crashed: the old stable takes capacity back
    p = c.reconcile(after=10)
    assert replicas(p) == {old: 3, new: 4}
    c.set_ready(new, 4)
    assert c.reconcile(after=10).outcome == "Succeeded"


def test_canary_does_not_advance_until_its_pods_are_ready() -> None:
    c, old = deployed(spec_of(rollout=canary()))
    new = c.change(QWEN)
    c.auto_ready = False
    c.reconcile()
    p = c.reconcile(after=400)  # long past the pause, no Ready pod, deadline not yet
    assert p.rollout.current_step == 0 and "0/1 new pods Ready" in p.rollout.message
    assert replicas(p) == {old: 4, new: 1}
    c.set_ready(new, 1)
    assert c.reconcile(after=1).rollout.current_step == 1


def test_gateway_routing_keeps_the_stable_and_routes_only_to_ready_canary_pods() -> None:
    routing = {"type": "gatewayAPI", "parentRefs": [{"name": "gw"}]}
    c, old = deployed(spec_of(rollout=canary([{"weight": 30}], trafficRouting=routing)))
    new = c.change(QWEN)
    p = c.reconcile()
    assert shares(p) == {old: (4, 100), new: (2, 0)}  # nothing Ready yet: no traffic
    assert p.rollout.canary_weight == 0
    p = c.reconcile(after=1)  # no pause, no analysis: the step ends once Ready
    # Promotion: traffic follows the canary's Ready share (2 of 4), never below the last step.
    assert reasons(p) == ["StepAdvanced"] and shares(p) == {old: (4, 50), new: (4, 50)}
    assert c.reconcile(after=1).outcome == "Succeeded"


# --------------------------------------------------- canaries that never cost the stable


def test_a_canary_no_node_accepts_never_shrinks_the_stable_and_is_rolled_back() -> None:
    c, old = deployed(spec_of(rollout=canary(), replicas=2))
    new = c.change(QWEN)
    c.no_node.add(new)
    p = c.reconcile()
    for _ in range(9):
        p = c.reconcile(after=60)
        assert replicas(p)[old] == 2 and p.outcome is None
        assert "1 pending (no node matches)" in p.rollout.message
        assert p.rollout.canary_weight == 0
    p = c.reconcile(after=60)  # 10 minutes without progress
    assert p.outcome == "RolledBack" and reasons(p) == ["RolledBack"]
    assert p.targets == (RevisionTarget(old, "vllm", 2, 100),) and p.delete == (new,)
    assert p.degraded is not None and p.degraded[0] == "ProgressDeadlineExceeded"
    assert p.history[0].reason.startswith("ProgressDeadlineExceeded: 0/1 new pods Ready")
    assert "spec.rollout.progressDeadline" in p.history[0].reason
    p = c.reconcile(after=60)  # stays on the stable, Degraded, until the spec changes
    assert p.degraded is not None and p.degraded[0] == "ProgressDeadlineExceeded"
    assert p.rollout.canary_revision is None


def test_a_full_gpu_pool_still_rolls_the_stable_yielding_one_pod_at_a_time() -> None:
    c, old = deployed(spec_of(rollout=canary([{"weight": 50}]), replicas=4), gpus=4)
    new = c.change(QWEN)
    c.auto_ready = False
    p = c.reconcile()
    assert replicas(p) == {old: 4, new: 2}  # both canary pods wait for GPUs
    p = c.reconcile(after=5)
    assert replicas(p) == {old: 3, new: 2}  # one stable pod yields
    p = c.reconcile(after=5)
    assert replicas(p) == {old: 3, new: 2}  # one canary pod placed and loading: no more
    c.set_ready(new, 1)
    p = c.reconcile(after=5)
    assert replicas(p) == {old: 2, new: 2}  # Ready: traded; the second still waits
    c.set_ready(new, 2)
    p = c.reconcile(after=5)  # the step is over: promotion, still one yield at a time
    assert replicas(p) == {old: 2, new: 4} and reasons(p) == ["StepAdvanced"]
    c.auto_ready = True
    assert until_outcome(c) == "Succeeded"


def test_progress_resets_the_deadline() -> None:
    c, old = deployed(spec_of(rollout=canary([{"weight": 50}])), deadline=120)
    new = c.change(QWEN)
    c.auto_ready = False
    c.reconcile()
    c.reconcile(after=100)
    c.set_ready(new, 1)  # progress at 100s
    p = c.reconcile(after=1)
    assert p.outcome is None and p.requeue_after == pytest.approx(120)
    p = c.reconcile(after=119)
    assert p.outcome is None
    p = c.reconcile(after=1)
    assert p.outcome == "RolledBack" and "1/2 new pods Ready" in p.history[0].reason
    assert replicas(p) == {old: 4}


def test_promotion_without_progress_is_rolled_back_too() -> None:
    c, old = deployed(spec_of(rollout=canary([{"weight": 50}])), deadline=60)
    new = c.change(QWEN)
    c.reconcile()
    c.auto_ready = False
    c.no_node.add(new)
    p = c.reconcile(after=1)  # step over: promoting, and no node takes the two more pods
    assert "promoting" in p.rollout.message
    p = c.reconcile(after=61)
    assert p.outcome == "RolledBack" and replicas(p) == {old: 4}


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(1, 8),
    weights=st.lists(st.integers(1, 100), min_size=1, max_size=3, unique=True).map(sorted),
    gateway=st.booleans(),
    gpus=st.one_of(st.none(), st.integers(1, 16)),
    broken=st.booleans(),
    steps=st.lists(st.tuples(st.integers(0, 8), st.booleans()), min_size=3, max_size=12),
)
def test_the_stable_never_loses_a_pod_for_a_canary_that_is_not_ready(
    total: int,
    weights: list[int],
    gateway: bool,
    gpus: int | None,
    broken: bool,
    steps: list[tuple[int, bool]],
) -> None:
    """Except one at a time while canary pods wait for GPUs the stable holds."""
    routing: dict[str, Any] = (
        {"type": "gatewayAPI", "parentRefs": [{"name": "gw"}]} if gateway else {"type": "replicas"}
    )
    rollout = canary([{"weight": w, "pause": {"duration": "1m"}} for w in weights])
    c, stable = deployed(
        spec_of(
            replicas=total,
            rollout={**rollout, "canary": {**rollout["canary"], "trafficRouting": routing}},
        ),
        gpus=None if gpus is None else max(gpus, total),
    )
    new = c.change(QWEN)
    if broken:
        c.no_node.add(new)
    c.auto_ready = False
    for ready, advance in steps:
        if new in c.live:
            c.set_ready(new, ready)
        before = c.live.get(new)
        previous_stable = c.live[stable].replicas if stable in c.live else total
        p = c.reconcile(after=61 if advance else 5)
        got = replicas(p)
        if p.outcome is not None:
            break
        assert sum(t.weight for t in p.targets) == 100
        canary_ready = min(before.ready_replicas, got.get(new, 0)) if before else 0
        starved = bool(before and before.pods.gpu_starved)
        loading = bool(before and before.pods.loading)
        allowed = total - canary_ready - (1 if starved or loading else 0)
        assert got[stable] >= min(previous_stable, allowed)
        if broken:  # no node takes the canary: nothing ever moves off the stable
            assert got[stable] == total


# ------------------------------------------------------------------------ pause, promote


def test_pause_without_duration_waits_for_a_promote_of_this_step() -> None:
    c, _ = deployed(spec_of(rollout=canary([{"weight": 20, "pause": {}}])))
    new = c.change(QWEN)
    c.promote = f"{new}@{timestamp(T0 - timedelta(hours=1))}#0"  # another rollout's request
    c.reconcile()
    for _ in range(3):
        p = c.reconcile(after=3600)
        assert p.rollout.paused and p.rollout.current_step == 0
        assert p.rollout.message == "step 1/1: paused until `kubellm promote`"
        assert p.requeue_after is None
    c.ask_promote()
    p = c.reconcile(after=1)
    assert reasons(p) == ["StepAdvanced"] and "promoted" in p.events[0].message
    assert replicas(p)[new] == 4 and not p.rollout.paused
    assert until_outcome(c) == "Succeeded"


def test_one_promote_releases_one_step() -> None:
    c, _ = deployed(spec_of(rollout=canary()))
    c.change(QWEN)
    c.reconcile()
    c.reconcile(after=5)
    c.ask_promote()
    p = c.reconcile()
    assert p.rollout.current_step == 1 and reasons(p) == ["StepAdvanced"]
    p = c.reconcile(after=5)
    assert p.rollout.current_step == 1 and p.events == ()


# --------------------------------------------------------------------------- analysis


def test_analysis_is_scheduled_from_status_and_due_after_restart() -> None:
    steps = [{"weight": 10, "pause": {"duration": "5m"}}]
    c, _ = deployed(spec_of(rollout=canary(steps, analysis=ANALYSIS)))
    c.change(QWEN)
    p = c.reconcile()
    assert p.analyze_at is None  # the canary is not Ready yet
    p = c.reconcile(after=10)
    assert p.analyze_at == T0 + timedelta(minutes=1)
    assert p.rollout.next_analysis_at == timestamp(T0 + timedelta(minutes=1))
    assert not analysis_due(c.status, c.now)
    assert analysis_due(c.status, T0 + timedelta(minutes=1))
    p = c.reconcile(verdict("Passed", T0 + timedelta(minutes=1)), after=50)
    assert reasons(p) == ["AnalysisPassed"] and p.analyze_at == T0 + timedelta(minutes=2)


def test_step_waits_for_a_passed_analysis_and_inconclusive_is_not_a_pass() -> None:
    steps = [{"weight": 10, "pause": {"duration": "1m"}}, {"weight": 50}]
    c, _ = deployed(spec_of(rollout=canary(steps, analysis=ANALYSIS)))
    c.change(QWEN)
    c.reconcile()
    c.reconcile(after=5)
    inconclusive = AnalysisStatus(
        time=timestamp(c.now + timedelta(seconds=55)),
        verdict="Inconclusive",
        inconclusive=1,
        requests=3,
        results=[
            {
                "name": "requests",
                "value": 3,
                "verdict": "Inconclusive",
                "message": "3 < minRequests 20",
            }
        ],
    )
    p = c.reconcile(inconclusive, after=55)
    assert reasons(p) == ["AnalysisInconclusive"] and p.rollout.current_step == 0
    assert "analysis inconclusive (requests: 3 < minRequests 20)" in p.rollout.message
    p = c.reconcile(after=30)
    assert p.rollout.current_step == 0 and p.requeue_after == pytest.approx(30)
    p = c.reconcile(verdict("Passed", c.now + timedelta(seconds=30)), after=30)
    assert reasons(p) == ["AnalysisPassed", "StepAdvanced"] and p.rollout.current_step == 1
    # A pass from the previous step does not count for this one (no pause: one interval).
    p = c.reconcile(after=120)
    assert p.rollout.current_step == 1
    assert "waiting for the first analysis of the step" in p.rollout.message
    p = c.reconcile(verdict("Passed", c.now), after=0)
    assert reasons(p) == ["AnalysisPassed", "StepAdvanced"] and "promoting" in p.rollout.message


def test_inconclusive_analyses_in_a_row_pause_the_rollout_until_promote() -> None:
    steps = [{"weight": 10, "pause": {"duration": "1m"}}, {"weight": 50}]
    c, old = deployed(spec_of(rollout=canary(steps, analysis={**ANALYSIS, "inconclusiveLimit": 2})))
    new = c.change(QWEN)
    c.reconcile()
    c.reconcile(after=5)
    p = c.reconcile(verdict("Inconclusive", c.now + timedelta(minutes=1), inconclusive=1), after=60)
    assert p.halted is None and not p.rollout.paused
    p = c.reconcile(verdict("Inconclusive", c.now + timedelta(minutes=1), inconclusive=2), after=60)
    assert p.halted is not None and p.halted[0] == "AnalysisInconclusive"
    assert p.rollout.paused and p.analyze_at is None and p.degraded is None
    assert "paused until `kubellm promote` or `kubellm abort`" in p.rollout.message
    assert replicas(p) == {old: 3, new: 1}  # the canary keeps serving its share
    p = c.reconcile(after=3600)
    assert p.halted is not None and p.events == ()
    c.ask_promote()
    p = c.reconcile(after=1)
    assert reasons(p) == ["StepAdvanced"] and p.halted is None
    assert p.rollout.analysis is not None and p.rollout.analysis.inconclusive == 0


def failed_twice(c: Cluster) -> Plan:
    """Two failed analyses a minute apart; with failureLimit 1 the second is one too many."""
    first = c.reconcile(verdict("Failed", c.now + timedelta(minutes=1), failures=1), after=60)
    assert reasons(first) == ["AnalysisFailed"] and first.rollout.canary_revision
    assert first.rollout.analysis and first.rollout.analysis.failures == 1
    return c.reconcile(verdict("Failed", c.now + timedelta(minutes=1), failures=2), after=60)


def test_failed_analysis_rolls_back_and_degraded_persists_until_the_next_change() -> None:
    c, old = deployed(spec_of(rollout=canary(analysis=ANALYSIS)))
    bad = c.change(QWEN)
    c.reconcile()
    c.reconcile(after=1)
    p = failed_twice(c)
    assert reasons(p) == ["AnalysisFailed", "RolledBack"] and p.outcome == "RolledBack"
    assert p.targets == (RevisionTarget(old, "vllm", 4, 100),) and p.delete == (bad,)
    assert p.degraded is not None and p.degraded[0] == "RolledBack"
    assert p.history[0].result == "RolledBack" and "failed 2 times" in p.history[0].reason
    assert p.stats == RolloutStats(total=1, succeeded=0, failed=1, success_rate=0.0)
    for _ in range(3):  # the spec still names the bad revision: stay on stable, stay Degraded
        p = c.reconcile(after=600)
        assert p.targets == (RevisionTarget(old, "vllm", 4, 100),) and p.events == ()
        assert p.degraded is not None and bad in p.degraded[1]
        assert p.rollout.canary_revision is None and p.outcome is None
    fixed = c.change(MISTRAL)
    p = c.reconcile(after=1)
    assert p.degraded is None and reasons(p) == ["RolloutStarted"]
    assert p.rollout.canary_revision == fixed and p.rollout.analysis is None


def test_failures_within_the_limit_only_count() -> None:
    c, _ = deployed(spec_of(rollout=canary(analysis={**ANALYSIS, "failureLimit": 3})))
    c.change(QWEN)
    c.reconcile()
    c.reconcile(after=1)
    p = failed_twice(c)
    assert p.outcome is None and p.rollout.analysis and p.rollout.analysis.failures == 2


def test_without_auto_rollback_a_failure_pauses_until_promote() -> None:
    spec = spec_of(rollout={**canary(analysis=ANALYSIS), "autoRollback": False})
    c, old = deployed(spec)
    new = c.change(QWEN)
    c.reconcile()
    c.reconcile(after=1)
    p = failed_twice(c)
    assert p.outcome is None and p.rollout.paused and p.degraded
    assert p.degraded[0] == "AnalysisFailed" and p.analyze_at is None
    assert p.halted is not None and p.halted[0] == "AnalysisFailed"
    assert replicas(p) == {old: 3, new: 1}
    p = c.reconcile(after=3600)
    assert p.rollout.paused and p.rollout.current_step == 0 and p.events == ()
    c.ask_promote()
    p = c.reconcile(after=1)
    assert reasons(p) == ["StepAdvanced"] and p.rollout.current_step == 1
    assert p.degraded is None and p.rollout.analysis and p.rollout.analysis.failures == 0


# ---------------------------------------------------------------- abort, supersede


def test_abort_names_the_rollout_and_returns_to_the_stable() -> None:
    c, old = deployed(spec_of(rollout=canary()))
    new = c.change(QWEN)
    c.abort = f"{new}@{timestamp(T0 - timedelta(days=1))}"  # an earlier rollout of it
    p = c.reconcile()
    assert p.rollout.canary_revision == new and p.outcome is None
    c.ask_abort()
    p = c.reconcile(after=40)
    assert reasons(p) == ["Aborted"] and p.outcome == "Aborted"
    assert p.targets == (RevisionTarget(old, "vllm", 4, 100),) and p.delete == (new,)
    assert p.degraded and p.degraded[0] == "Aborted"
    assert p.history[0].result == "Aborted" and p.stats.failed == 1
    p = c.reconcile(after=60)
    assert p.degraded and p.rollout.canary_revision is None
    c.change(MISTRAL)
    assert c.reconcile(after=1).outcome is None  # the old abort does not end the next one


def test_spec_change_mid_rollout_supersedes_the_canary() -> None:
    c, stable = deployed(spec_of(rollout=canary()))
    first = c.change(QWEN)
    c.reconcile()
    c.reconcile(after=300)  # step 2
    second = c.change(MISTRAL)
    p = c.reconcile(after=30)
    assert reasons(p) == ["Superseded", "RolloutStarted"] and p.outcome == "Superseded"
    assert p.delete == (first,) and replicas(p) == {stable: 4, second: 1}
    assert p.rollout.stable_revision == stable and p.rollout.current_step == 0
    assert p.rollout.started_at == timestamp(c.now)
    assert (p.history[0].revision, p.history[0].result) == (first, "Superseded")
    assert p.history[0].model == QWEN and p.history[0].start_time == timestamp(T0)
    assert p.stats == RolloutStats(total=1, succeeded=0, failed=0, success_rate=None)


def test_spec_change_back_to_stable_supersedes_without_a_new_rollout() -> None:
    c, stable = deployed(spec_of(rollout=canary()))
    new = c.change(QWEN)
    c.reconcile()
    c.change(LLAMA)
    p = c.reconcile(after=30)
    assert reasons(p) == ["Superseded"] and p.outcome == "Superseded"
    assert p.targets == (RevisionTarget(stable, "vllm", 4, 100),) and p.delete == (new,)
    assert p.rollout.canary_revision is None and p.degraded is None
    assert "back to the stable revision" in p.rollout.message


def test_analysis_of_a_superseded_canary_is_ignored() -> None:
    c, _ = deployed(spec_of(rollout=canary(analysis=ANALYSIS)))
    c.change(QWEN)
    c.reconcile()
    c.reconcile(after=1)
    c.change(MISTRAL)
    p = c.reconcile(verdict("Failed", c.now, failures=5), after=60)
    assert p.outcome == "Superseded" and p.rollout.analysis is None
    assert "AnalysisFailed" not in reasons(p)


# ---------------------------------------------------------------------- restart safety


def test_restart_mid_step_resumes_the_same_step_from_status_alone() -> None:
    c, old = deployed(spec_of(rollout=canary(analysis=ANALYSIS)))
    new = c.change(QWEN)
    c.reconcile()
    c.reconcile(verdict("Passed", c.now + timedelta(minutes=1)), after=60)
    began = c.reconcile(after=300)  # step 2 began
    assert began.rollout.current_step == 1
    # A fresh operator: status as JSON from the API, workloads listed from the cluster.
    restarted = Cluster(
        c.spec,
        now=c.now + timedelta(seconds=20),
        live=dict(c.live),
        snapshots=dict(c.snapshots),
        ready_before=dict(c.ready_before),
        status=RolloutStatus.model_validate_json(began.rollout.model_dump_json(by_alias=True)),
        history=c.history,
        stats=c.stats,
    )
    before = c.reconcile(after=20)
    after = restarted.reconcile()
    assert after == before
    assert after.rollout.step_started_at == began.rollout.step_started_at
    assert after.rollout.current_step == 1
    assert after.targets == before.targets and after.events == ()
    assert after.analyze_at == before.analyze_at
    assert replicas(after) == {old: 2, new: 2}


def test_status_lost_the_readiest_other_workload_is_stable() -> None:
    spec = spec_of(model=QWEN, rollout=canary())
    old = LiveRevision("aaaaaaaaaa", "vllm", 4, 4)
    c = Cluster(spec, live={old.revision: old})
    p = c.reconcile()
    assert reasons(p) == ["RolloutStarted"] and p.rollout.stable_revision == old.revision


def test_a_stable_whose_workload_is_gone_is_still_targeted_in_full_on_rollback() -> None:
    c, old = deployed(spec_of(rollout=canary(analysis=ANALYSIS)))
    c.change(QWEN)
    c.reconcile()
    c.reconcile(after=1)
    del c.live[old]  # someone deleted the stable's Deployment
    p = failed_twice(c)
    assert p.outcome == "RolledBack" and p.targets == (RevisionTarget(old, "vllm", 4, 100),)


# ------------------------------------------------------------------------- replicas


@pytest.mark.parametrize(
    ("total", "weight", "routing", "expected"),
    [
        (4, 10, "replicas", 1),  # at least one canary pod
        (4, 50, "replicas", 2),
        (4, 90, "replicas", 3),  # at least one stable pod below 100
        (4, 99, "replicas", 3),
        (4, 100, "replicas", 4),
        (10, 25, "replicas", 3),  # 2.5 rounds half up
        (10, 35, "replicas", 4),
        (2, 10, "replicas", 1),
        (1, 10, "replicas", 1),  # one replica cannot be split: a canary pod beside it
        (0, 50, "replicas", 0),
        (4, 10, "gatewayAPI", 1),
        (4, 30, "gatewayAPI", 2),  # ceil
        (4, 100, "gatewayAPI", 4),
        (0, 10, "gatewayAPI", 0),
    ],
)
def test_canary_replicas(total: int, weight: int, routing: str, expected: int) -> None:
    assert canary_replicas(total, weight, routing) == expected


def test_one_replica_keeps_its_stable_pod_beside_the_canary() -> None:
    c, old = deployed(
        spec_of(replicas=1, rollout=canary([{"weight": 10, "pause": {"duration": "1m"}}]))
    )
    new = c.change(QWEN)
    c.reconcile()
    c.auto_ready = False
    p = c.reconcile(after=1)
    assert replicas(p) == {old: 1, new: 1}


def test_autoscaler_total_change_mid_canary_is_split_the_same_way() -> None:
    autoscaling = {"minReplicas": 2, "maxReplicas": 20, "target": 500}
    c, old = deployed(spec_of(rollout=canary(), autoscaling=autoscaling), total=4)
    new = c.change(QWEN, autoscaling=autoscaling)
    c.reconcile()
    assert replicas(c.reconcile(after=1)) == {old: 3, new: 1}
    c.total = 10
    c.auto_ready = False
    p = c.reconcile(after=10)
    assert replicas(p) == {old: 9, new: 1} and p.rollout.current_step == 0
    p = c.reconcile(after=300)
    assert reasons(p) == ["StepAdvanced"] and replicas(p) == {old: 9, new: 5}


# ----------------------------------------------------------------- rolling, recreate


def test_rolling_surges_one_pod_and_drains_the_old_as_new_pods_become_ready() -> None:
    c, old = deployed(spec_of(replicas=3, rollout={"strategy": "rolling"}))
    c.auto_ready = False
    new = c.change(QWEN)
    sequence = []
    for ready in range(4):
        if ready:
            c.set_ready(new, ready)
        p = c.reconcile(after=30)
        sequence.append((replicas(p), p.outcome))
    assert sequence == [
        ({old: 3, new: 1}, None),
        ({old: 2, new: 2}, None),
        ({old: 1, new: 3}, None),
        ({new: 3}, "Succeeded"),
    ]
    assert c.plans[-1].delete == (old,) and c.history[0].result == "Succeeded"
    assert c.stats == RolloutStats(total=1, succeeded=1, failed=0, success_rate=1.0)


def test_recreate_stops_the_old_revision_before_starting_the_new() -> None:
    c, old = deployed(spec_of(rollout={"strategy": "recreate"}))
    c.auto_ready = False
    new = c.change(QWEN)
    p = c.reconcile()
    assert p.targets == () and p.delete == (old,) and "stopping" in p.rollout.message
    p = c.reconcile(after=10)
    assert p.targets == (RevisionTarget(new, "vllm", 4, 100),) and p.outcome is None
    c.set_ready(new, 4)
    p = c.reconcile(after=10)
    assert p.outcome == "Succeeded" and p.rollout == RolloutStatus(stable_revision=new)
    assert p.history[0].changed == ["model"]


def test_recreate_that_cannot_start_brings_the_stable_back_from_its_snapshot() -> None:
    c, old = deployed(spec_of(rollout={"strategy": "recreate"}), deadline=60)
    new = c.change(QWEN)
    c.no_node.add(new)
    c.reconcile()
    c.reconcile(after=1)
    p = c.reconcile(after=61)
    assert p.outcome == "RolledBack" and p.targets == (RevisionTarget(old, "vllm", 4, 100),)


# ------------------------------------------------------------------- history, stats


def test_stats_count_every_rollout_while_history_keeps_the_newest() -> None:
    c, _ = deployed(
        spec_of(rollout={**canary([{"weight": 50}], analysis=ANALYSIS), "historyLimit": 2})
    )

    def start(model: str) -> None:
        c.change(model)
        c.reconcile(after=1)
        c.reconcile(after=1)

    start(QWEN)  # 1: succeeded
    c.reconcile(verdict("Passed", c.now), after=60)
    assert until_outcome(c) == "Succeeded"
    start(MISTRAL)  # 2: rolled back
    assert failed_twice(c).outcome == "RolledBack"
    start("google/gemma-2-9b-it")  # 3: aborted
    c.ask_abort()
    assert c.reconcile(after=1).outcome == "Aborted"
    start("microsoft/phi-4")  # 4: superseded by 5
    start("ibm-granite/granite-3.1-8b-instruct")
    assert c.plans[-2].outcome == "Superseded"
    assert [(h.model, h.result) for h in c.history] == [
        ("microsoft/phi-4", "Superseded"),
        ("google/gemma-2-9b-it", "Aborted"),
    ]
    assert (c.stats.total, c.stats.succeeded, c.stats.failed) == (4, 1, 2)
    assert c.stats.success_rate == pytest.approx(1 / 3)


def test_a_stable_deleted_with_its_snapshot_gives_way_to_the_spec() -> None:
    c, old = deployed(spec_of(rollout=canary()))
    new = c.change(QWEN)
    c.reconcile()
    del c.live[old]
    c.snapshots.pop(old)
    observed = c.observed()
    p = plan(c.spec, Observed(**{**observed.__dict__, "lost": frozenset({old})}))
    assert reasons(p) == ["StableLost"]
    assert p.targets == (RevisionTarget(new, "vllm", 4, 100),)
    assert p.rollout == RolloutStatus(stable_revision=new)
