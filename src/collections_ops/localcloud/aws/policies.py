"""The functions' execution-role policies for the local cloud, rendered from the definition.

What a role may do is said once, in `pipeline.permissions`; the compute stack renders it with
its tokens, and this module with the local cloud's account and region and the ARNs of the
function's own resources as CloudFormation resolves them (a log group's `Arn` ends in `:*`).
The local IAM evaluator (`iam`) enforces the documents, and `tests/infra/test_local_policies.py`
proves them equal to the synthesized template's, statement for statement. Pure data: no AWS
call, no CDK import (the local cloud starts without node).
"""

from __future__ import annotations

import json
from typing import Any

from collections_ops.pipeline import Environment, Function, permissions

Document = permissions.Document


def log_group_arn(env: Environment, fn: Function, *, region: str, account: str) -> str:
    """`Fn::GetAtt LogGroup.Arn`: CloudFormation's log group ARN ends in `:*`."""
    return f"arn:aws:logs:{region}:{account}:log-group:{fn.log_group(env.name)}:*"


def dlq_arn(env: Environment, fn: Function, *, region: str, account: str) -> str:
    return f"arn:aws:sqs:{region}:{account}:{fn.dlq_name(env.name)}"


def values(env: Environment, fn: Function, *, region: str, account: str) -> dict[str, str]:
    """What the definition's placeholders stand for in the local cloud."""
    return {"partition": "aws", "region": region, "account": account,
            "log_group_arn": log_group_arn(env, fn, region=region, account=account),
            "dlq_arn": dlq_arn(env, fn, region=region, account=account)}


def role_policies(env: Environment, fn: Function, *, region: str,
                  account: str) -> dict[str, Document]:
    """Policy name -> document, for one function's role (CDK's default policy included)."""
    filled = values(env, fn, region=region, account=account)
    return {policy.name: policy.document(filled)
            for policy in permissions.role_policies(env, fn)}


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


ADMIN_POLICY: Document = {"Version": "2012-10-17",
                          "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
