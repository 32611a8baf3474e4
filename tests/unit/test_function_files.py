"""What a function's code is, decided in one place (`paths.function_files`): the files its
AWS bundle (`collections build`) and the local cloud's published versions carry alike, the
data files its modules read included and its dependency lists left out."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from collections_ops import paths, pipeline
from collections_ops.localcloud import provision

ANALYZER = pipeline.function("analyzer")


def test_a_published_version_carries_the_data_files_its_modules_read() -> None:
    # GIVEN the analyzer, whose offline classifier reads its class names from a data file
    folder = paths.lambda_code_dir(ANALYZER.code_dir)
    assert (folder / "imagenet_classes.txt").is_file()
    # WHEN the local cloud packages it as a version
    with zipfile.ZipFile(io.BytesIO(provision.function_code(ANALYZER))) as zf:
        names = set(zf.namelist())
    # THEN the data file is in the package beside the modules, and the dependency lists not
    assert {"handler.py", "classifier.py", "imagenet_classes.txt"} <= names
    assert not names & {"requirements.txt", "requirements.lock"}
    assert not any(n.endswith(".pyc") or "__pycache__" in n for n in names)


def test_a_change_to_a_data_file_is_new_code(tmp_path: Path, monkeypatch) -> None:
    # GIVEN a copy of the function folders, so a file can be edited
    import shutil

    root = tmp_path / "lambdas"
    shutil.copytree(paths.lambdas_root(), root,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    monkeypatch.setenv("COLLECTIONS_LAMBDAS_DIR", str(root))
    before = provision.code_fingerprint()
    # WHEN only the data file changes
    classes = root / ANALYZER.code_dir / "imagenet_classes.txt"
    classes.write_text(classes.read_text() + "\n", encoding="utf-8")
    # THEN the local cloud sees new code (a deploy local publishes a version), and a
    # dependency list alone is not code
    assert provision.code_fingerprint() != before
    changed = provision.code_fingerprint()
    (root / ANALYZER.code_dir / "requirements.txt").write_text("# edited\n", encoding="utf-8")
    assert provision.code_fingerprint() == changed


def test_the_bundle_and_the_local_package_name_the_same_function_files() -> None:
    for fn in pipeline.FUNCTIONS:
        folder = paths.lambda_code_dir(fn.code_dir)
        local = {name for name in provision.function_sources(fn) if "/" not in name}
        assert local == {p.name for p in paths.function_files(folder)}, fn.key
