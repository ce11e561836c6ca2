"""Canary rollouts on the local control plane, judged by a real Prometheus, seen through kubectl.

The journeys of issue 5 §8, as an SRE lives them: change the model and watch the canary
weight climb 25 -> 50 -> 75 -> promotion; a canary that errors, is slow, or fails a custom
PromQL check rolls back while the stable keeps serving; an operator SIGKILLed mid-step
resumes that very step; the HPA (emulated through the scale subresource) resizes the
deployment mid-canary; history and success ratio add up after mixed outcomes, in status,
on /metrics and in `kubellm status`; `kubellm abort` aborts. One more journey, promotion
with every GPU in use, passes since the planner trades pods instead of surging.

The GPU nodes are kwok-simulated (pods are Ready at once and run nothing), so
`rollout_harness.Fleet` runs one engine simulator per live revision with the labels the
operator's PodMonitor would attach, scraped by one Prometheus, under a steady load.
One operator (namespaced to `e2e-ro-*`, standalone) and one Prometheus serve the module;
each journey has its own namespace. About 3 minutes on 2 cores.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import fresh_namespace, poll, run_kubectl
from operator_process import OperatorProcess, apply_crds
from prometheus import prometheus_binary
from rollout_harness import ERRORS, HEALTHY, SLOW, Fleet, RolloutPrometheus
from test_operator import condition, get, items, wait_ready

Kubectl = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [
    pytest.mark.skipif(
        prometheus_binary() is None,
        reason="the prometheus binary is not installed (Debian: apt-get install prometheus)",
    ),
]

NAMESPACE_PREFIX = "e2e-ro-"
OLD_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
NEW_MODEL = "Qwen/Qwen3-8B"
KUBELLM = str(Path(sys.executable).parent / "kubellm")
# Decode speed of the canary, tokens per second of request time: a custom check.
DECODE_SPEED = (
    "sum(rate(vllm:generation_tokens_total{{{sel}}}[10s]))"
    " / sum(rate(vllm:e2e_request_latency_seconds_sum{{{sel}}}[10s]))"
).format(sel='namespace="$namespace",llmdeployment="$llmdeployment",revision="$revision"')


# --------------------------------------------------------------------------- fixtures


class Operators:
    """The module's operator; journey 5 replaces it with a successor."""

    def __init__(self) -> None:
        self.current = self._start()

    @staticmethod
    def _start() -> OperatorProcess:
        # Namespaced to this module's namespaces, so an operator left by another module
        # or a colleague's run does not share these LLMDeployments with it (and vice versa).
        return OperatorProcess("--standalone", "-n", f"{NAMESPACE_PREFIX}*")

    def kill_and_replace(self) -> OperatorProcess:
        self.current.stop(signal.SIGKILL)
        self.current = self._start()
        return self.current

    def metric(self, name: str, **labels: str) -> float:
        return self.current.metric(name, **labels)


@pytest.fixture(scope="module")
def operators(cluster: Path) -> Iterator[Operators]:
    apply_crds()
    operators = Operators()
    yield operators
    operators.current.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    binary = prometheus_binary()
    assert binary is not None
    server = RolloutPrometheus(tmp_path_factory.mktemp("prometheus"), binary)
    try:
        server.wait_ready()
        fleet = Fleet(server)
        yield fleet
        fleet.close()
        assert not fleet.errors, fleet.errors
    finally:
        server.stop()


@pytest.fixture
def ns(cluster: Path) -> Iterator[str]:
    """A fresh namespace the module's operator watches (`e2e-ro-*`), deleted afterwards."""
    with fresh_namespace(NAMESPACE_PREFIX) as name:
        yield name


@pytest.fixture(autouse=True)
def _operator_log(operators: Operators) -> Iterator[None]:
    """The operator's log tail, captured: pytest shows it for failed tests only."""
    yield
    print(operators.current.tail())


# ---------------------------------------------------------------------------- helpers


