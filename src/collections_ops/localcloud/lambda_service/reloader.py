"""New code between invocations, never during one: the dispatcher's side of hot reload.

Apart from the watcher and the follower (`watch`) because it runs in another process, each
dispatcher's, on every invocation's path; the code stamp it reads (`code.json`) is the whole of
what it shares with them. What a reload means for the handlers (which modules go, when state
resets) is described in `watch`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from collections_ops.pipeline import FUNCTIONS, Function

# How long past its own timeout an invocation in flight may hold a reload back (Lambda would
# have ended it by then); one that gives no timeout counts Lambda's largest.
RELOAD_GRACE_S = 5.0
MAX_TIMEOUT_S = 900.0

log = logging.getLogger("collections.localcloud")


class CodeReloader:
    """In a dispatcher process: new code between invocations, never during one.

    `purge(code_dirs, shared)` drops the modules of the functions in `code_dirs` (every
    function's and the shared code's, when `shared`) and has them imported from their new
    package folders; it runs while no invocation is in flight in this process.
    """

    def __init__(self, stamp: Path, purge: Callable[[dict[str, Path], bool], None]) -> None:
        self._path = stamp
        self._purge = purge
        # What this process imported is the code on disk at its start...
        self._stamp = self._baseline()
        self._cond = threading.Condition()
        self._running: dict[int, float] = {}  # invocation in flight -> when it is overdue
        self._tokens = itertools.count()
        self._reloading = False
        self._generation: dict[str, int] = {}  # function key -> reloads seen
        self._containers = threading.local()
        # ... and what it runs is what `live` points at: a rolled-back function's version,
        # when the stamp says so (no invocation runs yet, so this is its first reload).
        self._seen: tuple[int, int, int] | None = None
        self._reload()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        # The inode too: every write is a rename of a new file, and two writes within one tick
        # of a coarse file-system clock can leave the time and the size the same.
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _read(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            stamp = json.loads(self._path.read_text())
            if isinstance(stamp, dict):
                return stamp
        return {}

    @staticmethod
    def _baseline() -> dict[str, Any]:
        """No stamp yet: the code this process imported at start is the code on disk."""
        from collections_ops.localcloud.provision import code_digest, function_code, shared_digest

        return {"shared": shared_digest(), "functions": {
            fn.key: {"digest": code_digest(function_code(fn))} for fn in FUNCTIONS}}

    def version(self, key: str) -> str | None:
        version = self._stamp.get("functions", {}).get(key, {}).get("version")
        return str(version) if version else None

    @contextlib.contextmanager
    def invocation(self, fn: Function,
                   timeout_s: float | None = None) -> Iterator[str | None]:
        """Hold the code steady for one invocation (of at most `timeout_s`, its function's
        timeout); yields the version it runs (if known)."""
        if self._stat() != self._seen:
            self._reload()
        with self._cond:
            while self._reloading:
                self._cond.wait()
            token = next(self._tokens)
            self._running[token] = time.monotonic() + RELOAD_GRACE_S + (
                MAX_TIMEOUT_S if timeout_s is None else timeout_s)
            generation = self._generation.get(fn.key, 0)
        try:
            if getattr(self._containers, fn.key, 0) != generation:
                # This worker is a new container for the new code: nothing cached survives.
                import sys

                shared_state = sys.modules.get("collections_core.state")
                if shared_state is not None:
                    shared_state.reset()
                setattr(self._containers, fn.key, generation)
            yield self.version(fn.key)
        finally:
            with self._cond:
                del self._running[token]
                self._cond.notify_all()

    def _reload(self) -> None:
        with self._cond:
            if self._reloading:
                return  # another worker is reloading; `invocation` waits for it
            self._reloading = True
            while self._running:
                wait = max(self._running.values()) - time.monotonic()
                if wait <= 0:
                    # Stuck past its timeout (Lambda would have ended it): it keeps the
                    # modules it has, and stops holding every other invocation back.
                    log.warning("reloading code while %d invocation(s) run past their "
                                "timeout", len(self._running))
                    break
                self._cond.wait(wait)
        try:
            seen, stamp = self._stat(), self._read()
            if not stamp:  # removed by a full reload (new processes, fresh imports)
                self._seen = seen
                return
            before = self._stamp.get("functions", {})
            changed = {key for key, entry in stamp.get("functions", {}).items()
                       if before.get(key, {}).get("digest") != entry.get("digest")}
            shared = bool(stamp.get("shared")) and stamp.get("shared") != self._stamp.get("shared")
            if changed or shared:
                latest = stamp.get("functions", {})
                self._purge({key: Path(latest[key]["dir"]) for key in changed
                             if latest[key].get("dir")}, shared)
                for fn in FUNCTIONS:
                    if shared or fn.key in changed:
                        self._generation[fn.key] = self._generation.get(fn.key, 0) + 1
            # A function the stamp does not name (yet) runs what it ran.
            functions = {**self._stamp.get("functions", {}), **stamp.get("functions", {})}
            self._seen, self._stamp = seen, {
                **stamp, "functions": functions,
                "shared": stamp.get("shared") or self._stamp.get("shared")}
        finally:
            with self._cond:
                self._reloading = False
                self._cond.notify_all()
