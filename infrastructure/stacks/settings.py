"""What one deployment of the pipeline is: the environment's settings plus what only the CDK app
knows (account, database mode, where each function's code comes from).

Everything here is read from the pipeline definition first; CDK context (`-c key=value` or
`cdk.json`) and a few environment variables only fill in what the definition leaves open.
No function, bucket, rule or parameter name is spelled in this package -- they all come from
`collections_ops.pipeline`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aws_cdk as cdk
from constructs import Node

from collections_ops import pipeline
from collections_ops.pipeline import DatabaseMode
from stacks.code import INFRASTRUCTURE_DIR, CodeLocator

# CDK context keys (all optional).
CONTEXT_ACCOUNT = "collections:account"  # account id for every environment of this app
CONTEXT_ENVIRONMENTS = "collections:environments"  # "dev,prod" (default: every AWS environment)
CONTEXT_DATABASE = "collections:database"  # "existing" or "rds" (default: the definition's)
CONTEXT_BUNDLE_DIR = "collections:bundleDir"  # built bundles: <dir>/<code_dir>/
CONTEXT_BUILD_DIR = "collections:buildDir"  # where the synth builds bundles it was not given
# Database mode `existing` inside a VPC: comma-separated ids (default: the definition's).
CONTEXT_SUBNET_IDS = "collections:subnetIds"
CONTEXT_SECURITY_GROUP_IDS = "collections:securityGroupIds"
CONTEXT_ALARM_EMAIL = "collections:alarmEmail"  # subscribed to the alarm topic
CONTEXT_RDS_PROXY = "collections:rdsProxy"  # "true": connect through RDS Proxy (mode rds)
CONTEXT_SNAPSTART = "collections:snapstart"  # "true" / "false" (default: the definition's)
CONTEXT_ARCHITECTURE = "collections:architecture"  # x86_64 / arm64 (default: the definition's)
# JSON {setting: value} over the definition: what `collections deploy` resolved from its flags,
# collections.toml and the deployment record (collections_ops/settings.py). The keys above
# win over it, for a `cdk` run by hand.
CONTEXT_SETTINGS = "collections:settings"
ENV_BUNDLE_DIR = "COLLECTIONS_BUNDLE_DIR"  # same as CONTEXT_BUNDLE_DIR, for build scripts

DATABASE_MODES = pipeline.DATABASE_MODES


class ConfigurationError(ValueError):
    """The app's context asks for something the pipeline definition cannot deploy."""


@dataclass(frozen=True)
class Deployment:
    """One environment of the pipeline as the CDK app deploys it."""

    settings: pipeline.Environment
    account: str | None  # None: CloudFormation's AWS::AccountId at deploy time
    database: DatabaseMode
    code: CodeLocator
    # Mode `existing` only: the VPC placement that reaches the operator's database.
    database_vpc: pipeline.VpcPlacement | None = None
    snapstart: bool = False  # SnapStart on published versions (what the `live` alias runs)
    architecture: pipeline.Architecture = "x86_64"

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def region(self) -> str:
        return self.settings.region

    @property
    def account_or_token(self) -> str:
        return self.account if self.account is not None else cdk.Aws.ACCOUNT_ID

    @property
    def cdk_environment(self) -> cdk.Environment:
        return cdk.Environment(account=self.account, region=self.region)

    def stack_name(self, kind: str) -> str:
        return self.settings.stack_name(kind)

    @property
    def images_bucket_name(self) -> str:
        return self.settings.images_bucket(self.account_or_token)

    @property
    def thumbnails_bucket_name(self) -> str:
        return self.settings.thumbnails_bucket(self.account_or_token)

    @property
    def is_production(self) -> bool:
        """Multi-AZ and deletion protection for the RDS option, retained log groups."""
        return self.settings.production


def _context(node: Node, key: str) -> str | None:
    value = node.try_get_context(key)
    if value is None or value == "":
        return None
    return str(value)


def database_mode(node: Node, settings: pipeline.Environment) -> DatabaseMode:
    value = _context(node, CONTEXT_DATABASE) or settings.database
    if value not in DATABASE_MODES:
        raise ConfigurationError(
            f"{CONTEXT_DATABASE}={value!r}: choose one of {', '.join(DATABASE_MODES)}"
        )
    return cast(DatabaseMode, value)


