"""`kubellm demo`: the whole loop on an embedded default, with no cluster of yours.

It prints the sizing of every bundled example, then brings up the project's local control
plane (built from Kubernetes' Go modules, simulated GPU nodes), starts the operator, and walks
one LLMDeployment through what platform teams do: apply, scale, a canary, an update that
cannot fit, delete. Everything it shows comes from kubectl, as users see it.

Then autoscaling with the defaults (`metric: generationTokensPerSecond`, `target: auto`): the
controller-manager's real HPA controller scales an LLMDeployment (`provider: hpa`) through
custom.metrics.k8s.io, served by the local cluster's custom-metrics adapter, under a load ramp.
The lighter path: each pod's value is written straight from its simulated engine instead of
through Prometheus, and KEDA is not built or started (KUBELLM_KEDA=0), so a cold `make demo`
builds nothing more than before but the small adapter. `make e2e` proves both real paths
(Prometheus and the chart's adapter rule; KEDA).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from kubellm.render import render_children, resolve, single_revision
from kubellm.render.resolve import InvalidSpecError
from kubellm.sizing.capacity import Workload, sustainable_load

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "manifests" / "examples"
CLUSTER = ROOT / "e2e" / "cluster" / "cluster.sh"
KUBECONFIG = ROOT / "e2e" / ".cluster" / "kubeconfig"
AUTOSCALING = ROOT / "e2e" / ".cluster" / "autoscaling.json"
NAMESPACE = "kubellm-demo"
NAME = "llama-70b"
CHAT = "chat"


def describe_examples(directory: Path = EXAMPLES) -> list[str]:
    """One block per example: sizing decision and the children it renders to."""
    lines: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        lines.append(f"== {path.name}")
        try:
            resolved = resolve(doc)
        except InvalidSpecError as invalid:
            lines += [f"   refused: {problem}" for problem in invalid.problems]
            continue
        spec, sizing = resolved.spec, resolved.sizing
        gpu = resolved.gpu.name if resolved.gpu else f"{spec.resources.gpu.memory_gib} GiB"
        lines.append(
            f"   {spec.engine.type} serving {spec.model.name} on {gpu}:"
            f" TP={sizing.tensor_parallel} PP={sizing.pipeline_parallel}"
            f" -> {sizing.gpus_per_replica} GPU(s) per replica"
            f" on {sizing.nodes_per_replica} node(s), context {sizing.context_length}"
        )
        lines.append(f"   why: {sizing.reason}")
        children = render_children(single_revision(resolved))
        kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in children)
        lines.append(f"   children: {kinds}")
    return lines


def demo_llmdeployment(model: str, gpu: str = "H100-80GB", **resources: Any) -> str:
    """The demo's LLMDeployment: short canary steps so the rollout is watchable."""
    return yaml.safe_dump(
        {
            "apiVersion": "kubellm.io/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {
                "model": {"name": model},
                "engine": {"type": "vllm", "maxContextLength": 32768},
                "resources": {"gpu": {"type": gpu}, **resources},
                "replicas": 2,
                "rollout": {
                    "canary": {
                        "steps": [
                            {"weight": 25, "pause": {"duration": "5s"}},
                            {"weight": 50, "pause": {"duration": "5s"}},
                        ]
                    }
                },
            },
        }
    )


