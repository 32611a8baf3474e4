"""The deployment record: what was deployed to an environment, as opposed to what the definition
allows -- the database mode, the region and account, and for a database inside a VPC, where the
functions are placed.

Why a record: these are the operator's choices at deploy time (`--database rds`, `--subnet`),
and every later command must make the same ones. Without it, `deploy dev` after
`deploy dev --database rds` synthesizes functions outside the VPC, `destroy dev` leaves the
database stack behind, and a CLI whose profile says eu-west-1 talks to an empty region while the
stacks live in us-east-1.

Where it lives, and why two places:
- in the account, as the SSM String parameter `<prefix>/<env>/deployment` (the environment's
  scope, `Environment.record_parameter`) in the environment's region: every machine and CI
  job that deploys the environment sees the same facts (the state folder of one laptop is not
  where an account's facts belong);
- a copy in the state folder (`<state>/<env>/deployment.json`): commands read it without an AWS
  call, and the region is known before any client is built.
`deploy` writes both; a command reads the local copy, else the account's (and caches it).
It holds no secret, and `secrets list` shows only the secrets' names, so it never shows among
them.

It also keeps the environment's settings as deployed (`settings`: every value that is not the
definition's, `collections_ops.settings`), so the next deploy keeps a value the settings file
or `--set` gave once, and `collections configure` writes what it changed here, so a deploy
keeps that too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from collections_ops import aws, errors
from collections_ops import settings as operator_settings
from collections_ops.pipeline import DATABASE_MODES, DatabaseMode, Environment, VpcPlacement

RECORD_FILE = "deployment.json"
CONTEXT_SETTINGS = "collections:settings"  # the CDK context key the app reads them from
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class DeploymentRecord:
    env: str
    database: DatabaseMode
    region: str
    account: str | None = None
    placement: VpcPlacement | None = None  # `existing` database inside a VPC; None: no VPC
    deployed_at: str | None = None
    version: int = SCHEMA_VERSION
    # The settings as deployed, where not the definition's (`database` is the field above).
    settings: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["settings"] = dict(self.settings)
        if self.placement is not None:
            out["placement"] = {k: list(v) for k, v in out["placement"].items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeploymentRecord:
        """Parse a stored record; anything malformed is a configuration error, not a crash."""
        try:
            database = str(data["database"])
            if database not in DATABASE_MODES:
                raise ValueError(f"database mode {database!r}")
            placement = data.get("placement")
            return cls(
                env=str(data["env"]), database=cast(DatabaseMode, database),
                region=str(data["region"]),
                account=str(data["account"]) if data.get("account") else None,
                placement=VpcPlacement(
                    tuple(str(s) for s in placement["subnet_ids"]),
                    tuple(str(s) for s in placement["security_group_ids"]))
                if placement else None,
                deployed_at=str(data["deployed_at"]) if data.get("deployed_at") else None,
                version=int(data.get("version", SCHEMA_VERSION)),
                settings=_recorded_settings(data.get("settings") or {}))
        except (KeyError, TypeError, ValueError, errors.UsageError) as exc:
            raise errors.ConfigError(f"the deployment record is malformed ({exc})",
                                     "redeploy the environment to rewrite it") from None


def _recorded_settings(values: Any) -> dict[str, Any]:
    """A record's settings, checked; a key this CLI does not know (a newer CLI wrote it) is
    left out rather than refused."""
    if not isinstance(values, Mapping):
        raise TypeError(f"settings {values!r}")
    known = {k: v for k, v in values.items()
             if k in operator_settings.SETTABLE and k != "database"}
    return operator_settings.validate(known, where="settings")


def parameter_name(env: Environment) -> str:
    return env.record_parameter()


def record_path(state_dir: Path) -> Path:
    return state_dir / RECORD_FILE


# --------------------------------------------------------------------------- storage


def load(state_dir: Path) -> DeploymentRecord | None:
    path = record_path(state_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        raise errors.ConfigError(f"{path} is not JSON",
                                 "delete it and redeploy, or restore it") from None
    return DeploymentRecord.from_dict(data)


def save(state_dir: Path, record: DeploymentRecord) -> Path:
    """Write the local copy atomically (a crash never leaves half a record)."""
    path = record_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record.as_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def forget(state_dir: Path) -> None:
    record_path(state_dir).unlink(missing_ok=True)


def fetch(ssm: Any, env: Environment) -> DeploymentRecord | None:
    """The account's record (None when the environment was never deployed by this CLI)."""
    found = aws.or_none(lambda: ssm.get_parameter(Name=parameter_name(env)))
    if found is None:  # deployed with the first layout: the next deploy moves it (layout.py)
        from collections_ops.services import layout

        found = aws.or_none(lambda: ssm.get_parameter(Name=layout.legacy_record(env)))
    if found is None:
        return None
    value = found["Parameter"]["Value"]
    try:
        return DeploymentRecord.from_dict(json.loads(value))
    except json.JSONDecodeError:
        raise errors.ConfigError(f"SSM parameter {parameter_name(env)} is not JSON",
                                 f"redeploy: `collections deploy {env.name}`") from None


