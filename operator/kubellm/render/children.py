"""One pure function per child kind, each from the same RenderContext."""

from __future__ import annotations

import json
from typing import Any

from kubellm import GROUP, KIND, VERSION
from kubellm.engines import ENGINES
from kubellm.engines.base import MetricSource
from kubellm.render.context import (
    ENGINE,
    INSTANCE,
    REVISION,
    SERVING,
    RenderContext,
    common_labels,
    instance_labels,
    metadata,
    revision_labels,
    revision_name,
    serving_selector,
)
from kubellm.render.pod import (
    pod_template,
    revision_annotations,
    startup_window_seconds,
    stored_spec,
)
from kubellm.render.resolve import AUTOSCALING_SIGNAL

# The per-pod custom metric each autoscaling signal reads (served by the chart's Prometheus
# adapter rules from every engine's own metric names).
ADAPTER_METRIC = {
    "generationTokensPerSecond": "kubellm_generation_tokens_per_second",
    "requestsInFlight": "kubellm_requests_in_flight",
    "queueLength": "kubellm_queue_length",
    "kvCacheUtilization": "kubellm_kv_cache_utilization",
}
KEDA_HPA_EXCLUDED_LABELS = "scaledobject.keda.sh/hpa-excluded-labels"
# Engines load for minutes: add capacity fast, give it back slowly.
DEFAULT_SCALE_UP = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 60},
        {"type": "Pods", "value": 2, "periodSeconds": 60},
    ],
}
DEFAULT_SCALE_DOWN = {
    "stabilizationWindowSeconds": 600,
    "selectPolicy": "Min",
    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}],
}


def deployment(ctx: RenderContext) -> dict[str, Any]:
    """The current revision on one node per replica."""
    labels = revision_labels(ctx)
    meta = metadata(ctx, revision_name(ctx.name, ctx.revision), labels)
    meta["annotations"] = revision_annotations(ctx)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": ctx.replicas,
            "selector": {"matchLabels": {**instance_labels(ctx.name), REVISION: ctx.revision}},
            # A revision's pods never change; this only matters across operator upgrades.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "progressDeadlineSeconds": startup_window_seconds(ctx) + 600,
            "revisionHistoryLimit": 1,
            "template": pod_template(ctx, "single"),
        },
    }


def controller_revision(ctx: RenderContext) -> dict[str, Any]:
    """The revision's snapshot, owned by the LLMDeployment (as StatefulSets keep theirs):
    what rebuilds the revision when its workload is gone. Immutable once created."""
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": metadata(ctx, revision_name(ctx.name, ctx.revision), revision_labels(ctx)),
        "data": json.loads(stored_spec(ctx)),
        "revision": ctx.number,
    }


def leader_worker_set(ctx: RenderContext) -> dict[str, Any]:
    """The current revision when one replica spans nodes: a leader serves, workers join."""
    meta = metadata(ctx, revision_name(ctx.name, ctx.revision), revision_labels(ctx))
    meta["annotations"] = revision_annotations(ctx)
    return {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": meta,
        "spec": {
            "replicas": ctx.replicas,
            "startupPolicy": "LeaderCreated",
            "leaderWorkerTemplate": {
                "size": ctx.resolved.sizing.nodes_per_replica,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": pod_template(ctx, "leader"),
                "workerTemplate": pod_template(ctx, "worker"),
            },
        },
    }


def _service_port(ctx: RenderContext) -> dict[str, Any]:
    return {
        "name": "http",
        "port": ctx.resolved.spec.service.port,
        "targetPort": "http",
        "protocol": "TCP",
        "appProtocol": "http",
    }


def service(ctx: RenderContext) -> dict[str, Any]:
    """The client Service over every serving revision (the `replicas` traffic split), with the
    spec's annotations (an internal load balancer...) and extra labels."""
    spec = ctx.resolved.spec.service
    meta = metadata(ctx, ctx.name, {**spec.labels, **common_labels(ctx)})
    if spec.annotations:
        meta["annotations"] = dict(spec.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": spec.type,
            "selector": serving_selector(ctx.name),
            "ports": [_service_port(ctx)],
        },
    }