class Demo:
    def __init__(self) -> None:
        kubectl = Path(sys.prefix) / "bin" / "kubectl"
        self.kubectl_path = str(kubectl) if kubectl.exists() else "kubectl"
        self.env = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            [self.kubectl_path, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def show(self, title: str, *args: str) -> None:
        print(f"\n$ kubectl {' '.join(args)}    # {title}")
        print(self.kubectl(*args).rstrip())

    def status(self, name: str = NAME) -> dict[str, Any]:
        obj = json.loads(self.kubectl("get", "llmd", name, "-n", NAMESPACE, "-o", "json"))
        status: dict[str, Any] = obj.get("status") or {}
        status["generation"] = obj["metadata"]["generation"]
        status["replicasWanted"] = obj["spec"].get("replicas", 1)
        return status

    def wait(
        self,
        what: str,
        done: Callable[[dict[str, Any]], bool],
        timeout: float = 120,
        name: str = NAME,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done(self.status(name)):
                return
            time.sleep(1)
        raise RuntimeError(f"timed out waiting for {what}")

    def ready(self, status: dict[str, Any]) -> bool:
        return bool(
            status.get("phase") == "Ready"
            and status.get("observedGeneration") == status["generation"]
        )


@contextlib.contextmanager
def local_cluster() -> Iterator[bool]:
    """The local control plane; stopped afterwards only if the demo started it."""
    running = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True).returncode == 0
    if not running:
        print("\nStarting the local control plane (the first run builds it: 10-20 minutes)...")
        env = {**os.environ, "KUBELLM_KEDA": os.environ.get("KUBELLM_KEDA", "0")}
        subprocess.run(["bash", str(CLUSTER), "up"], check=True, env=env)
    try:
        yield not running
    finally:
        if not running:
            subprocess.run(["bash", str(CLUSTER), "down"], check=False)


@contextlib.contextmanager
def operator_process(env: dict[str, str]) -> Iterator[None]:
    log = Path(tempfile.mkstemp(prefix="kubellm-demo-operator-", suffix=".log")[1])
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kubellm.cli.main", "run", "--standalone", "-n", NAMESPACE,
             "--metrics-port", "18080", "--health-port", "18081", "--resync-seconds", "10"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        yield
    finally:
        process.terminate()
        process.wait(30)
        print(f"\n(operator log: {log})")


def live_loop(demo: Demo) -> None:
    demo.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    demo.kubectl("wait", "--for=condition=Established", "crd/llmdeployments.kubellm.io")
    demo.kubectl("create", "namespace", NAMESPACE, check=False)
    with operator_process(demo.env):
        print("\n1. Apply an LLMDeployment: Llama 3.1 70B with vLLM on H100s, 2 replicas")
        demo.kubectl(
            "apply", "-f", "-", stdin=demo_llmdeployment("meta-llama/Llama-3.1-70B-Instruct")
        )
        demo.wait("Ready", demo.ready)
        sizing = demo.status()["sizing"]
        print(f"   sizing: TP={sizing['tensorParallel']}, {sizing['reason']}")
        demo.show("the resource", "get", "llmd", "-n", NAMESPACE)
        demo.show("its children", "get", "deploy,svc,pdb,podmonitor", "-n", NAMESPACE)
        demo.show("pods on GPU nodes", "get", "pods", "-n", NAMESPACE, "-o", "wide")

        print("\n2. Scale through the scale subresource, as an HPA would")
        demo.kubectl("scale", f"llmd/{NAME}", "-n", NAMESPACE, "--replicas=4")
        demo.wait("4 replicas", lambda s: demo.ready(s) and s.get("readyReplicas") == 4)
        demo.show("scaled", "get", "llmd", "-n", NAMESPACE)

        print("\n3. Change the model: a canary at 25%, then 50%, then promoted")
        demo.kubectl(
            "apply", "-f", "-", stdin=demo_llmdeployment("meta-llama/Llama-3.3-70B-Instruct")
        )
        seen: list[int] = []

        def promoted(status: dict[str, Any]) -> bool:
            weight = (status.get("rollout") or {}).get("canaryWeight", 0)
            if weight and weight not in seen:
                seen.append(weight)
                print(f"   canary weight {weight}%")
            return demo.ready(status) and bool(status.get("history"))

        demo.wait("the canary to be promoted", promoted, timeout=180)
        entry = demo.status()["history"][0]
        print(f"   history: {entry['revision']} {entry['result']} (changed: {entry['changed']})")

        print("\n4. An update that cannot fit (70B on one L4): refused, serving pods untouched")
        pods = demo.kubectl("get", "pods", "-n", NAMESPACE, "-o", "name")
        bad = demo_llmdeployment(
            "meta-llama/Llama-3.3-70B-Instruct", "L4", tensorParallel=1, pipelineParallel=1
        )
        demo.kubectl("apply", "-f", "-", stdin=bad)
        demo.wait("SpecValid=False", lambda s: s.get("phase") == "Degraded")
        spec_valid = next(c for c in demo.status()["conditions"] if c["type"] == "SpecValid")
        print(f"   SpecValid=False: {spec_valid['message']}")
        same = demo.kubectl("get", "pods", "-n", NAMESPACE, "-o", "name") == pods
        print(f"   serving pods unchanged: {same}")
        demo.show("events", "get", "events", "-n", NAMESPACE, "--field-selector",
                  f"involvedObject.name={NAME}", "--sort-by=.lastTimestamp")  # fmt: skip

        print("\n5. Delete: every child goes with it (ownerReferences)")
        demo.kubectl("delete", "llmd", NAME, "-n", NAMESPACE)

        print("\n6. Autoscaling (the default signal and target): a load ramp, a real HPA")
        demo.kubectl("apply", "-f", "-", stdin=autoscaled_llmdeployment())
        demo.wait("Ready", lambda s: s.get("phase") == "Ready", name=CHAT)
        autoscaling_ramp(demo)
        demo.show("the HPA's scale events", "get", "events", "-n", NAMESPACE, "--field-selector",
                  "reason=SuccessfulRescale", "--sort-by=.lastTimestamp")  # fmt: skip
    demo.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def autoscaled_llmdeployment() -> str:
    """Llama 3.1 70B on 2 H100s, 16 sequences at once; the HPA on the default signal."""
    return yaml.safe_dump(
        {
            "apiVersion": "kubellm.io/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": CHAT, "namespace": NAMESPACE},
            "spec": {
                "model": {"name": "meta-llama/Llama-3.1-70B-Instruct"},
                "engine": {"maxContextLength": 8192, "maxConcurrency": 16},
                "resources": {"gpu": {"type": "H100-80GB"}},
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": 4,
                    "behavior": {
                        "scaleUp": {
                            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 10}]
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": 15,
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 10}],
                        },
                    },
                },
            },
        }
    )


