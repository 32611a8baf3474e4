"""The state directory's names are spelled once (`StateDir`), and docs/local-cloud.md's table of
what the directory holds is that list: a name added, renamed or removed in one and not the
other fails here."""

from __future__ import annotations

import re
from pathlib import Path

from collections_ops.localcloud.state import StateDir

DOC = Path(__file__).resolve().parents[2] / "docs" / "local-cloud.md"
SECTION = "### What the state directory holds"


def _documented() -> list[str]:
    text = DOC.read_text()
    assert SECTION in text, f"{DOC} lost its section {SECTION!r}"
    table = text.split(SECTION, 1)[1].split("\n\n", 2)[2]  # the paragraph, then the table
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)` \|", row).group(1) for row in rows]  # type: ignore[union-attr]


def test_the_docs_table_names_exactly_what_state_dir_names():
    names = [entry.name for entry in StateDir.entries()]
    assert len(names) == len(set(names))
    assert _documented() == names


def test_every_entry_is_a_path_under_the_directory(tmp_path):
    files = StateDir(tmp_path)
    for entry in StateDir.entries():
        value = getattr(files, entry.attribute)
        path = value(3) if callable(value) else value
        assert path.parent == tmp_path, entry.name
        assert path.name == entry.name.rstrip("/").replace("<n>", "3")
    assert files.lambda_history == tmp_path / "store" / "lambda"
