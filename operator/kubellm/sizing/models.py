"""Model catalog: the architecture numbers sizing needs, looked up by the names people deploy.

The catalog is data (``models.yaml`` beside this file) so adding a model is a one-line change.
Names are matched loosely because users write HF ids, bare names, local paths and quantized
variants of the same architecture; a quantization suffix (``-FP8``, ``-AWQ``...) also tells us
the checkpoint's native weight format, which decides the weight bytes.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

__all__ = ["ModelArchitecture", "UnknownModelError", "known_models", "resolve_model"]


@dataclass(frozen=True)
class ModelArchitecture:
    """Numbers from a model's config.json that decide its memory footprint."""

    name: str
    parameters: int
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    max_position: int
    experts: int = 0
    experts_per_token: int = 0
    active_parameters: int | None = None
    mla_kv_elements: int | None = None
    native_quantization: str = "none"
    # False for a model the catalog does not know whose name names no format either.
    native_quantization_known: bool = True
    weights_gib: float | None = None
    # Layers using sliding-window attention keep only window tokens of KV (gpt-oss, Gemma 2).
    sliding_window: int = 0
    sliding_window_layers: int = 0


class UnknownModelError(ValueError):
    """The model is not in the catalog and the spec did not give enough numbers."""

    def __init__(self, name: str, missing: tuple[str, ...]) -> None:
        self.name = name
        self.missing = missing
        fields = ", ".join(f"spec.model.architecture.{m}" for m in missing)
        super().__init__(f"model {name!r} is not in the built-in catalog; add {fields}")


# Defaults for models described only by spec.model.architecture.
DEFAULT_VOCAB_SIZE = 128256
# 4096 is below the real context limit of virtually every model, so rendering
# --max-model-len from it never asks the engine for more than the model supports.
DEFAULT_MAX_POSITION = 4096
DEFAULT_QK_ROPE_HEAD_DIM = 64

_REQUIRED_FOR_UNKNOWN = ("parameters", "layers", "attentionHeads")

# camelCase spec.model.architecture key -> ModelArchitecture field.
_OVERRIDE_FIELDS: Mapping[str, str] = {
    "parameters": "parameters",
    "layers": "layers",
    "hiddenSize": "hidden_size",
    "attentionHeads": "attention_heads",
    "kvHeads": "kv_heads",
    "headDim": "head_dim",
    "vocabSize": "vocab_size",
    "experts": "experts",
    "expertsPerToken": "experts_per_token",
    "maxPositionEmbeddings": "max_position",
    "activeParameters": "active_parameters",
    "slidingWindow": "sliding_window",
    "slidingWindowLayers": "sliding_window_layers",
}
_MLA_KEYS = ("kvLoraRank", "qkRopeHeadDim")
_ZERO_OK = {"experts", "expertsPerToken", "slidingWindow", "slidingWindowLayers"}

# Name suffixes, longest first, and the checkpoint format they imply (None: no format).
_SUFFIXES: tuple[tuple[str, str | None], ...] = (
    ("-quantized.w4a16", "gptq"),
    ("-quantized.w8a8", "int8"),
    ("-gptq-int8", "int8"),
    ("-fp8-dynamic", "fp8"),
    ("-bnb-4bit", "bitsandbytes-nf4"),
    ("-w4a16", "gptq"),
    ("-w8a8", "int8"),
    ("-w8a16", "int8"),
    ("-nvfp4", "nvfp4"),
    ("-mxfp4", "mxfp4"),
    ("-dynamic", None),
    ("-instruct", None),
    ("-int4", None),
    ("-int8", None),
    ("-gptq", "gptq"),
    ("-chat", None),
    ("-base", None),
    ("-fp8", "fp8"),
    ("-awq", "awq"),
    ("-fp4", "nvfp4"),
    ("-it", None),
    ("-hf", None),
)


def _normalize(name: str) -> tuple[str, str | None]:
    """Reduce a model name or path to a catalog key plus any quantization its name implies."""
    key = name.strip().rstrip("/").split("/")[-1].lower()
    quant: str | None = None
    changed = True
    while changed:
        changed = False
        for suffix, fmt in _SUFFIXES:
            if key.endswith(suffix) and len(key) > len(suffix):
                key = key[: -len(suffix)]
                quant = quant or fmt
                changed = True
    if key.startswith("meta-llama-"):
        key = key[len("meta-") :]
    return key, quant


