"""Text Generation Inference: `text-generation-launcher` (source: TGI docs reference/launcher.md).

TGI shards one node only, has no pipeline parallel, counters without `_total` and no time to
first token histogram. Its image sets PORT=80 and it reads HOSTNAME, which Kubernetes sets to
the pod name, so both are passed explicitly. On SIGTERM the router finishes in-flight requests
(axum graceful shutdown, router/src/server.rs) and the launcher kills it after
`--graceful-termination-timeout` seconds, 90 by default (launcher/src/main.rs at v3.3.6):
kubellm passes the pod's drain time.
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

PORT = 8080
QUANTIZE_FLAG = {
    "none": None,
    "fp8": "fp8",
    "awq": "awq",
    "gptq": "gptq",
    "bitsandbytes-nf4": "bitsandbytes-nf4",
    "int8": "eetq",
}
KV_CACHE_FLAG = {
    "auto": None,
    "fp8": "fp8_e4m3fn",
    "fp8_e4m3": "fp8_e4m3fn",
    "fp8_e5m2": "fp8_e5m2",
}


class TGI:
    name: str = "tgi"
    default_image: str = "ghcr.io/huggingface/text-generation-inference:3.3.6"
    port: int = PORT
    probes: Probes = Probes(health_path="/health")
    metrics_path: str = "/metrics"
    quantizations: frozenset[str] = frozenset(QUANTIZE_FLAG)
    kv_cache_dtypes: frozenset[str] = frozenset(KV_CACHE_FLAG)
    # Shards divide heads and KV heads; KV is sized from memory free after a 4096-token
    # prefill warm-up; 128 concurrent requests by default.
    traits: EngineTraits = EngineTraits(
        name="tgi",
        supports_pipeline_parallel=False,
        kv_heads_must_divide=True,
        multi_node=False,
        memory_is_fraction_of_free=True,
        default_max_batched_tokens=4096,
        large_gpu_max_batched_tokens=4096,
        default_max_num_seqs=128,
        large_gpu_max_num_seqs=128,
        sampler_bytes_per_seq_vocab=4.0,
    )
    token_env: tuple[str, ...] = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    owned_flags: frozenset[str] = frozenset(
        {
            "--model-id", "--port", "-p", "--hostname", "--num-shard", "--sharded",
            "--max-total-tokens", "--max-input-tokens", "--max-input-length",
            "--max-concurrent-requests", "--quantize", "--dtype", "--kv-cache-dtype",
            "--cuda-memory-fraction", "--revision", "--trust-remote-code",
            "--huggingface-hub-cache", "--graceful-termination-timeout",
        }
    )  # fmt: skip
    signals: Mapping[Signal, MetricSource | None] = MappingProxyType(
        {
            # A histogram of generated tokens per request: its running sum counts tokens.
            Signal.GENERATION_TOKENS: MetricSource("tgi_request_generated_tokens_sum", "counter"),
            Signal.REQUESTS_RUNNING: MetricSource("tgi_batch_current_size", "gauge"),
            Signal.REQUESTS_WAITING: MetricSource("tgi_queue_size", "gauge"),
            Signal.KV_CACHE_USAGE: MetricSource(
                "tgi_batch_current_max_tokens", "ratio", denominator="tgi_batch_max_total_tokens"
            ),
            Signal.TIME_TO_FIRST_TOKEN: None,
            Signal.REQUEST_LATENCY: MetricSource("tgi_request_duration", "histogram"),
            Signal.REQUESTS: MetricSource("tgi_request_count", "counter"),
            Signal.ERRORS: MetricSource("tgi_request_failure", "counter"),
        }
    )

    def container(self, inputs: ContainerInputs) -> ContainerCommand:
        args = [
            "--model-id", inputs.model,
            "--hostname", "0.0.0.0",
            "--port", str(PORT),
            "--num-shard", str(inputs.tensor_parallel),
            "--max-total-tokens", str(inputs.max_context_length),
            "--max-input-tokens", str(max(1, inputs.max_context_length - 1)),
            "--cuda-memory-fraction", str(inputs.gpu_memory_utilization),
            "--huggingface-hub-cache", inputs.cache_dir,
        ]  # fmt: skip
        method = QUANTIZE_FLAG[inputs.quantization]
        args += flags(
            ("--quantize", method),
            # TGI refuses --dtype with --quantize
            ("--dtype", None if method or inputs.dtype == "float32" else inputs.dtype),
            ("--kv-cache-dtype", KV_CACHE_FLAG[inputs.kv_cache_dtype]),
            ("--max-concurrent-requests", inputs.max_concurrency),
            ("--revision", inputs.revision),
            ("--trust-remote-code", inputs.trust_remote_code),
            ("--graceful-termination-timeout", inputs.drain_seconds),
        )
        return ContainerCommand(
            command=("text-generation-launcher",),
            args=(*args, *inputs.extra_args),
            env={"PORT": str(PORT)},
        )

    def multi_node(self, inputs: ContainerInputs) -> MultiNodeCommands | None:
        return None
