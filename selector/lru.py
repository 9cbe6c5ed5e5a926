"""The one least-recently-used cache of the project: bounded by entries or by bytes, safe to share between threads.
Imports the stdlib only."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["LRU"]


class LRU:
    """Maps keys to values, dropping the least recently used ones beyond `max_items` entries or, with `size`,
    beyond `max_bytes` (the newest entry always stays, however large)."""

    def __init__(self, max_items: int | None = None, max_bytes: int | None = None,
                 size: Callable[[Any], int] | None = None) -> None:
        if max_bytes is not None and size is None:
            raise ValueError("max_bytes needs a size function")
        self.max_items, self.max_bytes, self.size = max_items, max_bytes, size
        self._d: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            if key not in self._d:
                self.misses += 1
                return default
            self.hits += 1
            self._d.move_to_end(key)
            return self._d[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            if key in self._d:
                self._bytes -= self._size(self._d.pop(key))
            self._d[key] = value
            self._bytes += self._size(value)
            while len(self._d) > 1 and ((self.max_items is not None and len(self._d) > self.max_items)
                                        or (self.max_bytes is not None and self._bytes > self.max_bytes)):
                _, old = self._d.popitem(last=False)
                self._bytes -= self._size(old)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()
            self._bytes = 0

    def _size(self, value: Any) -> int:
        return self.size(value) if self.size is not None else 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._d