def autoscaling_ramp(demo: Demo) -> None:
    """`python -m kubellm.simulator ramp`: fleet, metric writer and load, figures every 5 s."""
    write_url = json.loads(AUTOSCALING.read_text())["customMetricsWriteURL"]
    resolved = resolve(yaml.safe_load(autoscaled_llmdeployment()))
    planned, capacity = resolved.autoscaling, resolved.capacity
    assert planned is not None and capacity is not None
    best = sustainable_load(capacity, planned.ttft_slo_seconds, Workload(256, 64))
    assert best is not None
    print(f"   metric {planned.metric}, target auto {hpa_target(demo):g} per replica")
    print(f"   ({planned.reason})")
    subprocess.run(
        [sys.executable, "-m", "kubellm.simulator", "ramp", "-n", NAMESPACE, "--llmd", CHAT,
         "--write-url", write_url, "--metric", planned.metric,
         "--replica-rps", f"{0.7 * best.requests_per_second:.3f}"],
        env=demo.env, check=True,
    )  # fmt: skip


def hpa_target(demo: Demo) -> float:
    """The HPA's per-replica target (status.autoscaling shows it once the operator writes it)."""
    hpa = json.loads(demo.kubectl("get", "hpa", CHAT, "-n", NAMESPACE, "-o", "json"))
    value = str(hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"])
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def run_demo(args: argparse.Namespace) -> int:
    print("Sizing and rendering of every example in manifests/examples:")
    print("\n".join(describe_examples()))
    if args.offline:
        return 0
    if not CLUSTER.exists():
        print("\n(the live part needs the repository's e2e/cluster; skipped)")
        return 0
    with local_cluster():
        live_loop(Demo())
    return 0
