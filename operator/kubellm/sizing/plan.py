"""The planner: the smallest tensor x pipeline layout that starts and serves a useful concurrency.

A layout *starts* when the engine's memory checks pass on every GPU (see ``memory.py``): the
memory it asks for is free, the CUDA context and graphs fit outside its budget, and the KV
cache holds one full ``maxContextLength`` sequence. Starting is not serving: a KV cache that
holds one sequence serves one long request at a time and leaves no margin for the memory
model's error. So automatic sizing applies a headroom rule: it picks the smallest layout whose
KV cache holds at least ``min_concurrent_sequences`` full-context sequences (default 2: one
request never waits for another of full length, and one full sequence of KV memory is the
margin against an OOM at start). vLLM logs the same figure at start as "Maximum concurrency
for N tokens per request". An explicit layout is honoured whenever it starts, and the reason
says when it holds fewer sequences than the rule.

Pure function of a frozen request. Infeasible requests are answered with ``fits=False``, a
one-line reason saying what does not fit and what would, and the spec field to change; only
nonsensical inputs (utilization outside (0, 1], non-positive sizes) raise ValueError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .memory import (
    BYTES_PER_PARAM,
    Budget,
    EngineTraits,
    budget,
    is_large_gpu,
    kv_cache_bytes_per_sequence,
    kv_dtype_bytes,
    overhead_gib,
    weights_per_gpu_gib,
    weights_total_gib,
)
from .models import ModelArchitecture

__all__ = [
    "DEFAULT_MIN_CONCURRENT_SEQUENCES",
    "SizingPlan",
    "SizingRequest",
    "format_text",
    "plan",
]

GIB = float(2**30)
DEFAULT_MIN_CONCURRENT_SEQUENCES = 2
# Start-up window: engines download and load weights before their port answers. 8 s per GiB
# is a sustained 128 MiB/s download plus loading; 10 minutes cover torch.compile and CUDA
# graph capture; 30 minutes is the floor kubellm always gave; a LeaderWorkerSet group also
# waits for every node to download and join (its pods restart together).
STARTUP_BASE_SECONDS = 600
STARTUP_SECONDS_PER_GIB = 8
STARTUP_FLOOR_SECONDS = 1800
STARTUP_GROUP_SECONDS = 300

FIELD_TP = "resources.tensorParallel"
FIELD_PP = "resources.pipelineParallel"
FIELD_GPU = "resources.gpu"
FIELD_HEADROOM = "resources.minConcurrentSequences"
FIELD_CONTEXT = "engine.maxContextLength"
FIELD_QUANT = "engine.quantization"
FIELD_UTILIZATION = "engine.gpuMemoryUtilization"

# The request default: vLLM's behaviour, which EngineTraits' own defaults describe.
_DEFAULT_ENGINE = EngineTraits(name="vllm")


@dataclass(frozen=True)
class SizingRequest:
    """Everything the planner looks at; built from the LLMDeployment spec or the CLI."""

    model: ModelArchitecture
    gpu_memory_gib: float
    gpus_per_node: int = 8
    gpu_name: str | None = None
    gpu_fp8: bool = True
    quantization: str = "none"
    dtype_bytes: int = 2
    kv_cache_dtype: str = "auto"
    context_length: int | None = None
    max_concurrency: int | None = None
    gpu_memory_utilization: float = 0.9
    tensor_parallel: int | None = None
    pipeline_parallel: int | None = None
    min_concurrent_sequences: int = DEFAULT_MIN_CONCURRENT_SEQUENCES
    startup_timeout_seconds: int | None = None  # None: derived from the weights
    engine: EngineTraits = _DEFAULT_ENGINE


@dataclass(frozen=True)
class SizingPlan:
    """The chosen layout and its per-GPU memory figures (GiB).

    ``kv_cache_required_gib`` is the KV of ONE full-context sequence: engines refuse to start
    without it (vLLM: "max seq len ... larger than ... KV cache"). ``overhead_gib`` is all the
    memory that is neither weights nor KV cache (activation peak, non-torch, CUDA graphs, CUDA
    context), inside the engine's budget or not. ``memory_fraction`` is the value of the
    engine's memory flag this plan assumes (vLLM --gpu-memory-utilization, SGLang
    --mem-fraction-static, TGI --cuda-memory-fraction, TensorRT-LLM
    --kv_cache_free_gpu_memory_fraction). ``meets_headroom``: the KV cache holds at least
    ``min_concurrent_sequences`` full-context sequences.
    """

    fits: bool
    tensor_parallel: int
    pipeline_parallel: int
    gpus_per_replica: int
    nodes_per_replica: int
    context_length: int
    weights_gib: float
    weights_per_gpu_gib: float
    kv_cache_per_gpu_gib: float
    kv_cache_required_gib: float
    overhead_gib: float
    per_gpu_used_gib: float
    per_gpu_capacity_gib: float
    max_concurrent_sequences: int
    min_concurrent_sequences: int
    meets_headroom: bool
    memory_fraction: float
    startup_seconds: int
    reason: str
    field: str | None

    def to_dict(self) -> dict[str, object]:
        """JSON shape used by status.sizing and ``kubellm size -o json``."""
        return {
            "fits": self.fits,
            "tensorParallel": self.tensor_parallel,
            "pipelineParallel": self.pipeline_parallel,
            "gpusPerReplica": self.gpus_per_replica,
            "nodesPerReplica": self.nodes_per_replica,
            "contextLength": self.context_length,
            "weightsGiB": round(self.weights_gib, 2),
            "weightsPerGpuGiB": round(self.weights_per_gpu_gib, 2),
            "kvCachePerGpuGiB": round(self.kv_cache_per_gpu_gib, 2),
            "kvCacheRequiredGiB": round(self.kv_cache_required_gib, 2),
            "overheadGiB": round(self.overhead_gib, 2),
            "perGpuUsedGiB": round(self.per_gpu_used_gib, 2),
            "perGpuCapacityGiB": round(self.per_gpu_capacity_gib, 2),
            "maxConcurrentSequences": self.max_concurrent_sequences,
            "minConcurrentSequences": self.min_concurrent_sequences,
            "meetsHeadroom": self.meets_headroom,
            "memoryFraction": self.memory_fraction,
            "startupSeconds": self.startup_seconds,
            "reason": self.reason,
            "field": self.field,
        }


@dataclass(frozen=True)
class _Layout:
    """Memory figures of one (TP, PP) layout."""

    tp: int
    pp: int
    nodes: int
    weights_pg: float
    budget: Budget
    overhead_total: float
    kv_available: float
    kv_required: float
    kv_per_seq_bytes: float

    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @property
    def capacity(self) -> float:
        return self.budget.capacity_gib

    @property
    def max_seqs(self) -> int:
        if self.kv_per_seq_bytes <= 0 or self.kv_available <= 0:
            return 0
        return int(self.kv_available * GIB // self.kv_per_seq_bytes)

    @property
    def outside_short(self) -> bool:
        return self.budget.outside_need_gib > self.budget.outside_gib

    @property
    def starts(self) -> bool:
        return (
            self.budget.problem is None
            and not self.outside_short
            and self.kv_available > 0
            and self.kv_available >= self.kv_required
        )

    def serves(self, sequences: int) -> bool:
        return self.starts and self.max_seqs >= sequences

    def used(self, sequences: int) -> float:
        return self.weights_pg + self.budget.overhead_gib + self.kv_required * sequences


class _Sizer:
    """Evaluates layouts for one request (the shared, precomputed parts live here)."""

    def __init__(self, req: SizingRequest) -> None:
        self.req = req
        self.model = req.model
        self.traits = req.engine
        self.context = req.context_length or req.model.max_position
        self.sequences = req.min_concurrent_sequences
        self.kv_bytes = kv_dtype_bytes(req.kv_cache_dtype, req.dtype_bytes)
        self.weights_total = weights_total_gib(req.model, req.quantization, req.dtype_bytes)
        large = is_large_gpu(req.engine, req.gpu_memory_gib, req.gpu_name)
        t = req.engine
        self.batched = t.large_gpu_max_batched_tokens if large else t.default_max_batched_tokens
        seqs = t.large_gpu_max_num_seqs if large else t.default_max_num_seqs
        self.seqs = req.max_concurrency or seqs

    def kv_seq_bytes(self, tp: int, pp: int, context: int) -> float:
        return kv_cache_bytes_per_sequence(
            self.model,
            context,
            tensor_parallel=tp,
            pipeline_parallel=pp,
            kv_cache_dtype_bytes=self.kv_bytes,
            max_batched_tokens=self.batched,
        )

    def evaluate(self, tp: int, pp: int) -> _Layout:
        req = self.req
        weights = weights_per_gpu_gib(self.model, self.weights_total, tp, pp)
        o = overhead_gib(
            self.model,
            self.traits,
            tensor_parallel=tp,
            pipeline_parallel=pp,
            batched_tokens=self.batched,
            num_seqs=self.seqs,
            gpu_memory_gib=req.gpu_memory_gib,
        )
        b = budget(
            self.traits,
            o,
            total_gib=req.gpu_memory_gib,
            utilization=req.gpu_memory_utilization,
            weights_gib=weights,
            tensor_parallel=tp,
            pipeline_parallel=pp,
            mla=self.model.mla_kv_elements is not None,
        )
        total_overhead = o.activation_gib + o.non_torch_gib + o.cuda_graph_gib + o.cuda_context_gib
        seq_bytes = self.kv_seq_bytes(tp, pp, self.context)
        nodes = math.ceil(tp * pp / req.gpus_per_node)
        return _Layout(
            tp,
            pp,
            nodes,
            weights,
            b,
            total_overhead,
            b.capacity_gib - weights - b.overhead_gib,
            seq_bytes / GIB,
            seq_bytes,
        )

    def tp_problem(self, tp: int) -> str | None:
        """Why a tensor-parallel size cannot work for this model/engine, or None."""
        m = self.model
        if m.attention_heads % tp:
            return f"{tp} does not divide the model's {m.attention_heads} attention heads"
        if self.traits.kv_heads_must_divide and m.kv_heads % tp:
            return (
                f"{self.traits.name} needs the shard count to divide the "
                f"{m.kv_heads} KV heads; {tp} does not"
            )
        if m.mla_kv_elements is None and m.kv_heads % tp and tp % m.kv_heads:
            return f"{tp} neither divides nor is a multiple of the {m.kv_heads} KV heads"
        if tp > self.req.gpus_per_node:
            return f"{tp} exceeds the {self.req.gpus_per_node} GPUs per node"
        return None

    def layout_problem(self, tp: int, pp: int) -> tuple[str, str] | None:
        """Structural problem of a layout as (message, field), or None."""
        req, traits = self.req, self.traits
        if pp > 1 and not traits.supports_pipeline_parallel:
            return f"{traits.name} does not support pipeline parallelism", FIELD_PP
        if pp > self.model.layers:
            return f"{pp} pipeline stages exceed the model's {self.model.layers} layers", FIELD_PP
        total = tp * pp
        if total > req.gpus_per_node:
            field = FIELD_PP if pp > 1 else FIELD_TP
            if not traits.multi_node:
                return (
                    f"{traits.name} runs on a single node; {total} GPUs exceed "
                    f"{req.gpus_per_node} per node",
                    field,
                )
            nodes = math.ceil(total / req.gpus_per_node)
            if total % nodes:
                return (
                    f"{total} GPUs do not split evenly over {nodes} nodes of {req.gpus_per_node}",
                    field,
                )
        return None

    def candidates(self) -> list[tuple[int, int]]:
        """Layouts in preference order: fewest GPUs; TP grows within a node before PP."""
        req = self.req
        if req.tensor_parallel is not None and req.pipeline_parallel is not None:
            return [(req.tensor_parallel, req.pipeline_parallel)]
        tps = [1 << i for i in range(req.gpus_per_node.bit_length())]
        tps = [t for t in tps if t <= req.gpus_per_node and self.tp_problem(t) is None]
        max_pp = self.model.layers if self.traits.supports_pipeline_parallel else 1
        if req.tensor_parallel is not None:
            pps = range(1, max_pp + 1)
            out = [(req.tensor_parallel, p) for p in pps]
        elif req.pipeline_parallel is not None:
            out = [(t, req.pipeline_parallel) for t in tps]
        else:
            out = [(t, 1) for t in tps] + [(tps[-1], p) for p in range(2, max_pp + 1)]
        return [c for c in out if self.layout_problem(*c) is None]

    def max_context(self, layout: _Layout, sequences: int) -> int:
        """Longest context of which ``sequences`` fit this layout's KV cache (0 if none)."""
        budget_bytes = layout.kv_available * GIB
        lo, hi = 0, self.context
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if sequences * self.kv_seq_bytes(layout.tp, layout.pp, mid) <= budget_bytes:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def search(self) -> tuple[_Layout | None, _Layout | None, _Layout | None]:
        """(first layout that serves, first that only starts, the last one before either)."""
        previous: _Layout | None = None
        first_start: _Layout | None = None
        for tp, pp in self.candidates():
            layout = self.evaluate(tp, pp)
            if layout.serves(self.sequences):
                return layout, first_start, previous
            if layout.starts and first_start is None:
                first_start = layout
            if first_start is None:
                previous = layout
        return None, first_start, previous


