"""Inference engines: one module each behind `Engine`; this registry is all that names them."""

from __future__ import annotations

from kubellm.engines.base import Engine, Signal
from kubellm.engines.sglang import SGLang
from kubellm.engines.tgi import TGI
from kubellm.engines.trtllm import TensorRTLLM
from kubellm.engines.vllm import VLLM

ENGINES: dict[str, Engine] = {e.name: e for e in (VLLM(), TGI(), TensorRTLLM(), SGLang())}


def get_engine(name: str) -> Engine:
    """The engine called `name`; KeyError lists the known ones."""
    try:
        return ENGINES[name]
    except KeyError:
        raise KeyError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None


__all__ = ["ENGINES", "Engine", "Signal", "get_engine"]
