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


def _store() -> dict[str, Any]:
    store: dict[str, Any] | None = getattr(_local, "store", None)
    if store is None:
        # Not `or {}`: an empty store is falsy, and a factory that itself caches something
        # (the connection reads a secret) would swap in a new dict and lose its own entry.
        store = _local.store = {}
    return store


def cached(key: str, factory: Callable[[], T]) -> T:
    store = _store()
    if key not in store:
        value = factory()
        store = _store()
        store.setdefault(key, value)
    return store[key]  # type: ignore[no-any-return,unused-ignore]


def peek(key: str) -> Any:
    """The cached value, or None; never creates it."""
    return _store().get(key)


def forget(key: str) -> None:
    _store().pop(key, None)


def reset() -> None:
    _local.store = {}
