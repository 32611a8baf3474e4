"""SSM SecureString parameters: write, list masked. Values are never logged or returned whole.

Every answer names the scope it touched (pipeline/constants.py: `shared`, the guide's
`/collections/NAME`, read by every environment that has no value of its own; `env`, the
environment's own `/collections/<env>/NAME`). A write goes to the secret's home scope unless
told otherwise: an API key to the shared scope, DATABASE_URL to the environment's (it has no
shared scope). `list` and `verify` show what the environment's functions would read: the
environment's value when there is one, else the shared one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from collections_ops import aws, errors
from collections_ops.checks import Check, failures
from collections_ops.pipeline import SECRETS, Environment, Scope, Secret, secret


@dataclass
class Unanswered(Check):
    """A live check the provider did not answer (network, DNS, TLS): no verdict on the key."""


UNREACHABLE_FIX = "check the network (or proxy) to the provider, then verify again"


@dataclass(frozen=True)
class SecretInfo:
    name: str
    parameter: str
    present: bool
    required: bool
    fingerprint: str | None
    version: int | None
    last_modified: str | None
    scope: Scope = "shared"  # where `parameter` is (for a missing secret: where it belongs)
    scope_label: str = ""  # the scope as an operator reads it (scope_label())
    overrides: str | None = None  # the shared parameter an environment's own value hides


def scope_label(env: Environment, scope: Scope) -> str:
    """The scope as an operator reads it."""
    return f"{env.name} only" if scope == "env" else "shared by every environment"


def resolve_scope(name: str, scope: Scope | None) -> Scope:
    """The scope a write or delete touches: the asked one, else the secret's home."""
    spec = known_secret(name)
    chosen = scope or spec.home_scope
    if chosen not in spec.lookup_scopes:
        raise errors.UsageError(f"{spec.name} is kept per environment, never shared",
                                "drop --scope shared: it goes to the environment's own scope")
    return chosen


