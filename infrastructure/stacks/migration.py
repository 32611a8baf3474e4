"""Deploy-time migrations: a custom resource that CloudFormation hands to the operations
function, which applies the schema under collections_core's advisory lock.

A Lambda-backed custom resource needs no provider framework (no extra Node.js function with a
managed policy): CloudFormation invokes the operations function with the deploying identity's
rights and waits for its answer at the pre-signed ResponseURL. A failed migration answers
FAILED with the error, which fails the deploy and rolls it back.

The resource is updated -- the migration re-runs -- on every deploy that changes what the
schema depends on: the operations function's code (which carries the migrations), the
migrations themselves, or the database it points at. A deploy that changes none of these has
nothing to apply. The pipeline's `live` aliases depend on it, so new code goes live only after
the schema it expects is in place. A rollback's Update and a Delete apply nothing.
"""

from __future__ import annotations

import hashlib

import aws_cdk as cdk
from constructs import Construct

from collections_ops import pipeline
from collections_ops.pipeline import permissions
from stacks import permissions as stack_permissions
from stacks.code import LAMBDAS_DIR, source_hash
from stacks.function import PipelineFunction

RESOURCE_TYPE = "Custom::SchemaMigration"
MIGRATIONS_DIR = LAMBDAS_DIR / "shared" / "collections_core" / "migrations"


def migrations_hash() -> str:
    digest = hashlib.sha256()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


class SchemaMigration(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, operations: PipelineFunction,
                 database: str | None, timeout_s: int) -> None:
        super().__init__(scope, construct_id)
        properties: dict[str, str] = {
            "CodeHash": source_hash(pipeline.OPERATIONS),
            "MigrationsHash": migrations_hash(),
        }
        if database is not None:
            properties["Database"] = database  # a reference: the database comes first
        self.resource = cdk.CustomResource(
            self, "Resource",
            # The unqualified ARN: CloudFormation forbids changing a ServiceToken, and the
            # function is updated (and invoked as $LATEST) before this resource.
            service_token=operations.function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties=properties,
            # The function's own timeout plus the time to reach CloudFormation's URL.
            service_timeout=cdk.Duration.seconds(timeout_s + 60),
        )
        # A rollback's Update must not migrate (lambdas/operations/cfn_response.py): the
        # function tells one apart by its own stack's status, and only that stack's.
        operations.function.add_to_role_policy(stack_permissions.statement(
            permissions.READ_OWN_STACK_STATUS,
            stack_permissions.values(self, stack_id=cdk.Stack.of(self).stack_id)))
