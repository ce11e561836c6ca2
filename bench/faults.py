"""Benchmark: fault injection on the local control plane, one JSON line per fault kind.

Each fault of e2e/faults.py is injected `--rounds` times into a fresh, Ready LLMDeployment;
each line reports the faults injected, how many converged, p50/p99 seconds to converge
(from the end of the injection), and the Ready serving pods lost at the worst moment (a
stable pod handed to a Ready canary pod is no loss; deleting the Deployment takes its pods
with it, which is the fault itself, not the operator).

    python bench/faults.py --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "e2e"))

from conftest import fresh_namespace  # noqa: E402
from faults import (  # noqa: E402
    GPU_FULL_SPEC,
    Outcome,
    analysed_fleet,
    apiserver_restarted,
    canary_without_free_gpu,
    canary_without_node,
    child_deleted,
    child_edited,
    deploy,
    hand_edits,
    leader_paused,
    operator_killed_mid_rollout,
    prometheus_down,
    spec_burst,
    stable_revision,
)
from operator_process import OperatorProcess, apply_crds  # noqa: E402

NAME = "f"
PREFIX = "bench-fault-"


def operator() -> OperatorProcess:
    return OperatorProcess("--standalone", "-n", f"{PREFIX}*", resync_seconds=60)


class Bench:
    def __init__(self) -> None:
        self.operator = operator()

    def round(self, fault: str) -> Outcome:
        with fresh_namespace(PREFIX) as ns:
            if fault == "canary-pending-no-free-gpu":
                deploy(ns, NAME, **GPU_FULL_SPEC)
                return canary_without_free_gpu(ns, NAME)
            deploy(ns, NAME, autoscaling={"minReplicas": 2, "maxReplicas": 4, "target": 1500})
            revision = stable_revision(ns, NAME)
            if fault.startswith("delete-"):
                kind = fault.removeprefix("delete-")
                child = (
                    f"{NAME}-{revision}" if kind in ("deployment", "controllerrevision") else NAME
                )
                return child_deleted(ns, NAME, kind, child)
            if fault == "sigkill-operator-mid-step":
                outcome, self.operator = operator_killed_mid_rollout(
                    ns, NAME, self.operator, operator
                )
                return outcome
            if fault == "restart-apiserver":
                outcome = apiserver_restarted(ns, NAME, self.operator)
                self.operator.wait_healthy()
                return outcome
            for edit, command, reverted in hand_edits(ns, NAME):
                if edit == fault:
                    return child_edited(ns, NAME, fault, command, reverted)
            if fault == "spec-burst":
                return spec_burst(ns, NAME)
            if fault == "canary-pending-no-node":
                return canary_without_node(ns, NAME)
        raise ValueError(fault)

    def blind(self) -> Outcome:
        with fresh_namespace(PREFIX) as ns, tempfile.TemporaryDirectory() as workdir:
            with analysed_fleet(Path(workdir)) as fleet:
                outcome, _ = prometheus_down(ns, NAME, fleet)
            return outcome

    def peered(self) -> Outcome:
        with fresh_namespace("bench-peer-") as ns:
            peering = f"faults-{ns}"
            leader = OperatorProcess("-n", ns, "--peering", peering, resync_seconds=60)
            standby = OperatorProcess("-n", ns, "--peering", peering, resync_seconds=60)
            try:
                deploy(ns, NAME)
                return leader_paused(ns, NAME, leader, standby)
            finally:
                standby.stop()
                leader.stop()


FAULTS = (
    "delete-deployment",
    "delete-service",
    "delete-poddisruptionbudget",
    "delete-controllerrevision",
    "delete-podmonitor",
    "delete-horizontalpodautoscaler",
    "edit-service-port",
    "scale-deployment",
    "set-image",
    "remove-managed-by-label",
    "edit-pdb",
    "sigkill-operator-mid-step",
    "restart-apiserver",
    "spec-burst",
    "canary-pending-no-node",
    "canary-pending-no-free-gpu",
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def line(fault: str, outcomes: list[Outcome]) -> str:
    seconds = [o.seconds for o in outcomes if o.converged]
    return json.dumps(
        {
            "fault": fault,
            "injected": len(outcomes),
            "converged": sum(o.converged for o in outcomes),
            "p50_seconds": round(statistics.median(seconds), 2) if seconds else None,
            "p99_seconds": round(percentile(seconds, 0.99), 2) if seconds else None,
            "stable_ready_lost": max(o.stable_lost for o in outcomes),
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fault", action="append", help="only these (repeatable)")
    args = parser.parse_args()
    apply_crds()
    bench = Bench()
    runs: list[tuple[str, Callable[[], Outcome]]] = [
        (fault, lambda fault=fault: bench.round(fault))
        for fault in FAULTS  # type: ignore[misc]
    ] + [("prometheus-down", bench.blind), ("pause-peered-leader", bench.peered)]
    try:
        for fault, run in runs:
            if args.fault and fault not in args.fault:
                continue
            print(line(fault, [run() for _ in range(args.rounds)]), flush=True)
    finally:
        bench.operator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
