"""Sizing: catalog lookups, calibration against published vLLM logs, and fit/OOM anchors."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kubellm.engines import ENGINES
from kubellm.sizing import (
    EngineTraits,
    SizingPlan,
    SizingRequest,
    UnknownGPUError,
    UnknownModelError,
    format_text,
    known_gpus,
    known_models,
    kv_cache_bytes_per_token,
    plan,
    resolve_gpu,
    resolve_model,
)
from kubellm.sizing.memory import (
    GIB,
    activation_gib,
    overhead_gib,
    weights_per_gpu_gib,
    weights_total_gib,
)

VLLM = EngineTraits(name="vllm")
TGI = EngineTraits(
    name="tgi", supports_pipeline_parallel=False, kv_heads_must_divide=True, multi_node=False
)


def size(model: str, gpu: str, **kw: Any) -> SizingPlan:
    g = resolve_gpu(gpu)
    req = SizingRequest(
        model=resolve_model(model), gpu_memory_gib=g.memory_gib, gpu_name=g.name, gpu_fp8=g.fp8
    )
    return plan(dataclasses.replace(req, **kw))


# --- catalog -----------------------------------------------------------------------------


@pytest.mark.parametrize("model_id", known_models())
def test_every_catalog_id_resolves_exactly_and_without_org(model_id: str) -> None:
    assert resolve_model(model_id).name == model_id
    assert resolve_model(model_id.split("/")[-1].upper()).name == model_id
    assert resolve_model(f"/models/{model_id.split('/')[-1]}").name == model_id


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("meta-llama/Llama-3.3-70B-Instruct", "meta-llama/Llama-3.1-70B-Instruct"),
        ("deepseek-ai/DeepSeek-R1-Distill-Llama-70B", "meta-llama/Llama-3.1-70B-Instruct"),
        ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("deepseek-ai/DeepSeek-V3", "deepseek-ai/DeepSeek-R1"),
        ("/models/Llama-3.1-8B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"),
        ("google/gemma-2-9b", "google/gemma-2-9b-it"),
        ("Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-7B-Instruct"),
        ("mistralai/Mixtral-8x7B-v0.1", "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    ],
)
def test_aliases(alias: str, canonical: str) -> None:
    assert resolve_model(alias).name == canonical


def test_quantized_checkpoint_names_set_the_native_format() -> None:
    awq = resolve_model("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4")
    assert (awq.layers, awq.native_quantization) == (80, "awq")
    assert resolve_model("meta-llama/Llama-3.1-405B-Instruct-FP8").native_quantization == "fp8"
    w8 = resolve_model("RedHatAI/Llama-3.3-70B-Instruct-quantized.w8a8")
    assert w8.native_quantization == "int8"
    assert resolve_model("deepseek-ai/DeepSeek-R1").weights_gib == 671.0


def test_architecture_fields_that_are_not_hidden_over_heads() -> None:
    assert resolve_model("openai/gpt-oss-120b").head_dim == 64  # hidden 2880 / 64 heads = 45
    assert resolve_model("google/gemma-2-9b-it").head_dim == 256
    assert resolve_model("Qwen/Qwen3-32B").head_dim == 128  # 5120 / 64 = 80


def test_unknown_model_names_the_fields_to_add() -> None:
    with pytest.raises(UnknownModelError) as err:
        resolve_model("acme/secret-model")
    assert set(err.value.missing) == {"parameters", "layers", "attentionHeads", "hiddenSize"}
    assert "spec.model.architecture.layers" in str(err.value)
    with pytest.raises(UnknownModelError) as err:
        resolve_model("acme/secret-model", {"parameters": 7_000_000_000, "layers": 32})
    assert set(err.value.missing) == {"attentionHeads", "hiddenSize"}


def test_overrides_describe_an_unknown_model_with_defaults() -> None:
    m = resolve_model(
        "acme/secret-model",
        {"parameters": 7_000_000_000, "layers": 32, "attentionHeads": 32, "hiddenSize": 4096},
    )
    assert (m.kv_heads, m.head_dim, m.max_position) == (32, 128, 4096)
    mla = resolve_model(
        "acme/mla",
        {"parameters": 10**9, "layers": 4, "attentionHeads": 8, "headDim": 64, "kvLoraRank": 512},
    )
    assert mla.mla_kv_elements == 576 and mla.hidden_size == 512


def test_overrides_replace_catalog_numbers() -> None:
    m = resolve_model(
        "meta-llama/Llama-3.1-8B-Instruct", {"kvHeads": 4, "maxPositionEmbeddings": 8192}
    )
    assert (m.kv_heads, m.max_position, m.layers) == (4, 8192, 32)
    with pytest.raises(ValueError, match="unknown"):
        resolve_model("meta-llama/Llama-3.1-8B-Instruct", {"numLayers": 3})


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("h100", "H100-80GB"),
        ("H100-80GB", "H100-80GB"),
        ("nvidia-h100-80gb-hbm3", "H100-80GB"),
        ("NVIDIA-A100-SXM4-40GB", "A100-40GB"),
        ("a100-80gb", "A100-80GB"),
        ("Tesla-T4", "T4"),
        ("l40s", "L40S"),
        ("h100-nvl", "H100-NVL"),
        ("AMD_Instinct_MI300X_OAM", "MI300X"),
        ("mi300x", "MI300X"),
    ],
)
def test_resolve_gpu(text: str, name: str) -> None:
    assert resolve_gpu(text).name == name


def test_gpu_catalog_covers_the_spec_names() -> None:
    spec = ["T4", "L4", "A10G", "L40S", "A100-40GB", "A100-80GB", "H100-80GB", "H100-NVL"]
    assert {*spec, "H200", "B200", "MI300X"} == set(known_gpus())
    mi = resolve_gpu("MI300X")
    assert (mi.vendor, mi.resource_name, mi.product_label) == (
        "amd",
        "amd.com/gpu",
        "amd.com/gpu.product-name",
    )
    assert resolve_gpu("H100-80GB").memory_gib < 80  # usable, not marketing
    with pytest.raises(UnknownGPUError):
        resolve_gpu("V100")


# --- KV cache ----------------------------------------------------------------------------


def kvpt(model: str, tp: int = 1, pp: int = 1, kvb: float = 2) -> float:
    return kv_cache_bytes_per_token(
        resolve_model(model), tensor_parallel=tp, pipeline_parallel=pp, kv_cache_dtype_bytes=kvb
    )


def test_kv_bytes_per_token() -> None:
    assert kvpt("meta-llama/Llama-3.1-8B-Instruct") == 128 * 1024  # engines.md: 128 KiB
    assert kvpt("meta-llama/Llama-3.1-8B-Instruct", kvb=1) == 64 * 1024  # fp8 halves
    assert kvpt("meta-llama/Llama-3.1-70B-Instruct", tp=8) == 2 * 80 * 1 * 128 * 2
    # TP 16 > 8 KV heads: replicated, one head per rank, not half a head.
    assert kvpt("meta-llama/Llama-3.1-70B-Instruct", tp=16) == kvpt(
        "meta-llama/Llama-3.1-70B-Instruct", tp=8
    )
    assert (
        kvpt("meta-llama/Llama-3.1-70B-Instruct", pp=2)
        == kvpt("meta-llama/Llama-3.1-70B-Instruct") / 2
    )
    # MLA: 576 elements x 2 bytes x 61 layers = 70,272 B (model-architectures.yaml), TP-proof.
    assert kvpt("deepseek-ai/DeepSeek-R1") == 70272
    assert kvpt("deepseek-ai/DeepSeek-R1", tp=8) == 70272


# --- calibration: vLLM v0.19.0 on H100 (llm-d-planner accuracy study) -------------------

# (model, quantization, tp, pp, measured weights/GPU, activation, non-torch)
CALIBRATION = [
    ("meta-llama/Llama-3.1-8B-Instruct", "none", 1, 1, 14.99, 1.89, 0.25),
    ("meta-llama/Llama-3.1-8B-Instruct", "none", 2, 1, 7.51, 1.89, 2.07),
    ("meta-llama/Llama-3.1-8B-Instruct", "none", 4, 1, 3.77, 1.89, 2.13),
    ("meta-llama/Llama-3.1-8B-Instruct", "none", 1, 2, 7.51, None, None),
    ("meta-llama/Llama-3.1-8B-Instruct", "none", 1, 4, 4.26, None, None),
    ("meta-llama/Llama-3.1-8B-Instruct", "fp8", 1, 1, 8.49, 1.89, 0.25),
    ("meta-llama/Llama-3.1-8B-Instruct", "gptq", 1, 1, 5.38, 1.89, 0.25),
    ("Qwen/Qwen2.5-7B-Instruct", "none", 1, 1, 14.25, 2.21, 0.24),
    ("Qwen/Qwen2.5-7B-Instruct", "none", 4, 1, 3.55, 2.21, 2.13),
    ("Qwen/Qwen2.5-72B-Instruct", "none", 2, 1, 67.80, 2.29, 2.09),
    ("meta-llama/Llama-3.3-70B-Instruct", "fp8", 2, 1, 33.88, 1.96, 2.10),
    ("meta-llama/Llama-3.3-70B-Instruct", "fp8", 4, 1, 16.96, 1.97, 2.21),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "none", 2, 1, 43.51, 1.21, 2.07),
    ("google/gemma-2-9b-it", "none", 1, 1, 17.22, 3.65, 0.25),
    ("google/gemma-2-27b-it", "none", 1, 1, 50.72, 3.66, 0.26),
    ("microsoft/phi-4", "none", 1, 1, 27.39, 1.52, 0.25),
    ("Qwen/Qwen3-8B", "none", 1, 1, 15.27, 2.21, 0.25),
    ("openai/gpt-oss-20b", "none", 1, 1, 13.64, 2.87, 0.25),
]


@pytest.mark.parametrize(("model", "quant", "tp", "pp", "weights", "act", "nt"), CALIBRATION)
def test_reproduces_vllm_memory_profile(
    model: str, quant: str, tp: int, pp: int, weights: float, act: float | None, nt: float | None
) -> None:
    m = resolve_model(model)
    total = weights_total_gib(m, quant, 2)
    assert weights_per_gpu_gib(m, total, tp, pp) == pytest.approx(weights, rel=0.03)
    o = overhead_gib(
        m, VLLM, tensor_parallel=tp, pipeline_parallel=pp, batched_tokens=8192, num_seqs=1024
    )
    if act is not None:
        assert o.activation_gib == pytest.approx(act, abs=0.35)
    if nt is not None:
        assert o.non_torch_gib == pytest.approx(nt, abs=0.2)


def test_vocabulary_drives_the_activation_peak() -> None:
    # CodeLlama-7B (vocab 32016) peaks at 0.77 GiB where Llama-3-8B (128256) peaks at 1.89.
    codellama = dataclasses.replace(
        resolve_model("meta-llama/Llama-3.1-8B-Instruct"), vocab_size=32016
    )
    assert activation_gib(codellama, VLLM, 8192, 1024) == pytest.approx(0.77, abs=0.1)


def test_kv_left_for_qwen72b_on_two_h100_at_095() -> None:
    # Measured: 3.04 GiB KV left (19,920 tokens) on 79.19 GiB H100s at utilization 0.95.
    p = size(
        "Qwen/Qwen2.5-72B-Instruct",
        "H100-80GB",
        gpu_memory_gib=79.19,
        gpu_memory_utilization=0.95,
        tensor_parallel=2,
        pipeline_parallel=1,
        context_length=8192,
    )
    assert p.kv_cache_per_gpu_gib == pytest.approx(3.04, abs=0.5)


def test_llama8b_on_a10_leaves_vllm_v0_kv() -> None:
    # OCI AQUA doc, vLLM V0 on a 22.07 GiB A10: 4.60 GiB KV -> 37,696 tokens, 128K refused.
    p = size("meta-llama/Llama-3.1-8B-Instruct", "A10G", tensor_parallel=1, pipeline_parallel=1)
    assert not p.fits
    assert p.kv_cache_per_gpu_gib == pytest.approx(4.6, abs=0.7)
    assert p.field == "resources.tensorParallel"


# --- fit / OOM anchors -------------------------------------------------------------------


def gpus(model: str, gpu: str, **kw: Any) -> int:
    p = size(model, gpu, **kw)
    assert p.fits, p.reason
    return p.gpus_per_replica


def test_llama8b_l4_needs_reduced_context() -> None:
    one = size("meta-llama/Llama-3.1-8B-Instruct", "L4", tensor_parallel=1, pipeline_parallel=1)
    assert not one.fits and "maxContextLength <=" in one.reason
    assert gpus("meta-llama/Llama-3.1-8B-Instruct", "L4", context_length=16384) == 1
    assert gpus("meta-llama/Llama-3.1-8B-Instruct", "L4", context_length=8192) == 1


def test_llama8b_full_context_starts_on_one_big_gpu_but_serves_on_80gb() -> None:
    model = "meta-llama/Llama-3.1-8B-Instruct"
    for gpu in ("A100-40GB", "A100-80GB", "H100-80GB", "L40S"):
        assert size(model, gpu, tensor_parallel=1, pipeline_parallel=1).fits
    assert gpus(model, "A100-80GB") == gpus(model, "H100-80GB") == 1
    # 40-GB class: one 128K sequence fits, two do not: the headroom rule asks for 2 GPUs.
    for gpu in ("A100-40GB", "L40S"):
        p = size(model, gpu)
        assert p.gpus_per_replica == 2 and p.meets_headroom
        assert f"1x {gpu} would start but hold only 1 sequence(s)" in p.reason


def test_llama70b() -> None:
    assert gpus("meta-llama/Llama-3.1-70B-Instruct", "H100") == 4
    # Two H100s start it at 8K (1.3 GiB of KV, one sequence): no service, and no margin.
    two = size(
        "meta-llama/Llama-3.1-70B-Instruct",
        "H100",
        context_length=8192,
        tensor_parallel=2,
        pipeline_parallel=1,
    )
    assert two.fits and not two.meets_headroom and two.max_concurrent_sequences == 1
    assert "below resources.minConcurrentSequences 2" in two.reason
    assert gpus("meta-llama/Llama-3.1-70B-Instruct", "H100", context_length=8192) == 4
    assert not size(
        "meta-llama/Llama-3.1-70B-Instruct", "H100", tensor_parallel=2, pipeline_parallel=1
    ).fits
    assert gpus("meta-llama/Llama-3.1-70B-Instruct", "A100-40GB") == 8
    assert gpus("meta-llama/Llama-3.1-70B-Instruct", "A100-80GB") == 4
    fp8_two = size(
        "meta-llama/Llama-3.1-70B-Instruct",
        "H100",
        quantization="fp8",
        tensor_parallel=2,
        pipeline_parallel=1,
    )
    assert fp8_two.fits and fp8_two.max_concurrent_sequences == 1  # 128K: one sequence
    assert gpus("meta-llama/Llama-3.1-70B-Instruct", "H100", quantization="fp8") == 4
    assert (
        gpus("meta-llama/Llama-3.1-70B-Instruct", "H100", quantization="fp8", context_length=32768)
        == 2
    )
    assert not size(
        "meta-llama/Llama-3.1-70B-Instruct",
        "H100",
        quantization="fp8",
        tensor_parallel=1,
        pipeline_parallel=1,
    ).fits
    awq = "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"
    assert gpus(awq, "A100-80GB", context_length=16384) == 1
    assert gpus(awq, "H100-80GB", context_length=16384) == 1


def test_llama405b() -> None:
    fp8 = size("meta-llama/Llama-3.1-405B-Instruct", "H100", quantization="fp8")
    assert (fp8.fits, fp8.tensor_parallel, fp8.pipeline_parallel) == (True, 8, 1)
    bf16 = size("meta-llama/Llama-3.1-405B-Instruct", "H100")
    assert (bf16.tensor_parallel, bf16.pipeline_parallel, bf16.nodes_per_replica) == (8, 2, 2)


def test_deepseek_r1_fp8() -> None:
    assert gpus("deepseek-ai/DeepSeek-R1", "H200") == 8
    assert gpus("deepseek-ai/DeepSeek-R1", "MI300X") == 8
    h100 = size("deepseek-ai/DeepSeek-R1", "H100")
    assert (h100.gpus_per_replica, h100.nodes_per_replica) == (16, 2)
    single = size("deepseek-ai/DeepSeek-R1", "H100", tensor_parallel=8, pipeline_parallel=1)
    assert not single.fits and single.field == "resources.tensorParallel"
    assert "2x" not in single.reason and "16x H100-80GB" in single.reason


def test_gpt_oss() -> None:
    # vllm#23278/#27508/#33155: 120b does not start at 128K on one H100; shorter context does.
    assert not size("openai/gpt-oss-120b", "H100", tensor_parallel=1, pipeline_parallel=1).fits
    at_64k = size(
        "openai/gpt-oss-120b", "H100", context_length=65536, tensor_parallel=1, pipeline_parallel=1
    )
    assert at_64k.fits and at_64k.max_concurrent_sequences == 1
    assert gpus("openai/gpt-oss-120b", "H100", context_length=32768) == 1
    assert gpus("openai/gpt-oss-120b", "H200") == 1
    # vLLM: 16 GB+ GPUs. One L4 starts it at 128K but holds a single sequence.
    assert size("openai/gpt-oss-20b", "L4", tensor_parallel=1, pipeline_parallel=1).fits
    assert gpus("openai/gpt-oss-20b", "L4", context_length=65536) == 1


def test_other_models() -> None:
    assert gpus("mistralai/Mixtral-8x7B-Instruct-v0.1", "H100") == 2
    assert gpus("Qwen/Qwen2.5-72B-Instruct", "H100") == 4
    assert gpus("meta-llama/Llama-3.2-1B-Instruct", "T4") == 1
    assert gpus("Qwen/Qwen2.5-7B-Instruct", "L4") == 1


def test_kv_fp8_halves_the_requirement() -> None:
    base = size("meta-llama/Llama-3.1-8B-Instruct", "H100")
    fp8 = size("meta-llama/Llama-3.1-8B-Instruct", "H100", kv_cache_dtype="fp8")
    assert fp8.kv_cache_required_gib == pytest.approx(base.kv_cache_required_gib / 2)


# --- rules -------------------------------------------------------------------------------


def test_explicit_tp_is_honoured_even_when_wrong() -> None:
    p = size("meta-llama/Llama-3.1-8B-Instruct", "H100", tensor_parallel=3)
    assert (p.fits, p.tensor_parallel, p.field) == (False, 3, "resources.tensorParallel")
    assert "32 attention heads" in p.reason and "1x H100-80GB" in p.reason
    over = size("meta-llama/Llama-3.1-8B-Instruct", "H100", tensor_parallel=16)
    assert (over.fits, over.tensor_parallel) == (False, 16)
    big = size("meta-llama/Llama-3.1-8B-Instruct", "H100", tensor_parallel=2)
    assert (big.fits, big.tensor_parallel) == (True, 2)


def test_tgi_constraints() -> None:
    # Phi-3-medium: 10 KV heads, TGI cannot shard 4 ways.
    p = size("microsoft/Phi-3-medium-4k-instruct", "L4", engine=TGI, tensor_parallel=4)
    assert not p.fits and "KV heads" in p.reason
    pp = size("meta-llama/Llama-3.1-8B-Instruct", "H100", engine=TGI, pipeline_parallel=2)
    assert (pp.fits, pp.field, pp.pipeline_parallel) == (False, "resources.pipelineParallel", 2)
    big = size("meta-llama/Llama-3.1-405B-Instruct", "H100", engine=TGI)
    assert not big.fits and big.field == "engine.quantization"
    assert big.nodes_per_replica == 1


def test_context_beyond_the_model_is_refused() -> None:
    p = size("meta-llama/Llama-3.1-8B-Instruct", "H100", context_length=200_000)
    assert (p.fits, p.field) == (False, "engine.maxContextLength")


def test_nonsense_raises() -> None:
    with pytest.raises(ValueError):
        size("meta-llama/Llama-3.1-8B-Instruct", "H100", gpu_memory_utilization=1.5)
    with pytest.raises(ValueError):
        size("meta-llama/Llama-3.1-8B-Instruct", "H100", gpu_memory_gib=0.0)
    with pytest.raises(ValueError):
        size("meta-llama/Llama-3.1-8B-Instruct", "H100", quantization="gguf")


def test_output_shapes() -> None:
    p = size("meta-llama/Llama-3.1-70B-Instruct", "H100")
    d = p.to_dict()
    assert list(d) == [
        "fits",
        "tensorParallel",
        "pipelineParallel",
        "gpusPerReplica",
        "nodesPerReplica",
        "contextLength",
        "weightsGiB",
        "weightsPerGpuGiB",
        "kvCachePerGpuGiB",
        "kvCacheRequiredGiB",
        "overheadGiB",
        "perGpuUsedGiB",
        "perGpuCapacityGiB",
        "maxConcurrentSequences",
        "minConcurrentSequences",
        "meetsHeadroom",
        "memoryFraction",
        "startupSeconds",
        "reason",
        "field",
    ]
    assert d["weightsGiB"] == round(70.55e9 * 2 / GIB, 2)
    assert "\n" not in p.reason
    text = format_text(p)
    assert "TP=4" in text and "fits" in text


def test_engine_budgets_differ_as_the_engines_do() -> None:
    model = "meta-llama/Llama-3.1-8B-Instruct"
    vllm = size(model, "H100", engine=ENGINES["vllm"].traits)
    sglang = size(model, "H100", engine=ENGINES["sglang"].traits)
    tgi = size(model, "H100", engine=ENGINES["tgi"].traits)
    trt = size(model, "H100", engine=ENGINES["trtllm"].traits)
    # vLLM plans within utilization x total and passes the utilization as is.
    assert vllm.memory_fraction == 0.9
    assert vllm.per_gpu_capacity_gib == pytest.approx(0.9 * 79.11)
    # SGLang: never above its own --mem-fraction-static (10+ GB left for activations and
    # graphs on an 80 GB GPU), which covers weights and KV only.
    assert sglang.memory_fraction == pytest.approx(0.827, abs=0.002)
    assert sglang.per_gpu_capacity_gib < vllm.per_gpu_capacity_gib
    # TGI: --cuda-memory-fraction over its 0.90 wiggle room gives the same 90 %.
    assert tgi.memory_fraction == 1.0
    assert tgi.per_gpu_capacity_gib == pytest.approx(vllm.per_gpu_capacity_gib)
    # TensorRT-LLM: the KV cache takes 90 % of what weights and buffers leave free.
    assert trt.fits and trt.kv_cache_per_gpu_gib != vllm.kv_cache_per_gpu_gib


def test_a_utilization_the_engine_cannot_take_is_refused_with_the_field() -> None:
    full = size("meta-llama/Llama-3.1-8B-Instruct", "H100", gpu_memory_utilization=1.0)
    assert not full.fits and full.field == "engine.gpuMemoryUtilization"
    assert "free after the CUDA context" in full.reason
    # A small GPU at 0.97: the CUDA context and graphs no longer fit outside the budget.
    tight = size(
        "Qwen/Qwen2.5-0.5B-Instruct",
        "L4",
        context_length=4096,
        gpu_memory_utilization=0.97,
        tensor_parallel=1,
        pipeline_parallel=1,
    )
    assert not tight.fits and "outside the engine's budget" in tight.reason


def test_the_headroom_rule_is_a_request_field() -> None:
    relaxed = size("Qwen/Qwen3-32B", "H100", context_length=16384, min_concurrent_sequences=1)
    strict = size("Qwen/Qwen3-32B", "H100", context_length=16384, min_concurrent_sequences=8)
    assert relaxed.gpus_per_replica == 1 and relaxed.max_concurrent_sequences >= 1
    assert strict.gpus_per_replica == 2 and strict.max_concurrent_sequences >= 8
    assert strict.min_concurrent_sequences == 8 and strict.meets_headroom


def test_no_layout_serving_the_rule_names_the_field() -> None:
    p = size(
        "Qwen/Qwen3-32B",
        "H100",
        engine=ENGINES["tgi"].traits,
        gpus_per_node=1,
        context_length=16384,
        min_concurrent_sequences=4,
    )
    assert not p.fits and p.field == "engine.maxContextLength"
    assert "holds 4 sequences" in p.reason and "minConcurrentSequences 2 accepts it" in p.reason


def test_start_up_window_grows_with_the_weights() -> None:
    small = size("meta-llama/Llama-3.1-8B-Instruct", "H100")
    big = size("meta-llama/Llama-3.1-405B-Instruct", "H100", context_length=32768)
    assert small.startup_seconds == 1800  # the 30-minute floor
    # 10 min + 8 s/GiB of 756 GiB, + 5 min for a two-node group, rounded up to a minute
    assert big.startup_seconds == 6960 and big.nodes_per_replica == 2
    fixed = size("meta-llama/Llama-3.1-8B-Instruct", "H100", startup_timeout_seconds=900)
    assert fixed.startup_seconds == 900
