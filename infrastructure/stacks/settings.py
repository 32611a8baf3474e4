"""What one deployment of the pipeline is: the environment's settings plus what only the CDK app
knows (account, database mode, where each function's code comes from).

Everything here is read from the pipeline definition first; CDK context (`-c key=value` or
`cdk.json`) and a few environment variables only fill in what the definition leaves open.
No function, bucket, rule or parameter name is spelled in this package -- they all come from
`collections_ops.pipeline`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import aws_cdk as cdk
from constructs import Node

from collections_ops import pipeline

INFRASTRUCTURE_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = INFRASTRUCTURE_DIR.parent
LAMBDAS_DIR = REPO_DIR / "lambdas"

# CDK context keys (all optional).
CONTEXT_ACCOUNT = "collections:account"  # account id for every environment of this app
CONTEXT_ENVIRONMENTS = "collections:environments"  # "dev,prod" (default: every AWS environment)
CONTEXT_DATABASE = "collections:database"  # "existing" (default) or "rds"
CONTEXT_BUNDLE_DIR = "collections:bundleDir"  # built bundles: <dir>/<code_dir>/
CONTEXT_SNAPSTART = "collections:snapstart"  # "true" / "false" (default: the definition's)
CONTEXT_ARCHITECTURE = "collections:architecture"  # x86_64 / arm64 (default: the definition's)
ENV_BUNDLE_DIR = "COLLECTIONS_BUNDLE_DIR"  # same as CONTEXT_BUNDLE_DIR, for build scripts

PRODUCTION_ENVIRONMENT = "prod"

DatabaseMode = Literal["existing", "rds"]
DATABASE_MODES: tuple[DatabaseMode, ...] = ("existing", "rds")

# Files that never belong in a function's code asset.
ASSET_EXCLUDES = ["__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", "tests"]
# A built bundle keeps its __pycache__: the bytecode compiled for the runtime's Python, without
# which every cold start compiles each module again (/var/task is read-only).
BUNDLE_ASSET_EXCLUDES = [".mypy_cache", ".pytest_cache", "tests"]


class ConfigurationError(ValueError):
    """The app's context asks for something the pipeline definition cannot deploy."""


@dataclass(frozen=True)
class CodeLocator:
    """Where a function's code asset comes from: a built bundle if a build step made one,
    otherwise the function's source directory under `lambdas/`."""

    lambdas_dir: Path = LAMBDAS_DIR
    bundle_dir: Path | None = None

    def check_architecture(self, fn: pipeline.Function,
                           architecture: pipeline.Architecture) -> None:
        """A bundle's compiled wheels run on one architecture: refuse to deploy x86_64 wheels
        to an arm64 function (it would fail at import on its first invocation)."""
        if self.bundle_dir is None:
            return
        from collections_ops.services import build

        built_for = build.bundle_architecture(self.bundle_dir / fn.code_dir)
        if built_for is not None and built_for != architecture:
            raise ConfigurationError(
                f"the {fn.key} bundle in {self.bundle_dir} was built for {built_for}, but the "
                f"function runs on {architecture} (rebuild: collections build <env>)")

    @property
    def excludes(self) -> list[str]:
        # Source directories hold bytecode of whatever Python ran the tests: left out.
        return list(BUNDLE_ASSET_EXCLUDES if self.bundle_dir is not None else ASSET_EXCLUDES)

    def path_for(self, fn: pipeline.Function) -> Path:
        if self.bundle_dir is not None:
            bundled = self.bundle_dir / fn.code_dir
            if not bundled.is_dir():
                # A half-built bundle must not silently deploy source without its dependencies.
                raise ConfigurationError(
                    f"bundle directory {self.bundle_dir} has no {fn.code_dir}/ "
                    f"(built by the bundle step for {fn.function_name('<env>')})"
                )
            return bundled
        source = self.lambdas_dir / fn.code_dir
        if not source.is_dir():
            raise ConfigurationError(f"function source directory {source} does not exist")
        return source


@dataclass(frozen=True)
class Deployment:
    """One environment of the pipeline as the CDK app deploys it."""

    settings: pipeline.Environment
    account: str | None  # None: CloudFormation's AWS::AccountId at deploy time
    database: DatabaseMode
    code: CodeLocator
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
        # Multi-AZ and deletion protection for the RDS option. The definition has no
        # "production" flag yet, so the environment's name decides.
        return getattr(self.settings, "production", self.name == PRODUCTION_ENVIRONMENT)


def _context(node: Node, key: str) -> str | None:
    value = node.try_get_context(key)
    if value is None or value == "":
        return None
    return str(value)


def database_mode(node: Node, settings: pipeline.Environment) -> DatabaseMode:
    # Until the definition carries a `database` setting, CDK context chooses (default: existing).
    value = _context(node, CONTEXT_DATABASE) or getattr(settings, "database", None) or "existing"
    if value not in DATABASE_MODES:
        raise ConfigurationError(
            f"{CONTEXT_DATABASE}={value!r}: choose one of {', '.join(DATABASE_MODES)}"
        )
    return cast(DatabaseMode, value)


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
    if bundle is None:
        return CodeLocator()
    path = Path(bundle)
    if not path.is_absolute():
        path = (INFRASTRUCTURE_DIR / path).resolve()
    return CodeLocator(bundle_dir=path)


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
    for settings in aws_environments:
        account = (account_override or settings.account
                   or os.environ.get("CDK_DEFAULT_ACCOUNT") or None)
        result.append(Deployment(settings=settings, account=account,
                                 database=database_mode(node, settings), code=code,
                                 snapstart=snapstart(node, settings),
                                 architecture=architecture(node, settings)))
    return result
