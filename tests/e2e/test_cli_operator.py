"""Operator commands against a local cloud whose analyzer uses the real Anthropic SDK (pointed
at a fake server): a failing stage named, secrets that never leak, logs followed live,
events sent by hand, and doctor finding what the guide's troubleshooting section looks for."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from collections_ops.localcloud.aws import iam
from tests.e2e.cli import local_env, run
from tests.fakes.providers import FakeProviders

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "test-image.jpg"
CANARY = "sk-ant-operator-canary-9d8c7b6a5f"




@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviders]:
    with FakeProviders(api_key=CANARY) as server:
        yield server


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory, fake: FakeProviders
            ) -> Iterator[dict[str, str]]:
    state = tmp_path_factory.mktemp("operator-state")
    env = local_env(state, COLLECTIONS_ANALYZER_PROVIDER="anthropic",
                    COLLECTIONS_ANALYZER_MODEL="claude-sonnet-4-6",
                    ANTHROPIC_BASE_URL=fake.anthropic_base_url, PROVIDER_TIMEOUT_S="5")
    started = run(env, "deploy", "local")
    assert started.returncode == 0, started.stderr
    yield env
    run(env, "destroy", "local")


@pytest.fixture(scope="module")
def aws(cli_env: dict[str, str]) -> boto3.session.Session:
    status = json.loads(run(cli_env, "status", "--json").stdout)
    session = iam.admin_session(status["state_dir"], status["region"])
    session.endpoint = status["endpoint_url"]  # type: ignore[attr-defined]
    return session


def client(session: boto3.session.Session, name: str):
    return session.client(name, endpoint_url=session.endpoint)  # type: ignore[attr-defined]


def test_1_a_missing_provider_key_fails_the_analysis_stage_by_name(cli_env):
    result = run(cli_env, "test-upload", str(SAMPLE), "--name", "nokey.jpg", "--follow",
                 "--timeout", "30")
    assert result.returncode == 7, result.stdout + result.stderr
    assert "the analysis stage (analyzer) failed" in result.stderr
    assert "/collections/ANTHROPIC_API_KEY does not exist" in result.stderr
    assert "✓ thumbnail in" in result.stdout


def test_2_with_the_key_put_through_stdin_the_upload_completes(cli_env, fake):
    put = run(cli_env, "secrets", "put", "ANTHROPIC_API_KEY", input=CANARY)
    assert put.returncode == 0, put.stderr
    result = run(cli_env, "test-upload", str(SAMPLE), "--name", "kayak.jpg", "--follow",
                 "--timeout", "60")
    assert result.returncode == 0, result.stdout + result.stderr
    assert fake.messages.last.api_key == CANARY
    verify = json.loads(run(cli_env, "verify", "kayak", "--json").stdout)
    assert verify["ok"] and verify["analysis"]["provider"] == "anthropic"

    logs = run(cli_env, "logs", "all", "--since", "10m")
    assert "LLM analysis complete" in logs.stdout
    daemon_log = Path(cli_env["COLLECTIONS_STATE_DIR"], "local", "daemon.log").read_text()
    for text in (put.stdout, put.stderr, result.stdout, result.stderr, logs.stdout, daemon_log):
        assert CANARY not in text
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            assert CANARY.encode() not in cmdline.read_bytes()
        except OSError:
            continue


def test_logs_follow_prints_a_line_written_while_it_follows(cli_env, aws):
    # How soon a line shows is a figure for bench/, not a test: under load the CLI may take
    # seconds to start, so the test keeps writing until the follower prints one (a deadline,
    # not a fixed sleep), and every line it writes is newer than the follower's --since.
    import queue
    import threading

    proc = subprocess.Popen([sys.executable, "-m", "collections_ops", "logs", "embedder",
                             "--follow", "--since", "1s"], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    printed: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:
        for printed_line in stdout:
            printed.put(printed_line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        logs = client(aws, "logs")
        group = "/aws/lambda/collections-local-EmbedderLambda"
        logs.create_log_stream(logGroupName=group, logStreamName="probe")
        deadline = time.monotonic() + 120
        line = ""
        n = 0
        while "probe line" not in line:
            assert time.monotonic() < deadline, "logs --follow printed no new line"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
            n += 1
            logs.put_log_events(logGroupName=group, logStreamName="probe", logEvents=[
                {"timestamp": int(time.time() * 1000), "message": f"probe line {n}"}])
            try:
                line = printed.get(timeout=0.5)
            except queue.Empty:
                continue
        assert line.rstrip().endswith(tuple(f"probe line {i}" for i in range(1, n + 1)))
    finally:
        proc.terminate()
        proc.wait(10)


def test_events_send_validates_and_reports(cli_env):
    bad = run(cli_env, "events", "send", "AnalysisComplete", "--detail", '{"item_id": "x"}')
    assert bad.returncode == 2
    assert "missing user_id, analysis_id" in bad.stderr
    guide = run(cli_env, "events", "send", "guide", "--json")
    assert guide.returncode == 0, guide.stderr
    sent = json.loads(guide.stdout)
    assert sent["detail"] == {"item_id": "test", "user_id": "user123", "bucket": "test",
                              "original_key": "test.jpg"}
    assert sent["event_id"] and sent["error"] is None


def test_status_shows_the_deployment(cli_env):
    status = json.loads(run(cli_env, "status", "-o", "json").stdout)
    functions = {f["name"]: f for f in status["deployment"]["functions"]}
    assert functions["collections-local-AnalyzerLambda"]["timeout"] == 120
    assert all(r["enabled"] and r["targets"] for r in status["deployment"]["rules"])


def test_operations_commands_against_the_local_cloud(cli_env):
    assert run(cli_env, "lifecycle", "local").returncode == 0, "provisioned from the settings"
    assert run(cli_env, "dashboard", "local").returncode == 0
    shown = run(cli_env, "dashboard", "local", "--show", "--hours", "1", "--json")
    assert set(json.loads(shown.stdout)) == {"processor", "analyzer", "embedder"}
    assert run(cli_env, "alarms", "ensure", "local").returncode == 0
    listed = json.loads(run(cli_env, "alarms", "list", "local", "--json").stdout)
    names = {a["name"] for a in listed}
    assert "collections-local-analyzer-errors" in names and len(names) == 12
    tested = run(cli_env, "alarms", "test", "collections-local-analyzer-errors")
    assert tested.returncode == 0 and "OK -> ALARM -> OK" in tested.stdout
    drifted = run(cli_env, "concurrency", "embedder", "4", "--env", "local")
    assert drifted.returncode == 0 and "definition says unreserved" in drifted.stdout
    assert "unreserved" in run(cli_env, "concurrency", "embedder", "-e", "local",
                               "--unreserve").stdout


def test_z_doctor_finds_a_removed_notification_and_a_missing_parameter(cli_env, aws):
    healthy = run(cli_env, "doctor", "--json")
    assert healthy.returncode == 0, healthy.stdout
    s3, ssm = client(aws, "s3"), client(aws, "ssm")
    bucket = "collections-images-local-123456789012"
    saved = s3.get_bucket_notification_configuration(Bucket=bucket)
    saved.pop("ResponseMetadata", None)
    url = ssm.get_parameter(Name="/collections/local/DATABASE_URL", WithDecryption=True)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    ssm.delete_parameter(Name="/collections/local/DATABASE_URL")
    try:
        result = run(cli_env, "doctor", "--json")
        assert result.returncode == 8
        findings = {f["name"]: f for f in json.loads(result.stdout)}
        assert not findings["bucket notification"]["ok"]
        assert findings["bucket notification"]["detail"] == "no notification configured"
        missing = findings["parameter /collections/local/DATABASE_URL"]
        assert not missing["ok"]
        assert missing["fix"] == "collections secrets put DATABASE_URL --env local"
    finally:
        s3.put_bucket_notification_configuration(Bucket=bucket,
                                                 NotificationConfiguration=saved)
        ssm.put_parameter(Name="/collections/local/DATABASE_URL", Type="SecureString",
                          Value=url["Parameter"]["Value"], Overwrite=True)