def _validate(req: SizingRequest) -> None:
    if not 0.0 < req.gpu_memory_utilization <= 1.0:
        raise ValueError(
            f"gpuMemoryUtilization must be in (0, 1], got {req.gpu_memory_utilization}"
        )
    if not math.isfinite(req.gpu_memory_gib) or req.gpu_memory_gib <= 0:
        raise ValueError(f"GPU memory must be positive, got {req.gpu_memory_gib} GiB")
    checks = {
        "gpu.perNode": req.gpus_per_node,
        "dtype bytes": req.dtype_bytes,
        "maxContextLength": req.context_length,
        "maxConcurrency": req.max_concurrency,
        "tensorParallel": req.tensor_parallel,
        "pipelineParallel": req.pipeline_parallel,
        "minConcurrentSequences": req.min_concurrent_sequences,
        "startupTimeout": req.startup_timeout_seconds,
    }
    for name, value in checks.items():
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    m = req.model
    if min(m.parameters, m.layers, m.hidden_size, m.attention_heads, m.kv_heads) < 1:
        raise ValueError(f"model {m.name!r} has non-positive architecture numbers")
    if min(m.head_dim, m.vocab_size, m.max_position) < 1:
        raise ValueError(f"model {m.name!r} has non-positive architecture numbers")
    if req.quantization not in BYTES_PER_PARAM:
        raise ValueError(f"unknown quantization {req.quantization!r}")


