"""Cost per image and per stage, checked against figures worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collections_ops.services import cost
from collections_ops.services.cost import Report, Usage

# Two images through the pipeline on arm64 (hand-computed below, at PRICES as of 2026-12-01:
# arm64 $0.0000133334 per GB-s, $0.20 per million requests, claude-sonnet-4-6 $3 / $15 per
# million input / output tokens, voyage-3.5 $0.06 per million tokens).
REPORTS = {
    # (0.2 + 0.3) s x 1 GB = 0.5 GB-s -> 0.0000066667; 2 requests -> 0.0000004
    "processor": [Report(200, 1024), Report(300, 1024, init_ms=812.3)],
    # (1.5 + 0.5) s x 2 GB = 4.0 GB-s -> 0.0000533336; 2 requests -> 0.0000004
    "analyzer": [Report(1500, 2048), Report(500, 2048)],
    # 2 x 0.1 s x 0.5 GB = 0.1 GB-s -> 0.00000133334; 2 requests -> 0.0000004
    "embedder": [Report(100, 512), Report(100, 512)],
}
USAGE = {
    # 4,000 x 3 / 1e6 + 1,000 x 15 / 1e6 = 0.012 + 0.015 = 0.027
    "analyzer": Usage("claude-sonnet-4-6", input_tokens=4000, output_tokens=1000),
    # 60 x 0.06 / 1e6 = 0.0000036
    "embedder": Usage("voyage-3.5", input_tokens=60),
}
EXPECTED = {  # stage: (GB-s, Lambda USD, token USD, stage total USD)
    "processor": (0.5, 0.0000070667, 0.0, 0.0000070667),
    "analyzer": (4.0, 0.0000537336, 0.027, 0.0270537336),
    "embedder": (0.1, 0.00000173334, 0.0000036, 0.00000533334),
}
TOTAL = 0.0000070667 + 0.0270537336 + 0.00000533334  # 0.02706613364


def test_cost_per_stage_and_per_image_against_the_hand_computed_figures() -> None:
    report = cost.compute(REPORTS, USAGE, images=2, architecture="arm64")
    by_stage = {s.stage: s for s in report.stages}
    for stage, (gb_s, lambda_usd, tokens_usd, total) in EXPECTED.items():
        got = by_stage[stage]
        assert got.invocations == 2
        assert got.gb_seconds == pytest.approx(gb_s, rel=1e-12), stage
        assert got.lambda_usd == pytest.approx(lambda_usd, rel=1e-9), stage
        assert got.tokens_usd == pytest.approx(tokens_usd, rel=1e-9), stage
        assert got.total_usd == pytest.approx(total, rel=1e-9), stage
    assert report.total_usd == pytest.approx(TOTAL, rel=1e-9)
    assert report.per_image_usd == pytest.approx(TOTAL / 2, rel=1e-9)
    # The stages sum to the total, in the JSON form too.
    data = report.as_dict()
    assert sum(s["total_usd"] for s in data["stages"]) == pytest.approx(data["total_usd"])
    assert data["prices_as_of"] == "2026-12-01" and data["architecture"] == "arm64"
    assert report.notes == []


def test_x86_64_costs_a_quarter_more_lambda_time_than_arm64() -> None:
    arm = cost.compute(REPORTS, {}, images=2, architecture="arm64")
    x86 = cost.compute(REPORTS, {}, images=2, architecture="x86_64")
    gb_s = 0.5 + 4.0 + 0.1
    requests = 6 * 0.20 / 1e6
    assert x86.total_usd == pytest.approx(gb_s * 0.0000166667 + requests, rel=1e-9)
    assert arm.total_usd == pytest.approx(gb_s * 0.0000133334 + requests, rel=1e-9)
    with pytest.raises(ValueError, match="no Lambda price for architecture 'sparc'"):
        cost.compute(REPORTS, {}, images=2, architecture="sparc")


def test_a_model_without_a_price_is_counted_and_said_so() -> None:
    report = cost.compute({"analyzer": REPORTS["analyzer"]},
                          {"analyzer": Usage("claude-next", 10, 10)}, images=0)
    [stage] = report.stages
    assert stage.tokens_usd is None and stage.input_tokens == 10
    assert stage.total_usd == stage.lambda_usd
    assert report.per_image_usd is None  # no images in the window
    assert report.notes and "claude-next" in report.notes[0]


def test_prices_are_overridable_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"as_of": "2027-01-01", "lambda_gb_second": {"arm64": 0.00001},
                                "tokens_per_million": {"claude-next": {"input": 1, "output": 2}}}))
    prices = cost.Prices.load(path)
    assert prices.as_of == "2027-01-01"
    assert prices.lambda_gb_second == {"x86_64": 0.0000166667, "arm64": 0.00001}
    assert prices.tokens_per_million["claude-next"] == {"input": 1, "output": 2}
    assert prices.tokens_per_million["voyage-3.5"] == {"input": 0.06}
    report = cost.compute({"analyzer": [Report(1000, 1024)]},
                          {"analyzer": Usage("claude-next", 1_000_000, 1_000_000)},
                          images=1, architecture="arm64", prices=prices)
    assert report.total_usd == pytest.approx(0.00001 + 0.20 / 1e6 + 3.0, rel=1e-12)


@pytest.mark.parametrize(("line", "expected"), [
    ("REPORT RequestId: 3f5c1e2a-9b7d-4c1e-8f00-1a2b3c4d5e6f\tDuration: 1234.56 ms\t"
     "Billed Duration: 1235 ms\tMemory Size: 1024 MB\tMax Memory Used: 180 MB\t"
     "Init Duration: 812.34 ms\t\n", Report(1235, 1024, 812.34)),
    ("REPORT RequestId: a1\tDuration: 8.01 ms\tBilled Duration: 9 ms\tMemory Size: 512 MB\t"
     "Max Memory Used: 90 MB\t", Report(9, 512)),
    ("START RequestId: a1 Version: 3", None),
    ('{"message": "invocation complete", "outcome": "ok"}', None),
])
def test_report_lines_are_read(line: str, expected: Report | None) -> None:
    assert cost.parse_report(line) == expected
