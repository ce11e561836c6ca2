"""Pod templates: the engine's container plus the concerns every engine shares.

Shared, once for all engines: GPU requests and limits, host memory requests and limits, a
Memory-backed /dev/shm, the model cache (an emptyDir sized from the model, with a matching
ephemeral-storage request), the Hugging Face token by secretKeyRef only,
`enableServiceLinks: false` (a Service named `vllm` would inject VLLM_PORT and crash vLLM), a
restricted-as-possible security context, probes on the engine's health paths with a start-up
window that grows with the weights (sizing's `startup_seconds`), a graceful stop (preStop,
engine drain, grace period), node selection by the GPU label of the cluster's scheme
(`sizing.gpu_labels`), and then `spec.template`.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, Literal

from kubellm.api.kubernetes import quantity_value
from kubellm.api.models import LLMDeploymentSpec
from kubellm.engines.base import ContainerCommand, ContainerInputs
from kubellm.render.context import (
    METRICS_PATH,
    REVISION_SPEC,
    SERVING,
    RenderContext,
    revision_labels,
)
from kubellm.render.template import (
    CACHE_VOLUME,
    SHM_VOLUME,
    WEIGHTS_VOLUME,
    apply_template,
    merged_scheduling,
)
from kubellm.rollout.revision import snapshot
from kubellm.sizing import BYTES_PER_PARAM, GPUType
from kubellm.sizing.gpu_labels import NoGpuLabelError, gpu_node_selector

CACHE_DIR = "/models-cache"
WEIGHTS_DIR = "/models"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
STARTUP_PERIOD_SECONDS = 10
GIB = 2**30
Role = Literal["single", "leader", "worker"]
# Graceful stop. The preStop sleep keeps the engine serving while the pod leaves the Service's
# endpoints and load balancers stop sending it requests (KServe and llm-d use 15 s:
# kserve/kserve#5496); then SIGTERM lets the engine finish what is in flight.
PRESTOP_SECONDS = 15
EXIT_SECONDS = 15  # after the drain: the engine's own shutdown, GPU memory release
# The longest request streams maxContextLength tokens at the slowest per-sequence decode rate
# a loaded replica keeps up: ~20 tokens/s (llm-d measured a 47 ms inter-token latency for
# Qwen3-32B on H100 under load, llm-d/llm-d#1653). Bounded to a minute .. an hour.
SLOWEST_DECODE_TOKENS_PER_SECOND = 20
DRAIN_BOUNDS = (60, 3600)
# Quantizations whose checkpoints are published already in that format: the download is the
# quantized weights. Others (fp8, int8, bitsandbytes) may quantize a 16-bit checkpoint on load.
CHECKPOINT_QUANTIZATIONS = frozenset({"awq", "gptq", "mxfp4", "nvfp4"})
CACHE_HEADROOM = (1.1, 2)  # x the checkpoint, + GiB: tokenizer, configs, partial downloads


def gpus_per_pod(ctx: RenderContext) -> int:
    sizing = ctx.resolved.sizing
    return sizing.gpus_per_replica // sizing.nodes_per_replica


def gpu_resource(ctx: RenderContext) -> str:
    return gpu_resource_name(ctx.resolved.spec, ctx.resolved.gpu)


def gpu_resource_name(spec: LLMDeploymentSpec, gpu: GPUType | None) -> str:
    """The extended resource GPUs are requested as."""
    if spec.resources.gpu.resource_name:
        return spec.resources.gpu.resource_name
    return gpu.resource_name if gpu else DEFAULT_GPU_RESOURCE


def container_inputs(ctx: RenderContext) -> ContainerInputs:
    spec, sizing, engine = ctx.resolved.spec, ctx.resolved.sizing, ctx.resolved.engine
    model = spec.model.name
    if spec.model.source.type == "pvc":
        model = f"{WEIGHTS_DIR}/{spec.model.source.path or ''}".rstrip("/")
    served = spec.model.served_name or spec.model.name
    return ContainerInputs(
        model=model,
        served_name=served if engine.serves_custom_name else None,
        revision=spec.model.revision,
        tensor_parallel=sizing.tensor_parallel,
        pipeline_parallel=sizing.pipeline_parallel,
        nodes=sizing.nodes_per_replica,
        dtype=spec.engine.dtype,
        quantization_flag=ctx.resolved.quantization_flag,
        kv_cache_dtype=spec.engine.kv_cache_dtype,
        max_context_length=sizing.context_length,
        max_concurrency=spec.engine.max_concurrency,
        memory_fraction=sizing.memory_fraction,
        trust_remote_code=spec.model.trust_remote_code,
        cache_dir=CACHE_DIR,
        extra_args=tuple(spec.engine.extra_args),
        drain_seconds=drain_seconds(ctx),
    )


def drain_seconds(ctx: RenderContext) -> int:
    """How long in-flight requests may run after SIGTERM: the longest request at
    maxContextLength, or what the spec's grace period leaves after preStop and exit."""
    override = _template_grace(ctx)
    if override is not None:
        return max(0, override - PRESTOP_SECONDS - EXIT_SECONDS)
    longest = math.ceil(ctx.resolved.sizing.context_length / SLOWEST_DECODE_TOKENS_PER_SECOND)
    return min(max(longest, DRAIN_BOUNDS[0]), DRAIN_BOUNDS[1])


