"""The operator's memory of its own writes: it delays a write briefly, never hides one."""

from __future__ import annotations

from kubellm.controller.children import Child
from kubellm.controller.expectations import TTL_SECONDS, Expectations

KEY = ("Deployment", "ns", "x-rev")


def child(applied: str = "d1", live: str = "l1", rv: str = "10", foreign: bool = False) -> Child:
    return Child(
        "Deployment", "ns", "x-rev", applied=applied, live=live, resource_version=rv,
        foreign=foreign,
    )  # fmt: skip


def test_an_unchanged_child_needs_nothing() -> None:
    assert not Expectations().needs_apply(KEY, "d1", "l1", child(), now=0)


def test_a_missing_changed_drifted_or_foreign_child_is_applied() -> None:
    memory = Expectations()
    assert memory.needs_apply(KEY, "d1", "l1", None, now=0)
    assert memory.needs_apply(KEY, "d2", "l2", child(), now=0)  # the spec changed
    assert memory.needs_apply(KEY, "d1", "l1", child(live="edited"), now=0)
    assert memory.needs_apply(KEY, "d1", "l1", child(foreign=True), now=0)


def test_our_own_write_is_waited_for_but_only_until_the_ttl() -> None:
    memory = Expectations()
    memory.record_apply(KEY, "d2", child("d2", "l2", rv="11"), now=0)
    assert not memory.needs_apply(KEY, "d2", "l2", None, now=1)  # the watch lags
    assert not memory.needs_apply(KEY, "d2", "l2", child(), now=1)  # an older copy
    assert memory.needs_apply(KEY, "d2", "l2", None, now=TTL_SECONDS)  # never shown: again


def test_once_the_watch_showed_our_write_a_deletion_is_seen_at_once() -> None:
    memory = Expectations()
    memory.record_apply(KEY, "d2", child("d2", "l2", rv="11"), now=0)
    assert not memory.needs_apply(KEY, "d2", "l2", child("d2", "l2", rv="11"), now=1)
    assert memory.needs_apply(KEY, "d2", "l2", None, now=2)  # deleted after we saw it


def test_an_edit_right_after_our_write_is_repaired_within_the_ttl() -> None:
    """ResourceVersions are compared for equality only: a copy that is not our write may be
    older or newer, so it waits out the TTL, unless it is our write and already drifted."""
    memory = Expectations()
    memory.record_apply(KEY, "d2", child("d2", "l2", rv="11"), now=0)
    assert not memory.needs_apply(KEY, "d2", "l2", child("d2", "edited", rv="12"), now=1)
    assert memory.needs_apply(KEY, "d2", "l2", child("d2", "edited", rv="12"), now=TTL_SECONDS)
    assert memory.needs_apply(KEY, "d2", "l2", child("d2", "l2", rv="11", foreign=True), now=1)


def test_what_the_server_answered_counts_as_in_sync() -> None:
    """The server may spell a field otherwise: its answer is not drift."""
    memory = Expectations()
    memory.record_apply(KEY, "d2", child("d2", "spelled-by-server", rv="11"), now=0)
    assert not memory.needs_apply(KEY, "d2", "l2", child("d2", "spelled-by-server"), now=1)
    assert not memory.needs_apply(KEY, "d2", "l2", child("d2", "spelled-by-server"), now=99)


def test_deletes_are_not_repeated_within_the_ttl_and_forgotten_once_gone() -> None:
    memory = Expectations()
    assert memory.needs_delete(KEY, now=0)
    memory.record_delete(KEY, now=0)
    assert not memory.needs_delete(KEY, now=1)
    assert memory.needs_delete(KEY, now=TTL_SECONDS)
    memory.forget_gone(set())
    assert memory.deleted == {}
