"""Secrets from SSM Parameter Store, decrypted once per container and masked in every log line.

They are read with GetParameters: a handler names up front the secrets its invocation will
need (`prefetch`), and those not cached are read in one call, not one each -- the analyzer's
cold start made three round trips to SSM before its model call. SSM's read throughput is
shared by the whole account (GetParameter and GetParameters count alike), so a burst of cold
starts also asks it a third as often.

Where each secret lives comes from `SECRET_PARAMETERS` (set from the pipeline definition): the
parameters to read it from, in order, the first that exists winning -- the environment's own
scope (`/collections/dev/ANTHROPIC_API_KEY`, an override), then the shared one
(`/collections/ANTHROPIC_API_KEY`). DATABASE_URL has the environment's scope only. Every
candidate is asked for in the same GetParameters call, so an override costs no round trip.
"""

from __future__ import annotations

import json
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


KNOWN = ("DATABASE_URL", "DATABASE_URL_PROCESSOR", "DATABASE_URL_ANALYZER",
         "DATABASE_URL_EMBEDDER", "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LANGSMITH_API_KEY",
         "VOYAGE_API_KEY")


def lookup(name: str) -> list[str]:
    """The parameters secret `name` is read from, in order (the last is its usual home)."""
    raw = env("SECRET_PARAMETERS")
    table: dict[str, tuple[str, list[str]]] = state.cached("secret_parameters", dict)
    cached = table.get(name)
    if cached is not None and cached[0] == raw:
        return cached[1]
    try:
        names = json.loads(raw).get(name)
    except (ValueError, AttributeError):
        names = None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigurationError(f"SECRET_PARAMETERS names no parameter for {name}",
                                 hint="the function's environment comes from the pipeline "
                                      "definition; redeploy")
    table[name] = (raw, names)
    return names


def parameter_name(name: str) -> str:
    """Where an operator puts secret `name` (named in errors): its last, usual, home."""
    return lookup(name)[-1]


def register_all(names: tuple[str, ...] = KNOWN) -> None:
    """Read every secret the pipeline knows (those that exist) and the secret values in this
    process's environment, so that `log.mask` hides them in whatever this process writes --
    also lines that no handler wrote (the local cloud's dispatcher). Needs SECRET_PARAMETERS."""
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
            # A function's own database URL is written by the deploy's migration.
            hint=("run: collections db migrate" if name.startswith("DATABASE_URL_")
                  else f"run: collections secrets put {name}"),
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
    candidates = [(parameter, n) for n in names for parameter in lookup(n)]
    values: dict[str, str] = {}
    for start in range(0, len(candidates), MAX_NAMES_PER_CALL):
        chunk = dict(candidates[start:start + MAX_NAMES_PER_CALL])
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
            if str(parameter.get("Name")) in chunk:
                value = str(parameter["Value"])
                log.register_secret(value)
                values[str(parameter["Name"])] = value
    found: dict[str, str] = {}
    for parameter, name in candidates:  # in lookup order: the first that exists wins
        if name not in found and parameter in values:
            found[name] = values[parameter]
    return found
