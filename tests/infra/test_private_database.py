"""What `collections synth dev --database rds` must show for the AWS path to work: the
operations function in the private subnets, the deploy-time migration depending on the
database, retained versions, s3:ListBucket for image readers, alarms that notify a topic --
and the same for an existing database inside the operator's VPC."""

from __future__ import annotations

import json
from typing import Any

import pytest

from collections_ops import pipeline as definition
from collections_ops.pipeline import alarms as alarm_specs
from tests.infra import templates as t
from tests.infra.support import TEST_ACCOUNT, SynthesizedApp

AWS_ENVIRONMENTS = [e.name for e in definition.ENVIRONMENTS.values() if not e.is_local]
OPERATIONS = definition.OPERATIONS


@pytest.fixture(params=AWS_ENVIRONMENTS)
def env_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _migration(template: t.Template) -> tuple[str, dict[str, Any]]:
    (found,) = t.resources(template, "Custom::SchemaMigration").items()
    return found


def test_operations_function_runs_in_the_private_subnets(rds_app: SynthesizedApp,
                                                         env_name: str) -> None:
    compute = rds_app.template_json(env_name, "Compute")
    database = rds_app.template_json(env_name, "Database")
    _, function = t.function(compute, OPERATIONS, env_name)
    props = function["Properties"]
    assert props["Handler"] == OPERATIONS.handler
    assert props["Runtime"] == definition.RUNTIME
    assert props["TracingConfig"] == {"Mode": "Active"}
    vpc = props["VpcConfig"]
    # The subnets with egress (SSM, Secrets Manager, S3): never the isolated database ones.
    egress_subnets = {i for i, r in t.resources(database, "AWS::EC2::Subnet").items()
                      if {"Key": "aws-cdk:subnet-type", "Value": "Private"}
                      in r["Properties"]["Tags"]}
    assert len(egress_subnets) == 2
    assert {json.dumps(s) for s in vpc["SubnetIds"]} == {
        json.dumps(s) for s in vpc["SubnetIds"] if any(i in json.dumps(s) for i in egress_subnets)}
    _, processor = t.function(compute, definition.IMAGE_PROCESSOR, env_name)
    assert vpc == processor["Properties"]["VpcConfig"]  # the SG the database admits


def test_operations_function_reads_the_rds_secret_and_writes_only_database_url(
        rds_app: SynthesizedApp, env_name: str) -> None:
    compute = rds_app.template_json(env_name, "Compute")
    settings = definition.environment(env_name)
    _, function = t.function(compute, OPERATIONS, env_name)
    variables = function["Properties"]["Environment"]["Variables"]
    assert "DatabaseStack" in json.dumps(variables["DATABASE_SECRET_ARN"]) or \
        "ImportValue" in json.dumps(variables["DATABASE_SECRET_ARN"])
    url_parameter = f"/collections/{env_name}/DATABASE_URL"
    assert variables["DATABASE_URL_PARAMETER"] == url_parameter
    assert "DATABASE_HOST" not in variables  # no proxy by default
    statements = t.role_statements(compute, t.role_id(compute, OPERATIONS, env_name))
    actions = {a for s in statements for a in t.as_list(s["Action"])}
    assert "secretsmanager:GetSecretValue" in actions
    assert not [a for a in actions if a.startswith(("s3:", "events:", "sqs:"))]
    # It writes DATABASE_URL and each pipeline function's own URL, nothing else.
    written = sorted(r for s in statements if "ssm:PutParameter" in t.as_list(s["Action"])
                     for r in t.as_list(s["Resource"]))
    assert written == sorted(
        f"arn:aws:ssm:{settings.region}:{TEST_ACCOUNT}:parameter{name}"
        for name in (url_parameter, *settings.function_url_parameters()))
    # The pipeline's functions keep reading (never writing) their parameters.
    for fn in definition.FUNCTIONS:
        fn_actions = {a for s in t.role_statements(compute, t.role_id(compute, fn, env_name))
                      for a in t.as_list(s["Action"])}
        assert "ssm:PutParameter" not in fn_actions


def test_deploy_time_migration_depends_on_the_database_and_gates_the_aliases(
        rds_app: SynthesizedApp, env_name: str) -> None:
    compute = rds_app.template_json(env_name, "Compute")
    migration_id, migration = _migration(compute)
    operations_id, _ = t.function(compute, OPERATIONS, env_name)
    props = migration["Properties"]
    assert props["ServiceToken"] == t.get_att_arn(operations_id)
    assert int(props["ServiceTimeout"]) > definition.environment(env_name).timeout(OPERATIONS)
    # The database endpoint is a property: a new database re-runs the migration, and
    # CloudFormation creates the database stack first.
    assert "Database" in props and "Fn::" in json.dumps(props["Database"])
    stack = rds_app.stack(env_name, "Compute")
    assert rds_app.stack(env_name, "Database") in stack.dependencies
    assert {"CodeHash", "MigrationsHash"} <= set(props)
    for fn in definition.FUNCTIONS:
        function_id, _ = t.function(compute, fn, env_name)
        alias = compute["Resources"][t.live_alias_id(compute, function_id)]
        assert migration_id in t.as_list(alias.get("DependsOn", []))


