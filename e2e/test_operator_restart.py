"""An operator killed in the middle of a reconcile: its successor converges, no duplicates."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

from conftest import poll
from operator_process import OperatorProcess, apply_crds
from test_operator import items, llmd, serving_pods, wait_ready

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def test_restart_mid_reconcile_converges_without_duplicates(
    cluster: Path, kubectl: Kubectl, namespace: str
) -> None:
    apply_crds()
    first = OperatorProcess("--standalone")
    kubectl("apply", "-n", namespace, "-f", "-", input=llmd("restart"))
    poll(lambda: items("deployments", namespace), timeout=30, message="a Deployment")
    first.stop(signal.SIGKILL)
    second = OperatorProcess("--standalone")
    try:
        obj = wait_ready("restart", namespace)
        assert len(items("deployments", namespace)) == 1
        assert len(serving_pods("restart", namespace)) == obj["spec"]["replicas"]
    finally:
        second.stop()