def publish(ssm: Any, env: Environment, record: DeploymentRecord) -> None:
    ssm.put_parameter(Name=parameter_name(env), Type="String", Overwrite=True,
                      Value=json.dumps(record.as_dict(), separators=(",", ":")),
                      Description=f"collections: what is deployed to {env.name} "
                      "(written by `collections deploy`)")


def unpublish(ssm: Any, env: Environment) -> None:
    aws.or_none(lambda: ssm.delete_parameter(Name=parameter_name(env)))


def current(state_dir: Path, env: Environment, *, ssm: Any | None = None
            ) -> DeploymentRecord | None:
    """The environment's record: the local copy, else the account's (cached locally)."""
    record = load(state_dir)
    if record is not None or ssm is None:
        return record
    record = fetch(ssm, env)
    if record is not None:
        save(state_dir, record)
    return record


def in_account(state_dir: Path, env: Environment, *, ssm: Any) -> DeploymentRecord | None:
    """For deploy, diff and destroy: the account's record first (another machine may have
    deployed since), refreshing the local copy; the local copy only if the account has none."""
    record = fetch(ssm, env)
    if record is None:
        return load(state_dir)
    save(state_dir, record)
    return record


# --------------------------------------------------------------------------- decisions


def region_for(env: Environment, record: DeploymentRecord | None, *,
               requested: str | None) -> str:
    """The region every command of this environment talks to: where its stacks are.

    The stacks are pinned to the definition's region; a `--region` that names another one is an
    error naming both (talking to the wrong region finds nothing, or writes secrets nobody reads).
    A profile's or AWS_REGION's default does not count: the environment decides.
    """
    region = record.region if record is not None else env.region
    if requested and requested != region:
        where = "was deployed to" if record is not None else "is defined in"
        raise errors.ConfigError(
            f"--region {requested} does not match environment {env.name}, which {where} "
            f"{region}", f"drop --region (commands use {region}), or change the region in the "
            "environment's settings and redeploy")
    return region


def recorded_settings(record: DeploymentRecord | None) -> dict[str, Any]:
    """What the record says of the settings, the database mode included."""
    if record is None:
        return {}
    return {**record.settings, "database": record.database}


def effective(env: Environment, record: DeploymentRecord | None, *,
              file: Mapping[str, Any] | None = None,
              flags: Mapping[str, Any] | None = None) -> operator_settings.Effective:
    """`env` (the definition's) as a deploy makes it: flags, then the settings file, then
    `record`, then the definition (`collections_ops.settings.resolve`). With the record a
    deploy wrote and nothing else, what it deployed."""
    return operator_settings.resolve(env, flags=flags, file=file,
                                     recorded=recorded_settings(record))


def plan(env: Environment, previous: DeploymentRecord | None, *,
         database: str | None = None, subnet_ids: Sequence[str] = (),
         security_group_ids: Sequence[str] = (), region: str | None = None,
         account: str | None = None, file: Mapping[str, Any] | None = None,
         flags: Mapping[str, Any] | None = None) -> DeploymentRecord:
    """The record a deploy of `env` (the definition's) is about to make: the options given
    (`--database`, `--set` as `flags`), else the settings `file`, else what was deployed before
    (`previous`), else the definition; an `existing` database without a VPC unless told."""
    if database is not None and database not in DATABASE_MODES:
        raise errors.UsageError(f"--database {database!r} is not one of "
                                f"{', '.join(DATABASE_MODES)}")
    chosen = effective(env, previous, file=file,
                       flags={**(flags or {}), **({"database": database} if database else {})})
    mode = chosen.env.database
    if bool(subnet_ids) != bool(security_group_ids):
        raise errors.UsageError("a VPC placement needs both --subnet and --security-group")
    bad = [i for i in subnet_ids if not i.startswith("subnet-")] + [
        g for g in security_group_ids if not g.startswith("sg-")]
    if bad:
        raise errors.UsageError(f"not subnet-/sg- ids: {', '.join(bad)}")
    placement: VpcPlacement | None = None
    if subnet_ids:
        placement = VpcPlacement(tuple(subnet_ids), tuple(security_group_ids))
    elif mode == "existing":
        placement = previous.placement if previous else env.database_vpc
    if placement is not None and mode == "rds":
        raise errors.UsageError("--subnet/--security-group are for an existing database; "
                              "--database rds creates its own network")
    if previous is not None and previous.region != env.region:
        raise errors.ConfigError(
            f"environment {env.name} was deployed to {previous.region}, but its settings now "
            f"say {env.region}", f"destroy it in {previous.region} first "
            f"(`collections destroy {env.name}`), then deploy to {env.region}")
    kept = {k: v for k, v in chosen.chosen().items() if k != "database"}
    return DeploymentRecord(env=env.name, database=cast(DatabaseMode, mode),
                            region=region_for(env, previous, requested=region),
                            account=account or env.account, placement=placement,
                            settings=kept)


