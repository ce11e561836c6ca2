"""Canary analysis, the pure half: PromQL from each engine's own metric names, and `assess()`.

The executor runs the queries (`kubellm.k8s.prometheus`) and hands the numbers to `assess`,
which alone decides Passed / Failed / Inconclusive. Series are selected by the labels the
operator's PodMonitor attaches: `namespace`, `llmdeployment`, `revision`.

Decisions: a signal the engine does not export (TGI has no time-to-first-token histogram)
is reported as such, with no value and an Inconclusive verdict of its own that does not
weigh on the overall verdict; it is never faked as a pass or counted as a failure. Too few
canary requests make the whole analysis Inconclusive, whatever the engine's numbers say: a
handful of requests proves nothing either way; a failing custom check fails it all the same,
since a check's query need not depend on the canary's traffic. With `minRequests: 0` a canary
that served nothing (no requests series yet) has enough.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType

from kubellm.api.models import Analysis, AnalysisStatus, MetricResult
from kubellm.engines.base import Engine, MetricSource, Signal
from kubellm.rollout.durations import parse_duration
from kubellm.rollout.planner import timestamp

REQUESTS = "requests"
ERROR_RATE = "errorRate"
TIME_TO_FIRST_TOKEN_P95 = "timeToFirstTokenP95"
LATENCY_P95 = "latencyP95"
_NOTHING: Mapping[str, str] = MappingProxyType({})
# (sources, their (canary, stable) selectors, window) -> (canary PromQL, stable PromQL)
_Builder = Callable[[list[MetricSource], list[tuple[str, str]], str], tuple[str, str]]
_SIGNAL_NAMES = {
    Signal.TIME_TO_FIRST_TOKEN: "time to first token",
    Signal.REQUEST_LATENCY: "request latency",
    Signal.REQUESTS: "finished requests",
    Signal.ERRORS: "failed requests",
}


@dataclass(frozen=True)
class AnalysisQuery:
    """One measured value: PromQL for the canary and, for comparison, the stable revision.

    `canary` is None when the engine cannot provide the signal; `unsupported` says why.
    """

    name: str
    canary: str | None
    stable: str | None = None
    unsupported: str = ""


def queries(
    analysis: Analysis,
    engine: Engine,
    *,
    namespace: str,
    llmdeployment: str,
    canary: str,
    stable: str,
    window: str | None = None,
) -> list[AnalysisQuery]:
    """Every query an analysis needs; the request count always, the rest as configured."""
    window = window or analysis.interval
    parse_duration(window)  # refuse a malformed range before it reaches Prometheus

    def selectors(source: MetricSource) -> tuple[str, str]:
        def one(revision: str) -> str:
            labels = (
                f'namespace="{namespace}",llmdeployment="{llmdeployment}",revision="{revision}"'
            )
            return ",".join(m for m in (labels, source.matchers) if m)

        return one(canary), one(stable)

    def build(name: str, signals: tuple[Signal, ...], promql: _Builder) -> AnalysisQuery:
        sources = [engine.signals.get(signal) for signal in signals]
        lacking = [s for s, source in zip(signals, sources, strict=True) if source is None]
        if lacking:
            what = " and ".join(_SIGNAL_NAMES[s] for s in lacking)
            return AnalysisQuery(name, None, unsupported=f"{engine.name} does not export {what}")
        present = [s for s in sources if s is not None]
        canary_q, stable_q = promql(present, [selectors(s) for s in present], window)
        return AnalysisQuery(name, canary_q, stable_q)

    result = [build(REQUESTS, (Signal.REQUESTS,), _request_count)]
    if analysis.max_error_rate is not None:
        result.append(build(ERROR_RATE, (Signal.ERRORS, Signal.REQUESTS), _error_rate))
    if analysis.max_time_to_first_token_p95 is not None:
        result.append(build(TIME_TO_FIRST_TOKEN_P95, (Signal.TIME_TO_FIRST_TOKEN,), _p95))
    if analysis.max_latency_p95 is not None:
        result.append(build(LATENCY_P95, (Signal.REQUEST_LATENCY,), _p95))
    for check in analysis.checks:
        text = (
            check.query.replace("$namespace", namespace)
            .replace("$llmdeployment", llmdeployment)
            .replace("$revision", canary)
            .replace("$stable", stable)
        )
        result.append(AnalysisQuery(check.name, text))
    return result


def _request_count(
    sources: list[MetricSource], selectors: list[tuple[str, str]], window: str
) -> tuple[str, str]:
    [source], [(canary, stable)] = sources, selectors
    return (
        f"sum(increase({source.name}{{{canary}}}[{window}]))",
        f"sum(increase({source.name}{{{stable}}}[{window}]))",
    )


def _error_rate(
    sources: list[MetricSource], selectors: list[tuple[str, str]], window: str
) -> tuple[str, str]:
    """Failed / finished; a failure counter that never moved may not exist yet (TGI): 0."""
    errors, requests = sources

    def ratio(i: int) -> str:
        failed = f"sum(increase({errors.name}{{{selectors[0][i]}}}[{window}]))"
        finished = f"sum(increase({requests.name}{{{selectors[1][i]}}}[{window}]))"
        return f"({failed} or vector(0)) / {finished}"

    return ratio(0), ratio(1)


def _p95(
    sources: list[MetricSource], selectors: list[tuple[str, str]], window: str
) -> tuple[str, str]:
    [source], [(canary, stable)] = sources, selectors

    def quantile(selector: str) -> str:
        buckets = f"rate({source.name}_bucket{{{selector}}}[{window}])"
        return f"histogram_quantile(0.95, sum by (le) ({buckets}))"

    return quantile(canary), quantile(stable)


def assess(
    analysis: Analysis,
    values: Mapping[str, float | None],
    stable_values: Mapping[str, float | None],
    now: datetime,
    previous_failures: int,
    *,
    previous_inconclusive: int = 0,
    unsupported: Mapping[str, str] = _NOTHING,
    errors: Mapping[str, str] = _NOTHING,
) -> AnalysisStatus:
    """The verdict on one interval's numbers (keyed by query name; NaN or None = no data).

    `unsupported`: signals the engine lacks (name -> why); `errors`: queries Prometheus
    refused (name -> its message). Both are reported and neither fails the canary.
    """

    def measured(name: str) -> float | None:
        value = values.get(name)
        return None if value is None or math.isnan(value) else value

    def result(
        name: str, low: float | None = None, high: float | None = None, unit: str = ""
    ) -> MetricResult:
        value, stable = measured(name), stable_values.get(name)
        stable = None if stable is None or math.isnan(stable) else stable
        limits = []
        if low is not None:
            limits.append(f">= {low:g}{unit}")
        if high is not None:
            limits.append(f"<= {high:g}{unit}")
        threshold = " and ".join(limits) or None
        common = {"name": name, "value": value, "stable_value": stable, "threshold": threshold}
        if name in unsupported:
            return MetricResult(**common, verdict="Inconclusive", message=unsupported[name])
        if name in errors:
            message = f"query failed: {errors[name]}"
            return MetricResult(**common, verdict="Inconclusive", message=message)
        if value is None:
            return MetricResult(**common, verdict="Inconclusive", message="no data")
        if (low is not None and value < low) or (high is not None and value > high):
            return MetricResult(**common, verdict="Failed", message=f"outside {threshold}")
        return MetricResult(**common, verdict="Passed")

    if analysis.min_requests == 0 and measured(REQUESTS) is None and REQUESTS not in errors:
        values = {**values, REQUESTS: 0.0}  # no series: no requests, which minRequests 0 allows
    requests = result(REQUESTS, low=analysis.min_requests)
    enough = requests.verdict == "Passed"
    if requests.verdict == "Failed":
        requests = requests.model_copy(
            update={
                "verdict": "Inconclusive",
                "message": f"{requests.value:g} < minRequests {analysis.min_requests}",
            }
        )
    results = [requests]
    if analysis.max_error_rate is not None:
        results.append(result(ERROR_RATE, high=analysis.max_error_rate))
    if analysis.max_time_to_first_token_p95 is not None:
        limit = parse_duration(analysis.max_time_to_first_token_p95)
        results.append(result(TIME_TO_FIRST_TOKEN_P95, high=limit, unit="s"))
    if analysis.max_latency_p95 is not None:
        results.append(result(LATENCY_P95, high=parse_duration(analysis.max_latency_p95), unit="s"))
    checks = [result(check.name, check.min, check.max) for check in analysis.checks]
    results += checks

    weighed = [r for r in results if r.name not in unsupported]
    if any(r.verdict == "Failed" for r in checks):
        verdict = "Failed"  # a custom check does not depend on the canary's traffic
    elif not enough:
        verdict = "Inconclusive"
    elif any(r.verdict == "Failed" for r in weighed):
        verdict = "Failed"
    elif any(r.verdict == "Inconclusive" for r in weighed):
        verdict = "Inconclusive"
    else:
        verdict = "Passed"
    return AnalysisStatus(
        time=timestamp(now),
        verdict=verdict,
        failures=previous_failures + (verdict == "Failed"),
        inconclusive=previous_inconclusive + 1 if verdict == "Inconclusive" else 0,
        requests=measured(REQUESTS),
        results=results,
    )
