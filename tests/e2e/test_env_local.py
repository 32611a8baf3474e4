"""`collections env local` hands an operator's shell the local cloud's endpoint and keys, so the
guide's `aws` commands work as written after `eval "$(collections env local)"`.

The shell starts poisoned the way an operator's often is: a profile that does not exist, a
stale session token, a region of its own, and no AWS config files. The upload goes through the
`aws` CLI when it is installed (else a `python -c` boto3 call that reads only the environment),
and `collections verify test-image` must then pass.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import images
from tests.e2e.cli import run, wait_for

AWS = shutil.which("aws")


@pytest.fixture(scope="module")
def cli_env(shared_local_cloud: dict[str, Any]) -> dict[str, str]:
    """The session's shared local cloud: these tests upload under user123 only, and read."""
    return dict(shared_local_cloud["env"])


def _shell(cli_env: dict[str, str], tmp_path: Path, script: str,
           ) -> subprocess.CompletedProcess[str]:
    """`script` in bash after `eval "$(collections env local)"`, from a poisoned shell."""
    env = {**cli_env, "AWS_PROFILE": "no-such-profile", "AWS_SESSION_TOKEN": "stale",
           "AWS_DEFAULT_REGION": "eu-west-3", "AWS_REGION": "eu-west-3",
           "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
           "COLLECTIONS": f"{sys.executable} -m collections_ops"}
    return subprocess.run(["bash", "-c", 'set -e; eval "$($COLLECTIONS env local)"\n' + script],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)


def _status(cli_env: dict[str, str]) -> dict[str, object]:
    return dict(json.loads(run(cli_env, "status", "--json").stdout))


def test_eval_env_then_an_upload_from_the_shell_verifies(cli_env, tmp_path):
    status = _status(cli_env)
    bucket = status["buckets"]["images"]  # type: ignore[index]
    (tmp_path / "test-image.jpg").write_bytes(images.photo(640, 480, seed=20))
    target = f"s3://{bucket}/user123/test-image.jpg"
    # GIVEN a shell that evaluated `collections env local`
    # WHEN it uploads the guide's test image as the guide says
    upload = (f"aws s3 cp test-image.jpg {target}" if AWS else
              f'{sys.executable} -c "import boto3; boto3.client(\'s3\').upload_file('
              f'\'test-image.jpg\', \'{bucket}\', \'user123/test-image.jpg\')"')
    done = _shell(cli_env, tmp_path, upload)
    assert done.returncode == 0, done.stderr
    # THEN the pipeline runs it to the end and `collections verify` passes
    verified = wait_for(lambda: run(cli_env, "verify", "test-image", "--user", "user123")
                        .returncode == 0, "test-image verified", timeout=120, interval=1)
    assert verified


@pytest.mark.skipif(AWS is None, reason="the aws CLI is not installed")
def test_the_guides_aws_commands_work_as_written(cli_env, tmp_path):
    status = _status(cli_env)
    function = status["functions"]["processor"]  # type: ignore[index]
    (tmp_path / "test-image.jpg").write_bytes(images.photo(320, 240, seed=21))
    bucket = status["buckets"]["images"]  # type: ignore[index]
    v2 = subprocess.run(["aws", "--version"], capture_output=True, text=True,
                        check=False).stdout.startswith("aws-cli/2")
    # `aws logs tail` is the aws CLI v2's; v1 has filter-log-events
    tail = (f"aws logs tail /aws/lambda/{function} --since 1h" if v2 else
            f"aws logs filter-log-events --log-group-name /aws/lambda/{function} "
            "--query 'events[].message' --output text")
    script = f"""
aws s3 cp test-image.jpg s3://{bucket}/guide/guide-image.jpg
aws ssm put-parameter --name "/collections/ENV_COMMAND_CANARY" --value "v'1 \\$x" \\
  --type "SecureString" --overwrite
aws ssm get-parameter --name /collections/ENV_COMMAND_CANARY --with-decryption \\
  --query Parameter.Value --output text
aws events put-events --entries '[{{"Source": "collections.imageprocessor",
  "DetailType": "ImageProcessed",
  "Detail": "{{\\"item_id\\":\\"test\\",\\"user_id\\":\\"user123\\",\\"bucket\\":\\"test\\",\\"original_key\\":\\"test.jpg\\"}}"}}]'
"""
    done = _shell(cli_env, tmp_path, script)
    assert done.returncode == 0, done.stderr
    assert "v'1 $x" in done.stdout, "the SecureString round-trips through the shell"
    assert '"FailedEntryCount": 0' in done.stdout
    # The processor ran the upload; its log lines are readable from the same shell.
    wait_for(lambda: "guide/guide-image.jpg" in _shell(cli_env, tmp_path, tail).stdout,
             "the processor's log line for the upload", timeout=120, interval=1)


def test_env_as_json_is_one_document_with_the_same_values(cli_env):
    shell = run(cli_env, "env", "local")
    as_json = run(cli_env, "env", "local", "-o", "json")
    assert shell.returncode == as_json.returncode == 0, shell.stderr + as_json.stderr
    document = json.loads(as_json.stdout)
    variables = document["variables"]
    assert set(variables) >= {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                              "AWS_DEFAULT_REGION"}
    assert variables["AWS_ENDPOINT_URL"] == _status(cli_env)["endpoint_url"]
    assert "AWS_PROFILE" in document["unset"]
    for name, value in variables.items():
        assert f"export {name}=" in shell.stdout and value in shell.stdout
    assert variables["AWS_SECRET_ACCESS_KEY"] not in shell.stderr + as_json.stderr


def test_env_of_a_local_cloud_that_is_not_running_exits_4(tmp_path):
    from tests.e2e.cli import local_env

    result = run(local_env(tmp_path / "none"), "env", "local")
    assert result.returncode == 4, result.stderr
    assert result.stdout == ""
    assert "not running" in result.stderr
