"""What this operator process last wrote, to see past watch-fed indices that lag behind.

Right after a write, a second reconcile (a timer firing, an event) can still read the old
child or status from the indices. Without memory it would write the same thing again and
post the same Event twice. Like controller-runtime's expectations, the memory only ever
suppresses a write that this process already made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubellm.controller.children import Child

Key = tuple[str, str, str]  # kind, namespace, name


@dataclass
class Expectations:
    applied: dict[Key, tuple[str, int | None]] = field(default_factory=dict)
    replicas: dict[Key, int] = field(default_factory=dict)
    deleted: set[Key] = field(default_factory=set)
    statuses: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)

    def needs_apply(self, key: Key, digest: str, live: Child | None) -> bool:
        """Apply unless this digest is in place; someone else's later edit is drift."""
        mine = self.applied.get(key)
        if mine is None:
            return live is None or live.applied_hash != digest
        if mine[0] != digest:
            return True
        drifted = live is not None and None not in (live.generation, mine[1])
        return drifted and live is not None and (live.generation or 0) > (mine[1] or 0)

    def record_apply(self, key: Key, digest: str, generation: int | None) -> None:
        self.applied[key] = (digest, generation)
        self.deleted.discard(key)

    def needs_scale(self, key: Key, replicas: int, live: Child) -> bool:
        return live.replicas != replicas and self.replicas.get(key) != replicas

    def record_scale(self, key: Key, replicas: int) -> None:
        self.replicas[key] = replicas

    def needs_delete(self, key: Key) -> bool:
        return key not in self.deleted

    def record_delete(self, key: Key) -> None:
        self.deleted.add(key)
        self.applied.pop(key, None)
        self.replicas.pop(key, None)

    def forget_gone(self, present: set[Key]) -> None:
        """Deletions the index has caught up with need no more memory."""
        self.deleted &= present

    def status(
        self, uid: str, resource_version: str | None, stored: dict[str, Any]
    ) -> dict[str, Any]:
        """The status last written, when the body read is older than that write."""
        mine = self.statuses.get(uid)
        if (
            mine
            and resource_version
            and resource_version.isdigit()
            and int(resource_version) < mine[0]
        ):
            return mine[1]
        return stored

    def record_status(self, uid: str, resource_version: str | None, status: dict[str, Any]) -> None:
        if resource_version and resource_version.isdigit():
            self.statuses[uid] = (int(resource_version), status)

    def forget(self, uid: str) -> None:
        self.statuses.pop(uid, None)
