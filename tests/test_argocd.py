"""Argo CD integration: the LLMDeployment health check in Argo CD's own layout for resource
customizations (health.lua, health_test.yaml, testdata/), run by a real Lua 5.1 (Argo CD's
gopher-lua is 5.1) the way Argo CD's resource_customizations test runs it; the argocd-cm patch
that installs it; and the Application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from kubellm.api.models import LLMDeploymentStatus, RevisionStatus, RolloutStatus
from kubellm.status import Observation, compose

lua51 = pytest.importorskip("lupa.lua51")

ROOT = Path(__file__).resolve().parents[1]
ARGOCD = ROOT / "manifests" / "argocd"
CUSTOMIZATION = ARGOCD / "kubellm.io" / "LLMDeployment"
HEALTH_LUA = CUSTOMIZATION / "health.lua"
CM_KEY = "resource.customizations.health.kubellm.io_LLMDeployment"
CASES = yaml.safe_load((CUSTOMIZATION / "health_test.yaml").read_text())["tests"]


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
    result = runtime.execute(HEALTH_LUA.read_text())
    assert lua51.lua_type(result) == "table"
    out = dict(result.items())
    assert set(out) == {"status", "message"}, out
    assert isinstance(out["message"], str) and out["message"]
    return out


@pytest.mark.parametrize("case", CASES, ids=[Path(c["inputPath"]).stem for c in CASES])
def test_health_test_yaml(case: dict[str, Any]) -> None:
    """Each case of health_test.yaml, as Argo CD's own test would run it."""
    obj = yaml.safe_load((CUSTOMIZATION / case["inputPath"]).read_text())
    assert health(obj) == case["healthStatus"]


def test_every_status_argo_cd_knows_is_covered() -> None:
    covered = {c["healthStatus"]["status"] for c in CASES}
    assert covered == {"Healthy", "Progressing", "Suspended", "Degraded"}
    assert sorted(p.name for p in (CUSTOMIZATION / "testdata").iterdir()) == sorted(
        Path(c["inputPath"]).name for c in CASES
    )


def test_testdata_are_llmdeployments_the_crd_accepts() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "llmdeployments.kubellm.io.yaml").read_text())
    # OpenAPI v3.0 schemas use JSON Schema draft 4's boolean exclusiveMinimum.
    validator = jsonschema.Draft4Validator(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    for case in CASES:
        obj = yaml.safe_load((CUSTOMIZATION / case["inputPath"]).read_text())
        validator.validate(obj)
        if "status" in obj:
            LLMDeploymentStatus.model_validate(obj["status"])


# The operator's own status composition, judged by the script.

NOW = "2026-05-04T10:00:00Z"


def composed(
    *,
    generation: int = 3,
    ready: int = 4,
    rollout: RolloutStatus | None = None,
    problems: tuple[str, ...] = (),
    degraded: tuple[str, str] | None = None,
) -> dict[str, Any]:
    status = compose(
        Observation(
            now=NOW,
            generation=generation,
            previous=LLMDeploymentStatus(),
            spec_problems=problems,
            sizing=None,
            revisions=(RevisionStatus(revision="5d8f2c1a90", replicas=4, ready_replicas=ready),),
            desired_replicas=4,
            selector="app.kubernetes.io/instance=chat",
            rollout=rollout,
            history=(),
            stats=None,
            degraded=degraded,
        )
    )
    return {
        "apiVersion": "kubellm.io/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": "chat", "namespace": "ml", "generation": generation},
        "status": status.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


def test_the_operators_statuses_gate_gitops() -> None:
    assert health(composed())["status"] == "Healthy"
    assert health(composed(ready=2))["status"] == "Progressing"
    canary = RolloutStatus(
        stable_revision="5d8f2c1a90", canary_revision="a41b7e03c2", canary_weight=25,
        message="canary at 25%",
    )  # fmt: skip
    assert health(composed(rollout=canary)) == {"status": "Progressing", "message": "canary at 25%"}
    paused = canary.model_copy(update={"paused": True, "message": "waiting for kubellm promote"})
    assert health(composed(rollout=paused)) == {
        "status": "Suspended",
        "message": "waiting for kubellm promote",
    }
    rolled_back = composed(degraded=("RolledBack", "rolled back a41b7e03c2: errorRate 0.3"))
    assert health(rolled_back)["status"] == "Degraded"
    invalid = composed(problems=("spec.template.spec.volumes[0]: a volume needs one source",))
    assert health(invalid) == {
        "status": "Degraded",
        "message": "spec.template.spec.volumes[0]: a volume needs one source",
    }
    stale = composed()
    stale["metadata"]["generation"] = 4
    assert health(stale)["status"] == "Progressing"


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
