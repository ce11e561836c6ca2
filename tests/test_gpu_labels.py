"""GPU node-label schemes: the operator-wide choice, the per-LLMDeployment override, and
`kubellm render --gpu-node-labels`, rendered into the pods' required node affinity."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from conftest import llmd
from kubellm.api.models import GpuNodeLabels
from kubellm.cli.main import main
from kubellm.render import render_children, resolve, single_revision
from kubellm.render.resolve import InvalidSpecError
from kubellm.sizing import known_gpus, resolve_gpu
from kubellm.sizing.gpu_labels import NoGpuLabelError, gpu_node_selector


def gpu_requirements(obj: dict[str, Any], scheme: Any = "nvidia") -> list[dict[str, Any]]:
    objects = render_children(single_revision(resolve(obj), gpu_node_labels=scheme))
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    if "affinity" not in pod:
        return []
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    expressions: list[dict[str, Any]] = terms["nodeSelectorTerms"][0]["matchExpressions"]
    return expressions


@pytest.mark.parametrize(
    ("scheme", "gpu", "key", "values"),
    [
        ("nvidia", "H100-80GB", "nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),
        ("nvidia", "MI300X", "amd.com/gpu.product-name", "AMD_Instinct_MI300X_OAM"),
        ("gke", "A100-80GB", "cloud.google.com/gke-accelerator", "nvidia-a100-80gb"),
        ("gke", "H100-80GB", "cloud.google.com/gke-accelerator", "nvidia-h100-mega-80gb"),
        ("gke", "L4", "cloud.google.com/gke-accelerator", "nvidia-l4"),
        ("eks", "L40S", "eks.amazonaws.com/instance-gpu-name", "l40s"),
        ("karpenter-aws", "A10G", "karpenter.k8s.aws/instance-gpu-name", "a10g"),
        ("karpenter-azure", "A100-80GB", "karpenter.azure.com/sku-gpu-name", "A100"),
    ],
)
def test_each_scheme_selects_its_label(scheme: str, gpu: str, key: str, values: str) -> None:
    selector = gpu_node_selector(scheme, resolve_gpu(gpu))
    assert selector is not None
    assert selector.key == key and values in selector.values


def test_every_catalog_gpu_has_a_label_or_a_clear_refusal_in_every_scheme() -> None:
    for scheme in get_args(GpuNodeLabels):
        for name in known_gpus():
            try:
                selector = gpu_node_selector(scheme, resolve_gpu(name))
            except NoGpuLabelError as error:
                assert name in str(error) and scheme in str(error)
                continue
            assert selector is None or (selector.key and selector.values), (scheme, name)


def test_operator_wide_scheme_and_the_spec_override() -> None:
    a100 = {"gpu": {"type": "A100-80GB"}}
    (gke,) = gpu_requirements(llmd(resources=a100), "gke")
    assert gke == {
        "key": "cloud.google.com/gke-accelerator",
        "operator": "In",
        "values": ["nvidia-a100-80gb"],
    }
    override = {"gpu": {**a100["gpu"], "nodeLabels": "nvidia"}}
    (nvidia,) = gpu_requirements(llmd(resources=override), "gke")
    assert nvidia["key"] == "nvidia.com/gpu.product"  # the spec wins over the operator
    without = {"gpu": {**a100["gpu"], "nodeLabels": "none"}}
    assert gpu_requirements(llmd(resources=without)) == []


def test_a_gpu_the_operator_scheme_lacks_keeps_its_vendor_label() -> None:
    """MI300X is not a GKE accelerator: its nodes can only be labelled by AMD's labeller."""
    obj = llmd(resources={"gpu": {"type": "MI300X"}})
    (expression,) = gpu_requirements(obj, "gke")
    assert expression["key"] == "amd.com/gpu.product-name"


def test_a_spec_naming_a_scheme_without_its_gpu_is_refused() -> None:
    with pytest.raises(InvalidSpecError) as caught:
        resolve(llmd(resources={"gpu": {"type": "MI300X", "nodeLabels": "gke"}}))
    (problem,) = caught.value.problems
    assert problem.field == "spec.resources.gpu.nodeLabels"
    assert "gke nodes have no label for MI300X" in problem.message


def test_node_selector_adds_to_the_gpu_affinity_never_replaces_it() -> None:
    obj = llmd(scheduling={"nodeSelector": {"a": "b"}})
    objects = render_children(single_revision(resolve(obj)))
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"a": "b"}
    assert "affinity" in pod  # both apply: the pod needs a node matching both


def test_render_cli_takes_the_scheme(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "a100.yaml"
    path.write_text(yaml.safe_dump(llmd(resources={"gpu": {"type": "A100-80GB"}})))
    assert main(["render", "-f", str(path), "--gpu-node-labels", "gke"]) == 0
    out = capsys.readouterr().out
    deployment = next(o for o in yaml.safe_load_all(out) if o["kind"] == "Deployment")
    assert "cloud.google.com/gke-accelerator" in yaml.safe_dump(deployment)
    with pytest.raises(SystemExit):
        main(["render", "-f", str(path), "--gpu-node-labels", "oracle"])