def grace_period_seconds(ctx: RenderContext) -> int:
    override = _template_grace(ctx)
    return override if override is not None else PRESTOP_SECONDS + drain_seconds(ctx) + EXIT_SECONDS


def _template_grace(ctx: RenderContext) -> int | None:
    template = ctx.resolved.spec.template
    return template.spec.termination_grace_period_seconds if template else None


def _command(ctx: RenderContext, role: Role) -> ContainerCommand:
    engine, inputs = ctx.resolved.engine, container_inputs(ctx)
    if role == "single":
        return engine.container(inputs)
    commands = engine.multi_node(inputs)
    if commands is None:  # sizing refuses multi-node plans for such engines
        raise ValueError(f"{engine.name} cannot span nodes")
    return commands.leader if role == "leader" else commands.worker


def _env(ctx: RenderContext, command: ContainerCommand) -> list[dict[str, Any]]:
    """Engine env, then the token by reference, then the user's (which wins by name)."""
    spec = ctx.resolved.spec
    env: dict[str, dict[str, Any]] = {
        "HF_HOME": {"name": "HF_HOME", "value": CACHE_DIR},
        **{k: {"name": k, "value": v} for k, v in command.env.items()},
    }
    if ref := spec.model.token_secret_ref:
        for name in ctx.resolved.engine.token_env:
            env[name] = {
                "name": name,
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}},
            }
    for var in spec.engine.env:
        env[var.name] = var.model_dump(by_alias=True, exclude_none=True)
    return list(env.values())


