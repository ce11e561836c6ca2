"""GPU sizing for LLM inference: pure functions, no I/O.

Answers "how many GPUs, in which tensor x pipeline layout, does this model need with this
engine, and why", from a model catalog, a GPU catalog and a memory model calibrated against
public measurements of each engine's start-up (see ``memory.py``).
"""

from .gpus import GPUType, UnknownGPUError, known_gpus, resolve_gpu
from .memory import (
    BYTES_PER_PARAM,
    KV_CACHE_DTYPE_BYTES,
    EngineTraits,
    StaticFraction,
    kv_cache_bytes_per_sequence,
    kv_cache_bytes_per_token,
)
from .models import ModelArchitecture, UnknownModelError, known_models, resolve_model
from .plan import DEFAULT_MIN_CONCURRENT_SEQUENCES, SizingPlan, SizingRequest, format_text, plan

__all__ = [
    "BYTES_PER_PARAM",
    "DEFAULT_MIN_CONCURRENT_SEQUENCES",
    "KV_CACHE_DTYPE_BYTES",
    "EngineTraits",
    "GPUType",
    "ModelArchitecture",
    "SizingPlan",
    "SizingRequest",
    "StaticFraction",
    "UnknownGPUError",
    "UnknownModelError",
    "format_text",
    "known_gpus",
    "known_models",
    "kv_cache_bytes_per_sequence",
    "kv_cache_bytes_per_token",
    "plan",
    "resolve_gpu",
    "resolve_model",
]
