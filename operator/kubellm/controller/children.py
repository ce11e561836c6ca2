"""Small summaries of children and pods, kept in Kopf's watch-fed indices.

The operator reads children from these indices instead of listing them on every reconcile,
so a resync of an unchanged LLMDeployment costs no API call. A summary keeps what a
reconcile compares (digests of what was applied and of what the child still holds), not the
object: thousands of Deployments would otherwise sit in memory twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubellm.controller.drift import foreign, live_digest
from kubellm.render.context import ENGINE, INSTANCE, REVISION, REVISION_SPEC, SERVING
from kubellm.rollout.pods import PodInfo

APPLIED_HASH = "kubellm.io/applied-hash"
WORKLOAD_KINDS = frozenset({"Deployment", "LeaderWorkerSet"})
SNAPSHOT_KIND = "ControllerRevision"


@dataclass(frozen=True, slots=True)
class Child:
    kind: str
    namespace: str
    name: str
    revision: str | None = None
    engine: str | None = None
    applied: str | None = None  # digest of the object kubellm last applied (annotation)
    live: str | None = None  # digest of what kubellm still owns of it (see drift.py)
    foreign: bool = False  # another manager holds part of its spec (see drift.py)
    resource_version: str | None = None
    replicas: int = 0  # workloads: spec.replicas
    ready_replicas: int = 0  # workloads: ready pods (LeaderWorkerSet: ready groups)
    snapshot: str | None = None  # the revision's stored spec (JSON), from a snapshot or workload
    number: int = 0  # ControllerRevision: its revision number
    deleting: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.namespace, self.name)

    def stored_spec(self) -> dict[str, Any] | None:
        return json.loads(self.snapshot) if self.snapshot else None


def owner_key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = body.get("metadata") or {}
    instance = (meta.get("labels") or {}).get(INSTANCE)
    return (meta.get("namespace", ""), instance) if instance else None


def summarize(body: Mapping[str, Any]) -> Child:
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    status = body.get("status") or {}
    kind = str(body.get("kind"))
    snapshot = annotations.get(REVISION_SPEC)
    if kind == SNAPSHOT_KIND:
        snapshot = json.dumps(body.get("data"), sort_keys=True, separators=(",", ":"))
    return Child(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name")),
        revision=labels.get(REVISION),
        engine=labels.get(ENGINE),
        applied=annotations.get(APPLIED_HASH),
        live=live_digest(body),
        foreign=foreign(body),
        resource_version=meta.get("resourceVersion"),
        replicas=int((body.get("spec") or {}).get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        snapshot=snapshot,
        number=int(body.get("revision") or 0) if kind == SNAPSHOT_KIND else 0,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def pod_info(body: Mapping[str, Any]) -> PodInfo | None:
    meta = body.get("metadata") or {}
    revision = (meta.get("labels") or {}).get(REVISION)
    if not revision:
        return None
    status = body.get("status") or {}
    ready = _condition(status, "Ready")
    scheduled = _condition(status, "PodScheduled")
    waiting: Mapping[str, Any] = next(
        (
            c["state"]["waiting"]
            for c in status.get("containerStatuses") or []
            if (c.get("state") or {}).get("waiting")
        ),
        {},
    )
    return PodInfo(
        revision=revision,
        created=meta.get("creationTimestamp"),
        ready_since=ready.get("lastTransitionTime") if ready.get("status") == "True" else None,
        scheduled=scheduled.get("status") == "True"
        or bool((body.get("spec") or {}).get("nodeName")),
        unschedulable=scheduled.get("message")
        if scheduled.get("reason") == "Unschedulable"
        else None,
        waiting=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        restarts=sum(
            int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []
        ),
        deleting=bool(meta.get("deletionTimestamp")),
        serving=(meta.get("labels") or {}).get(SERVING) == "true",
    )
