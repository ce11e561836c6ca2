"""The operator's own Prometheus metrics (prefix `kubellm_`), served on --metrics-port."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
SPEC_VALID = Gauge(
    "kubellm_llmdeployment_spec_valid",
    "1 when the spec is valid and fits.",
    PER_RESOURCE,
    registry=REGISTRY,
)
PHASE = Gauge(
    "kubellm_llmdeployment_phase",
    "1 for the current phase.",
    [*PER_RESOURCE, "phase"],
    registry=REGISTRY,
)
REPLICAS = Gauge("kubellm_llmdeployment_replicas", "Serving pods.", PER_RESOURCE, registry=REGISTRY)
READY_REPLICAS = Gauge(
    "kubellm_llmdeployment_ready_replicas",
    "Ready serving pods.",
    PER_RESOURCE,
    registry=REGISTRY,
)
GPUS_REQUESTED = Gauge(
    "kubellm_gpus_requested",
    "GPUs requested by all pods of an LLMDeployment.",
    PER_RESOURCE,
    registry=REGISTRY,
)
GPUS_PER_REPLICA = Gauge(
    "kubellm_gpus_per_replica",
    "GPUs one replica uses (the sizing decision).",
    PER_RESOURCE,
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
ROLLOUT_SUCCESS_RATIO = Gauge(
    "kubellm_rollout_success_ratio",
    "Succeeded / (succeeded + failed) rollouts.",
    PER_RESOURCE,
    registry=REGISTRY,
)
CANARY_WEIGHT = Gauge(
    "kubellm_canary_weight", "Traffic percent on the canary.", PER_RESOURCE, registry=REGISTRY
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


def forget(namespace: str, name: str) -> None:
    """Drop the per-resource series of a deleted LLMDeployment."""
    for gauge in (
        SPEC_VALID,
        REPLICAS,
        READY_REPLICAS,
        GPUS_REQUESTED,
        GPUS_PER_REPLICA,
        ROLLOUT_SUCCESS_RATIO,
        CANARY_WEIGHT,
    ):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    for phase in PHASES:
        with contextlib.suppress(KeyError):
            PHASE.remove(namespace, name, phase)
