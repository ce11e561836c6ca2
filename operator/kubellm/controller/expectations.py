"""What this process just wrote, so a watch that lags behind causes no second write.

Like the ReplicaSet controller's expectations: after an apply or a delete, the next
reconciles may still read the old child from the watch-fed index; until the watch shows the
write (or a short TTL passes) that child is left alone. Once the watch has shown it, the
memory is dropped, so a child deleted or edited afterwards is seen as missing or drifted at
the very next reconcile. Memory can delay a write by at most the TTL, never hide one.

One more thing is remembered: the digest the API server's copy had right after kubellm
applied an object. The server can spell a field otherwise (`1k` for `1000`, list order);
comparing with what it answered keeps such a child from being applied again and again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kubellm.controller.children import Child

Key = tuple[str, str, str]  # kind, namespace, name
TTL_SECONDS = 15.0


@dataclass
class Expectations:
    """One LLMDeployment's children."""

    ttl: float = TTL_SECONDS
    # desired digest, the resourceVersion the API server answered, when
    applied: dict[Key, tuple[str, str, float]] = field(default_factory=dict)
    answered: dict[Key, tuple[str, str]] = field(default_factory=dict)  # desired -> live digest
    deleted: dict[Key, float] = field(default_factory=dict)  # when

    def needs_apply(
        self, key: Key, desired: str, wanted_live: str, live: Child | None, now: float
    ) -> bool:
        """Apply unless `live` holds `desired` untouched, or our own apply is not seen yet."""
        accepted = self._accepted(key, desired, wanted_live)
        in_sync = live is not None and live.applied == desired and live.live in accepted
        if in_sync and live is not None and not live.foreign:
            self.applied.pop(key, None)  # seen: from now on the index is the truth
            return False
        mine = self.applied.get(key)
        if mine is not None and mine[0] == desired and now - mine[2] < self.ttl:
            if live is not None and live.resource_version == mine[1]:
                del self.applied[key]  # our write is seen, yet not right: changed since
                return True
            return False  # the watch has not shown our write yet
        return True

    def _accepted(self, key: Key, desired: str, wanted_live: str) -> set[str]:
        answered = self.answered.get(key)
        learned = {answered[1]} if answered and answered[0] == desired else set()
        return {wanted_live, *learned}

    def record_apply(self, key: Key, desired: str, answered: Child, now: float) -> None:
        """After an apply: `answered` summarizes the object the API server returned."""
        self.applied[key] = (desired, answered.resource_version or "", now)
        answered_live = answered.live or ""
        self.answered[key] = (desired, answered_live)
        self.deleted.pop(key, None)

    def needs_delete(self, key: Key, now: float) -> bool:
        when = self.deleted.get(key)
        return when is None or now - when >= self.ttl

    def record_delete(self, key: Key, now: float) -> None:
        self.deleted[key] = now
        self.applied.pop(key, None)
        self.answered.pop(key, None)

    def forget_gone(self, present: set[Key]) -> None:
        """Deletions the watch has shown need no more memory."""
        for key in [k for k in self.deleted if k not in present]:
            del self.deleted[key]
