"""Text Generation Inference: `text-generation-launcher`, facts read from the v3.3.6 release.

Sources (https://github.com/huggingface/text-generation-inference/blob/v3.3.6/...):
- flags: launcher/src/main.rs#L581-L901 - clap long options in kebab case, exact names only,
  each also read from the environment variable of the same name (`env`), `-p` for `--port`;
  `--dtype` takes float16/bfloat16 and "cannot be used with `--quantize`" (#L629-L631);
  pre-quantized checkpoints are detected from their config (#L615-L620).
- `--max-concurrent-requests` (default 128, #L645-L649) is an admission cap that answers 429
  beyond it, counting queued requests; the batch size is `--max-batch-size`, honoured by the
  v3 scheduler (backends/v3/src/backend.rs#L197-L198).
- memory: KV = free memory after warm-up - (1 - CUDA_MEMORY_FRACTION x TGI_WIGGLE_ROOM) x
  total, TGI_WIGGLE_ROOM = 0.90 (server/text_generation_server/models/globals.py#L32,
  utils/import_utils.py#L13-L17, models/flash_causal_lm.py#L1556-L1560).
- health: /health (router/src/server.rs#L230-L241) runs a one-token prefill whenever the
  last generation failed (backends/v3/src/backend.rs#L105-L113, client/sharded_client.rs
  #L212-L230): fine for readiness, not for liveness; /info (#L161-L163) answers from the
  router alone. No served-model-name flag: it serves under the model id.
- metrics: metrics-exporter-prometheus, counters without `_total`; `tgi_request_failure{err}`
  is "validation" and "template" for client errors, "dropped" when the client went away, and
  "generation", "incomplete", "overloaded" for failures the engine caused.
TGI shards one node only and has no pipeline parallel. Its image sets PORT=80 and it reads
HOSTNAME, which Kubernetes sets to the pod name, so both are passed explicitly. On SIGTERM the
router finishes in-flight requests (axum graceful shutdown, router/src/server.rs) and the
launcher kills it after
`--graceful-termination-timeout` seconds, 90 by default (launcher/src/main.rs at v3.3.6):
kubellm passes the pod's drain time.
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

VERSION = "v3.3.6"
PORT = 8080
_SRC = f"https://github.com/huggingface/text-generation-inference/blob/{VERSION}"
_SERVER = f"{_SRC}/router/src/server.rs"
_BACKEND = f"{_SRC}/backends/v3/src/backend.rs"
KV_CACHE_FLAG = {
    "auto": None,
    "fp8": "fp8_e4m3fn",
    "fp8_e4m3": "fp8_e4m3fn",
    "fp8_e5m2": "fp8_e5m2",
}
# Launcher flags kubellm sets (or that resize what it planned) and their `env` twins.
_OWNED = {
    "--model-id": "MODEL_ID",
    "--port": "PORT",
    "--hostname": "HOSTNAME",
    "--num-shard": "NUM_SHARD",
    "--sharded": "SHARDED",
    "--max-total-tokens": "MAX_TOTAL_TOKENS",
    "--max-input-tokens": "MAX_INPUT_TOKENS",
    "--max-input-length": "MAX_INPUT_LENGTH",
    "--max-batch-size": "MAX_BATCH_SIZE",
    "--max-batch-total-tokens": "MAX_BATCH_TOTAL_TOKENS",
    "--quantize": "QUANTIZE",
    "--dtype": "DTYPE",
    "--kv-cache-dtype": "KV_CACHE_DTYPE",
    "--cuda-memory-fraction": "CUDA_MEMORY_FRACTION",
    "--revision": "REVISION",
    "--trust-remote-code": "TRUST_REMOTE_CODE",
    "--huggingface-hub-cache": "HUGGINGFACE_HUB_CACHE",
    "--graceful-termination-timeout": "GRACEFUL_TERMINATION_TIMEOUT",
}


class TGI:
    name: str = "tgi"
    version: str = VERSION
    default_image: str = f"ghcr.io/huggingface/text-generation-inference:{VERSION[1:]}"
    port: int = PORT
    probes: Probes = Probes(health_path="/health", liveness_path="/info")
    metrics_path: str = "/metrics"
    quantization: Mapping[str, QuantSupport] = MappingProxyType(
        {
            # int8: compressed-tensors W8A8 checkpoints, never TGI's own EETQ (weight-only)
            **read_as_is("none", "int8", "awq", "gptq"),
            "fp8": QuantSupport(prequantized=True, online="fp8"),
            "bitsandbytes-nf4": QuantSupport(online="bitsandbytes-nf4"),
        }
    )
    dtypes: frozenset[str] = frozenset({"auto", "bfloat16", "float16"})
    kv_cache_dtypes: frozenset[str] = frozenset(KV_CACHE_FLAG)
    serves_custom_name: bool = False
    # Shards divide heads and KV heads; KV is sized from memory free after a 4096-token
    # prefill warm-up; CUDA graphs are captured afterwards in what is left.
    traits: EngineTraits = EngineTraits(
        name="tgi",
        supports_pipeline_parallel=False,
        kv_heads_must_divide=True,
        multi_node=False,
        budget="wiggle_fraction",
        wiggle_room=0.90,
        default_max_batched_tokens=4096,
        large_gpu_max_batched_tokens=4096,
        default_max_num_seqs=128,
        large_gpu_max_num_seqs=128,
        sampler_bytes_per_seq_vocab=4.0,
    )
    token_env: tuple[str, ...] = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    flag_rules: FlagRules = FlagRules(
        parser="clap",
        owned=frozenset({*_OWNED, "-p"}),
        owned_env=frozenset(_OWNED.values()),
    )
    signals: Mapping[Signal, MetricSource | None] = MappingProxyType(
        {
            # A histogram of generated tokens per request: its running sum counts tokens.
            Signal.GENERATION_TOKENS: MetricSource(
                "tgi_request_generated_tokens_sum", "counter", f"{_SERVER}#L421-L422"
            ),
            Signal.REQUESTS_RUNNING: MetricSource(
                "tgi_batch_current_size", "gauge", f"{_BACKEND}#L170"
            ),
            Signal.REQUESTS_WAITING: MetricSource(
                "tgi_queue_size", "gauge", f"{_SRC}/backends/v3/src/queue.rs#L143"
            ),
            Signal.KV_CACHE_USAGE: MetricSource(
                "tgi_batch_current_max_tokens",
                "ratio",
                f"{_BACKEND}#L171",
                denominator="tgi_batch_max_total_tokens",
            ),
            Signal.TIME_TO_FIRST_TOKEN: None,
            Signal.REQUEST_LATENCY: MetricSource(
                "tgi_request_duration", "histogram", f"{_SERVER}#L416"
            ),
            Signal.REQUESTS: MetricSource("tgi_request_count", "counter", f"{_SERVER}#L203"),
            Signal.ERRORS: MetricSource(
                "tgi_request_failure",
                "counter",
                f"{_SRC}/router/src/infer/mod.rs#L117",
                'err=~"generation|incomplete|overloaded"',
            ),
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
            "--cuda-memory-fraction", str(inputs.memory_fraction),
            "--huggingface-hub-cache", inputs.cache_dir,
        ]  # fmt: skip
        args += flags(
            ("--quantize", inputs.quantization_flag),
            ("--dtype", inputs.dtype),
            ("--kv-cache-dtype", KV_CACHE_FLAG[inputs.kv_cache_dtype]),
            ("--max-batch-size", inputs.max_concurrency),
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
