"""The functions' execution-role policies, as the CDK app synthesizes them, for the local cloud.

The compute stack (`infrastructure/stacks/function.py`) gives each function's role three inline
policies (`ParameterStorePolicy`, `LoggingPolicy`, `PipelinePolicy`) and CDK adds a default
policy for what the construct grants by itself (X-Ray tracing, the on-failure destination).
The local cloud creates the same roles with the same documents, built here from the same
definition, with the ARNs resolved as CloudFormation resolves them (a log group's `Arn` ends in
`:*`). `tests/integration/test_local_iam.py` synthesizes the dev template and proves these
documents equal to the template's, statement for statement, so the two cannot drift apart
silently. Pure data: no AWS call, no CDK import (the local cloud starts without node).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from collections_ops.pipeline import PARAMETER_STORE_POLICY, Environment, Function

Document = dict[str, Any]


def default_policy_name(fn: Function) -> str:
    """The name CloudFormation gives CDK's default policy of the function's role: its logical
    id, the construct path `<Function>/Role/DefaultPolicy/Resource` made unique as CDK makes
    it (the path without `Resource`, then the first 8 hex digits of the path's MD5)."""
    path = f"{fn.logical_id}/Role/DefaultPolicy/Resource"
    digest = hashlib.md5(path.encode(), usedforsecurity=False).hexdigest()[:8].upper()
    return f"{fn.logical_id}RoleDefaultPolicy{digest}"


def _document(statements: list[dict[str, Any]]) -> Document:
    """As CDK renders a policy: a statement's actions and resources de-duplicated and sorted,
    one of them as a plain string (condition values stay as given)."""
    for statement in statements:
        for element in ("Action", "Resource"):
            value = statement.get(element)
            if isinstance(value, list):
                unique = sorted(set(value))
                statement[element] = unique[0] if len(unique) == 1 else unique
    return {"Version": "2012-10-17", "Statement": statements}


def parameter_arns(env: Environment, fn: Function, *, region: str, account: str) -> list[str]:
    """What the function may read: its secrets' lookup (the environment's scope, then the
    shared keys), as the compute stack grants it."""
    return [f"arn:aws:ssm:{region}:{account}:parameter/{parameter.lstrip('/')}"
            for name in fn.secrets for parameter in env.parameter_lookup(name)]


def log_group_arn(env: Environment, fn: Function, *, region: str, account: str) -> str:
    """`Fn::GetAtt LogGroup.Arn`: CloudFormation's log group ARN ends in `:*`."""
    return f"arn:aws:logs:{region}:{account}:log-group:{fn.log_group(env.name)}:*"


def dlq_arn(env: Environment, fn: Function, *, region: str, account: str) -> str:
    return f"arn:aws:sqs:{region}:{account}:{fn.dlq_name(env.name)}"


def role_policies(env: Environment, fn: Function, *, region: str,
                  account: str) -> dict[str, Document]:
    """Policy name -> document, for one pipeline function's role (triggered asynchronously,
    so it has a dead-letter queue; the in-VPC operations function is not part of the local
    cloud)."""
    params = parameter_arns(env, fn, region=region, account=account)
    dlq = dlq_arn(env, fn, region=region, account=account)
    policies: dict[str, Document] = {
        PARAMETER_STORE_POLICY: _document([
            {"Sid": "ReadOwnParameters", "Effect": "Allow",
             "Action": ["ssm:GetParameter", "ssm:GetParameters"],
             "Resource": params},
            {"Sid": "DecryptOwnParametersThroughSsm", "Effect": "Allow",
             "Action": "kms:Decrypt", "Resource": f"arn:aws:kms:{region}:{account}:key/*",
             "Condition": {"StringEquals": {
                 "kms:ViaService": f"ssm.{region}.amazonaws.com",
                 "kms:EncryptionContext:PARAMETER_ARN": params}}},
        ]),
        "LoggingPolicy": _document([
            {"Sid": "WriteOwnLogGroup", "Effect": "Allow",
             "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
             "Resource": log_group_arn(env, fn, region=region, account=account)},
        ]),
    }
    pipeline: list[dict[str, Any]] = []
    if fn.reads_images:
        images = env.images_bucket(account)
        pipeline += [
            {"Sid": "ReadUploadedImages", "Effect": "Allow", "Action": "s3:GetObject",
             "Resource": f"arn:aws:s3:::{images}/*"},
            {"Sid": "TellMissingUploadsApart", "Effect": "Allow", "Action": "s3:ListBucket",
             "Resource": f"arn:aws:s3:::{images}"},
        ]
    if fn.writes_thumbnails:
        pipeline.append({"Sid": "WriteThumbnails", "Effect": "Allow", "Action": "s3:PutObject",
                         "Resource": f"arn:aws:s3:::{env.thumbnails_bucket(account)}/*"})
    if fn.publishes is not None:
        pipeline.append({
            "Sid": "PublishOwnEvents", "Effect": "Allow", "Action": "events:PutEvents",
            "Resource": f"arn:aws:events:{region}:{account}:event-bus/default",
            "Condition": {"StringEquals": {"events:source": fn.publishes.source,
                                           "events:detail-type": fn.publishes.detail_type}}})
    pipeline.append({"Sid": "DeadLetterOwnFailures", "Effect": "Allow",
                     "Action": "sqs:SendMessage", "Resource": dlq})
    policies["PipelinePolicy"] = _document(pipeline)
    policies[default_policy_name(fn)] = _document([
        {"Effect": "Allow", "Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"],
         "Resource": "*"},
        {"Effect": "Allow",
         "Action": ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"],
         "Resource": dlq},
    ])
    return policies


def normalized(document: Any) -> Any:
    """A document in a canonical form for comparing: one-element lists as their element,
    lists sorted (IAM gives order no meaning), keys sorted."""
    if isinstance(document, dict):
        return {key: normalized(value) for key, value in sorted(document.items())}
    if isinstance(document, list):
        items = [normalized(item) for item in document]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))
    return document


ADMIN_POLICY: Document = _document([{"Effect": "Allow", "Action": "*", "Resource": "*"}])
