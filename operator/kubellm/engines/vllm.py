"""vLLM: `vllm serve` OpenAI server, facts read from the v0.19.0 release.

Sources (https://github.com/vllm-project/vllm/blob/v0.19.0/...):
- flags: vllm/engine/arg_utils.py#L682-L1320 (`-tp`, `-pp`, `-dp`, `-q`, `-n`, `-r` aliases;
  bool fields become `--x/--no-x` through BooleanOptionalAction, #L309-L310);
  vllm/entrypoints/openai/cli_args.py (host, port, served model name).
- flag parsing: vllm/utils/argparse_utils.py#L47-L300 - FlexibleArgumentParser rewrites `_`
  to `-` in option names, moves `--model X` to the positional model, reads `--config FILE`,
  and keeps argparse's default allow_abbrev=True (unique prefixes of long options work).
- quantization: vllm/config/model.py#L960-L995 detects the method from the checkpoint and
  refuses a different `--quantization`; `fp8` and `bitsandbytes` also quantize 16-bit
  weights while loading (vllm/model_executor/layers/quantization/__init__.py).
- health: vllm/entrypoints/serve/instrumentator/health.py#L22-L33 (/health: 200, or 503 when
  the engine is dead; no generation).
- metrics: vllm/v1/metrics/loggers.py (names and labels `model_name`, `engine`), and
  vllm/entrypoints/serve/instrumentator/metrics.py#L20-L40: prometheus-fastapi-instrumentator's
  `http_requests_total{handler,method,status}` with status grouped as 2xx/4xx/5xx, excluding
  /metrics and /health - the only counter that sees HTTP failures.

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

VERSION = "v0.19.0"
PORT = 8000
RAY_PORT = 6379
_SRC = f"https://github.com/vllm-project/vllm/blob/{VERSION}/vllm"
_LOGGERS = f"{_SRC}/v1/metrics/loggers.py"
_HTTP = f"{_SRC}/entrypoints/serve/instrumentator/metrics.py#L20-L40"
# Inference calls only: POSTs under /v1 (health checks and scrapes are excluded upstream).
_INFERENCE = 'method="POST",handler=~"/v1/.+"'


def _serve_args(inputs: ContainerInputs) -> list[str]:
    args = [
        inputs.model,
        "--port", str(PORT),
        *flags(("--served-model-name", inputs.served_name)),
        "--tensor-parallel-size", str(inputs.tensor_parallel),
        "--pipeline-parallel-size", str(inputs.pipeline_parallel),
        "--max-model-len", str(inputs.max_context_length),
        "--gpu-memory-utilization", str(inputs.memory_fraction),
        "--download-dir", inputs.cache_dir,
    ]  # fmt: skip
    return [
        *args,
        *flags(
            ("--dtype", inputs.dtype),
            ("--quantization", inputs.quantization_flag),
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
    version: str = VERSION
    default_image: str = f"vllm/vllm-openai:{VERSION}"
    port: int = PORT
    probes: Probes = Probes(health_path="/health")
    metrics_path: str = "/metrics"
    quantization: Mapping[str, QuantSupport] = MappingProxyType(
        {
            # W8A8 int8 is read as compressed-tensors, nvfp4 as modelopt_fp4
            **read_as_is("none", "int8", "awq", "gptq", "mxfp4", "nvfp4"),
            "fp8": QuantSupport(prequantized=True, online="fp8"),
            "bitsandbytes-nf4": QuantSupport(prequantized=True, online="bitsandbytes"),
        }
    )
    dtypes: frozenset[str] = frozenset({"auto", "bfloat16", "float16", "float32"})
    kv_cache_dtypes: frozenset[str] = frozenset(
        {"auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16"}
    )
    serves_custom_name: bool = True
    traits: EngineTraits = EngineTraits(name="vllm")
    token_env: tuple[str, ...] = ("HF_TOKEN",)
    flag_rules: FlagRules = FlagRules(
        parser="argparse",
        underscores_as_dashes=True,
        owned=frozenset(
            {
                "--model", "--config", "--host", "--port", "--served-model-name",
                "--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp",
                "--data-parallel-size", "-dp", "--nnodes", "-n", "--node-rank", "-r",
                "--max-model-len", "--gpu-memory-utilization", "--kv-cache-memory-bytes",
                "--dtype", "--quantization", "-q", "--kv-cache-dtype", "--max-num-seqs",
                "--revision", "--trust-remote-code", "--no-trust-remote-code", "--download-dir",
                "--distributed-executor-backend", "--shutdown-timeout",
            }
        ),
    )  # fmt: skip
    signals: Mapping[Signal, MetricSource | None] = MappingProxyType(
        {
            Signal.GENERATION_TOKENS: MetricSource(
                "vllm:generation_tokens_total", "counter", f"{_LOGGERS}#L635-L640"
            ),
            Signal.REQUESTS_RUNNING: MetricSource(
                "vllm:num_requests_running", "gauge", f"{_LOGGERS}#L436-L441"
            ),
            Signal.REQUESTS_WAITING: MetricSource(
                "vllm:num_requests_waiting", "gauge", f"{_LOGGERS}#L446-L451"
            ),
            Signal.KV_CACHE_USAGE: MetricSource(
                "vllm:kv_cache_usage_perc", "gauge", f"{_LOGGERS}#L482-L487"
            ),
            Signal.TIME_TO_FIRST_TOKEN: MetricSource(
                "vllm:time_to_first_token_seconds", "histogram", f"{_LOGGERS}#L727-L733"
            ),
            Signal.REQUEST_LATENCY: MetricSource(
                "vllm:e2e_request_latency_seconds", "histogram", f"{_LOGGERS}#L843-L849"
            ),
            Signal.REQUESTS: MetricSource("http_requests_total", "counter", _HTTP, _INFERENCE),
            Signal.ERRORS: MetricSource(
                "http_requests_total", "counter", _HTTP, f'{_INFERENCE},status="5xx"'
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
