"""Whether this replica leads: the same rule Kopf's peering applies, read from the same object.

Kopf pauses its own watches when a live peer has a higher priority (or the same one), and
this replica's own work (the work queue's workers, resyncs) must pause with it, or two
replicas would write at once. The peering object's status lists every peer with its
priority and when it was last seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fnmatch import fnmatch
from typing import Any

from kubellm.times import parse_time


def paused_by_peers(peers: Mapping[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """A live peer other than us with a priority at least ours pauses us (Kopf's rule)."""
    for peer_id, info in peers.items():
        if peer_id == identity or not isinstance(info, Mapping):
            continue
        last = parse_time(info.get("lastseen"))
        if last is None:
            continue
        alive = last + timedelta(seconds=int(info.get("lifetime") or 60)) > now
        if alive and int(info.get("priority") or 0) >= priority:
            return True
    return False


@dataclass(frozen=True)
class Peering:
    """This replica's identity in Kopf's peering, and where the peering object lives."""

    name: str
    identity: str
    priority: int
    namespaces: tuple[str, ...]  # empty: cluster-wide (ClusterKopfPeering)

    def mine(self, namespace: str | None) -> bool:
        """Whether a KopfPeering in `namespace` is one this replica takes part in (Kopf peers
        in every namespace it serves, patterns such as `team-*` included)."""
        if not self.namespaces:
            return namespace is None
        return namespace is not None and any(fnmatch(namespace, p) for p in self.namespaces)
