"""The Helm chart, rendered and linted by the real Helm engine (helm-python-sdk: Helm's Go SDK
behind a C ABI, no helm binary), every object checked against upstream Kubernetes schemas."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kubellm"
TOP_CRDS = ROOT / "crds"
K8S_VERSION = "1.31.0"
NS = "kubellm-system"

FULL = {
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "podMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
}
NAMESPACED = {"watchNamespaces": ["team-a", "team-b"], **FULL}
STANDALONE = {"replicas": 1, "standalone": True, "priorityClassName": "system-cluster-critical"}
COMBINATIONS = {
    "defaults": {},
    "monitoring": FULL,
    "watch-namespaces": NAMESPACED,
    "standalone": STANDALONE,
    "digest": {"image": {"repository": "registry.example/kubellm", "digest": "sha256:" + "a" * 64}},
    "gke-authenticated-prometheus": {
        "gpuNodeLabels": "gke",
        "prometheusAuth": {"secretNames": ["prometheus-reader"]},
    },
    "shards": {
        "shards": [
            {"name": "a", "namespaces": ["team-a", "team-b"]},
            {"name": "b", "namespaces": ["team-c"], "replicas": 3},
        ]
    },
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name="kubellm", namespace=NS)
    objs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        objs.extend(o for o in yaml.safe_load_all(text) if o)
    return objs


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def chart_crds() -> dict[str, dict[str, Any]]:
    """Kind -> CRD shipped in the chart's crds/."""
    out = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        out[crd["spec"]["names"]["kind"]] = crd
    return out


# Shape of the Prometheus Operator kinds the chart renders: the fields it uses, strictly.
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": LABELS, "matchExpressions": {"type": "array"}},
}
NS_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "any": {"type": "boolean"},
        "matchNames": {"type": "array", "items": {"type": "string"}},
    },
}
RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {
            "enum": ["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep", "hashmod"]
        },
        "sourceLabels": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
        },
        "regex": {"type": "string"},
        "targetLabel": {"type": "string"},
        "replacement": {"type": "string"},
        "separator": {"type": "string"},
    },
}
ENDPOINT_PROPS = {
    "port": {"type": "string"},
    "path": {"type": "string", "pattern": "^/"},
    "interval": DURATION,
    "scrapeTimeout": DURATION,
    "honorLabels": {"type": "boolean"},
    "relabelings": {"type": "array", "items": RELABEL},
}


def _cr(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"type": "string"},
            "metadata": {"type": "object", "required": ["name", "namespace"]},
            "spec": spec,
        },
    }


MONITORING_SCHEMAS = {
    "ServiceMonitor": _cr(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": SELECTOR,
                "namespaceSelector": NS_SELECTOR,
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": ENDPOINT_PROPS,
                    },
                },
            },
        }
    ),
    "PodMonitor": _cr(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "selector": SELECTOR,
                "namespaceSelector": NS_SELECTOR,
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": ENDPOINT_PROPS,
                    },
                },
            },
        }
    ),
    "PrometheusRule": _cr(
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string"},
                            "interval": DURATION,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                                    "properties": {
                                        "record": {"type": "string"},
                                        "alert": {"type": "string"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": DURATION,
                                        "labels": LABELS,
                                        "annotations": LABELS,
                                    },
                                },
                            },
                        },
                    },
                }
            },
        }
    ),
}


def validate(obj: dict[str, Any]) -> None:
    """Upstream Kubernetes schemas (strict) for built-in kinds; the shipped CRD's schema for
    kinds the chart defines; a strict shape for the Prometheus Operator kinds."""
    kind = obj["kind"]
    if kind in MONITORING_SCHEMAS:
        jsonschema.validate(obj, MONITORING_SCHEMAS[kind])
        return
    crds = chart_crds()
    if kind in crds:
        crd = crds[kind]
        version = crd["spec"]["versions"][0]
        assert obj["apiVersion"] == f"{crd['spec']['group']}/{version['name']}"
        jsonschema.validate(obj, version["schema"]["openAPIV3Schema"])
        return
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


