"""What the rollout planner hands the renderer: one entry per revision that should exist."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RevisionTarget:
    """One live revision and its share: what the rollout planner decided."""

    revision: str
    engine: str
    replicas: int
    weight: int
