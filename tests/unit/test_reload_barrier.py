"""A dispatcher's reload waits for the invocations in flight -- but not for one stuck past
its timeout, which would otherwise hold every invocation in the process back for good."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from collections_ops.localcloud.lambda_service import reloader as reloader_module
from collections_ops.localcloud.lambda_service import watch
from collections_ops.localcloud.lambda_service.reloader import CodeReloader
from collections_ops.localcloud.state import StateDir
from collections_ops.pipeline import FUNCTIONS

PROCESSOR = next(fn for fn in FUNCTIONS if fn.key == "processor")


def _reloader(state_dir: Path) -> tuple[CodeReloader, list[dict[str, str]]]:
    purged: list[dict[str, str]] = []
    reloader = CodeReloader(
        StateDir(state_dir).code_stamp,
        lambda dirs, shared: purged.append({k: str(v) for k, v in dirs.items()}))
    return reloader, purged


def _new_code(state_dir: Path, version: str) -> None:
    watch.update_stamp(state_dir, {"processor": {
        "digest": f"digest-{version}", "dir": str(state_dir / version), "version": version}})


def _in_flight(reloader: CodeReloader,
               timeout_s: float) -> tuple[threading.Event, threading.Thread, float]:
    """An invocation that runs until released; and when it started (at the latest)."""
    entered, release = threading.Event(), threading.Event()
    at: list[float] = []

    def run() -> None:
        with reloader.invocation(PROCESSOR, timeout_s):
            at.append(time.monotonic())
            entered.set()
            release.wait(30)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert entered.wait(10)
    return release, thread, at[0]


def test_a_reload_waits_for_an_invocation_within_its_timeout(tmp_path: Path) -> None:
    reloader, purged = _reloader(tmp_path)
    release, thread, _ = _in_flight(reloader, timeout_s=30)
    _new_code(tmp_path, "2")
    started = time.monotonic()
    threading.Timer(0.5, release.set).start()
    with reloader.invocation(PROCESSOR, 30) as version:
        waited = time.monotonic() - started
    thread.join(10)
    assert version == "2" and purged == [{"processor": str(tmp_path / "2")}]
    assert waited >= 0.5, "the new code waited for the invocation in flight to end"


def test_an_invocation_stuck_past_its_timeout_does_not_hold_the_reload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reloader_module, "RELOAD_GRACE_S", 0.2)
    reloader, purged = _reloader(tmp_path)
    release, thread, entered = _in_flight(reloader, timeout_s=0.3)  # and never returns in time
    try:
        _new_code(tmp_path, "3")
        with reloader.invocation(PROCESSOR, 30) as version:
            reloaded = time.monotonic()
        assert version == "3" and purged == [{"processor": str(tmp_path / "3")}]
        # Not before the stuck one's timeout and grace were up; long before it returned.
        assert reloaded >= entered + 0.3 + 0.2 - 0.01
        assert reloaded - entered < 5
    finally:
        release.set()
        thread.join(10)
    # The stuck one ending later leaves the reloader consistent: the next reload is prompt.
    _new_code(tmp_path, "4")
    started = time.monotonic()
    with reloader.invocation(PROCESSOR, 30) as version:
        assert version == "4"
    assert time.monotonic() - started < 5
