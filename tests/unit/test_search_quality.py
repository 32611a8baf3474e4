"""The search-quality gate: the golden set, scored in process with the local cloud's offline
models, must stay within a small margin of the recall recorded in docs/benchmarks.md.

The doc is the single source of the figure: the test reads it from the row of the in-process
table for the local cloud's pair, so recording a better figure there raises the bar, and a
change that makes offline search worse fails here in seconds, without a local cloud.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collections_ops.services import evaluation

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS_DOC = ROOT / "docs" / "benchmarks.md"
ANALYZER_MODEL = "local-mobilenet-v2"
EMBEDDING_MODEL = "multilingual-e5-small-q4"
# The in-process table's row for the local cloud's pair:
# "| — `local-mobilenet-v2` + `multilingual-e5-small-q4` ... | | 0.500 | 0.708 | 0.592 |"
ROW = re.compile(rf"^\|\s*—\s*`{ANALYZER_MODEL}`\s*\+\s*`{EMBEDDING_MODEL}`[^|]*\|[^|]*\|"
                 r"\s*\**(?P<r1>\d\.\d+)\**\s*\|\s*\**(?P<r5>\d\.\d+)\**\s*\|")
MARGIN = 0.05


def recorded_figures() -> tuple[float, float, int, str]:
    """(recall@1, recall@5, line number, line) recorded in docs/benchmarks.md for the pair."""
    lines = BENCHMARKS_DOC.read_text(encoding="utf-8").splitlines()
    found = [(n, line, m) for n, line in enumerate(lines, start=1) if (m := ROW.match(line))]
    assert len(found) == 1, (f"{BENCHMARKS_DOC} should have exactly one in-process row for "
                             f"`{ANALYZER_MODEL}` + `{EMBEDDING_MODEL}`, found {len(found)}")
    number, line, match = found[0]
    return float(match["r1"]), float(match["r5"]), number, line


@pytest.fixture(scope="session")
def report() -> evaluation.Report:
    """The golden set scored once per test session (the models load once, on first use)."""
    scored, _seconds = evaluation.in_process(evaluation.golden_set(),
                                             analyzer_model=ANALYZER_MODEL,
                                             embedding_model=EMBEDDING_MODEL)
    return scored


def misses(report: evaluation.Report) -> str:
    return "; ".join(f"{r.query!r} -> {r.ranked[:3]} (expected {r.expected})"
                     for r in report.results if r.first_rank != 1)


def test_the_benchmarks_doc_records_the_in_process_recall_of_the_local_clouds_pair() -> None:
    recall_at_1, recall_at_5, _number, _line = recorded_figures()

    assert 0 < recall_at_1 <= 1 and 0 < recall_at_5 <= 1


def test_offline_search_recall_at_1_is_no_more_than_005_below_the_recorded_figure(
        report: evaluation.Report) -> None:
    # GIVEN the figure docs/benchmarks.md records for the pair, in process
    recorded, _r5, number, line = recorded_figures()

    # WHEN the golden set is analysed, embedded and searched with the same models
    measured = report.recall_at(1)

    # THEN recall@1 has not dropped by more than the margin
    assert measured >= recorded - MARGIN, (
        f"offline search recall@1 is {measured:.3f}, more than {MARGIN} below the "
        f"{recorded:.3f} recorded in docs/benchmarks.md line {number}: {line.strip()!r}. "
        f"Queries whose photo is not first: {misses(report)}")


def test_offline_search_recall_at_5_is_no_more_than_005_below_the_recorded_figure(
        report: evaluation.Report) -> None:
    _r1, recorded, number, line = recorded_figures()

    measured = report.recall_at(5)

    assert measured >= recorded - MARGIN, (
        f"offline search recall@5 is {measured:.3f}, more than {MARGIN} below the "
        f"{recorded:.3f} recorded in docs/benchmarks.md line {number}: {line.strip()!r}. "
        f"Queries whose photo is not first: {misses(report)}")
