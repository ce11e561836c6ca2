"""Small summaries of children and pods, kept in Kopf's in-memory indices.

The operator reads children from these watch-fed indices instead of listing them on every
reconcile, so a resync of an unchanged LLMDeployment costs no API call at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubellm.render.context import INSTANCE, REVISION

APPLIED_HASH = "kubellm.io/applied-hash"
REVISION_SPEC = "kubellm.io/revision-spec"
WORKLOAD_KINDS = frozenset({"Deployment", "LeaderWorkerSet"})


@dataclass(frozen=True)
class Child:
    kind: str
    namespace: str
    name: str
    revision: str | None
    applied_hash: str | None
    generation: int | None
    replicas: int  # workloads: spec.replicas
    ready_replicas: int  # workloads: ready pods (LeaderWorkerSet: ready groups)
    snapshot: Mapping[str, Any]  # workloads: the pod-relevant spec they were made from
    stalled: str | None  # a Deployment past its progress deadline: why


@dataclass(frozen=True)
class PodInfo:
    revision: str
    created: str | None
    ready_since: str | None


def desired_hash(obj: Mapping[str, Any]) -> str:
    """What was applied, so an unchanged child is recognised without a diff or a write."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def owner_key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = body.get("metadata") or {}
    instance = (meta.get("labels") or {}).get(INSTANCE)
    return (meta.get("namespace", ""), instance) if instance else None


def _stalled(status: Mapping[str, Any]) -> str | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Progressing" and condition.get("status") == "False":
            return str(condition.get("message") or condition.get("reason"))
    return None


def summarize(body: Mapping[str, Any]) -> Child:
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = body.get("status") or {}
    kind = str(body.get("kind"))
    snapshot = json.loads(annotations[REVISION_SPEC]) if REVISION_SPEC in annotations else {}
    return Child(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name")),
        revision=(meta.get("labels") or {}).get(REVISION),
        applied_hash=annotations.get(APPLIED_HASH),
        generation=meta.get("generation"),
        replicas=int((body.get("spec") or {}).get("replicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        snapshot=snapshot,
        stalled=_stalled(status) if kind == "Deployment" else None,
    )


def pod_info(body: Mapping[str, Any]) -> PodInfo | None:
    meta = body.get("metadata") or {}
    revision = (meta.get("labels") or {}).get(REVISION)
    if not revision:
        return None
    ready_since = next(
        (
            c.get("lastTransitionTime")
            for c in (body.get("status") or {}).get("conditions") or []
            if c.get("type") == "Ready" and c.get("status") == "True"
        ),
        None,
    )
    return PodInfo(revision, meta.get("creationTimestamp"), ready_since)
