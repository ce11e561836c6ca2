"""Capacity model: how fast one replica serves, from its sizing plan and the GPU's datasheet.

A continuously batching engine (vLLM, SGLang, TGI, TensorRT-LLM) runs in steps. A decode step
reads every weight once (each GPU its tensor-parallel shard) and the KV cache of every running
sequence, and spends a compute cost per sequence; so one sequence decodes at 1 / step
seconds per token, slower as the batch grows, while the replica's throughput (batch / step)
grows until the batch limit. Prefill is compute-bound: a cost per prompt token during which
the running sequences wait. Requests beyond the batch limit (``maxConcurrency``, or the
sequences whose KV fits) queue, so time to first token grows with load.

Calibration (vLLM, Llama-3.1-8B, bf16, one H100 SXM, 3.35 TB/s, 989 dense TFLOPS):
- one sequence decodes in about 6.9 ms per token (145 tokens/s): weights 16.1 GB read at
  ``MEMORY_EFFICIENCY`` = 0.7 of peak bandwidth, the usual single-stream figure for vLLM
  with CUDA graphs on H100;
- saturated, 1000 ShareGPT requests (230 prompt, 203 output tokens on average) took
  30.85 s: 6,583 output tokens/s, 14,029 tokens/s in all (vllm-project/vllm PR #18566,
  `vllm bench serve` against `vllm serve meta-llama/Llama-3.1-8B-Instruct`). With prefill
  at ``PREFILL_EFFICIENCY`` = 0.5 of peak (7.4 s of the run) the decode steps of about 256
  sequences take about 29 ms, which ``DECODE_COMPUTE_EFFICIENCY`` = 0.25 reproduces.
Tensor parallelism divides weights, KV and compute by TP and adds two all-reduces per layer.
Pipeline parallelism is treated like tensor parallelism without the all-reduces (an
optimistic simplification; it is rare for one replica). MoE models compute with their active
parameters but read every local expert each step (true once the batch is large).

`sustainable_load` inverts the model: the most requests per second one replica serves with
the ``quantile`` time to first token within an SLO (Poisson arrivals, M/M/c queueing for the
batch slots), and the four autoscaling signals at that load, which is what
``autoscaling.target: auto`` scales on.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass

from .gpus import GPUType
from .memory import is_large_gpu, kv_cache_bytes_per_token, kv_dtype_bytes
from .plan import SizingPlan, SizingRequest

__all__ = [
    "AUTO_HEADROOM",
    "DEFAULT_WORKLOAD",
    "AutoscalingPlan",
    "OperatingPoint",
    "ReplicaCapacity",
    "Workload",
    "auto_targets",
    "batch_limit_of",
    "plan_autoscaling",
    "replica_capacity",
    "sustainable_load",
]

GIB = float(2**30)
MEMORY_EFFICIENCY = 0.7
DECODE_COMPUTE_EFFICIENCY = 0.25
PREFILL_EFFICIENCY = 0.5
ALLREDUCE_SECONDS = 10e-6  # one small all-reduce over NVLink, per layer and direction
# `auto` plans each replica at this share of its sustainable load, by signal: the HPA
# tolerates 10% above target before it acts and new replicas take a cold start to serve.
# Gauges (running requests, KV use) are read as they are; generated tokens/s is a rate over
# one minute, which trails a rising load by about half a minute, so its plan keeps more room.
# Set with bench/autoscale.py's bursty trace (README, "Autoscaling"): tokens/s at 60% met the
# TTFT SLO for 99% of requests in every run; 70% did not.
AUTO_HEADROOM = {
    "generationTokensPerSecond": 0.6,
    "requestsInFlight": 0.85,
    "kvCacheUtilization": 0.85,
}
QUEUE_PLAN = 0.9  # the load from which the queue target counts what still drains in time


@dataclass(frozen=True)
class Workload:
    """The mean request `auto` targets are computed for (a chat mix by default)."""

    prompt_tokens: int = 512
    output_tokens: int = 256


DEFAULT_WORKLOAD = Workload()


@dataclass(frozen=True)
class ReplicaCapacity:
    """Per-step costs of one replica; `decode_step_seconds` and `prefill_seconds` are the model."""

    weights_seconds: float  # reading one GPU's weights once
    step_overhead_seconds: float  # tensor-parallel all-reduces of one step
    sequence_seconds: float  # compute per running sequence per step
    kv_seconds_per_token: float  # reading one context token's KV on one GPU
    prefill_seconds_per_token: float
    max_sequences: int  # the engine's batch limit (max_num_seqs / maxConcurrency)
    kv_capacity_tokens: int  # context tokens the KV cache of one replica holds

    def decode_step_seconds(self, sequences: int, context_tokens: int) -> float:
        """One decode step of `sequences` sequences holding `context_tokens` tokens in all."""
        if sequences <= 0:
            return 0.0
        return (
            self.weights_seconds
            + self.step_overhead_seconds
            + sequences * self.sequence_seconds
            + context_tokens * self.kv_seconds_per_token
        )

    def prefill_seconds(self, prompt_tokens: int) -> float:
        return prompt_tokens * self.prefill_seconds_per_token

    def batch_limit(self, workload: Workload) -> int:
        """Sequences that run at once: the engine's limit or what the KV cache holds."""
        per_sequence = workload.prompt_tokens + workload.output_tokens / 2
        return max(1, min(self.max_sequences, int(self.kv_capacity_tokens // per_sequence)))


def replica_capacity(
    request: SizingRequest, plan: SizingPlan, gpu: GPUType, max_sequences: int
) -> ReplicaCapacity:
    """The capacity of one replica laid out as `plan` on `gpu` (see the module doc)."""
    model = request.model
    shards = plan.tensor_parallel * plan.pipeline_parallel
    bandwidth = gpu.memory_bandwidth_gbs * 1e9 * MEMORY_EFFICIENCY
    active = model.active_parameters or model.parameters
    flops_per_token = 2.0 * active / shards
    kv_token = kv_cache_bytes_per_token(
        model,
        tensor_parallel=plan.tensor_parallel,
        pipeline_parallel=plan.pipeline_parallel,
        kv_cache_dtype_bytes=kv_dtype_bytes(request.kv_cache_dtype, request.dtype_bytes),
    )
    allreduces = 2 * model.layers if plan.tensor_parallel > 1 else 0
    return ReplicaCapacity(
        weights_seconds=plan.weights_per_gpu_gib * GIB / bandwidth,
        step_overhead_seconds=allreduces * ALLREDUCE_SECONDS,
        sequence_seconds=flops_per_token / (gpu.bf16_tflops * 1e12 * DECODE_COMPUTE_EFFICIENCY),
        kv_seconds_per_token=kv_token / bandwidth,
        prefill_seconds_per_token=flops_per_token / (gpu.bf16_tflops * 1e12 * PREFILL_EFFICIENCY),
        max_sequences=max_sequences,
        kv_capacity_tokens=int(max(0.0, plan.kv_cache_per_gpu_gib) * GIB // max(kv_token, 1.0)),
    )


@dataclass(frozen=True)
class OperatingPoint:
    """One replica at a steady request rate: what its engine metrics read."""

    requests_per_second: float
    generation_tokens_per_second: float
    requests_running: float
    requests_waiting: float
    kv_cache_utilization: float
    ttft_seconds: float  # at the quantile the model was asked for


def _erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue (offered load in servers)."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    blocking = 1.0
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    return blocking / (1 - (offered / servers) * (1 - blocking))


class _Model:
    """`ReplicaCapacity` under Poisson arrivals of one workload."""

    def __init__(self, capacity: ReplicaCapacity, workload: Workload, quantile: float) -> None:
        self.c = capacity
        self.w = workload
        self.tail = -math.log(1 - quantile)  # exponential tail factor of the quantile
        self.z = statistics.NormalDist().inv_cdf(quantile)
        self.slots = capacity.batch_limit(workload)
        self.context = workload.prompt_tokens + workload.output_tokens / 2

    def step(self, running: float) -> float:
        c = self.c
        per_sequence = c.sequence_seconds + self.context * c.kv_seconds_per_token
        return c.weights_seconds + c.step_overhead_seconds + running * per_sequence

    def prefill_share(self, rate: float) -> float:
        return rate * self.c.prefill_seconds(self.w.prompt_tokens)

    def service(self, rate: float, running: float) -> float:
        """Seconds one request holds a batch slot: its prefill and its decode steps."""
        decode = self.w.output_tokens * self.step(running) / (1 - self.prefill_share(rate))
        return self.c.prefill_seconds(self.w.prompt_tokens) + decode

    def running(self, rate: float) -> float:
        """Little's law with a step time linear in the batch: b = rate * service(b)."""
        running = rate * self.service(rate, 1.0)
        for _ in range(50):
            running = min(float(self.slots), rate * self.service(rate, max(1.0, running)))
        return running

    def point(self, rate: float) -> OperatingPoint | None:
        """The replica at `rate` requests/s, or None when it cannot keep up."""
        if self.prefill_share(rate) >= 1:
            return None
        running = self.running(rate)
        offered = rate * self.service(rate, max(1.0, running))
        # Requests wait when the batch is full, and a full batch steps slower than the mean
        # one: queue with the service time of a busy batch (the tail of a Poisson occupancy).
        busy = min(float(self.slots), running + self.z * math.sqrt(max(running, 1.0)))
        service = self.service(rate, busy)
        if rate * service >= self.slots:
            return None
        waits = _erlang_c(self.slots, rate * service)
        drain = self.slots / service - rate  # requests/s the free slots absorb
        wait = math.log(waits * math.exp(self.tail)) / drain if waits > math.exp(-self.tail) else 0
        step = self.step(max(1.0, running)) / (1 - self.prefill_share(rate))
        prefill = 2 * self.c.prefill_seconds(self.w.prompt_tokens)  # a long prompt in the mix
        ttft = wait + step + prefill
        queue = waits * offered / (self.slots - offered)
        tokens = rate * self.w.output_tokens
        kv = min(1.0, offered * self.context / max(1, self.c.kv_capacity_tokens))
        return OperatingPoint(rate, tokens, min(offered, self.slots), queue, kv, ttft)

    def highest_rate(self, ttft_slo_seconds: float) -> OperatingPoint | None:
        low, high = 0.0, 1.0 / max(self.c.prefill_seconds(self.w.prompt_tokens), 1e-9)
        best: OperatingPoint | None = None
        for _ in range(60):
            rate = (low + high) / 2
            point = self.point(rate)
            if point is not None and point.ttft_seconds <= ttft_slo_seconds:
                best, low = point, rate
            else:
                high = rate
        return best


def sustainable_load(
    capacity: ReplicaCapacity,
    ttft_slo_seconds: float,
    workload: Workload = DEFAULT_WORKLOAD,
    quantile: float = 0.99,
) -> OperatingPoint | None:
    """The highest load one replica serves with the TTFT quantile within the SLO.

    None when even one request at a time misses the SLO (prefill alone is too slow).
    """
    return _Model(capacity, workload, quantile).highest_rate(ttft_slo_seconds)


@functools.lru_cache(maxsize=1024)
def auto_targets(
    capacity: ReplicaCapacity,
    ttft_slo_seconds: float,
    workload: Workload = DEFAULT_WORKLOAD,
    scale: float = 1.0,
) -> dict[str, float] | None:
    """Per-replica targets of every autoscaling metric for `autoscaling.target: auto`.

    Each signal is read at its `AUTO_HEADROOM` share (times `scale`) of the sustainable load;
    the queue target is the queue a replica at `QUEUE_PLAN` of it still drains within the
    SLO. None when no load meets the SLO.
    """
    model = _Model(capacity, workload, 0.99)
    best = model.highest_rate(ttft_slo_seconds)
    if best is None:
        return None

    def at(share: float) -> OperatingPoint:
        return model.point(best.requests_per_second * min(1.0, share * scale)) or best

    planned = at(QUEUE_PLAN)
    service = model.service(planned.requests_per_second, max(1.0, planned.requests_running))
    queue = (ttft_slo_seconds - planned.ttft_seconds) * model.slots / service
    tokens = at(AUTO_HEADROOM["generationTokensPerSecond"]).generation_tokens_per_second
    running = at(AUTO_HEADROOM["requestsInFlight"]).requests_running
    kv = at(AUTO_HEADROOM["kvCacheUtilization"]).kv_cache_utilization
    return {
        "generationTokensPerSecond": round(tokens, 1),
        "requestsInFlight": round(max(1.0, running), 1),
        "queueLength": round(max(1.0, queue), 1),
        "kvCacheUtilization": round(min(0.95, max(0.05, kv)), 3),
    }


def batch_limit_of(request: SizingRequest) -> int:
    """Sequences the engine batches at once: maxConcurrency, else the engine's default."""
    if request.max_concurrency:
        return request.max_concurrency
    traits = request.engine
    large = is_large_gpu(traits, request.gpu_memory_gib, request.gpu_name)
    return traits.large_gpu_max_num_seqs if large else traits.default_max_num_seqs


@dataclass(frozen=True)
class AutoscalingPlan:
    """The per-replica target an autoscaler gets, and where it came from."""

    metric: str
    target: float
    auto: bool  # computed by `auto_targets`, not written in the spec
    ttft_slo_seconds: float
    sustainable_tokens_per_second: float | None  # one replica within the SLO, if known
    reason: str


def plan_autoscaling(
    metric: str,
    target: float | str,
    ttft_slo_seconds: float,
    capacity: ReplicaCapacity | None,
    workload: Workload = DEFAULT_WORKLOAD,
) -> AutoscalingPlan | str:
    """The effective target (an explicit number wins), or why `auto` cannot be computed."""
    best = sustainable_load(capacity, ttft_slo_seconds, workload) if capacity else None
    sustainable = round(best.generation_tokens_per_second, 1) if best else None
    if target != "auto":
        reason = "set in the spec"
        if sustainable is not None:
            reason += f"; one replica sustains {sustainable:g} tokens/s within the TTFT SLO"
        return AutoscalingPlan(metric, float(target), False, ttft_slo_seconds, sustainable, reason)
    if capacity is None:
        return (
            "target auto needs the GPU's speed: set resources.gpu.type to a catalog GPU, or"
            " give autoscaling.target a number"
        )
    targets = auto_targets(capacity, ttft_slo_seconds, workload)
    if targets is None or best is None:
        return (
            f"no load meets a {ttft_slo_seconds:g}s time to first token on this layout (prefill"
            " alone is slower): raise autoscaling.ttftSLO or give autoscaling.target a number"
        )
    reason = (
        f"auto: one replica sustains {sustainable:g} tokens/s ({best.requests_running:.0f}"
        f" running) with p99 TTFT within {ttft_slo_seconds:g}s for {workload.prompt_tokens}"
        f"+{workload.output_tokens}-token requests; planned at"
        f" {AUTO_HEADROOM.get(metric, QUEUE_PLAN):.0%} of that"
    )
    return AutoscalingPlan(metric, targets[metric], True, ttft_slo_seconds, sustainable, reason)
