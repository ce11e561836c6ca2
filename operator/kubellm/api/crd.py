"""Generate the CustomResourceDefinitions from the pydantic models.

The models are the source of truth; this turns their JSON Schema into a Kubernetes
structural schema (refs inlined, no anyOf/null, no titles) and wraps it in the CRD with the
subresources, printer columns and names SPEC asks for.
"""

from __future__ import annotations

from typing import Any

from kubellm import GROUP, KIND, PLURAL, VERSION
from kubellm.api.models import MAX_NAME_LENGTH, LLMDeploymentSpec, LLMDeploymentStatus

# Keys a structural schema keeps; everything else pydantic emits (title, const, ...) is dropped.
_KEPT_KEYS = {
    "type",
    "description",
    "properties",
    "required",
    "items",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "format",
    "additionalProperties",
    "x-kubernetes-validations",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs and turn pydantic's JSON Schema into a Kubernetes structural schema."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _structural(defs[node["$ref"].split("/")[-1]], defs)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return {**target, **_structural(extra, defs)}
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(options) != 1:
            raise ValueError(f"cannot express {node} structurally; give it a WithJsonSchema")
        merged = {**_structural(options[0], defs), **_structural(rest, defs)}
        if merged.get("default", 0) is None:
            del merged["default"]
        return merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: _structural(v, defs) for name, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _structural(value, defs)
        elif key == "additionalProperties":
            continue  # `false` is not structural; the API server prunes unknown fields.
        elif key in _KEPT_KEYS:
            out[key] = value
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in out:  # JSON Schema's numeric form -> OpenAPI v3.0's boolean form
            limit = out.pop(bound)
            if out.get("type") == "integer":
                out[inclusive] = limit + 1 if bound == "exclusiveMinimum" else limit - 1
            else:
                out[inclusive], out[bound] = limit, True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if out.get("default") is None:
        out.pop("default", None)
    if "properties" in out:
        out.setdefault("type", "object")
    return out


def _schema_of(model: type[LLMDeploymentSpec] | type[LLMDeploymentStatus]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _structural(raw, defs)
    return schema


def _strip_defaults(node: Any) -> Any:
    """Status defaults would be written by the API server on every read: keep status bare."""
    if isinstance(node, dict):
        return {k: _strip_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_strip_defaults(v) for v in node]
    return node


def _complex_defaults_removed(node: Any) -> Any:
    """Object/array defaults from default factories would freeze today's defaults in the CRD."""
    if isinstance(node, dict):
        out = {k: _complex_defaults_removed(v) for k, v in node.items()}
        if isinstance(out.get("default"), dict | list):
            del out["default"]
        return out
    if isinstance(node, list):
        return [_complex_defaults_removed(v) for v in node]
    return node


def llmdeployment_crd() -> dict[str, Any]:
    """The LLMDeployment CRD, as the API server should see it."""
    spec_schema = _complex_defaults_removed(_schema_of(LLMDeploymentSpec))
    spec_schema["description"] = "Desired state: the model, engine, GPUs, scaling and rollout."
    status_schema = _strip_defaults(_schema_of(LLMDeploymentStatus))
    status_schema["description"] = "Observed state, written only by the operator."
    status_schema["properties"]["conditions"]["x-kubernetes-list-type"] = "map"
    status_schema["properties"]["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["llmd"],
                "categories": ["all", "kubellm"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        _column("Engine", "string", ".spec.engine.type"),
                        _column("Model", "string", ".spec.model.name"),
                        _column("TP", "integer", ".status.sizing.tensorParallel"),
                        _column("Ready", "string", ".status.ready"),
                        _column("Canary", "integer", ".status.rollout.canaryWeight"),
                        _column("Phase", "string", ".status.phase"),
                        _column("Age", "date", ".metadata.creationTimestamp"),
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An LLM served on GPUs by vLLM, TGI, TensorRT-LLM"
                            " or SGLang, with sizing, canary rollouts and autoscaling.",
                            "required": ["spec"],
                            "x-kubernetes-validations": [
                                {
                                    "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                                    "message": f"metadata.name must be at most"
                                    f" {MAX_NAME_LENGTH} characters: children are named"
                                    " <name>-<revision>",
                                }
                            ],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def _column(name: str, kind: str, path: str) -> dict[str, str]:
    return {"name": name, "type": kind, "jsonPath": path}


def _peering_crd(scope: str) -> dict[str, Any]:
    """Kopf's peering resource: how two operator replicas agree which one acts."""
    kind = "ClusterKopfPeering" if scope == "Cluster" else "KopfPeering"
    plural = kind.lower() + "s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": scope,
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD, for `crds/`, the chart and the kustomize base."""
    crds = [llmdeployment_crd(), _peering_crd("Cluster"), _peering_crd("Namespaced")]
    return {f"{crd['metadata']['name']}.yaml": crd for crd in crds}
