"""Small readers over a synthesized CloudFormation template (plain JSON)."""

from __future__ import annotations

from typing import Any

from collections_ops import pipeline as definition

Template = dict[str, Any]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resources(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    return {logical_id: resource for logical_id, resource in template["Resources"].items()
            if resource["Type"] == resource_type}


def the(template: Template, resource_type: str, **properties: Any) -> tuple[str, dict[str, Any]]:
    """The one resource of `resource_type` whose properties include `properties`."""
    found = [(logical_id, resource)
             for logical_id, resource in resources(template, resource_type).items()
             if all(resource.get("Properties", {}).get(k) == v for k, v in properties.items())]
    assert len(found) == 1, f"expected one {resource_type} with {properties}, found {len(found)}"
    return found[0]


def function(template: Template, fn: definition.Function, env_name: str
             ) -> tuple[str, dict[str, Any]]:
    return the(template, "AWS::Lambda::Function", FunctionName=fn.function_name(env_name))


def dead_letter_queue_id(template: Template, fn: definition.Function, env_name: str) -> str:
    return the(template, "AWS::SQS::Queue", QueueName=fn.dlq_name(env_name))[0]


def role_id(template: Template, fn: definition.Function, env_name: str) -> str:
    return the(template, "AWS::IAM::Role", RoleName=fn.role_name(env_name))[0]


def role_statements(template: Template, role: str) -> list[dict[str, Any]]:
    """Every statement the role gets: its inline policies and the policies attached to it."""
    statements = []
    for policy in template["Resources"][role]["Properties"].get("Policies", []):
        statements += policy["PolicyDocument"]["Statement"]
    for policy in resources(template, "AWS::IAM::Policy").values():
        if {"Ref": role} in policy["Properties"]["Roles"]:
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def inline_policy(template: Template, role: str, name: str) -> dict[str, Any]:
    for policy in template["Resources"][role]["Properties"].get("Policies", []):
        if policy["PolicyName"] == name:
            return dict(policy["PolicyDocument"])
    raise AssertionError(f"role {role} has no inline policy {name}")


def live_alias_id(template: Template, function_id: str) -> str:
    """The `live` alias of a function: what its triggers invoke."""
    alias_id, _ = the(template, "AWS::Lambda::Alias", FunctionName={"Ref": function_id},
                      Name="live")
    return alias_id


def get_att_arn(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}
