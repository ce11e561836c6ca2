"""Rendering: every child valid against upstream Kubernetes schemas, and every SPEC pitfall."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import KUBERNETES_VERSION, ROOT, llmd, load_example
from kubellm.render import render_children, render_documents, resolve, single_revision
from kubellm.render.resolve import InvalidSpecError

BUILT_IN = {"v1", "apps/v1", "autoscaling/v2", "policy/v1"}


def render(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Rendered children by kind (the first of each kind)."""
    objects = render_children(single_revision(resolve(obj)))
    by_kind: dict[str, dict[str, Any]] = {}
    for o in objects:
        by_kind.setdefault(o["kind"], o)
    return by_kind


def problems(obj: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidSpecError) as caught:
        resolve(obj)
    return [str(p) for p in caught.value.problems]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = render(obj)["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return c


def test_every_example_renders_objects_valid_against_kubernetes_schemas(example: Path) -> None:
    result = render_documents([load_example(example)])
    assert result.problems == []
    checked = 0
    for obj in result.objects:
        if obj["apiVersion"] in BUILT_IN:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            checked += 1
        if obj["kind"] == "LeaderWorkerSet":  # its pod templates are core PodTemplateSpecs
            group = obj["spec"]["leaderWorkerTemplate"]
            for role in ("leaderTemplate", "workerTemplate"):
                template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}}
                kubernetes_validate.validate(
                    {**template, "template": group[role]}, KUBERNETES_VERSION, strict=True
                )
                checked += 1
    assert checked >= 3


def test_golden_render_of_every_example(example: Path) -> None:
    """Golden files: `make golden` rewrites them; review the diff."""
    result = render_documents([load_example(example)])
    golden = list(yaml.safe_load_all((ROOT / "tests" / "golden" / example.name).read_text()))
    assert result.objects == golden