def fingerprint(value: str) -> str:
    """A short, non-reversible tag to tell two values apart without showing either."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:8]


def mask(value: str) -> str:
    return "****" if len(value) < 12 else f"{value[:3]}…{'*' * 4}"


def put(ssm: Any, env: Environment, name: str, value: str, *, scope: Scope | None = None,
        kms_key_id: str | None = None) -> SecretInfo:
    spec = known_secret(name)
    chosen = resolve_scope(name, scope)
    value = value.strip("\r\n")
    if not value:
        raise errors.UsageError("the secret value is empty", "nothing was written")
    parameter = env.parameter_name(spec.name, chosen)
    kwargs: dict[str, Any] = {"Name": parameter, "Value": value, "Type": "SecureString",
                              "Overwrite": True, "Description": spec.description}
    if kms_key_id:
        kwargs["KeyId"] = kms_key_id
    response = ssm.put_parameter(**kwargs)
    return SecretInfo(name, parameter, True, spec.required, fingerprint(value),
                      int(response.get("Version", 0)), None, chosen, scope_label(env, chosen))


def _by_path(ssm: Any, path: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    paginator = ssm.get_paginator("get_parameters_by_path")
    for page in paginator.paginate(Path=path, Recursive=False, WithDecryption=True):
        for p in page["Parameters"]:
            found[p["Name"]] = p
    return found


def list_secrets(ssm: Any, env: Environment) -> list[SecretInfo]:
    """Every known secret, present or not, as the environment's functions would read it (its
    own value first, then the shared one) -- found by path in both scopes, decrypted only to
    fingerprint it."""
    found = {**_by_path(ssm, env.scope_prefix("shared")), **_by_path(ssm, env.scope_prefix("env"))}
    required = {s.name for s in env.required_secrets()}
    out = []
    for spec in SECRETS:
        scopes = [sc for sc in spec.lookup_scopes if env.parameter_name(spec.name, sc) in found]
        scope = scopes[0] if scopes else spec.home_scope
        name = env.parameter_name(spec.name, scope)
        param = found.get(name)
        modified = param.get("LastModifiedDate") if param else None
        out.append(SecretInfo(
            spec.name, name, param is not None, spec.name in required,
            fingerprint(param["Value"]) if param else None,
            int(param["Version"]) if param else None,
            modified.isoformat() if modified is not None else None, scope,
            scope_label(env, scope),
            env.parameter_name(spec.name, "shared") if len(scopes) > 1 else None))
    return out


def known_secret(name: str) -> Secret:
    try:
        return secret(name)
    except KeyError:
        raise errors.UsageError(f"unknown secret {name!r}",
                                f"one of {', '.join(s.name for s in SECRETS)}") from None


def remove(ssm: Any, env: Environment, name: str, *, scope: Scope | None = None) -> str:
    spec = known_secret(name)
    parameter = env.parameter_name(spec.name, resolve_scope(name, scope))
    if aws.or_none(lambda: ssm.delete_parameter(Name=parameter)) is None:
        raise errors.NotFound(f"{parameter} does not exist")
    return parameter


def parse_dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines (optional `export`, quotes, comments) for the pipeline's known secrets."""
    known = {s.name for s in SECRETS}
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep:
            raise errors.UsageError(f".env line {number} has no '='", "use KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key in known and value:
            values[key] = value
    return values


def verify(ssm: Any, env: Environment, *, live: bool = False) -> list[Check]:
    """Every parameter the deployed functions need exists and decrypts; optionally, each key
    is accepted by its provider (`live`). One check per secret, named by its parameter."""
    required = {s.name for s in env.required_secrets()}
    checks = []
    for spec in SECRETS:
        is_required = spec.name in required
        fix = f"collections secrets put {spec.name} --env {env.name}"
        # As the functions read it: the environment's own value, else the shared one.
        parameter, value, scope, failed = env.parameter_name(spec.name), None, spec.home_scope, None
        for candidate in spec.lookup_scopes:
            name = env.parameter_name(spec.name, candidate)
            try:
                value = aws.or_none(lambda p=name: ssm.get_parameter(  # type: ignore[misc]
                    Name=p, WithDecryption=True)["Parameter"]["Value"])
            except Exception as exc:
                if aws.translate(exc) is not None:  # no credentials, access denied: not per secret
                    raise
                parameter, failed = name, aws.error_code(exc) or type(exc).__name__
                break
            if value is not None:
                parameter, scope = name, candidate
                break
        if failed is not None:
            checks.append(Check(parameter, False, f"cannot read: {failed}", fix))
            continue
        if value is None:
            checks.append(Check(parameter, not is_required,
                                "missing (required)" if is_required else "not set (optional)",
                                fix if is_required else None))
            continue
        detail = f"present, decrypts ({fingerprint(value)}), {scope_label(env, scope)}"
        verdict: bool | None = True
        if live:
            verdict, live_detail = check_live(spec.name, value)
            detail += f"; {live_detail}"
        if verdict is None:
            checks.append(Unanswered(parameter, False, detail, UNREACHABLE_FIX))
        else:
            checks.append(Check(parameter, verdict, detail, None if verdict else fix))
    return checks


def require_usable(checks: list[Check]) -> None:
    """Raise unless every secret is usable: a missing or rejected key is a configuration error;
    when the only failures are providers that did not answer, nothing was judged (unreachable)."""
    bad = failures(checks)
    judged = [c for c in bad if not isinstance(c, Unanswered)]
    if judged:
        raise errors.ConfigError(f"secrets not usable: {', '.join(c.name for c in judged)}",
                                 judged[0].fix)
    if bad:
        raise errors.Unreachable("the provider could not be reached to check "
                                 f"{', '.join(c.name for c in bad)}; the key was not judged",
                                 UNREACHABLE_FIX)


def check_live(name: str, value: str) -> tuple[bool | None, str]:
    """Ask the provider whether it accepts the key: True, False, or None when it did not
    answer. Never prints the key."""
    try:
        if name == "ANTHROPIC_API_KEY":
            import anthropic

            anthropic.Anthropic(api_key=value, max_retries=0, timeout=10).models.list(limit=1)
        elif name == "OPENAI_API_KEY":
            import openai

            openai.OpenAI(api_key=value, max_retries=0, timeout=10).models.list()
        elif name == "VOYAGE_API_KEY":
            import os

            import voyageai

            voyageai.Client(api_key=value, max_retries=0, timeout=10,
                            base_url=os.environ.get("VOYAGE_BASE_URL") or None).embed(
                ["ping"], model="voyage-3.5", input_type="query")
        else:
            return True, "no live check for this secret"
    except Exception as exc:
        status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
        kinds = " ".join(c.__name__ for c in type(exc).__mro__)
        if status is None and ("Connection" in kinds or "Timeout" in kinds):
            # No answer is not a verdict on the key.
            return None, f"the provider could not be reached ({type(exc).__name__})"
        return False, f"rejected by the provider ({status or type(exc).__name__})"
    return True, "accepted by the provider"
