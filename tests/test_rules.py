"""The chart's PrometheusRule and prometheus-adapter rules, checked and unit-tested by the
real `promtool` (Debian package `prometheus`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "kubellm"
OPERATIONS = ROOT / "docs" / "operations.md"
NS = "kubellm-system"
PROMTOOL = shutil.which("promtool")

# The per-engine token counters the autoscaling signal is built from; TensorRT-LLM 1.2.1
# exports none (its token counters arrive in 1.3).
TOKEN_COUNTERS = {
    "vllm": 'vllm:generation_tokens_total{engine="vllm"}',
    "tgi": 'tgi_request_generated_tokens_sum{engine="tgi"}',
    "sglang": 'sglang:generation_tokens_total{engine="sglang"}',
}
# Custom metric -> the recording rule computing the same per-pod figure, and its signal.
ADAPTER_METRICS = {
    "kubellm_generation_tokens_per_second": (
        "kubellm:generation_tokens:rate1m",
        "generationTokens",
    ),
    "kubellm_requests_in_flight": ("kubellm:requests_in_flight", "requestsInFlight"),
    "kubellm_queue_length": ("kubellm:queue_length", "queueLength"),
    "kubellm_kv_cache_utilization": ("kubellm:kv_cache_utilization", "kvCacheUtilization"),
}
ENGINE_METRICS = yaml.safe_load((CHART / "files" / "engine-metrics.yaml").read_text())
ALERTS = {
    "KubeLLMRolloutRolledBack",
    "KubeLLMRolloutSuccessRatioLow",
    "KubeLLMSpecInvalid",
    "KubeLLMDegraded",
    "KubeLLMOperatorDown",
    "KubeLLMReconcileErrors",
}


def rendered(values: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    merged = {"prometheusRule": {"enabled": True}, **(values or {})}
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(merged, name="kubellm", namespace=NS)
    objs = [
        o
        for path, text in out.items()
        if not path.endswith("NOTES.txt")
        for o in yaml.safe_load_all(text)
        if isinstance(o, dict)
    ]
    return {o["kind"] + "/" + o["metadata"]["name"]: o for o in objs}


def groups() -> list[dict[str, Any]]:
    rule = rendered()["PrometheusRule/kubellm"]
    result: list[dict[str, Any]] = rule["spec"]["groups"]
    return result


def all_rules() -> list[dict[str, Any]]:
    return [r for g in groups() for r in g["rules"]]


def adapter_rules() -> list[dict[str, Any]]:
    cm = rendered()["ConfigMap/kubellm-prometheus-adapter-rules"]
    rules: list[dict[str, Any]] = yaml.safe_load(cm["data"]["rules.yaml"])["rules"]
    assert yaml.safe_load(cm["data"]["values.yaml"]) == {"rules": {"custom": rules}}
    return rules


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:  # a missing tool fails, it never skips: .ci/run installs it
        pytest.fail("promtool not found: `apt-get install -y prometheus` (as .ci/run does)")
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


# --- structure (no promtool needed) ----------------------------------------------------------


def test_token_rate_recorded_for_every_engine() -> None:
    by_engine = {
        r["labels"]["engine"]: r["expr"]
        for r in all_rules()
        if r.get("record") == "kubellm:generation_tokens:rate1m"
    }
    assert set(by_engine) == set(TOKEN_COUNTERS)
    for engine, counter in TOKEN_COUNTERS.items():
        assert by_engine[engine] == (
            f"sum by (namespace, llmdeployment, revision, pod) (rate({counter}[1m]))"
        )


def test_tgi_has_no_ttft_rule() -> None:
    ttft_engines = {
        r["labels"]["engine"]
        for r in all_rules()
        if r.get("record") == "kubellm:time_to_first_token_seconds_bucket:rate1m"
    }
    assert ttft_engines == {"vllm", "trtllm", "sglang"}


def test_signals_an_engine_lacks_record_nothing() -> None:
    trtllm = {r["record"] for r in all_rules() if r.get("labels", {}).get("engine") == "trtllm"}
    assert trtllm == {
        "kubellm:requests:rate1m",
        "kubellm:time_to_first_token_seconds_bucket:rate1m",
        "kubellm:request_latency_seconds_bucket:rate1m",
    }


def test_alerts_present_with_runbooks() -> None:
    alerts = {r["alert"]: r for r in all_rules() if "alert" in r}
    assert set(alerts) == ALERTS
    for name, rule in alerts.items():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"].endswith("/docs/operations.md#" + name.lower())
        assert rule["labels"]["severity"] in {"warning", "critical"}
    assert alerts["KubeLLMRolloutSuccessRatioLow"]["for"] == "30m"
    assert alerts["KubeLLMRolloutSuccessRatioLow"]["expr"] == "kubellm_rollout_success_ratio < 0.8"
    assert alerts["KubeLLMSpecInvalid"]["for"] == "5m"
    assert alerts["KubeLLMDegraded"]["for"] == "10m"
    assert alerts["KubeLLMReconcileErrors"]["for"] == "15m"
    assert alerts["KubeLLMOperatorDown"]["expr"] == (
        'absent(up{job="kubellm-metrics", namespace="kubellm-system"} == 1)'
    )


def github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for line in markdown.splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
        if m:
            text = re.sub(r"[^\w\- ]", "", m.group(1).lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_runbook_anchors_exist_in_operations_doc() -> None:
    anchors = github_anchors(OPERATIONS.read_text())
    for rule in all_rules():
        if "alert" in rule:
            anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
            assert anchor in anchors, f"docs/operations.md has no heading for #{anchor}"


def test_adapter_rules_read_every_engines_own_series() -> None:
    """No recording rule needed: the adapter discovers and queries the engines' series."""
    exposed = {r["name"]["as"]: r for r in adapter_rules()}
    assert set(exposed) == set(ADAPTER_METRICS)
    for name, (_, signal) in ADAPTER_METRICS.items():
        rule = exposed[name]
        exported = [m[signal] for m in ENGINE_METRICS.values() if m[signal]]
        first_series = {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e).group() for e in exported}  # type: ignore[union-attr]
        discovered = re.fullmatch(
            r'\{__name__=~"(.*)",namespace!="",pod!=""\}', rule["seriesQuery"]
        )
        assert discovered and set(discovered.group(1).split("|")) == first_series
        assert all(re.fullmatch(rule["name"]["matches"], s) for s in first_series)
        assert rule["resources"] == {
            "overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}
        }
        for expr in exported:  # every selector restricted to the asked-for pods
            assert expr.replace("{", "{<<.LabelMatchers>>,") in rule["metricsQuery"]
        assert rule["metricsQuery"].count("by (<<.GroupBy>>)") == len(exported)