def _from_yaml(entry: Mapping[str, Any]) -> ModelArchitecture:
    heads = int(entry["heads"])
    hidden = int(entry["hidden"])
    mla = entry.get("mlaKvElements")
    weights = entry.get("weightsGiB")
    active = entry.get("activeParameters")
    return ModelArchitecture(
        name=str(entry["id"]),
        parameters=int(entry["parameters"]),
        layers=int(entry["layers"]),
        hidden_size=hidden,
        attention_heads=heads,
        kv_heads=int(entry.get("kvHeads", heads)),
        head_dim=int(entry.get("headDim", hidden // heads)),
        vocab_size=int(entry["vocab"]),
        max_position=int(entry["maxPosition"]),
        experts=int(entry.get("experts", 0)),
        experts_per_token=int(entry.get("expertsPerToken", 0)),
        active_parameters=None if active is None else int(active),
        mla_kv_elements=None if mla is None else int(mla),
        native_quantization=str(entry.get("nativeQuantization", "none")),
        weights_gib=None if weights is None else float(weights),
        sliding_window=int(entry.get("slidingWindow", 0)),
        sliding_window_layers=int(entry.get("slidingWindowLayers", 0)),
    )


@functools.cache
def _catalog() -> tuple[tuple[ModelArchitecture, ...], Mapping[str, ModelArchitecture]]:
    text = resources.files(__package__).joinpath("models.yaml").read_text(encoding="utf-8")
    entries: list[Mapping[str, Any]] = yaml.safe_load(text)
    models: list[ModelArchitecture] = []
    index: dict[str, ModelArchitecture] = {}
    for entry in entries:
        model = _from_yaml(entry)
        models.append(model)
        for alias in (model.name, *entry.get("aliases", ())):
            index.setdefault(_normalize(str(alias))[0], model)
    return tuple(models), index


def known_models() -> tuple[str, ...]:
    """Canonical Hugging Face ids of every built-in model."""
    return tuple(m.name for m in _catalog()[0])


def _check_value(key: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"spec.model.architecture.{key} must be an integer, got {value!r}")
    if value < 0 or (value == 0 and key not in _ZERO_OK):
        raise ValueError(f"spec.model.architecture.{key} must be positive, got {value}")
    return value


def _apply_overrides(
    base: ModelArchitecture | None, name: str, overrides: Mapping[str, int]
) -> ModelArchitecture:
    unknown = sorted(set(overrides) - set(_OVERRIDE_FIELDS) - set(_MLA_KEYS))
    if unknown:
        raise ValueError(f"unknown spec.model.architecture field(s): {', '.join(unknown)}")
    values = {k: _check_value(k, v) for k, v in overrides.items()}
    fields: dict[str, Any] = {
        _OVERRIDE_FIELDS[k]: v for k, v in values.items() if k not in _MLA_KEYS
    }
    if "kvLoraRank" in values:
        rope = values.get("qkRopeHeadDim", DEFAULT_QK_ROPE_HEAD_DIM)
        fields["mla_kv_elements"] = values["kvLoraRank"] + rope
    if base is not None:
        return dataclasses.replace(base, **fields)

    missing = [k for k in _REQUIRED_FOR_UNKNOWN if k not in values]
    if "hiddenSize" not in values and "headDim" not in values:
        missing.append("hiddenSize")
    if missing:
        raise UnknownModelError(name, tuple(missing))
    heads = values["attentionHeads"]
    hidden = values.get("hiddenSize", heads * values.get("headDim", 0))
    fields.setdefault("hidden_size", hidden)
    fields.setdefault("head_dim", max(1, hidden // heads))
    fields.setdefault("kv_heads", heads)
    fields.setdefault("vocab_size", DEFAULT_VOCAB_SIZE)
    fields.setdefault("max_position", DEFAULT_MAX_POSITION)
    return ModelArchitecture(name=name, **fields)


def resolve_model(name: str, overrides: Mapping[str, int] | None = None) -> ModelArchitecture:
    """Find a model by HF id, bare name, alias or local path; apply spec.model.architecture.

    Raises UnknownModelError (naming the missing fields) when the model is unknown and the
    overrides do not describe it, ValueError for malformed overrides.
    """
    key, quant = _normalize(name)
    base = _catalog()[1].get(key)
    if base is not None and quant is not None and quant != base.native_quantization:
        # e.g. "Llama-3.1-70B-Instruct-AWQ": same architecture, different weight format.
        base = dataclasses.replace(base, native_quantization=quant, weights_gib=None)
    if base is None and not overrides:
        missing = [*_REQUIRED_FOR_UNKNOWN, "hiddenSize"]
        raise UnknownModelError(name, tuple(missing))
    model = _apply_overrides(base, name, overrides or {})
    if base is None:
        known = quant is not None
        model = dataclasses.replace(
            model, native_quantization=quant or "none", native_quantization_known=known
        )
    return model
