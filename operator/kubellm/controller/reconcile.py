"""One level-based, idempotent reconcile of one LLMDeployment.

Read (the body and the indexed children), decide (resolve, plan the rollout, render,
compose the status: all pure), then write only what differs: server-side apply for children
whose desired hash changed, a replicas patch or a delete for older revisions, and the status
when it changed. An unchanged object therefore costs zero writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf

from kubellm import GROUP, KIND, VERSION, metrics
from kubellm.api.models import AnalysisStatus, LLMDeploymentStatus, RevisionStatus
from kubellm.controller.children import (
    APPLIED_HASH,
    WORKLOAD_KINDS,
    Child,
    PodInfo,
    desired_hash,
)
from kubellm.controller.expectations import Expectations
from kubellm.k8s.client import ApiError, KubeClient
from kubellm.k8s.prometheus import run_analysis
from kubellm.render import InvalidSpecError, RenderContext, render_children, resolve
from kubellm.render.context import serving_selector
from kubellm.render.resolve import Resolved, owner_of
from kubellm.rollout.analysis import queries
from kubellm.rollout.planner import LiveRevision, Observed, Plan, analysis_due, plan
from kubellm.rollout.revision import pod_relevant
from kubellm.status import Observation, compose, sizing_status

PROMOTE = f"{GROUP}/promote-requested-at"
ABORT = f"{GROUP}/abort-requested-at"


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclass
class Reconciler:
    """Holds what outlives one reconcile: the client, served APIs and applied generations."""

    client: KubeClient
    apis: frozenset[str]
    http: aiohttp.ClientSession | None = None
    clock: Callable[[], datetime] = utcnow
    expectations: Expectations = field(default_factory=Expectations)
    pod_monitor: bool = True

    async def reconcile(
        self,
        body: kopf.Body,
        children: Sequence[Child],
        pods: Sequence[PodInfo],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> float | None:
        """Converge one LLMDeployment; returns seconds until the rollout has something due."""
        now = self.clock()
        owner = owner_of(body)
        namespace = owner.namespace or "default"
        uid = body.metadata.uid or ""
        previous = LLMDeploymentStatus.model_validate(
            self.expectations.status(
                uid, body.metadata.get("resourceVersion"), body.get("status") or {}
            )
        )
        workloads = [c for c in children if c.kind in WORKLOAD_KINDS]
        try:
            resolved = resolve(body)
        except InvalidSpecError as invalid:
            await self._refuse(body, previous, workloads, pods, invalid, now)
            return None

        analysis = None
        analysis_spec = resolved.spec.rollout.canary.analysis
        rollout = previous.rollout
        if analysis_spec and self.http and rollout and analysis_due(rollout, now):
            analysis = await run_analysis(
                analysis_spec,
                queries(
                    analysis_spec,
                    resolved.engine,
                    namespace=namespace,
                    llmdeployment=owner.name,
                    canary=rollout.canary_revision or resolved.revision,
                    stable=rollout.stable_revision or "",
                ),
                session=self.http,
                now=now,
                previous_failures=rollout.analysis.failures if rollout.analysis else 0,
            )
        decision = plan(
            resolved.spec, self._observe(body, resolved, previous, workloads, now, analysis)
        )

        ctx = RenderContext(resolved, decision.targets, self.apis, pod_monitor=self.pod_monitor)
        desired = render_children(ctx)
        for obj in desired:
            await self._apply(body, obj, children)
        await self._settle_old_revisions(body, resolved, decision, workloads)
        await self._remove_unneeded(body, desired, children, workloads)

        status = compose(
            Observation(
                now=rfc3339(now),
                generation=owner.generation,
                previous=previous,
                spec_problems=(),
                sizing=sizing_status(resolved.sizing, resolved.gpu.name if resolved.gpu else None),
                revisions=self._revisions(decision, workloads, pods, previous, resolved),
                desired_replicas=sum(t.replicas for t in decision.targets),
                selector=_selector(owner.name),
                rollout=decision.rollout,
                history=decision.history,
                stats=decision.stats,
                degraded=decision.degraded,
                stalled=next(
                    (("ProgressDeadlineExceeded", w.stalled) for w in workloads if w.stalled),
                    None,
                ),
            )
        )
        await self._write_status(body, previous, status)
        for event in decision.events:
            await self._event(body, event.type, event.reason, event.message)
        self._export(namespace, owner.name, status, resolved, decision)
        return decision.requeue_after

    # ------------------------------------------------------------------ decisions

    def _observe(
        self,
        body: kopf.Body,
        resolved: Resolved,
        previous: LLMDeploymentStatus,
        workloads: Sequence[Child],
        now: datetime,
        analysis: AnalysisStatus | None,
    ) -> Observed:
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        return Observed(
            now=now,
            desired_revision=resolved.revision,
            desired_engine=resolved.engine.name,
            desired_snapshot=pod_relevant(resolved.spec, resolved.image),
            total_replicas=resolved.spec.replicas,
            live=tuple(
                LiveRevision(
                    revision=w.revision or "",
                    engine=str(w.snapshot.get("engine", {}).get("type", resolved.engine.name)),
                    replicas=w.replicas,
                    ready_replicas=w.ready_replicas,
                    snapshot=w.snapshot,
                )
                for w in workloads
                if w.revision
            ),
            previous=previous.rollout,
            history=tuple(previous.history),
            stats=previous.rollout_stats,
            analysis=analysis,
            promote_requested_at=_parse_time(annotations.get(PROMOTE)),
            abort_requested_at=_parse_time(annotations.get(ABORT)),
        )

    def _revisions(
        self,
        decision: Plan,
        workloads: Sequence[Child],
        pods: Sequence[PodInfo],
        previous: LLMDeploymentStatus,
        resolved: Resolved,
    ) -> tuple[RevisionStatus, ...]:
        """Per serving revision: replicas, ready pods, weight and cold-start time."""
        live = {w.revision: w for w in workloads}
        before = {r.revision: r for r in previous.revisions}
        result = []
        for target in decision.targets:
            workload = live.get(target.revision)
            ready_seconds = (
                before[target.revision].ready_seconds if target.revision in before else None
            )
            if ready_seconds is None:
                ready_seconds = _cold_start(target.revision, pods)
                if ready_seconds is not None:
                    metrics.REVISION_READY_SECONDS.labels(target.engine).observe(ready_seconds)
            result.append(
                RevisionStatus(
                    revision=target.revision,
                    replicas=target.replicas,
                    ready_replicas=min(workload.ready_replicas, target.replicas) if workload else 0,
                    weight=target.weight,
                    ready_seconds=ready_seconds,
                )
            )
        return tuple(result)

    # --------------------------------------------------------------------- writes

    async def _apply(self, body: kopf.Body, obj: dict[str, Any], children: Sequence[Child]) -> None:
        """Server-side apply when the desired object changed or someone edited the child."""
        digest = desired_hash(obj)
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        live = next((c for c in children if (c.kind, c.namespace, c.name) == key), None)
        if not self.expectations.needs_apply(key, digest, live):
            return
        meta.setdefault("annotations", {})[APPLIED_HASH] = digest
        applied = await self.client.apply(obj)
        generation = (applied.get("metadata") or {}).get("generation")
        self.expectations.record_apply(key, digest, generation)
        metrics.CHILDREN_APPLIED.labels(obj["kind"]).inc()
        verb = "Updated" if live else "Created"
        await self._event(body, "Normal", verb, f"{verb} {obj['kind']} {meta['name']}")

    async def _settle_old_revisions(
        self,
        body: kopf.Body,
        resolved: Resolved,
        decision: Plan,
        workloads: Sequence[Child],
    ) -> None:
        """Older revisions keep their pods: only scaled by the plan, or deleted."""
        targets = {t.revision: t for t in decision.targets}
        for workload in workloads:
            if workload.revision == resolved.revision and workload.revision in targets:
                continue
            target = targets.get(workload.revision or "")
            key = (workload.kind, workload.namespace, workload.name)
            if target is None or workload.revision in decision.delete:
                await self._delete(body, workload, "revision no longer needed")
            elif self.expectations.needs_scale(key, target.replicas, workload):
                await self.client.merge_patch(
                    workload.kind,
                    workload.namespace,
                    workload.name,
                    {"spec": {"replicas": target.replicas}},
                )
                self.expectations.record_scale(key, target.replicas)
                await self._event(
                    body,
                    "Normal",
                    "Scaled",
                    f"Scaled {workload.kind} {workload.name} to {target.replicas}",
                )

    async def _remove_unneeded(
        self,
        body: kopf.Body,
        desired: Sequence[Mapping[str, Any]],
        children: Sequence[Child],
        workloads: Sequence[Child],
    ) -> None:
        """Children the spec no longer asks for (an HPA after autoscaling is removed...)."""
        wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
        for child in children:
            if child not in workloads and (child.kind, child.name) not in wanted:
                await self._delete(body, child, "no longer part of the spec")
        self.expectations.forget_gone({(c.kind, c.namespace, c.name) for c in children})

    async def _delete(self, body: kopf.Body, child: Child, why: str) -> None:
        key = (child.kind, child.namespace, child.name)
        if not self.expectations.needs_delete(key):
            return
        await self.client.delete(child.kind, child.namespace, child.name)
        self.expectations.record_delete(key)
        await self._event(body, "Normal", "Deleted", f"Deleted {child.kind} {child.name} ({why})")

    async def _write_status(
        self,
        body: kopf.Body,
        previous: LLMDeploymentStatus,
        status: LLMDeploymentStatus,
    ) -> None:
        new = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        if new == previous.model_dump(mode="json", by_alias=True, exclude_none=True):
            return
        meta = body.get("metadata") or {}
        written = await self.client.apply_status(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": KIND,
                "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
                "status": new,
            }
        )
        version = (written.get("metadata") or {}).get("resourceVersion")
        self.expectations.record_status(body.metadata.uid or "", version, new)

    async def _refuse(
        self,
        body: kopf.Body,
        previous: LLMDeploymentStatus,
        workloads: Sequence[Child],
        pods: Sequence[PodInfo],
        invalid: InvalidSpecError,
        now: datetime,
    ) -> None:
        """Never lose the running version: no child changes, a condition and an Event say why."""
        owner = invalid.owner
        problems = tuple(str(p) for p in invalid.problems)
        status = compose(
            Observation(
                now=rfc3339(now),
                generation=owner.generation,
                previous=previous,
                spec_problems=problems,
                sizing=None,
                revisions=tuple(
                    RevisionStatus(
                        revision=w.revision or "",
                        replicas=w.replicas,
                        ready_replicas=w.ready_replicas,
                        weight=next(
                            (r.weight for r in previous.revisions if r.revision == w.revision), 0
                        ),
                        ready_seconds=next(
                            (
                                r.ready_seconds
                                for r in previous.revisions
                                if r.revision == w.revision
                            ),
                            None,
                        ),
                    )
                    for w in workloads
                ),
                desired_replicas=sum(w.replicas for w in workloads),
                selector=_selector(owner.name),
                rollout=previous.rollout,
                history=tuple(previous.history),
                stats=previous.rollout_stats,
                degraded=None,
                stalled=None,
            )
        )
        was_refused = previous.observed_generation == owner.generation and any(
            c.type == "SpecValid" and c.status == "False" for c in previous.conditions
        )
        if not was_refused:
            metrics.SPEC_VALIDATION_FAILURES.inc()
            await self._event(
                body,
                "Warning",
                "InvalidSpec",
                "Spec refused, serving pods left as they are: " + "; ".join(problems),
            )
        await self._write_status(body, previous, status)
        namespace = owner.namespace or "default"
        metrics.SPEC_VALID.labels(namespace, owner.name).set(0)
        self._export_phase(namespace, owner.name, status)

    async def _event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Events are best effort: a lost Event must never fail a reconcile."""
        try:
            await self.client.post_event(body, type_, reason, message)
        except (ApiError, aiohttp.ClientError):
            logging.getLogger(__name__).warning("event %s not posted: %s", reason, message)

    # -------------------------------------------------------------------- metrics

    def _export(
        self,
        namespace: str,
        name: str,
        status: LLMDeploymentStatus,
        resolved: Resolved,
        decision: Plan,
    ) -> None:
        metrics.SPEC_VALID.labels(namespace, name).set(1)
        self._export_phase(namespace, name, status)
        metrics.REPLICAS.labels(namespace, name).set(status.replicas)
        metrics.READY_REPLICAS.labels(namespace, name).set(status.ready_replicas)
        per_replica = resolved.sizing.gpus_per_replica
        metrics.GPUS_PER_REPLICA.labels(namespace, name).set(per_replica)
        metrics.GPUS_REQUESTED.labels(namespace, name).set(
            per_replica * sum(t.replicas for t in decision.targets)
        )
        weight = decision.rollout.canary_weight if decision.rollout else 0
        metrics.CANARY_WEIGHT.labels(namespace, name).set(weight)
        if decision.stats.success_rate is not None:
            metrics.ROLLOUT_SUCCESS_RATIO.labels(namespace, name).set(decision.stats.success_rate)
        if decision.outcome:
            metrics.ROLLOUTS.labels(namespace, name, decision.outcome).inc()
            finished = decision.history[0] if decision.history else None
            start = _parse_time(finished.start_time) if finished else None
            end = _parse_time(finished.end_time) if finished else None
            if start and end:
                metrics.ROLLOUT_SECONDS.labels(decision.outcome).observe(
                    (end - start).total_seconds()
                )

    @staticmethod
    def _export_phase(namespace: str, name: str, status: LLMDeploymentStatus) -> None:
        for phase in metrics.PHASES:
            metrics.PHASE.labels(namespace, name, phase).set(1 if status.phase == phase else 0)


def _selector(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in serving_selector(name).items())


def _cold_start(revision: str, pods: Sequence[PodInfo]) -> float | None:
    """First pod of the revision created -> first pod of it Ready, in seconds."""
    mine = [p for p in pods if p.revision == revision]
    created = [t for p in mine if (t := _parse_time(p.created))]
    ready = [t for p in mine if (t := _parse_time(p.ready_since))]
    if not created or not ready:
        return None
    return max(0.0, (min(ready) - min(created)).total_seconds())
