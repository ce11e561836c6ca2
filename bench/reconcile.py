"""Benchmark: the operator on the local control plane with N LLMDeployments.

Reports the time until all are Ready, API writes per LLMDeployment (the operator's own, from
its /metrics, and every write the API server saw for kubellm.io objects), writes during a
steady state of two resyncs, and the operator's peak RSS. Goals: 1,000 Ready in under 60 s,
0 steady-state writes, under 200 MiB RSS.

    python bench/reconcile.py --count 100 --count 1000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
KUBECONFIG = ROOT / "e2e" / ".cluster" / "kubeconfig"
KUBECTL = str(Path(sys.prefix) / "bin" / "kubectl")
ENV = {**os.environ, "KUBECONFIG": str(KUBECONFIG)}
GPUS_PER_NODE = 8
RESYNC_SECONDS = 10
METRICS_PORT, HEALTH_PORT = 18180, 18181


def kubectl(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [KUBECTL, *args], input=stdin, capture_output=True, text=True, env=ENV, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {proc.stderr.strip()[:500]}")
    return proc.stdout


def bench_nodes(count: int) -> str:
    """Enough fake H100 nodes (kwok) for `count` one-GPU pods."""
    nodes = []
    for i in range((count + GPUS_PER_NODE - 1) // GPUS_PER_NODE):
        name = f"bench-h100-{i}"
        capacity = {
            "cpu": "208", "memory": "2Ti", "ephemeral-storage": "2Ti", "pods": "110",
            "nvidia.com/gpu": "8",
        }  # fmt: skip
        nodes.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "type": "kwok",
                        "kubellm.io/bench": "true",
                        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                    },
                },
                "status": {"capacity": capacity, "allocatable": capacity},
            }
        )
    return yaml.safe_dump_all(nodes)


def llmdeployments(namespace: str, count: int) -> str:
    return yaml.safe_dump_all(
        {
            "apiVersion": "kubellm.io/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": f"m{i}", "namespace": namespace},
            "spec": {
                "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
                "engine": {"type": "vllm", "maxContextLength": 8192},
                "resources": {"gpu": {"type": "H100-80GB"}},
                "scheduling": {"nodeSelector": {"kubellm.io/bench": "true"}},
                "replicas": 1,
            },
        }
        for i in range(count)
    )


def ready_count(namespace: str) -> int:
    listing = json.loads(kubectl("get", "llmd", "-n", namespace, "-o", "json"))
    return sum(1 for o in listing["items"] if (o.get("status") or {}).get("phase") == "Ready")


def operator_writes() -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kubellm_api_writes_total")
    )


def server_writes() -> float:
    """Every write the API server served for kubellm-managed kinds, kopf's own included."""
    text = kubectl("get", "--raw", "/metrics")
    pattern = re.compile(r"^apiserver_request_total\{(.*)\} (\S+)$")
    total = 0.0
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        labels = match.group(1)
        if re.search(r'verb="(POST|PUT|PATCH|DELETE|APPLY)"', labels) and re.search(
            r'resource="(llmdeployments|deployments|services|poddisruptionbudgets|podmonitors)"',
            labels,
        ):
            total += float(match.group(2))
    return total


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(count: int) -> dict[str, float]:
    namespace = f"bench-{count}-{int(time.time())}"
    kubectl("apply", "-f", "-", stdin=bench_nodes(count))
    kubectl("create", "namespace", namespace)
    log = Path(tempfile.mkstemp(prefix="kubellm-bench-", suffix=".log")[1])
    with log.open("w") as out:
        operator = subprocess.Popen(
            [sys.executable, "-m", "kubellm.cli.main", "run", "--standalone",
             "--metrics-port", str(METRICS_PORT), "--health-port", str(HEALTH_PORT),
             "--resync-seconds", str(RESYNC_SECONDS)],
            stdout=out, stderr=subprocess.STDOUT, env=ENV,
        )  # fmt: skip
    try:
        time.sleep(5)
        writes_before = server_writes()
        start = time.monotonic()
        kubectl("create", "-f", "-", stdin=llmdeployments(namespace, count))
        created = time.monotonic() - start
        ready = 0
        while ready < count and time.monotonic() - start < 600:
            time.sleep(2)
            ready = ready_count(namespace)
        all_ready = time.monotonic() - start
        time.sleep(5)
        settled_server, settled_operator = server_writes(), operator_writes()
        time.sleep(2 * RESYNC_SECONDS + 2)
        steady_server = server_writes() - settled_server
        steady_operator = operator_writes() - settled_operator
        return {
            "count": count,
            "ready": ready,
            "apply_seconds": round(created, 1),
            "all_ready_seconds": round(all_ready, 1),
            "operator_writes_per_llmd": round(settled_operator / count, 2),
            "server_writes_per_llmd": round((settled_server - writes_before) / count, 2),
            "steady_state_writes_operator": steady_operator,
            "steady_state_writes_server": steady_server,
            "operator_peak_rss_mib": round(peak_rss_mib(operator.pid), 1),
        }
    finally:
        operator.terminate()
        operator.wait(60)
        kubectl("delete", "namespace", namespace, "--timeout=600s")  # quiet before the next run
        kubectl("delete", "nodes", "-l", "kubellm.io/bench=true", "--wait=false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, action="append", help="LLMDeployments per run")
    args = parser.parse_args()
    kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    for count in args.count or [100, 1000]:
        print(json.dumps(run(count)), flush=True)


if __name__ == "__main__":
    main()
