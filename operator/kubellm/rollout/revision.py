"""Revisions: the hash of everything that shapes the serving pods.

Replicas, autoscaling, service and rollout settings are left out: changing them must not
start a rollout. The effective image is put in, so a new default image after an operator
upgrade rolls out like any other change instead of replacing pods in place. The pod template
override is in only when set, so specs without one keep the revisions they had.
"""

from __future__ import annotations

import hashlib
import json

from kubellm.api.models import LLMDeploymentSpec

REVISION_LENGTH = 10


def pod_relevant(spec: LLMDeploymentSpec, image: str) -> dict[str, object]:
    """The part of the spec a revision is made of."""
    snapshot: dict[str, object] = {
        "model": spec.model.model_dump(mode="json", by_alias=True, exclude_none=True),
        "engine": {
            **spec.engine.model_dump(mode="json", by_alias=True, exclude_none=True),
            "image": image,
        },
        "resources": spec.resources.model_dump(mode="json", by_alias=True, exclude_none=True),
        "scheduling": spec.scheduling.model_dump(mode="json", by_alias=True, exclude_none=True),
    }
    if spec.template is not None:
        snapshot["template"] = spec.template.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    return snapshot


def revision_of(spec: LLMDeploymentSpec, image: str) -> str:
    """A short stable hash naming the revision (`<name>-<revision>` is its Deployment)."""
    canonical = json.dumps(pod_relevant(spec, image), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]


def what_changed(old: dict[str, object], new: dict[str, object]) -> list[str]:
    """Human names of what differs between two `pod_relevant` snapshots (for history)."""
    changed: list[str] = []
    old_engine, new_engine = old.get("engine", {}), new.get("engine", {})
    assert isinstance(old_engine, dict) and isinstance(new_engine, dict)
    if old.get("model") != new.get("model"):
        changed.append("model")
    if old_engine.get("type") != new_engine.get("type"):
        changed.append("engine")
    if old_engine.get("image") != new_engine.get("image"):
        changed.append("image")
    rest = {k: v for k, v in old_engine.items() if k not in ("type", "image")}
    if rest != {k: v for k, v in new_engine.items() if k not in ("type", "image")}:
        changed.append("engineSettings")
    for key in ("resources", "scheduling", "template"):
        if old.get(key) != new.get(key):
            changed.append(key)
    return changed