def _gpu_label(req: SizingRequest, count: int) -> str:
    name = req.gpu_name or f"{req.gpu_memory_gib:g}GiB-GPU"
    return f"{count}x {name}"


def _layout_label(req: SizingRequest, layout: _Layout) -> str:
    return f"{_gpu_label(req, layout.gpus)} (TP={layout.tp}, PP={layout.pp})"


def _make_plan(
    sizer: _Sizer, layout: _Layout, fits: bool, reason: str, field: str | None
) -> SizingPlan:
    sequences = sizer.sequences
    return SizingPlan(
        fits=fits,
        tensor_parallel=layout.tp,
        pipeline_parallel=layout.pp,
        gpus_per_replica=layout.gpus,
        nodes_per_replica=layout.nodes,
        context_length=sizer.context,
        weights_gib=sizer.weights_total,
        weights_per_gpu_gib=layout.weights_pg,
        kv_cache_per_gpu_gib=layout.kv_available,
        kv_cache_required_gib=layout.kv_required,
        overhead_gib=layout.overhead_total,
        per_gpu_used_gib=layout.used(sequences if layout.serves(sequences) else 1),
        per_gpu_capacity_gib=layout.capacity,
        max_concurrent_sequences=layout.max_seqs,
        min_concurrent_sequences=sequences,
        meets_headroom=layout.serves(sequences),
        memory_fraction=layout.budget.memory_fraction,
        startup_seconds=startup_seconds(sizer.req, sizer.weights_total, layout.nodes),
        reason=reason,
        field=field,
    )


