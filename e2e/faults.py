"""Fault injection on the local control plane: what e2e/test_faults.py asserts and
bench/faults.py measures, one function per fault kind.

Each fault is injected into a Ready LLMDeployment (or one mid-rollout) and timed until the
object has converged again: every child as rendered, the status Ready for the newest
generation. Meanwhile a thread counts the object's Ready serving pods every 0.2 s: a stable
pod handed to a Ready canary pod is no loss, one lost to a canary that is not Ready is,
and shows in `stable_lost`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import ROOT, KubectlError, run_kubectl
from operator_process import OperatorProcess
from prometheus import prometheus_binary
from rollout_harness import Fleet, RolloutPrometheus
from test_operator import get, llmd

STATE = ROOT / "e2e" / ".cluster"
POLL = 0.2


@dataclass(frozen=True)
class Outcome:
    fault: str
    converged: bool
    seconds: float
    stable_lost: int  # Ready serving pods before the fault missing at the worst moment


def manifest(name: str, **spec: Any) -> str:
    """An 8B model on one H100 per replica, two replicas, a one-step canary."""
    defaults: dict[str, Any] = {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": {"type": "vllm", "maxContextLength": 8192},
        "rollout": {"canary": {"steps": [{"weight": 50}]}, "progressDeadline": "30s"},
    }
    return llmd(name, **{**defaults, **spec})


def listing(kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
    out = run_kubectl("get", kind, "-n", namespace, "-l", selector, "-o", "json").stdout
    result: list[dict[str, Any]] = json.loads(out)["items"]
    return result


def apply(namespace: str, name: str, **spec: Any) -> None:
    run_kubectl("apply", "-n", namespace, "-f", "-", input=manifest(name, **spec))


def settled(namespace: str, name: str) -> dict[str, Any] | None:
    """Ready for the newest generation, no rollout in flight: the object as read, else None."""
    obj = get("llmd", name, namespace)
    status = obj.get("status") or {}
    rollout = status.get("rollout") or {}
    if (
        status.get("phase") == "Ready"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
        and not rollout.get("canaryRevision")
    ):
        return obj
    return None


def wait(predicate: Callable[[], Any], timeout: float) -> float | None:
    """Seconds until `predicate()` is truthy; None if it never was within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(POLL)
    return None


def deploy(namespace: str, name: str, timeout: float = 90, **spec: Any) -> dict[str, Any]:
    apply(namespace, name, **spec)
    if wait(lambda: settled(namespace, name), timeout) is None:
        raise AssertionError(
            f"{namespace}/{name} never became Ready: {get('llmd', name, namespace).get('status')}"
        )
    return settled(namespace, name) or {}


def stable_revision(namespace: str, name: str) -> str:
    rollout = (get("llmd", name, namespace).get("status") or {}).get("rollout") or {}
    return str(rollout.get("stableRevision"))


def ready_pods(namespace: str, name: str) -> int:
    """Ready serving pods of one LLMDeployment, every revision together."""
    pods = listing("pods", namespace, f"app.kubernetes.io/instance={name},kubellm.io/serving=true")
    return sum(
        1
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in (p.get("status") or {}).get("conditions") or []
        )
    )


class ServingWatch:
    """Counts an LLMDeployment's Ready serving pods until stopped; keeps the lowest count."""

    def __init__(self, namespace: str, name: str) -> None:
        self.namespace, self.name = namespace, name
        self.before = ready_pods(namespace, name)
        self.lowest = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL):
            try:
                self.lowest = min(self.lowest, ready_pods(self.namespace, self.name))
            except (KubectlError, subprocess.TimeoutExpired):
                continue  # the API server is away (restarting): no sample

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(0, self.before - self.lowest)


def measure(
    fault: str,
    namespace: str,
    name: str,
    inject: Callable[[], None],
    converged: Callable[[], Any],
    timeout: float = 60,
) -> Outcome:
    """Inject, then time from the end of the injection until `converged()`; the stable is
    watched throughout."""
    watch = ServingWatch(namespace, name)
    inject()
    took = wait(converged, timeout)
    lost = watch.stop()
    return Outcome(fault, took is not None, round(timeout if took is None else took, 2), lost)


