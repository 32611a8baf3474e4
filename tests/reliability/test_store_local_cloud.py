"""The local cloud keeps what S3 acknowledged, through the whole pipeline: objects under keys a
store could mangle (`%2F`, `%41`, a space, 1,024 bytes of UTF-8) are processed once, survive a
`kill -9` of the emulator with their ETag and LastModified, and still verify; a 1,025-byte key
is refused as S3 refuses it; a `..` key is refused by the processor; a 20 MB multipart upload
runs the pipeline once; and the state directory is its owner's only. A real local cloud,
driven through the CLI and boto3."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from collections_ops.localcloud.state import state_dir_mode
from tests import images
from tests.e2e.cli import deployed, local_client, local_env, owner_url, run, wait_for

_wait = partial(wait_for, timeout=240, interval=0.5, tolerate=(Exception,))


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    env = local_env(tmp_path_factory.mktemp("store"), COLLECTIONS_LOCAL_TIME_SCALE="0.1")
    with deployed(env) as cloud:
        yield cloud


def _key_of_bytes(prefix: str, size: int) -> str:
    """A key of exactly `size` bytes of UTF-8 whose item id fits (three-byte characters)."""
    room = size - len(prefix.encode()) - len(b".jpg")
    return prefix + "日" * (room // 3) + "k" * (room % 3) + ".jpg"


def _complete(status: dict[str, Any], user: str) -> dict[str, tuple[str, int, int, int]]:
    """original key -> (item id, items, analyses, embeddings rows) of `user`."""
    with psycopg.connect(owner_url(status), connect_timeout=3) as conn:
        rows = conn.execute(
            "SELECT i.original_key, i.id, count(DISTINCT i.id), count(DISTINCT a.item_id),"
            " count(DISTINCT e.item_id) FROM items i"
            " LEFT JOIN analyses a ON a.user_id = i.user_id AND a.item_id = i.id"
            " LEFT JOIN embeddings e ON e.user_id = i.user_id AND e.item_id = i.id"
            " WHERE i.user_id = %s GROUP BY 1, 2", (user,)).fetchall()
    return {str(r[0]): (str(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}


def _heads(s3: Any, bucket: str, keys: list[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        out[key] = (head["ETag"], head["LastModified"].isoformat())
    return out


def _parked(status: dict[str, Any], function: str) -> list[dict[str, Any]]:
    """What `function`'s dead-letter queue holds (read without taking it)."""
    sqs = local_client(status, "sqs")
    found = sqs.receive_message(QueueUrl=status["dead_letter_queues"][function],
                                MaxNumberOfMessages=10, VisibilityTimeout=0,
                                WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"]) for m in found]


def _queue_depth(status: dict[str, Any], function: str) -> int:
    """Messages waiting for `function` or being processed by it."""
    queues = json.loads(Path(status["state_dir"], "state.json").read_text())["queue_urls"]
    attrs = local_client(status, "sqs").get_queue_attributes(
        QueueUrl=queues[function], AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def _kill_emulator(status: dict[str, Any]) -> None:
    parts = json.loads(Path(status["state_dir"], "supervisor.json").read_text())["parts"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(parts["emulator"]["pid"]), signal.SIGKILL)


def test_odd_keys_are_processed_once_survive_a_kill_9_and_still_verify(cloud):
    env, status = cloud["env"], cloud["status"]
    s3, bucket, user = local_client(status, "s3"), status["buckets"]["images"], "odd"
    keys = [f"{user}/a%2Fb.jpg", f"{user}/c%41d.jpg", f"{user}/sp ace.jpg",
            _key_of_bytes(f"{user}/", 1024)]
    assert len(keys[-1].encode()) == 1024
    # GIVEN uploads under odd keys, each processed, and two keys S3 or the processor refuse
    for n, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=images.photo(320, 240, seed=40 + n))
    with pytest.raises(ClientError) as too_long:
        s3.put_object(Bucket=bucket, Key=_key_of_bytes(f"{user}/", 1025),
                      Body=images.photo(seed=1))
    assert too_long.value.response["Error"]["Code"] == "KeyTooLongError"
    assert too_long.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    dotted = f"{user}/../x.jpg"
    s3.put_object(Bucket=bucket, Key=dotted, Body=images.photo(seed=2))
    _wait(lambda: all(v[1:] == (1, 1, 1) for v in _complete(status, user).values())
          and set(_complete(status, user)) == set(keys), "every odd key processed")
    _wait(lambda: any(p["requestContext"]["condition"] == "TerminalError"
                      for p in _parked(status, "processor")), "the `..` key refused")
    before = _heads(s3, bucket, keys)
    processed = _complete(status, user)
    # WHEN the emulator is killed and the local cloud recovered
    _kill_emulator(status)
    recovered = run(env, "deploy", "local")
    assert recovered.returncode == 0, recovered.stderr
    # THEN every object is there under its very key, with its ETag and LastModified
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"{user}/")
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted([*keys, dotted])
    assert _heads(s3, bucket, keys) == before
    # AND was processed once (a restored object is not announced again), and verifies
    assert _complete(status, user) == processed
    for key in keys:
        verified = run(env, "verify", processed[key][0], "--user", user)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    # AND the `..` key was refused once, as terminal bad input, with nothing written
    refused = [p for p in _parked(status, "processor")
               if "'..' segment" in str(p["responsePayload"].get("errorMessage"))]
    assert len(refused) == 1
    assert dotted not in _complete(status, user)
    assert not s3.list_objects_v2(Bucket=status["buckets"]["thumbnails"],
                                  Prefix="../").get("Contents")


