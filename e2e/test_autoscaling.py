"""Autoscaling on token throughput with real autoscalers, seen through kubectl.

Everything that acts is real: the controller-manager's HPA controller (5 s sync) scales the
LLMDeployment through its scale subresource; for `provider: keda` KEDA's operator and
metrics adapter query a real Prometheus with the query kubellm rendered into the
ScaledObject; for `provider: hpa` the HPA reads custom.metrics.k8s.io from the upstream
custom-metrics-apiserver, fed with the chart's own prometheus-adapter rule evaluated on the
same Prometheus (prometheus-adapter itself is no Go module the proxy serves). The GPU nodes
are kwok's, so `python -m kubellm.simulator fleet` runs one engine per Ready pod at the speed
of the planned GPUs (Llama 3.1 70B on 2 H100s, 16 sequences at once: about 230 generated
tokens/s per replica within a 1 s time to first token), after a 5 s cold start, and a
load generator sends its requests through the fleet's router.

Journeys: load up -> the autoscaler raises spec.replicas, pods come up, the fleet follows and
tokens/s per replica falls back under target; load down -> back to one replica only after
the scale-down window, with no flap and the operator never writing spec.replicas (both
providers at once, about 5 minutes); scaling while a canary is paused keeps the split and
the traffic follows the weights; the operator's own PodMonitor can be turned off.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaling_harness import (
    FeedProcess,
    FleetProcess,
    ReplicaRecorder,
    cluster_endpoints,
    flaps,
    rescale_events,
    wait,
)
from conftest import fresh_namespace, poll, run_kubectl
from operator_process import OperatorProcess, apply_crds
from prometheus import Prometheus, prometheus_binary
from rollout_harness import LoadDriver
from test_operator import get, items, wait_ready

NAMESPACE_PREFIX = "e2e-as-"
MODEL = "meta-llama/Llama-3.1-70B-Instruct"
NEW_MODEL = "meta-llama/Llama-3.3-70B-Instruct"
CONTEXT, CONCURRENCY = 8192, 16
SCALE_DOWN_WINDOW = 30  # seconds, the LLMDeployments' scaleDown.stabilizationWindowSeconds
COLD_START = 5.0
KUBELLM = str(Path(sys.executable).parent / "kubellm")
TOKENS = "kubellm_generation_tokens_per_second"
BODY = {"prompt": [0] * 256, "max_tokens": 64}  # token ids: 256 prompt tokens


@pytest.fixture(scope="module")
def operator(cluster: Path) -> Iterator[OperatorProcess]:
    apply_crds()
    process = OperatorProcess("--standalone", "-n", f"{NAMESPACE_PREFIX}*")
    yield process
    print(process.tail())
    process.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetProcess]:
    workdir = tmp_path_factory.mktemp("fleet")
    process = FleetProcess([f"{NAMESPACE_PREFIX}*"], workdir / "fleet.json", COLD_START)
    yield process
    process.stop()
    print(process.tail())


@pytest.fixture(scope="module")
def prometheus(fleet: FleetProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = prometheus_binary()
    assert binary is not None, "the prometheus binary is needed (apt-get install prometheus)"
    server = Prometheus(tmp_path_factory.mktemp("prom"), [], binary, file_sd=fleet.file_sd)
    server.wait_ready()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def load() -> Iterator[LoadDriver]:
    driver = LoadDriver()
    yield driver
    driver.close()


def manifest(
    name: str, namespace: str, provider: str, prometheus: str, **changes: Any
) -> dict[str, Any]:
    autoscaling = {
        "provider": provider,
        "metric": "generationTokensPerSecond",
        "minReplicas": 1,
        "maxReplicas": 4,
        "behavior": {
            "scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}]},
            "scaleDown": {
                "stabilizationWindowSeconds": SCALE_DOWN_WINDOW,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
            },
        },
        **({"prometheusUrl": prometheus} if provider == "keda" else {}),
        **changes.pop("autoscaling", {}),
    }
    return {
        "apiVersion": "kubellm.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "model": {"name": changes.pop("model", MODEL)},
            "engine": {"maxContextLength": CONTEXT, "maxConcurrency": CONCURRENCY},
            "resources": {"gpu": {"type": "H100-80GB"}},
            "autoscaling": autoscaling,
            **changes,
        },
    }


def apply(obj: dict[str, Any]) -> None:
    run_kubectl("apply", "-f", "-", input=yaml.safe_dump(obj))


def hpa_name(name: str, provider: str) -> str:
    return f"keda-hpa-{name}" if provider == "keda" else name


def hpa_metric(name: str, namespace: str, provider: str) -> tuple[float, float] | None:
    """(current per-replica value, target) as the HPA controller last saw them."""
    hpa = get("hpa", hpa_name(name, provider), namespace)
    kind = "external" if provider == "keda" else "pods"
    current = (hpa.get("status") or {}).get("currentMetrics") or []
    target = hpa["spec"]["metrics"][0][kind]["target"]["averageValue"]
    if not current or kind not in current[0]:
        return None
    return quantity(current[0][kind]["current"]["averageValue"]), quantity(target)


def quantity(text: str) -> float:
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def auto_targets() -> dict[str, float]:
    """What `kubellm size` says `target: auto` is for the journeys' layout."""
    out = subprocess.run(
        [KUBELLM, "size", "--model", MODEL, "--gpu", "H100-80GB", "--context", str(CONTEXT),
         "--max-concurrency", str(CONCURRENCY), "-o", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    targets: dict[str, float] = json.loads(out)["autoscaling"]["autoTargets"]
    return targets


def ready_pods(name: str, namespace: str) -> int:
    return sum(
        1
        for pod in items("pods", namespace, f"app.kubernetes.io/instance={name}")
        if any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (pod.get("status") or {}).get("conditions") or []
        )
    )


def spec_writers(name: str, namespace: str) -> set[tuple[str, str]]:
    """(manager, subresource) of every managedFields entry owning part of the spec."""
    proc = run_kubectl("get", "llmd", name, "-n", namespace, "-o", "json", "--show-managed-fields")
    obj = json.loads(proc.stdout)
    return {
        (entry["manager"], entry.get("subresource", ""))
        for entry in obj["metadata"].get("managedFields") or []
        if "f:spec" in (entry.get("fieldsV1") or {})
    }


@pytest.mark.timeout(900)
def test_load_up_and_down_on_keda_and_hpa(
    operator: OperatorProcess, fleet: FleetProcess, prometheus: str, load: LoadDriver
) -> None:
    assert cluster_endpoints()["keda"], "cluster.sh up must start KEDA (KUBELLM_KEDA=1)"
    target = auto_targets()["generationTokensPerSecond"]
    with fresh_namespace(NAMESPACE_PREFIX) as hpa_ns, fresh_namespace(NAMESPACE_PREFIX) as keda_ns:
        journeys = {"hpa": (hpa_ns, "chat"), "keda": (keda_ns, "chat")}
        for provider, (ns, name) in journeys.items():
            apply(manifest(name, ns, provider, prometheus))
        for provider, (ns, name) in journeys.items():
            wait_ready(name, ns)
            hpa = hpa_name(name, provider)
            poll(
                lambda ns=ns, hpa=hpa: hpa in {h["metadata"]["name"] for h in items("hpa", ns)},
                timeout=60,
                message=f"the {provider} HPA",
            )
        feeder = FeedProcess(hpa_ns, prometheus, TOKENS)
        recorders = {p: ReplicaRecorder(ns, name) for p, (ns, name) in journeys.items()}
        try:
            # The HPA gets the auto target kubellm size computes, KEDA the same threshold.
            assert quantity(get("hpa", "chat", hpa_ns)["spec"]["metrics"][0]["pods"]["target"][
                "averageValue"]) == pytest.approx(target, rel=1e-3)  # fmt: skip
            so = get("scaledobject", "chat", keda_ns)
            assert float(so["spec"]["triggers"][0]["metadata"]["threshold"]) == target

            # Load up: about 2.4 replicas' worth of tokens at the target.
            rps = 2.4 * target / 64
            for ns, name in journeys.values():
                load.start(fleet.router_url(ns, name), rps, BODY)
            for provider, (ns, name) in journeys.items():
                wait(
                    lambda ns=ns, name=name: get("llmd", name, ns)["spec"].get("replicas", 1) >= 3,
                    timeout=300,
                    message=f"{provider}: the autoscaler to raise spec.replicas to 3",
                )
            for provider, (ns, name) in journeys.items():
                obj = wait(
                    lambda ns=ns, name=name: (
                        (o := get("llmd", name, ns))["status"].get("readyReplicas", 0) >= 3 and o
                    ),
                    timeout=60,
                    message=f"{provider}: 3 Ready replicas",
                )
                wait(
                    lambda ns=ns, name=name: len(fleet.engines(ns, name)) == ready_pods(name, ns),
                    timeout=30,
                    message=f"{provider}: one engine per Ready pod",
                )
                seen = wait(
                    lambda ns=ns, name=name, provider=provider: (
                        (m := hpa_metric(name, ns, provider)) and m[0] < m[1] and m
                    ),
                    timeout=240,
                    message=f"{provider}: tokens/s per replica back under target",
                )
                print(f"{provider}: {obj['spec']['replicas']} replicas, per replica {seen}")

            # Load down: back to one replica, only after the scale-down window.
            stopped = time.monotonic()
            for ns, name in journeys.values():
                load.stop(fleet.router_url(ns, name))
            for provider, (ns, name) in journeys.items():
                wait(
                    lambda ns=ns, name=name: get("llmd", name, ns)["spec"]["replicas"] == 1,
                    timeout=300,
                    message=f"{provider}: scale down to 1",
                )
        finally:
            for recorder in recorders.values():
                recorder.stop()
            feeder.stop()
            print(feeder.tail())

        for provider, (ns, name) in journeys.items():
            changes = recorders[provider].changes()
            sizes = [size for _, size in changes]
            peak = sizes.index(max(sizes))
            assert sizes[: peak + 1] == sorted(sizes[: peak + 1]), (provider, sizes)
            assert sizes[peak:] == sorted(sizes[peak:], reverse=True), (provider, sizes)
            assert flaps(changes, SCALE_DOWN_WINDOW) == 0, (provider, changes)
            first_down = next(t for t, size in changes[peak:] if size < max(sizes))
            assert first_down - stopped >= SCALE_DOWN_WINDOW, provider
            events = rescale_events(ns)
            assert sum(e.get("count") or 1 for e in events) == len(changes) - 1, (provider, events)
            # The HPA controller (the `kubelocal` binary here) wrote spec.replicas through the
            # scale subresource; the operator never wrote the spec.
            writers = spec_writers(name, ns)
            assert ("kubelocal", "scale") in writers, writers
            assert not any(manager.startswith("kubellm") for manager, _ in writers), writers
            print(f"{provider}: sizes {sizes}, {len(events)} rescale events")


@pytest.mark.timeout(600)
def test_scaling_during_a_paused_canary_keeps_the_split(
    operator: OperatorProcess, fleet: FleetProcess, prometheus: str, load: LoadDriver
) -> None:
    with fresh_namespace(NAMESPACE_PREFIX) as ns:
        name = "canary"
        rollout = {"canary": {"steps": [{"weight": 25, "pause": {}}]}}
        autoscaling = {"minReplicas": 2, "maxReplicas": 8, "target": 120}
        base = manifest(name, ns, "keda", prometheus, rollout=rollout, autoscaling=autoscaling)
        apply(base)
        wait_ready(name, ns)
        apply({**base, "spec": {**base["spec"], "model": {"name": NEW_MODEL}}})
        status = poll(
            lambda: (
                (s := get("llmd", name, ns).get("status") or {}).get("rollout", {}).get("paused")
                and s
            ),
            timeout=90,
            message="the canary paused at 25%",
        )
        canary = status["rollout"]["canaryRevision"]
        load.start(fleet.router_url(ns, name), 8.0, BODY)
        try:
            wait(
                lambda: get("llmd", name, ns)["spec"]["replicas"] >= 4,
                timeout=300,
                message="the autoscaler to scale the canaried LLMDeployment to 4 or more",
            )

            def split() -> dict[str, int] | None:
                obj = get("llmd", name, ns)
                total = obj["spec"]["replicas"]
                revisions = {r["revision"]: r for r in obj["status"].get("revisions") or []}
                if sum(r.get("readyReplicas", 0) for r in revisions.values()) != total:
                    return None
                return {rev: r["replicas"] for rev, r in revisions.items()}

            replicas = wait(split, timeout=90, message="every replica Ready")
            total = sum(replicas.values())
            assert replicas[canary] == pytest.approx(total / 4, abs=1), replicas
            obj = get("llmd", name, ns)
            assert obj["status"]["rollout"]["canaryWeight"] == 25
            assert obj["status"]["rollout"]["paused"] is True
            time.sleep(70)  # a full rate window of traffic on the final split
            share = traffic_share(prometheus, ns, canary)
            weights = {r["revision"]: r["weight"] for r in obj["status"]["revisions"]}
            assert share == pytest.approx(weights[canary] / 100, abs=0.08), (share, weights)
        finally:
            load.stop(fleet.router_url(ns, name))


def traffic_share(prometheus: str, namespace: str, revision: str) -> float:
    """The revision's share of the requests the engines served over the last minute."""
    import urllib.parse
    import urllib.request

    query = (
        f'sum by (revision) (rate(vllm:e2e_request_latency_seconds_count{{namespace="{namespace}"}}'
        "[1m]))"
    )
    url = f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.load(response)["data"]["result"]
    rates = {s["metric"]["revision"]: float(s["value"][1]) for s in result}
    return rates.get(revision, 0.0) / sum(rates.values())


def test_the_operators_pod_monitor_can_be_turned_off(cluster: Path) -> None:
    """With the chart's PodMonitor on, the chart runs the operator with --no-pod-monitor:
    the per-LLMDeployment PodMonitor goes away (the other children stay), so no engine is
    scraped twice."""
    apply_crds()
    with fresh_namespace("e2e-pm-") as ns:
        first = OperatorProcess("--standalone", "-n", ns)
        try:
            apply(manifest("watched", ns, "hpa", "", autoscaling={"target": 100}))
            wait_ready("watched", ns)
            assert [m["metadata"]["name"] for m in items("podmonitor", ns)] == ["watched"]
        finally:
            first.stop()
        second = OperatorProcess("--standalone", "--no-pod-monitor", "-n", ns)
        try:
            poll(lambda: not items("podmonitor", ns), timeout=60, message="PodMonitor removed")
            assert [h["metadata"]["name"] for h in items("hpa", ns)] == ["watched"]
        finally:
            second.stop()
