"""One level-based, idempotent reconcile of one LLMDeployment: the thin executor.

Read (the newest body, children and pods from the watch-fed cache), decide (resolve, rebuild
every running revision from its snapshot, plan the rollout, render, compose the status: all
pure), then write: the status first, with a precondition on what was read, so a plan made
from a stale read never lands, and only then the children that are missing, changed or
drifted, and the deletion of those no longer wanted. An unchanged object costs zero writes.
Every failure ends as a condition and one Event; the caller backs off.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import aiohttp
from pydantic import ValidationError

from kubellm import GROUP, KIND, VERSION, metrics
from kubellm.api.models import (
    AnalysisStatus,
    GpuNodeLabels,
    LLMDeploymentSpec,
    LLMDeploymentStatus,
    RevisionStatus,
)
from kubellm.controller.cache import Cache, OwnerKey
from kubellm.controller.children import (
    APPLIED_HASH,
    SNAPSHOT_KIND,
    WORKLOAD_KINDS,
    Child,
    summarize,
)
from kubellm.controller.drift import desired_digest, overlay
from kubellm.controller.expectations import Expectations
from kubellm.controller.memo import Memo
from kubellm.k8s.client import ApiError
from kubellm.k8s.prometheus import credentials_or_error, run_analysis
from kubellm.render import InvalidSpecError, RenderContext, render_children, resolve
from kubellm.render.context import serving_selector
from kubellm.render.pod import gpu_resource, startup_window_seconds
from kubellm.render.resolve import Resolved, owner_of
from kubellm.rollout.analysis import queries
from kubellm.rollout.durations import parse_duration
from kubellm.rollout.planner import (
    DEFAULT_PROGRESS_DEADLINE,
    LiveRevision,
    Observed,
    Plan,
    analysis_due,
    plan,
)
from kubellm.rollout.pods import PodInfo, RevisionPods, summarize_pods
from kubellm.rollout.revision import (
    MissingValues,
    known_values,
    restore,
    snapshot,
    spec_literals,
    workload_literals,
)
from kubellm.rollout.targets import RevisionTarget
from kubellm.status import (
    UNAVAILABLE_GRACE_SECONDS,
    Observation,
    compose,
    progress_only,
    sizing_status,
    unavailable_in,
)
from kubellm.times import parse_time, rfc3339, utcnow

PROMOTE = f"{GROUP}/promote"
ABORT = f"{GROUP}/abort"
REFUSED = "RefusedByAPIServer"
STALE_RETRY_SECONDS = 0.5
STALE_TTL_SECONDS = 30.0
# A status that only tells how far pods have come waits this long after the last status
# write (it is written with the next real change, or when the time is up).
STATUS_BATCH_SECONDS = 10.0
# A look that finds nothing changed since a reconcile that wrote nothing is skipped; a full
# reconcile still runs at least this often.
FULL_LOOK_SECONDS = 600.0
RESOLUTIONS_KEPT = 1024
LOGGER = logging.getLogger("kubellm.reconcile")


class Api(Protocol):
    """The writes (and the rare read) a reconcile makes; `kubellm.k8s.client.KubeClient`."""

    async def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...
    async def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...
    async def apply_status(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...
    async def delete(self, kind: str, namespace: str | None, name: str) -> None: ...
    async def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any]: ...
    async def post_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None: ...


class ReconcileError(Exception):
    """The reconcile could not finish; its condition and Event are out. Retry with backoff."""


class ChildRefusedError(Exception):
    """The API server refused a write of one child."""

    def __init__(self, kind: str, name: str, error: ApiError) -> None:
        super().__init__(f"{kind} {name}: {error}")
        self.what = f"{kind} {name}"
        self.error = error


@dataclass
class Rebuilt:
    """Every revision the rollout may run, rebuilt from its snapshot, and those that cannot."""

    resolved: dict[str, Resolved] = field(default_factory=dict)
    snapshots: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    unrecoverable: dict[str, str] = field(default_factory=dict)  # revision -> why


@dataclass
class Reconciler:
    """Holds what outlives one reconcile: the API, the cache and short memories of writes."""

    api: Api
    cache: Cache
    apis: frozenset[str]
    http: aiohttp.ClientSession | None = None
    clock: Callable[[], datetime] = utcnow
    monotonic: Callable[[], float] = time.monotonic
    unavailable_grace: float = UNAVAILABLE_GRACE_SECONDS
    expectations: dict[OwnerKey, Expectations] = field(default_factory=dict)
    # uid -> (resourceVersion our last status write produced, when); until the watch shows
    # it, a body read from the cache is older than our own last decision.
    written: dict[str, tuple[str, float]] = field(default_factory=dict)
    handled: dict[str, int] = field(default_factory=dict)  # uid -> newest generation handled
    # (uid, revision) -> values a redacted snapshot points to, read from the live workload
    harvested: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    gpu_node_labels: GpuNodeLabels = "nvidia"  # `kubellm run --gpu-node-labels`
    # resolved specs by content: a reconcile resolves the spec, and every revision it runs
    resolutions: Memo[Resolved] = field(default_factory=lambda: Memo(RESOLUTIONS_KEPT))
    status_written_at: dict[str, float] = field(default_factory=dict)  # uid -> monotonic
    # owner -> (what it read: cache version, APIs; look again fully by then (monotonic))
    quiet: dict[OwnerKey, tuple[tuple[int, frozenset[str]], float]] = field(default_factory=dict)
    pod_monitor: bool = True  # `kubellm run --no-pod-monitor`

    def saw(self, body: Mapping[str, Any]) -> bool:
        """The watch delivered this version of an LLMDeployment; True when it is the echo of
        our own last status write, which tells nothing the reconcile that wrote it did not
        know (that reconcile already asked for its next look)."""
        meta = body.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        pending = self.written.get(uid)
        if pending is None:
            return False
        version = meta.get("resourceVersion")
        if version == pending[0]:
            del self.written[uid]
            return True
        if _newer_or_same(version, pending[0]):
            del self.written[uid]  # newer than our write, whose own event was skipped
        return False

    def forget(self, key: OwnerKey, uid: str | None = None) -> None:
        self.expectations.pop(key, None)
        self.quiet.pop(key, None)
        if uid:
            self.written.pop(uid, None)
            self.handled.pop(uid, None)
            self.status_written_at.pop(uid, None)
            for harvested in [k for k in self.harvested if k[0] == uid]:
                del self.harvested[harvested]
        metrics.forget(*key)

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, key: OwnerKey) -> float | None:
        """Converge one LLMDeployment; returns seconds until it should be looked at again
        (None: at the next resync). Raises ReconcileError after reporting a failure."""
        body = self.cache.owner(key)
        if body is None:
            self.forget(key)
            return None
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None  # going away: garbage collection takes the children
        uid, generation = str(meta.get("uid") or ""), int(meta.get("generation") or 0)
        if self._stale(uid, meta.get("resourceVersion"), generation):
            return STALE_RETRY_SECONDS
        read = (self.cache.version(key), self.apis)
        quiet = self.quiet.pop(key, None)
        if quiet is not None and quiet[0] == read and self.monotonic() < quiet[1]:
            # nothing new since a reconcile that wrote nothing: this one would write nothing
            self.quiet[key] = quiet
            metrics.RECONCILES_UNCHANGED.inc()
            return quiet[1] - self.monotonic()
        now = self.clock()
        previous = _status_of(body)
        children = self.cache.children_of(key)
        pods = self.cache.pods_of(key)
        try:
            resolved = self._resolve(body)
            rebuilt = await self._rebuild(body, resolved, previous, children)
            decision = await self._plan(body, resolved, rebuilt, previous, children, pods, now)
            ctx = RenderContext(
                resolved,
                decision.targets,
                self.apis,
                gpu_node_labels=self.gpu_node_labels,
                pod_monitor=self.pod_monitor,
                others=rebuilt.resolved,
                numbers={
                    c.revision: c.number for c in children if c.kind == SNAPSHOT_KIND and c.revision
                },
            )
            desired = render_children(ctx)
        except InvalidSpecError as invalid:
            await self._refuse(
                body, previous, children, pods, [str(p) for p in invalid.problems], now
            )
            self.handled[uid] = max(generation, self.handled.get(uid, 0))
            return None

        observation = self._observe(
            body, resolved, rebuilt, decision, previous, children, pods, now
        )
        refused = _refused(previous, generation)
        if refused:  # keep saying so until an apply goes through
            observation = replace(observation, spec_problems=refused, spec_reason=REFUSED)
        status = compose(observation)
        held = None if refused else self._hold_status(uid, previous, status)
        version = str(meta.get("resourceVersion") or "")
        written = version if held else await self._write_status(body, previous, status)
        if written is None:
            return STALE_RETRY_SECONDS  # the object changed since it was read: plan again
        self.handled[uid] = max(generation, self.handled.get(uid, 0))
        for event in decision.events:
            LOGGER.info("%s/%s: %s %s", key[0], key[1], event.reason, event.message)
            await self._event(body, event.type, event.reason, event.message)
        await self._report_transitions(body, previous, status)
        try:
            changed = await self._converge(key, body, desired, children, rebuilt)
        except ChildRefusedError as error:
            await self._failed(body, observation, status, written, error)
            raise ReconcileError(str(error)) from error
        if refused:
            accepted = compose(replace(observation, previous=status, spec_problems=()))
            await self._write_status(body, status, accepted, written)
            status = accepted
        self._export(key, status, resolved, decision)
        after = self._requeue(key, decision, status, now, held)
        if not (changed or held or refused or decision.events or written != version):
            self.quiet[key] = (read, self.monotonic() + min(after or math.inf, FULL_LOOK_SECONDS))
        return after

    def _hold_status(
        self, uid: str, previous: LLMDeploymentStatus, status: LLMDeploymentStatus
    ) -> float | None:
        """Seconds to hold back a status that only tells how far pods have come (None: write
        it now): at most one such write per `STATUS_BATCH_SECONDS`."""
        if not progress_only(previous, status):
            return None
        left = self.status_written_at.get(uid, -math.inf) + STATUS_BATCH_SECONDS
        left -= self.monotonic()
        return left if left > 0 else None

    def _resolve(self, body: Mapping[str, Any]) -> Resolved:
        """`resolve`, remembered by what it reads (the owner's identity and its spec)."""
        owner = owner_of(body)
        inputs = [owner.namespace, owner.name, owner.uid, owner.generation, body.get("spec")]
        return self.resolutions.get(inputs, lambda: resolve(body))

    def _stale(self, uid: str, resource_version: str | None, generation: int) -> bool:
        """A body older than our own last status write, or than a generation handled."""
        pending = self.written.get(uid)
        if pending is not None:
            if _newer_or_same(resource_version, pending[0]):
                del self.written[uid]
            elif self.monotonic() - pending[1] < STALE_TTL_SECONDS:
                return True
        return generation < self.handled.get(uid, 0)

    # ----------------------------------------------------------------- deciding

    async def _rebuild(
        self,
        body: Mapping[str, Any],
        resolved: Resolved,
        previous: LLMDeploymentStatus,
        children: Sequence[Child],
    ) -> Rebuilt:
        """Every revision that may run, from its snapshot: a ControllerRevision, or the
        `revision-spec` annotation of its workload when the snapshot object is gone."""
        rebuilt = Rebuilt()
        for child in sorted(children, key=lambda c: c.kind != SNAPSHOT_KIND):
            kept = child.stored_spec()
            if child.revision and kept is not None and child.revision not in rebuilt.snapshots:
                rebuilt.snapshots[child.revision] = kept
        rebuilt.snapshots[resolved.revision] = snapshot(resolved.spec, resolved.image)
        rollout = previous.rollout
        wanted = {c.revision for c in children if c.kind in WORKLOAD_KINDS and c.revision}
        wanted |= (
            {r for r in (rollout.stable_revision, rollout.canary_revision) if r}
            if rollout
            else set()
        )
        uid = str((body.get("metadata") or {}).get("uid") or "")
        for revision in sorted(wanted - {resolved.revision}):
            stored = rebuilt.snapshots.get(revision)
            if stored is None:
                rebuilt.unrecoverable[revision] = (
                    "no snapshot left (ControllerRevision and workload both gone)"
                )
                continue
            values = known_values(spec_literals(resolved.spec))
            spec: LLMDeploymentSpec | None
            try:
                spec = restore(
                    stored, resolved.spec, {**values, **self.harvested.get((uid, revision), {})}
                )
            except MissingValues:
                spec = await self._restore_from_workload(
                    uid, revision, stored, resolved, values, children
                )
            if spec is None:
                rebuilt.unrecoverable[revision] = (
                    "a literal env value or credential flag it used is neither in the spec nor in"
                    " a running workload (snapshots keep no secrets; use valueFrom.secretKeyRef)"
                )
                continue
            try:
                other = self._resolve(
                    {**body, "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True)}
                )
            except InvalidSpecError as invalid:
                rebuilt.unrecoverable[revision] = "; ".join(str(p) for p in invalid.problems)
                continue
            rebuilt.resolved[revision] = replace(other, revision=revision)
        return rebuilt

    async def _restore_from_workload(
        self,
        uid: str,
        revision: str,
        stored: Mapping[str, Any],
        resolved: Resolved,
        values: Mapping[str, str],
        children: Sequence[Child],
    ) -> LLMDeploymentSpec | None:
        """Values the spec no longer holds, read once from the revision's own workload."""
        workload = next(
            (c for c in children if c.kind in WORKLOAD_KINDS and c.revision == revision), None
        )
        if workload is None or (uid, revision) in self.harvested:
            return None
        try:
            live = await self.api.get(workload.kind, workload.namespace, workload.name)
        except ApiError:
            return None
        self.harvested[(uid, revision)] = known_values(workload_literals(live))
        try:
            return restore(stored, resolved.spec, {**values, **self.harvested[(uid, revision)]})
        except MissingValues:
            return None

    async def _plan(
        self,
        body: Mapping[str, Any],
        resolved: Resolved,
        rebuilt: Rebuilt,
        previous: LLMDeploymentStatus,
        children: Sequence[Child],
        pods: Sequence[PodInfo],
        now: datetime,
    ) -> Plan:
        analysis = await self._analysis(resolved, previous, now)
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        resource = gpu_resource(RenderContext(resolved, ()))
        workloads = [c for c in children if c.kind in WORKLOAD_KINDS and c.revision]
        rollout = resolved.spec.rollout
        if rollout.progress_deadline:
            deadline = parse_duration(rollout.progress_deadline)
        else:
            startup = startup_window_seconds(RenderContext(resolved, ()))
            deadline = max(DEFAULT_PROGRESS_DEADLINE, float(startup))
        observed = Observed(
            now=now,
            desired_revision=resolved.revision,
            desired_engine=resolved.engine.name,
            total_replicas=resolved.spec.replicas,
            live=tuple(
                _live_revision(w, summarize_pods(pods, w.revision or "", resource), resolved)
                for w in workloads
                if not w.deleting
            ),
            snapshots=rebuilt.snapshots,
            previous=previous.rollout,
            history=tuple(previous.history),
            stats=previous.rollout_stats,
            analysis=analysis,
            promote=annotations.get(PROMOTE),
            abort=annotations.get(ABORT),
            previous_ready={r.revision: r.ready_replicas for r in previous.revisions},
            lost=frozenset(r for r in rebuilt.unrecoverable if r not in rebuilt.snapshots),
            progress_deadline=deadline,
        )
        return plan(resolved.spec, observed)

    async def _analysis(
        self, resolved: Resolved, previous: LLMDeploymentStatus, now: datetime
    ) -> AnalysisStatus | None:
        spec = resolved.spec.rollout.canary.analysis
        rollout = previous.rollout
        if not (spec and self.http and rollout and analysis_due(rollout, now)):
            return None
        last = rollout.analysis
        namespace = resolved.owner.namespace or "default"
        credentials = await credentials_or_error(self.api, namespace, spec.prometheus_auth)
        return await run_analysis(
            spec,
            queries(
                spec,
                resolved.engine,
                namespace=namespace,
                llmdeployment=resolved.owner.name,
                canary=rollout.canary_revision or resolved.revision,
                stable=rollout.stable_revision or "",
            ),
            session=self.http,
            now=now,
            previous_failures=last.failures if last else 0,
            previous_inconclusive=last.inconclusive if last else 0,
            credentials=credentials,
        )

    def _observe(
        self,
        body: Mapping[str, Any],
        resolved: Resolved,
        rebuilt: Rebuilt,
        decision: Plan,
        previous: LLMDeploymentStatus,
        children: Sequence[Child],
        pods: Sequence[PodInfo],
        now: datetime,
    ) -> Observation:
        live = {c.revision: c for c in children if c.kind in WORKLOAD_KINDS and not c.deleting}
        resource = gpu_resource(RenderContext(resolved, ()))
        serving = RevisionPods()
        for target in decision.targets:
            serving = serving + summarize_pods(pods, target.revision, resource)
        lost = {
            r: why
            for r, why in rebuilt.unrecoverable.items()
            if r in {t.revision for t in decision.targets} and r not in live
        }
        degraded = decision.degraded
        if lost and degraded is None:
            degraded = (
                "RevisionUnrecoverable",
                "; ".join(f"revision {r} cannot be rebuilt: {why}" for r, why in lost.items()),
            )
        return Observation(
            now=rfc3339(now),
            generation=owner_of(body).generation,
            previous=previous,
            spec_problems=(),
            sizing=sizing_status(resolved.sizing, resolved.gpu.name if resolved.gpu else None),
            revisions=self._revisions(decision.targets, live, pods, previous),
            desired_replicas=resolved.spec.replicas,
            selector=_selector(resolved.owner.name),
            rollout=decision.rollout,
            history=decision.history,
            stats=decision.stats,
            degraded=degraded,
            halted=decision.halted,
            pods=serving,
            unavailable_grace=self.unavailable_grace,
        )

    def _revisions(
        self,
        targets: Sequence[RevisionTarget],
        live: Mapping[str | None, Child],
        pods: Sequence[PodInfo],
        previous: LLMDeploymentStatus,
    ) -> tuple[RevisionStatus, ...]:
        """Per running revision: replicas, ready pods, weight and cold-start time."""
        before = {r.revision: r for r in previous.revisions}
        result = []
        for target in targets:
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

    async def _converge(
        self,
        key: OwnerKey,
        body: Mapping[str, Any],
        desired: Sequence[dict[str, Any]],
        children: Sequence[Child],
        rebuilt: Rebuilt,
    ) -> bool:
        """Apply what is missing, changed or drifted; delete what is no longer wanted.
        Returns whether it wrote anything."""
        expect = self.expectations.setdefault(key, Expectations())
        live = {c.key: c for c in children}
        now = self.monotonic()

        async def apply(obj: dict[str, Any], child: Child | None, wanted: str) -> str:
            meta = obj["metadata"]
            try:
                if child is not None and child.foreign:
                    await self._repair(obj)
                answer = await self.api.apply(obj)
            except ApiError as error:
                raise ChildRefusedError(obj["kind"], meta["name"], error) from error
            expect.record_apply(_key_of(obj), wanted, summarize(answer), now)
            metrics.CHILDREN_APPLIED.labels(obj["kind"]).inc()
            verb = "created" if child is None else "repaired" if child.foreign else "updated"
            return f"{verb} {obj['kind']} {meta['name']}"

        async def delete(child: Child) -> str:
            try:
                await self.api.delete(child.kind, child.namespace, child.name)
            except ApiError as error:
                raise ChildRefusedError(child.kind, child.name, error) from error
            expect.record_delete(child.key, now)
            return f"deleted {child.kind} {child.name}"

        applies = []
        for obj in desired:
            ckey = _key_of(obj)
            child = live.get(ckey)
            if child is not None and child.deleting:
                continue  # on its way out: recreated once the watch shows it gone
            wanted = desired_digest(obj)
            obj["metadata"].setdefault("annotations", {})[APPLIED_HASH] = wanted
            wanted_live = desired_digest(obj)
            if obj["kind"] == SNAPSHOT_KIND:  # immutable: created once, never updated
                if child is not None:
                    expect.seen(ckey)
                    continue
                if not expect.needs_apply(ckey, wanted, wanted_live, None, now):
                    continue
            elif not expect.needs_apply(ckey, wanted, wanted_live, child, now):
                continue
            applies.append((obj, child, wanted))
        done = await _together(apply(*args) for args in applies)
        wanted_keys = {_key_of(o) for o in desired}
        # Workloads of revisions that run but cannot be rebuilt are left exactly as they are.
        kept = set(rebuilt.unrecoverable)
        done += await _together(
            delete(child)
            for child in children
            if not (child.key in wanted_keys or child.deleting or child.revision in kept)
            and expect.needs_delete(child.key, now)
        )
        expect.forget_gone(set(live))
        if done:
            LOGGER.info("%s/%s: %s", key[0], key[1], "; ".join(done))
            await self._event(body, "Normal", "Applied", "; ".join(done))
        return bool(done)

    async def _repair(self, desired: Mapping[str, Any]) -> None:
        """Someone else holds part of this child, which an apply cannot take back: replace it
        with kubellm's object laid over the live one (see `drift.overlay`)."""
        meta = desired["metadata"]
        try:
            live = await self.api.get(desired["kind"], meta.get("namespace"), meta["name"])
        except ApiError as error:
            if error.status == 404:
                return  # gone meanwhile: the apply creates it afresh
            raise
        repaired = overlay(live, desired)
        repaired["metadata"] = {
            k: v for k, v in repaired["metadata"].items() if k != "managedFields"
        }
        await self.api.replace(repaired)

    async def _write_status(
        self,
        body: Mapping[str, Any],
        previous: LLMDeploymentStatus,
        status: LLMDeploymentStatus,
        resource_version: str | None = None,
    ) -> str | None:
        """Write the status if it changed, on the condition that the object did not change
        since it was read. Returns the resourceVersion it is now at; None on a conflict."""
        meta = body.get("metadata") or {}
        version = resource_version or str(meta.get("resourceVersion") or "")
        new = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        if new == previous.model_dump(mode="json", by_alias=True, exclude_none=True):
            return version
        try:
            answer = await self.api.apply_status(
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "metadata": {
                        "name": meta.get("name"),
                        "namespace": meta.get("namespace"),
                        "resourceVersion": version,
                    },
                    "status": new,
                }
            )
        except ApiError as error:
            if error.status in (404, 409):  # changed since it was read, or deleted meanwhile
                return None
            raise
        written = str((answer.get("metadata") or {}).get("resourceVersion") or "")
        uid = str(meta.get("uid") or "")
        self.written[uid] = (written, self.monotonic())
        self.status_written_at[uid] = self.monotonic()
        return written

    async def _refuse(
        self,
        body: Mapping[str, Any],
        previous: LLMDeploymentStatus,
        children: Sequence[Child],
        pods: Sequence[PodInfo],
        problems: list[str],
        now: datetime,
    ) -> None:
        """Never lose the running version: no child changes, a condition and an Event say why."""
        owner = owner_of(body)
        workloads = [c for c in children if c.kind in WORKLOAD_KINDS and not c.deleting]
        weights = {r.revision: r.weight for r in previous.revisions}
        running = [  # as they are: a refused spec changes nothing
            RevisionTarget(
                w.revision or "", w.engine or "", w.replicas, weights.get(w.revision or "", 0)
            )
            for w in workloads
        ]
        status = compose(
            Observation(
                now=rfc3339(now),
                generation=owner.generation,
                previous=previous,
                spec_problems=tuple(problems),
                sizing=None,
                revisions=self._revisions(
                    running, {w.revision: w for w in workloads}, pods, previous
                ),
                desired_replicas=sum(w.replicas for w in workloads),
                selector=_selector(owner.name),
                rollout=previous.rollout,
                history=tuple(previous.history),
                stats=previous.rollout_stats,
                pods=sum(
                    (summarize_pods(pods, w.revision or "", "") for w in workloads), RevisionPods()
                ),
                unavailable_grace=self.unavailable_grace,
            )
        )
        if await self._write_status(body, previous, status) is None:
            return
        await self._report_transitions(body, previous, status)
        namespace = owner.namespace or "default"
        metrics.RESOURCES.set(namespace, owner.name, spec_valid=0, phase=status.phase)

    async def _failed(
        self,
        body: Mapping[str, Any],
        observation: Observation,
        status: LLMDeploymentStatus,
        written: str,
        refused: ChildRefusedError,
    ) -> None:
        """A child write failed: say so in the status (and one Event), then back off.

        The API server refusing a rendered child (422) means the spec holds something it
        will not take (a free-form field): the spec is invalid, with the server's reasons.
        """
        error = refused.error
        if error.status == 422:
            causes = error.causes or (error.message,)
            failure = replace(
                observation,
                previous=status,
                spec_problems=tuple(f"{refused.what}: {cause}" for cause in causes),
                spec_reason=REFUSED,
            )
        else:
            reason = "Forbidden" if error.status == 403 else "ReconcileFailed"
            failure = replace(observation, previous=status, degraded=(reason, str(refused)))
        failed = compose(failure)
        try:
            if await self._write_status(body, status, failed, written) is not None:
                await self._report_transitions(body, status, failed)
        except ApiError as again:
            LOGGER.debug("status not written either: %s", again)

    async def _report_transitions(
        self, body: Mapping[str, Any], before: LLMDeploymentStatus, after: LLMDeploymentStatus
    ) -> None:
        """One Warning Event when the spec is refused or the object turns Degraded (or the
        reason changes): level-based, so a failure that persists is reported once."""
        old = {c.type: c for c in before.conditions}
        for condition in after.conditions:
            if condition.type not in ("SpecValid", "Degraded"):
                continue
            bad = (condition.type, condition.status) in (
                ("SpecValid", "False"),
                ("Degraded", "True"),
            )
            was = old.get(condition.type)
            if not bad or (
                was
                and (was.status, was.reason, was.message)
                == (condition.status, condition.reason, condition.message)
            ):
                continue
            if condition.type == "Degraded" and condition.reason in (
                "InvalidSpec",
                "RolledBack",
                "Aborted",
                "ProgressDeadlineExceeded",
                "AnalysisFailed",
            ):
                continue  # the SpecValid Event or the rollout's own Event says it
            if condition.type == "SpecValid":
                metrics.SPEC_VALIDATION_FAILURES.inc()
                message = "Spec refused, serving pods left as they are: " + condition.message
                await self._event(body, "Warning", "InvalidSpec", message)
            else:
                await self._event(body, "Warning", condition.reason, condition.message)

    async def _event(self, body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """Events are best effort: a lost Event must never fail or abort a reconcile."""
        try:
            await self.api.post_event(body, type_, reason, message)
        except Exception as error:
            LOGGER.debug("event %s not posted (%s): %s", reason, error, message)

    # -------------------------------------------------------------------- timing

    def _requeue(
        self,
        key: OwnerKey,
        decision: Plan,
        status: LLMDeploymentStatus,
        now: datetime,
        held: float | None = None,
    ) -> float | None:
        """When this object needs a look regardless of events: a rollout timer, the grace
        period of unready pods, a status held back, or our own writes the watch has not
        shown yet."""
        due = [
            decision.requeue_after,
            unavailable_in(status, rfc3339(now), self.unavailable_grace),
            held,
        ]
        expect = self.expectations.get(key)
        if expect is not None and (expect.applied or expect.deleted):
            due.append(expect.ttl)
        times = [t for t in due if t is not None]
        return min(times) if times else None

    # -------------------------------------------------------------------- metrics

    def _export(
        self, key: OwnerKey, status: LLMDeploymentStatus, resolved: Resolved, decision: Plan
    ) -> None:
        namespace, name = key
        per_replica = resolved.sizing.gpus_per_replica
        values: dict[str, Any] = {
            "spec_valid": 1,
            "phase": status.phase,
            "replicas": status.replicas,
            "ready_replicas": status.ready_replicas,
            "gpus_per_replica": per_replica,
            "gpus_requested": per_replica * sum(t.replicas for t in decision.targets),
            "canary_weight": (
                decision.rollout.canary_weight if decision.rollout.canary_revision else 0
            ),
        }
        if decision.stats.success_rate is not None:
            values["rollout_success_ratio"] = decision.stats.success_rate
        metrics.RESOURCES.set(namespace, name, **values)
        if decision.outcome:
            metrics.ROLLOUTS.labels(namespace, name, decision.outcome).inc()
            finished = decision.history[0] if decision.history else None
            start = parse_time(finished.start_time) if finished else None
            end = parse_time(finished.end_time) if finished else None
            if start and end:
                metrics.ROLLOUT_SECONDS.labels(decision.outcome).observe(
                    (end - start).total_seconds()
                )


def _key_of(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return (obj["kind"], meta.get("namespace", ""), meta["name"])


async def _together(writes: Iterable[Awaitable[str]]) -> list[str]:
    """Independent writes at once: one round trip, not one per child. Once all are done,
    the first failure (in their order) is raised."""
    results = await asyncio.gather(*writes, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if isinstance(r, str)]


def _status_of(body: Mapping[str, Any]) -> LLMDeploymentStatus:
    """The stored status; one that does not parse (edited by hand) counts as none."""
    try:
        return LLMDeploymentStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return LLMDeploymentStatus()


def _refused(previous: LLMDeploymentStatus, generation: int) -> tuple[str, ...]:
    """The API server's refusal of this generation's children, as the status recorded it."""
    valid = next((c for c in previous.conditions if c.type == "SpecValid"), None)
    if valid and valid.reason == REFUSED and valid.observed_generation == generation:
        return tuple(valid.message.split("; "))
    return ()


def _newer_or_same(version: str | None, than: str) -> bool | None:
    """Whether a resourceVersion is at least `than`; None when they cannot be ordered.

    Kopf hands over only the newest event of a burst, so the echo of our own status write
    may never come; the API server's versions are etcd revisions, which order (they are
    opaque by contract, so anything else falls back to the time-bound wait)."""
    if version is None:
        return None
    if version == than:
        return True
    if version.isdigit() and than.isdigit():
        return int(version) >= int(than)
    return None


def _live_revision(workload: Child, pods: RevisionPods, resolved: Resolved) -> LiveRevision:
    """A workload as the planner sees it. Its Ready count is the lowest of what its status
    says, what it is scaled to and the Ready serving pods the watch shows: a status lags a
    scale-down, and the stable gives up, or a draining revision keeps, pods by this count."""
    return LiveRevision(
        revision=workload.revision or "",
        engine=workload.engine or resolved.engine.name,
        replicas=workload.replicas,
        ready_replicas=min(workload.ready_replicas, workload.replicas, pods.serving_ready),
        pods=pods,
    )


def _selector(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in serving_selector(name).items())


def _cold_start(revision: str, pods: Sequence[PodInfo]) -> float | None:
    """First pod of the revision created -> first pod of it Ready, in seconds."""
    mine = [p for p in pods if p.revision == revision]
    created = [t for p in mine if (t := parse_time(p.created))]
    ready = [t for p in mine if (t := parse_time(p.ready_since))]
    if not created or not ready:
        return None
    return max(0.0, (min(ready) - min(created)).total_seconds())