def revision_services(ctx: RenderContext) -> list[dict[str, Any]]:
    """One Service per live revision, the HTTPRoute's weighted backends."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(
                ctx,
                revision_name(ctx.name, target.revision),
                {**common_labels(ctx), REVISION: target.revision},
            ),
            "spec": {
                "type": "ClusterIP",
                "selector": {**serving_selector(ctx.name), REVISION: target.revision},
                "ports": [_service_port(ctx)],
            },
        }
        for target in ctx.revisions
    ]


def http_route(ctx: RenderContext) -> dict[str, Any]:
    routing = ctx.resolved.spec.rollout.canary.traffic_routing
    spec: dict[str, Any] = {
        "parentRefs": [p.model_dump(by_alias=True, exclude_none=True) for p in routing.parent_refs],
        "rules": [
            {
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [
                    {
                        "name": revision_name(ctx.name, target.revision),
                        "port": ctx.resolved.spec.service.port,
                        "weight": target.weight,
                    }
                    for target in ctx.revisions
                ],
            }
        ],
    }
    if routing.hostnames:
        spec["hostnames"] = list(routing.hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": metadata(ctx, ctx.name, common_labels(ctx)),
        "spec": spec,
    }


def _scale_target(ctx: RenderContext) -> dict[str, str]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": ctx.name}


def _behavior(ctx: RenderContext) -> dict[str, Any]:
    autoscaling = ctx.resolved.spec.autoscaling
    behavior = autoscaling.behavior if autoscaling else None
    up = behavior.scale_up if behavior else None
    down = behavior.scale_down if behavior else None
    dump = {"by_alias": True, "exclude_none": True}
    return {
        "scaleUp": {**DEFAULT_SCALE_UP, **(up.model_dump(**dump) if up else {})},  # type: ignore[arg-type]
        "scaleDown": {**DEFAULT_SCALE_DOWN, **(down.model_dump(**dump) if down else {})},  # type: ignore[arg-type]
    }


def _target_value(value: float) -> str:
    """A Kubernetes quantity: millis keep fractions such as a 0.8 KV-cache target."""
    return str(int(value)) if value == int(value) else f"{round(value * 1000)}m"


def horizontal_pod_autoscaler(ctx: RenderContext) -> dict[str, Any]:
    """Scale the LLMDeployment itself (its scale subresource) on a per-pod engine signal."""
    autoscaling, planned = ctx.resolved.spec.autoscaling, ctx.resolved.autoscaling
    assert autoscaling is not None and planned is not None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(ctx, ctx.name, common_labels(ctx)),
        "spec": {
            "scaleTargetRef": _scale_target(ctx),
            "minReplicas": max(1, autoscaling.min_replicas),
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": ADAPTER_METRIC[autoscaling.metric]},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": _target_value(planned.target),
                        },
                    },
                }
            ],
            "behavior": _behavior(ctx),
        },
    }


def signal_query(source: MetricSource, selector: str, window: str = "1m") -> str:
    """PromQL for one signal summed over the selected pods (counters as per-second rates)."""
    matchers = ",".join(m for m in (selector, source.matchers) if m)
    if source.kind == "counter":
        return f"sum(rate({source.name}{{{matchers}}}[{window}]))"
    if source.kind == "ratio" and source.denominator:
        return f"sum({source.name}{{{matchers}}}) / sum({source.denominator}{{{matchers}}})"
    return f"sum({source.name}{{{matchers}}})"


def scaled_object(ctx: RenderContext) -> dict[str, Any]:
    """KEDA: the same signal, queried from Prometheus directly."""
    autoscaling, planned = ctx.resolved.spec.autoscaling, ctx.resolved.autoscaling
    assert autoscaling is not None and planned is not None
    source = ctx.resolved.engine.signals[AUTOSCALING_SIGNAL[autoscaling.metric]]
    assert source is not None  # resolve() refuses a metric the engine does not export
    owner = ctx.resolved.owner
    selector = f'namespace="{owner.namespace or "default"}",llmdeployment="{ctx.name}"'
    trigger: dict[str, Any] = {
        "type": "prometheus",
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": autoscaling.prometheus_url or "",
            "query": signal_query(source, selector),
            "threshold": f"{planned.target:g}",
        },
    }
    if autoscaling.prometheus_auth:
        trigger["metadata"]["authModes"] = autoscaling.prometheus_auth.type
        trigger["authenticationRef"] = {"name": ctx.name, "kind": "TriggerAuthentication"}
    labels = common_labels(ctx)
    meta = metadata(ctx, ctx.name, labels)
    # KEDA copies a ScaledObject's labels onto the HPA it creates unless told not to
    # (kedacore/keda controllers/keda/hpa.go); with ours, that HPA would pass for a kubellm
    # child the spec does not ask for, and be deleted on every reconcile.
    meta["annotations"] = {KEDA_HPA_EXCLUDED_LABELS: ",".join(sorted(labels))}
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": _scale_target(ctx),
            "minReplicaCount": autoscaling.min_replicas,
            "maxReplicaCount": autoscaling.max_replicas,
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": _behavior(ctx)}},
            "triggers": [trigger],
        },
    }


def trigger_authentication(ctx: RenderContext) -> dict[str, Any]:
    """KEDA reads Prometheus credentials from the spec's Secret itself (the operator does not).

    Parameter names are KEDA's (kedacore/keda v2.20.2
    pkg/scalers/authentication/authentication_types.go: bearerToken, username, password, ca).
    """
    autoscaling = ctx.resolved.spec.autoscaling
    assert autoscaling is not None and autoscaling.prometheus_auth is not None
    auth = autoscaling.prometheus_auth
    keys = (
        [("bearerToken", auth.token_key)]
        if auth.type == "bearer"
        else [("username", auth.username_key), ("password", auth.password_key)]
    )
    if auth.ca_key:
        keys.append(("ca", auth.ca_key))
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": metadata(ctx, ctx.name, common_labels(ctx)),
        "spec": {
            "secretTargetRef": [
                {"parameter": parameter, "name": auth.secret_name, "key": key}
                for parameter, key in keys
            ]
        },
    }


def pod_disruption_budget(ctx: RenderContext) -> dict[str, Any]:
    """Drains take one serving pod at a time; crash-looping pods never block them."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(ctx, ctx.name, common_labels(ctx)),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": serving_selector(ctx.name)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def pod_monitor(ctx: RenderContext) -> dict[str, Any]:
    """Scrape every serving pod, labelled by LLMDeployment, revision and engine.

    One endpoint per engine among the live revisions, since engines serve metrics at
    different paths (TensorRT-LLM: /prometheus/metrics).
    """
    # `action: replace` is the CRD's default, written out: the server would add it to a list
    # kubellm owns whole, and the child would look edited.
    relabel = [
        {"sourceLabels": [f"__meta_kubernetes_pod_label_{_label_key(INSTANCE)}"],
         "targetLabel": "llmdeployment", "action": "replace"},
        {"sourceLabels": [f"__meta_kubernetes_pod_label_{_label_key(REVISION)}"],
         "targetLabel": "revision", "action": "replace"},
        {"sourceLabels": [f"__meta_kubernetes_pod_label_{_label_key(ENGINE)}"],
         "targetLabel": "engine", "action": "replace"},
    ]  # fmt: skip
    engines = sorted({target.engine for target in ctx.revisions})
    endpoints = [
        {
            "port": "http",
            "path": ENGINES[engine].metrics_path,
            "interval": "15s",
            "relabelings": [
                {
                    "sourceLabels": [f"__meta_kubernetes_pod_label_{_label_key(ENGINE)}"],
                    "regex": engine,
                    "action": "keep",
                },
                *relabel,
            ],
        }
        for engine in engines
    ]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": metadata(ctx, ctx.name, common_labels(ctx)),
        "spec": {
            "selector": {"matchLabels": {**instance_labels(ctx.name), SERVING: "true"}},
            "podMetricsEndpoints": endpoints,
        },
    }


def _label_key(label: str) -> str:
    """Prometheus' sanitised form of a Kubernetes label name."""
    return "".join(c if c.isalnum() else "_" for c in label)
