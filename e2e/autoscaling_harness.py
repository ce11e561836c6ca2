"""Glue for the autoscaling journeys (e2e/test_autoscaling.py) and bench/autoscale.py.

- `FleetProcess`: `python -m kubellm.simulator fleet`, one simulated engine per Ready pod of
  the LLMDeployments in the given namespaces, at the speed of their GPUs, with a cold start;
  it writes the Prometheus file_sd file and routes requests (`router_url(ns, name)`).
- `FeedProcess`: `python -m kubellm.simulator feed`, the chart's prometheus-adapter rule
  evaluated on Prometheus and written to the local cluster's custom-metrics adapter, so the
  HPA controller reads what prometheus-adapter would serve (`provider: hpa`).
- `adapter_rule(metric)`: that rule's metricsQuery, from the chart rendered by real Helm.
- `ReplicaRecorder`: `spec.replicas` of an LLMDeployment sampled over time, to count scale
  events and flaps as the autoscaler made them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from conftest import ROOT, run_kubectl
from prometheus import stop_process

STATE = ROOT / "e2e" / ".cluster"
CHART = ROOT / "charts" / "kubellm"


def cluster_endpoints() -> dict[str, Any]:
    """What cluster.sh started for autoscaling (custom metrics write address, KEDA or not)."""
    endpoints: dict[str, Any] = json.loads((STATE / "autoscaling.json").read_text())
    return endpoints


def adapter_rule(metric: str) -> str:
    """The metricsQuery of the chart's prometheus-adapter rule exposing `metric`."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render({}, name="kubellm", namespace="kubellm-system")
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        for obj in yaml.safe_load_all(text):
            if isinstance(obj, dict) and obj.get("kind") == "ConfigMap":
                for rule in yaml.safe_load(obj["data"]["rules.yaml"])["rules"]:
                    if rule["name"]["as"] == metric:
                        query: str = rule["metricsQuery"]
                        return query
    raise LookupError(f"the chart has no adapter rule for {metric}")


class SimulatorProcess:
    """`python -m kubellm.simulator <args>`, its log in a file, up once it prints `ready`."""

    def __init__(self, args: list[str], ready: str) -> None:
        self.log = Path(tempfile.mkstemp(prefix="kubellm-sim-", suffix=".log")[1])
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kubellm.simulator", *args],
            stdout=subprocess.PIPE,
            stderr=self.log.open("w"),
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith(ready):
            self.stop()
            raise RuntimeError(f"simulator {args[0]} did not start: {line!r}\n{self.tail()}")
        self.first_line = line.strip()

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text()[-chars:]

    def stop(self) -> None:
        stop_process(self.process, timeout=15)


class FleetProcess(SimulatorProcess):
    def __init__(self, namespaces: list[str], file_sd: Path, cold_start: float) -> None:
        args = ["fleet", "--file-sd", str(file_sd), "--cold-start", str(cold_start)]
        for namespace in namespaces:
            args += ["-n", namespace]
        super().__init__(args, "router on ")
        self.url = self.first_line.split()[-1]
        self.file_sd = file_sd

    def router_url(self, namespace: str, name: str) -> str:
        return f"{self.url}/{namespace}/{name}"

    def engines(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The file_sd targets the fleet wrote for one LLMDeployment."""
        if not self.file_sd.exists():
            return []
        return [
            t
            for t in json.loads(self.file_sd.read_text())
            if t["labels"]["namespace"] == namespace and t["labels"]["llmdeployment"] == name
        ]


class FeedProcess(SimulatorProcess):
    def __init__(self, namespace: str, prometheus_url: str, metric: str) -> None:
        args = [
            "feed", "-n", namespace, "--prometheus", prometheus_url, "--metric", metric,
            "--metrics-query", adapter_rule(metric),
            "--write-url", cluster_endpoints()["customMetricsWriteURL"], "--interval", "2",
        ]  # fmt: skip
        super().__init__(args, "feeding")


@dataclass
class ReplicaRecorder:
    """`spec.replicas` of one LLMDeployment every `interval` seconds, in a thread."""

    namespace: str
    name: str
    interval: float = 2.0
    samples: list[tuple[float, int]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        proc = run_kubectl(
            "get", "llmd", self.name, "-n", self.namespace,
            "-o", "jsonpath={.spec.replicas}", check=False,
        )  # fmt: skip
        if proc.returncode == 0 and proc.stdout.strip():
            self.samples.append((time.monotonic(), int(proc.stdout)))

    def changes(self) -> list[tuple[float, int]]:
        """(when, size) at each change of size, the first sample included."""
        out: list[tuple[float, int]] = []
        for at, size in self.samples:
            if not out or out[-1][1] != size:
                out.append((at, size))
        return out

    def sizes(self) -> list[int]:
        return [size for _, size in self.changes()]

    def stop(self) -> None:
        """Stop sampling, after one last sample of the size reached."""
        self.stopping.set()
        self.thread.join(10)
        self._sample()


def flaps(changes: list[tuple[float, int]], window: float) -> int:
    """Scale-downs followed by a scale-up within `window` seconds (the scale-down window)."""
    return sum(
        1
        for (_, before), (down_at, down), (up_at, up) in zip(
            changes, changes[1:], changes[2:], strict=False
        )
        if down < before and up > down and up_at - down_at <= window
    )


def rescale_events(namespace: str) -> list[dict[str, Any]]:
    """The HPA controller's SuccessfulRescale events in a namespace, oldest first."""
    proc = run_kubectl(
        "get", "events", "-n", namespace, "-o", "json",
        "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale",
    )  # fmt: skip
    events: list[dict[str, Any]] = json.loads(proc.stdout)["items"]
    return sorted(events, key=lambda e: e.get("lastTimestamp") or e["eventTime"] or "")


def wait(predicate: Callable[[], Any], timeout: float, message: str, interval: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {message}")
