"""Benchmark: validate, size and render one LLMDeployment (p50 over all examples).

Goal: under 1 ms on the development machine. A benchmark, not a test: it prints numbers.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import yaml

from kubellm.render import render_children, resolve, single_revision

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
ROUNDS = 200


def main() -> None:
    documents = [yaml.safe_load(p.read_text()) for p in EXAMPLES]
    samples: list[float] = []
    for _ in range(ROUNDS):
        for doc in documents:
            start = time.perf_counter()
            render_children(single_revision(resolve(doc)))
            samples.append(time.perf_counter() - start)
    samples.sort()
    p50 = statistics.median(samples) * 1000
    p99 = samples[int(len(samples) * 0.99)] * 1000
    print(f"examples={len(documents)} renders={len(samples)} p50={p50:.3f} ms p99={p99:.3f} ms")


if __name__ == "__main__":
    main()
