"""What each function's execution role may do, as data: one list of policies per function and
environment, each statement with its actions, its resources as ARN patterns, its conditions and,
where a resource is a wildcard, why.

Two renderers read these and nothing else: the compute stack (`infrastructure/stacks/
permissions.py`) turns them into `iam.PolicyStatement`s with the stack's tokens, and the local
cloud (`localcloud/aws/policies.py`) into policy documents with its account and region, which its
IAM evaluator enforces. `tests/infra/test_local_policies.py` proves the two renderings equal on
the synthesized template, so a permission is granted or refused in one place.

A pattern names what only a renderer knows in braces: `{partition}`, `{region}`, `{account}`,
the ARNs of the function's own resources, `{log_group_arn}` and `{dlq_arn}` (in the template
they are `Fn::GetAtt`s; CloudFormation's log group `Arn` ends in `:*`), and `{stack_id}`, the
compute stack's own id (the operations function reads its status).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collections_ops.pipeline.constants import PARAMETER_STORE_POLICY, DatabaseMode
from collections_ops.pipeline.environments import Environment
from collections_ops.pipeline.functions import Function

LOGGING_POLICY = "LoggingPolicy"
PIPELINE_POLICY = "PipelinePolicy"
# The placeholders a renderer fills (see the module docstring).
PLACEHOLDERS = ("partition", "region", "account", "log_group_arn", "dlq_arn", "stack_id")
Document = dict[str, Any]


@dataclass(frozen=True)
class Condition:
    operator: str  # StringEquals
    key: str  # kms:ViaService
    value: str | tuple[str, ...]  # a list stays a list in the document, even of one


@dataclass(frozen=True)
class Statement:
    sid: str | None
    actions: tuple[str, ...]
    resources: tuple[str, ...]  # ARN patterns
    conditions: tuple[Condition, ...] = ()
    # Why a resource ends in a wildcard (cdk-nag's AwsSolutions-IAM5 is acknowledged with it).
    wildcard_reason: str | None = None

    def render(self, values: Mapping[str, str]) -> Document:
        """The statement as CDK writes it into the template: actions and resources de-duplicated
        and sorted, a single one as a plain string; condition values as given."""
        statement: Document = {"Effect": "Allow"}
        if self.sid is not None:
            statement["Sid"] = self.sid
        statement["Action"] = _one_or_sorted(self.actions)
        statement["Resource"] = _one_or_sorted(tuple(fill(r, values) for r in self.resources))
        if self.conditions:
            statement["Condition"] = conditions(self.conditions, values)
        return statement


@dataclass(frozen=True)
class Policy:
    name: str
    statements: tuple[Statement, ...]
    # False: CDK's default policy of the role -- what the constructs grant by themselves
    # (X-Ray tracing, the on-failure destination); the compute stack adds only the statements
    # no construct grants (`added`).
    inline: bool = True

    def document(self, values: Mapping[str, str]) -> Document:
        return {"Version": "2012-10-17", "Statement": [s.render(values) for s in self.statements]}


def fill(pattern: str, values: Mapping[str, str]) -> str:
    return pattern.format_map(values)


def conditions(specs: tuple[Condition, ...], values: Mapping[str, str]) -> Document:
    rendered: Document = {}
    for condition in specs:
        value: str | list[str] = (fill(condition.value, values) if isinstance(condition.value, str)
                                  else [fill(v, values) for v in condition.value])
        rendered.setdefault(condition.operator, {})[condition.key] = value
    return rendered


def _one_or_sorted(items: tuple[str, ...]) -> str | list[str]:
    unique = sorted(set(items))
    return unique[0] if len(unique) == 1 else unique


def default_policy_name(fn: Function) -> str:
    """The name CloudFormation gives CDK's default policy of the function's role: its logical
    id, the construct path `<Function>/Role/DefaultPolicy/Resource` made unique as CDK makes
    it (the path without `Resource`, then the first 8 hex digits of the path's MD5)."""
    path = f"{fn.logical_id}/Role/DefaultPolicy/Resource"
    digest = hashlib.md5(path.encode(), usedforsecurity=False).hexdigest()[:8].upper()
    return f"{fn.logical_id}RoleDefaultPolicy{digest}"


def parameter_arn(parameter: str) -> str:
    return f"arn:{{partition}}:ssm:{{region}}:{{account}}:parameter/{parameter.lstrip('/')}"


def _asynchronous(fn: Function) -> bool:
    """Triggered by an event, so failures go to a dead-letter queue (the operations function
    is invoked directly and has none)."""
    return fn.trigger.kind != "invoke"


def _parameter_store(env: Environment, fn: Function, database: DatabaseMode) -> Policy:
    # Exactly the parameters the handlers look up: the environment's own scope and the shared
    # keys, never another environment's scope.
    own = tuple(parameter_arn(p) for name in fn.secrets for p in env.parameter_lookup(name))
    # The operations function writes each pipeline function's own database URL on every
    # migration (reading it first: a URL that is current is not written again).
    function_urls = (() if _asynchronous(fn) else
                     tuple(parameter_arn(p) for p in env.function_url_parameters()))
    readable = own + function_urls
    statements = [
        # GetParameters: the handlers read an invocation's secrets in one call.
        Statement("ReadOwnParameters", ("ssm:GetParameter", "ssm:GetParameters"), readable),
        Statement(
            "DecryptOwnParametersThroughSsm", ("kms:Decrypt",),
            ("arn:{partition}:kms:{region}:{account}:key/*",),
            (Condition("StringEquals", "kms:ViaService", "ssm.{region}.amazonaws.com"),
             Condition("StringEquals", "kms:EncryptionContext:PARAMETER_ARN", readable)),
            wildcard_reason=(
                "SecureString parameters are encrypted with the account's aws/ssm key, whose "
                "key id differs per account and is not known at synth time. kms:Decrypt is "
                "bounded by conditions instead: only through SSM in this region "
                "(kms:ViaService) and only for this function's own parameters "
                "(kms:EncryptionContext:PARAMETER_ARN).")),
    ]
    if function_urls:
        statements.append(Statement("WriteEachFunctionsDatabaseUrl", ("ssm:PutParameter",),
                                    function_urls))
    if not _asynchronous(fn) and database == "rds":
        # The deploy-time migration writes DATABASE_URL from the RDS-generated secret, so the
        # operator's CLI finds it without an operator typing it.
        statements.append(Statement("WriteDatabaseUrlFromTheRdsSecret", ("ssm:PutParameter",),
                                    own))
    return Policy(PARAMETER_STORE_POLICY, tuple(statements))


def _pipeline(env: Environment, fn: Function) -> Policy | None:
    statements: list[Statement] = []
    if fn.reads_images:
        images = env.images_bucket("{account}")
        statements += [
            Statement("ReadUploadedImages", ("s3:GetObject",),
                      (f"arn:{{partition}}:s3:::{images}/*",),
                      wildcard_reason=(
                          "Object keys are chosen by uploaders (<user_id>/<name>), so reading an "
                          "upload needs every key of the images bucket; the grant is "
                          "s3:GetObject on that one bucket only.")),
            # Without s3:ListBucket, S3 answers 403 (not 404) for a key that does not exist,
            # and a deleted upload would read as "access denied".
            Statement("TellMissingUploadsApart", ("s3:ListBucket",),
                      (f"arn:{{partition}}:s3:::{images}",)),
        ]
    if fn.writes_thumbnails:
        thumbnails = env.thumbnails_bucket("{account}")
        statements.append(Statement(
            "WriteThumbnails", ("s3:PutObject",), (f"arn:{{partition}}:s3:::{thumbnails}/*",),
            wildcard_reason=(
                "Thumbnail keys mirror the uploader's keys (<user_id>/<item_id>.jpg); the grant "
                "is s3:PutObject on the thumbnails bucket only, which has no notification.")))
    if fn.publishes is not None:
        statements.append(Statement(
            "PublishOwnEvents", ("events:PutEvents",),
            ("arn:{partition}:events:{region}:{account}:event-bus/default",),
            (Condition("StringEquals", "events:source", fn.publishes.source),
             Condition("StringEquals", "events:detail-type", fn.publishes.detail_type))))
    if _asynchronous(fn):
        statements.append(Statement("DeadLetterOwnFailures", ("sqs:SendMessage",),
                                    ("{dlq_arn}",)))
    # The operations function touches no bucket, bus or queue: it has no such policy.
    return Policy(PIPELINE_POLICY, tuple(statements)) if statements else None


TRACING = Statement(
    None, ("xray:PutTraceSegments", "xray:PutTelemetryRecords"), ("*",),
    wildcard_reason=(
        "X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords do not "
        "support resource-level permissions, so AWS requires Resource '*'."))
# What the on-failure destination (an SQS queue) grants the role.
DESTINATION = Statement(None, ("sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"),
                        ("{dlq_arn}",))
# A function inside a VPC manages its network interfaces (AWSLambdaVPCAccessExecutionRole's
# actions); the compute stack adds this one itself.
VPC_NETWORKING = Statement(
    "ManageFunctionNetworkInterfaces",
    ("ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
     "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
     "ec2:UnassignPrivateIpAddresses"),
    ("*",),
    wildcard_reason=(
        "VPC attachment: ec2:CreateNetworkInterface/DescribeNetworkInterfaces/"
        "DeleteNetworkInterface (the actions of AWSLambdaVPCAccessExecutionRole) are not "
        "resource-scopable for Lambda's ENI management."))
# The operations function tells a rollback's Update apart by its own stack's status, and only
# that stack's (lambdas/operations/cfn_response.py); the migration construct adds this one.
READ_OWN_STACK_STATUS = Statement("ReadOwnStackStatus", ("cloudformation:DescribeStacks",),
                                  ("{stack_id}",))
# Statements of the default policy that no construct grants: the compute stack adds them.
ADDED_TO_DEFAULT_POLICY = (VPC_NETWORKING,)


def role_policies(env: Environment, fn: Function, *, database: DatabaseMode = "existing",
                  in_vpc: bool = False) -> tuple[Policy, ...]:
    """Every policy of `fn`'s role in `env`: the inline ones (ParameterStorePolicy, the guide's
    troubleshooting reads it by name; LoggingPolicy; PipelinePolicy) and CDK's default policy.

    Not here: in database mode `rds`, the operations function also reads the RDS-generated
    secrets, which CDK grants from the secrets themselves (their ARNs exist only in the stack).
    """
    policies = [
        _parameter_store(env, fn, database),
        Policy(LOGGING_POLICY, (Statement("WriteOwnLogGroup",
                                          ("logs:CreateLogStream", "logs:PutLogEvents"),
                                          ("{log_group_arn}",)),)),
    ]
    pipeline = _pipeline(env, fn)
    if pipeline is not None:
        policies.append(pipeline)
    default = [TRACING]
    if _asynchronous(fn):
        default.append(DESTINATION)
    else:
        default.append(READ_OWN_STACK_STATUS)
    if in_vpc:
        default.append(VPC_NETWORKING)
    policies.append(Policy(default_policy_name(fn), tuple(default), inline=False))
    return tuple(policies)
