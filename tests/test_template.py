"""spec.template, spec.service labels/annotations and the free-form pod fields: merged with a
clear precedence, every rendered pod valid against Kubernetes 1.36, every mistake a problem
with its field path (never a traceback)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import BASE, KUBERNETES_VERSION, llmd
from kubellm.cli.main import main
from kubellm.render import render_children, resolve, single_revision
from kubellm.render.resolve import InvalidSpecError
from kubellm.rollout.revision import pod_relevant, what_changed

PLATFORM: dict[str, Any] = {
    "metadata": {
        "labels": {"team": "search", "cost-center": "ml-42"},
        "annotations": {"sidecar.istio.io/inject": "false"},
    },
    "spec": {
        "serviceAccountName": "llm-weights-reader",
        "automountServiceAccountToken": True,
        "imagePullSecrets": [{"name": "registry"}],
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm"}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/instance": "demo"}},
            }
        ],
        "runtimeClassName": "nvidia",
        "priorityClassName": "inference",
        "securityContext": {"fsGroup": 1000},
        "volumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "initContainers": [
            {
                "name": "warm-cache",
                "image": "busybox:1.37",
                "command": ["true"],
                "volumeMounts": [{"name": "model-cache", "mountPath": "/cache"}],
            }
        ],
        "containers": [
            {
                "name": "engine",
                "env": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
                "envFrom": [{"configMapRef": {"name": "otel"}}],
                "volumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corp", "readOnly": True}],
                "resources": {"limits": {"memory": "64Gi", "rdma/ib": 1}},
                "securityContext": {"runAsNonRoot": True},
                "readinessProbe": {"httpGet": {"path": "/v1/models", "port": "http"}},
            }
        ],
    },
}


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    objects = render_children(single_revision(resolve(obj)))
    workload = next(o for o in objects if o["kind"] in ("Deployment", "LeaderWorkerSet"))
    spec = workload["spec"]
    template: dict[str, Any] = (
        spec["template"] if "template" in spec else spec["leaderWorkerTemplate"]["leaderTemplate"]
    )
    return template


def problems(obj: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidSpecError) as caught:
        resolve(obj)
    return {p.field: p.message for p in caught.value.problems}


def validate_pod(template: dict[str, Any]) -> None:
    wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
    kubernetes_validate.validate({**wrapper, "template": template}, KUBERNETES_VERSION, strict=True)


def test_platform_template_is_merged_and_the_pod_stays_valid() -> None:
    template = pod_of(llmd(template=PLATFORM))
    validate_pod(template)
    meta, pod = template["metadata"], template["spec"]
    assert meta["labels"]["team"] == "search"
    assert meta["labels"]["kubellm.io/serving"] == "true"  # kubellm's labels kept
    assert meta["annotations"]["sidecar.istio.io/inject"] == "false"
    assert pod["serviceAccountName"] == "llm-weights-reader"
    assert pod["automountServiceAccountToken"] is True  # replaces kubellm's false
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert [t["key"] for t in pod["tolerations"]] == ["nvidia.com/gpu", "dedicated"]
    assert pod["topologySpreadConstraints"][0]["maxSkew"] == 1
    assert pod["runtimeClassName"] == "nvidia" and pod["priorityClassName"] == "inference"
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 1000}
    assert [v["name"] for v in pod["volumes"]] == ["shm", "model-cache", "ca"]
    assert pod["initContainers"][0]["name"] == "warm-cache"
    engine = pod["containers"][0]
    assert engine["command"] == ["vllm", "serve"]  # kubellm owns the command
    assert engine["env"][-1] == {"name": "HTTPS_PROXY", "value": "http://proxy:3128"}
    assert engine["envFrom"] == [{"configMapRef": {"name": "otel"}}]
    assert engine["volumeMounts"][-1]["mountPath"] == "/etc/ssl/corp"
    assert engine["resources"]["limits"] == {"nvidia.com/gpu": 1, "memory": "64Gi", "rdma/ib": 1}
    assert engine["securityContext"]["runAsNonRoot"] is True
    assert engine["securityContext"]["allowPrivilegeEscalation"] is False
    assert engine["readinessProbe"]["httpGet"]["path"] == "/v1/models"
    assert engine["startupProbe"]["httpGet"]["path"] == "/health"  # not overridden: kubellm's


def test_multi_node_pods_get_the_template_but_workers_no_probes() -> None:
    obj = llmd(
        model={"name": "meta-llama/Llama-3.1-405B-Instruct"},
        engine={"type": "vllm", "maxContextLength": 8192},
        template=PLATFORM,
    )
    [lws_obj] = [
        o for o in render_children(single_revision(resolve(obj))) if o["kind"] == "LeaderWorkerSet"
    ]
    lws = lws_obj["spec"]["leaderWorkerTemplate"]
    for role in ("leaderTemplate", "workerTemplate"):
        validate_pod(lws[role])
        assert lws[role]["spec"]["serviceAccountName"] == "llm-weights-reader"
        assert lws[role]["spec"]["containers"][0]["volumeMounts"][-1]["name"] == "ca"
    assert "readinessProbe" not in lws["workerTemplate"]["spec"]["containers"][0]


def test_scheduling_shorthands_still_work_and_conflicts_are_refused() -> None:
    toleration = {"key": "dedicated", "operator": "Exists"}
    pod = pod_of(llmd(scheduling={"tolerations": [toleration], "nodeSelector": {"pool": "a"}}))
    assert pod["spec"]["tolerations"][-1] == toleration
    assert pod["spec"]["nodeSelector"] == {"pool": "a"}
    found = problems(
        llmd(
            scheduling={"tolerations": [toleration], "priorityClassName": "a"},
            template={"spec": {"tolerations": [toleration], "priorityClassName": "b"}},
        )
    )
    assert "also set in spec.scheduling.tolerations" in found["spec.template.spec.tolerations"]
    assert "spec.template.spec.priorityClassName" in found


def test_template_affinity_is_merged_with_the_gpu_affinity() -> None:
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [zone]}]
            }
        }
    }
    pod = pod_of(llmd(template={"spec": {"affinity": affinity}}))["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = [e["key"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]]
    assert keys == ["topology.kubernetes.io/zone", "nvidia.com/gpu.product"]


@pytest.mark.parametrize(
    ("template", "field", "message"),
    [
        ({"metadata": {"labels": {"app.kubernetes.io/instance": "x"}}},
         "spec.template.metadata.labels[app.kubernetes.io/instance]", "set by kubellm"),
        ({"metadata": {"labels": {"kubellm.io/revision": "x"}}},
         "spec.template.metadata.labels[kubellm.io/revision]", "set by kubellm"),
        ({"metadata": {"labels": {"team": "a b"}}},
         "spec.template.metadata.labels[team]", "invalid label value"),
        ({"metadata": {"annotations": {"kubellm.io/model": "x"}}},
         "spec.template.metadata.annotations[kubellm.io/model]", "set by kubellm"),
        ({"spec": {"volumes": [{"name": "shm", "emptyDir": {}}]}},
         "spec.template.spec.volumes[0].name", "kubellm's"),
        ({"spec": {"volumes": [{"name": "ca"}]}}, "spec.template.spec.volumes[0]", "one source"),
        ({"spec": {"volumes": [{"name": "ca", "emptyDir": {}, "hostPth": {}}]}},
         "spec.template.spec.volumes[0].hostPth", "unknown field"),
        ({"spec": {"containers": [{"name": "engine", "volumeMounts": [
            {"name": "nope", "mountPath": "/x"}]}]}},
         "spec.template.spec.containers[0].volumeMounts[0].name", "no volume named 'nope'"),
        ({"spec": {"containers": [{"name": "engine", "volumeMounts": [
            {"name": "model-cache", "mountPath": "/dev/shm"}]}]}},
         "spec.template.spec.containers[0].volumeMounts[0].mountPath", "kubellm's mount"),
        ({"spec": {"containers": [{"name": "engine", "resources": {
            "limits": {"nvidia.com/gpu": 2}}}]}},
         "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]", "sizing"),
        ({"spec": {"containers": [{"name": "sidecar"}]}},
         "spec.template.spec.containers[0].name", "Input should be 'engine'"),
        ({"spec": {"containers": [{"name": "engine", "command": ["sh"]}]}},
         "spec.template.spec.containers[0].command", "Extra inputs are not permitted"),
        ({"spec": {"initContainers": [{"name": "engine", "image": "busybox"}]}},
         "spec.template.spec.initContainers[0].name", "'engine' is taken"),
        ({"spec": {"initContainers": [{"name": "fetch"}]}},
         "spec.template.spec.initContainers[0].image", "is required"),
        ({"spec": {"initContainers": [{"name": "fetch", "image": "b", "restartPolicy": 1}]}},
         "spec.template.spec.initContainers[0].restartPolicy", "must be a string"),
        ({"spec": {"serviceAccountName": "Not_A_Name"}},
         "spec.template.spec.serviceAccountName", "DNS subdomain"),
        ({"spec": {"securityContext": {"runAsUser": "root"}}},
         "spec.template.spec.securityContext.runAsUser", "must be an integer"),
        ({"spec": {"nodeSelector": {"pool": "a b"}}},
         "spec.template.spec.nodeSelector[pool]", "invalid label value"),
        ({"spec": {"topologySpreadConstraints": [{"maxSkew": 1}]}},
         "spec.template.spec.topologySpreadConstraints[0].topologyKey", "is required"),
    ],
)  # fmt: skip
def test_template_mistakes_are_problems_with_their_field(
    template: dict[str, Any], field: str, message: str
) -> None:
    found = problems(llmd(template=template))
    assert field in found, found
    assert message in found[field]


def test_template_env_replaces_kubellms_by_name_but_not_engine_env() -> None:
    proxy = {"name": "engine", "env": [{"name": "HF_HOME", "value": "/x"}]}
    env = pod_of(llmd(template={"spec": {"containers": [proxy]}}))["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "HF_HOME"] == ["/x"]
    engine = {"type": "vllm", "maxContextLength": 8192, "env": [{"name": "HF_HOME", "value": "/y"}]}
    found = problems(llmd(engine=engine, template={"spec": {"containers": [proxy]}}))
    assert "also in spec.engine.env" in found["spec.template.spec.containers[0].env[0].name"]


def test_env_value_from_and_scheduling_are_checked_against_kubernetes() -> None:
    found = problems(
        llmd(
            engine={
                "type": "vllm",
                "maxContextLength": 8192,
                "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "t"}, "x": 1}}],
            },
            scheduling={
                "tolerations": [{"key": "a", "operator": ["Exists"]}],
                "affinity": {"nodeAffinity": {"required": {}}},
            },
        )
    )
    assert found["spec.engine.env[0].valueFrom.x"] == "unknown field"
    assert found["spec.engine.env[0].valueFrom.secretKeyRef.key"] == "is required"
    assert found["spec.scheduling.tolerations[0].operator"] == "must be a string, not an array"
    assert found["spec.scheduling.affinity.nodeAffinity.required"] == "unknown field"


def test_render_cli_reports_a_malformed_affinity_instead_of_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = llmd(scheduling={"affinity": {"nodeAffinity": "gpu"}, "tolerations": ["gpu"]})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["render", "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert "error: demo: spec.scheduling.affinity.nodeAffinity: must be an object" in err
    assert "spec.scheduling.tolerations[0]: Input should be a valid dictionary" in err


def test_service_annotations_and_labels() -> None:
    annotations = {"networking.gke.io/load-balancer-type": "Internal"}
    obj = llmd(service={"type": "LoadBalancer", "annotations": annotations, "labels": {"t": "a"}})
    objects = render_children(single_revision(resolve(obj)))
    service = next(o for o in objects if o["kind"] == "Service")
    kubernetes_validate.validate(service, KUBERNETES_VERSION, strict=True)
    assert service["metadata"]["annotations"] == annotations
    assert service["metadata"]["labels"]["t"] == "a"
    assert service["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kubellm"
    found = problems(llmd(service={"labels": {"app.kubernetes.io/managed-by": "me"}}))
    assert "spec.service.labels[app.kubernetes.io/managed-by]" in found
    found = problems(llmd(service={"annotations": {"bad key!": "x"}}))
    assert "invalid annotation key" in found["spec.service.annotations[bad key!]"]


def test_template_shapes_the_revision_but_service_annotations_do_not() -> None:
    base = resolve(llmd())
    with_template = resolve(llmd(template=PLATFORM))
    annotated = resolve(llmd(service={"annotations": {"a": "b"}}))
    assert with_template.revision != base.revision
    assert annotated.revision == base.revision
    assert "template" not in pod_relevant(base.spec, base.image)  # old revisions keep their hash
    changed = what_changed(
        pod_relevant(base.spec, base.image), pod_relevant(with_template.spec, with_template.image)
    )
    assert changed == ["template"]


# Fuzzing the free-form fields: whatever goes in, resolve() returns a valid render or
# problems under the field that was fuzzed.
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                ["key", "operator", "value", "effect", "nodeAffinity", "podAntiAffinity",
                 "secretKeyRef", "fieldRef", "name", "matchExpressions", "values", "x"]
            ),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=8,
)  # fmt: skip
FUZZED = {
    "spec.scheduling.affinity": ("scheduling", "affinity"),
    "spec.scheduling.tolerations": ("scheduling", "tolerations"),
    "spec.engine.env": ("engine", "env"),
    "spec.template": ("template",),
    "spec.service.annotations": ("service", "annotations"),
}


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(sorted(FUZZED)), value=json_values)
def test_fuzzed_pod_fields_never_crash_and_problems_name_them(field: str, value: Any) -> None:
    obj = copy.deepcopy(BASE)
    path = FUZZED[field]
    node = obj["spec"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = [{"name": "X", "valueFrom": value}] if field == "spec.engine.env" else value
    try:
        resolved = resolve(obj)
    except InvalidSpecError as invalid:
        for problem in invalid.problems:
            assert problem.field.startswith(field), problem
            assert problem.message
        return
    for child in render_children(single_revision(resolved)):
        if child["kind"] == "Deployment":
            validate_pod(child["spec"]["template"])
