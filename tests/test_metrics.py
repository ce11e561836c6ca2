"""The per-LLMDeployment series on /metrics: the names, labels and values dashboards and
alerts read, from one small record per object built into series at scrape time."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kubellm import metrics
from test_executor_costs import KEY, World

PER_OBJECT = {
    "kubellm_llmdeployment_spec_valid",
    "kubellm_llmdeployment_replicas",
    "kubellm_llmdeployment_ready_replicas",
    "kubellm_gpus_requested",
    "kubellm_gpus_per_replica",
    "kubellm_canary_weight",
    "kubellm_llmdeployment_phase",
}


def series(namespace: str, name: str) -> dict[tuple[str, str], float]:
    """(series name, phase label or "") -> value, for one object, as Prometheus reads them."""
    text = generate_latest(metrics.REGISTRY).decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("namespace") == namespace and labels.get("llmdeployment") == name:
                out[sample.name, labels.get("phase", "")] = sample.value
    return out


def test_a_ready_object_shows_its_gauges_and_one_phase() -> None:
    world = World(replicas=2)
    for _ in range(3):
        world.reconcile()
        world.later(1)
    world.reconcile()
    assert world.status()["phase"] == "Ready"
    shown = series(*KEY)
    assert {name for name, _ in shown} >= PER_OBJECT
    assert shown["kubellm_llmdeployment_spec_valid", ""] == 1
    assert shown["kubellm_llmdeployment_replicas", ""] == 2
    assert shown["kubellm_llmdeployment_ready_replicas", ""] == 2
    per_replica = shown["kubellm_gpus_per_replica", ""]
    assert per_replica >= 1
    assert shown["kubellm_gpus_requested", ""] == 2 * per_replica
    assert shown["kubellm_canary_weight", ""] == 0
    phases = {phase: v for (name, phase), v in shown.items() if phase}
    assert phases == {"Pending": 0, "Progressing": 0, "Ready": 1, "Degraded": 0, "Failed": 0}


def test_an_invalid_spec_turns_spec_valid_to_zero_and_keeps_the_other_gauges() -> None:
    collector = metrics.PerResourceGauges()
    collector.set("ml", "chat", spec_valid=1, phase="Ready", replicas=3)
    collector.set("ml", "chat", spec_valid=0, phase="Degraded")
    samples = {
        (s.name, s.labels.get("phase", "")): s.value
        for family in collector.collect()
        for s in family.samples
    }
    assert samples["kubellm_llmdeployment_spec_valid", ""] == 0
    assert samples["kubellm_llmdeployment_replicas", ""] == 3
    assert samples["kubellm_llmdeployment_phase", "Degraded"] == 1
    assert samples["kubellm_llmdeployment_phase", "Ready"] == 0
    assert ("kubellm_canary_weight", "") not in samples  # never set: no series


def test_a_deleted_object_leaves_no_series() -> None:
    world = World()
    world.reconcile()
    assert series(*KEY)
    world.reconciler.forget(KEY)
    assert series(*KEY) == {}
