"""The LLMDeployment resource as pydantic models: the one source of truth for the CRD.

Every field carries a description so `kubectl explain llmd.spec...` is useful, and rules the
OpenAPI schema cannot say are attached as CEL (`x-kubernetes-validations`) so the API server
refuses them at admission. The CRD YAML is generated from these models (see `api.crd`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from kubellm.api.kubernetes import (
    Problems,
    annotation_problems,
    dns_subdomain,
    label_problems,
    schema_problems,
)

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
POWERS_OF_TWO = (1, 2, 4, 8, 16, 32, 64)
# Children are named <name>-<10-char revision>; Service names stop at 63 characters.
MAX_NAME_LENGTH = 52

EngineType = Literal["vllm", "tgi", "trtllm", "sglang"]
Quantization = Literal["none", "fp8", "int8", "awq", "gptq", "bitsandbytes-nf4", "mxfp4", "nvfp4"]
KvCacheDtype = Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16", "float16"]
Dtype = Literal["auto", "bfloat16", "float16", "float32"]
Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]


def _parallelism_message(field: str) -> str:
    allowed = ", ".join(str(n) for n in POWERS_OF_TWO)
    return f"{field} must be 'auto' or a power of two ({allowed})"


def _parallelism_schema(field: str) -> WithJsonSchema:
    """`auto` or a power of two, checked by the API server with a message naming the field."""
    allowed = ", ".join(str(n) for n in POWERS_OF_TWO)
    return WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "description": f"`auto` (the default: the smallest plan that fits) or a power of two"
            f" ({allowed}). An explicit number is honoured, or refused with the reason.",
            "x-kubernetes-validations": [
                {
                    "rule": f"type(self) == string ? self == 'auto' : self in [{allowed}]",
                    "message": _parallelism_message(field),
                }
            ],
        }
    )


@dataclass(frozen=True)
class ParallelSize:
    """Offline, like the CEL rule: `auto` or a positive whole number (YAML `false` is not 0);
    sizing explains a number that is not a power of two or does not divide the model."""

    field: str

    def __call__(self, value: object) -> int | Literal["auto"]:
        if value == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PydanticCustomError("parallelism", _parallelism_message(self.field))
        return value


TensorParallel = Annotated[
    int | Literal["auto"],
    PlainValidator(ParallelSize("tensorParallel")),
    _parallelism_schema("tensorParallel"),
]
PipelineParallel = Annotated[
    int | Literal["auto"],
    PlainValidator(ParallelSize("pipelineParallel")),
    _parallelism_schema("pipelineParallel"),
]
Quantity = Annotated[
    str | int,
    WithJsonSchema(
        {
            "x-kubernetes-int-or-string": True,
            "description": "A Kubernetes quantity, for example `16`, `500m`, `64Gi`.",
            "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
            r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
        }
    ),
]
# A positive number or `auto`. A structural schema has no number-or-string type and CEL cannot
# see an untyped field, so the API server keeps the value as written and the operator refuses
# anything else (SpecValid=False naming the field), as offline validation does.
AutoscalingTarget = Annotated[
    Annotated[float, Field(gt=0, strict=True)] | Literal["auto"],
    WithJsonSchema(
        {
            "x-kubernetes-preserve-unknown-fields": True,
            "description": "Target value of the metric per replica (tokens/s, requests, queue"
            " length, or 0-1 KV cache utilization), or `auto` (the default): computed from the"
            " capacity model of the chosen GPUs and `ttftSLO`, shown in"
            " status.autoscaling. An explicit number always wins.",
        }
    ),
]
# How Kubernetes nodes advertise their GPU model; the label table is kubellm.sizing.gpu_labels.
GpuNodeLabels = Literal["nvidia", "gke", "eks", "karpenter-aws", "karpenter-azure", "none"]
KUBERNETES_PROBLEMS = "kubernetes"  # pydantic error type whose ctx carries (path, message)s


def raise_problems(problems: Problems) -> None:
    """Report problems below a field; `render.resolve` turns each into its own field path."""
    if problems:
        summary = "; ".join(f"{path}: {message}" if path else message for path, message in problems)
        raise PydanticCustomError(KUBERNETES_PROBLEMS, summary, {"problems": problems})


@dataclass(frozen=True)
class KubernetesSchema:
    """Validator of a core/v1 type against the real Kubernetes schema (see api.kubernetes)."""

    kind: str

    def __call__(self, value: dict[str, Any]) -> dict[str, Any]:
        raise_problems(schema_problems(value, self.kind))
        return value


# Pass-through core/v1 objects are free-form in the CRD (their OpenAPI inlined would make it
# huge) and checked against the real schema by `resolve()`, so the operator reports them.
FREE_OBJECT = WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True})


def _labels(value: dict[str, str]) -> dict[str, str]:
    raise_problems(label_problems(value))
    return value


def _annotations(value: dict[str, str]) -> dict[str, str]:
    raise_problems(annotation_problems(value))
    return value


def _dns_subdomain(value: str) -> str:
    if not dns_subdomain(value):
        raise_problems([("", f"{value!r} is not a DNS subdomain (lowercase, digits, '-', '.')")])
    return value


Affinity = Annotated[dict[str, Any], AfterValidator(KubernetesSchema("Affinity")), FREE_OBJECT]
Container = Annotated[dict[str, Any], AfterValidator(KubernetesSchema("Container")), FREE_OBJECT]
EnvFromSource = Annotated[
    dict[str, Any], AfterValidator(KubernetesSchema("EnvFromSource")), FREE_OBJECT
]
EnvVarSource = Annotated[
    dict[str, Any], AfterValidator(KubernetesSchema("EnvVarSource")), FREE_OBJECT
]
LocalObjectReference = Annotated[
    dict[str, Any], AfterValidator(KubernetesSchema("LocalObjectReference")), FREE_OBJECT
]
PodSecurityContext = Annotated[
    dict[str, Any], AfterValidator(KubernetesSchema("PodSecurityContext")), FREE_OBJECT
]
Probe = Annotated[dict[str, Any], AfterValidator(KubernetesSchema("Probe")), FREE_OBJECT]
ResourceRequirements = Annotated[
    dict[str, Any], AfterValidator(KubernetesSchema("ResourceRequirements")), FREE_OBJECT
]
SecurityContext = Annotated[
    dict[str, Any], AfterValidator(KubernetesSchema("SecurityContext")), FREE_OBJECT
]
Toleration = Annotated[dict[str, Any], AfterValidator(KubernetesSchema("Toleration")), FREE_OBJECT]
TopologySpreadConstraint = Annotated[
    dict[str, Any], AfterValidator(KubernetesSchema("TopologySpreadConstraint")), FREE_OBJECT
]
Volume = Annotated[dict[str, Any], AfterValidator(KubernetesSchema("Volume")), FREE_OBJECT]
VolumeMount = Annotated[
    dict[str, Any], AfterValidator(KubernetesSchema("VolumeMount")), FREE_OBJECT
]
Labels = Annotated[dict[str, str], AfterValidator(_labels)]
Annotations = Annotated[dict[str, str], AfterValidator(_annotations)]
ObjectName = Annotated[str, Field(max_length=253), AfterValidator(_dns_subdomain)]


class CamelModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are an error offline."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )


# --------------------------------------------------------------------------- model


class SecretKeyRef(CamelModel):
    name: str = Field(max_length=253, description="Name of a Secret in the same namespace.")
    key: str = Field(
        default="HF_TOKEN", max_length=253, description="Key in the Secret holding the token."
    )


class ModelSource(CamelModel):
    type: Literal["huggingFace", "pvc"] = Field(
        default="huggingFace",
        description="`huggingFace`: the engine downloads `model.name` into the model cache;"
        " `pvc`: the weights already sit in an existing PersistentVolumeClaim.",
    )
    claim_name: str | None = Field(
        default=None,
        max_length=253,
        description="PersistentVolumeClaim holding the weights (type `pvc`), mounted read-only"
        " by every pod: ReadOnlyMany or ReadWriteMany when pods can run on several nodes.",
    )
    path: str | None = Field(
        default=None,
        max_length=1024,
        description="Directory of the weights inside the claim; defaults to its root.",
    )


class ModelArchitectureOverride(CamelModel):
    """Numbers from the model's config.json, for models the built-in catalog lacks."""

    parameters: int | None = Field(default=None, gt=0, description="Total parameter count.")
    layers: int | None = Field(
        default=None, gt=0, description="Transformer layers (`num_hidden_layers`)."
    )
    hidden_size: int | None = Field(default=None, gt=0, description="`hidden_size`.")
    attention_heads: int | None = Field(
        default=None, gt=0, description="Query heads (`num_attention_heads`)."
    )
    kv_heads: int | None = Field(
        default=None, gt=0, description="Key/value heads (`num_key_value_heads`)."
    )
    head_dim: int | None = Field(
        default=None,
        gt=0,
        description="`head_dim`; not always hiddenSize / attentionHeads (gpt-oss, Gemma 2).",
    )
    vocab_size: int | None = Field(default=None, gt=0, description="`vocab_size`.")
    max_position_embeddings: int | None = Field(
        default=None, gt=0, description="Longest context the model supports."
    )
    experts: int | None = Field(default=None, ge=0, description="Routed experts (MoE).")
    experts_per_token: int | None = Field(
        default=None, ge=0, description="Experts active per token (MoE)."
    )
    kv_lora_rank: int | None = Field(
        default=None,
        gt=0,
        description="MLA latent KV size (DeepSeek V3/R1): a compressed KV cache per token.",
    )
    qk_rope_head_dim: int | None = Field(
        default=None, gt=0, description="MLA rotary key size, stored beside the latent KV."
    )


