"""Generate charts/kubellm/dashboards/kubellm.json, the kubellm Grafana dashboard.

The dashboard is data; this script keeps it readable and reviewable. Run it after editing:

    .venv/bin/python charts/hack/dashboard.py

tests/test_chart_dashboard.py fails when the committed JSON differs from what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "kubellm" / "dashboards" / "kubellm.json"

DS = {"type": "prometheus", "uid": "${datasource}"}
# Engine series (recorded kubellm:* rules) carry namespace/llmdeployment/revision labels.
SEL = 'namespace=~"$namespace", llmdeployment=~"$llmdeployment", revision=~"$revision"'
# Operator series carry namespace/llmdeployment (no revision).
OSEL = 'namespace=~"$namespace", llmdeployment=~"$llmdeployment"'


def target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(
    title: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    description: str = "",
    kind: str = "timeseries",
    width: int = 8,
    height: int = 8,
    maximum: float | None = None,
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": unit}
    if maximum is not None:
        defaults["max"] = maximum
        defaults["min"] = 0
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"w": width, "h": height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [target(e, lg, chr(ord("A") + i)) for i, (e, lg) in enumerate(targets)],
    }


def row(title: str) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"w": 24, "h": 1},
        "panels": [],
    }


def quantiles(series: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (revision, le) ({series}{{{SEL}}}))",
            f"p{int(q * 100)} {{{{revision}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def panels() -> list[dict[str, Any]]:
    return [
        row("Traffic"),
        panel(
            "Requests / s",
            [(f"sum by (revision) (kubellm:requests:rate1m{{{SEL}}})", "{{revision}}")],
            unit="reqps",
        ),
        panel(
            "Generated tokens / s",
            [(f"sum by (revision) (kubellm:generation_tokens:rate1m{{{SEL}}})", "{{revision}}")],
            unit="short",
            description="The autoscaling signal: kubellm_generation_tokens_per_second per pod.",
        ),
        panel(
            "Error ratio",
            [(f"kubellm:request_error_ratio:rate1m{{{SEL}}}", "{{revision}}")],
            unit="percentunit",
        ),
        panel(
            "Request latency P50 / P95 / P99",
            quantiles("kubellm:request_latency_seconds_bucket:rate1m"),
            unit="s",
            width=12,
        ),
        panel(
            "Time to first token P50 / P95 / P99",
            quantiles("kubellm:time_to_first_token_seconds_bucket:rate1m"),
            unit="s",
            width=12,
            description="TGI exports no time-to-first-token histogram: its revisions are absent.",
        ),
        row("Engine saturation"),
        panel(
            "Queue length",
            [(f"sum by (pod) (kubellm:queue_length{{{SEL}}})", "{{pod}}")],
        ),
        panel(
            "Batch size (requests running)",
            [(f"sum by (pod) (kubellm:requests_in_flight{{{SEL}}})", "{{pod}}")],
        ),
        panel(
            "KV-cache utilization",
            [(f"max by (pod) (kubellm:kv_cache_utilization{{{SEL}}})", "{{pod}}")],
            unit="percentunit",
            maximum=1,
        ),
        panel(
            "GPU utilization",
            [
                (
                    'avg by (pod) (DCGM_FI_DEV_GPU_UTIL{namespace=~"$namespace", '
                    'pod=~"($llmdeployment)-.*"})',
                    "{{pod}}",
                )
            ],
            unit="percent",
            maximum=100,
            width=12,
            description="From NVIDIA DCGM exporter (pod attribution on, scraped with honorLabels).",
        ),
        panel(
            "GPU memory used",
            [
                (
                    'sum by (pod) (DCGM_FI_DEV_FB_USED{namespace=~"$namespace", '
                    'pod=~"($llmdeployment)-.*"}) * 1024 * 1024',
                    "{{pod}}",
                )
            ],
            unit="bytes",
            width=12,
            description="DCGM_FI_DEV_FB_USED is in MiB.",
        ),
        row("Rollouts"),
        panel(
            "Replicas (wanted / ready)",
            [
                (
                    f"sum by (llmdeployment) (kubellm_llmdeployment_replicas{{{OSEL}}})",
                    "wanted {{llmdeployment}}",
                ),
                (
                    f"sum by (llmdeployment) (kubellm_llmdeployment_ready_replicas{{{OSEL}}})",
                    "ready {{llmdeployment}}",
                ),
            ],
        ),
        panel(
            "Canary weight",
            [(f"kubellm_canary_weight{{{OSEL}}}", "{{llmdeployment}}")],
            unit="percent",
            maximum=100,
        ),
        panel(
            "Rollout success ratio",
            [(f"kubellm_rollout_success_ratio{{{OSEL}}}", "{{llmdeployment}}")],
            unit="percentunit",
            maximum=1,
        ),
        panel(
            "Rollout outcomes",
            [
                (
                    f"sum by (result) (increase(kubellm_rollouts_total{{{OSEL}}}[$__range]))",
                    "{{result}}",
                )
            ],
            kind="barchart",
        ),
        panel(
            "Rollout duration P95",
            [
                (
                    "histogram_quantile(0.95, sum by (result, le) "
                    "(rate(kubellm_rollout_duration_seconds_bucket[$__rate_interval])))",
                    "{{result}}",
                )
            ],
            unit="s",
        ),
        panel(
            "Cold start: revision ready time P50 / P95",
            [
                (
                    f"histogram_quantile({q}, sum by (engine, le) "
                    "(rate(kubellm_revision_ready_seconds_bucket[$__rate_interval])))",
                    f"p{int(q * 100)} {{{{engine}}}}",
                )
                for q in (0.5, 0.95)
            ],
            unit="s",
            description="From a revision's creation to all its pods ready (weights loaded).",
        ),
        panel(
            "GPUs requested",
            [(f"sum by (llmdeployment) (kubellm_gpus_requested{{{OSEL}}})", "{{llmdeployment}}")],
        ),
        row("Operator"),
        panel(
            "Reconciles / s by result",
            [("sum by (result) (rate(kubellm_reconcile_total[$__rate_interval]))", "{{result}}")],
            unit="ops",
        ),
        panel(
            "Reconcile errors / s",
            [
                (
                    "sum by (namespace, llmdeployment) "
                    "(rate(kubellm_reconcile_errors_total[$__rate_interval]))",
                    "{{namespace}}/{{llmdeployment}}",
                )
            ],
            unit="ops",
        ),
        panel(
            "Reconcile duration P50 / P99",
            [
                (
                    f"histogram_quantile({q}, sum by (le) "
                    "(rate(kubellm_reconcile_duration_seconds_bucket[$__rate_interval])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            unit="s",
        ),
        panel(
            "Children applied / s by kind",
            [
                (
                    "sum by (kind) (rate(kubellm_children_applied_total[$__rate_interval]))",
                    "{{kind}}",
                )
            ],
            unit="ops",
            width=12,
        ),
        panel(
            "Spec validation failures / s",
            [("sum(rate(kubellm_spec_validation_failures_total[$__rate_interval]))", "failures")],
            unit="ops",
            width=12,
        ),
    ]


def layout(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place panels left to right, wrapping at 24 columns; rows start a new line."""
    x = y = line_height = 0
    for pid, item in enumerate(items, start=1):
        item["id"] = pid
        pos = item["gridPos"]
        if item["type"] == "row" or x + pos["w"] > 24:
            y += line_height
            x = line_height = 0
        pos["x"], pos["y"] = x, y
        x += pos["w"]
        line_height = max(line_height, pos["h"])
        if item["type"] == "row":
            y += pos["h"]
            x = line_height = 0
    return items


def variable(name: str, query: str, label: str) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": f"{name}-var"},
        "definition": query,
        "refresh": 2,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {},
        "sort": 1,
    }


def dashboard() -> dict[str, Any]:
    return {
        "title": "kubellm",
        "uid": "kubellm-overview",
        "description": (
            "LLMDeployments served by kubellm: traffic, latency, saturation, rollouts, operator."
        ),
        "tags": ["kubellm", "llm", "inference"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                variable(
                    "namespace",
                    "label_values(kubellm_llmdeployment_replicas, namespace)",
                    "Namespace",
                ),
                variable(
                    "llmdeployment",
                    'label_values(kubellm_llmdeployment_replicas{namespace=~"$namespace"}, '
                    "llmdeployment)",
                    "LLMDeployment",
                ),
                variable(
                    "revision",
                    "label_values(kubellm:generation_tokens:rate1m"
                    '{namespace=~"$namespace", llmdeployment=~"$llmdeployment"}, revision)',
                    "Revision",
                ),
            ]
        },
        "panels": layout(panels()),
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
