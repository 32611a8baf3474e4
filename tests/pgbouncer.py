"""PgBouncer in transaction mode in front of the tests' PostgreSQL: a local stand-in for RDS
Proxy with the same restrictions. It refuses a startup parameter it does not know (`options`
among them: no `ignore_startup_parameters`), as RDS Proxy answers "feature not supported", and
hands a server connection to another client at every transaction's end, so whatever a client
leaves on its session is seen by the next one, as behind RDS Proxy a session `SET` pins.

The Debian package `pgbouncer` is installed by `make setup`. PgBouncer will not run as root: as
root it is started as the owner of the server's socket directory (the embedded PostgreSQL's
data directory, which only that user may enter).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

START_DEADLINE_S = 20.0
POOL_SIZE = 2  # fewer server connections than clients: transactions really share backends


def binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None)


@dataclass(frozen=True)
class PgBouncer:
    url: str  # postgresql://… to the pooler, same database and user as the server's URL
    admin_url: str  # PgBouncer's console (SHOW POOLS, SHOW SERVERS)
    log: Path

    def with_database(self, name: str) -> str:
        return urlsplit(self.url)._replace(path=f"/{quote(name, safe='')}").geturl()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _backend(server_url: str) -> tuple[str, str, str, str, str]:
    """host (a socket directory or a name), port, user, password, database of a libpq URL."""
    parts = urlsplit(server_url)
    query = parse_qs(parts.query)
    host = query.get("host", [unquote(parts.hostname or "")])[0] or "127.0.0.1"
    port = query.get("port", [str(parts.port or 5432)])[0]
    return (host, port, unquote(parts.username or "postgres"), unquote(parts.password or ""),
            unquote(parts.path.lstrip("/")) or "postgres")


@contextmanager
def running(server_url: str, *, pool_size: int = POOL_SIZE) -> Iterator[PgBouncer]:
    """Start PgBouncer in front of `server_url`; stop it (and only it) on exit."""
    import psycopg

    exe = binary()
    assert exe, "pgbouncer is not installed"
    host, port, user, password, database = _backend(server_url)
    folder = Path(tempfile.mkdtemp(prefix="collections-pgbouncer-"))
    listen = _free_port()
    backend = f"host={host} port={port} user={user}" + (f" password={password}" if password
                                                        else "")
    ini = folder / "pgbouncer.ini"
    ini.write_text(f"""[databases]
* = {backend}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {listen}
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 200
admin_users = pgbouncer
server_login_retry = 1
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
""", encoding="utf-8")
    ini.chmod(0o600)
    command = [exe, str(ini)]
    if os.geteuid() == 0:
        socket_dir = Path(host)
        owner = pwd.getpwuid(socket_dir.stat().st_uid if socket_dir.is_dir() else 65534)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
        os.chown(ini, owner.pw_uid, owner.pw_gid)
        command = [exe, "-u", owner.pw_name, str(ini)]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    url = (f"postgresql://{quote(user, safe='')}@127.0.0.1:{listen}/"
           f"{quote(database, safe='')}")
    bouncer = PgBouncer(url=url, admin_url=f"postgresql://pgbouncer@127.0.0.1:{listen}/pgbouncer",
                        log=folder / "pgbouncer.log")
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited ({process.returncode}): "
                                   f"{process.stderr.read().decode() if process.stderr else ''}")
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield bouncer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
