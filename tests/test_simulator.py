"""The engine simulator: OpenAI-shaped answers and each engine's own metric names."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kubellm.simulator import SimulatorConfig, start
from kubellm.simulator.engine import BatchingEngine
from kubellm.simulator.load import generate_load
from kubellm.simulator.metrics import upstream
from kubellm.sizing.capacity import ReplicaCapacity, Workload, auto_targets, sustainable_load

Scenario = Callable[[aiohttp.ClientSession, str], Awaitable[Any]]


def serve(config: SimulatorConfig, scenario: Scenario) -> Any:
    """Run `scenario(session, base_url)` against an in-process simulator on loopback."""

    async def main() -> Any:
        runner, port = await start(config)
        try:
            async with aiohttp.ClientSession() as session:
                return await scenario(session, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    return asyncio.run(main())


async def complete(session: aiohttp.ClientSession, url: str, n: int = 1) -> list[int]:
    async def one() -> int:
        async with session.post(f"{url}/v1/completions", json={"prompt": "hello"}) as r:
            await r.read()
            return r.status

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def scrape(session: aiohttp.ClientSession, url: str, engine: str) -> str:
    async with session.get(url + upstream(engine).paths["metrics"]) as response:
        assert response.status == 200
        return await response.text()


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float:
    """Value of one exposed sample line, by its exact exposed name."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise KeyError(name)


FAST = {"latency": 0.01, "ttft": 0.005, "tokens_per_second": 1e6}


def test_openai_shapes_models_and_health() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        async with session.post(f"{url}/v1/chat/completions", json=body) as r:
            chat = await r.json()
        assert chat["object"] == "chat.completion" and chat["model"] == "m"
        assert chat["choices"][0]["message"]["content"] == "tok0 tok1 tok2"
        assert chat["usage"]["completion_tokens"] == 3
        async with session.post(f"{url}/v1/completions", json={"prompt": "x"}) as r:
            text = await r.json()
        assert text["object"] == "text_completion" and text["choices"][0]["text"]
        async with session.post(f"{url}/v1/completions", json={"model": "other"}) as r:
            assert r.status == 404 and "does not exist" in (await r.json())["message"]
        async with session.get(f"{url}/v1/models") as r:
            assert [m["id"] for m in (await r.json())["data"]] == ["m"]
        async with session.get(f"{url}/health") as r:
            assert r.status == 200

    serve(SimulatorConfig(model="m", **FAST), scenario)


def test_vllm_metrics_count_http_failures_and_error_finishes() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> str:
        statuses = await complete(session, url, 10)
        assert sorted(statuses) == [200] * 7 + [500] * 3
        return await scrape(session, url, "vllm")

    text = serve(SimulatorConfig(engine="vllm", error_rate=0.3, **FAST), scenario)
    found = families(text)
    assert found["vllm:time_to_first_token_seconds"].type == "histogram"
    assert found["vllm:e2e_request_latency_seconds"].type == "histogram"
    assert sample(text, "vllm:request_success_total", finished_reason="error") == 3
    assert sample(text, "vllm:request_success_total", finished_reason="length") == 7
    http = {"handler": "/v1/completions", "method": "POST"}
    assert sample(text, "http_requests_total", status="5xx", **http) == 3
    assert sample(text, "http_requests_total", status="2xx", **http) == 7
    assert sample(text, "vllm:generation_tokens_total") == 7 * 16
    assert sample(text, "vllm:e2e_request_latency_seconds_count") == 7


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tgi", "trtllm"])
def test_every_upstream_family_is_served_after_traffic(engine: str) -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> str:
        await complete(session, url, 4)
        return await scrape(session, url, engine)

    text = serve(SimulatorConfig(engine=engine, error_rate=0.5, **FAST), scenario)
    exposed = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    for family in upstream(engine).families:
        if family.role == "requests_aborted":  # the simulator's clients never disconnect
            continue
        suffixes = ("_bucket", "_sum", "_count") if family.type == "histogram" else ("",)
        assert {family.name + s for s in suffixes} <= exposed, family.name


