"""Revision snapshots: everything a revision is made of, and no secret material."""

from __future__ import annotations

import json

import pytest

from conftest import llmd
from kubellm.api.models import LLMDeploymentSpec
from kubellm.render import render_documents
from kubellm.rollout.revision import (
    MissingValues,
    known_values,
    restore,
    revision_of,
    snapshot,
    spec_literals,
    workload_literals,
)

IMAGE = "vllm/vllm-openai:v0.19.0"
SECRET = "sk-live-0123456789"


def spec_with_secrets(**engine: object) -> LLMDeploymentSpec:
    obj = llmd(
        engine={
            "type": "vllm",
            "maxContextLength": 8192,
            "env": [
                {"name": "OPENAI_API_KEY", "value": SECRET},
                {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
            ],
            "extraArgs": ["--api-key", SECRET, "--enable-prefix-caching", f"--hf-token={SECRET}"],
            **engine,
        }
    )
    return LLMDeploymentSpec.model_validate(obj["spec"])


def test_a_snapshot_holds_no_literal_env_value_or_credential_flag() -> None:
    stored = json.dumps(snapshot(spec_with_secrets(), IMAGE))
    assert SECRET not in stored
    assert "--enable-prefix-caching" in stored and "secretKeyRef" in stored


def test_nothing_rendered_outside_the_pods_holds_the_secret() -> None:
    obj = llmd(engine=spec_with_secrets().engine.model_dump(by_alias=True, exclude_none=True))
    rendered = render_documents([obj]).objects
    for child in rendered:
        text = json.dumps(
            {k: v for k, v in child.items() if k != "spec"}
            | {"annotations": child["metadata"].get("annotations")}
        )
        assert SECRET not in text, child["kind"]
    [snap] = [c for c in rendered if c["kind"] == "ControllerRevision"]
    assert SECRET not in json.dumps(snap)


def test_a_revision_is_restored_from_the_current_spec_when_it_still_holds_the_values() -> None:
    old = spec_with_secrets()
    stored = snapshot(old, IMAGE)
    newer = spec_with_secrets(maxContextLength=4096)  # the canary changes something else
    restored = restore(stored, newer, known_values(spec_literals(newer)))
    assert revision_of(restored, IMAGE) == revision_of(old, IMAGE)
    assert restored.engine.max_context_length == 8192


def test_values_the_spec_dropped_come_from_the_running_workload_or_fail_by_name() -> None:
    old = spec_with_secrets()
    stored = snapshot(old, IMAGE)
    rotated = spec_with_secrets(env=[{"name": "OPENAI_API_KEY", "value": "sk-new"}], extraArgs=[])
    with pytest.raises(MissingValues) as missing:
        restore(stored, rotated, known_values(spec_literals(rotated)))
    assert missing.value.where == [
        "engine.env[OPENAI_API_KEY]",
        "engine.extraArgs[1]",
        "engine.extraArgs[3]",
    ]
    workload = render_documents(
        [llmd(engine=old.engine.model_dump(by_alias=True, exclude_none=True))]
    ).objects
    [deployment] = [c for c in workload if c["kind"] == "Deployment"]
    values = known_values(workload_literals(deployment))
    restored = restore(stored, rotated, values)
    assert revision_of(restored, IMAGE) == revision_of(old, IMAGE)


def test_template_env_values_are_redacted_and_restored_too() -> None:
    template = {
        "spec": {"containers": [{"name": "engine", "env": [{"name": "TOKEN", "value": SECRET}]}]}
    }
    obj = llmd(template=template)
    spec = LLMDeploymentSpec.model_validate(obj["spec"])
    stored = snapshot(spec, IMAGE)
    assert SECRET not in json.dumps(stored)
    restored = restore(stored, spec, known_values(spec_literals(spec)))
    assert revision_of(restored, IMAGE) == revision_of(spec, IMAGE)
