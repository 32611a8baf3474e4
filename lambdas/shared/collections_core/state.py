"""Per-container state.

A Lambda container runs one invocation at a time, so clients and connections cached here are
reused across warm invocations. The local cloud runs several "containers" as threads in one
process, so the cache is thread-local: each worker thread behaves like its own container.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_local = threading.local()


def cached(key: str, factory: Callable[[], T]) -> T:
    store: dict[str, Any] = getattr(_local, "store", None) or {}
    _local.store = store
    if key not in store:
        store[key] = factory()
    return store[key]  # type: ignore[no-any-return,unused-ignore]


def forget(key: str) -> None:
    store: dict[str, Any] = getattr(_local, "store", None) or {}
    store.pop(key, None)


def reset() -> None:
    _local.store = {}
