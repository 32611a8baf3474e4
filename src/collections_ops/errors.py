"""Errors the CLI shows as one sentence plus a hint, each with its own exit code.

Exit codes are stable so scripts and CI can branch on them.
"""

from __future__ import annotations


class ExitCode:
    OK = 0
    FAILURE = 1  # generic
    USAGE = 2  # bad arguments (typer's own)
    NOT_FOUND = 3  # the thing asked about does not exist (item, parameter, stack)
    NOT_READY = 4  # the environment is not deployed / local cloud not running
    CREDENTIALS = 5  # no credentials, no region, access denied
    STALLED = 6  # a followed upload did not finish in time
    STAGE_FAILED = 7  # a followed upload failed in a stage
    VERIFY_FAILED = 8  # verify found missing or inconsistent data
    DATABASE = 9  # database unreachable or not migrated
    CONFIG = 10  # bad configuration / unknown environment / missing secret
    CHANGES = 11  # `diff`: the deployed stacks differ from the app


class CliError(Exception):
    exit_code = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None, *,
                 exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class NotFound(CliError):
    exit_code = ExitCode.NOT_FOUND


class NotReady(CliError):
    exit_code = ExitCode.NOT_READY


class CredentialsError(CliError):
    exit_code = ExitCode.CREDENTIALS


class ConfigError(CliError):
    exit_code = ExitCode.CONFIG


class DatabaseError(CliError):
    exit_code = ExitCode.DATABASE


def aws_error_code(exc: BaseException) -> str | None:
    """The error code of a botocore ClientError (`ParameterNotFound`, ...), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def from_botocore(exc: BaseException) -> CliError | None:
    """Map the botocore errors every command can hit to a sentence, once, for all commands."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return CredentialsError("no AWS credentials found",
                                "run `aws configure`, set AWS_PROFILE, or pass --profile")
    if name == "NoRegionError":
        return CredentialsError("no AWS region configured", "pass --region or set AWS_REGION")
    if name == "ProfileNotFound":
        return CredentialsError(str(exc), "check --profile against ~/.aws/config")
    if name == "EndpointConnectionError":
        return NotReady(f"cannot reach {getattr(exc, 'kwargs', {}).get('endpoint_url', 'AWS')}",
                        "for the local cloud run `collections deploy local`")
    if name in ("ReadTimeoutError", "ConnectTimeoutError"):
        return NotReady(f"{getattr(exc, 'kwargs', {}).get('endpoint_url', 'AWS')} did not "
                        "answer in time",
                        "for the local cloud: `collections status local` names the part "
                        "not answering; `collections deploy local` restarts it")
    if name in ("TokenRetrievalError", "SSOTokenLoadError", "UnauthorizedSSOTokenError"):
        return CredentialsError("the SSO session has expired", "run `aws sso login`")
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code", "")
        message = response.get("Error", {}).get("Message", "")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return CredentialsError(f"access denied: {message}",
                                    "the current identity lacks this permission")
        if code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId"):
            return CredentialsError("the AWS credentials are expired or invalid",
                                    "refresh them (e.g. `aws sso login`)")
    return None
