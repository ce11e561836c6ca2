"""SGLang: `python3 -m sglang.launch_server` (source: sglang srt/server_args.py).

It binds to 127.0.0.1 unless told otherwise, opens its port before warm-up (probe /health, not
TCP) and exports metrics only with `--enable-metrics`. On SIGTERM it stops taking requests and
waits until the in-flight ones are done (TokenizerManager.sigterm_watchdog,
python/sglang/srt/managers/tokenizer_manager.py), so the pod's grace period bounds the drain.
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

PORT = 30000
DIST_PORT = 20000
QUANTIZATION_FLAG = {
    "none": None,
    "fp8": "fp8",
    "awq": "awq",
    "gptq": "gptq",
    "bitsandbytes-nf4": "bitsandbytes",
    "mxfp4": "mxfp4",
    "nvfp4": "modelopt_fp4",
    "int8": "w8a8_int8",
}
KV_CACHE_DTYPES = frozenset({"auto", "fp8_e4m3", "fp8_e5m2"})


def _launch_args(inputs: ContainerInputs) -> list[str]:
    args = [
        "--model-path", inputs.model,
        "--host", "0.0.0.0",
        "--port", str(PORT),
        "--served-model-name", inputs.served_name,
        "--tp-size", str(inputs.tensor_parallel),
        "--pp-size", str(inputs.pipeline_parallel),
        "--context-length", str(inputs.max_context_length),
        "--mem-fraction-static", str(inputs.gpu_memory_utilization),
        "--download-dir", inputs.cache_dir,
        "--enable-metrics",
    ]  # fmt: skip
    return [
        *args,
        *flags(
            ("--dtype", inputs.dtype),
            ("--quantization", QUANTIZATION_FLAG[inputs.quantization]),
            ("--kv-cache-dtype", inputs.kv_cache_dtype),
            ("--max-running-requests", inputs.max_concurrency),
            ("--revision", inputs.revision),
            ("--trust-remote-code", inputs.trust_remote_code),
        ),
        *inputs.extra_args,
    ]


class SGLang:
    name: str = "sglang"
    default_image: str = "lmsysorg/sglang:v0.5.5"
    port: int = PORT
    probes: Probes = Probes(health_path="/health")
    metrics_path: str = "/metrics"
    quantizations: frozenset[str] = frozenset(QUANTIZATION_FLAG)
    kv_cache_dtypes: frozenset[str] = KV_CACHE_DTYPES
    # --mem-fraction-static covers weights and KV only: activations live in the rest.
    traits: EngineTraits = EngineTraits(name="sglang", activation_in_headroom=True)
    token_env: tuple[str, ...] = ("HF_TOKEN",)
    owned_flags: frozenset[str] = frozenset(
        {
            "--model-path", "--model", "--host", "--port", "--served-model-name", "--tp-size",
            "--tp", "--pp-size", "--context-length", "--mem-fraction-static", "--dtype",
            "--quantization", "--kv-cache-dtype", "--max-running-requests", "--revision",
            "--trust-remote-code", "--download-dir", "--enable-metrics", "--nnodes",
            "--node-rank", "--dist-init-addr",
        }
    )  # fmt: skip
    signals: Mapping[Signal, MetricSource | None] = MappingProxyType(
        {
            Signal.GENERATION_TOKENS: MetricSource("sglang:generation_tokens_total", "counter"),
            Signal.REQUESTS_RUNNING: MetricSource("sglang:num_running_reqs", "gauge"),
            Signal.REQUESTS_WAITING: MetricSource("sglang:num_queue_reqs", "gauge"),
            Signal.KV_CACHE_USAGE: MetricSource("sglang:token_usage", "gauge"),
            Signal.TIME_TO_FIRST_TOKEN: MetricSource(
                "sglang:time_to_first_token_seconds", "histogram"
            ),
            Signal.REQUEST_LATENCY: MetricSource("sglang:e2e_request_latency_seconds", "histogram"),
            Signal.REQUESTS: MetricSource("sglang:num_requests_total", "counter"),
            Signal.ERRORS: MetricSource("sglang:num_aborted_requests_total", "counter"),
        }
    )

    def container(self, inputs: ContainerInputs) -> ContainerCommand:
        return ContainerCommand(
            command=("python3", "-m", "sglang.launch_server"), args=tuple(_launch_args(inputs))
        )

    def multi_node(self, inputs: ContainerInputs) -> MultiNodeCommands:
        """Every node runs the server; rank 0 (the leader) answers HTTP."""
        base = shlex.join(["python3", "-m", "sglang.launch_server", *_launch_args(inputs)])
        group = (
            f'--dist-init-addr "$LWS_LEADER_ADDRESS:{DIST_PORT}" --nnodes "$LWS_GROUP_SIZE"'
            ' --node-rank "$LWS_WORKER_INDEX"'
        )
        same = ContainerCommand(command=("/bin/sh", "-c"), args=(f"exec {base} {group}",))
        return MultiNodeCommands(leader=same, worker=same)
