"""The fleet's routing and its Prometheus targets, without a cluster (e2e covers the rest)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, cast

from aiohttp import web

from kubellm.k8s.client import KubeClient
from kubellm.simulator.fleet import Fleet, Replica, _Deployment
from kubellm.simulator.server import SimulatorConfig, create_app


def replica(pod: str, revision: str, config: SimulatorConfig | None = None) -> Replica:
    app = create_app(config or SimulatorConfig())
    return Replica("ml", pod, "chat", revision, "vllm", app, cast(web.AppRunner, None), 8000)


def fleet(replicas: list[Replica], weights: dict[str, int], file_sd: Path | None = None) -> Fleet:
    f = Fleet(cast(KubeClient, None), ["ml"], file_sd=file_sd)
    f.replicas = {(r.namespace, r.pod): r for r in replicas}
    f.deployments[("ml", "chat")] = _Deployment(None, weights)
    return f


def test_requests_follow_the_revision_weights_then_round_robin() -> None:
    pods = [replica("stable-a", "s"), replica("stable-b", "s"), replica("stable-c", "s")]
    pods.append(replica("canary-a", "c"))
    f = fleet(pods, {"s": 75, "c": 25})
    picked = [f.pick("ml", "chat") for _ in range(400)]
    by_revision = Counter(r.revision for r in picked if r)
    assert by_revision == {"s": 300, "c": 100}
    assert Counter(r.pod for r in picked if r and r.revision == "s") == {
        "stable-a": 100,
        "stable-b": 100,
        "stable-c": 100,
    }


def test_engines_still_loading_get_no_requests() -> None:
    loading = SimulatorConfig(cold_start=60)
    f = fleet([replica("ready", "s"), replica("cold", "c", loading)], {"s": 50, "c": 50})
    assert {f.pick("ml", "chat").pod for _ in range(10)} == {"ready"}  # type: ignore[union-attr]
    assert fleet([replica("cold", "c", loading)], {}).pick("ml", "chat") is None


def test_without_weights_the_split_is_the_replica_ratio() -> None:
    f = fleet([replica("a", "s"), replica("b", "s"), replica("c", "c")], {})
    assert Counter(f.pick("ml", "chat").revision for _ in range(300)) == {"s": 200, "c": 100}  # type: ignore[union-attr]


def test_targets_carry_the_pod_monitor_labels(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    fleet([replica("chat-abc", "r1")], {}, file_sd=path)._write_targets()
    targets: list[dict[str, Any]] = json.loads(path.read_text())
    assert targets == [
        {
            "targets": ["127.0.0.1:8000"],
            "labels": {
                "__metrics_path__": "/metrics",
                "namespace": "ml",
                "pod": "chat-abc",
                "llmdeployment": "chat",
                "revision": "r1",
                "engine": "vllm",
            },
        }
    ]
