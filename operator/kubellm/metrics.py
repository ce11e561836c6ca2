"""The operator's own Prometheus metrics (prefix `kubellm_`), served on --metrics-port."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kubellm.api.models import RolloutResult

REGISTRY = CollectorRegistry()
PER_RESOURCE = ("namespace", "llmdeployment")

RECONCILES = Counter("kubellm_reconcile", "Reconciles by result.", ["result"], registry=REGISTRY)
RECONCILES_UNCHANGED = Counter(
    "kubellm_reconcile_unchanged",
    "Looks (resyncs) skipped: nothing changed since a reconcile that wrote nothing.",
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "kubellm_reconcile_errors", "Reconciles that failed and will be retried.", registry=REGISTRY
)
RECONCILE_SECONDS = Histogram(
    "kubellm_reconcile_duration_seconds",
    "Time one reconcile takes.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
API_WRITES = Counter(
    "kubellm_api_writes",
    "Write requests to the Kubernetes API by method and namespace (a steady state makes none).",
    ["method", "namespace"],
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "kubellm_api_requests",
    "Requests to the Kubernetes API by verb (get, create, apply, update, patch, delete) and"
    " resource (`llmdeployments/status`, `events`...); Kopf's watches are not counted here.",
    ["verb", "resource"],
    registry=REGISTRY,
)
WATCH_EVENTS = Counter(
    "kubellm_watch_events",
    "Watch events received (listings included), by kind.",
    ["kind"],
    registry=REGISTRY,
)
CHILDREN_APPLIED = Counter(
    "kubellm_children_applied",
    "Children created or changed, by kind.",
    ["kind"],
    registry=REGISTRY,
)
SPEC_VALIDATION_FAILURES = Counter(
    "kubellm_spec_validation_failures",
    "Specs found invalid or infeasible (counted once per generation).",
    registry=REGISTRY,
)
REVISION_READY_SECONDS = Histogram(
    "kubellm_revision_ready_seconds",
    "Cold start: a revision's first pod created to its first pod Ready.",
    ["engine"],
    buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
    registry=REGISTRY,
)
ROLLOUTS = Counter(
    "kubellm_rollouts",
    "Finished rollouts by result.",
    [*PER_RESOURCE, "result"],
    registry=REGISTRY,
)
ROLLOUT_SECONDS = Histogram(
    "kubellm_rollout_duration_seconds",
    "Rollout start to its end, by result.",
    ["result"],
    buckets=(60, 300, 600, 1200, 1800, 3600, 7200, 14400),
    registry=REGISTRY,
)
LEADING = Gauge(
    "kubellm_leading",
    "1 while this operator replica leads (reconciles), 0 while peering pauses it.",
    registry=REGISTRY,
)
PHASES = ("Pending", "Progressing", "Ready", "Degraded", "Failed")


@dataclass(frozen=True, slots=True)
class ResourceGauges:
    """What one LLMDeployment's gauges show; None: not known yet (no series)."""

    spec_valid: float | None = None
    phase: str | None = None  # one series per phase, 1 for this one
    replicas: float | None = None
    ready_replicas: float | None = None
    gpus_requested: float | None = None
    gpus_per_replica: float | None = None
    rollout_success_ratio: float | None = None
    canary_weight: float | None = None


_GAUGES: dict[str, tuple[str, str]] = {  # ResourceGauges field -> series name, help
    "spec_valid": ("kubellm_llmdeployment_spec_valid", "1 when the spec is valid and fits."),
    "replicas": ("kubellm_llmdeployment_replicas", "Serving pods."),
    "ready_replicas": ("kubellm_llmdeployment_ready_replicas", "Ready serving pods."),
    "gpus_requested": (
        "kubellm_gpus_requested",
        "GPUs requested by all pods of an LLMDeployment.",
    ),
    "gpus_per_replica": (
        "kubellm_gpus_per_replica",
        "GPUs one replica uses (the sizing decision).",
    ),
    "rollout_success_ratio": (
        "kubellm_rollout_success_ratio",
        "Succeeded / (succeeded + failed) rollouts.",
    ),
    "canary_weight": ("kubellm_canary_weight", "Traffic percent on the canary."),
}


class PerResourceGauges(Collector):
    """The per-LLMDeployment gauges, built at scrape time from one small record per object.

    A labelled Gauge child costs about 730 bytes and an LLMDeployment has twelve series
    (five of them phases): 9 KiB per object, 90 MiB at 10,000. A record costs a tenth of that.
    """

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], ResourceGauges] = {}

    def set(self, namespace: str, name: str, **values: Any) -> None:
        """Change some of an object's gauges; the others keep their value."""
        key = (namespace, name)
        self.records[key] = replace(self.records.get(key, ResourceGauges()), **values)

    def forget(self, namespace: str, name: str) -> None:
        self.records.pop((namespace, name), None)

    def describe(self) -> Iterator[Metric]:
        gauges, phases = _families()
        return iter([*gauges.values(), phases])

    def collect(self) -> Iterator[Metric]:
        gauges, phases = _families()
        for (namespace, name), record in list(self.records.items()):
            for field, family in gauges.items():
                value = getattr(record, field)
                if value is not None:
                    family.add_metric([namespace, name], value)
            if record.phase is not None:
                for phase in PHASES:
                    phases.add_metric([namespace, name, phase], 1 if record.phase == phase else 0)
        return iter([*gauges.values(), phases])


def _families() -> tuple[dict[str, GaugeMetricFamily], GaugeMetricFamily]:
    """Empty families: one per ResourceGauges field, and the phases'."""
    gauges = {f: GaugeMetricFamily(n, h, labels=PER_RESOURCE) for f, (n, h) in _GAUGES.items()}
    phases = GaugeMetricFamily(
        "kubellm_llmdeployment_phase", "1 for the current phase.", labels=[*PER_RESOURCE, "phase"]
    )
    return gauges, phases


RESOURCES = PerResourceGauges()
REGISTRY.register(RESOURCES)


def forget(namespace: str, name: str) -> None:
    """Drop the per-resource series of a deleted LLMDeployment (its rollout counts too: a
    series per object ever deleted would grow without end)."""
    RESOURCES.forget(namespace, name)
    for result in get_args(RolloutResult):
        with contextlib.suppress(KeyError):
            ROLLOUTS.remove(namespace, name, result)