def test_existing_mode_migrates_too(existing_db_app: SynthesizedApp, env_name: str) -> None:
    compute = existing_db_app.template_json(env_name, "Compute")
    _, migration = _migration(compute)
    assert "Database" not in migration["Properties"]
    _, function = t.function(compute, OPERATIONS, env_name)
    assert "VpcConfig" not in function["Properties"]
    assert "DATABASE_SECRET_ARN" not in function["Properties"]["Environment"]["Variables"]
    assert "DATABASE_ROLE_SECRETS" not in function["Properties"]["Environment"]["Variables"]
    # The migration gives each function's role a password and writes its URL (only those):
    # the operator's DATABASE_URL is never written.
    settings = definition.environment(env_name)
    statements = t.role_statements(compute, t.role_id(compute, OPERATIONS, env_name))
    written = sorted(r for s in statements if "ssm:PutParameter" in t.as_list(s["Action"])
                     for r in t.as_list(s["Resource"]))
    assert written == sorted(f"arn:aws:ssm:{settings.region}:{TEST_ACCOUNT}:parameter{name}"
                             for name in settings.function_url_parameters())


def test_each_functions_role_has_a_generated_secret_the_migration_reads(
        rds_app: SynthesizedApp, env_name: str) -> None:
    database = rds_app.template_json(env_name, "Database")
    compute = rds_app.template_json(env_name, "Compute")
    # GIVEN one generated secret per pipeline function, named for its role
    generated = {json.loads(r["Properties"]["GenerateSecretString"]["SecretStringTemplate"])[
        "username"]: lid for lid, r in t.resources(database, "AWS::SecretsManager::Secret").items()}
    for fn in definition.FUNCTIONS:
        assert fn.database_role("collections") in generated, fn.key
    # THEN the operations function is told each one (by function key), and may read them
    _, function = t.function(compute, OPERATIONS, env_name)
    secrets = json.dumps(function["Properties"]["Environment"]["Variables"][
        "DATABASE_ROLE_SECRETS"])
    for fn in definition.FUNCTIONS:
        assert f'\\"{fn.key}\\"' in secrets or f'"{fn.key}"' in secrets, secrets
    statements = t.role_statements(compute, t.role_id(compute, OPERATIONS, env_name))
    readable = json.dumps([s["Resource"] for s in statements
                           if "secretsmanager:GetSecretValue" in t.as_list(s["Action"])])
    roles = [generated[fn.database_role("collections")] for fn in definition.FUNCTIONS]
    assert all(lid in readable for lid in roles), readable
    # AND no pipeline function may read any database secret
    for fn in definition.FUNCTIONS:
        fn_actions = {a for s in t.role_statements(compute, t.role_id(compute, fn, env_name))
                      for a in t.as_list(s["Action"])}
        assert not [a for a in fn_actions if a.startswith("secretsmanager:")]


@pytest.mark.parametrize("app_name", ["existing_db_app", "rds_app", "rds_proxy_app"])
def test_every_published_version_is_retained(request: pytest.FixtureRequest,
                                             app_name: str) -> None:
    app: SynthesizedApp = request.getfixturevalue(app_name)
    for env_name in app.stacks:
        compute = app.template_json(env_name, "Compute")
        versions = t.resources(compute, "AWS::Lambda::Version")
        assert len(versions) == len(definition.FUNCTIONS)  # the operations function has none
        for version in versions.values():
            assert version["DeletionPolicy"] == "Retain"
            assert version["UpdateReplacePolicy"] == "Retain"


def test_versions_to_keep_is_a_setting() -> None:
    for env in definition.ENVIRONMENTS.values():
        assert env.versions_to_keep >= 2  # the live one and one to roll back to


