"""The small interface every inference engine implements.

An engine module knows only its own container: image, command line, port, probes, metric
names and constraints. Shared pod concerns (GPUs, /dev/shm, cache, token, security, node
selection) are applied once for all engines by `kubellm.render.pod`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from kubellm.sizing import EngineTraits


class Signal(StrEnum):
    """kubellm's uniform serving signals, each engine maps its own metric names onto them."""

    GENERATION_TOKENS = "generationTokens"  # counter: tokens generated
    REQUESTS_RUNNING = "requestsRunning"  # gauge
    REQUESTS_WAITING = "requestsWaiting"  # gauge
    KV_CACHE_USAGE = "kvCacheUsage"  # gauge 0..1
    TIME_TO_FIRST_TOKEN = "timeToFirstToken"  # histogram (seconds), base name
    REQUEST_LATENCY = "requestLatency"  # histogram (seconds), base name
    REQUESTS = "requests"  # counter: finished requests
    ERRORS = "errors"  # counter: failed requests


@dataclass(frozen=True)
class MetricSource:
    """Where an engine exposes one signal: a PromQL selector-able name plus fixed matchers.

    `name` is the series name, `matchers` extra label matchers (for example
    `finished_reason="error"`), `kind` tells how to read it.
    """

    name: str
    kind: str  # "counter" | "gauge" | "histogram" | "ratio"
    matchers: str = ""
    denominator: str | None = None  # for kind "ratio": a second gauge to divide by


@dataclass(frozen=True)
class ContainerInputs:
    """Everything an engine needs to write its command line, already decided."""

    model: str  # HF id or local directory
    served_name: str
    revision: str | None
    tensor_parallel: int
    pipeline_parallel: int
    nodes: int  # nodes per replica (LeaderWorkerSet group size)
    dtype: str
    quantization: str
    kv_cache_dtype: str
    max_context_length: int
    max_concurrency: int | None
    gpu_memory_utilization: float
    trust_remote_code: bool
    cache_dir: str
    extra_args: tuple[str, ...] = ()
    # Seconds the engine may spend finishing in-flight requests after SIGTERM (pod deletion);
    # engines that drain without a limit leave it to the pod's grace period.
    drain_seconds: int = 0


@dataclass(frozen=True)
class ContainerCommand:
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MultiNodeCommands:
    """LeaderWorkerSet roles: the leader serves HTTP, workers join it."""

    leader: ContainerCommand
    worker: ContainerCommand


@dataclass(frozen=True)
class Probes:
    health_path: str
    startup_failure_threshold: int = 180  # x 10 s: weights can take half an hour to load
    startup_period_seconds: int = 10


class Engine(Protocol):
    """One inference engine: its container and what kubellm must know about it."""

    name: str
    default_image: str
    port: int
    probes: Probes
    metrics_path: str
    quantizations: frozenset[str]  # accepted `engine.quantization` values
    kv_cache_dtypes: frozenset[str]  # accepted `engine.kvCacheDtype` values
    traits: EngineTraits  # what sizing must know
    signals: Mapping[Signal, MetricSource | None]  # None: the engine lacks the signal
    owned_flags: frozenset[str]  # flags kubellm sets; `extraArgs` may not repeat them
    token_env: tuple[str, ...]  # env names the engine reads a Hugging Face token from

    def container(self, inputs: ContainerInputs) -> ContainerCommand:
        """The single-node container command line."""
        ...

    def multi_node(self, inputs: ContainerInputs) -> MultiNodeCommands | None:
        """Leader/worker commands for a LeaderWorkerSet, or None if unsupported."""
        ...


def flags(*pairs: tuple[str, str | int | float | bool | None]) -> list[str]:
    """Command-line flags for the values that are set: `True` is a bare flag, `None`/`False`
    and "auto" leave the flag out (the engine's own default)."""
    args: list[str] = []
    for flag, value in pairs:
        if value is True:
            args.append(flag)
        elif value not in (None, False, "auto"):
            args += [flag, str(value)]
    return args


def flag_name(arg: str) -> str:
    """`--tensor-parallel-size=4` -> `--tensor-parallel-size`."""
    return arg.split("=", 1)[0]


def conflicting_flags(engine: Engine, extra_args: tuple[str, ...]) -> list[str]:
    """Flags in extraArgs that kubellm already sets (a second tensor-parallel flag...)."""
    return [a for a in extra_args if a.startswith("-") and flag_name(a) in engine.owned_flags]
