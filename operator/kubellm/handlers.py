"""Kopf wiring, and nothing else: every handler calls the same `reconcile()`.

Create, resume, update, a change of a revision's workload, and a periodic tick all converge
the object the same way (level based). The tick resyncs every object every --resync-seconds,
and every few seconds those in motion (pods loading, a rollout). It is a single task rather
than Kopf timers, because Kopf puts a finalizer on every object that has a timer, and a
finalizer would block deleting LLMDeployments (and their namespaces) whenever the operator
is not running. Children and pods are read from watch-fed indices: a resync costs no API call.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
TICK_SECONDS = 1.0
CONCURRENT_TICKS = 16
LOGGER = logging.getLogger("kubellm.tick")


@dataclass
class Memo:
    """Per-operator state Kopf hands to every handler."""

    reconciler: Reconciler
    resync_seconds: float = 60.0
    locks: defaultdict[str, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))
    indices: dict[str, Any] = field(default_factory=dict)  # Kopf's live indices, by name
    next_due: dict[str, float] = field(default_factory=dict)  # uid -> monotonic time


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
    memo.indices.update(
        (k, v)
        for k, v in kwargs.items()
        if k.startswith(CHILD_INDEX) or k in (POD_INDEX, OWNER_INDEX)
    )
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
                requeue = await memo.reconciler.reconcile(body, children, pods, logger)
            except Exception:
                metrics.RECONCILES.labels("error").inc()
                metrics.RECONCILE_ERRORS.inc()
                raise
            finally:
                memo.next_due[body.metadata.uid or ""] = time.monotonic() + _delay(body, memo)
    metrics.RECONCILES.labels("success").inc()
    if requeue is not None:  # the rollout knows when its next step or analysis is due
        memo.next_due[body.metadata.uid or ""] = time.monotonic() + min(
            max(requeue, TICK_SECONDS), memo.resync_seconds
        )


def _delay(body: kopf.Body, memo: Memo) -> float:
    return ATTENTION_INTERVAL if needs_attention(body=body) else memo.resync_seconds


async def _workload_changed(*, body: kopf.Body, memo: Any, **kwargs: Any) -> None:
    """A revision's pods became Ready (or not): converge its owner now, not at the next tick."""
    key = owner_key(body)
    owners = list(kwargs[OWNER_INDEX].get(key, [])) if key else []
    for owner in owners:
        await _reconcile(body=owner, memo=memo, **kwargs)


def _index_owner(*, body: kopf.Body, **_: Any) -> dict[tuple[str, str], kopf.Body]:
    return {(body.metadata.namespace or "", body.metadata.name or ""): body}


async def tick(memo: Memo) -> None:
    """Reconcile what is due: a rollout's next step or analysis when the planner says, other
    things in motion every 5 s, and everything each resync period."""
    gate = asyncio.Semaphore(CONCURRENT_TICKS)

    async def one(body: kopf.Body) -> None:
        async with gate:
            try:
                await _reconcile(body=body, memo=memo, logger=LOGGER, **memo.indices)
            except Exception:
                LOGGER.exception("reconcile of %s failed", body.metadata.name)

    while True:
        await asyncio.sleep(TICK_SECONDS)
        owners = memo.indices.get(OWNER_INDEX)
        if owners is None:
            continue  # nothing handled yet, so nothing to resync
        now = time.monotonic()
        due = [
            body
            for key in list(owners)
            for body in owners.get(key, [])
            if now >= memo.next_due.get(body.metadata.uid or "", 0.0)
        ]
        await asyncio.gather(*(one(body) for body in due))


def _forget(*, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.locks.pop(body.metadata.uid or "", None)
    memo.next_due.pop(body.metadata.uid or "", None)
    memo.reconciler.expectations.forget(body.metadata.uid or "")
    metrics.forget(body.metadata.namespace or "", body.metadata.name or "")


def _index_child(*, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Child] | None:
    key = owner_key(body)
    return {key: summarize(body)} if key else None


def _index_pod(*, body: kopf.Body, **_: Any) -> dict[tuple[str, str], PodInfo] | None:
    key, info = owner_key(body), pod_info(body)
    return {key: info} if key and info else None


def register(registry: kopf.OperatorRegistry, apis: frozenset[str]) -> None:
    """Register every handler: indices only for the child kinds the cluster serves."""
    resource = (GROUP, VERSION, PLURAL)
    for kind_name in CHILD_KINDS:
        kind = KINDS[kind_name]
        if kind.api_version not in apis and "/" in kind.api_version:
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
        if kind.api_version in apis:
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
    kopf.on.delete(*resource, id="forget", optional=True, registry=registry)(_forget)
