"""A load ramp on one autoscaled LLMDeployment, with its figures printed (`kubellm demo`).

Runs the fleet for one LLMDeployment, writes each pod's generated tokens/s (a short window)
straight to the local cluster's custom-metrics adapter, and sends a load that ramps up to
three replicas' worth at the target, holds, and stops; a line of figures every 5 seconds
shows the autoscaler following. The light path of the demo: no Prometheus in between.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp

from kubellm.k8s.client import KubeClient
from kubellm.simulator.adapter import feed, fleet_values
from kubellm.simulator.fleet import Fleet, follow

TOKENS = "kubellm_generation_tokens_per_second"
WINDOW = 15.0  # seconds of tokens averaged per pod
OUTPUT_TOKENS = 64
# Load in replicas' worth at the target: (seconds from start, level), linear in between.
RAMP = ((0, 0.5), (20, 3.0), (70, 3.0), (75, 0.0), (150, 0.0))


def level(t: float) -> float:
    for (t0, u0), (t1, u1) in itertools.pairwise(RAMP):
        if t0 <= t < t1:
            return u0 + (u1 - u0) * (t - t0) / (t1 - t0)
    return RAMP[-1][1]


async def ramp(
    client: KubeClient, namespace: str, name: str, write_url: str, target: float
) -> None:
    fleet = Fleet(client, [namespace], frozenset({name}), cold_start=3.0)
    per_replica_rps = target / OUTPUT_TOKENS
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session:
        values = fleet_values(fleet, "generationTokensPerSecond", WINDOW)
        background = [
            asyncio.ensure_future(follow(fleet, 1.0, stop)),
            asyncio.ensure_future(feed(session, write_url, TOKENS, [namespace], values, 2, stop)),
        ]
        print("   seconds  load(req/s)  spec.replicas  engines  tokens/s per engine", flush=True)
        loop = asyncio.get_running_loop()
        begin, printed = loop.time(), -5.0
        pending: set[asyncio.Task[Any]] = set()
        while (t := loop.time() - begin) < RAMP[-1][0]:
            rate = level(t) * per_replica_rps
            if rate > 0:
                body = {"prompt": [0] * 256, "max_tokens": OUTPUT_TOKENS}
                task = asyncio.ensure_future(fleet.complete(namespace, name, body))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if t - printed >= 5:
                printed = t
                engines = fleet.signals(namespace, WINDOW)
                tokens = sum(e["generationTokensPerSecond"] for e in engines.values())
                obj = await client.get("LLMDeployment", namespace, name)
                print(
                    f"   {t:7.0f}  {rate:11.1f}  {obj['spec'].get('replicas', 1):13d}"
                    f"  {len(engines):7d}  {tokens / max(1, len(engines)):8.0f}",
                    flush=True,
                )
            await asyncio.sleep(1 / rate if rate > 0 else 1)
        stop.set()
        await asyncio.gather(*background, *pending)
    await fleet.close()
