"""The runtime's parts: leadership by Kopf's peering rule, the watch-fed cache, health."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest
from aiohttp import web
from kopf._cogs.structs import references

from kubellm.controller import runtime as runtime_module
from kubellm.controller.cache import Cache
from kubellm.controller.leadership import paused_by_peers
from kubellm.controller.runtime import Runtime
from kubellm.handlers import configure, register
from kubellm.k8s import client as client_module
from kubellm.k8s.client import LIST_PAGE, ApiError, KubeClient

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
        meta["labels"] = {
            "app.kubernetes.io/instance": owner,
            "app.kubernetes.io/managed-by": "kubellm",
            **labels,
        }
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


def test_a_child_unlabelled_by_hand_leaves_the_cache_and_its_owner_is_told() -> None:
    cache = Cache()
    cache.observe("Service", "ADDED", body("Service", "svc"))
    unlabelled = body("Service", "svc")
    del unlabelled["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    assert cache.observe("Service", "MODIFIED", unlabelled) == ("ns", "demo")
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
    clock.now = 101.5
    cache.observe("Deployment", None, body("Deployment", "kept2"))  # a long listing goes on
    clock.now = 103
    assert cache.relists_due() == []
    clock.now = 104
    assert cache.relists_due() == [("Deployment", "")]
    assert cache.unseen(("Deployment", "")) == [("ns", "gone")]
    assert cache.relists_due() == []  # handled once
    assert cache.forget("Deployment", "ns", "gone") == ("ns", "demo")
    assert [c.name for c in cache.children_of(("ns", "demo"))] == ["kept", "kept2"]


def test_a_namespace_a_watch_starts_on_lists_only_that_namespace() -> None:
    clock = Clock()
    cache = Cache(clock=clock, per_namespace=True)
    cache.observe("Deployment", "ADDED", body("Deployment", "elsewhere"))
    new = body("Deployment", "here")
    new["metadata"]["namespace"] = "new-ns"
    cache.observe("Deployment", None, new)  # a new namespace's first listing
    clock.now = 3
    assert cache.relists_due() == [("Deployment", "new-ns")]
    assert cache.unseen(("Deployment", "new-ns")) == []  # nothing elsewhere is suspected


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


def test_a_replica_takes_part_in_the_peerings_of_the_namespaces_it_serves() -> None:
    from kubellm.controller.leadership import Peering

    cluster = Peering("kubellm", "me", 5, ())
    assert cluster.mine(None) and not cluster.mine("team-a")
    shard = Peering("shard-a", "me", 5, ("team-a", "ml-*"))
    assert shard.mine("team-a") and shard.mine("ml-prod") and not shard.mine("team-b")
    assert not shard.mine(None)


class Lister:
    """A client whose LIST answers from a dict of kind -> objects."""

    def __init__(
        self, objects: dict[str, list[dict[str, Any]]], refusals: list[Exception] | None = None
    ) -> None:
        self.objects = objects
        self.refusals = refusals or []  # raised by the first LISTs, one each
        self.refuse_at = 0  # at which page
        self.calls: list[tuple[str, str | None, str]] = []

    async def pages(
        self, kind: str, namespace: str | None = None, label_selector: str = "", **_: Any
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """One object per page; a refusal may come at any page (a continue token expired)."""
        self.calls.append((kind, namespace, label_selector))
        found = [
            o
            for o in self.objects.get(kind, [])
            if not namespace or o["metadata"]["namespace"] == namespace
        ]
        for index in range(max(len(found), 1)):
            if self.refusals and self.refuse_at == index:
                raise self.refusals.pop(0)
            yield found[index : index + 1]


def test_sync_fills_the_cache_before_any_reconcile_and_drops_what_is_gone() -> None:
    owner = body("LLMDeployment", "demo")
    other = body("LLMDeployment", "elsewhere")
    other["metadata"]["namespace"] = "team-b"
    deployment = {**body("Deployment", "demo-r1"), "kind": "Deployment"}
    cache = Cache()
    cache.observe("Service", "ADDED", body("Service", "demo"))  # deleted while we were away
    client = Lister({"LLMDeployment": [owner, other], "Deployment": [deployment]})
    runtime = Runtime(reconciler=None, cache=cache, client=client, namespaces=("n*",))  # type: ignore[arg-type]
    asyncio.run(runtime.sync())
    assert cache.owner(("ns", "demo")) is not None
    assert cache.owner(("team-b", "elsewhere")) is None  # another shard's
    assert [c.kind for c in cache.children_of(("ns", "demo"))] == ["Deployment"]
    assert ("Pod", None, "app.kubernetes.io/managed-by=kubellm") in client.calls


def test_sync_asks_again_while_the_api_server_is_busy_or_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """e2e finding: the operator exited at start-up on `HTTP 429: storage is (re)initializing`
    (a CRD registered a moment before), and would on a 503 or a refused connection."""
    monkeypatch.setattr(runtime_module, "SYNC_RETRY_SECONDS", 0.001)
    refusals: list[Exception] = [
        ApiError(429, "storage is (re)initializing"),
        ApiError(503, "unavailable"),
        ConnectionRefusedError(),
    ]
    client = Lister({"LLMDeployment": [body("LLMDeployment", "demo")]}, refusals)
    cache = Cache()
    runtime = Runtime(reconciler=None, cache=cache, client=client)  # type: ignore[arg-type]
    asyncio.run(runtime.sync())
    assert cache.owner(("ns", "demo")) is not None
    assert [c[0] for c in client.calls[:4]] == ["LLMDeployment"] * 4


def test_a_listing_cut_off_between_pages_starts_over_and_misses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Listings come a page at a time; a continue token that expired (410, etcd compacted
    meanwhile) or an API server restart between pages lists again from the start."""
    monkeypatch.setattr(runtime_module, "SYNC_RETRY_SECONDS", 0.001)
    owners = [body("LLMDeployment", f"m{i}") for i in range(3)]
    gone = body("LLMDeployment", "gone")
    client = Lister({"LLMDeployment": owners}, [ApiError(410, "continue token expired")])
    client.refuse_at = 2  # after two of the three pages
    cache = Cache()
    cache.observe("LLMDeployment", "ADDED", gone)  # deleted while the operator was away
    runtime = Runtime(reconciler=None, cache=cache, client=client)  # type: ignore[arg-type]
    asyncio.run(runtime.sync())
    assert sorted(name for _, name in cache.known("LLMDeployment")) == ["m0", "m1", "m2"]
    assert [c[0] for c in client.calls[:2]] == ["LLMDeployment"] * 2


