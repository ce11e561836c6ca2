"""The small interface every inference engine implements, and the rules engines share.

An engine module knows only its own container: image, command line, port, probes, metric
names, flag parser and constraints. Shared pod concerns (GPUs, /dev/shm, cache, token,
security, node selection) are applied once for all engines by `kubellm.render.pod`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

from kubellm.sizing import EngineTraits


class Signal(StrEnum):
    """kubellm's uniform serving signals, each engine maps its own metric names onto them."""

    GENERATION_TOKENS = "generationTokens"  # counter: tokens generated
    REQUESTS_RUNNING = "requestsRunning"  # gauge
    REQUESTS_WAITING = "requestsWaiting"  # gauge
    KV_CACHE_USAGE = "kvCacheUsage"  # gauge 0..1
    TIME_TO_FIRST_TOKEN = "timeToFirstToken"  # histogram (seconds), base name
    REQUEST_LATENCY = "requestLatency"  # histogram (seconds), base name
    REQUESTS = "requests"  # counter: requests answered (the error rate's denominator)
    ERRORS = "errors"  # counter: the share of REQUESTS the engine failed (5xx, overload)


@dataclass(frozen=True)
class MetricSource:
    """Where an engine exposes one signal: a series name plus fixed label matchers.

    `name` is the series name as Prometheus stores it, `matchers` extra label matchers (for
    example `status="5xx"`), `kind` tells how to read it, `source` links the line of the
    pinned engine release that defines the name (the version is in the link).
    """

    name: str
    kind: Literal["counter", "gauge", "histogram", "ratio"]
    source: str
    matchers: str = ""
    denominator: str | None = None  # for kind "ratio": a second gauge to divide by

    @property
    def selector(self) -> str:
        """The series with its fixed matchers, as PromQL selects it."""
        return f"{self.name}{{{self.matchers}}}" if self.matchers else self.name


@dataclass(frozen=True)
class ContainerInputs:
    """Everything an engine needs to write its command line, already decided."""

    model: str  # HF id or local directory
    served_name: str | None  # None: the engine serves under the model id
    revision: str | None
    tensor_parallel: int
    pipeline_parallel: int
    nodes: int  # nodes per replica (LeaderWorkerSet group size)
    dtype: str
    quantization_flag: str | None  # the engine's own value, None: read the checkpoint as is
    kv_cache_dtype: str
    max_context_length: int
    max_concurrency: int | None
    memory_fraction: float  # the value of the engine's memory flag sizing planned with
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
    """Health endpoints: `health_path` gates start-up and readiness; liveness may differ
    (TGI's /health runs a generation when idle after a failure, /info never does)."""

    health_path: str
    liveness_path: str | None = None  # None: the health path

    @property
    def liveness(self) -> str:
        return self.liveness_path or self.health_path


@dataclass(frozen=True)
class QuantSupport:
    """How an engine serves one `engine.quantization` value.

    `prequantized`: it reads a checkpoint already in that format and detects the method from
    the checkpoint's config (no flag). `online`: the flag value that makes it quantize a
    16-bit checkpoint while loading, None when it cannot.
    """

    prequantized: bool = False
    online: str | None = None


def read_as_is(*formats: str) -> dict[str, QuantSupport]:
    """Formats an engine loads from checkpoints already in them (no flag, detected)."""
    return {fmt: QuantSupport(prequantized=True) for fmt in formats}


@dataclass(frozen=True)
class FlagRules:
    """How the engine's command-line parser reads flags, to find the ones kubellm owns.

    `parser` "argparse" also takes unique prefixes of long options (allow_abbrev) and
    single-dash options with an attached value (`-qfp8`); "click" and "clap" take exact
    names only, `--name=value` included. `underscores_as_dashes`: vLLM's
    FlexibleArgumentParser rewrites `--a_b` to `--a-b` before parsing. `owned` holds every
    option string (aliases, `--no-` forms) of flags kubellm sets or that override what it
    decides; `exact` lists other options of the engine that are prefixes of owned ones (an
    exact match wins over an abbreviation); `owned_env` the environment variables that set an
    owned flag (clap's `env`).
    """

    parser: Literal["argparse", "click", "clap"]
    owned: frozenset[str]
    underscores_as_dashes: bool = False
    exact: frozenset[str] = frozenset()
    owned_env: frozenset[str] = frozenset()


class Engine(Protocol):
    """One inference engine: its container and what kubellm must know about it."""

    name: str
    version: str  # the pinned release every fact in the module was read from
    default_image: str
    port: int
    probes: Probes
    metrics_path: str
    quantization: Mapping[str, QuantSupport]  # accepted `engine.quantization` values
    dtypes: frozenset[str]  # accepted `engine.dtype` values
    kv_cache_dtypes: frozenset[str]  # accepted `engine.kvCacheDtype` values
    serves_custom_name: bool  # honours `model.servedName`
    traits: EngineTraits  # what sizing must know
    signals: Mapping[Signal, MetricSource | None]  # None: the engine lacks the signal
    flag_rules: FlagRules
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


