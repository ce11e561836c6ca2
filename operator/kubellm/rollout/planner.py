"""The rollout planner: a pure function from (spec, what the cluster shows) to what to do next.

Everything the planner remembers lives in `status.rollout`, `status.history` and
`status.rolloutStats`, and everything else it reads from the live workloads, so an operator
restart in the middle of a step resumes that step with the same start time. The executor
applies `Plan.targets`, deletes `Plan.delete`, writes the status and emits the events.

Decisions the issue left open (see the tests for each):
- Replica split, `replicas` routing: canary pods count against the total (the GPUs the
  stable frees are the ones the canary needs), at least one pod each while the weight is
  below 100; a single replica cannot be split, so the canary surges by one pod.
- Replica split, `gatewayAPI` routing: the canary gets ceil(total x weight) pods (at least
  one) and the stable keeps the total, so a rollback is only a weight change.
- Promotion is the step after the last: the canary scales to the total and the old stable
  drains as new pods become Ready (`replicas` routing) or stays until then (`gatewayAPI`);
  the rollout is Succeeded, and the old stable deleted, once the new revision is fully Ready.
- A step without a pause lasts one analysis interval, or only until the canary is Ready
  when there is no analysis. `kubellm promote` skips the pause and the analysis of a step,
  never the canary's readiness.
- `recreate` deletes the old workloads and starts the new revision once they are gone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from kubellm.api.models import (
    AnalysisStatus,
    CanaryStep,
    HistoryEntry,
    LLMDeploymentSpec,
    RolloutResult,
    RolloutStats,
    RolloutStatus,
)
from kubellm.rollout.durations import parse_duration
from kubellm.rollout.revision import what_changed
from kubellm.rollout.targets import RevisionTarget

# While waiting on pods to become Ready, look again this often (pod events do not reach the
# LLMDeployment's handlers).
POLL_SECONDS = 10.0
# Makes a step or rollout start strictly after the promote/abort request that caused it, so
# one request never acts twice.
_TICK = timedelta(microseconds=1)
_FAILED: frozenset[str] = frozenset({"RolledBack", "Aborted"})


@dataclass(frozen=True)
class LiveRevision:
    """One revision's workload as read from the cluster."""

    revision: str
    engine: str
    replicas: int
    ready_replicas: int
    snapshot: Mapping[str, Any]  # the `kubellm.io/revision-spec` annotation (pod_relevant)


@dataclass(frozen=True)
class Observed:
    """What the executor read this reconcile; the plan is a function of this and the spec."""

    now: datetime
    desired_revision: str
    desired_engine: str
    desired_snapshot: Mapping[str, Any]
    total_replicas: int
    live: tuple[LiveRevision, ...]
    previous: RolloutStatus | None
    history: tuple[HistoryEntry, ...]
    stats: RolloutStats | None
    analysis: AnalysisStatus | None  # ran this reconcile because `next_analysis_at` was due
    promote_requested_at: datetime | None
    abort_requested_at: datetime | None


@dataclass(frozen=True)
class RolloutEvent:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    targets: tuple[RevisionTarget, ...]
    delete: tuple[str, ...]
    rollout: RolloutStatus
    history: tuple[HistoryEntry, ...]
    stats: RolloutStats
    analyze_at: datetime | None
    requeue_after: float | None
    events: tuple[RolloutEvent, ...]
    outcome: RolloutResult | None
    degraded: tuple[str, str] | None


def timestamp(moment: datetime) -> str:
    """RFC 3339 with microseconds, so ordering against promote/abort requests is exact."""
    return moment.isoformat().replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def analysis_due(previous: RolloutStatus | None, now: datetime) -> bool:
    """Whether the executor should run the canary analysis before planning this reconcile."""
    due = parse_time(previous.next_analysis_at) if previous else None
    return due is not None and now >= due


def split_replicas(total: int, weight: int, routing: str) -> tuple[int, int]:
    """(canary, stable) replicas for a canary at `weight` percent of `total`."""
    if routing == "gatewayAPI":
        return (max(1, math.ceil(total * weight / 100)) if total else 0), total
    if weight >= 100:
        return total, 0
    if total <= 1:
        return total, total  # one replica cannot be split: the canary surges by one pod
    canary = min(total - 1, max(1, math.floor(total * weight / 100 + 0.5)))
    return canary, total - canary


def plan(spec: LLMDeploymentSpec, observed: Observed) -> Plan:
    """What to run, delete and record now; see the module docstring for the rules."""
    return _Planner(spec, observed).run()