def startup_seconds(req: SizingRequest, weights_gib: float, nodes: int) -> int:
    """How long a replica may take to answer its health check (see STARTUP_*)."""
    if req.startup_timeout_seconds is not None:
        return req.startup_timeout_seconds
    derived = STARTUP_BASE_SECONDS + STARTUP_SECONDS_PER_GIB * weights_gib
    derived = max(STARTUP_FLOOR_SECONDS, derived) + (STARTUP_GROUP_SECONDS if nodes > 1 else 0)
    return int(math.ceil(derived / 60) * 60)


def _figures(sizer: _Sizer, layout: _Layout) -> str:
    return (
        f"{layout.weights_pg:.1f} GiB weights + {layout.budget.overhead_gib:.1f} GiB overhead"
        f" of a {layout.capacity:.1f} GiB budget per GPU leave {max(0.0, layout.kv_available):.1f}"
        f" GiB of KV cache: {layout.max_seqs} sequence(s) of {sizer.context} tokens"
    )


def _fit_reason(
    sizer: _Sizer, layout: _Layout, only_starts: _Layout | None, smaller: _Layout | None
) -> str:
    req = sizer.req
    parts = {
        "weights": layout.weights_pg,
        "KV cache": layout.kv_required * sizer.sequences,
        "overhead": layout.overhead_total,
    }
    dominant = max(parts, key=lambda k: parts[k])
    explicit = req.tensor_parallel is not None or req.pipeline_parallel is not None
    text = (
        f"{_layout_label(req, layout)}{' as requested' if explicit else ''}: "
        f"{dominant} {'dominate' if dominant == 'weights' else 'dominates'} "
        f"({_figures(sizer, layout)}; the headroom rule asks for {sizer.sequences})"
    )
    if explicit:
        return text
    if only_starts is not None:
        text += (
            f"; {_gpu_label(req, only_starts.gpus)} would start but hold only"
            f" {only_starts.max_seqs} sequence(s)"
        )
    elif smaller is not None:
        text += f"; {smaller.gpus} GPU(s) would not start"
    return text


