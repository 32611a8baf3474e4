"""The guide's cost controls -- reserved concurrency and the thumbnail lifecycle rule -- compared
with what is deployed, and set by hand when an operator must act before the next deploy.

The definition (`Environment.reserved_concurrency`, `Environment.thumbnail_expiry_days`) is what
the CDK app deploys; a value set here differs from it until the definition is changed, and the
next `collections deploy` puts the definition's value back. The drift reports say so.

The lifecycle rule is the storage stack's: rule `ExpireThumbnails` on the thumbnails bucket (a
bucket of its own, so the rule covers the whole bucket, no prefix), expiring objects after
`thumbnail_expiry_days` and aborting incomplete multipart uploads after 7 days. The guide's own
command put the rule on the images bucket, which here would expire the originals.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from collections_ops import aws, errors
from collections_ops.pipeline import (
    FUNCTIONS,
    Environment,
    Function,
)

# Comparing and writing the lifecycle rule is shared with the local cloud's provisioning.
from collections_ops.stack_resources import LifecycleDrift as LifecycleDrift
from collections_ops.stack_resources import apply_lifecycle as apply_lifecycle
from collections_ops.stack_resources import lifecycle_drift as lifecycle_drift

# --------------------------------------------------------------------------- concurrency


@dataclass(frozen=True)
class ConcurrencyDrift:
    key: str
    function_name: str
    expected: int | None  # the definition's reserved concurrency; None: unreserved
    deployed: int | None  # what Lambda has; None: unreserved
    exists: bool = True

    @property
    def in_sync(self) -> bool:
        return self.exists and self.expected == self.deployed

    @property
    def detail(self) -> str:
        if not self.exists:
            return "function not deployed"

        def shown(n: int | None) -> str:
            return "unreserved" if n is None else f"{n} reserved"

        if self.in_sync:
            return shown(self.deployed)
        return f"deployed {shown(self.deployed)}, definition says {shown(self.expected)}"


def function_concurrency(lam: Any, env: Environment, fn: Function) -> ConcurrencyDrift:
    name = fn.function_name(env.name)
    expected = env.reserved_concurrency.get(fn.key)
    response = aws.or_none(lambda: lam.get_function_concurrency(FunctionName=name))
    if response is None:
        return ConcurrencyDrift(fn.key, name, expected, None, exists=False)
    deployed = response.get("ReservedConcurrentExecutions")
    return ConcurrencyDrift(fn.key, name, expected, None if deployed is None else int(deployed))


def concurrency_drift(lam: Any, env: Environment) -> list[ConcurrencyDrift]:
    """Reserved concurrency per function: the definition's against Lambda's."""
    return [function_concurrency(lam, env, fn) for fn in FUNCTIONS]


def set_concurrency(lam: Any, env: Environment, fn: Function, n: int | None) -> ConcurrencyDrift:
    """Reserve `n` concurrent executions for `fn` (0 stops it from running at all: a brake);
    None removes the reservation. Returns the new state against the definition."""
    name = fn.function_name(env.name)
    if n is not None and n < 0:
        raise errors.UsageError(f"reserved concurrency must be 0 or more, not {n}")
    try:
        if n is None:
            lam.delete_function_concurrency(FunctionName=name)
        else:
            lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=n)
    except Exception as exc:
        if aws.is_not_found(exc):
            raise errors.NotFound(f"function {name} is not deployed",
                                  f"deploy it: `collections deploy {env.name}`") from None
        if aws.is_refused_value(exc):
            message = aws.error_message(exc)
            raise errors.Failed(
                f"Lambda refused {n} reserved executions for {name}: {message}",
                "an account keeps at least 100 unreserved executions; lower the value or ask "
                "for a higher concurrency quota") from None
        raise
    return function_concurrency(lam, env, fn)


# --------------------------------------------------------------------------- live alias


@dataclass(frozen=True)
class AliasDrift:
    """Where `live` points, against the version the compute stack published last.

    They differ after `rollback --function`, `configure` or `tune --apply` (each moves `live`
    outside CloudFormation); the next deploy moves `live` to the stack's version again.
    """

    key: str
    function_name: str
    stack_version: str | None  # None: the stack has no version of this function
    live_version: str | None  # None: no `live` alias

    @property
    def in_sync(self) -> bool:
        return self.stack_version is None or self.stack_version == self.live_version

    @property
    def detail(self) -> str:
        if self.in_sync:
            return f"{self.function_name}: live = version {self.live_version}"
        if self.live_version is None:
            return f"{self.function_name} has no `live` alias (the stack published version " \
                   f"{self.stack_version})"
        return (f"{self.function_name}: live runs version {self.live_version}, the stack's is "
                f"{self.stack_version} (moved outside CloudFormation; a deploy moves it back)")


def stack_versions(cfn: Any, stack_name: str) -> dict[str, str]:
    """Function name -> the version number of the stack's `AWS::Lambda::Version` resources
    (their physical id is the version's ARN, `...:function:NAME:N`). {} without the stack."""
    found: dict[str, str] = {}
    try:
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name):
            for resource in page["StackResourceSummaries"]:
                if resource["ResourceType"] != "AWS::Lambda::Version":
                    continue
                arn = resource.get("PhysicalResourceId") or ""
                _, _, tail = arn.partition(":function:")
                name, _, version = tail.partition(":")
                if name and version.isdigit():
                    found[name] = version
    except Exception as exc:
        if aws.is_missing_stack(exc):
            return {}
        raise
    return found


def alias_drift(cfn: Any, lam: Any, env: Environment) -> list[AliasDrift]:
    from collections_ops.pipeline import DEPLOYED_FUNCTIONS, LIVE_ALIAS

    published = stack_versions(cfn, env.stack_name("Compute"))
    out = []
    for fn in DEPLOYED_FUNCTIONS:
        name = fn.function_name(env.name)
        if name not in published:
            continue
        alias = aws.or_none(partial(lam.get_alias, FunctionName=name, Name=LIVE_ALIAS))
        live = None if alias is None else str(alias["FunctionVersion"])
        out.append(AliasDrift(fn.key, name, published[name], live))
    return out
