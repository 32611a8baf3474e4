"""Init-phase work and SnapStart restores: heavy modules are imported when a handler is loaded,
and after a restore nothing made before the snapshot (database connection, boto3 session and
clients, secrets) is used again -- each is made afresh on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from collections_core import aws, db, runtime, secrets, state
from tests.conftest import ROOT

# A stand-in for the runtime's `snapshot_restore_py` (same API): it records the hooks, and the
# probe runs them the way Lambda does after a restore.
_STAND_IN = textwrap.dedent("""
    after_restore = []

    def register_after_restore(func, *args, **kwargs):
        after_restore.append((func, args, kwargs))
        return func

    def register_before_snapshot(func, *args, **kwargs):
        return func
""")


def test_a_restore_drops_the_connection_clients_and_secrets(pipeline: Any) -> None:
    # GIVEN a container that has connected, made clients and read a secret
    state.reset()
    conn = db.connection()
    aws.client("s3")
    assert secrets.get("DATABASE_URL")
    assert state.peek("aws:session") is not None and state.peek("secrets")
    # WHEN Lambda restores it from a snapshot
    runtime.forget_container_state()
    # THEN none of it is reused: the next use makes new ones, and they work
    assert conn.closed
    for key in ("db", "aws:session", "aws:s3", "secrets"):
        assert state.peek(key) is None, key
    fresh = db.connection()
    assert fresh is not conn
    with db.transaction() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    assert aws.client("s3") is not None and state.peek("aws:session") is not None


def _probe(tmp_path: Path, function_dir: str, env: dict[str, str]) -> dict[str, Any]:
    (tmp_path / "snapshot_restore_py.py").write_text(_STAND_IN)
    code = textwrap.dedent("""
        import json, sys
        import handler, snapshot_restore_py
        from collections_core import runtime, state
        loaded = sorted(m for m in ("anthropic", "voyageai", "psycopg", "PIL.Image", "boto3")
                        if m in sys.modules)
        state.cached("secrets", dict)["X"] = (0.0, "cached before the snapshot")
        for func, args, kwargs in snapshot_restore_py.after_restore:
            func(*args, **kwargs)
        print(json.dumps({"loaded": loaded, "registered": runtime.RESTORE_HOOK_REGISTERED,
                          "hooks": [f.__name__ for f, _, _ in snapshot_restore_py.after_restore],
                          "secrets_after_restore": state.peek("secrets")}))
    """)
    path = os.pathsep.join([str(tmp_path), str(ROOT / "lambdas" / function_dir),
                            str(ROOT / "lambdas" / "shared"), *sys.path])
    proc = subprocess.run([sys.executable, "-c", code],
                          env={**os.environ, **env, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_handlers_import_what_every_invocation_needs_at_init(tmp_path: Path) -> None:
    analyzer = _probe(tmp_path, "analyzer", {"ANALYZER_PROVIDER": "anthropic"})
    assert analyzer["loaded"] == ["PIL.Image", "anthropic", "boto3", "psycopg"]
    embedder = _probe(tmp_path, "embedder", {"EMBEDDING_PROVIDER": "voyage"})
    assert {"boto3", "psycopg", "voyageai"} <= set(embedder["loaded"])
    # A provider that is not selected costs nothing at init.
    local = _probe(tmp_path, "analyzer", {"ANALYZER_PROVIDER": "local"})
    assert "anthropic" not in local["loaded"]


def test_the_restore_hook_is_registered_with_the_runtime(tmp_path: Path) -> None:
    result = _probe(tmp_path, "image_processor", {})
    assert result["registered"] is True
    assert result["hooks"] == ["forget_container_state"]
    assert result["secrets_after_restore"] is None
    assert {"PIL.Image", "psycopg"} <= set(result["loaded"])


_GC_PROBE = textwrap.dedent("""
    import gc, json, sys
    from collections_core import runtime
    result = {}
    try:
        runtime.preload(*sys.argv[1:])
    except ImportError as exc:
        result["error"] = type(exc).__name__
    result.update(enabled_after=gc.isenabled(), frozen=gc.get_freeze_count(),
                  enabled_during=sys.modules["gc_probe"].ENABLED
                  if "gc_probe" in sys.modules else None)
    print(json.dumps(result))
""")


def _gc_probe(tmp_path: Path, lambda_env: bool, *modules: str) -> dict[str, Any]:
    (tmp_path / "gc_probe.py").write_text("import gc\nENABLED = gc.isenabled()\n"
                                          "GARBAGE = [[] for _ in range(1000)]\n")
    env = {k: v for k, v in os.environ.items() if k != "AWS_EXECUTION_ENV"}
    if lambda_env:
        env["AWS_EXECUTION_ENV"] = "AWS_Lambda_python3.12"
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT / "lambdas" / "shared"),
                                         *sys.path])
    proc = subprocess.run([sys.executable, "-c", _GC_PROBE, *modules], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_init_imports_run_without_the_collector_and_are_frozen_on_lambda(
        tmp_path: Path) -> None:
    # In a Lambda environment the collector is paused for the imports, then back on, and
    # everything init made is in the permanent generation.
    on_lambda = _gc_probe(tmp_path, True, "gc_probe")
    assert on_lambda["enabled_during"] is False
    assert on_lambda["enabled_after"] is True
    assert on_lambda["frozen"] > 1000
    # An import that fails still leaves the collector on (Lambda reports the init error).
    failed = _gc_probe(tmp_path, True, "gc_probe", "no_such_module_here")
    assert failed["error"] == "ModuleNotFoundError" and failed["enabled_after"] is True
    # Elsewhere (the local cloud's dispatchers reload code in a long-lived process) the
    # collector is left alone and nothing is frozen.
    local = _gc_probe(tmp_path, False, "gc_probe")
    assert local == {"enabled_after": True, "frozen": 0, "enabled_during": True}
