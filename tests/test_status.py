"""Status as a pure function: conditions, stable transition times, the derived phase."""

from __future__ import annotations

import pytest

from kubellm.api.models import LLMDeploymentStatus, RevisionStatus, RolloutStatus
from kubellm.cli.sre import describe
from kubellm.rollout.pods import RevisionPods
from kubellm.status import (
    Observation,
    compose,
    not_ready_reason,
    phase_of,
    set_condition,
    unavailable_in,
)

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def observe(previous: LLMDeploymentStatus, now: str = T0, **changes: object) -> Observation:
    base: dict[str, object] = {
        "now": now,
        "generation": 1,
        "previous": previous,
        "spec_problems": (),
        "sizing": None,
        "revisions": (RevisionStatus(revision="r1", replicas=2, ready_replicas=2, weight=100),),
        "desired_replicas": 2,
        "selector": "app=x",
        "rollout": None,
        "history": (),
        "stats": None,
        "degraded": None,
    }
    return Observation(**{**base, **changes})  # type: ignore[arg-type]


def test_ready_when_every_replica_is_ready() -> None:
    status = compose(observe(LLMDeploymentStatus()))
    assert status.phase == "Ready"
    assert status.ready == "2/2"
    assert {c.type: c.status for c in status.conditions} == {
        "Ready": "True",
        "Progressing": "False",
        "Degraded": "False",
        "SpecValid": "True",
    }


def test_a_second_compose_of_the_same_facts_is_identical() -> None:
    """What makes a resync write nothing: lastTransitionTime does not move."""
    first = compose(observe(LLMDeploymentStatus()))
    second = compose(observe(first, now=T1))
    assert second == first


def test_transition_time_moves_only_when_status_changes() -> None:
    ready = compose(observe(LLMDeploymentStatus()))
    loading = compose(
        observe(
            ready,
            now=T1,
            revisions=(RevisionStatus(revision="r1", replicas=2, ready_replicas=1, weight=100),),
        )
    )
    by_type = {c.type: c for c in loading.conditions}
    assert by_type["Ready"].status == "False" and by_type["Ready"].last_transition_time == T1
    assert by_type["SpecValid"].last_transition_time == T0
    assert loading.phase == "Progressing"


def test_invalid_spec_is_degraded_while_serving_and_failed_without() -> None:
    serving = compose(observe(LLMDeploymentStatus(), spec_problems=("spec.x: bad",)))
    assert serving.phase == "Degraded"
    assert next(c for c in serving.conditions if c.type == "SpecValid").message == "spec.x: bad"
    nothing = compose(
        observe(
            LLMDeploymentStatus(), spec_problems=("spec.x: bad",), revisions=(), desired_replicas=0
        )
    )
    assert nothing.phase == "Failed"


def test_rolled_back_is_degraded() -> None:
    status = compose(observe(LLMDeploymentStatus(), degraded=("RolledBack", "error rate 0.5")))
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "RolledBack")
    assert status.phase == "Degraded"


@pytest.mark.parametrize(
    ("states", "phase"),
    [
        ({"Ready": "True", "Progressing": "False"}, "Ready"),
        ({"Ready": "True", "Progressing": "True"}, "Progressing"),
        ({"Ready": "False", "Progressing": "False"}, "Pending"),
        ({"Ready": "True", "Degraded": "True"}, "Degraded"),
    ],
)
def test_phase_is_a_function_of_conditions(states: dict[str, str], phase: str) -> None:
    conditions: list = []
    for kind, value in states.items():
        conditions = set_condition(conditions, kind, value, "R", "", T0, 1)  # type: ignore[arg-type]
    assert phase_of(conditions, serving=True) == phase


