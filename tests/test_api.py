"""The typed API: camelCase, defaults, and refusals that match the CRD's CEL rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kubellm.api.models import LLMDeploymentSpec, LLMDeploymentStatus

MINIMAL = {"model": {"name": "m"}, "resources": {"gpu": {"type": "L4"}}}


def test_defaults_are_what_spec_documents() -> None:
    spec = LLMDeploymentSpec.model_validate(MINIMAL)
    assert spec.engine.type == "vllm"
    assert spec.resources.tensor_parallel == "auto"
    assert spec.resources.gpu.per_node == 8
    assert spec.rollout.strategy == "canary"
    assert spec.rollout.auto_rollback is True
    assert spec.rollout.history_limit == 10
    assert spec.replicas == 1
    assert spec.model.source.type == "huggingFace"


def test_round_trips_in_camel_case() -> None:
    spec = LLMDeploymentSpec.model_validate(
        {**MINIMAL, "engine": {"maxContextLength": 4096, "gpuMemoryUtilization": 0.85}}
    )
    dumped = spec.model_dump(by_alias=True, exclude_defaults=True)
    assert dumped["engine"] == {"maxContextLength": 4096, "gpuMemoryUtilization": 0.85}


@pytest.mark.parametrize(
    "change",
    [
        {"engine": {"type": "ollama"}},
        {"engine": {"gpuMemoryUtilization": 1.5}},
        {"engine": {"quantization": "int3"}},
        {"resources": {"gpu": {"type": "L4"}, "tensorParallel": "lots"}},
        {"resources": {"gpu": {"type": "L4"}, "tensorParallel": 0}},
        {"resources": {"gpu": {"type": "L4"}, "pipelineParallel": False}},
        {"model": {"name": "m", "tokneSecretRef": {"name": "x"}}},
        {"rollout": {"canary": {"steps": [{"weight": 0}]}}},
        {"autoscaling": {"maxReplicas": 3, "target": 0}},
    ],
)
def test_bad_specs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        LLMDeploymentSpec.model_validate({**MINIMAL, **change})


def test_status_ignores_fields_from_a_newer_operator() -> None:
    status = LLMDeploymentStatus.model_validate({"phase": "Ready", "futureField": 1})
    assert status.phase == "Ready"
