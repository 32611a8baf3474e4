"""Secrets from SSM Parameter Store, decrypted once per container and masked in every log line.

They are read with GetParameters: a handler names up front the secrets its invocation will
need (`prefetch`), and those not cached are read in one call, not one each -- the analyzer's
cold start made three round trips to SSM before its model call. SSM's read throughput is
shared by the whole account (GetParameter and GetParameters count alike), so a burst of cold
starts also asks it a third as often.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from collections_core import aws, log, state
from collections_core.config import env
from collections_core.errors import ConfigurationError, RetryableError

TTL_SECONDS = 300.0
# An optional secret that is absent (LANGSMITH_API_KEY unset) is looked up again after this
# long, not on every invocation: SSM's GetParameter rate is limited per account.
ABSENT_TTL_SECONDS = 60.0
MAX_NAMES_PER_CALL = 10  # GetParameters' limit


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
    if _fresh(hit):
        assert hit is not None
        value = hit[1]
    else:
        value = _fetch([name]).get(name)
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


def prefetch(required: Iterable[str | None] = (), optional: Iterable[str | None] = ()) -> None:
    """Read, in one GetParameters call, the secrets an invocation is about to `get` that are
    not cached (None entries are skipped: a provider's key when that provider is not selected).
    Only what the function's role may read belongs here: GetParameters is refused whole if any
    name is not allowed. An absent required secret is left for `get` to report."""
    wanted = [n for n in required if n]
    maybe = [n for n in optional if n]
    cache: dict[str, tuple[float, str | None]] = state.cached("secrets", dict)
    stale = [n for n in dict.fromkeys([*wanted, *maybe]) if not _fresh(cache.get(n))]
    if not stale:
        return
    found = _fetch(stale)
    now = time.monotonic()
    for name in stale:
        value = found.get(name)
        if value is not None or name in maybe:
            cache[name] = (now, value)


def _fresh(hit: tuple[float, str | None] | None) -> bool:
    if hit is None:
        return False
    ttl = TTL_SECONDS if hit[1] is not None else ABSENT_TTL_SECONDS
    return time.monotonic() - hit[0] < ttl


def _fetch(names: list[str]) -> dict[str, str]:
    """name -> value for those of `names` that exist (GetParameters, decrypted)."""
    found: dict[str, str] = {}
    for start in range(0, len(names), MAX_NAMES_PER_CALL):
        chunk = {parameter_name(n): n for n in names[start:start + MAX_NAMES_PER_CALL]}
        what = ("SSM parameter " if len(chunk) == 1 else "SSM parameters ") + ", ".join(chunk)
        try:
            response = aws.client("ssm").get_parameters(Names=list(chunk), WithDecryption=True)
        except Exception as exc:
            code = aws.error_code(exc)
            if code in ("AccessDeniedException", "AccessDenied"):
                raise ConfigurationError(
                    f"access denied reading {what}",
                    hint="the function's role needs ssm:GetParameters on it and kms:Decrypt "
                         "on its key",
                ) from None
            if code is not None and code not in aws.RETRYABLE_AWS_CODES:
                raise ConfigurationError(f"reading {what} failed: {code}") from None
            raise RetryableError(f"reading {what} failed: {code or type(exc).__name__}") \
                from None
        for parameter in response.get("Parameters", []):
            name = chunk.get(str(parameter.get("Name")))
            if name is not None:
                value = str(parameter["Value"])
                log.register_secret(value)
                found[name] = value
    return found