def test_prometheus_adapter_rules_are_on_by_default_without_recording_rules() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render({}, name="kubellm", namespace=NS)
    text = "".join(out.values())
    assert "kubellm-prometheus-adapter-rules" in text
    assert "kind: PrometheusRule" not in text  # off by default; the adapter does not need it


# --- promtool --------------------------------------------------------------------------------


def test_promtool_check_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups()}, sort_keys=False))
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_adapter_queries(tmp_path: Path) -> None:
    """The adapter's metricsQuery, expanded as prometheus-adapter does, is valid PromQL."""
    rules = []
    for i, rule in enumerate(adapter_rules()):
        expr = (
            rule["metricsQuery"]
            .replace("<<.LabelMatchers>>", 'namespace="ml",pod=~"chat-.*"')
            .replace("<<.GroupBy>>", "pod")
        )
        rules.append({"record": f"adapter_query_{i}", "expr": expr})
    (tmp_path / "adapter.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "adapter", "rules": rules}]})
    )
    result = promtool("check", "rules", "adapter.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


VLLM_HTTP = {"method": "POST", "handler": "/v1/chat/completions"}
SGLANG_HTTP = {"method": "POST", "endpoint": "/v1/chat/completions"}


def pod_labels(engine: str) -> dict[str, str]:
    """One LLMDeployment per engine (named after it), one pod in revision r1."""
    return {
        "namespace": "ml",
        "llmdeployment": engine,
        "revision": "r1",
        "pod": f"{engine}-0",
        "engine": engine,
    }


def rev_labels(engine: str) -> dict[str, str]:
    return {"namespace": "ml", "llmdeployment": engine, "revision": "r1"}


def series(name: str, engine: str, values: str, **extra: str) -> dict[str, str]:
    return {"series": _labels(name, {**pod_labels(engine), **extra}), "values": values}


def expand(template: str, labels: dict[str, str]) -> str:
    """Expand the {{ $labels.x }} references of an alert annotation."""
    return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], template)


