"""Production pods on a real API server, through kubectl: GPU node labels per cluster, graceful
serving pods, the platform team's pod template, and KEDA's Prometheus credentials.

The operator runs as on a GKE cluster (`--gpu-node-labels gke`). The simulated node
gpu-a100-gke-0 carries only GKE's accelerator label, no GPU feature discovery labels; the H100
and L4 nodes carry only feature-discovery labels.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, poll
from operator_process import OperatorProcess, apply_crds
from test_operator import condition, get, items, llmd, serving_pods, wait_ready

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
GKE_NODE = "gpu-a100-gke-0"
A100 = {"gpu": {"type": "A100-80GB"}}


@pytest.fixture(scope="module")
def operator(cluster: Path) -> Iterator[OperatorProcess]:
    apply_crds()
    process = OperatorProcess("--gpu-node-labels", "gke")
    yield process
    process.stop()


def running_pod(name: str, namespace: str) -> dict[str, Any]:
    (pod,) = serving_pods(name, namespace)
    assert pod["status"]["phase"] == "Running"
    return pod


def test_a_node_with_only_the_gke_label_gets_the_pod(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("gke", resources=A100, replicas=1))
    wait_ready("gke", namespace)
    pod = running_pod("gke", namespace)
    assert pod["spec"]["nodeName"] == GKE_NODE
    node_affinity = pod["spec"]["affinity"]["nodeAffinity"]
    terms = node_affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    (expression,) = terms[0]["matchExpressions"]
    assert expression["key"] == "cloud.google.com/gke-accelerator"
    node = get("node", GKE_NODE, namespace)
    assert "nvidia.com/gpu.product" not in node["metadata"]["labels"]


def test_the_spec_overrides_the_operators_gpu_labels(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    """H100 nodes here carry feature-discovery labels only: under GKE's scheme no node would
    match, so the LLMDeployment says `nodeLabels: nvidia` itself."""
    h100 = {"gpu": {"type": "H100-80GB", "nodeLabels": "nvidia"}}
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("gfd", resources=h100, replicas=1))
    wait_ready("gfd", namespace)
    assert running_pod("gfd", namespace)["spec"]["nodeName"].startswith("gpu-h100-")


def test_serving_pods_stop_gracefully_and_request_their_cache(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    body = llmd("graceful", resources=A100, replicas=1)
    kubectl("apply", "-n", namespace, "-f", "-", input=body)
    wait_ready("graceful", namespace)
    pod = running_pod("graceful", namespace)["spec"]
    engine = pod["containers"][0]
    # The API server kept the preStop sleep action and the long grace period.
    assert engine["lifecycle"]["preStop"] == {"sleep": {"seconds": 15}}
    args = engine["args"]
    drain = int(args[args.index("--shutdown-timeout") + 1])
    assert drain == 32768 // 20 + 1  # the longest request at maxContextLength
    assert pod["terminationGracePeriodSeconds"] == 15 + drain + 15
    cache = next(v for v in pod["volumes"] if v["name"] == "model-cache")
    assert cache["emptyDir"]["sizeLimit"] == engine["resources"]["requests"]["ephemeral-storage"]
    assert engine["resources"]["limits"]["memory"]


EXAMPLE = ROOT / "manifests" / "examples" / "platform-llama-8b.yaml"


def test_the_platform_example_reaches_the_running_pods(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    """manifests/examples/platform-llama-8b.yaml's template and Service, on the GKE node."""
    example = yaml.safe_load(EXAMPLE.read_text())["spec"]
    kubectl("create", "serviceaccount", "llm-weights-reader", "-n", namespace)
    kubectl("apply", "-f", "-", input=yaml.safe_dump(PRIORITY_CLASS))
    body = llmd(
        "platform",
        resources=A100,
        replicas=1,
        template=example["template"],
        service=example["service"],
    )
    kubectl("apply", "-n", namespace, "-f", "-", input=body)
    wait_ready("platform", namespace)
    pod = running_pod("platform", namespace)
    template = example["template"]
    assert template["metadata"]["labels"].items() <= pod["metadata"]["labels"].items()
    assert template["metadata"]["annotations"].items() <= pod["metadata"]["annotations"].items()
    spec = pod["spec"]
    assert spec["nodeName"] == GKE_NODE
    assert spec["serviceAccountName"] == "llm-weights-reader"
    assert any(v.get("projected") for v in spec["volumes"])  # the token is mounted
    assert spec["imagePullSecrets"] == template["spec"]["imagePullSecrets"]
    assert spec["priorityClassName"] == "inference" and spec["priority"] == 1000
    assert spec["topologySpreadConstraints"] == template["spec"]["topologySpreadConstraints"]
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["corporate-ca"]["mountPath"] == "/etc/ssl/corporate"
    (svc,) = items("services", namespace)
    assert svc["spec"]["type"] == "LoadBalancer"
    assert example["service"]["annotations"].items() <= svc["metadata"]["annotations"].items()


PRIORITY_CLASS = {
    "apiVersion": "scheduling.k8s.io/v1",
    "kind": "PriorityClass",
    "metadata": {"name": "inference"},
    "value": 1000,
    "description": "kubellm e2e: the platform example's serving pods",
}


def test_a_malformed_template_is_refused_by_field_without_touching_the_cluster(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    broken = {"spec": {"volumes": [{"name": "ca"}], "tolerations": [{"key": "a", "operator": 1}]}}
    body = llmd("broken", resources=A100, template=broken)
    kubectl("apply", "-n", namespace, "-f", "-", input=body)

    def refused() -> dict[str, Any] | None:
        obj = get("llmd", "broken", namespace)
        return obj if condition(obj, "SpecValid").get("status") == "False" else None

    obj = poll(refused, timeout=30, message="SpecValid=False")
    message = condition(obj, "SpecValid")["message"]
    assert "spec.template.spec.volumes[0]: a volume needs exactly one source" in message
    assert "spec.template.spec.tolerations[0].operator: must be a string" in message
    time.sleep(4)  # a resync later: nothing was applied, nothing crashed
    assert items("deployments", namespace) == []
    errors = [line for line in operator.log.read_text().splitlines() if "[ERROR" in line]
    assert not [line for line in errors if "broken" in line]  # no 422, no crash


def test_keda_gets_the_prometheus_credentials_by_reference(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    autoscaling = {
        "provider": "keda",
        "prometheusUrl": "https://prometheus.monitoring:9090",
        "prometheusAuth": {"type": "bearer", "secretName": "prometheus-reader", "caKey": "ca.crt"},
        "maxReplicas": 3,
        "target": 1000,
    }
    body = llmd("keda", resources=A100, autoscaling=autoscaling)
    kubectl("apply", "-n", namespace, "-f", "-", input=body)
    (authentication,) = poll(
        lambda: items("triggerauthentications.keda.sh", namespace),
        timeout=30,
        message="the TriggerAuthentication",
    )
    refs = authentication["spec"]["secretTargetRef"]
    assert {(r["parameter"], r["name"], r["key"]) for r in refs} == {
        ("bearerToken", "prometheus-reader", "token"),
        ("ca", "prometheus-reader", "ca.crt"),
    }
    (scaled,) = items("scaledobjects.keda.sh", namespace)
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["authenticationRef"]["name"] == authentication["metadata"]["name"]
    assert trigger["metadata"]["authModes"] == "bearer"
    owner = authentication["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "LLMDeployment" and owner["name"] == "keda"
