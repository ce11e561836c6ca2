"""vLLM: `vllm serve` OpenAI server (sources: vllm engine/arg_utils.py, v1/metrics/loggers.py).

On SIGTERM vLLM aborts in-flight requests unless `--shutdown-timeout N` (v0.19.0
vllm/engine/arg_utils.py, "0 = abort, >0 = wait"; vllm-project/vllm#36666) lets it finish them
for up to N seconds: kubellm passes the pod's drain time.
"""

from __future__ import annotations

import shlex
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
RAY_PORT = 6379
# vLLM reads the checkpoint's quantization config itself; these name the method explicitly.
QUANTIZATION_FLAG = {
    "fp8": "fp8",
    "awq": "awq_marlin",
    "gptq": "gptq_marlin",
    "bitsandbytes-nf4": "bitsandbytes",
    "mxfp4": "mxfp4",
    "nvfp4": "modelopt_fp4",
    "int8": None,  # W8A8 compressed-tensors checkpoints are detected from their config
    "none": None,
}


def _serve_args(inputs: ContainerInputs) -> list[str]:
    args = [
        inputs.model,
        "--port", str(PORT),
        "--served-model-name", inputs.served_name,
        "--tensor-parallel-size", str(inputs.tensor_parallel),
        "--pipeline-parallel-size", str(inputs.pipeline_parallel),
        "--max-model-len", str(inputs.max_context_length),
        "--gpu-memory-utilization", str(inputs.gpu_memory_utilization),
        "--download-dir", inputs.cache_dir,
    ]  # fmt: skip
    return [
        *args,
        *flags(
            ("--dtype", inputs.dtype),
            ("--quantization", QUANTIZATION_FLAG[inputs.quantization]),
            ("--kv-cache-dtype", inputs.kv_cache_dtype),
            ("--max-num-seqs", inputs.max_concurrency),
            ("--revision", inputs.revision),
            ("--trust-remote-code", inputs.trust_remote_code),
            ("--shutdown-timeout", inputs.drain_seconds),
        ),
        *inputs.extra_args,
    ]


class VLLM:
    name: str = "vllm"
    default_image: str = "vllm/vllm-openai:v0.19.0"
    port: int = PORT
    probes: Probes = Probes(health_path="/health")
    metrics_path: str = "/metrics"
    quantizations: frozenset[str] = frozenset(QUANTIZATION_FLAG)
    kv_cache_dtypes: frozenset[str] = frozenset({"auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16"})
    traits: EngineTraits = EngineTraits(name="vllm")
    token_env: tuple[str, ...] = ("HF_TOKEN",)
    owned_flags: frozenset[str] = frozenset(
        {
            "--model", "--port", "--host", "--served-model-name", "--tensor-parallel-size",
            "-tp", "--pipeline-parallel-size", "-pp", "--max-model-len",
            "--gpu-memory-utilization", "--dtype", "--quantization", "-q", "--kv-cache-dtype",
            "--max-num-seqs", "--revision", "--trust-remote-code", "--download-dir",
            "--distributed-executor-backend", "--shutdown-timeout",
        }
    )  # fmt: skip
    signals: Mapping[Signal, MetricSource | None] = MappingProxyType(
        {
            Signal.GENERATION_TOKENS: MetricSource("vllm:generation_tokens_total", "counter"),
            Signal.REQUESTS_RUNNING: MetricSource("vllm:num_requests_running", "gauge"),
            Signal.REQUESTS_WAITING: MetricSource("vllm:num_requests_waiting", "gauge"),
            Signal.KV_CACHE_USAGE: MetricSource("vllm:kv_cache_usage_perc", "gauge"),
            Signal.TIME_TO_FIRST_TOKEN: MetricSource(
                "vllm:time_to_first_token_seconds", "histogram"
            ),
            Signal.REQUEST_LATENCY: MetricSource("vllm:e2e_request_latency_seconds", "histogram"),
            Signal.REQUESTS: MetricSource("vllm:request_success_total", "counter"),
            Signal.ERRORS: MetricSource(
                "vllm:request_success_total", "counter", 'finished_reason="error"'
            ),
        }
    )

    def container(self, inputs: ContainerInputs) -> ContainerCommand:
        return ContainerCommand(command=("vllm", "serve"), args=tuple(_serve_args(inputs)))

    def multi_node(self, inputs: ContainerInputs) -> MultiNodeCommands:
        """Ray across the group, as vLLM's LeaderWorkerSet guide does."""
        serve = shlex.join(
            ["vllm", "serve", *_serve_args(inputs), "--distributed-executor-backend", "ray"]
        )
        leader = f"ray start --head --port={RAY_PORT} && exec {serve}"
        worker = f'exec ray start --address="$LWS_LEADER_ADDRESS:{RAY_PORT}" --block'
        return MultiNodeCommands(
            leader=ContainerCommand(command=("/bin/sh", "-c"), args=(leader,)),
            worker=ContainerCommand(command=("/bin/sh", "-c"), args=(worker,)),
        )
