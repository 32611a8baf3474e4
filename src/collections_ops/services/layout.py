"""Moving an environment from the first SSM layout into its own scope, without losing a value.

The first layout kept everything under the shared prefix: one `/collections/DATABASE_URL` that
every environment's functions read (so a deploy of prod wrote the URL dev used) and the
deployment record at `/collections/deployment/<env>`. Now both live in the environment's scope
(`Environment.legacy_parameters` names each old parameter and its new place); the API keys were
already where the shared scope is.

A move happens in two steps, because the functions deployed before it still read the old names:
- `copy_forward` (before `cdk deploy`, or `collections secrets migrate`): each old parameter
  that exists is copied to its new name, with its type, description and KMS key. A new
  parameter that already holds another value wins (it was written for this layout) and the old
  one is left alone.
- `retire` (after a deploy succeeded, or `secrets migrate --remove-old`): an old parameter is
  deleted only once its value is safely at its new name, and the old DATABASE_URL only once no
  other environment still runs on the old layout (its old record still exists): it reads it.
Each step returns what it did, as `Move`s the CLI prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from collections_ops import aws
from collections_ops.pipeline import ENVIRONMENTS, SECRETS, Environment

DEFAULT_KEY = "alias/aws/ssm"


@dataclass(frozen=True)
class Move:
    source: str
    target: str
    outcome: str  # copied | already there | kept | removed
    detail: str = ""

    def sentence(self) -> str:
        text = {"copied": f"copied {self.source} to {self.target}",
                "already there": f"{self.target} already holds {self.source}'s value",
                "kept": f"kept {self.source}",
                "removed": f"removed {self.source} (its value is in {self.target})",
                }[self.outcome]
        return f"{text}: {self.detail}" if self.detail else text

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _read(ssm: Any, name: str) -> dict[str, Any] | None:
    found = aws.or_none(lambda: ssm.get_parameter(Name=name, WithDecryption=True))
    return None if found is None else dict(found["Parameter"])


def _described(ssm: Any, name: str) -> dict[str, Any]:
    response = ssm.describe_parameters(
        ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}])
    return dict(next(iter(response.get("Parameters", [])), {}))


def _is_secret(env: Environment, old: str) -> bool:
    return old in {f"{env.parameter_prefix}/{s.name}" for s in SECRETS}


def copy_forward(ssm: Any, env: Environment) -> list[Move]:
    """Copy the old layout's parameters of `env` to their new names (nothing is deleted)."""
    moves = []
    for old, new in env.legacy_parameters().items():
        source = _read(ssm, old)
        if source is None:
            continue
        target = _read(ssm, new)
        if target is not None:
            same = target["Value"] == source["Value"]
            moves.append(Move(old, new, "already there" if same else "kept",
                              "" if same else f"{new} holds another value, which wins; "
                              f"{old} is left as it is"))
            continue
        described = _described(ssm, old)
        kwargs: dict[str, Any] = {"Name": new, "Value": source["Value"],
                                  "Type": source["Type"], "Overwrite": False}
        if described.get("Description"):
            kwargs["Description"] = described["Description"]
        if source["Type"] == "SecureString" and described.get("KeyId") not in (None, DEFAULT_KEY):
            kwargs["KeyId"] = described["KeyId"]
        ssm.put_parameter(**kwargs)
        detail = ""
        if _is_secret(env, old):
            detail = ("it was every environment's; give this one its own with "
                      f"`collections secrets put {old.rpartition('/')[2]} --env {env.name}`")
        moves.append(Move(old, new, "copied", detail))
    return moves


def legacy_record(env: Environment) -> str:
    """Where the first layout kept `env`'s deployment record."""
    return next(old for old, new in env.legacy_parameters().items()
                if new == env.record_parameter())


def _on_old_layout(ssm: Any, env: Environment) -> bool:
    """Its old record still exists: its deployed functions read the old names."""
    return _read(ssm, legacy_record(env)) is not None


def retire(ssm: Any, env: Environment) -> list[Move]:
    """Delete the old parameters of `env` whose value is at its new name, unless another
    environment still reads them."""
    moves = []
    for old, new in env.legacy_parameters().items():
        source = _read(ssm, old)
        if source is None:
            continue
        target = _read(ssm, new)
        # A secret's value must be at its new name; the record is replaced by each deploy,
        # so the new one being there is enough.
        if target is None or (_is_secret(env, old) and target["Value"] != source["Value"]):
            moves.append(Move(old, new, "kept", f"{new} does not hold its value"
                              if target is None else f"{new} holds another value"))
            continue
        if _is_secret(env, old):
            readers = [e for e in ENVIRONMENTS.values() if e.name != env.name
                       and _on_old_layout(ssm, e)]
            if readers:
                names = ", ".join(e.name for e in readers)
                moves.append(Move(old, new, "kept", f"{names} still run on the old layout and "
                                  "read it; their next deploy moves them"))
                continue
        aws.or_none(lambda name=old: ssm.delete_parameter(Name=name))  # type: ignore[misc]
        moves.append(Move(old, new, "removed"))
    return moves


def migrate(ssm: Any, env: Environment, *, remove_old: bool) -> list[Move]:
    """`collections secrets migrate`: copy forward, then (asked to) retire what was moved."""
    moves = copy_forward(ssm, env)
    return moves + retire(ssm, env) if remove_old else moves
