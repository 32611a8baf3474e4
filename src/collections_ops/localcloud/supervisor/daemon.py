"""The local cloud's supervisor: `python -m collections_ops.localcloud.supervisor.daemon STATE_DIR`.

The local cloud is three kinds of part, each in its own process so that one crash or one
busy interpreter does not take the others with it:

- the AWS emulator (`emulator`: moto's server over the durable store),
- PostgreSQL with pgvector (embedded; or DATABASE_URL, then not supervised),
- the dispatchers (`dispatcher`), one process per core by default, whose worker threads run
  the handlers; `COLLECTIONS_LOCAL_PROCESSES` sets how many.

This process starts them (the emulator and the database side by side), writes `state.json`
with `ready: true`, then watches them: a part that exits, or stops answering (the emulator
three probes in a row of 3 s each, a dispatcher whose heartbeat is 15 s old), is killed and
started again, with a growing pause if it keeps dying. Restarts are counted in
`supervisor.json`, which `status` shows. SIGUSR1 asks for a check at once (`deploy local` on a
running cloud). One supervisor per state directory: it holds an exclusive lock on
`daemon.lock` for its lifetime. Its children get SIGKILL if it dies (PR_SET_PDEATHSIG), so a
`kill -9` of the supervisor leaves no emulator or dispatcher behind; PostgreSQL is left
running and adopted by the next supervisor.

Which `collections_core` each process runs: this one and the dispatchers the deployed copy
(`paths.shared_code_dir()`: COLLECTIONS_LAMBDAS_DIR's working copy when set), put first on the
path by `main` before anything imports it -- this process migrates the database with it, as
the operations function does on AWS, and the dispatchers run the handlers with it, as their
bundles carry it; the CLI that started them the installed package. The emulator imports none.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from collections_ops.localcloud.state import (
    LocalState,
    StateDir,
    local_environment,
    write_state,
)
from collections_ops.localcloud.supervisor.children import Child
from collections_ops.localcloud.supervisor.postgres import OWNER, Database, credentials
from collections_ops.pipeline import FUNCTIONS, LOCAL_ACCOUNT, alarm_prefix

log = logging.getLogger("collections.localcloud")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def migrate(url: str, passwords: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Apply the migrations as the owner, then give each function's role its password
    (function key -> password); return the versions applied and each function's URL."""
    from collections_ops import paths

    paths.add_shared_to_path()
    from collections_core import migrate as migrations
    from collections_core import roles
    from collections_ops.localcloud.supervisor.postgres import connect

    with connect(url, timeout=MIGRATE_CONNECT_S, autocommit=False) as conn:
        applied = migrations.apply(conn)
        return applied, roles.function_urls(conn, url, passwords)


PROCESSES_ENV = "COLLECTIONS_LOCAL_PROCESSES"
PROBE_TIMEOUT_S = 3.0
DISPATCHER_FROZEN_S = 15.0
EMULATOR_READY_S = 90.0
ALREADY_RUNNING_EXIT = 75
MIGRATE_CONNECT_S = 60.0  # the server just started may still be recovering its WAL
REMAINS_GRACE_S = 10.0


def _port(state_dir: Path) -> int:
    """The emulator's port: the one used before if there is one, so endpoints stay valid."""
    fixed = os.environ.get("COLLECTIONS_LOCAL_PORT")
    if fixed:
        return int(fixed)
    path = StateDir(state_dir).port
    with contextlib.suppress(OSError, ValueError):
        port = int(path.read_text().strip())
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        return port
    port = _free_port()
    path.write_text(str(port))
    return port


def processes_wanted(environ: Any = os.environ) -> int:
    value = str(environ.get(PROCESSES_ENV, "")).strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, min(4, os.cpu_count() or 1))


def probe_endpoint(url: str, timeout: float = PROBE_TIMEOUT_S) -> tuple[bool, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=timeout) as response:  # noqa: S310
            response.read(1)
    except urllib.error.HTTPError:
        pass  # any HTTP answer means the server is up
    except Exception as exc:
        if "timed out" in str(exc).lower() or isinstance(exc, TimeoutError):
            return False, f"not answering within {timeout:.0f} s"
        return False, f"not answering ({type(exc).__name__})"
    return True, "answering"


