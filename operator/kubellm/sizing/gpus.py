"""GPU catalog: memory the engine can really use, and how Kubernetes nodes advertise the GPU.

``memory_gib`` is what ``torch.cuda.mem_get_info`` reports as total (vLLM logs it as
``total_gpu_memory``), not the marketing number: ECC and the driver reserve part of it, and
sizing against the marketing number is how borderline deployments OOM.

Sources for memory_gib (vLLM/unsloth startup logs found in public issues and repos):
T4 14.56 (vLLM "total_gpu_memory (14.56GiB)"; Colab T4s report 14.74), L4 22.16 (unsloth
"NVIDIA L4 ... Max memory: 22.161"), A10G 22.07 (vLLM on A10 "total_gpu_memory (22.07GiB)",
same 24 GB GDDR6 board), L40S 44.39, A100-40GB 39.39-39.56 (lowest used), A100-80GB 79.15,
H100-80GB 79.11-79.19 (lowest used), H100-NVL 93.02, H200 139.81, B200 178.35
(unsloth "NVIDIA B200 ... 178.35"), MI300X 191.45 (vLLM ROCm log).

Label values: NVIDIA GPU feature discovery sets ``nvidia.com/gpu.product`` to the NVML name
with spaces replaced by dashes (``NVIDIA H100 80GB HBM3`` -> ``NVIDIA-H100-80GB-HBM3``); some
clouds use SXM-style names, listed too. AMD's node labeller (ROCm/k8s-device-plugin, GPU
operator) sets ``amd.com/gpu.product-name`` (e.g. ``AMD_Instinct_MI300X_OAM``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["GPUType", "UnknownGPUError", "known_gpus", "resolve_gpu"]

NVIDIA_PRODUCT_LABEL = "nvidia.com/gpu.product"
AMD_PRODUCT_LABEL = "amd.com/gpu.product-name"


@dataclass(frozen=True)
class GPUType:
    """A GPU model as sizing and scheduling see it."""

    name: str
    memory_gib: float
    vendor: str
    resource_name: str
    product_label: str
    product_values: tuple[str, ...]
    fp8: bool


class UnknownGPUError(ValueError):
    """The GPU type is not in the catalog; the spec should give gpu.memoryGiB instead."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"unknown GPU type {name!r}; use one of {', '.join(known_gpus())} "
            "or set spec.resources.gpu.memoryGiB"
        )


def _nvidia(name: str, memory_gib: float, fp8: bool, *values: str) -> GPUType:
    return GPUType(name, memory_gib, "nvidia", "nvidia.com/gpu", NVIDIA_PRODUCT_LABEL, values, fp8)


_GPUS: tuple[GPUType, ...] = (
    _nvidia("T4", 14.56, False, "Tesla-T4"),
    _nvidia("L4", 22.16, True, "NVIDIA-L4"),
    _nvidia("A10G", 22.07, False, "NVIDIA-A10G"),
    _nvidia("L40S", 44.39, True, "NVIDIA-L40S"),
    _nvidia("A100-40GB", 39.39, False, "NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB"),
    _nvidia("A100-80GB", 79.15, False, "NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe"),
    _nvidia(
        "H100-80GB",
        79.11,
        True,
        "NVIDIA-H100-80GB-HBM3",
        "NVIDIA-H100-SXM5-80GB",
        "NVIDIA-H100-PCIe",
    ),
    _nvidia("H100-NVL", 93.02, True, "NVIDIA-H100-NVL"),
    _nvidia("H200", 139.81, True, "NVIDIA-H200", "NVIDIA-H200-NVL", "NVIDIA-H200-SXM5-141GB"),
    _nvidia("B200", 178.35, True, "NVIDIA-B200"),
    GPUType(
        "MI300X",
        191.45,
        "amd",
        "amd.com/gpu",
        AMD_PRODUCT_LABEL,
        ("AMD_Instinct_MI300X_OAM", "AMD_Instinct_MI300X"),
        True,
    ),
)


def known_gpus() -> tuple[str, ...]:
    """Catalog names, as the spec's resources.gpu.type accepts them."""
    return tuple(g.name for g in _GPUS)


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


# Friendly short forms people type; everything else matches a name or a label value.
_ALIASES = {"h100": "H100-80GB", "a100": "A100-80GB", "h100sxm": "H100-80GB", "mi300": "MI300X"}


def resolve_gpu(name: str) -> GPUType:
    """Look a GPU up by catalog name, label value or short form, ignoring case and dashes."""
    key = _squash(name)
    for prefix in ("nvidia", "amdinstinct", "amd", "tesla"):
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix) :]
            break
    key = _squash(_ALIASES.get(key, key))
    for gpu in _GPUS:
        names = (gpu.name, *gpu.product_values)
        if any(key in {_squash(n), _squash(_strip_vendor(n))} for n in names):
            return gpu
    raise UnknownGPUError(name)


def _strip_vendor(value: str) -> str:
    return re.sub(r"^(NVIDIA|Tesla|AMD_Instinct|AMD)[-_]", "", value)