def test_sync_gives_up_on_a_refusal_that_will_not_pass() -> None:
    client = Lister({}, [ApiError(401, "Unauthorized")])
    runtime = Runtime(reconciler=None, cache=Cache(), client=client)  # type: ignore[arg-type]
    with pytest.raises(ApiError):
        asyncio.run(runtime.sync())


def test_a_kind_whose_relisting_found_nothing_is_swept_with_the_owners_listing() -> None:
    """An API server restart while the only Service was deleted: its watch lists nothing."""
    clock = Clock()
    cache = Cache(clock=clock, per_namespace=True)
    cache.observe("LLMDeployment", "ADDED", body("LLMDeployment", "demo"))
    cache.observe("Service", "ADDED", body("Service", "demo"))
    clock.now = 100
    cache.observe("LLMDeployment", None, body("LLMDeployment", "demo"))  # watches start over
    clock.now = 103
    assert ("Service", "ns") in cache.relists_due()
    assert cache.unseen(("Service", "ns")) == [("ns", "demo")]


def test_handlers_are_coroutines_on_the_event_loop_of_the_work_queue() -> None:
    """Kopf runs plain functions in a thread pool, where the queue and cache are not safe."""
    registry = kopf.OperatorRegistry()
    register(registry)
    handlers = registry._watching.get_all_handlers() + registry._activities.get_all_handlers()
    assert handlers and all(inspect.iscoroutinefunction(h.fn) for h in handlers)


def resource(group: str, version: str, plural: str) -> references.Resource:
    return references.Resource(group=group, version=version, plural=plural)


WATCHED = (
    ("", "v1", "pods"),
    ("", "v1", "services"),
    ("apps", "v1", "deployments"),
    ("apps", "v1", "controllerrevisions"),
)


def test_only_kubellm_children_and_pods_are_watched_and_no_diff_base_is_built() -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    selectors = settings.watching.label_selectors
    for group, version, plural in WATCHED:
        found = list(selectors.collect(resource(group, version, plural)))
        assert found == ["app.kubernetes.io/managed-by=kubellm"]
    owners = resource("kubellm.io", "v1alpha1", "llmdeployments")
    assert list(selectors.collect(owners)) == []
    big = kopf.Body({"metadata": {"name": "x"}, "spec": {"items": list(range(1000))}})
    assert settings.persistence.diffbase_storage.build(body=big) == {}


class Watching:
    """The reconciler as the runtime's watch side sees it."""

    def saw(self, body: Any) -> bool:
        return False

    def forget(self, key: Any, uid: str | None = None) -> None:
        return None


