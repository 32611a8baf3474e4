"""Function versions and the `live` alias the triggers invoke: list them, show what changed
between two, and move the alias back (`collections rollback ENV --function F`).

This is the fast way back after a bad deploy: it does not touch CloudFormation, and the
next `collections deploy` moves `live` to the new version again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from collections_ops import errors
from collections_ops.pipeline import LIVE_ALIAS, Environment, Function

COMPARED = ("CodeSha256", "Runtime", "Handler", "MemorySize", "Timeout", "Description")


@dataclass(frozen=True)
class Version:
    version: str
    code_sha256: str
    description: str
    last_modified: str
    memory: int | None
    timeout: int | None
    live: bool


@dataclass
class Rollback:
    function_name: str
    from_version: str
    to_version: str
    changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)




def _published(lam: Any, name: str) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    try:
        for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=name):
            configs += [c for c in page["Versions"] if c["Version"] != "$LATEST"]
    except Exception as exc:
        if errors.aws_error_code(exc) == "ResourceNotFoundException":
            raise errors.NotFound(f"function {name} does not exist",
                                  "deploy the environment first") from None
        raise
    return sorted(configs, key=lambda c: int(c["Version"]))


def live_version(lam: Any, name: str) -> str:
    try:
        return str(lam.get_alias(FunctionName=name, Name=LIVE_ALIAS)["FunctionVersion"])
    except Exception as exc:
        if errors.aws_error_code(exc) == "ResourceNotFoundException":
            raise errors.NotFound(f"{name} has no `{LIVE_ALIAS}` alias",
                                  "redeploy with this version of the CDK app") from None
        raise


def list_versions(lam: Any, env: Environment, fn: Function) -> list[Version]:
    name = fn.function_name(env.name)
    configs = _published(lam, name)
    live = live_version(lam, name)
    return [Version(c["Version"], c.get("CodeSha256", ""), c.get("Description", ""),
                    c.get("LastModified", ""), c.get("MemorySize"), c.get("Timeout"),
                    c["Version"] == live) for c in configs]


def changes_between(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two version configurations, in words (variables by name)."""
    out = [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in COMPARED
           if old.get(key) != new.get(key)]
    old_vars = (old.get("Environment") or {}).get("Variables") or {}
    new_vars = (new.get("Environment") or {}).get("Variables") or {}
    for var in sorted(set(old_vars) | set(new_vars)):
        if old_vars.get(var) != new_vars.get(var):
            out.append(f"environment {var}: {old_vars.get(var)!r} -> {new_vars.get(var)!r}")
    return out


def roll_back(lam: Any, env: Environment, fn: Function, *, to: str | None = None,
              dry_run: bool = False) -> Rollback:
    """Point `live` at `to` (default: the version published before the live one)."""
    name = fn.function_name(env.name)
    configs = {c["Version"]: c for c in _published(lam, name)}
    current = live_version(lam, name)
    if to is None:
        earlier = [v for v in configs if int(v) < int(current)]
        if not earlier:
            raise errors.NotFound(f"{name} has no version before {current} to return to")
        to = max(earlier, key=int)
    if to not in configs:
        raise errors.NotFound(f"{name} has no version {to}",
                              f"published: {', '.join(configs) or 'none'}")
    result = Rollback(name, current, to, changes_between(configs[current], configs[to]))
    if not dry_run and to != current:
        lam.update_alias(FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=to)
    return result
