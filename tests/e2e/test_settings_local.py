"""A setting changed by `configure` on the local cloud is kept by the next `deploy local`: on a
running cloud (which it repairs), and on a stopped one that it starts again from its state (the
version history keeps each version's memory and timeout, and where `live` points). The local
cloud runs the definition's other settings: collections.toml may not pretend otherwise
(tests/unit/test_operator_settings.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.cli import run


def _live(env: dict[str, str]) -> tuple[int, int]:
    shown = json.loads(run(env, "versions", "embedder", "-o", "json").stdout)
    (live,) = [v for v in shown if v["live"]]
    return int(live["memory"]), int(live["timeout"])


def test_configure_then_deploy_local_keeps_memory_and_timeout(cli_env: dict[str, str]) -> None:
    from collections_ops.localcloud.supervisor import manager

    defined = _live(cli_env)
    assert defined == (512, 60)  # the definition's, so the change below is one
    # GIVEN configure changed the embedder's memory and timeout
    configured = run(cli_env, "configure", "embedder", "--memory", "1536", "--timeout", "90",
                     "-o", "json")
    assert configured.returncode == 0, configured.stderr
    assert "keeps it across restarts" in json.loads(configured.stdout)["settings"]["note"]
    # WHEN deploy local runs on the running cloud
    assert run(cli_env, "deploy", "local").returncode == 0
    # THEN live still runs the configured version
    assert _live(cli_env) == (1536, 90)
    # WHEN the cloud is stopped (its state kept) and deploy local starts it again
    manager.stop(Path(cli_env["COLLECTIONS_STATE_DIR"]) / "local", remove=False)
    again = run(cli_env, "deploy", "local")
    assert again.returncode == 0, again.stderr
    # THEN the configured version is live again, with its settings
    assert _live(cli_env) == (1536, 90)
    status = json.loads(run(cli_env, "status", "local", "-o", "json").stdout)
    assert {s["source"] for s in status["settings"]} == {"definition"}
