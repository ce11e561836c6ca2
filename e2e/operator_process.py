"""Run `kubellm run` as a real process against the local control plane, for e2e tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from conftest import KUBECONFIG, ROOT, run_kubectl


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def apply_crds() -> None:
    run_kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    run_kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd/llmdeployments.kubellm.io"
    )


class OperatorProcess:
    """One operator process; its log goes to a temporary file shown on failures."""

    def __init__(
        self, *extra: str, resync_seconds: float = 3, kubeconfig: Path = KUBECONFIG
    ) -> None:
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.log = Path(tempfile.mkstemp(prefix="kubellm-operator-", suffix=".log")[1])
        command = [
            sys.executable, "-m", "kubellm.cli.main", "run",
            "--metrics-port", str(self.metrics_port),
            "--health-port", str(self.health_port),
            "--resync-seconds", str(resync_seconds),
            *extra,
        ]  # fmt: skip
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        with self.log.open("w") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited:\n{self.log.read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.health_port}/healthz", timeout=2
                ) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"operator not healthy in {timeout}s:\n{self.log.read_text()[-4000:]}")

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            text: str = response.read().decode()
            return text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of one metric's samples matching the labels (0 when absent)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            series, value = line.rsplit(" ", 1)
            if series.split("{")[0] != name:
                continue
            if all(f'{k}="{v}"' in series for k, v in labels.items()):
                total += float(value)
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self) -> str:
        return self.log.read_text()[-6000:]
