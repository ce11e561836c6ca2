"""`python -m kubellm.simulator.load`: steady, bounded load against a simulator on loopback.

Requests leave at a fixed rate whether or not earlier ones have finished (an open model,
as real clients behave), so a slow canary shows its latency instead of slowing the load.
Loopback only: this is a test tool, never a way to load someone else's server.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import aiohttp

MAX_RPS = 500.0
MAX_DURATION = 600.0
REQUEST_TIMEOUT = 60.0


@dataclass(frozen=True)
class LoadResult:
    sent: int
    ok: int
    failed: int  # HTTP errors and connection failures


def check_loopback(url: str) -> None:
    host = urlsplit(url).hostname or ""
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"refusing to load {host!r}: only loopback addresses are allowed")


async def generate_load(
    url: str,
    *,
    rps: float,
    duration: float,
    model: str | None = None,
    max_tokens: int = 16,
    path: str = "/v1/completions",
) -> LoadResult:
    """Send `rps` completions per second for `duration` seconds; wait for every answer."""
    check_loopback(url)
    if not 0 < rps <= MAX_RPS or not 0 < duration <= MAX_DURATION:
        raise ValueError(f"rps must be in (0, {MAX_RPS:g}], duration in (0, {MAX_DURATION:g}]")
    text = "Say something simulated."
    body: dict[str, object] = {"max_tokens": max_tokens}
    if path.endswith("/chat/completions"):
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    if model:
        body["model"] = model
    target = url.rstrip("/") + path
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=0)

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def one() -> bool:
            try:
                async with session.post(target, json=body) as response:
                    await response.read()
                    return response.status < 400
            except (aiohttp.ClientError, TimeoutError):
                return False

        loop = asyncio.get_running_loop()
        begin = loop.time()
        tasks = []
        for i in range(int(rps * duration)):
            await asyncio.sleep(max(0.0, begin + i / rps - loop.time()))
            tasks.append(asyncio.create_task(one()))
        answers = await asyncio.gather(*tasks)
    ok = sum(answers)
    return LoadResult(sent=len(answers), ok=ok, failed=len(answers) - ok)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m kubellm.simulator.load", description=__doc__)
    parser.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8001")
    parser.add_argument("--rps", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--model")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--chat", action="store_true", help="use /v1/chat/completions")
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(
            generate_load(
                args.url,
                rps=args.rps,
                duration=args.duration,
                model=args.model,
                max_tokens=args.max_tokens,
                path="/v1/chat/completions" if args.chat else "/v1/completions",
            )
        )
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
