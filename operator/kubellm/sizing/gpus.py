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

Speed (the capacity model in ``capacity.py``): ``memory_bandwidth_gbs`` is the datasheet's
peak memory bandwidth in GB/s (10**9 bytes) and ``bf16_tflops`` its dense (no 2:4 sparsity)
BF16 tensor-core peak, FP16 where the GPU has no BF16 (T4). Datasheets: T4 320 GB/s, 65 TF
(nvidia.com/content/dam/en-zz/Solutions/Data-Center/tesla-t4/t4-tensor-core-datasheet-951643.pdf);
L4 300 GB/s, 121 TF (242 sparse; nvidia.com/en-us/data-center/l4/); A10G: AWS publishes no
figures for its A10 variant, so the A10's 600 GB/s, 125 TF
(nvidia.com/en-us/data-center/products/a10-gpu/); L40S 864 GB/s, 362 TF
(nvidia.com/en-us/data-center/l40s/); A100 SXM 40GB 1,555 GB/s and 80GB 2,039 GB/s, 312 TF
(nvidia.com/en-us/data-center/a100/); H100 SXM 3,350 GB/s, 989 TF (PCIe boards share the
catalog entry and are slower: 2,000 GB/s, 756 TF; nvidia.com/en-us/data-center/h100/);
H100 NVL 3,900 GB/s, 835 TF; H200 4,800 GB/s, 989 TF (nvidia.com/en-us/data-center/h200/);
B200 8,000 GB/s, 2,250 TF (HGX B200: 36 PF sparse BF16 over 8 GPUs;
nvidia.com/en-us/data-center/hgx/); MI300X 5,300 GB/s, 1,307 TF
(amd.com/en/products/accelerators/instinct/mi300/mi300x.html).

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
    memory_bandwidth_gbs: float
    bf16_tflops: float


class UnknownGPUError(ValueError):
    """The GPU type is not in the catalog; the spec should give gpu.memoryGiB instead."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"unknown GPU type {name!r}; use one of {', '.join(known_gpus())} "
            "or set spec.resources.gpu.memoryGiB"
        )


def _nvidia(
    name: str, memory_gib: float, fp8: bool, *values: str, bandwidth: float, tflops: float
) -> GPUType:
    return GPUType(
        name,
        memory_gib,
        "nvidia",
        "nvidia.com/gpu",
        NVIDIA_PRODUCT_LABEL,
        values,
        fp8,
        bandwidth,
        tflops,
    )


_GPUS: tuple[GPUType, ...] = (
    _nvidia("T4", 14.56, False, "Tesla-T4", bandwidth=320, tflops=65),
    _nvidia("L4", 22.16, True, "NVIDIA-L4", bandwidth=300, tflops=121),
    _nvidia("A10G", 22.07, False, "NVIDIA-A10G", bandwidth=600, tflops=125),
    _nvidia("L40S", 44.39, True, "NVIDIA-L40S", bandwidth=864, tflops=362),
    _nvidia(
        "A100-40GB",
        39.39,
        False,
        "NVIDIA-A100-SXM4-40GB",
        "NVIDIA-A100-PCIE-40GB",
        bandwidth=1555,
        tflops=312,
    ),
    _nvidia(
        "A100-80GB",
        79.15,
        False,
        "NVIDIA-A100-SXM4-80GB",
        "NVIDIA-A100-80GB-PCIe",
        bandwidth=2039,
        tflops=312,
    ),
    _nvidia(
        "H100-80GB",
        79.11,
        True,
        "NVIDIA-H100-80GB-HBM3",
        "NVIDIA-H100-SXM5-80GB",
        "NVIDIA-H100-PCIe",
        bandwidth=3350,
        tflops=989,
    ),
    _nvidia("H100-NVL", 93.02, True, "NVIDIA-H100-NVL", bandwidth=3900, tflops=835),
    _nvidia(
        "H200",
        139.81,
        True,
        "NVIDIA-H200",
        "NVIDIA-H200-NVL",
        "NVIDIA-H200-SXM5-141GB",
        bandwidth=4800,
        tflops=989,
    ),
    _nvidia("B200", 178.35, True, "NVIDIA-B200", bandwidth=8000, tflops=2250),
    GPUType(
        "MI300X",
        191.45,
        "amd",
        "amd.com/gpu",
        AMD_PRODUCT_LABEL,
        ("AMD_Instinct_MI300X_OAM", "AMD_Instinct_MI300X"),
        True,
        5300,
        1307,
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
