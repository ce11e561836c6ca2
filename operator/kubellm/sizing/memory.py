"""Memory model: weight bytes, KV-cache bytes and engine overhead per GPU.

The overhead model mirrors how vLLM (V1) budgets memory at startup: it profiles one dummy
forward pass of ``max_num_batched_tokens`` tokens plus a sampler pass over ``max_num_seqs``
sequences, subtracts weights + activation peak + non-torch memory (NCCL, custom all-reduce,
cuBLAS workspaces) from ``total x gpu_memory_utilization``, and gives the rest to the KV
cache; CUDA graphs are captured afterwards in the ``(1 - utilization)`` headroom. It refuses
to start when one ``max_model_len`` sequence does not fit in the KV cache.

CALIBRATION (what the constants below reproduce; tests/test_sizing.py checks each row):

=========================================  =====  ====  =======  =========  ========  =====
run (vLLM, GPU, TP)                        batch  seqs  weights  act. peak  non-torch  graph
=========================================  =====  ====  =======  =========  ========  =====
Llama-3.1-8B, H100, TP1                    8192   1024  14.99    1.89       0.25      0.84
Llama-3.1-8B, H100, TP2 / TP4              8192   1024  7.51     1.89       2.07/2.13 0.57+
Llama-3.1-8B, H100, PP2 / PP4 (worst rank)  8192   1024  7.51/4.26
Llama-3.1-8B fp8 (dynamic), H100            8192   1024  8.49     1.89       0.25
Llama-3.1-8B w4a16 (GPTQ), H100             8192   1024  5.38     1.89       0.25
Qwen2.5-7B, H100, TP1                      8192   1024  14.25    2.21       0.24      0.61
Qwen2.5-72B, H100, TP2 (KV left 3.04 @.95) 8192   1024  67.80    2.29       2.09      1.63
Llama-3.3-70B fp8-dynamic, H100, TP2       8192   1024  33.88    1.96       2.10      1.82
Mixtral-8x7B, H100, TP2                    8192   1024  43.51    1.21       2.07      0.82
gemma-2-9b, H100, TP1                      8192   1024  17.22    3.65       0.25      0.84
phi-4, H100, TP1                           8192   1024  27.39    1.52       0.25      0.81
gpt-oss-20b (MXFP4), H100, TP1             8192   1024  13.64    2.87       0.25      1.30
CodeLlama-7B (vocab 32016), H100, TP1       8192   1024  12.56    0.77       0.25      0.84
=========================================  =====  ====  =======  =========  ========  =====

Source of those rows: llm-d-planner accuracy study, vLLM v0.19.0, H100 total 79.19 GiB,
gpu_memory_utilization 0.95 (github.com/jgchn/llm-d-planner accuracy/results/v0.19.0/
results_raw.csv, for llm-d-incubation/llm-d-planner issue #194 / PR #205). Older anchors:
vllm-project/vllm PR #10511 (Meta-Llama-3-8B on H100: weights 14.96, activation 1.26);
an OCI AI Quick Actions troubleshooting doc (Llama-3.1-8B on a 22.07 GiB A10, vLLM V0:
weights 14.99, KV 4.60 GiB -> "max seq len (131072) is larger than ... KV cache (37696)");
vllm-project/vllm #23278, #27508, #33155 (gpt-oss-120b loads 64.4-66.0 GiB and does not
start at 128K context on one H100, "--max-model-len 100000 works"); a DeepSeek-R1 8xH200
vLLM log (weights 83.88 GiB per GPU at TP8).

Fitted model (GiB = 2**30 bytes):
  activation = 0.25 + batch x hidden x 6 B + 12 B x seqs x vocab  (+0.4 x batch/8192 for MoE)
    the vocabulary term is the sampler's fp32 logits/probs copies over max_num_seqs rows;
    it is the same at TP 1/2/4 because logits are gathered on every rank, and it explains
    why CodeLlama (vocab 32K) peaks at 0.77 while Llama-3 (vocab 128K) peaks at 1.89.
  non-torch = 0.25 single GPU, 2.1 with TP > 1 (NCCL + custom all-reduce buffers)
  CUDA graphs = 0.5 + 0.013 x layers per stage (0.6-1.8 measured), in the headroom
vLLM picks max_num_batched_tokens / max_num_seqs of 8192 / 1024 on GPUs with >= 70 GiB that
are not A100 (H100, H200, B200, MI300X), else 2048 / 256 (vllm/engine/arg_utils.py,
OpenAI server usage context).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .models import ModelArchitecture

__all__ = [
    "BYTES_PER_PARAM",
    "GIB",
    "KV_CACHE_DTYPE_BYTES",
    "EngineTraits",
    "Overhead",
    "activation_gib",
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


@dataclass(frozen=True)
class EngineTraits:
    """What sizing needs to know about an engine; defaults are vLLM's behaviour.

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
    non_torch_gib: float = 0.25  # CUDA context leftovers, cuBLAS workspace, single GPU
    non_torch_tp_gib: float = 2.1  # NCCL and custom all-reduce buffers when TP > 1
    cuda_graph_base_gib: float = 0.5
    cuda_graph_gib_per_layer: float = 0.013
    # Where the overheads live: inside utilization x total (counted against the budget)
    # or in the (1 - utilization) headroom (only the part exceeding the headroom counts).
    activation_in_headroom: bool = False  # SGLang mem_fraction_static covers weights+KV only
    cuda_graph_in_headroom: bool = True  # vLLM captures graphs after sizing the KV cache
    # TensorRT-LLM: KV gets utilization x (free memory after weights and activations).
    memory_is_fraction_of_free: bool = False


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
    """Per-GPU overhead split by where it lives."""

    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float


def overhead_gib(
    model: ModelArchitecture,
    traits: EngineTraits,
    *,
    tensor_parallel: int,
    pipeline_parallel: int,
    batched_tokens: int,
    num_seqs: int,
) -> Overhead:
    """Activation peak, non-torch and CUDA-graph memory of one GPU."""
    non_torch = traits.non_torch_tp_gib if tensor_parallel > 1 else traits.non_torch_gib
    graphs = traits.cuda_graph_base_gib + traits.cuda_graph_gib_per_layer * _layers_per_stage(
        model, pipeline_parallel
    )
    return Overhead(activation_gib(model, traits, batched_tokens, num_seqs), non_torch, graphs)