def test_labels_on_every_child_and_pod() -> None:
    objects = render_children(single_revision(resolve(llmd())))
    revision = resolve(llmd()).revision
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == "demo"
        assert labels["app.kubernetes.io/managed-by"] == "kubellm"
        assert labels["app.kubernetes.io/component"] == "inference"
    pod_labels = render(llmd())["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["kubellm.io/engine"] == "vllm"
    assert pod_labels["kubellm.io/revision"] == revision


def test_children_are_owned_by_the_llmdeployment() -> None:
    for obj in render_children(single_revision(resolve(llmd()))):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref["kind"] == "LLMDeployment" and ref["controller"] is True
        assert ref["uid"] == llmd()["metadata"]["uid"]
        assert obj["metadata"]["namespace"] == "team-a"


def test_shared_pod_concerns() -> None:
    obj = llmd(model={"name": "meta-llama/Llama-3.1-8B-Instruct", "tokenSecretRef": {"name": "hf"}})
    pod = render(obj)["Deployment"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["enableServiceLinks"] is False
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["resources"]["requests"]["nvidia.com/gpu"] == 1
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "shm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    token = next(e for e in c["env"] if e["name"] == "HF_TOKEN")
    assert token["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "HF_TOKEN"}}
    assert "value" not in token
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (expression,) = terms["nodeSelectorTerms"][0]["matchExpressions"]
    assert expression["key"] == "nvidia.com/gpu.product"
    assert "NVIDIA-H100-80GB-HBM3" in expression["values"]


def test_probes_wait_for_weights_on_the_health_path() -> None:
    c = container(llmd())
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 1200
    assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert "tcpSocket" not in c["livenessProbe"]


def test_user_affinity_is_merged_with_the_gpu_selector() -> None:
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                ]
            }
        }
    }
    pod = render(llmd(scheduling={"affinity": affinity}))["Deployment"]["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    keys = [e["key"] for e in terms["nodeSelectorTerms"][0]["matchExpressions"]]
    assert keys == ["zone", "nvidia.com/gpu.product"]


def test_user_env_overrides_by_name_without_duplicates() -> None:
    obj = llmd(
        engine={
            "type": "vllm",
            "maxContextLength": 8192,
            "env": [{"name": "HF_HOME", "value": "/x"}],
        }
    )
    env = container(obj)["env"]
    assert [e["value"] for e in env if e["name"] == "HF_HOME"] == ["/x"]


@pytest.mark.parametrize(
    ("engine", "flags"),
    [
        ("tgi", ["--hostname", "0.0.0.0", "--port", "8080"]),
        ("trtllm", ["--host", "0.0.0.0", "--port", "8000"]),
        ("sglang", ["--host", "0.0.0.0", "--port", "30000"]),
    ],
)
def test_engines_bind_to_all_interfaces(engine: str, flags: list[str]) -> None:
    args = container(llmd(engine={"type": engine, "maxContextLength": 8192}))["args"]
    for name, value in zip(flags[::2], flags[1::2], strict=True):
        assert args[args.index(name) + 1] == value


def test_vllm_command_line_follows_the_plan() -> None:
    obj = llmd(
        model={"name": "meta-llama/Llama-3.1-70B-Instruct"},
        engine={"type": "vllm", "maxContextLength": 32768, "kvCacheDtype": "fp8"},
    )
    c = container(obj)
    assert c["command"] == ["vllm", "serve"]
    args = c["args"]
    assert args[0] == "meta-llama/Llama-3.1-70B-Instruct"
    tp = int(args[args.index("--tensor-parallel-size") + 1])
    assert tp == c["resources"]["limits"]["nvidia.com/gpu"] == resolve(obj).sizing.tensor_parallel
    assert args[args.index("--max-model-len") + 1] == "32768"
    assert args[args.index("--kv-cache-dtype") + 1] == "fp8"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.9"


def test_tgi_shards_and_gets_its_token_twice() -> None:
    obj = llmd(
        model={"name": "meta-llama/Llama-3.1-70B-Instruct", "tokenSecretRef": {"name": "hf"}},
        engine={"type": "tgi", "maxContextLength": 8192},
    )
    c = container(obj)
    assert c["command"] == ["text-generation-launcher"]
    assert c["args"][c["args"].index("--num-shard") + 1] == str(resolve(obj).sizing.tensor_parallel)
    names = {e["name"] for e in c["env"] if "valueFrom" in e}
    assert names == {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"}


def test_trtllm_serves_prometheus_metrics_through_its_options_file() -> None:
    c = container(llmd(engine={"type": "trtllm", "maxContextLength": 8192}))
    assert "return_perf_metrics: true" in c["command"][2]
    assert "--extra_llm_api_options" in c["args"]
    pod = render(llmd(engine={"type": "trtllm", "maxContextLength": 8192}))["PodMonitor"]
    paths = [e["path"] for e in pod["spec"]["podMetricsEndpoints"]]
    assert paths == ["/prometheus/metrics"]


def test_multi_gpu_pods_get_a_large_shm() -> None:
    obj = llmd(model={"name": "meta-llama/Llama-3.1-70B-Instruct"})
    pod = render(obj)["Deployment"]["spec"]["template"]["spec"]
    shm = next(v for v in pod["volumes"] if v["name"] == "shm")
    assert shm["emptyDir"]["sizeLimit"] == "16Gi"


def test_a_replica_larger_than_a_node_becomes_a_leader_worker_set() -> None:
    obj = llmd(
        model={"name": "meta-llama/Llama-3.1-405B-Instruct"},
        engine={"type": "vllm", "maxContextLength": 8192},
    )
    objects = render(obj)
    assert "Deployment" not in objects
    lws = objects["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
    assert lws["size"] == 2
    leader = lws["leaderTemplate"]
    worker = lws["workerTemplate"]
    assert leader["metadata"]["labels"]["kubellm.io/serving"] == "true"
    assert "kubellm.io/serving" not in worker["metadata"]["labels"]
    assert leader["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8


def test_hpa_scales_the_llmdeployment_on_tokens_per_second() -> None:
    autoscaling = {"minReplicas": 1, "maxReplicas": 6, "target": 1200}
    obj = llmd(autoscaling={**autoscaling, "metric": "generationTokensPerSecond"})
    hpa = render(obj)["HorizontalPodAutoscaler"]
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "kubellm.io/v1alpha1",
        "kind": "LLMDeployment",
        "name": "demo",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == "kubellm_generation_tokens_per_second"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "1200"}
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_keda_queries_the_engine_counter() -> None:
    obj = llmd(
        engine={"type": "tgi", "maxContextLength": 8192},
        autoscaling={
            "provider": "keda",
            "prometheusUrl": "http://prom:9090",
            "maxReplicas": 3,
            "metric": "generationTokensPerSecond",
            "target": 900,
        },
    )
    scaled = render(obj)["ScaledObject"]
    trigger = scaled["spec"]["triggers"][0]["metadata"]
    assert "tgi_request_generated_tokens_sum" in trigger["query"]
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "LLMDeployment"
    # KEDA copies a ScaledObject's labels onto its HPA unless they are excluded.
    excluded = scaled["metadata"]["annotations"]["scaledobject.keda.sh/hpa-excluded-labels"]
    assert set(excluded.split(",")) == set(scaled["metadata"]["labels"])


@pytest.mark.parametrize(
    ("auth", "parameters"),
    [
        ({"type": "bearer", "secretName": "prom"}, [("bearerToken", "token")]),
        (
            {"type": "basic", "secretName": "prom", "usernameKey": "u", "caKey": "ca.crt"},
            [("username", "u"), ("password", "password"), ("ca", "ca.crt")],
        ),
    ],
)
def test_keda_authenticates_to_prometheus_with_the_secret(
    auth: dict[str, str], parameters: list[tuple[str, str]]
) -> None:
    obj = llmd(
        autoscaling={
            "provider": "keda",
            "prometheusUrl": "https://prom:9090",
            "prometheusAuth": auth,
            "maxReplicas": 3,
            "target": 900,
        }
    )
    objects = render_children(single_revision(resolve(obj)))
    kinds = [o["kind"] for o in objects]
    assert kinds.index("TriggerAuthentication") < kinds.index("ScaledObject")
    authentication = render(obj)["TriggerAuthentication"]
    refs = authentication["spec"]["secretTargetRef"]
    assert [(r["parameter"], r["key"]) for r in refs] == parameters
    assert {r["name"] for r in refs} == {"prom"}
    (trigger,) = render(obj)["ScaledObject"]["spec"]["triggers"]
    assert trigger["metadata"]["authModes"] == auth["type"]
    assert trigger["authenticationRef"] == {"name": "demo", "kind": "TriggerAuthentication"}


def test_keda_without_auth_has_no_trigger_authentication() -> None:
    keda = {"provider": "keda", "prometheusUrl": "http://p", "maxReplicas": 2, "target": 9}
    objects = render(llmd(autoscaling=keda))
    assert "TriggerAuthentication" not in objects
    assert "authenticationRef" not in objects["ScaledObject"]["spec"]["triggers"][0]


def test_gateway_routing_gets_weighted_backends() -> None:
    routing = {"type": "gatewayAPI", "parentRefs": [{"name": "gw"}]}
    objects = render_children(
        single_revision(resolve(llmd(rollout={"canary": {"trafficRouting": routing}})))
    )
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    assert backend["weight"] == 100
    assert any(o["kind"] == "Service" and o["metadata"]["name"] == backend["name"] for o in objects)


def test_revision_ignores_replicas_and_autoscaling_but_not_the_model() -> None:
    base = resolve(llmd()).revision
    assert resolve(llmd(replicas=5)).revision == base
    assert resolve(llmd(autoscaling={"maxReplicas": 4, "target": 100})).revision == base
    assert resolve(llmd(model={"name": "Qwen/Qwen2.5-7B-Instruct"})).revision != base
    assert (
        resolve(llmd(engine={"type": "vllm", "maxContextLength": 8192, "image": "x:1"})).revision
        != base
    )


# ---------------------------------------------------------------- invalid inputs


def test_unknown_engine_names_the_field() -> None:
    assert any(p.startswith("spec.engine.type:") for p in problems(llmd(engine={"type": "ollama"})))


def test_tensor_parallel_that_does_not_divide_heads() -> None:
    (problem,) = problems(
        llmd(
            model={"name": "meta-llama/Llama-3.1-70B-Instruct"},
            resources={"gpu": {"type": "H100-80GB"}, "tensorParallel": 3},
        )
    )
    assert problem.startswith("spec.resources.tensorParallel:")
    assert "64" in problem


def test_pipeline_parallel_for_tgi_is_refused() -> None:
    found = problems(
        llmd(
            engine={"type": "tgi", "maxContextLength": 8192},
            resources={"gpu": {"type": "H100-80GB"}, "pipelineParallel": 2},
        )
    )
    assert any(p.startswith("spec.resources.pipelineParallel:") for p in found)


def test_unknown_model_asks_for_its_architecture() -> None:
    (problem,) = problems(llmd(model={"name": "acme/secret-model"}))
    assert problem.startswith("spec.model.architecture:")
    assert "attentionHeads" in problem and "layers" in problem


def test_infeasible_sizing_says_what_would_fit() -> None:
    obj = llmd(
        model={"name": "meta-llama/Llama-3.1-70B-Instruct"},
        resources={"gpu": {"type": "L4"}, "tensorParallel": 1, "pipelineParallel": 1},
    )
    (problem,) = problems(obj)
    assert problem.startswith("spec.resources")
    assert "GiB" in problem


def test_flags_owned_by_kubellm_are_refused_in_extra_args() -> None:
    obj = llmd(
        engine={
            "type": "vllm",
            "maxContextLength": 8192,
            "extraArgs": ["--tensor-parallel-size=2", "--enable-lora"],
        }
    )
    (problem,) = problems(obj)
    assert problem.startswith("spec.engine.extraArgs[0]:") and "--tensor-parallel-size" in problem


def test_unsupported_quantization_lists_what_the_engine_takes() -> None:
    (problem,) = problems(
        llmd(engine={"type": "tgi", "maxContextLength": 8192, "quantization": "mxfp4"})
    )
    assert problem.startswith("spec.engine.quantization:") and "awq" in problem


def test_every_problem_is_reported_at_once() -> None:
    obj = llmd(
        engine={"type": "tgi", "quantization": "mxfp4", "extraArgs": ["--num-shard", "2"]},
        resources={"gpu": {"type": "QuantumGPU"}},
    )
    fields = {p.split(":")[0] for p in problems(obj)}
    assert {
        "spec.engine.quantization",
        "spec.engine.extraArgs[0]",
        "spec.resources.gpu.type",
    } <= fields


def test_pod_monitor_can_be_left_to_another_scraper() -> None:
    resolved = resolve(llmd())
    kinds = [o["kind"] for o in render_children(single_revision(resolved))]
    assert "PodMonitor" in kinds
    ctx = replace(single_revision(resolved), pod_monitor=False)
    assert "PodMonitor" not in [o["kind"] for o in render_children(ctx)]


def test_autoscaling_target_auto_comes_from_the_capacity_model() -> None:
    spec = {"minReplicas": 1, "maxReplicas": 4}
    auto = render(llmd(autoscaling=spec))["HorizontalPodAutoscaler"]
    explicit = render(llmd(autoscaling={**spec, "target": 1200}))["HorizontalPodAutoscaler"]
    resolved = resolve(llmd(autoscaling=spec))
    assert resolved.autoscaling is not None and resolved.autoscaling.auto
    value = auto["spec"]["metrics"][0]["pods"]["target"]["averageValue"]
    millis = value.endswith("m")
    assert float(value.removesuffix("m")) / (1000 if millis else 1) == pytest.approx(
        resolved.autoscaling.target
    )
    assert explicit["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "1200"
    slow = resolve(llmd(autoscaling={**spec, "ttftSLO": "200ms"})).autoscaling
    assert slow is not None and slow.target < resolved.autoscaling.target


def test_autoscaling_target_auto_needs_a_catalog_gpu() -> None:
    spec = llmd(autoscaling={"maxReplicas": 4}, resources={"gpu": {"memoryGiB": 80}})
    assert any(p.startswith("spec.autoscaling.target: target auto") for p in problems(spec))
    spec["spec"]["autoscaling"]["target"] = 900
    hpa = render(spec)["HorizontalPodAutoscaler"]
    assert hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "900"
