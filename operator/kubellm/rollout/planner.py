"""The rollout planner: a pure function from (spec, what the cluster shows) to what to do next.

Everything the planner remembers lives in `status.rollout`, `status.history` and
`status.rolloutStats`, and everything else it reads from the live workloads and pods, so an
operator restart in the middle of a step resumes that step with the same start time. The
executor writes the status, applies `Plan.targets` (rebuilding any revision from its
snapshot), deletes what is not targeted and posts the events.

The rules (see the tests for each):
- New pods start beside the stable. The stable gives up one pod for each new pod that is
  Ready, and one more only while new pods cannot be placed for lack of GPUs (the scheduler's
  "Insufficient <gpu>"), so a full GPU pool can still roll, and a new revision that cannot
  start for any other reason (no matching node, bad image, crash loop) never shrinks the
  stable. The same trade serves canary steps, promotion and the `rolling` strategy.
- `replicas` routing: a step at weight w aims at round(total x w) canary pods (at least one,
  and one less than the total); the traffic really served is the Ready pods' ratio, which is
  what `canaryWeight` reports. A single replica cannot be split: the canary surges by one.
- `gatewayAPI` routing: the canary gets ceil(total x w) pods and the HTTPRoute sends it w only
  once one of them is Ready; the stable keeps the total unless GPUs run short.
- A step holds for its pause, or one analysis interval (only until its pods are Ready when
  there is no analysis). `failureLimit` failed analyses roll back (or pause, without
  `autoRollback`); `inconclusiveLimit` inconclusive ones in a row pause the rollout. A pause
  ends with `kubellm promote`, which names the rollout and the step it releases, never a
  client's clock; `kubellm abort` names the rollout it ends.
- A rollout that goes `progressDeadline` without progress (a step beginning, or one more new
  pod Ready) while its new pods are not all Ready is rolled back: the stable is given its full
  count again (rebuilt from its snapshot if its workload is gone).
- Promotion is the step after the last: the new revision scales to the total beside the old
  one, which drains as new pods become Ready; the rollout has Succeeded, and the old workload
  goes, once the new revision is fully Ready.
- `recreate` deletes the old workloads and starts the new revision once they are gone.
- A revision no longer wanted (a canary superseded by another spec change) keeps its Ready
  pods, serving, until the wanted revisions have Ready pods in their stead; one that failed or
  was aborted goes at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from kubellm.rollout.durations import format_duration, parse_duration
from kubellm.rollout.pods import RevisionPods, why_not_ready
from kubellm.rollout.revision import what_changed
from kubellm.rollout.targets import RevisionTarget
from kubellm.times import parse_time, timestamp

DEFAULT_PROGRESS_DEADLINE = 600.0
_FAILED: frozenset[str] = frozenset({"RolledBack", "Aborted"})


@dataclass(frozen=True)
class LiveRevision:
    """One revision's workload as read from the cluster."""

    revision: str
    engine: str
    replicas: int  # what the workload was last scaled to
    ready_replicas: int
    pods: RevisionPods = field(default_factory=RevisionPods)


@dataclass(frozen=True)
class Observed:
    """What the executor read this reconcile; the plan is a function of this and the spec."""

    now: datetime
    desired_revision: str
    desired_engine: str
    total_replicas: int
    live: tuple[LiveRevision, ...]
    snapshots: Mapping[str, Mapping[str, Any]]  # revision -> its stored pod-relevant spec
    previous: RolloutStatus | None
    history: tuple[HistoryEntry, ...]
    stats: RolloutStats | None
    analysis: AnalysisStatus | None  # ran this reconcile because `next_analysis_at` was due
    promote: str | None = None  # the `kubellm.io/promote` annotation: a `promote_token`
    abort: str | None = None  # the `kubellm.io/abort` annotation: a `rollout_id`
    previous_ready: Mapping[str, int] = field(default_factory=dict)  # from the last status
    # Revisions with neither a workload nor a snapshot left (someone deleted both).
    lost: frozenset[str] = frozenset()
    progress_deadline: float = DEFAULT_PROGRESS_DEADLINE  # seconds


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
    degraded: tuple[str, str] | None  # (reason, message)
    halted: tuple[str, str] | None = None  # (reason, message): paused for a human


def rollout_id(status: RolloutStatus) -> str | None:
    """Names one rollout: its revision and the operator's own start time (`kubellm abort`)."""
    if not status.canary_revision:
        return None
    return f"{status.canary_revision}@{status.started_at}"