def test_tgi_metrics_have_bare_counter_names_and_no_time_to_first_token() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> str:
        await complete(session, url, 4)
        return await scrape(session, url, "tgi")

    text = serve(SimulatorConfig(engine="tgi", error_rate=0.25, **FAST), scenario)
    assert "# TYPE tgi_request_count counter\ntgi_request_count 4\n" in text
    assert 'tgi_request_failure{err="generation"} 1' in text
    assert not [line for line in text.splitlines() if line.split(" ")[0].endswith("_total")]
    assert "_created" not in text
    assert "time_to_first_token" not in text and "ttft" not in text
    found = families(text)
    assert found["tgi_request_duration"].type == "histogram"
    assert sample(text, "tgi_request_duration_count") == 3


def test_tgi_failure_series_appears_on_the_first_failure_only() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> str:
        await complete(session, url, 2)
        return await scrape(session, url, "tgi")

    assert "tgi_request_failure" not in serve(SimulatorConfig(engine="tgi", **FAST), scenario)


def test_sglang_counts_http_responses_by_status_code() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> str:
        await complete(session, url, 4)
        return await scrape(session, url, "sglang")

    text = serve(SimulatorConfig(engine="sglang", error_rate=0.25, **FAST), scenario)
    http = {"endpoint": "/v1/completions", "method": "POST"}
    assert sample(text, "sglang:http_responses_total", status_code="500", **http) == 1
    assert sample(text, "sglang:http_responses_total", status_code="200", **http) == 3
    assert "sglang:num_aborted_requests_total" not in text  # a server error is no abort


def test_tgi_answers_info_without_generating() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> Any:
        async with session.get(f"{url}/info") as r:
            return r.status, await r.json()

    status, body = serve(SimulatorConfig(engine="tgi", model="m", **FAST), scenario)
    assert status == 200 and body["model_id"] == "m"


def test_trtllm_serves_prometheus_text_only_at_its_own_path() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> int:
        async with session.get(f"{url}/metrics") as r:
            return r.status

    assert serve(SimulatorConfig(engine="trtllm", **FAST), scenario) == 404


def test_fail_after_breaks_requests_and_health() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> tuple[list[int], int]:
        statuses = [(await complete(session, url))[0] for _ in range(4)]
        async with session.get(f"{url}/health") as r:
            return statuses, r.status

    statuses, health = serve(SimulatorConfig(fail_after=2, **FAST), scenario)
    assert statuses == [200, 200, 500, 500] and health == 503


def test_latency_is_what_the_request_takes() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> float:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        await complete(session, url, 5)
        return loop.time() - begin

    elapsed = serve(SimulatorConfig(latency=0.3, ttft=0.1), scenario)
    assert 0.3 <= elapsed < 1.0  # concurrent requests overlap


def test_load_generator_is_bounded_and_loopback_only() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> Any:
        result = await generate_load(url, rps=50, duration=0.4)
        return result, await scrape(session, url, "vllm")

    result, text = serve(SimulatorConfig(error_rate=0.1, **FAST), scenario)
    assert (result.sent, result.ok, result.failed) == (20, 18, 2)
    assert sample(text, "vllm:request_success_total", finished_reason="error") == 2
    with pytest.raises(ValueError, match="loopback"):
        asyncio.run(generate_load("http://example.com", rps=1, duration=1))
    with pytest.raises(ValueError, match="rps"):
        asyncio.run(generate_load("http://127.0.0.1:9", rps=10_000, duration=1))


def test_command_line_prints_its_port_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "kubellm.simulator", "--engine", "sglang", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]

        async def check() -> str:
            async with aiohttp.ClientSession() as session:
                await complete(session, url)
                return await scrape(session, url, "sglang")

        assert "sglang:num_requests_total" in asyncio.run(check())
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


# A small, fast "GPU": 20 ms steps plus 2 ms per sequence, two sequences at once.
SMALL = ReplicaCapacity(
    weights_seconds=0.02,
    step_overhead_seconds=0.0,
    sequence_seconds=0.002,
    kv_seconds_per_token=2e-6,
    prefill_seconds_per_token=1e-4,
    max_sequences=2,
    kv_capacity_tokens=100_000,
)


