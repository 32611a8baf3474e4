"""Function versions and the `live` alias the triggers invoke: list them, show what changed
between two, move the alias back (`collections rollback ENV --function F`), and make a
configuration change take effect (`collections configure`, `tune --apply`, `concurrency`).

Rolling back is the fast way back after a bad deploy: it does not touch CloudFormation. The
next `collections deploy` that publishes a version (the code or the function's settings
changed) moves `live` to it; one that changes nothing leaves `live` where the rollback put it,
as CloudFormation updates only what changed in the template. On the local cloud, `live` decides
what the dispatchers run too (docs/local-cloud.md, "Versions and `live`").

Why configuration changes publish: `update-function-configuration` changes `$LATEST` only, and
the triggers invoke `live`, a published version whose configuration is immutable. So a change
is made on `$LATEST`, waited for (`LastUpdateStatus`: the next call is refused while an update
is in progress, and a version published too early carries the old configuration), published,
and `live` is moved to the new version. Versions are retained across deploys (the stack keeps
them); `prune` deletes the oldest beyond the environment's keep setting, never the live one nor
the one before it (the rollback target), nor the one the stack records (a stack rollback
returns to it), nor one another alias points at.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from collections_ops import aws, errors
from collections_ops.pipeline import LIVE_ALIAS, Environment, Function

COMPARED = ("CodeSha256", "Runtime", "Handler", "MemorySize", "Timeout", "Description")
DEFAULT_KEEP = 10  # published versions kept per function when the settings say nothing
MIN_MEMORY_MB, MAX_MEMORY_MB = 128, 10240  # Lambda's limits


class UpdateFailed(errors.Failed):
    """A configuration update of `$LATEST` failed, or did not settle in time."""


def wait_for_update(lambda_client: Any, function_name: str, *,
                    sleep: Callable[[float], None] = time.sleep,
                    timeout_s: float = 120, poll_s: float = 1.0) -> dict[str, Any]:
    """Poll until LastUpdateStatus is Successful (an update in progress rejects the next one)."""
    waited = 0.0
    while True:
        cfg = dict(lambda_client.get_function_configuration(FunctionName=function_name))
        status = cfg.get("LastUpdateStatus", "Successful")
        if status == "Successful":
            return cfg
        if status == "Failed":
            raise UpdateFailed(f"updating {function_name} failed: "
                               f"{cfg.get('LastUpdateStatusReason', 'no reason given')}")
        if waited >= timeout_s:
            raise UpdateFailed(f"{function_name} is still updating after {timeout_s:.0f} s")
        sleep(poll_s)
        waited += poll_s


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
        if aws.is_not_found(exc):
            raise errors.NotFound(f"function {name} does not exist",
                                  "deploy the environment first") from None
        raise
    return sorted(configs, key=lambda c: int(c["Version"]))


def live_version(lam: Any, name: str) -> str:
    try:
        return str(lam.get_alias(FunctionName=name, Name=LIVE_ALIAS)["FunctionVersion"])
    except Exception as exc:
        if aws.is_not_found(exc):
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


# --------------------------------------------------------------------------- publishing


@dataclass
class Published:
    function_name: str
    from_version: str | None  # what `live` ran before (None: there was no alias)
    to_version: str
    changes: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _missing(name: str, env: Environment) -> errors.NotFound:
    return errors.NotFound(f"function {name} does not exist",
                           f"deploy it: `collections deploy {env.name}`")


def publish_live(lam: Any, env: Environment, fn: Function, *,
                 changes: dict[str, Any] | None = None, description: str = "",
                 keep: int = DEFAULT_KEEP, sleep: Callable[[float], None] | None = None,
                 timeout_s: float = 120) -> Published:
    """Apply `changes` to `$LATEST` (if any), publish it, point `live` at it, prune old ones.

    The previous live version stays published: `collections rollback ENV --function F`
    returns to it.
    """
    name = fn.function_name(env.name)
    waits: dict[str, Any] = {"timeout_s": timeout_s, **({"sleep": sleep} if sleep else {})}
    try:
        before = wait_for_update(lam, name, **waits)  # a deploy may still be updating
        if changes:
            lam.update_function_configuration(FunctionName=name, **changes)
            wait_for_update(lam, name, **waits)
        new = lam.publish_version(FunctionName=name, Description=description,
                                  CodeSha256=before["CodeSha256"])
    except Exception as exc:
        if aws.is_not_found(exc):
            raise _missing(name, env) from None
        raise
    version = str(new["Version"])
    wait_for_active(lam, name, version, sleep=sleep)  # SnapStart: the snapshot is being taken
    previous: str | None = None
    old_config: dict[str, Any] = before
    try:
        previous = live_version(lam, name)
        old_config = dict(lam.get_function_configuration(FunctionName=name,
                                                         Qualifier=previous))
    except errors.NotFound:
        previous = None
    if previous is None:
        lam.create_alias(FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=version)
    elif previous != version:
        lam.update_alias(FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=version)
    result = Published(name, previous, version, changes_between(old_config, dict(new)))
    result.pruned = prune(lam, env, fn, keep=keep)
    return result


def wait_for_active(lam: Any, name: str, version: str, *,
                    sleep: Callable[[float], None] | None = None, timeout_s: float = 900,
                    poll_s: float = 2.0) -> None:
    """Until the published version is Active. With SnapStart a new version is Pending while
    Lambda runs its init and takes the snapshot (minutes, at most the init timeout), and an
    invoke of a Pending version fails: `live` must not move to it before."""
    import time

    pause = sleep or time.sleep
    waited = 0.0
    while True:
        cfg = lam.get_function_configuration(FunctionName=name, Qualifier=version)
        state = str(cfg.get("State") or "Active")
        if cfg.get("LastUpdateStatus") == "Failed":  # a failed SnapStart init shows here too
            state = "Failed"
            cfg = {**cfg, "StateReason": cfg.get("LastUpdateStatusReason") or cfg.get(
                "StateReason"), "StateReasonCode": cfg.get("LastUpdateStatusReasonCode")}
        if state == "Active":
            return
        if state in ("Failed", "Inactive"):
            raise errors.CollectionsError(
                f"{name} version {version} is {state}: {cfg.get('StateReason') or 'no reason'}"
                f" ({cfg.get('StateReasonCode') or 'no code'}); live was not moved",
                "see the function's log group; live still runs the version before")
        if waited >= timeout_s:
            raise errors.CollectionsError(
                f"{name} version {version} is still {state} after {timeout_s:.0f} s; live was "
                "not moved", "run the command again once the version is Active")
        pause(poll_s)
        waited += poll_s


def prunable(versions: list[str], *, live: str | None, keep: int,
             protected: frozenset[str] = frozenset()) -> list[str]:
    """The versions to delete: the oldest beyond `keep`, never `live` nor the one before it,
    nor any `protected` one (what the stack records, what another alias points at)."""
    if keep < 2:
        raise errors.UsageError(f"keep at least 2 versions (the live one and the one before), "
                              f"not {keep}")
    ordered = sorted(versions, key=int)
    kept = set(protected)
    if live is not None:
        kept.add(live)
        earlier = [v for v in ordered if int(v) < int(live)]
        if earlier:
            kept.add(earlier[-1])
    excess = len(ordered) - keep
    return [v for v in ordered if v not in kept][:max(0, excess)]


def _alias_versions(lam: Any, name: str) -> set[str]:
    """Every version an alias of the function points at, weighted routing included."""
    found: set[str] = set()
    try:
        for page in lam.get_paginator("list_aliases").paginate(FunctionName=name):
            for alias in page.get("Aliases", []):
                found.add(str(alias["FunctionVersion"]))
                routing = alias.get("RoutingConfig") or {}
                found.update(str(v) for v in routing.get("AdditionalVersionWeights") or {})
    except Exception as exc:
        if not aws.is_not_found(exc):
            raise
    return found


def prune(lam: Any, env: Environment, fn: Function, *, keep: int = DEFAULT_KEEP,
          protected: frozenset[str] = frozenset()) -> list[str]:
    """Delete the oldest published versions beyond `keep`; returns the versions deleted.
    `protected`: versions that must stay whatever their age (the stack's own version: a
    rollback of the stack returns to it)."""
    name = fn.function_name(env.name)
    published = [c["Version"] for c in _published(lam, name)]
    try:
        live: str | None = live_version(lam, name)
    except errors.NotFound:
        live = None
    kept = frozenset(protected) | _alias_versions(lam, name)
    doomed = prunable(published, live=live, keep=keep, protected=kept)
    deleted = []
    for version in doomed:
        try:
            lam.delete_function(FunctionName=name, Qualifier=version)
        except Exception as exc:
            # A version another alias (or an event source mapping) still uses is refused:
            # it stays, and the next prune tries again.
            if aws.is_conflict(exc) or aws.is_not_found(exc):
                continue
            raise
        deleted.append(version)
    return deleted


MAX_TIMEOUT_S = 900  # Lambda's limit


def configure(lam: Any, env: Environment, fn: Function, *, timeout: int | None = None,
              memory: int | None = None, keep: int = DEFAULT_KEEP,
              sleep: Callable[[float], None] | None = None) -> Published:
    """The guide's "Increase timeout" (`update-function-configuration --timeout/--memory-size`)
    in a form that takes effect: change, publish, move `live`.

    The next `collections deploy` puts the definition's values back; change the environment's
    settings to keep them.
    """
    changes: dict[str, Any] = {}
    if timeout is not None:
        if not 1 <= timeout <= MAX_TIMEOUT_S:
            raise errors.UsageError(f"Lambda timeout is 1-{MAX_TIMEOUT_S} s, not {timeout}")
        changes["Timeout"] = timeout
    if memory is not None:
        if not MIN_MEMORY_MB <= memory <= MAX_MEMORY_MB:
            raise errors.UsageError(f"Lambda memory is {MIN_MEMORY_MB}-{MAX_MEMORY_MB} MB, not "
                                  f"{memory}")
        changes["MemorySize"] = memory
    if not changes:
        raise errors.UsageError("nothing to change", "pass --timeout and/or --memory")
    described = ", ".join(f"{k} {v}" for k, v in changes.items())
    return publish_live(lam, env, fn, changes=changes, keep=keep, sleep=sleep,
                        description=f"collections configure: {described}")


def prune_all(lam: Any, env: Environment, *, keep: int = DEFAULT_KEEP,
              recorded: dict[str, str] | None = None) -> dict[str, list[str]]:
    """After a deploy: prune every deployed function (the stack retains its old versions).
    `recorded`: function name -> the version the stack's `AWS::Lambda::Version` is
    (`drift.stack_versions`); it is never pruned, whatever `live` says."""
    from collections_ops.pipeline import DEPLOYED_FUNCTIONS

    pruned: dict[str, list[str]] = {}
    for fn in DEPLOYED_FUNCTIONS:
        name = fn.function_name(env.name)
        stack_version = (recorded or {}).get(name)
        try:
            deleted = prune(lam, env, fn, keep=keep, protected=frozenset(
                [stack_version] if stack_version else []))
        except errors.NotFound:
            continue  # not deployed (yet): nothing to prune
        if deleted:
            pruned[fn.function_name(env.name)] = deleted
    return pruned
