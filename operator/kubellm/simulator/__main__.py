"""`python -m kubellm.simulator`: serve one simulated engine until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import signal

from kubellm.engines import ENGINES
from kubellm.simulator.server import SimulatorConfig, start


def parse_args(argv: list[str] | None = None) -> tuple[SimulatorConfig, str, int | None]:
    parser = argparse.ArgumentParser(prog="python -m kubellm.simulator", description=__doc__)
    parser.add_argument("--engine", choices=sorted(ENGINES), default="vllm")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="default: the engine's port; 0 picks one")
    parser.add_argument("--model", default="sim-model", help="served model name")
    parser.add_argument("--latency", type=float, default=0.2, help="least seconds per request")
    parser.add_argument("--ttft", type=float, default=0.05, help="seconds to first token")
    parser.add_argument("--tokens-per-second", type=float, default=500.0)
    parser.add_argument("--error-rate", type=float, default=0.0, help="share answered 500")
    parser.add_argument("--fail-after", type=int, help="fail everything after N requests")
    args = parser.parse_args(argv)
    if not 0 <= args.error_rate <= 1:
        parser.error("--error-rate must be within 0..1")
    if args.tokens_per_second <= 0:
        parser.error("--tokens-per-second must be positive")
    config = SimulatorConfig(
        engine=args.engine,
        model=args.model,
        latency=args.latency,
        ttft=args.ttft,
        tokens_per_second=args.tokens_per_second,
        error_rate=args.error_rate,
        fail_after=args.fail_after,
    )
    return config, args.host, args.port


async def serve(config: SimulatorConfig, host: str, port: int | None) -> None:
    runner, bound = await start(config, host, ENGINES[config.engine].port if port is None else port)
    print(f"listening on http://{host}:{bound}", flush=True)  # tests read the port from here
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(serve(*parse_args(argv)))


if __name__ == "__main__":
    main()
