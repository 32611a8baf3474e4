"""The deployment record: what a deploy chose, remembered so that every later command chooses
the same (database mode, VPC placement, region)."""

from __future__ import annotations

import json

import pytest

from collections_ops import errors
from collections_ops.pipeline import VpcPlacement, environment
from collections_ops.services import deployment
from collections_ops.services.deployment import DeploymentRecord

DEV = environment("dev")


def test_a_plain_deploy_after_an_rds_deploy_keeps_rds():
    first = deployment.plan(DEV, None, database="rds")
    again = deployment.plan(DEV, first)
    assert again.database == "rds"
    assert deployment.cdk_context(again) == {"collections:database": "rds"}


def test_the_first_deploy_defaults_to_an_existing_database_outside_any_vpc():
    record = deployment.plan(DEV, None)
    assert (record.database, record.region, record.placement) == (
        "existing", DEV.region, None)


def test_an_existing_database_in_a_vpc_is_remembered_and_passed_to_cdk():
    first = deployment.plan(DEV, None, subnet_ids=["subnet-1", "subnet-2"],
                            security_group_ids=["sg-1"])
    again = deployment.plan(DEV, first)
    assert again.placement == VpcPlacement(("subnet-1", "subnet-2"), ("sg-1",))
    assert deployment.cdk_context(again) == {
        "collections:database": "existing", "collections:subnetIds": "subnet-1,subnet-2",
        "collections:securityGroupIds": "sg-1"}


def test_a_half_placement_or_a_placement_with_rds_is_refused():
    with pytest.raises(errors.UsageError, match="both --subnet and --security-group"):
        deployment.plan(DEV, None, subnet_ids=["subnet-1"])
    with pytest.raises(errors.UsageError, match="not subnet-/sg- ids: sg-1, subnet-2"):
        deployment.plan(DEV, None, subnet_ids=["sg-1"], security_group_ids=["subnet-2"])
    with pytest.raises(errors.UsageError, match="creates its own network"):
        deployment.plan(DEV, None, database="rds", subnet_ids=["subnet-1"],
                        security_group_ids=["sg-1"])


def test_a_region_other_than_the_stacks_is_an_error_naming_both():
    with pytest.raises(errors.ConfigError) as caught:
        deployment.region_for(DEV, None, requested="eu-west-1")
    assert "eu-west-1" in caught.value.message and DEV.region in caught.value.message
    assert deployment.region_for(DEV, None, requested=None) == DEV.region


def test_a_record_from_another_region_than_the_settings_is_refused():
    moved = DeploymentRecord(env="dev", database="existing", region="eu-west-1")
    with pytest.raises(errors.ConfigError, match="was deployed to eu-west-1"):
        deployment.plan(DEV, moved)


def test_the_record_round_trips_through_the_state_folder(tmp_path):
    assert deployment.load(tmp_path) is None
    record = deployment.stamped(deployment.plan(DEV, None, database="rds",
                                                account="111122223333"))
    deployment.save(tmp_path, record)
    assert deployment.load(tmp_path) == record
    deployment.forget(tmp_path)
    assert deployment.load(tmp_path) is None


def test_a_damaged_record_is_a_sentence(tmp_path):
    (tmp_path / deployment.RECORD_FILE).write_text("{not json")
    with pytest.raises(errors.ConfigError, match="not JSON"):
        deployment.load(tmp_path)
    (tmp_path / deployment.RECORD_FILE).write_text(json.dumps({"env": "dev",
                                                               "database": "aurora"}))
    with pytest.raises(errors.ConfigError, match="malformed"):
        deployment.load(tmp_path)


def test_changes_are_told_before_a_deploy():
    rds = deployment.plan(DEV, None, database="rds")
    back = deployment.plan(DEV, rds, database="existing")
    assert deployment.changes(rds, back) == [
        "database: rds -> existing (the database stack is removed once the compute stack "
        "no longer uses it)"]
    assert deployment.changes(rds, deployment.plan(DEV, rds)) == []
