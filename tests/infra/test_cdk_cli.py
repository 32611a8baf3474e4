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
from tests.infra.support import INFRA_DIR, LEAKY_VARIABLES, TEST_ACCOUNT

pytestmark = pytest.mark.infra

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


def test_pinned_cli_synthesizes_the_compute_stack(cdk_home: Path, tmp_path: Path) -> None:
    if not CDK_BIN.exists():
        pytest.skip("infrastructure/node_modules/.bin/cdk is missing: run "
                    "`cd infrastructure && npm ci` to install the pinned CDK CLI")
    npx = shutil.which("npx")
    if npx is None:
        pytest.skip("npx (Node.js) is not on PATH")
    stack = definition.environment("dev").stack_name("Compute")
    env = {k: v for k, v in os.environ.items() if k not in LEAKY_VARIABLES}
    env.update({
        # `python3` in cdk.json must be this interpreter (the one with aws-cdk-lib).
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "CDK_HOME": str(cdk_home),
        "CDK_DISABLE_TELEMETRY": "true",
        "AWS_EC2_METADATA_DISABLED": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    })
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        [npx, "--no", "cdk", "synth", stack, "-c", f"collections:account={TEST_ACCOUNT}",
         "--output", str(out), "--no-notices", "--quiet"],
        cwd=INFRA_DIR, env=env, capture_output=True, text=True, timeout=240, check=False,
    )
    assert result.returncode == 0, result.stderr[-6000:]
    template = json.loads((out / f"{stack}.template.json").read_text())
    names = {r["Properties"]["FunctionName"] for r in template["Resources"].values()
             if r["Type"] == "AWS::Lambda::Function"}
    assert names == {fn.function_name("dev") for fn in definition.FUNCTIONS}
    manifest = json.loads((out / "manifest.json").read_text())
    assert stack in manifest["artifacts"]