# ------------------------------------------------------------------- children


def _child(kind: str, namespace: str, child: str) -> dict[str, Any]:
    return get(kind, child, namespace)


def child_deleted(namespace: str, name: str, kind: str, child: str) -> Outcome:
    """`kubectl delete` of one child: it is back, as rendered, and the object Ready."""
    uid = _child(kind, namespace, child)["metadata"]["uid"]

    def back() -> bool:
        again = _child(kind, namespace, child)
        return bool(again) and again["metadata"]["uid"] != uid and bool(settled(namespace, name))

    return measure(
        f"delete-{kind.lower()}",
        namespace,
        name,
        lambda: run_kubectl("delete", kind, child, "-n", namespace, "--wait=false"),
        back,
        timeout=30,
    )


def child_edited(
    namespace: str,
    name: str,
    fault: str,
    command: list[str],
    reverted: Callable[[], bool],
) -> Outcome:
    """An edit by hand (kubectl patch, scale, set image, label): reverted, object Ready."""
    return measure(
        fault,
        namespace,
        name,
        lambda: run_kubectl(*command, "-n", namespace),
        lambda: reverted() and settled(namespace, name),
        timeout=30,
    )


def hand_edits(namespace: str, name: str) -> list[tuple[str, list[str], Callable[[], bool]]]:
    """(fault, kubectl command, reverted?) for each edit a user could make to a child."""
    workload = f"{name}-{stable_revision(namespace, name)}"

    def port() -> bool:
        return [p["port"] for p in get("service", name, namespace)["spec"]["ports"]] == [8000]

    def replicas() -> bool:
        return bool(get("deployment", workload, namespace)["spec"]["replicas"] == 2)

    def image() -> bool:
        template = get("deployment", workload, namespace)["spec"]["template"]
        return str(template["spec"]["containers"][0]["image"]).startswith("vllm/vllm-openai")

    def labelled() -> bool:
        labels = get("deployment", workload, namespace)["metadata"]["labels"]
        return bool(labels.get("app.kubernetes.io/managed-by") == "kubellm")

    def pdb() -> bool:
        return bool(get("pdb", name, namespace)["spec"].get("maxUnavailable") == 1)

    return [
        # A list item's key changes: server-side apply alone cannot take it back.
        ("edit-service-port", ["patch", "service", name, "--type=json", "-p",
          '[{"op":"replace","path":"/spec/ports/0/port","value":9999}]'], port),
        ("scale-deployment", ["scale", "deployment", workload, "--replicas=5"], replicas),
        ("set-image", ["set", "image", f"deployment/{workload}", "engine=busybox:1"], image),
        # Out of the operator's watch (its label selector) until it is put back.
        ("remove-managed-by-label", ["label", "deployment", workload,
          "app.kubernetes.io/managed-by-"], labelled),
        ("edit-pdb", ["patch", "pdb", name, "--type=merge", "-p",
          '{"spec":{"maxUnavailable":3}}'], pdb),
    ]  # fmt: skip


# ------------------------------------------------------------------- processes


def operator_killed_mid_rollout(
    namespace: str, name: str, operator: OperatorProcess, restart: Callable[[], OperatorProcess]
) -> tuple[Outcome, OperatorProcess]:
    """SIGKILL while a canary step holds; a new process finishes the rollout."""
    steps = [{"weight": 50, "pause": {"duration": "5s"}}]
    apply(
        namespace,
        name,
        engine={"type": "vllm", "maxContextLength": 4096},
        rollout={"canary": {"steps": steps}},
    )
    wait(
        lambda: (
            ((get("llmd", name, namespace).get("status") or {}).get("rollout") or {}).get(
                "canaryWeight"
            )
            == 50
        ),
        30,
    )
    replaced: list[OperatorProcess] = []

    def kill() -> None:
        operator.stop(signal.SIGKILL)
        replaced.append(restart())

    outcome = measure(
        "sigkill-operator-mid-step", namespace, name, kill, lambda: settled(namespace, name)
    )
    return outcome, replaced[0]


