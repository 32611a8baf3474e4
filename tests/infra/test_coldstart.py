"""What a cold start depends on in the synthesized app: a built bundle's bytecode reaches the
code asset (Lambda's /var/task is read-only, so bytecode left out is compiled again on every
cold start), while bytecode in a source directory -- whatever Python ran the tests -- does not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collections_ops import pipeline as definition
from tests.infra.support import SynthesizedApp, synthesize

pytestmark = pytest.mark.infra

PYC = "__pycache__/handler.cpython-312.pyc"


@pytest.fixture(scope="module")
def bundled_app(tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """dev, synthesized from a bundle directory shaped as `collections build` leaves it."""
    bundles = tmp_path_factory.mktemp("bundles")
    for fn in definition.FUNCTIONS:
        code = bundles / fn.code_dir
        (code / "__pycache__").mkdir(parents=True)
        (code / "handler.py").write_text("def handler(event, context):\n    return {}\n")
        (code / PYC).write_bytes(b"bytecode for the runtime")
        (code / "tests").mkdir()
        (code / "tests" / "test_x.py").write_text("")
    return synthesize(tmp_path_factory.mktemp("cdk-out-bundled"),
                      **{"collections:environments": "dev", "collections:bundleDir": str(bundles)})


def _functions(app: SynthesizedApp) -> dict[str, dict[str, Any]]:
    resources = app.template_json("dev", "Compute")["Resources"]
    return {r["Properties"]["FunctionName"]: r for r in resources.values()
            if r["Type"] == "AWS::Lambda::Function"
            and str(r["Properties"].get("FunctionName", "")).startswith("collections-")}


def test_a_built_bundles_bytecode_is_in_the_code_asset(bundled_app: SynthesizedApp) -> None:
    functions = _functions(bundled_app)
    assert len(functions) == len(definition.FUNCTIONS)
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
