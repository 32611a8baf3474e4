"""Starting, stopping and inspecting the local cloud from the CLI.

`start` spawns the daemon detached and returns once it reports ready (or explains why not).
Starting twice is harmless. `stop` stops the daemon and, if the daemon died without cleaning
up, the embedded PostgreSQL it left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collections_ops.errors import CliError, NotReady
from collections_ops.localcloud.state import STATE_FILE, LocalState, read_state

START_TIMEOUT_S = 90.0
HEARTBEAT_STALE_S = 5.0


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def running_state(state_dir: Path) -> LocalState | None:
    state = read_state(state_dir)
    if state and state.ready and pid_alive(state.pid):
        return state
    return None


def start(state_dir: Path) -> tuple[LocalState, bool]:
    """Start the local cloud; returns (state, started_now)."""
    existing = running_state(state_dir)
    if existing is not None:
        return existing, False
    stop(state_dir, remove=False)  # clear the remains of a crashed run
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    log_path = state_dir / "daemon.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "collections_ops.localcloud.daemon", str(state_dir)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = read_state(state_dir)
        if state and state.ready and state.pid == proc.pid:
            return state, True
        if proc.poll() is not None:
            raise CliError(f"the local cloud failed to start: {_last_error(log_path)}",
                           f"full log: {log_path}")
        time.sleep(0.1)
    proc.terminate()
    raise CliError(f"the local cloud did not become ready in {START_TIMEOUT_S:.0f} s",
                   f"see {log_path}")


def _last_error(log_path: Path) -> str:
    try:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line.strip()[:300]
    return lines[-1][:300] if lines else "no output"


def stop(state_dir: Path, *, remove: bool) -> bool:
    """Stop whatever of the local cloud runs; optionally delete its state. True if it ran."""
    state = read_state(state_dir)
    was_running = False
    if state and pid_alive(state.pid):
        was_running = True
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(state.pid):
            os.kill(state.pid, signal.SIGKILL)
    _stop_orphan_postgres(state_dir / "pgdata")
    if remove and state_dir.exists():
        shutil.rmtree(state_dir, ignore_errors=True)
    return was_running


def _stop_orphan_postgres(pgdata: Path) -> None:
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast shutdown"
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


@dataclass
class PartStatus:
    name: str
    up: bool
    detail: str


def _check_endpoint(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(f"{url}/", timeout=2) as response:  # noqa: S310 - loopback
            response.read(1)
    except urllib.error.HTTPError:
        pass  # any HTTP answer means the server is up
    except Exception as exc:
        return False, f"not answering ({type(exc).__name__})"
    return True, "answering"


def _check_database(url: str) -> tuple[bool, str]:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return True, f"pgvector {row[0]}" if row else "up, no vector extension"
    except Exception as exc:
        return False, f"not answering ({type(exc).__name__})"


def status(state_dir: Path) -> dict[str, Any]:
    state = read_state(state_dir)
    if state is None:
        raise NotReady("the local cloud is not running",
                       "start it with `collections deploy local`")
    daemon_up = pid_alive(state.pid)
    parts = [PartStatus("daemon", daemon_up, f"pid {state.pid}")]
    parts.append(PartStatus("aws", *_check_endpoint(state.endpoint_url)))
    parts.append(PartStatus("database", *_check_database(state.database_url)))
    beat: dict[str, Any] = {}
    with contextlib.suppress(OSError, json.JSONDecodeError):
        beat = json.loads((state_dir / "heartbeat").read_text())
    fresh = bool(beat) and time.time() - float(beat.get("time", 0)) < HEARTBEAT_STALE_S
    dispatcher_up = daemon_up and fresh and bool(beat.get("dispatcher"))
    parts.append(PartStatus("dispatcher", dispatcher_up,
                            f"{beat.get('invocations', 0)} invocations" if dispatcher_up
                            else "not running"))
    return {
        "env": "local",
        "up": all(p.up for p in parts),
        "endpoint_url": state.endpoint_url,
        "region": state.region,
        "account": state.account,
        "buckets": {"images": state.images_bucket, "thumbnails": state.thumbnails_bucket},
        "database_url": state.database_url,
        "functions": state.functions,
        "dead_letter_queues": state.dlq_urls,
        "parts": {p.name: {"up": p.up, "detail": p.detail} for p in parts},
        "state_dir": str(state_dir),
        "log_file": str(state_dir / "daemon.log"),
    }
