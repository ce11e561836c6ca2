"""The rollout planner, reconcile by reconcile against a fake cluster and a fake clock."""

from __future__ import annotations

import math
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
    POLL_SECONDS,
    LiveRevision,
    Observed,
    Plan,
    analysis_due,
    plan,
    split_replicas,
    timestamp,
)
from kubellm.rollout.revision import pod_relevant, revision_of
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


def revision(spec: LLMDeploymentSpec) -> str:
    return revision_of(spec, spec.engine.image or get_engine(spec.engine.type).default_image)


def verdict(kind: str, at: datetime, failures: int = 0) -> AnalysisStatus:
    return AnalysisStatus(time=timestamp(at), verdict=kind, failures=failures, requests=100)


@dataclass
class Cluster:
    """Applies each plan like the executor would; pods become Ready when `auto_ready`."""

    spec: LLMDeploymentSpec
    now: datetime = T0
    total: int | None = None  # the HPA's number; the spec's replicas when None
    auto_ready: bool = True
    live: dict[str, LiveRevision] = field(default_factory=dict)
    status: RolloutStatus | None = None
    history: tuple[HistoryEntry, ...] = ()
    stats: RolloutStats | None = None
    promote: datetime | None = None
    abort: datetime | None = None
    plans: list[Plan] = field(default_factory=list)

    def observed(self, analysis: AnalysisStatus | None = None) -> Observed:
        image = self.spec.engine.image or get_engine(self.spec.engine.type).default_image
        return Observed(
            now=self.now,
            desired_revision=revision(self.spec),
            desired_engine=self.spec.engine.type,
            desired_snapshot=pod_relevant(self.spec, image),
            total_replicas=self.spec.replicas if self.total is None else self.total,
            live=tuple(self.live.values()),
            previous=self.status,
            history=self.history,
            stats=self.stats,
            analysis=analysis,
            promote_requested_at=self.promote,
            abort_requested_at=self.abort,
        )

    def reconcile(self, analysis: AnalysisStatus | None = None, after: float = 0) -> Plan:
        self.now += timedelta(seconds=after)
        observed = self.observed(analysis)
        result = plan(self.spec, observed)
        for gone in result.delete:
            del self.live[gone]
        for target in result.targets:
            old = self.live.get(target.revision)
            snapshot = old.snapshot if old else observed.desired_snapshot
            ready = (
                target.replicas
                if self.auto_ready
                else min(old.ready_replicas if old else 0, target.replicas)
            )
            self.live[target.revision] = LiveRevision(
                target.revision, target.engine, target.replicas, ready, snapshot
            )
        # Restart safety: the next reconcile sees only what the status (as JSON) kept.
        self.status = RolloutStatus.model_validate(result.rollout.model_dump(by_alias=True))
        self.history, self.stats = result.history, result.stats
        self.plans.append(result)
        return result

    def set_ready(self, rev: str, ready: int) -> None:
        self.live[rev] = LiveRevision(**{**self.live[rev].__dict__, "ready_replicas": ready})

    def change(self, model: str, **spec_changes: Any) -> str:
        rollout = self.spec.rollout.model_dump(by_alias=True, exclude_unset=True)
        self.spec = spec_of(model, self.spec.replicas, rollout=rollout, **spec_changes)
        return revision(self.spec)


def shares(p: Plan) -> dict[str, tuple[int, int]]:
    return {t.revision: (t.replicas, t.weight) for t in p.targets}


def reasons(p: Plan) -> list[str]:
    return [e.reason for e in p.events]


def deployed(spec: LLMDeploymentSpec, **kw: Any) -> tuple[Cluster, str]:
    c = Cluster(spec, **kw)
    c.reconcile()
    return c, revision(spec)


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


