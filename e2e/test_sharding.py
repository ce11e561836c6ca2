"""Past one operator: shards, each an operator of its own namespaces with its own peering.

The chart is rendered with two shards by the real Helm engine; its RBAC (one Role per
namespace, CRD discovery cluster-wide) is applied, and each shard's operators run with the
exact arguments of that shard's Deployment under the chart's ServiceAccount token. Shard a
has two replicas (peering "<name>-a"), shard b one. Everything is driven through kubectl.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from conftest import ROOT, fresh_namespace, poll
from operator_process import OperatorProcess, apply_crds
from test_operator import get, llmd, wait_ready
from test_rbac import RELEASE_NAMESPACE, kubeconfig_for

RBAC = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
SMALL = {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}, "replicas": 1}
FAILOVER_SECONDS = 90  # peering lifetime 20 s, a look every 2 s, then the reconcile


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(ROOT / "charts" / "kubellm")) as chart:
        manifests = chart.render(values, name="kubellm", namespace=RELEASE_NAMESPACE)
    return [
        o
        for path, text in sorted(manifests.items())
        if not path.endswith("NOTES.txt")
        for o in yaml.safe_load_all(text)
        if o
    ]


def shard_arguments(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each shard's `kubellm run` arguments, as its Deployment has them (ports left out)."""
    shards = {}
    for deploy in (o for o in objects if o["kind"] == "Deployment"):
        args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        kept = [
            a
            for i, a in enumerate(args[1:], 1)
            if not {a, args[i - 1]} & {"--metrics-port", "--health-port"}
        ]
        shards[deploy["metadata"]["labels"]["kubellm.io/shard"]] = kept
    return shards


def writes_by_namespace(operator: OperatorProcess) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in operator.metrics().splitlines():
        if line.startswith("kubellm_api_writes_total{"):
            namespace = line.split('namespace="', 1)[1].split('"', 1)[0]
            found[namespace] = found.get(namespace, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def children_applied(operator: OperatorProcess) -> float:
    return operator.metric("kubellm_children_applied_total")


@pytest.fixture
def namespaces(cluster: Path) -> Iterator[dict[str, list[str]]]:
    with contextlib.ExitStack() as stack:
        a1, a2, b1 = (stack.enter_context(fresh_namespace("e2e-shard-")) for _ in range(3))
        yield {"a": [a1, a2], "b": [b1]}


def scale(kubectl: Callable[..., Any], name: str, namespace: str, replicas: int) -> None:
    kubectl("scale", "llmd", name, "-n", namespace, f"--replicas={replicas}")


def wait_scaled(name: str, namespace: str, replicas: int, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        obj = get("llmd", name, namespace)
        status = obj.get("status") or {}
        ok = status.get("readyReplicas") == replicas and status.get("phase") == "Ready"
        return (
            obj
            if ok and status.get("observedGeneration") == obj["metadata"]["generation"]
            else None
        )

    result: dict[str, Any] = poll(done, timeout=timeout, message=f"{name} at {replicas} Ready")
    return result


def test_each_shard_touches_only_its_namespaces_and_fails_over_on_its_own(
    namespaces: dict[str, list[str]],
    kubectl: Callable[..., Any],
    tmp_path: Path,
) -> None:
    apply_crds()
    peering = f"kubellm-{namespaces['b'][0][-8:]}"  # this test's own peering objects
    objects = render(
        {
            "peering": {"name": peering},
            "shards": [
                {"name": name, "namespaces": watched} for name, watched in namespaces.items()
            ],
        }
    )
    kubeconfig = kubeconfig_for([o for o in objects if o["kind"] in RBAC], tmp_path)
    arguments = shard_arguments(objects)
    assert arguments["a"][arguments["a"].index("--peering") + 1] == f"{peering}-a"

    a_leader = OperatorProcess(*arguments["a"], kubeconfig=kubeconfig)
    time.sleep(1)  # started first: the highest priority, it leads shard a
    a_standby = OperatorProcess(*arguments["a"], kubeconfig=kubeconfig)
    b_only = OperatorProcess(*arguments["b"], kubeconfig=kubeconfig)
    operators = [a_leader, a_standby, b_only]
    try:
        (a_namespace, _), (b_namespace,) = namespaces["a"], namespaces["b"]
        kubectl("apply", "-n", a_namespace, "-f", "-", input=llmd("alpha", **SMALL))
        kubectl("apply", "-n", b_namespace, "-f", "-", input=llmd("beta", **SMALL))
        wait_ready("alpha", a_namespace)
        wait_ready("beta", b_namespace)

        # Each shard wrote only in its own namespaces; the standby wrote no object at all.
        assert set(writes_by_namespace(a_leader)) <= set(namespaces["a"]), a_leader.tail()
        assert set(writes_by_namespace(b_only)) <= set(namespaces["b"]), b_only.tail()
        assert children_applied(a_leader) > 0 and children_applied(b_only) > 0
        assert children_applied(a_standby) == 0, a_standby.tail()
        for operator in operators:
            assert "Forbidden" not in operator.log.read_text(), operator.tail()

        # Failover inside shard a: its leader dies without a word; shard b goes on meanwhile.
        a_leader.stop(signal.SIGKILL)
        started = time.monotonic()
        scale(kubectl, "alpha", a_namespace, 2)
        scale(kubectl, "beta", b_namespace, 2)
        wait_scaled("beta", b_namespace, 2, timeout=60)
        beta_seconds = time.monotonic() - started
        wait_scaled("alpha", a_namespace, 2, timeout=FAILOVER_SECONDS)
        assert children_applied(a_standby) > 0, a_standby.tail()
        assert beta_seconds < 30, "shard b waited for shard a's failover"
        assert set(writes_by_namespace(a_standby)) <= set(namespaces["a"])
        assert set(writes_by_namespace(b_only)) <= set(namespaces["b"])
    finally:
        for operator in operators:
            operator.stop()
