"""`collections env local` in process: its exports survive a shell's `eval` byte for byte, even
for values a shell would otherwise split or expand, and it refuses what it cannot serve."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collections_ops.cli.app import app
from collections_ops.localcloud.state import LocalState, write_state

HOSTILE = "a'b \"c\" $HOME `id` ;\\ %x"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local cloud's state as a running supervisor leaves it (this process stands in for its
    pid), with an administrator's secret no shell may take as it is written."""
    monkeypatch.setenv("COLLECTIONS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("COLLECTIONS_ENV", raising=False)
    local = tmp_path / "local"
    local.mkdir()
    write_state(local, LocalState(
        pid=os.getpid(), ready=True, endpoint_url="http://127.0.0.1:4599", region="us-east-1",
        account="123456789012", database_url="postgresql://x", embedded_database=True,
        pg_pid=None, images_bucket="i", thumbnails_bucket="t", functions={},
        state_dir=str(local)))
    (local / "credentials.json").write_text(json.dumps({"admin": {
        "aws_access_key_id": "LKIATEST", "aws_secret_access_key": HOSTILE}, "functions": {}}))
    return local


def test_the_exports_survive_eval_byte_for_byte(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["env", "local"])
    assert result.exit_code == 0, result.output
    shell = subprocess.run(
        ["bash", "-c", 'eval "$EXPORTS"; printf "%s\\n%s\\n%s\\n%s" "$AWS_SECRET_ACCESS_KEY" '
         '"$AWS_ENDPOINT_URL" "$AWS_DEFAULT_REGION" "${AWS_PROFILE-unset}"'],
        env={"PATH": os.environ["PATH"], "EXPORTS": result.stdout, "AWS_PROFILE": "other"},
        capture_output=True, text=True, check=True)
    assert shell.stdout.split("\n") == [HOSTILE, "http://127.0.0.1:4599", "us-east-1", "unset"]


def test_json_is_one_document(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["env", "local", "-o", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["variables"]["AWS_SECRET_ACCESS_KEY"] == HOSTILE
    assert document["variables"]["AWS_ACCESS_KEY_ID"] == "LKIATEST"


def test_not_running_exits_4_and_prints_no_key(state_dir: Path) -> None:
    state = json.loads((state_dir / "state.json").read_text())
    (state_dir / "state.json").write_text(json.dumps({**state, "ready": False}))
    result = CliRunner().invoke(app, ["env", "local"])
    assert result.exit_code == 4
    assert HOSTILE not in result.output and "LKIATEST" not in result.output


def test_an_aws_environment_is_a_usage_error(state_dir: Path) -> None:
    result = CliRunner().invoke(app, ["env", "dev"])
    assert result.exit_code == 2
    assert HOSTILE not in result.output

