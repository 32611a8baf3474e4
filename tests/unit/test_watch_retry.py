"""`deploy local --watch` outlives a failed publish round (the emulator restarting under the
supervisor answers with connection errors for a moment): it says so and tries again, without
waiting for another edit."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from collections_ops.localcloud.lambda_service import watch
from collections_ops.pipeline import environment


def test_a_failed_round_is_reported_and_retried_without_another_change(monkeypatch, tmp_path):
    rounds: list[int] = []

    def publish(lam: Any, env: Any, state_dir: Any) -> list[watch.Reload]:
        rounds.append(1)
        if len(rounds) == 1:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
        return [watch.Reload("processor", "7", 0.1)]

    monkeypatch.setattr(watch, "publish_changed", publish)
    monkeypatch.setattr(watch, "source_times", lambda: {"handler.py": (1, 1)})  # no edits
    monkeypatch.setattr(watch, "RETRY_S", 0.2)
    reports: list[watch.Reload] = []
    stop = threading.Event()
    thread = threading.Thread(target=watch.watch, args=(None, environment("local"), tmp_path),
                              kwargs={"report": reports.append, "stop": stop, "poll_s": 0.02})
    thread.start()
    deadline = time.monotonic() + 10
    while len(reports) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    thread.join(5)

    assert not thread.is_alive()
    assert [r.error is None for r in reports[:2]] == [False, True], reports
    assert "could not publish (Could not connect" in (reports[0].error or "")
    assert reports[1].line() == "reloaded processor → version 7 in 0.1 s"
    assert len(rounds) == 2, "one retry, then nothing more without a change"


def test_ctrl_c_still_ends_watching(monkeypatch, tmp_path):
    def interrupted(*_: Any) -> list[watch.Reload]:
        raise KeyboardInterrupt

    monkeypatch.setattr(watch, "publish_changed", interrupted)
    monkeypatch.setattr(watch, "source_times", lambda: {})
    with pytest.raises(KeyboardInterrupt):
        watch.watch(None, environment("local"), tmp_path, report=lambda r: None)
