"""Running the `collections` CLI as a subprocess, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def run(env: dict[str, str], *args: str, input: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collections_ops", *args], env=env,
                          input=input, capture_output=True, text=True, timeout=timeout,
                          check=False)


def local_env(state: Path, **extra: str) -> dict[str, str]:
    """An environment for a local cloud of its own: no AWS settings leak in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"COLLECTIONS_STATE_DIR": str(state), "NO_COLOR": "1", "COLUMNS": "200",
                "COLLECTIONS_ENV": "local", **extra})
    return env


@contextmanager
def deployed(env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """A local cloud deployed with the CLI as an operator would, destroyed on leaving (also
    when the deploy failed half-way): {"env": the CLI's environment, "status": `status
    --json`}."""
    try:
        started = run(env, "deploy", "local")
        assert started.returncode == 0, started.stderr
        yield {"env": env, "status": json.loads(run(env, "status", "--json").stdout)}
    finally:
        run(env, "destroy", "local", "--yes")


def owner_url(status: dict[str, Any]) -> str:
    """The database owner's URL of the local cloud `status` describes: from its state file
    (the CLI shows it with the password masked)."""
    from collections_ops.localcloud.state import read_state

    state = read_state(Path(status["state_dir"]))
    assert state is not None, f"no local cloud in {status['state_dir']}"
    return state.database_url


def local_client(status: dict[str, Any], service: str) -> Any:
    """A client of the local cloud `status` describes, signing as its administrator."""
    from collections_ops.localcloud.aws import iam

    return iam.admin_session(status["state_dir"], status["region"]).client(
        service, endpoint_url=status["endpoint_url"])


def wait_for(predicate: Callable[[], Any], what: str, *, timeout: float, interval: float = 0.3,
             tolerate: tuple[type[Exception], ...] = ()) -> Any:
    """The first true value of `predicate()`, polled every `interval` until `timeout`; errors of
    the `tolerate` types count as "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except tolerate:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


QUEUE_COUNTS = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed")


def queues_idle(status: dict[str, Any]) -> bool:
    """No function's trigger queue holds a message -- none waiting, in flight (a handler still
    running, or a delivery lost with a killed dispatcher, due again once its visibility ends)
    or delayed (a retry): nothing is left to deliver, redeliveries of finished work included."""
    from collections_ops.pipeline import FUNCTIONS

    sqs = local_client(status, "sqs")
    for fn in FUNCTIONS:
        url = sqs.get_queue_url(QueueName=fn.queue_name("local"))["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(QUEUE_COUNTS))
        if any(int(attrs["Attributes"].get(name, 0)) for name in QUEUE_COUNTS):
            return False
    return True


def last_invoked_ms(status: dict[str, Any], function_key: str) -> int | None:
    """When the function last wrote to its log group (epoch ms; None: never invoked). Every
    invocation logs START after it takes a concurrency slot, so no invocation began later."""
    from collections_ops.pipeline import function

    logs = local_client(status, "logs")
    streams = logs.describe_log_streams(logGroupName=function(function_key).log_group("local"),
                                        orderBy="LastEventTime", descending=True,
                                        limit=1)["logStreams"]
    if not streams:
        return None
    return int(streams[0].get("lastEventTimestamp") or streams[0].get("creationTime") or 0)


def upload_golden(env: dict[str, str], folder: Path, user: str,
                  photos: dict[str, str]) -> None:
    """Upload golden photos (item id -> file name in the golden set) as `user` through the
    pipeline, and wait until each is embedded."""
    from collections_ops.services import evaluation

    files = []
    for item_id, name in photos.items():
        photo = folder / f"{item_id}{Path(name).suffix}"
        photo.write_bytes(evaluation.golden_photo(name).read_bytes())
        files.append(str(photo))
    upload = run(env, "test-upload", *files, "--user", user, "--follow", "--timeout", "120")
    assert upload.returncode == 0, upload.stdout + upload.stderr