def test_model_change_walks_every_step_to_promotion() -> None:
    c, old = deployed(spec_of(rollout=canary()))
    new = c.change(QWEN)

    p = c.reconcile()
    assert reasons(p) == ["RolloutStarted"]
    assert shares(p) == {old: (3, 90), new: (1, 10)}
    assert p.rollout.current_step == 0 and p.rollout.started_at == timestamp(T0)
    assert "waiting for canary pods: 0/1" in p.rollout.message
    assert p.requeue_after == POLL_SECONDS

    p = c.reconcile(after=10)  # canary Ready: hold 5m
    assert (
        p.rollout.message == f"step 1/2: holding 10% until {timestamp(T0 + timedelta(minutes=5))}"
    )
    assert p.requeue_after == pytest.approx(290)
    assert p.events == ()

    p = c.reconcile(after=290)  # 5m: next step
    assert reasons(p) == ["StepAdvanced"]
    assert shares(p) == {old: (2, 50), new: (2, 50)}
    assert p.rollout.current_step == 1
    assert p.rollout.step_started_at == timestamp(T0 + timedelta(minutes=5))
    assert p.rollout.canary_weight == 50

    p = c.reconcile(after=10)
    assert p.rollout.current_step == 1 and "holding 50%" in p.rollout.message

    p = c.reconcile(after=290)  # promotion: pods traded a quarter at a time
    assert reasons(p) == ["StepAdvanced"]
    assert shares(p) == {old: (1, 50), new: (3, 50)}
    assert p.rollout.message == "promoting: 2/4 new pods Ready"

    p = c.reconcile(after=10)
    assert shares(p) == {old: (0, 0), new: (4, 100)}

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
    assert (
        p.outcome is None and p.events == () and p.targets == (RevisionTarget(new, "vllm", 4, 100),)
    )


def test_promotion_drains_the_old_stable_as_new_pods_become_ready() -> None:
    c, old = deployed(spec_of(rollout=canary([{"weight": 50, "pause": {"duration": "1m"}}])))
    new = c.change(QWEN)
    c.reconcile()
    c.reconcile(after=1)
    c.auto_ready = False
    p = c.reconcile(after=60)
    assert shares(p) == {old: (1, 50), new: (3, 50)}  # traded a quarter at a time, no surge
    c.set_ready(new, 3)
    p = c.reconcile(after=10)
    assert shares(p) == {old: (0, 0), new: (4, 100)}
    c.set_ready(new, 1)  # pods crashed: the old stable takes capacity back
    p = c.reconcile(after=10)
    assert shares(p) == {old: (2, 50), new: (4, 50)}
    c.set_ready(new, 4)
    assert c.reconcile(after=10).outcome == "Succeeded"


def test_canary_does_not_advance_until_its_pods_are_ready() -> None:
    c, old = deployed(spec_of(rollout=canary()))
    new = c.change(QWEN)
    c.auto_ready = False
    c.reconcile()
    p = c.reconcile(after=600)  # long past the pause, no Ready pod
    assert p.rollout.current_step == 0 and "0/1 Ready" in p.rollout.message
    assert shares(p) == {old: (3, 90), new: (1, 10)}
    c.set_ready(new, 1)
    assert c.reconcile(after=1).rollout.current_step == 1


def test_gateway_routing_keeps_the_stable_at_total() -> None:
    routing = {"type": "gatewayAPI", "parentRefs": [{"name": "gw"}]}
    c, old = deployed(spec_of(rollout=canary([{"weight": 30}], trafficRouting=routing)))
    new = c.change(QWEN)
    assert shares(c.reconcile()) == {old: (4, 70), new: (2, 30)}
    p = c.reconcile(after=1)  # no pause, no analysis: the step ends once Ready
    # Promotion: traffic follows the canary's Ready share (2 of 4), never below the last step.
    assert reasons(p) == ["StepAdvanced"] and shares(p) == {old: (4, 50), new: (4, 50)}
    assert c.reconcile(after=1).outcome == "Succeeded"


# ------------------------------------------------------------------------ pause, promote


def test_pause_without_duration_waits_for_promote() -> None:
    c, _ = deployed(spec_of(rollout=canary([{"weight": 20, "pause": {}}])))
    c.promote = T0 - timedelta(hours=1)  # an old request: not for this step
    new = c.change(QWEN)
    c.reconcile()
    for _ in range(3):
        p = c.reconcile(after=3600)
        assert p.rollout.paused and p.rollout.current_step == 0
        assert p.rollout.message == "step 1/1: paused until `kubellm promote`"
        assert p.requeue_after is None
    c.promote = c.now + timedelta(seconds=1)
    p = c.reconcile(after=1)
    assert reasons(p) == ["StepAdvanced"] and "promoted" in p.events[0].message
    assert shares(p)[new] == (2, 25) and not p.rollout.paused  # 1 of 4 Ready, one more
    assert until_outcome(c) == "Succeeded"


