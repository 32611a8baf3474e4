"""Secrets from SSM Parameter Store, decrypted once per container and masked in every log line."""

from __future__ import annotations

import time

from collections_core import aws, log, state
from collections_core.config import env
from collections_core.errors import ConfigurationError, RetryableError

TTL_SECONDS = 300.0
# An optional secret that is absent (LANGSMITH_API_KEY unset) is looked up again after this
# long, not on every invocation: SSM's GetParameter rate is limited per account.
ABSENT_TTL_SECONDS = 60.0


KNOWN = ("DATABASE_URL", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LANGSMITH_API_KEY",
         "VOYAGE_API_KEY")


def parameter_name(name: str) -> str:
    return f"{env('PARAMETER_PREFIX').rstrip('/')}/{name}"


def register_all(names: tuple[str, ...] = KNOWN) -> None:
    """Read every secret the pipeline knows (those that exist) and the secret values in this
    process's environment, so that `log.mask` hides them in whatever this process writes --
    also lines that no handler wrote (the local cloud's dispatcher). Needs PARAMETER_PREFIX."""
    log.register_environ()
    for name in names:
        get(name, required=False)


def get(name: str, *, required: bool = True) -> str | None:
    """Return the secret `name` (e.g. ANTHROPIC_API_KEY), or None if optional and absent."""
    cache: dict[str, tuple[float, str | None]] = state.cached("secrets", dict)
    hit = cache.get(name)
    value: str | None
    if hit and time.monotonic() - hit[0] < (TTL_SECONDS if hit[1] is not None
                                            else ABSENT_TTL_SECONDS):
        value = hit[1]
    else:
        value = _fetch(name)
        # A missing required parameter is not cached: once an operator puts it, the next
        # invocation of a warm container sees it. A missing optional one is, briefly.
        if value is not None or not required:
            cache[name] = (time.monotonic(), value)
    if value is None and required:
        raise ConfigurationError(
            f"SSM parameter {parameter_name(name)} does not exist",
            hint=f"run: collections secrets put {name}",
        )
    return value


def _fetch(name: str) -> str | None:
    full = parameter_name(name)
    try:
        response = aws.client("ssm").get_parameter(Name=full, WithDecryption=True)
    except Exception as exc:
        code = aws.error_code(exc)
        if code == "ParameterNotFound":
            return None
        if code in ("AccessDeniedException", "AccessDenied"):
            raise ConfigurationError(
                f"access denied reading SSM parameter {full}",
                hint="the function's role needs ssm:GetParameter on it and kms:Decrypt on its key",
            ) from None
        if code is not None and code not in aws.RETRYABLE_AWS_CODES:
            raise ConfigurationError(f"reading SSM parameter {full} failed: {code}") from None
        raise RetryableError(f"reading SSM parameter {full} failed: {code or type(exc).__name__}")\
            from None
    value = str(response["Parameter"]["Value"])
    log.register_secret(value)
    return value
