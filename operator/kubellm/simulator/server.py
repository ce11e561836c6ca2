"""An OpenAI-shaped engine stand-in: completions, models, health and the engine's metrics.

Latency, time to first token and failures are set per process, so a canary can be made
slow or failing on purpose. Failures are spread evenly (every 1/rate-th request), not
drawn at random, so a short test sees exactly the configured rate.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kubellm.simulator.metrics import EngineMetrics, Outcome, engine_metrics, upstream

MAX_TOKENS_LIMIT = 4096
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


class _State:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.metrics: EngineMetrics = engine_metrics(config.engine, config.model)
        self.requests = 0
        self.running = 0

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
    state = request.app[_STATE]
    config = state.config
    try:
        body: dict[str, Any] = await request.json()
    except ValueError:
        return _error(400, "BadRequestError", "request body is not JSON")
    model = body.get("model", config.model)
    if model != config.model:
        return _error(404, "NotFoundError", f"The model `{model}` does not exist.")
    chat = request.path.endswith("/chat/completions")
    prompt = _prompt_text(body, chat)
    max_tokens = min(int(body.get("max_tokens") or 16), MAX_TOKENS_LIMIT)
    failing = state.fails()
    ttft = config.ttft
    latency = max(config.latency, ttft + max_tokens / config.tokens_per_second)
    state.running += 1
    _report_load(state)
    start = time.monotonic()
    try:
        await asyncio.sleep(latency)
    finally:
        state.running -= 1
        _report_load(state)
    outcome = Outcome(
        ok=not failing,
        prompt_tokens=max(1, len(prompt) // 4),
        generated_tokens=max_tokens,
        time_to_first_token=min(ttft, latency),
        latency=time.monotonic() - start,
        path=request.path,
    )
    state.metrics.record(outcome)
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
        }
    )


def _prompt_text(body: dict[str, Any], chat: bool) -> str:
    if chat:
        return " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
    prompt = body.get("prompt", "")
    return " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)


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
    return web.Response(status=503 if request.app[_STATE].broken else 200)


async def _info(request: web.Request) -> web.Response:
    """TGI's router info: answered without touching the model."""
    return web.json_response({"model_id": request.app[_STATE].config.model})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[_STATE].metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
