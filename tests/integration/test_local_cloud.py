"""The local cloud behaves like Lambda where an operator can look: AWS/Lambda metrics and
alarm states, reserved concurrency (0 throttles, visibly, and the event is kept), a version
published for changed code that survives restarts with its rollback, and the S3 permission on
the `live` alias as the stack grants it. A real local cloud, driven through the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
import pytest

from collections_ops import paths
from collections_ops.localcloud.lambda_service.concurrency import CONCURRENCY_REFRESH_S
from collections_ops.localcloud.lambda_service.telemetry import LOG_FLUSH_S
from tests import images
from tests.e2e.cli import last_invoked_ms, local_client, local_env, owner_url, run, wait_for

_wait = partial(wait_for, timeout=180, interval=0.5, tolerate=(Exception,))


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("localcloud")
    lambdas = root / "lambdas"  # a working copy, so a test can change a handler
    shutil.copytree(paths.lambdas_root(), lambdas,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = local_env(root / "state", COLLECTIONS_LAMBDAS_DIR=str(lambdas))
    try:
        started = run(env, "deploy", "local")
        assert started.returncode == 0, started.stderr
        status = json.loads(run(env, "status", "--json").stdout)
        yield {"env": env, "status": status, "lambdas": lambdas}
    finally:
        run(env, "destroy", "local")


def _embeddings(status: dict[str, Any], user: str) -> int:
    with psycopg.connect(owner_url(status), connect_timeout=3) as conn:
        return int(conn.execute("SELECT count(*) FROM embeddings WHERE user_id = %s",
                                (user,)).fetchone()[0])


def _metric_sum(status: dict[str, Any], function: str, metric: str) -> float:
    now = datetime.now(UTC)
    points = local_client(status, "cloudwatch").get_metric_statistics(
        Namespace="AWS/Lambda", MetricName=metric,
        Dimensions=[{"Name": "FunctionName", "Value": status["functions"][function]}],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=1), Period=3600,
        Statistics=["Sum"])["Datapoints"]
    return sum(p["Sum"] for p in points)


def _alarm_state(env: dict[str, str], suffix: str) -> str | None:
    alarms = json.loads(run(env, "alarms", "list", "local", "--json").stdout)
    return next((a["state"] for a in alarms if a["name"].endswith(suffix)), None)


def test_metrics_and_alarms_reflect_what_happened(cloud):
    env, status = cloud["env"], cloud["status"]
    s3 = local_client(status, "s3")
    before = _metric_sum(status, "processor", "Invocations")
    for n in range(18):
        s3.put_object(Bucket=status["buckets"]["images"], Key=f"metrics/ok{n}.jpg",
                      Body=images.photo(320, 240, seed=n))
    for n in range(2):
        s3.put_object(Bucket=status["buckets"]["images"], Key=f"metrics/bad{n}.jpg",
                      Body=b"corrupt")
    _wait(lambda: _embeddings(status, "metrics") == 18, "18 embeddings")
    _wait(lambda: _metric_sum(status, "processor", "Invocations") - before >= 20,
          "20 processor invocations in AWS/Lambda")
    _wait(lambda: _metric_sum(status, "analyzer", "Invocations") >= 18,
          "18 analyzer invocations in AWS/Lambda")
    _wait(lambda: _alarm_state(env, "processor-dlq-depth") == "ALARM",
          "the processor's DLQ-depth alarm in ALARM", timeout=60)
    assert _alarm_state(env, "embedder-dlq-depth") == "OK"
    shown = run(env, "dashboard", "local", "--show", "--json")
    assert shown.returncode == 0, shown.stderr


def test_reserved_concurrency_zero_throttles_visibly_and_keeps_the_event(cloud):
    env, status = cloud["env"], cloud["status"]
    lam = local_client(status, "lambda")
    name = status["functions"]["embedder"]
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    try:
        # A dispatcher reads the limit when it invokes, then trusts it for
        # CONCURRENCY_REFRESH_S: once that long has passed since the embedder last ran (and its
        # log lines, held up to LOG_FLUSH_S, are in), its next invocation reads the 0 set above.
        stale_ms = (CONCURRENCY_REFRESH_S + LOG_FLUSH_S) * 1000
        _wait(lambda: time.time() * 1000 - (last_invoked_ms(status, "embedder") or 0) >= stale_ms,
              "the embedder's cached concurrency limit to be stale", timeout=60, interval=0.25)
        local_client(status, "s3").put_object(Bucket=status["buckets"]["images"],
                                         Key="throttled/one.jpg", Body=images.photo(seed=3))
        _wait(lambda: _metric_sum(status, "embedder", "Throttles") >= 1, "a throttle metric")
        assert _embeddings(status, "throttled") == 0
        _wait(lambda: _alarm_state(env, "embedder-throttles") == "ALARM",
              "the throttles alarm in ALARM", timeout=60)
    finally:
        lam.delete_function_concurrency(FunctionName=name)
    _wait(lambda: _embeddings(status, "throttled") == 1, "the throttled event processed")


def test_a_deploy_with_changed_code_publishes_a_version_kept_across_restarts(cloud):
    env, status = cloud["env"], cloud["status"]

    def versions() -> list[dict[str, Any]]:
        return list(json.loads(run(env, "versions", "processor", "--json").stdout))

    first = versions()
    handler = Path(cloud["lambdas"], "image_processor", "handler.py")
    handler.write_text(handler.read_text() + "\n# changed for a new version\n")
    deployed = run(env, "deploy", "local")
    assert deployed.returncode == 0, deployed.stderr
    assert "reloaded" in deployed.stderr
    second = versions()
    published = [v for v in second if v["version"] != "$LATEST"]
    assert len(published) == len([v for v in first if v["version"] != "$LATEST"]) + 1
    newest = max(published, key=lambda v: int(v["version"]))
    assert newest["live"], "live moves to the new version"

    rolled = run(env, "rollback", "local", "--function", "processor")
    assert rolled.returncode == 0, rolled.stderr
    state = json.loads(Path(status["state_dir"], "state.json").read_text())
    os.killpg(os.getpgid(state["pid"]), signal.SIGKILL)
    assert run(env, "deploy", "local").returncode == 0
    after = versions()
    assert [v["version"] for v in after] == [v["version"] for v in second]
    live = [v["version"] for v in after if v["live"]]
    assert live == [str(int(newest["version"]) - 1)], "the rollback survived the crash"


def test_the_s3_permission_is_on_the_live_alias_as_the_stack_grants_it(cloud):
    status = cloud["status"]
    lam = local_client(status, "lambda")
    policy = json.loads(lam.get_policy(FunctionName=status["functions"]["processor"],
                                       Qualifier="live")["Policy"])
    [statement] = [s for s in policy["Statement"] if s["Sid"] == "s3-invoke"]
    assert statement["Resource"].endswith(":live")
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}


def test_a_versions_settings_and_a_prune_survive_a_restart_and_no_number_is_reused(cloud):
    env, status = cloud["env"], cloud["status"]
    lam = local_client(status, "lambda")
    name = status["functions"]["embedder"]

    def versions() -> dict[str, dict[str, Any]]:
        listed = json.loads(run(env, "versions", "embedder", "--json").stdout)
        return {v["version"]: v for v in listed if v["version"] != "$LATEST"}

    # GIVEN a version published with its own memory (configure), and the oldest deleted (prune)
    done = run(env, "configure", "embedder", "--env", "local", "--memory", "1536", "-o", "json")
    assert done.returncode == 0, done.stderr
    configured = json.loads(done.stdout)["to_version"]
    oldest = min(versions(), key=int)
    assert oldest != configured
    lam.delete_function(FunctionName=name, Qualifier=oldest)
    before = versions()
    assert oldest not in before and before[configured]["memory"] == 1536
    # WHEN the local cloud is killed and started again
    state = json.loads(Path(status["state_dir"], "state.json").read_text())
    os.killpg(os.getpgid(state["pid"]), signal.SIGKILL)
    assert run(env, "deploy", "local").returncode == 0
    # THEN the versions are the ones there were, each with its own settings, live unchanged
    after = versions()
    assert sorted(after, key=int) == sorted(before, key=int)
    assert {v: after[v]["memory"] for v in after} == {v: before[v]["memory"] for v in before}
    assert [v for v in after if after[v]["live"]] == [configured]
    # AND the next version gets a new number, not the deleted one's nor a taken one
    again = run(env, "configure", "embedder", "--env", "local", "--memory", "1024", "-o", "json")
    assert again.returncode == 0, again.stderr
    assert int(json.loads(again.stdout)["to_version"]) == max(int(v) for v in after) + 1
