"""Status as a pure function: conditions first, the phase derived from them.

A condition keeps its lastTransitionTime while its status does not change, so a resync that
finds nothing new computes a status equal to the one stored, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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
from kubellm.sizing import SizingPlan

TRUE: Literal["True"] = "True"
FALSE: Literal["False"] = "False"


@dataclass(frozen=True)
class Observation:
    """What one reconcile learnt, as inputs to the status."""

    now: str  # RFC 3339
    generation: int | None
    previous: LLMDeploymentStatus
    spec_problems: tuple[str, ...]  # empty when the spec is valid and fits
    sizing: SizingStatus | None  # None keeps the previous one (invalid spec)
    revisions: tuple[RevisionStatus, ...]
    desired_replicas: int
    selector: str
    rollout: RolloutStatus | None
    history: tuple[HistoryEntry, ...]
    stats: RolloutStats | None
    degraded: tuple[str, str] | None  # (reason, message) from the rollout, e.g. RolledBack
    stalled: tuple[str, str] | None  # (reason, message) of a workload that stopped progressing
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


def compose(o: Observation) -> LLMDeploymentStatus:
    """The whole status from one observation."""
    ready = sum(r.ready_replicas for r in o.revisions)
    replicas = sum(r.replicas for r in o.revisions)
    rolling = bool(o.rollout and o.rollout.canary_revision)
    gen, now = o.generation, o.now
    conditions: list[Condition] = list(o.previous.conditions)

    if o.spec_problems:
        message = "; ".join(o.spec_problems)
        conditions = set_condition(conditions, "SpecValid", FALSE, "InvalidSpec", message, now, gen)
    else:
        conditions = set_condition(conditions, "SpecValid", TRUE, "Valid", "", now, gen)

    if o.desired_replicas == 0:
        conditions = set_condition(
            conditions, "Ready", TRUE, "ScaledToZero", "no replicas requested", now, gen
        )
    elif ready >= o.desired_replicas:
        message = f"{ready}/{o.desired_replicas} replicas ready"
        conditions = set_condition(conditions, "Ready", TRUE, "ReplicasReady", message, now, gen)
    else:
        message = f"{ready}/{o.desired_replicas} replicas ready"
        conditions = set_condition(
            conditions, "Ready", FALSE, "ReplicasNotReady", message, now, gen
        )

    if rolling and o.rollout:
        conditions = set_condition(
            conditions, "Progressing", TRUE, "RolloutInProgress", o.rollout.message, now, gen
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
        degraded = o.degraded or o.stalled
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
