"""One run at a time where two would do harm, and a clear word to the one that waits.

Two `deploy local` on one state directory must not both start a supervisor; two
`reconcile --fix` of one environment must not both re-drive the items they both found. Each
takes an exclusive `flock` on a file in the environment's state directory for the whole of its
run and writes in it who holds it (pid, command, since when). `flock` is released by the kernel
when its holder exits, however it exits (`kill -9` included), so a crashed holder never leaves
a stale lock behind and no pid has to be trusted; the record is only there to be shown to the
one that waits ("waiting for `reconcile --fix` (pid 4711, since 19:35:02)…").

The lock is per machine: two operators on two machines running `reconcile --fix` on one AWS
environment are not serialised by it (docs/operations.md says so).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from collections_ops import errors


class LockHeld(errors.NotReady):
    """Another run holds the lock, and did not let go within the wait (exit 4)."""


def holder(path: Path) -> dict[str, Any]:
    """Who holds (or last held) the lock at `path`: {"pid", "what", "since"}, or {}."""
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(path.read_text() or "{}")
        return record if isinstance(record, dict) else {}
    return {}


def describe(record: dict[str, Any], what: str) -> str:
    name = record.get("what") or what
    if not record.get("pid"):
        return f"`{name}` in another process"
    since = dt.datetime.fromtimestamp(float(record.get("since", 0))).strftime("%H:%M:%S")
    return f"`{name}` (pid {record['pid']}, since {since})"


@contextlib.contextmanager
def held(path: Path, *, what: str, wait_s: float,
         notify: Callable[[str], None] | None = None, interval: float = 0.1) -> Iterator[None]:
    """Hold the lock at `path` for the `with` block. If another run holds it, say so once
    through `notify` and wait up to `wait_s` (0: do not wait), then raise LockHeld naming it."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                other = describe(holder(path), what)
                if time.monotonic() >= deadline:
                    raise LockHeld(f"{other} holds {path.name}; {what} did not run",
                                   "wait for it to finish, or see that process") from None
                if not told and notify is not None:
                    notify(f"waiting for {other} to finish (up to {wait_s:.0f} s)…")
                    told = True
                time.sleep(interval)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what,
                                  "since": time.time()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # nobody holds it now
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
