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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collections_ops import locks
from collections_ops.errors import NotReady
from collections_ops.localcloud.state import (
    LocalState,
    StateDir,
    read_state,
    write_private,
)
from collections_ops.localcloud.supervisor.daemon import (
    ALREADY_RUNNING_EXIT,
    PROBE_TIMEOUT_S,
    probe_endpoint,
)
from collections_ops.localcloud.supervisor.postgres import stop_postgres
from collections_ops.localcloud.supervisor.processes import is_ours, pid_alive, terminate

__all__ = ["pid_alive", "start", "status", "stop", "stop_postgres"]

START_TIMEOUT_S = 120.0
REPAIR_TIMEOUT_S = 60.0


def running_state(state_dir: Path) -> LocalState | None:
    state = read_state(state_dir)
    if state and state.ready and pid_alive(state.pid):
        return state
    return None


def _supervisor(state_dir: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads(StateDir(state_dir).supervisor.read_text()))
    return {}


def restart_counts(state_dir: Path) -> dict[str, int]:
    parts = _supervisor(state_dir).get("parts", {})
    return {name: int(p.get("restarts", 0)) for name, p in parts.items()}


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def start(state_dir: Path, notify: Callable[[str], None] | None = None
          ) -> tuple[LocalState, bool]:
    """Start the local cloud, or repair a running one; returns (state, started_now).

    On a running cloud: ask the supervisor to check every part now, wait until all answer,
    and say which parts were restarted since the last `deploy local` ("restarted: database").
    """
    notify = notify or _say
    # One `deploy local` at a time per state directory: the second waits, saying for whom, and
    # then joins the cloud the first started.
    with locks.held(StateDir(state_dir).start_lock, what="deploy local", wait_s=START_TIMEOUT_S,
                    notify=notify):
        existing = running_state(state_dir)
        if existing is not None:
            restarted = repair(state_dir)
            if restarted:
                notify("restarted: " + ", ".join(restarted))
            if reload_if_changed(state_dir):
                notify("reloaded: the handlers' code changed; new versions published")
            return existing, False
        stop(state_dir, remove=False)  # clear the remains of a crashed run
        StateDir(state_dir).state.unlink(missing_ok=True)
        state = _spawn(state_dir)
        _acknowledge(state_dir)
        return state, True


def _spawn(state_dir: Path) -> LocalState:
    log_path = StateDir(state_dir).log
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)  # one an earlier version left 0644
    with os.fdopen(fd, "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "collections_ops.localcloud.supervisor.daemon", str(state_dir)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            start_new_session=True, close_fds=True,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = read_state(state_dir)
        if state and state.ready and state.pid == proc.pid:
            return state
        code = proc.poll()
        if code == ALREADY_RUNNING_EXIT:  # a supervisor started outside this lock
            other = _wait_ready(state_dir, deadline)
            if other is not None:
                return other
        if code is not None:
            raise NotReady(f"the local cloud failed to start: {_last_error(log_path)}",
                           f"full log: {log_path}")
        time.sleep(0.05)
    proc.terminate()
    raise NotReady(f"the local cloud did not become ready in {START_TIMEOUT_S:.0f} s",
                   f"see {log_path}")


def _wait_ready(state_dir: Path, deadline: float) -> LocalState | None:
    while time.monotonic() < deadline:
        state = running_state(state_dir)
        if state is not None:
            return state
        time.sleep(0.1)
    return None


def _acknowledge(state_dir: Path) -> None:
    write_private(StateDir(state_dir).restarts_acknowledged, json.dumps(restart_counts(state_dir)))


def repair(state_dir: Path, timeout: float = REPAIR_TIMEOUT_S) -> list[str]:
    """Have the supervisor restart whatever is down, wait until every part answers, and
    return the parts restarted since the last acknowledgement (then acknowledge them)."""
    state = read_state(state_dir)
    if state is None or not pid_alive(state.pid):
        return []
    with contextlib.suppress(ProcessLookupError):
        os.kill(state.pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    report = status(state_dir)
    while not report["up"] and time.monotonic() < deadline:
        time.sleep(0.3)
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.pid, signal.SIGUSR1)
        report = status(state_dir)
    if not report["up"]:
        down = [name for name, p in report["parts"].items() if not p["up"]]
        raise NotReady(f"the local cloud could not be repaired: {', '.join(down)} still down",
                       f"see {StateDir(state_dir).log}")
    acknowledged: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError):
        acknowledged = json.loads(StateDir(state_dir).restarts_acknowledged.read_text())
    now = restart_counts(state_dir)
    _acknowledge(state_dir)
    names = sorted({_part_group(n) for n, count in now.items()
                    if count > int(acknowledged.get(n, 0))})
    return names


