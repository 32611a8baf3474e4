"""What a hot reload forgets in a dispatcher process (`lambda_runtime._purge`): the changed
function's modules, and the shared `collections_core` only when the shared code changed --
even when `collections_core` was last imported from that function's package folder."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from collections_ops.localcloud.lambda_service import lambda_runtime


def _module(name: str, path: Path) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__file__ = str(path)
    return module


@pytest.fixture
def embedder_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    old, new = tmp_path / "embedder" / "2", tmp_path / "embedder" / "3"
    monkeypatch.setattr(lambda_runtime, "_code_dirs", {"embedder": old})
    monkeypatch.setattr(lambda_runtime, "_loaded", {})
    monkeypatch.setattr(sys, "path", list(sys.path))
    # Probes only: the real collections_core of this process is never touched.
    monkeypatch.setitem(sys.modules, "collections_core.zz_probe",
                        _module("collections_core.zz_probe",
                                old / "collections_core" / "zz_probe.py"))
    monkeypatch.setitem(sys.modules, "zz_embedder_helper",
                        _module("zz_embedder_helper", old / "zz_embedder_helper.py"))
    return {"old": old, "new": new}


def test_one_functions_reload_keeps_the_shared_code_it_had_imported(embedder_package):
    shared = sys.modules["collections_core.zz_probe"]
    lambda_runtime._purge({"embedder": embedder_package["new"]}, False)

    assert sys.modules.get("collections_core.zz_probe") is shared
    assert "zz_embedder_helper" not in sys.modules, "the function's own modules are forgotten"
    assert sys.path[0] == str(embedder_package["new"])
    assert lambda_runtime._code_dirs["embedder"] == embedder_package["new"]


def test_a_shared_reload_forgets_the_shared_code(embedder_package, monkeypatch):
    # Keep this process's real collections_core modules: only the probe may go.
    real = {n: m for n, m in sys.modules.items()
            if n == "collections_core" or n.startswith("collections_core.")}
    try:
        lambda_runtime._purge({"embedder": embedder_package["new"]}, True)
        assert "collections_core.zz_probe" not in sys.modules
        assert "zz_embedder_helper" not in sys.modules
    finally:
        sys.modules.update(real)
