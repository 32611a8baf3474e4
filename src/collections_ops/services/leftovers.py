"""What earlier deploys left in the account that the next deploy must deal with.

Resources the stacks retain under a fixed name -- the images bucket (uploads are user data),
the thumbnails bucket, and in production the functions' log groups -- outlive their stack: a
first deploy that failed and rolled back, or a `collections destroy`, leaves them behind, and
the next deploy would fail with "already exists". `find` names each one that exists while no
live stack owns it; `deploy` then has CloudFormation adopt them (`cdk deploy
--import-existing-resources`: a change set imports an existing resource whose static name and
Retain policy the template declares, instead of creating it), so a retry simply works and the
uploads stay where every command, function and the guide look for them.

Why adopt rather than let CloudFormation generate the names: the names are the contract -- the
functions' environment, every command, the local cloud and the images bucket's notification
(whose Lambda permission names the bucket, keeping the graph acyclic without a custom resource)
-- and a generated name would leave a redeployed environment's uploads in a bucket nothing
points at.

Stacks are left behind too: a stack the app no longer has (the database stack, once the
environment's database mode is `existing`) keeps running -- and costing -- until something
deletes it. `stale_stacks` names them from what the account holds, not from the record (which
may be lost or older); `deploy` removes them once the stacks it deployed stopped importing from
them, and `destroy` removes them with the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from collections_ops import aws
from collections_ops.checks import Check
from collections_ops.pipeline import DEPLOYED_FUNCTIONS, Environment

BUCKET = "AWS::S3::Bucket"
LOG_GROUP = "AWS::Logs::LogGroup"
# A stack that failed its creation: the CDK CLI deletes it before creating it again, so it
# owns nothing the next deploy could keep.
FAILED_CREATION = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED"})
STACK_KINDS = ("Database", "Compute", "Monitoring")


@dataclass(frozen=True)
class Retained:
    """A resource the stacks keep when they are deleted, under a name fixed by the definition."""

    resource_type: str  # AWS::S3::Bucket | AWS::Logs::LogGroup
    name: str
    what: str  # what it is, for the operator
    stack: str  # the stack that declares it


@dataclass(frozen=True)
class Leftover:
    """A retained resource that exists while no live stack owns it."""

    resource: Retained
    detail: str  # what it holds
    adoptable: bool = True  # False: the name is taken in another account

    def sentence(self) -> str:
        r = self.resource
        return f"{r.what} {r.name} ({self.detail})"


def retained(env: Environment, account: str) -> list[Retained]:
    """Every resource of `env`'s stacks that is retained under a fixed name (a template test
    holds the stacks to this list)."""
    compute = env.stack_name("Compute")
    found = [Retained(BUCKET, env.images_bucket(account), "images bucket", compute),
             Retained(BUCKET, env.thumbnails_bucket(account), "thumbnails bucket", compute)]
    if env.production:  # production keeps its functions' logs
        found += [Retained(LOG_GROUP, fn.log_group(env.name), "log group", compute)
                  for fn in DEPLOYED_FUNCTIONS]
    return found


def stack_status(cfn: Any, name: str) -> str | None:
    """The stack's status; None when there is no such stack (or only a deleted one)."""
    found = aws.stack_or_none(partial(cfn.describe_stacks, StackName=name))
    stacks = (found or {}).get("Stacks") or []
    status = str(stacks[0]["StackStatus"]) if stacks else None
    return None if status in (None, "DELETE_COMPLETE") else status


def _owned(cfn: Any, name: str) -> set[str]:
    """Physical ids of the resources a live stack owns (none for a failed creation)."""
    if stack_status(cfn, name) in (None, *FAILED_CREATION):
        return set()
    pages = cfn.get_paginator("list_stack_resources").paginate(StackName=name)
    return {r.get("PhysicalResourceId", "") for page in pages
            for r in page["StackResourceSummaries"] if r.get("ResourceStatus") !=
            "DELETE_COMPLETE"}


