"""What an earlier deploy left in the account, as moto answers: the retained, fixed-name
buckets (and production's log groups) that no live stack owns are what a retried deploy
adopts; the same resources inside a live stack are not leftovers."""

from __future__ import annotations

import json

import boto3
import pytest

from collections_ops.pipeline import DEPLOYED_FUNCTIONS, LOCAL_ACCOUNT, environment
from collections_ops.services import leftovers
from tests.moto_server import reset_moto

DEV = environment("dev")
PROD = environment("prod")
ACCOUNT = LOCAL_ACCOUNT  # moto's account


@pytest.fixture
def session(moto_endpoint: str):
    reset_moto(moto_endpoint)
    return boto3.session.Session(region_name="us-east-1")


def failed_first_deploy(session, env) -> None:
    """What CloudFormation keeps after a first deploy rolled back: the retained resources,
    without a stack (the CDK CLI deletes a stack whose creation failed)."""
    s3 = session.client("s3")
    s3.create_bucket(Bucket=env.images_bucket(ACCOUNT))
    s3.create_bucket(Bucket=env.thumbnails_bucket(ACCOUNT))
    s3.put_object(Bucket=env.images_bucket(ACCOUNT), Key="u1/cat.jpg", Body=b"jpeg")
    if env.production:
        for fn in DEPLOYED_FUNCTIONS:
            session.client("logs").create_log_group(logGroupName=fn.log_group(env.name))


def test_a_failed_first_deploys_buckets_are_found_to_be_adopted(session):
    # GIVEN dev's first deploy failed and rolled back, leaving its retained buckets
    failed_first_deploy(session, DEV)
    # WHEN the retry looks for leftovers
    found = leftovers.find(session.client, DEV, ACCOUNT)
    # THEN both buckets are named, with what they hold, and can be adopted
    assert [(f.resource.name, f.detail, f.adoptable) for f in found] == [
        (DEV.images_bucket(ACCOUNT), "holds objects", True),
        (DEV.thumbnails_bucket(ACCOUNT), "empty", True)]
    check = leftovers.check(found)
    assert check.ok and DEV.thumbnails_bucket(ACCOUNT) in check.detail
    assert "adopting" in check.detail


def test_production_also_leaves_its_log_groups(session):
    failed_first_deploy(session, PROD)
    found = leftovers.find(session.client, PROD, ACCOUNT)
    log_groups = [f.resource.name for f in found if f.resource.resource_type == leftovers.LOG_GROUP]
    assert log_groups == [fn.log_group("prod") for fn in DEPLOYED_FUNCTIONS]
    assert all(f.adoptable for f in found)


def test_a_dev_log_group_is_not_a_leftover(session):
    # dev's log groups are deleted with the stack: one that exists is not something a
    # retry must adopt (the stack's own resource would name it)
    session.client("logs").create_log_group(logGroupName=DEPLOYED_FUNCTIONS[0].log_group("dev"))
    assert leftovers.find(session.client, DEV, ACCOUNT) == []


def test_buckets_a_live_stack_owns_are_not_leftovers(session):
    # GIVEN dev deployed: its compute stack owns both buckets
    template = {"Resources": {
        f"Bucket{i}": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain",
                       "Properties": {"BucketName": name}}
        for i, name in enumerate([DEV.images_bucket(ACCOUNT), DEV.thumbnails_bucket(ACCOUNT)])}}
    session.client("cloudformation").create_stack(StackName=DEV.stack_name("Compute"),
                                                  TemplateBody=json.dumps(template))
    # WHEN the next deploy looks for leftovers THEN there are none
    found = leftovers.find(session.client, DEV, ACCOUNT)
    assert found == []
    assert leftovers.check(found).ok


def test_nothing_is_left_in_a_fresh_account(session):
    assert leftovers.find(session.client, DEV, ACCOUNT) == []
    assert leftovers.check([]).detail.startswith("none")


# --------------------------------------------------------------------------- stacks


