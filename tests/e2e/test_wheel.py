"""An installed `collections` (from a wheel, outside the source tree) carries the Lambda
packages, the CDK app and the sample image, and runs from there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.infra.support import fake_bundles

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--no-build-isolation",
                    "-q", "-w", str(dist), str(ROOT)], check=True, capture_output=True)
    [wheel] = dist.glob("collections_ops-*.whl")
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COLLECTIONS_"))}
    env["PYTHONPATH"] = str(site)  # ahead of the editable install of the source tree
    return wheel, env


def test_the_wheel_ships_functions_and_cdk_app_but_no_node_modules(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    bundled = "collections_ops/_bundled/"
    for fn in ("image_processor", "analyzer", "embedder"):
        assert f"{bundled}lambdas/{fn}/handler.py" in names
    assert f"{bundled}lambdas/shared/collections_core/migrations/0001_initial.sql" in names
    assert f"{bundled}infrastructure/app.py" in names
    assert f"{bundled}infrastructure/package-lock.json" in names
    assert f"{bundled}samples/test-image.jpg" in names
    assert not [n for n in names if "node_modules" in n or "cdk.out" in n]
    # The functions' shared code is a package of its own too, the one the CLI imports
    for module in ("__init__", "queries", "embedding_rules", "search"):
        assert f"collections_core/{module}.py" in names
        assert f"{bundled}lambdas/shared/collections_core/{module}.py" in names


def _probe(env: dict[str, str], cwd: Path, code: str) -> str:
    """What `code` prints, run by the installed package's interpreter outside the tree."""
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          capture_output=True, text=True, check=True).stdout


def test_the_installed_cli_imports_the_installed_collections_core(installed, tmp_path):
    _, env = installed
    probe = ("import collections_core.queries, collections_core.embedding_rules as r; "
             "print(collections_core.__file__); print(r.MODEL_DIMENSIONS['local-hash-v1'])")
    origin, dimensions = _probe(env, tmp_path, probe).split()
    assert Path(origin).parent.parent == Path(env["PYTHONPATH"]), origin  # not _bundled/
    assert dimensions == "1024"


def test_the_installed_cli_finds_its_parts_outside_the_source_tree(installed, tmp_path):
    _, env = installed
    probe = ("import json, collections_ops.paths as p; print(json.dumps("
             "[str(p.lambdas_root()), str(p.infrastructure_root())]))")
    lambdas, infra = json.loads(_probe(env, tmp_path, probe))
    assert "_bundled" in lambdas and not lambdas.startswith(str(ROOT / "lambdas"))
    assert (Path(infra) / "app.py").exists()
    help_ = subprocess.run([sys.executable, "-m", "collections_ops", "--help"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=False)
    assert help_.returncode == 0 and "test-upload" in help_.stdout


def test_the_installed_cli_synthesizes_the_shipped_cdk_app(installed, tmp_path):
    cdk = ROOT / "infrastructure" / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        pytest.skip("the pinned CDK CLI is not installed (make setup runs npm ci)")
    _, env = installed
    env = dict(env, COLLECTIONS_STATE_DIR=str(tmp_path / "state"), COLLECTIONS_CDK=str(cdk),
               CDK_HOME=str(tmp_path / "cdk-home"), AWS_EC2_METADATA_DISABLED="true",
               NO_COLOR="1",
               # Bundles shaped as `collections build` makes them, without pip's minutes.
               COLLECTIONS_BUNDLE_DIR=str(fake_bundles(tmp_path / "bundles")))
    result = subprocess.run([sys.executable, "-m", "collections_ops", "synth", "prod"], env=env,
                            cwd=tmp_path, capture_output=True, text=True, check=False,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (tmp_path / "state" / "cdk.out" / "prod" /
            "CollectionsComputeStack-prod.template.json").exists()
