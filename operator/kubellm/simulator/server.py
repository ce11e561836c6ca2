"""An OpenAI-shaped engine stand-in: completions, models, health and the engine's metrics.

Two ways to answer. With a `capacity` (from the sizing plan of a model on a GPU), requests go
through `BatchingEngine`: they queue for batch slots, prefill and decode at the speed of the
GPUs, so latency and the engine's metrics move with load as a real engine's do. Without one,
each request takes a fixed latency (a canary made slow on purpose). Failures are spread
evenly (every 1/rate-th request), not drawn at random, so a short test sees exactly the
configured rate. A `cold_start` keeps health, metrics and completions answering 503 for that
long, as an engine loading its weights does.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubellm.simulator.engine import BatchingEngine
from kubellm.simulator.metrics import EngineMetrics, Outcome, engine_metrics, upstream
from kubellm.sizing.capacity import ReplicaCapacity

MAX_TOKENS_LIMIT = 4096
SIGNAL_WINDOW = 60.0  # seconds of generated tokens `signals` averages, as rate(...[1m]) does
_STATE: web.AppKey[_State] = web.AppKey("state")


@dataclass(frozen=True)
class SimulatorConfig:
    engine: str = "vllm"
    model: str = "sim-model"
    latency: float = 0.2  # least end-to-end seconds per request
    ttft: float = 0.05  # seconds to the first token
    tokens_per_second: float = 500.0
    error_rate: float = 0.0  # share of requests answered with HTTP 500
    fail_after: int | None = None  # after this many requests: every request fails, /health 503
    capacity: ReplicaCapacity | None = None  # serve at the speed of these GPUs (see above)
    cold_start: float = 0.0  # seconds before the engine answers at all


class _State:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.metrics: EngineMetrics = engine_metrics(config.engine, config.model)
        self.requests = 0
        self.running = 0
        self.generated: deque[tuple[float, int]] = deque()  # (when, tokens) of answers
        self.ready_at = time.monotonic() + config.cold_start
        self.engine = (
            BatchingEngine(config.capacity, self.metrics.load) if config.capacity else None
        )

    @property
    def loading(self) -> bool:
        return time.monotonic() < self.ready_at

    def fails(self) -> bool:
        """Count one request; whether it fails (evenly spread at error_rate)."""
        self.requests += 1
        n, rate = self.requests, self.config.error_rate
        if self.config.fail_after is not None and n > self.config.fail_after:
            return True
        return math.floor(n * rate + 1e-9) > math.floor((n - 1) * rate + 1e-9)

    @property
    def broken(self) -> bool:
        fail_after = self.config.fail_after
        return fail_after is not None and self.requests >= fail_after


def create_app(config: SimulatorConfig) -> web.Application:
    paths = upstream(config.engine).paths  # the engine's own paths, not kubellm's idea of them
    app = web.Application()
    app[_STATE] = _State(config)
    app.router.add_post("/v1/completions", _completion)
    app.router.add_post("/v1/chat/completions", _completion)
    app.router.add_get("/v1/models", _models)
    app.router.add_get(paths["health"], _health)
    if "info" in paths:
        app.router.add_get(paths["info"], _info)
    app.router.add_get(paths["metrics"], _metrics)
    return app


async def start(
    config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Serve `config` on host:port (0: any free port); returns the runner and the port."""
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    address = runner.addresses[0]
    return runner, int(address[1])


async def _completion(request: web.Request) -> web.Response:
    try:
        body: dict[str, Any] = await request.json()
    except ValueError:
        return _error(400, "BadRequestError", "request body is not JSON")
    return await answer(request.app, body, chat=request.path.endswith("/chat/completions"))