def _path(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else (INFRASTRUCTURE_DIR / path).resolve()


def snapstart(node: Node, settings: pipeline.Environment) -> bool:
    value = _context(node, CONTEXT_SNAPSTART)
    if value is None:
        return settings.snapstart
    if value.lower() not in ("true", "false"):
        raise ConfigurationError(f"{CONTEXT_SNAPSTART}={value!r}: choose true or false")
    return value.lower() == "true"


def architecture(node: Node, settings: pipeline.Environment) -> pipeline.Architecture:
    value = _context(node, CONTEXT_ARCHITECTURE) or settings.architecture
    if value not in pipeline.ARCHITECTURES:
        raise ConfigurationError(f"architecture {value!r}: choose one of "
                                 f"{', '.join(pipeline.ARCHITECTURES)}")
    return cast(pipeline.Architecture, value)


def code_locator(node: Node) -> CodeLocator:
    bundle = _context(node, CONTEXT_BUNDLE_DIR) or os.environ.get(ENV_BUNDLE_DIR) or None
    return CodeLocator(bundle_dir=_path(bundle),
                       build_dir=_path(_context(node, CONTEXT_BUILD_DIR)))


def _ids(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def database_vpc(node: Node, settings: pipeline.Environment,
                 mode: DatabaseMode) -> pipeline.VpcPlacement | None:
    subnets = _ids(_context(node, CONTEXT_SUBNET_IDS))
    groups = _ids(_context(node, CONTEXT_SECURITY_GROUP_IDS))
    placement = (pipeline.VpcPlacement(subnet_ids=subnets, security_group_ids=groups)
                 if subnets or groups else settings.database_vpc)
    if placement is None:
        return None
    if mode != "existing":
        raise ConfigurationError("subnet and security group ids place the functions next to an "
                                 "existing database; the rds mode creates its own VPC")
    if not placement.subnet_ids or not placement.security_group_ids:
        raise ConfigurationError(f"{CONTEXT_SUBNET_IDS} and {CONTEXT_SECURITY_GROUP_IDS} go "
                                 "together: Lambda needs both to place a function in a VPC")
    bad = [i for i in placement.subnet_ids if not i.startswith("subnet-")] + [
        i for i in placement.security_group_ids if not i.startswith("sg-")]
    if bad:
        raise ConfigurationError(f"not subnet-/sg- ids: {', '.join(bad)}")
    return placement


def _with_context_settings(node: Node, settings: pipeline.Environment) -> pipeline.Environment:
    """The definition's settings with what an operator passed as context (the CLI passes the
    environment's deployment record this way)."""
    settings = _with_settings_document(node, settings)
    email = _context(node, CONTEXT_ALARM_EMAIL)
    proxy = _context(node, CONTEXT_RDS_PROXY)
    if proxy is not None and proxy.lower() not in ("true", "false"):
        raise ConfigurationError(f"{CONTEXT_RDS_PROXY}={proxy!r}: use true or false")
    return dataclasses.replace(
        settings,
        alarm_email=email if email is not None else settings.alarm_email,
        rds_proxy=proxy.lower() == "true" if proxy is not None else settings.rds_proxy)


def _with_settings_document(node: Node, settings: pipeline.Environment) -> pipeline.Environment:
    import json

    from collections_ops import errors
    from collections_ops import settings as operator_settings

    document = _context(node, CONTEXT_SETTINGS)
    if document is None:
        return settings
    try:
        values = json.loads(document)
        if not isinstance(values, dict):
            raise ValueError("not an object")
        # The same checks as collections.toml's: an unknown key is refused, not ignored.
        return operator_settings.resolve(settings, flags=values).env
    except ValueError as exc:
        raise ConfigurationError(f"{CONTEXT_SETTINGS}: not a JSON object ({exc})") from None
    except errors.UsageError as exc:
        raise ConfigurationError(f"{CONTEXT_SETTINGS}: {exc.message}") from None


def deployments(node: Node) -> list[Deployment]:
    """Every environment this app synthesizes: the definition's AWS environments, or the
    subset named by the `collections:environments` context value."""
    aws_environments = [e for e in pipeline.ENVIRONMENTS.values() if not e.is_local]
    wanted = _context(node, CONTEXT_ENVIRONMENTS)
    if wanted is not None:
        names = [n.strip() for n in wanted.split(",") if n.strip()]
        try:
            selected = [pipeline.environment(n) for n in names]
        except KeyError as exc:
            raise ConfigurationError(str(exc.args[0])) from None
        local = [e.name for e in selected if e.is_local]
        if local:
            raise ConfigurationError(
                f"{', '.join(local)} runs on the embedded local cloud, not through CDK"
            )
        aws_environments = selected
    account_override = _context(node, CONTEXT_ACCOUNT)
    code = code_locator(node)
    result = []
    for defined in aws_environments:
        settings = _with_context_settings(node, defined)
        account = (account_override or settings.account
                   or os.environ.get("CDK_DEFAULT_ACCOUNT") or None)
        mode = database_mode(node, settings)
        result.append(Deployment(settings=settings, account=account, database=mode, code=code,
                                 database_vpc=database_vpc(node, settings, mode),
                                 snapstart=snapstart(node, settings),
                                 architecture=architecture(node, settings)))
    return result
