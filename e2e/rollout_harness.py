"""Glue for the rollout journeys (e2e/test_rollout.py): engines for revisions that run none.

The local cluster's GPU nodes are simulated (kwok): pods turn Ready at once but run no
process. So each live revision of an LLMDeployment gets one engine simulator on loopback,
scraped by one real Prometheus under the labels the operator's PodMonitor would attach
(`namespace`, `llmdeployment`, `revision`, `engine`), and driven by a bounded open-model
load, so the operator's canary analysis reads real PromQL answers.

- `RolloutPrometheus`: Prometheus with `--web.enable-lifecycle`; `set_targets` rewrites
  the scrape config and POSTs `/-/reload`. One job per target, named after its labels, so
  a target keeps its series across reloads.
- `Fleet.track(namespace, name, stable=..., canary=...)`: a background thread reads the
  LLMDeployment (`status.revisions`, `status.rollout`) every second, starts a simulator
  for each new live revision (behaviour by role: the revision that first shows up as
  `canaryRevision` gets `canary`, any other `stable`), stops the ones no longer live, and
  keeps the Prometheus targets in step.
- `LoadDriver`: one asyncio loop in a thread sending `rps` completions per second to each
  simulator, capped in requests in flight and in total duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from conftest import run_kubectl
from kubellm.simulator.load import check_loopback
from prometheus import Prometheus, ScrapeTarget, Simulator, free_port

# Simulator options by behaviour (see `python -m kubellm.simulator --help`).
HEALTHY: Mapping[str, float] = {"latency": 0.1, "ttft": 0.02}
ERRORS: Mapping[str, float] = {**HEALTHY, "error_rate": 0.5}
SLOW: Mapping[str, float] = {"latency": 2.0, "ttft": 0.1}

SCRAPE_INTERVAL = "1s"
MAX_LOAD_SECONDS = 900.0  # no journey runs this long; the load stops by itself after it
MAX_IN_FLIGHT = 64  # per simulator


def _job_name(labels: Mapping[str, str]) -> str:
    raw = "-".join(labels[k] for k in ("namespace", "llmdeployment", "revision"))
    return re.sub(r"[^a-zA-Z0-9_-]", "_", raw)


class RolloutPrometheus(Prometheus):
    """A throwaway Prometheus whose scrape targets change while it runs."""

    def __init__(self, workdir: Path, binary: str) -> None:
        self.workdir = workdir
        self.web = None  # no authentication
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        self.targets: list[ScrapeTarget] = []
        self._write()
        self.log = (workdir / "prometheus.log").open("w")
        self.argv = [
            binary,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1h",
        ]
        self.process = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.lock = threading.Lock()

    def down(self) -> None:
        """Prometheus goes away (an outage): queries are refused until `up()`."""
        self.process.terminate()
        self.process.wait(timeout=10)

    def up(self) -> None:
        """Back on the same address, with the data it had."""
        self.process = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_ready()

    def _write(self) -> None:
        jobs = [
            {
                "job_name": _job_name(t.labels),
                "metrics_path": t.metrics_path,
                "static_configs": [{"targets": [t.address], "labels": dict(t.labels)}],
            }
            for t in self.targets
        ]
        interval = {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL}
        self.config.write_text(yaml.safe_dump({"global": interval, "scrape_configs": jobs}))

    def set_targets(self, targets: list[ScrapeTarget]) -> None:
        with self.lock:
            if targets == self.targets:
                return
            self.targets = list(targets)
            self._write()
            request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status != 200:
                    raise RuntimeError(f"prometheus reload: HTTP {response.status}")


class LoadDriver:
    """Open-model load on loopback: `rps` requests per second per URL, bounded.

    `start` again with another rate or body changes them while the load runs.
    """

    def __init__(self, rps: float = 4.0, max_seconds: float = MAX_LOAD_SECONDS) -> None:
        if not 0 < rps <= 50:
            raise ValueError("rps must be in (0, 50]")
        self.rps = rps
        self.deadline = time.monotonic() + max_seconds
        self.sent: dict[str, int] = {}
        self.rates: dict[str, float] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.loop = asyncio.new_event_loop()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.session: aiohttp.ClientSession | None = None

    def start(self, url: str, rps: float | None = None, body: dict[str, Any] | None = None) -> None:
        check_loopback(url)
        if rps is not None and not 0 < rps <= 50:
            raise ValueError("rps must be in (0, 50]")
        self.rates[url] = rps or self.rps
        self.bodies[url] = body or {"prompt": "Say something simulated.", "max_tokens": 16}
        asyncio.run_coroutine_threadsafe(self._start(url), self.loop).result(10)

    def stop(self, url: str) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(url), self.loop).result(10)

    async def _start(self, url: str) -> None:
        if self.session is None:
            timeout = aiohttp.ClientTimeout(total=30)
            self.session = aiohttp.ClientSession(timeout=timeout)
        if url not in self.tasks:
            self.tasks[url] = asyncio.ensure_future(self._drive(url))

    async def _stop(self, url: str) -> None:
        task = self.tasks.pop(url, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _drive(self, url: str) -> None:
        assert self.session is not None
        session, target = self.session, url.rstrip("/") + "/v1/completions"
        in_flight: set[asyncio.Task[None]] = set()

        async def one() -> None:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.post(target, json=self.bodies[url]) as response:
                    await response.read()

        try:
            while time.monotonic() < self.deadline:
                if len(in_flight) < MAX_IN_FLIGHT:
                    task = asyncio.ensure_future(one())
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                    self.sent[url] = self.sent.get(url, 0) + 1
                await asyncio.sleep(1 / self.rates[url])
        finally:
            for task in list(in_flight):
                task.cancel()

    def close(self) -> None:
        async def shutdown() -> None:
            for url in list(self.tasks):
                await self._stop(url)
            if self.session is not None:
                await self.session.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Engine:
    """One simulator standing for one revision's pods."""

    namespace: str
    llmdeployment: str
    revision: str
    role: str
    simulator: Simulator

    def target(self) -> ScrapeTarget:
        return self.simulator.target(
            namespace=self.namespace, llmdeployment=self.llmdeployment, revision=self.revision
        )


