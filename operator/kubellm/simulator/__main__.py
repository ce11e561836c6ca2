"""`python -m kubellm.simulator`: one simulated engine, a fleet of them, or a metrics feeder.

python -m kubellm.simulator [--engine vllm --port 8001 ...]   one engine until interrupted
python -m kubellm.simulator fleet -n NS [--llmd NAME] [--cold-start 120] [--file-sd F]
python -m kubellm.simulator feed -n NS --prometheus URL --metric M --metrics-query Q
    --write-url URL
python -m kubellm.simulator ramp -n NS --llmd NAME --write-url URL --metric M --replica-rps R
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import kopf
from aiohttp import web

from kubellm.engines import ENGINES
from kubellm.k8s.client import KubeClient
from kubellm.simulator.adapter import feed, prometheus_values
from kubellm.simulator.fleet import Fleet, follow, router_app
from kubellm.simulator.load import check_loopback
from kubellm.simulator.ramp import ramp
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


async def until_signalled(stop: asyncio.Event | None = None) -> asyncio.Event:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve(config: SimulatorConfig, host: str, port: int | None) -> None:
    runner, bound = await start(config, host, ENGINES[config.engine].port if port is None else port)
    print(f"listening on http://{host}:{bound}", flush=True)  # tests read the port from here
    stop = await until_signalled()
    await stop.wait()
    await runner.cleanup()


def kube_client() -> KubeClient:
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    if info is None:
        raise SystemExit("no kubeconfig found (set KUBECONFIG)")
    return KubeClient(info)


async def run_fleet(args: argparse.Namespace) -> None:
    client = kube_client()
    fleet = Fleet(
        client,
        args.namespace,
        frozenset(args.llmd),
        cold_start=args.cold_start,
        file_sd=Path(args.file_sd) if args.file_sd else None,
    )
    runner = web.AppRunner(router_app(fleet), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", args.router_port).start()
    port = runner.addresses[0][1]
    print(f"router on http://127.0.0.1:{port}", flush=True)  # tests read the port from here
    stop = await until_signalled()
    try:
        await follow(fleet, args.poll, stop)
    finally:
        await fleet.close()
        await runner.cleanup()
        await client.close()


async def run_feed(args: argparse.Namespace) -> None:
    check_loopback(args.prometheus)
    check_loopback(args.write_url)
    stop = await until_signalled()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        values = prometheus_values(session, args.prometheus, args.metrics_query)
        print("feeding", flush=True)
        await feed(
            session, args.write_url, args.metric, args.namespace, values, args.interval, stop
        )


async def run_ramp(args: argparse.Namespace) -> None:
    check_loopback(args.write_url)
    client = kube_client()
    try:
        await ramp(client, args.namespace, args.llmd, args.write_url, args.metric, args.replica_rps)
    finally:
        await client.close()


def parse_ramp(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kubellm.simulator ramp")
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--llmd", required=True)
    parser.add_argument("--write-url", required=True, help="the custom-metrics write address")
    parser.add_argument("--metric", required=True, help="the autoscaling.metric to write")
    parser.add_argument(
        "--replica-rps", type=float, required=True, help="one replica's worth, requests/s"
    )
    return parser.parse_args(argv)


def parse_fleet(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kubellm.simulator fleet")
    parser.add_argument("-n", "--namespace", action="append", required=True, help="or a pattern")
    parser.add_argument("--llmd", action="append", default=[], help="only these (repeatable)")
    parser.add_argument("--cold-start", type=float, default=0.0, help="seconds to load")
    parser.add_argument("--file-sd", help="write Prometheus file_sd targets here")
    parser.add_argument("--router-port", type=int, default=0)
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between pod lists")
    return parser.parse_args(argv)


def parse_feed(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kubellm.simulator feed")
    parser.add_argument("-n", "--namespace", action="append", required=True)
    parser.add_argument("--prometheus", required=True, help="e.g. http://127.0.0.1:9090")
    parser.add_argument("--metric", required=True, help="e.g. kubellm_generation_tokens_per_second")
    parser.add_argument("--metrics-query", required=True, help="the adapter rule's metricsQuery")
    parser.add_argument("--write-url", required=True, help="the test adapter's write address")
    parser.add_argument("--interval", type=float, default=2.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    quiet = bool(argv) and argv[0] == "ramp"  # the demo prints its own figures
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
    )
    commands: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, None]]] = {
        "fleet": run_fleet,
        "feed": run_feed,
        "ramp": run_ramp,
    }
    parsers = {"fleet": parse_fleet, "feed": parse_feed, "ramp": parse_ramp}
    if argv and argv[0] in commands:
        asyncio.run(commands[argv[0]](parsers[argv[0]](argv[1:])))
    else:
        asyncio.run(serve(*parse_args(argv)))


if __name__ == "__main__":
    main()
