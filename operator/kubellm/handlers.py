"""Kopf wiring, and nothing else: every handler calls the same `reconcile()`.

Create, resume, update and a periodic resync all converge the object the same way (level
based). A faster timer runs only while something is in motion (pods loading, a rollout).
Children and pods are read from watch-fed indices, so a resync costs no API call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import kopf

from kubellm import GROUP, PLURAL, VERSION, metrics
from kubellm.controller.children import Child, PodInfo, owner_key, pod_info, summarize
from kubellm.controller.reconcile import Reconciler
from kubellm.k8s.client import KINDS
from kubellm.render.context import MANAGED_BY

CHILD_INDEX = "children_"
POD_INDEX = "pods_by_owner"
OWNER_INDEX = "llmdeployments_by_key"
MANAGED = {MANAGED_BY: "kubellm"}
CHILD_KINDS = (
    "Deployment",
    "LeaderWorkerSet",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "PodMonitor",
    "HTTPRoute",
    "ScaledObject",
)
ATTENTION_INTERVAL = 5.0


@dataclass
class OperatorConfig:
    resync_seconds: float = 60.0
    apis: frozenset[str] = frozenset()


@dataclass
class Memo:
    """Per-operator state Kopf hands to every handler."""

    reconciler: Reconciler
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))


def needs_attention(*, body: kopf.Body, **_: Any) -> bool:
    """Something is in motion: not Ready yet, a spec not yet acted on, or a rollout."""
    status = body.get("status") or {}
    rollout = status.get("rollout") or {}
    return (
        status.get("phase") != "Ready"
        or status.get("observedGeneration") != body.get("metadata", {}).get("generation")
        or bool(rollout.get("canaryRevision"))
    )


async def _reconcile(
    *,
    body: kopf.Body,
    memo: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **kwargs: Any,
) -> None:
    if body.metadata.deletion_timestamp:
        return  # going away: garbage collection takes the children
    key = (body.metadata.namespace or "", body.metadata.name or "")
    children: list[Child] = [
        child
        for name, index in kwargs.items()
        if name.startswith(CHILD_INDEX)
        for child in index.get(key, [])
    ]
    pods: list[PodInfo] = list(kwargs[POD_INDEX].get(key, []))
    with metrics.RECONCILE_SECONDS.time():
        async with memo.locks[body.metadata.uid or ""]:
            try:
                await memo.reconciler.reconcile(body, children, pods, logger)
            except Exception:
                metrics.RECONCILES.labels("error").inc()
                metrics.RECONCILE_ERRORS.inc()
                raise
    metrics.RECONCILES.labels("success").inc()


async def _workload_changed(*, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """A revision's pods became Ready (or not): converge its owner now, not at the next tick."""
    key = owner_key(body)
    owners = list(kwargs[OWNER_INDEX].get(key, [])) if key else []
    for owner in owners:
        await _reconcile(body=owner, memo=memo, **kwargs)


def _index_owner(*, body: kopf.Body, **_: Any) -> dict[tuple[str, str], kopf.Body]:
    return {(body.metadata.namespace or "", body.metadata.name or ""): body}


def _forget(*, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.locks.pop(body.metadata.uid or "", None)
    memo.reconciler.expectations.forget(body.metadata.uid or "")
    metrics.forget(body.metadata.namespace or "", body.metadata.name or "")


def _index_child(*, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Child] | None:
    key = owner_key(body)
    return {key: summarize(body)} if key else None


def _index_pod(*, body: kopf.Body, **_: Any) -> dict[tuple[str, str], PodInfo] | None:
    key, info = owner_key(body), pod_info(body)
    return {key: info} if key and info else None


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register every handler: indices only for the child kinds the cluster serves."""
    resource = (GROUP, VERSION, PLURAL)
    for kind_name in CHILD_KINDS:
        kind = KINDS[kind_name]
        if kind.api_version not in config.apis and "/" in kind.api_version:
            continue
        group, _, version = kind.api_version.rpartition("/")
        kopf.index(
            group,
            version,
            kind.plural,
            labels=MANAGED,
            id=f"{CHILD_INDEX}{kind.plural}",
            registry=registry,
        )(_index_child)
    kopf.index("", "v1", "pods", labels=MANAGED, id=POD_INDEX, registry=registry)(_index_pod)
    kopf.index(*resource, id=OWNER_INDEX, registry=registry)(_index_owner)
    for kind_name in ("Deployment", "LeaderWorkerSet"):
        kind = KINDS[kind_name]
        if kind.api_version in config.apis:
            group, _, version = kind.api_version.rpartition("/")
            kopf.on.event(
                group,
                version,
                kind.plural,
                labels=MANAGED,
                id=f"owner-of-{kind.plural}",
                registry=registry,
            )(_workload_changed)

    for cause, decorator in (
        ("create", kopf.on.create),
        ("update", kopf.on.update),
        ("resume", kopf.on.resume),
    ):
        decorator(*resource, id=cause, registry=registry)(_reconcile)
    kopf.timer(*resource, interval=config.resync_seconds, id="resync", registry=registry)(
        _reconcile
    )
    kopf.timer(
        *resource,
        interval=ATTENTION_INTERVAL,
        when=needs_attention,
        id="progress",
        registry=registry,
    )(_reconcile)
    kopf.on.delete(*resource, id="forget", optional=True, registry=registry)(_forget)
