"""`kubellm status | promote | abort`: the SRE's view and requests.

These only read the LLMDeployment or annotate it; the operator stays the only actor on
children. A request names the rollout (and for `promote`, the step) it was made for, so a
request that arrives late, or twice, never acts on another rollout or a later step.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import kopf

from kubellm.api.models import LLMDeploymentStatus
from kubellm.controller.reconcile import ABORT, PROMOTE
from kubellm.k8s.client import ApiError, KubeClient
from kubellm.rollout.planner import promote_token, rollout_id

WATCH_SECONDS = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the LLMDeployment")
    parser.add_argument("-n", "--namespace", help="defaults to the kubeconfig's namespace")


def _table(rows: Sequence[Sequence[object]], indent: str = "  ") -> list[str]:
    text = [[("-" if cell is None else str(cell)) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in text) for i in range(len(text[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in text]  # fmt: skip


def _ago(when: str | None, now: datetime) -> str:
    if not when:
        return "-"
    seconds = int((now - datetime.fromisoformat(when.replace("Z", "+00:00"))).total_seconds())
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


def describe(obj: dict[str, Any], now: datetime) -> str:
    """The whole story of one LLMDeployment, from its status alone."""
    meta, spec = obj["metadata"], obj.get("spec") or {}
    status = LLMDeploymentStatus.model_validate(obj.get("status") or {})
    engine, model = spec.get("engine", {}).get("type", "vllm"), spec.get("model", {}).get("name")
    lines = [
        f"{meta['namespace']}/{meta['name']}: {status.phase or 'Pending'}, {status.ready or '-'}"
        f" ready, {engine} serving {model} (generation {meta.get('generation')},"
        f" observed {status.observed_generation})"
    ]
    if status.sizing:
        s = status.sizing
        lines.append(
            f"Sizing: TP={s.tensor_parallel} PP={s.pipeline_parallel}, {s.gpus_per_replica}"
            f" GPU(s) per replica ({s.gpu_type or 'custom GPU'}): {s.reason}"
        )
    lines.append("Conditions:")
    lines += _table(
        [("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE")]
        + [
            (c.type, c.status, c.reason, _ago(c.last_transition_time, now), c.message)
            for c in status.conditions
        ]
    )
    rollout = status.rollout
    roles = (
        {rollout.stable_revision: "stable", rollout.canary_revision: "canary"} if rollout else {}
    )
    lines.append("Revisions:")
    lines += _table(
        [("REVISION", "ROLE", "WEIGHT", "REPLICAS", "READY", "COLD START")]
        + [
            (
                r.revision,
                roles.get(r.revision, "-"),
                f"{r.weight}%",
                r.replicas,
                r.ready_replicas,
                f"{r.ready_seconds:.0f}s" if r.ready_seconds is not None else None,
            )
            for r in status.revisions
        ]
    )
    if rollout and rollout.canary_revision:
        steps = spec.get("rollout", {}).get("canary", {}).get("steps") or []
        index = rollout.current_step
        step = (
            f"step {index + 1}/{len(steps)}"
            if index is not None and index < len(steps)
            else ("promoting")
        )
        lines.append(
            f"Rollout: {rollout.canary_revision} at {rollout.canary_weight}%, {step},"
            f" step started {_ago(rollout.step_started_at, now)}"
            f"{', paused for kubellm promote' if rollout.paused else ''}; {rollout.message}"
        )
    if rollout and rollout.analysis:
        a = rollout.analysis
        lines.append(
            f"Analysis: {a.verdict} {_ago(a.time, now)}, {a.failures} failure(s),"
            f" {a.requests if a.requests is not None else '-'} canary requests"
        )
        lines += _table(
            [("SIGNAL", "CANARY", "STABLE", "THRESHOLD", "VERDICT", "MESSAGE")]
            + [
                (
                    r.name,
                    _number(r.value),
                    _number(r.stable_value),
                    r.threshold,
                    r.verdict,
                    r.message,
                )
                for r in a.results
            ]
        )
    if status.history:
        lines.append("History:")
        lines += _table(
            [("REVISION", "RESULT", "CHANGED", "STARTED", "ENDED", "REASON")]
            + [
                (
                    h.revision,
                    h.result,
                    ",".join(h.changed) or None,
                    h.start_time,
                    h.end_time,
                    h.reason,
                )
                for h in status.history
            ]
        )
    if stats := status.rollout_stats:
        rate = f"{stats.success_rate:.0%}" if stats.success_rate is not None else "n/a"
        lines.append(
            f"Rollouts: {stats.total} total, {stats.succeeded} succeeded, {stats.failed} failed,"
            f" success rate {rate}"
        )
    return "\n".join(lines)


def _number(value: float | None) -> str | None:
    return None if value is None else f"{value:.4g}"


async def _client() -> tuple[KubeClient, str]:
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
        settings=settings
    )
    if info is None:
        raise SystemExit("error: no kubeconfig and no in-cluster service account")
    return KubeClient(info), info.default_namespace or "default"


async def _status(args: argparse.Namespace) -> int:
    client, default_namespace = await _client()
    namespace = args.namespace or default_namespace
    last = None
    try:
        while True:
            obj = await client.get("LLMDeployment", namespace, args.name)
            version = obj["metadata"].get("resourceVersion")
            if version != last:  # print on change, not because "ago" moved on
                if last:
                    print("-" * 72)
                print(describe(obj, datetime.now(UTC)), flush=True)
                last = version
            if not args.watch:
                return 0
            await asyncio.sleep(WATCH_SECONDS)
    except ApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        await client.close()


async def _request(args: argparse.Namespace, annotation: str) -> int:
    """Annotate the LLMDeployment with what the request is for: this rollout (abort), or this
    step of it (promote). The operator compares that with its own state, never a clock."""
    client, default_namespace = await _client()
    namespace = args.namespace or default_namespace
    verb = "promotion" if annotation == PROMOTE else "abort"
    try:
        obj = await client.get("LLMDeployment", namespace, args.name)
        rollout = LLMDeploymentStatus.model_validate(obj.get("status") or {}).rollout
        token = rollout and (
            promote_token(rollout) if annotation == PROMOTE else rollout_id(rollout)
        )
        if not token:
            print(f"error: {namespace}/{args.name} has no rollout in progress", file=sys.stderr)
            return 1
        await client.merge_patch(
            "LLMDeployment",
            namespace,
            args.name,
            {
                "metadata": {
                    "annotations": {annotation: token},
                    "resourceVersion": obj["metadata"]["resourceVersion"],
                }
            },
        )
    except ApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        await client.close()
    print(f"{namespace}/{args.name}: {verb} of {token} requested; the operator acts on it next")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return asyncio.run(_status(args))


def cmd_promote(args: argparse.Namespace) -> int:
    return asyncio.run(_request(args, PROMOTE))


def cmd_abort(args: argparse.Namespace) -> int:
    return asyncio.run(_request(args, ABORT))
