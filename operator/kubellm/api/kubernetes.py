"""Kubernetes' own types for the pod fields an LLMDeployment passes through, checked offline.

The schemas are the Kubernetes 1.36 OpenAPI (vendored in `kubernetes-schema.json` by
`hack/vendor-kubernetes-schema.py`), so a malformed affinity, toleration, volume or init
container is reported by `resolve()` with its field path instead of crashing `kubellm render`
or failing with a 422 in the middle of the operator's apply loop. A few rules the API server
checks in code rather than in the schema are added where users commonly trip over them:
quantities, label and annotation syntax, DNS names, and one source per volume.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

Problems = list[tuple[str, str]]  # (field path relative to the checked value, message)

INT32 = (-(2**31), 2**31 - 1)
QUANTITY = re.compile(
    r"^[+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
ANNOTATIONS_MAX_BYTES = 256 * 1024
# Volume fields that are not a source: a Volume needs exactly one of the others.
VOLUME_NON_SOURCES = frozenset({"name"})


@cache
def definitions() -> Mapping[str, Any]:
    text = resources.files("kubellm.api").joinpath("kubernetes-schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)["definitions"]
    return loaded


def schema_problems(value: Any, kind: str) -> Problems:
    """Where `value` breaks the Kubernetes schema of core/v1 `kind` (for example `Toleration`)."""
    problems: Problems = []
    _check({"$ref": kind}, value, "", problems)
    return problems


# JSON types by Python type, bool before int (a bool is an int to Python, not to JSON).
_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)


def _type_name(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), "null")


def _is(expected: str, value: Any) -> bool:
    actual = _type_name(value)
    return actual == expected or (expected == "number" and actual == "integer")


def _check(node: Mapping[str, Any], value: Any, path: str, out: Problems) -> None:
    if value is None:
        return  # JSON null is an unset field to the API server
    if "$ref" in node:
        name = node["$ref"]
        _check(definitions()[name], value, path, out)
        if name == "Volume" and isinstance(value, dict):
            _volume_source(value, path, out)
        return
    if "oneOf" in node:  # Quantity (string or number) and IntOrString (integer or string)
        options = [option["type"] for option in node["oneOf"]]
        if not any(_is(option, value) for option in options):
            out.append((path, f"must be {' or '.join(options)}, not {_type_name(value)}"))
        elif "number" in options and isinstance(value, str) and not QUANTITY.match(value):
            out.append((path, f"{value!r} is not a quantity such as 500m, 16Gi or 2"))
        return
    expected = node.get("type")
    if expected is None:
        return  # free-form (RawExtension-like) content
    if not _is(expected, value):
        out.append((path, f"must be {_article(expected)}, not {_article(_type_name(value))}"))
        return
    if expected == "integer" and node.get("format") == "int32" and not _within(value, INT32):
        out.append((path, f"{value} is out of the int32 range"))
    elif expected == "array":
        for index, item in enumerate(value):
            _check(node.get("items", {}), item, f"{path}[{index}]", out)
    elif expected == "object":
        _object(node, value, path, out)


def _object(node: Mapping[str, Any], value: Mapping[str, Any], path: str, out: Problems) -> None:
    properties = node.get("properties")
    extra = node.get("additionalProperties")
    for required in node.get("required", ()):
        if value.get(required) is None:
            out.append((f"{path}.{required}", "is required"))
    for key, item in value.items():
        if properties is not None and key in properties:
            _check(properties[key], item, f"{path}.{key}", out)
        elif isinstance(extra, dict):
            _check(extra, item, f"{path}.{key}", out)
        elif properties is not None or extra is not None:
            out.append((f"{path}.{key}", "unknown field"))


def _volume_source(value: Mapping[str, Any], path: str, out: Problems) -> None:
    sources = [k for k, v in value.items() if k not in VOLUME_NON_SOURCES and v is not None]
    if len(sources) != 1:
        found = ", ".join(sources) if sources else "none"
        out.append(
            (path, f"a volume needs exactly one source (emptyDir, secret, ...); found {found}")
        )
    name = value.get("name")
    if isinstance(name, str) and not dns_label(name):
        out.append((f"{path}.name", f"{name!r} is not a DNS label (lowercase, digits, '-')"))


def _within(value: int, bounds: tuple[int, int]) -> bool:
    return bounds[0] <= value <= bounds[1]


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def dns_label(name: str) -> bool:
    return len(name) <= 63 and DNS_LABEL.match(name) is not None


def dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and DNS_SUBDOMAIN.match(name) is not None


def _qualified_key(key: str) -> str | None:
    """Why `key` is not a label or annotation key (`[prefix/]name`), or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not dns_subdomain(prefix):
        return f"prefix {prefix!r} is not a DNS subdomain"
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        return "name must be 1-63 letters, digits, '-', '_' or '.', starting and ending alnum"
    return None


def label_problems(labels: Mapping[str, str]) -> Problems:
    problems: Problems = []
    for key, value in labels.items():
        if why := _qualified_key(key):
            problems.append((f"[{key}]", f"invalid label key: {why}"))
        if value and (len(value) > 63 or not QUALIFIED_NAME.match(value)):
            problems.append(
                (f"[{key}]", f"invalid label value {value!r}: at most 63 letters, digits, '-',"
                 " '_' or '.', starting and ending alnum")
            )  # fmt: skip
    return problems


def annotation_problems(annotations: Mapping[str, str]) -> Problems:
    problems: Problems = [
        (f"[{key}]", f"invalid annotation key: {why}")
        for key in annotations
        if (why := _qualified_key(key))
    ]
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        problems.append(("", f"annotations total {size} bytes; at most {ANNOTATIONS_MAX_BYTES}"))
    return problems


_SUFFIX = {
    **{s: 1024**i for i, s in enumerate(("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{s: Decimal(10) ** (3 * i) for i, s in enumerate(("", "k", "M", "G", "T", "P", "E"))},
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
}


def quantity_value(quantity: str | int) -> Decimal:
    """The number a Kubernetes quantity stands for (`16Gi` -> 17179869184)."""
    text = str(quantity)
    if not QUANTITY.match(text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    number = re.match(r"^[+-]?[0-9.]+", text)
    assert number is not None
    suffix = text[number.end() :]
    if re.fullmatch(r"[eE][+-]?[0-9.]+", suffix):
        return Decimal(number.group()) * Decimal(10) ** Decimal(suffix[1:])
    return Decimal(number.group()) * _SUFFIX[suffix]