def analysis(prometheus_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "prometheusUrl": prometheus_url,
        "interval": "5s",
        "failureLimit": 0,
        "minRequests": 5,
        "maxErrorRate": 0.1,
        "maxLatencyP95": "1s",
        **overrides,
    }


def manifest(
    name: str,
    model: str,
    steps: list[dict[str, Any]],
    analysis: dict[str, Any] | None,
    replicas: int = 4,
) -> str:
    canary: dict[str, Any] = {"steps": steps}
    if analysis is not None:
        canary["analysis"] = analysis
    spec = {
        "model": {"name": model},
        "engine": {"type": "vllm", "maxContextLength": 8192},
        "resources": {"gpu": {"type": "H100-80GB"}},
        "replicas": replicas,
        "rollout": {"strategy": "canary", "canary": canary},
    }
    return json.dumps(
        {
            "apiVersion": "kubellm.io/v1alpha1",
            "kind": "LLMDeployment",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def apply(namespace: str, text: str) -> None:
    run_kubectl("apply", "-n", namespace, "-f", "-", input=text)


def rollout_of(obj: dict[str, Any]) -> dict[str, Any]:
    return (obj.get("status") or {}).get("rollout") or {}


def replicas_by_revision(name: str, namespace: str) -> dict[str, int]:
    """`spec.replicas` of each revision's Deployment."""
    return {
        d["metadata"]["labels"]["kubellm.io/revision"]: d["spec"]["replicas"]
        for d in items("deployments", namespace, f"app.kubernetes.io/instance={name}")
    }


def pod_uids(namespace: str, revision: str) -> set[str]:
    return {
        p["metadata"]["uid"] for p in items("pods", namespace, f"kubellm.io/revision={revision}")
    }


def wait_step(name: str, namespace: str, weight: int, timeout: float = 60) -> dict[str, Any]:
    """The rollout at `weight` with the canary's pods Ready (its analysis under way)."""

    def at_step() -> dict[str, Any] | None:
        obj = get("llmd", name, namespace)
        rollout = rollout_of(obj)
        ready = "waiting for canary pods" not in rollout.get("message", "")
        return obj if rollout.get("canaryWeight") == weight and ready else None

    result: dict[str, Any] = poll(at_step, timeout=timeout, message=f"{name} at {weight}%")
    return result


def wait_finished(name: str, namespace: str, revision: str, timeout: float = 90) -> dict[str, Any]:
    """The rollout of `revision` closed: in history, and no canary in flight."""

    def finished() -> dict[str, Any] | None:
        obj = get("llmd", name, namespace)
        history = (obj.get("status") or {}).get("history") or []
        done = history and history[0]["revision"] == revision
        return obj if done and not rollout_of(obj).get("canaryRevision") else None

    result: dict[str, Any] = poll(finished, timeout=timeout, message=f"rollout of {revision} done")
    return result


def start_rollout(name: str, namespace: str, text: str) -> tuple[str, str]:
    """Apply a changed spec; (stable, canary) once the canary revision shows up."""
    apply(namespace, text)

    def started() -> tuple[str, str] | None:
        rollout = rollout_of(get("llmd", name, namespace))
        canary = rollout.get("canaryRevision")
        return (rollout["stableRevision"], canary) if canary else None

    result: tuple[str, str] = poll(started, timeout=30, message=f"{name} rollout started")
    return result


def events(namespace: str, name: str) -> list[dict[str, Any]]:
    listing = json.loads(run_kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
    return [e for e in listing["items"] if e["involvedObject"].get("name") == name]


def reasons(namespace: str, name: str) -> set[str]:
    return {e["reason"] for e in events(namespace, name)}


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def kubellm(*args: str) -> str:
    """The SRE CLI (`kubellm status|promote|abort NAME -n NS`); its stdout."""
    proc = subprocess.run([KUBELLM, *args], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"kubellm {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def annotate_request(name: str, namespace: str, request: str) -> None:
    """What `kubellm promote|abort` write, by hand: the rollout (and step) they are for."""
    rollout = rollout_of(get("llmd", name, namespace))
    token = f"{rollout['canaryRevision']}@{rollout['startedAt']}"
    if request == "promote":
        token += f"#{rollout.get('currentStep') or 0}"
    run_kubectl(
        "annotate", "--overwrite", f"llmd/{name}", "-n", namespace, f"kubellm.io/{request}={token}"
    )


def assert_rolled_back(
    name: str, namespace: str, stable: str, canary: str, signal_name: str
) -> dict[str, Any]:
    """Degraded/RolledBack, canary Deployment gone, the stable back at full size."""
    obj = wait_finished(name, namespace, canary, timeout=60)
    entry = obj["status"]["history"][0]
    assert entry["result"] == "RolledBack", entry
    assert signal_name in entry["reason"], entry
    degraded = condition(obj, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolledBack", degraded
    assert obj["status"]["phase"] == "Degraded"
    assert obj["status"]["rollout"]["stableRevision"] == stable
    poll(
        lambda: replicas_by_revision(name, namespace) == {stable: 4},
        timeout=30,
        message="canary Deployment deleted, stable back to 4",
    )
    assert "RolledBack" in reasons(namespace, name)
    return obj


# ---------------------------------------------------------------------------- journeys


@pytest.mark.timeout(150)
def test_model_change_promoted_step_by_step(
    operators: Operators, fleet: Fleet, ns: str, tmp_path: Path
) -> None:
    name = "promo"
    steps = [{"weight": w, "pause": {"duration": "5s"}} for w in (25, 50, 75)]
    spec = analysis(fleet.prometheus.url)
    with fleet.track(ns, name):
        apply(ns, manifest(name, OLD_MODEL, steps, spec))
        wait_ready(name, ns)
        # the SRE follows along: `kubellm status NAME --watch`
        watch_log = tmp_path / "status-watch.txt"
        with watch_log.open("w") as out:
            watcher = subprocess.Popen(
                [KUBELLM, "status", name, "-n", ns, "--watch"], stdout=out, stderr=out
            )
        stable, canary = start_rollout(name, ns, manifest(name, NEW_MODEL, steps, spec))
        assert stable != canary

        observed: list[int] = []
        splits: dict[int, dict[str, int]] = {}
        columns: dict[int, str] = {}  # `kubectl get llmd` at each step

        def watch() -> dict[str, Any] | None:
            obj = get("llmd", name, ns)
            rollout = rollout_of(obj)
            if rollout.get("canaryRevision") == canary:
                weight = rollout.get("canaryWeight", 0)
                if not observed or observed[-1] != weight:
                    observed.append(weight)
                if weight in (25, 50, 75) and weight not in splits:
                    splits[weight] = replicas_by_revision(name, ns)
                    columns[weight] = run_kubectl("get", "llmd", name, "-n", ns).stdout
            history = (obj.get("status") or {}).get("history") or []
            finished = history and history[0]["revision"] == canary
            return obj if finished and not rollout.get("canaryRevision") else None

        try:
            obj = poll(watch, timeout=120, interval=0.3, message="promotion")
            poll(
                lambda: "Rollouts: 1 total, 1 succeeded" in watch_log.read_text(),
                timeout=15,
                message="`kubellm status --watch` showing the promotion",
            )
        finally:
            watcher.terminate()
            watcher.wait(10)
    print(f"canary weights observed: {observed}")
    story = watch_log.read_text()
    shown = [
        story.find(f"Rollout: {canary} at {w}%, step {i}/3") for i, w in ((1, 25), (2, 50), (3, 75))
    ]
    assert -1 not in shown and shown == sorted(shown), story
    assert "Rollouts: 1 total, 1 succeeded, 0 failed, success rate 100%" in story, story

    steps_seen = [w for w in observed if w in (25, 50, 75)]
    assert steps_seen == [25, 50, 75], observed
    assert observed == sorted(observed), observed
    # replicas routing: the canary's pods count against the total of 4
    assert splits[25] == {stable: 3, canary: 1}, splits
    assert splits[50] == {stable: 2, canary: 2}, splits
    assert splits[75] == {stable: 1, canary: 3}, splits
    for weight, printed in columns.items():
        header, row = printed.splitlines()[:2]
        canary_column = header.split().index("CANARY")
        assert row.split()[canary_column] == str(weight), printed

    status = obj["status"]
    entry = status["history"][0]
    assert entry["result"] == "Succeeded", entry
    assert "model" in entry["changed"] and entry["model"] == NEW_MODEL, entry
    assert status["rolloutStats"]["successRate"] == 1.0
    assert status["rolloutStats"]["succeeded"] == 1 and status["rolloutStats"]["total"] == 1
    assert status["rollout"]["stableRevision"] == canary
    poll(
        lambda: replicas_by_revision(name, ns) == {canary: 4},
        timeout=30,
        message="old revision's Deployment deleted",
    )
    assert wait_ready(name, ns)["status"]["phase"] == "Ready"
    rollouts = operators.metric("kubellm_rollouts_total", namespace=ns, llmdeployment=name)
    succeeded = operators.metric(
        "kubellm_rollouts_total", namespace=ns, llmdeployment=name, result="Succeeded"
    )
    assert (succeeded, rollouts) == (1, 1)
    seen = reasons(ns, name)
    assert {"RolloutStarted", "StepAdvanced", "RolloutSucceeded"} <= seen, seen
    advanced = [e for e in events(ns, name) if e["reason"] == "StepAdvanced"]
    assert sum(e.get("count", 1) for e in advanced) >= 3, advanced


@pytest.mark.timeout(120)
def test_canary_with_high_error_rate_rolled_back(
    operators: Operators, fleet: Fleet, ns: str
) -> None:
    name = "errors"
    steps = [{"weight": 25, "pause": {"duration": "30s"}}, {"weight": 50, "pause": {}}]
    spec = analysis(fleet.prometheus.url)
    with fleet.track(ns, name, stable=HEALTHY, canary=ERRORS):
        apply(ns, manifest(name, OLD_MODEL, steps, spec))
        first = wait_ready(name, ns)["status"]["rollout"]["stableRevision"]
        before = pod_uids(ns, first)
        stable, canary = start_rollout(name, ns, manifest(name, NEW_MODEL, steps, spec))
        assert stable == first
        stable_deployment = get("deployment", f"{name}-{stable}", ns)["metadata"]["uid"]
        wait_step(name, ns, 25)
        during = pod_uids(ns, stable)
        assert len(during) == 3 and replicas_by_revision(name, ns) == {stable: 3, canary: 1}
        assert during <= before, (during, before)
        obj = assert_rolled_back(name, ns, stable, canary, "errorRate")
    entry = obj["status"]["history"][0]
    print(f"rolled back: {entry['reason']}")
    # The stable Deployment is the same object; none of the pods that served during the
    # canary was restarted (one pod comes back to refill the canary's share).
    assert get("deployment", f"{name}-{stable}", ns)["metadata"]["uid"] == stable_deployment
    after = poll(
        lambda: u if len(u := pod_uids(ns, stable)) == 4 else None,
        timeout=30,
        message="stable back to 4 pods",
    )
    assert during <= after, (during, after)
    poll(lambda: not pod_uids(ns, canary), timeout=30, message="canary pods gone")
    assert (
        operators.metric(
            "kubellm_rollouts_total", namespace=ns, llmdeployment=name, result="RolledBack"
        )
        == 1
    )

    # The SRE reverts the spec (git revert): Ready again, nothing restarted, nothing new
    # in the history.
    apply(ns, manifest(name, OLD_MODEL, steps, spec))
    obj = wait_ready(name, ns, timeout=30)
    assert condition(obj, "Degraded")["status"] == "False", condition(obj, "Degraded")
    assert len(obj["status"]["history"]) == 1 and obj["status"]["rolloutStats"]["total"] == 1
    assert not rollout_of(obj).get("canaryRevision")
    assert pod_uids(ns, stable) == after


@pytest.mark.timeout(120)
def test_latency_regression_rolled_back(operators: Operators, fleet: Fleet, ns: str) -> None:
    name = "slow"
    steps = [{"weight": 50, "pause": {"duration": "30s"}}]
    spec = analysis(fleet.prometheus.url)
    with fleet.track(ns, name, stable=HEALTHY, canary=SLOW):
        apply(ns, manifest(name, OLD_MODEL, steps, spec))
        wait_ready(name, ns)
        stable, canary = start_rollout(name, ns, manifest(name, NEW_MODEL, steps, spec))
        obj = assert_rolled_back(name, ns, stable, canary, "latencyP95")
    print(f"rolled back: {obj['status']['history'][0]['reason']}")


@pytest.mark.timeout(120)
def test_failing_custom_check_rolled_back(operators: Operators, fleet: Fleet, ns: str) -> None:
    name = "check"
    steps = [{"weight": 50, "pause": {"duration": "30s"}}]
    check = {"name": "decodeTokensPerSecond", "query": DECODE_SPEED, "min": 100}
    spec = analysis(fleet.prometheus.url, checks=[check])
    # 16 tokens at 40 tokens/s: ~38 tokens per second of request time, the stable ~160
    crawling = {**HEALTHY, "tokens_per_second": 40}
    with fleet.track(ns, name, stable=HEALTHY, canary=crawling):
        apply(ns, manifest(name, OLD_MODEL, steps, spec))
        wait_ready(name, ns)
        stable, canary = start_rollout(name, ns, manifest(name, NEW_MODEL, steps, spec))
        obj = assert_rolled_back(name, ns, stable, canary, "decodeTokensPerSecond")
    reason = obj["status"]["history"][0]["reason"]
    print(f"rolled back: {reason}")
    assert "errorRate" not in reason and "latencyP95" not in reason, reason
    # the stable's decode speed passes the same check: the query was about the canary
    value = fleet.prometheus.query(
        DECODE_SPEED.replace("$namespace", ns)
        .replace("$llmdeployment", name)
        .replace("$revision", stable)
    )
    assert value and float(value[0]["value"][1]) > 100, value


@pytest.mark.timeout(150)
def test_operator_killed_mid_step_resumes_that_step(
    operators: Operators, fleet: Fleet, ns: str
) -> None:
    name = "resume"
    steps = [
        {"weight": 25, "pause": {"duration": "5s"}},
        {"weight": 50, "pause": {"duration": "60s"}},
        {"weight": 75, "pause": {"duration": "5s"}},
    ]
    spec = analysis(fleet.prometheus.url)
    with fleet.track(ns, name):
        apply(ns, manifest(name, OLD_MODEL, steps, spec))
        wait_ready(name, ns)
        stable, canary = start_rollout(name, ns, manifest(name, NEW_MODEL, steps, spec))
        before = rollout_of(wait_step(name, ns, 50, timeout=60))
        assert before["currentStep"] == 1
        uids = pod_uids(ns, stable) | pod_uids(ns, canary)

        killed_at = datetime.now(UTC)
        successor = operators.kill_and_replace()

        def analysed_by_successor() -> dict[str, Any] | None:
            rollout = rollout_of(get("llmd", name, ns))
            ran = (rollout.get("analysis") or {}).get("time")
            return rollout if ran and parse_time(ran) > killed_at else None

        # the successor runs the step's analysis again: the step is alive, not just recorded
        # The killed replica's peering keep-alive (20 s) must expire before the successor leads.
        after = poll(analysed_by_successor, timeout=60, message="an analysis by the successor")
        assert successor.metric("kubellm_canary_weight", namespace=ns, llmdeployment=name) == 50
        assert after["canaryRevision"] == canary and after["stableRevision"] == stable
        assert after["currentStep"] == 1 and after["canaryWeight"] == 50, after
        assert after["stepStartedAt"] == before["stepStartedAt"]
        assert after["startedAt"] == before["startedAt"]
        assert replicas_by_revision(name, ns) == {stable: 2, canary: 2}
        assert pod_uids(ns, stable) | pod_uids(ns, canary) == uids

        story = kubellm("status", name, "-n", ns)
        assert f"Rollout: {canary} at 50%, step 2/3" in story, story
        annotate_request(name, ns, "promote")  # as `kubellm promote` would
        wait_step(name, ns, 75, timeout=30)
        obj = wait_finished(name, ns, canary, timeout=60)
    entry = obj["status"]["history"][0]
    assert entry["result"] == "Succeeded", entry
    assert entry["startTime"] == before["startedAt"]
    assert (
        successor.metric(
            "kubellm_rollouts_total", namespace=ns, llmdeployment=name, result="Succeeded"
        )
        == 1
    )


@pytest.mark.timeout(120)
def test_hpa_resize_mid_canary_follows_the_split(operators: Operators, ns: str) -> None:
    """No custom-metrics adapter locally: write the scale subresource as the HPA would."""
    name = "hpa"
    steps = [{"weight": 50, "pause": {}}]
    apply(ns, manifest(name, OLD_MODEL, steps, None))
    wait_ready(name, ns)
    stable, canary = start_rollout(name, ns, manifest(name, NEW_MODEL, steps, None))
    wait_step(name, ns, 50)
    assert replicas_by_revision(name, ns) == {stable: 2, canary: 2}

    run_kubectl("scale", f"llmd/{name}", "-n", ns, "--replicas=6")
    poll(
        lambda: replicas_by_revision(name, ns) == {stable: 3, canary: 3},
        timeout=30,
        message="split 3/3 of 6",
    )
    obj = poll(
        lambda: o if (o := get("llmd", name, ns))["status"].get("readyReplicas") == 6 else None,
        timeout=30,
        message="6 Ready",
    )
    assert rollout_of(obj)["canaryWeight"] == 50 and rollout_of(obj)["paused"] is True
    assert {r["revision"]: r["replicas"] for r in obj["status"]["revisions"]} == {
        stable: 3, canary: 3,
    }  # fmt: skip

    run_kubectl("scale", f"llmd/{name}", "-n", ns, "--replicas=3")
    poll(
        lambda: replicas_by_revision(name, ns) == {stable: 1, canary: 2},
        timeout=30,
        message="split of 3 at 50%: the canary rounds half up",
    )

    kubellm("promote", name, "-n", ns)
    wait_finished(name, ns, canary, timeout=60)
    poll(
        lambda: replicas_by_revision(name, ns) == {canary: 3},
        timeout=30,
        message="the promoted revision at the HPA's total",
    )


@pytest.mark.timeout(150)
def test_history_and_success_rate_after_mixed_outcomes(
    operators: Operators, fleet: Fleet, ns: str
) -> None:
    name = "mixed"
    steps = [{"weight": 50, "pause": {"duration": "5s"}}]
    spec = analysis(fleet.prometheus.url)
    third = "Qwen/Qwen2.5-7B-Instruct"
    with fleet.track(ns, name, stable=HEALTHY, canary=HEALTHY) as tracked:
        apply(ns, manifest(name, OLD_MODEL, steps, spec))
        wait_ready(name, ns)
        _, good = start_rollout(name, ns, manifest(name, NEW_MODEL, steps, spec))
        wait_finished(name, ns, good)
        tracked.canary = ERRORS  # the next revision to show up as a canary errors
        _, bad = start_rollout(name, ns, manifest(name, third, steps, spec))
        obj = wait_finished(name, ns, bad, timeout=60)
    status = obj["status"]
    assert [(h["revision"], h["result"]) for h in status["history"]] == [
        (bad, "RolledBack"), (good, "Succeeded"),
    ]  # fmt: skip
    assert [h["model"] for h in status["history"]] == [third, NEW_MODEL]
    stats = status["rolloutStats"]
    assert (stats["total"], stats["succeeded"], stats["failed"]) == (2, 1, 1), stats
    assert stats["successRate"] == 0.5
    assert (
        operators.metric("kubellm_rollout_success_ratio", namespace=ns, llmdeployment=name) == 0.5
    )

    story = kubellm("status", name, "-n", ns)
    print(story)
    history = story[story.index("History:") :]
    rows = [line.split() for line in history.splitlines()[2:4]]
    assert [row[:2] for row in rows] == [[bad, "RolledBack"], [good, "Succeeded"]], story
    assert "Rollouts: 2 total, 1 succeeded, 1 failed, success rate 50%" in story, story
    assert f"{ns}/{name}: Degraded" in story, story


@pytest.mark.timeout(120)
def test_abort_a_running_canary(operators: Operators, fleet: Fleet, ns: str) -> None:
    name = "abort"
    steps = [{"weight": 50, "pause": {}}]
    spec = analysis(fleet.prometheus.url)
    with fleet.track(ns, name):
        apply(ns, manifest(name, OLD_MODEL, steps, spec))
        wait_ready(name, ns)
        stable, canary = start_rollout(name, ns, manifest(name, NEW_MODEL, steps, spec))
        wait_step(name, ns, 50)
        kubellm("abort", name, "-n", ns)
        obj = wait_finished(name, ns, canary, timeout=30)
    entry = obj["status"]["history"][0]
    assert entry["result"] == "Aborted", entry
    degraded = condition(obj, "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "Aborted", degraded
    poll(
        lambda: replicas_by_revision(name, ns) == {stable: 4},
        timeout=30,
        message="canary deleted, stable back to 4",
    )
    stats = obj["status"]["rolloutStats"]
    assert (stats["total"], stats["failed"], stats["successRate"]) == (1, 1, 0.0), stats
    assert "Aborted" in reasons(ns, name)
    # the aborted revision stays rejected: no new rollout of the same spec starts by itself
    time.sleep(4)
    assert not rollout_of(get("llmd", name, ns)).get("canaryRevision")


@pytest.mark.timeout(120)
def test_promotion_completes_when_every_gpu_is_in_use(operators: Operators, ns: str) -> None:
    """GPUs are scarce: the canary's pods can only use what the stable gives back.

    Two L4 nodes of 8 GPUs, two replicas of TP 8: the deployment fills the pool. The step
    at 50% trades a stable pod for a canary pod; promotion must do the same.
    """
    name = "full"
    steps = [{"weight": 50, "pause": {"duration": "5s"}}]

    def full(model: str) -> str:
        body = json.loads(manifest(name, model, steps, None, replicas=2))
        body["spec"]["resources"] = {"gpu": {"type": "L4"}, "tensorParallel": 8}
        return json.dumps(body)

    apply(ns, full(OLD_MODEL))
    try:
        wait_ready(name, ns)
        stable, canary = start_rollout(name, ns, full(NEW_MODEL))
        wait_step(name, ns, 50)
        assert replicas_by_revision(name, ns) == {stable: 1, canary: 1}
        obj = wait_finished(name, ns, canary, timeout=25)
        assert obj["status"]["history"][0]["result"] == "Succeeded"
        poll(
            lambda: replicas_by_revision(name, ns) == {canary: 2},
            timeout=30,
            message="the new revision on both nodes",
        )
    finally:
        # give the L4 nodes back before anything else needs them
        run_kubectl("delete", "llmd", name, "-n", ns, "--wait=true", check=False)
        poll(
            lambda: not items("pods", ns, f"app.kubernetes.io/instance={name}"),
            timeout=60,
            message="pods of the full deployment gone",
        )
