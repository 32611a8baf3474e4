"""One supervised part as a child process: started with its output in the local cloud's log,
stopped with SIGTERM then SIGKILL, and tied to the supervisor's life.

Apart from the supervisor's policy (`daemon`: when a part is due, restarted, given up on)
because this is only the mechanics of one process, the same for the emulator and every
dispatcher; the tie (PR_SET_PDEATHSIG) is what lets a `kill -9` of the supervisor leave no part
behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any


def _set_parent_death_signal() -> None:
    """In the child, before exec: SIGKILL when the supervisor dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: S110 - not Linux: children then outlive a killed supervisor
        pass


class Child:
    """A supervised part running as a child process of this one."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: Any = None
        self.restarts = 0
        self.started_at = 0.0
        self.last_exit: str | None = None
        self.next_start = 0.0
        self.failures = 0  # consecutive failed probes (emulator) or quick deaths

    def start(self) -> None:
        import subprocess

        with self.log_path.open("ab") as log_file:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                close_fds=True, preexec_fn=_set_parent_death_signal,
            )
        self.started_at = time.time()
        self.failures = 0

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        self.kill(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except Exception:
            self.kill()
            self.proc.wait(5)