class ModelSpec(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.source) || self.source.type != 'pvc' ||"
                    " has(self.source.claimName)",
                    "message": "model.source.claimName is required when model.source.type is pvc",
                    "fieldPath": ".source.claimName",
                }
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=512,
        description="Hugging Face model id (for example `meta-llama/Llama-3.1-8B-Instruct`) or,"
        " with a `pvc` source, the model's name for sizing.",
    )
    revision: str | None = Field(
        default=None, max_length=256, description="Model revision: branch, tag or commit."
    )
    served_name: str | None = Field(
        default=None,
        max_length=256,
        description="Name clients pass as `model` in OpenAI requests; defaults to `name`.",
    )
    source: ModelSource = Field(
        default_factory=ModelSource, description="Where the weights come from."
    )
    token_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding a Hugging Face token, passed to the engine only by"
        " reference (secretKeyRef), never copied.",
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow the model repository's own Python code to run."
    )
    cache_claim_name: str | None = Field(
        default=None,
        max_length=253,
        description="PersistentVolumeClaim used as the download cache, so restarts and new"
        " replicas do not download again. Every pod of every revision mounts it, on whatever"
        " node it lands: it must be ReadWriteMany (a ReadWriteOnce volume attaches to one node"
        " and the other pods stay ContainerCreating). Unset: an emptyDir sized from the model,"
        " requested as ephemeral storage.",
    )
    architecture: ModelArchitectureOverride | None = Field(
        default=None,
        description="Explicit architecture numbers that override the built-in catalog, or"
        " replace it for a model it does not know.",
    )