def environment_of(env: Environment, record: DeploymentRecord) -> Environment:
    """`env` (the definition's) as `record` deploys it."""
    return effective(env, record).env


def with_settings(record: DeploymentRecord, values: Mapping[str, Any]) -> DeploymentRecord:
    """The record with `values` recorded over its settings (`collections configure`)."""
    return replace(record, settings={**record.settings, **_recorded_settings(values)})


def stamped(record: DeploymentRecord) -> DeploymentRecord:
    return replace(record, deployed_at=datetime.now(UTC).isoformat(timespec="seconds"))


def cdk_context(record: DeploymentRecord) -> dict[str, str]:
    """The CDK context that makes the app synthesize this record."""
    context: dict[str, str] = {"collections:database": record.database}
    if record.settings:
        # One JSON document: the app applies it over the definition (infrastructure/stacks/
        # settings.py), checked by the same rules as the settings file.
        context[CONTEXT_SETTINGS] = json.dumps(dict(record.settings), sort_keys=True,
                                               separators=(",", ":"))
    if record.placement is not None:
        context["collections:subnetIds"] = ",".join(record.placement.subnet_ids)
        context["collections:securityGroupIds"] = ",".join(record.placement.security_group_ids)
    return context


def changes(previous: DeploymentRecord | None, planned: DeploymentRecord) -> list[str]:
    """What a deploy changes in the record, in words (shown before `cdk deploy` runs)."""
    if previous is None:
        return [f"first deploy by this CLI: database {planned.database}, region "
                f"{planned.region}"]
    out = []
    if previous.database != planned.database:
        out.append(f"database: {previous.database} -> {planned.database}"
                   + (" (the database stack is removed once the compute stack no longer "
                      "uses it)" if previous.database == "rds" else ""))
    if previous.placement != planned.placement:
        out.append(f"VPC placement: {_shown(previous.placement)} -> {_shown(planned.placement)}")
    if previous.region != planned.region:
        out.append(f"region: {previous.region} -> {planned.region}")
    for key in sorted(set(previous.settings) | set(planned.settings)):
        before, after = previous.settings.get(key, _UNSET), planned.settings.get(key, _UNSET)
        if before != after:
            out.append(f"{key}: {_value(before)} -> {_value(after)}")
    return out


_UNSET = object()


def _value(value: Any) -> str:
    return "the definition's" if value is _UNSET else operator_settings.shown(value)


def _shown(placement: VpcPlacement | None) -> str:
    if placement is None:
        return "none"
    return (f"subnets {', '.join(placement.subnet_ids)}, security groups "
            f"{', '.join(placement.security_group_ids)}")


# --------------------------------------------------------------------------- configure


@dataclass(frozen=True)
class Remembered:
    """What `configure` (and `tune --apply`, `concurrency`) did with a changed setting so that
    the next deploy keeps it."""

    recorded: bool  # written into the deployment record (this machine's copy and the account's)
    overridden: dict[str, Any]  # keys collections.toml sets to another value: the deploy's
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "kept_by_deploy": self.recorded and not
                self.overridden, "overridden_by_file": self.overridden, "note": self.note}


def remember(ssm: Any, env: Environment, state_dir: Path, values: Mapping[str, Any], *,
             file: Mapping[str, Any] | None = None) -> Remembered:
    """Write `values` (settings changed outside a deploy) into the environment's deployment
    record, here and in the account, so that the next `deploy` keeps them -- unless the settings
    `file` says otherwise, which wins (and is said)."""
    overridden = {k: (file or {})[k] for k in values
                  if k in (file or {}) and (file or {})[k] != values[k]}
    record = in_account(state_dir, env, ssm=ssm)
    if record is None:
        return Remembered(False, overridden, f"{env.name} has no deployment record (it was not "
                          "deployed by `collections deploy`): the next deploy applies the "
                          "settings; put the value in collections.toml to keep it")
    updated = with_settings(record, values)
    save(state_dir, updated)
    publish(ssm, env, updated)
    if overridden:
        said = ", ".join(f"{k} = {operator_settings.shown(v)}" for k, v in overridden.items())
        return Remembered(True, overridden, f"recorded, but collections.toml sets {said}: the "
                          "next deploy applies that (change it there to keep this)")
    return Remembered(True, {}, "recorded in the deployment record: the next deploy keeps it")
