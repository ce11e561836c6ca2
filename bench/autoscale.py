"""bench/autoscale.py: the four autoscaling signals side by side, through the real autoscaler.

One run on the local control plane (`cluster.sh up`, KEDA included): for each
`autoscaling.metric` and each target of a small sweep (multiples of that signal's `auto`
target), one LLMDeployment of Llama 3.1 70B on 2 H100s (16 sequences at once) scaled by a
KEDA ScaledObject querying a real Prometheus, all under the same bursty trace at once. The
engines are the capacity-model simulators of `kubellm.simulator.fleet`, in this process,
with a real cold start; every request's time to first token is measured by its engine
(queueing included) and a request no engine can take counts as a miss.

The trace is a compressed day (night 1x, morning ramp to 2x, evening decline) with a 5x burst
ramping up over 90 s; 1x is 70% of what one replica serves within the SLO. Mixed lengths:
prompts 64-2048 and outputs 32-1024 tokens, 512 and 256 on average (the mix `auto` is
planned for). Scale-up is kubellm's default behaviour; scale-down waits 90 s (the default 10
minutes would outlast the compressed day).

Prints one JSON line per signal, its best target (meets the SLO for >= 99% of requests with
the fewest GPU-hours, else the highest attainment); for the default signal the default
target (`auto`) instead. Every sweep result goes to stderr.
    {"signal", "default", "target", "slo_attainment", "ttft_p95_seconds", "gpu_hours",
     "scale_events", "flaps", "burst_to_ready_seconds"}
flaps: a scale-down followed by a scale-up within the scale-down window.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "e2e"))

from kubellm.api.models import AutoscalingSpec  # noqa: E402
from kubellm.k8s.client import KubeClient  # noqa: E402
from kubellm.render import resolve  # noqa: E402
from kubellm.simulator.fleet import Fleet, follow  # noqa: E402
from kubellm.sizing.capacity import sustainable_load  # noqa: E402
from operator_process import OperatorProcess, apply_crds  # noqa: E402
from prometheus import Prometheus, prometheus_binary  # noqa: E402
from reconcile import bench_nodes, kubectl  # noqa: E402

NAMESPACE = "bench-autoscale"
SIGNALS = ("generationTokensPerSecond", "requestsInFlight", "queueLength", "kvCacheUtilization")
DEFAULT_SIGNAL = AutoscalingSpec.model_fields["metric"].default
SHORT = dict(zip(SIGNALS, ("tokens", "inflight", "queue", "kv"), strict=True))
SWEEP = (0.6, 1.0, 1.4)  # multiples of each signal's auto target; 1.0 is `auto` itself
MODEL, GPU, CONTEXT, CONCURRENCY = "meta-llama/Llama-3.1-70B-Instruct", "H100-80GB", 8192, 16
GPUS_PER_REPLICA = 2
MAX_REPLICAS = 8
SLO = 1.0
SCALE_DOWN_WINDOW = 90
PROMPTS = (64, 128, 256, 512, 1024, 2048)
PROMPT_WEIGHTS = (10, 15, 25, 25, 15, 10)  # mean 512 (rounded)
OUTPUTS = (32, 64, 128, 256, 512, 1024)
OUTPUT_WEIGHTS = (10, 15, 25, 25, 15, 10)


@dataclass(frozen=True)
class Trace:
    """Load over time in units of one replica at the auto target; a compressed day."""

    seconds: float = 660.0
    burst_start: float = 330.0
    points: tuple[tuple[float, float], ...] = (
        (0, 1.0), (60, 1.0), (240, 2.0), (330, 2.0),  # night, morning ramp, day
        (420, 5.0), (480, 5.0), (510, 2.0),  # the 5x burst: 90 s up, 60 s on top
        (600, 1.0), (660, 1.0),  # evening
    )  # fmt: skip

    def units(self, t: float) -> float:
        times = [p[0] for p in self.points]
        i = min(max(bisect.bisect_right(times, t), 1), len(times) - 1)
        (t0, u0), (t1, u1) = self.points[i - 1], self.points[i]
        return u0 + (u1 - u0) * min(max((t - t0) / (t1 - t0), 0.0), 1.0)


@dataclass
class Run:
    """One LLMDeployment of the sweep and what happened to it."""

    signal: str
    multiple: float
    target: float
    name: str
    ttfts: list[float] = field(default_factory=list)  # inf: no engine took the request
    replicas: list[tuple[float, int]] = field(default_factory=list)  # spec.replicas
    serving: list[tuple[float, int]] = field(default_factory=list)  # pods existing
    healthy: list[tuple[float, int]] = field(default_factory=list)  # engines answering


def manifest(run: Run) -> dict[str, Any]:
    return {
        "apiVersion": "kubellm.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": run.name, "namespace": NAMESPACE},
        "spec": {
            "model": {"name": MODEL},
            "engine": {"maxContextLength": CONTEXT, "maxConcurrency": CONCURRENCY},
            "resources": {"gpu": {"type": GPU}},
            "scheduling": {"nodeSelector": {"kubellm.io/bench": "true"}},
            "autoscaling": {
                "provider": "keda",
                "prometheusUrl": "http://127.0.0.1:9090",  # replaced once Prometheus runs
                "metric": run.signal,
                "target": "auto" if run.multiple == 1.0 else run.target,
                "minReplicas": 1,
                "maxReplicas": MAX_REPLICAS,
                "ttftSLO": f"{SLO:g}s",
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": SCALE_DOWN_WINDOW,
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 30}],
                    }
                },
            },
        },
    }


def auto_target(signal: str) -> float:
    """`target: auto` of one signal, from the operator's own resolution of the spec."""
    probe = Run(signal, 1.0, 0.0, "probe")
    planned = resolve(manifest(probe)).autoscaling
    assert planned is not None and planned.auto
    return planned.target


