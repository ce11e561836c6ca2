"""Canary analysis against a real Prometheus scraping simulated engines.

One Prometheus, four LLMDeployments of two simulated revisions each, one burst of load;
then each test runs `run_analysis` exactly as the operator does. Skipped only when the
`prometheus` binary is absent (Debian: `apt-get install prometheus`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from conftest import e2e_module
from kubellm.api.models import Analysis, AnalysisStatus
from kubellm.engines import get_engine
from kubellm.k8s.prometheus import run_analysis
from kubellm.rollout.analysis import queries
from kubellm.simulator.load import generate_load

harness = e2e_module("prometheus")
pytestmark = [
    pytest.mark.skipif(
        harness.prometheus_binary() is None,
        reason="the prometheus binary is not installed (Debian: apt-get install prometheus)",
    ),
    pytest.mark.timeout(120),
]

NAMESPACE = "team-a"
WINDOW = "30s"
RPS, SECONDS = 20, 5
FAST = {"latency": 0.1, "ttft": 0.02}
# llmdeployment -> (engine, stable options, canary options)
FLEET: dict[str, tuple[str, dict[str, float], dict[str, float]]] = {
    "errors": ("vllm", FAST, {**FAST, "error_rate": 0.3}),
    "slow": ("vllm", FAST, {"latency": 2.0, "ttft": 0.5}),
    "healthy": ("vllm", FAST, FAST),
    "tgi": ("tgi", FAST, FAST),
}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Prometheus with every simulator scraped and the load already counted."""
    simulators = {
        (name, role): harness.Simulator(engine, **options)
        for name, (engine, stable, canary) in FLEET.items()
        for role, options in (("stable", stable), ("canary", canary))
    }
    server = None
    try:
        for sim in simulators.values():
            sim.wait_listening()
        targets = [
            sim.target(namespace=NAMESPACE, llmdeployment=name, revision=role)
            for (name, role), sim in simulators.items()
        ]
        binary = harness.prometheus_binary()
        server = harness.Prometheus(tmp_path_factory.mktemp("prometheus"), targets, binary)
        server.wait_ready()
        # Counters must be scraped at zero first, or `increase` misses the first requests.
        server.wait_for("sum(up)", lambda v: v == len(targets))

        async def load() -> None:
            await asyncio.gather(
                *(generate_load(sim.url, rps=RPS, duration=SECONDS) for sim in simulators.values())
            )

        asyncio.run(load())
        expected = RPS * SECONDS * len(simulators)
        server.wait_for(
            "sum(vllm:request_success_total) + sum(tgi_request_count)", lambda v: v == expected
        )
        yield server
    finally:
        if server is not None:
            server.stop()
        for sim in simulators.values():
            sim.stop()


def analyze(prometheus: Any, name: str, **fields: Any) -> AnalysisStatus:
    spec = Analysis.model_validate({"prometheusUrl": prometheus.url, "minRequests": 20, **fields})
    engine = get_engine(FLEET[name][0])
    built = queries(
        spec,
        engine,
        namespace=NAMESPACE,
        llmdeployment=name,
        canary="canary",
        stable="stable",
        window=WINDOW,
    )

    async def run() -> AnalysisStatus:
        async with aiohttp.ClientSession() as session:
            now = datetime.now(UTC)
            return await run_analysis(spec, built, session=session, now=now, previous_failures=0)

    return asyncio.run(run())


def results(status: AnalysisStatus) -> dict[str, Any]:
    return {r.name: r for r in status.results}


def test_error_rate_regression_fails(prometheus: Any) -> None:
    status = analyze(prometheus, "errors", maxErrorRate=0.05)
    assert status.verdict == "Failed" and status.failures == 1
    error_rate = results(status)["errorRate"]
    assert error_rate.verdict == "Failed"
    assert error_rate.value == pytest.approx(0.3, abs=0.05)
    assert error_rate.stable_value == 0
    assert status.requests == pytest.approx(RPS * SECONDS, rel=0.5)


def test_latency_regression_fails(prometheus: Any) -> None:
    status = analyze(prometheus, "slow", maxLatencyP95="1s", maxTimeToFirstTokenP95="2s")
    assert status.verdict == "Failed"
    found = results(status)
    assert found["latencyP95"].verdict == "Failed" and found["latencyP95"].value > 2
    assert found["latencyP95"].stable_value < 0.3
    assert found["timeToFirstTokenP95"].verdict == "Passed"


def test_failing_custom_check_fails(prometheus: Any) -> None:
    selector = 'namespace="$namespace",llmdeployment="$llmdeployment",revision="$revision"'
    per_request = (
        f"sum(increase(vllm:generation_tokens_total{{{selector}}}[30s]))"
        f" / sum(increase(vllm:request_success_total{{{selector}}}[30s]))"
    )
    checks = [
        {"name": "tokensPerRequest", "query": per_request, "min": 32},
        {"name": "stableUp", "query": 'sum(up{revision="$stable"})', "min": 4},
    ]
    status = analyze(prometheus, "healthy", maxErrorRate=0.05, checks=checks)
    found = results(status)
    assert status.verdict == "Failed"
    assert found["tokensPerRequest"].verdict == "Failed"
    assert found["tokensPerRequest"].value == pytest.approx(16)
    assert found["stableUp"].verdict == "Passed" and found["stableUp"].value == 4


def test_healthy_canary_passes(prometheus: Any) -> None:
    status = analyze(
        prometheus,
        "healthy",
        maxErrorRate=0.01,
        maxLatencyP95="1s",
        maxTimeToFirstTokenP95="500ms",
    )
    assert status.verdict == "Passed", status.results
    assert results(status)["errorRate"].value == 0


def test_tgi_time_to_first_token_is_reported_missing_not_faked(prometheus: Any) -> None:
    status = analyze(
        prometheus, "tgi", maxErrorRate=0.05, maxLatencyP95="1s", maxTimeToFirstTokenP95="1s"
    )
    found = results(status)
    assert status.verdict == "Passed", status.results
    ttft = found["timeToFirstTokenP95"]
    assert ttft.value is None and ttft.verdict == "Inconclusive"
    assert ttft.message == "tgi does not export time to first token"
    # No failure ever happened, so tgi_request_failure does not exist: the rate is 0.
    assert found["errorRate"].value == 0 and found["latencyP95"].value < 1


def test_too_few_requests_is_inconclusive(prometheus: Any) -> None:
    status = analyze(prometheus, "healthy", minRequests=10_000, maxErrorRate=0.05)
    assert status.verdict == "Inconclusive" and status.failures == 0