def test_promote_skips_a_timed_pause_but_one_request_advances_one_step() -> None:
    c, _ = deployed(spec_of(rollout=canary()))
    c.change(QWEN)
    c.reconcile()
    c.reconcile(after=5)
    c.promote = c.now  # same instant as the reconcile: still counts once
    p = c.reconcile()
    assert p.rollout.current_step == 1 and reasons(p) == ["StepAdvanced"]
    p = c.reconcile()
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
    assert shares(p) == {old: (3, 90), new: (1, 10)}
    p = c.reconcile(after=3600)
    assert p.rollout.paused and p.rollout.current_step == 0 and p.events == ()
    c.promote = c.now
    p = c.reconcile(after=1)
    assert reasons(p) == ["StepAdvanced"] and p.rollout.current_step == 1
    assert p.degraded is None and p.rollout.analysis and p.rollout.analysis.failures == 0


# ---------------------------------------------------------------- abort, supersede


def test_abort_returns_to_stable_and_old_requests_are_ignored() -> None:
    c, old = deployed(spec_of(rollout=canary()))
    c.abort = T0 - timedelta(days=1)  # from an earlier rollout
    new = c.change(QWEN)
    p = c.reconcile()
    assert p.rollout.canary_revision == new
    c.abort = c.now + timedelta(seconds=30)
    p = c.reconcile(after=40)
    assert reasons(p) == ["Aborted"] and p.outcome == "Aborted"
    assert p.targets == (RevisionTarget(old, "vllm", 4, 100),) and p.delete == (new,)
    assert p.degraded and p.degraded[0] == "Aborted"
    assert p.history[0].result == "Aborted" and p.stats.failed == 1
    p = c.reconcile(after=60)
    assert p.degraded and p.rollout.canary_revision is None


def test_spec_change_mid_rollout_supersedes_the_canary() -> None:
    c, stable = deployed(spec_of(rollout=canary()))
    first = c.change(QWEN)
    c.reconcile()
    c.reconcile(after=300)  # step 2
    second = c.change(MISTRAL)
    p = c.reconcile(after=30)
    assert reasons(p) == ["Superseded", "RolloutStarted"] and p.outcome == "Superseded"
    assert p.delete == (first,) and shares(p) == {stable: (3, 90), second: (1, 10)}
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
        status=RolloutStatus.model_validate_json(began.rollout.model_dump_json(by_alias=True)),
        history=c.history,
        stats=c.stats,
    )
    before = c.reconcile(after=20)
    after = restarted.reconcile()
    assert after == before
    assert after.rollout.step_started_at == began.rollout.step_started_at
    assert after.rollout.current_step == 1
    assert after.rollout.step_started_at == before.rollout.step_started_at
    assert after.rollout.started_at == before.rollout.started_at
    assert after.targets == before.targets and after.events == ()
    assert after.analyze_at == before.analyze_at
    assert shares(after) == {old: (2, 50), new: (2, 50)}


def test_status_lost_the_readiest_other_workload_is_stable() -> None:
    spec = spec_of(model=QWEN, rollout=canary())
    old = LiveRevision("aaaaaaaaaa", "vllm", 4, 4, pod_relevant(spec_of(), "img:1"))
    c = Cluster(spec, live={old.revision: old})
    p = c.reconcile()
    assert reasons(p) == ["RolloutStarted"] and p.rollout.stable_revision == old.revision


# ------------------------------------------------------------------------- replicas


@pytest.mark.parametrize(
    ("total", "weight", "routing", "expected"),
    [
        (4, 10, "replicas", (1, 3)),  # at least one canary pod
        (4, 50, "replicas", (2, 2)),
        (4, 90, "replicas", (3, 1)),  # at least one stable pod below 100
        (4, 99, "replicas", (3, 1)),
        (4, 100, "replicas", (4, 0)),
        (10, 25, "replicas", (3, 7)),  # 2.5 rounds half up
        (10, 35, "replicas", (4, 6)),
        (2, 10, "replicas", (1, 1)),
        (1, 10, "replicas", (1, 1)),  # one replica cannot be split: surge one canary pod
        (1, 100, "replicas", (1, 0)),
        (0, 50, "replicas", (0, 0)),
        (4, 10, "gatewayAPI", (1, 4)),
        (4, 30, "gatewayAPI", (2, 4)),  # ceil
        (4, 100, "gatewayAPI", (4, 4)),
        (0, 10, "gatewayAPI", (0, 0)),
    ],
)
def test_split_replicas(total: int, weight: int, routing: str, expected: tuple[int, int]) -> None:
    assert split_replicas(total, weight, routing) == expected