def _emulator_pid(state_dir: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(json.loads(StateDir(state_dir).emulator.read_text())["pid"])
    return None


def _emulator_code(state_dir: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        code = json.loads(StateDir(state_dir).emulator.read_text()).get("code")
        return str(code) if code else None
    return None


def reload_if_changed(state_dir: Path, timeout: float = REPAIR_TIMEOUT_S) -> bool:
    """If the handlers' code changed since the running cloud started, have the supervisor
    reload it (new versions, new code in the dispatchers); True once it has."""
    from collections_ops.localcloud.lambda_service import watch
    from collections_ops.localcloud.provision import code_fingerprint

    state = read_state(state_dir)
    current = code_fingerprint()
    if state is None or _emulator_code(state_dir) in (None, current) \
            or watch.read_stamp(state_dir).get("code") == current:  # hot-reloaded already
        return False
    reloads = int(_supervisor(state_dir).get("reloads", 0))
    os.kill(state.pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(_supervisor(state_dir).get("reloads", 0)) > reloads:
            return True  # the new emulator wrote the stamp afresh (`watch.follow_live`)
        time.sleep(0.05)
    raise NotReady("the local cloud did not finish reloading the handlers' code",
                   f"see {StateDir(state_dir).log}")


def _part_group(name: str) -> str:
    return "dispatcher" if name.startswith("dispatcher") else name


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
    if state and pid_alive(state.pid) and is_ours(state.pid, state_dir):
        was_running = True
        terminate(state.pid, 20)
    # What a killed supervisor may have left: its children die with it (PDEATHSIG), but not
    # at once, and not on every platform; PostgreSQL is not its child at all.
    parts = [int(p["pid"]) for n, p in _supervisor(state_dir).get("parts", {}).items()
             if n != "database" and p.get("pid")]
    for pid in parts:
        if pid_alive(pid) and is_ours(pid, state_dir):
            terminate(pid, 5)
    stop_postgres(StateDir(state_dir).pgdata)
    if remove and state_dir.exists():
        shutil.rmtree(state_dir, ignore_errors=True)
    return was_running


def data_summary(state_dir: Path) -> str:
    """What `destroy local` would delete, in words ("" when there is nothing)."""
    store = StateDir(state_dir).store
    objects = len(list(store.glob("s3/*/*.json")))
    messages = len(list(store.glob("sqs/*/*.json")))
    parts = []
    if objects:
        parts.append(f"{objects} S3 object{'s' if objects != 1 else ''}")
    if messages:
        parts.append(f"{messages} queued message{'s' if messages != 1 else ''}")
    if (StateDir(state_dir).pgdata / "PG_VERSION").exists():
        parts.append("the PostgreSQL database")
    return ", ".join(parts)


@dataclass
class PartStatus:
    name: str
    up: bool
    detail: str
    restarts: int = 0


def _check_database(url: str) -> tuple[bool, str]:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=int(PROBE_TIMEOUT_S)) as conn:
            conn.execute("SELECT set_config('statement_timeout', %s, false)",
                         (str(int(PROBE_TIMEOUT_S * 1000)),))
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return True, f"pgvector {row[0]}" if row else "up, no vector extension"
    except Exception as exc:
        if "timeout" in str(exc).lower():
            return False, f"not answering within {PROBE_TIMEOUT_S:.0f} s"
        return False, f"not answering ({type(exc).__name__})"


def _check_dispatchers(state_dir: Path, supervised: dict[str, Any]) -> tuple[bool, str]:
    names = sorted(n for n in supervised if n.startswith("dispatcher"))
    if not names:
        return False, "not running"
    invocations, stale = 0, []
    for name in names:
        beat: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            beat = json.loads(StateDir(state_dir).dispatcher_heartbeat(int(name[11:])
                                                                     ).read_text())
        # Written every 0.5 s; older than the probe deadline means frozen or gone.
        if not beat or time.time() - float(beat.get("time", 0)) > PROBE_TIMEOUT_S \
                or not beat.get("alive") or not pid_alive(beat.get("pid")):
            stale.append(name)
        invocations += int(beat.get("invocations", 0))
    if stale:
        return False, f"{', '.join(stale)} not answering within {PROBE_TIMEOUT_S:.0f} s"
    return True, f"{len(names)} processes, {invocations} invocations"


def _restarts(supervised: dict[str, Any], group: str) -> int:
    return sum(int(p.get("restarts", 0)) for n, p in supervised.items()
               if _part_group(n) == group)


def status(state_dir: Path) -> dict[str, Any]:
    state = read_state(state_dir)
    if state is None:
        raise NotReady("the local cloud is not running",
                       "start it with `collections deploy local`")
    supervisor = _supervisor(state_dir)
    supervised = supervisor.get("parts", {})
    daemon_up = pid_alive(state.pid) and time.time() - float(supervisor.get("time", 0)) \
        <= PROBE_TIMEOUT_S + 1
    parts = [PartStatus("daemon", daemon_up, f"pid {state.pid}" if daemon_up else
                        f"pid {state.pid} not answering within {PROBE_TIMEOUT_S:.0f} s")]
    aws = PartStatus("aws", *probe_endpoint(state.endpoint_url, PROBE_TIMEOUT_S))
    emulator_pid = supervised.get("emulator", {}).get("pid")
    if aws.up and emulator_pid and _emulator_pid(state_dir) != emulator_pid:
        aws = PartStatus("aws", False, "restarting: provisioning and restoring its data")
    database = PartStatus("database", *_check_database(state.database_url))
    dispatcher = PartStatus("dispatcher", *_check_dispatchers(state_dir, supervised))
    for part, group in ((aws, "emulator"), (database, "database"),
                        (dispatcher, "dispatcher")):
        count = _restarts(supervised, group)
        if count:
            part.detail += f"; restarted {count} time{'s' if count > 1 else ''}"
        part.restarts = count
    parts += [aws, database, dispatcher]
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
        "parts": {p.name: {"up": p.up, "detail": p.detail, "restarts": p.restarts}
                  for p in parts},
        "state_dir": str(state_dir),
        "log_file": str(StateDir(state_dir).log),
    }
