"""SGLang: `python3 -m sglang.launch_server`, facts read from the v0.5.10 release.

Sources (https://github.com/sgl-project/sglang/blob/v0.5.10/python/sglang/...):
- flags: srt/server_args.py#L3630-L4570 (`--tensor-parallel-size` alias `--tp-size`,
  `--model` alias of `--model-path`); parsed by a plain `argparse.ArgumentParser`
  (srt/server_args.py#L6526, allow_abbrev on: `--context-len` means `--context-length`,
  `--tp` means `--tp-size`), with `--config FILE` merged in (#L6530).
- memory: srt/server_args.py#L1141-L1335 - `--mem-fraction-static` is (weights + KV pool) /
  GPU memory; by default SGLang leaves 512 MB + 1.5 MB x chunked_prefill_size + 2 MB x
  cuda_graph_max_bs + 128 MB per TP x PP rank + 8 MB per piecewise CUDA graph outside it,
  at least 10 GB on GPUs over 60 GB; srt/model_executor/model_runner_kv_cache_mixin.py#L144-L177
  gives the KV pool `free x fraction - weights`.
- health: srt/entrypoints/http_server.py#L476-L500 - /health answers 503 while the server
  starts and 200 afterwards without generating (unless SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION).
- metrics (only with `--enable-metrics`): srt/observability/metrics_collector.py (label
  `model_name`), and srt/utils/common.py#L1364-L1426 - `sglang:http_responses_total` with the
  raw `status_code`; a client that disconnects gets a 4xx, never a 5xx.
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
    FlagRules,
    MetricSource,
    MultiNodeCommands,
    Probes,
    QuantSupport,
    Signal,
    flags,
    read_as_is,
)
from kubellm.sizing import EngineTraits

VERSION = "v0.5.10"
PORT = 30000
DIST_PORT = 20000
_SRC = f"https://github.com/sgl-project/sglang/blob/{VERSION}/python/sglang/srt"
_COLLECTOR = f"{_SRC}/observability/metrics_collector.py"
_HTTP = f"{_SRC}/utils/common.py#L1373-L1377"
_INFERENCE = 'method="POST",endpoint=~"/v1/.+|/generate"'
KV_CACHE_FLAG = {
    "auto": None,
    "fp8": "fp8_e4m3",
    "fp8_e4m3": "fp8_e4m3",
    "fp8_e5m2": "fp8_e5m2",
    "bfloat16": "bfloat16",
}
MIB_PER_GIB = 1024


def _defaults_for(gpu_mib: float, tp: int) -> tuple[int, int]:
    """(chunked_prefill_size, cuda_graph_max_bs) SGLang picks for a GPU (#L1164-L1225)."""
    if gpu_mib < 20 * 1024:
        return 2048, 8
    if gpu_mib < 35 * 1024:
        return 2048, 24 if tp < 4 else 80
    if gpu_mib < 60 * 1024:
        return 4096, 32 if tp < 4 else 160
    if gpu_mib < 160 * 1024:
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


def _piecewise_graphs(max_tokens: int) -> int:
    """How many piecewise CUDA graphs SGLang captures up to `max_tokens` (#L1397-L1415)."""
    sizes = [
        *range(4, 33, 4),
        *range(48, 257, 16),
        *range(288, 513, 32),
        *range(576, 1025, 64),
        *range(1280, 4097, 256),
        *range(4608, max_tokens + 1, 512),
    ]
    return len([s for s in sizes if s <= max_tokens])


def default_mem_fraction_static(total_gib: float, tp: int, pp: int, mla: bool) -> float:
    """SGLang's own --mem-fraction-static for a GPU and layout (#L1281-L1330)."""
    gpu_mib = total_gib * MIB_PER_GIB
    chunked_prefill, graph_bs = _defaults_for(gpu_mib, tp)
    reserved = 512 + max(chunked_prefill, 2048) * 1.5 + graph_bs * 2 + tp * pp / 8 * 1024
    reserved += 1.5 * 1024 if mla else _piecewise_graphs(chunked_prefill) * 8
    if gpu_mib > 60 * 1024:
        reserved = max(reserved, 10 * 1024)
    return round((gpu_mib - reserved) / gpu_mib, 3)


def _launch_args(inputs: ContainerInputs) -> list[str]:
    args = [
        "--model-path", inputs.model,
        "--host", "0.0.0.0",
        "--port", str(PORT),
        *flags(("--served-model-name", inputs.served_name)),
        "--tp-size", str(inputs.tensor_parallel),
        "--pp-size", str(inputs.pipeline_parallel),
        "--context-length", str(inputs.max_context_length),
        "--mem-fraction-static", str(inputs.memory_fraction),
        "--download-dir", inputs.cache_dir,
        "--enable-metrics",
    ]  # fmt: skip
    return [
        *args,
        *flags(
            ("--dtype", inputs.dtype),
            ("--quantization", inputs.quantization_flag),
            ("--kv-cache-dtype", KV_CACHE_FLAG[inputs.kv_cache_dtype]),
            ("--max-running-requests", inputs.max_concurrency),
            ("--revision", inputs.revision),
            ("--trust-remote-code", inputs.trust_remote_code),
        ),
        *inputs.extra_args,
    ]


class SGLang:
    name: str = "sglang"
    version: str = VERSION
    default_image: str = f"lmsysorg/sglang:{VERSION}"
    port: int = PORT
    probes: Probes = Probes(health_path="/health")
    metrics_path: str = "/metrics"
    quantization: Mapping[str, QuantSupport] = MappingProxyType(
        {
            # W8A8 int8 is read as compressed-tensors, nvfp4 as modelopt_fp4
            **read_as_is("none", "int8", "awq", "gptq", "mxfp4", "nvfp4"),
            "fp8": QuantSupport(prequantized=True, online="fp8"),
        }
    )
    dtypes: frozenset[str] = frozenset({"auto", "bfloat16", "float16", "float32"})
    kv_cache_dtypes: frozenset[str] = frozenset(KV_CACHE_FLAG)
    serves_custom_name: bool = True
    traits: EngineTraits = EngineTraits(
        name="sglang",
        budget="static_fraction",
        static_fraction=default_mem_fraction_static,
        default_max_batched_tokens=2048,
        large_gpu_max_batched_tokens=8192,
        large_gpu_min_gib=60.0,
        large_gpu_excludes=(),
    )
    token_env: tuple[str, ...] = ("HF_TOKEN",)
    flag_rules: FlagRules = FlagRules(
        parser="argparse",
        owned=frozenset(
            {
                "--model-path", "--model", "--config", "--host", "--port",
                "--served-model-name", "--tp-size", "--tensor-parallel-size", "--pp-size",
                "--pipeline-parallel-size", "--dp-size", "--data-parallel-size",
                "--context-length", "--mem-fraction-static", "--max-total-tokens", "--dtype",
                "--quantization", "--kv-cache-dtype", "--max-running-requests", "--revision",
                "--trust-remote-code", "--download-dir", "--enable-metrics", "--nnodes",
                "--node-rank", "--dist-init-addr",
            }
        ),
    )  # fmt: skip
    signals: Mapping[Signal, MetricSource | None] = MappingProxyType(
        {
            Signal.GENERATION_TOKENS: MetricSource(
                "sglang:generation_tokens_total", "counter", f"{_COLLECTOR}#L1113-L1117"
            ),
            Signal.REQUESTS_RUNNING: MetricSource(
                "sglang:num_running_reqs", "gauge", f"{_COLLECTOR}#L188-L192"
            ),
            Signal.REQUESTS_WAITING: MetricSource(
                "sglang:num_queue_reqs", "gauge", f"{_COLLECTOR}#L242-L246"
            ),
            Signal.KV_CACHE_USAGE: MetricSource(
                "sglang:token_usage", "gauge", f"{_COLLECTOR}#L200-L204"
            ),
            Signal.TIME_TO_FIRST_TOKEN: MetricSource(
                "sglang:time_to_first_token_seconds", "histogram", f"{_COLLECTOR}#L1269-L1275"
            ),
            Signal.REQUEST_LATENCY: MetricSource(
                "sglang:e2e_request_latency_seconds", "histogram", f"{_COLLECTOR}#L1283-L1289"
            ),
            Signal.REQUESTS: MetricSource(
                "sglang:http_responses_total", "counter", _HTTP, _INFERENCE
            ),
            Signal.ERRORS: MetricSource(
                "sglang:http_responses_total",
                "counter",
                _HTTP,
                f'{_INFERENCE},status_code=~"5.."',
            ),
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
