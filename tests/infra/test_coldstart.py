"""What a cold start depends on in the synthesized app: a built bundle's bytecode reaches the
code asset (Lambda's /var/task is read-only, so bytecode left out is compiled again on every
cold start), while bytecode in a source directory -- whatever Python ran the tests -- does not;
SnapStart and the architecture follow the environment's settings, and a bundle built for the
other architecture is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collections_ops import pipeline as definition
from collections_ops.services import build, bundle_deps
from stacks import settings
from stacks.code import BundleError
from stacks.settings import ConfigurationError
from tests.infra.support import SynthesizedApp, synthesize
from tests.infra.test_policy_gates import _cfn_lint_ignored_checks, _violations

PYC = "__pycache__/handler.cpython-312.pyc"


def _bundles(root: Path, platform: str) -> Path:
    """A bundle directory shaped as `collections build` leaves it (stamp included)."""
    for fn in definition.DEPLOYED_FUNCTIONS:
        code = root / fn.code_dir
        (code / "__pycache__").mkdir(parents=True)
        (code / "handler.py").write_text("def handler(event, context):\n    return {}\n")
        (code / "collections_core").mkdir()
        (code / "collections_core" / "__init__.py").write_text("")
        (code / PYC).write_bytes(b"bytecode for the runtime")
        (code / "tests").mkdir()
        (code / "tests" / "test_x.py").write_text("")
        (code / build.STAMP_FILE).write_text(f'{{"platform": "{platform}"}}\n')
    return root


@pytest.fixture(scope="module")
def bundled_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """dev, synthesized from built bundles (x86_64, the definition's default)."""
    bundles = _bundles(tmp_path_factory.mktemp("bundles"), bundle_deps.PLATFORMS["x86_64"])
    return synthesize(tmp_path_factory.mktemp("cdk-out-bundled"),
                      **{"collections:environments": "dev", "collections:bundleDir": str(bundles)})


@pytest.fixture(scope="module")
def snapstart_arm_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """dev with `snapstart = true` and `architecture = "arm64"`, from arm64 bundles."""
    bundles = _bundles(tmp_path_factory.mktemp("bundles-arm64"), bundle_deps.PLATFORMS["arm64"])
    return synthesize(tmp_path_factory.mktemp("cdk-out-arm64"),
                      **{"collections:environments": "dev", "collections:bundleDir": str(bundles),
                         settings.CONTEXT_SNAPSTART: "true",
                         settings.CONTEXT_ARCHITECTURE: "arm64"})


def _functions(app: SynthesizedApp) -> dict[str, dict[str, Any]]:
    resources = app.template_json("dev", "Compute")["Resources"]
    return {r["Properties"]["FunctionName"]: r for r in resources.values()
            if r["Type"] == "AWS::Lambda::Function"
            and str(r["Properties"].get("FunctionName", "")).startswith("collections-")}


def test_a_built_bundles_bytecode_is_in_the_code_asset(bundled_app: SynthesizedApp) -> None:
    functions = _functions(bundled_app)
    assert len(functions) == len(definition.DEPLOYED_FUNCTIONS)
    for name, resource in functions.items():
        asset = bundled_app.outdir / resource["Metadata"]["aws:asset:path"]
        assert (asset / "handler.py").is_file(), name
        assert (asset / PYC).read_bytes() == b"bytecode for the runtime", name
        assert not (asset / "tests").exists(), name


def test_bytecode_in_a_source_directory_stays_out_of_the_asset(
        existing_db_app: SynthesizedApp) -> None:
    for name, resource in _functions(existing_db_app).items():
        asset = existing_db_app.outdir / resource["Metadata"]["aws:asset:path"]
        assert (asset / "handler.py").is_file(), name
        assert not list(Path(asset).rglob("*.pyc")), name


def test_snapstart_and_arm64_on_every_function(snapstart_arm_app: SynthesizedApp) -> None:
    functions = _functions(snapstart_arm_app)
    assert set(functions) >= {fn.function_name("dev") for fn in definition.FUNCTIONS}
    for fn in definition.DEPLOYED_FUNCTIONS:
        props = functions[fn.function_name("dev")]["Properties"]
        assert props["Architectures"] == ["arm64"], fn.key
        assert props["Runtime"] == "python3.12", fn.key
        if fn.trigger.kind == "invoke":
            # Invoked directly on $LATEST (no published version): nothing to restore.
            assert "SnapStart" not in props, fn.key
        else:
            assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}, fn.key
    # SnapStart applies to published versions only: the `live` alias must point at one.
    resources = snapstart_arm_app.template_json("dev", "Compute")["Resources"]
    aliases = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Alias"]
    assert aliases and all("Fn::GetAtt" in a["Properties"]["FunctionVersion"] for a in aliases)


def test_the_default_is_x86_64_without_snapstart(bundled_app: SynthesizedApp) -> None:
    for name, resource in _functions(bundled_app).items():
        props = resource["Properties"]
        assert "SnapStart" not in props, name
        assert props.get("Architectures", ["x86_64"]) == ["x86_64"], name


def test_snapstart_and_arm64_pass_cdk_nag_and_cfn_lint(snapstart_arm_app: SynthesizedApp) -> None:
    from cfnlint.api import ManualArgs, lint_file

    assert snapstart_arm_app.validation_error is None
    assert _violations(snapstart_arm_app.validation_report) == []
    config = ManualArgs(regions=["us-east-1"], ignore_checks=_cfn_lint_ignored_checks())
    problems = [f"{Path(str(m.filename)).name}:{m.linenumber} {m.rule.id} {m.message}"
                for path in snapstart_arm_app.template_files
                for m in lint_file(path, config=config)]
    assert problems == []


def test_a_bundle_built_for_the_other_architecture_is_refused(tmp_path: Path) -> None:
    bundles = _bundles(tmp_path / "bundles", bundle_deps.PLATFORMS["x86_64"])
    with pytest.raises(BundleError, match=r"built for x86_64, but the function runs on "
                                                 r"arm64 \(rebuild: collections build"):
        synthesize(tmp_path / "out", **{"collections:environments": "dev",
                                        "collections:bundleDir": str(bundles),
                                        settings.CONTEXT_ARCHITECTURE: "arm64"})


@pytest.mark.parametrize(("key", "value", "message"), [
    (settings.CONTEXT_ARCHITECTURE, "sparc", "choose one of x86_64, arm64"),
    (settings.CONTEXT_SNAPSTART, "maybe", "choose true or false"),
])
def test_bad_cold_start_settings_are_refused(key: str, value: str, message: str) -> None:
    import aws_cdk as cdk

    with pytest.raises(ConfigurationError, match=message):
        settings.deployments(cdk.App(context={key: value}).node)


def test_the_synths_own_build_follows_the_architecture() -> None:
    """Local bundling builds for the deployment's architecture, and an asset built for one is
    never reused for the other (the architecture is part of its hash)."""
    from stacks.code import ProjectBuild, source_hash

    fn = definition.IMAGE_PROCESSOR
    assert source_hash(fn, architecture="arm64") != source_hash(fn, architecture="x86_64")
    assert source_hash(fn) == source_hash(fn, architecture="x86_64")
    bundler = ProjectBuild(fn, env_name="dev", build_dir=Path("/nonexistent"),
                           architecture="arm64")
    assert bundle_deps.PLATFORMS[bundler.architecture] == "manylinux2014_aarch64"
