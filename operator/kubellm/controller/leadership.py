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
from typing import Any


def paused_by_peers(peers: Mapping[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """A live peer other than us with a priority at least ours pauses us (Kopf's rule)."""
    for peer_id, info in peers.items():
        if peer_id == identity or not isinstance(info, Mapping):
            continue
        seen = info.get("lastseen")
        if not seen:
            continue
        try:
            last = datetime.fromisoformat(str(seen).replace("Z", "+00:00"))
        except ValueError:
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

    def objects(self) -> list[tuple[str, str | None]]:
        """(kind, namespace) of every peering object this replica takes part in."""
        if not self.namespaces:
            return [("ClusterKopfPeering", None)]
        return [("KopfPeering", namespace) for namespace in self.namespaces]
