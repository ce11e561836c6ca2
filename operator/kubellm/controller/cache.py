"""The operator's view of the cluster, fed by Kopf's watch events: owners, children, pods.

Reconciles read from here, never from the API, so a resync costs no request. A watch that
had to start over (the API server restarted, the operator was paused by peering) lists
every object again, but never says which ones vanished meanwhile: after such a listing the
cache sweeps out, per kind, what the API no longer lists (`stale_after_relist`), so a child
deleted during the gap is seen as missing instead of being trusted forever. Only objects the
listing did not show are looked up again (one GET each), so the start-up listing costs
nothing more.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubellm.controller.children import Child, owner_key, pod_info, summarize
from kubellm.render.context import MANAGED_BY
from kubellm.rollout.pods import PodInfo

OwnerKey = tuple[str, str]  # namespace, name
Scope = tuple[str, str]  # kind, namespace ("": every namespace) of one watch
OWNER_KIND = "LLMDeployment"
POD_KIND = "Pod"
LISTING_QUIET_SECONDS = 2.0  # a listing's events arrive in a burst: over after this silence


@dataclass
class _Listing:
    """Objects of one kind seen since a listing began, to find those no longer there."""

    last: float  # when its latest object arrived (a listing of 10,000 takes a while)
    seen: set[tuple[str, str]] = field(default_factory=set)  # namespace, name


@dataclass
class Cache:
    clock: Callable[[], float] = time.monotonic
    # Kopf runs one watch per namespace when the operator serves a list of namespaces (and
    # one cluster-wide otherwise): a listing then stands for that namespace only.
    per_namespace: bool = False
    owners: dict[OwnerKey, Mapping[str, Any]] = field(default_factory=dict)
    children: defaultdict[OwnerKey, dict[tuple[str, str], Child]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    pods: defaultdict[OwnerKey, dict[str, PodInfo]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    relisting: dict[Scope, _Listing] = field(default_factory=dict)
    # where each object was filed, to move or drop it when its owner label changes
    placed: dict[tuple[str, str, str], OwnerKey] = field(default_factory=dict)
    # per owner, a number that grows with every event about it or its children and pods
    versions: defaultdict[OwnerKey, int] = field(default_factory=lambda: defaultdict(int))

    def observe(self, kind: str, event: str | None, body: Mapping[str, Any]) -> OwnerKey | None:
        """Take one watch event (type None: part of a listing); returns the owner it concerns."""
        key = self._observe(kind, event, body)
        if key is not None:
            self.versions[key] += 1
        return key

    def version(self, key: OwnerKey) -> int:
        """Unchanged while no event concerned the owner: what a reconcile reads is the same."""
        return self.versions.get(key, 0)

    def _observe(self, kind: str, event: str | None, body: Mapping[str, Any]) -> OwnerKey | None:
        meta = body.get("metadata") or {}
        ident = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        self._track_listing(kind, event, ident)
        if kind == OWNER_KIND:
            if event == "DELETED":
                self.owners.pop(ident, None)
                self.versions.pop(ident, None)
            else:
                self.owners[ident] = _lean(body)
            return ident
        previous = self.placed.pop((kind, *ident), None)
        if previous is not None:
            self._drop(kind, ident, previous)
            self.versions[previous] += 1
        # Unlabelled by hand (`managed-by` or `instance` removed): no longer ours to read, so
        # its owner is looked at again and puts the labels back.
        key = owner_key(body) if _managed(body) else None
        if key is None or event == "DELETED":
            return key or previous
        if kind == POD_KIND:
            info = pod_info(body)
            if info is None:
                return key
            self.pods[key][ident[1]] = info
        else:
            self.children[key][(kind, ident[1])] = summarize(body)
        self.placed[(kind, *ident)] = key
        return key

    def _drop(self, kind: str, ident: tuple[str, str], key: OwnerKey) -> None:
        store: dict[Any, Any] = self.pods[key] if kind == POD_KIND else self.children[key]
        store.pop(ident[1] if kind == POD_KIND else (kind, ident[1]), None)
        if not store:
            (self.pods if kind == POD_KIND else self.children).pop(key, None)

    def _track_listing(self, kind: str, event: str | None, ident: tuple[str, str]) -> None:
        namespace = ident[0] if self.per_namespace else ""
        scope = (kind, namespace)
        if event is not None:
            if scope in self.relisting:
                self.relisting[scope].seen.add(ident)
            return
        if kind == OWNER_KIND:
            # A listing that finds nothing says nothing, so a kind whose objects were all
            # deleted while its watch was down would never be swept: the owners' listing
            # (there is one whenever there is anything to reconcile) stands for every kind.
            kinds = {k for k, ns, _ in self.placed if not namespace or ns == namespace}
            for other in kinds:
                self.relisting.setdefault((other, namespace), _Listing(self.clock()))
        listing = self.relisting.setdefault(scope, _Listing(self.clock()))
        listing.seen.add(ident)
        listing.last = self.clock()

    def relists_due(self) -> list[Scope]:
        """Watches whose listing burst is over: time to look for objects it did not show."""
        now = self.clock()
        return [k for k, v in self.relisting.items() if now - v.last >= LISTING_QUIET_SECONDS]

    def unseen(self, scope: Scope) -> list[tuple[str, str]]:
        """Objects of a watch's kind (and namespace) in the cache that its last listing did
        not show: they may be gone."""
        kind, namespace = scope
        listing = self.relisting.pop(scope, None)
        seen = listing.seen if listing else set()
        return [
            i for i in self.known(kind) if i not in seen and (not namespace or i[0] == namespace)
        ]

    def known(self, kind: str) -> list[tuple[str, str]]:
        """(namespace, name) of every object of `kind` the cache holds."""
        if kind == OWNER_KIND:
            return list(self.owners)
        return [(ns, name) for k, ns, name in self.placed if k == kind]

    def forget(self, kind: str, namespace: str, name: str) -> OwnerKey | None:
        """An object the API no longer has: drop it; returns the owner to reconcile."""
        if kind == OWNER_KIND:
            self.owners.pop((namespace, name), None)
            self.versions.pop((namespace, name), None)
            return (namespace, name)
        owner = self.placed.pop((kind, namespace, name), None)
        if owner is not None:
            self._drop(kind, (namespace, name), owner)
            self.versions[owner] += 1
        return owner

    def owner(self, key: OwnerKey) -> Mapping[str, Any] | None:
        return self.owners.get(key)

    def children_of(self, key: OwnerKey) -> list[Child]:
        return list(self.children.get(key, {}).values())

    def pods_of(self, key: OwnerKey) -> list[PodInfo]:
        return list(self.pods.get(key, {}).values())


def _managed(body: Mapping[str, Any]) -> bool:
    labels = (body.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY) == "kubellm")


_UNREAD_METADATA = ("managedFields", "ownerReferences")
_UNREAD_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def _lean(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The owner as a reconcile reads it: without what no reconcile reads and costs memory
    for every object (field managers, kubectl's copy of the whole last-applied object)."""
    meta = body.get("metadata") or {}
    lean = {k: v for k, v in meta.items() if k not in _UNREAD_METADATA}
    annotations = meta.get("annotations")
    if annotations and any(a in annotations for a in _UNREAD_ANNOTATIONS):
        lean["annotations"] = {k: v for k, v in annotations.items() if k not in _UNREAD_ANNOTATIONS}
    return {**body, "metadata": lean}