def test_every_alarm_notifies_the_stacks_topic(rds_app: SynthesizedApp, env_name: str) -> None:
    monitoring = rds_app.template_json(env_name, "Monitoring")
    topic_id, _ = t.the(monitoring, "AWS::SNS::Topic",
                        TopicName=definition.alarm_topic_name(env_name))
    alarms = t.resources(monitoring, "AWS::CloudWatch::Alarm")
    assert len(alarms) == len(alarm_specs.ALARM_KINDS) * len(definition.FUNCTIONS)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    (policy,) = t.resources(monitoring, "AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    (publish,) = [s for s in statements if s["Effect"] == "Allow"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert any(s["Effect"] == "Deny" for s in statements)  # TLS only
    assert not t.resources(monitoring, "AWS::SNS::Subscription")  # no alarm_email set


def test_alarm_email_is_subscribed(rds_proxy_app: SynthesizedApp) -> None:
    monitoring = rds_proxy_app.template_json("dev", "Monitoring")
    topic_id, _ = t.the(monitoring, "AWS::SNS::Topic", TopicName="collections-dev-alarms")
    t.the(monitoring, "AWS::SNS::Subscription", Protocol="email", Endpoint="ops@example.com",
          TopicArn={"Ref": topic_id})


def test_rds_proxy_by_setting(rds_proxy_app: SynthesizedApp, rds_app: SynthesizedApp) -> None:
    database = rds_proxy_app.template_json("dev", "Database")
    (_proxy_id, proxy), = t.resources(database, "AWS::RDS::DBProxy").items()
    assert proxy["Properties"]["RequireTLS"] is True
    assert proxy["Properties"]["EngineFamily"] == "POSTGRESQL"
    compute = rds_proxy_app.template_json("dev", "Compute")
    _, function = t.function(compute, OPERATIONS, "dev")
    assert "DATABASE_HOST" in function["Properties"]["Environment"]["Variables"]
    assert not t.resources(rds_app.template_json("dev", "Database"), "AWS::RDS::DBProxy")
    # The proxy admits the owner and every function's role: one secret for each.
    assert len(proxy["Properties"]["Auth"]) == 1 + len(definition.FUNCTIONS)


def _migration_database(app: SynthesizedApp) -> Any:
    compute = app.template_json("dev", "Compute")
    (_, migration), = t.resources(compute, "Custom::SchemaMigration").items()
    return migration["Properties"]["Database"]


def _exported(app: SynthesizedApp, reference: Any) -> Any:
    """The value of the Database stack's output that `reference` names: an export
    (Fn::ImportValue) or an output read by name (Fn::GetStackOutput)."""
    outputs = app.template_json("dev", "Database")["Outputs"]
    if "Fn::ImportValue" in reference:
        (value,) = [o["Value"] for o in outputs.values()
                    if o.get("Export", {}).get("Name") == reference["Fn::ImportValue"]]
        return value
    return outputs[reference["Fn::GetStackOutput"]["OutputName"]]["Value"]


def test_turning_the_proxy_on_or_off_reruns_the_migration_for_the_new_endpoint(
        rds_proxy_app: SynthesizedApp, rds_app: SynthesizedApp) -> None:
    # The migration resource is updated (so the operations function migrates and rewrites
    # DATABASE_URL) whenever its Database property changes: it is the endpoint the pipeline
    # connects to, a strong reference to the proxy's when there is one, else the instance's.
    database = rds_proxy_app.template_json("dev", "Database")
    (proxy_id, _), = t.resources(database, "AWS::RDS::DBProxy").items()
    (instance_id, _), = t.resources(database, "AWS::RDS::DBInstance").items()
    assert _exported(rds_proxy_app, _migration_database(rds_proxy_app)) == {
        "Fn::GetAtt": [proxy_id, "Endpoint"]}
    plain = rds_app.template_json("dev", "Database")
    (plain_instance, _), = t.resources(plain, "AWS::RDS::DBInstance").items()
    assert _exported(rds_app, _migration_database(rds_app)) == {
        "Fn::GetAtt": [plain_instance, "Endpoint.Address"]}
    assert instance_id == plain_instance


def test_existing_database_in_a_vpc_places_every_function(existing_vpc_app: SynthesizedApp
                                                          ) -> None:
    compute = existing_vpc_app.template_json("dev", "Compute")
    for fn in definition.DEPLOYED_FUNCTIONS:
        _, function = t.function(compute, fn, "dev")
        assert function["Properties"]["VpcConfig"] == {
            "SubnetIds": ["subnet-0aaa1111", "subnet-0bbb2222"],
            "SecurityGroupIds": ["sg-0ccc3333"]}
        actions = {a for s in t.role_statements(compute, t.role_id(compute, fn, "dev"))
                   for a in t.as_list(s["Action"])}
        assert "ec2:CreateNetworkInterface" in actions


def test_active_tracing_stays_on(rds_app: SynthesizedApp, env_name: str) -> None:
    # EventBridge needs no IAM for the PutEvents TraceHeader; the trace only joins up if every
    # function traces.
    compute = rds_app.template_json(env_name, "Compute")
    for fn in definition.DEPLOYED_FUNCTIONS:
        _, function = t.function(compute, fn, env_name)
        assert function["Properties"]["TracingConfig"] == {"Mode": "Active"}


def test_reserved_concurrency_is_exposed_for_preflight() -> None:
    prod = definition.environment("prod")
    assert prod.reserved_total() == sum(prod.reserved_concurrency.values())


def test_the_migration_may_read_only_its_own_stacks_status(existing_db_app: SynthesizedApp,
                                                           env_name: str) -> None:
    """A rollback's Update is told apart by the stack's status (cfn_response.rolling_back):
    the operations role may describe its own stack and no other."""
    compute = existing_db_app.template_json(env_name, "Compute")
    statements = t.role_statements(compute, t.role_id(compute, OPERATIONS, env_name))
    cfn = [s for s in statements
           if any(a.startswith("cloudformation:") for a in t.as_list(s["Action"]))]
    assert [(t.as_list(s["Action"]), s["Resource"]) for s in cfn] == \
        [(["cloudformation:DescribeStacks"], {"Ref": "AWS::StackId"})]
