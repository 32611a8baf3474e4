"""What the infrastructure tests share: where things are, the test account, and one in-process
synthesis of the CDK app -- run exactly as `cdk synth` runs it (same `cdk.json` context)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO / "infrastructure"
TEST_ACCOUNT = "123456789012"

# The jsii kernel (a node process) starts at the first `import aws_cdk`, possibly while test
# modules are collected -- before any fixture runs -- so these must be set at import.
os.environ.setdefault("CDK_DISABLE_TELEMETRY", "true")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

try:
    import collections_ops.pipeline  # noqa: F401 -- probing only
except ImportError:
    sys.path.insert(0, str(REPO / "src"))
if str(INFRA_DIR) not in sys.path:
    sys.path.insert(0, str(INFRA_DIR))

# Variables that would change what the app synthesizes, or where the CDK CLI looks for an
# account. They are removed only around a synthesis and from the CLI's environment -- never for
# the whole session, which other test packages share.
LEAKY_VARIABLES = (
    "COLLECTIONS_BUNDLE_DIR", "CDK_DEFAULT_ACCOUNT", "CDK_DEFAULT_REGION", "CDK_CONTEXT_JSON",
    "CDK_OUTDIR", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
)


def cdk_json_context() -> dict[str, Any]:
    """The context `cdk synth` passes to the app: feature flags and our settings."""
    context = json.loads((INFRA_DIR / "cdk.json").read_text())["context"]
    assert isinstance(context, dict)
    return context


@dataclass
class SynthesizedApp:
    """One in-process synthesis of the whole app (every AWS environment)."""

    app: Any  # aws_cdk.App
    stacks: dict[str, Any]  # env name -> stacks.application.EnvironmentStacks
    outdir: Path
    validation_error: str | None
    bundle_dir: Path
    _templates: dict[str, Any] = field(default_factory=dict)

    def stack(self, env_name: str, kind: str) -> Any:
        stacks = self.stacks[env_name]
        found = {"Compute": stacks.compute, "Monitoring": stacks.monitoring,
                 "Database": stacks.database}[kind]
        assert found is not None, f"no {kind} stack for {env_name}"
        return found

    def template(self, env_name: str, kind: str) -> Any:
        """`Template.from_stack` -- or, if cdk-nag failed the synth, the written template (so
        the other tests still report what they check)."""
        from aws_cdk import assertions

        key = f"{env_name}/{kind}"
        if key not in self._templates:
            stack = self.stack(env_name, kind)
            if self.validation_error is None:
                self._templates[key] = assertions.Template.from_stack(stack)
            else:
                path = self.outdir / stack.template_file
                self._templates[key] = assertions.Template.from_json(json.loads(path.read_text()))
        return self._templates[key]

    def template_json(self, env_name: str, kind: str) -> dict[str, Any]:
        result = self.template(env_name, kind).to_json()
        assert isinstance(result, dict)
        return result

    @property
    def template_files(self) -> list[Path]:
        return sorted(self.outdir.glob("*.template.json"))

    @property
    def validation_report(self) -> dict[str, Any]:
        report = json.loads((self.outdir / "validation-report.json").read_text())
        assert isinstance(report, dict)
        return report

    def stack_metadata(self) -> dict[str, list[dict[str, Any]]]:
        """Construct path -> metadata entries, across every stack of the assembly."""
        merged: dict[str, list[dict[str, Any]]] = {}
        for path in self.outdir.glob("*.metadata.json"):
            for construct_path, entries in json.loads(path.read_text()).items():
                merged.setdefault(construct_path, []).extend(entries)
        return merged


def fake_bundles(out_dir: Path) -> Path:
    """Bundles shaped as `collections build` makes them -- the function's modules, the shared
    package, its build stamp -- without the vendored wheels, which only the bundle tests
    (tests/unit/test_build.py, test_cdk_cli.py) need: the template tests then synthesize in
    seconds instead of running pip."""
    import shutil

    from collections_ops import pipeline

    shared = REPO / "lambdas" / "shared" / "collections_core"
    for fn in pipeline.DEPLOYED_FUNCTIONS:
        bundle = out_dir / fn.code_dir
        if bundle.exists():
            continue
        bundle.mkdir(parents=True)
        for module in (REPO / "lambdas" / fn.code_dir).glob("*.py"):
            shutil.copy2(module, bundle / module.name)
        shutil.copytree(shared, bundle / "collections_core",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (bundle / ".collections-build.json").write_text('{"format": 1}\n')
    return out_dir


def synthesize(outdir: Path, *, account: str | None = TEST_ACCOUNT,
               **context: Any) -> SynthesizedApp:
    """Synthesize the app into `outdir`; `account=None` leaves the account to CloudFormation.
    Unless the context names a bundle directory, the code comes from `fake_bundles`."""
    import aws_cdk as cdk

    from stacks.application import build

    context.setdefault("collections:bundleDir",
                       str(fake_bundles(outdir.parent / f"{outdir.name}-bundles")))

    error = None
    with pytest.MonkeyPatch.context() as patch:
        for name in LEAKY_VARIABLES:
            patch.delenv(name, raising=False)
        app = cdk.App(outdir=str(outdir), context={
            **cdk_json_context(),
            **({"collections:account": account} if account else {}),
            "aws:cdk:enable-asset-metadata": True,  # as the CLI does: lets tests find assets
            **context,
        })
        stacks = build(app)
        try:
            app.synth()
        except RuntimeError as exc:
            if "ValidationFailed" not in str(exc):
                raise
            error = str(exc)  # cdk-nag found something; the gate test reports it
    return SynthesizedApp(app=app, stacks=stacks, outdir=outdir, validation_error=error,
                          bundle_dir=Path(context["collections:bundleDir"]))
