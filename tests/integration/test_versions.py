"""Published versions and the `live` alias: list them, see what changed, move `live` back."""

from __future__ import annotations

import io
import zipfile

import pytest

from collections_ops import errors
from collections_ops.pipeline import ANALYZER
from collections_ops.services import versions


def publish_new_code(lam, name: str, source: str, memory: int | None = None) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", source)
    lam.update_function_code(FunctionName=name, ZipFile=buf.getvalue())
    if memory:
        lam.update_function_configuration(FunctionName=name, MemorySize=memory)
    return str(lam.publish_version(FunctionName=name)["Version"])


def test_rollback_moves_live_to_the_previous_version_and_says_what_changed(pipeline):
    lam = pipeline.client("lambda")
    name = ANALYZER.function_name("local")
    new = publish_new_code(lam, name, "def handler(e, c):\n    return 2\n", memory=2048)
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion=new)
    listed = versions.list_versions(lam, pipeline.env, ANALYZER)
    assert [(v.version, v.live) for v in listed] == [("1", False), (new, True)]

    preview = versions.roll_back(lam, pipeline.env, ANALYZER, dry_run=True)
    assert (preview.from_version, preview.to_version) == (new, "1")
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == new

    done = versions.roll_back(lam, pipeline.env, ANALYZER)
    assert lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] == "1"
    assert any(c.startswith("CodeSha256:") for c in done.changes)
    assert "MemorySize: 2048 -> 1024" in done.changes


def test_there_is_nothing_before_the_first_version(pipeline):
    with pytest.raises(errors.NotFound, match="no version before 1"):
        versions.roll_back(pipeline.client("lambda"), pipeline.env, ANALYZER)


def test_an_unknown_target_version_is_named(pipeline):
    with pytest.raises(errors.NotFound, match="has no version 7"):
        versions.roll_back(pipeline.client("lambda"), pipeline.env, ANALYZER, to="7")