# -------------------------------------------------------------------------- engine


class EnvVar(CamelModel):
    name: str = Field(max_length=256, description="Environment variable name.")
    value: str | None = Field(default=None, description="Literal value.")
    value_from: EnvVarSource | None = Field(
        default=None,
        description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef...),"
        " checked against the Kubernetes schema.",
    )


class EngineSpec(CamelModel):
    type: EngineType = Field(
        default="vllm", description="Inference engine: `vllm`, `tgi`, `trtllm` or `sglang`."
    )
    image: str | None = Field(
        default=None,
        max_length=512,
        description="Container image; defaults to the engine's pinned image.",
    )
    dtype: Dtype = Field(default="auto", description="Activation and weight dtype.")
    quantization: Quantization = Field(
        default="none",
        description="Weight quantization. `none` serves the checkpoint as it is. Each engine"
        " accepts its own subset; an unsupported one is refused with the list it supports.",
    )
    kv_cache_dtype: KvCacheDtype = Field(
        default="auto", description="KV cache dtype; fp8 halves the cache."
    )
    max_context_length: int | None = Field(
        default=None,
        gt=0,
        description="Longest sequence (prompt + output) served; defaults to the model's.",
    )
    max_concurrency: int | None = Field(
        default=None, gt=0, description="Most sequences batched at once per replica."
    )
    gpu_memory_utilization: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Fraction of each GPU's memory the engine may use (weights, KV cache,"
        " activations); sizing plans within it and translates it into each engine's own"
        " memory flag (SGLang --mem-fraction-static never above SGLang's own default, TGI"
        " --cuda-memory-fraction over its 0.90 wiggle room).",
    )
    extra_args: list[Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra engine flags. Flags that contradict fields kubellm owns (for"
        " example a second tensor-parallel flag) are refused.",
    )
    env: list[EnvVar] = Field(
        default_factory=list, max_length=64, description="Extra environment variables."
    )
    startup_timeout: Duration | None = Field(
        default=None,
        description="How long a pod may take from start to its first healthy answer"
        " (download, load, compile, CUDA graphs); the startup probe and the workload's"
        " progress deadline follow it. Default: 10m + 8s per GiB of weights, at least 30m.",
    )


# ----------------------------------------------------------------------- resources


class GpuSpec(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.type) || has(self.memoryGiB)",
                    "message": "set resources.gpu.type (a catalog name such as H100-80GB) or"
                    " resources.gpu.memoryGiB",
                }
            ]
        }
    )

    type: str | None = Field(
        default=None,
        max_length=64,
        description="GPU type, matched case-insensitively: T4, L4, A10G, L40S, A100-40GB,"
        " A100-80GB, H100-80GB, H100-NVL, H200, B200, MI300X.",
    )
    memory_gib: float | None = Field(
        default=None,
        alias="memoryGiB",
        gt=0,
        description="Memory per GPU in GiB, for a GPU the catalog does not know.",
    )
    resource_name: str | None = Field(
        default=None,
        max_length=253,
        description="Extended resource to request; defaults to the GPU vendor's"
        " (`nvidia.com/gpu`, `amd.com/gpu`).",
    )
    per_node: int = Field(
        default=8, gt=0, le=64, description="GPUs per node; tensor parallel stays within one."
    )
    node_labels: GpuNodeLabels | None = Field(
        default=None,
        description="How this cluster's nodes advertise the GPU model, for the required node"
        " affinity: `nvidia` (GPU feature discovery `nvidia.com/gpu.product`; AMD's"
        " `amd.com/gpu.product-name`), `gke` (`cloud.google.com/gke-accelerator`), `eks` (EKS"
        " Auto Mode `eks.amazonaws.com/instance-gpu-name`), `karpenter-aws`"
        " (`karpenter.k8s.aws/instance-gpu-name`), `karpenter-azure`"
        " (`karpenter.azure.com/sku-gpu-name`) or `none` (no GPU node affinity). Defaults to"
        " the operator's `--gpu-node-labels`.",
    )

    @model_validator(mode="after")
    def _type_or_memory(self) -> GpuSpec:
        """The CEL rule above, for offline use too."""
        if self.type is None and self.memory_gib is None:
            raise ValueError("set gpu.type (a catalog name such as H100-80GB) or gpu.memoryGiB")
        return self


