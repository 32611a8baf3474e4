"""The golden set of `collections eval` and how a ranking is scored (recall@k, MRR)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collections_ops import errors
from collections_ops.services import evaluation


def test_the_bundled_golden_set_has_12_photos_and_20_queries_that_all_exist() -> None:
    golden = evaluation.golden_set()

    assert len(golden.photos) >= 12 and len(golden.queries) >= 20
    for name in golden.photos.values():
        assert evaluation.golden_photo(name).stat().st_size > 0
    assert {e for q in golden.queries for e in q.expected} <= set(golden.photos)


def test_recall_and_mrr_are_scored_from_the_rank_of_the_expected_photos() -> None:
    # GIVEN three queries: found first, found third, not found at all
    golden = evaluation.GoldenSet(
        photos={"cat": "chelsea.png", "cup": "coffee.png", "rocket": "rocket.jpg"},
        queries=(evaluation.GoldenQuery("cat", ("cat",)),
                 evaluation.GoldenQuery("drink", ("cup",)),
                 evaluation.GoldenQuery("moon", ("moon-photo",))))
    rankings = {"cat": ["cat", "cup", "rocket"], "drink": ["rocket", "cat", "cup"],
                "moon": ["rocket", "cat", "cup"]}

    # WHEN they are scored
    results = evaluation.score(golden, lambda query, limit: rankings[query][:limit])
    report = evaluation.Report(model="m", user_id="u", photos=3, results=results)

    # THEN
    assert [r.first_rank for r in results] == [1, 3, None]
    assert report.recall_at(1) == pytest.approx(1 / 3)
    assert report.recall_at(5) == pytest.approx(2 / 3)
    assert report.mrr == pytest.approx((1 + 1 / 3) / 3)
    assert report.as_dict()["recall_at_5"] == pytest.approx(0.6667)


def test_a_golden_set_expecting_an_unknown_photo_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "golden.json"
    path.write_text(json.dumps({"photos": {"cat": "chelsea.png"},
                                "queries": [{"query": "dog", "expected": ["dog"]}]}))

    with pytest.raises(errors.ConfigError, match="unknown photos: dog"):
        evaluation.golden_set(path)


def test_missing_photos_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluation, "PHOTOS_PACKAGE", "no_such_photo_package")

    with pytest.raises(evaluation.GoldenPhotosMissing, match="pip install scikit-image"):
        evaluation.golden_photo("chelsea.png")


def test_eval_refuses_a_bad_golden_set_in_process_before_any_upload(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a golden set that expects a photo it does not name, and no local cloud running
    from typer.testing import CliRunner

    from collections_ops.cli.app import app
    from collections_ops.cli.exits import ExitCode

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("COLLECTIONS_STATE_DIR", str(tmp_path / "state"))
    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps({"photos": {"cat": "chelsea.png"},
                                  "queries": [{"query": "dog", "expected": ["dog"]}]}))

    # WHEN eval is asked to run it
    result = CliRunner().invoke(app, ["eval", "local", "--golden", str(golden), "-o", "json"])

    # THEN it is a configuration error, said as one JSON document
    assert result.exit_code == ExitCode.CONFIG, result.output
    assert "unknown photos: dog" in json.loads(result.stdout.splitlines()[0])["error"]


def test_the_held_out_set_holds_every_golden_photo_and_none_of_the_golden_queries() -> None:
    # GIVEN the gate's golden set and the held-out second opinion bench_golden.py scores
    golden = evaluation.golden_set()
    heldout = evaluation.golden_set(
        Path(__file__).resolve().parents[2] / "bench" / "golden" / "heldout.json")

    # THEN the held-out set ranks among more photos, golden's included, with its own queries
    assert golden.photos.items() <= heldout.photos.items()
    assert len(heldout.photos) > len(golden.photos) and len(heldout.queries) >= 20
    assert not {q.query for q in golden.queries} & {q.query for q in heldout.queries}
    for name in heldout.photos.values():
        assert evaluation.golden_photo(name).is_file()
