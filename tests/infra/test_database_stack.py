"""Database mode `rds`: a private PostgreSQL 16 reachable only from the functions."""

from __future__ import annotations

import pytest

from collections_ops import pipeline as definition
from tests.infra import templates as t
from tests.infra.support import SynthesizedApp

AWS_ENVIRONMENTS = [e.name for e in definition.ENVIRONMENTS.values() if not e.is_local]


@pytest.fixture(params=AWS_ENVIRONMENTS)
def env_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_rds_mode_adds_the_database_stack(rds_app: SynthesizedApp,
                                          existing_db_app: SynthesizedApp) -> None:
    names = {p.name.removesuffix(".template.json") for p in rds_app.template_files}
    for env_name in AWS_ENVIRONMENTS:
        assert definition.environment(env_name).stack_name("Database") in names
    assert not [p for p in existing_db_app.template_files if "Database" in p.name]


def test_postgres_16_is_private_and_encrypted(rds_app: SynthesizedApp, env_name: str) -> None:
    template = rds_app.template_json(env_name, "Database")
    (instance,) = t.resources(template, "AWS::RDS::DBInstance").values()
    props = instance["Properties"]
    assert props["Engine"] == "postgres"
    assert props["EngineVersion"].split(".")[0] == "16"  # RDS PostgreSQL 16 ships pgvector
    assert props["StorageEncrypted"] is True
    assert props["PubliclyAccessible"] is False
    assert instance["DeletionPolicy"] == "Snapshot"
    production = env_name == "prod"
    assert props["MultiAZ"] is production
    assert props["DeletionProtection"] is production


def test_only_the_functions_security_group_reaches_the_database(rds_app: SynthesizedApp,
                                                                env_name: str) -> None:
    template = rds_app.template_json(env_name, "Database")
    (instance,) = t.resources(template, "AWS::RDS::DBInstance").values()
    (database_sg,) = instance["Properties"]["VPCSecurityGroups"]
    database_sg_id = database_sg["Fn::GetAtt"][0]
    assert not template["Resources"][database_sg_id]["Properties"].get("SecurityGroupIngress")
    ingress = [r["Properties"] for r in t.resources(template, "AWS::EC2::SecurityGroupIngress")
               .values() if r["Properties"]["GroupId"] == {"Fn::GetAtt": [database_sg_id,
                                                                          "GroupId"]}]
    functions_sg_id, _ = t.the(template, "AWS::EC2::SecurityGroup",
                               GroupDescription="collections pipeline functions")
    assert ingress == [{
        "Description": "PostgreSQL from the pipeline functions", "IpProtocol": "tcp",
        "FromPort": 5432, "ToPort": 5432,
        "GroupId": {"Fn::GetAtt": [database_sg_id, "GroupId"]},
        "SourceSecurityGroupId": {"Fn::GetAtt": [functions_sg_id, "GroupId"]},
    }]


def test_functions_run_in_the_private_subnets(rds_app: SynthesizedApp,
                                              existing_db_app: SynthesizedApp,
                                              env_name: str) -> None:
    template = rds_app.template_json(env_name, "Compute")
    database_stack = definition.environment(env_name).stack_name("Database")
    for fn in definition.FUNCTIONS:
        _, resource = t.function(template, fn, env_name)
        vpc = resource["Properties"]["VpcConfig"]
        assert len(vpc["SubnetIds"]) == 2
        (security_group,) = vpc["SecurityGroupIds"]
        assert database_stack in str(security_group)  # the database stack's functions SG
    plain = existing_db_app.template_json(env_name, "Compute")
    for fn in definition.FUNCTIONS:
        assert "VpcConfig" not in t.function(plain, fn, env_name)[1]["Properties"]


def test_vpc_has_flow_logs_and_no_hard_coded_zones(rds_app: SynthesizedApp,
                                                   env_name: str) -> None:
    template = rds_app.template_json(env_name, "Database")
    assert t.resources(template, "AWS::EC2::FlowLog")
    for subnet in t.resources(template, "AWS::EC2::Subnet").values():
        assert "Fn::Select" in subnet["Properties"]["AvailabilityZone"]