class ResourcesSpec(CamelModel):
    gpu: GpuSpec = Field(description="The GPUs each replica runs on.")
    tensor_parallel: TensorParallel = Field(default="auto")
    pipeline_parallel: PipelineParallel = Field(default="auto")
    cpu: Quantity | None = Field(
        default=None, description="CPU request per pod; defaults from the GPU count."
    )
    memory: Quantity | None = Field(
        default=None, description="Memory request per pod; defaults from the model size."
    )
    min_concurrent_sequences: int = Field(
        default=2,
        ge=1,
        le=4096,
        description="Headroom rule: automatic sizing picks the smallest layout whose KV cache"
        " holds at least this many sequences of maxContextLength at once (what vLLM logs as"
        " 'Maximum concurrency'). One sequence starts the engine but serves one long request"
        " at a time with no margin against an OOM; 2 keeps a full sequence of margin.",
    )


# ---------------------------------------------------------------------- scheduling


class SchedulingSpec(CamelModel):
    """Shorthands for the scheduling fields of `template.spec`; set each in one place only."""

    node_selector: Labels = Field(
        default_factory=dict,
        description="Extra node labels the pods require, on top of the GPU node affinity (a"
        " nodeSelector adds to it, it cannot replace it: see resources.gpu.nodeLabels).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=64,
        description="Pod tolerations (Kubernetes Toleration); the GPU resource's NoSchedule"
        " taint is tolerated by default.",
    )
    affinity: Affinity | None = Field(
        default=None,
        description="Pod affinity rules (Kubernetes Affinity); the GPU node affinity is added"
        " to every required node selector term.",
    )
    priority_class_name: str | None = Field(
        default=None, max_length=253, description="PriorityClass of the serving pods."
    )


class ServiceSpec(CamelModel):
    port: int = Field(default=8000, gt=0, lt=65536, description="Port clients connect to.")
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Kubernetes Service type."
    )
    annotations: Annotations = Field(
        default_factory=dict,
        description="Annotations of the client Service, e.g. to make a LoadBalancer internal"
        " (`networking.gke.io/load-balancer-type: Internal`,"
        " `service.beta.kubernetes.io/aws-load-balancer-scheme: internal`).",
    )
    labels: Labels = Field(
        default_factory=dict,
        description="Extra labels of the client Service; kubellm's own label keys are refused.",
    )


# ------------------------------------------------------------------------ template


class PodMetadataOverride(CamelModel):
    labels: Labels = Field(
        default_factory=dict,
        description="Extra pod labels (cost allocation, mesh opt-out...); kubellm's own keys"
        " (app.kubernetes.io/instance, component, managed-by, kubellm.io/*) are refused.",
    )
    annotations: Annotations = Field(
        default_factory=dict,
        description='Extra pod annotations (e.g. `sidecar.istio.io/inject: "false"`);'
        " kubellm.io/* keys are refused.",
    )


class EngineContainerOverride(CamelModel):
    """Additions to the engine container (and to the workers' container in multi-node pods)."""

    name: Literal["engine"] = Field(
        description="Always `engine`: the inference engine's container kubellm renders."
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Extra environment variables, after engine.env (a name in both is refused).",
    )
    env_from: list[EnvFromSource] = Field(
        default_factory=list, max_length=16, description="Kubernetes EnvFromSource entries."
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list,
        max_length=32,
        description="Mounts of template.spec.volumes (Kubernetes VolumeMount).",
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description="Requests and limits merged per resource over kubellm's (cpu, memory,"
        " ephemeral-storage, RDMA devices...); the GPU resource is kubellm's and refused.",
    )
    security_context: SecurityContext | None = Field(
        default=None, description="Merged field by field over kubellm's container securityContext."
    )
    startup_probe: Probe | None = Field(
        default=None, description="Replaces kubellm's startup probe (engine health path)."
    )
    readiness_probe: Probe | None = Field(
        default=None, description="Replaces kubellm's readiness probe."
    )
    liveness_probe: Probe | None = Field(
        default=None, description="Replaces kubellm's liveness probe."
    )


class PodSpecOverride(CamelModel):
    service_account_name: ObjectName | None = Field(
        default=None,
        description="ServiceAccount of the pods, e.g. one bound to a cloud identity (IRSA,"
        " Workload Identity) to read weights from object storage.",
    )
    automount_service_account_token: bool | None = Field(
        default=None,
        description="Mount the ServiceAccount token; kubellm's default is false.",
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, max_length=16, description="Secrets to pull the engine image."
    )
    node_selector: Labels = Field(
        default_factory=dict,
        description="Extra node labels the pods require (same as scheduling.nodeSelector).",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=64, description="Same as scheduling.tolerations."
    )
    affinity: Affinity | None = Field(default=None, description="Same as scheduling.affinity.")
    topology_spread_constraints: list[TopologySpreadConstraint] = Field(
        default_factory=list,
        max_length=16,
        description="Spread the serving pods over zones or nodes (Kubernetes"
        " TopologySpreadConstraint).",
    )
    runtime_class_name: ObjectName | None = Field(
        default=None, description="RuntimeClass of the pods, e.g. `nvidia`."
    )
    priority_class_name: ObjectName | None = Field(
        default=None, description="Same as scheduling.priorityClassName."
    )
    security_context: PodSecurityContext | None = Field(
        default=None,
        description="Merged field by field over kubellm's pod securityContext (seccomp"
        " RuntimeDefault).",
    )
    termination_grace_period_seconds: int | None = Field(
        default=None,
        ge=0,
        le=86400,
        description="Replaces kubellm's grace period (preStop drain + the longest request at"
        " maxContextLength + exit margin); the engine's drain timeout follows it.",
    )
    volumes: list[Volume] = Field(
        default_factory=list,
        max_length=32,
        description="Extra pod volumes (Kubernetes Volume); kubellm's names (shm,"
        " model-cache, weights) are refused.",
    )
    init_containers: list[Container] = Field(
        default_factory=list,
        max_length=8,
        description="Init containers (Kubernetes Container), e.g. to fetch weights or, with"
        " `restartPolicy: Always`, native sidecars.",
    )
    containers: list[EngineContainerOverride] = Field(
        default_factory=list,
        max_length=1,
        description="Additions to the engine container, named `engine`.",
    )


