"""The pinned CDK CLI (infrastructure/package.json) runs the app: the guide's
`cdk synth CollectionsComputeStack-dev`, offline, with no AWS credentials."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from collections_ops import pipeline as definition
from tests import wheelhouse
from tests.infra.support import INFRA_DIR, LEAKY_VARIABLES, TEST_ACCOUNT, fake_bundles

CDK_BIN = INFRA_DIR / "node_modules" / ".bin" / "cdk"


def _pinned_version() -> str:
    package = json.loads((INFRA_DIR / "package.json").read_text())
    return str(package["devDependencies"]["aws-cdk"])


def test_cli_version_is_pinned_exactly_and_locked() -> None:
    pinned = _pinned_version()
    assert pinned[0].isdigit(), f"aws-cdk must be an exact version, not {pinned!r}"
    lock = json.loads((INFRA_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/aws-cdk"]["version"] == pinned
    installed = INFRA_DIR / "node_modules" / "aws-cdk" / "package.json"
    if installed.exists():
        assert json.loads(installed.read_text())["version"] == pinned


def test_cdk_json_runs_the_app_with_python() -> None:
    cdk_json = json.loads((INFRA_DIR / "cdk.json").read_text())
    assert cdk_json["app"] == "python3 app.py"


def _cli_environment(cdk_home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARIABLES}
    env.update({
        # `python3` in cdk.json must be this interpreter (the one with aws-cdk-lib).
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "CDK_HOME": str(cdk_home),
        "CDK_DISABLE_TELEMETRY": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        **extra,
    })
    return env


def _guide_synth(out: Path, env: dict[str, str], *context: str
                 ) -> subprocess.CompletedProcess[str]:
    """The guide's `npx cdk synth CollectionsComputeStack-dev`, from infrastructure/."""
    if not CDK_BIN.exists():
        pytest.skip("infrastructure/node_modules/.bin/cdk is missing: run "
                    "`cd infrastructure && npm ci` to install the pinned CDK CLI")
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not on PATH")
    stack = definition.environment("dev").stack_name("Compute")
    args = [a for c in ("collections:account=" + TEST_ACCOUNT, *context) for a in ("-c", c)]
    return subprocess.run(
        [npx, "--no", "cdk", "synth", stack, *args, "--output", str(out), "--no-notices",
         "--quiet"],
        cwd=INFRA_DIR, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_pinned_cli_synthesizes_the_compute_stack_from_bundles(cdk_home: Path,
                                                               tmp_path: Path) -> None:
    bundles = fake_bundles(tmp_path / "bundles")
    out = tmp_path / "cdk.out"
    result = _guide_synth(out, _cli_environment(cdk_home), f"collections:bundleDir={bundles}")
    assert result.returncode == 0, result.stderr[-6000:]
    stack = definition.environment("dev").stack_name("Compute")
    template = json.loads((out / f"{stack}.template.json").read_text())
    functions = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert {r["Properties"]["FunctionName"] for r in functions} == {
        fn.function_name("dev") for fn in definition.DEPLOYED_FUNCTIONS}
    for function in functions:
        asset = out / function["Metadata"]["aws:asset:path"]
        assert (asset / "collections_core" / "migrate.py").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert stack in manifest["artifacts"]


def test_without_bundles_a_failed_build_fails_the_synth_in_one_line(cdk_home: Path,
                                                                    tmp_path: Path) -> None:
    # GIVEN no bundles and a pip that can reach no index (a machine offline)
    env = _cli_environment(cdk_home, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
                           PIP_FIND_LINKS="")
    result = _guide_synth(tmp_path / "cdk.out", env,
                          f"collections:buildDir={tmp_path / 'build'}")
    # THEN the synth fails, and says how to build in one line -- never a bare source folder
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("collections: ")]
    assert len(lines) == 1, result.stderr[-3000:]
    assert "cannot build the" in lines[0] and "collections build dev" in lines[0]
    assert "Traceback" not in result.stderr


def test_local_bundling_runs_the_projects_build(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The ILocalBundling the synth uses, for real (pip, offered only the locked wheels that
    `make wheelhouse` fetched: no index): the asset holds the handler, collections_core and the
    vendored wheels."""
    from stacks.code import ProjectBuild

    if not wheelhouse.current():
        pytest.fail(wheelhouse.missing_message())
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheelhouse.path()))

    output = tmp_path / "asset"
    output.mkdir()
    bundler = ProjectBuild(definition.OPERATIONS, env_name="dev", build_dir=tmp_path / "build")
    assert bundler.try_bundle(str(output)) is True
    assert (output / "handler.py").is_file()
    assert (output / "connection.py").is_file()
    assert (output / "collections_core" / "queries.py").is_file()
    assert (output / "collections_core" / "migrations" / "0001_initial.sql").is_file()
    for vendored in ("psycopg", "psycopg_binary", "pgvector"):
        assert (output / vendored).is_dir(), vendored
    assert not (output / ".collections-build.json").exists()
    # The handler and its imports load from the asset alone (as in Lambda: no site-packages).
    probe = ("import sys; sys.path[:0] = [sys.argv[1]]; import handler, connection; import collections_core.queries; "
             "from pgvector import Vector; import psycopg; Vector([1.0]); print('ok')")
    result = subprocess.run([sys.executable, "-I", "-S", "-c", probe, str(output)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.stdout.strip() == "ok", result.stderr[-3000:]
