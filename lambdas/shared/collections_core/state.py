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
    # Never `getattr(...) or {}`: an empty store would be replaced by a new dict, and a factory
    # that itself calls `cached` (a client needs the session) would then store into a dict
    # that is no longer the thread's, so every call made a new client.
    store: dict[str, Any] | None = getattr(_local, "store", None)
    if store is None:
        store = _local.store = {}
    return store


def cached(key: str, factory: Callable[[], T]) -> T:
    store = _store()
    if key not in store:
        store[key] = factory()
    return store[key]  # type: ignore[no-any-return,unused-ignore]


def forget(key: str) -> None:
    _store().pop(key, None)


def reset() -> None:
    _local.store = {}