async def answer(app: web.Application, body: dict[str, Any], chat: bool) -> web.Response:
    """One completion from the simulator serving `app` (also called by the fleet's router)."""
    state = app[_STATE]
    config = state.config
    if state.loading:
        return _error(503, "ServiceUnavailableError", "the engine is loading the model")
    model = body.get("model", config.model)
    if model != config.model:
        return _error(404, "NotFoundError", f"The model `{model}` does not exist.")
    prompt_tokens = _prompt_tokens(body, chat)
    max_tokens = min(int(body.get("max_tokens") or 16), MAX_TOKENS_LIMIT)
    failing = state.fails()
    path = "/v1/chat/completions" if chat else "/v1/completions"
    if state.engine is not None:
        served = await state.engine.generate(prompt_tokens, max_tokens)
        outcome = Outcome(
            not failing,
            served.prompt_tokens,
            served.generated_tokens,
            served.time_to_first_token,
            served.latency,
            path,
        )
    else:
        outcome = await _fixed_latency(state, prompt_tokens, max_tokens, failing, path)
    state.metrics.record(outcome)
    if outcome.ok:
        state.generated.append((time.monotonic(), outcome.generated_tokens))
    if failing:
        return _error(500, "InternalServerError", "simulated engine failure")
    text = " ".join(f"tok{i}" for i in range(max_tokens))
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return web.json_response(
        {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{state.requests}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": config.model,
            "choices": [choice],
            "usage": {
                "prompt_tokens": outcome.prompt_tokens,
                "completion_tokens": max_tokens,
                "total_tokens": outcome.prompt_tokens + max_tokens,
            },
            # Not in OpenAI's schema: what the engine measured, for load generators.
            "timings": {"ttft": outcome.time_to_first_token, "latency": outcome.latency},
        }
    )


async def _fixed_latency(
    state: _State, prompt_tokens: int, max_tokens: int, failing: bool, path: str
) -> Outcome:
    config = state.config
    latency = max(config.latency, config.ttft + max_tokens / config.tokens_per_second)
    state.running += 1
    _report_load(state)
    start = time.monotonic()
    try:
        await asyncio.sleep(latency)
    finally:
        state.running -= 1
        _report_load(state)
    return Outcome(
        ok=not failing,
        prompt_tokens=prompt_tokens,
        generated_tokens=max_tokens,
        time_to_first_token=min(config.ttft, latency),
        latency=time.monotonic() - start,
        path=path,
    )


def _prompt_tokens(body: dict[str, Any], chat: bool) -> int:
    """Prompt length: token ids when the prompt is a list of them (OpenAI allows it), else
    about four characters per token."""
    if chat:
        text = " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
        return max(1, len(text) // 4)
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
        return max(1, len(prompt))
    text = " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)
    return max(1, len(text) // 4)


def _report_load(state: _State) -> None:
    state.metrics.load(state.running, 0, min(1.0, state.running / 256))


def _error(status: int, kind: str, message: str) -> web.Response:
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return web.json_response(body, status=status)


async def _models(request: web.Request) -> web.Response:
    model = request.app[_STATE].config.model
    card = {"id": model, "object": "model", "created": 0, "owned_by": "kubellm-simulator"}
    return web.json_response({"object": "list", "data": [card]})


async def _health(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    return web.Response(status=503 if state.broken or state.loading else 200)


def healthy(app: web.Application) -> bool:
    state = app[_STATE]
    return not (state.broken or state.loading)


def signals(app: web.Application, window: float = SIGNAL_WINDOW) -> dict[str, float]:
    """The four autoscaling signals as this engine's metrics give them now, by metric name
    (generated tokens/s over the last `window` seconds, at most SIGNAL_WINDOW)."""
    state = app[_STATE]
    now = time.monotonic()
    while state.generated and state.generated[0][0] < now - SIGNAL_WINDOW:
        state.generated.popleft()
    recent = [(at, tokens) for at, tokens in state.generated if at >= now - window]
    elapsed = max(1.0, min(window, now - state.ready_at))
    engine = state.engine
    return {
        "generationTokensPerSecond": sum(t for _, t in recent) / elapsed,
        "requestsInFlight": float(
            len(engine.running) + len(engine.prefilling) if engine else state.running
        ),
        "queueLength": float(len(engine.waiting) if engine else 0),
        "kvCacheUtilization": engine.kv_usage if engine else min(1.0, state.running / 256),
    }


async def _info(request: web.Request) -> web.Response:
    """TGI's router info: answered without touching the model."""
    return web.json_response({"model_id": request.app[_STATE].config.model})


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    if state.loading:
        return web.Response(status=503, text="loading")
    body = state.metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
