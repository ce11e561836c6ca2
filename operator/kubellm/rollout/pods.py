"""What the pods of a revision are doing, reduced to what rollouts and conditions decide on.

A canary that cannot start must never cost the stable its pods, except when the canary waits
for GPUs the stable holds (a full GPU pool): only the scheduler's "Insufficient <gpu>" tells
those apart from a canary that is broken (no matching node, bad image, crash loop).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# Container waiting reasons that mean the engine will not come up without a change.
FAILING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True, slots=True)
class PodInfo:
    """One serving pod, as the watch shows it."""

    revision: str
    created: str | None = None
    ready_since: str | None = None  # lastTransitionTime of Ready=True; None when not Ready
    scheduled: bool = False
    unschedulable: str | None = None  # the scheduler's message while it cannot place the pod
    waiting: str | None = None  # a container's waiting reason (CrashLoopBackOff...)
    waiting_message: str | None = None
    restarts: int = 0
    deleting: bool = False
    serving: bool = True  # answers HTTP (not a LeaderWorkerSet worker)


@dataclass(frozen=True)
class RevisionPods:
    """The pods of one revision, counted by what they are doing."""

    total: int = 0
    ready: int = 0
    serving_ready: int = 0  # Ready pods that answer HTTP: one per Ready replica at most
    pending: int = 0  # not placed on a node
    gpu_starved: int = 0  # not placed only for lack of free GPUs
    loading: int = 0  # placed and not failing, not Ready yet: the engine is loading
    failing: int = 0  # crash-looping, or an image or config that cannot start
    pending_message: str | None = None
    failing_reason: str | None = None  # the first failing pod's waiting reason
    failing_message: str | None = None

    def __add__(self, other: RevisionPods) -> RevisionPods:
        """Pods of several revisions together (the first message of each kind wins)."""
        return RevisionPods(
            total=self.total + other.total,
            ready=self.ready + other.ready,
            serving_ready=self.serving_ready + other.serving_ready,
            pending=self.pending + other.pending,
            gpu_starved=self.gpu_starved + other.gpu_starved,
            loading=self.loading + other.loading,
            failing=self.failing + other.failing,
            pending_message=self.pending_message or other.pending_message,
            failing_reason=self.failing_reason or other.failing_reason,
            failing_message=self.failing_message or other.failing_message,
        )


def lacks_gpus(message: str, resource: str) -> bool:
    """The scheduler's "Insufficient nvidia.com/gpu": more free GPUs would place the pod."""
    return f"Insufficient {resource}" in message


def summarize_pods(pods: Iterable[PodInfo], revision: str, gpu_resource: str) -> RevisionPods:
    """Count one revision's pods (pods on their way out are not counted)."""
    total = ready = serving_ready = pending = starved = loading = failing = 0
    pending_message = failing_reason = failing_message = None
    for pod in pods:
        if pod.revision != revision or pod.deleting:
            continue
        total += 1
        if pod.ready_since:
            ready += 1
            serving_ready += pod.serving
        elif pod.waiting in FAILING_REASONS:
            failing += 1
            failing_reason = failing_reason or pod.waiting
            failing_message = failing_message or f"{pod.waiting}: {pod.waiting_message or ''}"
        elif not pod.scheduled:
            pending += 1
            if pod.unschedulable:
                pending_message = pending_message or pod.unschedulable
                starved += lacks_gpus(pod.unschedulable, gpu_resource)
        else:
            loading += 1
    return RevisionPods(
        total=total,
        ready=ready,
        serving_ready=serving_ready,
        pending=pending,
        gpu_starved=starved,
        loading=loading,
        failing=failing,
        pending_message=pending_message,
        failing_reason=failing_reason,
        failing_message=failing_message.rstrip(": ") if failing_message else None,
    )


def why_not_ready(pods: RevisionPods) -> str:
    """One line for a condition or an Event: what keeps the revision's pods from serving."""
    parts = []
    if pods.failing:
        detail = f" ({pods.failing_message})" if pods.failing_message else ""
        parts.append(f"{pods.failing} failing{detail}")
    if pods.pending:
        detail = f" ({pods.pending_message})" if pods.pending_message else ""
        parts.append(f"{pods.pending} pending{detail}")
    if pods.loading:
        parts.append(f"{pods.loading} loading the model")
    return "; ".join(parts) or "no pods yet"
