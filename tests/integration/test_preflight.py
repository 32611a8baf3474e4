"""Preflight as AWS would answer: the database mode decides which parameters must exist, the
account's concurrency limit bounds what may be reserved, and the region is the stacks'."""

from __future__ import annotations

import dataclasses

import boto3
import pytest
from botocore.stub import Stubber

from collections_ops import errors
from collections_ops.pipeline import DEPLOYED_FUNCTIONS, environment
from collections_ops.services import deploy, deployment
from tests.moto_server import reset_moto

DEV = environment("dev")


@pytest.fixture
def session(moto_endpoint: str):
    reset_moto(moto_endpoint)
    return boto3.session.Session(region_name="us-east-1")


def ready(session, *names: str) -> None:
    ssm = session.client("ssm")
    ssm.put_parameter(Name=deploy.BOOTSTRAP_VERSION_PARAMETER, Value="21", Type="String",
                      Overwrite=True)
    for name in names:
        ssm.put_parameter(Name=DEV.parameter_name(name), Value="x", Type="SecureString")


def test_the_first_rds_deploy_needs_no_database_url(session):
    # GIVEN the provider keys, but no DATABASE_URL (the RDS database does not exist yet)
    ready(session, "ANTHROPIC_API_KEY", "VOYAGE_API_KEY")
    rds = deployment.plan(DEV, None, database="rds")
    checks = deploy.preflight(session.client, DEV, bundle_dir=None, record=rds)
    assert [c for c in checks if not c.ok] == []
    assert not any("DATABASE_URL" in c.name for c in checks)
    # AND an existing database still needs it
    existing = deploy.preflight(session.client, DEV, bundle_dir=None,
                                record=deployment.plan(DEV, None))
    [missing] = [c for c in existing if not c.ok]
    assert missing.name == "parameter /collections/dev/DATABASE_URL"


def test_a_cli_in_another_region_than_the_stacks_fails_preflight(session):
    ready(session)
    elsewhere = boto3.session.Session(region_name="eu-west-1")
    checks = deploy.preflight(elsewhere.client, DEV, bundle_dir=None)
    [region] = [c for c in checks if c.name == "region"]
    assert not region.ok
    assert "eu-west-1" in region.detail and "us-east-1" in region.detail


def test_credentials_are_required_before_anything_else(session, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "")
    monkeypatch.delenv("AWS_SESSION_TOKEN")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bare = boto3.session.Session(region_name="us-east-1")
    with pytest.raises(errors.CredentialsError, match="no AWS credentials"):
        deploy.require_credentials(bare.client)


def _lambda_with_account_limit(total: int, unreserved: int, reserved_now: dict[str, int]):
    """A Lambda client that answers as an account with this limit does (moto has no
    GetAccountSettings); botocore validates every stubbed response against the API model."""
    lam = boto3.client("lambda", region_name="us-east-1")
    stub = Stubber(lam)
    stub.add_response("get_account_settings", {"AccountLimit": {
        "ConcurrentExecutions": total, "UnreservedConcurrentExecutions": unreserved}})
    for fn in DEPLOYED_FUNCTIONS:
        if fn.key in reserved_now:
            stub.add_response("get_function_concurrency",
                              {"ReservedConcurrentExecutions": reserved_now[fn.key]})
        else:
            stub.add_client_error("get_function_concurrency", "ResourceNotFoundException")
    stub.activate()
    return lam


def test_a_new_account_cannot_reserve_anything():
    # A new account may have a limit of 50: every reservation leaves fewer than 100.
    prod = dataclasses.replace(environment("prod"), reserved_concurrency={"processor": 10})
    check = deploy.check_concurrency(_lambda_with_account_limit(50, 50, {}), prod)
    assert not check.ok
    assert "leaves 40 unreserved" in check.detail and "at least 100" in check.detail
    assert "quota" in (check.fix or "")


def test_a_redeploy_does_not_count_its_own_reservation_twice():
    # 1000 in the account, 980 unreserved because this environment already reserves 20.
    prod = dataclasses.replace(environment("prod"),
                               reserved_concurrency={"processor": 10, "analyzer": 10})
    lam = _lambda_with_account_limit(1000, 980, {"processor": 10, "analyzer": 10})
    check = deploy.check_concurrency(lam, prod)
    assert check.ok, check.detail
    assert "leaves 980 unreserved" in check.detail


def test_no_reservation_asks_nothing_of_the_account():
    lam = boto3.client("lambda", region_name="us-east-1")
    with Stubber(lam):  # any call would fail: none is expected
        assert deploy.check_concurrency(lam, dataclasses.replace(
            environment("prod"), reserved_concurrency={})).ok
