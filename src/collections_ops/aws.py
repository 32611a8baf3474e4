"""Typed access to AWS for the operator side, in the manner of Chalice's `awsclient.py`.

Two things are decided here and nowhere else: how an error code is read from a botocore error
(`error_code`), and what a code means — "it does not exist" (`is_not_found`, `or_none`: a caller
gets `None`, a value), "not allowed" (`is_access_denied`), "in use" (`is_conflict`), "that value
is refused" (`is_refused_value`), "no such stack" (`is_missing_stack`) — so no caller writes
`try/except ...: if code == ...` around a call, or spells a code. `translate` turns the
errors every command can hit (no credentials, no region, expired session, access denied,
unreachable endpoint) into domain errors. botocore is never imported at module level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from collections_ops import errors

T = TypeVar("T")

# The codes AWS (and moto) use for "no such thing", across the services the pipeline uses.
NOT_FOUND_CODES = frozenset({
    "ResourceNotFoundException",  # Lambda, CloudWatch Logs, Events
    "ParameterNotFound",  # SSM
    "NoSuchBucket", "NoSuchKey", "404", "NotFound",  # S3 (HEAD answers a bare 404)
    "NoSuchLifecycleConfiguration",
    "NoSuchEntity",  # IAM
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist",  # SQS (query / JSON)
    "ResourceNotFound",  # CloudWatch dashboards
    "DBInstanceNotFound", "DBInstanceNotFoundFault",  # RDS (query / JSON)
})

# Narrower groups, where the caller must tell one missing thing from another.
MISSING_OBJECT = ("NoSuchKey", "404", "NotFound")  # a key (S3 HEAD answers a bare 404)
MISSING_BUCKET = ("NoSuchBucket",)
NO_LIFECYCLE = ("NoSuchLifecycleConfiguration",)  # a bucket without lifecycle rules

# "Not allowed": IAM refusals, and S3's bare 403 (HEAD has no body to name a code). S3 also
# answers 403 for a missing key when the caller may not list the bucket (see `services.verify`).
ACCESS_DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "403", "Forbidden",
})

# The resource is in use or being changed (a Lambda version an alias still names, an update
# under way).
CONFLICT_CODES = frozenset({"ResourceConflictException"})

# The request was understood and refused for its value (Lambda: reserved concurrency above
# what the account may reserve).
REFUSED_VALUE_CODES = frozenset({"InvalidParameterValueException", "LimitExceededException"})

EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId",
                           "UnrecognizedClientException", "SignatureDoesNotMatch"})


def _client_error(exc: BaseException | None) -> BaseException | None:
    """The botocore ClientError behind `exc` (boto3's transfer errors wrap it), if any."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(getattr(exc, "response", None), dict):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def error_code(exc: BaseException) -> str | None:
    """The error code of a botocore ClientError (`ParameterNotFound`, ...), else None."""
    found = _client_error(exc)
    if found is None:
        return None
    code = getattr(found, "response", {}).get("Error", {}).get("Code")
    return str(code) if code is not None else None


def error_message(exc: BaseException) -> str:
    """The message AWS gave with a botocore ClientError; `str(exc)` for other errors."""
    found = _client_error(exc)
    if found is None:
        return str(exc)
    return str(getattr(found, "response", {}).get("Error", {}).get("Message", "") or exc)


def is_not_found(exc: BaseException, *codes: str) -> bool:
    """AWS answered that the thing does not exist (any of `codes`, default: every
    not-found code)."""
    return error_code(exc) in (codes or NOT_FOUND_CODES)


def is_access_denied(exc: BaseException) -> bool:
    return error_code(exc) in ACCESS_DENIED_CODES


def is_conflict(exc: BaseException) -> bool:
    return error_code(exc) in CONFLICT_CODES


def is_refused_value(exc: BaseException) -> bool:
    return error_code(exc) in REFUSED_VALUE_CODES


def is_missing_stack(exc: BaseException) -> bool:
    """CloudFormation names no code for a missing stack: a ValidationError that says so."""
    return error_code(exc) == "ValidationError" and "does not exist" in error_message(exc)


def or_none(call: Callable[[], T], *codes: str) -> T | None:
    """`call()`, or None when AWS answers that the thing does not exist (any of `codes`,
    default: every not-found code). Other errors propagate."""
    try:
        return call()
    except Exception as exc:
        if is_not_found(exc, *codes):
            return None
        raise


def stack_or_none(call: Callable[[], T]) -> T | None:
    """`call()` (a CloudFormation read of one stack), or None when the stack does not exist.
    Other errors, other validation errors too, propagate."""
    try:
        return call()
    except Exception as exc:
        if is_missing_stack(exc):
            return None
        raise


def translate(exc: BaseException) -> errors.CollectionsError | None:
    """The botocore errors every command can hit, as a domain error; None for the others."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return errors.CredentialsError("no AWS credentials found",
                                       "run `aws configure`, set AWS_PROFILE, or pass --profile")
    if name == "NoRegionError":
        return errors.CredentialsError("no AWS region configured",
                                       "pass --region or set AWS_REGION")
    if name == "ProfileNotFound":
        return errors.CredentialsError(str(exc), "check --profile against ~/.aws/config")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        where = getattr(exc, "kwargs", {}).get("endpoint_url", "AWS")
        return errors.NotReady(f"cannot reach {where}",
                               "check the network; for the local cloud run "
                               "`collections deploy local`")
    if name == "ReadTimeoutError":
        where = getattr(exc, "kwargs", {}).get("endpoint_url", "AWS")
        return errors.NotReady(f"{where} did not answer in time",
                               "for the local cloud: `collections status local` names the part "
                               "not answering; `collections deploy local` restarts it")
    if name in ("TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError"):
        return errors.CredentialsError("the SSO session has expired", "run `aws sso login`")
    code = error_code(exc)
    if code is None:
        return None
    message = str(getattr(_client_error(exc), "response", {}).get("Error", {}).get("Message", ""))
    if code in ACCESS_DENIED_CODES:
        return errors.CredentialsError(f"access denied: {message or code}",
                                       "the current identity lacks this permission")
    if code in EXPIRED_CODES:
        return errors.CredentialsError("the AWS credentials are expired or invalid",
                                       "refresh them (e.g. `aws sso login`)")
    if code in NOT_FOUND_CODES:
        # A resource the command relies on is missing: the environment is not (fully) deployed.
        return errors.NotReady(f"{message or code}",
                               "is this environment deployed? `collections status` shows "
                               "what is there")
    return None


class Aws:
    """The calls the operator side makes where "not found" is an answer, not a failure.

    Built by the context from its client factory; services take it (or a raw client) as a
    collaborator.
    """

    def __init__(self, client: Callable[[str], Any]) -> None:
        self.client = client

    def parameter(self, name: str, *, decrypt: bool = True) -> str | None:
        found = or_none(lambda: self.client("ssm").get_parameter(Name=name,
                                                                 WithDecryption=decrypt))
        return None if found is None else str(found["Parameter"]["Value"])

    def function_configuration(self, name: str, qualifier: str | None = None,
                               ) -> dict[str, Any] | None:
        kwargs = {"FunctionName": name, **({"Qualifier": qualifier} if qualifier else {})}
        return or_none(lambda: self.client("lambda").get_function_configuration(**kwargs))

    def queue_url(self, name: str) -> str | None:
        found = or_none(lambda: self.client("sqs").get_queue_url(QueueName=name))
        return None if found is None else str(found["QueueUrl"])

    def bucket_exists(self, bucket: str) -> bool:
        return or_none(lambda: self.client("s3").head_bucket(Bucket=bucket)) is not None

    def object_head(self, bucket: str, key: str) -> dict[str, Any] | None:
        return or_none(lambda: self.client("s3").head_object(Bucket=bucket, Key=key))