def unit_load() -> float:
    """1x, in requests/s: 70% of what one replica serves within the SLO (capacity model)."""
    capacity = resolve(manifest(Run(DEFAULT_SIGNAL, 1.0, 0.0, "probe"))).capacity
    assert capacity is not None
    best = sustainable_load(capacity, SLO)
    assert best is not None
    return 0.7 * best.requests_per_second


def runs() -> list[Run]:
    out = []
    for signal in SIGNALS:
        auto = auto_target(signal)
        for multiple in SWEEP:
            target = round(auto * multiple, 3)
            name = f"{SHORT[signal]}-{int(multiple * 100)}"
            out.append(Run(signal, multiple, target, name))
    return out


def request_shape(rng: random.Random) -> tuple[int, int]:
    prompt = rng.choices(PROMPTS, PROMPT_WEIGHTS)[0]
    output = rng.choices(OUTPUTS, OUTPUT_WEIGHTS)[0]
    return prompt, output


async def drive(fleet: Fleet, run: Run, trace: Trace, unit_rps: float, seed: int) -> None:
    """Poisson arrivals following the trace; the same seed for every run (same requests)."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    pending: set[asyncio.Task[None]] = set()

    async def one(prompt: int, output: int) -> None:
        body = {"prompt": [0] * prompt, "max_tokens": output}
        response = await fleet.complete(NAMESPACE, run.name, body)
        if response.status != 200:
            run.ttfts.append(math.inf)
            return
        run.ttfts.append(float(json.loads(response.body)["timings"]["ttft"]))  # type: ignore[arg-type]

    t = 0.0
    peak = max(u for _, u in trace.points) * unit_rps
    while t < trace.seconds:
        t += rng.expovariate(peak)  # thinning: arrivals at the peak rate, kept by the trace
        keep = rng.random() < trace.units(t) * unit_rps / peak
        shape = request_shape(rng)
        if not keep:
            continue
        await asyncio.sleep(max(0.0, begin + t - loop.time()))
        task = asyncio.ensure_future(one(*shape))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def observe(
    client: KubeClient, fleet: Fleet, by_name: dict[str, Run], stop: asyncio.Event
) -> None:
    begin = time.monotonic()
    while not stop.is_set():
        now = time.monotonic() - begin
        for obj in await client.list("LLMDeployment", NAMESPACE):
            run = by_name.get(obj["metadata"]["name"])
            if run is None:
                continue
            run.replicas.append((now, int(obj["spec"].get("replicas") or 1)))
            run.serving.append((now, int((obj.get("status") or {}).get("replicas") or 0)))
            run.healthy.append((now, len(fleet.serving(NAMESPACE, run.name))))
        await asyncio.sleep(2)


def changes(samples: list[tuple[float, int]]) -> list[tuple[float, int]]:
    out: list[tuple[float, int]] = []
    for at, value in samples:
        if not out or out[-1][1] != value:
            out.append((at, value))
    return out


def flaps(changed: list[tuple[float, int]], window: float) -> int:
    return sum(
        1
        for (_, before), (down_at, down), (up_at, up) in zip(
            changed, changed[1:], changed[2:], strict=False
        )
        if down < before and up > down and up_at - down_at <= window
    )


def report(run: Run, trace: Trace, default: bool) -> dict[str, Any]:
    ttfts = sorted(run.ttfts)
    met = sum(1 for t in ttfts if t <= SLO)
    gpu_seconds = sum(
        (t1 - t0) * n * GPUS_PER_REPLICA
        for (t0, n), (t1, _) in zip(run.serving, run.serving[1:], strict=False)
    )
    changed = changes(run.replicas)
    burst = [(t, n) for t, n in run.healthy if trace.burst_start <= t <= trace.burst_start + 180]
    peak = max((n for _, n in burst), default=0)
    before = next((n for t, n in run.healthy if t >= trace.burst_start), 0)
    ready_at = next((t for t, n in burst if n == peak), None)
    return {
        "signal": run.signal,
        "default": default,
        "target": run.target,
        "slo_attainment": round(met / len(ttfts), 4) if ttfts else 0.0,
        "ttft_p95_seconds": round(ttfts[int(0.95 * (len(ttfts) - 1))], 3) if ttfts else None,
        "gpu_hours": round(gpu_seconds / 3600, 3),
        "scale_events": len(changed) - 1,
        "flaps": flaps(changed, SCALE_DOWN_WINDOW),
        "burst_to_ready_seconds": round(ready_at - trace.burst_start, 1)
        if ready_at is not None and peak > before
        else None,
    }


def best(results: list[dict[str, Any]]) -> dict[str, Any]:
    meeting = [r for r in results if r["slo_attainment"] >= 0.99 and r["flaps"] == 0]
    if meeting:
        return min(meeting, key=lambda r: r["gpu_hours"])
    return max(results, key=lambda r: r["slo_attainment"])


async def bench(args: argparse.Namespace, prometheus_url: str, sweep: list[Run]) -> None:
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    client = KubeClient(info)
    file_sd = Path(args.workdir) / "fleet.json"
    fleet = Fleet(client, [NAMESPACE], cold_start=args.cold_start, file_sd=file_sd)
    stop = asyncio.Event()
    follower = asyncio.ensure_future(follow(fleet, 1.0, stop))
    trace = Trace()
    by_name = {run.name: run for run in sweep}
    observer = asyncio.ensure_future(observe(client, fleet, by_name, stop))
    unit_rps = unit_load()
    print(f"trace {trace.seconds:.0f}s, 1x = {unit_rps:.2f} requests/s", file=sys.stderr)
    try:
        deadline = time.monotonic() + 300
        while sum(len(fleet.serving(NAMESPACE, r.name)) for r in sweep) < len(sweep):
            if time.monotonic() > deadline:  # every first replica past its cold start
                raise RuntimeError(f"first replicas not serving after 300s: see {NAMESPACE} pods")
            await asyncio.sleep(1)
        await asyncio.gather(*(drive(fleet, run, trace, unit_rps, args.seed) for run in sweep))
    finally:
        stop.set()
        await asyncio.gather(follower, observer)
        await fleet.close()
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold-start", type=float, default=60.0, help="seconds to load")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    binary = prometheus_binary()
    assert binary is not None, "the prometheus binary is needed (apt-get install prometheus)"
    args.workdir = tempfile.mkdtemp(prefix="kubellm-bench-autoscale-")
    sweep = runs()
    apply_crds()
    kubectl("apply", "-f", "-", stdin=bench_nodes(MAX_REPLICAS * GPUS_PER_REPLICA * len(sweep)))
    kubectl("create", "namespace", NAMESPACE)
    prometheus = Prometheus(
        Path(args.workdir), [], binary, file_sd=Path(args.workdir) / "fleet.json", interval="2s"
    )
    operator = OperatorProcess("--standalone", "-n", NAMESPACE)
    try:
        prometheus.wait_ready()
        docs = []
        for run in sweep:
            doc = manifest(run)
            doc["spec"]["autoscaling"]["prometheusUrl"] = prometheus.url
            docs.append(doc)
        kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        started = time.monotonic()
        asyncio.run(bench(args, prometheus.url, sweep))
        print(f"trace done in {time.monotonic() - started:.0f}s", file=sys.stderr)
    finally:
        operator.stop()
        prometheus.stop()
        kubectl("delete", "namespace", NAMESPACE, "--wait=false")
        kubectl("delete", "nodes", "-l", "kubellm.io/bench=true", "--wait=false")
    trace = Trace()
    for signal in SIGNALS:
        results = {}
        for run in (r for r in sweep if r.signal == signal):
            results[run.multiple] = report(run, trace, default=signal == DEFAULT_SIGNAL)
            print(json.dumps({**results[run.multiple], "multiple": run.multiple}), file=sys.stderr)
        chosen = results[1.0] if signal == DEFAULT_SIGNAL else best(list(results.values()))
        print(json.dumps(chosen))


if __name__ == "__main__":
    main()
