"""`CollectionsComputeStack-<env>` against the pipeline definition and the deployment guide."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from collections_ops import pipeline as definition
from tests.infra import templates as t
from tests.infra.support import REPO, TEST_ACCOUNT, SynthesizedApp

AWS_ENVIRONMENTS = [e.name for e in definition.ENVIRONMENTS.values() if not e.is_local]
FUNCTIONS = {fn.key: fn for fn in definition.FUNCTIONS}
EVENT_FUNCTIONS = [fn for fn in definition.FUNCTIONS if fn.trigger.kind == "eventbridge"]
REGION = definition.DEFAULT_REGION


@pytest.fixture(params=AWS_ENVIRONMENTS)
def env_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_app_has_the_guides_stacks(existing_db_app: SynthesizedApp) -> None:
    names = {p.name.removesuffix(".template.json") for p in existing_db_app.template_files}
    expected = {definition.environment(e).stack_name(kind)
                for e in AWS_ENVIRONMENTS for kind in ("Compute", "Monitoring")}
    assert names == expected
    assert "CollectionsComputeStack-dev" in names  # the guide's `cdk deploy` target
    for env_name in AWS_ENVIRONMENTS:
        stack = existing_db_app.stack(env_name, "Compute")
        assert stack.stack_name == definition.environment(env_name).stack_name()
        assert (stack.account, stack.region) == (TEST_ACCOUNT, REGION)


@pytest.mark.parametrize("fn", definition.FUNCTIONS, ids=lambda fn: fn.key)
def test_function_matches_guide_step_1(existing_db_app: SynthesizedApp, env_name: str,
                                       fn: definition.Function) -> None:
    settings = definition.environment(env_name)
    template = existing_db_app.template(env_name, "Compute")
    template.has_resource_properties("AWS::Lambda::Function", {
        "FunctionName": fn.function_name(env_name),
        "Handler": fn.handler,
        "Runtime": "python3.12",
        "Timeout": settings.timeout(fn),
        "MemorySize": settings.memory(fn),
        "Description": f"{fn.description} - {env_name}",
        "TracingConfig": {"Mode": "Active"},
        "Role": {"Fn::GetAtt": [t.role_id(template.to_json(), fn, env_name), "Arn"]},
    })


def test_function_names_are_the_guides(existing_db_app: SynthesizedApp) -> None:
    template = existing_db_app.template_json("dev", "Compute")
    names = {r["Properties"]["FunctionName"]
             for r in t.resources(template, "AWS::Lambda::Function").values()}
    assert names == {"collections-dev-ImageProcessorLambda", "collections-dev-AnalyzerLambda",
                     "collections-dev-EmbedderLambda", "collections-dev-OperationsLambda"}


def test_environment_is_the_common_env_with_the_own_dead_letter_queue(
        existing_db_app: SynthesizedApp, env_name: str) -> None:
    settings = definition.environment(env_name)
    template = existing_db_app.template_json(env_name, "Compute")
    for fn in definition.FUNCTIONS:
        _, resource = t.function(template, fn, env_name)
        expected: dict[str, object] = dict(definition.common_env(settings, account=TEST_ACCOUNT))
        expected[fn.dlq_env_var()] = {"Ref": t.dead_letter_queue_id(template, fn, env_name)}
        assert resource["Properties"]["Environment"]["Variables"] == expected


def test_log_groups_have_the_environments_retention(existing_db_app: SynthesizedApp,
                                                    env_name: str) -> None:
    settings = definition.environment(env_name)
    template = existing_db_app.template_json(env_name, "Compute")
    for fn in definition.FUNCTIONS:
        group_id, _ = t.the(template, "AWS::Logs::LogGroup", LogGroupName=fn.log_group(env_name),
                            RetentionInDays=settings.log_retention_days)
        _, resource = t.function(template, fn, env_name)
        assert resource["Properties"]["LoggingConfig"] == {"LogGroup": {"Ref": group_id}}
    # No Custom::LogRetention Lambda: retention is set on the log groups themselves.
    assert not t.resources(template, "Custom::LogRetention")


def test_reserved_concurrency_follows_the_settings(existing_db_app: SynthesizedApp,
                                                   env_name: str) -> None:
    settings = definition.environment(env_name)
    template = existing_db_app.template(env_name, "Compute")
    for fn in definition.FUNCTIONS:
        reserved = settings.reserved_concurrency.get(fn.key)
        template.has_resource_properties("AWS::Lambda::Function", {
            "FunctionName": fn.function_name(env_name),
            "ReservedConcurrentExecutions": reserved if reserved is not None else Match.absent(),
        })


def test_every_environment_ships_unreserved() -> None:
    # Lambda refuses a reservation that leaves an account fewer than 100 unreserved
    # executions, and a new account may have a limit of 10-50: reserving is the operator's
    # opt-in (the definition exposes the total for the preflight check).
    for env in definition.ENVIRONMENTS.values():
        assert env.reserved_concurrency == {}
        assert env.reserved_total() == 0


def test_async_failures_go_to_the_functions_own_dead_letter_queue(
        existing_db_app: SynthesizedApp, env_name: str) -> None:
    template = existing_db_app.template_json(env_name, "Compute")
    for fn in definition.FUNCTIONS:
        function_id, _ = t.function(template, fn, env_name)
        queue_id = t.dead_letter_queue_id(template, fn, env_name)
        # Both what the triggers invoke (the `live` alias) and a direct call of $LATEST.
        configs = [c for c in t.resources(template, "AWS::Lambda::EventInvokeConfig").values()
                   if c["Properties"]["FunctionName"] == {"Ref": function_id}]
        alias_id = t.live_alias_id(template, function_id)
        qualifiers = sorted(json.dumps(c["Properties"]["Qualifier"]) for c in configs)
        assert len(configs) == 2 and qualifiers[0] == '"$LATEST"' and alias_id in qualifiers[1]
        for config in configs:
            assert config["Properties"]["MaximumRetryAttempts"] == 2
            assert config["Properties"]["DestinationConfig"] == {
                "OnFailure": {"Destination": t.get_att_arn(queue_id)}}


def test_dead_letter_queues_are_encrypted_and_tls_only(existing_db_app: SynthesizedApp,
                                                       env_name: str) -> None:
    template = existing_db_app.template_json(env_name, "Compute")
    queues = t.resources(template, "AWS::SQS::Queue")
    assert {q["Properties"]["QueueName"] for q in queues.values()} == {
        fn.dlq_name(env_name) for fn in definition.FUNCTIONS}
    for queue_id, queue in queues.items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        policies = [p for p in t.resources(template, "AWS::SQS::QueuePolicy").values()
                    if {"Ref": queue_id} in p["Properties"]["Queues"]]
        denies = [s for p in policies for s in p["Properties"]["PolicyDocument"]["Statement"]
                  if s["Effect"] == "Deny"
                  and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}]
        assert denies, f"{queue['Properties']['QueueName']} accepts plain HTTP"


@pytest.mark.parametrize("fn", EVENT_FUNCTIONS, ids=lambda fn: fn.key)
def test_eventbridge_rule_routes_the_definitions_event(existing_db_app: SynthesizedApp,
                                                       env_name: str,
                                                       fn: definition.Function) -> None:
    assert fn.trigger.event is not None
    template = existing_db_app.template_json(env_name, "Compute")
    rule_id, rule = t.the(template, "AWS::Events::Rule", Name=fn.rule_name(env_name))
    props = rule["Properties"]
    assert props["EventPattern"] == fn.trigger.event.pattern()
    assert "EventBusName" not in props  # the default bus, where the functions publish
    assert props["State"] == "ENABLED"
    function_id, _ = t.function(template, fn, env_name)
    (target,) = props["Targets"]
    alias_id = t.live_alias_id(template, function_id)
    assert target["Arn"] == {"Ref": alias_id}
    assert target["DeadLetterConfig"] == {
        "Arn": t.get_att_arn(t.dead_letter_queue_id(template, fn, env_name))}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    t.the(template, "AWS::Lambda::Permission", FunctionName={"Ref": alias_id},
          Principal="events.amazonaws.com", SourceArn=t.get_att_arn(rule_id))


def test_guide_rule_names(existing_db_app: SynthesizedApp) -> None:
    template = existing_db_app.template_json("dev", "Compute")
    names = {r["Properties"]["Name"] for r in t.resources(template, "AWS::Events::Rule").values()}
    assert names == {"collections-dev-ImageProcessedRule", "collections-dev-AnalysisCompleteRule"}


def test_eventbridge_may_dead_letter_into_the_target_queue(existing_db_app: SynthesizedApp,
                                                           env_name: str) -> None:
    template = existing_db_app.template_json(env_name, "Compute")
    for fn in EVENT_FUNCTIONS:
        queue_id = t.dead_letter_queue_id(template, fn, env_name)
        rule_id, _ = t.the(template, "AWS::Events::Rule", Name=fn.rule_name(env_name))
        statements = [s for p in t.resources(template, "AWS::SQS::QueuePolicy").values()
                      if {"Ref": queue_id} in p["Properties"]["Queues"]
                      for s in p["Properties"]["PolicyDocument"]["Statement"]]
        assert {
            "Action": "sqs:SendMessage", "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Resource": t.get_att_arn(queue_id),
            "Condition": {"ArnEquals": {"aws:SourceArn": t.get_att_arn(rule_id)}},
        } in [{k: v for k, v in s.items() if k != "Sid"} for s in statements]


def test_uploads_notify_the_processor_and_thumbnails_notify_nobody(
        existing_db_app: SynthesizedApp, env_name: str) -> None:
    settings = definition.environment(env_name)
    template = existing_db_app.template_json(env_name, "Compute")
    processor = next(fn for fn in definition.FUNCTIONS if fn.trigger.kind == "s3")
    processor_id, _ = t.function(template, processor, env_name)
    images_name = settings.images_bucket(TEST_ACCOUNT)

    _, images = t.the(template, "AWS::S3::Bucket", BucketName=images_name)
    live = {"Ref": t.live_alias_id(template, processor_id)}
    assert images["Properties"]["NotificationConfiguration"] == {"LambdaConfigurations": [
        {"Event": "s3:ObjectCreated:*", "Function": live}]}
    permission_id, _ = t.the(
        template, "AWS::Lambda::Permission", FunctionName=live,
        Principal="s3.amazonaws.com", SourceArn=f"arn:aws:s3:::{images_name}",
        SourceAccount=TEST_ACCOUNT)
    assert permission_id in t.as_list(images.get("DependsOn", []))

    _, thumbnails = t.the(template, "AWS::S3::Bucket",
                          BucketName=settings.thumbnails_bucket(TEST_ACCOUNT))
    assert "NotificationConfiguration" not in thumbnails["Properties"]
    # Written straight into the bucket: no notification custom resource or its Lambda.
    assert not t.resources(template, "Custom::S3BucketNotifications")
    assert len(t.resources(template, "AWS::Lambda::Function")) == len(
        definition.DEPLOYED_FUNCTIONS)


def test_buckets_are_private_encrypted_and_tls_only(existing_db_app: SynthesizedApp,
                                                    env_name: str) -> None:
    template = existing_db_app.template_json(env_name, "Compute")
    buckets = t.resources(template, "AWS::S3::Bucket")
    for bucket_id, bucket in buckets.items():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "BlockPublicPolicy": True,
            "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
        (encryption,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
        assert bucket["DeletionPolicy"] == "Retain"
        policy = next(p for p in t.resources(template, "AWS::S3::BucketPolicy").values()
                      if p["Properties"]["Bucket"] == {"Ref": bucket_id})
        assert any(s["Effect"] == "Deny"
                   and s.get("Condition", {}).get("Bool") == {"aws:SecureTransport": "false"}
                   for s in policy["Properties"]["PolicyDocument"]["Statement"])


def test_images_are_versioned_and_thumbnails_expire(existing_db_app: SynthesizedApp,
                                                    env_name: str) -> None:
    settings = definition.environment(env_name)
    template = existing_db_app.template_json(env_name, "Compute")
    _, images = t.the(template, "AWS::S3::Bucket", BucketName=settings.images_bucket(TEST_ACCOUNT))
    assert images["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "LoggingConfiguration" in images["Properties"]
    _, thumbnails = t.the(template, "AWS::S3::Bucket",
                          BucketName=settings.thumbnails_bucket(TEST_ACCOUNT))
    expirations = [r.get("ExpirationInDays")
                   for r in thumbnails["Properties"]["LifecycleConfiguration"]["Rules"]]
    assert settings.thumbnail_expiry_days in expirations


@pytest.mark.parametrize("fn", definition.FUNCTIONS, ids=lambda fn: fn.key)
def test_parameter_store_policy_reads_only_the_functions_parameters(
        existing_db_app: SynthesizedApp, env_name: str, fn: definition.Function) -> None:
    template = existing_db_app.template_json(env_name, "Compute")
    role = t.role_id(template, fn, env_name)
    # The environment's own scope for every secret; the shared scope for the API keys only.
    # Of the database URLs, only the function's own: never the owner's, nor another's.
    expected = [f"/collections/{env_name}/{name}" for name in fn.secrets]
    expected += [f"/collections/{name}" for name in fn.secrets if definition.secret(name).shared]
    database_urls = [name.rpartition("/")[2] for name in expected
                     if name.rpartition("/")[2].startswith("DATABASE_URL")]
    assert database_urls == [f"DATABASE_URL_{fn.key.upper()}"]
    parameter_arns = sorted(f"arn:aws:ssm:{REGION}:{TEST_ACCOUNT}:parameter{name}"
                            for name in expected)
    statements = t.inline_policy(template, role, "ParameterStorePolicy")["Statement"]
    ssm = [s for s in statements if any(a.startswith("ssm:") for a in t.as_list(s["Action"]))]
    assert len(ssm) == 1
    assert t.as_list(ssm[0]["Action"]) == ["ssm:GetParameter", "ssm:GetParameters"]
    assert sorted(t.as_list(ssm[0]["Resource"])) == parameter_arns
    (kms,) = [s for s in statements if s["Action"] == "kms:Decrypt"]
    assert kms["Condition"]["StringEquals"]["kms:ViaService"] == f"ssm.{REGION}.amazonaws.com"
    assert sorted(kms["Condition"]["StringEquals"]["kms:EncryptionContext:PARAMETER_ARN"]) \
        == parameter_arns
    # No other policy of the role may widen SSM access.
    others = [s for s in t.role_statements(template, role) if s not in statements]
    assert not [s for s in others
                if any(a.split(":")[0] in ("ssm", "kms") for a in t.as_list(s["Action"]))]


def _ssm_resources(template: dict[str, Any], role: str) -> set[str]:
    return {r for s in t.role_statements(template, role)
            if any(a.split(":")[0] in ("ssm", "kms") for a in t.as_list(s["Action"]))
            for r in [*t.as_list(s["Resource"]), *t.as_list(s.get("Condition", {}).get(
                "StringEquals", {}).get("kms:EncryptionContext:PARAMETER_ARN", []))]}


@pytest.mark.parametrize("fn", [*definition.FUNCTIONS, definition.OPERATIONS],
                         ids=lambda fn: fn.key)
def test_dev_and_prod_roles_cannot_read_each_others_database_url(
        rds_app: SynthesizedApp, fn: definition.Function) -> None:
    # GIVEN both environments synthesized from one app (the operations function writes the URL)
    dev = _ssm_resources(rds_app.template_json("dev", "Compute"),
                         t.role_id(rds_app.template_json("dev", "Compute"), fn, "dev"))
    prod = _ssm_resources(rds_app.template_json("prod", "Compute"),
                          t.role_id(rds_app.template_json("prod", "Compute"), fn, "prod"))
    url = "arn:aws:ssm:{r}:{a}:parameter/collections/{e}/{name}"
    own = fn.database_url_name
    dev_url = url.format(r=REGION, a=TEST_ACCOUNT, e="dev", name=own)
    prod_url = url.format(r=REGION, a=TEST_ACCOUNT, e="prod", name=own)
    # THEN each role's SSM and KMS grants name its own database URL and not the other's,
    assert dev_url in dev and prod_url not in dev
    assert prod_url in prod and dev_url not in prod
    # nor the first layout's one URL for every environment, nor any wildcard over the prefix
    legacy = f"arn:aws:ssm:{REGION}:{TEST_ACCOUNT}:parameter/collections/{own}"
    assert legacy not in dev | prod
    assert not [r for r in dev | prod if "parameter" in r and "*" in r]
    # AND whatever the two share is a shared API key, never an environment's scope
    assert all(r.rpartition("/")[2].endswith("_API_KEY") and r.count("/") == 2
               for r in dev & prod if ":parameter/" in r)


@pytest.mark.parametrize("app", ["existing_db_app", "rds_app"])
def test_no_pipeline_functions_role_may_read_the_owners_database_url_or_anothers(
        request: pytest.FixtureRequest, app: str, env_name: str) -> None:
    template = request.getfixturevalue(app).template_json(env_name, "Compute")
    urls = {name: f"arn:aws:ssm:{REGION}:{TEST_ACCOUNT}:parameter/collections/{env_name}/{name}"
            for name in ("DATABASE_URL", *(fn.database_url_name for fn in definition.FUNCTIONS))}
    for fn in definition.FUNCTIONS:
        readable = _ssm_resources(template, t.role_id(template, fn, env_name))
        assert {name for name, arn in urls.items() if arn in readable} == {
            fn.database_url_name}, fn.key
    # The operations function, which runs the migrations, reads the owner's.
    operations = _ssm_resources(template, t.role_id(template, definition.OPERATIONS, env_name))
    assert urls["DATABASE_URL"] in operations


@pytest.mark.parametrize("fn", definition.FUNCTIONS, ids=lambda fn: fn.key)
def test_role_is_least_privilege(existing_db_app: SynthesizedApp, env_name: str,
                                 fn: definition.Function) -> None:
    settings = definition.environment(env_name)
    template = existing_db_app.template_json(env_name, "Compute")
    role = t.role_id(template, fn, env_name)
    statements = t.role_statements(template, role)

    for statement in statements:
        assert statement["Effect"] == "Allow"
        if "*" in t.as_list(statement["Resource"]):
            # Only X-Ray (no resource-level permissions) may use Resource "*".
            assert all(a.startswith("xray:") for a in t.as_list(statement["Action"])), statement

    def granted(prefix: str) -> list[dict[str, Any]]:
        return [s for s in statements
                if any(a.startswith(prefix) for a in t.as_list(s["Action"]))]

    reads_images = fn.trigger.kind == "s3" or fn.trigger.event is definition.IMAGE_PROCESSED
    writes_thumbnails = fn.publishes is definition.IMAGE_PROCESSED
    expected_s3 = []
    if reads_images:
        expected_s3.append((["s3:GetObject"],
                            [f"arn:aws:s3:::{settings.images_bucket(TEST_ACCOUNT)}/*"]))
        # A missing key must read as 404, not 403.
        expected_s3.append((["s3:ListBucket"],
                            [f"arn:aws:s3:::{settings.images_bucket(TEST_ACCOUNT)}"]))
    assert (fn.reads_images, fn.writes_thumbnails) == (reads_images, writes_thumbnails)
    if writes_thumbnails:
        expected_s3.append((["s3:PutObject"],
                            [f"arn:aws:s3:::{settings.thumbnails_bucket(TEST_ACCOUNT)}/*"]))
    assert [(t.as_list(s["Action"]), t.as_list(s["Resource"])) for s in granted("s3:")] \
        == expected_s3

    events = granted("events:")
    if fn.publishes is None:
        assert events == []
    else:
        (publish,) = events
        assert t.as_list(publish["Action"]) == ["events:PutEvents"]
        assert publish["Resource"] == f"arn:aws:events:{REGION}:{TEST_ACCOUNT}:event-bus/default"
        assert publish["Condition"]["StringEquals"]["events:source"] == fn.publishes.source

    own_queue = t.get_att_arn(t.dead_letter_queue_id(template, fn, env_name))
    sqs = granted("sqs:")
    assert sqs
    assert all(s["Resource"] == own_queue for s in sqs)
    assert any("sqs:SendMessage" in t.as_list(s["Action"]) for s in sqs)

    logs = granted("logs:")
    assert logs
    assert all(s["Resource"] != "*" for s in logs)
    assert template["Resources"][role]["Properties"].get("ManagedPolicyArns") is None


def test_role_names_are_the_guides(existing_db_app: SynthesizedApp) -> None:
    template = existing_db_app.template_json("dev", "Compute")
    role = t.the(template, "AWS::IAM::Role", RoleName="collections-dev-AnalyzerLambdaRole")[0]
    t.inline_policy(template, role, "ParameterStorePolicy")  # the guide's troubleshooting


@pytest.mark.parametrize("fn", definition.DEPLOYED_FUNCTIONS, ids=lambda fn: fn.key)
def test_code_asset_is_the_built_bundle_never_the_source_folder(
        existing_db_app: SynthesizedApp, fn: definition.Function) -> None:
    template = existing_db_app.template_json("dev", "Compute")
    _, resource = t.function(template, fn, "dev")
    asset = existing_db_app.outdir / resource["Metadata"]["aws:asset:path"]
    bundle = existing_db_app.bundle_dir / fn.code_dir
    expected = {p.relative_to(bundle) for p in bundle.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
                and p.name != ".collections-build.json"}
    staged = {p.relative_to(asset) for p in asset.rglob("*") if p.is_file()}
    assert staged == expected
    assert Path(fn.handler.split(".")[0] + ".py") in staged
    assert Path("collections_core/migrate.py") in staged


def test_templates_carry_no_local_paths(existing_db_app: SynthesizedApp) -> None:
    for path in existing_db_app.template_files:
        assert str(REPO) not in json.dumps(json.loads(path.read_text())["Resources"])


def test_without_an_account_names_resolve_at_deploy_time(accountless_app: SynthesizedApp) -> None:
    stack = accountless_app.stack("dev", "Compute")
    assert stack.stack_name == definition.environment("dev").stack_name()
    template = accountless_app.template_json("dev", "Compute")
    settings = definition.environment("dev")
    prefix = settings.images_bucket("")
    bucket_names = [b["Properties"].get("BucketName")
                    for b in t.resources(template, "AWS::S3::Bucket").values()]
    assert {"Fn::Join": ["", [prefix, {"Ref": "AWS::AccountId"}]]} in bucket_names
    for fn in definition.FUNCTIONS:
        t.function(template, fn, "dev")  # plain names: they carry no account