class PodTemplateOverride(CamelModel):
    """A partial pod template merged onto every pod kubellm renders."""

    metadata: PodMetadataOverride = Field(
        default_factory=PodMetadataOverride, description="Pod labels and annotations."
    )
    spec: PodSpecOverride = Field(
        default_factory=PodSpecOverride, description="Pod spec fields platform teams set."
    )


# --------------------------------------------------------------------- autoscaling


class ScalingPolicy(CamelModel):
    type: Literal["Pods", "Percent"] = Field(description="Change by pods or by percent.")
    value: int = Field(gt=0, description="How many pods or what percent.")
    period_seconds: int = Field(gt=0, le=1800, description="Window the policy applies over.")


class ScalingRules(CamelModel):
    stabilization_window_seconds: int | None = Field(
        default=None, ge=0, le=3600, description="Look-back window before acting."
    )
    policies: list[ScalingPolicy] = Field(
        default_factory=list, max_length=8, description="Allowed changes per period."
    )
    select_policy: Literal["Max", "Min", "Disabled"] | None = Field(
        default=None, description="Which policy wins."
    )


class ScalingBehavior(CamelModel):
    scale_up: ScalingRules | None = Field(
        default=None, description="Defaults to fast: +100% or +2 pods per minute."
    )
    scale_down: ScalingRules | None = Field(
        default=None,
        description="Defaults to slow (engines take minutes to load): 10-minute window, one"
        " pod per 5 minutes.",
    )


class AutoscalingSpec(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
                    "message": "autoscaling.minReplicas must be <= autoscaling.maxReplicas",
                    "fieldPath": ".minReplicas",
                },
                {
                    "rule": "!has(self.provider) || self.provider != 'keda' ||"
                    " has(self.prometheusUrl)",
                    "message": "autoscaling.prometheusUrl is required with provider keda",
                    "fieldPath": ".prometheusUrl",
                },
            ]
        }
    )

    min_replicas: int = Field(default=1, ge=0, description="Fewest replicas.")
    max_replicas: int = Field(gt=0, description="Most replicas.")
    metric: Literal[
        "generationTokensPerSecond", "requestsInFlight", "queueLength", "kvCacheUtilization"
    ] = Field(
        default="generationTokensPerSecond",
        description="Per-replica signal scaled on: generated tokens per second by default, or"
        " requests running, requests waiting, KV-cache utilization (README: Autoscaling).",
    )
    target: AutoscalingTarget = Field(default="auto")
    ttft_slo: Duration = Field(
        default="1s",
        alias="ttftSLO",
        description="Time to first token (99th percentile) that `target: auto` plans each"
        " replica to stay within.",
    )
    provider: Literal["hpa", "keda"] = Field(
        default="hpa",
        description="`hpa` (autoscaling/v2 through the Prometheus adapter rules the chart"
        " ships) or `keda` (a ScaledObject with a Prometheus trigger).",
    )
    prometheus_url: str | None = Field(
        default=None, max_length=1024, description="Prometheus address KEDA queries."
    )
    prometheus_auth: PrometheusAuth | None = Field(
        default=None,
        description="Credentials KEDA uses for Prometheus (a TriggerAuthentication on the"
        " Secret's keys).",
    )
    behavior: ScalingBehavior | None = Field(
        default=None, description="HPA scale-up/down behaviour; safe defaults when unset."
    )


# ------------------------------------------------------------------------- rollout


class Pause(CamelModel):
    duration: Duration | None = Field(
        default=None,
        description="How long to hold this step; without it the step waits for `kubellm promote`.",
    )


class CanaryStep(CamelModel):
    weight: int = Field(ge=1, le=100, description="Share of traffic (percent) to the canary.")
    pause: Pause | None = Field(
        default=None,
        description="Hold at this weight; `{}` waits for `kubellm promote`. Without a pause"
        " the step lasts one analysis interval.",
    )


class ParentRef(CamelModel):
    name: str = Field(max_length=253, description="Gateway name.")
    namespace: str | None = Field(default=None, max_length=63, description="Gateway namespace.")
    section_name: str | None = Field(default=None, max_length=253, description="Listener.")
    group: str | None = Field(default=None, max_length=253, description="Parent API group.")
    kind: str | None = Field(default=None, max_length=63, description="Parent kind.")
    port: int | None = Field(default=None, gt=0, lt=65536, description="Listener port.")


