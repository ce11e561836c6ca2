"""A bounded memory of results by their inputs' content, for pure functions the executor
calls again and again with the same inputs (every reconcile resolves the same spec and
digests the same children; every watch event digests a child again).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class Memo(Generic[V]):
    """The last `limit` results, each under a hash of its inputs' canonical JSON."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._known: OrderedDict[bytes, V] = OrderedDict()

    def get(self, inputs: Any, compute: Callable[[], V]) -> V:
        """`compute()`, or what it returned last time for equal `inputs`."""
        canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=repr)
        key = hashlib.blake2b(canonical.encode(), digest_size=16).digest()
        if key in self._known:
            self._known.move_to_end(key)
            return self._known[key]
        value = compute()
        self._known[key] = value
        if len(self._known) > self.limit:
            self._known.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._known)
