"""From a raw LLMDeployment to every decision rendering needs, or every problem, by field.

This is where a spec meets the catalogs: engine, model architecture, GPU type, sizing. It
never stops at the first problem: users fix a spec faster when they see all of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kubellm import GROUP, KIND, VERSION
from kubellm.api.models import KUBERNETES_PROBLEMS, MAX_NAME_LENGTH, LLMDeploymentSpec
from kubellm.engines import ENGINES, Engine
from kubellm.engines.base import Signal, choose_quantization, conflicting_flags
from kubellm.render.pod import gpu_resource_name, owned_mounts
from kubellm.render.template import template_problems
from kubellm.rollout.durations import parse_duration
from kubellm.rollout.revision import revision_of
from kubellm.sizing import (
    GPUType,
    ModelArchitecture,
    SizingPlan,
    SizingRequest,
    UnknownGPUError,
    UnknownModelError,
    known_gpus,
    plan,
    resolve_gpu,
    resolve_model,
)
from kubellm.sizing.capacity import (
    AutoscalingPlan,
    ReplicaCapacity,
    batch_limit_of,
    plan_autoscaling,
    replica_capacity,
)
from kubellm.sizing.gpu_labels import NoGpuLabelError, gpu_node_selector

API_VERSION = f"{GROUP}/{VERSION}"
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}
# The engine signal behind each `autoscaling.metric`.
AUTOSCALING_SIGNAL = {
    "generationTokensPerSecond": Signal.GENERATION_TOKENS,
    "requestsInFlight": Signal.REQUESTS_RUNNING,
    "queueLength": Signal.REQUESTS_WAITING,
    "kvCacheUtilization": Signal.KV_CACHE_USAGE,
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, at a field path users can find in their YAML."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


@dataclass(frozen=True)
class Owner:
    """The LLMDeployment that children point back to."""

    name: str
    namespace: str | None
    uid: str | None = None
    generation: int | None = None


@dataclass(frozen=True)
class Resolved:
    """A valid spec with everything decided about it."""

    owner: Owner
    spec: LLMDeploymentSpec
    engine: Engine
    model: ModelArchitecture
    gpu: GPUType | None
    sizing: SizingPlan
    image: str
    revision: str
    quantization_flag: str | None = None  # the engine's value; None: the checkpoint as is
    capacity: ReplicaCapacity | None = None  # None: the GPU's speed is unknown (memoryGiB)
    autoscaling: AutoscalingPlan | None = None  # with spec.autoscaling: the effective target


class InvalidSpecError(Exception):
    """The spec cannot be served; `problems` says every reason by field."""

    def __init__(self, owner: Owner, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.owner = owner
        self.problems = problems


def owner_of(obj: Mapping[str, Any]) -> Owner:
    meta = obj.get("metadata") or {}
    return Owner(
        name=str(meta.get("name", "")),
        namespace=meta.get("namespace"),
        uid=meta.get("uid"),
        generation=meta.get("generation"),
    )


def field_path(loc: tuple[str | int, ...]) -> str:
    """`('template', 'spec', 'volumes', 0)` -> `spec.template.spec.volumes[0]`."""
    return "spec" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)


def _pydantic_problems(error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = field_path(item["loc"])
        if item["type"] == KUBERNETES_PROBLEMS:  # the Kubernetes schema, field by field
            problems += [Problem(path + sub, message) for sub, message in item["ctx"]["problems"]]
            continue
        value = "" if item["type"] == "missing" else f" (got {item.get('input')!r})"
        problems.append(Problem(path, f"{item['msg']}{value}"))
    return problems


def _envelope_problems(obj: Mapping[str, Any]) -> list[Problem]:
    problems = []
    if obj.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"must be {API_VERSION}"))
    if obj.get("kind") != KIND:
        problems.append(Problem("kind", f"must be {KIND}"))
    name = str((obj.get("metadata") or {}).get("name") or "")
    if not name:
        problems.append(Problem("metadata.name", "is required"))
    elif len(name) > MAX_NAME_LENGTH:
        problems.append(
            Problem(
                "metadata.name",
                f"{len(name)} characters; at most {MAX_NAME_LENGTH}, since children are named"
                " <name>-<revision>",
            )
        )
    return problems


def parse_spec(obj: Mapping[str, Any]) -> LLMDeploymentSpec:
    """The typed spec; raises InvalidSpecError with every schema problem."""
    problems = _envelope_problems(obj)
    raw = obj.get("spec")
    if not isinstance(raw, Mapping):
        raise InvalidSpecError(owner_of(obj), [*problems, Problem("spec", "is required")])
    try:
        spec = LLMDeploymentSpec.model_validate(raw)
    except ValidationError as error:
        raise InvalidSpecError(owner_of(obj), problems + _pydantic_problems(error)) from None
    if problems:
        raise InvalidSpecError(owner_of(obj), problems)
    return spec


def _engine_problems(spec: LLMDeploymentSpec, engine: Engine) -> list[Problem]:
    """What this engine cannot do of what the spec asks (quantization is checked later,
    against the model's checkpoint)."""
    problems = []
    e, label = spec.engine, f"{engine.name} {engine.version}"
    if e.dtype not in engine.dtypes:
        problems.append(
            Problem(
                "spec.engine.dtype",
                f"{label} does not take {e.dtype!r}; it takes {', '.join(sorted(engine.dtypes))}",
            )
        )
    if e.kv_cache_dtype not in engine.kv_cache_dtypes:
        problems.append(
            Problem(
                "spec.engine.kvCacheDtype",
                f"{label} does not support {e.kv_cache_dtype!r}; it supports "
                f"{', '.join(sorted(engine.kv_cache_dtypes))}",
            )
        )
    served = spec.model.served_name
    if served is not None and served != spec.model.name and not engine.serves_custom_name:
        problems.append(
            Problem(
                "spec.model.servedName",
                f"{label} has no served-model-name option: it answers under the model id"
                f" {spec.model.name!r}; remove servedName or use engine vllm or sglang",
            )
        )
    for index, arg, owned in conflicting_flags(engine, tuple(e.extra_args)):
        problems.append(
            Problem(
                f"spec.engine.extraArgs[{index}]",
                f"{arg!r} sets {owned}, which kubellm sets from the spec"
                + (
                    " (a config file can set any of them)"
                    if owned in ("--config", "--extra_llm_api_options")
                    else ""
                )
                + "; change the matching spec field instead of passing the flag",
            )
        )
    for index, var in enumerate(e.env):
        if var.name in engine.flag_rules.owned_env:
            problems.append(
                Problem(
                    f"spec.engine.env[{index}].name",
                    f"{var.name} sets a {engine.name} flag that kubellm sets from the spec",
                )
            )
    if spec.autoscaling is not None:
        signal = AUTOSCALING_SIGNAL[spec.autoscaling.metric]
        if engine.signals.get(signal) is None:
            offered = [m for m, s in AUTOSCALING_SIGNAL.items() if engine.signals.get(s)]
            problems.append(
                Problem(
                    "spec.autoscaling.metric",
                    f"{label} exports no {spec.autoscaling.metric} signal; it offers"
                    f" {', '.join(offered) or 'none'}",
                )
            )
    return problems


def _quantization(
    spec: LLMDeploymentSpec, engine: Engine, model: ModelArchitecture
) -> tuple[str | None, list[Problem]]:
    """The engine's quantization flag, or why the engine cannot serve those weights."""
    choice = choose_quantization(
        engine,
        spec.engine.quantization,
        model.native_quantization,
        model.native_quantization_known,
    )
    problems = [Problem(choice.field, choice.problem)] if choice.problem else []
    if choice.flag is not None and spec.engine.dtype != "auto" and engine.name == "tgi":
        problems.append(
            Problem(
                "spec.engine.dtype",
                f"tgi cannot force a dtype while it quantizes ({choice.flag}); use dtype auto",
            )
        )
    return choice.flag, problems


def _model(spec: LLMDeploymentSpec) -> ModelArchitecture | Problem:
    overrides = (
        spec.model.architecture.model_dump(by_alias=True, exclude_none=True)
        if spec.model.architecture
        else None
    )
    try:
        return resolve_model(spec.model.name, overrides)
    except UnknownModelError as error:
        missing = ", ".join(error.missing)
        return Problem(
            "spec.model.architecture",
            f"model {spec.model.name!r} is not in the built-in catalog; add"
            f" spec.model.architecture with {missing} (from the model's config.json)",
        )


def _gpu(spec: LLMDeploymentSpec) -> GPUType | Problem | None:
    if spec.resources.gpu.type is None:
        return None
    try:
        gpu = resolve_gpu(spec.resources.gpu.type)
    except UnknownGPUError:
        return Problem(
            "spec.resources.gpu.type",
            f"unknown GPU {spec.resources.gpu.type!r}; use one of {', '.join(known_gpus())}"
            " or set resources.gpu.memoryGiB",
        )
    if spec.resources.gpu.node_labels:
        try:
            gpu_node_selector(spec.resources.gpu.node_labels, gpu)
        except NoGpuLabelError as error:
            return Problem("spec.resources.gpu.nodeLabels", str(error))
    return gpu


MIN_STARTUP_SECONDS = 60


def _startup_timeout(spec: LLMDeploymentSpec) -> int | None:
    """`engine.startupTimeout` in seconds (a shorter one than a minute is a problem)."""
    timeout = spec.engine.startup_timeout
    return None if timeout is None else math.ceil(parse_duration(timeout))


def sizing_request(
    spec: LLMDeploymentSpec, engine: Engine, model: ModelArchitecture, gpu: GPUType | None
) -> SizingRequest:
    """What sizing needs from a spec."""
    r = spec.resources
    memory = r.gpu.memory_gib if r.gpu.memory_gib is not None else gpu.memory_gib if gpu else 0
    startup = _startup_timeout(spec)
    return SizingRequest(
        model=model,
        gpu_memory_gib=memory,
        gpus_per_node=r.gpu.per_node,
        gpu_name=gpu.name if gpu else f"{memory:g} GiB GPU",
        gpu_fp8=gpu.fp8 if gpu else True,
        quantization=spec.engine.quantization,
        dtype_bytes=DTYPE_BYTES[spec.engine.dtype],
        kv_cache_dtype=spec.engine.kv_cache_dtype,
        context_length=spec.engine.max_context_length,
        max_concurrency=spec.engine.max_concurrency,
        gpu_memory_utilization=spec.engine.gpu_memory_utilization,
        tensor_parallel=None if r.tensor_parallel == "auto" else r.tensor_parallel,
        pipeline_parallel=None if r.pipeline_parallel == "auto" else r.pipeline_parallel,
        min_concurrent_sequences=r.min_concurrent_sequences,
        startup_timeout_seconds=None if startup is None else max(MIN_STARTUP_SECONDS, startup),
        engine=engine.traits,
    )


def resolve(obj: Mapping[str, Any]) -> Resolved:
    """Decide everything about one LLMDeployment; raises InvalidSpecError listing every problem."""
    owner = owner_of(obj)
    spec = parse_spec(obj)
    engine = ENGINES[spec.engine.type]
    problems = _engine_problems(spec, engine)
    model, gpu = _model(spec), _gpu(spec)
    quantization_flag: str | None = None
    if isinstance(model, Problem):
        problems.append(model)
    else:
        quantization_flag, quantization_problems = _quantization(spec, engine, model)
        problems += quantization_problems
    if isinstance(gpu, Problem):
        problems.append(gpu)
    startup = _startup_timeout(spec)
    if startup is not None and startup < MIN_STARTUP_SECONDS:
        problems.append(
            Problem(
                "spec.engine.startupTimeout",
                f"{spec.engine.startup_timeout} is too short to load any model; use at least 1m",
            )
        )
    known_gpu = None if isinstance(gpu, Problem) else gpu
    clashes = template_problems(spec, gpu_resource_name(spec, known_gpu), owned_mounts(spec))
    problems += [Problem(path, message) for path, message in clashes]
    if isinstance(model, Problem) or isinstance(gpu, Problem):
        raise InvalidSpecError(owner, problems)
    request = sizing_request(spec, engine, model, gpu)
    sizing = plan(request)
    if not sizing.fits:
        problems.append(Problem(f"spec.{sizing.field or 'resources'}", sizing.reason))
        raise InvalidSpecError(owner, problems)
    capacity = replica_capacity(request, sizing, gpu, batch_limit_of(request)) if gpu else None
    autoscaling: AutoscalingPlan | None = None
    if spec.autoscaling:
        a = spec.autoscaling
        planned = plan_autoscaling(a.metric, a.target, parse_duration(a.ttft_slo), capacity)
        if isinstance(planned, str):
            problems.append(Problem("spec.autoscaling.target", planned))
        else:
            autoscaling = planned
    if problems:
        raise InvalidSpecError(owner, problems)
    image = spec.engine.image or engine.default_image
    return Resolved(
        owner=owner,
        spec=spec,
        engine=engine,
        model=model,
        gpu=gpu,
        sizing=sizing,
        image=image,
        revision=revision_of(spec, image),
        capacity=capacity,
        autoscaling=autoscaling,
        quantization_flag=quantization_flag,
    )