# ---------------------------------------------------------------------------------------------


def test_chart_metadata() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "kubellm"
    assert meta["appVersion"] == "0.1.0"


@pytest.mark.parametrize("values", list(COMBINATIONS.values()), ids=list(COMBINATIONS))
def test_chart_lints_strict(values: dict[str, Any]) -> None:
    report = helm.lint(str(CHART), values, strict=True, namespace=NS, kube_version="v1.31.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("values", list(COMBINATIONS.values()), ids=list(COMBINATIONS))
def test_every_rendered_object_is_valid(values: dict[str, Any]) -> None:
    objs = render(values)
    assert objs
    for obj in objs:
        try:
            validate(obj)
        except Exception as exc:  # name the object in the failure
            pytest.fail(f"{obj['kind']}/{obj['metadata'].get('name')}: {exc}")


def test_chart_crds_are_valid() -> None:
    kinds = set()
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        kubernetes_validate.validate(crd, K8S_VERSION, strict=True)
        assert path.name == f"{crd['metadata']['name']}.yaml"
        kinds.add(crd["spec"]["names"]["kind"])
    assert {"LLMDeployment", "KopfPeering", "ClusterKopfPeering"} <= kinds


def test_chart_crds_identical_to_top_level() -> None:
    """charts/kubellm/crds/ and manifests/base/crds/ are copies of the generated crds/."""
    top = {p.name: p.read_bytes() for p in TOP_CRDS.glob("*.yaml")}
    assert top, "crds/ is empty: `make crds` generates the CRDs"
    for copy_dir in (CHART / "crds", ROOT / "manifests" / "base" / "crds"):
        copies = {p.name: p.read_bytes() for p in copy_dir.glob("*.yaml")}
        assert sorted(copies) == sorted(top), f"{copy_dir} holds other files than crds/"
        for name, content in top.items():
            assert copies[name] == content, (
                f"{copy_dir / name} differs from crds/{name}: run make crds"
            )


def test_default_render_objects() -> None:
    objs = render()
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(
        [
            "ClusterKopfPeering",
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",  # prometheus-adapter rules
            "Deployment",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    for obj in objs:
        cluster_scoped = obj["kind"] in {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
        assert ("namespace" in obj["metadata"]) != cluster_scoped, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubellm"


# --- RBAC ------------------------------------------------------------------------------------

RW = ["get", "list", "watch", "create", "patch", "update", "delete"]
NAMESPACED_RULES = {
    ("kubellm.io", "llmdeployments"): ["get", "list", "watch"],  # never its spec or metadata
    ("kubellm.io", "llmdeployments/status"): ["get", "patch", "update"],
    ("", "events"): ["create", "patch"],
    ("events.k8s.io", "events"): ["create", "patch"],
    ("", "services"): RW,
    ("", "pods"): ["get", "list", "watch"],
    ("apps", "deployments"): RW,
    ("apps", "controllerrevisions"): ["get", "list", "watch", "create", "patch", "delete"],
    ("policy", "poddisruptionbudgets"): RW,
    ("autoscaling", "horizontalpodautoscalers"): RW,
    ("leaderworkerset.x-k8s.io", "leaderworkersets"): RW,
    ("gateway.networking.k8s.io", "httproutes"): RW,
    ("monitoring.coreos.com", "podmonitors"): RW,
    ("keda.sh", "scaledobjects"): RW,
    ("keda.sh", "triggerauthentications"): RW,
}
DISCOVERY_RULES = {
    ("apiextensions.k8s.io", "customresourcedefinitions"): ["get", "list", "watch"],
    ("", "namespaces"): ["get", "list", "watch"],  # Kopf lists them even with --namespace
}
PEERING = ["get", "list", "watch", "patch", "create"]
CLUSTERWIDE_RULES = {
    ("kopf.dev", "clusterkopfpeerings"): PEERING,
    ("kopf.dev", "kopfpeerings"): PEERING,
}


def flatten(rules: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """Rules on whole resources (rules on named objects: `named`)."""
    out: dict[tuple[str, str], list[str]] = {}
    for rule in rules:
        if "resourceNames" in rule:
            continue
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert (group, resource) not in out, f"duplicate rule for {group}/{resource}"
                out[(group, resource)] = rule["verbs"]
    return out


def named(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for rule in rules if "resourceNames" in rule]


def assert_least_privilege(rules: list[dict[str, Any]]) -> None:
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], f"wildcard in {rule}"
        if rule.get("resourceNames"):  # Secrets only by name, read only
            assert rule["resources"] == ["secrets"] and rule["verbs"] == ["get"], rule
        else:
            assert not {"secrets", "configmaps"} & set(rule["resources"]), rule
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_rbac_clusterwide_is_exactly_the_list() -> None:
    objs = render()
    role = one(objs, "ClusterRole")
    assert_least_privilege(role["rules"])
    assert flatten(role["rules"]) == {**NAMESPACED_RULES, **DISCOVERY_RULES, **CLUSTERWIDE_RULES}
    binding = one(objs, "ClusterRoleBinding")
    sa = one(objs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NS}
    ]
    assert not by_kind(objs, "Role")


def test_rbac_watch_namespaces_uses_roles() -> None:
    objs = render(NAMESPACED)
    cluster_role = one(objs, "ClusterRole")
    assert flatten(cluster_role["rules"]) == DISCOVERY_RULES
    roles = by_kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert_least_privilege(role["rules"])
        assert flatten(role["rules"]) == {
            **NAMESPACED_RULES,
            ("kopf.dev", "kopfpeerings"): PEERING,
        }
    bindings = by_kind(objs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["subjects"][0]["namespace"] == NS
    peerings = by_kind(objs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    assert not by_kind(objs, "ClusterKopfPeering")
    args = container(objs)["args"]
    assert args[args.index("--namespace") + 1] == "team-a"
    assert args.count("--namespace") == 2 and "team-b" in args


def test_no_secret_access_unless_prometheus_secrets_are_named() -> None:
    assert named(one(render(), "ClusterRole")["rules"]) == []
    names = ["prometheus-reader", "prom.auth"]
    rules = named(one(render({"prometheusAuth": {"secretNames": names}}), "ClusterRole")["rules"])
    assert rules == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": names, "verbs": ["get"]}
    ]
    objs = render({**NAMESPACED, "prometheusAuth": {"secretNames": names}})
    for role in by_kind(objs, "Role"):
        assert_least_privilege(role["rules"])
        assert named(role["rules"]) == rules
    assert named(one(objs, "ClusterRole")["rules"]) == []  # discovery only


def test_gpu_node_labels_reach_the_operator() -> None:
    args = container(render())["args"]
    assert args[args.index("--gpu-node-labels") + 1] == "nvidia"
    args = container(render({"gpuNodeLabels": "gke"}))["args"]
    assert args[args.index("--gpu-node-labels") + 1] == "gke"


def test_rbac_can_be_disabled() -> None:
    objs = render({"rbac": {"create": False}})
    assert not [o for o in objs if o["apiVersion"].startswith("rbac.authorization.k8s.io")]


# --- the operator Deployment -----------------------------------------------------------------


def container(objs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    c: dict[str, Any] = pod["containers"][0]
    return c


def test_deployment_command_and_args() -> None:
    objs = render()
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 2
    assert deploy["spec"]["strategy"]["type"] == "RollingUpdate"
    c = container(objs)
    assert c["command"] == ["kubellm"]
    assert c["args"][:7] == [
        "run",
        "--metrics-port",
        "8080",
        "--health-port",
        "8081",
        "--log-format",
        "json",
    ]
    assert "--standalone" not in c["args"]
    assert (
        c["args"][c["args"].index("--peering") + 1]
        == one(objs, "ClusterKopfPeering")["metadata"]["name"]
    )
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http-metrics": 8080, "health": 8081}
    assert c["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }


def test_deployment_security_context_is_restricted() -> None:
    for values in COMBINATIONS.values():
        for deploy in by_kind(render(values), "Deployment"):
            check_restricted(deploy["spec"]["template"]["spec"])


def check_restricted(pod: dict[str, Any]) -> None:
    """The restricted Pod Security profile, and nothing but emptyDir volumes."""
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["enableServiceLinks"] is False
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 65532
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc.get("privileged", False) is False
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    tmp = next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
    assert "emptyDir" in tmp
    assert all(set(v) <= {"name", "emptyDir"} for v in pod["volumes"]), "only emptyDir volumes"


def test_deployment_spreads_replicas() -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    selector = one(render(), "Deployment")["spec"]["selector"]["matchLabels"]
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector


def test_standalone_single_replica() -> None:
    objs = render(STANDALONE)
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert deploy["spec"]["template"]["spec"]["priorityClassName"] == "system-cluster-critical"
    args = container(objs)["args"]
    assert "--standalone" in args and "--peering" not in args
    assert not by_kind(objs, "ClusterKopfPeering")
    assert not by_kind(objs, "PodDisruptionBudget")


def test_standalone_with_two_replicas_fails() -> None:
    with pytest.raises(helm.HelmError, match="standalone"):
        render({"standalone": True, "replicas": 2})


def test_image_tag_and_digest() -> None:
    assert container(render())["image"] == "ghcr.io/kubellm/kubellm:0.1.0"
    assert container(render({"image": {"tag": "0.2.0"}}))["image"].endswith(":0.2.0")
    digest = container(render(COMBINATIONS["digest"]))["image"]
    assert digest == "registry.example/kubellm@sha256:" + "a" * 64


def test_metrics_service_selects_operator_pods() -> None:
    objs = render()
    svc = one(objs, "Service")
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http-metrics", "protocol": "TCP"}
    ]


# --- values.schema.json ----------------------------------------------------------------------

BAD_VALUES = [
    {"replicas": 0},
    {"replicas": "two"},
    {"logFormat": "xml"},
    {"watchNamespaces": ["Not_A_Namespace"]},
    {"serviceMonitor": {"enabled": "yes"}},
    {"serviceMonitor": {"interval": "30 seconds"}},
    {"image": {"digest": "latest"}},
    {"image": {"pullPolicy": "Sometimes"}},
    {"unknownTopLevelKey": True},
    {"podMonitor": {"typo": True}},
    {"prometheusRule": {"rolloutSuccessRatioThreshold": 1.5}},
    {"gpuNodeLabels": "oracle"},
    {"prometheusAuth": {"secretNames": ["Not_A_Secret"]}},
    {"prometheusAuth": {"secretName": "prom"}},
]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=[str(b) for b in BAD_VALUES])
def test_schema_rejects_bad_values(bad: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmError):
            chart.render(bad, name="kubellm", namespace=NS)
        with pytest.raises(helm.HelmError):
            chart.validate_schema(chart.merge_values(copy.deepcopy(bad)))


def test_schema_accepts_every_combination() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        for values in COMBINATIONS.values():
            chart.validate_schema(chart.merge_values(copy.deepcopy(values)))


# --- monitoring objects ----------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_service() -> None:
    objs = render(FULL)
    sm = one(objs, "ServiceMonitor")
    svc = one(objs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"]
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
    assert sm["metadata"]["labels"]["release"] == "prometheus"


def test_pod_monitor_selects_engine_pods_and_relabels() -> None:
    pm = one(render(FULL), "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "kubellm",
        "app.kubernetes.io/component": "inference",
    }
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    endpoint = pm["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets == {
        "__metrics_path__": ["__meta_kubernetes_pod_annotation_kubellm_io_metrics_path"],
        "llmdeployment": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
        "revision": ["__meta_kubernetes_pod_label_kubellm_io_revision"],
        "engine": ["__meta_kubernetes_pod_label_kubellm_io_engine"],
    }
    path_rule = endpoint["relabelings"][0]
    # Only a non-empty annotation overrides the default path.
    assert path_rule["regex"] == "(.+)" and path_rule["replacement"] == "$1"


@pytest.mark.parametrize(
    ("values", "operator_pod_monitors"),
    [
        ({}, True),
        ({"podMonitor": {"enabled": True}}, False),
        ({"podMonitor": {"perLLMDeployment": False}}, False),
    ],
)
def test_engines_are_scraped_by_one_pod_monitor(
    values: dict[str, Any], operator_pod_monitors: bool
) -> None:
    """The chart's PodMonitor turns the operator's per-LLMDeployment ones off."""
    objs = render(values)
    args = container(objs)["args"]
    assert ("--no-pod-monitor" not in args) == operator_pod_monitors
    assert bool(by_kind(objs, "PodMonitor")) == values.get("podMonitor", {}).get("enabled", False)


def test_dashboard_configmap_ships_the_json() -> None:
    objs = render(FULL)
    cms = {c["metadata"]["name"]: c for c in by_kind(objs, "ConfigMap")}
    dash = cms["kubellm-dashboard"]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dash["metadata"]["namespace"] == "monitoring"
    assert dash["data"]["kubellm.json"] == (
        CHART / "dashboards" / "kubellm.json"
    ).read_text().rstrip("\n")


def test_notes_render() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        notes = chart.render(NAMESPACED, name="kubellm", namespace=NS)[
            "kubellm/templates/NOTES.txt"
        ]
    assert "team-a, team-b" in notes
    assert "kubellm status" in notes


def test_each_shard_is_an_operator_of_its_own_namespaces_with_its_own_peering() -> None:
    objs = render(COMBINATIONS["shards"])
    deployments = {d["metadata"]["name"]: d for d in by_kind(objs, "Deployment")}
    assert set(deployments) == {"kubellm-a", "kubellm-b"}
    for name, namespaces, replicas in (("a", ["team-a", "team-b"], 2), ("b", ["team-c"], 3)):
        deploy = deployments[f"kubellm-{name}"]
        args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        watched = [args[i + 1] for i, a in enumerate(args) if a == "--namespace"]
        assert watched == namespaces
        assert args[args.index("--peering") + 1] == f"kubellm-{name}"
        assert deploy["spec"]["replicas"] == replicas
        selector = deploy["spec"]["selector"]["matchLabels"]
        assert selector["kubellm.io/shard"] == name
        assert selector.items() <= deploy["spec"]["template"]["metadata"]["labels"].items()
        peerings = [
            p for p in by_kind(objs, "KopfPeering") if p["metadata"]["name"] == f"kubellm-{name}"
        ]
        assert sorted(p["metadata"]["namespace"] for p in peerings) == namespaces
    roles = sorted(r["metadata"]["namespace"] for r in by_kind(objs, "Role"))
    assert roles == ["team-a", "team-b", "team-c"]
    assert not by_kind(objs, "ClusterKopfPeering")
    assert len(by_kind(objs, "PodDisruptionBudget")) == 2
    service = one(objs, "Service")  # one metrics Service selects every shard's pods
    for deploy in deployments.values():
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()


def test_a_namespace_in_two_shards_or_shards_beside_watch_namespaces_fail() -> None:
    overlap = [{"name": "a", "namespaces": ["x", "y"]}, {"name": "b", "namespaces": ["y"]}]
    with pytest.raises(helm.HelmError, match="namespace y is in shards a and b"):
        render({"shards": overlap})
    with pytest.raises(helm.HelmError, match="not both"):
        render({"shards": overlap[:1], "watchNamespaces": ["z"]})