def test_status_cli_tells_the_story() -> None:
    status = compose(observe(LLMDeploymentStatus()))
    obj = {
        "metadata": {"name": "x", "namespace": "ns", "generation": 1},
        "spec": {"model": {"name": "m"}, "engine": {"type": "tgi"}},
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    from datetime import UTC, datetime

    text = describe(obj, datetime(2026, 1, 1, 0, 1, tzinfo=UTC))
    assert text.startswith("ns/x: Ready, 2/2 ready, tgi serving m")
    assert "r1" in text and "100%" in text


# ----------------------------------------------- Ready reasons and Degraded after a grace


def pods(**counts: object) -> RevisionPods:
    return RevisionPods(**counts)  # type: ignore[arg-type]


NO_GPU = "7 Insufficient nvidia.com/gpu"
NOT_READY = (RevisionStatus(revision="r1", replicas=2, ready_replicas=0, weight=100),)


@pytest.mark.parametrize(
    ("serving", "reason", "words"),
    [
        (
            pods(total=2, pending=2, pending_message=f"0/7 nodes are available: {NO_GPU}"),
            "PodsUnschedulable",
            "2 pending (0/7 nodes are available: 7 Insufficient nvidia.com/gpu)",
        ),
        (pods(total=2, pending=2), "PodsPending", "2 pending"),
        (pods(total=2, loading=2), "EngineLoading", "2 loading the model"),
        (
            pods(total=2, loading=1, failing=1, failing_reason="CrashLoopBackOff",
                 failing_message="CrashLoopBackOff: back-off 5m0s"),
            "CrashLooping",
            "1 failing (CrashLoopBackOff: back-off 5m0s)",
        ),
        (
            pods(total=2, failing=2, failing_reason="ImagePullBackOff",
                 failing_message="ImagePullBackOff: no such image"),
            "ImagePullFailing",
            "2 failing (ImagePullBackOff: no such image)",
        ),
        (
            pods(total=2, failing=2, failing_reason="CreateContainerConfigError",
                 failing_message="CreateContainerConfigError: secret not found"),
            "PodsFailing",
            "secret not found",
        ),
        (pods(), "ReplicasNotReady", "no pods yet"),
    ],
)  # fmt: skip
def test_ready_reason_says_what_keeps_pods_from_serving(
    serving: RevisionPods, reason: str, words: str
) -> None:
    status = compose(observe(LLMDeploymentStatus(), revisions=NOT_READY, pods=serving))
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert (ready.status, ready.reason) == ("False", reason)
    assert ready.message.startswith("0/2 replicas ready: ") and words in ready.message
    assert not_ready_reason(serving) == reason


def test_unready_serving_pods_turn_degraded_after_the_grace_period_unless_loading() -> None:
    crashing = pods(total=2, failing=2, failing_reason="CrashLoopBackOff")
    first = compose(observe(LLMDeploymentStatus(), revisions=NOT_READY, pods=crashing))
    assert first.phase == "Progressing"
    assert unavailable_in(first, T0, grace=300) == pytest.approx(300)
    later = compose(observe(first, now="2026-01-01T00:04:59Z", revisions=NOT_READY, pods=crashing))
    assert next(c for c in later.conditions if c.type == "Degraded").status == "False"
    late = compose(observe(first, now="2026-01-01T00:05:00Z", revisions=NOT_READY, pods=crashing))
    degraded = next(c for c in late.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "ReplicasUnavailable")
    assert degraded.message == "0/2 replicas ready: 2 failing"
    assert late.phase == "Degraded"
    loading = pods(total=2, loading=2)
    slow = compose(observe(first, now="2026-01-01T01:00:00Z", revisions=NOT_READY, pods=loading))
    assert next(c for c in slow.conditions if c.type == "Degraded").status == "False"
    assert unavailable_in(slow, "2026-01-01T01:00:00Z", grace=300) is None
    back = compose(observe(late, now="2026-01-01T00:06:00Z"))
    assert back.phase == "Ready"


def test_a_halted_rollout_is_not_progressing_and_names_why() -> None:
    rollout = RolloutStatus(stable_revision="r1", canary_revision="r2", paused=True, message="m")
    status = compose(
        observe(LLMDeploymentStatus(), rollout=rollout, halted=("AnalysisInconclusive", "m"))
    )
    progressing = next(c for c in status.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "AnalysisInconclusive")
    paused = compose(observe(LLMDeploymentStatus(), rollout=rollout))
    progressing = next(c for c in paused.conditions if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("True", "RolloutPaused")


def test_status_sizing_carries_the_headroom_rule_memory_flag_and_start_up_window() -> None:
    from conftest import llmd
    from kubellm.render import resolve
    from kubellm.status import sizing_status

    obj = llmd(
        engine={"type": "sglang", "maxContextLength": 16384},
        resources={"gpu": {"type": "H100-80GB"}, "minConcurrentSequences": 3},
    )
    resolved = resolve(obj)
    status = sizing_status(resolved.sizing, "H100-80GB")
    dumped = status.model_dump(by_alias=True)
    assert dumped["minConcurrentSequences"] == 3
    assert dumped["maxConcurrentSequences"] >= 3
    assert dumped["memoryFraction"] == pytest.approx(0.827, abs=0.002)
    assert dumped["startupTimeoutSeconds"] == 1800
