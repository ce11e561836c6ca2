"""The Grafana dashboard shipped by the chart: valid JSON, generated from charts/hack, and
plotting the operator's and the engines' metrics."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "kubellm" / "dashboards" / "kubellm.json"

OPERATOR_METRICS = [
    "kubellm_revision_ready_seconds_bucket",
    "kubellm_rollouts_total",
    "kubellm_rollout_success_ratio",
    "kubellm_canary_weight",
    "kubellm_llmdeployment_replicas",
    "kubellm_llmdeployment_ready_replicas",
    "kubellm_reconcile_total",
    "kubellm_reconcile_errors_total",
    "kubellm_reconcile_duration_seconds_bucket",
]
ENGINE_SERIES = [
    "kubellm:requests:rate1m",
    "kubellm:generation_tokens:rate1m",
    "kubellm:request_latency_seconds_bucket:rate1m",
    "kubellm:time_to_first_token_seconds_bucket:rate1m",
    "kubellm:queue_length",
    "kubellm:requests_in_flight",
    "kubellm:kv_cache_utilization",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
]


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_is_generated() -> None:
    spec = importlib.util.spec_from_file_location(
        "dashboard", ROOT / "charts" / "hack" / "dashboard.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), (
        "dashboards/kubellm.json is stale: run .venv/bin/python charts/hack/dashboard.py"
    )


def test_dashboard_references_the_metrics() -> None:
    text = "\n".join(exprs(load()))
    for metric in OPERATOR_METRICS + ENGINE_SERIES:
        assert re.search(re.escape(metric) + r"[{\[ )]", text), f"no panel plots {metric}"
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, sum by (revision, le) (kubellm:request_latency" in text


def test_dashboard_variables() -> None:
    variables = {v["name"]: v for v in load()["templating"]["list"]}
    assert {"datasource", "namespace", "llmdeployment", "revision"} <= set(variables)
    for name in ("namespace", "llmdeployment", "revision"):
        assert variables[name]["includeAll"] and variables[name]["multi"]
    for expr in exprs(load()):
        if "kubellm:" in expr and "DCGM" not in expr:
            assert 'revision=~"$revision"' in expr, expr


def test_dashboard_panels_are_well_formed() -> None:
    dashboard = load()
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for target in panel["targets"]:
                assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
