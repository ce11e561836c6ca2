"""TensorRT-LLM: `trtllm-serve` (sources: tensorrt_llm/commands/serve.py, metrics/collector.py).

It binds to localhost unless told otherwise, takes pre-quantized checkpoints (no quantization
flag), and serves Prometheus text at /prometheus/metrics only with `return_perf_metrics`, which
goes into the `--extra_llm_api_options` YAML written at start. Its uvicorn server has no
graceful-shutdown timeout (tensorrt_llm/serve/openai_server.py `uvicorn.Config`), so on SIGTERM
it waits for open requests to finish: the pod's grace period bounds the drain.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from kubellm.engines.base import (
    ContainerCommand,
    ContainerInputs,
    MetricSource,
    MultiNodeCommands,
    Probes,
    Signal,
    flags,
)
from kubellm.sizing import EngineTraits

PORT = 8000
OPTIONS_FILE = "/tmp/kubellm-llm-api-options.yaml"
# Pre-quantized checkpoints (for example nvidia/...-FP8); the value informs sizing only.
QUANTIZATIONS = frozenset({"none", "fp8", "nvfp4", "int8", "awq", "gptq"})
KV_CACHE_DTYPE = {"auto": None, "fp8": "fp8", "fp8_e4m3": "fp8"}


def _options_yaml(inputs: ContainerInputs) -> list[str]:
    lines = ["return_perf_metrics: true", "enable_iter_perf_stats: true"]
    if kv := KV_CACHE_DTYPE[inputs.kv_cache_dtype]:
        lines += ["kv_cache_config:", f"  dtype: {kv}"]
    return lines


class TensorRTLLM:
    name: str = "trtllm"
    default_image: str = "nvcr.io/nvidia/tensorrt-llm/release:1.0.0"
    port: int = PORT
    probes: Probes = Probes(health_path="/health")
    metrics_path: str = "/prometheus/metrics"
    quantizations: frozenset[str] = QUANTIZATIONS
    kv_cache_dtypes: frozenset[str] = frozenset(KV_CACHE_DTYPE)
    # Multi-node TensorRT-LLM needs MPI launchers across the group; not rendered yet.
    # kv_cache_free_gpu_memory_fraction is a share of memory free after weights and
    # activations; trtllm-serve defaults to max_num_tokens 8192 and max_batch_size 2048.
    traits: EngineTraits = EngineTraits(
        name="trtllm",
        multi_node=False,
        memory_is_fraction_of_free=True,
        default_max_batched_tokens=8192,
        large_gpu_max_batched_tokens=8192,
        default_max_num_seqs=2048,
        large_gpu_max_num_seqs=2048,
        sampler_bytes_per_seq_vocab=4.0,
    )
    token_env: tuple[str, ...] = ("HF_TOKEN",)
    owned_flags: frozenset[str] = frozenset(
        {
            "--host", "--port", "--tp_size", "--pp_size", "--max_seq_len", "--max_batch_size",
            "--kv_cache_free_gpu_memory_fraction", "--trust_remote_code", "--revision",
            "--extra_llm_api_options", "--backend",
        }
    )  # fmt: skip
    signals: Mapping[Signal, MetricSource | None] = MappingProxyType(
        {
            Signal.GENERATION_TOKENS: MetricSource("trtllm_generation_tokens_total", "counter"),
            Signal.REQUESTS_RUNNING: MetricSource("trtllm_num_requests_running", "gauge"),
            Signal.REQUESTS_WAITING: MetricSource("trtllm_num_requests_waiting", "gauge"),
            Signal.KV_CACHE_USAGE: MetricSource("trtllm_kv_cache_utilization", "gauge"),
            Signal.TIME_TO_FIRST_TOKEN: MetricSource(
                "trtllm_time_to_first_token_seconds", "histogram"
            ),
            Signal.REQUEST_LATENCY: MetricSource("trtllm_e2e_request_latency_seconds", "histogram"),
            Signal.REQUESTS: MetricSource("trtllm_request_success_total", "counter"),
            Signal.ERRORS: MetricSource("trtllm_request_error_total", "counter"),
        }
    )

    def container(self, inputs: ContainerInputs) -> ContainerCommand:
        args = [
            inputs.model,
            "--host", "0.0.0.0",
            "--port", str(PORT),
            "--backend", "pytorch",
            "--tp_size", str(inputs.tensor_parallel),
            "--pp_size", str(inputs.pipeline_parallel),
            "--max_seq_len", str(inputs.max_context_length),
            "--kv_cache_free_gpu_memory_fraction", str(inputs.gpu_memory_utilization),
            "--extra_llm_api_options", OPTIONS_FILE,
        ]  # fmt: skip
        args += flags(
            ("--max_batch_size", inputs.max_concurrency),
            ("--revision", inputs.revision),
            ("--trust_remote_code", inputs.trust_remote_code),
        )
        options = " ".join(f"'{line}'" for line in _options_yaml(inputs))
        script = f"printf '%s\\n' {options} > {OPTIONS_FILE} && exec trtllm-serve \"$@\""
        return ContainerCommand(
            command=("/bin/sh", "-c", script, "trtllm-serve"),
            args=(*args, *inputs.extra_args),
            env={"HF_HOME": inputs.cache_dir},
        )

    def multi_node(self, inputs: ContainerInputs) -> MultiNodeCommands | None:
        return None
