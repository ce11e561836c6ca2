"""Pod templates: the engine's container plus the concerns every engine shares.

Shared, once for all engines: GPU requests and limits, a Memory-backed /dev/shm, the model
cache, the Hugging Face token by secretKeyRef only, `enableServiceLinks: false` (a Service
named `vllm` would inject VLLM_PORT and crash vLLM), a restricted-as-possible security
context, probes on the engine's health paths with a start-up window that grows with the
weights (sizing's `startup_seconds`), and node selection
by the GPU product label that NVIDIA GPU feature discovery sets.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from kubellm.engines.base import ContainerCommand, ContainerInputs
from kubellm.render.context import (
    METRICS_PATH,
    REVISION_SPEC,
    SERVING,
    RenderContext,
    revision_labels,
)
from kubellm.rollout.revision import snapshot

CACHE_DIR = "/models-cache"
WEIGHTS_DIR = "/models"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
STARTUP_PERIOD_SECONDS = 10
Role = Literal["single", "leader", "worker"]


def gpus_per_pod(ctx: RenderContext) -> int:
    sizing = ctx.resolved.sizing
    return sizing.gpus_per_replica // sizing.nodes_per_replica


def gpu_resource(ctx: RenderContext) -> str:
    gpu = ctx.resolved.spec.resources.gpu
    if gpu.resource_name:
        return gpu.resource_name
    return ctx.resolved.gpu.resource_name if ctx.resolved.gpu else DEFAULT_GPU_RESOURCE


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
    )


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
    """GPUs as request = limit; CPU and memory grow with the GPUs unless overridden."""
    gpus = gpus_per_pod(ctx)
    r = ctx.resolved.spec.resources
    cpu = r.cpu if r.cpu is not None else str(max(4, 4 * gpus))
    memory = r.memory if r.memory is not None else f"{16 + 8 * gpus}Gi"
    return {
        "requests": {gpu_resource(ctx): gpus, "cpu": cpu, "memory": memory},
        "limits": {gpu_resource(ctx): gpus},
    }


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
        probes = ctx.resolved.engine.probes
        failures = math.ceil(startup_window_seconds(ctx) / STARTUP_PERIOD_SECONDS)
        container["startupProbe"] = _probe(probes.health_path, STARTUP_PERIOD_SECONDS, failures, 5)
        container["readinessProbe"] = _probe(probes.health_path, 5, 3, 5)
        container["livenessProbe"] = _probe(probes.liveness, 15, 4, 10)
    return container


def _shm_size(ctx: RenderContext) -> str:
    """NCCL and PyTorch workers exchange tensors through /dev/shm on multi-GPU pods."""
    return "16Gi" if gpus_per_pod(ctx) > 1 else "2Gi"


def _mounts(ctx: RenderContext) -> list[dict[str, Any]]:
    mounts: list[dict[str, Any]] = [
        {"name": "shm", "mountPath": "/dev/shm"},
        {"name": "model-cache", "mountPath": CACHE_DIR},
    ]
    if ctx.resolved.spec.model.source.type == "pvc":
        mounts.append({"name": "weights", "mountPath": WEIGHTS_DIR, "readOnly": True})
    return mounts


def _volumes(ctx: RenderContext) -> list[dict[str, Any]]:
    model = ctx.resolved.spec.model
    cache: dict[str, Any] = (
        {"persistentVolumeClaim": {"claimName": model.cache_claim_name}}
        if model.cache_claim_name
        else {"emptyDir": {}}
    )
    volumes: list[dict[str, Any]] = [
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": _shm_size(ctx)}},
        {"name": "model-cache", **cache},
    ]
    if model.source.type == "pvc":
        volumes.append(
            {
                "name": "weights",
                "persistentVolumeClaim": {"claimName": model.source.claim_name, "readOnly": True},
            }
        )
    return volumes


def _gpu_affinity(ctx: RenderContext) -> dict[str, Any] | None:
    """Require a node whose GPU product label names the GPU type, merged into the user's."""
    user = dict(ctx.resolved.spec.scheduling.affinity or {})
    gpu = ctx.resolved.gpu
    if gpu is None:
        return user or None
    expression = {"key": gpu.product_label, "operator": "In", "values": list(gpu.product_values)}
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
    scheduling = ctx.resolved.spec.scheduling
    labels = revision_labels(ctx)
    if role != "worker":
        labels[SERVING] = "true"
    tolerations = [
        {"key": gpu_resource(ctx), "operator": "Exists", "effect": "NoSchedule"},
        *scheduling.tolerations,
    ]
    spec: dict[str, Any] = {
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 60,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(ctx, role)],
        "volumes": _volumes(ctx),
        "tolerations": tolerations,
    }
    if scheduling.node_selector:
        spec["nodeSelector"] = dict(scheduling.node_selector)
    if affinity := _gpu_affinity(ctx):
        spec["affinity"] = affinity
    if scheduling.priority_class_name:
        spec["priorityClassName"] = scheduling.priority_class_name
    return {
        "metadata": {
            "labels": labels,
            "annotations": {METRICS_PATH: ctx.resolved.engine.metrics_path},
        },
        "spec": spec,
    }


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
