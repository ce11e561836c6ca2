"""Per-pod custom metrics for the local cluster's custom-metrics adapter.

prometheus-adapter is not a Go module the module proxy serves, so the local cluster serves
custom.metrics.k8s.io with the upstream custom-metrics-apiserver and its in-memory test
provider, whose per-pod values are written over HTTP (see e2e/cluster/cluster.sh). This writes
what prometheus-adapter would serve: the chart's adapter rule, its `metricsQuery` expanded as
prometheus-adapter expands it (`<<.GroupBy>>` the pod, `<<.LabelMatchers>>` the namespace),
evaluated on a real Prometheus. The demo, which runs no Prometheus, writes the simulated
engines' own figures instead (`Fleet.signals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import aiohttp

from kubellm.simulator.fleet import Fleet

log = logging.getLogger(__name__)
Values = Callable[[str], Awaitable[dict[str, float]]]  # namespace -> value by pod


def expand(metrics_query: str, namespace: str) -> str:
    """A prometheus-adapter metricsQuery for every pod of one namespace, grouped by pod."""
    return metrics_query.replace("<<.LabelMatchers>>", f'namespace="{namespace}"').replace(
        "<<.GroupBy>>", "pod"
    )


def prometheus_values(session: aiohttp.ClientSession, url: str, metrics_query: str) -> Values:
    """Values by pod from the adapter rule evaluated on the Prometheus at `url`."""

    async def values(namespace: str) -> dict[str, float]:
        params = {"query": expand(metrics_query, namespace)}
        async with session.get(f"{url.rstrip('/')}/api/v1/query", params=params) as response:
            body = await response.json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus: {body.get('error', body)}")
        return {
            sample["metric"]["pod"]: float(sample["value"][1])
            for sample in body["data"]["result"]
            if "pod" in sample["metric"]
        }

    return values


def fleet_values(fleet: Fleet, metric: str, window: float) -> Values:
    """Values by pod straight from the fleet's engines (the demo: no Prometheus)."""

    async def values(namespace: str) -> dict[str, float]:
        return {pod: s[metric] for pod, s in fleet.signals(namespace, window).items()}

    return values


def quantity(value: float) -> str:
    """A Kubernetes quantity in thousandths, as the HPA reads fractional metrics."""
    return f"{round(value * 1000)}m"


async def write(
    session: aiohttp.ClientSession, write_url: str, namespace: str, values: dict[str, float],
    metric: str,
) -> None:  # fmt: skip
    for pod, value in sorted(values.items()):
        path = f"/write-metrics/namespaces/{namespace}/pods/{pod}/{metric}"
        async with session.post(write_url.rstrip("/") + path, json=quantity(value)) as response:
            if response.status >= 300:
                raise RuntimeError(f"adapter refused {path}: HTTP {response.status}")


async def feed(
    session: aiohttp.ClientSession,
    write_url: str,
    metric: str,
    namespaces: list[str],
    values: Values,
    interval: float,
    stop: asyncio.Event,
) -> None:
    """Write every pod's value every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        for namespace in namespaces:
            try:
                await write(session, write_url, namespace, await values(namespace), metric)
            except (aiohttp.ClientError, RuntimeError, TimeoutError) as error:
                log.warning("custom metrics for %s not written: %r", namespace, error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
