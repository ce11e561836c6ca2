"""Properties of validation: whatever the input, problems name a field and never crash."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import BASE
from kubellm.render import render_children, resolve, single_revision
from kubellm.render.resolve import InvalidSpecError

FIELD_ROOTS = ("spec", "metadata", "apiVersion", "kind")
WORDS = ["auto", "vllm", "tgi", "trtllm", "sglang", "L4", "H100-80GB", "fp8", "awq", "x"]
WORDS += ["0s", "30s", "2h", "bfloat16", "int8", "nvfp4"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=200_000),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-2, max_value=4),
    st.sampled_from(WORDS),
)
values = st.recursive(
    scalars,
    lambda inner: st.dictionaries(st.sampled_from(["type", "name", "weight"]), inner, max_size=2),
    max_leaves=4,
)
PATHS = [
    ("engine", "type"),
    ("engine", "quantization"),
    ("engine", "kvCacheDtype"),
    ("engine", "maxContextLength"),
    ("engine", "gpuMemoryUtilization"),
    ("engine", "extraArgs"),
    ("engine", "startupTimeout"),
    ("model", "servedName"),
    ("resources", "minConcurrentSequences"),
    ("resources", "tensorParallel"),
    ("resources", "pipelineParallel"),
    ("resources", "gpu"),
    ("model", "name"),
    ("model", "architecture"),
    ("replicas",),
    ("autoscaling",),
    ("rollout", "canary"),
]


def mutate(changes: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    for path, value in changes:
        node = obj["spec"]
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(node.get(key, {}), dict) else {}
        node[path[-1]] = value
    return obj


# Derandomized: the same 300 inputs on every run (a property that fails only on some seeds
# is a flaky test), plus the inputs that once crashed resolve() with a bare ValueError.
@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(PATHS), values), min_size=1, max_size=4))
@example([(("resources", "tensorParallel"), False)])
@example([(("resources", "tensorParallel"), True)])
@example([(("resources", "pipelineParallel"), 0)])
@example([(("resources", "pipelineParallel"), -3)])
@example([(("resources", "tensorParallel"), 1.5)])
@example([(("engine", "extraArgs"), ["--tensor_parallel_size=2"])])
@example([(("engine", "startupTimeout"), "0s")])
def test_every_problem_names_a_field(changes: list[tuple[tuple[str, ...], Any]]) -> None:
    obj = mutate(changes)
    try:
        resolved = resolve(obj)
    except InvalidSpecError as invalid:
        assert invalid.problems
        for problem in invalid.problems:
            assert problem.field.split(".")[0] in FIELD_ROOTS, problem
            assert problem.message
        return
    objects = render_children(single_revision(resolved))
    assert objects and all(o["metadata"]["name"] for o in objects)


def test_a_bool_parallelism_is_a_problem_at_its_field() -> None:
    for field in ("tensorParallel", "pipelineParallel"):
        for value in (False, True, 0, "2"):
            obj = mutate([(("resources", field), value)])
            try:
                resolve(obj)
            except InvalidSpecError as invalid:
                paths = [p.field for p in invalid.problems]
                assert paths == [f"spec.resources.{field}"], (value, invalid.problems)
            else:
                raise AssertionError(f"{field}={value!r} was accepted")