def _restart(component: str) -> None:
    """Stop one control-plane process and start it again with the same command line."""
    pid_file = STATE / f"{component}.pid"
    pid = int(pid_file.read_text())
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    os.kill(pid, signal.SIGTERM)
    if wait(lambda: not Path(f"/proc/{pid}").exists(), 30) is None:
        os.kill(pid, signal.SIGKILL)
    with (STATE / f"{component}.log").open("a") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(f"{process.pid}\n")


def restart_apiserver() -> None:
    """The API server restarts. Its other clients are restarted after it: kwok (the
    kubelets) never resumes its pod watch by itself, and the controller-manager takes
    minutes to (a fresh namespace gets no ServiceAccount meanwhile). What is tested is
    kubellm, which is not restarted."""
    _restart("apiserver")

    def ready() -> bool:
        try:
            proc = run_kubectl("get", "--raw", "/readyz", check=False, timeout=5)
        except subprocess.TimeoutExpired:
            return False
        return proc.returncode == 0 and proc.stdout.strip() == "ok"

    if wait(ready, 120) is None:
        raise AssertionError("the API server did not come back")
    for component in ("controller-manager", "scheduler", "kwok"):
        _restart(component)


def apiserver_restarted(namespace: str, name: str, operator: OperatorProcess) -> Outcome:
    """The API server restarts while a child is deleted behind the operator's back (its
    watches start over and list again: the deletion is found by the relisting)."""
    revision = stable_revision(namespace, name)
    child = f"{name}-{revision}"
    uid = get("deployment", child, namespace)["metadata"]["uid"]

    def inject() -> None:
        operator.process.send_signal(signal.SIGSTOP)
        try:
            run_kubectl("delete", "service", name, "-n", namespace, "--wait=false")
            restart_apiserver()
        finally:
            operator.process.send_signal(signal.SIGCONT)

    def converged() -> bool:
        return (
            bool(get("service", name, namespace))
            and get("deployment", child, namespace)["metadata"]["uid"] == uid
            and bool(settled(namespace, name))
        )

    return measure("restart-apiserver", namespace, name, inject, converged, timeout=90)


@contextmanager
def paused(process: OperatorProcess) -> Iterator[None]:
    process.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.process.send_signal(signal.SIGCONT)


def leader_paused(
    namespace: str, name: str, leader: OperatorProcess, standby: OperatorProcess
) -> Outcome:
    """The leading replica freezes (SIGSTOP): the standby takes over once the leader's
    peering keep-alive expires, and converges a spec change made meanwhile."""
    with paused(leader):
        outcome = measure(
            "pause-peered-leader",
            namespace,
            name,
            lambda: apply(namespace, name, replicas=3),
            lambda: (obj := settled(namespace, name)) and obj["status"]["readyReplicas"] == 3,
            timeout=90,
        )
    return outcome


# ------------------------------------------------------------------- spec changes


def spec_burst(namespace: str, name: str, updates: int = 20, seconds: float = 10) -> Outcome:
    """`updates` spec changes (each a new revision) within `seconds`: converged on the last."""
    lengths = [4096 + 64 * i for i in range(updates)]

    def inject() -> None:
        for length in lengths:
            apply(namespace, name, engine={"type": "vllm", "maxContextLength": length})
            time.sleep(seconds / updates)

    def converged() -> bool:
        obj = settled(namespace, name)
        if not obj or obj["status"]["sizing"]["contextLength"] != lengths[-1]:
            return False
        return len(listing("deployments", namespace, f"app.kubernetes.io/instance={name}")) == 1

    return measure("spec-burst", namespace, name, inject, converged, timeout=120)


def _rolled_back(namespace: str, name: str) -> dict[str, Any] | None:
    obj = get("llmd", name, namespace)
    status = obj.get("status") or {}
    history = status.get("history") or []
    rollout = status.get("rollout") or {}
    if history and history[0]["result"] == "RolledBack" and not rollout.get("canaryRevision"):
        return obj
    return None


