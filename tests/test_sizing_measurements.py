"""Every public measurement in tests/data/memory_measurements.yaml is predicted right.

A case starts or does not start; kubellm's plan for the same layout must say `fits` exactly
then. Where the engine reported its KV cache and the measurement comes from the release
kubellm pins, the predicted KV cache must also match within 5 % or 1 GiB.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubellm.engines import ENGINES
from kubellm.sizing import SizingRequest, plan, resolve_model

DATA = Path(__file__).parent / "data" / "memory_measurements.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(DATA.read_text())


def predict(case: dict[str, Any]) -> Any:
    engine = ENGINES[case["engine"]]
    traits = engine.traits
    if case.get("memFractionExplicit"):  # the run set the engine's memory flag itself
        traits = dataclasses.replace(traits, static_fraction=None)
    request = SizingRequest(
        model=resolve_model(case["model"]),
        gpu_memory_gib=case["gpuMemoryGiB"],
        gpu_name=case["gpu"],
        quantization=case.get("quantization", "none"),
        kv_cache_dtype=case.get("kvCacheDtype", "auto"),
        context_length=case["context"],
        gpu_memory_utilization=case["utilization"],
        tensor_parallel=case["tp"],
        pipeline_parallel=case["pp"],
        min_concurrent_sequences=1,
        engine=traits,
    )
    return plan(request)


def test_every_case_names_its_source_and_version() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)) >= 30
    for case in CASES:
        assert case["source"].startswith("https://github.com/"), case["id"]
        assert case["version"] and case["engine"] in ENGINES, case["id"]
        assert isinstance(case["starts"], bool), case["id"]
    assert {c["starts"] for c in CASES} == {True, False}
    assert {c["engine"] for c in CASES} >= {"vllm", "sglang"}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_start_or_no_start_is_predicted(case: dict[str, Any]) -> None:
    p = predict(case)
    assert p.fits == case["starts"], p.reason


PINNED = [c for c in CASES if "kvCacheGiB" in c and c["version"] == ENGINES[c["engine"]].version]


@pytest.mark.parametrize("case", PINNED, ids=[c["id"] for c in PINNED])
def test_kv_cache_of_the_pinned_release_is_predicted(case: dict[str, Any]) -> None:
    predicted = predict(case).kv_cache_per_gpu_gib
    measured = case["kvCacheGiB"]
    assert predicted == pytest.approx(measured, abs=max(1.0, 0.05 * measured))
