"""`spec.template`: a partial pod template merged onto the pods kubellm renders.

Precedence, the same for every engine:
- kubellm keeps the engine command and image, ports, GPU requests and limits, selector labels,
  and its volumes (`shm`, `model-cache`, `weights`); the spec changes those through its own
  fields (engine.*, resources.*, model.cacheClaimName);
- labels and annotations are added; kubellm's keys are refused;
- lists are appended (tolerations, imagePullSecrets, topologySpreadConstraints, volumes,
  initContainers, and the engine container's envFrom and volumeMounts); env is merged by name
  like engine.env (a name in both engine.env and the template is refused);
- securityContexts and container resources are merged field by field over kubellm's;
- ServiceAccount, token automount, runtime and priority class, grace period and probes replace
  kubellm's.
`spec.scheduling` stays as a shorthand for the scheduling fields; a field set in both places is
refused rather than guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubellm import GROUP
from kubellm.api.models import EngineContainerOverride, LLMDeploymentSpec, PodTemplateOverride
from kubellm.render.context import COMPONENT, INSTANCE, MANAGED_BY

SHM_VOLUME = "shm"
CACHE_VOLUME = "model-cache"
WEIGHTS_VOLUME = "weights"
OWNED_VOLUMES = (SHM_VOLUME, CACHE_VOLUME, WEIGHTS_VOLUME)
OWNED_LABELS = frozenset({INSTANCE, COMPONENT, MANAGED_BY})
OWNED_PREFIX = f"{GROUP}/"
# scheduling.<field> and template.spec.<field> are the same thing: set in one place only.
SHORTHANDS = (
    ("node_selector", "nodeSelector"),
    ("tolerations", "tolerations"),
    ("affinity", "affinity"),
    ("priority_class_name", "priorityClassName"),
)
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
TEMPLATE = "spec.template"
Found = list[tuple[str, str]]  # (field path, message)


def _owned_keys(keys: Iterable[str], path: str, labels: bool) -> Found:
    owned = [k for k in keys if k.startswith(OWNED_PREFIX) or (labels and k in OWNED_LABELS)]
    return [(f"{path}[{k}]", "is set by kubellm; choose another key") for k in owned]


def template_problems(
    spec: LLMDeploymentSpec, gpu_resource: str, owned_mounts: Mapping[str, str]
) -> Found:
    """What in spec.template (and spec.service labels) would clash with kubellm's pods.

    `owned_mounts`: kubellm's volume name -> mount path in the engine container.
    """
    found = _owned_keys(spec.service.labels, "spec.service.labels", labels=True)
    found += _owned_keys(spec.service.annotations, "spec.service.annotations", labels=False)
    template = spec.template
    if template is None:
        return found
    found += _owned_keys(template.metadata.labels, f"{TEMPLATE}.metadata.labels", labels=True)
    found += _owned_keys(
        template.metadata.annotations, f"{TEMPLATE}.metadata.annotations", labels=False
    )
    pod = template.spec
    for attribute, name in SHORTHANDS:
        if getattr(spec.scheduling, attribute) and getattr(pod, attribute):
            found.append(
                (f"{TEMPLATE}.spec.{name}", f"also set in spec.scheduling.{name}; set it once")
            )
    volumes = [str(v.get("name")) for v in pod.volumes]
    for index, name in enumerate(volumes):
        if name in OWNED_VOLUMES:
            found.append((f"{TEMPLATE}.spec.volumes[{index}].name", f"{name!r} is kubellm's"))
        elif name in volumes[:index]:
            found.append((f"{TEMPLATE}.spec.volumes[{index}].name", f"{name!r} is repeated"))
    known = {*volumes, *owned_mounts}
    names = {"engine", "worker"}
    for index, init in enumerate(pod.init_containers):
        path = f"{TEMPLATE}.spec.initContainers[{index}]"
        name = str(init.get("name"))
        if name in names:
            found.append((f"{path}.name", f"{name!r} is taken"))
        names.add(name)
        if not init.get("image"):
            found.append((f"{path}.image", "is required"))
        found += _mount_problems(init.get("volumeMounts") or [], known, {}, path)
    for index, container in enumerate(pod.containers):
        found += _container_problems(
            spec,
            container,
            gpu_resource,
            known,
            owned_mounts,
            f"{TEMPLATE}.spec.containers[{index}]",
        )
    return found


def _mount_problems(
    mounts: Iterable[Mapping[str, Any]], known: set[str], taken: Mapping[str, str], path: str
) -> Found:
    found = []
    paths = {mount_path: name for name, mount_path in taken.items()}
    for index, mount in enumerate(mounts):
        name, mount_path = mount.get("name"), mount.get("mountPath")
        if name not in known:
            found.append((f"{path}.volumeMounts[{index}].name", f"no volume named {name!r}"))
        if mount_path in paths:
            found.append(
                (f"{path}.volumeMounts[{index}].mountPath", f"{mount_path} is kubellm's mount")
            )
    return found


def _container_problems(
    spec: LLMDeploymentSpec,
    container: EngineContainerOverride,
    gpu_resource: str,
    known: set[str],
    owned_mounts: Mapping[str, str],
    path: str,
) -> Found:
    engine_env = {var.name for var in spec.engine.env}
    found = [
        (f"{path}.env[{index}].name", f"{var.name!r} is also in spec.engine.env; set it once")
        for index, var in enumerate(container.env)
        if var.name in engine_env
    ]
    found += _mount_problems(container.volume_mounts, known, owned_mounts, path)
    for section, amounts in (container.resources or {}).items():
        if isinstance(amounts, Mapping) and gpu_resource in amounts:
            found.append(
                (f"{path}.resources.{section}[{gpu_resource}]", "is set by kubellm's sizing")
            )
    return found


def merged_scheduling(spec: LLMDeploymentSpec) -> dict[str, Any]:
    """nodeSelector, tolerations, affinity, priorityClassName: wherever the spec sets them."""
    pod = spec.template.spec if spec.template else None
    return {
        name: getattr(spec.scheduling, attribute) or (getattr(pod, attribute) if pod else None)
        for attribute, name in SHORTHANDS
    }


def apply_template(
    pod_template: dict[str, Any], template: PodTemplateOverride | None, serving: bool
) -> dict[str, Any]:
    """The rendered pod template with the override merged in (scheduling fields excluded:
    `pod.py` merges those with the GPU affinity)."""
    if template is None:
        return pod_template
    meta, spec, pod = pod_template["metadata"], pod_template["spec"], template.spec
    meta["labels"] = {**template.metadata.labels, **meta["labels"]}
    meta["annotations"] = {**template.metadata.annotations, **meta.get("annotations", {})}
    replaced = {
        "serviceAccountName": pod.service_account_name,
        "automountServiceAccountToken": pod.automount_service_account_token,
        "runtimeClassName": pod.runtime_class_name,
        "terminationGracePeriodSeconds": pod.termination_grace_period_seconds,
    }
    spec.update({k: v for k, v in replaced.items() if v is not None})
    if pod.security_context:
        spec["securityContext"] = {**spec.get("securityContext", {}), **pod.security_context}
    for name, extra in (
        ("imagePullSecrets", pod.image_pull_secrets),
        ("topologySpreadConstraints", pod.topology_spread_constraints),
        ("volumes", pod.volumes),
        ("initContainers", pod.init_containers),
    ):
        if extra:
            spec[name] = [*spec.get(name, []), *extra]
    for container in pod.containers:
        _merge_container(spec["containers"][0], container, serving)
    return pod_template


def _merge_container(
    rendered: dict[str, Any], override: EngineContainerOverride, serving: bool
) -> None:
    dump = override.model_dump(by_alias=True, exclude_none=True)
    if dump.get("env"):  # by name, like engine.env: a variable kubellm sets can be replaced
        env = {var["name"]: var for var in rendered.get("env", [])}
        rendered["env"] = list({**env, **{var["name"]: var for var in dump["env"]}}.values())
    for name in ("envFrom", "volumeMounts"):
        if dump.get(name):
            rendered[name] = [*rendered.get(name, []), *dump[name]]
    if override.security_context:
        rendered["securityContext"] = {
            **rendered.get("securityContext", {}),
            **override.security_context,
        }
    resources = rendered.setdefault("resources", {})
    for section, amounts in (override.resources or {}).items():
        merge = isinstance(amounts, dict) and isinstance(resources.get(section), dict)
        resources[section] = {**resources[section], **amounts} if merge else amounts
    if serving:
        rendered.update({probe: dump[probe] for probe in PROBES if probe in dump})
