"""The local cloud keeps an upload's object before its S3 notification, as S3 never announces
an object it has not kept: when the emulator dies between the two, no notification of a lost
object is left for the processor to dead-letter as missing. A real moto server with the
durable store's hooks, in a child process that dies (`os._exit`) exactly there."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

_CHILD = textwrap.dedent("""
    import os, sys, threading
    from pathlib import Path

    import boto3
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    from collections_ops.localcloud.aws import store as kept, store_objects, write_through

    root, crash = Path(sys.argv[1]), sys.argv[2] == "crash"
    store = kept.Store(root)
    write_through.install(store)
    if crash:  # the process dies after moto took the upload, before the object is kept
        store_objects._sync_object = lambda *a, **k: os._exit(17)
    app = store_objects.s3_middleware(DomainDispatcherApplication(create_backend_app), store,
                                      {"images"}, account="123456789012")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = dict(endpoint_url=f"http://127.0.0.1:{server.server_port}",
                   region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    s3, sqs = boto3.client("s3", **options), boto3.client("sqs", **options)
    queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    s3.create_bucket(Bucket="images")
    s3.put_bucket_notification_configuration(Bucket="images", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn["Attributes"]["QueueArn"],
                                 "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket="images", Key="user1/photo.jpg", Body=b"jpeg bytes")
    print("answered")
""")


def _run(tmp_path: Path, mode: str) -> tuple[int, list[str]]:
    root = tmp_path / mode
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(root), mode], capture_output=True,
                          text=True, timeout=120, check=False)
    kept = [json.loads(p.read_text())["body"] for p in (root / "sqs").glob("*/*.json")]
    assert proc.returncode in (0, 17), proc.stderr[-3000:]
    return proc.returncode, [b for b in kept if "photo.jpg" in b]  # moto quotes the key


def test_an_upload_keeps_its_object_and_then_its_notification(tmp_path: Path) -> None:
    code, notifications = _run(tmp_path, "normal")
    assert code == 0
    assert len(notifications) == 1
    assert any((tmp_path / "normal" / "s3").rglob("*")), "the object is kept"


def test_a_crash_before_the_object_is_kept_leaves_no_notification_of_it(tmp_path: Path) -> None:
    code, notifications = _run(tmp_path, "crash")
    assert code == 17, "the emulator died between taking the upload and keeping it"
    assert notifications == []
