"""The local cloud's object store keeps exactly what S3 acknowledged, as S3 does: keys byte
for byte (percent signs, spaces, multibyte UTF-8, 1,024 bytes), each object's ETag and
LastModified, one notification per upload (one per completed multipart upload), and an upload
whose notification cannot be kept is refused whole. A real moto server with the durable
store's hooks, in a child process that is killed (`SIGKILL`) and started again on the same
store, as the emulator is."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cli import wait_for

# The emulator's part of it: moto's server behind the store's middleware, the bucket and its
# notification queue made with recording off (as provisioning is), the kept data restored,
# then the test's own steps (argv[4]) with `s3`, `sqs`, `store`, `kept`, `queue`, `out` at hand.
_CHILD = textwrap.dedent("""
    import io, json, os, sys, threading
    from pathlib import Path

    import boto3
    from botocore.config import Config
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from collections_ops.localcloud.aws import store as kept, store_objects, write_through

    root, versioned, steps = Path(sys.argv[1]), sys.argv[2] == "versioned", sys.argv[3]
    store = kept.Store(root)
    write_through.install(store)
    app = store_objects.s3_middleware(DomainDispatcherApplication(create_backend_app), store,
                                      {"images"}, account="123456789012")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = dict(endpoint_url=f"http://127.0.0.1:{server.server_port}",
                   region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s",
                   config=Config(retries={"max_attempts": 1}))
    s3, sqs = boto3.client("s3", **options), boto3.client("sqs", **options)
    store.recording = False
    queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    s3.create_bucket(Bucket="images")
    if versioned:
        s3.put_bucket_versioning(Bucket="images",
                                 VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(Bucket="images", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn["Attributes"]["QueueArn"],
                                 "Events": ["s3:ObjectCreated:*"]}]})
    write_through.restore(store, account="123456789012", region="us-east-1")
    store.recording = True
    out = {}
    exec(steps)
    print(json.dumps(out, default=str), flush=True)
    os.kill(os.getpid(), 9)  # as `kill -9` of the emulator: nothing flushed, nothing closed
""")

# Steps shared by the tests.
_DESCRIBE = textwrap.dedent("""
    import hashlib
    from urllib.parse import unquote_plus

    def describe(key):
        got = s3.get_object(Bucket="images", Key=key)
        return {"etag": got["ETag"], "last_modified": got["LastModified"].timestamp(),
                "sha": hashlib.sha256(got["Body"].read()).hexdigest()}

    def listed():
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket="images")
        return {o["Key"]: {"etag": o["ETag"], "last_modified": o["LastModified"].timestamp()}
                for page in pages for o in page.get("Contents", [])}

    def notifications():
        found = []
        while True:
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                      VisibilityTimeout=600).get("Messages", [])
            if not got:
                return found
            for m in got:
                for r in json.loads(m["Body"]).get("Records", []):
                    found.append([r["eventName"], unquote_plus(r["s3"]["object"]["key"])])