def _probe(path: str, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def _resources(ctx: RenderContext) -> dict[str, Any]:
    """GPUs as request = limit; CPU and memory grow with the GPUs unless overridden.

    The memory limit leaves room for the Memory-backed /dev/shm on top of the request, since
    tmpfs pages count against the container's memory limit
    (https://kubernetes.io/docs/concepts/storage/volumes/#emptydir). The model cache emptyDir
    is requested as ephemeral storage, so the scheduler picks a node with room for the download.
    """
    gpus = gpus_per_pod(ctx)
    r = ctx.resolved.spec.resources
    cpu = r.cpu if r.cpu is not None else str(max(4, 4 * gpus))
    memory = r.memory if r.memory is not None else f"{16 + 8 * gpus}Gi"
    limit = quantity_value(memory) + _shm_gib(ctx) * GIB
    requests: dict[str, Any] = {gpu_resource(ctx): gpus, "cpu": cpu, "memory": memory}
    if (cache := cache_size_gib(ctx)) is not None:
        requests["ephemeral-storage"] = f"{cache}Gi"
    return {"requests": requests, "limits": {gpu_resource(ctx): gpus, "memory": _bytes(limit)}}


def _bytes(amount: Decimal) -> str:
    """A byte quantity, in Gi or Mi when exact."""
    for unit, size in (("Gi", GIB), ("Mi", 2**20)):
        if amount % size == 0:
            return f"{int(amount // size)}{unit}"
    return str(math.ceil(amount))


def download_gib(ctx: RenderContext) -> float:
    """Size of the checkpoint the engine downloads into the model cache."""
    model, sizing = ctx.resolved.model, ctx.resolved.sizing
    if ctx.resolved.spec.engine.quantization in CHECKPOINT_QUANTIZATIONS:
        return sizing.weights_gib
    native = (
        BYTES_PER_PARAM[model.native_quantization] if model.native_quantization != "none" else 2
    )
    return max(sizing.weights_gib, model.parameters * native / GIB)


def cache_size_gib(ctx: RenderContext) -> int | None:
    """The model cache emptyDir's size limit (and ephemeral-storage request); None when the
    cache is a PersistentVolumeClaim."""
    model = ctx.resolved.spec.model
    if model.cache_claim_name:
        return None
    download = download_gib(ctx) if model.source.type == "huggingFace" else 0.0
    factor, extra = CACHE_HEADROOM
    return math.ceil(download * factor) + extra


def _container(ctx: RenderContext, role: Role) -> dict[str, Any]:
    command = _command(ctx, role)
    container: dict[str, Any] = {
        "name": "engine" if role != "worker" else "worker",
        "image": ctx.resolved.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(command.command),
        "args": list(command.args),
        "env": _env(ctx, command),
        "resources": _resources(ctx),
        "volumeMounts": _mounts(ctx),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if role != "worker":
        container["ports"] = [
            {"name": "http", "containerPort": ctx.resolved.engine.port, "protocol": "TCP"}
        ]
        # Keep serving while the pod leaves the endpoints (sleep action: Kubernetes 1.30+).
        pause = min(PRESTOP_SECONDS, grace_period_seconds(ctx))
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": pause}}}
        probes = ctx.resolved.engine.probes
        failures = math.ceil(startup_window_seconds(ctx) / STARTUP_PERIOD_SECONDS)
        container["startupProbe"] = _probe(probes.health_path, STARTUP_PERIOD_SECONDS, failures, 5)
        container["readinessProbe"] = _probe(probes.health_path, 5, 3, 5)
        container["livenessProbe"] = _probe(probes.liveness, 15, 4, 10)
    return container


def _shm_gib(ctx: RenderContext) -> int:
    """NCCL and PyTorch workers exchange tensors through /dev/shm on multi-GPU pods."""
    return 16 if gpus_per_pod(ctx) > 1 else 2


def owned_mounts(spec: LLMDeploymentSpec) -> dict[str, str]:
    """kubellm's volumes of the engine container -> their mount paths."""
    mounts = {SHM_VOLUME: "/dev/shm", CACHE_VOLUME: CACHE_DIR}
    if spec.model.source.type == "pvc":
        mounts[WEIGHTS_VOLUME] = WEIGHTS_DIR
    return mounts


def _mounts(ctx: RenderContext) -> list[dict[str, Any]]:
    return [
        {"name": name, "mountPath": path, **({"readOnly": True} if name == WEIGHTS_VOLUME else {})}
        for name, path in owned_mounts(ctx.resolved.spec).items()
    ]


def _volumes(ctx: RenderContext) -> list[dict[str, Any]]:
    model = ctx.resolved.spec.model
    size = cache_size_gib(ctx)
    cache: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": model.cache_claim_name}}
        if model.cache_claim_name
        else {"emptyDir": {"sizeLimit": f"{size}Gi"}}
    )
    volumes: list[dict[str, Any]] = [
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": f"{_shm_gib(ctx)}Gi"}},
        {"name": CACHE_VOLUME, **cache},
    ]
    if model.source.type == "pvc":
        volumes.append(
            {
                "name": WEIGHTS_VOLUME,
                "persistentVolumeClaim": {"claimName": model.source.claim_name, "readOnly": True},
            }
        )
    return volumes


def _gpu_node_labels(ctx: RenderContext) -> str:
    """The GPU node-label scheme: the spec's, else the operator's."""
    return ctx.resolved.spec.resources.gpu.node_labels or ctx.gpu_node_labels


def _gpu_expression(ctx: RenderContext) -> dict[str, Any] | None:
    """The node selector requirement naming the GPU type, under the cluster's label scheme.

    A GPU the operator-wide scheme does not list (its cloud does not offer it) keeps its
    vendor's feature-discovery label; a spec that names such a scheme itself is refused by
    `resolve()`.
    """
    gpu = ctx.resolved.gpu
    if gpu is None:
        return None
    try:
        selector = gpu_node_selector(_gpu_node_labels(ctx), gpu)
    except NoGpuLabelError:
        selector = gpu_node_selector("nvidia", gpu)
    if selector is None:
        return None
    return {"key": selector.key, "operator": "In", "values": list(selector.values)}


def _gpu_affinity(
    ctx: RenderContext, user_affinity: dict[str, Any] | None
) -> dict[str, Any] | None:
    """Require a node whose GPU label names the GPU type, merged into the user's affinity."""
    user = dict(user_affinity or {})
    expression = _gpu_expression(ctx)
    if expression is None:
        return user or None
    node_affinity = dict(user.get("nodeAffinity") or {})
    required = dict(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms") or [{}]
    required["nodeSelectorTerms"] = [
        {**term, "matchExpressions": [*term.get("matchExpressions", []), expression]}
        for term in terms
    ]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required
    return {**user, "nodeAffinity": node_affinity}


def pod_template(ctx: RenderContext, role: Role) -> dict[str, Any]:
    """The pod template of the current revision, in one of its roles."""
    scheduling = merged_scheduling(ctx.resolved.spec)
    labels = revision_labels(ctx)
    if role != "worker":
        labels[SERVING] = "true"
    tolerations = [
        {"key": gpu_resource(ctx), "operator": "Exists", "effect": "NoSchedule"},
        *(scheduling["tolerations"] or []),
    ]
    spec: dict[str, Any] = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": grace_period_seconds(ctx),
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(ctx, role)],
        "volumes": _volumes(ctx),
        "tolerations": tolerations,
    }
    if scheduling["nodeSelector"]:
        spec["nodeSelector"] = dict(scheduling["nodeSelector"])
    if affinity := _gpu_affinity(ctx, scheduling["affinity"]):
        spec["affinity"] = affinity
    if scheduling["priorityClassName"]:
        spec["priorityClassName"] = scheduling["priorityClassName"]
    template = {
        "metadata": {
            "labels": labels,
            "annotations": {METRICS_PATH: ctx.resolved.engine.metrics_path},
        },
        "spec": spec,
    }
    return apply_template(template, ctx.resolved.spec.template, serving=role != "worker")


def stored_spec(ctx: RenderContext) -> str:
    """The revision's snapshot as JSON (no secret material): rebuilds it when its workload or
    its ControllerRevision is gone."""
    stored = snapshot(ctx.resolved.spec, ctx.resolved.image)
    return json.dumps(stored, sort_keys=True, separators=(",", ":"))


def revision_annotations(ctx: RenderContext) -> dict[str, str]:
    """What a revision serves, readable later without the spec that made it."""
    return {
        "kubellm.io/model": ctx.resolved.spec.model.name,
        "kubellm.io/image": ctx.resolved.image,
        "kubellm.io/gpus-per-replica": str(ctx.resolved.sizing.gpus_per_replica),
        REVISION_SPEC: stored_spec(ctx),
    }


def startup_window_seconds(ctx: RenderContext) -> int:
    """How long a pod (a LeaderWorkerSet group's leader) may take to answer its health
    path: `engine.startupTimeout`, or derived from the weights by sizing."""
    return ctx.resolved.sizing.startup_seconds
