"""The local control plane itself: simulated GPU nodes, scheduling, GC, upstream CRDs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
KubectlJSON = Callable[..., Any]
WaitFor = Callable[..., Any]

H100 = "NVIDIA-H100-80GB-HBM3"
L4 = "NVIDIA-L4"


def test_server_version(kubectl_json: KubectlJSON) -> None:
    version = kubectl_json("version")
    assert version["serverVersion"]["gitVersion"] == "v1.36.3"
    assert version["clientVersion"]["minor"] == version["serverVersion"]["minor"]


def test_nodes_ready_with_gpu_labels(kubectl_json: KubectlJSON) -> None:
    nodes = {n["metadata"]["name"]: n for n in kubectl_json("get", "nodes")["items"]}
    expected = {
        **{f"gpu-h100-{i}": H100 for i in range(4)},
        **{f"gpu-l4-{i}": L4 for i in range(2)},
        "cpu-0": None,
    }
    assert set(expected) <= set(nodes)
    for name, product in expected.items():
        node = nodes[name]
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", name
        taints = {t["key"] for t in node["spec"].get("taints", [])}
        assert not taints, (name, taints)
        labels = node["metadata"]["labels"]
        if product is None:
            assert "nvidia.com/gpu" not in node["status"]["allocatable"]
            assert "nvidia.com/gpu.present" not in labels
            continue
        assert labels["nvidia.com/gpu.product"] == product
        assert labels["nvidia.com/gpu.present"] == "true"
        assert labels["nvidia.com/gpu.count"] == "8"
        assert labels["nvidia.com/gpu.memory"] == ("81559" if product == H100 else "23034")
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert node["status"]["capacity"]["nvidia.com/gpu"] == "8"


def _gpu_deployment(name: str, gpus: int, product: str = H100) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "nodeSelector": {"nvidia.com/gpu.product": product},
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "engine",
                                "image": "vllm/vllm-openai:latest",
                                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                                "readinessProbe": {"httpGet": {"path": "/health", "port": 8000}},
                            }
                        ],
                    },
                },
            },
        }
    )


def _pods(kubectl_json: KubectlJSON, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json("get", "pods", "-n", namespace, "-l", f"app={app}")[
        "items"
    ]
    return items


def _first_ready(kubectl_json: KubectlJSON, namespace: str, app: str) -> dict[str, Any] | None:
    return next((p for p in _pods(kubectl_json, namespace, app) if _running_ready(p)), None)


def _running_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status", {})
    conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
    return status.get("phase") == "Running" and conditions.get("Ready") == "True"


def test_gpu_pod_scheduled_on_h100_and_ready(
    kubectl: Kubectl, kubectl_json: KubectlJSON, wait_for: WaitFor, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_gpu_deployment("fits", 8))
    pod = wait_for(
        lambda: _first_ready(kubectl_json, namespace, "fits"),
        timeout=60,
        message="a Running+Ready pod of Deployment fits",
    )
    assert pod["spec"]["nodeName"].startswith("gpu-h100-")
    kubectl("rollout", "status", "deployment/fits", "-n", namespace, "--timeout=60s", timeout=90)


def test_too_many_gpus_stays_pending(
    kubectl: Kubectl, kubectl_json: KubectlJSON, wait_for: WaitFor, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_gpu_deployment("toobig", 9))

    def unschedulable() -> dict[str, Any] | None:
        for p in _pods(kubectl_json, namespace, "toobig"):
            for c in p.get("status", {}).get("conditions", []):
                if c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable":
                    return p
        return None

    pod = wait_for(unschedulable, timeout=60, message="PodScheduled=False/Unschedulable")
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")
    events = wait_for(
        lambda: [
            e
            for e in kubectl_json(
                "get",
                "events",
                "-n",
                namespace,
                "--field-selector",
                f"involvedObject.name={pod['metadata']['name']}",
            )["items"]
            if e["reason"] == "FailedScheduling"
        ],
        timeout=30,
        message="a FailedScheduling event",
    )
    assert "Insufficient nvidia.com/gpu" in events[0]["message"]


def test_gpu_pod_on_l4(
    kubectl: Kubectl, kubectl_json: KubectlJSON, wait_for: WaitFor, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=_gpu_deployment("l4", 1, product=L4))
    pod = wait_for(
        lambda: _first_ready(kubectl_json, namespace, "l4"),
        timeout=60,
        message="a Running+Ready pod on an L4 node",
    )
    assert pod["spec"]["nodeName"].startswith("gpu-l4-")


def test_owner_deletion_garbage_collects_children(
    kubectl: Kubectl, kubectl_json: KubectlJSON, wait_for: WaitFor, namespace: str
) -> None:
    kubectl("create", "configmap", "owner", "-n", namespace)
    uid = kubectl_json("get", "configmap", "owner", "-n", namespace)["metadata"]["uid"]
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "child",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(child))
    kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        lambda: kubectl("get", "configmap", "child", "-n", namespace, check=False).returncode != 0,
        timeout=60,
        message="the garbage collector to delete the child ConfigMap",
    )


def test_deployment_cascade_delete(
    kubectl: Kubectl, kubectl_json: KubectlJSON, wait_for: WaitFor, namespace: str
) -> None:
    kubectl("create", "deployment", "web", "-n", namespace, "--image=nginx", "--replicas=2")
    wait_for(
        lambda: len([p for p in _pods(kubectl_json, namespace, "web") if _running_ready(p)]) == 2,
        timeout=60,
        message="2 ready pods",
    )
    assert kubectl_json("get", "replicasets", "-n", namespace, "-l", "app=web")["items"]
    kubectl("delete", "deployment", "web", "-n", namespace, "--cascade=background")
    wait_for(
        lambda: (
            not kubectl_json("get", "replicasets", "-n", namespace, "-l", "app=web")["items"]
            and not _pods(kubectl_json, namespace, "web")
        ),
        timeout=60,
        message="ReplicaSet and Pods garbage-collected",
    )


UPSTREAM_CRDS = [
    "leaderworkersets.leaderworkerset.x-k8s.io",
    "gatewayclasses.gateway.networking.k8s.io",
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "podmonitors.monitoring.coreos.com",
    "servicemonitors.monitoring.coreos.com",
    "prometheusrules.monitoring.coreos.com",
    "scaledobjects.keda.sh",
]


@pytest.mark.parametrize("crd", UPSTREAM_CRDS)
def test_upstream_crd_established(kubectl_json: KubectlJSON, crd: str) -> None:
    obj = kubectl_json("get", "crd", crd)
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions.get("Established") == "True"


SAMPLES: dict[str, dict[str, Any]] = {
    "HTTPRoute": {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "llm"},
        "spec": {
            "parentRefs": [{"name": "inference-gateway"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                    "backendRefs": [{"name": "llm", "port": 8000, "weight": 90}],
                }
            ],
        },
    },
    "PodMonitor": {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "llm"},
        "spec": {
            "selector": {"matchLabels": {"app": "llm"}},
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    },
    "ScaledObject": {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "llm"},
        "spec": {
            "scaleTargetRef": {"name": "llm"},
            "minReplicaCount": 1,
            "maxReplicaCount": 4,
            "triggers": [
                {
                    "type": "prometheus",
                    "metadata": {
                        "serverAddress": "http://prometheus:9090",
                        "query": "sum(vllm:num_requests_waiting)",
                        "threshold": "10",
                    },
                }
            ],
        },
    },
    "LeaderWorkerSet": {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": "llm"},
        "spec": {
            "replicas": 1,
            "leaderWorkerTemplate": {
                "size": 2,
                "workerTemplate": {
                    "spec": {
                        "containers": [
                            {
                                "name": "engine",
                                "image": "vllm/vllm-openai:latest",
                                "resources": {"limits": {"nvidia.com/gpu": "8"}},
                            }
                        ]
                    }
                },
            },
        },
    },
}


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_upstream_sample_server_dry_run(kubectl: Kubectl, namespace: str, kind: str) -> None:
    proc = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(SAMPLES[kind])
    )
    assert "(server dry run)" in proc.stdout


def test_invalid_upstream_sample_rejected(kubectl: Kubectl, namespace: str) -> None:
    bad = json.loads(json.dumps(SAMPLES["HTTPRoute"]))
    bad["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Glob"
    proc = kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(bad), check=False
    )
    assert proc.returncode != 0
    assert "Unsupported value" in proc.stderr
