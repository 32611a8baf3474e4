"""The deployment record in the account (SSM), where every machine that deploys finds it."""

from __future__ import annotations

import boto3
import pytest

from collections_ops.pipeline import environment
from collections_ops.services import deployment, secrets
from tests.moto_server import reset_moto

DEV = environment("dev")


@pytest.fixture
def ssm(moto_endpoint: str):
    reset_moto(moto_endpoint)
    return boto3.client("ssm", region_name="us-east-1")


def test_a_second_machine_reads_the_record_from_the_account(ssm, tmp_path):
    record = deployment.stamped(deployment.plan(DEV, None, database="rds"))
    deployment.publish(ssm, DEV, record)
    laptop = tmp_path / "laptop"
    assert deployment.current(laptop, DEV) is None  # no local copy, no client: unknown
    assert deployment.current(laptop, DEV, ssm=ssm) == record
    assert deployment.load(laptop) == record  # cached for the next command


def test_the_record_is_not_a_secret_and_is_not_listed_as_one(ssm):
    deployment.publish(ssm, DEV, deployment.plan(DEV, None))
    listed = {s.parameter for s in secrets.list_secrets(ssm, DEV)}
    assert deployment.parameter_name(DEV) not in listed
    assert ssm.get_parameter(Name=deployment.parameter_name(DEV))["Parameter"]["Type"] == \
        "String"


def test_unpublishing_twice_is_fine(ssm):
    deployment.publish(ssm, DEV, deployment.plan(DEV, None))
    deployment.unpublish(ssm, DEV)
    deployment.unpublish(ssm, DEV)
    assert deployment.fetch(ssm, DEV) is None


def test_a_deploy_from_another_machine_wins_over_a_stale_local_copy(ssm, tmp_path):
    deployment.save(tmp_path, deployment.plan(DEV, None))  # this laptop: existing
    newer = deployment.stamped(deployment.plan(DEV, None, database="rds"))
    deployment.publish(ssm, DEV, newer)  # since then, CI deployed rds
    assert deployment.in_account(tmp_path, DEV, ssm=ssm) == newer
    assert deployment.load(tmp_path) == newer