def engine_series() -> list[dict[str, str]]:
    """Each engine's own series for one pod: 15s scrapes over 5 minutes; counters grow by a
    fixed step so rates are exact."""
    return [
        series("vllm:generation_tokens_total", "vllm", "0+60x20"),  # 4 tokens/s
        series("tgi_request_generated_tokens_sum", "tgi", "0+30x20"),  # 2 tokens/s
        series("sglang:generation_tokens_total", "sglang", "0+15x20"),  # 1 token/s
        series("vllm:num_requests_running", "vllm", "3+0x20"),
        series("vllm:num_requests_waiting", "vllm", "7+0x20"),
        series("tgi_batch_current_max_tokens", "tgi", "500+0x20"),
        series("tgi_batch_max_total_tokens", "tgi", "1000+0x20"),
        series("sglang:token_usage", "sglang", "0.25+0x20"),
        # vLLM: 10 inference calls per scrape, 1 answered 5xx -> error ratio 0.1; health
        # checks and scrapes are not counted, nor is a 5xx outside the inference API.
        series("http_requests_total", "vllm", "0+9x20", **VLLM_HTTP, status="2xx"),
        series("http_requests_total", "vllm", "0+1x20", **VLLM_HTTP, status="5xx"),
        series(
            "http_requests_total",
            "vllm",
            "0+5x20",
            method="GET",
            handler="/v1/models",
            status="5xx",
        ),
        # SGLang: a client that went away gets a 4xx, never a failure -> error ratio 0.
        series("sglang:http_responses_total", "sglang", "0+4x20", **SGLANG_HTTP, status_code="200"),
        series("sglang:http_responses_total", "sglang", "0+1x20", **SGLANG_HTTP, status_code="400"),
        series("sglang:num_aborted_requests_total", "sglang", "0+1x20"),
        # TGI exports no failure series until the first failure: the ratio is 0, not absent.
        series("tgi_request_count", "tgi", "0+5x20"),
        # vLLM TTFT: every request lands in (0.1, 0.5] -> p50 = 0.3, p95 = 0.48.
        series("vllm:time_to_first_token_seconds_bucket", "vllm", "0+0x20", le="0.1"),
        series("vllm:time_to_first_token_seconds_bucket", "vllm", "0+10x20", le="0.5"),
        series("vllm:time_to_first_token_seconds_bucket", "vllm", "0+10x20", le="+Inf"),
    ]


