"""Drift: does a live child still hold what kubellm applied, field for field?

The API server records, in `metadata.managedFields`, exactly which fields each field manager
set. Projecting the live object onto the fields manager `kubellm` owns gives back what the
last apply put there, unless someone changed it since: an edit moves the field to the
editor's manager (so it drops out of the projection), a removal drops it too. So a digest
of that projection, taken when the watch delivers the object, is compared with the digest
of the object kubellm wants; any edit or removal of a field kubellm sets shows as a
difference, on every kind (Services have no `generation` to go by). Fields others add (the
API server's defaults, a cluster IP, another controller's annotation) are not compared.

Someone else's edit can also leave fields kubellm cannot take back by applying: changing a
list item's key (a Service port) turns it into another manager's item, which server-side
apply never removes. Such a child is `foreign` and is repaired by a replace (`overlay`):
kubellm's object laid over the live one, keeping what the server filled in (a cluster IP,
a node port, defaults) and dropping list items that are not kubellm's.

Both sides are normalized alike: empty values dropped, numbers and Kubernetes quantities
in one canonical form (the API server writes `500m` for `0.5` and `1k` for `1000`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from kubellm import FIELD_MANAGER

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_SUFFIX = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    **{s: Decimal(2) ** (10 * (i + 1)) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
}


def _number(text: str) -> str | None:
    """A quantity or plain number in one canonical spelling; None when it is neither."""
    match = _QUANTITY.match(text)
    if not match:
        return None
    try:
        value = Decimal(match.group(1)) * _SUFFIX[match.group(2) or ""]
    except InvalidOperation:
        return None
    return format(value.normalize(), "f") if value.is_finite() else None


def normalize(value: Any) -> Any:
    """What two equal objects have in common however the API server spelled them."""
    if isinstance(value, Mapping):
        out = {k: normalize(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return _number(repr(value)) or value
    if isinstance(value, str):
        return _number(value) or value
    return value


def digest(obj: Any) -> str:
    canonical = json.dumps(normalize(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def desired_digest(obj: Mapping[str, Any]) -> str:
    """The digest of what kubellm applies, comparable to `live_digest` of the result."""
    return digest(_comparable(obj))


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Identity fields are left out: they cannot drift without being another object."""
    meta = {
        k: v
        for k, v in (obj.get("metadata") or {}).items()
        if k not in ("name", "namespace", "uid", "resourceVersion", "managedFields")
    }
    rest = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    return {"metadata": meta, **rest}


def _project(value: Any, fields: Mapping[str, Any]) -> Any:
    """`value` restricted to a fieldsV1 set (`f:` fields, `k:` keyed items, `v:` set values)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, sub in fields.items():
            if key.startswith("f:") and key[2:] in value:
                name = key[2:]
                children = {k: v for k, v in (sub or {}).items() if k != "."}
                out[name] = _project(value[name], children) if children else value[name]
        return out
    if isinstance(value, list):
        picked: list[tuple[int, Any]] = []
        for key, sub in fields.items():
            children = {k: v for k, v in (sub or {}).items() if k != "."}
            if key.startswith("k:"):
                wanted = json.loads(key[2:])
                for index, item in enumerate(value):
                    if isinstance(item, Mapping) and all(
                        item.get(k) == v for k, v in wanted.items()
                    ):
                        picked.append((index, _project(item, children) if children else item))
                        break
            elif key.startswith("v:"):
                wanted = json.loads(key[2:])
                if wanted in value:
                    picked.append((value.index(wanted), wanted))
            elif key.startswith("i:"):
                index = int(key[2:])
                if index < len(value):
                    item = value[index]
                    picked.append((index, _project(item, children) if children else item))
        return [item for _, item in sorted(picked, key=lambda pair: pair[0])]
    return value


def owned_fields(live: Mapping[str, Any], manager: str = FIELD_MANAGER) -> Mapping[str, Any]:
    """The fieldsV1 set `manager` holds by apply on the main resource (not status)."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if (
            entry.get("manager") == manager
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            fields: Mapping[str, Any] = entry.get("fieldsV1") or {}
            return fields
    return {}


def live_digest(live: Mapping[str, Any]) -> str:
    """The digest of what `kubellm` still owns of a live object (see the module docstring)."""
    return digest(_comparable(_project(live, owned_fields(live))))


def foreign(live: Mapping[str, Any], manager: str = FIELD_MANAGER) -> bool:
    """Another manager holds part of the child's spec (or data): an edit to revert."""
    for entry in (live.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager or entry.get("subresource"):
            continue
        fields = entry.get("fieldsV1") or {}
        if "f:spec" in fields or "f:data" in fields:
            return True
    return False


_ITEM_KEYS = ("name", "mountPath", "containerPort", "port", "uid", "key")


def _match(items: list[Any], wanted: Any, index: int) -> Any:
    """The live list item that stands for `wanted`: same name (or other key), else position."""
    if isinstance(wanted, Mapping):
        for key in _ITEM_KEYS:
            if key in wanted:
                return next(
                    (i for i in items if isinstance(i, Mapping) and i.get(key) == wanted[key]),
                    None,
                )
    return items[index] if index < len(items) else None


def overlay(live: Any, desired: Any) -> Any:
    """`desired` laid over `live`: maps merge (desired wins), lists become desired's items,
    each completed from its live counterpart (server-filled fields survive)."""
    if isinstance(live, Mapping) and isinstance(desired, Mapping):
        merged = dict(live)
        for key, value in desired.items():
            merged[key] = overlay(live.get(key), value)
        return merged
    if isinstance(live, list) and isinstance(desired, list):
        return [overlay(_match(live, item, i), item) for i, item in enumerate(desired)]
    return desired
