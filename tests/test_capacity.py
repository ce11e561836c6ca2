"""The capacity model: per-GPU speed from the sizing plan, and `autoscaling.target: auto`."""

from __future__ import annotations

import pytest

from kubellm.sizing import SizingRequest, plan, resolve_gpu, resolve_model
from kubellm.sizing.capacity import (
    ReplicaCapacity,
    Workload,
    auto_targets,
    batch_limit_of,
    plan_autoscaling,
    replica_capacity,
    sustainable_load,
)


def capacity(
    model: str, gpu: str, context: int = 8192, concurrency: int | None = None
) -> ReplicaCapacity:
    g, m = resolve_gpu(gpu), resolve_model(model)
    request = SizingRequest(
        model=m,
        gpu_memory_gib=g.memory_gib,
        gpu_name=g.name,
        context_length=context,
        max_concurrency=concurrency,
    )
    sized = plan(request)
    assert sized.fits
    return replica_capacity(request, sized, g, batch_limit_of(request))


LLAMA_8B = "meta-llama/Llama-3.1-8B-Instruct"
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"


def test_calibration_anchors_llama_8b_on_h100() -> None:
    """See the module doc: ~145 tokens/s for one sequence, ~29 ms steps at 256 sequences."""
    c = capacity(LLAMA_8B, "H100-80GB")
    single = 1 / c.decode_step_seconds(1, 700)
    assert 130 < single < 160
    assert 0.025 < c.decode_step_seconds(256, 256 * 430) < 0.034
    assert c.prefill_seconds(1000) == pytest.approx(0.0325, rel=0.05)
    assert c.max_sequences == 1024  # vLLM's default on an H100


def test_decode_slows_per_sequence_and_speeds_up_per_replica_as_the_batch_grows() -> None:
    c = capacity(LLAMA_8B, "H100-80GB")
    per_sequence = [1 / c.decode_step_seconds(b, b * 600) for b in (1, 8, 64, 256)]
    throughput = [b / c.decode_step_seconds(b, b * 600) for b in (1, 8, 64, 256)]
    assert per_sequence == sorted(per_sequence, reverse=True)
    assert throughput == sorted(throughput)


def test_an_8b_on_one_h100_and_a_70b_on_four_l40s_differ() -> None:
    small, large = capacity(LLAMA_8B, "H100-80GB"), capacity(LLAMA_70B, "L40S")
    assert 1 / large.decode_step_seconds(1, 700) < 1 / small.decode_step_seconds(1, 700) / 4
    assert large.step_overhead_seconds > 0 == small.step_overhead_seconds  # all-reduces at TP4
    fast, slow = sustainable_load(small, 1.0), sustainable_load(large, 1.0)
    assert fast is not None and slow is not None
    assert slow.generation_tokens_per_second < fast.generation_tokens_per_second / 4


def test_max_concurrency_and_kv_cache_bound_the_batch() -> None:
    c = capacity(LLAMA_70B, "H100-80GB", concurrency=16)
    assert c.batch_limit(Workload(512, 256)) == 16
    kv_bound = Workload(prompt_tokens=c.kv_capacity_tokens // 4, output_tokens=2)
    assert c.batch_limit(kv_bound) < 16


def test_a_tighter_slo_sustains_less_and_an_impossible_one_none() -> None:
    c = capacity(LLAMA_70B, "L40S")
    points = [sustainable_load(c, slo) for slo in (0.6, 1.0, 4.0)]
    assert all(p is not None for p in points)
    rates = [p.requests_per_second for p in points if p]
    assert rates == sorted(rates) and rates[0] < rates[-1]
    assert sustainable_load(c, c.prefill_seconds(512) / 2) is None


def test_auto_targets_sit_below_the_sustainable_load() -> None:
    c = capacity(LLAMA_70B, "L40S")
    best = sustainable_load(c, 1.0)
    targets = auto_targets(c, 1.0)
    assert best is not None and targets is not None
    assert 0 < targets["generationTokensPerSecond"] < best.generation_tokens_per_second
    assert 1 <= targets["requestsInFlight"] < best.requests_running
    assert targets["queueLength"] >= 1
    assert 0.05 <= targets["kvCacheUtilization"] <= 0.95


def test_an_explicit_target_wins_and_auto_says_why() -> None:
    c = capacity(LLAMA_8B, "H100-80GB")
    explicit = plan_autoscaling("generationTokensPerSecond", 1500.0, 1.0, c)
    auto = plan_autoscaling("generationTokensPerSecond", "auto", 1.0, c)
    assert not isinstance(explicit, str) and not isinstance(auto, str)
    assert (explicit.target, explicit.auto) == (1500.0, False)
    assert auto.auto and auto.target == auto_targets(c, 1.0)["generationTokensPerSecond"]  # type: ignore[index]
    assert auto.reason.startswith("auto: one replica sustains")
    assert isinstance(plan_autoscaling("queueLength", "auto", 1.0, None), str)
    assert isinstance(plan_autoscaling("queueLength", "auto", 0.001, c), str)
