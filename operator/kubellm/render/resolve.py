"""From a raw LLMDeployment to every decision rendering needs, or every problem, by field.

This is where a spec meets the catalogs: engine, model architecture, GPU type, sizing. It
never stops at the first problem: users fix a spec faster when they see all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from kubellm import GROUP, KIND, VERSION
from kubellm.api.models import MAX_NAME_LENGTH, LLMDeploymentSpec
from kubellm.engines import ENGINES, Engine
from kubellm.engines.base import conflicting_flags
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

API_VERSION = f"{GROUP}/{VERSION}"
DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}


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


def _pydantic_problems(error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors():
        path = ".".join(str(p) for p in ("spec", *item["loc"]))
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
    problems = []
    e = spec.engine
    if e.quantization not in engine.quantizations:
        problems.append(
            Problem(
                "spec.engine.quantization",
                f"{engine.name} does not support {e.quantization!r}; it supports "
                f"{', '.join(sorted(engine.quantizations))}",
            )
        )
    if e.kv_cache_dtype not in engine.kv_cache_dtypes:
        problems.append(
            Problem(
                "spec.engine.kvCacheDtype",
                f"{engine.name} does not support {e.kv_cache_dtype!r}; it supports "
                f"{', '.join(sorted(engine.kv_cache_dtypes))}",
            )
        )
    for flag in conflicting_flags(engine, tuple(e.extra_args)):
        problems.append(
            Problem(
                "spec.engine.extraArgs",
                f"{flag!r} is set by kubellm from the spec; change the matching spec field"
                " instead of passing the flag",
            )
        )
    return problems


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
        return resolve_gpu(spec.resources.gpu.type)
    except UnknownGPUError:
        return Problem(
            "spec.resources.gpu.type",
            f"unknown GPU {spec.resources.gpu.type!r}; use one of {', '.join(known_gpus())}"
            " or set resources.gpu.memoryGiB",
        )


def sizing_request(
    spec: LLMDeploymentSpec, engine: Engine, model: ModelArchitecture, gpu: GPUType | None
) -> SizingRequest:
    """What sizing needs from a spec."""
    r = spec.resources
    memory = r.gpu.memory_gib if r.gpu.memory_gib is not None else gpu.memory_gib if gpu else 0
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
        engine=engine.traits,
    )


def resolve(obj: Mapping[str, Any]) -> Resolved:
    """Decide everything about one LLMDeployment; raises InvalidSpecError listing every problem."""
    owner = owner_of(obj)
    spec = parse_spec(obj)
    engine = ENGINES[spec.engine.type]
    problems = _engine_problems(spec, engine)
    model, gpu = _model(spec), _gpu(spec)
    if isinstance(model, Problem):
        problems.append(model)
    if isinstance(gpu, Problem):
        problems.append(gpu)
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
    )
