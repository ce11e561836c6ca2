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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubellm import metrics
from kubellm.controller.cache import OWNER_KIND, Cache, OwnerKey
from kubellm.controller.leadership import Peering, paused_by_peers
from kubellm.controller.queue import WorkQueue
from kubellm.controller.reconcile import ReconcileError, Reconciler
from kubellm.k8s.client import ApiError, KubeClient

CHILD_EVENT_DELAY = 0.5
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
    queue: WorkQueue = field(default_factory=WorkQueue)
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    heartbeat: float = field(default_factory=time.monotonic)
    _last_error: dict[OwnerKey, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ events

    def observe(self, kind: str, event: str | None, body: Mapping[str, Any]) -> None:
        """One watch event from Kopf (type None: part of a listing)."""
        key = self.cache.observe(kind, event, body)
        if key is None:
            return
        if kind != OWNER_KIND:
            self.queue.add(key, CHILD_EVENT_DELAY)
        elif event == "DELETED":
            self.queue.forget(key)
            self.reconciler.forget(key, str((body.get("metadata") or {}).get("uid") or ""))
        else:
            self.reconciler.saw(body)
            self.queue.add(key)

    # ------------------------------------------------------------------ tasks

    def start(self) -> None:
        if self.peering is None:
            self.leading.set()
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
            except ReconcileError:
                metrics.RECONCILES.labels("error").inc()
                metrics.RECONCILE_ERRORS.inc()
                self.queue.done(key, failed=True)
            except Exception as error:  # a bug or an API outage: back off, say it once
                metrics.RECONCILES.labels("error").inc()
                metrics.RECONCILE_ERRORS.inc()
                backoff = self.queue.done(key, failed=True)
                text = f"{type(error).__name__}: {error}"
                if self._last_error.get(key) != text:
                    self._last_error[key] = text
                    LOGGER.exception("reconcile of %s/%s failed; retrying in %ss", *key, backoff)
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
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.heartbeat = now = time.monotonic()
            try:
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
        paused = False
        for kind, namespace in peering.objects():
            try:
                obj = await self.client.get(kind, namespace, peering.name)
            except ApiError as error:
                if error.status != 404:
                    raise
                continue
            now = datetime.now(UTC)
            paused |= paused_by_peers(
                obj.get("status") or {}, peering.identity, peering.priority, now
            )
        if paused and self.leading.is_set():
            LOGGER.info("paused: another operator replica leads")
            self.leading.clear()
            self.queue.clear()
        elif not paused and not self.leading.is_set():
            LOGGER.info("leading: reconciling every LLMDeployment")
            self.leading.set()
            self._everything()

    async def _discover(self) -> None:
        apis = await self.client.served_group_versions()
        if apis != self.reconciler.apis:
            LOGGER.info("served APIs changed: %s", sorted(apis ^ self.reconciler.apis))
            self.reconciler.apis = apis
            self._everything()

    async def _recheck_relisted(self) -> None:
        """Objects a listing did not show are looked up; the gone are dropped."""
        for kind in self.cache.relists_due():
            for namespace, name in self.cache.unseen(kind):
                try:
                    await self.client.get(kind, namespace, name)
                except ApiError as error:
                    if error.status != 404:
                        raise
                    key = self.cache.forget(kind, namespace, name)
                    if key is not None:
                        self.queue.add(key)

    def _everything(self) -> None:
        for key in list(self.cache.owners):
            self.queue.add(key)
