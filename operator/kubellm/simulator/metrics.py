"""Each engine's own metrics, named, labelled and typed as the pinned release exports them.

The names come from `upstream_metrics.yaml` beside this file, copied by hand from the engines'
sources and never from kubellm's engine modules: a name an engine module gets wrong finds no
series here. Every family has a `role` saying what the simulator counts in it. The exposition
is Prometheus text: counters under their stored names (the `_total` that prometheus_client
adds is part of the name; TGI's metrics-exporter-prometheus adds none), histograms as
_bucket/_sum/_count, and a labelled series appears on its first increment, as upstream.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

# vLLM's own buckets (vllm/v1/metrics/loggers.py), reused for the other prometheus_client
# engines so the same latency lands in the same bucket everywhere.
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
                2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                   50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
TGI_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
TOKEN_BUCKETS = (1.0, 8.0, 16.0, 64.0, 256.0, 1024.0, 4096.0)
_BUCKETS = {
    "ttft": TTFT_BUCKETS,
    "latency": LATENCY_BUCKETS,
    "queue_time": LATENCY_BUCKETS,
    "time_per_token": TGI_DURATION_BUCKETS,
    "generated_tokens_per_request": TOKEN_BUCKETS,
    "prompt_tokens_per_request": TOKEN_BUCKETS,
}
BATCH_TOKEN_BUDGET = 16000.0  # TGI's max batch total tokens, as a warm-up would report


@dataclass(frozen=True)
class Family:
    """One upstream metric family (see upstream_metrics.yaml)."""

    name: str
    type: str  # counter | gauge | histogram
    labels: tuple[str, ...]
    role: str
    source: str


@dataclass(frozen=True)
class Upstream:
    """What one pinned engine release serves: its paths and metric families."""

    version: str
    paths: Mapping[str, str]
    families: tuple[Family, ...]


@functools.cache
def upstream(engine: str) -> Upstream:
    """The hand-copied facts for `engine`; KeyError when there are none."""
    text = resources.files(__package__).joinpath("upstream_metrics.yaml").read_text("utf-8")
    data: dict[str, Any] = yaml.safe_load(text)[engine]
    families = tuple(
        Family(f["name"], f["type"], tuple(f["labels"]), f["role"], f["source"])
        for f in data["families"]
    )
    return Upstream(str(data["version"]), dict(data["paths"]), families)


@dataclass(frozen=True)
class Outcome:
    """One finished request as an engine would account for it."""

    ok: bool
    prompt_tokens: int
    generated_tokens: int
    time_to_first_token: float
    latency: float
    path: str = "/v1/completions"


class EngineMetrics:
    """The families of one engine, fed by the simulator's requests."""

    def __init__(self, engine: str, model: str) -> None:
        self.engine = engine
        self.families = upstream(engine).families
        self.fixed = {"model_name": model, "engine": "0", "engine_type": engine}
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.gauges: dict[str, float] = {}
        self.histograms: dict[tuple[str, tuple[tuple[str, str], ...]], _Histogram] = {}
        for family in self._with("batch_token_budget"):
            self.gauges[family.name] = BATCH_TOKEN_BUDGET
        for family in self._with("running", "waiting", "kv_usage", "batch_tokens"):
            self.gauges[family.name] = 0.0
        for family in self._with("requests_received", "requests_succeeded"):
            if not family.labels:  # unlabelled counters exist from the start upstream
                self.counters[(family.name, ())] = 0.0

    def _with(self, *roles: str) -> list[Family]:
        return [f for f in self.families if f.role in roles]

    def _labels(self, family: Family, outcome: Outcome) -> tuple[tuple[str, str], ...]:
        status = 200 if outcome.ok else 500
        per_request = {
            "finished_reason": "length" if outcome.ok else "error",
            "handler": outcome.path,
            "endpoint": outcome.path,
            "method": "POST",
            "status": f"{status // 100}xx",
            "status_code": str(status),
            "err": "generation",
        }
        values = {**self.fixed, **per_request}
        return tuple((label, values[label]) for label in family.labels)

    def _count(self, roles: Sequence[str], outcome: Outcome, amount: float = 1.0) -> None:
        for family in self._with(*roles):
            self.counters[(family.name, self._labels(family, outcome))] += amount

    def _observe(self, role: str, outcome: Outcome, value: float) -> None:
        for family in self._with(role):
            key = (family.name, self._labels(family, outcome))
            tgi_latency = self.engine == "tgi" and role == "latency"
            buckets = TGI_DURATION_BUCKETS if tgi_latency else _BUCKETS[role]
            self.histograms.setdefault(key, _Histogram(buckets)).observe(value)

    def record(self, outcome: Outcome) -> None:
        """Account for one request the way the engine does."""
        self._count(("requests_received", "http_requests", "http_responses"), outcome)
        self._count(("prompt_tokens",), outcome, outcome.prompt_tokens)
        self._observe("prompt_tokens_per_request", outcome, outcome.prompt_tokens)
        self._count(("requests_finished",), outcome)
        if not outcome.ok:
            self._count(("requests_failed",), outcome)
            return
        self._count(("requests_succeeded",), outcome)
        self._count(("generated_tokens",), outcome, outcome.generated_tokens)
        self._observe("generated_tokens_per_request", outcome, outcome.generated_tokens)
        self._observe("ttft", outcome, outcome.time_to_first_token)
        self._observe("latency", outcome, outcome.latency)
        per_token = outcome.latency / max(1, outcome.generated_tokens)
        self._observe("time_per_token", outcome, per_token)
        self._observe("queue_time", outcome, 0.0)

    def load(self, running: int, waiting: int, kv_usage: float) -> None:
        for family in self._with("running"):
            self.gauges[family.name] = running
        for family in self._with("waiting"):
            self.gauges[family.name] = waiting
        for family in self._with("kv_usage"):
            self.gauges[family.name] = kv_usage
        for family in self._with("batch_tokens"):
            self.gauges[family.name] = round(kv_usage * BATCH_TOKEN_BUDGET)

    def render(self) -> bytes:
        lines: list[str] = []
        for family in self.families:
            samples = self._samples(family)
            if samples:
                lines += [f"# TYPE {family.name} {family.type}", *samples]
        return ("\n".join(lines) + "\n").encode()

    def _samples(self, family: Family) -> list[str]:
        fixed = tuple((k, self.fixed[k]) for k in family.labels if k in self.fixed)
        if family.type == "gauge":
            if family.name not in self.gauges:
                return []
            return [_line(family.name, fixed, self.gauges[family.name])]
        if family.type == "counter":
            return [
                _line(name, labels, value)
                for (name, labels), value in sorted(self.counters.items())
                if name == family.name
            ]
        out: list[str] = []
        for (name, labels), histogram in sorted(self.histograms.items(), key=lambda i: i[0]):
            if name == family.name:
                out += histogram.lines(name, labels)
        return out


def _line(name: str, labels: tuple[tuple[str, str], ...], value: float) -> str:
    if not labels:
        return f"{name} {value:g}"
    body = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{name}{{{body}}} {value:g}"


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str, labels: tuple[tuple[str, str], ...]) -> list[str]:
        buckets = [
            _line(f"{name}_bucket", (*labels, ("le", f"{b:g}")), c)
            for b, c in zip(self.bounds, self.counts, strict=True)
        ]
        return [
            *buckets,
            _line(f"{name}_bucket", (*labels, ("le", "+Inf")), self.count),
            _line(f"{name}_sum", labels, self.total),
            _line(f"{name}_count", labels, self.count),
        ]


def engine_metrics(engine: str, model: str) -> EngineMetrics:
    """The metrics of `engine`'s pinned release; ValueError for an engine without facts."""
    try:
        upstream(engine)
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}") from None
    return EngineMetrics(engine, model)