""")


def _run(root: Path, steps: str, *, versioned: bool = True) -> dict[str, Any]:
    """One life of the emulator on the store at `root`: set up, restore, `steps`, kill -9."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(root),
                           "versioned" if versioned else "plain",
                           _DESCRIBE + textwrap.dedent(steps)],
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-9000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _key_of_bytes(prefix: str, size: int, char: str) -> str:
    """A key of exactly `size` bytes of UTF-8: `prefix`, `char` repeated, padding, `.jpg`."""
    room = size - len(prefix.encode()) - len(b".jpg")
    width = len(char.encode())
    return prefix + char * (room // width) + "k" * (room % width) + ".jpg"


ODD_KEYS = ["u2/a%2Fb.jpg", "u2/c%41d.jpg", "u2/sp ace.jpg", "u2/ü %25 + ?#&.jpg",
            _key_of_bytes("u2/", 1024, "日"), _key_of_bytes("u2/", 1024, "x")]


def test_odd_keys_survive_a_kill_9_byte_for_byte_with_etag_and_last_modified(tmp_path):
    assert {len(k.encode()) for k in ODD_KEYS[-2:]} == {1024}
    # GIVEN objects under keys a store could mangle, acknowledged, then the emulator killed
    before = _run(tmp_path, f"""
        keys = {ODD_KEYS!r}
        for n, key in enumerate(keys):
            s3.put_object(Bucket="images", Key=key, Body=f"body {{n}}".encode() * 1000)
        out["objects"] = {{key: describe(key) for key in keys}}
    """)
    newest = max(o["last_modified"] for o in before["objects"].values())
    wait_for(lambda: time.time() >= newest + 1.5, "the clock past the uploads' second",
             timeout=10, interval=0.1)
    # WHEN it starts again on the same store
    after = _run(tmp_path, """
        out["listed"] = listed()
        out["objects"] = {key: describe(key) for key in out["listed"]}
        out["notifications"] = notifications()
    """)
    # THEN every key is back as it was: the same bytes, body, ETag and LastModified
    assert sorted(after["listed"]) == sorted(ODD_KEYS)
    assert after["objects"] == before["objects"]
    assert {k: {"etag": v["etag"], "last_modified": v["last_modified"]}
            for k, v in before["objects"].items()} == after["listed"]
    # AND each upload's notification, kept, names its key once
    assert sorted(key for _, key in after["notifications"]) == sorted(ODD_KEYS)


@pytest.mark.parametrize("char", ["x", "日"])
def test_a_key_over_1024_bytes_is_refused_as_s3_refuses_it_and_nothing_is_kept(tmp_path, char):
    key = _key_of_bytes("u2/", 1025, char)
    assert len(key.encode()) in (1025, 1026)
    out = _run(tmp_path, f"""
        from botocore.exceptions import ClientError
        try:
            s3.put_object(Bucket="images", Key={key!r}, Body=b"photo")
        except ClientError as exc:
            out["error"] = exc.response["Error"]["Code"]
            out["status"] = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        out["listed"] = listed()
        out["notifications"] = notifications()
    """)
    assert (out["error"], out["status"]) == ("KeyTooLongError", 400)
    assert out["listed"] == {} and out["notifications"] == []
    assert not list((tmp_path / "s3").rglob("*.json")), "nothing written"
    assert not list((tmp_path / "sqs").rglob("*.json"))


@pytest.mark.parametrize("versioning", ["versioned", "plain"])
def test_an_upload_whose_notification_cannot_be_kept_is_refused_with_nothing_kept(
        tmp_path, versioning):
    # GIVEN an object kept, then a disk on which no message can be written any more
    out = _run(tmp_path, """
        import errno
        s3.put_object(Bucket="images", Key="u2/kept.jpg", Body=b"first")
        out["first"] = describe("u2/kept.jpg")

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        kept.Store.put_message = full
        from botocore.exceptions import ClientError
        out["refused"] = []
        for key, body in (("u2/new.jpg", b"new"), ("u2/kept.jpg", b"second")):
            try:
                s3.put_object(Bucket="images", Key=key, Body=body)
            except ClientError as exc:
                out["refused"].append([key, exc.response["Error"]["Code"],
                                       exc.response["ResponseMetadata"]["HTTPStatusCode"],
                                       exc.response["Error"]["Message"]])
        out["listed"] = listed()
        out["kept"] = describe("u2/kept.jpg")
        out["notifications"] = notifications()
    """, versioned=versioning == "versioned")
    # WHEN an upload's object is written but its notification cannot be
    # THEN the client is told (503) and nothing of the upload is left: no object, no
    # notification; the object it would have replaced is there as it was
    assert [r[:3] for r in out["refused"]] == [["u2/new.jpg", "ServiceUnavailable", 503],
                                               ["u2/kept.jpg", "ServiceUnavailable", 503]]
    assert "No space left on device" in out["refused"][0][3]
    assert sorted(out["listed"]) == ["u2/kept.jpg"]
    assert out["kept"] == out["first"]
    assert out["notifications"] == [["ObjectCreated:Put", "u2/kept.jpg"]], \
        "only the first upload was announced"
    assert not list((tmp_path / "s3").rglob("*.undo"))
    # AND a restart brings back the same: the first object and its notification only
    again = _run(tmp_path, """
        out["listed"] = listed()
        out["kept"] = describe("u2/kept.jpg")
        out["notifications"] = notifications()
    """, versioned=versioning == "versioned")
    assert sorted(again["listed"]) == ["u2/kept.jpg"] and again["kept"] == out["first"]
    assert again["notifications"] == [["ObjectCreated:Put", "u2/kept.jpg"]]


def test_a_multipart_upload_is_announced_once_and_kept_once(tmp_path):
    body = hashlib.sha256(b"seed").digest() * (20 * 1024 * 1024 // 32)  # 20 MiB
    (tmp_path / "big.bin").write_bytes(body)
    # GIVEN a 20 MiB upload_file with boto3's default TransferConfig (parts of 8 MiB)
    out = _run(tmp_path / "store", f"""
        s3.upload_file({str(tmp_path / "big.bin")!r}, "images", "u2/big.jpg")
        out["object"] = describe("u2/big.jpg")
        out["notifications"] = notifications()
    """)
    # THEN S3's one event for it, and one object in the store
    assert out["notifications"] == [["ObjectCreated:CompleteMultipartUpload", "u2/big.jpg"]]
    assert out["object"]["etag"].endswith('-3"'), "a multipart ETag"
    assert out["object"]["sha"] == hashlib.sha256(body).hexdigest()
    assert len(list((tmp_path / "store" / "s3").rglob("*.json"))) == 1
    assert len(list((tmp_path / "store" / "s3").rglob("*.bin"))) == 1
    # AND after a kill -9 it is the same object, multipart ETag included
    again = _run(tmp_path / "store", """
        out["object"] = describe("u2/big.jpg")
    """)
    assert again["object"] == out["object"]


def test_a_refused_multipart_completion_leaves_the_upload_open_to_complete_again(tmp_path):
    out = _run(tmp_path, """
        import errno
        from botocore.exceptions import ClientError
        upload = s3.create_multipart_upload(Bucket="images", Key="u2/parts.jpg")["UploadId"]
        part = s3.upload_part(Bucket="images", Key="u2/parts.jpg", UploadId=upload,
                              PartNumber=1, Body=b"only part")
        parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
        writes = kept.Store.put_message

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        kept.Store.put_message = full
        try:
            s3.complete_multipart_upload(Bucket="images", Key="u2/parts.jpg",
                                         UploadId=upload, MultipartUpload=parts)
        except ClientError as exc:
            out["refused"] = exc.response["Error"]["Code"]
        out["listed_refused"] = listed()
        kept.Store.put_message = writes  # room again: the client tries the completion again
        s3.complete_multipart_upload(Bucket="images", Key="u2/parts.jpg", UploadId=upload,
                                     MultipartUpload=parts)
        out["object"] = describe("u2/parts.jpg")
        out["notifications"] = notifications()
    """)
    assert out["refused"] == "ServiceUnavailable" and out["listed_refused"] == {}
    assert out["object"]["sha"] == hashlib.sha256(b"only part").hexdigest()
    assert out["notifications"] == [["ObjectCreated:CompleteMultipartUpload", "u2/parts.jpg"]]


def test_an_object_an_earlier_version_kept_is_restored(tmp_path):
    # GIVEN an object as the store kept it before ETags and LastModified were kept
    from collections_ops.localcloud.aws.store import _digest

    folder = tmp_path / "s3" / _digest("images")
    folder.mkdir(parents=True)
    (folder / f"{_digest('u2/old.jpg')}.bin").write_bytes(b"old body")
    (folder / f"{_digest('u2/old.jpg')}.json").write_text(json.dumps(
        {"bucket": "images", "key": "u2/old.jpg", "metadata": {"Content-Type": "image/jpeg"}}))
    # WHEN the emulator starts on it
    out = _run(tmp_path, """
        out["object"] = describe("u2/old.jpg")
    """)
    # THEN the object is there, with its body and the ETag S3 gives such a body
    assert out["object"]["sha"] == hashlib.sha256(b"old body").hexdigest()
    assert out["object"]["etag"] == f'"{hashlib.md5(b"old body").hexdigest()}"'
