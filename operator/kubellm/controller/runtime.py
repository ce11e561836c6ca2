"""The operator's moving parts around the reconcile: the work queue's workers and a ticker.

Kopf's watch events feed the cache and queue the LLMDeployment they concern (children and
pods with a short delay, so a burst costs one reconcile). Workers take keys off the queue
and reconcile the newest body; each finished reconcile schedules the next look (a rollout
timer, else the resync). The ticker follows leadership (peering), rediscovers the APIs the
cluster serves (a CRD installed later is used without a restart), and looks again at
objects a watch that started over did not list. A replica that does not lead does no work;
a worker or ticker that died makes /healthz fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatch
from typing import Any

from kubellm import metrics
from kubellm.controller.cache import OWNER_KIND, Cache, OwnerKey
from kubellm.controller.leadership import Peering, paused_by_peers
from kubellm.controller.queue import WorkQueue
from kubellm.controller.reconcile import ReconcileError, Reconciler
from kubellm.k8s.client import ApiError, KubeClient
from kubellm.render.context import MANAGED_BY

# Every kind the cache holds besides LLMDeployments: their children and pods.
WATCHED_KINDS = (
    "ControllerRevision",
    "Deployment",
    "LeaderWorkerSet",
    "Service",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "PodMonitor",
    "HTTPRoute",
    "ScaledObject",
    "TriggerAuthentication",
    "Pod",
)
CHILD_EVENT_DELAY = 0.5
SYNC_TIMEOUT_SECONDS = 120.0  # then the process exits and is restarted, as a cache sync times out
SYNC_RETRY_SECONDS = 0.5
# 410: a listing's continue token expired (etcd compacted meanwhile): list again
TRANSIENT_STATUSES = frozenset({410, 429, 500, 502, 503, 504})
TICK_SECONDS = 1.0
PEERING_SECONDS = 2.0
DISCOVERY_SECONDS = 30.0
HEARTBEAT_LIMIT = 30.0
LOGGER = logging.getLogger("kubellm.runtime")


@dataclass
class Runtime:
    reconciler: Reconciler
    cache: Cache
    client: KubeClient
    resync_seconds: float = 60.0
    workers: int = 16
    peering: Peering | None = None  # None: standalone, always leading
    namespaces: tuple[str, ...] = ()  # names or patterns served (`kubellm run -n`); () for all
    queue: WorkQueue = field(default_factory=WorkQueue)
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    heartbeat: float = field(default_factory=time.monotonic)
    _last_error: dict[OwnerKey, str] = field(default_factory=dict)
    # uids of LLMDeployments the watch saw deleted: a listing older than that is no resurrection
    _deleted: set[str] = field(default_factory=set)

    # ------------------------------------------------------------------ events

    def observe(self, kind: str, event: str | None, body: Mapping[str, Any]) -> None:
        """One watch event from Kopf (type None: part of a listing)."""
        metrics.WATCH_EVENTS.labels(kind).inc()
        key = self.cache.observe(kind, event, body)
        if key is None:
            return
        if kind != OWNER_KIND:
            self.queue.add(key, CHILD_EVENT_DELAY)
        elif event == "DELETED":
            uid = str((body.get("metadata") or {}).get("uid") or "")
            self.queue.forget(key)
            self.reconciler.forget(key, uid)
            self._deleted.add(uid)
        elif not self.reconciler.saw(body):
            self.queue.add(key)

    # ------------------------------------------------------------------ tasks

    async def sync(self) -> None:
        """Read every kind the cache holds, once, before acting on it: a reconcile on a half
        filled cache (a restart, a resumed replica) would take a child it has not heard of
        yet for missing, or the canary's Ready pods for none."""
        for kind in (OWNER_KIND, *WATCHED_KINDS):
            await self._sync_kind(kind)

    async def _sync_kind(self, kind: str) -> None:
        """Take in every object of `kind`, then drop what the cache holds and the API has not."""
        listed: set[tuple[str, str]] = set()

        def take(obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            listed.add((meta.get("namespace") or "", meta.get("name") or ""))
            self.cache.observe(kind, None, obj)

        if not await self._listing(kind, take):
            return
        for namespace, name in self.cache.known(kind):
            if (namespace, name) not in listed and self._served(namespace):
                LOGGER.info("gone while not watching: %s %s/%s", kind, namespace, name)
                self.cache.forget(kind, namespace, name)

    async def _adopt_unseen_owners(self) -> None:
        """LLMDeployments the API server has and the cache does not are taken in: a watch
        event that never came (a namespace whose watch started late, a lost stream) must not
        leave an object unreconciled until the operator restarts. One LIST per resync."""
        uids: set[str | None] = set()

        def take(obj: dict[str, Any]) -> None:
            meta = obj.get("metadata") or {}
            uids.add(meta.get("uid"))
            key = (meta.get("namespace") or "", meta.get("name") or "")
            if self.cache.owner(key) is None and meta.get("uid") not in self._deleted:
                LOGGER.info(
                    "found without a watch event: %s/%s", meta.get("namespace"), meta.get("name")
                )
                self.observe(OWNER_KIND, "ADDED", obj)

        await self._listing(OWNER_KIND, take, patience=0.0)
        # a uid the API server no longer lists cannot come back: no need to remember it
        self._deleted &= uids

    async def _listing(
        self,
        kind: str,
        take: Callable[[dict[str, Any]], None],
        patience: float = SYNC_TIMEOUT_SECONDS,
    ) -> bool:
        """Hand every object of `kind` this replica serves to `take`, page by page (a listing
        of 10,000 is never held at once); False when the kind is not served or not ours to
        read. An API server that is busy or starting (429 "storage is (re)initializing" for a
        CRD just registered, 5xx, no connection) is asked again from the start, with backoff,
        for up to `patience` seconds (`SYNC_TIMEOUT_SECONDS`), as a controller's cache sync
        waits; `take` may so see an object twice."""
        selector = "" if kind == OWNER_KIND else f"{MANAGED_BY}=kubellm"
        exact = not any(set(n) & set("*?[") for n in self.namespaces)
        deadline = time.monotonic() + patience
        delay = SYNC_RETRY_SECONDS
        while True:
            try:
                for namespace in self.namespaces if exact and self.namespaces else [None]:
                    async for page in self.client.pages(kind, namespace, label_selector=selector):
                        for obj in page:
                            if self._served((obj.get("metadata") or {}).get("namespace") or ""):
                                take(obj)
                return True
            except ApiError as error:
                if error.status in (403, 404):  # not served (yet), or not ours to read
                    return False
                if error.status not in TRANSIENT_STATUSES or time.monotonic() > deadline:
                    raise
                LOGGER.info("listing %s: %s; asking again in %.1fs", kind, error, delay)
            except (OSError, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise
                LOGGER.info("listing %s: %s; asking again in %.1fs", kind, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _served(self, namespace: str) -> bool:
        return not self.namespaces or any(fnmatch(namespace, n) for n in self.namespaces)

    def start(self) -> None:
        if self.peering is None:
            self._lead(True)
        self.tasks = [
            asyncio.create_task(self._worker(), name=f"worker-{i}") for i in range(self.workers)
        ]
        self.tasks.append(asyncio.create_task(self._ticker(), name="ticker"))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def healthy(self) -> bool:
        """Every worker and the ticker alive, and the ticker ticking."""
        alive = all(not task.done() for task in self.tasks) and bool(self.tasks)
        return alive and time.monotonic() - self.heartbeat < HEARTBEAT_LIMIT

    async def _worker(self) -> None:
        while True:
            await self.leading.wait()
            key = await self.queue.get()
            if not self.leading.is_set():
                self.queue.done(key)
                continue
            started = time.monotonic()
            try:
                after = await self.reconciler.reconcile(key)
            except Exception as error:  # reported in the status, or a bug or an API outage
                metrics.RECONCILES.labels("error").inc()
                metrics.RECONCILE_ERRORS.inc()
                backoff = self.queue.done(key, failed=True)
                text = f"{type(error).__name__}: {error}"
                if self._last_error.get(key) != text:  # said once, not at every retry
                    self._last_error[key] = text
                    LOGGER.warning(
                        "reconcile of %s/%s failed, retrying in %ss: %s",
                        *key,
                        backoff,
                        text,
                        exc_info=not isinstance(error, ReconcileError),
                    )
            else:
                metrics.RECONCILES.labels("success").inc()
                self._last_error.pop(key, None)
                if self.cache.owner(key) is None:
                    self.queue.done(key)
                else:
                    next_look = (
                        self.resync_seconds if after is None else min(after, self.resync_seconds)
                    )
                    self.queue.done(key, after=next_look)
            finally:
                metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)

    async def _ticker(self) -> None:
        last_peering = last_discovery = 0.0
        last_owners = time.monotonic()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.heartbeat = now = time.monotonic()
            try:
                if self.leading.is_set() and now - last_owners >= self.resync_seconds:
                    last_owners = now
                    await self._adopt_unseen_owners()
                if self.peering is not None and now - last_peering >= PEERING_SECONDS:
                    last_peering = now
                    await self._follow_peering(self.peering)
                if now - last_discovery >= DISCOVERY_SECONDS:
                    last_discovery = now
                    await self._discover()
                await self._recheck_relisted()
            except (ApiError, OSError, TimeoutError) as error:  # the API is away: next tick
                LOGGER.debug("ticker: %s", error)

    async def _follow_peering(self, peering: Peering) -> None:
        now = datetime.now(UTC)
        paused = any(
            paused_by_peers(obj.get("status") or {}, peering.identity, peering.priority, now)
            for obj in await self._peerings(peering)
            if peering.mine((obj.get("metadata") or {}).get("namespace"))
        )
        if paused and self.leading.is_set():
            LOGGER.info("paused: another operator replica leads")
            self._lead(False)
            self.queue.clear()
        elif not paused and not self.leading.is_set():
            LOGGER.info("leading: reconciling every LLMDeployment")
            await self.sync()  # what happened while paused, before acting on it
            self._lead(True)
            self._everything()

    def _lead(self, leading: bool) -> None:
        if leading:
            self.leading.set()
        else:
            self.leading.clear()
        metrics.LEADING.set(1 if leading else 0)

    async def _peerings(self, peering: Peering) -> list[dict[str, Any]]:
        """The peering objects: read by name where the namespaces are exact (a namespaced
        install may read no further), listed across namespaces for patterns."""
        if any(set(n) & set("*?[") for n in peering.namespaces):
            selector = f"metadata.name={peering.name}"
            return await self.client.list("KopfPeering", field_selector=selector)
        found = []
        where: list[tuple[str, str | None]] = [("KopfPeering", n) for n in peering.namespaces]
        for kind, namespace in where or [("ClusterKopfPeering", None)]:
            try:
                found.append(await self.client.get(kind, namespace, peering.name))
            except ApiError as error:
                if error.status != 404:
                    raise
        return found

    async def _discover(self) -> None:
        apis = await self.client.served_group_versions()
        if apis != self.reconciler.apis:
            LOGGER.info("served APIs changed: %s", sorted(apis ^ self.reconciler.apis))
            self.reconciler.apis = apis
            self._everything()

    async def _recheck_relisted(self) -> None:
        """Objects a listing did not show are looked up; the gone are dropped."""
        for scope in self.cache.relists_due():
            kind = scope[0]
            for namespace, name in self.cache.unseen(scope):
                try:
                    await self.client.get(kind, namespace, name)
                except ApiError as error:
                    if error.status != 404:
                        raise
                    key = self.cache.forget(kind, namespace, name)
                    LOGGER.info(
                        "gone since the watch started over: %s %s/%s", kind, namespace, name
                    )
                    if key is not None:
                        self.queue.add(key)

    def _everything(self) -> None:
        for key in list(self.cache.owners):
            self.queue.add(key)
