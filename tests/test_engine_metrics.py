"""One source of truth for engine metric names, checked against the engines themselves.

The engine modules name each signal; the chart's table is generated from them; the PromQL of
the canary analysis, the KEDA trigger, the recording rules, the adapter rules and the
dashboard all use those names. Every name must exist in the pinned engine release, as the
hand-copied upstream fixture (operator/kubellm/simulator/upstream_metrics.yaml) records it -
a fixture never derived from the engine modules.
"""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType
from typing import Any

import pytest

from conftest import ROOT, llmd
from kubellm.api.models import Analysis
from kubellm.engines import ENGINES
from kubellm.metrics import REGISTRY
from kubellm.render import resolve, single_revision
from kubellm.render.children import scaled_object
from kubellm.render.resolve import AUTOSCALING_SIGNAL
from kubellm.rollout.analysis import queries
from kubellm.simulator.metrics import upstream
from test_rules import adapter_rules, all_rules

TABLE = ROOT / "charts" / "kubellm" / "files" / "engine-metrics.yaml"
DASHBOARD = ROOT / "charts" / "kubellm" / "dashboards" / "kubellm.json"
# Labels Prometheus or kubellm's PodMonitor put on every engine series.
TARGET_LABELS = {"namespace", "pod", "llmdeployment", "revision", "engine", "le"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
KEYWORDS |= {"or", "and", "unless", "inf", "nan"}


def _generator() -> ModuleType:
    path = ROOT / "charts" / "hack" / "engine_metrics.py"
    spec = importlib.util.spec_from_file_location("kubellm_engine_metrics_hack", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metric_names(promql: str) -> set[str]:
    """Series names a PromQL expression reads (not functions, keywords, labels or ranges)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = re.findall(r"(?<![\w:$])([a-zA-Z_:][\w:]*)(?!\w)(?!\s*\()", text)
    return {n for n in names if n not in KEYWORDS}


def label_names(promql: str) -> set[str]:
    return set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*\"", promql))


def upstream_names(engine: str) -> set[str]:
    names: set[str] = set()
    for family in upstream(engine).families:
        names.add(family.name)
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
    return names


def upstream_labels(engine: str, name: str) -> set[str]:
    for family in upstream(engine).families:
        if name in {family.name, *(family.name + s for s in ("_bucket", "_sum", "_count"))}:
            return set(family.labels) | TARGET_LABELS
    raise KeyError(name)


def assert_exists(engine: str, promql: str, where: str) -> None:
    names = metric_names(promql)
    assert names, f"{where}: no metric in {promql!r}"
    for name in names:
        assert name in upstream_names(engine), f"{where}: {name} is not exported by {engine}"
    if len(names) == 1:
        (name,) = names
        unknown = label_names(promql) - upstream_labels(engine, name)
        assert not unknown, f"{where}: {name} has no label {unknown}"


def test_the_extractor_finds_series_and_skips_the_rest() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a:b_bucket{x="y",z=~"1|2"}[5m])))'
        " / sum(kubellm:c:rate1m) or vector(0) * on(pod) group_left d_total"
    )
    assert metric_names(expr) == {"a:b_bucket", "kubellm:c:rate1m", "d_total"}
    assert label_names(expr) == {"x", "z"}


def test_committed_table_is_generated_from_the_engine_modules() -> None:
    assert TABLE.read_text() == _generator().render(), (
        "run .venv/bin/python charts/hack/engine_metrics.py"
    )


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_engine_module_names_exist_in_the_pinned_release(engine: str) -> None:
    module = ENGINES[engine]
    facts = upstream(engine)
    assert module.version == facts.version
    assert module.metrics_path == facts.paths["metrics"]
    assert module.probes.health_path == facts.paths["health"]
    assert module.probes.liveness in facts.paths.values()
    for signal, source in module.signals.items():
        if source is None:
            continue
        assert source.source.startswith("https://github.com/"), signal
        assert module.version in source.source, f"{signal}: the link is not at {module.version}"
        for name in filter(None, (source.name, source.denominator)):
            assert_exists(engine, f"{name}{{{source.matchers}}}", f"{engine} {signal}")


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_analysis_queries_read_only_the_engine_s_own_series(engine: str) -> None:
    spec = Analysis.model_validate(
        {
            "prometheusUrl": "http://p:9090",
            "maxErrorRate": 0.01,
            "maxTimeToFirstTokenP95": "1s",
            "maxLatencyP95": "5s",
        }
    )
    built = queries(
        spec, ENGINES[engine], namespace="ns", llmdeployment="d", canary="c", stable="s"
    )
    assert len(built) == 4
    for query in built:
        for promql in filter(None, (query.canary, query.stable)):
            for name in metric_names(promql):
                assert name in upstream_names(engine), f"{query.name}: {name}"


# Pairs an engine cannot serve are refused by resolve() (tests/test_render.py).
KEDA_CASES = [
    (e, m) for e in sorted(ENGINES) for m, s in AUTOSCALING_SIGNAL.items() if ENGINES[e].signals[s]
]


@pytest.mark.parametrize(("engine", "metric"), KEDA_CASES)
def test_keda_queries_read_series_the_engine_exports(engine: str, metric: str) -> None:
    obj = llmd(
        engine={"type": engine, "maxContextLength": 8192},
        autoscaling={
            "provider": "keda",
            "prometheusUrl": "http://p:9090",
            "maxReplicas": 3,
            "metric": metric,
            "target": 1,
        },
    )
    trigger = scaled_object(single_revision(resolve(obj)))["spec"]["triggers"][0]
    assert_exists(engine, trigger["metadata"]["query"], f"KEDA {engine} {metric}")


def recorded() -> set[str]:
    return {r["record"] for r in all_rules() if "record" in r}


def operator_series() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        names |= {s.name for s in family.samples} | {family.name}
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count")}
    return names


def test_every_rule_reads_existing_series() -> None:
    known = recorded() | operator_series() | {"up"}
    for rule in all_rules():
        engine = rule.get("labels", {}).get("engine")
        where = rule.get("record") or rule.get("alert")
        if engine is not None:
            for name in metric_names(rule["expr"]):
                assert name in upstream_names(engine), f"{where} ({engine}): {name}"
        else:
            assert metric_names(rule["expr"]) <= known, where
    for rule in adapter_rules():
        assert metric_names(rule["seriesQuery"]) <= recorded()


def test_every_dashboard_query_reads_existing_series() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    known = recorded() | operator_series() | {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"}
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    expressions = [t["expr"] for p in panels for t in p["targets"]]
    variables = [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    assert expressions
    for expr in expressions:
        assert metric_names(expr) <= known, expr
    for definition in variables:
        inner = definition.removeprefix("label_values(").rsplit(",", 1)[0]
        assert metric_names(inner) <= known, definition


def test_a_wrong_name_would_be_caught() -> None:
    """The check is only worth having if it fails: a name the release lacks is refused."""
    with pytest.raises(AssertionError, match="not exported"):
        assert_exists("trtllm", "trtllm_generation_tokens_total", "1.2.1")
    with pytest.raises(AssertionError, match="no label"):
        assert_exists("vllm", 'vllm:request_success_total{status="5xx"}', "labels")