def canary_without_node(namespace: str, name: str) -> Outcome:
    """A new revision no node accepts: rolled back at the progress deadline, the stable
    never losing a pod."""
    return measure(
        "canary-pending-no-node",
        namespace,
        name,
        lambda: apply(namespace, name, scheduling={"nodeSelector": {"kubellm.io/pool": "nowhere"}}),
        lambda: _rolled_back(namespace, name),
        timeout=90,
    )


GPU_FULL_SPEC: dict[str, Any] = {
    "resources": {"gpu": {"type": "L40S"}, "tensorParallel": 4},
    "replicas": 2,  # two pods of four GPUs: the one L40S node is full
}


def canary_without_free_gpu(namespace: str, name: str) -> Outcome:
    """Every GPU of the pool in use: the stable yields one pod at a time and the rollout
    still completes."""

    def finished() -> bool:
        obj = settled(namespace, name)
        history = (obj or {}).get("status", {}).get("history") or []
        return bool(obj) and bool(history) and history[0]["result"] == "Succeeded"

    return measure(
        "canary-pending-no-free-gpu",
        namespace,
        name,
        lambda: apply(
            namespace, name, engine={"type": "vllm", "maxContextLength": 4096}, **GPU_FULL_SPEC
        ),
        finished,
        timeout=120,
    )


# ------------------------------------------------------------------- Prometheus


@contextmanager
def analysed_fleet(workdir: Path) -> Iterator[Fleet]:
    """A real Prometheus and one engine simulator per live revision (e2e/rollout_harness)."""
    server = RolloutPrometheus(workdir, prometheus_binary())
    try:
        server.wait_ready()
        fleet = Fleet(server)
        try:
            yield fleet
        finally:
            fleet.close()
    finally:
        server.stop()


def prometheus_down(namespace: str, name: str, fleet: Fleet) -> tuple[Outcome, dict[str, Any]]:
    """Prometheus goes away mid-step: analyses are inconclusive, never failures, and after
    `inconclusiveLimit` of them the rollout waits for a human (converged = paused, nothing
    rolled back); Prometheus back and `kubellm promote`, the rollout completes."""
    analysis = {
        "prometheusUrl": fleet.prometheus.url,
        "interval": "5s",
        "minRequests": 5,
        "maxErrorRate": 0.1,
        "inconclusiveLimit": 2,
    }
    rollout = {
        "canary": {"steps": [{"weight": 50, "pause": {"duration": "5s"}}], "analysis": analysis}
    }
    with fleet.track(namespace, name):
        deploy(namespace, name, replicas=4, rollout=rollout)
        apply(
            namespace,
            name,
            replicas=4,
            rollout=rollout,
            engine={"type": "vllm", "maxContextLength": 4096},
        )
        at_step = wait(lambda: _rollout(namespace, name).get("canaryWeight") == 50, 90)
        assert at_step is not None, _rollout(namespace, name)

        def halted() -> dict[str, Any] | None:
            obj = get("llmd", name, namespace)
            conditions = (obj.get("status") or {}).get("conditions") or []
            reasons = {c["type"]: c["reason"] for c in conditions}
            return obj if reasons.get("Progressing") == "AnalysisInconclusive" else None

        outcome = measure(
            "prometheus-down", namespace, name, fleet.prometheus.down, halted, timeout=90
        )
        paused = get("llmd", name, namespace)
        fleet.prometheus.up()  # it reads the scrape targets the fleet wrote meanwhile
        fleet.errors.clear()  # reloads refused during the outage
        run_kubectl("annotate", "--overwrite", f"llmd/{name}", "-n", namespace,
                    f"kubellm.io/promote={_token(paused)}")  # fmt: skip
        done = wait(lambda: settled(namespace, name), 120)
        assert done is not None, get("llmd", name, namespace).get("status")
    return outcome, paused


def _rollout(namespace: str, name: str) -> dict[str, Any]:
    return ((get("llmd", name, namespace).get("status") or {}).get("rollout")) or {}


def _token(obj: dict[str, Any]) -> str:
    """What `kubellm promote` writes: this rollout, this step."""
    rollout = obj["status"]["rollout"]
    return f"{rollout['canaryRevision']}@{rollout['startedAt']}#{rollout.get('currentStep') or 0}"
