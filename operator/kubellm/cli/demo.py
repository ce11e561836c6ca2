"""`kubellm demo`: what kubellm decides for every bundled example, with no cluster at all."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from kubellm.render import render_children, resolve, single_revision
from kubellm.render.resolve import InvalidSpecError

EXAMPLES = Path(__file__).resolve().parents[3] / "manifests" / "examples"


def describe_examples(directory: Path = EXAMPLES) -> list[str]:
    """One block per example: sizing decision and the children it renders to."""
    lines: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        lines.append(f"== {path.name}")
        try:
            resolved = resolve(doc)
        except InvalidSpecError as invalid:
            lines += [f"   refused: {problem}" for problem in invalid.problems]
            continue
        spec, sizing = resolved.spec, resolved.sizing
        gpu = resolved.gpu.name if resolved.gpu else f"{spec.resources.gpu.memory_gib} GiB"
        lines.append(
            f"   {spec.engine.type} serving {spec.model.name} on {gpu}:"
            f" TP={sizing.tensor_parallel} PP={sizing.pipeline_parallel}"
            f" -> {sizing.gpus_per_replica} GPU(s) per replica"
            f" on {sizing.nodes_per_replica} node(s), context {sizing.context_length}"
        )
        lines.append(f"   why: {sizing.reason}")
        lines.append(
            f"   memory per GPU: {sizing.per_gpu_used_gib:.1f} of"
            f" {sizing.per_gpu_capacity_gib:.1f} GiB (weights {sizing.weights_per_gpu_gib:.1f},"
            f" overhead {sizing.overhead_gib:.1f}, KV room {sizing.kv_cache_per_gpu_gib:.1f})"
        )
        children = render_children(single_revision(resolved))
        kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in children)
        lines.append(f"   children: {kinds}")
    return lines


def run_demo(args: argparse.Namespace) -> int:
    print("\n".join(describe_examples()))
    return 0
