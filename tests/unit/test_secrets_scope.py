"""`secrets put/list/verify/rm` name the scope they touch: the shared `/collections/NAME` (the
API keys' home) or the environment's own `/collections/<env>/NAME` (DATABASE_URL's only home,
and an API key's override). Two environments side by side in one SSM (the moto server), driven
in process through the CLI; nothing is patched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from collections_ops.cli.app import app
from tests.moto_server import reset_moto


@pytest.fixture
def cli(tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("COLLECTIONS_STATE_DIR", str(tmp_path / "state"))
    for name in ("COLLECTIONS_ENV", "DATABASE_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(key, value)
    reset_moto(moto_endpoint)
    return CliRunner()


def _ssm(endpoint: str) -> Any:
    return boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1")


def _value(endpoint: str, name: str) -> str | None:
    try:
        return str(_ssm(endpoint).get_parameter(Name=name, WithDecryption=True)
                   ["Parameter"]["Value"])
    except _ssm(endpoint).exceptions.ParameterNotFound:
        return None


def _put(cli: CliRunner, name: str, value: str, *args: str) -> Any:
    result = cli.invoke(app, ["secrets", "put", name, "--stdin", *args, "-o", "json"],
                        input=value)
    assert result.exit_code == 0, result.output
    [info] = json.loads(result.stdout)
    return info


def test_an_api_key_goes_to_the_shared_scope_and_an_override_to_the_environment(
        cli: CliRunner, moto_endpoint: str) -> None:
    # WHEN an API key is put for dev with no scope
    shared = _put(cli, "ANTHROPIC_API_KEY", "sk-ant-shared", "-e", "dev")
    # THEN it is the guide's shared parameter, and the answer says so
    assert (shared["parameter"], shared["scope"]) == ("/collections/ANTHROPIC_API_KEY", "shared")
    text = cli.invoke(app, ["secrets", "put", "VOYAGE_API_KEY", "--stdin", "-e", "dev"],
                      input="pa-shared")
    assert "/collections/VOYAGE_API_KEY written" in text.stdout
    assert "scope: shared by every environment" in text.stdout
    # WHEN prod overrides it in its own scope
    override = _put(cli, "ANTHROPIC_API_KEY", "sk-ant-prod", "-e", "prod", "--scope", "env")
    assert (override["parameter"], override["scope"]) == (
        "/collections/prod/ANTHROPIC_API_KEY", "env")
    assert _value(moto_endpoint, "/collections/ANTHROPIC_API_KEY") == "sk-ant-shared"
    # THEN prod lists its override (hiding the shared one) and dev the shared one
    listed = {e: {i["name"]: i for i in json.loads(cli.invoke(
        app, ["secrets", "list", "-e", e, "-o", "json"]).stdout)} for e in ("dev", "prod")}
    assert listed["prod"]["ANTHROPIC_API_KEY"]["parameter"] == \
        "/collections/prod/ANTHROPIC_API_KEY"
    assert listed["prod"]["ANTHROPIC_API_KEY"]["overrides"] == "/collections/ANTHROPIC_API_KEY"
    assert listed["dev"]["ANTHROPIC_API_KEY"]["scope"] == "shared"
    assert listed["dev"]["ANTHROPIC_API_KEY"]["overrides"] is None
    assert listed["prod"]["ANTHROPIC_API_KEY"]["fingerprint"] != \
        listed["dev"]["ANTHROPIC_API_KEY"]["fingerprint"]
    # AND removing prod's override leaves the shared key for everyone
    rm = cli.invoke(app, ["secrets", "rm", "ANTHROPIC_API_KEY", "-e", "prod", "--scope", "env",
                          "-y", "-o", "json"])
    assert json.loads(rm.stdout) == {"deleted": "/collections/prod/ANTHROPIC_API_KEY",
                                     "scope": "env"}
    assert _value(moto_endpoint, "/collections/ANTHROPIC_API_KEY") == "sk-ant-shared"


def test_each_environment_has_its_own_database_url_and_none_is_shared(
        cli: CliRunner, moto_endpoint: str) -> None:
    # GIVEN dev's and prod's DATABASE_URL side by side
    dev = _put(cli, "DATABASE_URL", "postgresql://dev@db-dev/collections", "-e", "dev")
    prod = _put(cli, "DATABASE_URL", "postgresql://prod@db-prod/collections", "-e", "prod")
    assert (dev["parameter"], dev["scope"]) == ("/collections/dev/DATABASE_URL", "env")
    assert prod["parameter"] == "/collections/prod/DATABASE_URL"
    # THEN each environment lists and verifies its own
    for env, other in (("dev", "prod"), ("prod", "dev")):
        listed = {i["name"]: i for i in json.loads(cli.invoke(
            app, ["secrets", "list", "-e", env, "-o", "json"]).stdout)}
        assert listed["DATABASE_URL"]["parameter"] == f"/collections/{env}/DATABASE_URL"
        assert listed["DATABASE_URL"]["present"]
        text = cli.invoke(app, ["secrets", "list", "-e", env]).stdout
        assert f"/collections/{other}/" not in text and f"{env} only" in text
    verified = cli.invoke(app, ["secrets", "verify", "-e", "dev", "-o", "json"])
    [check] = [c for c in json.loads(verified.stdout) if c["name"].endswith("/DATABASE_URL")]
    assert check["name"] == "/collections/dev/DATABASE_URL" and check["ok"]
    assert "dev only" in check["detail"]
    # AND a shared DATABASE_URL is refused (usage, nothing written)
    refused = cli.invoke(app, ["secrets", "put", "DATABASE_URL", "--stdin", "-e", "dev",
                               "--scope", "shared"], input="postgresql://x@y/z")
    assert refused.exit_code == 2, refused.output
    assert "kept per environment" in refused.stderr
    assert _value(moto_endpoint, "/collections/DATABASE_URL") is None
    # AND removing dev's leaves prod's
    cli.invoke(app, ["secrets", "rm", "DATABASE_URL", "-e", "dev", "-y"])
    assert _value(moto_endpoint, "/collections/dev/DATABASE_URL") is None
    assert _value(moto_endpoint, "/collections/prod/DATABASE_URL") == \
        "postgresql://prod@db-prod/collections"
