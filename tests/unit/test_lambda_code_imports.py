"""The CLI imports the functions' shared code as the installed package `collections_core`: no
command or service loads Lambda code by file path (`importlib.util.spec_from_file_location`)
or puts the deployed shared code on `sys.path` (`paths.add_shared_to_path`, which is the local
cloud's, for the processes that emulate the functions' runtime). Read from the source (ast), so
a new loader fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from collections_ops import paths

PACKAGE = Path(paths.__file__).resolve().parent
CLI_SIDE = sorted([*PACKAGE.glob("cli/**/*.py"), *PACKAGE.glob("services/**/*.py")])
BY_PATH = {"spec_from_file_location", "add_shared_to_path", "shared_code_dir"}


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def _uses(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        name = (node.attr if isinstance(node, ast.Attribute)
                else node.id if isinstance(node, ast.Name)
                else node.name if isinstance(node, ast.alias) else None)
        if name is not None and name.rpartition(".")[2] in BY_PATH:
            found.append((node.lineno if hasattr(node, "lineno") else 0, name))
    return found


def test_the_scan_sees_the_modules() -> None:
    assert len(CLI_SIDE) > 20 and any(p.name == "dataroute.py" for p in CLI_SIDE)
    # and it would see a loader: the local cloud's runtime, which emulates Lambda, has one
    runtime = PACKAGE / "localcloud" / "lambda_service" / "lambda_runtime.py"
    assert ("spec_from_file_location" in {n for _, n in _uses(runtime)})


@pytest.mark.parametrize("path", CLI_SIDE, ids=_name)
def test_no_command_or_service_loads_lambda_code_by_path(path: Path) -> None:
    uses = _uses(path)
    assert not uses, (f"{_name(path)}: {uses}: import collections_core (installed) instead; "
                      "only the local cloud's processes run the deployed copy")


def test_the_local_clouds_path_insert_refuses_a_process_that_imported_another_copy(
        tmp_path: Path) -> None:
    import os
    import shutil
    import subprocess
    import sys

    # GIVEN a working copy of the shared code the local cloud is to run
    lambdas = tmp_path / "lambdas"
    shutil.copytree(paths.shared_code_dir(), lambdas / "shared",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {**os.environ, "COLLECTIONS_LAMBDAS_DIR": str(lambdas)}
    probe = "from collections_ops import paths; paths.add_shared_to_path(); "
    # WHEN a process puts it on the path first, THEN it imports that copy
    first = subprocess.run([sys.executable, "-c", probe + "import collections_core as c; "
                            "print(c.__file__)"], env=env, capture_output=True, text=True,
                           check=False, timeout=60)
    assert first.returncode == 0, first.stderr
    assert Path(first.stdout.strip()).parent == (lambdas / "shared" / "collections_core")
    # WHEN a process imported the installed copy before, THEN it refuses to go on with it
    late = subprocess.run([sys.executable, "-c", "import collections_core; " + probe], env=env,
                          capture_output=True, text=True, check=False, timeout=60)
    assert late.returncode != 0
    assert "before the deployed copy" in late.stderr and str(lambdas) in late.stderr
