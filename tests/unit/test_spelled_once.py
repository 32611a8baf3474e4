"""Names the definition now spells once (pipeline.RUNTIME, PARAMETER_STORE_POLICY,
CORRELATION_METADATA): any module that still carries its own copy must agree with it, until
it imports the definition's (the functions cannot: they never import the CLI package)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from collections_ops import pipeline

ROOT = Path(__file__).resolve().parents[2]


def _constant(path: Path, name: str) -> object:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(name)


@pytest.mark.parametrize("path", ["lambdas/image_processor/handler.py",
                                  "src/collections_ops/services/follow.py"])
def test_correlation_metadata_is_the_definitions(path: str) -> None:
    try:
        value = _constant(ROOT / path, "CORRELATION_METADATA")
    except LookupError:
        return  # it imports the definition's (or no longer needs one)
    assert value == pipeline.CORRELATION_METADATA


def test_bundles_are_built_for_the_definitions_runtime() -> None:
    from collections_ops.services import bundle_deps

    assert bundle_deps.DEFAULT_PYTHON_VERSION == pipeline.PYTHON_VERSION
    assert f"python{pipeline.PYTHON_VERSION}" == pipeline.RUNTIME
