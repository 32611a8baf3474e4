"""A function's reserved concurrency, held across every dispatcher process.

Apart from the dispatcher because it is shared state between processes (slot files under an
exclusive `flock` in the state directory), not between threads, and because it is what makes a
local invocation throttle when Lambda's would.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger("collections.localcloud")
CONCURRENCY_REFRESH_S = 5.0


class ReservedConcurrency:
    """A function's reserved concurrency, enforced across every dispatcher process.

    Read from the local Lambda API (`put_function_concurrency` takes effect within
    CONCURRENCY_REFRESH_S). With a limit of N, an invocation must hold one of N slot files
    (an exclusive `flock`) in the shared `slots_dir`; none free means throttled, as Lambda
    throttles. Without `slots_dir` (a dispatcher inside a test process) the slots are counted
    in this process only. No reserved concurrency: unlimited.
    """

    def __init__(self, lam: Any, function_name: str, slots_dir: Any) -> None:
        self._lam = lam
        self._name = function_name
        self._dir = slots_dir
        self._lock = threading.Lock()
        self._limit: int | None = None
        self._checked = 0.0
        self._held = 0  # in this process
        if slots_dir is not None:
            slots_dir.mkdir(parents=True, exist_ok=True)

    def limit(self) -> int | None:
        now = time.monotonic()
        if now - self._checked >= CONCURRENCY_REFRESH_S:
            self._checked = now
            try:
                reserved = self._lam.get_function_concurrency(FunctionName=self._name)
                value = reserved.get("ReservedConcurrentExecutions")
                self._limit = None if value is None else int(value)
            except Exception as exc:  # keep the last known limit
                log.debug("reading the concurrency of %s failed: %s", self._name, exc)
        return self._limit

    def acquire(self) -> Any:
        """A token to release after the invocation, or None when throttled."""
        limit = self.limit()
        if limit is None:
            with self._lock:
                self._held += 1
            return True
        if self._dir is None:
            with self._lock:
                if self._held >= limit:
                    return None
                self._held += 1
            return True
        import fcntl

        for n in range(limit):
            handle = open(self._dir / f"{n}.slot", "a")  # noqa: SIM115 - held until release
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            with self._lock:
                self._held += 1
            return handle
        return None

    def release(self, token: Any) -> None:
        with self._lock:
            self._held -= 1
        if token is not True:
            token.close()  # closing the file drops its lock

    @property
    def held(self) -> int:
        return self._held