def test_the_state_directory_and_every_stored_file_are_the_owners_only(cloud):
    state_dir = Path(cloud["status"]["state_dir"])
    assert stat.S_IMODE(state_dir.stat().st_mode) == state_dir_mode()
    store = state_dir / "store"
    modes = {(p.is_dir(), stat.S_IMODE(p.stat().st_mode)) for p in [store, *store.rglob("*")]
             if not p.is_symlink()}
    assert modes <= {(True, 0o700), (False, 0o600)}, modes
    for name in ("state.json", "credentials.json", "daemon.log"):
        assert stat.S_IMODE((state_dir / name).stat().st_mode) == 0o600, name
    # Nothing below it is open to anyone else either (the state directory itself is 0711 as
    # root only so that the database's own user can pass through it).
    everything = {(str(p.relative_to(state_dir)), stat.S_IMODE(p.lstat().st_mode))
                  for p in state_dir.rglob("*")
                  if not (p.is_symlink() or p.is_socket())}
    open_to_others = {(name, oct(mode)) for name, mode in everything if mode & 0o077}
    assert open_to_others == set()


def test_a_20_mb_multipart_upload_runs_the_pipeline_once(cloud, tmp_path):
    status = cloud["status"]
    s3, user = local_client(status, "s3"), "multipart"
    photo = images.photo(1600, 1200, seed=7)
    big = tmp_path / "big.jpg"
    big.write_bytes(photo + b"\0" * (20 * 1024 * 1024 - len(photo)))  # after the JPEG's end
    # WHEN boto3 uploads it with its default TransferConfig (multipart from 8 MiB)
    s3.upload_file(str(big), status["buckets"]["images"], f"{user}/big.jpg")
    head = s3.head_object(Bucket=status["buckets"]["images"], Key=f"{user}/big.jpg")
    assert head["ETag"].endswith('-3"') and head["ContentLength"] == 20 * 1024 * 1024
    # THEN one item, one analysis and one embedding, and nothing left to process
    _wait(lambda: _complete(status, user).get(f"{user}/big.jpg", ("", 0, 0, 0))[1:]
          == (1, 1, 1) and _queue_depth(status, "processor") == 0, "the upload processed")
    # AND the processor ran once for it
    logs = local_client(status, "logs")
    group = f"/aws/lambda/{status['functions']['processor']}"
    downloads = []
    for page in logs.get_paginator("filter_log_events").paginate(
            logGroupName=group, filterPattern='"big.jpg"'):
        for event in page["events"]:
            with contextlib.suppress(ValueError):
                line = json.loads(event["message"])
                if line.get("stage") == "downloaded" and line.get("key") == f"{user}/big.jpg":
                    downloads.append(line)
    assert len(downloads) == 1, downloads