def _alternatives(sizer: _Sizer, layout: _Layout, structural: bool) -> list[str]:
    """What would fit instead: another layout, fp8 weights, or a shorter context."""
    req = sizer.req
    out: list[str] = []
    auto: _Layout | None = None
    if req.tensor_parallel is not None or req.pipeline_parallel is not None:
        auto, _, _ = _Sizer(replace(req, tensor_parallel=None, pipeline_parallel=None)).search()
        if auto is not None:
            out.append(f"{_layout_label(req, auto)} would fit")
    effective = req.model.native_quantization if req.quantization == "none" else req.quantization
    if BYTES_PER_PARAM.get(effective, 2.0) > 1.0:
        fp8_req = replace(req, quantization="fp8", tensor_parallel=None, pipeline_parallel=None)
        fp8, _, _ = _Sizer(fp8_req).search()
        if fp8 is not None and (auto is None or fp8.gpus < auto.gpus):
            out.append(f"fp8 on {_gpu_label(req, fp8.gpus)} would fit")
    if not structural and layout.budget.problem is None and not layout.outside_short:
        sequences = sizer.sequences if layout.starts else 1
        longest = sizer.max_context(layout, sequences)
        if 0 < longest < sizer.context:
            out.append(
                f"maxContextLength <= {longest} fits {sequences} sequence(s) on"
                f" {_layout_label(req, layout)}"
            )
    return out