def test_an_owner_whose_watch_event_never_came_is_taken_in_at_the_resync() -> None:
    """CI finding: an LLMDeployment created as its namespace's watch started was never
    reconciled (no status after 90 s): only a restart would have listed it."""
    missed = body("LLMDeployment", "missed")
    missed["metadata"]["uid"] = "u-missed"
    gone = body("LLMDeployment", "gone")
    gone["metadata"]["uid"] = "u-gone"
    client = Lister({"LLMDeployment": [missed, gone]})
    cache = Cache()
    runtime = Runtime(reconciler=Watching(), cache=cache, client=client)  # type: ignore[arg-type]
    runtime.observe("LLMDeployment", "DELETED", gone)  # the listing below is older than this
    asyncio.run(runtime._adopt_unseen_owners())
    assert cache.owner(("ns", "missed")) is not None
    assert runtime.queue.due(("ns", "missed")) is not None
    assert cache.owner(("ns", "gone")) is None


def test_a_deleted_owner_is_remembered_only_while_a_listing_still_shows_it() -> None:
    gone = body("LLMDeployment", "gone")
    gone["metadata"]["uid"] = "u-gone"
    client = Lister({"LLMDeployment": [gone]})
    runtime = Runtime(reconciler=Watching(), cache=Cache(), client=client)  # type: ignore[arg-type]
    runtime.observe("LLMDeployment", "DELETED", gone)
    asyncio.run(runtime._adopt_unseen_owners())
    assert runtime.cache.owner(("ns", "gone")) is None
    client.objects["LLMDeployment"] = []  # the API server caught up
    asyncio.run(runtime._adopt_unseen_owners())
    assert runtime._deleted == set()


DEPLOYMENTS = "/apis/apps/v1/namespaces/ns/deployments"


@asynccontextmanager
async def api_server(
    path: str, handler: Callable[[web.Request], Awaitable[web.Response]]
) -> AsyncIterator[KubeClient]:
    """A KubeClient talking to a local HTTP server that answers GETs of `path`."""
    app = web.Application()
    app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = KubeClient(kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}"))
    try:
        yield client
    finally:
        await client.close()
        await runner.cleanup()


def test_the_client_lists_a_page_at_a_time_following_the_continue_token() -> None:
    """A listing of 10,000 Deployments held at once would be hundreds of MiB: the client
    asks for LIST_PAGE objects at a time and hands each page on before the next."""
    asked: list[dict[str, str]] = []
    names = [f"d{i}" for i in range(LIST_PAGE + 2)]

    async def listing(request: web.Request) -> web.Response:
        asked.append(dict(request.query))
        start = int(request.query.get("continue") or 0)
        end = min(start + int(request.query["limit"]), len(names))
        items = [{"metadata": {"name": n, "namespace": "ns"}} for n in names[start:end]]
        token = str(end) if end < len(names) else ""
        return web.json_response({"metadata": {"continue": token}, "items": items})

    async def scenario() -> list[int]:
        async with api_server(DEPLOYMENTS, listing) as client:
            sizes = [len(p) async for p in client.pages("Deployment", "ns", label_selector="a=b")]
            listed = await client.list("Deployment", "ns")
        assert [o["metadata"]["name"] for o in listed] == names
        assert all(o["kind"] == "Deployment" for o in listed)
        return sizes

    assert asyncio.run(scenario()) == [LIST_PAGE, 2]
    assert asked[0] == {"labelSelector": "a=b", "limit": str(LIST_PAGE)}
    assert asked[1] == {"labelSelector": "a=b", "limit": str(LIST_PAGE), "continue": str(LIST_PAGE)}


def test_requests_waiting_for_a_free_connection_do_not_time_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10,000-object finding: with every connection busy, requests that waited longer than
    the request timeout for one failed unsent (reconciles retried). Only time on the wire
    is timed."""
    monkeypatch.setattr(client_module, "CONNECTIONS", 1)
    monkeypatch.setattr(client_module, "REQUEST_SECONDS", 0.5)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.2)
        return web.json_response({"metadata": {"name": request.match_info["name"]}})

    async def scenario() -> list[str]:
        async with api_server(DEPLOYMENTS + "/{name}", slow) as client:
            # six requests one after another on one connection: 1.2 s, over 0.5 s
            answers = await asyncio.gather(
                *(client.get("Deployment", "ns", f"d{i}") for i in range(6))
            )
        return [str(a["metadata"]["name"]) for a in answers]

    assert asyncio.run(scenario()) == [f"d{i}" for i in range(6)]
