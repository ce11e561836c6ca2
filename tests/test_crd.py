"""The CRD is generated from the models; the committed copies must not drift from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import KUBERNETES_VERSION, ROOT
from kubellm.api.crd import all_crds, llmdeployment_crd

CRD_DIRS = ["crds", "charts/kubellm/crds", "manifests/base/crds"]


@pytest.mark.parametrize("directory", CRD_DIRS)
def test_committed_crds_match_the_models(directory: str) -> None:
    committed = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / directory).glob("*.yaml")}
    assert committed == all_crds(), f"run `make crds`: {directory}/ drifted from the models"


def test_crds_are_valid_kubernetes_objects() -> None:
    for crd in all_crds().values():
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)


def _version() -> dict[str, Any]:
    version: dict[str, Any] = llmdeployment_crd()["spec"]["versions"][0]
    return version


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, child in schema.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if "items" in schema:
        found += _walk(schema["items"], f"{path}[]")
    return found


def test_every_spec_field_is_documented_for_kubectl_explain() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    undocumented = [p for p, s in _walk(spec) if "description" not in s and not p.endswith("[]")]
    assert undocumented == []


def test_schema_is_structural() -> None:
    """Every node has a type (or is int-or-string / preserve-unknown), and no JSON-Schema-only
    constructs that the API server would refuse remain."""
    schema = _version()["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        untyped = ("x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields")
        assert "type" in node or any(node.get(key) for key in untyped), path
        for forbidden in ("anyOf", "$ref", "const", "title", "allOf"):
            assert forbidden not in node, f"{path} has {forbidden}"
        assert not isinstance(node.get("exclusiveMinimum"), int | float) or isinstance(
            node.get("exclusiveMinimum"), bool
        ), path


def test_subresources_and_columns_follow_spec() -> None:
    version = _version()
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Engine", "Model", "TP", "Ready", "Canary", "Phase", "Age"]
    names = llmdeployment_crd()["spec"]["names"]
    assert names["shortNames"] == ["llmd"]
    assert "all" in names["categories"]


def test_cel_rules_name_their_fields() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = {
        path: [r["message"] for r in node.get("x-kubernetes-validations", [])]
        for path, node in _walk(spec)
        if node.get("x-kubernetes-validations")
    }
    assert any("tensorParallel" in m for m in rules[".resources.tensorParallel"])
    assert any("pipelineParallel" in m for m in rules[".resources.pipelineParallel"])
    assert any("TGI" in m for m in rules[""])
    assert any("minReplicas" in m for m in rules[".autoscaling"])
    assert any("strictly increase" in m for m in rules[".rollout.canary"])


def test_crd_files_are_plain_yaml(tmp_path: Path) -> None:
    """`kubectl apply -f crds/` takes each file as one object."""
    for path in (ROOT / "crds").glob("*.yaml"):
        documents = list(yaml.safe_load_all(path.read_text()))
        assert len(documents) == 1 and documents[0]["kind"] == "CustomResourceDefinition"