def test_promtool_unit_tests(tmp_path: Path) -> None:
    """Feed each engine's own series; expect the uniform kubellm:* series and the alerts."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups()}, sort_keys=False))
    alerts = {r["alert"]: r for r in all_rules() if "alert" in r}

    input_series = engine_series()
    promql = [
        {
            "expr": "kubellm:generation_tokens:rate1m",
            "eval_time": "4m",
            "exp_samples": [
                {"labels": _labels("kubellm:generation_tokens:rate1m", pod_labels(e)), "value": v}
                for e, v in [("sglang", 1), ("tgi", 2), ("vllm", 4)]
            ],
        },
        {
            "expr": "kubellm:requests_in_flight",
            "eval_time": "4m",
            "exp_samples": [
                {"labels": _labels("kubellm:requests_in_flight", pod_labels("vllm")), "value": 3}
            ],
        },
        {
            "expr": "kubellm:queue_length",
            "eval_time": "4m",
            "exp_samples": [
                {"labels": _labels("kubellm:queue_length", pod_labels("vllm")), "value": 7}
            ],
        },
        {
            "expr": "kubellm:kv_cache_utilization",
            "eval_time": "4m",
            "exp_samples": [
                {
                    "labels": _labels("kubellm:kv_cache_utilization", pod_labels("sglang")),
                    "value": 0.25,
                },
                {
                    "labels": _labels("kubellm:kv_cache_utilization", pod_labels("tgi")),
                    "value": 0.5,
                },
            ],
        },
        {
            "expr": "kubellm:request_error_ratio:rate1m",
            "eval_time": "4m",
            "exp_samples": [
                {
                    "labels": _labels("kubellm:request_error_ratio:rate1m", rev_labels("sglang")),
                    "value": 0,
                },
                {
                    "labels": _labels("kubellm:request_error_ratio:rate1m", rev_labels("tgi")),
                    "value": 0,
                },
                {
                    "labels": _labels("kubellm:request_error_ratio:rate1m", rev_labels("vllm")),
                    "value": 0.1,
                },
            ],
        },
        {
            "expr": "kubellm:time_to_first_token_seconds:p95",
            "eval_time": "4m",
            "exp_samples": [
                {
                    "labels": _labels(
                        "kubellm:time_to_first_token_seconds:p95",
                        {**rev_labels("vllm"), "engine": "vllm"},
                    ),
                    "value": 0.48,
                }
            ],
        },
    ]

    rolled = {"namespace": "ml", "llmdeployment": "chat", "result": "RolledBack"}
    invalid = {"namespace": "ml", "llmdeployment": "bad"}
    alert_series = [
        {
            "series": 'kubellm_rollouts_total{namespace="ml", llmdeployment="chat", '
            'result="RolledBack"}',
            "values": "0 0 0 1 1 1 1 1 1 1",
        },
        {
            "series": 'kubellm_llmdeployment_spec_valid{namespace="ml", llmdeployment="bad"}',
            "values": "0x10",
        },
        {
            "series": 'kubellm_llmdeployment_spec_valid{namespace="ml", llmdeployment="chat"}',
            "values": "1x10",
        },
    ]

    def expected(alert: str, labels: dict[str, str]) -> dict[str, Any]:
        annotations = {k: expand(v, labels) for k, v in alerts[alert]["annotations"].items()}
        severity = alerts[alert]["labels"]["severity"]
        return {"exp_labels": {**labels, "severity": severity}, "exp_annotations": annotations}

    alert_tests = [
        {"alertname": "KubeLLMRolloutRolledBack", "eval_time": "2m", "exp_alerts": []},
        {
            "alertname": "KubeLLMRolloutRolledBack",
            "eval_time": "5m",
            "exp_alerts": [expected("KubeLLMRolloutRolledBack", rolled)],
        },
        {"alertname": "KubeLLMSpecInvalid", "eval_time": "4m", "exp_alerts": []},
        {
            "alertname": "KubeLLMSpecInvalid",
            "eval_time": "6m",
            "exp_alerts": [expected("KubeLLMSpecInvalid", invalid)],
        },
        {
            # No operator target at all: absent() fires after its 5 minutes.
            "alertname": "KubeLLMOperatorDown",
            "eval_time": "6m",
            "exp_alerts": [expected("KubeLLMOperatorDown", {})],
        },
    ]

    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "15s",
        "tests": [
            {"interval": "15s", "input_series": input_series, "promql_expr_test": promql},
            {"interval": "1m", "input_series": alert_series, "alert_rule_test": alert_tests},
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_adapter_queries_without_recording_rules_match_them(tmp_path: Path) -> None:
    """prometheus-adapter's expansion of each rule, on the engines' raw series alone, gives
    the per-pod values the recording rules give (test_promtool_unit_tests)."""
    expected = {
        # TensorRT-LLM 1.2.1 exports no generated-token counter (files/engine-metrics.yaml).
        "kubellm_generation_tokens_per_second": {"sglang": 1, "tgi": 2, "vllm": 4},
        "kubellm_requests_in_flight": {"vllm": 3},
        "kubellm_queue_length": {"vllm": 7},
        "kubellm_kv_cache_utilization": {"sglang": 0.25, "tgi": 0.5},
    }
    promql = [
        {
            "expr": rule["metricsQuery"]
            .replace("<<.LabelMatchers>>", 'namespace="ml"')
            .replace("<<.GroupBy>>", "pod"),
            "eval_time": "4m",
            "exp_samples": [
                {"labels": f'{{pod="{engine}-0"}}', "value": value}
                for engine, value in expected[rule["name"]["as"]].items()
            ],
        }
        for rule in adapter_rules()
    ]
    (tmp_path / "none.yaml").write_text(yaml.safe_dump({"groups": []}))
    tests = {
        "rule_files": ["none.yaml"],
        "evaluation_interval": "15s",
        "tests": [{"interval": "15s", "input_series": engine_series(), "promql_expr_test": promql}],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def _labels(name: str, labels: dict[str, str]) -> str:
    body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{body}}}"