class TrafficRouting(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.type) || self.type != 'gatewayAPI' ||"
                    " (has(self.parentRefs) && size(self.parentRefs) > 0)",
                    "message": "trafficRouting.parentRefs is required for gatewayAPI routing",
                    "fieldPath": ".parentRefs",
                }
            ]
        }
    )

    type: Literal["replicas", "gatewayAPI"] = Field(
        default="replicas",
        description="`replicas`: one Service over both revisions, the split is the replica"
        " ratio; `gatewayAPI`: an HTTPRoute with weighted backends.",
    )
    parent_refs: list[ParentRef] = Field(
        default_factory=list, max_length=16, description="Gateways the HTTPRoute attaches to."
    )
    hostnames: list[Annotated[str, Field(max_length=253)]] = Field(
        default_factory=list, max_length=16, description="HTTPRoute hostnames."
    )


class MetricCheck(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.min) || has(self.max)",
                    "message": "a check needs min or max",
                }
            ]
        }
    )

    name: str = Field(max_length=63, pattern=r"^[a-zA-Z0-9_.-]+$", description="Check name.")
    query: str = Field(
        max_length=4096,
        description="PromQL returning one number. `$namespace`, `$llmdeployment`, `$revision`"
        " (the canary's) and `$stable` are substituted.",
    )
    min: float | None = Field(default=None, description="Fail below this.")
    max: float | None = Field(default=None, description="Fail above this.")


class PrometheusAuth(CamelModel):
    """Credentials for a Prometheus behind authentication, from a Secret in the namespace."""

    type: Literal["bearer", "basic"] = Field(
        description="`bearer` (an Authorization: Bearer token) or `basic` (user and password)."
    )
    secret_name: ObjectName = Field(
        description="Secret in the LLMDeployment's namespace. The operator must be allowed to"
        " read it (chart value prometheusAuth.secretNames); KEDA reads it itself."
    )
    token_key: str = Field(
        default="token", max_length=253, description="Key of the bearer token in the Secret."
    )
    username_key: str = Field(
        default="username", max_length=253, description="Key of the basic-auth user."
    )
    password_key: str = Field(
        default="password", max_length=253, description="Key of the basic-auth password."
    )
    ca_key: str | None = Field(
        default=None,
        max_length=253,
        description="Key of a PEM CA bundle that signed Prometheus' https certificate; the"
        " system CAs when unset.",
    )


class Analysis(CamelModel):
    prometheus_url: str = Field(
        max_length=1024, description="Prometheus HTTP API base, e.g. http://prometheus:9090."
    )
    prometheus_auth: PrometheusAuth | None = Field(
        default=None, description="Credentials when Prometheus requires authentication."
    )
    interval: Duration = Field(default="1m", description="Time between analyses.")
    failure_limit: int = Field(
        default=0, ge=0, description="Failed analyses tolerated before rolling back."
    )
    min_requests: int = Field(
        default=20,
        ge=0,
        description="Canary requests needed in an interval; fewer is inconclusive, not a pass."
        " With 0, no requests at all (a missing series) is enough.",
    )
    max_error_rate: float | None = Field(
        default=None, ge=0, le=1, description="Highest share of failed canary requests."
    )
    max_time_to_first_token_p95: Duration | None = Field(
        default=None, description="Highest canary P95 time to first token."
    )
    max_latency_p95: Duration | None = Field(
        default=None, description="Highest canary P95 end-to-end request latency."
    )
    checks: list[MetricCheck] = Field(
        default_factory=list,
        max_length=16,
        description="Custom PromQL checks; a failing check counts even below minRequests.",
    )
    inconclusive_limit: int = Field(
        default=3,
        ge=1,
        description="Inconclusive analyses in a row that pause the rollout until `kubellm"
        " promote` or `kubellm abort` (too little traffic, Prometheus unreachable...).",
    )


class CanarySpec(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.steps) || self.steps.map(s, s.weight).isSorted() &&"
                    " self.steps.all(s, self.steps.filter(t, t.weight == s.weight).size() == 1)",
                    "message": "canary.steps weights must strictly increase",
                    "fieldPath": ".steps",
                }
            ]
        }
    )

    steps: list[CanaryStep] = Field(
        default_factory=lambda: [
            CanaryStep(weight=10, pause=Pause(duration="5m")),
            CanaryStep(weight=50, pause=Pause(duration="5m")),
        ],
        max_length=20,
        description="Traffic steps; weights strictly increase within 1..100. Promotion to"
        " 100% follows the last step.",
    )
    traffic_routing: TrafficRouting = Field(
        default_factory=TrafficRouting, description="How traffic is split."
    )
    analysis: Analysis | None = Field(
        default=None, description="Prometheus checks run at every step."
    )


class RolloutSpec(CamelModel):
    strategy: Literal["canary", "rolling", "recreate"] = Field(
        default="canary",
        description="How a new revision replaces the running one: `canary` (steps with"
        " analysis), `rolling` (surge one replica at a time), `recreate` (stop, then start).",
    )
    canary: CanarySpec = Field(default_factory=CanarySpec, description="Canary settings.")
    auto_rollback: bool = Field(
        default=True, description="Roll back automatically when analysis fails."
    )
    progress_deadline: Duration | None = Field(
        default=None,
        description="Longest a rollout step may go without progress (a new pod Ready or the"
        " step advancing) before the new revision is rolled back and the stable gets its"
        " full count again. Defaults to 10m, or to the engine's startup window for the model"
        " when loading it takes longer.",
    )
    history_limit: int = Field(
        default=10, ge=1, le=100, description="Rollouts kept in status.history."
    )


