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
from kubellm.rollout.pods import PodInfo

OwnerKey = tuple[str, str]  # namespace, name
OWNER_KIND = "LLMDeployment"
POD_KIND = "Pod"
LISTING_QUIET_SECONDS = 2.0  # a listing's events arrive in a burst


@dataclass
class _Listing:
    """Objects of one kind seen since a listing began, to find those no longer there."""

    started: float
    seen: set[tuple[str, str]] = field(default_factory=set)  # namespace, name


@dataclass
class Cache:
    clock: Callable[[], float] = time.monotonic
    owners: dict[OwnerKey, Mapping[str, Any]] = field(default_factory=dict)
    children: defaultdict[OwnerKey, dict[tuple[str, str], Child]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    pods: defaultdict[OwnerKey, dict[str, PodInfo]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    relisting: dict[str, _Listing] = field(default_factory=dict)
    # where each object was filed, to move or drop it when its owner label changes
    placed: dict[tuple[str, str, str], OwnerKey] = field(default_factory=dict)

    def observe(self, kind: str, event: str | None, body: Mapping[str, Any]) -> OwnerKey | None:
        """Take one watch event (type None: part of a listing); returns the owner it concerns."""
        meta = body.get("metadata") or {}
        ident = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        self._track_listing(kind, event, ident)
        if kind == OWNER_KIND:
            if event == "DELETED":
                self.owners.pop(ident, None)
            else:
                self.owners[ident] = body
            return ident
        previous = self.placed.pop((kind, *ident), None)
        if previous is not None:
            self._drop(kind, ident, previous)
        key = owner_key(body)
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
        if event is not None:
            if kind in self.relisting:
                self.relisting[kind].seen.add(ident)
            return
        listing = self.relisting.setdefault(kind, _Listing(self.clock()))
        listing.seen.add(ident)

    def relists_due(self) -> list[str]:
        """Kinds whose listing burst is over: time to look for objects it did not show."""
        now = self.clock()
        return [k for k, v in self.relisting.items() if now - v.started >= LISTING_QUIET_SECONDS]

    def unseen(self, kind: str) -> list[tuple[str, str]]:
        """Objects of `kind` in the cache that the last listing did not show (may be gone)."""
        listing = self.relisting.pop(kind, None)
        seen = listing.seen if listing else set()
        if kind == OWNER_KIND:
            return [k for k in self.owners if k not in seen]
        return [(ns, name) for k, ns, name in self.placed if k == kind and (ns, name) not in seen]

    def forget(self, kind: str, namespace: str, name: str) -> OwnerKey | None:
        """An object the API no longer has: drop it; returns the owner to reconcile."""
        if kind == OWNER_KIND:
            self.owners.pop((namespace, name), None)
            return (namespace, name)
        owner = self.placed.pop((kind, namespace, name), None)
        if owner is not None:
            self._drop(kind, (namespace, name), owner)
        return owner

    def owner(self, key: OwnerKey) -> Mapping[str, Any] | None:
        return self.owners.get(key)

    def children_of(self, key: OwnerKey) -> list[Child]:
        return list(self.children.get(key, {}).values())

    def pods_of(self, key: OwnerKey) -> list[PodInfo]:
        return list(self.pods.get(key, {}).values())
