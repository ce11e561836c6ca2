"""Shared helpers for the offline tests: examples, and spec builders."""

from __future__ import annotations

import copy
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from hypothesis import settings

# CI runs the same examples every time (a red build is reproducible); `make fuzz` explores.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("fuzz", max_examples=3000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
KUBERNETES_VERSION = "1.36.0"


def load_example(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


BASE: dict[str, Any] = {
    "apiVersion": "kubellm.io/v1alpha1",
    "kind": "LLMDeployment",
    "metadata": {
        "name": "demo",
        "namespace": "team-a",
        "uid": "0f6c5d5e-1111-2222-3333-444455556666",
    },
    "spec": {
        "model": {"name": "meta-llama/Llama-3.1-8B-Instruct"},
        "engine": {"type": "vllm", "maxContextLength": 8192},
        "resources": {"gpu": {"type": "H100-80GB"}},
        "replicas": 2,
    },
}


def llmd(**spec_changes: Any) -> dict[str, Any]:
    """The base LLMDeployment with top-level spec sections replaced or merged (dicts merge)."""
    obj = copy.deepcopy(BASE)
    for key, value in spec_changes.items():
        current = obj["spec"].get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            obj["spec"][key] = {**current, **value}
        else:
            obj["spec"][key] = value
    return obj


@pytest.fixture(params=EXAMPLES, ids=[p.stem for p in EXAMPLES])
def example(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def e2e_module(name: str) -> ModuleType:
    """A helper module that lives beside the cluster tests (e2e/NAME.py), loaded by path."""
    path = ROOT / "e2e" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"kubellm_e2e_{name}", path)
    assert spec and spec.loader
    module = sys.modules.get(spec.name)
    if module is None:
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return module
