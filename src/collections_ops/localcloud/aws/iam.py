"""IAM in the local cloud: who may call the emulator, and with which permissions.

Every request to the emulator is authenticated by the front door (`frontdoor`: the SigV4
signature must verify against an active key, and a session's token must come with it, before
moto sees the request) and authorized against the caller's policies. There are two kinds of caller:

- the local cloud's administrator, an IAM user (`collections-local-admin`, `Action: *`) whose
  access key the CLI, the supervisor and the dispatchers' Lambda-service side use;
- each function's execution role, through an assumed-role session named after the function,
  as Lambda gives it (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN). Its
  policies are the synthesized ones (`policies`).

The keys are random, made once per state directory and kept in `credentials.json` (0600)
beside `state.json`; the emulator re-creates the same user key and role sessions at every
start, so a restart of the emulator invalidates no client. They are never put in argv, logs
or output.

moto's own policy evaluation (`moto/iam/access_control.py`) is replaced by `evaluate`, because
moto's, for the services the pipeline uses:
- checks every non-S3, non-SQS action against the resource `*`, so a statement scoped to an
  ARN (every statement of the pipeline's roles) never matches;
- evaluates a statement's `Condition` only against trust-policy values: any identity-policy
  condition fails, and a failed condition on an *Allow* statement is turned into an explicit
  *deny* (so `events:PutEvents` bounded by `events:source` could never be allowed);
- uses S3's API operation names (ListObjectsV2, HeadObject) as IAM actions.
`evaluate` follows AWS's logic for identity policies: an explicit Deny wins, else an Allow whose
Action, Resource and Condition all match, else denied; the request's resource ARN and
condition keys are derived here from its parameters (`_requests`). What is not enforced is
listed in docs/local-cloud.md (resource policies, KMS, Lambda's API, permission boundaries...).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

from collections_ops.localcloud.aws.policies import ADMIN_POLICY
from collections_ops.localcloud.state import StateDir
from collections_ops.pipeline import FUNCTIONS, Environment

log = logging.getLogger("collections.localcloud")
ADMIN_USER = "collections-local-admin"
PROVISIONING_USER = "collections-local-provisioning"
IAM_ENV = "COLLECTIONS_LOCAL_IAM"  # "0": moto authenticates nobody (as before IAM locally)
# Credentials of a state directory made before IAM was enforced locally: what moto accepted.
UNCHECKED = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# S3 API operations whose IAM action has another name.
S3_ACTIONS = {
    "ListObjects": "ListBucket", "ListObjectsV2": "ListBucket", "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions", "HeadObject": "GetObject",
    "DeleteObjects": "DeleteObject", "CopyObject": "PutObject",
    "GetBucketNotificationConfiguration": "GetBucketNotification",
    "PutBucketNotificationConfiguration": "PutBucketNotification",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "ListBuckets": "ListAllMyBuckets",
}
JSON_SERVICES = ("events", "logs", "ssm", "monitoring", "lambda", "sqs")
SIGNING_PREFIXES = {"monitoring": "cloudwatch"}  # signing name -> IAM service prefix


def enforced(environ: Any = os.environ) -> bool:
    return str(environ.get(IAM_ENV, "1")).strip() != "0"


# ------------------------------------------------------------------------- credentials


def _new_key(prefix: str) -> str:
    return prefix + secrets.token_hex(8).upper()


def load_or_create(state_dir: Path) -> dict[str, Any]:
    """The local cloud's credentials: `admin` and one session per function key."""
    path = StateDir(state_dir).credentials
    with contextlib.suppress(OSError, ValueError):
        creds = json.loads(path.read_text())
        if {fn.key for fn in FUNCTIONS} <= set(creds.get("functions", {})):
            return dict(creds)
    creds = {
        "admin": {"aws_access_key_id": _new_key("LKIA"),
                  "aws_secret_access_key": secrets.token_urlsafe(30)},
        "functions": {fn.key: {"aws_access_key_id": _new_key("ASIA"),
                               "aws_secret_access_key": secrets.token_urlsafe(30),
                               "aws_session_token": secrets.token_urlsafe(64)}
                      for fn in FUNCTIONS},
    }
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh)
    os.replace(tmp, path)
    return creds


def read(state_dir: Path | str) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        return dict(json.loads(StateDir(state_dir).credentials.read_text()))
    return None


def admin_credentials(state_dir: Path | str) -> dict[str, str]:
    """boto3 keyword arguments of the local cloud's administrator."""
    creds = read(state_dir)
    return dict(creds["admin"]) if creds else dict(UNCHECKED)


def admin_session(state_dir: Path | str, region: str) -> Any:
    import boto3

    creds = admin_credentials(state_dir)
    return boto3.session.Session(aws_access_key_id=creds["aws_access_key_id"],
                                 aws_secret_access_key=creds["aws_secret_access_key"],
                                 region_name=region)


