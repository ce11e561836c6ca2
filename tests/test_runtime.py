"""The runtime's parts: leadership by Kopf's peering rule, the watch-fed cache, health."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from kubellm.controller.cache import Cache
from kubellm.controller.leadership import paused_by_peers
from kubellm.controller.runtime import Runtime

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def peer(priority: int, seen: timedelta = timedelta(0), lifetime: int = 60) -> dict[str, Any]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - seen).isoformat()}


def test_a_live_peer_with_a_higher_or_equal_priority_pauses_us() -> None:
    assert paused_by_peers({"me": peer(5), "other": peer(9)}, "me", 5, NOW)
    assert paused_by_peers({"me": peer(5), "other": peer(5)}, "me", 5, NOW)
    assert not paused_by_peers({"me": peer(5), "other": peer(4)}, "me", 5, NOW)
    assert not paused_by_peers({"me": peer(5)}, "me", 5, NOW)


def test_a_peer_not_seen_within_its_lifetime_is_dead() -> None:
    assert not paused_by_peers({"other": peer(9, seen=timedelta(seconds=61))}, "me", 5, NOW)
    assert paused_by_peers({"other": peer(9, seen=timedelta(seconds=59))}, "me", 5, NOW)
    assert not paused_by_peers({"other": {"priority": 9}}, "me", 5, NOW)  # never seen


def body(kind: str, name: str, owner: str = "demo", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": "1"}
    if kind != "LLMDeployment":
        meta["labels"] = {"app.kubernetes.io/instance": owner, **labels}
    return {"kind": kind, "metadata": meta, "spec": {}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_files_children_by_owner_and_forgets_deletions() -> None:
    cache = Cache()
    assert cache.observe("LLMDeployment", "ADDED", body("LLMDeployment", "demo")) == ("ns", "demo")
    assert cache.observe("Service", "ADDED", body("Service", "demo")) == ("ns", "demo")
    assert cache.observe("Pod", "ADDED", body("Pod", "p1", **{"kubellm.io/revision": "r1"}))
    assert [c.name for c in cache.children_of(("ns", "demo"))] == ["demo"]
    assert [p.revision for p in cache.pods_of(("ns", "demo"))] == ["r1"]
    cache.observe("Service", "DELETED", body("Service", "demo"))
    assert cache.children_of(("ns", "demo")) == []


def test_a_child_relabelled_to_another_owner_moves() -> None:
    cache = Cache()
    cache.observe("Service", "ADDED", body("Service", "svc", owner="a"))
    cache.observe("Service", "MODIFIED", body("Service", "svc", owner="b"))
    assert cache.children_of(("ns", "a")) == [] and len(cache.children_of(("ns", "b"))) == 1


def test_after_a_relisting_objects_it_did_not_show_are_looked_up_again() -> None:
    clock = Clock()
    cache = Cache(clock=clock)
    for name in ("kept", "gone"):
        cache.observe("Deployment", "ADDED", body("Deployment", name))
    clock.now = 100
    cache.observe("Deployment", None, body("Deployment", "kept"))  # a watch started over
    assert cache.relists_due() == []
    clock.now = 103
    assert cache.relists_due() == ["Deployment"]
    assert cache.unseen("Deployment") == [("ns", "gone")]
    assert cache.relists_due() == []  # handled once
    assert cache.forget("Deployment", "ns", "gone") == ("ns", "demo")
    assert [c.name for c in cache.children_of(("ns", "demo"))] == ["kept"]


def test_health_fails_when_a_worker_or_the_ticker_is_gone() -> None:
    async def scenario() -> None:
        runtime = Runtime(reconciler=None, cache=Cache(), client=None, workers=2)  # type: ignore[arg-type]
        assert not runtime.healthy()  # not started
        runtime.tasks = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(3)]
        assert runtime.healthy()
        runtime.tasks[-1].cancel()
        await asyncio.sleep(0)
        assert not runtime.healthy()
        runtime.tasks[-1] = asyncio.create_task(asyncio.sleep(3600))
        assert runtime.healthy()
        runtime.heartbeat -= 3600  # a ticker stuck in an await that never returns
        assert not runtime.healthy()
        for task in runtime.tasks:
            task.cancel()

    asyncio.run(scenario())
