"""The vendored Kubernetes 1.36 types kubellm checks pass-through pod fields against.

Checked two ways against the kubernetes-validate package's JSON schemas of the same release
(generated from Kubernetes' own OpenAPI): the vendored definitions have the same fields and
required fields, and on random input (hypothesis) whatever the real schema refuses, ours does.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubellm.api.kubernetes import definitions, quantity_value, schema_problems

PREFIX = "io.k8s.api.core.v1."
VERSION = "v1.36.0-local-strict"


@cache
def upstream() -> dict[str, Any]:
    """kubernetes-validate's strict definitions (additionalProperties: false) for 1.36."""
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / VERSION
    loaded: dict[str, Any] = json.loads((root / "_definitions.json").read_text())["$defs"]
    return loaded


def full_name(short: str) -> str:
    return short if short.startswith("io.k8s.") else PREFIX + short


def upstream_accepts(kind: str, value: Any) -> bool:
    schema = {"$ref": f"#/$defs/{full_name(kind)}", "$defs": upstream()}
    return jsonschema.Draft202012Validator(schema).is_valid(value)


def test_vendored_schema_is_kubernetes_1_36() -> None:
    assert json.loads(
        (Path(__file__).parents[1] / "operator/kubellm/api/kubernetes-schema.json").read_text()
    )["kubernetesVersion"].startswith("1.36.")


def test_vendored_types_have_upstreams_fields_and_required_fields() -> None:
    compared = 0
    for name, node in definitions().items():
        theirs = upstream()[full_name(name)]
        assert sorted(node.get("properties", {})) == sorted(theirs.get("properties", {})), name
        assert sorted(node.get("required", [])) == sorted(theirs.get("required", [])), name
        compared += 1
    assert compared >= 100  # the closure of every type an LLMDeployment passes through


REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
TERMS = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "values": ["a"]}]}]}
ANTI = {"podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}, "weight": 100}
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"
ITEM = {"key": "ca.crt", "path": "ca.crt"}


# The last column: the JSON schema itself refuses it (others are rules the API server checks in
# code: one source per volume, DNS names, quantity syntax, int32 ranges).
@pytest.mark.parametrize(
    ("kind", "value", "path", "message", "in_schema"),
    [
        ("Toleration", {"key": "gpu", "operator": 1}, ".operator", "must be a string", True),
        ("Toleration", {"key": "g", "tolerationSecs": 5}, ".tolerationSecs", "unknown", True),
        ("Affinity", {"nodeAffinity": {REQUIRED: {}}},
         f".nodeAffinity.{REQUIRED}.nodeSelectorTerms", "is required", True),
        ("Affinity", {"nodeAffinity": {REQUIRED: TERMS}},
         f".nodeAffinity.{REQUIRED}.nodeSelectorTerms[0].matchExpressions[0].operator",
         "is required", True),
        ("EnvVarSource", {"secretKeyRef": {"name": "hf"}}, ".secretKeyRef.key", "required", True),
        ("EnvVarSource", {"secretRef": {"name": "hf"}}, ".secretRef", "unknown field", True),
        ("Probe", {"httpGet": {"port": [8000]}}, ".httpGet.port", "integer or string", True),
        ("Volume", {"name": "ca"}, "", "exactly one source", False),
        ("Volume", {"name": "ca", "secret": {}, "emptyDir": {}}, "", "exactly one", False),
        ("Volume", {"name": "CA", "emptyDir": {}}, ".name", "not a DNS label", False),
        ("Container", {"name": "f", "resources": {"limits": {"memory": "lots"}}},
         ".resources.limits.memory", "not a quantity", False),
        ("Container", {"name": "f", "ports": [{"containerPort": 2**40}]},
         ".ports[0].containerPort", "int32", False),
    ],
)  # fmt: skip
def test_problems_name_the_field(
    kind: str, value: Any, path: str, message: str, in_schema: bool
) -> None:
    problems = schema_problems(value, kind)
    assert any(p == path and message in m for p, m in problems), problems
    assert upstream_accepts(kind, value) is not in_schema


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("Toleration", {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}),
        ("Toleration", {"key": "x", "operator": "Equal", "value": None}),  # null is unset
        ("Affinity", {"podAntiAffinity": {PREFERRED: [ANTI]}}),
        ("EnvVarSource", {"fieldRef": {"fieldPath": "metadata.name"}}),
        ("Volume", {"name": "ca", "configMap": {"name": "t", "items": [ITEM]}}),
        ("Container", {"name": "f", "image": "b", "resources": {"limits": {"memory": 1e9}}}),
    ],
)  # fmt: skip
def test_valid_objects_pass(kind: str, value: Any) -> None:
    assert schema_problems(value, kind) == []
    assert upstream_accepts(kind, value)


def test_quantities_are_read_like_kubernetes() -> None:
    assert quantity_value("16Gi") == 16 * 2**30
    assert quantity_value("500m") == Decimal("0.5")
    assert quantity_value("1E") == 10**18
    assert quantity_value("2e3") == 2000
    with pytest.raises(ValueError):
        quantity_value("16GB")


# Random fragments built from the real field names, with values of every JSON type.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "Exists", "NoSchedule", "In", "16Gi", "500m", "x y", "-1"]),
)


def fragments(kind: str, depth: int = 3) -> st.SearchStrategy[Any]:
    """Objects shaped like `kind`: mostly its real fields, sometimes an unknown one."""
    node = definitions()[kind]
    properties = sorted(node.get("properties", {}))
    if not properties or depth == 0:
        return scalars
    keys = st.sampled_from([*properties, "unknownField"])

    def value(key: str) -> st.SearchStrategy[Any]:
        child = node.get("properties", {}).get(key, {})
        ref = child.get("$ref") or child.get("items", {}).get("$ref")
        inner = fragments(ref, depth - 1) if ref in definitions() else scalars
        return st.one_of(inner, st.lists(inner, max_size=2), scalars)

    return st.one_of(
        scalars,
        keys.flatmap(lambda k: st.fixed_dictionaries({k: value(k)})),
        st.lists(keys, max_size=3, unique=True).flatmap(
            lambda ks: st.fixed_dictionaries({k: value(k) for k in ks})
        ),
    )


@pytest.mark.parametrize(
    "kind", ["Toleration", "Affinity", "EnvVarSource", "Volume", "TopologySpreadConstraint"]
)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_whatever_kubernetes_refuses_kubellm_refuses(kind: str, data: st.DataObject) -> None:
    value = data.draw(fragments(kind))
    problems = schema_problems(value, kind)
    if not upstream_accepts(kind, value):
        assert problems, f"kubernetes refuses {value!r}, kubellm accepted it"
    for path, message in problems:
        assert message and (path == "" or path[0] in ".["), (path, message)
