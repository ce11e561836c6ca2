"""Kopf wiring, and nothing else: watch events feed the runtime; /healthz asks the runtime.

Only event handlers are registered: Kopf then keeps no state on the objects (no finalizer,
no annotations, no Events of its own), and every decision is the runtime's level-based
reconcile. Kinds whose API is not served yet are watched as soon as their CRD appears.
"""

from __future__ import annotations

from typing import Any

import kopf

from kubellm import GROUP, PLURAL, VERSION
from kubellm.k8s.client import KINDS
from kubellm.render.context import MANAGED_BY

MANAGED = {MANAGED_BY: "kubellm"}
CHILD_KINDS = (
    "ControllerRevision",
    "Deployment",
    "LeaderWorkerSet",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "PodMonitor",
    "HTTPRoute",
    "ScaledObject",
    "TriggerAuthentication",
    "Pod",
)


def _owner_event(*, type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.runtime.observe("LLMDeployment", type, body)


def _child_event(*, type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.runtime.observe(str(body.get("kind")), type, body)


def _probe(*, memo: Any, **_: Any) -> str:
    if not memo.runtime.healthy():
        raise kopf.PermanentError("a worker or the ticker of the work queue stopped")
    return "ok"


def register(registry: kopf.OperatorRegistry) -> None:
    """Register every handler on `registry`."""
    kopf.on.event(GROUP, VERSION, PLURAL, id="llmdeployments", registry=registry)(_owner_event)
    for kind_name in CHILD_KINDS:
        kind = KINDS[kind_name]
        group, _, version = kind.api_version.rpartition("/")
        kopf.on.event(
            group, version, kind.plural, labels=MANAGED, id=kind.plural, registry=registry
        )(_child_event)
    kopf.on.probe(id="runtime", registry=registry)(_probe)
