"""Memory model: weight bytes, KV-cache bytes, engine overhead and each engine's budget per GPU.

An engine starts when, on every GPU, (1) it may take the memory it asks for, (2) what it keeps
outside its budget holds the CUDA context and CUDA graphs, and (3) the KV cache left inside the
budget holds one ``max_model_len`` sequence. Each engine draws its budget differently:

- ``utilization`` (vLLM 0.19): budget = ``gpu_memory_utilization`` x total. It profiles one
  forward pass of ``max_num_batched_tokens`` tokens plus a sampler pass over ``max_num_seqs``
  sequences, subtracts weights + activation peak + non-torch memory (cuBLAS workspaces; NCCL
  and custom all-reduce buffers when TP > 1) and gives the rest to the KV cache; the CUDA
  context and CUDA graphs live in the ``1 - utilization`` remainder (vLLM 0.19 only counts
  graphs with VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1, default off:
  vllm/v1/worker/gpu_worker.py#L376-L421 at v0.19.0). It refuses to start when the budget
  exceeds the memory free at start, when nothing is left for the KV cache, or when one
  ``max_model_len`` sequence does not fit (vllm/v1/core/kv_cache_utils.py#L619-L653).
- ``static_fraction`` (SGLang 0.5.10): ``--mem-fraction-static`` x free memory holds weights
  and the KV pool only; the context, CUDA graphs and (at run time) activations use the rest.
  SGLang's own
  default leaves ``512 MB + 1.5 x chunked_prefill + 2 x cuda_graph_max_bs + ...`` outside
  (python/sglang/srt/server_args.py ``_handle_gpu_memory_settings``); the engine module
  supplies that formula (``EngineTraits.static_fraction``).
- ``fraction_of_free`` (TensorRT-LLM): the KV cache takes ``kv_cache_free_gpu_memory_fraction``
  of the memory free after weights and the profiling run.
- ``wiggle_fraction`` (TGI 3.3.6): KV = free memory after warm-up minus
  ``(1 - CUDA_MEMORY_FRACTION x TGI_WIGGLE_ROOM) x total``; TGI_WIGGLE_ROOM defaults to 0.90
  (server/text_generation_server/models/globals.py#L32, utils/import_utils.py#L13-L17).

CALIBRATION. tests/data/memory_measurements.yaml holds every public measurement used, each
with its source and the engine version that produced it; tests/test_sizing_measurements.py
checks that each is predicted right (starts / does not start, and the KV cache size within a
tolerance where the source reports it). The vLLM constants below reproduce the llm-d-planner
accuracy study (vLLM v0.19.0, H100 79.19 GiB, utilization 0.95:
github.com/jgchn/llm-d-planner accuracy/results/v0.19.0/results_raw.csv):

  activation = 0.25 + batch x hidden x 6 B + 12 B x seqs x vocab  (+0.4 x batch/8192 for MoE)
    the vocabulary term is the sampler's fp32 logits/probs copies over max_num_seqs rows;
    it is the same at TP 1/2/4 because logits are gathered on every rank, and it explains
    why CodeLlama (vocab 32K) peaks at 0.77 while Llama-3 (vocab 128K) peaks at 1.89.
  non-torch = 0.25 single GPU, 2.1 with TP > 1 (NCCL + custom all-reduce buffers)
  CUDA context at start = 0.51 GiB on one GPU; with TP or PP > 1 NCCL adds buffers, 1.0 GiB
    on NVLink H100s (``init_cuda_memory_gib`` 1.43-1.55 GiB in the same study). Only H100s
    were measured; PCIe GPUs open fewer, smaller NCCL channels, so the NCCL part is taken
    to scale with GPU memory (1.0 GiB / 79 GiB), which keeps two-L4 vLLM at 0.9 starting
    as it does in practice.
  CUDA graphs = 0.5 + 0.013 x layers per stage, + 0.6 for models with 32+ experts
    (0.6-1.84 GiB measured)
vLLM picks max_num_batched_tokens / max_num_seqs of 8192 / 1024 on GPUs with >= 70 GiB that
are not A100 (H100, H200, B200, MI300X), else 2048 / 256 (vllm/engine/arg_utils.py#L2025-L2075
at v0.19.0, OpenAI server usage context).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from .models import ModelArchitecture

__all__ = [
    "BYTES_PER_PARAM",
    "GIB",
    "KV_CACHE_DTYPE_BYTES",
    "Budget",
    "BudgetKind",
    "EngineTraits",
    "Overhead",
    "StaticFraction",
    "activation_gib",
    "budget",
    "kv_cache_bytes_per_sequence",
    "kv_cache_bytes_per_token",
    "overhead_gib",
    "weights_per_gpu_gib",
    "weights_total_gib",
]

GIB = float(2**30)

# Bytes per parameter of the quantized linear layers (embeddings and lm_head stay in the
# activation dtype, see weights_total_gib). "none" is resolved to the dtype by the caller.
#   fp8 / int8: 1 byte + per-channel or per-block scales (< 0.1 %).
#   awq / gptq 4-bit, group 128: 0.5 + fp16 scale/128 + 4-bit zero/128 = 0.52; 0.53 leaves
#     room for packing; reproduces Llama-3.1-70B AWQ-INT4 (39.8 GB) and w4a16 8B (5.38 GiB).
#   bitsandbytes-nf4: 0.5 + absmax per 64 (double-quantized) ~ 0.52.
#   mxfp4: 0.5 + one E8M0 scale per 32 = 0.53125.  nvfp4: 0.5 + one FP8 scale per 16 = 0.5625.
BYTES_PER_PARAM: Mapping[str, float] = MappingProxyType(
    {
        "none": 2.0,
        "fp8": 1.0,
        "int8": 1.0,
        "awq": 0.53,
        "gptq": 0.53,
        "bitsandbytes-nf4": 0.53,
        "mxfp4": 0.53125,
        "nvfp4": 0.5625,
    }
)

# Element size of the KV cache for each --kv-cache-dtype; "auto" follows the model dtype.
KV_CACHE_DTYPE_BYTES: Mapping[str, int | None] = MappingProxyType(
    {
        "auto": None,
        "fp8": 1,
        "fp8_e4m3": 1,
        "fp8_e5m2": 1,
        "bfloat16": 2,
        "float16": 2,
        "float32": 4,
    }
)

BudgetKind = Literal["utilization", "static_fraction", "fraction_of_free", "wiggle_fraction"]
# (total GiB, tensor parallel, pipeline parallel, MLA model) -> the engine's default fraction
StaticFraction = Callable[[float, int, int, bool], float]


@dataclass(frozen=True)
class EngineTraits:
    """What sizing needs to know about an engine; defaults are vLLM 0.19's behaviour.

    Each engine module builds one of these; the planner never branches on engine names.
    """

    name: str
    supports_pipeline_parallel: bool = True
    kv_heads_must_divide: bool = False  # TGI: shards must divide heads AND KV heads
    multi_node: bool = True  # TGI: single node only
    # Tokens in the profiling forward pass (vLLM max_num_batched_tokens) and sequences in
    # the sampler pass (max_num_seqs), on ordinary GPUs and on "large" ones.
    default_max_batched_tokens: int = 2048
    default_max_num_seqs: int = 256
    large_gpu_max_batched_tokens: int = 8192
    large_gpu_max_num_seqs: int = 1024
    large_gpu_min_gib: float = 70.0
    large_gpu_excludes: tuple[str, ...] = ("a100",)
    # Activation peak = base + tokens x hidden x per_token_hidden + seqs x vocab x sampler.
    activation_base_gib: float = 0.25
    activation_bytes_per_token_hidden: float = 6.0
    sampler_bytes_per_seq_vocab: float = 12.0
    moe_activation_gib: float = 0.4  # extra MoE workspace at 8192 batched tokens
    non_torch_gib: float = 0.25  # cuBLAS workspace and allocator leftovers, single GPU
    non_torch_tp_gib: float = 2.1  # NCCL and custom all-reduce buffers when TP > 1
    cuda_graph_base_gib: float = 0.5
    cuda_graph_gib_per_layer: float = 0.013
    cuda_graph_many_experts_gib: float = 0.6  # models with 32+ routed experts capture more
    cuda_context_gib: float = 0.51  # CUDA context before the engine allocates anything
    nccl_buffers_per_gib: float = 0.013  # NCCL buffers per GiB of GPU memory, TP or PP > 1
    budget: BudgetKind = "utilization"
    static_fraction: StaticFraction | None = None  # SGLang: its own --mem-fraction-static
    wiggle_room: float = 1.0  # TGI: TGI_WIGGLE_ROOM


def kv_dtype_bytes(kv_cache_dtype: str, dtype_bytes: int) -> int:
    """Element size of the KV cache; raises ValueError for an unknown kvCacheDtype."""
    if kv_cache_dtype not in KV_CACHE_DTYPE_BYTES:
        raise ValueError(f"unknown kv cache dtype {kv_cache_dtype!r}")
    size = KV_CACHE_DTYPE_BYTES[kv_cache_dtype]
    return dtype_bytes if size is None else size


def _layers_per_stage(model: ModelArchitecture, pipeline_parallel: int) -> int:
    return math.ceil(model.layers / max(1, pipeline_parallel))


def _kv_bytes_per_token_per_layer(
    model: ModelArchitecture, tensor_parallel: int, kv_cache_dtype_bytes: float
) -> float:
    if model.mla_kv_elements is not None:
        # MLA keeps one compressed latent per token, replicated on every TP rank.
        return model.mla_kv_elements * kv_cache_dtype_bytes
    heads_per_rank = max(1, math.ceil(model.kv_heads / max(1, tensor_parallel)))
    return 2 * heads_per_rank * model.head_dim * kv_cache_dtype_bytes


def kv_cache_bytes_per_token(
    model: ModelArchitecture,
    *,
    tensor_parallel: int,
    pipeline_parallel: int,
    kv_cache_dtype_bytes: float,
) -> float:
    """KV bytes one token costs on one GPU (worst pipeline stage), all layers full attention.

    KV heads are split by TP but replicated once TP exceeds them; MLA is not split by TP.
    """
    per_layer = _kv_bytes_per_token_per_layer(model, tensor_parallel, kv_cache_dtype_bytes)
    return per_layer * _layers_per_stage(model, pipeline_parallel)


def kv_cache_bytes_per_sequence(
    model: ModelArchitecture,
    context: int,
    *,
    tensor_parallel: int,
    pipeline_parallel: int,
    kv_cache_dtype_bytes: float,
    max_batched_tokens: int,
) -> float:
    """KV bytes one ``context``-token sequence needs on one GPU.

    Sliding-window layers hold at most window + one scheduler step of tokens (what vLLM's
    hybrid allocator reserves), so gpt-oss at 128K needs about half of the naive figure.
    """
    per_layer = _kv_bytes_per_token_per_layer(model, tensor_parallel, kv_cache_dtype_bytes)
    stage = _layers_per_stage(model, pipeline_parallel)
    sliding = 0
    if model.sliding_window > 0 and model.layers > 0:
        share = min(model.sliding_window_layers, model.layers) / model.layers
        sliding = min(stage, math.floor(stage * share))
    window_tokens = min(context, model.sliding_window + max_batched_tokens)
    return per_layer * ((stage - sliding) * context + sliding * window_tokens)


def _embedding_params(model: ModelArchitecture) -> int:
    """Input embedding + lm_head, which quantization leaves in the activation dtype."""
    return min(model.parameters, 2 * model.vocab_size * model.hidden_size)


def weights_total_gib(model: ModelArchitecture, quantization: str, dtype_bytes: int) -> float:
    """Whole-model weight memory for a format ("none" = the checkpoint's native format)."""
    fmt = model.native_quantization if quantization == "none" else quantization
    if fmt not in BYTES_PER_PARAM:
        raise ValueError(f"unknown quantization {quantization!r}")
    if model.weights_gib is not None and fmt == model.native_quantization:
        return model.weights_gib
    if fmt == "none":
        return model.parameters * dtype_bytes / GIB
    embed = _embedding_params(model)
    body = model.parameters - embed
    return (body * BYTES_PER_PARAM[fmt] + embed * dtype_bytes) / GIB


def weights_per_gpu_gib(
    model: ModelArchitecture, total_gib: float, tensor_parallel: int, pipeline_parallel: int
) -> float:
    """Weights on the busiest GPU: the first/last pipeline stage also holds an embedding."""
    tp, pp = max(1, tensor_parallel), max(1, pipeline_parallel)
    if pp == 1:
        return total_gib / tp
    embed_share = min(1.0, _embedding_params(model) / max(1, model.parameters))
    embed = total_gib * embed_share
    return (total_gib - embed) / (tp * pp) + embed / 2 / tp


def is_large_gpu(traits: EngineTraits, gpu_memory_gib: float, gpu_name: str | None) -> bool:
    """Whether the engine picks its large-GPU batch defaults.

    Decided from the catalog name (not the raw memory figure) so that the plan is monotonic
    in memory: an unnamed GPU uses the ordinary defaults.
    """
    if gpu_name is None:
        return False
    lowered = gpu_name.lower()
    if any(x in lowered for x in traits.large_gpu_excludes):
        return False
    from .gpus import UnknownGPUError, resolve_gpu  # local: gpus does not need memory

    try:
        catalog_memory = resolve_gpu(gpu_name).memory_gib
    except UnknownGPUError:
        return False
    return catalog_memory >= traits.large_gpu_min_gib


def activation_gib(
    model: ModelArchitecture, traits: EngineTraits, batched_tokens: int, num_seqs: int
) -> float:
    """Peak activation of the engine's profiling run (see module docstring)."""
    tokens_term = batched_tokens * model.hidden_size * traits.activation_bytes_per_token_hidden
    sampler_term = num_seqs * model.vocab_size * traits.sampler_bytes_per_seq_vocab
    moe = traits.moe_activation_gib * batched_tokens / 8192 if model.experts > 0 else 0.0
    return traits.activation_base_gib + (tokens_term + sampler_term) / GIB + moe


@dataclass(frozen=True)
class Overhead:
    """Per-GPU memory that is neither weights nor KV cache."""

    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    cuda_context_gib: float


def overhead_gib(
    model: ModelArchitecture,
    traits: EngineTraits,
    *,
    tensor_parallel: int,
    pipeline_parallel: int,
    batched_tokens: int,
    num_seqs: int,
    gpu_memory_gib: float = 80.0,
) -> Overhead:
    """Activation peak, non-torch, CUDA-graph and CUDA-context memory of one GPU."""
    non_torch = traits.non_torch_tp_gib if tensor_parallel > 1 else traits.non_torch_gib
    graphs = traits.cuda_graph_base_gib + traits.cuda_graph_gib_per_layer * _layers_per_stage(
        model, pipeline_parallel
    )
    if model.experts >= 32:
        graphs += traits.cuda_graph_many_experts_gib
    context = traits.cuda_context_gib
    if tensor_parallel > 1 or pipeline_parallel > 1:
        context += traits.nccl_buffers_per_gib * gpu_memory_gib
    return Overhead(
        activation_gib(model, traits, batched_tokens, num_seqs), non_torch, graphs, context
    )


@dataclass(frozen=True)
class Budget:
    """How one GPU's memory splits for an engine (GiB).

    ``capacity`` is what weights, the KV cache and ``overhead`` share; ``outside`` is the
    rest of the GPU, which must hold ``outside_need`` (CUDA context, graphs and, for SGLang,
    activations). ``memory_fraction`` is the value of the engine's own memory flag that
    produces this budget; ``problem`` is a start-up refusal that no KV size can fix.
    """

    memory_fraction: float
    capacity_gib: float
    overhead_gib: float
    outside_gib: float
    outside_need_gib: float
    problem: str | None = None


def budget(
    traits: EngineTraits,
    overhead: Overhead,
    *,
    total_gib: float,
    utilization: float,
    weights_gib: float,
    tensor_parallel: int,
    pipeline_parallel: int,
    mla: bool,
) -> Budget:
    """The engine's memory budget on one GPU of ``total_gib`` (see module docstring)."""
    o = overhead
    if traits.budget == "static_fraction":
        own = (
            traits.static_fraction(total_gib, tensor_parallel, pipeline_parallel, mla)
            if (traits.static_fraction)
            else utilization
        )
        fraction = round(min(utilization, own), 3)
        capacity = fraction * (total_gib - o.cuda_context_gib)
        # At start the remainder holds the context, NCCL buffers and captured graphs; prefill
        # activations use it later (SGLang's own default reserves for them).
        need = o.cuda_context_gib + o.non_torch_gib + o.cuda_graph_gib
        return Budget(fraction, capacity, 0.0, total_gib - capacity, need)
    if traits.budget == "fraction_of_free":
        used = weights_gib + o.activation_gib + o.non_torch_gib + o.cuda_context_gib
        capacity = used + utilization * max(0.0, total_gib - used)
        return Budget(
            utilization,
            capacity,
            used - weights_gib,
            total_gib - capacity,
            o.cuda_graph_gib,
        )
    if traits.budget == "wiggle_fraction":
        fraction = round(min(1.0, utilization / traits.wiggle_room), 3)
        capacity = fraction * traits.wiggle_room * total_gib
        inside = o.activation_gib + o.non_torch_gib + o.cuda_context_gib
        return Budget(fraction, capacity, inside, total_gib - capacity, o.cuda_graph_gib)
    capacity = utilization * total_gib
    free_at_start = total_gib - o.cuda_context_gib
    problem = None
    if capacity > free_at_start:
        problem = (
            f"{traits.name} asks for {utilization:g} x {total_gib:.2f} = {capacity:.2f} GiB but"
            f" only {free_at_start:.2f} GiB is free after the CUDA context"
        )
    return Budget(
        utilization,
        capacity,
        o.activation_gib + o.non_torch_gib,
        total_gib - capacity,
        o.cuda_context_gib + o.cuda_graph_gib,
        problem,
    )