def test_requests_beyond_the_batch_queue_and_wait_longer_for_their_first_token() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> tuple[list[float], str]:
        async def one() -> float:
            body = {"prompt": [0] * 100, "max_tokens": 10}
            async with session.post(f"{url}/v1/completions", json=body) as r:
                answer = await r.json()
                assert answer["usage"]["prompt_tokens"] == 100
                return float(answer["timings"]["ttft"])

        requests = [asyncio.ensure_future(one()) for _ in range(6)]
        await asyncio.sleep(0.05)
        during = await scrape(session, url, "vllm")
        return sorted(await asyncio.gather(*requests)), during

    ttfts, during = serve(SimulatorConfig(capacity=SMALL), scenario)
    assert sample(during, "vllm:num_requests_running") == 2
    assert sample(during, "vllm:num_requests_waiting") == 4
    assert sample(during, "vllm:kv_cache_usage_perc") > 0
    # Two run at once: the last pair waits for two full requests before its prefill.
    assert ttfts[0] < 0.05 and ttfts[-1] > 2 * 10 * SMALL.decode_step_seconds(2, 220)


def test_decode_slows_as_the_batch_grows() -> None:
    wide = replace(SMALL, max_sequences=8)

    async def scenario(session: aiohttp.ClientSession, url: str) -> list[float]:
        async def one() -> float:
            body = {"prompt": [0] * 10, "max_tokens": 20}
            async with session.post(f"{url}/v1/completions", json=body) as r:
                timings = (await r.json())["timings"]
                return float(timings["latency"] - timings["ttft"])

        alone = await one()
        together = await asyncio.gather(*(one() for _ in range(8)))
        return [alone, min(together)]

    alone, batched = serve(SimulatorConfig(capacity=wide), scenario)
    assert batched > alone * 1.5


def test_a_cold_engine_answers_503_until_loaded() -> None:
    async def scenario(session: aiohttp.ClientSession, url: str) -> list[int]:
        statuses = []
        for path in ("/health", "/metrics"):
            async with session.get(url + path) as r:
                statuses.append(r.status)
        statuses += await complete(session, url)
        await asyncio.sleep(0.6)
        async with session.get(url + "/health") as r:
            statuses.append(r.status)
        return statuses + await complete(session, url)

    assert serve(SimulatorConfig(cold_start=0.5, **FAST), scenario) == [503] * 3 + [200] * 2


def poisson_ttfts(capacity: ReplicaCapacity, rate: float, seconds: float) -> list[float]:
    """Time to first token of Poisson arrivals at `rate` on one engine (seeded)."""

    async def run() -> list[float]:
        engine = BatchingEngine(capacity)
        rng = random.Random(7)
        loop = asyncio.get_running_loop()
        begin = at = loop.time()
        requests = []
        while at - begin < seconds:
            at += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, at - loop.time()))
            requests.append(asyncio.ensure_future(engine.generate(200, 50)))
        return sorted(o.time_to_first_token for o in await asyncio.gather(*requests))

    return asyncio.run(run())


def test_the_engine_meets_the_slo_at_the_auto_target_and_misses_it_overloaded() -> None:
    """`auto` is planned on the same model the engine runs: within the SLO at the target
    load, far beyond it when requests arrive faster than the replica serves."""
    wide = replace(SMALL, max_sequences=8)
    workload = Workload(200, 50)
    targets = auto_targets(wide, 1.0, workload)
    best = sustainable_load(wide, 1.0, workload)
    assert targets is not None and best is not None
    rate = targets["generationTokensPerSecond"] / workload.output_tokens
    at_target = poisson_ttfts(wide, rate, 8.0)
    assert at_target[int(0.99 * len(at_target))] <= 1.0
    overloaded = poisson_ttfts(wide, 2 * best.requests_per_second, 8.0)
    assert overloaded[int(0.99 * len(overloaded))] > 1.0
