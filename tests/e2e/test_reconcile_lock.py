"""Two `reconcile --fix` of one environment at once never re-drive the same item twice: the
second waits for the first (saying whose run it waits for), then finds nothing left; with
`--lock-wait 0` it exits 4 at once, naming the run that holds the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from collections_ops import locks
from collections_ops.cli.commands.reconcile import RECONCILE_LOCK_FILE
from tests import images
from tests.e2e.cli import owner_url, run

USER = "twice"
BROKEN = ("b0", "b1", "b2", "b3")


def _status(env: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(run(env, "status", "--json").stdout))


def _break(env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """Uploads that completed, then lost their analyses (and so their embeddings' source)."""
    folder = tmp_path / "photos"
    folder.mkdir(exist_ok=True)
    for n, name in enumerate(BROKEN):
        (folder / f"{name}.jpg").write_bytes(images.photo(seed=300 + n))
    upload = run(env, "test-upload", str(folder), "-u", USER, "--follow", "--timeout", "120")
    assert upload.returncode == 0, upload.stdout + upload.stderr
    status = _status(env)
    with psycopg.connect(owner_url(status), autocommit=True) as conn:
        conn.execute("DELETE FROM embeddings WHERE user_id = %s", (USER,))
        conn.execute("DELETE FROM analyses WHERE user_id = %s", (USER,))
    return status


def test_two_concurrent_fixes_re_drive_each_item_once(cli_env, tmp_path):
    _break(cli_env, tmp_path)
    argv = [sys.executable, "-m", "collections_ops", "reconcile", "local", "-u", USER,
            "--min-age", "0", "--fix", "--timeout", "120", "-o", "json"]
    # WHEN two `reconcile --fix` start at once
    procs = [subprocess.Popen(argv, env=cli_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    # THEN both succeed, and between them each broken item is re-driven exactly once
    assert [p.returncode for p in procs] == [0, 0], outputs
    reports = [json.loads(out) for out, _ in outputs]
    redriven = sorted((r["stage"], r["user_id"], r["item_id"]) for rep in reports
                      for r in rep["redrives"])
    assert redriven == [("analyzer", USER, name) for name in BROKEN], redriven
    assert all(rep["remaining"] in ([], None) for rep in reports), reports
    # The one that found nothing to do had waited for the other, by pid.
    waited = [(p, err) for p, (_, err) in zip(procs, outputs, strict=True) if "waiting" in err]
    for _, err in waited:
        other = next(p for p in procs if f"pid {p.pid}," in err)
        assert f"waiting for `reconcile local --fix` (pid {other.pid}, since " in err, err
    for name in BROKEN:
        assert run(cli_env, "verify", name, "-u", USER).returncode == 0


def test_a_fix_that_will_not_wait_exits_4_naming_the_holder(cli_env):
    state_dir = Path(_status(cli_env)["state_dir"])
    # GIVEN another `reconcile --fix` of the environment holds its lock (this test process)
    with locks.held(state_dir / RECONCILE_LOCK_FILE, what="reconcile local --fix", wait_s=0):
        # WHEN one more starts with --lock-wait 0 THEN it exits 4 at once, naming the holder
        result = run(cli_env, "reconcile", "local", "--min-age", "0", "--fix",
                     "--lock-wait", "0", "-o", "json")
    assert result.returncode == 4, result.stdout + result.stderr
    error = json.loads(result.stdout)
    assert f"`reconcile local --fix` (pid {os.getpid()}, since " in error["error"], error
    assert error["exit_code"] == 4
    # AND without --fix, reconcile only looks: it needs no lock
    with locks.held(state_dir / RECONCILE_LOCK_FILE, what="reconcile local --fix", wait_s=0):
        looked = run(cli_env, "reconcile", "local", "--min-age", "0", "-o", "json")
    assert looked.returncode in (0, 8), looked.stderr
