"""A load ramp on one autoscaled LLMDeployment, with its figures printed (`kubellm demo`).

Runs the fleet for one LLMDeployment, writes each pod's value of the autoscaling metric
straight to the local cluster's custom-metrics adapter (tokens/s over a short window), and
sends a load that ramps up to three replicas' worth, holds, and stops; a line of figures every
5 seconds shows the autoscaler following. The light path of the demo: no Prometheus between.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp

from kubellm.k8s.client import KubeClient
from kubellm.render.children import ADAPTER_METRIC
from kubellm.simulator.adapter import feed, fleet_values
from kubellm.simulator.fleet import Fleet, follow

WINDOW = 15.0  # seconds of generated tokens averaged per pod
# Load in replicas' worth: (seconds from start, level), linear in between.
RAMP = ((0, 0.5), (15, 3.0), (50, 3.0), (55, 0.0), (100, 0.0))


def level(t: float) -> float:
    for (t0, u0), (t1, u1) in itertools.pairwise(RAMP):
        if t0 <= t < t1:
            return u0 + (u1 - u0) * (t - t0) / (t1 - t0)
    return RAMP[-1][1]


async def ramp(
    client: KubeClient,
    namespace: str,
    name: str,
    write_url: str,
    metric: str,
    replica_rps: float,
) -> None:
    """`replica_rps`: one replica's worth of load, in requests/s of 256+64-token requests."""
    fleet = Fleet(client, [namespace], frozenset({name}), cold_start=3.0)
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        values = fleet_values(fleet, metric, WINDOW)
        background = [
            asyncio.ensure_future(follow(fleet, 1.0, stop)),
            asyncio.ensure_future(
                feed(session, write_url, ADAPTER_METRIC[metric], [namespace], values, 2, stop)
            ),
        ]
        print(f"   seconds  load(req/s)  spec.replicas  engines  {metric} per engine", flush=True)
        loop = asyncio.get_running_loop()
        begin, printed = loop.time(), -5.0
        pending: set[asyncio.Task[Any]] = set()
        while (t := loop.time() - begin) < RAMP[-1][0]:
            rate = level(t) * replica_rps
            if rate > 0:
                body = {"prompt": [0] * 256, "max_tokens": 64}
                task = asyncio.ensure_future(fleet.complete(namespace, name, body))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if t - printed >= 5:
                printed = t
                engines = await values(namespace)
                obj = await client.get("LLMDeployment", namespace, name)
                print(
                    f"   {t:7.0f}  {rate:11.1f}  {obj['spec'].get('replicas', 1):13d}"
                    f"  {len(engines):7d}  {sum(engines.values()) / max(1, len(engines)):8.1f}",
                    flush=True,
                )
            await asyncio.sleep(1 / rate if rate > 0 else 1)
        stop.set()
        await asyncio.gather(*background, *pending)
    await fleet.close()
