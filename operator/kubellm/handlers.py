"""Kopf wiring, and nothing else: watch events feed the runtime; /healthz asks the runtime.

Only event handlers are registered: Kopf then keeps no state on the objects (no finalizer,
no annotations, no Events of its own), and every decision is the runtime's level-based
reconcile. Kinds whose API is not served yet are watched as soon as their CRD appears.

The handlers are coroutines, so Kopf calls them on the event loop the runtime's work queue
lives on (Kopf runs plain functions in a thread pool). Children and pods are watched through
a server-side label selector: a cluster's other pods and Deployments never reach the
operator. A child unlabelled by hand leaves the selection, which the API server reports as
its deletion: its owner is reconciled and the labels are applied again. And Kopf builds no
diff base (a deep copy of every object on every event), which only its change handlers read.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf

from kubellm import GROUP, PLURAL, VERSION
from kubellm.controller.runtime import WATCHED_KINDS
from kubellm.k8s.client import KINDS
from kubellm.render.context import MANAGED_BY


async def _owner_event(*, type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.runtime.observe("LLMDeployment", type, body)


async def _child_event(*, type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
    memo.runtime.observe(str(body.get("kind")), type, body)


async def _probe(*, memo: Any, **_: Any) -> str:
    if not memo.runtime.healthy():
        raise kopf.PermanentError("a worker or the ticker of the work queue stopped")
    return "ok"


class _NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: event handlers never read one."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(settings: kopf.OperatorSettings) -> None:
    """What Kopf watches and keeps: only kubellm's children and pods, no diff base."""
    settings.persistence.diffbase_storage = _NoDiffBase()
    selector = f"{MANAGED_BY}=kubellm"
    for kind_name in WATCHED_KINDS:
        kind = KINDS[kind_name]
        group, _, version = kind.api_version.rpartition("/")
        settings.watching.label_selectors[group, version, kind.plural] = selector


def register(registry: kopf.OperatorRegistry) -> None:
    """Register every handler on `registry`."""
    kopf.on.event(GROUP, VERSION, PLURAL, id="llmdeployments", registry=registry)(_owner_event)
    for kind_name in WATCHED_KINDS:
        kind = KINDS[kind_name]
        group, _, version = kind.api_version.rpartition("/")
        kopf.on.event(group, version, kind.plural, id=kind.plural, registry=registry)(_child_event)
    kopf.on.probe(id="runtime", registry=registry)(_probe)
