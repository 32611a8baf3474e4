"""Pids the local cloud recorded, read again after a crash.

A `kill -9` leaves pids in `state.json`, `supervisor.json` and PostgreSQL's `postmaster.pid`.
Such a pid can be a process still dying (its sockets and locks not yet released), a zombie
(kill(0) still answers, nothing runs), or a stranger that was given the number since. A start
that trusts the number adopts a corpse or fights a dying process for its port; these helpers
say which of the three it is and wait, with a deadline, for the old ones to be gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def _state_letter(pid: int) -> str | None:
    """The process's state from /proc (R, S, D, T, Z...), None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return None


def pid_alive(pid: int | None) -> bool:
    """The pid runs a process (a zombie does not count: it has exited, only its entry is left)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    letter = _state_letter(pid)
    if letter is None:  # gone since kill(0), or no /proc (not Linux: kill(0) is all we have)
        return not os.path.isdir("/proc/self")
    return letter not in ("Z", "X")


def argv(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def is_ours(pid: int, state_dir: Path) -> bool:
    """The pid still runs one of this local cloud's Python parts (pids are reused)."""
    args = argv(pid)
    return str(state_dir).encode() in args and any(b"collections_ops.localcloud" in a
                                                   for a in args)


def working_in(directory: Path) -> list[int]:
    """Every live process whose working directory is `directory` (PostgreSQL's server and
    all its backends work in the data directory, and keep doing so when orphaned)."""
    target = os.path.realpath(directory)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/cwd") == target and pid_alive(int(entry)):
                found.append(int(entry))
    return found


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until none of `pids` runs, up to `timeout`; returns those still running."""
    remaining = [p for p in pids if p]
    deadline = time.monotonic() + timeout
    while True:
        remaining = [p for p in remaining if pid_alive(p)]
        if not remaining or time.monotonic() >= deadline:
            return remaining
        time.sleep(0.05)


def kill_and_wait(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """SIGKILL each (after SIGCONT, so a frozen one dies too) and wait for them to be gone."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGCONT)
    return wait_gone(pids, timeout)


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns once it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a stopped (frozen) process cannot act on SIGTERM
        os.kill(pid, signal.SIGTERM)
    if wait_gone([pid], timeout):
        kill_and_wait([pid])
