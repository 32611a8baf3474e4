"""What a stack keeps when it is deleted, and under which name: a retained resource with a fixed
name outlives a failed first deploy or a destroy, and the next deploy can only create it again
if `collections deploy` adopts it (services/leftovers.py). Every such resource in the templates
must be one the deploy looks for -- and with a static name, which is what CloudFormation's
import needs."""

from __future__ import annotations

from typing import Any

import pytest

from collections_ops import pipeline as definition
from collections_ops.services import leftovers
from tests.infra.support import TEST_ACCOUNT, SynthesizedApp

KEPT = ("Retain", "RetainExceptOnCreate", "Snapshot")
# The property that fixes each retained type's physical name; None: the type has no name of
# its own (a version is numbered by Lambda, an RDS instance's id is generated unless set).
NAME_PROPERTY: dict[str, str | None] = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Lambda::Version": None,
    "AWS::RDS::DBInstance": "DBInstanceIdentifier",
}


def retained_with_a_name(template: dict[str, Any]) -> set[tuple[str, Any]]:
    found = set()
    for logical_id, resource in template["Resources"].items():
        if resource.get("DeletionPolicy") not in KEPT:
            continue
        kind = resource["Type"]
        assert kind in NAME_PROPERTY, f"{logical_id}: a retained {kind}; say which property " \
                                      "names it (NAME_PROPERTY) and whether deploy adopts it"
        name_property = NAME_PROPERTY[kind]
        name = resource.get("Properties", {}).get(name_property) if name_property else None
        if name is not None:
            assert isinstance(name, str), f"{logical_id}: {name!r} is not static"
            found.add((kind, name))
    return found


@pytest.mark.parametrize("app_name", ["existing_db_app", "rds_app", "rds_proxy_app",
                                      "existing_vpc_app"])
def test_every_retained_name_is_one_the_deploy_adopts(request: pytest.FixtureRequest,
                                                      app_name: str) -> None:
    app: SynthesizedApp = request.getfixturevalue(app_name)
    for env_name, stacks in app.stacks.items():
        env = definition.environment(env_name)
        expected = {(r.resource_type, r.name) for r in leftovers.retained(env, TEST_ACCOUNT)}
        for stack in stacks.all:
            kind = stack.stack_name.removeprefix("Collections").partition("Stack")[0]
            named = retained_with_a_name(app.template_json(env_name, kind))
            declared = {(r.resource_type, r.name) for r in leftovers.retained(env, TEST_ACCOUNT)
                        if r.stack == stack.stack_name}
            assert named == declared, stack.stack_name
            expected -= named
        assert not expected, f"{env_name}: the deploy looks for {expected}, no stack has them"


def test_production_keeps_its_log_groups_and_dev_does_not(existing_db_app: SynthesizedApp
                                                          ) -> None:
    def log_groups(env_name: str) -> set[tuple[str, Any]]:
        return {n for n in retained_with_a_name(existing_db_app.template_json(env_name,
                                                                              "Compute"))
                if n[0] == leftovers.LOG_GROUP}

    assert log_groups("prod") == {(leftovers.LOG_GROUP, fn.log_group("prod"))
                                  for fn in definition.DEPLOYED_FUNCTIONS}
    assert log_groups("dev") == set()
