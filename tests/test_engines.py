"""What each engine is asked to do: quantization, dtype, served name, memory flag, probes,
start-up window and signals, as the pinned releases read them."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from conftest import ROOT, llmd
from kubellm.engines import ENGINES
from kubellm.engines.base import choose_quantization
from kubellm.render import render_children, resolve, single_revision
from kubellm.render.resolve import InvalidSpecError


def pods(obj: dict[str, Any]) -> dict[str, Any]:
    deployment = next(
        o for o in render_children(single_revision(resolve(obj))) if o["kind"] == "Deployment"
    )
    spec: dict[str, Any] = deployment["spec"]
    return spec


def container(obj: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = pods(obj)["template"]["spec"]["containers"][0]
    return c


def args(obj: dict[str, Any]) -> list[str]:
    return list(container(obj)["args"])


def flag(arguments: list[str], name: str) -> str | None:
    return arguments[arguments.index(name) + 1] if name in arguments else None


def problems(obj: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidSpecError) as caught:
        resolve(obj)
    return {p.field: p.message for p in caught.value.problems}


def spec(engine: str, model: str = "meta-llama/Llama-3.1-8B-Instruct", **fields: Any) -> Any:
    return llmd(model={"name": model}, engine={"type": engine, "maxContextLength": 8192, **fields})


# --- quantization means the same weights on every engine --------------------------------


@pytest.mark.parametrize(
    ("engine", "expected"),
    [("vllm", "fp8"), ("sglang", "fp8"), ("tgi", "fp8")],
)
def test_fp8_of_a_16_bit_checkpoint_is_quantized_while_loading(engine: str, expected: str) -> None:
    arguments = args(spec(engine, quantization="fp8"))
    assert expected in arguments
    assert flag(arguments, "--quantization" if engine != "tgi" else "--quantize") == expected


def test_tensorrt_llm_fp8_needs_an_fp8_checkpoint_and_says_which() -> None:
    found = problems(spec("trtllm", model="meta-llama/Llama-3.3-70B-Instruct", quantization="fp8"))
    message = found["spec.engine.quantization"]
    assert "cannot quantize a 16-bit checkpoint to fp8" in message
    assert "nvidia/Llama-3.3-70B-Instruct-FP8" in message


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_a_prequantized_checkpoint_is_read_as_is(engine: str) -> None:
    arguments = args(spec(engine, model="nvidia/Llama-3.3-70B-Instruct-FP8", quantization="fp8"))
    assert "--quantization" not in arguments  # the engine detects the checkpoint's method


def test_int8_is_a_w8a8_checkpoint_everywhere_never_tgi_s_eetq() -> None:
    for engine in ("vllm", "sglang", "tgi"):
        found = problems(spec(engine, quantization="int8"))
        assert "W8A8" in found["spec.engine.quantization"], engine
    w8a8 = "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8"
    tgi = args(spec("tgi", model=w8a8, quantization="int8"))
    assert "--quantize" not in tgi and "eetq" not in tgi


def test_a_checkpoint_in_another_format_is_refused() -> None:
    awq = "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"
    found = problems(spec("vllm", model=awq, quantization="fp8"))
    assert "already awq" in found["spec.engine.quantization"]


def test_an_engine_that_cannot_load_the_checkpoint_says_so_at_the_model() -> None:
    found = problems(spec("tgi", model="openai/gpt-oss-20b"))
    assert "cannot load mxfp4 checkpoints" in found["spec.model.name"]


def test_a_model_kubellm_does_not_know_is_trusted_with_its_format() -> None:
    engine = ENGINES["vllm"]
    assert choose_quantization(engine, "awq", "none", checkpoint_known=False).flag is None
    assert choose_quantization(engine, "fp8", "none", checkpoint_known=False).flag == "fp8"
    assert choose_quantization(engine, "fp8", "none", checkpoint_known=True).flag == "fp8"


# --- dtype and served name ------------------------------------------------------------------


def test_tgi_takes_no_float32_and_no_dtype_while_quantizing() -> None:
    assert "spec.engine.dtype" in problems(spec("tgi", dtype="float32"))
    found = problems(spec("tgi", dtype="bfloat16", quantization="fp8"))
    assert "cannot force a dtype while it quantizes" in found["spec.engine.dtype"]
    assert flag(args(spec("tgi", dtype="bfloat16")), "--dtype") == "bfloat16"


def test_tensorrt_llm_dtype_and_kv_dtype_go_into_its_options_file() -> None:
    script = container(spec("trtllm", dtype="bfloat16", kvCacheDtype="fp8"))["command"][2]
    assert "'dtype: bfloat16'" in script and "'kv_cache_config:' '  dtype: fp8'" in script
    assert "'return_perf_metrics: true'" in script


@pytest.mark.parametrize("engine", ["tgi", "trtllm"])
def test_served_name_is_refused_where_the_engine_has_no_such_option(engine: str) -> None:
    obj = spec(engine)
    obj["spec"]["model"]["servedName"] = "chat"
    assert "spec.model.servedName" in problems(obj)
    obj["spec"]["model"]["servedName"] = obj["spec"]["model"]["name"]  # the same name is fine
    resolve(obj)


def test_served_name_is_passed_where_the_engine_has_it() -> None:
    obj = spec("sglang")
    obj["spec"]["model"]["servedName"] = "chat"
    assert flag(args(obj), "--served-model-name") == "chat"


# --- memory flags -------------------------------------------------------------------------


def test_each_engine_gets_the_memory_flag_sizing_planned_with() -> None:
    for engine, name in [
        ("vllm", "--gpu-memory-utilization"),
        ("sglang", "--mem-fraction-static"),
        ("tgi", "--cuda-memory-fraction"),
        ("trtllm", "--kv_cache_free_gpu_memory_fraction"),
    ]:
        obj = spec(engine)
        planned = resolve(obj).sizing.memory_fraction
        assert flag(args(obj), name) == str(planned), engine
    # SGLang: below gpuMemoryUtilization on an H100, its own default leaves >= 10 GB outside.
    assert float(flag(args(spec("sglang")), "--mem-fraction-static") or 0) < 0.85
    # TGI: 0.9 of the GPU is CUDA_MEMORY_FRACTION 1.0 with its 0.90 wiggle room.
    assert flag(args(spec("tgi")), "--cuda-memory-fraction") == "1.0"


def test_tgi_batch_size_is_max_batch_size_not_the_admission_cap() -> None:
    arguments = args(spec("tgi", maxConcurrency=48))
    assert flag(arguments, "--max-batch-size") == "48"
    assert "--max-concurrent-requests" not in arguments


# --- probes and start-up window -----------------------------------------------------------


def test_tgi_liveness_never_runs_a_generation() -> None:
    c = container(spec("tgi", model="mistralai/Mistral-7B-Instruct-v0.3"))
    assert c["livenessProbe"]["httpGet"]["path"] == "/info"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"


def test_start_up_window_follows_the_weights_and_the_spec() -> None:
    small = pods(spec("vllm"))
    probe = small["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == 1800
    assert small["progressDeadlineSeconds"] == 1800 + 600
    fixed = pods(spec("vllm", startupTimeout="45m"))
    probe = fixed["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == 2700
    assert resolve(spec("vllm", startupTimeout="45m")).sizing.startup_seconds == 2700


def test_a_leaderworkerset_group_gets_the_grown_window() -> None:
    example = yaml.safe_load((ROOT / "manifests/examples/multinode-llama-405b.yaml").read_text())
    lws = next(
        o
        for o in render_children(single_revision(resolve(example)))
        if o["kind"] == "LeaderWorkerSet"
    )
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]["containers"][0]
    window = leader["startupProbe"]["periodSeconds"] * leader["startupProbe"]["failureThreshold"]
    assert window == resolve(example).sizing.startup_seconds > 6000  # 756 GiB over two nodes


# --- signals ------------------------------------------------------------------------------


def test_autoscaling_on_a_signal_the_engine_lacks_is_refused() -> None:
    obj = spec("trtllm", model="nvidia/Llama-3.3-70B-Instruct-FP8", quantization="fp8")
    obj["spec"]["autoscaling"] = {"maxReplicas": 2, "target": 100}
    found = problems(obj)
    assert "exports no generationTokensPerSecond" in found["spec.autoscaling.metric"]


def test_a_start_up_window_shorter_than_a_minute_is_a_problem() -> None:
    found = problems(spec("vllm", startupTimeout="30s"))
    assert "at least 1m" in found["spec.engine.startupTimeout"]
