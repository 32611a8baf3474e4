"""A database password with `%`, `@` and `:` never appears anywhere: not in the handlers' lines,
not in the local cloud dispatcher's own lines or dead-letter records, not in what `dlq show`
prints. The faults are real: libpq refuses the unencoded URL and quotes the password back,
quotes it decoded in a connection error, and a setting that holds it fails to parse."""

from __future__ import annotations

import json
from typing import Any

from tests import images
from tests.e2e.cli import wait_for

PASSWORD = "c4n%ary@p:w"  # as an operator might paste it, unencoded
ENCODED = "c4n%25ary%40p%3Aw"
# Every form the password could leak in: raw, libpq's split at the first '@', encoded.
FORMS = (PASSWORD, "c4n%ary", ENCODED, "c4n%25ary", "ary@p:w")
URLS = {
    # libpq: invalid percent-encoded token: "c4n%ary" (a ProgrammingError: terminal)
    "unencoded": f"postgresql://collections:{PASSWORD}@127.0.0.1:1/collections",
    # libpq: invalid sslmode value: "c4n%ary@p:w" (an OperationalError: retried, then parked)
    "decoded-in-error": f"postgresql://collections:{ENCODED}@127.0.0.1:1/collections"
                        f"?sslmode={ENCODED}",
}


def dlq_bodies(pipeline) -> list[str]:
    sqs, out = pipeline.client("sqs"), []
    for url in pipeline.dlq_urls.values():
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        for _ in range(int(attrs["ApproximateNumberOfMessages"]) + 1):
            for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                         VisibilityTimeout=0).get("Messages", []):
                out.append(m["Body"])
    return out


def depth(pipeline, key: str) -> int:
    attrs = pipeline.client("sqs").get_queue_attributes(
        QueueUrl=pipeline.dlq_urls[key], AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def log_text(pipeline) -> str:
    from collections_ops.pipeline import FUNCTIONS

    logs, lines = pipeline.client("logs"), []
    for fn in FUNCTIONS:
        for page in logs.get_paginator("filter_log_events").paginate(
                logGroupName=fn.log_group(pipeline.env.name)):
            lines += [e["message"] for e in page["events"]]
    return "\n".join(lines)


def run_dispatcher(pipeline, until: Any) -> None:
    """A fresh dispatcher (fresh "containers": no cached secret) until `until()` holds."""
    from collections_ops.localcloud.lambda_service.dispatcher import Dispatcher
    from collections_ops.localcloud.lambda_service.retry_policy import DispatchPolicy

    dispatcher = Dispatcher(pipeline.session, pipeline.env, pipeline.queue_urls,
                            pipeline.dlq_urls, DispatchPolicy(workers_per_function=1,
                                                              max_retries=1,
                                                              retry_delays_s=(0,)))
    dispatcher.start()
    try:
        wait_for(until, "the dispatcher's deliveries to end", timeout=60, interval=0.2)
    finally:
        dispatcher.stop()


def test_a_database_password_with_percent_at_and_colon_never_leaks(pipeline, monkeypatch):
    from collections_core import log, secrets
    from collections_ops.services import dlq

    ssm = pipeline.client("ssm")
    # GIVEN each broken URL of the processor in turn, and an upload the processor must fail on
    for n, (case, url) in enumerate(URLS.items(), start=1):
        ssm.put_parameter(Name="/collections/local/DATABASE_URL_PROCESSOR", Value=url,
                          Type="SecureString", Overwrite=True)
        pipeline.upload(f"user123/{case}.jpg", images.photo(seed=n))
        run_dispatcher(pipeline, lambda n=n: depth(pipeline, "processor") == n)

    # AND a setting that holds the password by mistake: an unexpected error (a ValueError),
    # whose text only the dispatcher writes. The masking helper learns the stored secrets.
    secrets.register_all()
    monkeypatch.setenv("THUMBNAIL_SIZE", PASSWORD)
    pipeline.upload("user123/setting.jpg", images.photo(seed=9))
    run_dispatcher(pipeline, lambda: depth(pipeline, "processor") == 3)

    # THEN the failures are explained ...
    parked = dlq.peek(pipeline.client("sqs"), pipeline.env, "processor")
    by_item = {f.item_id: f for f in parked}
    assert by_item["unencoded"].error_type == "ConfigurationError"
    assert "DATABASE_URL_PROCESSOR is not a valid connection URL" in by_item["unencoded"].error
    assert by_item["decoded-in-error"].condition == "RetriesExhausted"
    assert "invalid sslmode value" in by_item["decoded-in-error"].error
    assert by_item["setting"].error_type == "ValueError"
    assert log.MASK in by_item["setting"].error
    # ... and no form of the password is anywhere
    shown = json.dumps([f.as_dict() for f in parked], ensure_ascii=False)  # `dlq show -o json`
    everything = {"logs": log_text(pipeline), "dlq": "\n".join(dlq_bodies(pipeline)),
                  "dlq show": shown}
    assert "invalid percent-encoded token" in everything["logs"]
    for where, text in everything.items():
        for form in FORMS:
            assert form not in text, f"{form!r} leaked into {where}"


def test_through_the_installed_cli_the_password_is_in_no_output_log_or_state_file(tmp_path):
    """The same canary against a real local cloud, driven as an operator would, with and
    without --debug; then every file of the cloud's state folder is searched."""
    from pathlib import Path

    from tests.e2e.cli import local_env, run

    state = tmp_path / "state"
    env = local_env(state)
    started = run(env, "deploy", "local")
    assert started.returncode == 0, started.stderr
    try:
        put = run(env, "secrets", "put", "DATABASE_URL_PROCESSOR", "--stdin",
                  input=URLS["unencoded"])
        assert put.returncode == 0, put.stderr
        sample = Path(__file__).resolve().parents[2] / "samples" / "test-image.jpg"
        commands = [
            ("test-upload", str(sample), "--user", "canary", "--follow", "--timeout", "60"),
            ("--debug", "test-upload", str(sample), "--user", "canary2", "--follow",
             "--timeout", "60"),
            ("logs", "all", "--since", "10m"),
            ("dlq", "show", "processor", "--json"),
            ("--debug", "dlq", "show", "processor"),
            ("secrets", "list", "--json"),
            ("status", "--json"),
        ]
        results = [run(env, *command) for command in commands]
        assert results[0].returncode != 0  # the stage failed, and said so
        shown = json.loads(results[3].stdout)
        assert shown and "DATABASE_URL_PROCESSOR is not a valid connection URL" in json.dumps(shown)
        outputs = [put.stdout, put.stderr] + [r.stdout + r.stderr for r in results]
        leaks = [f"{form!r} in the output of command {n}" for n, out in enumerate(outputs)
                 for form in FORMS if form in out]
        needles = [form.encode() for form in FORMS]
        for path in state.rglob("*"):  # while the cloud runs: what it keeps on disk
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                leaks += [f"{n!r} in {path.relative_to(state)}" for n in needles if n in data]
    finally:
        run(env, "destroy", "local")
    assert not leaks, leaks