def promote_token(status: RolloutStatus) -> str | None:
    """Names one step of one rollout (`kubellm promote` releases exactly that step)."""
    ident = rollout_id(status)
    return f"{ident}#{status.current_step or 0}" if ident else None


def analysis_due(previous: RolloutStatus | None, now: datetime) -> bool:
    """Whether the executor should run the canary analysis before planning this reconcile."""
    due = parse_time(previous.next_analysis_at) if previous else None
    return due is not None and now >= due


def canary_replicas(total: int, weight: int, routing: str) -> int:
    """Canary pods a step at `weight` percent aims at."""
    if total <= 0:
        return 0
    if routing == "gatewayAPI":
        return max(1, math.ceil(total * weight / 100))
    if weight >= 100 or total == 1:
        return total
    return min(total - 1, max(1, math.floor(total * weight / 100 + 0.5)))


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
            if self.prev.canary_revision and self.prev.canary_revision != desired:
                reason = f"the spec changed to revision {desired}"
                self._finish(self.prev.canary_revision, desired, "Superseded", reason, self.prev)
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
                reason = rejected.reason.split(":", 1)[0] if rejected.reason else ""
                why = reason if reason == "ProgressDeadlineExceeded" else rejected.result
                return self._steady(stable, status, degraded=(why, message))
            return self._start(stable)
        return self._progress(stable, canary, self.prev)

    def _progress(self, stable: str, canary: str, state: RolloutStatus) -> Plan:
        if self.obs.abort is not None and self.obs.abort == rollout_id(state):
            return self._fail(stable, canary, state, "Aborted", "aborted by kubellm abort")
        state = self._track_progress(canary, state)
        strategy = self.spec.rollout.strategy
        if strategy == "rolling":
            return self._rolling(stable, canary, state)
        if strategy == "recreate":
            return self._recreate(stable, canary, state)
        return self._canary(stable, canary, state)

    def _start(self, stable: str) -> Plan:
        desired = self.obs.desired_revision
        self.fresh_analysis = None
        changed = self._changed(stable, desired)
        strategy = self.spec.rollout.strategy
        summary = ", ".join(changed) or "settings"
        self._event("Normal", "RolloutStarted", f"{strategy} rollout of {desired} ({summary})")
        start = timestamp(self.now)
        state = RolloutStatus(
            stable_revision=stable,
            canary_revision=desired,
            changed=changed,
            current_step=0 if strategy == "canary" else None,
            step_started_at=start,
            started_at=start,
            progressed_at=start,
        )
        return self._progress(stable, desired, state)

    def _track_progress(self, new: str, state: RolloutStatus) -> RolloutStatus:
        """One more new pod Ready than at the last reconcile is progress."""
        if self._ready(new) > self.obs.previous_ready.get(new, 0):
            return state.model_copy(update={"progressed_at": timestamp(self.now)})
        return state

    def _deadline(self, state: RolloutStatus) -> datetime:
        since = parse_time(state.progressed_at or state.step_started_at or state.started_at)
        return (since or self.now) + timedelta(seconds=self.obs.progress_deadline)

    def _stuck(self, stable: str, new: str, state: RolloutStatus, want: int) -> Plan | None:
        """Roll back when the new pods made no progress within the progress deadline."""
        if self.now < self._deadline(state):
            return None
        pods = self._pods(new)
        ready = self._ready(new)
        limit = format_duration(self.obs.progress_deadline)
        reason = (
            f"ProgressDeadlineExceeded: {ready}/{want} new pods Ready after {limit} without"
            f" progress ({why_not_ready(pods)}); raise spec.rollout.progressDeadline if the"
            " model takes longer to load"
        )
        return self._fail(stable, new, state, "RolledBack", reason)

    def _waiting(self, new: str, want: int, state: RolloutStatus) -> tuple[str, float]:
        """What the rollout waits for, and seconds until its progress deadline."""
        deadline = self._deadline(state)
        left = (deadline - self.now).total_seconds()
        detail = why_not_ready(self._pods(new))
        when = deadline.strftime("%Y-%m-%dT%H:%M:%SZ")
        message = f"{self._ready(new)}/{want} new pods Ready ({detail}); progress deadline {when}"
        return message, max(1.0, left)

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
        failed = config is not None and failures > config.failure_limit
        if failed and self.spec.rollout.auto_rollback:
            assert config is not None and analysis is not None
            reason = f"analysis failed {failures} times (failureLimit {config.failure_limit})"
            reason = f"{reason}: {_failing(analysis)}"
            return self._fail(stable, canary, state, "RolledBack", reason)
        inconclusive = (
            config is not None
            and analysis is not None
            and analysis.inconclusive >= config.inconclusive_limit
        )
        halted = failed or inconclusive

        promoted = self.obs.promote is not None and self.obs.promote == promote_token(state)
        routing = self.spec.rollout.canary.traffic_routing.type
        weight = steps[step].weight
        want = canary_replicas(self.total, weight, routing)
        ready = min(self._ready(canary), want)
        pods_ready = ready >= want
        if not pods_ready and (stuck := self._stuck(stable, canary, state, want)):
            return stuck
        duration = self._step_duration(steps[step])
        step_end = step_start + timedelta(seconds=duration) if duration is not None else None
        # Strictly after: a pass at the very instant a step began belongs to the step before.
        passed = config is None or (last_passed is not None and last_passed > step_start)
        waited = step_end is not None and self.now >= step_end

        if pods_ready and (promoted or (not halted and waited and passed)):
            if analysis is not None:
                fresh = {"inconclusive": 0, **({"failures": 0} if halted else {})}
                analysis = analysis.model_copy(update=fresh)
            step += 1
            how = "promoted" if promoted else "advanced"
            target = f"{steps[step].weight}%" if step < len(steps) else "promotion"
            self._event("Normal", "StepAdvanced", f"canary {canary} {how} to {target}")
            state = state.model_copy(
                update={
                    "current_step": step,
                    "step_started_at": timestamp(self.now),
                    "progressed_at": timestamp(self.now),
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
        deadline_in = None
        if failed:
            message = "analysis failed; paused until `kubellm promote` or `kubellm abort`"
        elif inconclusive:
            assert config is not None
            message = (
                f"analysis inconclusive {config.inconclusive_limit} times in a row"
                f" ({_inconclusive(analysis) if analysis else 'no data'}); paused until"
                " `kubellm promote` or `kubellm abort`"
            )
        elif not pods_ready:
            message, deadline_in = self._waiting(canary, want, state)
        elif step_end is None:
            message = "paused until `kubellm promote`"
        elif not passed:
            message = _analysis_wait(analysis, step_start)
        else:
            message = f"holding {weight}% until {timestamp(step_end)}"
        targets, yielded = self._split(stable, canary, weight, want, state)
        status = state.model_copy(
            update={
                "yielded": yielded,
                "canary_weight": self._served(stable, canary, targets, routing),
                "step_weight": weight,
                "paused": halted or (pods_ready and step_end is None),
                "message": f"step {step + 1}/{len(steps)}: {message}",
                "analysis": analysis,
                "last_passed_at": timestamp(last_passed) if last_passed else None,
                "next_analysis_at": timestamp(analyze_at) if analyze_at else None,
            }
        )
        upcoming = [step_end if pods_ready and not halted else None, analyze_at]
        due = [t for t in upcoming if t is not None and t > self.now]
        requeue = self._seconds_until(min(due)) if due else deadline_in
        if failed:
            degraded: tuple[str, str] | None = ("AnalysisFailed", status.message)
            halt: tuple[str, str] | None = ("AnalysisFailed", status.message)
        else:
            degraded = None
            halt = ("AnalysisInconclusive", status.message) if inconclusive else None
        return self._result(
            targets,
            status,
            analyze_at=analyze_at,
            requeue_after=requeue,
            degraded=degraded,
            halted=halt,
        )

    def _promoting(self, stable: str, canary: str, state: RolloutStatus) -> Plan:
        """After the last step: the canary scales to the total beside the old stable."""
        ready = min(self._ready(canary), self.total)
        if ready >= self.total:
            reason = "promoted after the last step"
            self._finish(canary, stable, "Succeeded", reason, state)
            self._event("Normal", "RolloutSucceeded", f"revision {canary} promoted: it is stable")
            return self._steady(canary, RolloutStatus(stable_revision=canary))
        if stuck := self._stuck(stable, canary, state, self.total):
            return stuck
        steps = self.spec.rollout.canary.steps
        last_weight = steps[-1].weight if steps else 0
        routing = self.spec.rollout.canary.traffic_routing.type
        stable_replicas, yielded = self._beside(
            stable, canary, self.total, state, floor=0, trade=routing != "gatewayAPI"
        )
        if routing == "gatewayAPI":
            weight = 100 if stable_replicas == 0 else max(last_weight, 100 * ready // self.total)
        else:
            weight = self._share(canary, self.total, stable, stable_replicas)
        return self._taking_over(
            "promoting", (stable, stable_replicas), (canary, self.total), weight, yielded, state
        )

    def _taking_over(
        self,
        stage: str,
        old: tuple[str, int],
        new: tuple[str, int],
        weight: int,
        yielded: int,
        state: RolloutStatus,
    ) -> Plan:
        """The new revision scaling to the total beside the old one (promotion, `rolling`):
        (revision, replicas) of each, and the share the new one serves."""
        targets = (
            RevisionTarget(old[0], self._engine(old[0]), old[1], 100 - weight),
            RevisionTarget(new[0], self._engine(new[0]), new[1], weight),
        )
        message, deadline_in = self._waiting(new[0], self.total, state)
        status = state.model_copy(
            update={
                "yielded": yielded,
                "canary_weight": weight,
                "step_weight": 100,
                "paused": False,
                "message": f"{stage}: {message}",
                "next_analysis_at": None,
            }
        )
        return self._result(targets, status, requeue_after=deadline_in)

    def _beside(
        self, stable: str, new: str, want: int, state: RolloutStatus, *, floor: int, trade: bool
    ) -> tuple[int, int]:
        """(the stable's replicas, pods it yielded) while `want` new pods start beside it.

        One pod fewer per Ready new pod (when `trade`), and one more only while new pods
        cannot be placed for lack of GPUs, or while the pod placed in its stead loads.
        """
        pods = self._pods(new)
        ready = min(self._ready(new), want)
        yielded = 1 if pods.gpu_starved or (state.yielded and pods.loading) else 0
        traded = ready if trade or yielded else 0
        return max(floor, min(self.total, self.total - traded - yielded)), yielded

    def _split(
        self, stable: str, canary: str, weight: int, want: int, state: RolloutStatus
    ) -> tuple[tuple[RevisionTarget, ...], int]:
        gateway = self.spec.rollout.canary.traffic_routing.type == "gatewayAPI"
        floor = self.total if self.total <= 1 else self.total - want
        stable_replicas, yielded = self._beside(
            stable, canary, want, state, floor=floor, trade=not gateway
        )
        route = weight if not gateway or self._ready(canary) else 0
        targets = (
            RevisionTarget(stable, self._engine(stable), stable_replicas, 100 - route),
            RevisionTarget(canary, self._engine(canary), want, route),
        )
        return targets, yielded

    def _served(
        self, stable: str, canary: str, targets: tuple[RevisionTarget, ...], routing: str
    ) -> int:
        """The canary's share of traffic now: Ready pods for `replicas`, the route's weight."""
        if routing == "gatewayAPI":
            return targets[1].weight
        return self._share(canary, targets[1].replicas, stable, targets[0].replicas)

    def _share(self, new: str, new_replicas: int, stable: str, stable_replicas: int) -> int:
        """Percent of the Ready serving pods that are the new revision's."""
        on_new = min(self._ready(new), new_replicas)
        on_stable = min(self._ready(stable), stable_replicas)
        return round(100 * on_new / (on_new + on_stable)) if on_new else 0

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
        """Surge one new pod at a time beside the old revision, which trades one per Ready."""
        ready = min(self._ready(new), self.total)
        if ready >= self.total:
            self._finish(new, stable, "Succeeded", "all new pods Ready", state)
            self._event("Normal", "RolloutSucceeded", f"revision {new} is stable")
            return self._steady(new, RolloutStatus(stable_revision=new))
        if stuck := self._stuck(stable, new, state, self.total):
            return stuck
        current = self.live[new].replicas if new in self.live else 0
        surge = min(self.total, max(current, ready + 1))
        stable_replicas, yielded = self._beside(stable, new, surge, state, floor=0, trade=True)
        weight = self._share(new, surge, stable, stable_replicas)
        return self._taking_over(
            "rolling", (stable, stable_replicas), (new, surge), weight, yielded, state
        )

    def _recreate(self, stable: str, new: str, state: RolloutStatus) -> Plan:
        """Old workloads go first (their GPUs are the new revision's), then the new starts."""
        old = tuple(sorted(r for r in self.live if r != new))
        if old:
            message = f"recreate: stopping {', '.join(old)}"
            status = state.model_copy(update={"canary_weight": 0, "message": message})
            return self._result((), status, requeue_after=None)
        ready = min(self._ready(new), self.total)
        if ready >= self.total:
            self._finish(new, stable, "Succeeded", "all new pods Ready", state)
            self._event("Normal", "RolloutSucceeded", f"revision {new} is stable")
            return self._steady(new, RolloutStatus(stable_revision=new))
        if stuck := self._stuck(stable, new, state, self.total):
            return stuck
        message, deadline_in = self._waiting(new, self.total, state)
        status = state.model_copy(
            update={"canary_weight": 100, "step_weight": 100, "message": f"recreate: {message}"}
        )
        target = RevisionTarget(new, self._engine(new), self.total, 100)
        return self._result((target,), status, requeue_after=deadline_in)

    # ------------------------------------------------------------ endings and steady

    def _fail(
        self, stable: str, canary: str, state: RolloutStatus, result: RolloutResult, reason: str
    ) -> Plan:
        """Rollback or abort: the stable takes everything back; the canary goes now."""
        self._finish(canary, stable, result, reason, state)
        message = f"revision {canary} {result}: {reason}"
        self._event("Warning", result, message)
        status = RolloutStatus(stable_revision=stable, message=message)
        why = reason.split(":", 1)[0]
        condition = why if why == "ProgressDeadlineExceeded" else result
        return self._steady(stable, status, degraded=(condition, message))

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
        snapshot = self.obs.snapshots.get(revision) or {}
        model, engine = snapshot.get("model") or {}, snapshot.get("engine") or {}
        entry = HistoryEntry(
            revision=revision,
            # Recorded at the start: the old revision's snapshot may be gone by now.
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
        halted: tuple[str, str] | None = None,
    ) -> Plan:
        targets += self._draining(targets)
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
            halted=halted,
        )

    def _draining(self, targets: tuple[RevisionTarget, ...]) -> tuple[RevisionTarget, ...]:
        """Revisions no longer wanted keep their Ready pods while the wanted ones lack Ready
        pods (a canary superseded after the stable gave it pods): capacity is handed back as
        the wanted revisions become Ready, not dropped at once. A revision that failed or was
        aborted goes at once, and `recreate` frees its GPUs first."""
        if self.spec.rollout.strategy == "recreate":
            return ()
        ready = sum(min(self._ready(t.revision), t.replicas) for t in targets)
        wanted = {t.revision for t in targets}
        failed = {h.revision for h in self.history if h.result in _FAILED}
        kept = []
        for revision in sorted(set(self.live) - wanted - failed):
            keep = min(self._ready(revision), max(0, self.total - ready))
            if keep:
                kept.append(RevisionTarget(revision, self._engine(revision), keep, 0))
                ready += keep
        return tuple(kept)

    # ------------------------------------------------------------------ reading

    def _stable(self) -> str | None:
        """The serving revision: from status, else (status lost, or its workload and snapshot
        both deleted) the readiest other workload."""
        stable = self.prev.stable_revision
        if stable and stable in self.obs.lost and stable not in self.live:
            message = (
                f"stable revision {stable} was deleted with its snapshot: it cannot be rebuilt"
            )
            self._event("Warning", "StableLost", message)
            stable = None
        if stable:
            return stable
        others = [
            w
            for w in self.obs.live
            if w.revision != self.obs.desired_revision and w.revision not in self.obs.lost
        ]
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

    def _pods(self, revision: str) -> RevisionPods:
        workload = self.live.get(revision)
        return workload.pods if workload else RevisionPods()

    def _engine(self, revision: str) -> str:
        if revision == self.obs.desired_revision:
            return self.obs.desired_engine
        workload = self.live.get(revision)
        if workload:
            return workload.engine
        stored = self.obs.snapshots.get(revision) or {}
        return str((stored.get("engine") or {}).get("type") or self.obs.desired_engine)

    def _changed(self, old: str, new: str) -> list[str]:
        return what_changed(self.obs.snapshots.get(old) or {}, self.obs.snapshots.get(new) or {})

    def _event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(RolloutEvent(kind, reason, message))

    def _seconds_until(self, moment: datetime) -> float:
        return max(1.0, (moment - self.now).total_seconds())


def _summary(analysis: AnalysisStatus) -> str:
    if analysis.verdict == "Failed":
        return f"failed ({_failing(analysis)}), {analysis.failures} so far"
    if analysis.verdict == "Inconclusive":
        return f"inconclusive ({_inconclusive(analysis)}), {analysis.inconclusive} in a row"
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
