"""Long text in the CLI's output, driven in process (typer's CliRunner) against moto and a real
PostgreSQL: a table shortens an analysis summary with a visible `…`, JSON never shortens it,
and a narrow console wraps a table into lines instead of dropping its columns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from collections_ops.cli.app import app
from collections_ops.cli.commands.inspect import SUMMARY_CHARS
from tests.fakes.providers import FakeProviders, fake_embedding

SUMMARY = ("A landscape photo, 4032x3024, mostly blue and green, camera reported by EXIF: "
           '"Canon EOS R5", taken on a calm morning by a lake with a red kayak by the shore.')
MODEL = "voyage-3.5"


@pytest.fixture
def cli(tmp_path: Path, moto_endpoint: str, migrated_db: str, db: Any,
        monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """`-e dev` with its database reachable directly (DATABASE_URL) and AWS on moto."""
    from tests.moto_server import reset_moto

    reset_moto(moto_endpoint)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("COLLECTIONS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("COLLECTIONS_ENV", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1"), ("DATABASE_URL", migrated_db)):
        monkeypatch.setenv(key, value)
    # GIVEN an item whose analysis summary is longer than a table row shows
    db.execute("INSERT INTO items (id, user_id, bucket, original_key) VALUES"
               " ('kayak', 'user123', 'images', 'user123/kayak.jpg')")
    [analysis_id] = db.execute(
        "INSERT INTO analyses (item_id, user_id, category, summary, description, tags, colors,"
        " provider, model, raw) VALUES ('kayak', 'user123', 'photo', %s, 'd', '{}', '{}',"
        " 'local', 'local', '{}') RETURNING id", (SUMMARY,)).fetchone()
    from pgvector import Vector

    db.execute("INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
               " embedding_dimensions, embedding, content_hash) VALUES ('kayak', 'user123', %s,"
               " %s, 1024, %s, 'h')",
               (analysis_id, MODEL, Vector(fake_embedding("kayak", 1024))))
    assert len(SUMMARY) > SUMMARY_CHARS
    return CliRunner()


def _shortened(output: str) -> str:
    [line] = [ln for ln in output.splitlines() if "A landscape photo" in ln]
    return line


def test_verify_shortens_the_summary_with_a_marker_and_json_carries_it_whole(
        cli: CliRunner) -> None:
    table = cli.invoke(app, ["verify", "kayak", "-e", "dev"])
    assert "A landscape photo" in table.stdout, table.output
    shown = _shortened(table.stdout)
    assert "…" in shown and SUMMARY not in table.stdout
    as_json = cli.invoke(app, ["verify", "kayak", "-e", "dev", "-o", "json"])
    report = json.loads(as_json.stdout)
    assert report["analysis"]["summary"] == SUMMARY
    [check] = [c for c in report["checks"] if c["name"] == "analysis"]
    assert check["detail"] == f"photo: {SUMMARY}"
    assert "…" not in as_json.stdout


def test_search_shortens_the_summary_with_a_marker_and_json_carries_it_whole(
        cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeProviders() as fake:
        monkeypatch.setenv("VOYAGE_BASE_URL", fake.voyage_base_url)
        monkeypatch.setenv("VOYAGE_API_KEY", "pa-test")
        table = cli.invoke(app, ["search", "a red kayak", "-e", "dev"])
        as_json = cli.invoke(app, ["search", "a red kayak", "-e", "dev", "-o", "json"])
    assert table.exit_code == 0, table.output
    shown = _shortened(table.stdout)
    assert shown.rstrip().endswith("…") and SUMMARY not in table.stdout
    assert as_json.exit_code == 0, as_json.output
    [hit] = json.loads(as_json.stdout)
    assert hit["summary"] == SUMMARY


def test_a_narrow_console_wraps_a_table_into_lines_and_drops_no_column(
        cli: CliRunner) -> None:
    import boto3

    boto3.client("ssm").put_parameter(Name="/collections/LANGSMITH_API_KEY", Value="ls-test",
                                      Type="SecureString")
    # WHEN `COLUMNS=40 collections secrets list | cat`
    result = cli.invoke(app, ["secrets", "list", "-e", "dev"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    # THEN every column's name and the row's data are there, the identifier in one piece
    listing = json.loads(cli.invoke(app, ["secrets", "list", "-e", "dev", "-o", "json"]).stdout)
    [row] = [r for r in listing if r["name"] == "LANGSMITH_API_KEY"]
    block = result.stdout.split("/collections/LANGSMITH_API_KEY", 1)[1].split("\n\n", 1)[0]
    for column in ("present", "required", "fingerprint", "version", "modified"):
        assert column in block, result.stdout
    for value in (row["fingerprint"], str(row["version"]), "optional", "✓"):
        assert value in block, result.stdout