def live_revisions(obj: Mapping[str, Any]) -> tuple[set[str], str | None]:
    """(every live revision, the canary) as the LLMDeployment's status tells them."""
    status = obj.get("status") or {}
    rollout = status.get("rollout") or {}
    live = {r["revision"] for r in status.get("revisions") or [] if r.get("revision")}
    live |= {r for r in (rollout.get("stableRevision"), rollout.get("canaryRevision")) if r}
    return live, rollout.get("canaryRevision")


@dataclass
class Tracked:
    """The simulators of one LLMDeployment, kept in step with its status by `Fleet`."""

    namespace: str
    name: str
    stable: Mapping[str, float]
    canary: Mapping[str, float]
    engines: dict[str, Engine] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # revision -> role when first seen

    def engine(self, revision: str) -> Engine:
        return self.engines[revision]


class Fleet:
    """Simulators and load for the live revisions of tracked LLMDeployments."""

    def __init__(self, prometheus: RolloutPrometheus, rps: float = 4.0) -> None:
        self.prometheus = prometheus
        self.load = LoadDriver(rps)
        self.tracked: list[Tracked] = []
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @contextlib.contextmanager
    def track(
        self,
        namespace: str,
        name: str,
        *,
        stable: Mapping[str, float] = HEALTHY,
        canary: Mapping[str, float] = HEALTHY,
    ) -> Iterator[Tracked]:
        """Keep simulators for `name`'s live revisions while the block runs."""
        entry = Tracked(namespace, name, stable, canary)
        with self.lock:
            self.tracked.append(entry)
        try:
            yield entry
        finally:
            with self.lock:
                self.tracked.remove(entry)
                for engine in entry.engines.values():
                    self._stop(engine)
                entry.engines.clear()
            self._publish()

    def sync(self, entry: Tracked) -> None:
        """One pass: start simulators for new live revisions, stop the gone ones."""
        proc = run_kubectl(
            "get", "llmd", entry.name, "-n", entry.namespace, "-o", "json", check=False
        )
        if proc.returncode != 0:
            return
        live, canary = live_revisions(json.loads(proc.stdout))
        changed = False
        with self.lock:
            if entry not in self.tracked:
                return
            for revision in sorted(live - set(entry.engines)):
                role = entry.roles.setdefault(
                    revision, "canary" if revision == canary else "stable"
                )
                options = entry.canary if role == "canary" else entry.stable
                simulator = Simulator("vllm", **options)
                try:
                    simulator.wait_listening()
                except RuntimeError:
                    self.errors.append(f"simulator for {revision} did not start")
                    continue
                engine = Engine(entry.namespace, entry.name, revision, role, simulator)
                entry.engines[revision] = engine
                self.load.start(simulator.url)
                changed = True
            for revision in set(entry.engines) - live:
                self._stop(entry.engines.pop(revision))
                changed = True
        if changed:
            self._publish()

    def _stop(self, engine: Engine) -> None:
        self.load.stop(engine.simulator.url)
        engine.simulator.stop()

    def _publish(self) -> None:
        with self.lock:
            targets = [e.target() for t in self.tracked for e in t.engines.values()]
        self.prometheus.set_targets(sorted(targets, key=lambda t: _job_name(t.labels)))

    def _run(self) -> None:
        while not self.stopping.wait(1.0):
            with self.lock:
                entries = list(self.tracked)
            for entry in entries:
                try:
                    self.sync(entry)
                except Exception as error:  # keep tracking; the journey reports the symptom
                    self.errors.append(f"{entry.namespace}/{entry.name}: {error!r}")

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(15)
        with self.lock:
            for entry in self.tracked:
                for engine in entry.engines.values():
                    self._stop(engine)
                entry.engines.clear()
        self.load.close()
