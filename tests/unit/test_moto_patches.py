"""The registry of moto patches (`localcloud/aws/moto_patches.py`) is the whole list: every
assignment to a moto attribute anywhere in the local cloud is a registered patch's target, and
every test a patch names as its proof exists. A patch added without an entry, or an entry whose
proof was renamed away, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

from collections_ops.localcloud.aws.moto_patches import PATCHES

ROOT = Path(__file__).resolve().parents[2]
LOCALCLOUD = ROOT / "src" / "collections_ops" / "localcloud"
PATCHED_PACKAGES = ("moto", "jsonpath_ng")


def _imported_names(tree: ast.AST) -> dict[str, str]:
    """Every name a module binds to something of moto's (at any depth: imports are lazy)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module \
                and node.module.split(".")[0] in PATCHED_PACKAGES:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in PATCHED_PACKAGES:
                    names[alias.asname or alias.name] = alias.name
    return names


def _assigned_moto_attributes() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(LOCALCLOUD.rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = _imported_names(tree)
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else []
            for target in targets:
                for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if isinstance(element, ast.Attribute) and isinstance(element.value, ast.Name) \
                            and element.value.id in names:
                        found[f"{names[element.value.id]}.{element.attr}"] = \
                            f"{path.relative_to(ROOT)}:{node.lineno}"
    return found


def test_every_patch_of_moto_in_the_local_cloud_is_registered():
    registered = {target for patch in PATCHES for target in patch.targets}
    assigned = _assigned_moto_attributes()
    assert len(assigned) >= 20  # the scan sees the patches (it would pass on nothing)
    unregistered = {t: where for t, where in assigned.items() if t not in registered}
    assert unregistered == {}, "add these to localcloud/aws/moto_patches.py with their tests"
    assert registered - set(assigned) == set(), "registered patches no code applies"


def test_every_patch_says_what_moto_and_aws_do_and_names_tests_that_exist():
    for patch in PATCHES:
        assert patch.moto_does and patch.aws_does and patch.tests, patch.name
        module, _, function = patch.where.rpartition(".")
        source = ROOT / "src" / (module.replace(".", "/") + ".py")
        assert f"def {function}(" in source.read_text(), patch.where
        for test in patch.tests:
            path, _, name = test.partition("::")
            assert f"def {name}(" in (ROOT / path).read_text(), test


def test_the_request_path_caches_change_no_answer():
    # GIVEN moto's own answers
    from moto import backends
    from moto.core import utils

    from collections_ops.localcloud.aws.moto_tuning import tune_in_process_moto

    modules = sorted(backends.list_of_moto_modules())
    names = ["MessageRetentionPeriod", "VisibilityTimeout", "RedrivePolicy", "FifoQueue"]
    converted = [utils.camelcase_to_underscores(n) for n in names]
    # WHEN the caches are installed
    tune_in_process_moto()
    # THEN the answers are the same, and cached
    assert sorted(backends.list_of_moto_modules()) == modules
    assert [utils.camelcase_to_underscores(n) for n in names] == converted
    assert hasattr(utils.camelcase_to_underscores, "cache_info")
