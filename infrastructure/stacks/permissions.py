"""The definition's role policies (`collections_ops.pipeline.permissions`) as CDK statements.

The placeholders of a pattern become the stack's partition, region and account and the tokens
of the function's own log group and dead-letter queue; a statement whose resource is a wildcard
is acknowledged to cdk-nag with the reason the definition gives. Nothing here decides what a
role may do.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from constructs import Construct

from collections_ops.pipeline import permissions
from stacks import nag


def values(scope: Construct, **resources: str) -> dict[str, str]:
    """What the patterns' placeholders stand for in `scope`'s stack."""
    stack = cdk.Stack.of(scope)
    return {"partition": stack.partition, "region": stack.region, "account": stack.account,
            **resources}


def statement(spec: permissions.Statement, filled: Mapping[str, str]) -> iam.PolicyStatement:
    return iam.PolicyStatement(
        sid=spec.sid,
        actions=list(spec.actions),
        resources=[permissions.fill(r, filled) for r in spec.resources],
        conditions=permissions.conditions(spec.conditions, filled) or None,
    )


def document(policy: permissions.Policy, filled: Mapping[str, str]) -> iam.PolicyDocument:
    return iam.PolicyDocument(statements=[statement(s, filled) for s in policy.statements])


def acknowledge_wildcards(scope: Construct, policy: permissions.Policy,
                          filled: Mapping[str, str]) -> None:
    """cdk-nag's AwsSolutions-IAM5, one finding per wildcard resource, with the definition's
    reason. `Resource::*` findings of one role share one acknowledgment (their reasons
    joined), as cdk-nag reports them once."""
    anywhere = [s.wildcard_reason for s in policy.statements
                if s.wildcard_reason and "*" in s.resources]
    if anywhere:
        nag.acknowledge(scope, "AwsSolutions-IAM5", " ".join(anywhere), finding="Resource::*")
    for spec in policy.statements:
        for pattern in spec.resources:
            if pattern != "*" and pattern.endswith("*") and spec.wildcard_reason:
                resource = permissions.fill(pattern, filled)
                nag.acknowledge(scope, "AwsSolutions-IAM5", spec.wildcard_reason,
                                finding=f"Resource::{nag.rendered(scope, resource)}")
