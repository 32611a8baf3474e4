"""The local cloud's Lambda numbers versions as AWS does: a number is never given twice, even
after the version that had it was deleted (moto's own numbering reuses it)."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.awslambda.models import LambdaStorage

from collections_ops.localcloud.lambda_service import lambda_versions


def _zip(text: str) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("handler.py", text)
    return out.getvalue()


def _function(lam: Any, role: str, name: str = "fn") -> None:
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role,
                        Handler="handler.handler", Code={"ZipFile": _zip("v1")})


@pytest.fixture
def lam(monkeypatch: pytest.MonkeyPatch) -> Any:
    # Installed for this test only: the rest of the process keeps moto as it is.
    monkeypatch.setattr(LambdaStorage, "publish_version", LambdaStorage.publish_version)
    lambda_versions.install()
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        client = boto3.client("lambda", region_name="us-east-1")
        client.role_arn = role
        yield client


def _versions(lam: Any, name: str = "fn") -> list[str]:
    return [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]


def test_a_deleted_versions_number_is_not_given_again(lam: Any) -> None:
    _function(lam, lam.role_arn)
    published = [lam.publish_version(FunctionName="fn")["Version"]]
    for n in (2, 3):
        lam.update_function_code(FunctionName="fn", ZipFile=_zip(f"v{n}"))
        published.append(lam.publish_version(FunctionName="fn")["Version"])
    assert published == ["1", "2", "3"]
    lam.delete_function(FunctionName="fn", Qualifier="1")  # a prune
    lam.update_function_configuration(FunctionName="fn", MemorySize=2048)
    assert lam.publish_version(FunctionName="fn")["Version"] == "4"
    # Deleting the newest does not lower the next number either.
    lam.delete_function(FunctionName="fn", Qualifier="4")
    lam.update_function_configuration(FunctionName="fn", MemorySize=1024)
    assert lam.publish_version(FunctionName="fn")["Version"] == "5"
    assert _versions(lam) == ["$LATEST", "2", "3", "5"]
    config = lam.get_function_configuration(FunctionName="fn", Qualifier="5")
    assert config["MemorySize"] == 1024 and config["Version"] == "5"


def test_publishing_unchanged_code_returns_the_latest_version(lam: Any) -> None:
    _function(lam, lam.role_arn)
    assert lam.publish_version(FunctionName="fn")["Version"] == "1"
    assert lam.publish_version(FunctionName="fn")["Version"] == "1"
    assert _versions(lam) == ["$LATEST", "1"]


def test_a_function_created_again_numbers_from_one(lam: Any) -> None:
    _function(lam, lam.role_arn)
    lam.publish_version(FunctionName="fn")
    lam.update_function_code(FunctionName="fn", ZipFile=_zip("v2"))
    lam.publish_version(FunctionName="fn")
    lam.delete_function(FunctionName="fn")
    _function(lam, lam.role_arn)
    assert lam.publish_version(FunctionName="fn")["Version"] == "1"
