"""Status as a pure function: conditions first, the phase derived from them.

A condition keeps its lastTransitionTime while its status does not change, so a resync that
finds nothing new computes a status equal to the one stored, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from kubellm.api.models import (
    AutoscalingStatus,
    Condition,
    HistoryEntry,
    LLMDeploymentStatus,
    Phase,
    RevisionStatus,
    RolloutStats,
    RolloutStatus,
    SizingStatus,
)
from kubellm.render import Resolved
from kubellm.rollout.pods import RevisionPods, why_not_ready
from kubellm.sizing import SizingPlan
from kubellm.times import seconds_between

TRUE: Literal["True"] = "True"
FALSE: Literal["False"] = "False"


UNAVAILABLE_GRACE_SECONDS = 300.0
_IMAGE_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName"})


@dataclass(frozen=True)
class Observation:
    """What one reconcile learnt, as inputs to the status."""

    now: str  # RFC 3339
    generation: int | None
    previous: LLMDeploymentStatus
    spec_problems: tuple[str, ...]  # empty when the spec is valid and fits
    sizing: SizingStatus | None  # None keeps the previous one (invalid spec)
    revisions: tuple[RevisionStatus, ...]
    desired_replicas: int  # serving replicas the spec (or the autoscaler) asks for
    selector: str
    rollout: RolloutStatus | None
    history: tuple[HistoryEntry, ...]
    stats: RolloutStats | None
    degraded: tuple[str, str] | None = None  # (reason, message): rollback, reconcile error...
    halted: tuple[str, str] | None = None  # (reason, message): a rollout paused for a human
    pods: RevisionPods = field(default_factory=RevisionPods)  # of the serving revisions
    unavailable_grace: float = UNAVAILABLE_GRACE_SECONDS
    # InvalidSpec: kubellm found the problems; RefusedByAPIServer: a rendered child was
    # refused (a free-form field the schema let through)
    spec_reason: str = "InvalidSpec"
    autoscaling: AutoscalingStatus | None = None  # autoscaling_status(resolved)


def sizing_status(plan: SizingPlan, gpu_type: str | None) -> SizingStatus:
    return SizingStatus(
        tensor_parallel=plan.tensor_parallel,
        pipeline_parallel=plan.pipeline_parallel,
        gpus_per_replica=plan.gpus_per_replica,
        nodes_per_replica=plan.nodes_per_replica,
        gpu_type=gpu_type,
        context_length=plan.context_length,
        weights_gi_b=round(plan.weights_gib, 2),
        kv_cache_per_gpu_gi_b=round(plan.kv_cache_per_gpu_gib, 2),
        overhead_gi_b=round(plan.overhead_gib, 2),
        per_gpu_used_gi_b=round(plan.per_gpu_used_gib, 2),
        per_gpu_capacity_gi_b=round(plan.per_gpu_capacity_gib, 2),
        max_concurrent_sequences=plan.max_concurrent_sequences,
        min_concurrent_sequences=plan.min_concurrent_sequences,
        memory_fraction=plan.memory_fraction,
        startup_timeout_seconds=plan.startup_seconds,
        reason=plan.reason,
    )


def autoscaling_status(resolved: Resolved) -> AutoscalingStatus | None:
    """The autoscaler's effective target, for status.autoscaling (None without autoscaling)."""
    planned, spec = resolved.autoscaling, resolved.spec.autoscaling
    if planned is None or spec is None:
        return None
    return AutoscalingStatus(
        metric=planned.metric,
        target=planned.target,
        source="auto" if planned.auto else "spec",
        ttft_slo=spec.ttft_slo,
        sustainable_tokens_per_second=planned.sustainable_tokens_per_second,
        reason=planned.reason,
    )


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    now: str,
    generation: int | None,
) -> list[Condition]:
    """Replace one condition, keeping lastTransitionTime unless its status changed."""
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old and old.status == status else now
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [new]


def phase_of(conditions: Sequence[Condition], serving: bool) -> Phase:
    """Failed: invalid with nothing serving; then Degraded, Ready, Progressing, Pending."""
    state = {c.type: c.status for c in conditions}
    if state.get("SpecValid") == FALSE and not serving:
        return "Failed"
    if state.get("Degraded") == TRUE:
        return "Degraded"
    if state.get("Ready") == TRUE and state.get("Progressing") != TRUE:
        return "Ready"
    if state.get("Progressing") == TRUE:
        return "Progressing"
    return "Pending"


def not_ready_reason(pods: RevisionPods) -> str:
    """Why serving pods are not Ready, as a Ready condition reason (see docs/operations.md)."""
    if pods.failing_reason == "CrashLoopBackOff":
        return "CrashLooping"
    if pods.failing_reason in _IMAGE_REASONS:
        return "ImagePullFailing"
    if pods.failing:
        return "PodsFailing"
    if pods.pending:
        return "PodsUnschedulable" if pods.pending_message else "PodsPending"
    if pods.loading:
        return "EngineLoading"
    return "ReplicasNotReady"