class _Planner:
    """One reconcile's planning; accumulates history, stats and events as it decides."""

    def __init__(self, spec: LLMDeploymentSpec, observed: Observed) -> None:
        self.spec = spec
        self.obs = observed
        self.now = observed.now
        self.prev = observed.previous or RolloutStatus()
        self.live = {workload.revision: workload for workload in observed.live}
        self.total = observed.total_replicas
        self.history = list(observed.history)
        self.stats = observed.stats or RolloutStats()
        self.events: list[RolloutEvent] = []
        self.outcome: RolloutResult | None = None
        # The analysis the executor ran this reconcile; used once, and only for its canary.
        self.fresh_analysis = observed.analysis

    # ------------------------------------------------------------------ dispatch

    def run(self) -> Plan:
        desired = self.obs.desired_revision
        stable = self._stable()
        if stable is None:
            return self._steady(desired, RolloutStatus(stable_revision=desired))
        canary = self.prev.canary_revision
        if canary is not None and canary != desired:
            reason = f"the spec changed to revision {desired}"
            self._finish(canary, stable, "Superseded", reason, self.prev)
            if desired == stable:
                message = f"canary {canary} superseded: the spec is back to the stable revision"
                return self._steady(stable, RolloutStatus(stable_revision=stable, message=message))
            return self._start(stable)
        if canary is None:
            if desired == stable:
                return self._steady(stable, RolloutStatus(stable_revision=stable))
            rejected = self._rejected()
            if rejected is not None:
                message = f"revision {desired} was {rejected.result}: {rejected.reason}"
                status = RolloutStatus(stable_revision=stable, message=message)
                return self._steady(stable, status, degraded=(rejected.result, message))
            return self._start(stable)
        return self._progress(stable, canary, self.prev)

    def _progress(self, stable: str, canary: str, state: RolloutStatus) -> Plan:
        started = parse_time(state.started_at)
        abort = self.obs.abort_requested_at
        if abort is not None and started is not None and abort >= started:
            return self._fail(stable, canary, state, "Aborted", "aborted by kubellm abort")
        strategy = self.spec.rollout.strategy
        if strategy == "rolling":
            return self._rolling(stable, canary, state)
        if strategy == "recreate":
            return self._recreate(stable, canary, state)
        return self._canary(stable, canary, state)

    def _start(self, stable: str) -> Plan:
        desired = self.obs.desired_revision
        self.fresh_analysis = None
        start = self._after(self.now, self.obs.abort_requested_at)
        changed = self._changed(stable, desired)
        strategy = self.spec.rollout.strategy
        summary = ", ".join(changed) or "settings"
        self._event("Normal", "RolloutStarted", f"{strategy} rollout of {desired} ({summary})")
        state = RolloutStatus(
            stable_revision=stable,
            canary_revision=desired,
            changed=changed,
            current_step=0 if strategy == "canary" else None,
            step_started_at=timestamp(start),
            started_at=timestamp(start),
        )
        return self._progress(stable, desired, state)

    # ------------------------------------------------------------------ canary

    def _canary(self, stable: str, canary: str, state: RolloutStatus) -> Plan:
        steps = self.spec.rollout.canary.steps
        step = min(state.current_step or 0, len(steps))
        step_start = parse_time(state.step_started_at) or self.now
        if step == len(steps):
            return self._promoting(stable, canary, state)

        config = self.spec.rollout.canary.analysis
        analysis, last_passed = state.analysis, parse_time(state.last_passed_at)
        if self.fresh_analysis is not None and config is not None:
            analysis, self.fresh_analysis = self.fresh_analysis, None
            self._record_analysis(canary, analysis)
            if analysis.verdict == "Passed":
                last_passed = parse_time(analysis.time)
        failures = analysis.failures if analysis else 0
        halted = config is not None and failures > config.failure_limit
        if halted and self.spec.rollout.auto_rollback:
            assert config is not None and analysis is not None
            reason = f"analysis failed {failures} times (failureLimit {config.failure_limit})"
            reason = f"{reason}: {_failing(analysis)}"
            return self._fail(stable, canary, state, "RolledBack", reason)

        promote = self.obs.promote_requested_at
        # A halted rollout resumes only on a promote given after the failure it halted on.
        promote_after = parse_time(analysis.time) if halted and analysis else step_start
        promoted = promote is not None and promote_after is not None and promote >= promote_after
        routing = self.spec.rollout.canary.traffic_routing.type
        weight = steps[step].weight
        canary_replicas, _ = split_replicas(self.total, weight, routing)
        ready = self._ready(canary)
        pods_ready = ready >= canary_replicas
        duration = self._step_duration(steps[step])
        step_end = step_start + timedelta(seconds=duration) if duration is not None else None
        # Strictly after: a pass at the very instant a step began belongs to the step before.
        passed = config is None or (last_passed is not None and last_passed > step_start)
        waited = step_end is not None and self.now >= step_end

        if pods_ready and (promoted or (not halted and waited and passed)):
            if halted and analysis is not None:
                analysis = analysis.model_copy(update={"failures": 0})
            step += 1
            step_start = self._after(self.now, promote)
            how = "promoted" if promoted else "advanced"
            target = f"{steps[step].weight}%" if step < len(steps) else "promotion"
            self._event("Normal", "StepAdvanced", f"canary {canary} {how} to {target}")
            state = state.model_copy(
                update={
                    "current_step": step,
                    "step_started_at": timestamp(step_start),
                    "analysis": analysis,
                    "last_passed_at": timestamp(last_passed) if last_passed else None,
                    "paused": False,
                }
            )
            return self._canary(stable, canary, state)

        analyze_at = None
        if config is not None and pods_ready and not halted:
            last_run = parse_time(analysis.time) if analysis else None
            base = max(step_start, last_run) if last_run else step_start
            analyze_at = base + timedelta(seconds=parse_duration(config.interval))
        if halted:
            message = "analysis failed; paused until `kubellm promote` or `kubellm abort`"
        elif not pods_ready:
            message = f"waiting for canary pods: {ready}/{canary_replicas} Ready"
        elif step_end is None:
            message = "paused until `kubellm promote`"
        elif not passed:
            message = _analysis_wait(analysis, step_start)
        else:
            message = f"holding {weight}% until {timestamp(step_end)}"
        status = state.model_copy(
            update={
                "canary_weight": weight,
                "paused": halted or (pods_ready and step_end is None),
                "message": f"step {step + 1}/{len(steps)}: {message}",
                "analysis": analysis,
                "last_passed_at": timestamp(last_passed) if last_passed else None,
                "next_analysis_at": timestamp(analyze_at) if analyze_at else None,
            }
        )
        upcoming = [step_end if pods_ready and not halted else None, analyze_at]
        due = [t for t in upcoming if t is not None and t > self.now]
        requeue = self._seconds_until(min(due)) if due else None
        if not pods_ready:
            requeue = POLL_SECONDS
        degraded = ("AnalysisFailed", status.message) if halted else None
        return self._result(
            self._split(stable, canary, weight),
            status,
            analyze_at=analyze_at,
            requeue_after=requeue,
            degraded=degraded,
        )

    def _promoting(self, stable: str, canary: str, state: RolloutStatus) -> Plan:
        """After the last step: the canary takes the total from the old stable.

        With `replicas` routing pods are traded, not surged (a quarter of the total at a
        time, like a Deployment's default maxUnavailable): when every GPU is in use, a surge
        pod would wait forever for a GPU the old stable still holds. The canary never
        shrinks; if its pods crash, the old stable takes capacity back.
        """
        ready = min(self._ready(canary), self.total)
        if ready >= self.total:
            reason = "promoted after the last step"
            self._finish(canary, stable, "Succeeded", reason, state)
            self._event("Normal", "RolloutSucceeded", f"revision {canary} promoted: it is stable")
            return self._steady(canary, RolloutStatus(stable_revision=canary))
        steps = self.spec.rollout.canary.steps
        last_weight = steps[-1].weight if steps else 0
        routing = self.spec.rollout.canary.traffic_routing.type
        if routing == "gatewayAPI":  # the stable keeps every pod until the switch is done
            canary_replicas, stable_replicas = self.total, self.total
        else:  # trade pods, never surge: GPUs are often all in use
            budget = math.ceil(self.total / 4)
            current = self.live[canary].replicas if canary in self.live else 0
            canary_replicas = min(self.total, max(current, ready + budget))
            stable_replicas = max(0, self.total - ready - budget)  # more if canary pods crash
        weight = 100 if stable_replicas == 0 else max(last_weight, 100 * ready // self.total)
        targets = (
            RevisionTarget(stable, self._engine(stable), stable_replicas, 100 - weight),
            RevisionTarget(canary, self._engine(canary), canary_replicas, weight),
        )
        message = f"promoting: {ready}/{self.total} new pods Ready"
        status = state.model_copy(
            update={
                "canary_weight": weight,
                "paused": False,
                "message": message,
                "next_analysis_at": None,
            }
        )
        return self._result(targets, status, requeue_after=POLL_SECONDS)

    def _split(self, stable: str, canary: str, weight: int) -> tuple[RevisionTarget, ...]:
        routing = self.spec.rollout.canary.traffic_routing.type
        canary_replicas, stable_replicas = split_replicas(self.total, weight, routing)
        return (
            RevisionTarget(stable, self._engine(stable), stable_replicas, 100 - weight),
            RevisionTarget(canary, self._engine(canary), canary_replicas, weight),
        )

    def _step_duration(self, step: CanaryStep) -> float | None:
        """Seconds the step holds; None waits for `kubellm promote`."""
        if step.pause is not None:
            return parse_duration(step.pause.duration) if step.pause.duration else None
        analysis = self.spec.rollout.canary.analysis
        return parse_duration(analysis.interval) if analysis else 0.0

    def _record_analysis(self, canary: str, analysis: AnalysisStatus) -> None:
        detail = f"canary {canary}: {_summary(analysis)}"
        if analysis.verdict == "Failed":
            self._event("Warning", "AnalysisFailed", detail)
        else:
            self._event("Normal", f"Analysis{analysis.verdict}", detail)

    # ------------------------------------------------------------ rolling, recreate

    def _rolling(self, stable: str, new: str, state: RolloutStatus) -> Plan:
        """Surge one new pod at a time; the old revision gives up one pod per Ready new pod."""
        ready = min(self._ready(new), self.total)
        if ready >= self.total:
            self._finish(new, stable, "Succeeded", "all new pods Ready", state)
            self._event("Normal", "RolloutSucceeded", f"revision {new} is stable")
            return self._steady(new, RolloutStatus(stable_revision=new))
        current = self.live[new].replicas if new in self.live else 0
        surge = min(self.total, max(current, ready + 1))
        weight = 100 * ready // self.total
        targets = (
            RevisionTarget(stable, self._engine(stable), self.total - ready, 100 - weight),
            RevisionTarget(new, self._engine(new), surge, weight),
        )
        message = f"rolling: {ready}/{self.total} new pods Ready"
        status = state.model_copy(update={"canary_weight": weight, "message": message})
        return self._result(targets, status, requeue_after=POLL_SECONDS)

    def _recreate(self, stable: str, new: str, state: RolloutStatus) -> Plan:
        """Old workloads go first (their GPUs are the new revision's), then the new starts."""
        old = tuple(sorted(r for r in self.live if r != new))
        if old:
            message = f"recreate: stopping {', '.join(old)}"
            status = state.model_copy(update={"canary_weight": 0, "message": message})
            return self._result((), status, requeue_after=POLL_SECONDS)
        ready = min(self._ready(new), self.total)
        if ready >= self.total:
            self._finish(new, stable, "Succeeded", "all new pods Ready", state)
            self._event("Normal", "RolloutSucceeded", f"revision {new} is stable")
            return self._steady(new, RolloutStatus(stable_revision=new))
        message = f"recreate: {ready}/{self.total} new pods Ready"
        status = state.model_copy(update={"canary_weight": 100, "message": message})
        target = RevisionTarget(new, self._engine(new), self.total, 100)
        return self._result((target,), status, requeue_after=POLL_SECONDS)

    # ------------------------------------------------------------ endings and steady

    def _fail(
        self, stable: str, canary: str, state: RolloutStatus, result: RolloutResult, reason: str
    ) -> Plan:
        """Rollback or abort: the stable takes everything back; the canary goes now."""
        self._finish(canary, stable, result, reason, state)
        message = f"revision {canary} {result}: {reason}"
        self._event("Warning", result, message)
        status = RolloutStatus(stable_revision=stable, message=message)
        return self._steady(stable, status, degraded=(result, message))

    def _steady(
        self, stable: str, status: RolloutStatus, degraded: tuple[str, str] | None = None
    ) -> Plan:
        """One revision serves everything; any other workload goes."""
        target = RevisionTarget(stable, self._engine(stable), self.total, 100)
        return self._result((target,), status, degraded=degraded)

    def _finish(
        self,
        revision: str,
        stable: str,
        result: RolloutResult,
        reason: str,
        state: RolloutStatus,
    ) -> None:
        """Close the rollout of `revision`: history entry, counters, outcome."""
        snapshot = self._snapshot(revision)
        model, engine = snapshot.get("model", {}), snapshot.get("engine", {})
        entry = HistoryEntry(
            revision=revision,
            # Recorded at the start: the old revision's workload may be gone by now (recreate).
            changed=state.changed or self._changed(stable, revision),
            model=model.get("name"),
            image=engine.get("image"),
            start_time=state.started_at or timestamp(self.now),
            end_time=timestamp(self.now),
            result=result,
            reason=reason,
        )
        self.history.insert(0, entry)
        succeeded = self.stats.succeeded + (result == "Succeeded")
        failed = self.stats.failed + (result in _FAILED)
        self.stats = RolloutStats(
            total=self.stats.total + 1,
            succeeded=succeeded,
            failed=failed,
            success_rate=succeeded / (succeeded + failed) if succeeded + failed else None,
        )
        self.outcome = result
        if result == "Superseded":
            self._event("Normal", "Superseded", f"rollout of {revision} superseded: {reason}")

    def _result(
        self,
        targets: tuple[RevisionTarget, ...],
        status: RolloutStatus,
        *,
        analyze_at: datetime | None = None,
        requeue_after: float | None = None,
        degraded: tuple[str, str] | None = None,
    ) -> Plan:
        return Plan(
            targets=targets,
            # Whatever is not targeted goes, including workloads whose deletion is still pending.
            delete=tuple(sorted(set(self.live) - {t.revision for t in targets})),
            rollout=status,
            history=tuple(self.history[: self.spec.rollout.history_limit]),
            stats=self.stats,
            analyze_at=analyze_at,
            requeue_after=requeue_after,
            events=tuple(self.events),
            outcome=self.outcome,
            degraded=degraded,
        )

    # ------------------------------------------------------------------ reading

    def _stable(self) -> str | None:
        """The serving revision: from status, else (status lost) the readiest other workload."""
        if self.prev.stable_revision:
            return self.prev.stable_revision
        others = [w for w in self.obs.live if w.revision != self.obs.desired_revision]
        if not others:
            return None
        return max(others, key=lambda w: (w.ready_replicas, w.replicas, w.revision)).revision

    def _rejected(self) -> HistoryEntry | None:
        """The newest history entry, if it rolled back or aborted the spec's revision."""
        newest = self.history[0] if self.history else None
        if newest and newest.revision == self.obs.desired_revision and newest.result in _FAILED:
            return newest
        return None

    def _ready(self, revision: str) -> int:
        workload = self.live.get(revision)
        return workload.ready_replicas if workload else 0

    def _snapshot(self, revision: str) -> Mapping[str, Any]:
        if revision == self.obs.desired_revision:
            return self.obs.desired_snapshot
        workload = self.live.get(revision)
        return workload.snapshot if workload else {}

    def _engine(self, revision: str) -> str:
        if revision == self.obs.desired_revision:
            return self.obs.desired_engine
        workload = self.live.get(revision)
        engine: str = workload.engine if workload else self.obs.desired_engine
        return engine

    def _changed(self, old: str, new: str) -> list[str]:
        return what_changed(dict(self._snapshot(old)), dict(self._snapshot(new)))

    def _event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(RolloutEvent(kind, reason, message))

    def _seconds_until(self, moment: datetime) -> float:
        return max(1.0, (moment - self.now).total_seconds())

    @staticmethod
    def _after(now: datetime, request: datetime | None) -> datetime:
        return max(now, request + _TICK) if request is not None else now


def _summary(analysis: AnalysisStatus) -> str:
    if analysis.verdict == "Failed":
        return f"failed ({_failing(analysis)}), {analysis.failures} so far"
    if analysis.verdict == "Inconclusive":
        return f"inconclusive ({_inconclusive(analysis)})"
    return "passed"


def _failing(analysis: AnalysisStatus) -> str:
    failed = [r for r in analysis.results if r.verdict == "Failed"]
    return "; ".join(
        f"{r.name} {r.value:.4g} (limit {r.threshold})" for r in failed if r.value is not None
    )


def _inconclusive(analysis: AnalysisStatus) -> str:
    reasons = [f"{r.name}: {r.message}" for r in analysis.results if r.verdict == "Inconclusive"]
    return "; ".join(reasons) or "no data"


def _analysis_wait(analysis: AnalysisStatus | None, step_start: datetime) -> str:
    ran = parse_time(analysis.time) if analysis else None
    last = analysis if ran is not None and ran > step_start else None
    if last is None:
        return "waiting for the first analysis of the step"
    if last.verdict == "Inconclusive":
        return f"analysis inconclusive ({_inconclusive(last)}); waiting for a conclusive pass"
    return f"last analysis {last.verdict.lower()}; waiting for a pass"
