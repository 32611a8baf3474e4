"""One statement list, two renderings: the definition's role policies (`pipeline.permissions`)
are what the synthesized template carries -- every deployed function, every database mode,
inside a VPC or not -- and what the local cloud's IAM evaluator enforces. So a permission
missing from the definition is refused locally and missing on AWS alike."""

from __future__ import annotations

from typing import Any

import pytest

from collections_ops.localcloud.aws import iam as local_iam
from collections_ops.localcloud.aws.policies import normalized, role_policies, values
from collections_ops.pipeline import DEPLOYED_FUNCTIONS, FUNCTIONS, environment, permissions
from tests.infra.support import TEST_ACCOUNT, SynthesizedApp

STACK_ID = "the compute stack's id"  # `Ref AWS::StackId`, resolved


def _resolve(value: Any, resources: dict[str, Any], region: str) -> Any:
    """The template's intrinsic functions that the role policies use, resolved."""
    if isinstance(value, list):
        return [_resolve(v, resources, region) for v in value]
    if not isinstance(value, dict):
        return value
    if value == {"Ref": "AWS::StackId"}:
        return STACK_ID
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        resource = resources[logical_id]
        assert attribute == "Arn", value
        if resource["Type"] == "AWS::Logs::LogGroup":
            name = resource["Properties"]["LogGroupName"]
            return f"arn:aws:logs:{region}:{TEST_ACCOUNT}:log-group:{name}:*"
        if resource["Type"] == "AWS::SQS::Queue":
            name = resource["Properties"]["QueueName"]
            return f"arn:aws:sqs:{region}:{TEST_ACCOUNT}:{name}"
        raise AssertionError(f"unexpected GetAtt {value}")
    return {k: _resolve(v, resources, region) for k, v in value.items()}


def _template_policies(template: dict[str, Any], role_name: str,
                       region: str) -> dict[str, Any]:
    resources = template["Resources"]
    role_id, role = next((lid, r) for lid, r in resources.items()
                         if r["Type"] == "AWS::IAM::Role"
                         and r["Properties"].get("RoleName") == role_name)
    policies = {p["PolicyName"]: _resolve(p["PolicyDocument"], resources, region)
                for p in role["Properties"].get("Policies", [])}
    attached = [r for r in resources.values() if r["Type"] == "AWS::IAM::Policy"
                and {"Ref": role_id} in r["Properties"].get("Roles", [])]
    assert len(attached) == 1, f"{role_name}: expected CDK's one default policy"
    policies[attached[0]["Properties"]["PolicyName"]] = _resolve(
        attached[0]["Properties"]["PolicyDocument"], resources, region)
    return policies


def _without_generated_secrets(document: dict[str, Any]) -> dict[str, Any]:
    """The operations function's default policy in database mode `rds` also reads the
    RDS-generated secrets, which CDK grants from the secrets (not part of the definition)."""
    return {**document, "Statement": [s for s in document["Statement"]
                                      if not str(s.get("Action")).count("secretsmanager:")]}


VARIANTS = [("existing_db_app", "existing", False), ("rds_app", "rds", True),
            ("existing_vpc_app", "existing", True)]


@pytest.mark.parametrize(("app_fixture", "database", "in_vpc"), VARIANTS)
def test_the_template_carries_the_definitions_policies(
        request: pytest.FixtureRequest, app_fixture: str, database: str, in_vpc: bool) -> None:
    # GIVEN the dev compute template of one database mode, synthesized for the test account
    app: SynthesizedApp = request.getfixturevalue(app_fixture)
    template = app.template_json("dev", "Compute")
    dev = environment("dev")
    for fn in DEPLOYED_FUNCTIONS:
        # WHEN the definition's policies for that function and mode are rendered
        specs = permissions.role_policies(dev, fn, database=database,  # type: ignore[arg-type]
                                          in_vpc=in_vpc)
        filled = {**values(dev, fn, region=dev.region, account=TEST_ACCOUNT),
                  "stack_id": STACK_ID}
        rendered = {p.name: p.document(filled) for p in specs}
        synthesized = _template_policies(template, fn.role_name("dev"), dev.region)
        # THEN the role has exactly those policies, with exactly those statements
        assert set(rendered) == set(synthesized), (app_fixture, fn.key)
        for name, document in rendered.items():
            have = synthesized[name]
            if not next(p for p in specs if p.name == name).inline:
                have = _without_generated_secrets(have)
            assert normalized(document) == normalized(have), (app_fixture, fn.key, name)


def test_local_role_policies_are_the_synthesized_ones(existing_db_app: SynthesizedApp) -> None:
    # GIVEN the dev compute template, synthesized for the test account
    template = existing_db_app.template_json("dev", "Compute")
    dev = environment("dev")
    for fn in FUNCTIONS:
        # WHEN the local cloud builds the same function's role policies for that environment
        local = role_policies(dev, fn, region=dev.region, account=TEST_ACCOUNT)
        synthesized = _template_policies(template, fn.role_name("dev"), dev.region)
        # THEN they are the same policies (by name: CDK's default policy too) with the same
        # statements
        assert set(local) == set(synthesized), fn.key
        for name in local:
            assert normalized(local[name]) == normalized(synthesized[name]), (fn.key, name)


def _context(statement: permissions.Statement, filled: dict[str, str]) -> dict[str, str]:
    """Request values that satisfy the statement's conditions (their first value)."""
    context = {}
    for condition in statement.conditions:
        value = condition.value if isinstance(condition.value, str) else condition.value[0]
        context[condition.key] = permissions.fill(value, filled)
    return context


def test_the_local_evaluator_allows_what_the_template_grants_and_refuses_the_rest(
        existing_db_app: SynthesizedApp) -> None:
    # GIVEN each pipeline function's role policies as the template carries them
    template = existing_db_app.template_json("dev", "Compute")
    dev = environment("dev")
    for fn in FUNCTIONS:
        documents = list(_template_policies(template, fn.role_name("dev"), dev.region).values())
        filled = values(dev, fn, region=dev.region, account=TEST_ACCOUNT)
        for spec in permissions.role_policies(dev, fn):
            for statement in spec.statements:
                context = _context(statement, filled)
                for action in statement.actions:
                    for pattern in statement.resources:
                        resource = permissions.fill(pattern, filled).replace("*", "any")
                        # THEN the local evaluator allows every action the definition grants
                        assert local_iam.evaluate(documents, action, resource, context), (
                            fn.key, action, resource)
        # AND refuses what no statement grants: another function's parameter, a write to the
        # images bucket, an event from another source
        other = next(f for f in FUNCTIONS if f is not fn)
        foreign = permissions.fill(
            permissions.parameter_arn(dev.parameter_name(other.database_url_name)), filled)
        assert not local_iam.evaluate(documents, "ssm:GetParameter", foreign, {}), fn.key
        images = f"arn:aws:s3:::{dev.images_bucket(TEST_ACCOUNT)}/user/upload.jpg"
        assert not local_iam.evaluate(documents, "s3:PutObject", images, {}), fn.key
        bus = f"arn:aws:events:{dev.region}:{TEST_ACCOUNT}:event-bus/default"
        assert not local_iam.evaluate(documents, "events:PutEvents", bus,
                                      {"events:source": "someone.else",
                                       "events:detail-type": "Anything"}), fn.key

