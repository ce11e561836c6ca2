"""The operator on a real API server, driven through kubectl as platform teams and SREs do."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import poll, run_kubectl
from operator_process import OperatorProcess, apply_crds

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def llmd(name: str, **spec: Any) -> str:
    body: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-70B-Instruct"},
        "engine": {"type": "vllm", "maxContextLength": 32768},
        "resources": {"gpu": {"type": "H100-80GB"}},
        "replicas": 2,
        **spec,
    }
    return json.dumps(
        {
            "apiVersion": "kubellm.io/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def get(kind: str, name: str, namespace: str) -> dict[str, Any]:
    proc = run_kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def items(kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", kind, "-n", namespace, "-o", "json"]
    if selector:
        args += ["-l", selector]
    result: list[dict[str, Any]] = json.loads(run_kubectl(*args).stdout)["items"]
    return result


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def wait_ready(name: str, namespace: str, timeout: float = 90) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj = get("llmd", name, namespace)
        status = obj.get("status") or {}
        generation = obj.get("metadata", {}).get("generation")
        if status.get("phase") == "Ready" and status.get("observedGeneration") == generation:
            return obj
        return None

    result: dict[str, Any] = poll(ready, timeout=timeout, message=f"{name} Ready")
    return result


def serving_pods(name: str, namespace: str) -> list[dict[str, Any]]:
    return items("pods", namespace, f"app.kubernetes.io/instance={name}")


@pytest.fixture(scope="module")
def operator(cluster: Path) -> Iterator[OperatorProcess]:
    apply_crds()
    process = OperatorProcess()
    yield process
    process.stop()


def test_apply_to_ready_with_pods_on_h100_nodes(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("llama"))
    obj = wait_ready("llama", namespace)
    status = obj["status"]
    assert status["sizing"]["tensorParallel"] == 4
    assert status["readyReplicas"] == 2 and status["ready"] == "2/2"
    assert condition(obj, "SpecValid")["status"] == "True"
    pods = serving_pods("llama", namespace)
    assert len(pods) == 2
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        node = get("node", pod["spec"]["nodeName"], namespace)
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert limits["nvidia.com/gpu"] == "4"
    kinds = {o["kind"] for o in items("deployments,services,pdb,podmonitors", namespace)}
    assert kinds == {"Deployment", "Service", "PodDisruptionBudget", "PodMonitor"}
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "created ControllerRevision llama-" in events and "created Deployment llama-" in events


def test_get_llmd_columns(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("cols"))
    wait_ready("cols", namespace)
    header, row = kubectl("get", "llmd", "-n", namespace).stdout.splitlines()[:2]
    assert header.split() == ["NAME", "ENGINE", "MODEL", "TP", "READY", "CANARY", "PHASE", "AGE"]
    assert row.split()[:7] == [
        "cols", "vllm", "meta-llama/Llama-3.1-70B-Instruct", "4", "2/2", "0", "Ready",
    ]  # fmt: skip


def test_kubectl_scale(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("scaled"))
    wait_ready("scaled", namespace)
    kubectl("scale", "llmd/scaled", "-n", namespace, "--replicas=3")
    obj = wait_ready("scaled", namespace)
    assert obj["status"]["readyReplicas"] == 3
    assert len(serving_pods("scaled", namespace)) == 3
    scale = json.loads(
        kubectl(
            "get",
            "--raw",
            f"/apis/kubellm.io/v1alpha1/namespaces/{namespace}/llmdeployments/scaled/scale",
        ).stdout
    )
    assert scale["status"]["replicas"] == 3
    assert "kubellm.io/serving=true" in scale["status"]["selector"]


def test_infeasible_update_keeps_the_serving_pods(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("keep"))
    wait_ready("keep", namespace)
    before = {p["metadata"]["uid"] for p in serving_pods("keep", namespace)}
    deployments = {
        d["metadata"]["name"]: d["metadata"]["resourceVersion"]
        for d in items("deployments", namespace)
    }
    infeasible = {"gpu": {"type": "L4"}, "tensorParallel": 1, "pipelineParallel": 1}
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("keep", resources=infeasible))

    def refused() -> dict[str, Any] | None:
        obj = get("llmd", "keep", namespace)
        spec_valid = condition(obj, "SpecValid")
        return obj if spec_valid.get("status") == "False" else None

    obj = poll(refused, timeout=30, message="SpecValid=False")
    message = condition(obj, "SpecValid")["message"]
    assert "spec.resources" in message and "GiB" in message
    assert condition(obj, "Degraded")["status"] == "True"
    assert obj["status"]["phase"] == "Degraded"
    time.sleep(4)  # a resync later, still nothing touched
    assert {p["metadata"]["uid"] for p in serving_pods("keep", namespace)} == before
    assert {
        d["metadata"]["name"]: d["metadata"]["resourceVersion"]
        for d in items("deployments", namespace)
    } == deployments
    events = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    warnings = [e for e in events if e["reason"] == "InvalidSpec"]
    assert warnings and "spec.resources" in warnings[0]["message"]


def test_steady_state_makes_no_writes(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("steady"))
    wait_ready("steady", namespace)
    time.sleep(4)  # let the status settle

    def versions() -> dict[str, str]:
        objects = items("llmd,deployments,services,pdb,podmonitors", namespace)
        return {
            f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for o in objects
        }

    writes = operator.metric("kubellm_api_writes_total", namespace=namespace)
    assert writes > 0  # its creation was counted here
    before = versions()
    time.sleep(7)  # two resyncs of 3 s
    assert versions() == before
    assert operator.metric("kubellm_api_writes_total", namespace=namespace) == writes


def test_delete_cascades(operator: OperatorProcess, kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("gone"))
    wait_ready("gone", namespace)
    kubectl("delete", "llmd", "gone", "-n", namespace)
    poll(
        lambda: not items("deployments,services,pdb", namespace, "app.kubernetes.io/instance=gone"),
        timeout=60,
        message="children garbage-collected",
    )


def test_two_operators_with_peering_only_one_acts(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    standby = OperatorProcess()
    try:
        kubectl("apply", "-n", namespace, "-f", "-", input=llmd("peer"))
        wait_ready("peer", namespace)
        time.sleep(4)
        assert standby.metric("kubellm_reconcile_total") == 0, standby.tail()
        assert operator.metric("kubellm_reconcile_total") > 0
    finally:
        standby.stop()


def test_children_the_spec_no_longer_needs_are_removed(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    scaling = {"minReplicas": 1, "maxReplicas": 4, "target": 1500}
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("auto", autoscaling=scaling))
    wait_ready("auto", namespace)
    (hpa,) = items("hpa", namespace)
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "LLMDeployment"
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("auto"))
    poll(lambda: not items("hpa", namespace), timeout=30, message="the HPA removed")
    assert items("deployments", namespace)


def test_no_finalizer_so_deletes_never_wait_for_the_operator(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("free"))
    obj = wait_ready("free", namespace)
    assert not obj["metadata"].get("finalizers")