def database_stack(session, *, endpoint: str = "db.abc123.us-east-1.rds.amazonaws.com",
                   protected: bool = False) -> str:
    """A stand-in for CollectionsDatabaseStack-dev: an RDS instance and the endpoint output
    (the functions' DATABASE_URL names it in mode rds)."""
    template = {
        "Resources": {"Database": {"Type": "AWS::RDS::DBInstance", "Properties": {
            "Engine": "postgres", "DBInstanceClass": "db.t4g.micro", "AllocatedStorage": "20",
            "MasterUsername": "collections", "MasterUserPassword": "not-a-secret-1"}}},
        "Outputs": {"DatabaseEndpoint": {"Value": endpoint}},
    }
    name = DEV.stack_name("Database")
    cfn = session.client("cloudformation")
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))
    if protected:  # as production's (moto's CloudFormation leaves the property out)
        (instance,) = cfn.list_stack_resources(StackName=name)["StackResourceSummaries"]
        session.client("rds").modify_db_instance(
            DBInstanceIdentifier=instance["PhysicalResourceId"], DeletionProtection=True)
    return name


def plan_existing(session, tmp_path):
    from collections_ops.services import deploy

    return deploy.deploy(session.client, DEV, state_root=tmp_path, state_dir=tmp_path / "dev",
                         profile=None, all_stacks=False, approval="never", database="existing",
                         account=ACCOUNT, build=False)


def put_url(session, host: str) -> None:
    session.client("ssm").put_parameter(Name=DEV.parameter_name("DATABASE_URL"), Type="SecureString",
                                        Value=f"postgresql://u:p@{host}:5432/collections",
                                        Overwrite=True)


def test_a_switch_to_an_existing_database_plans_to_remove_the_database_stack(session, tmp_path):
    # GIVEN dev ran in mode rds (its database stack is in the account) and its DATABASE_URL
    # now names the existing database
    stack = database_stack(session)
    put_url(session, "pg.example.internal")
    # WHEN a deploy is planned in mode existing
    plan = plan_existing(session, tmp_path)
    # THEN it deploys the compute and monitoring stacks and then removes the database stack
    assert plan.removes == [stack]
    assert "CollectionsDatabaseStack-dev" not in plan.invocation.argv
    (check,) = [c for c in plan.checks if c.name == f"removing {stack}"]
    assert check.ok


def test_the_switch_stops_while_database_url_names_the_database_that_goes(session, tmp_path):
    # GIVEN the URL the rds mode wrote: the database stack's own endpoint
    stack = database_stack(session)
    put_url(session, "db.abc123.us-east-1.rds.amazonaws.com")
    plan = plan_existing(session, tmp_path)
    (check,) = [c for c in plan.checks if c.name == f"removing {stack}"]
    assert not check.ok
    assert check.fix and "collections secrets put DATABASE_URL --env dev" in check.fix


def test_a_protected_database_is_named_with_the_command_that_unprotects_it(session, tmp_path):
    stack = database_stack(session, protected=True)
    put_url(session, "pg.example.internal")
    plan = plan_existing(session, tmp_path)
    (check,) = [c for c in plan.checks if c.name == f"removing {stack}"]
    assert not check.ok and "deletion protection" in check.detail
    assert check.fix and "--no-deletion-protection" in check.fix


def test_the_stale_stack_is_removed(session, tmp_path):
    from collections_ops.services import deploy

    stack = database_stack(session)
    deploy.remove_stale(session.client, stack)
    assert leftovers.stack_status(session.client("cloudformation"), stack) is None
    assert leftovers.stale_stacks(session.client("cloudformation"), DEV, []) == []


def test_an_rds_deploy_removes_nothing(session, tmp_path):
    from collections_ops.services import deploy

    database_stack(session)
    plan = deploy.deploy(session.client, DEV, state_root=tmp_path, state_dir=tmp_path / "dev",
                         profile=None, all_stacks=False, approval="never", database="rds",
                         account=ACCOUNT, build=False)
    assert plan.removes == []