def test_autoscaler_total_change_mid_canary_is_split_the_same_way() -> None:
    autoscaling = {"minReplicas": 2, "maxReplicas": 20, "target": 500}
    c, old = deployed(spec_of(rollout=canary(), autoscaling=autoscaling), total=4)
    new = c.change(QWEN, autoscaling=autoscaling)
    assert shares(c.reconcile()) == {old: (3, 90), new: (1, 10)}
    c.total = 10
    c.auto_ready = False
    p = c.reconcile(after=10)
    assert shares(p) == {old: (9, 90), new: (1, 10)} and p.rollout.current_step == 0
    p = c.reconcile(after=300)
    assert reasons(p) == ["StepAdvanced"] and shares(p) == {old: (5, 50), new: (5, 50)}
    c.total = 6  # scaled down while the canary is not Ready for 50%
    p = c.reconcile(after=400)
    assert shares(p) == {old: (3, 50), new: (3, 50)} and "1/3 Ready" in p.rollout.message


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
        sequence.append((shares(p), p.outcome))
    assert sequence == [
        ({old: (3, 100), new: (1, 0)}, None),
        ({old: (2, 67), new: (2, 33)}, None),
        ({old: (1, 34), new: (3, 66)}, None),
        ({new: (3, 100)}, "Succeeded"),
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


# ------------------------------------------------------------------- history, stats


def until_outcome(c: Cluster, limit: int = 6) -> str | None:
    """Reconcile (pods becoming Ready) until the rollout ends; promotion trades in quarters."""
    for _ in range(limit):
        if outcome := c.reconcile(after=1).outcome:
            return outcome
    return None


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
    c.abort = c.now
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


# -------------------------------------------------------------------------- property


@settings(max_examples=150, deadline=None)
@given(
    total=st.integers(0, 12),
    weights=st.lists(st.integers(1, 100), min_size=1, max_size=4, unique=True).map(sorted),
    gateway=st.booleans(),
    readiness=st.lists(st.integers(0, 14), min_size=4, max_size=14),
    totals=st.lists(st.integers(0, 12), min_size=4, max_size=14),
)
def test_canary_invariants(
    total: int, weights: list[int], gateway: bool, readiness: list[int], totals: list[int]
) -> None:
    routing: dict[str, Any] = (
        {"type": "gatewayAPI", "parentRefs": [{"name": "gw"}]} if gateway else {"type": "replicas"}
    )
    steps = [{"weight": w, "pause": {"duration": "1m"}} for w in weights]
    c, stable = deployed(spec_of(rollout=canary(steps, trafficRouting=routing)), total=total)
    new = c.change(QWEN)
    c.auto_ready = False
    for ready, now_total in zip(readiness, totals, strict=False):
        if new in c.live:
            c.set_ready(new, min(ready, c.live[new].replicas))
        c.total = now_total
        before = c.live.get(new)
        p = c.reconcile(after=45)
        serving = [t for t in p.targets if t.weight > 0]
        assert sum(t.weight for t in p.targets) == 100
        if now_total >= 1:
            assert all(t.replicas >= 1 for t in serving)
        got = shares(p)
        if p.rollout.canary_revision and stable in got and p.rollout.current_step is not None:
            step = p.rollout.current_step
            canary_ready = before.ready_replicas if before else 0
            if step < len(weights):
                share, _ = split_replicas(now_total, weights[step], routing["type"])
                assert got[stable][0] >= now_total - share
            elif routing["type"] == "gatewayAPI":  # promoting: the stable keeps every pod
                assert got[stable][0] == now_total
            else:  # promoting: pods traded a quarter at a time, never surged
                budget = math.ceil(now_total / 4)
                assert got[stable][0] + min(canary_ready, now_total) >= now_total - budget
        if p.outcome == "Succeeded":
            break
