"""The local cloud's execution roles carry the synthesized policies: for every pipeline
function, the role's policies built by `localcloud.policies` equal the dev template's inline
policies and CDK's default policy, statement for statement (ARNs resolved as CloudFormation
resolves them). The local cloud enforces these documents, so a permission missing from the
stack fails locally too."""

from __future__ import annotations

from typing import Any

from collections_ops.localcloud.policies import normalized, role_policies
from collections_ops.pipeline import FUNCTIONS, environment
from tests.infra.support import TEST_ACCOUNT, SynthesizedApp


def _resolve(value: Any, resources: dict[str, Any], region: str) -> Any:
    """The template's intrinsic functions that the role policies use, resolved."""
    if isinstance(value, list):
        return [_resolve(v, resources, region) for v in value]
    if not isinstance(value, dict):
        return value
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
