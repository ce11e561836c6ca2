"""Argo CD integration: the LLMDeployment health check run by a real Lua 5.1 (Argo CD's
gopher-lua is 5.1), the argocd-cm patch that installs it, and the Application."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

lua51 = pytest.importorskip("lupa.lua51")

ROOT = Path(__file__).resolve().parents[1]
ARGOCD = ROOT / "manifests" / "argocd"
HEALTH_LUA = ARGOCD / "health.lua"
CM_KEY = "resource.customizations.health.kubellm.io_LLMDeployment"


def to_lua(runtime: Any, value: Any) -> Any:
    """Python JSON-like value -> Lua value the way Argo CD hands `obj` to the script."""
    if isinstance(value, dict):
        return runtime.table_from({k: to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([to_lua(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> dict[str, Any]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = to_lua(runtime, obj)
    script = HEALTH_LUA.read_text()
    result = runtime.execute(script)
    assert lua51.lua_type(result) == "table"
    out = dict(result.items())
    assert set(out) == {"status", "message"}, out
    assert isinstance(out["message"], str) and out["message"]
    return out


def cond(ctype: str, status: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason or ctype,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 3,
    }


def llmd(status: dict[str, Any] | None, generation: int = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "kubellm.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "chat", "namespace": "ml", "generation": generation},
        "spec": {"model": {"name": "meta-llama/Llama-3.1-8B-Instruct"}, "engine": {"type": "vllm"}},
    }
    if status is not None:
        obj["status"] = status
    return obj


READY = {
    "observedGeneration": 3,
    "phase": "Ready",
    "conditions": [
        cond("SpecValid", "True"),
        cond("Ready", "True", "AllReplicasReady", "2/2 replicas ready on revision 5d8f"),
        cond("Progressing", "False", "RolloutComplete"),
        cond("Degraded", "False"),
    ],
}


def with_conditions(*conditions: dict[str, Any], phase: str) -> dict[str, Any]:
    status = copy.deepcopy(READY)
    status["phase"] = phase
    by_type = {c["type"]: c for c in status["conditions"]}
    by_type.update({c["type"]: c for c in conditions})
    status["conditions"] = list(by_type.values())
    return status


def test_ready_is_healthy() -> None:
    assert health(llmd(READY)) == {
        "status": "Healthy",
        "message": "2/2 replicas ready on revision 5d8f",
    }


def test_no_status_is_progressing() -> None:
    result = health(llmd(None))
    assert result["status"] == "Progressing"


def test_stale_generation_is_progressing_even_if_ready() -> None:
    result = health(llmd(READY, generation=4))
    assert result["status"] == "Progressing"
    assert "generation 4" in result["message"]


def test_missing_observed_generation_is_progressing() -> None:
    status = copy.deepcopy(READY)
    del status["observedGeneration"]
    assert health(llmd(status))["status"] == "Progressing"


def test_canary_in_progress() -> None:
    status = with_conditions(
        cond("Ready", "False", "CanaryInProgress", "canary at 25% (step 2/4)"),
        cond("Progressing", "True", "CanaryStep", "canary 5d8f at weight 25, step 2 of 4"),
        phase="Progressing",
    )
    assert health(llmd(status)) == {
        "status": "Progressing",
        "message": "canary 5d8f at weight 25, step 2 of 4",
    }


def test_degraded_condition() -> None:
    status = with_conditions(
        cond("Ready", "False", "ReplicasUnavailable"),
        cond("Degraded", "True", "RolledBack", "canary failed analysis: TTFT p95 3.2s > 2s"),
        phase="Degraded",
    )
    assert health(llmd(status)) == {
        "status": "Degraded",
        "message": "canary failed analysis: TTFT p95 3.2s > 2s",
    }


@pytest.mark.parametrize("phase", ["Degraded", "Failed"])
def test_degraded_or_failed_phase_without_condition(phase: str) -> None:
    status = {"observedGeneration": 3, "phase": phase, "conditions": []}
    result = health(llmd(status))
    assert result["status"] == "Degraded"
    assert phase in result["message"]


def test_spec_invalid_is_degraded_with_its_message() -> None:
    message = "spec.resources.tensorParallel: 3 does not divide the model's 64 attention heads"
    status = {
        "observedGeneration": 3,
        "phase": "Failed",
        "conditions": [
            cond("SpecValid", "False", "InvalidSpec", message),
            cond("Ready", "False", "SpecInvalid"),
        ],
    }
    assert health(llmd(status)) == {"status": "Degraded", "message": message}


def test_spec_invalid_wins_over_ready() -> None:
    status = with_conditions(cond("SpecValid", "False", "InvalidSpec", "bad"), phase="Ready")
    assert health(llmd(status))["status"] == "Degraded"


def test_pending_without_conditions() -> None:
    result = health(llmd({"observedGeneration": 3, "phase": "Pending"}))
    assert result == {"status": "Progressing", "message": "Phase Pending"}


def test_reason_used_when_message_empty() -> None:
    status = with_conditions(
        cond("Ready", "False", "WaitingForPods"),
        cond("Progressing", "True", "WaitingForPods", ""),
        phase="Progressing",
    )
    assert health(llmd(status)) == {"status": "Progressing", "message": "WaitingForPods"}


def test_argocd_cm_patch_embeds_health_lua_verbatim() -> None:
    patch = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert patch["metadata"] == {
        "name": "argocd-cm",
        "namespace": "argocd",
        "labels": patch["metadata"]["labels"],
    }
    assert patch["data"][CM_KEY] == HEALTH_LUA.read_text()
    kubernetes_validate.validate(patch, "1.31.0", strict=True)


def test_application_installs_the_chart() -> None:
    app = yaml.safe_load((ARGOCD / "application.yaml").read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1"
    assert app["kind"] == "Application"
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").exists()
    assert app["spec"]["destination"]["namespace"] == "kubellm-system"
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    # The values it sets are accepted by the chart's schema.
    with helm.Chart.load(str(ROOT / source["path"])) as chart:
        chart.validate_schema(chart.merge_values(source["helm"]["valuesObject"]))
