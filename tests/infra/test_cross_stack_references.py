"""The compute stack takes the database stack's values (subnets, security group, secret,
endpoints) as strong references: imports of that stack's exports, which CloudFormation tracks
-- an exported value cannot change or vanish while the functions use it, and the database
stack cannot be deleted before the compute stack stopped using it -- never outputs read by
name when the compute stack deploys (Fn::GetStackOutput, the app's default)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from collections_ops import pipeline as definition
from tests.infra import templates as t
from tests.infra.support import SynthesizedApp

AWS_ENVIRONMENTS = [e.name for e in definition.ENVIRONMENTS.values() if not e.is_local]


def intrinsics(value: Any, name: str) -> Iterator[Any]:
    """Every argument of intrinsic `name` anywhere inside `value`."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == name:
                yield inner
            yield from intrinsics(inner, name)
    elif isinstance(value, list):
        for inner in value:
            yield from intrinsics(inner, name)


def exports(template: dict[str, Any]) -> set[str]:
    return {o["Export"]["Name"] for o in template.get("Outputs", {}).values() if "Export" in o}


def imported(value: Any) -> set[str]:
    return set(intrinsics(value, "Fn::ImportValue"))


@pytest.mark.parametrize("app_name", ["rds_app", "rds_proxy_app"])
def test_compute_imports_the_database_stacks_exports(request: pytest.FixtureRequest,
                                                     app_name: str) -> None:
    app: SynthesizedApp = request.getfixturevalue(app_name)
    for env_name in app.stacks:
        compute = app.template_json(env_name, "Compute")
        database = app.template_json(env_name, "Database")
        assert not list(intrinsics(compute, "Fn::GetStackOutput"))
        names = imported(compute)
        assert names, "the compute stack takes nothing from the database stack"
        # every import is an export of this environment's database stack
        assert names <= exports(database)
        stack_name = definition.environment(env_name).stack_name("Database")
        assert all(n.startswith(f"{stack_name}:") for n in names)


@pytest.mark.parametrize("env_name", AWS_ENVIRONMENTS)
def test_each_value_the_functions_take_from_the_database_is_an_import(
        rds_app: SynthesizedApp, env_name: str) -> None:
    compute = rds_app.template_json(env_name, "Compute")
    for fn in definition.DEPLOYED_FUNCTIONS:
        _, function = t.function(compute, fn, env_name)
        vpc = function["Properties"]["VpcConfig"]
        for value in [*vpc["SubnetIds"], *vpc["SecurityGroupIds"]]:
            assert imported(value), f"{fn.key}: {json.dumps(value)}"
    _, operations = t.function(compute, definition.OPERATIONS, env_name)
    variables = operations["Properties"]["Environment"]["Variables"]
    assert imported(variables["DATABASE_SECRET_ARN"])
    (migration,) = t.resources(compute, "Custom::SchemaMigration").values()
    assert imported(migration["Properties"]["Database"])  # a new database re-runs it


def test_the_proxy_endpoint_is_an_import_too(rds_proxy_app: SynthesizedApp) -> None:
    compute = rds_proxy_app.template_json("dev", "Compute")
    _, operations = t.function(compute, definition.OPERATIONS, "dev")
    assert imported(operations["Properties"]["Environment"]["Variables"]["DATABASE_HOST"])


def test_monitoring_takes_nothing_from_the_other_stacks(rds_app: SynthesizedApp) -> None:
    for env_name in rds_app.stacks:
        monitoring = rds_app.template_json(env_name, "Monitoring")
        assert not imported(monitoring)
        assert not list(intrinsics(monitoring, "Fn::GetStackOutput"))
