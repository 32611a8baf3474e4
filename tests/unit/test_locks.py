"""The run lock (`collections_ops.locks`): a second run waits, saying whose run it waits for,
or gives up naming it; a holder killed with `kill -9` leaves nothing stale behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from collections_ops import locks
from collections_ops.cli.exits import ExitCode, exit_code

HOLD = """
import sys
from pathlib import Path
from collections_ops import locks
with locks.held(Path(sys.argv[1]), what="reconcile --fix", wait_s=0):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_second_run_that_does_not_wait_is_told_who_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.lock"
    proc = _holder(path)
    try:
        with pytest.raises(locks.LockHeld) as caught, \
                locks.held(path, what="reconcile --fix", wait_s=0):
            pytest.fail("ran while another run held the lock")
        assert f"`reconcile --fix` (pid {proc.pid}, since " in caught.value.message
        assert exit_code(caught.value) == ExitCode.NOT_READY
    finally:
        proc.kill()
        proc.wait()


def test_a_waiting_run_says_for_whom_then_runs_once_the_holder_is_done(tmp_path: Path) -> None:
    path = tmp_path / "reconcile.lock"
    proc = _holder(path)
    told: list[str] = []
    said = threading.Event()

    def notify(message: str) -> None:
        told.append(message)
        said.set()

    def release() -> None:  # the holder finishes once the waiter has said it waits
        said.wait(30)
        assert proc.stdin is not None
        proc.stdin.close()

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        with locks.held(path, what="reconcile --fix", wait_s=60, notify=notify):
            assert proc.wait(10) == 0, "the holder finished before the waiter ran"
            assert locks.holder(path)["pid"] == os.getpid()
    finally:
        releaser.join()
        proc.kill()
        proc.wait()
    assert told == [told[0]] and f"(pid {proc.pid}, since " in told[0], told


def test_a_holder_killed_with_kill_9_leaves_the_lock_free(tmp_path: Path) -> None:
    path = tmp_path / "start.lock"
    proc = _holder(path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with locks.held(path, what="deploy local", wait_s=0):
        assert locks.holder(path)["pid"] == os.getpid()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
