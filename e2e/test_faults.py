"""Break it on purpose: every fault converges, and never at the stable's expense.

Goals (issue 9): every fault converges; a deleted child is back within 10 s; no stable pod is
lost to a canary that is not Ready (one at a time is allowed while the canary waits for
GPUs the stable holds); every failure shows as a condition. The operator here resyncs only
once a minute, so what converges does so on watch events, not on a timer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import fresh_namespace, poll
from faults import (
    GPU_FULL_SPEC,
    Outcome,
    analysed_fleet,
    apiserver_restarted,
    apply,
    canary_without_free_gpu,
    canary_without_node,
    child_deleted,
    child_edited,
    deploy,
    get,
    hand_edits,
    leader_paused,
    operator_killed_mid_rollout,
    prometheus_down,
    settled,
    spec_burst,
    stable_revision,
)
from operator_process import OperatorProcess, apply_crds

PREFIX = "e2e-fault-"
RESYNC = 60.0
NAME = "f"


def start_operator(*extra: str) -> OperatorProcess:
    return OperatorProcess("--standalone", "-n", f"{PREFIX}*", *extra, resync_seconds=RESYNC)


@pytest.fixture(scope="module")
def operator(cluster: Path) -> Iterator[list[OperatorProcess]]:
    """The module's operator, in a list so a test may replace it (SIGKILL)."""
    apply_crds()
    current = [start_operator()]
    yield current
    current[0].stop()


@pytest.fixture
def ns(operator: list[OperatorProcess]) -> Iterator[str]:
    with fresh_namespace(PREFIX) as name:
        yield name
    print(operator[0].tail())


def report(outcome: Outcome) -> Outcome:
    print(outcome)
    assert outcome.converged, outcome
    return outcome


