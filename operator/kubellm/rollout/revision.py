"""Revisions: the hash of everything that shapes the serving pods, and its stored snapshot.

Replicas, autoscaling, service and rollout settings are left out: changing them must not
start a rollout. Fields at their default are left out too (the pod template override
when unset among them), so a field a later kubellm adds does not rename running
revisions. The effective image is put in, so a new default image after an operator
upgrade rolls out like any other change instead of replacing pods in place.

Every serving revision is kept as a snapshot (a ControllerRevision owned by the
LLMDeployment, as StatefulSets keep theirs), so a stable revision can be rebuilt after its
workload is deleted or edited, or after a rollback, while the spec already describes another
revision. Snapshots hold no secret material: literal `env[].value`s and the values of flags
that look like credentials (`--api-key ...`) are replaced by a digest, and put back from the
current spec, or from the revision's own running workload, when the revision is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from kubellm.api.models import LLMDeploymentSpec

REVISION_LENGTH = 10
REDACTED = "kubellm-redacted:"  # + digest, in place of a literal value
# Flags whose value is a credential: --api-key, --hf-token, --ssl-keyfile-password...
_SENSITIVE_FLAG = re.compile(r"^--?[\w-]*(key|token|secret|passw|credential|auth)[\w-]*$", re.I)
POD_RELEVANT = ("model", "engine", "resources", "scheduling", "template")


def pod_relevant(spec: LLMDeploymentSpec, image: str) -> dict[str, Any]:
    """The part of the spec a revision is made of."""
    # Defaults left out: a field a later kubellm adds does not rename every revision.
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    relevant: dict[str, Any] = {key: dumped[key] for key in POD_RELEVANT if key in dumped}
    relevant["engine"] = {**relevant.get("engine", {}), "image": image}
    return relevant


def revision_of(spec: LLMDeploymentSpec, image: str) -> str:
    """A short stable hash naming the revision (`<name>-<revision>` is its Deployment)."""
    canonical = json.dumps(pod_relevant(spec, image), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _redacted(value: str) -> str:
    return f"{REDACTED}{digest(value)}"


def _redact_args(args: list[str]) -> list[str]:
    """Credential flag values become digests, in both `--flag value` and `--flag=value`."""
    out: list[str] = []
    secret_next = False
    for arg in args:
        if secret_next and not arg.startswith("-"):
            out.append(_redacted(arg))
        elif "=" in arg and _SENSITIVE_FLAG.match(arg.split("=", 1)[0]):
            flag, value = arg.split("=", 1)
            out.append(f"{flag}={_redacted(value)}")
        else:
            out.append(arg)
        secret_next = bool(_SENSITIVE_FLAG.match(arg)) and "=" not in arg
    return out


def _redact_env(node: Any) -> Any:
    """Every literal env value, wherever an `env` list sits (engine, template containers)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "env" and isinstance(value, list):
                out[key] = [
                    {**var, "value": _redacted(str(var["value"]))}
                    if isinstance(var, dict) and "value" in var
                    else var
                    for var in value
                ]
            else:
                out[key] = _redact_env(value)
        return out
    if isinstance(node, list):
        return [_redact_env(item) for item in node]
    return node


def snapshot(spec: LLMDeploymentSpec, image: str) -> dict[str, Any]:
    """`pod_relevant` without secret material: what a ControllerRevision stores."""
    relevant = _redact_env(pod_relevant(spec, image))
    engine = dict(relevant["engine"])
    if "extraArgs" in engine:
        engine["extraArgs"] = _redact_args(list(engine["extraArgs"]))
    return {**relevant, "engine": engine}


def known_values(texts: Iterable[str]) -> dict[str, str]:
    """Digest -> value for every literal a redacted snapshot may point to."""
    values: dict[str, str] = {}
    for text in texts:
        values[digest(text)] = text
        if "=" in text:
            value = text.split("=", 1)[1]
            values[digest(value)] = value
    return values


def spec_literals(spec: LLMDeploymentSpec) -> list[str]:
    """The literal env values and extra args of a spec: where redacted values come from."""
    literals = list(spec.engine.extra_args)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "env" and isinstance(value, list):
                    literals.extend(
                        str(var["value"])
                        for var in value
                        if isinstance(var, dict) and "value" in var
                    )
                else:
                    visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    return literals


def workload_literals(workload: Mapping[str, Any]) -> list[str]:
    """Literal env values and args of a running workload's containers (any pod template)."""
    literals: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                for container in node["containers"]:
                    literals.extend(str(a) for a in container.get("args") or [])
                    literals.extend(
                        str(e["value"]) for e in container.get("env") or [] if "value" in e
                    )
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(workload.get("spec") or {})
    return literals


class MissingValues(Exception):  # noqa: N818 - a condition, not a programming error
    """A redacted value the current spec and the live workload no longer hold."""

    def __init__(self, where: list[str]) -> None:
        super().__init__(", ".join(where))
        self.where = where


def restore(
    stored: Mapping[str, Any], current: LLMDeploymentSpec, values: Mapping[str, str]
) -> LLMDeploymentSpec:
    """The spec a stored revision was made from: its pod-relevant part, the rest current.

    Raises MissingValues naming each redacted value that `values` cannot put back.
    """
    missing: list[str] = []

    def fill(text: str, where: str) -> str:
        if REDACTED not in text:
            return text
        head, _, wanted = text.partition(REDACTED)
        if wanted not in values:
            missing.append(where)
            return text
        return head + values[wanted]

    def unredact(node: Any, where: str) -> Any:
        if isinstance(node, dict):
            return {
                key: (
                    [
                        {**var, "value": fill(str(var["value"]), f"{where}.env[{var.get('name')}]")}
                        if isinstance(var, dict) and "value" in var
                        else var
                        for var in value
                    ]
                    if key == "env" and isinstance(value, list)
                    else unredact(value, f"{where}.{key}" if where else key)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [unredact(item, f"{where}[{i}]") for i, item in enumerate(node)]
        return node

    stored = unredact(dict(stored), "")
    engine = dict(stored.get("engine") or {})
    engine["extraArgs"] = [
        fill(arg, f"engine.extraArgs[{i}]") for i, arg in enumerate(engine.get("extraArgs", []))
    ]
    if missing:
        raise MissingValues(missing)
    merged = current.model_dump(mode="json", by_alias=True, exclude_none=True)
    for key in POD_RELEVANT:
        merged.pop(key, None)
    merged.update({k: v for k, v in stored.items() if k in POD_RELEVANT})
    merged["engine"] = engine
    return LLMDeploymentSpec.model_validate(merged)


def what_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human names of what differs between two snapshots (for history)."""
    changed: list[str] = []
    old_engine, new_engine = old.get("engine") or {}, new.get("engine") or {}
    if old.get("model") != new.get("model"):
        changed.append("model")
    if old_engine.get("type") != new_engine.get("type"):
        changed.append("engine")
    if old_engine.get("image") != new_engine.get("image"):
        changed.append("image")
    rest = {k: v for k, v in old_engine.items() if k not in ("type", "image")}
    if rest != {k: v for k, v in new_engine.items() if k not in ("type", "image")}:
        changed.append("engineSettings")
    for key in POD_RELEVANT[2:]:
        if old.get(key) != new.get(key):
            changed.append(key)
    return changed
