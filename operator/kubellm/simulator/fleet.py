"""A fleet of simulated engines that follows the pods of LLMDeployments on the local cluster.

The local cluster's GPU nodes are simulated (kwok): pods turn Ready but run nothing. The fleet
lists the serving pods of the selected LLMDeployments every `poll` seconds and runs one engine
simulator per Ready pod on a loopback port, at the speed of that LLMDeployment's GPUs (the
capacity model of its sizing plan), answering only after `cold_start` seconds as an engine
loading its weights does. It writes the engines as Prometheus file_sd targets labelled as the
PodMonitor's relabelling labels real pods (namespace, pod, llmdeployment, revision, engine),
and routes requests to the healthy engines of each revision by the revisions' traffic
weights (`status.revisions[].weight`), round robin within a revision, as a Service would.
Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from kubellm.engines import get_engine
from kubellm.k8s.client import KubeClient
from kubellm.render import InvalidSpecError, resolve
from kubellm.render.context import ENGINE, INSTANCE, REVISION, SERVING
from kubellm.simulator.server import SimulatorConfig, answer, create_app, healthy, signals
from kubellm.sizing.capacity import ReplicaCapacity

log = logging.getLogger(__name__)
SERVING_PODS = f"{SERVING}=true"


@dataclass
class Replica:
    """One simulated engine standing for one pod."""

    namespace: str
    pod: str
    llmdeployment: str
    revision: str
    engine: str
    app: web.Application
    runner: web.AppRunner
    port: int

    @property
    def healthy(self) -> bool:
        return healthy(self.app)

    def target(self) -> dict[str, Any]:
        """The file_sd entry of this engine: the labels a PodMonitor gives a real pod."""
        labels = {
            "__metrics_path__": get_engine(self.engine).metrics_path,
            "namespace": self.namespace,
            "pod": self.pod,
            "llmdeployment": self.llmdeployment,
            "revision": self.revision,
            "engine": self.engine,
        }
        return {"targets": [f"127.0.0.1:{self.port}"], "labels": labels}


@dataclass
class _Deployment:
    """What the fleet knows of one LLMDeployment: weights and the speed of its GPUs."""

    capacity: ReplicaCapacity | None
    weights: dict[str, int]
    turns: dict[str, float] = field(default_factory=dict)  # smooth weighted round robin
    next_replica: dict[str, int] = field(default_factory=dict)  # round robin per revision


def ready(pod: Mapping[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Fleet:
    """Engines for the Ready serving pods of the selected LLMDeployments, and a router."""

    def __init__(
        self,
        client: KubeClient,
        namespaces: list[str],  # names or shell patterns (`e2e-*`)
        names: frozenset[str] = frozenset(),
        *,
        cold_start: float = 0.0,
        file_sd: Path | None = None,
        base: SimulatorConfig | None = None,
    ) -> None:
        self.client = client
        self.namespaces = namespaces
        self.names = names
        self.cold_start = cold_start
        self.file_sd = file_sd
        self.base = base or SimulatorConfig()  # engine options beyond the capacity
        self.replicas: dict[tuple[str, str], Replica] = {}
        self.deployments: dict[tuple[str, str], _Deployment] = {}
        self.started: dict[tuple[str, str], float] = {}  # pod -> when its engine started

    def selected(self, namespace: str, name: str) -> bool:
        in_namespace = any(fnmatch.fnmatchcase(namespace, n) for n in self.namespaces)
        return in_namespace and (not self.names or name in self.names)

    async def sync(self) -> None:
        """One pass: engines for new Ready pods, none for pods gone or not Ready."""
        seen: set[tuple[str, str]] = set()
        known: set[tuple[str, str]] = set()
        for obj in await self.client.list("LLMDeployment", None):
            meta = obj["metadata"]
            if self.selected(meta["namespace"], meta["name"]):
                self._learn(meta["namespace"], obj)
                known.add((meta["namespace"], meta["name"]))
        for gone in set(self.deployments) - known:
            del self.deployments[gone]
        for pod in await self.client.list("Pod", None, label_selector=SERVING_PODS):
            meta = pod["metadata"]
            labels = meta.get("labels") or {}
            name = labels.get(INSTANCE, "")
            if not self.selected(meta["namespace"], name) or not ready(pod):
                continue
            key = (meta["namespace"], meta["name"])
            seen.add(key)
            if key not in self.replicas:
                await self._start(key, name, labels)
        for key in set(self.replicas) - seen:
            await self._stop(key)
        self._write_targets()

    def _learn(self, namespace: str, obj: Mapping[str, Any]) -> None:
        key = (namespace, obj["metadata"]["name"])
        try:
            capacity = resolve(obj).capacity
        except InvalidSpecError:
            capacity = None
        revisions = (obj.get("status") or {}).get("revisions") or []
        weights = {r["revision"]: int(r.get("weight", 0)) for r in revisions if "revision" in r}
        known = self.deployments.get(key)
        if known is None:
            self.deployments[key] = _Deployment(capacity, weights)
        else:
            known.capacity, known.weights = capacity, weights

    async def _start(self, key: tuple[str, str], name: str, labels: Mapping[str, str]) -> None:
        deployment = self.deployments.get((key[0], name))
        capacity = deployment.capacity if deployment else None
        engine = labels.get(ENGINE, "vllm")
        config = replace(
            self.base, engine=engine, capacity=capacity or self.base.capacity,
            cold_start=self.cold_start,
        )  # fmt: skip
        app = create_app(config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        revision = labels.get(REVISION, "")
        self.replicas[key] = Replica(key[0], key[1], name, revision, engine, app, runner, port)
        self.started[key] = time.monotonic()
        log.info("engine for %s/%s on port %d (cold start %gs)", *key, port, self.cold_start)

    async def _stop(self, key: tuple[str, str]) -> None:
        replica = self.replicas.pop(key)
        self.started.pop(key, None)
        await replica.runner.cleanup()
        log.info("engine for %s/%s stopped", *key)

    def _write_targets(self) -> None:
        if self.file_sd is None:
            return
        targets = [r.target() for _, r in sorted(self.replicas.items())]
        text = json.dumps(targets, indent=1, sort_keys=True)
        if self.file_sd.exists() and self.file_sd.read_text() == text:
            return
        # Prometheus watches the directory: replace the file at once, never half-written.
        fd, tmp = tempfile.mkstemp(dir=self.file_sd.parent, prefix=".fleet-", suffix=".json")
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.replace(tmp, self.file_sd)

    def serving(self, namespace: str, name: str) -> list[Replica]:
        """Healthy engines of one LLMDeployment, in pod order."""
        return [
            r
            for (ns, _), r in sorted(self.replicas.items())
            if ns == namespace and r.llmdeployment == name and r.healthy
        ]

    def pick(self, namespace: str, name: str) -> Replica | None:
        """The engine for the next request: a revision by weight, then round robin."""
        candidates = self.serving(namespace, name)
        if not candidates:
            return None
        deployment = self.deployments.setdefault((namespace, name), _Deployment(None, {}))
        by_revision: dict[str, list[Replica]] = {}
        for replica in candidates:
            by_revision.setdefault(replica.revision, []).append(replica)
        weights = {rev: deployment.weights.get(rev, 0) for rev in by_revision}
        if not any(weights.values()):
            weights = {rev: len(replicas) for rev, replicas in by_revision.items()}
        total = sum(weights.values())
        for rev, weight in weights.items():  # smooth weighted round robin (nginx)
            deployment.turns[rev] = deployment.turns.get(rev, 0.0) + weight
        chosen = max((rev for rev in weights if weights[rev] > 0), key=deployment.turns.__getitem__)
        deployment.turns[chosen] -= total
        replicas = by_revision[chosen]
        turn = deployment.next_replica.get(chosen, 0)
        deployment.next_replica[chosen] = turn + 1
        return replicas[turn % len(replicas)]

    async def complete(
        self, namespace: str, name: str, body: dict[str, Any], chat: bool = False
    ) -> web.Response:
        replica = self.pick(namespace, name)
        if replica is None:
            message = f"no ready engine for {namespace}/{name}"
            return web.json_response({"object": "error", "message": message}, status=503)
        return await answer(replica.app, body, chat)

    def signals(self, namespace: str, window: float = 60.0) -> dict[str, dict[str, float]]:
        """Per pod of a namespace, what its engine's metrics say now (see `server.signals`)."""
        return {
            r.pod: signals(r.app, window)
            for (ns, _), r in self.replicas.items()
            if ns == namespace and r.healthy
        }

    async def close(self) -> None:
        for key in list(self.replicas):
            await self._stop(key)
        self._write_targets()


def router_app(fleet: Fleet) -> web.Application:
    """POST /<namespace>/<llmdeployment>/v1/completions (or chat/completions) to the fleet."""

    async def route(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"message": "request body is not JSON"}, status=400)
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        chat = request.path.endswith("/chat/completions")
        return await fleet.complete(namespace, name, body, chat)

    app = web.Application()
    app.router.add_post("/{namespace}/{name}/v1/completions", route)
    app.router.add_post("/{namespace}/{name}/v1/chat/completions", route)
    return app


async def follow(fleet: Fleet, poll: float, stop: asyncio.Event) -> None:
    """Keep the fleet in step with the cluster until `stop` is set."""
    while not stop.is_set():
        try:
            await fleet.sync()
        except Exception as error:  # the API server restarting must not end the fleet
            log.warning("fleet sync failed: %r", error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)
