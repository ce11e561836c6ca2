"""Pure rendering: a typed, resolved LLMDeployment to every child object the operator applies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubellm.api.models import GpuNodeLabels
from kubellm.render import children
from kubellm.render.context import (
    GATEWAY_API,
    KEDA_API,
    LWS_API,
    MONITORING_API,
    OPTIONAL_APIS,
    RenderContext,
    single_revision,
)
from kubellm.render.resolve import InvalidSpecError, Problem, Resolved, resolve
from kubellm.rollout.targets import RevisionTarget


def render_children(ctx: RenderContext) -> list[dict[str, Any]]:
    """Every child of one LLMDeployment, in apply order (workloads before their traffic).

    Every revision the rollout runs gets its snapshot and its workload: the spec's own from
    the spec, the others rebuilt from their snapshots (`ctx.others`); one that cannot be
    rebuilt is left out, and the executor leaves its workload as it is.
    """
    spec = ctx.resolved.spec
    objects: list[dict[str, Any]] = []
    for target in ctx.revisions:
        revision = ctx.for_revision(target.revision)
        if revision is not None:
            objects += [children.controller_revision(revision), _workload(revision)]
    objects.append(children.service(ctx))
    if spec.rollout.canary.traffic_routing.type == "gatewayAPI" and GATEWAY_API in ctx.apis:
        objects += children.revision_services(ctx)
        objects.append(children.http_route(ctx))
    if spec.autoscaling:
        if spec.autoscaling.provider == "keda" and KEDA_API in ctx.apis:
            if spec.autoscaling.prometheus_auth:
                objects.append(children.trigger_authentication(ctx))
            objects.append(children.scaled_object(ctx))
        elif spec.autoscaling.provider == "hpa":
            objects.append(children.horizontal_pod_autoscaler(ctx))
    objects.append(children.pod_disruption_budget(ctx))
    if ctx.pod_monitor and MONITORING_API in ctx.apis:
        objects.append(children.pod_monitor(ctx))
    return objects


def _workload(ctx: RenderContext) -> dict[str, Any]:
    if not ctx.multi_node:
        return children.deployment(ctx)
    if LWS_API not in ctx.apis:
        raise InvalidSpecError(
            ctx.resolved.owner,
            [
                Problem(
                    "spec.resources",
                    f"one replica needs {ctx.resolved.sizing.nodes_per_replica} nodes, which"
                    " takes a LeaderWorkerSet; install LeaderWorkerSet"
                    " (leaderworkerset.x-k8s.io) or pick a larger GPU",
                )
            ],
        )
    return children.leader_worker_set(ctx)


@dataclass
class RenderResult:
    """Objects rendered from a YAML stream, and every problem found, by document."""

    objects: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[Resolved] = field(default_factory=list)
    problems: list[tuple[str, Problem]] = field(default_factory=list)


def render_documents(
    documents: Iterable[Mapping[str, Any] | None], gpu_node_labels: GpuNodeLabels = "nvidia"
) -> RenderResult:
    """Render every LLMDeployment of a stream offline, as if the cluster served every API."""
    result = RenderResult()
    for index, doc in enumerate(documents):
        if not doc:
            continue
        label = str((doc.get("metadata") or {}).get("name") or f"document {index + 1}")
        try:
            resolved = resolve(doc)
            ctx = single_revision(resolved, gpu_node_labels=gpu_node_labels)
            result.objects += render_children(ctx)
            result.resolved.append(resolved)
        except InvalidSpecError as invalid:
            result.problems += [(label, p) for p in invalid.problems]
    return result


__all__ = [
    "OPTIONAL_APIS",
    "InvalidSpecError",
    "Problem",
    "RenderContext",
    "RenderResult",
    "Resolved",
    "RevisionTarget",
    "render_children",
    "render_documents",
    "resolve",
    "single_revision",
]
