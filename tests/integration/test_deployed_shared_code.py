"""The local cloud runs the shared code it deployed, not the CLI's installed `collections_core`.

`collections_core` is installed beside the CLI (the wheel's top-level package; the editable
install's lambdas/shared) and the CLI imports it from there. The local cloud's supervisor, which
migrates the database as the operations function does on AWS, and its dispatchers, which run
the handlers, must run the deployed copy instead: with COLLECTIONS_LAMBDAS_DIR, the operator's
working copy. A process that imported `collections_core` before putting that copy first on its
path would run the installed one, and an edit to the shared code would silently not run.

A real local cloud over a working copy whose `collections_core` writes down, when imported,
which program imported it: the installed copy writes nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

from collections_ops import paths
from tests import images
from tests.e2e.cli import deployed, local_client, local_env, wait_for

RECORDER = '''
import os as _os
import sys as _sys

if _os.environ.get("COLLECTIONS_TEST_CORE_IMPORTS"):
    with open(_os.environ["COLLECTIONS_TEST_CORE_IMPORTS"], "a", encoding="utf-8") as _out:
        _out.write(f"{_os.path.basename(_sys.argv[0])} {__file__}\\n")
'''


def _importers(record: Path) -> set[str]:
    """The programs (their script's name) that imported the working copy's collections_core."""
    if not record.exists():
        return set()
    return {line.split(" ", 1)[0] for line in record.read_text().splitlines() if line}


def test_the_supervisor_and_the_dispatchers_run_the_working_copys_shared_code(tmp_path):
    # GIVEN a working copy of lambdas/ whose collections_core records every import of itself
    lambdas = tmp_path / "lambdas"
    shutil.copytree(paths.lambdas_root(), lambdas,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    init = lambdas / "shared" / "collections_core" / "__init__.py"
    init.write_text(init.read_text() + RECORDER)
    record = tmp_path / "imports.txt"
    env = local_env(tmp_path / "state", COLLECTIONS_LAMBDAS_DIR=str(lambdas),
                    COLLECTIONS_TEST_CORE_IMPORTS=str(record))
    with deployed(env) as cloud:
        # WHEN the cloud has migrated its database (at start) and runs a handler
        status = cloud["status"]
        local_client(status, "s3").put_object(Bucket=status["buckets"]["images"],
                                              Key="user123/deployed-copy.jpg",
                                              Body=images.photo(64, 48, seed=5))
        wait_for(lambda: "dispatcher.py" in _importers(record),
                 "a dispatcher to import the working copy's collections_core", timeout=120)
        # THEN the supervisor migrated with the working copy and a dispatcher runs the handler
        # with it; the CLI's own processes (deploy, status) ran the installed package
        importers = _importers(record)
    assert "daemon.py" in importers, record.read_text()
    assert "__main__.py" not in importers, record.read_text()