def function_environment(creds: dict[str, Any], key: str) -> dict[str, str]:
    """The variables Lambda gives a function for its role's credentials."""
    session = creds["functions"][key]
    return {"AWS_ACCESS_KEY_ID": session["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": session["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": session["aws_session_token"]}


# ------------------------------------------------------------------------- in the emulator


def create_users(account: str, *, admin: dict[str, str], provisioning_key: str) -> str:
    """Before the server serves: the administrator, and the emulator's own provisioning user
    (its secret lives in this process only). Returns the provisioning secret."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account]["aws"]
    provisioning_secret = secrets.token_urlsafe(30)
    for user, key_id, secret in ((ADMIN_USER, admin["aws_access_key_id"],
                                  admin["aws_secret_access_key"]),
                                 (PROVISIONING_USER, provisioning_key, provisioning_secret)):
        backend.create_user(region_name="us-east-1", user_name=user)
        backend.put_user_policy(user, "AdministratorAccess", json.dumps(ADMIN_POLICY))
        key = backend.create_access_key(user_name=user)
        key.access_key_id, key.secret_access_key = key_id, secret
    return provisioning_secret


def issue_sessions(creds: dict[str, Any], env: Environment, *, account: str,
                   region: str) -> None:
    """Each function's role session, as Lambda assumes the role: session name = function
    name, with the kept keys (so clients holding them stay valid across restarts). moto does
    not expire sessions; Lambda refreshes them, so nothing observable is lost."""
    from moto.sts.models import sts_backends

    backend = sts_backends[account]["aws"]
    for fn in FUNCTIONS:
        session = creds["functions"][fn.key]
        assumed = backend.assume_role(
            region_name=region, role_session_name=fn.function_name(env.name),
            role_arn=f"arn:aws:iam::{account}:role/{fn.role_name(env.name)}",
            policy="", duration=12 * 3600, external_id="")
        assumed.access_key_id = session["aws_access_key_id"]
        assumed.secret_access_key = session["aws_secret_access_key"]
        assumed.session_token = session["aws_session_token"]


def install() -> None:
    """Authorize every request with `evaluate` (in moto's process). Authentication is the
    front door's (`frontdoor`): moto's own signature check, and its shortcuts, never run."""
    from moto import settings
    from moto.iam.access_control import IAMRequestBase

    from collections_ops.localcloud.aws import frontdoor

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    IAMRequestBase.check_action_permitted = _check_action_permitted  # type: ignore[method-assign]
    frontdoor.install()


# ------------------------------------------------------------------------- evaluation


def _check_action_permitted(self: Any, resource: str) -> None:
    service, _, operation = self._action.partition(":")
    service = SIGNING_PREFIXES.get(service, service)
    if service == "s3":
        operation = S3_ACTIONS.get(operation, operation)
    action = f"{service}:{operation}"
    if action == "sts:GetCallerIdentity":  # AWS allows it to everyone
        return
    principal = self._access_key.arn
    documents = [_policy_json(p) for p in self._access_key.collect_policies()]
    region = self._region
    for target, context in _requests(action, resource, self, region):
        context = {"aws:PrincipalArn": principal, "aws:RequestedRegion": region,
                   "aws:SecureTransport": "false", **context}
        if not evaluate(documents, action, target, context):
            message = (f"User: {principal} is not authorized to perform: {action} on "
                       f"resource: {target} because no identity-based policy allows the "
                       f"{action} action")
            log.info("access denied: %s", message)
            _raise_denied(self, message)


def _policy_json(policy: Any) -> dict[str, Any]:
    """A policy's document, parsed once per distinct text (every request collects them)."""
    if isinstance(policy, str):
        return _parsed(policy)
    if isinstance(policy, dict):
        return _parsed(str(policy["policy_document"]))
    default = next(v for v in policy.versions if v.is_default)  # a managed policy
    return _parsed(str(default.document))


@functools.lru_cache(maxsize=256)
def _parsed(document: str) -> dict[str, Any]:
    value = json.loads(document)
    return value if isinstance(value, dict) else {}


def _raise_denied(request: Any, message: str) -> None:
    """AWS's AccessDenied, in the protocol of the service that was called."""
    from moto.core.exceptions import JsonRESTError, _RESTError
    from moto.iam.access_control import S3IAMRequest
    from moto.s3.exceptions import S3ClientError

    error: Exception
    if isinstance(request, S3IAMRequest):
        raise S3ClientError("AccessDenied", message)  # a 403, as S3's AccessDenied is
    if request._service in JSON_SERVICES:
        # SQS answers its JSON protocol with the query protocol's code (AccessDenied).
        error = JsonRESTError("AccessDenied" if request._service == "sqs"
                              else "AccessDeniedException", message)
    else:  # the query protocol's error document, with AWS's whole message
        error = _RESTError("AccessDenied", message)
    error.code = 403
    raise error


def _body_json(request: Any) -> dict[str, Any]:
    body = request._body
    if not body:
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _requests(action: str, resource: str, request: Any,
              region: str) -> list[tuple[str, dict[str, str]]]:
    """(resource ARN, condition keys) to authorize: one per entry of a PutEvents call, one
    per parameter of GetParameters; moto's own resource for S3, SQS and STS."""
    account = request.account_id
    service, _, operation = action.partition(":")
    if service in ("s3", "sqs", "sts"):
        return [(resource, {})]
    body = _body_json(request)
    if service == "events" and operation == "PutEvents":
        out = []
        for entry in body.get("Entries", []) or [{}]:
            bus = str(entry.get("EventBusName") or "default")
            arn = bus if bus.startswith("arn:") else \
                f"arn:aws:events:{region}:{account}:event-bus/{bus}"
            out.append((arn, {"events:source": str(entry.get("Source", "")),
                              "events:detail-type": str(entry.get("DetailType", ""))}))
        return out
    if service == "logs" and body.get("logGroupName"):
        group = f"arn:aws:logs:{region}:{account}:log-group:{body['logGroupName']}"
        if operation == "PutLogEvents" and body.get("logStreamName"):
            return [(f"{group}:log-stream:{body['logStreamName']}", {})]
        return [(f"{group}:*", {})]  # CloudWatch Logs checks log-group actions on `…:*`
    if service == "ssm":
        names = body.get("Names") or ([body["Name"]] if body.get("Name") else [])
        if names:
            return [(f"arn:aws:ssm:{region}:{account}:parameter/{str(n).lstrip('/')}", {})
                    for n in names]
    return [(resource, {})]


def evaluate(documents: list[dict[str, Any]], action: str, resource: str,
             context: dict[str, str]) -> bool:
    """AWS's evaluation of identity policies: explicit Deny > Allow > implicit deny."""
    allowed = False
    for document in documents:
        statements = document.get("Statement", [])
        for statement in statements if isinstance(statements, list) else [statements]:
            if not _applies(statement, action, resource, context):
                continue
            if statement.get("Effect") == "Deny":
                return False
            if statement.get("Effect") == "Allow":
                allowed = True
    return allowed


def _listed(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _wild_ok(pattern: str, value: str, case: bool) -> bool:
    """IAM wildcards: `*` any run of characters, `?` one character; nothing else special."""
    return _wildcard(pattern, case).fullmatch(value) is not None


@functools.lru_cache(maxsize=1024)
def _wildcard(pattern: str, case: bool) -> re.Pattern[str]:
    """A policy's pattern as a regex, built once (every request matches every statement)."""
    parts = [re.escape(p) for p in re.split(r"([*?])", pattern)]
    regex = "".join(".*" if p == r"\*" else "." if p == r"\?" else p for p in parts)
    return re.compile(regex, 0 if case else re.IGNORECASE)


def _element_matches(statement: dict[str, Any], name: str, value: str, *, case: bool) -> bool:
    """`Action`/`Resource` (or their `Not` forms) of a statement cover `value`."""
    if name in statement:
        return any(_wild_ok(p, value, case) for p in _listed(statement[name]))
    if f"Not{name}" in statement:
        return not any(_wild_ok(p, value, case) for p in _listed(statement[f"Not{name}"]))
    return name == "Resource"  # no Resource element (trust policies): any resource


def _applies(statement: dict[str, Any], action: str, resource: str,
             context: dict[str, str]) -> bool:
    if not _element_matches(statement, "Action", action, case=False) or \
            not _element_matches(statement, "Resource", resource, case=True):
        return False
    effect_deny = statement.get("Effect") == "Deny"
    for operator, block in (statement.get("Condition") or {}).items():
        for key, expected in block.items():
            result = _condition(operator, key, expected, context)
            if result is None:  # an operator this evaluator does not know: be strict
                log.warning("unsupported IAM condition operator %s", operator)
                result = effect_deny
            if not result:
                return False
    return True


def _condition(operator: str, key: str, expected: Any, context: dict[str, str]) -> bool | None:
    if_exists = operator.endswith("IfExists")
    base = operator[:-len("IfExists")] if if_exists else operator
    # Condition key names are case-insensitive in AWS (`Events:Source` is `events:source`).
    context = {name.lower(): value for name, value in context.items()}
    key = key.lower()
    present = key in context
    if base == "Null":
        return (not present) == (str(expected).lower() == "true")
    if not present:
        return if_exists or base.startswith(("StringNot", "ArnNot"))
    value = context[key]
    wanted = _listed(expected)
    results = {
        "StringEquals": value in wanted,
        "StringNotEquals": value not in wanted,
        "StringEqualsIgnoreCase": value.lower() in [w.lower() for w in wanted],
        "StringNotEqualsIgnoreCase": value.lower() not in [w.lower() for w in wanted],
        "StringLike": any(_wild_ok(w, value, True) for w in wanted),
        "StringNotLike": not any(_wild_ok(w, value, True) for w in wanted),
        "ArnEquals": value in wanted, "ArnNotEquals": value not in wanted,
        "ArnLike": any(_wild_ok(w, value, True) for w in wanted),
        "ArnNotLike": not any(_wild_ok(w, value, True) for w in wanted),
        "Bool": value.lower() in [w.lower() for w in wanted],
    }
    return results.get(base)
