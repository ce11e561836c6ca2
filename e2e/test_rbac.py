"""The chart's RBAC is enough: the operator's journey runs under its ServiceAccount's token.

The chart is rendered by the real Helm engine; its ServiceAccount, ClusterRole and binding
are applied to the local control plane; the operator runs with a kubeconfig holding only that
ServiceAccount's token. Any missing permission shows up as a failed journey or a 403 in the
operator's log; `kubectl auth can-i` shows what it must never have.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kopf
import pytest
import yaml

from conftest import KUBECONFIG, ROOT, run_kubectl
from kubellm.api.models import PrometheusAuth
from kubellm.k8s.client import KubeClient
from kubellm.k8s.prometheus import PrometheusError, load_credentials
from operator_process import OperatorProcess, apply_crds
from test_operator import condition, get, llmd, poll, serving_pods, wait_ready

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
RELEASE_NAMESPACE = "kubellm-system"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}


def chart_rbac(
    values: dict[str, Any] | None = None, release: str = "kubellm"
) -> list[dict[str, Any]]:
    with helm.Chart.load(str(ROOT / "charts" / "kubellm")) as chart:
        manifests = chart.render(values or {}, name=release, namespace=RELEASE_NAMESPACE)
    objects = [
        o
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt")
        for o in yaml.safe_load_all(text)
        if o
    ]
    return [o for o in objects if o["kind"] in RBAC_KINDS]


def kubeconfig_for(objects: list[dict[str, Any]], directory: Path) -> Path:
    """Apply the chart's RBAC objects; a kubeconfig holding only its ServiceAccount's token."""
    run_kubectl("create", "namespace", RELEASE_NAMESPACE, check=False)
    run_kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))
    (account,) = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
    token = run_kubectl(
        "create", "token", account, "-n", RELEASE_NAMESPACE, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(KUBECONFIG.read_text())
    admin["users"] = [{"name": "operator", "user": {"token": token}}]
    for context in admin["contexts"]:
        context["context"]["user"] = "operator"
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(admin))
    return path


@pytest.fixture(scope="module")
def service_account_kubeconfig(cluster: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kubeconfig_for(chart_rbac(), tmp_path_factory.mktemp("rbac"))


@pytest.fixture(scope="module")
def operator(service_account_kubeconfig: Path) -> Iterator[OperatorProcess]:
    apply_crds()
    process = OperatorProcess(kubeconfig=service_account_kubeconfig)  # with peering
    yield process
    process.stop()


def can_i(kubeconfig: Path, *args: str) -> bool:
    proc = run_kubectl("--kubeconfig", str(kubeconfig), "auth", "can-i", *args, check=False)
    return proc.stdout.strip() == "yes"


def test_the_journey_runs_under_the_charts_service_account(
    operator: OperatorProcess, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("rbac"))
    wait_ready("rbac", namespace)
    kubectl("scale", "llmd/rbac", "-n", namespace, "--replicas=3")
    assert wait_ready("rbac", namespace)["status"]["readyReplicas"] == 3
    quick = {"canary": {"steps": [{"weight": 50, "pause": {"duration": "2s"}}]}}
    model = {"name": "meta-llama/Llama-3.3-70B-Instruct"}
    change = llmd("rbac", replicas=3, rollout=quick, model=model)
    kubectl("apply", "-n", namespace, "-f", "-", input=change)
    poll(
        lambda: (get("llmd", "rbac", namespace).get("status") or {}).get("history"),
        timeout=120,
        message="the model change promoted",
    )
    infeasible = {"gpu": {"type": "L4"}, "tensorParallel": 1, "pipelineParallel": 1}
    bad = llmd("rbac", replicas=3, rollout=quick, model=model, resources=infeasible)
    kubectl("apply", "-n", namespace, "-f", "-", input=bad)
    poll(
        lambda: condition(get("llmd", "rbac", namespace), "SpecValid").get("status") == "False",
        timeout=30,
        message="SpecValid=False",
    )
    events = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "InvalidSpec" in events and "created Deployment" in events
    kubectl("delete", "llmd", "rbac", "-n", namespace)
    poll(lambda: not serving_pods("rbac", namespace), timeout=60, message="pods gone")
    denied = re.findall(
        r'forbidden: User "system:serviceaccount:[^"]+" cannot [^\n]+', operator.log.read_text()
    )
    assert denied == []


@pytest.mark.parametrize(
    "request_",
    [
        ("get", "secrets", "-A"),
        ("list", "secrets", "-A"),
        ("get", "configmaps", "-A"),
        ("*", "*", "-A"),
        ("create", "pods", "-A"),
        ("update", "llmdeployments.kubellm.io", "-A"),
        ("patch", "llmdeployments.kubellm.io", "-A"),  # the spec and metadata are the user's
        ("delete", "llmdeployments.kubellm.io", "-A"),
        ("create", "clusterroles"),
    ],
)
def test_what_the_service_account_must_never_do(
    service_account_kubeconfig: Path, request_: tuple[str, ...]
) -> None:
    assert not can_i(service_account_kubeconfig, *request_)


def test_what_it_needs_is_granted(service_account_kubeconfig: Path) -> None:
    for request_ in [
        ("patch", "deployments", "-A"),
        ("update", "services", "-A"),  # drift repair
        ("create", "controllerrevisions", "-A"),
        ("patch", "llmdeployments.kubellm.io", "--subresource=status", "-A"),
        ("create", "events", "-A"),
        ("watch", "pods", "-A"),
    ]:
        assert can_i(service_account_kubeconfig, *request_), request_


def test_the_operator_reads_only_the_prometheus_secrets_the_chart_names(
    cluster: Path, tmp_path: Path, namespace: str
) -> None:
    """`prometheusAuth.secretNames`: `get` on those names, nothing else about Secrets."""
    values = {"prometheusAuth": {"secretNames": ["prometheus-reader"]}}
    kubeconfig = kubeconfig_for(chart_rbac(values, release="kubellm-auth"), tmp_path)
    for name in ("prometheus-reader", "other"):
        run_kubectl(
            "create", "secret", "generic", name, "-n", namespace, "--from-literal=token=t0k3n"
        )
    assert can_i(kubeconfig, "get", "secret/prometheus-reader", "-n", namespace)
    assert not can_i(kubeconfig, "get", "secret/other", "-n", namespace)
    assert not can_i(kubeconfig, "list", "secrets", "-n", namespace)
    assert not can_i(kubeconfig, "watch", "secrets", "-n", namespace)
    config = yaml.safe_load(kubeconfig.read_text())
    info = kopf.ConnectionInfo(
        server=config["clusters"][0]["cluster"]["server"],
        ca_data=config["clusters"][0]["cluster"]["certificate-authority-data"],
        token=config["users"][0]["user"]["token"],
    )

    async def read(secret: str) -> str | None:
        client = KubeClient(info)
        try:
            auth = PrometheusAuth(type="bearer", secret_name=secret)
            return (await load_credentials(client, namespace, auth)).authorization
        finally:
            await client.close()

    assert asyncio.run(read("prometheus-reader")) == "Bearer t0k3n"
    with pytest.raises(PrometheusError, match=r"forbidden.*prometheusAuth"):
        asyncio.run(read("other"))