# ---------------------------------------------------------------------------- spec


class LLMDeploymentSpec(CamelModel):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.engine) || !has(self.engine.type) ||"
                    " self.engine.type != 'tgi' || !has(self.resources.pipelineParallel) ||"
                    " string(self.resources.pipelineParallel) in ['auto', '1']",
                    "message": "resources.pipelineParallel: TGI has no pipeline parallel;"
                    " use auto or 1, or engine vllm/trtllm/sglang",
                    "fieldPath": ".resources.pipelineParallel",
                },
            ]
        }
    )

    model: ModelSpec = Field(description="The model to serve.")
    engine: EngineSpec = Field(default_factory=EngineSpec, description="The inference engine.")
    resources: ResourcesSpec = Field(description="GPUs and parallelism per replica.")
    replicas: int = Field(
        default=1,
        ge=0,
        description="Serving replicas; written by the autoscaler when `autoscaling` is set"
        " (through the scale subresource).",
    )
    scheduling: SchedulingSpec = Field(
        default_factory=SchedulingSpec, description="Where pods run."
    )
    service: ServiceSpec = Field(
        default_factory=ServiceSpec, description="The client-facing Service."
    )
    template: PodTemplateOverride | None = Field(
        default=None,
        description="A partial pod template merged onto the rendered pods. kubellm keeps the"
        " engine command, image, ports, GPU resources and its volumes; lists are appended,"
        " securityContexts merged field by field, and probes, grace period, ServiceAccount"
        " and class names replace kubellm's.",
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Scale on token throughput instead of a fixed count."
    )
    rollout: RolloutSpec = Field(
        default_factory=RolloutSpec, description="How changes of model/engine/image roll out."
    )


# -------------------------------------------------------------------------- status

ConditionType = Literal["Ready", "Progressing", "Degraded", "SpecValid"]
Phase = Literal["Pending", "Progressing", "Ready", "Degraded", "Failed"]
RolloutResult = Literal["Succeeded", "RolledBack", "Aborted", "Superseded"]


