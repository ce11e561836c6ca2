"""Each engine's own metrics, named and typed exactly as the engine exports them.

vLLM, SGLang and TensorRT-LLM export through prometheus_client, so the simulator does too
(counters gain `_total`, histograms carry `_created`). TGI exports through Rust's
metrics-exporter-prometheus: counters keep their bare names and nothing else is added, so
its exposition is written by hand. Names come from research/engines.md and the engine
modules' `signals`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# vLLM's own buckets (vllm/v1/metrics/loggers.py), reused for the other prometheus_client
# engines so the same latency lands in the same bucket everywhere.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                   50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
TGI_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TGI_TOKEN_BUCKETS = (1.0, 8.0, 16.0, 64.0, 256.0, 1024.0, 4096.0)


@dataclass(frozen=True)
class Outcome:
    """One finished request as an engine would account for it."""

    ok: bool
    prompt_tokens: int
    generated_tokens: int
    time_to_first_token: float
    latency: float


class EngineMetrics(Protocol):
    def record(self, outcome: Outcome) -> None: ...

    def load(self, running: int, waiting: int, kv_usage: float) -> None: ...

    def render(self) -> bytes: ...


class _PrometheusClientMetrics:
    """Shared shape of the engines that use prometheus_client (vLLM, SGLang, TRT-LLM)."""

    def __init__(self, prefix: str, labels: dict[str, str], names: dict[str, str]) -> None:
        self.registry = CollectorRegistry()
        self.labels = labels
        keys = list(labels)
        r = self.registry

        def counter(key: str, extra: Sequence[str] = ()) -> Counter:
            return Counter(prefix + names[key], key, [*keys, *extra], registry=r)

        def gauge(key: str) -> Gauge:
            return Gauge(prefix + names[key], key, keys, registry=r)

        def histogram(key: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(prefix + names[key], key, keys, buckets=buckets, registry=r)

        self.counter, self.gauge, self.histogram = counter, gauge, histogram
        self.generation = counter("generation_tokens").labels(**labels)
        self.prompt = counter("prompt_tokens").labels(**labels)
        self.running = gauge("running").labels(**labels)
        self.waiting = gauge("waiting").labels(**labels)
        self.kv = gauge("kv").labels(**labels)
        self.ttft = histogram("ttft", TTFT_BUCKETS).labels(**labels)
        self.e2e = histogram("e2e", LATENCY_BUCKETS).labels(**labels)

    def record_tokens(self, outcome: Outcome) -> None:
        self.prompt.inc(outcome.prompt_tokens)
        if outcome.ok:
            self.generation.inc(outcome.generated_tokens)
            self.ttft.observe(outcome.time_to_first_token)
            self.e2e.observe(outcome.latency)

    def load(self, running: int, waiting: int, kv_usage: float) -> None:
        self.running.set(running)
        self.waiting.set(waiting)
        self.kv.set(kv_usage)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class VLLMMetrics(_PrometheusClientMetrics):
    """`vllm:` names; every finished request, failures included, in request_success."""

    def __init__(self, model: str) -> None:
        names = {
            "generation_tokens": "generation_tokens", "prompt_tokens": "prompt_tokens",
            "running": "num_requests_running", "waiting": "num_requests_waiting",
            "kv": "kv_cache_usage_perc", "ttft": "time_to_first_token_seconds",
            "e2e": "e2e_request_latency_seconds", "request_success": "request_success",
        }  # fmt: skip
        super().__init__("vllm:", {"model_name": model, "engine": "0"}, names)
        success = self.counter("request_success", ("finished_reason",))
        # vLLM creates one series per finish reason up front, so they exist at zero.
        self.finished = {
            reason: success.labels(**self.labels, finished_reason=reason)
            for reason in ("stop", "length", "abort", "error")
        }

    def record(self, outcome: Outcome) -> None:
        self.finished["length" if outcome.ok else "error"].inc()
        self.record_tokens(outcome)


class SGLangMetrics(_PrometheusClientMetrics):
    def __init__(self, model: str) -> None:
        names = {
            "generation_tokens": "generation_tokens", "prompt_tokens": "prompt_tokens",
            "running": "num_running_reqs", "waiting": "num_queue_reqs", "kv": "token_usage",
            "ttft": "time_to_first_token_seconds", "e2e": "e2e_request_latency_seconds",
            "requests": "num_requests", "aborted": "num_aborted_requests",
        }  # fmt: skip
        super().__init__("sglang:", {"model_name": model}, names)
        self.requests = self.counter("requests").labels(**self.labels)
        self.aborted = self.counter("aborted").labels(**self.labels)

    def record(self, outcome: Outcome) -> None:
        self.requests.inc()
        if not outcome.ok:
            self.aborted.inc()
        self.record_tokens(outcome)


class TensorRTLLMMetrics(_PrometheusClientMetrics):
    """`trtllm_` names; HTTP failures in request_error by status code."""

    def __init__(self, model: str) -> None:
        names = {
            "generation_tokens": "generation_tokens", "prompt_tokens": "prompt_tokens",
            "running": "num_requests_running", "waiting": "num_requests_waiting",
            "kv": "kv_cache_utilization", "ttft": "time_to_first_token_seconds",
            "e2e": "e2e_request_latency_seconds", "success": "request_success",
            "error": "request_error",
        }  # fmt: skip
        super().__init__("trtllm_", {"model_name": model}, names)
        self.success = self.counter("success", ("finished_reason",))
        self.success.labels(**self.labels, finished_reason="length")
        self.error = self.counter("error", ("http_code",))

    def record(self, outcome: Outcome) -> None:
        if outcome.ok:
            self.success.labels(**self.labels, finished_reason="length").inc()
        else:
            self.error.labels(**self.labels, http_code="500").inc()
        self.record_tokens(outcome)


class TGIMetrics:
    """`tgi_` names as metrics-exporter-prometheus writes them: bare counter names, no TTFT.

    A labelled series appears on its first increment (tgi_request_failure), as in TGI.
    """

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str], float] = defaultdict(float)
        for name in ("tgi_request_count", "tgi_request_success"):
            self.counters[(name, "")] = 0.0
        self.gauges = {
            "tgi_queue_size": 0.0,
            "tgi_batch_current_size": 0.0,
            "tgi_batch_current_max_tokens": 0.0,
            "tgi_batch_max_total_tokens": 16000.0,
        }
        self.histograms = {
            "tgi_request_duration": _Histogram(TGI_DURATION_BUCKETS),
            "tgi_request_mean_time_per_token_duration": _Histogram(TGI_DURATION_BUCKETS),
            "tgi_request_generated_tokens": _Histogram(TGI_TOKEN_BUCKETS),
            "tgi_request_input_length": _Histogram(TGI_TOKEN_BUCKETS),
        }

    def record(self, outcome: Outcome) -> None:
        self.counters[("tgi_request_count", "")] += 1
        self.histograms["tgi_request_input_length"].observe(outcome.prompt_tokens)
        if not outcome.ok:
            self.counters[("tgi_request_failure", 'err="generation"')] += 1
            return
        self.counters[("tgi_request_success", "")] += 1
        self.histograms["tgi_request_duration"].observe(outcome.latency)
        self.histograms["tgi_request_generated_tokens"].observe(outcome.generated_tokens)
        per_token = outcome.latency / max(1, outcome.generated_tokens)
        self.histograms["tgi_request_mean_time_per_token_duration"].observe(per_token)

    def load(self, running: int, waiting: int, kv_usage: float) -> None:
        self.gauges["tgi_batch_current_size"] = running
        self.gauges["tgi_queue_size"] = waiting
        total = self.gauges["tgi_batch_max_total_tokens"]
        self.gauges["tgi_batch_current_max_tokens"] = round(kv_usage * total)

    def render(self) -> bytes:
        lines: list[str] = []
        for name in sorted({name for name, _ in self.counters}):
            lines.append(f"# TYPE {name} counter")
            for (series, labels), value in sorted(self.counters.items()):
                if series == name:
                    lines.append(f"{name}{{{labels}}} {value:g}" if labels else f"{name} {value:g}")
        for name, value in self.gauges.items():
            lines += [f"# TYPE {name} gauge", f"{name} {value:g}"]
        for name, histogram in self.histograms.items():
            lines.append(f"# TYPE {name} histogram")
            lines += histogram.lines(name)
        return ("\n".join(lines) + "\n").encode()


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        buckets = [
            f'{name}_bucket{{le="{b:g}"}} {c}'
            for b, c in zip(self.bounds, self.counts, strict=True)
        ]
        return [
            *buckets,
            f'{name}_bucket{{le="+Inf"}} {self.count}',
            f"{name}_sum {self.total:g}",
            f"{name}_count {self.count}",
        ]


def engine_metrics(engine: str, model: str) -> EngineMetrics:
    if engine == "vllm":
        return VLLMMetrics(model)
    if engine == "sglang":
        return SGLangMetrics(model)
    if engine == "trtllm":
        return TensorRTLLMMetrics(model)
    if engine == "tgi":
        return TGIMetrics()
    raise ValueError(f"unknown engine {engine!r}")
