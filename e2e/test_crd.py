"""The LLMDeployment API as kubectl users meet it, on a real API server."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, poll, run_kubectl
from kubellm.render import render_documents

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))


@pytest.fixture(scope="module", autouse=True)
def crds(cluster: Path) -> None:
    run_kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    run_kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/llmdeployments.kubellm.io",
    )  # fmt: skip


def _llmd(name: str, resources: dict[str, Any], engine: str = "vllm") -> str:
    return json.dumps(
        {
            "apiVersion": "kubellm.io/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {"name": "meta-llama/Llama-3.1-70B-Instruct"},
                "engine": {"type": engine},
                "resources": resources,
            },
        }
    )


def test_explain_documents_the_spec(kubectl: Kubectl) -> None:
    # The API server publishes a CRD's OpenAPI a moment after it changes.
    poll(
        lambda: kubectl("explain", "llmdeployment.spec.model", check=False).returncode == 0,
        timeout=30,
        message="the CRD's OpenAPI published",
    )
    out = kubectl("explain", "llmdeployment.spec.model").stdout
    assert "Hugging Face" in out and "tokenSecretRef" in out
    out = kubectl("explain", "llmd.spec.resources.tensorParallel").stdout
    assert "power of two" in out


def test_tensor_parallel_three_is_refused_naming_the_field(
    kubectl: Kubectl, namespace: str
) -> None:
    doc = _llmd("tp3", {"gpu": {"type": "H100-80GB"}, "tensorParallel": 3})
    proc = kubectl("apply", "-n", namespace, "-f", "-", input=doc, check=False)
    assert proc.returncode != 0
    assert "spec.resources.tensorParallel" in proc.stderr
    assert "power of two" in proc.stderr


@pytest.mark.parametrize(
    ("resources", "engine", "field"),
    [
        ({"gpu": {"type": "H100-80GB"}, "pipelineParallel": 2}, "tgi", "pipelineParallel"),
        ({"gpu": {"perNode": 8}}, "vllm", "gpu"),
    ],
)
def test_cel_rules_refuse_at_admission(
    kubectl: Kubectl, namespace: str, resources: dict[str, Any], engine: str, field: str
) -> None:
    proc = kubectl(
        "apply", "-n", namespace, "-f", "-", input=_llmd("bad", resources, engine), check=False
    )
    assert proc.returncode != 0 and field in proc.stderr


def test_a_valid_llmdeployment_is_admitted_with_defaults(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_llmd("ok", {"gpu": {"type": "L4"}}))
    spec = json.loads(kubectl("get", "llmd", "ok", "-n", namespace, "-o", "json").stdout)["spec"]
    assert spec["replicas"] == 1
    assert spec["resources"]["tensorParallel"] == "auto"
    assert spec["engine"]["gpuMemoryUtilization"] == 0.9
    assert spec["resources"]["gpu"]["perNode"] == 8


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_rendered_examples_pass_server_side_dry_run(
    kubectl: Kubectl, namespace: str, example: Path
) -> None:
    result = render_documents(yaml.safe_load_all(example.read_text()))
    assert not result.problems
    stream = yaml.safe_dump_all(result.objects)
    kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=stream)
    kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(example))