class StatusModel(BaseModel):
    """Status models: camelCase, tolerant of fields a newer operator wrote."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class Condition(StatusModel):
    type: str = Field(max_length=316, description="Ready, Progressing, Degraded or SpecValid.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(max_length=1024, description="CamelCase reason.")
    message: str = Field(default="", max_length=32768, description="Human-readable detail.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="Generation the condition was computed from."
    )


class SizingStatus(StatusModel):
    tensor_parallel: int = Field(description="Chosen tensor parallel size.")
    pipeline_parallel: int = Field(description="Chosen pipeline parallel size.")
    gpus_per_replica: int = Field(description="GPUs each replica uses.")
    nodes_per_replica: int = Field(default=1, description="Nodes each replica spans.")
    gpu_type: str | None = Field(default=None, description="GPU type sized for.")
    context_length: int = Field(description="Context length sized for.")
    weights_gi_b: float = Field(alias="weightsGiB", description="Model weights, GiB.")
    kv_cache_per_gpu_gi_b: float = Field(
        alias="kvCachePerGpuGiB", description="Memory left for the KV cache per GPU, GiB."
    )
    overhead_gi_b: float = Field(
        alias="overheadGiB",
        description="Engine overhead per GPU (activation peak, non-torch buffers, CUDA graphs"
        " and context), GiB.",
    )
    per_gpu_used_gi_b: float = Field(alias="perGpuUsedGiB", description="Planned use per GPU, GiB.")
    per_gpu_capacity_gi_b: float = Field(
        alias="perGpuCapacityGiB", description="Usable memory per GPU at the utilization, GiB."
    )
    max_concurrent_sequences: int = Field(
        default=0, description="Full-context sequences the KV cache holds per replica."
    )
    min_concurrent_sequences: int = Field(
        default=2, description="The headroom rule the plan was chosen with."
    )
    memory_fraction: float | None = Field(
        default=None,
        description="Value of the engine's own memory flag (vLLM --gpu-memory-utilization,"
        " SGLang --mem-fraction-static, TGI --cuda-memory-fraction, TensorRT-LLM"
        " --kv_cache_free_gpu_memory_fraction).",
    )
    startup_timeout_seconds: int | None = Field(
        default=None, description="Start-up window of each pod, seconds."
    )
    reason: str = Field(description="Why this plan, in one line.")


class AutoscalingStatus(StatusModel):
    metric: str = Field(description="The per-replica signal the autoscaler scales on.")
    target: float = Field(description="Per-replica target the autoscaler gets.")
    source: Literal["auto", "spec"] = Field(
        description="`auto`: computed from the capacity model; `spec`: set in the spec."
    )
    ttft_slo: str = Field(alias="ttftSLO", description="The time to first token planned for.")
    sustainable_tokens_per_second: float | None = Field(
        default=None,
        description="Generated tokens/s one replica sustains within the TTFT SLO (capacity"
        " model; absent when the GPU's speed is unknown).",
    )
    reason: str = Field(default="", description="How the target was reached, in one line.")


class MetricResult(StatusModel):
    name: str = Field(description="Signal or check name.")
    value: float | None = Field(default=None, description="Measured canary value.")
    stable_value: float | None = Field(default=None, description="Stable revision's value.")
    threshold: str | None = Field(default=None, description="The limit, e.g. `<= 0.05`.")
    verdict: Literal["Passed", "Failed", "Inconclusive"] = Field(description="Outcome.")
    message: str = Field(default="", description="Why, when not passed.")


class AnalysisStatus(StatusModel):
    time: str = Field(description="When the analysis ran (RFC 3339).")
    verdict: Literal["Passed", "Failed", "Inconclusive"] = Field(description="Overall.")
    failures: int = Field(default=0, description="Failed analyses so far in this rollout.")
    inconclusive: int = Field(default=0, description="Inconclusive analyses in a row.")
    requests: float | None = Field(default=None, description="Canary requests counted.")
    results: list[MetricResult] = Field(default_factory=list, description="Per signal.")


class RolloutStatus(StatusModel):
    stable_revision: str | None = Field(default=None, description="Revision serving now.")
    canary_revision: str | None = Field(default=None, description="Revision being rolled out.")
    canary_weight: int = Field(
        default=0, description="Canary traffic share really served now, percent."
    )
    step_weight: int | None = Field(
        default=None, description="Canary traffic share the current step aims for, percent."
    )
    current_step: int | None = Field(default=None, description="Index of the canary step.")
    step_started_at: str | None = Field(default=None, description="When the step began.")
    started_at: str | None = Field(default=None, description="When the rollout began.")
    paused: bool = Field(
        default=False,
        description="Waiting for `kubellm promote` (or `abort`): a pause without a duration,"
        " failed analysis without autoRollback, or inconclusive analyses.",
    )
    yielded: int = Field(
        default=0,
        description="Stable pods given up beyond the new revision's Ready pods, while its pods"
        " waited for GPUs the stable held (at most one at a time).",
    )
    progressed_at: str | None = Field(
        default=None,
        description="When the new revision last made progress (a step began or a new pod"
        " became Ready); the progress deadline counts from here.",
    )
    message: str = Field(default="", description="What the rollout waits for.")
    changed: list[str] = Field(
        default_factory=list, description="What the rollout changes: model, engine, image..."
    )
    analysis: AnalysisStatus | None = Field(default=None, description="Last analysis.")
    last_passed_at: str | None = Field(
        default=None,
        description="When an analysis last passed in this rollout; a step needs one after it"
        " began.",
    )
    next_analysis_at: str | None = Field(
        default=None, description="When the next canary analysis is due (RFC 3339)."
    )


class HistoryEntry(StatusModel):
    revision: str = Field(description="Revision hash.")
    changed: list[str] = Field(default_factory=list, description="What changed: model, ...")
    model: str | None = Field(default=None, description="Model of the revision.")
    image: str | None = Field(default=None, description="Image of the revision.")
    start_time: str = Field(description="Rollout start (RFC 3339).")
    end_time: str | None = Field(default=None, description="Rollout end (RFC 3339).")
    result: RolloutResult = Field(description="Succeeded, RolledBack, Aborted or Superseded.")
    reason: str = Field(default="", description="Why it ended so.")


class RolloutStats(StatusModel):
    total: int = Field(default=0, description="Finished rollouts (the first revision is not).")
    succeeded: int = Field(default=0, description="Promoted rollouts.")
    failed: int = Field(default=0, description="Rolled back or aborted rollouts.")
    success_rate: float | None = Field(
        default=None, description="succeeded / (succeeded + failed); superseded excluded."
    )


class RevisionStatus(StatusModel):
    revision: str = Field(description="Revision hash.")
    replicas: int = Field(default=0, description="Pods of the revision.")
    ready_replicas: int = Field(default=0, description="Ready pods of the revision.")
    weight: int = Field(default=0, description="Traffic share, percent.")
    ready_seconds: float | None = Field(
        default=None,
        description="Cold start: first pod created to revision Ready, seconds.",
    )


class LLMDeploymentStatus(StatusModel):
    observed_generation: int | None = Field(
        default=None, description="Generation of the spec last acted on."
    )
    phase: Phase | None = Field(
        default=None, description="Pending, Progressing, Ready, Degraded or Failed."
    )
    conditions: list[Condition] = Field(
        default_factory=list, description="Ready, Progressing, Degraded, SpecValid."
    )
    replicas: int = Field(default=0, description="Serving pods across revisions.")
    ready_replicas: int = Field(default=0, description="Ready serving pods.")
    ready: str | None = Field(default=None, description="Ready/desired, for `kubectl get`.")
    selector: str | None = Field(
        default=None, description="Label selector of the serving pods (scale subresource)."
    )
    sizing: SizingStatus | None = Field(default=None, description="The parallelism plan.")
    autoscaling: AutoscalingStatus | None = Field(
        default=None, description="The autoscaler's effective target."
    )
    revisions: list[RevisionStatus] = Field(default_factory=list, description="Live revisions.")
    rollout: RolloutStatus | None = Field(default=None, description="The rollout in flight.")
    history: list[HistoryEntry] = Field(default_factory=list, description="Past rollouts.")
    rollout_stats: RolloutStats | None = Field(default=None, description="Outcome tally.")


class LLMDeployment(BaseModel):
    """A whole object as read from YAML or the API (metadata kept loose)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: dict[str, Any]
    spec: LLMDeploymentSpec
