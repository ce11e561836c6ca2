"""TensorRT-LLM: `trtllm-serve` (PyTorch backend), facts for the 1.2.1 release.

Sources (https://github.com/NVIDIA/TensorRT-LLM/blob/v1.2.1/...):
- flags: tensorrt_llm/commands/serve.py - click options, exact names only:
  `--tensor_parallel_size`/`--tp_size`, `--pipeline_parallel_size`/`--pp_size`,
  `--context_parallel_size`/`--cp_size`, `--free_gpu_memory_fraction`/
  `--kv_cache_free_gpu_memory_fraction` (fraction of the memory free after weights and buffers,
  default 0.9), `--revision` (added by NVIDIA/TensorRT-LLM#9498, merged 2025-11-26, before
  the 1.2 branch; renamed `--hf_revision` only in 1.3 by #12105), and `--config` as an alias
  of `--extra_llm_api_options` (#9104). The options YAML is applied after the flags
  (`update_llm_args_with_extra_dict`), so it can override any of them: kubellm writes it and
  owns both spellings. `--host` defaults to localhost. No served-model-name flag in 1.2.
- options keys (tensorrt_llm/llmapi/llm_args.py): `return_perf_metrics`,
  `enable_iter_perf_stats`, `dtype`, `kv_cache_config.dtype`.
- quantization: pre-quantized ModelOpt checkpoints only (hf_quant_config.json, for example
  nvidia/Llama-3.3-70B-Instruct-FP8); trtllm-serve has no quantization flag.
- metrics: with `return_perf_metrics: true`, GET /prometheus/metrics serves
  tensorrt_llm/metrics/collector.py's five unprefixed families (labels `model_name`,
  `engine_type`): `request_success_total{finished_reason}`, `e2e_request_latency_seconds`,
  `time_to_first_token_seconds`, `time_per_output_token_seconds`,
  `request_queue_time_seconds`. The `trtllm_` prefix, token counters, queue and KV gauges
  and `request_error_total` only arrive in 1.3 (#11243, #12545): 1.2.1 exports no generation
  token, running, waiting or KV-usage signal and no failure counter.

Its uvicorn server has no
graceful-shutdown timeout (tensorrt_llm/serve/openai_server.py `uvicorn.Config`), so on SIGTERM
it waits for open requests to finish: the pod's grace period bounds the drain.
"""

from __future__ import annotations

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

VERSION = "1.2.1"
PORT = 8000
OPTIONS_FILE = "/tmp/kubellm-llm-api-options.yaml"
_COLLECTOR = (
    f"https://github.com/NVIDIA/TensorRT-LLM/blob/v{VERSION}/tensorrt_llm/metrics/collector.py"
)
KV_CACHE_DTYPE = {"auto": None, "fp8": "fp8", "fp8_e4m3": "fp8"}


def _options_yaml(inputs: ContainerInputs) -> list[str]:
    lines = ["return_perf_metrics: true", "enable_iter_perf_stats: true"]
    if inputs.dtype != "auto":
        lines.append(f"dtype: {inputs.dtype}")
    if kv := KV_CACHE_DTYPE[inputs.kv_cache_dtype]:
        lines += ["kv_cache_config:", f"  dtype: {kv}"]
    return lines


class TensorRTLLM:
    name: str = "trtllm"
    version: str = VERSION
    default_image: str = f"nvcr.io/nvidia/tensorrt-llm/release:{VERSION}"
    port: int = PORT
    probes: Probes = Probes(health_path="/health")
    metrics_path: str = "/prometheus/metrics"
    quantization: Mapping[str, QuantSupport] = MappingProxyType(read_as_is("none", "fp8", "nvfp4"))
    dtypes: frozenset[str] = frozenset({"auto", "bfloat16", "float16", "float32"})
    kv_cache_dtypes: frozenset[str] = frozenset(KV_CACHE_DTYPE)
    serves_custom_name: bool = False
    # Multi-node TensorRT-LLM needs MPI launchers across the group; not rendered yet.
    # kv_cache_free_gpu_memory_fraction is a share of memory free after weights and
    # activations; trtllm-serve defaults to max_num_tokens 8192 and max_batch_size 2048.
    traits: EngineTraits = EngineTraits(
        name="trtllm",
        multi_node=False,
        budget="fraction_of_free",
        default_max_batched_tokens=8192,
        large_gpu_max_batched_tokens=8192,
        default_max_num_seqs=2048,
        large_gpu_max_num_seqs=2048,
        sampler_bytes_per_seq_vocab=4.0,
    )
    token_env: tuple[str, ...] = ("HF_TOKEN",)
    flag_rules: FlagRules = FlagRules(
        parser="click",
        owned=frozenset(
            {
                "--host", "--port", "--backend", "--tensor_parallel_size", "--tp_size",
                "--pipeline_parallel_size", "--pp_size", "--context_parallel_size",
                "--cp_size", "--gpus_per_node", "--max_seq_len", "--max_batch_size",
                "--free_gpu_memory_fraction", "--kv_cache_free_gpu_memory_fraction",
                "--trust_remote_code", "--revision", "--hf_revision", "--config",
                "--extra_llm_api_options",
            }
        ),
    )  # fmt: skip
    signals: Mapping[Signal, MetricSource | None] = MappingProxyType(
        {
            Signal.GENERATION_TOKENS: None,
            Signal.REQUESTS_RUNNING: None,
            Signal.REQUESTS_WAITING: None,
            Signal.KV_CACHE_USAGE: None,
            Signal.TIME_TO_FIRST_TOKEN: MetricSource(
                "time_to_first_token_seconds", "histogram", _COLLECTOR
            ),
            Signal.REQUEST_LATENCY: MetricSource(
                "e2e_request_latency_seconds", "histogram", _COLLECTOR
            ),
            Signal.REQUESTS: MetricSource("request_success_total", "counter", _COLLECTOR),
            Signal.ERRORS: None,
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
            "--kv_cache_free_gpu_memory_fraction", str(inputs.memory_fraction),
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
