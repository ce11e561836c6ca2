"""The operator's memory of its own writes: it only ever suppresses a write it already made."""

from __future__ import annotations

from kubellm.controller.children import Child
from kubellm.controller.expectations import Expectations

KEY = ("Deployment", "ns", "x-rev")


def child(applied_hash: str | None = "h1", generation: int | None = 1, replicas: int = 2) -> Child:
    return Child(
        "Deployment", "ns", "x-rev", "rev", applied_hash, generation, replicas, 0, {}, None
    )


def test_first_apply_and_a_lagging_index() -> None:
    memory = Expectations()
    assert memory.needs_apply(KEY, "h1", None)
    memory.record_apply(KEY, "h1", 1)
    assert not memory.needs_apply(KEY, "h1", None)  # the index has not seen it yet
    assert not memory.needs_apply(KEY, "h1", child("h0", generation=0))  # older copy


def test_a_new_digest_or_someone_elses_edit_is_applied() -> None:
    memory = Expectations()
    memory.record_apply(KEY, "h1", 1)
    assert memory.needs_apply(KEY, "h2", child())
    assert memory.needs_apply(KEY, "h1", child(generation=2))  # edited after our apply


def test_after_a_restart_the_annotation_decides() -> None:
    memory = Expectations()
    assert not memory.needs_apply(KEY, "h1", child("h1"))
    assert memory.needs_apply(KEY, "h2", child("h1"))


def test_scale_and_delete_are_made_once() -> None:
    memory = Expectations()
    assert memory.needs_scale(KEY, 1, child(replicas=2))
    memory.record_scale(KEY, 1)
    assert not memory.needs_scale(KEY, 1, child(replicas=2))
    assert memory.needs_delete(KEY)
    memory.record_delete(KEY)
    assert not memory.needs_delete(KEY)
    memory.forget_gone(set())
    assert memory.needs_delete(KEY)


def test_status_older_than_our_write_is_replaced_by_it() -> None:
    memory = Expectations()
    memory.record_status("uid", "120", {"phase": "Ready"})
    assert memory.status("uid", "110", {"phase": "Pending"}) == {"phase": "Ready"}
    assert memory.status("uid", "130", {"phase": "Degraded"}) == {"phase": "Degraded"}
