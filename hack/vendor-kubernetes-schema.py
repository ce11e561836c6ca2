"""Vendor the Kubernetes core/v1 types that kubellm passes through to pods.

Reads the OpenAPI v3 document Kubernetes publishes in its own source tree
(k8s.io/kubernetes@<version>/api/openapi-spec/v3/api__v1_openapi.json, taken from the Go module
cache that `make cluster-build` fills), keeps the definitions reachable from ROOTS, drops their
descriptions, and writes operator/kubellm/api/kubernetes-schema.json. Run after a Kubernetes
upgrade:

    .venv/bin/python hack/vendor-kubernetes-schema.py [--version v1.36.3]

tests/test_kubernetes_schema.py checks the vendored types against the kubernetes-validate
package's schemas of the same Kubernetes minor.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "operator" / "kubellm" / "api" / "kubernetes-schema.json"
PREFIX = "io.k8s.api.core.v1."
# The types LLMDeployment fields hold (see kubellm.api.models: `kubernetes(...)`).
ROOTS = (
    "Affinity",
    "Container",
    "EnvFromSource",
    "EnvVar",
    "EnvVarSource",
    "LocalObjectReference",
    "PodSecurityContext",
    "Probe",
    "ResourceRequirements",
    "SecurityContext",
    "Toleration",
    "TopologySpreadConstraint",
    "Volume",
    "VolumeMount",
)
KEPT = {"type", "properties", "required", "items", "additionalProperties", "format", "enum"}


def openapi(version: str) -> dict[str, Any]:
    cache = subprocess.run(
        ["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True
    ).stdout.strip()
    path = Path(cache) / f"k8s.io/kubernetes@{version}/api/openapi-spec/v3/api__v1_openapi.json"
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def _ref(node: dict[str, Any]) -> str | None:
    """`$ref`, or the `allOf: [{$ref}]` wrapper v3 uses to give a reference a description."""
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    all_of = node.get("allOf") or []
    if len(all_of) == 1 and "$ref" in all_of[0]:
        return str(all_of[0]["$ref"]).rsplit("/", 1)[-1]
    return None


def _short(name: str) -> str:
    return name.removeprefix(PREFIX)


def _slim(node: Any, found: set[str]) -> Any:
    """Keep what validation needs; references become {"$ref": "<short name>"}."""
    if not isinstance(node, dict):
        return node
    if (ref := _ref(node)) is not None:
        found.add(ref)
        return {"$ref": _short(ref)}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: _slim(v, found) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _slim(value, found)
        elif key == "oneOf":
            out[key] = [_slim(v, found) for v in value]
        elif key in KEPT:
            out[key] = value
    return out


def vendor(version: str) -> dict[str, Any]:
    schemas = openapi(version)["components"]["schemas"]
    pending = [PREFIX + name for name in ROOTS]
    definitions: dict[str, Any] = {}
    while pending:
        name = pending.pop()
        if _short(name) in definitions:
            continue
        found: set[str] = set()
        definitions[_short(name)] = _slim(schemas[name], found)
        pending += sorted(found)
    return {"kubernetesVersion": version.removeprefix("v"), "definitions": definitions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--version", default="v1.36.3")
    vendored = vendor(parser.parse_args().version)
    lines = [
        f"  {json.dumps(name)}: {json.dumps(node, sort_keys=True, separators=(',', ':'))}"
        for name, node in sorted(vendored["definitions"].items())
    ]
    OUTPUT.write_text(
        "{\n"
        f'"kubernetesVersion": {json.dumps(vendored["kubernetesVersion"])},\n'
        '"definitions": {\n' + ",\n".join(lines) + "\n}}\n"
    )
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(lines)} definitions")


if __name__ == "__main__":
    main()