def _since(condition: Condition | None, now: str) -> float:
    return seconds_between(condition.last_transition_time, now) if condition else 0.0


def compose(o: Observation) -> LLMDeploymentStatus:
    """The whole status from one observation."""
    ready = sum(r.ready_replicas for r in o.revisions)
    replicas = sum(r.replicas for r in o.revisions)
    rolling = bool(o.rollout and o.rollout.canary_revision)
    gen, now = o.generation, o.now
    conditions: list[Condition] = list(o.previous.conditions)

    if o.spec_problems:
        message = "; ".join(o.spec_problems)
        conditions = set_condition(conditions, "SpecValid", FALSE, o.spec_reason, message, now, gen)
    else:
        conditions = set_condition(conditions, "SpecValid", TRUE, "Valid", "", now, gen)

    unavailable = None
    if o.desired_replicas == 0:
        conditions = set_condition(
            conditions, "Ready", TRUE, "ScaledToZero", "no replicas requested", now, gen
        )
    elif ready >= o.desired_replicas:
        message = f"{ready}/{o.desired_replicas} replicas ready"
        conditions = set_condition(conditions, "Ready", TRUE, "ReplicasReady", message, now, gen)
    else:
        reason = not_ready_reason(o.pods)
        message = f"{ready}/{o.desired_replicas} replicas ready: {why_not_ready(o.pods)}"
        conditions = set_condition(conditions, "Ready", FALSE, reason, message, now, gen)
        down = next(c for c in conditions if c.type == "Ready")
        if reason != "EngineLoading" and _since(down, now) >= o.unavailable_grace:
            unavailable = ("ReplicasUnavailable", message)

    if o.halted:
        conditions = set_condition(conditions, "Progressing", FALSE, *o.halted, now, gen)
    elif rolling and o.rollout:
        reason = "RolloutPaused" if o.rollout.paused else "RolloutInProgress"
        conditions = set_condition(
            conditions, "Progressing", TRUE, reason, o.rollout.message, now, gen
        )
    elif ready < o.desired_replicas or replicas > o.desired_replicas:
        message = f"{ready}/{o.desired_replicas} ready, {replicas} running"
        conditions = set_condition(
            conditions, "Progressing", TRUE, "ReplicasUpdating", message, now, gen
        )
    else:
        conditions = set_condition(conditions, "Progressing", FALSE, "Stable", "", now, gen)

    if o.spec_problems:
        degraded: tuple[str, str] | None = ("InvalidSpec", "; ".join(o.spec_problems))
    else:
        degraded = o.degraded or unavailable
    if degraded:
        conditions = set_condition(conditions, "Degraded", TRUE, *degraded, now, gen)
    else:
        conditions = set_condition(conditions, "Degraded", FALSE, "AsExpected", "", now, gen)

    order = ("Ready", "Progressing", "Degraded", "SpecValid")
    conditions.sort(key=lambda c: order.index(c.type) if c.type in order else len(order))
    return LLMDeploymentStatus(
        observed_generation=gen,
        phase=phase_of(conditions, serving=bool(o.revisions)),
        conditions=conditions,
        replicas=replicas,
        ready_replicas=ready,
        ready=f"{ready}/{o.desired_replicas}",
        selector=o.selector,
        sizing=o.sizing or o.previous.sizing,
        autoscaling=o.previous.autoscaling if o.spec_problems else o.autoscaling,
        revisions=list(o.revisions),
        rollout=o.rollout,
        history=list(o.history),
        rollout_stats=o.stats,
    )


def unavailable_in(status: LLMDeploymentStatus, now: str, grace: float) -> float | None:
    """Seconds until a Ready=False condition has lasted the grace period (to look again)."""
    down = next((c for c in status.conditions if c.type == "Ready"), None)
    if down is None or down.status != FALSE or down.reason == "EngineLoading":
        return None
    left = grace - _since(down, now)
    return left if left > 0 else None


def progress_only(before: LLMDeploymentStatus, after: LLMDeploymentStatus) -> bool:
    """`after` tells only how far pods have come since `before`: ready counts, and the reason
    and message of a Ready condition that stays False and of Progressing. Such a status can
    wait a few seconds and be written with the next change (pods that load a model for
    minutes would otherwise cost a status write for every pod scheduled, started or Ready)."""
    ready = next((c for c in after.conditions if c.type == "Ready"), None)
    if ready is None or ready.status != FALSE:
        return False
    return _without_progress(before) == _without_progress(after)


def _without_progress(status: LLMDeploymentStatus) -> dict[str, object]:
    data = status.model_dump(exclude={"ready_replicas"})
    data["ready"] = (status.ready or "").rpartition("/")[2]  # the count asked for stays
    for condition in data["conditions"]:
        if condition["type"] in ("Ready", "Progressing"):
            condition["reason"] = condition["message"] = None
    for revision in data["revisions"]:
        revision["ready_replicas"] = revision["ready_seconds"] = None
    return data
