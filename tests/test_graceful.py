"""Serving pods that stop and fill their node gracefully: preStop drain, an engine drain as
long as the longest request, a grace period that covers both, a model cache with a size limit
and a matching ephemeral-storage request, and a memory limit with room for /dev/shm."""

from __future__ import annotations

import math
from typing import Any

import pytest

from conftest import llmd
from kubellm.render import render_children, resolve, single_revision
from kubellm.render.resolve import InvalidSpecError

GIB = 2**30


def pod(obj: dict[str, Any]) -> dict[str, Any]:
    objects = render_children(single_revision(resolve(obj)))
    workload = next(o for o in objects if o["kind"] in ("Deployment", "LeaderWorkerSet"))
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def flag(container: dict[str, Any], name: str) -> str | None:
    args = container["args"]
    return str(args[args.index(name) + 1]) if name in args else None


@pytest.mark.parametrize(
    ("context", "drain"),
    [(8192, 410), (32768, 1639), (512, 60), (131072, 3600)],
)
def test_grace_covers_prestop_the_longest_request_and_exit(context: int, drain: int) -> None:
    spec = pod(llmd(engine={"type": "vllm", "maxContextLength": context}))
    engine = spec["containers"][0]
    assert engine["lifecycle"] == {"preStop": {"sleep": {"seconds": 15}}}
    assert flag(engine, "--shutdown-timeout") == str(drain)
    assert spec["terminationGracePeriodSeconds"] == 15 + drain + 15


@pytest.mark.parametrize(
    ("engine", "drain_flag"),
    [
        ("vllm", "--shutdown-timeout"),
        ("tgi", "--graceful-termination-timeout"),
        ("sglang", None),  # drains on SIGTERM until nothing is in flight
        ("trtllm", None),  # uvicorn waits for open requests
    ],
)
def test_each_engine_drains_in_its_own_way(engine: str, drain_flag: str | None) -> None:
    container = pod(llmd(engine={"type": engine, "maxContextLength": 8192}))["containers"][0]
    drains = [a for a in container["args"] if "shutdown" in a or "termination" in a]
    assert drains == ([drain_flag] if drain_flag else [])
    if drain_flag:
        assert flag(container, drain_flag) == "410"


def test_the_template_grace_period_sets_the_engine_drain() -> None:
    spec = pod(llmd(template={"spec": {"terminationGracePeriodSeconds": 120}}))
    assert spec["terminationGracePeriodSeconds"] == 120
    assert flag(spec["containers"][0], "--shutdown-timeout") == "90"  # 120 - preStop - exit
    short = pod(llmd(template={"spec": {"terminationGracePeriodSeconds": 10}}))
    engine = short["containers"][0]
    assert engine["lifecycle"]["preStop"]["sleep"]["seconds"] == 10
    assert flag(engine, "--shutdown-timeout") is None  # vLLM's default: abort at once


def test_the_drain_flag_is_kubellms() -> None:
    extra = ["--graceful-termination-timeout", "5"]
    engine = {"type": "tgi", "maxContextLength": 8192, "extraArgs": extra}
    with pytest.raises(InvalidSpecError) as caught:
        resolve(llmd(engine=engine))
    assert caught.value.problems[0].field == "spec.engine.extraArgs[0]"


def test_multi_node_workers_have_no_prestop_but_the_same_grace() -> None:
    obj = llmd(
        model={"name": "meta-llama/Llama-3.1-405B-Instruct"},
        engine={"type": "vllm", "maxContextLength": 8192},
    )
    [lws_obj] = [
        o for o in render_children(single_revision(resolve(obj))) if o["kind"] == "LeaderWorkerSet"
    ]
    lws = lws_obj["spec"]["leaderWorkerTemplate"]
    leader, worker = lws["leaderTemplate"]["spec"], lws["workerTemplate"]["spec"]
    assert "lifecycle" in leader["containers"][0]
    assert "lifecycle" not in worker["containers"][0]
    assert leader["terminationGracePeriodSeconds"] == worker["terminationGracePeriodSeconds"]


def cache(spec: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    volume = next(v for v in spec["volumes"] if v["name"] == "model-cache")
    return volume, spec["containers"][0]["resources"]["requests"].get("ephemeral-storage")


def test_the_cache_is_sized_from_the_checkpoint() -> None:
    obj = llmd(
        model={"name": "meta-llama/Llama-3.1-70B-Instruct"},
        engine={"type": "vllm", "maxContextLength": 8192},
    )
    volume, request = cache(pod(obj))
    expected = math.ceil(70.55e9 * 2 / GIB * 1.1) + 2  # bf16 checkpoint
    assert volume["emptyDir"] == {"sizeLimit": f"{expected}Gi"}
    assert request == f"{expected}Gi"


def test_a_quantized_checkpoint_is_smaller_than_its_16_bit_source() -> None:
    fp8 = {"type": "vllm", "maxContextLength": 8192, "quantization": "fp8"}
    on_load = llmd(model={"name": "meta-llama/Llama-3.1-70B-Instruct"}, engine=fp8)
    published = llmd(model={"name": "RedHatAI/Llama-3.1-70B-Instruct-FP8"}, engine=fp8)
    _, from_bf16 = cache(pod(on_load))
    _, from_fp8 = cache(pod(published))
    assert from_bf16 is not None and from_fp8 is not None
    assert int(from_fp8[:-2]) < int(from_bf16[:-2]) * 0.6


def test_weights_on_a_pvc_need_a_small_cache_and_a_cache_claim_none() -> None:
    source = {"type": "pvc", "claimName": "weights"}
    model = {"name": "meta-llama/Llama-3.1-8B-Instruct", "source": source}
    volume, request = cache(pod(llmd(model=model)))
    assert volume["emptyDir"]["sizeLimit"] == request == "2Gi"
    claim = llmd(model={"name": "meta-llama/Llama-3.1-8B-Instruct", "cacheClaimName": "hf-cache"})
    volume, request = cache(pod(claim))
    assert volume["persistentVolumeClaim"] == {"claimName": "hf-cache"}
    assert request is None


@pytest.mark.parametrize(
    ("memory", "gpus_model", "limit"),
    [
        (None, "meta-llama/Llama-3.1-8B-Instruct", "26Gi"),  # 24Gi + 2Gi shm
        (None, "meta-llama/Llama-3.1-70B-Instruct", "64Gi"),  # 4 GPUs: 48Gi + 16Gi shm
        ("100G", "meta-llama/Llama-3.1-8B-Instruct", "102147483648"),
        ("64Gi", "meta-llama/Llama-3.1-8B-Instruct", "66Gi"),
    ],
)
def test_memory_limit_leaves_room_for_shm(memory: str | None, gpus_model: str, limit: str) -> None:
    resources: dict[str, Any] = {"gpu": {"type": "H100-80GB"}}
    if memory:
        resources["memory"] = memory
    obj = llmd(model={"name": gpus_model}, engine={"type": "vllm", "maxContextLength": 32768},
               resources=resources)  # fmt: skip
    resources = pod(obj)["containers"][0]["resources"]
    assert resources["limits"]["memory"] == limit
    if memory:
        assert resources["requests"]["memory"] == memory
