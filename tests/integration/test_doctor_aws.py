"""`doctor` against AWS-shaped state: what the CDK app deploys, recreated in moto.

On AWS the S3 notification and the rules invoke the `live` alias, and the S3 permission is on
the alias. moto is more lenient than Lambda here (a version shares the policy of $LATEST), so
these tests build the state as AWS has it and assert what doctor asks for: `get_policy` with
`Qualifier=live`, and the alias ARN as the target.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import boto3
import pytest

from collections_ops.localcloud.provision import parameter_store_policy
from collections_ops.pipeline import FUNCTIONS, LIVE_ALIAS, environment
from collections_ops.services import inspect
from collections_ops.services.dataroute import DirectRoute
from tests.moto_server import reset_moto

ACCOUNT = "123456789012"
REGION = "us-east-1"
DEV = environment("dev")


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return buf.getvalue()


def aws_shaped_dev(session: Any, *, permission_on_alias: bool = True) -> None:
    """The dev environment as the compute stack leaves it: functions with a `live` alias,
    triggers naming the alias ARN, the S3 permission on the alias."""
    iam, lam, s3 = session.client("iam"), session.client("lambda"), session.client("s3")
    events, sqs, ssm = session.client("events"), session.client("sqs"), session.client("ssm")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole"}]})
    bucket = DEV.images_bucket(ACCOUNT)
    s3.create_bucket(Bucket=bucket)
    for name in ("DATABASE_URL", "ANTHROPIC_API_KEY", "VOYAGE_API_KEY",
                 *(fn.database_url_name for fn in FUNCTIONS)):  # the migration writes these
        ssm.put_parameter(Name=DEV.parameter_name(name), Value="x", Type="SecureString")
    alias_arns = {}
    for fn in FUNCTIONS:
        role = iam.create_role(RoleName=fn.role_name("dev"), AssumeRolePolicyDocument=trust)
        iam.put_role_policy(RoleName=fn.role_name("dev"), PolicyName="ParameterStorePolicy",
                            PolicyDocument=parameter_store_policy(DEV, fn, region=REGION,
                                                                  account=ACCOUNT))
        name = fn.function_name("dev")
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role["Role"]["Arn"],
                            Handler=fn.handler, Code={"ZipFile": _zip()})
        version = lam.publish_version(FunctionName=name)["Version"]
        alias_arns[fn.key] = lam.create_alias(FunctionName=name, Name=LIVE_ALIAS,
                                              FunctionVersion=version)["AliasArn"]
        sqs.create_queue(QueueName=fn.dlq_name("dev"))
        if fn.trigger.kind == "s3":
            lam.add_permission(FunctionName=name, StatementId="s3-invoke",
                               Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
                               SourceArn=f"arn:aws:s3:::{bucket}", SourceAccount=ACCOUNT,
                               **({"Qualifier": LIVE_ALIAS} if permission_on_alias else {}))
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
                "LambdaFunctionConfigurations": [{"Id": fn.logical_id,
                                                  "LambdaFunctionArn": alias_arns[fn.key],
                                                  "Events": ["s3:ObjectCreated:*"]}]})
        else:
            assert fn.trigger.event is not None
            rule = fn.rule_name("dev")
            events.put_rule(Name=rule, EventPattern=json.dumps(fn.trigger.event.pattern()),
                            State="ENABLED")
            events.put_targets(Rule=rule, Targets=[{"Id": fn.logical_id,
                                                    "Arn": alias_arns[fn.key]}])


@pytest.fixture
def session(moto_endpoint: str) -> Any:
    reset_moto(moto_endpoint)
    return boto3.session.Session(region_name=REGION)


def test_doctor_finds_no_fault_in_a_healthy_aws_deployment(session, db):
    # GIVEN the dev environment as CDK deploys it (alias ARN targets, permission on the alias)
    aws_shaped_dev(session)
    # WHEN doctor runs against it
    findings = inspect.doctor(session.client, DEV, account=ACCOUNT, region=REGION,
                              route=lambda: DirectRoute(db))
    # THEN nothing fails, and the checks name the alias
    failed = [f for f in findings if not f.ok and f.severity == "error"]
    assert failed == []
    by_check = {f.name: f for f in findings}
    assert by_check["invoke permission"].detail.endswith(f":{LIVE_ALIAS}")
    assert by_check["bucket notification"].detail.endswith(
        f"function:collections-dev-ImageProcessorLambda:{LIVE_ALIAS}")


def test_a_functions_missing_database_url_and_a_role_that_reads_the_owners_are_faults(
        session, db):
    # GIVEN a healthy dev deployment whose processor lost its URL, and whose analyzer's role
    # was given the owner's DATABASE_URL by hand
    aws_shaped_dev(session)
    processor, analyzer = FUNCTIONS[0], FUNCTIONS[1]
    session.client("ssm").delete_parameter(Name=DEV.parameter_name(processor.database_url_name))
    iam = session.client("iam")
    policy = json.loads(parameter_store_policy(DEV, analyzer, region=REGION, account=ACCOUNT))
    policy["Statement"][0]["Resource"].append(
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{DEV.parameter_name('DATABASE_URL')}")
    iam.put_role_policy(RoleName=analyzer.role_name("dev"), PolicyName="ParameterStorePolicy",
                        PolicyDocument=json.dumps(policy))
    # WHEN doctor runs
    findings = {f.name: f for f in inspect.doctor(session.client, DEV, account=ACCOUNT,
                                                  region=REGION, route=lambda: DirectRoute(db))}
    # THEN both are faults, each with its fix
    lost = findings[f"parameter {DEV.parameter_name(processor.database_url_name)}"]
    assert not lost.ok and "processor cannot connect" in lost.detail
    assert lost.fix and "collections db migrate --env dev" in lost.fix
    reads = findings[f"IAM {analyzer.role_name('dev')}"]
    assert not reads.ok and "owner's /collections/dev/DATABASE_URL" in reads.detail
    assert findings[f"IAM {processor.role_name('dev')}"].ok


def test_a_notification_on_the_bare_function_is_a_fault(session, db):
    aws_shaped_dev(session)
    processor = FUNCTIONS[0]
    bare = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{processor.function_name('dev')}"
    session.client("s3").put_bucket_notification_configuration(
        Bucket=DEV.images_bucket(ACCOUNT), NotificationConfiguration={
            "LambdaFunctionConfigurations": [{"LambdaFunctionArn": bare,
                                              "Events": ["s3:ObjectCreated:*"]}]})
    finding = inspect.check_notification(
        inspect.gather_status(session.client, DEV, account=ACCOUNT, region=REGION), DEV)
    assert not finding.ok
    assert f"not {bare}:{LIVE_ALIAS}" in finding.detail


def test_a_rule_aimed_at_the_bare_function_is_a_fault(session):
    aws_shaped_dev(session)
    analyzer = next(f for f in FUNCTIONS if f.key == "analyzer")
    rule = analyzer.rule_name("dev")
    bare = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{analyzer.function_name('dev')}"
    session.client("events").put_targets(Rule=rule, Targets=[{"Id": analyzer.logical_id,
                                                               "Arn": bare}])
    status = inspect.gather_status(session.client, DEV, account=ACCOUNT, region=REGION)
    [finding] = [f for f in inspect.check_functions_and_rules(status, DEV)
                 if f.name == f"rule {rule}"]
    assert not finding.ok and f"not {bare}:{LIVE_ALIAS}" in finding.detail


def test_the_permission_is_looked_up_on_the_alias(session):
    # moto shares one policy between $LATEST and its versions, so the failing case on AWS (a
    # permission on the bare function only) cannot be built here; what doctor asks for can.
    aws_shaped_dev(session)
    lam = session.client("lambda")
    name = FUNCTIONS[0].function_name("dev")
    policy = json.loads(lam.get_policy(FunctionName=name, Qualifier=LIVE_ALIAS)["Policy"])
    assert any(s["Principal"] == {"Service": "s3.amazonaws.com"} for s in policy["Statement"])
    assert inspect.check_invoke_permission(lam, DEV).ok


def test_the_local_cloud_is_healthy_too(pipeline, db):
    # Locally the triggers deliver to queues and the permission is on the function.
    findings = inspect.doctor(pipeline.client, pipeline.env, account=ACCOUNT, region=REGION,
                              route=lambda: DirectRoute(db))
    assert [f for f in findings if not f.ok and f.severity == "error"] == []