def _bucket(s3: Any, name: str, account: str) -> tuple[bool, str] | None:
    """(ours, what it holds) for an existing bucket; None when there is none."""
    try:
        s3.head_bucket(Bucket=name, ExpectedBucketOwner=account)
    except Exception as exc:
        if aws.is_not_found(exc):
            return None
        if aws.is_access_denied(exc):  # ExpectedBucketOwner: another account's bucket is a 403
            return False, f"owned by another account than {account}"
        raise
    listed = s3.list_objects_v2(Bucket=name, MaxKeys=1)
    return True, "holds objects" if listed.get("KeyCount") else "empty"


def _log_group(logs: Any, name: str) -> str | None:
    """What an existing log group holds; None when there is none."""
    groups = logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
    for group in groups:
        if group["logGroupName"] == name:
            return f"{int(group.get('storedBytes', 0))} bytes of logs"
    return None


def find(client: Any, env: Environment, account: str) -> list[Leftover]:
    """The retained resources of `env` that exist in the account but belong to no live stack."""
    owned: dict[str, set[str]] = {}
    out = []
    for resource in retained(env, account):
        if resource.stack not in owned:
            owned[resource.stack] = _owned(client("cloudformation"), resource.stack)
        if resource.name in owned[resource.stack]:
            continue
        if resource.resource_type == BUCKET:
            bucket = _bucket(client("s3"), resource.name, account)
            if bucket is not None:
                out.append(Leftover(resource, bucket[1], adoptable=bucket[0]))
        else:
            held = _log_group(client("logs"), resource.name)
            if held is not None:
                out.append(Leftover(resource, held))
    return out


def check(found: list[Leftover]) -> Check:
    """The preflight line: what the deploy adopts, or what it cannot."""
    foreign = [f for f in found if not f.adoptable]
    if foreign:
        return Check("leftovers", False, "; ".join(f.sentence() for f in foreign),
                     "the name is this environment's and this account's: delete the bucket in "
                     "the account that owns it, or deploy to that account")
    if not found:
        return Check("leftovers", True, "none: nothing retained by an earlier deploy")
    return Check("leftovers", True, "adopting what an earlier deploy left: "
                 + "; ".join(f.sentence() for f in found))


# --------------------------------------------------------------------------- stacks


def stale_stacks(cfn: Any, env: Environment, wanted: list[str]) -> list[str]:
    """Stacks of `env` that exist in the account but are not among the app's `wanted` ones
    (the database stack, once the database mode is `existing`)."""
    return [name for name in (env.stack_name(kind) for kind in STACK_KINDS)
            if name not in wanted and stack_status(cfn, name) is not None]


def stack_outputs(cfn: Any, name: str) -> dict[str, str]:
    found = aws.stack_or_none(partial(cfn.describe_stacks, StackName=name))
    stacks = (found or {}).get("Stacks") or [{}]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def url_points_into(url: str, cfn: Any, stack: str) -> bool:
    """Whether a DATABASE_URL names the host of the database (or its proxy) of `stack`."""
    hosts = {v for k, v in stack_outputs(cfn, stack).items()
             if k in ("DatabaseEndpoint", "DatabaseProxyEndpoint")}
    return urlsplit(url).hostname in hosts


def protected_instances(cfn: Any, rds: Any, stack: str) -> list[str]:
    """The stack's RDS instances with deletion protection on (production's): CloudFormation
    cannot delete the stack until it is turned off."""
    pages = cfn.get_paginator("list_stack_resources").paginate(StackName=stack)
    ids = [r["PhysicalResourceId"] for page in pages for r in page["StackResourceSummaries"]
           if r["ResourceType"] == "AWS::RDS::DBInstance" and r.get("PhysicalResourceId")]
    protected = []
    for identifier in ids:
        found = aws.or_none(partial(rds.describe_db_instances, DBInstanceIdentifier=identifier))
        if any(i.get("DeletionProtection") for i in (found or {}).get("DBInstances", [])):
            protected.append(identifier)
    return protected


def remove(cfn: Any, name: str, *, poll_s: int = 15) -> None:
    """Delete the stack and wait until CloudFormation has (a failure raises WaiterError)."""
    cfn.delete_stack(StackName=name)
    cfn.get_waiter("stack_delete_complete").wait(
        StackName=name, WaiterConfig={"Delay": poll_s, "MaxAttempts": 3600 // poll_s})
