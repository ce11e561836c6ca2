"""The small frozen context every render function takes, and the labels children share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from kubellm import GROUP, KIND, VERSION
from kubellm.api.models import GpuNodeLabels
from kubellm.rollout.targets import RevisionTarget

if TYPE_CHECKING:  # resolve checks templates against these labels: import it lazily
    from kubellm.render.resolve import Resolved

INSTANCE = "app.kubernetes.io/instance"
MANAGED_BY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
ENGINE = f"{GROUP}/engine"
REVISION = f"{GROUP}/revision"
SERVING = f"{GROUP}/serving"  # pods that answer HTTP: not LeaderWorkerSet workers
METRICS_PATH = f"{GROUP}/metrics-path"
REVISION_SPEC = f"{GROUP}/revision-spec"  # a revision's stored spec, secrets redacted

# Optional APIs: children of these kinds are rendered only where the cluster serves them.
LWS_API = "leaderworkerset.x-k8s.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
MONITORING_API = "monitoring.coreos.com/v1"
KEDA_API = "keda.sh/v1alpha1"
OPTIONAL_APIS = frozenset({LWS_API, GATEWAY_API, MONITORING_API, KEDA_API})


@dataclass(frozen=True)
class RenderContext:
    resolved: Resolved  # the spec's own revision: shared children are rendered from it
    revisions: tuple[RevisionTarget, ...]  # every revision that runs, as the rollout decided
    apis: frozenset[str] = field(default=OPTIONAL_APIS)
    # The cluster's GPU node-label scheme (`kubellm run --gpu-node-labels`), unless the spec
    # sets resources.gpu.nodeLabels.
    gpu_node_labels: GpuNodeLabels = "nvidia"
    # Revisions other than the spec's, each rebuilt from its stored snapshot.
    others: Mapping[str, Resolved] = field(default_factory=dict)
    # Revision numbers of the snapshots that exist (ControllerRevision.revision).
    numbers: Mapping[str, int] = field(default_factory=dict)
    pod_monitor: bool = True  # one PodMonitor per LLMDeployment (off: the chart's scrapes all)

    @property
    def current(self) -> RevisionTarget | None:
        """This context's revision, if the rollout lets it run."""
        return next((t for t in self.revisions if t.revision == self.revision), None)

    @property
    def replicas(self) -> int:
        return self.current.replicas if self.current else 0

    @property
    def name(self) -> str:
        return self.resolved.owner.name

    @property
    def revision(self) -> str:
        return self.resolved.revision

    @property
    def multi_node(self) -> bool:
        return self.resolved.sizing.nodes_per_replica > 1

    def for_revision(self, revision: str) -> RenderContext | None:
        """The context that renders one revision's workload; None if it cannot be rebuilt."""
        if revision == self.revision:
            return self
        other = self.others.get(revision)
        return replace(self, resolved=other) if other else None

    @property
    def number(self) -> int:
        """This revision's snapshot number: kept once given, else one past the newest."""
        if self.revision in self.numbers:
            return self.numbers[self.revision]
        return max(self.numbers.values(), default=0) + 1


def single_revision(
    resolved: Resolved,
    apis: frozenset[str] = OPTIONAL_APIS,
    gpu_node_labels: GpuNodeLabels = "nvidia",
) -> RenderContext:
    """A context with only the spec's revision taking all traffic (the first rollout)."""
    replicas = resolved.spec.replicas
    if resolved.spec.autoscaling:
        replicas = max(replicas, resolved.spec.autoscaling.min_replicas)
    target = RevisionTarget(resolved.revision, resolved.engine.name, replicas, 100)
    return RenderContext(resolved, (target,), apis, gpu_node_labels)


def instance_labels(name: str) -> dict[str, str]:
    """Labels that select every pod of one LLMDeployment."""
    return {INSTANCE: name, COMPONENT: "inference"}


def common_labels(ctx: RenderContext) -> dict[str, str]:
    return {**instance_labels(ctx.name), MANAGED_BY: "kubellm"}


def revision_labels(ctx: RenderContext) -> dict[str, str]:
    return {**common_labels(ctx), ENGINE: ctx.resolved.engine.name, REVISION: ctx.revision}


def serving_selector(name: str) -> dict[str, str]:
    """Pods that serve clients, across revisions: the Service's and the scale selector."""
    return {**instance_labels(name), SERVING: "true"}


def metadata(ctx: RenderContext, name: str, labels: dict[str, str]) -> dict[str, Any]:
    """Child metadata: namespace and an ownerReference when the owner is known."""
    meta: dict[str, Any] = {"name": name, "labels": labels}
    owner = ctx.resolved.owner
    if owner.namespace:
        meta["namespace"] = owner.namespace
    if owner.uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


def revision_name(name: str, revision: str) -> str:
    return f"{name}-{revision}"
