"""Drift detection from managedFields: what kubellm still owns of a live child."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kubellm.controller.drift import desired_digest, foreign, live_digest, normalize, overlay

DESIRED: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "x", "namespace": "ns", "labels": {"app": "x"}},
    "spec": {
        "selector": {"app": "x"},
        "ports": [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}],
    },
}
OWNED = {
    "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
    "f:spec": {
        "f:selector": {},
        "f:ports": {
            ".": {},
            'k:{"port":8000,"protocol":"TCP"}': {
                ".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}, "f:protocol": {},
            },
        },
    },
}  # fmt: skip


def live(obj: dict[str, Any] | None = None, *entries: dict[str, Any]) -> dict[str, Any]:
    """A live copy as the API server returns it: server fields, defaults, managedFields."""
    body = copy.deepcopy(obj or DESIRED)
    body["metadata"].update(uid="u", resourceVersion="7")
    body["metadata"]["managedFields"] = [
        {"manager": "kubellm", "operation": "Apply", "fieldsV1": OWNED},
        *entries,
    ]
    body["spec"].update(clusterIP="10.96.0.10", type="ClusterIP", sessionAffinity="None")
    body["status"] = {"loadBalancer": {}}
    return body


def test_an_untouched_child_matches_what_was_applied() -> None:
    assert live_digest(live()) == desired_digest(DESIRED)
    assert not foreign(live())


def test_a_changed_value_moves_to_the_editor_and_shows_as_drift() -> None:
    edited = copy.deepcopy(DESIRED)
    edited["spec"]["ports"][0]["port"] = 9999  # kubectl edit: ownership moves to the editor
    body = live(
        edited, {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {}}}
    )
    body["metadata"]["managedFields"][0]["fieldsV1"] = {
        "f:metadata": OWNED["f:metadata"],
        "f:spec": {"f:selector": {}},
    }
    assert live_digest(body) != desired_digest(DESIRED)
    assert foreign(body)


def test_a_removed_field_shows_as_drift() -> None:
    body = live()
    del body["metadata"]["labels"]["app"]
    assert live_digest(body) != desired_digest(DESIRED)


def test_status_and_scale_subresource_managers_are_not_foreign() -> None:
    body = live(
        None,
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status",
         "fieldsV1": {"f:status": {}}},
        {"manager": "kube-controller-manager", "operation": "Update",
         "fieldsV1": {"f:metadata": {"f:annotations": {}}}},
    )  # fmt: skip
    assert not foreign(body)


@pytest.mark.parametrize(
    ("ours", "servers"),
    [("500m", "0.5"), ("1000", "1k"), ("2Gi", "2048Mi"), (8000, "8000"), ("16Gi", "17179869184")],
)
def test_the_servers_spelling_of_numbers_and_quantities_is_not_drift(
    ours: Any, servers: Any
) -> None:
    assert normalize({"q": ours}) == normalize({"q": servers})


def test_different_quantities_differ() -> None:
    assert normalize({"q": "1Gi"}) != normalize({"q": "1G"})
    assert normalize({"q": True}) != normalize({"q": "1"})


def test_overlay_keeps_server_fields_and_drops_foreign_list_items() -> None:
    edited = live()
    edited["spec"]["ports"] = [
        {"name": "http", "port": 9999, "targetPort": "http", "protocol": "TCP", "nodePort": 31000},
        {"name": "extra", "port": 7000, "protocol": "TCP"},
    ]
    repaired = overlay(edited, DESIRED)
    assert repaired["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP", "nodePort": 31000}
    ]
    assert repaired["spec"]["clusterIP"] == "10.96.0.10"
    assert repaired["metadata"]["resourceVersion"] == "7"