def owned_flag(rules: FlagRules, arg: str) -> str | None:
    """The owned option `arg` sets once the engine's parser has read it, or None."""
    if not arg.startswith("-") or arg == "-" or _is_number(arg):
        return None
    name = arg.split("=", 1)[0]
    if name.startswith("--"):
        if rules.underscores_as_dashes:
            key = name[2:].split(".", 1)[0]
            name = "--" + key.replace("_", "-")
        if name in rules.owned:
            return name
        if rules.parser != "argparse" or name in rules.exact or len(name) <= 2:
            return None
        matches = sorted(o for o in rules.owned if o.startswith("--") and o.startswith(name))
        return matches[0] if matches else None
    if rules.parser == "clap":
        short = name[:2]
        return short if short in rules.owned else None
    if rules.parser != "argparse":
        return name if name in rules.owned else None
    singles = sorted(o for o in rules.owned if not o.startswith("--"))
    prefixed = [o for o in singles if o.startswith(name)]
    if prefixed:
        return prefixed[0]
    attached = [o for o in singles if len(o) == 2 and name.startswith(o)]
    return attached[0] if attached else None


def _is_number(arg: str) -> bool:
    try:
        float(arg)
    except ValueError:
        return False
    return True


def conflicting_flags(engine: Engine, extra_args: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """(index, argument, owned option) for every extraArgs entry that sets a flag kubellm owns."""
    out = []
    for index, arg in enumerate(extra_args):
        owned = owned_flag(engine.flag_rules, arg)
        if owned is not None:
            out.append((index, arg, owned))
    return out


EXAMPLE_CHECKPOINTS = {
    "fp8": "an FP8 checkpoint such as nvidia/Llama-3.3-70B-Instruct-FP8",
    "int8": "a W8A8 INT8 checkpoint such as RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8",
    "awq": "an AWQ checkpoint such as hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
    "gptq": "a GPTQ checkpoint such as RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16",
    "bitsandbytes-nf4": "a bitsandbytes 4-bit checkpoint such as"
    " unsloth/Meta-Llama-3.1-8B-Instruct-bnb-4bit",
    "mxfp4": "an MXFP4 checkpoint such as openai/gpt-oss-120b",
    "nvfp4": "an NVFP4 checkpoint such as nvidia/Llama-3.3-70B-Instruct-FP4",
}


@dataclass(frozen=True)
class QuantChoice:
    """The flag value for the engine (None: read the checkpoint as is) or why it cannot."""

    flag: str | None = None
    problem: str | None = None
    field: str = "spec.engine.quantization"


def choose_quantization(
    engine: Engine, requested: str, checkpoint: str, checkpoint_known: bool
) -> QuantChoice:
    """How `engine` serves `requested` from a checkpoint in format `checkpoint`.

    `requested` "none" serves the checkpoint as it is. Another value either names the
    checkpoint's own format (read as is, the engine detects it) or asks the engine to
    quantize a 16-bit checkpoint while loading it; so the same value means the same weights
    on every engine, and an engine that cannot produce them says so.
    """
    support = engine.quantization
    if requested == "none":
        if checkpoint != "none" and not support.get(checkpoint, QuantSupport()).prequantized:
            return QuantChoice(
                problem=f"{engine.name} {engine.version} cannot load {checkpoint} checkpoints;"
                f" it loads {_list(q for q, s in support.items() if s.prequantized)}",
                field="spec.model.name",
            )
        return QuantChoice()
    if requested not in support:
        return QuantChoice(
            problem=f"{engine.name} {engine.version} does not serve {requested!r}; it serves"
            f" {_list(support)}"
        )
    wanted = support[requested]
    if checkpoint_known and checkpoint == requested:
        if wanted.prequantized:
            return QuantChoice()
        return QuantChoice(
            problem=f"{engine.name} {engine.version} cannot load {requested} checkpoints"
        )
    if checkpoint_known and checkpoint != "none":
        return QuantChoice(
            problem=f"the checkpoint {checkpoint!r} is already {checkpoint}; set quantization"
            f" to {checkpoint} or none, or serve {EXAMPLE_CHECKPOINTS[requested]}"
        )
    if wanted.online is not None:
        return QuantChoice(flag=wanted.online)
    if not checkpoint_known and wanted.prequantized:
        return QuantChoice()  # a model kubellm does not know: trust that it is in that format
    return QuantChoice(
        problem=f"{engine.name} {engine.version} cannot quantize a 16-bit checkpoint to"
        f" {requested} while loading it; serve {EXAMPLE_CHECKPOINTS[requested]} (model.name)"
    )


def _list(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))