def condition(name: str, ns: str, kind: str) -> dict[str, str]:
    conditions = (get("llmd", name, ns).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


# -------------------------------------------------------------------- children


@pytest.mark.parametrize(
    ("kind", "child"),
    [
        ("deployment", "{name}-{revision}"),
        ("service", "{name}"),
        ("poddisruptionbudget", "{name}"),
        ("controllerrevision", "{name}-{revision}"),
        ("podmonitor", "{name}"),
        ("horizontalpodautoscaler", "{name}"),
    ],
)
def test_a_deleted_child_is_back_within_ten_seconds(ns: str, kind: str, child: str) -> None:
    deploy(ns, NAME, autoscaling={"minReplicas": 2, "maxReplicas": 4, "target": 1500})
    name = child.format(name=NAME, revision=stable_revision(ns, NAME))
    outcome = report(child_deleted(ns, NAME, kind, name))
    assert outcome.seconds <= 10, outcome


def test_edits_by_hand_are_reverted(ns: str) -> None:
    deploy(ns, NAME)
    workload = f"{NAME}-{stable_revision(ns, NAME)}"
    for fault, command, reverted in hand_edits(ns, NAME):
        report(child_edited(ns, NAME, fault, command, reverted))
    container = get("deployment", workload, ns)["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] != "busybox:1"


# -------------------------------------------------------------- processes, server


def test_sigkill_mid_step_the_successor_finishes_the_rollout(
    ns: str, operator: list[OperatorProcess]
) -> None:
    deploy(ns, NAME)
    outcome, successor = operator_killed_mid_rollout(ns, NAME, operator[0], start_operator)
    operator[0] = successor
    report(outcome)
    assert outcome.stable_lost == 0, outcome
    assert (get("llmd", NAME, ns)["status"]["history"][0]["result"]) == "Succeeded"


def test_an_api_server_restart_with_a_deletion_behind_the_operators_back(
    ns: str, operator: list[OperatorProcess]
) -> None:
    deploy(ns, NAME)
    outcome = report(apiserver_restarted(ns, NAME, operator[0]))
    assert outcome.stable_lost == 0, outcome
    operator[0].wait_healthy()


def test_a_paused_leader_gives_way_and_two_replicas_never_both_act(cluster: Path) -> None:
    with fresh_namespace("e2e-peer-") as ns:
        peering = f"faults-{ns}"
        leader = OperatorProcess("-n", ns, "--peering", peering, resync_seconds=RESYNC)
        standby = OperatorProcess("-n", ns, "--peering", peering, resync_seconds=RESYNC)
        try:
            deploy(ns, NAME)
            assert standby.metric("kubellm_reconcile_total") == 0, standby.tail()
            report(leader_paused(ns, NAME, leader, standby))
            assert standby.metric("kubellm_reconcile_total") > 0, standby.tail()
            # Thawed, the leader (first started, higher priority) leads again and the standby
            # stops; until Kopf's peering has settled both may act for a keep-alive period.
            poll(lambda: leader.metric("kubellm_leading") == 1
                 and standby.metric("kubellm_leading") == 0, timeout=60,
                 message="the leader back in the lead")  # fmt: skip
            before = standby.metric("kubellm_reconcile_total")
            apply(ns, NAME, replicas=2)
            poll(lambda: (o := settled(ns, NAME)) and o["status"]["readyReplicas"] == 2, timeout=30,
                 message="the leader back at work")  # fmt: skip
            assert standby.metric("kubellm_reconcile_total") == before, standby.tail()
        finally:
            standby.stop()
            leader.stop()


# ------------------------------------------------------------------- spec changes


def test_twenty_spec_updates_in_ten_seconds_converge_on_the_last(ns: str) -> None:
    deploy(ns, NAME)
    outcome = report(spec_burst(ns, NAME))
    assert outcome.stable_lost == 0, outcome
    history = get("llmd", NAME, ns)["status"]["history"]
    assert {h["result"] for h in history} <= {"Superseded", "Succeeded"}


def test_a_canary_no_node_accepts_is_rolled_back_without_touching_the_stable(ns: str) -> None:
    deploy(ns, NAME)
    outcome = report(canary_without_node(ns, NAME))
    assert outcome.stable_lost == 0, outcome
    status = get("llmd", NAME, ns)["status"]
    assert status["history"][0]["reason"].startswith("ProgressDeadlineExceeded")
    degraded = condition(NAME, ns, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ProgressDeadlineExceeded")
    assert status["readyReplicas"] == 2 and status["ready"] == "2/2"


def test_with_every_gpu_in_use_the_stable_yields_one_pod_at_a_time(ns: str) -> None:
    deploy(ns, NAME, **GPU_FULL_SPEC)
    outcome = report(canary_without_free_gpu(ns, NAME))
    assert outcome.stable_lost <= 1, outcome  # one at a time, for a new pod to take its GPUs


def test_pending_canary_pods_say_why_in_the_status(ns: str) -> None:
    deploy(ns, NAME)
    apply(ns, NAME, scheduling={"nodeSelector": {"kubellm.io/pool": "nowhere"}},
          rollout={"canary": {"steps": [{"weight": 50}]}, "progressDeadline": "10m"})  # fmt: skip

    def explained() -> str | None:
        rollout = (get("llmd", NAME, ns).get("status") or {}).get("rollout") or {}
        message = rollout.get("message", "")
        return message if "didn't match Pod's node affinity/selector" in message else None

    message = poll(explained, timeout=30, message="the scheduler's reason in the status")
    assert "0/1 new pods Ready (1 pending" in message


def test_prometheus_down_pauses_the_canary_and_never_rolls_it_back(ns: str, tmp_path: Path) -> None:
    with analysed_fleet(tmp_path) as fleet:
        outcome, paused = prometheus_down(ns, NAME, fleet)
        assert not fleet.errors, fleet.errors
    report(outcome)
    assert outcome.stable_lost == 0, outcome
    status = paused["status"]
    assert not status.get("history"), status  # nothing was rolled back
    assert (
        status["rollout"]["paused"]
        and "paused until `kubellm promote`" in status["rollout"]["message"]
    )
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "False", degraded
    final = get("llmd", NAME, ns)["status"]
    assert final["history"][0]["result"] == "Succeeded"
