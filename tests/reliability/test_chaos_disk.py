"""A full disk under the local cloud's durable store: uploads are refused with a clear error,
nothing acknowledged is lost, the local cloud keeps running, and uploads work again once
there is room. The store sits on a 6 MB tmpfs (needs the right to mount; skipped without)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
from botocore.exceptions import ClientError

from collections_ops.localcloud.aws import iam
from tests import images
from tests.e2e.cli import local_env, owner_url, run


@pytest.fixture
def small_store(tmp_path: Path):
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    state = tmp_path / "state"
    (state / "local").mkdir(parents=True)
    (state / "local" / "store").symlink_to(mount)
    try:
        yield state
    finally:
        run(local_env(state), "destroy", "local", "--yes")
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_refuses_uploads_clearly_and_loses_nothing(small_store):
    env = local_env(small_store)
    started = run(env, "deploy", "local")
    assert started.returncode == 0, started.stderr
    status = json.loads(run(env, "status", "--json").stdout)
    s3 = iam.admin_session(status["state_dir"], status["region"]).client(
        "s3", endpoint_url=status["endpoint_url"])
    bucket = status["buckets"]["images"]
    body = images.photo(1600, 1200, seed=5)  # ~50 KB
    accepted, refused = [], None
    for n in range(300):
        try:
            s3.put_object(Bucket=bucket, Key=f"disk/p{n:03d}.jpg", Body=body)
            accepted.append(f"p{n:03d}")
        except ClientError as exc:
            refused = exc
            break
    assert refused is not None, "the small store filled up"
    assert refused.response["Error"]["Code"] == "ServiceUnavailable"
    assert "free disk space" in refused.response["Error"]["Message"]
    assert accepted, "some uploads fit"

    assert run(env, "status").returncode == 0, "the local cloud keeps running"
    deadline = time.monotonic() + 180
    with psycopg.connect(owner_url(status), autocommit=True) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute("SELECT count(*) FROM items WHERE user_id = 'disk'").fetchone()[0]
            if rows >= len(accepted):
                break
            time.sleep(0.5)
    assert rows == len(accepted), "every acknowledged upload was processed"

    for name in accepted:  # make room: deleting objects deletes their kept copies
        s3.delete_object(Bucket=bucket, Key=f"disk/{name}.jpg")
    s3.put_object(Bucket=bucket, Key="disk/again.jpg", Body=images.photo(320, 240, seed=6))
