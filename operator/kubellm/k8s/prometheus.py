"""Canary analysis, the I/O half: instant queries against the Prometheus HTTP API."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from datetime import datetime

import aiohttp

from kubellm.api.models import Analysis, AnalysisStatus
from kubellm.rollout.analysis import AnalysisQuery, assess


class PrometheusError(Exception):
    """Prometheus refused or failed a query; the message is its own."""


async def query_prometheus(
    base_url: str, promql: str, *, session: aiohttp.ClientSession, timeout: float = 10
) -> float | None:
    """One instant query summed to a number; None when no series matched."""
    url = f"{base_url.rstrip('/')}/api/v1/query"
    try:
        async with session.get(
            url, params={"query": promql}, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise PrometheusError(f"{url}: {error or type(error).__name__}") from error
    if not isinstance(body, dict) or body.get("status") != "success":
        detail = body.get("error", body) if isinstance(body, dict) else body
        raise PrometheusError(f"{promql}: {detail}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    if data["resultType"] != "vector":
        raise PrometheusError(f"{promql}: expected a number, got a {data['resultType']}")
    if not data["result"]:
        return None
    return math.fsum(float(sample["value"][1]) for sample in data["result"])


async def run_analysis(
    analysis: Analysis,
    queries: Sequence[AnalysisQuery],
    *,
    session: aiohttp.ClientSession,
    now: datetime,
    previous_failures: int,
    previous_inconclusive: int = 0,
    timeout: float = 10,
) -> AnalysisStatus:
    """Run every query (canary and stable) concurrently, then `assess` the numbers.

    A query Prometheus fails is reported in its result and makes the analysis
    Inconclusive; an unreachable Prometheus never rolls a canary back by itself.
    """

    async def run(promql: str | None) -> float | PrometheusError | None:
        if promql is None:
            return None
        try:
            return await query_prometheus(
                analysis.prometheus_url, promql, session=session, timeout=timeout
            )
        except PrometheusError as error:
            return error

    answers = await asyncio.gather(
        *(run(q.canary) for q in queries), *(run(q.stable) for q in queries)
    )
    canary = dict(zip((q.name for q in queries), answers[: len(queries)], strict=True))
    stable = dict(zip((q.name for q in queries), answers[len(queries) :], strict=True))
    return assess(
        analysis,
        {name: v for name, v in canary.items() if not isinstance(v, PrometheusError)},
        {name: v for name, v in stable.items() if not isinstance(v, PrometheusError)},
        now,
        previous_failures,
        previous_inconclusive=previous_inconclusive,
        unsupported={q.name: q.unsupported for q in queries if q.unsupported},
        errors={name: str(v) for name, v in canary.items() if isinstance(v, PrometheusError)},
    )