def _start_problem(sizer: _Sizer, layout: _Layout) -> tuple[str, str | None]:
    """Why a layout does not start, and the field that fixes it (None: decide later)."""
    req, b = sizer.req, layout.budget
    label = _layout_label(req, layout)
    if b.problem is not None:
        return f"{label}: {b.problem}; lower gpuMemoryUtilization", FIELD_UTILIZATION
    if layout.outside_short:
        return (
            f"{label}: the CUDA context, graphs and buffers need {b.outside_need_gib:.1f} GiB"
            f" outside the engine's budget but only {b.outside_gib:.1f} GiB is left; lower"
            " gpuMemoryUtilization",
            FIELD_UTILIZATION,
        )
    if layout.weights_pg + b.overhead_gib >= layout.capacity:
        return (
            f"{label} needs {layout.weights_pg:.1f} GiB weights + {b.overhead_gib:.1f} GiB"
            f" overhead per GPU but its budget is {layout.capacity:.1f} GiB",
            None,
        )
    return (
        f"{label}: KV for one {sizer.context}-token sequence needs {layout.kv_required:.1f}"
        f" GiB per GPU but only {max(0.0, layout.kv_available):.1f} GiB is left after"
        f" {layout.weights_pg:.1f} GiB weights and {b.overhead_gib:.1f} GiB overhead",
        None,
    )


def _no_fit_plan(
    sizer: _Sizer, layout: _Layout, problem: str | None, field: str | None
) -> SizingPlan:
    req = sizer.req
    structural = problem is not None
    if problem is None:
        problem, field = _start_problem(sizer, layout)
    alternatives = _alternatives(sizer, layout, structural)
    if field is None:
        if req.tensor_parallel is not None:
            field = FIELD_TP
        elif req.pipeline_parallel is not None:
            field = FIELD_PP
        elif any(a.startswith("maxContextLength") for a in alternatives):
            field = FIELD_CONTEXT
        elif any(a.startswith("fp8") for a in alternatives):
            field = FIELD_QUANT
        else:
            field = FIELD_GPU
    reason = problem + ("; " + "; ".join(alternatives) if alternatives else "")
    return _make_plan(sizer, layout, False, reason, field)


def _below_headroom_plan(sizer: _Sizer, layout: _Layout) -> SizingPlan:
    """Some layouts start but none holds the rule's sequences: say how to get there."""
    req = sizer.req
    most = max(tp * pp for tp, pp in sizer.candidates())
    problem = (
        f"no layout of up to {most} GPUs holds {sizer.sequences} sequences of {sizer.context}"
        f" tokens (resources.minConcurrentSequences); {_layout_label(req, layout)} starts"
        f" with {_figures(sizer, layout)}"
    )
    alternatives = _alternatives(sizer, layout, False)
    field = (
        FIELD_CONTEXT
        if any(a.startswith("maxContextLength") for a in alternatives)
        else (FIELD_HEADROOM)
    )
    alternatives.append(f"minConcurrentSequences {max(1, layout.max_seqs)} accepts it")
    return _make_plan(sizer, layout, False, problem + "; " + "; ".join(alternatives), field)


