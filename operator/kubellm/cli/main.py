"""`kubellm` (also `kubectl llm`): offline tools, the operator, and the SRE commands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from kubellm.api.crd import all_crds, llmdeployment_crd
from kubellm.cli.run import add_arguments as add_run_arguments
from kubellm.cli.run import add_gpu_node_labels_argument
from kubellm.cli.sre import add_arguments as add_sre_arguments
from kubellm.cli.sre import cmd_abort, cmd_promote, cmd_status
from kubellm.engines import ENGINES
from kubellm.render import render_documents
from kubellm.rollout.durations import parse_duration
from kubellm.sizing import (
    DEFAULT_MIN_CONCURRENT_SEQUENCES,
    SizingRequest,
    UnknownGPUError,
    UnknownModelError,
    format_text,
    plan,
    resolve_gpu,
    resolve_model,
)
from kubellm.sizing.capacity import (
    auto_targets,
    batch_limit_of,
    replica_capacity,
    sustainable_load,
)

Handler = Callable[[argparse.Namespace], int]


def dump_yaml_stream(objects: Sequence[Any], out: TextIO) -> None:
    yaml.safe_dump_all(objects, out, sort_keys=False, default_flow_style=False)


def _read_stream(path: str) -> list[Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    return list(yaml.safe_load_all(text))


def cmd_render(args: argparse.Namespace) -> int:
    try:
        documents = _read_stream(args.filename)
    except (OSError, yaml.YAMLError) as error:
        print(f"error: cannot read {args.filename}: {error}", file=sys.stderr)
        return 2
    result = render_documents(documents, gpu_node_labels=args.gpu_node_labels)
    if result.problems:
        for name, problem in result.problems:
            print(f"error: {name}: {problem}", file=sys.stderr)
        return 1
    if args.output == "json":
        listing = {"apiVersion": "v1", "kind": "List", "items": result.objects}
        json.dump(listing, sys.stdout, indent=2)
        print()
    else:
        dump_yaml_stream(result.objects, sys.stdout)
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    if args.write_to:
        for directory in args.write_to:
            Path(directory).mkdir(parents=True, exist_ok=True)
            for filename, crd in all_crds().items():
                with open(Path(directory) / filename, "w") as out:
                    yaml.safe_dump(crd, out, sort_keys=False)
        return 0
    crds = list(all_crds().values()) if args.all else [llmdeployment_crd()]
    dump_yaml_stream(crds, sys.stdout)
    return 0


def cmd_size(args: argparse.Namespace) -> int:
    engine = ENGINES[args.engine]
    try:
        model = resolve_model(args.model)
        gpu = resolve_gpu(args.gpu) if args.gpu else None
    except UnknownModelError as error:
        print(
            f"error: unknown model {args.model!r}: give its architecture in an LLMDeployment"
            f" (spec.model.architecture: {', '.join(error.missing)})",
            file=sys.stderr,
        )
        return 2
    except UnknownGPUError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    memory = args.gpu_memory_gib if args.gpu_memory_gib else gpu.memory_gib if gpu else 0.0
    request = SizingRequest(
        model=model,
        gpu_memory_gib=memory,
        gpus_per_node=args.gpus_per_node,
        gpu_name=gpu.name if gpu else f"{memory:g} GiB GPU",
        gpu_fp8=gpu.fp8 if gpu else True,
        quantization=args.quantization,
        kv_cache_dtype=args.kv_cache_dtype,
        context_length=args.context,
        max_concurrency=args.max_concurrency,
        gpu_memory_utilization=args.gpu_memory_utilization,
        tensor_parallel=args.tensor_parallel,
        pipeline_parallel=args.pipeline_parallel,
        min_concurrent_sequences=args.min_concurrent_sequences,
        engine=engine.traits,
    )
    result = plan(request)
    autoscaling: dict[str, Any] | None = None
    if result.fits and gpu is not None:
        capacity = replica_capacity(request, result, gpu, batch_limit_of(request))
        slo = parse_duration(args.ttft_slo)
        best = sustainable_load(capacity, slo)
        autoscaling = {
            "ttftSLO": args.ttft_slo,
            "sustainableTokensPerSecond": round(best.generation_tokens_per_second, 1)
            if best
            else None,
            "autoTargets": auto_targets(capacity, slo),
        }
    if args.output == "json":
        print(json.dumps({**result.to_dict(), "autoscaling": autoscaling}, indent=2))
    else:
        print(format_text(result))
        if autoscaling and autoscaling["autoTargets"]:
            targets = ", ".join(f"{k} {v:g}" for k, v in autoscaling["autoTargets"].items())
            print(
                f"  autoscaling         one replica sustains"
                f" {autoscaling['sustainableTokensPerSecond']:g} tokens/s with p99 TTFT <="
                f" {args.ttft_slo}; target auto: {targets}"
            )
    return 0 if result.fits else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from kubellm.cli.demo import run_demo

    return run_demo(args)


def cmd_run(args: argparse.Namespace) -> int:
    from kubellm.cli.run import cmd_run as run

    return run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubellm", description="Serve LLMs on Kubernetes GPUs: sizing, rendering, operator."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    render = sub.add_parser("render", help="print every object the operator would apply")
    render.add_argument("-f", "--filename", required=True, help="YAML stream, or - for stdin")
    render.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml")
    add_gpu_node_labels_argument(render)
    render.set_defaults(handler=cmd_render)

    crd = sub.add_parser("crd", help="print the LLMDeployment CRD")
    crd.add_argument("--all", action="store_true", help="include Kopf's peering CRDs")
    crd.add_argument("--write-to", action="append", metavar="DIR", help="write every CRD file")
    crd.set_defaults(handler=cmd_crd)

    size = sub.add_parser("size", help="the smallest parallelism that fits, and why")
    size.add_argument("--model", required=True)
    gpu = size.add_mutually_exclusive_group(required=True)
    gpu.add_argument("--gpu", help="GPU type, e.g. H100-80GB, L4, MI300X")
    gpu.add_argument("--gpu-memory-gib", type=float, help="memory per GPU, for other GPUs")
    size.add_argument("--quantization", default="none")
    size.add_argument("--kv-cache-dtype", default="auto")
    size.add_argument("--context", type=int, help="max context length (default: the model's)")
    size.add_argument("--max-concurrency", type=int)
    size.add_argument("--engine", choices=sorted(ENGINES), default="vllm")
    size.add_argument("--tensor-parallel", type=int)
    size.add_argument("--pipeline-parallel", type=int)
    size.add_argument("--gpus-per-node", type=int, default=8)
    size.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    size.add_argument("--ttft-slo", default="1s", help="time to first token for target auto")
    size.add_argument(
        "--min-concurrent-sequences",
        type=int,
        default=DEFAULT_MIN_CONCURRENT_SEQUENCES,
        help="headroom rule: full-context sequences the KV cache must hold (default"
        f" {DEFAULT_MIN_CONCURRENT_SEQUENCES})",
    )
    size.add_argument("-o", "--output", choices=("json", "text"), default="text")
    size.set_defaults(handler=cmd_size)

    run = sub.add_parser("run", help="the operator (in cluster or with the kubeconfig)")
    add_run_arguments(run)
    run.set_defaults(handler=cmd_run)

    status = sub.add_parser("status", help="revisions, weights, step, analysis, history")
    add_sre_arguments(status)
    status.add_argument("-w", "--watch", action="store_true", help="follow changes")
    status.set_defaults(handler=cmd_status)
    promote = sub.add_parser("promote", help="release a paused canary step")
    add_sre_arguments(promote)
    promote.set_defaults(handler=cmd_promote)
    abort = sub.add_parser("abort", help="roll the running canary back")
    add_sre_arguments(abort)
    abort.set_defaults(handler=cmd_abort)

    demo = sub.add_parser("demo", help="the whole loop on an embedded default")
    demo.add_argument("--offline", action="store_true", help="sizing and rendering only")
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
