"""Where a function's code asset comes from -- always a bundle that carries its dependencies.

`Code.from_asset(dir)` uploads a folder as it is, so the source folder `lambdas/<code_dir>`
(no `collections_core`, no vendored wheels) would deploy a handler that fails with
`ModuleNotFoundError`. Two routes, never a bare source folder:

- a bundle directory built beforehand (`collections build ENV`, which `collections deploy`
  runs; `-c collections:bundleDir=DIR` or `COLLECTIONS_BUNDLE_DIR`), checked to be a bundle;
- otherwise CDK local bundling (`ILocalBundling`, no Docker): the synth itself runs the
  project's build (`collections_ops.services.build.build`) for the function, into the same
  folder `collections build` uses, so its pip step is skipped when the requirements did not
  change. The asset hash is computed from what the bundle is made of (the function's code, the
  shared package, its requirements, the target Python), so CDK skips an asset it has already
  staged and a change to any of them produces a new asset.

If the build fails (no network for pip, a requirement without a wheel), the synth fails with
one line that says how to build.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

from collections_ops import pipeline

INFRASTRUCTURE_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = INFRASTRUCTURE_DIR.parent
LAMBDAS_DIR = REPO_DIR / "lambdas"
SHARED_PACKAGE = "collections_core"
BUILD_STAMP = ".collections-build.json"  # services/build.py's STAMP_FILE
# Files that never belong in a function's code asset.
ASSET_EXCLUDES = ["__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", "tests", BUILD_STAMP]
# A built bundle keeps its __pycache__: the bytecode compiled for the runtime's Python, without
# which every cold start compiles each module again (/var/task is read-only).
BUNDLE_ASSET_EXCLUDES = [".mypy_cache", ".pytest_cache", "tests", BUILD_STAMP]
# Bump when the way bundles are made changes in a way the hashed inputs do not show.
BUNDLE_RECIPE = "1"


class BundleError(ValueError):
    """A function's code cannot be deployed as it is; the message says how to build it."""


# Failures raised inside CDK's bundling callback reach the app wrapped in jsii's RuntimeError
# and a JavaScript stack; app.py prints the first of these instead, as one line.
FAILURES: list[str] = []
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\[[0-9;]*m")


def how_to_build(env_name: str) -> str:
    return (f"run `collections build {env_name}` and deploy with `collections deploy "
            f"{env_name}`, or pass `-c collections:bundleDir=<dir>` with bundles built by it")


def source_hash(fn: pipeline.Function, lambdas_dir: Path = LAMBDAS_DIR,
                architecture: pipeline.Architecture = "x86_64") -> str:
    """What a bundle is made of: the function's files, the shared package, the target
    (Python version and architecture: the wheels differ)."""
    digest = hashlib.sha256(
        f"{BUNDLE_RECIPE}:{pipeline.PYTHON_VERSION}:{architecture}".encode())
    for root in (lambdas_dir / fn.code_dir, lambdas_dir / "shared" / SHARED_PACKAGE):
        for path in sorted(p for p in root.rglob("*") if p.is_file()
                           and "__pycache__" not in p.parts and p.suffix != ".pyc"):
            digest.update(str(path.relative_to(lambdas_dir)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@jsii.implements(cdk.ILocalBundling)
class ProjectBuild:
    """CDK local bundling that runs the project's build for one function."""

    def __init__(self, fn: pipeline.Function, *, env_name: str, build_dir: Path,
                 lambdas_dir: Path = LAMBDAS_DIR,
                 architecture: pipeline.Architecture = "x86_64") -> None:
        self.fn = fn
        self.env_name = env_name
        self.build_dir = build_dir
        self.lambdas_dir = lambdas_dir
        self.architecture = architecture

    def try_bundle(self, output_dir: str, *, image: Any = None, **_: Any) -> bool:
        from collections_ops.services import build
        from collections_ops.services.bundle_deps import PLATFORMS

        try:
            (report,) = build.build(self.env_name, out_dir=self.build_dir, functions=[self.fn],
                                    lambdas_dir=self.lambdas_dir,
                                    platform=PLATFORMS[self.architecture])
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc)
            message = _ANSI.sub("", message).strip()
            first = message.splitlines()[0] if message else type(exc).__name__
            FAILURES.append(f"cannot build the {self.fn.key} bundle ({first}): "
                            f"{how_to_build(self.env_name)}")
            raise BundleError(FAILURES[-1]) from None
        shutil.copytree(report.path, output_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(*BUNDLE_ASSET_EXCLUDES))
        return True


@dataclass(frozen=True)
class CodeLocator:
    """Bundles from `bundle_dir` when given, else built at synth by local bundling into
    `build_dir` (the folder `collections build` uses)."""

    bundle_dir: Path | None = None
    build_dir: Path | None = None
    lambdas_dir: Path = LAMBDAS_DIR

    def path_for(self, fn: pipeline.Function) -> Path | None:
        """The prebuilt bundle of `fn`, or None when the synth must build it."""
        if self.bundle_dir is None:
            return None
        bundled = self.bundle_dir / fn.code_dir
        if not bundled.is_dir():
            return None  # not built by this bundle step: the synth builds it
        handler_module = fn.handler.split(".")[0] + ".py"
        missing = [name for name in (handler_module, SHARED_PACKAGE)
                   if not (bundled / name).exists()]
        if missing:
            # A half-built bundle must not silently deploy without its dependencies.
            raise BundleError(f"{bundled} is not a built bundle (no {', '.join(missing)}): "
                              "rebuild it with `collections build <env>`")
        return bundled

    def check_architecture(self, fn: pipeline.Function,
                           architecture: pipeline.Architecture) -> None:
        """A prebuilt bundle's compiled wheels run on one architecture: refuse to deploy
        x86_64 wheels to an arm64 function (it would fail at import on its first invocation)."""
        prebuilt = self.path_for(fn)
        if prebuilt is None:
            return
        from collections_ops.services import build

        built_for = build.bundle_architecture(prebuilt)
        if built_for is not None and built_for != architecture:
            raise BundleError(
                f"the {fn.key} bundle in {prebuilt.parent} was built for {built_for}, but the "
                f"function runs on {architecture} (rebuild: collections build <env>)")

    def code_for(self, fn: pipeline.Function, *, env_name: str,
                 architecture: pipeline.Architecture = "x86_64") -> lambda_.Code:
        prebuilt = self.path_for(fn)
        if prebuilt is not None:
            self.check_architecture(fn, architecture)
            return lambda_.Code.from_asset(str(prebuilt), exclude=BUNDLE_ASSET_EXCLUDES)
        source = self.lambdas_dir / fn.code_dir
        if not source.is_dir():
            raise BundleError(f"function source directory {source} does not exist")
        build_dir = self.build_dir or default_build_dir(env_name)
        return lambda_.Code.from_asset(
            str(source),
            asset_hash_type=cdk.AssetHashType.CUSTOM,
            asset_hash=source_hash(fn, self.lambdas_dir, architecture),
            bundling=cdk.BundlingOptions(
                # Only used if local bundling declined, which ProjectBuild never does.
                image=cdk.DockerImage.from_registry(f"public.ecr.aws/sam/build-{pipeline.RUNTIME}"),
                local=ProjectBuild(fn, env_name=env_name, build_dir=build_dir,
                                   lambdas_dir=self.lambdas_dir, architecture=architecture),
            ),
        )


def default_build_dir(env_name: str) -> Path:
    from collections_ops import settings

    return Path(settings.load().state_root) / "build" / env_name