def plan(request: SizingRequest) -> SizingPlan:
    """Choose TP/PP for a request; never raises for infeasible inputs (see module doc)."""
    _validate(request)
    sizer = _Sizer(request)
    tp_req, pp_req = request.tensor_parallel, request.pipeline_parallel
    explicit = tp_req is not None or pp_req is not None

    if explicit:
        problem: tuple[str, str] | None = None
        if tp_req is not None and (msg := sizer.tp_problem(tp_req)) is not None:
            problem = (f"tensorParallel {msg}", FIELD_TP)
        elif tp_req is not None and pp_req is not None:
            problem = sizer.layout_problem(tp_req, pp_req)
        if problem is None and not sizer.candidates():
            tp = tp_req or 1
            problem = sizer.layout_problem(tp, pp_req or 1) or (
                f"no tensorParallel for pipelineParallel {pp_req} fits a node",
                FIELD_PP,
            )
        if problem is not None:
            layout = sizer.evaluate(tp_req or 1, pp_req or 1)
            return _no_fit_plan(sizer, layout, problem[0], problem[1])

    found, only_starts, smaller = sizer.search()
    if found is None and explicit and only_starts is not None:
        found, only_starts = only_starts, None  # an explicit layout that starts is honoured
    if found is None:
        if only_starts is not None:
            return _below_headroom_plan(sizer, only_starts)
        candidates = sizer.candidates()
        single_node = [c for c in candidates if c[0] * c[1] <= request.gpus_per_node]
        tp, pp = (single_node or candidates)[-1]
        return _no_fit_plan(sizer, sizer.evaluate(tp, pp), None, None)

    if sizer.context > request.model.max_position:
        msg = (
            f"context {sizer.context} exceeds the model's {request.model.max_position} "
            f"positions; engines refuse a longer maxContextLength"
        )
        return _make_plan(sizer, found, False, msg, FIELD_CONTEXT)
    reason = _fit_reason(sizer, found, only_starts, smaller)
    plan_ = _make_plan(sizer, found, True, reason, None)
    if not plan_.meets_headroom:
        plan_ = replace(
            plan_,
            reason=reason + f", below resources.minConcurrentSequences {sizer.sequences}",
        )
    if request.max_concurrency and plan_.max_concurrent_sequences < request.max_concurrency:
        plan_ = replace(
            plan_,
            reason=plan_.reason
            + f"; KV holds {plan_.max_concurrent_sequences} full-length sequences, fewer than "
            f"maxConcurrency {request.max_concurrency}",
        )
    return plan_


def format_text(plan: SizingPlan) -> str:
    """Human-readable plan for ``kubellm size -o text``."""
    verdict = "fits" if plan.fits else "DOES NOT FIT"
    headroom = "meets" if plan.meets_headroom else "BELOW"
    lines = [
        f"{verdict}: TP={plan.tensor_parallel} x PP={plan.pipeline_parallel} = "
        f"{plan.gpus_per_replica} GPU(s) per replica on {plan.nodes_per_replica} node(s)",
        f"  context length      {plan.context_length} tokens",
        f"  weights             {plan.weights_gib:.2f} GiB total, "
        f"{plan.weights_per_gpu_gib:.2f} GiB per GPU",
        f"  overhead            {plan.overhead_gib:.2f} GiB per GPU (activations, non-torch,"
        " CUDA graphs and context)",
        f"  KV cache            {plan.kv_cache_per_gpu_gib:.2f} GiB per GPU available, "
        f"{plan.kv_cache_required_gib:.2f} GiB per full-context sequence",
        f"  engine budget       {plan.per_gpu_capacity_gib:.2f} GiB per GPU (memory flag "
        f"{plan.memory_fraction:g}), {plan.per_gpu_used_gib:.2f} GiB planned",
        f"  full-context seqs   {plan.max_concurrent_sequences} ({headroom} the headroom rule"
        f" of {plan.min_concurrent_sequences})",
        f"  start-up window     {plan.startup_seconds} s",
        f"  reason              {plan.reason}",
    ]
    if plan.field:
        lines.append(f"  change              spec.{plan.field}")
    return "\n".join(lines)
