"""Canary analysis: PromQL per engine, and the verdict on the numbers."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kubellm.api.models import Analysis
from kubellm.engines import get_engine
from kubellm.k8s.prometheus import PrometheusError, query_prometheus, run_analysis
from kubellm.rollout.analysis import AnalysisQuery, assess, queries
from kubellm.rollout.durations import format_duration, parse_duration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SELECTOR = 'namespace="team-a",llmdeployment="chat",revision="{}"'


def analysis(**fields: Any) -> Analysis:
    return Analysis.model_validate({"prometheusUrl": "http://prom:9090", **fields})


FULL = analysis(
    interval="2m",
    minRequests=20,
    maxErrorRate=0.05,
    maxTimeToFirstTokenP95="2s",
    maxLatencyP95="1m30s",
)


def by_name(engine: str, spec: Analysis = FULL, **kw: str) -> dict[str, AnalysisQuery]:
    built = queries(
        spec,
        get_engine(engine),
        namespace="team-a",
        llmdeployment="chat",
        canary="c4n4ry",
        stable="st4bl3",
        **kw,
    )
    return {q.name: q for q in built}


# ------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600), ("1.5s", 1.5)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m5", "5 m", "5d", "1m 30s", "-1s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert (format_duration(90), format_duration(1.5)) == ("90s", "1500ms")


# --------------------------------------------------------------------------- queries


def test_vllm_queries_use_vllm_names_and_the_revision_labels() -> None:
    q = by_name("vllm")
    canary, stable = SELECTOR.format("c4n4ry"), SELECTOR.format("st4bl3")
    http = 'method="POST",handler=~"/v1/.+"'
    assert q["requests"].canary == f"sum(increase(http_requests_total{{{canary},{http}}}[2m]))"
    assert q["requests"].stable == f"sum(increase(http_requests_total{{{stable},{http}}}[2m]))"
    # HTTP 5xx over every inference call: failures the engine never "finished" count too.
    assert q["errorRate"].canary == (
        f'(sum(increase(http_requests_total{{{canary},{http},status="5xx"}}[2m]))'
        f" or vector(0)) / sum(increase(http_requests_total{{{canary},{http}}}[2m]))"
    )
    assert q["timeToFirstTokenP95"].canary == (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(vllm:time_to_first_token_seconds_bucket{{{canary}}}[2m])))"
    )
    assert q["latencyP95"].stable == (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(vllm:e2e_request_latency_seconds_bucket{{{stable}}}[2m])))"
    )


def test_tgi_queries_use_bare_counters_and_report_missing_time_to_first_token() -> None:
    q = by_name("tgi", window="45s")
    assert q["requests"].canary and "increase(tgi_request_count{" in q["requests"].canary
    assert q["errorRate"].canary and "increase(tgi_request_failure{" in q["errorRate"].canary
    assert "_total" not in q["errorRate"].canary
    assert q["latencyP95"].canary and "tgi_request_duration_bucket{" in q["latencyP95"].canary
    assert "[45s]" in q["latencyP95"].canary
    ttft = q["timeToFirstTokenP95"]
    assert ttft.canary is None and ttft.stable is None
    assert ttft.unsupported == "tgi does not export time to first token"


def test_sglang_error_rate_counts_server_errors_not_client_aborts() -> None:
    q = by_name("sglang")
    rate = q["errorRate"].canary or ""
    assert "increase(sglang:http_responses_total{" in rate and 'status_code=~"5.."' in rate
    assert "aborted" not in rate
    assert "_bucket{" in (q["timeToFirstTokenP95"].canary or "")


def test_trtllm_reports_that_it_exports_no_failure_counter() -> None:
    q = by_name("trtllm")
    assert "increase(request_success_total{" in (q["requests"].canary or "")
    assert q["errorRate"].canary is None
    assert q["errorRate"].unsupported == "trtllm does not export failed requests"
    assert "time_to_first_token_seconds_bucket{" in (q["timeToFirstTokenP95"].canary or "")


def test_only_configured_signals_are_queried_and_checks_are_substituted() -> None:
    check = {
        "name": "tokens",
        "query": 'sum(rate(x{namespace="$namespace",llmdeployment="$llmdeployment",'
        'revision="$revision"}[1m])) / sum(rate(x{revision="$stable"}[1m]))',
        "min": 0.5,
    }
    q = by_name("vllm", analysis(checks=[check]))
    assert list(q) == ["requests", "tokens"]
    assert q["tokens"].canary == (
        'sum(rate(x{namespace="team-a",llmdeployment="chat",revision="c4n4ry"}[1m]))'
        ' / sum(rate(x{revision="st4bl3"}[1m]))'
    )
    assert q["tokens"].stable is None


def test_a_malformed_window_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        by_name("vllm", window="1 minute")


# ---------------------------------------------------------------------------- assess


def verdicts(status: Any) -> dict[str, str]:
    return {r.name: r.verdict for r in status.results}


GOOD = {"requests": 120.0, "errorRate": 0.01, "timeToFirstTokenP95": 0.4, "latencyP95": 12.0}


def test_all_within_limits_passes_with_stable_values_beside() -> None:
    stable = {"requests": 900.0, "errorRate": 0.0, "timeToFirstTokenP95": 0.3, "latencyP95": 9.0}
    status = assess(FULL, GOOD, stable, NOW, previous_failures=1)
    assert status.verdict == "Passed" and status.failures == 1 and status.requests == 120
    assert status.time == "2026-03-01T12:00:00Z"
    assert set(verdicts(status).values()) == {"Passed"}
    latency = next(r for r in status.results if r.name == "latencyP95")
    assert (latency.value, latency.stable_value, latency.threshold) == (12.0, 9.0, "<= 90s")


@pytest.mark.parametrize(
    ("name", "value"),
    [("errorRate", 0.3), ("timeToFirstTokenP95", 2.5), ("latencyP95", 91.0)],
)
def test_any_threshold_violated_fails_and_counts(name: str, value: float) -> None:
    status = assess(FULL, {**GOOD, name: value}, {}, NOW, previous_failures=2)
    assert status.verdict == "Failed" and status.failures == 3
    assert verdicts(status)[name] == "Failed"
    failed = next(r for r in status.results if r.name == name)
    assert failed.message.startswith("outside <=")


def test_too_few_requests_is_inconclusive_even_when_limits_are_broken() -> None:
    status = assess(FULL, {**GOOD, "requests": 5.0, "errorRate": 0.9}, {}, NOW, 0)
    assert status.verdict == "Inconclusive" and status.failures == 0
    requests = status.results[0]
    assert requests.verdict == "Inconclusive" and requests.message == "5 < minRequests 20"


def test_no_data_with_enough_requests_is_inconclusive_for_that_signal() -> None:
    status = assess(FULL, {**GOOD, "latencyP95": math.nan, "errorRate": None}, {}, NOW, 0)
    assert status.verdict == "Inconclusive"
    assert verdicts(status)["latencyP95"] == "Inconclusive"
    assert verdicts(status)["errorRate"] == "Inconclusive"
    assert status.failures == 0


def test_no_request_series_at_all_is_inconclusive() -> None:
    assert assess(FULL, {}, {}, NOW, 0).verdict == "Inconclusive"


def test_unsupported_signal_is_reported_not_faked_and_does_not_decide() -> None:
    values = {k: v for k, v in GOOD.items() if k != "timeToFirstTokenP95"}
    why = {"timeToFirstTokenP95": "tgi does not export time to first token"}
    status = assess(FULL, values, {}, NOW, 0, unsupported=why)
    assert status.verdict == "Passed"
    ttft = next(r for r in status.results if r.name == "timeToFirstTokenP95")
    assert ttft.value is None and ttft.verdict == "Inconclusive"
    assert ttft.message == "tgi does not export time to first token"
    failing = assess(FULL, {**values, "errorRate": 0.5}, {}, NOW, 0, unsupported=why)
    assert failing.verdict == "Failed"


def test_query_errors_are_inconclusive_with_the_message() -> None:
    status = assess(FULL, GOOD, {}, NOW, 0, errors={"latencyP95": "bad_data: parse error"})
    assert status.verdict == "Inconclusive"
    assert status.results[-1].message == "query failed: bad_data: parse error"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.49, "Failed"), (0.5, "Passed"), (2.0, "Passed"), (2.01, "Failed"), (None, "Inconclusive")],
)
def test_custom_checks_with_min_and_max(value: float | None, expected: str) -> None:
    spec = analysis(minRequests=0, checks=[{"name": "ratio", "query": "q", "min": 0.5, "max": 2}])
    status = assess(spec, {"requests": 10.0, "ratio": value}, {}, NOW, 0)
    assert status.verdict == expected
    assert status.results[-1].threshold == ">= 0.5 and <= 2"


# ----------------------------------------------------------- Prometheus API (faked)


def fake_prometheus(answers: dict[str, Any]) -> web.Application:
    async def query(request: web.Request) -> web.Response:
        answer = answers[request.query["query"]]
        status = 400 if answer.get("status") == "error" else 200
        return web.json_response(answer, status=status)

    app = web.Application()
    app.router.add_get("/api/v1/query", query)
    return app


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"i": str(i)}, "value": [0, v]} for i, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def with_prometheus(answers: dict[str, Any], body: Any) -> Any:
    async def main() -> Any:
        runner = web.AppRunner(fake_prometheus(answers))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            async with aiohttp.ClientSession() as session:
                return await body(url, session)
        finally:
            await runner.cleanup()

    return asyncio.run(main())


def test_query_prometheus_sums_vectors_and_maps_empty_to_none() -> None:
    answers = {
        "two": vector("1.5", "2"),
        "none": vector(),
        "nan": vector("NaN"),
        "scalar": {"status": "success", "data": {"resultType": "scalar", "result": [0, "7"]}},
        "bad": {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"},
        "matrix": {"status": "success", "data": {"resultType": "matrix", "result": []}},
    }

    async def body(url: str, session: aiohttp.ClientSession) -> None:
        assert await query_prometheus(url, "two", session=session) == 3.5
        assert await query_prometheus(url, "none", session=session) is None
        assert math.isnan(await query_prometheus(url, "nan", session=session) or 0)
        assert await query_prometheus(url + "/", "scalar", session=session) == 7
        with pytest.raises(PrometheusError, match="parse error at char 3"):
            await query_prometheus(url, "bad", session=session)
        with pytest.raises(PrometheusError, match="expected a number"):
            await query_prometheus(url, "matrix", session=session)
        with pytest.raises(PrometheusError, match=r"127\.0\.0\.1:9"):
            await query_prometheus("http://127.0.0.1:9", "two", session=session, timeout=2)

    with_prometheus(answers, body)


def test_run_analysis_queries_canary_and_stable_and_assesses() -> None:
    spec = analysis(minRequests=10, maxErrorRate=0.05, maxTimeToFirstTokenP95="1s")
    built = queries(
        spec, get_engine("tgi"), namespace="n", llmdeployment="d", canary="c", stable="s"
    )
    requests, errors = built[0], built[1]
    answers = {
        requests.canary: vector("100"),
        requests.stable: vector("400"),
        errors.canary: {"status": "error", "errorType": "timeout", "error": "query timed out"},
        errors.stable: vector("0"),
    }

    async def body(url: str, session: aiohttp.ClientSession) -> Any:
        return await run_analysis(
            spec.model_copy(update={"prometheus_url": url}),
            built,
            session=session,
            now=NOW,
            previous_failures=0,
        )

    status = with_prometheus(answers, body)
    assert status.verdict == "Inconclusive" and status.requests == 100
    found = {r.name: r for r in status.results}
    assert found["requests"].stable_value == 400
    assert "query timed out" in found["errorRate"].message
    assert found["timeToFirstTokenP95"].message == "tgi does not export time to first token"
