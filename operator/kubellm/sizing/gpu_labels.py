"""How a cluster's nodes name their GPU model: one node-label scheme per way of labelling them.

kubellm pins serving pods to the spec's GPU type with a required node affinity on one label.
Which label depends on who labels the nodes:

- `nvidia` (the default): `nvidia.com/gpu.product` from NVIDIA GPU feature discovery, and
  `amd.com/gpu.product-name` from AMD's node labeller; values in `sizing.gpus`;
- `gke`: `cloud.google.com/gke-accelerator`, set by GKE on every GPU node pool;
- `eks`: `eks.amazonaws.com/instance-gpu-name`, set by EKS Auto Mode;
- `karpenter-aws`: `karpenter.k8s.aws/instance-gpu-name`, set by Karpenter's AWS provider;
- `karpenter-azure`: `karpenter.azure.com/sku-gpu-name`, set by AKS node auto-provisioning
  (Karpenter's Azure provider);
- `none`: no GPU node affinity; the pod's own nodeSelector or affinity decides.

Sources for the values:
- GKE: the accelerator type names of https://cloud.google.com/kubernetes-engine/docs/how-to/gpus
  (`cloud.google.com/gke-accelerator: GPU_TYPE`); A3 High and A3 Mega both carry H100 80GB.
- AWS: Karpenter sets `instance-gpu-name` to the EC2 DescribeInstanceTypes GPU name in lower
  kebab case (aws/karpenter-provider-aws pkg/providers/instancetype/types.go:
  `lowerKabobCase(aws.ToString(gpu.Name))`: T4, A10G, L4, L40S, A100, H100, H200, B200); EKS Auto
  Mode is Karpenter under `eks.amazonaws.com/` (https://docs.aws.amazon.com/eks/latest/userguide/create-node-pool.html).
  EC2 calls both A100 sizes `A100` (p4d 40 GB, p4de 80 GB): the scheme cannot tell them apart.
- Azure: Karpenter's Azure provider takes the GPU from the VM size name
  (Azure/karpenter-provider-azure: `Standard_NC24ads_A100_v4` -> `A100`, NC4as_T4_v3 -> `T4`);
  A100 40/80 GB and H100 SXM/NVL share a name there too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .gpus import GPUType

__all__ = ["GpuNodeSelector", "NoGpuLabelError", "gpu_node_selector"]

_AWS_NAMES = MappingProxyType(
    {
        "T4": ("t4",),
        "A10G": ("a10g",),
        "L4": ("l4",),
        "L40S": ("l40s",),
        "A100-40GB": ("a100",),
        "A100-80GB": ("a100",),
        "H100-80GB": ("h100",),
        "H200": ("h200",),
        "B200": ("b200",),
    }
)
_SCHEMES: Mapping[str, tuple[str, Mapping[str, tuple[str, ...]]]] = MappingProxyType(
    {
        "gke": (
            "cloud.google.com/gke-accelerator",
            MappingProxyType(
                {
                    "T4": ("nvidia-tesla-t4",),
                    "L4": ("nvidia-l4",),
                    "A100-40GB": ("nvidia-tesla-a100",),
                    "A100-80GB": ("nvidia-a100-80gb",),
                    "H100-80GB": ("nvidia-h100-80gb", "nvidia-h100-mega-80gb"),
                    "H200": ("nvidia-h200-141gb",),
                    "B200": ("nvidia-b200",),
                }
            ),
        ),
        "eks": ("eks.amazonaws.com/instance-gpu-name", _AWS_NAMES),
        "karpenter-aws": ("karpenter.k8s.aws/instance-gpu-name", _AWS_NAMES),
        "karpenter-azure": (
            "karpenter.azure.com/sku-gpu-name",
            MappingProxyType(
                {
                    "T4": ("T4",),
                    "A100-40GB": ("A100",),
                    "A100-80GB": ("A100",),
                    "H100-80GB": ("H100",),
                    "H100-NVL": ("H100",),
                }
            ),
        ),
    }
)


@dataclass(frozen=True)
class GpuNodeSelector:
    """A node selector requirement: `key` In `values`."""

    key: str
    values: tuple[str, ...]


class NoGpuLabelError(LookupError):
    """The scheme's nodes never carry this GPU (the cloud does not offer it)."""

    def __init__(self, scheme: str, gpu: GPUType) -> None:
        offered = ", ".join(sorted(_SCHEMES[scheme][1]))
        super().__init__(f"{scheme} nodes have no label for {gpu.name}; it offers {offered}")


def gpu_node_selector(scheme: str, gpu: GPUType) -> GpuNodeSelector | None:
    """Where nodes with this GPU are, under `scheme`; None for `none` (no GPU affinity)."""
    if scheme == "none":
        return None
    if scheme == "nvidia":
        return GpuNodeSelector(gpu.product_label, gpu.product_values)
    key, values = _SCHEMES[scheme]
    if gpu.name not in values:
        raise NoGpuLabelError(scheme, gpu)
    return GpuNodeSelector(key, values[gpu.name])