class Supervisor:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.files = StateDir(state_dir)
        self.port = _port(state_dir)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        python = sys.executable
        log_path = self.files.log
        self.emulator = Child("emulator",
                              [python, "-m", "collections_ops.localcloud.emulator_process",
                               str(state_dir), str(self.port)], log_path)
        self.dispatchers = [
            Child(f"dispatcher-{n}",
                  [python, "-m", "collections_ops.localcloud.lambda_service.dispatcher",
                   str(state_dir), str(n)], log_path)
            for n in range(processes_wanted())]
        url = os.environ.get("DATABASE_URL")
        # The owner's password and each function role's, kept with the data they protect.
        self.passwords = credentials(state_dir, tuple(fn.key for fn in FUNCTIONS))
        self.database = None if url else Database(self.files.pgdata,
                                                  self.passwords[OWNER])
        self.database_url = url or ""
        self.function_urls: dict[str, str] = {}
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.monitor: Any = None
        self.reload_requested = False
        self.reloads = 0

    # ------------------------------------------------------------------ start

    def start(self) -> LocalState:
        self.files.emulator.unlink(missing_ok=True)
        for n in range(len(self.dispatchers), 64):  # heartbeats of a larger earlier run
            self.files.dispatcher_heartbeat(n).unlink(missing_ok=True)
        self.emulator.start()
        for child in self.dispatchers:  # they import the handlers while moto starts
            child.start()
        if self.database is not None:
            self.database.start()
            self.database_url = self.database.url
        applied, self.function_urls = migrate(
            self.database_url, {fn.key: self.passwords[fn.key] for fn in FUNCTIONS})
        log.info("database ready; migrations applied: %s", applied or "none pending")
        ready = self._wait_for_emulator()
        self._put_database_url()
        self._wait_for_dispatchers()
        env = local_environment()
        resources = ready["resources"]
        state = LocalState(
            pid=os.getpid(), ready=True, endpoint_url=self.endpoint, region=ready["region"],
            account=LOCAL_ACCOUNT, database_url=self.database_url,
            embedded_database=self.database is not None,
            pg_pid=self.database.pid if self.database is not None else None,
            images_bucket=resources["images_bucket"],
            thumbnails_bucket=resources["thumbnails_bucket"],
            functions={fn.key: fn.function_name(env.name) for fn in FUNCTIONS},
            queue_urls=resources["queue_urls"], dlq_urls=resources["dlq_urls"],
            started_at=time.time(), state_dir=str(self.state_dir),
        )
        from collections_ops.localcloud.supervisor.monitor import Monitor

        self.monitor = Monitor(self.endpoint, ready["region"],
                               {**resources["queue_urls"], **resources["dlq_urls"]},
                               alarm_prefix(env.name))
        self.monitor.start()
        self._write_supervisor()
        write_state(self.state_dir, state)
        log.info("local cloud ready (restored %s)", ready.get("restored"))
        return state

    def _wait_for_emulator(self) -> dict[str, Any]:
        deadline = time.monotonic() + EMULATOR_READY_S
        path = self.files.emulator
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                ready = json.loads(path.read_text())
                if ready.get("pid") == self.emulator.pid:
                    return dict(ready)
            code = self.emulator.exited()
            if code is not None:
                raise RuntimeError(f"the AWS emulator exited with {code} while starting; "
                                   f"see {self.emulator.log_path}")
            time.sleep(0.05)
        raise RuntimeError(f"the AWS emulator did not become ready in {EMULATOR_READY_S:.0f} s")

    def _wait_for_dispatchers(self) -> None:
        """Ready means ready to deliver: every dispatcher has loaded the handlers and beat."""
        deadline = time.monotonic() + EMULATOR_READY_S
        waiting = list(enumerate(self.dispatchers))
        while waiting and time.monotonic() < deadline:
            for n, child in list(waiting):
                with contextlib.suppress(OSError, ValueError):
                    beat = json.loads(self.files.dispatcher_heartbeat(n).read_text())
                    if beat.get("pid") == child.pid and beat.get("alive"):
                        waiting.remove((n, child))
                code = child.exited()
                if code is not None:
                    raise RuntimeError(f"{child.name} exited with {code} while starting; "
                                       f"see {child.log_path}")
            time.sleep(0.05)
        if waiting:
            raise RuntimeError("the dispatchers did not start in time")

    def _put_database_url(self) -> None:
        import boto3

        from collections_ops.localcloud.provision import put_database_url

        env = local_environment()
        ssm = boto3.session.Session(region_name=os.environ["AWS_DEFAULT_REGION"]).client(
            "ssm", endpoint_url=self.endpoint)
        put_database_url(ssm, env, self.database_url, self.function_urls)

    # ------------------------------------------------------------------ watch

    def watch(self) -> None:
        signal.signal(signal.SIGUSR1, lambda *_: self.wake.set())

        def request_reload(*_: Any) -> None:
            self.reload_requested = True
            self.wake.set()

        signal.signal(signal.SIGUSR2, request_reload)
        last_probe = 0.0
        while not self.stopping.is_set():
            self.wake.wait(0.5)
            self.wake.clear()
            if self.stopping.is_set():
                break
            try:
                if self.reload_requested:
                    self.reload_requested = False
                    self.reload()
                now = time.monotonic()
                self._check_database()
                probe = now - last_probe >= 2.0
                if probe:
                    last_probe = now
                self._check_emulator(probe=probe)
                for child in self.dispatchers:
                    self._check_dispatcher(child)
                self._write_supervisor()
            except Exception as exc:  # the supervisor must outlive any one failed restart
                log.exception("supervision round failed: %s", exc)

    def _due(self, part: Any) -> bool:
        return time.monotonic() >= part.next_start

    def _restarted(self, part: Any, why: str) -> None:
        part.restarts += 1
        part.last_exit = why
        # A part that dies again soon after starting waits longer each time (up to 10 s).
        quick = time.time() - part.started_at < 10
        pause = min(10.0, 0.5 * (2 ** min(part.restarts, 5))) if quick else 0.0
        part.next_start = time.monotonic() + pause
        log.warning("%s %s; restarting it (restart %d)", part.name, why, part.restarts)
        self._write_supervisor()  # counted before the (possibly slow) start

    def reload(self) -> None:
        """New handler code: start the emulator again (it publishes a version for each function
        whose code changed and moves `live` to it), then the dispatchers (they import the new
        code). Data is kept, as in any restart; not counted as a restart."""
        log.info("reloading the handlers' code")
        self.emulator.stop()
        self.emulator.start()
        self._wait_for_emulator()
        self._put_database_url()
        for child in self.dispatchers:
            child.stop()
            child.start()
        self._wait_for_dispatchers()
        self.reloads += 1

    def _check_database(self) -> None:
        if self.database is None or self.database.alive() or not self._due(self.database):
            return
        self._restarted(self.database, "is not running")
        self.database.start()
        log.info("database restarted (pid %s)", self.database.pid)

    def _check_emulator(self, *, probe: bool) -> None:
        child = self.emulator
        code = child.exited()
        why = f"exited ({code})"
        if code is None and probe:
            up, _ = probe_endpoint(self.endpoint)
            child.failures = 0 if up else child.failures + 1
            if child.failures >= 3 and time.time() - child.started_at > 30:
                child.kill(signal.SIGKILL)
                child.kill(signal.SIGCONT)  # a stopped process dies only once continued
                child.proc.wait(5)
                code, why = -9, "stopped answering"
        if code is None or not self._due(child):
            return
        self._restarted(child, why)
        child.start()
        self._wait_for_emulator()
        self._put_database_url()

    def _check_dispatcher(self, child: Child) -> None:
        code = child.exited()
        if code is None:
            beat: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                beat = json.loads(self.files.dispatcher_heartbeat(int(child.name[11:])
                                                                  ).read_text())
            age = time.time() - float(beat.get("time", child.started_at))
            if age > DISPATCHER_FROZEN_S and time.time() - child.started_at > 30:
                child.kill()
                child.proc.wait(5)
                code = -9
        if code is None or not self._due(child):
            return
        self._restarted(child, f"exited ({code})")
        child.start()

    def _write_supervisor(self) -> None:
        parts = [self.emulator, *self.dispatchers]
        if self.database is not None:
            parts.insert(0, self.database)  # type: ignore[arg-type]
        record = {"pid": os.getpid(), "time": time.time(), "reloads": self.reloads, "parts": {
            p.name: {"pid": p.pid, "restarts": p.restarts, "started_at": p.started_at,
                     "last_exit": p.last_exit} for p in parts}}
        tmp = self.files.supervisor.with_name(self.files.supervisor.name + ".tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.files.supervisor)
        # The aggregate heartbeat earlier tools read: one file, every dispatcher summed.
        beats = []
        for n in range(len(self.dispatchers)):
            with contextlib.suppress(OSError, ValueError):
                beats.append(json.loads(self.files.dispatcher_heartbeat(n).read_text()))
        beat = {"time": time.time(),
                "dispatcher": len(beats) == len(self.dispatchers)
                and all(b.get("alive") for b in beats),
                "invocations": sum(int(b.get("invocations", 0)) for b in beats),
                "killed": sum(int(b.get("killed", 0)) for b in beats)}
        tmp = self.files.heartbeat.with_name(self.files.heartbeat.name + ".tmp")
        tmp.write_text(json.dumps(beat))
        os.replace(tmp, self.files.heartbeat)

    def stop(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        for child in self.dispatchers:
            child.stop()
        self.emulator.stop()
        if self.database is not None:
            self.database.stop()


def _lock(state_dir: Path) -> Any:
    """Hold `daemon.lock` exclusively, or return None if another supervisor holds it."""
    import fcntl

    handle = open(StateDir(state_dir).daemon_lock, "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def _wait_for_previous_parts(state_dir: Path) -> None:
    """The parts of a supervisor that was killed die with it, but not at once: until they are
    gone they hold the emulator's port and write their files. Wait for them (with a deadline,
    then kill them)."""
    from collections_ops.localcloud.supervisor.processes import is_ours, kill_and_wait, wait_gone

    pids: set[int] = set()
    files = StateDir(state_dir)
    for path in (files.supervisor, files.emulator):
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            record = json.loads(path.read_text())
            parts = record.get("parts", {"emulator": record})
            pids |= {int(p["pid"]) for n, p in parts.items() if n != "database" and p.get("pid")}
    pids.discard(os.getpid())
    left = wait_gone([p for p in pids if is_ours(p, state_dir)], REMAINS_GRACE_S)
    if left:
        log.warning("parts of the previous run (%s) still run after %.0f s; killing them",
                    left, REMAINS_GRACE_S)
        kill_and_wait(left)


def run(state_dir: Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(state_dir)
    if lock is None:
        log.error("another local cloud supervisor holds %s", StateDir(state_dir).daemon_lock)
        sys.exit(ALREADY_RUNNING_EXIT)
    _wait_for_previous_parts(state_dir)
    env = local_environment()
    # This process (its monitor, the DATABASE_URL parameter) acts as the administrator.
    from collections_ops.localcloud.aws import iam

    admin = iam.load_or_create(state_dir)["admin"]
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update({"AWS_ACCESS_KEY_ID": admin["aws_access_key_id"],
                       "AWS_SECRET_ACCESS_KEY": admin["aws_secret_access_key"]})
    os.environ["AWS_DEFAULT_REGION"] = os.environ.get("AWS_DEFAULT_REGION") or env.region
    supervisor = Supervisor(state_dir)

    def request_stop(*_: Any) -> None:
        supervisor.stopping.set()
        supervisor.wake.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        supervisor.start()
        supervisor.watch()
    finally:
        log.info("stopping")
        supervisor.stop()
        log.info("stopped")


def main() -> None:
    from collections_ops import paths

    # The migrations this process applies are the deployed code's (COLLECTIONS_LAMBDAS_DIR's
    # working copy, or the shipped lambdas/), as the operations function runs them on AWS, not
    # the CLI's installed collections_core: on the path before anything imports it.
    paths.add_shared_to_path()
    # Everything the local cloud writes (its logs, the store, the database's files, the
    # functions' scratch files) is its owner's only, whatever the operator's umask.
    os.umask(0o077)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().handlers[0].addFilter(
        lambda record: record.name.startswith("collections.localcloud"))
    run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
