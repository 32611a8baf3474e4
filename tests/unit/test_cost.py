"""Cost per image and per stage, checked against figures worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collections_ops import errors
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
    "analyzer": [Usage("claude-sonnet-4-6", input_tokens=4000, output_tokens=1000,
                       provider="anthropic", rows=2)],
    # 60 x 0.06 / 1e6 = 0.0000036
    "embedder": [Usage("voyage-3.5", input_tokens=60, provider="voyage", rows=2)],
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
    assert data["lambda_usd"] + data["tokens_usd"] == pytest.approx(data["total_usd"])
    assert data["tokens_usd"] == pytest.approx(0.027 + 0.0000036, rel=1e-12)
    assert (data["input_tokens"], data["output_tokens"]) == (4060, 1000)
    assert [(s["input_tokens"], s["output_tokens"]) for s in data["stages"]] == [
        (0, 0), (4000, 1000), (60, 0)]
    assert data["prices_as_of"] == "2026-12-01" and data["architecture"] == "arm64"
    assert data["complete"] is True and report.notes == []


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
    # GIVEN the analyzer moved from a priced model to one the table does not know
    report = cost.compute({"analyzer": REPORTS["analyzer"]},
                          {"analyzer": [Usage("claude-sonnet-4-6", 1000, 100, "anthropic", 1),
                                        Usage("claude-next", 10, 10, "anthropic", 1)]},
                          images=0)
    [stage] = report.stages
    # THEN its tokens are counted, its price is unknown (not zero), the priced model stands
    unknown = next(m for m in stage.models if m.model == "claude-next")
    assert unknown.tokens_usd is None and stage.unpriced_models == ["claude-next"]
    assert stage.input_tokens == 1010 and stage.output_tokens == 110
    assert stage.tokens_usd == pytest.approx((1000 * 3 + 100 * 15) / 1e6, rel=1e-12)
    assert report.per_image_usd is None  # no images in the window
    assert not report.complete and report.as_dict()["complete"] is False
    assert report.notes and "claude-next" in report.notes[0] and "not priced" in report.notes[0]


def test_output_tokens_of_a_model_priced_for_input_only_are_unpriced() -> None:
    usage = Usage("voyage-3.5", input_tokens=10, output_tokens=5, provider="voyage", rows=1)
    assert cost.token_cost(usage, cost.PRICES) is None


def test_the_local_providers_cost_nothing_and_rows_without_usage_are_said() -> None:
    report = cost.compute({"analyzer": [], "embedder": []}, {
        "analyzer": [Usage("local-pillow-v1", provider="local", rows=3)],
        "embedder": [Usage("voyage-3.5", 120, provider="voyage", rows=3, unreported=1)]},
        images=3)
    analyzer, embedder = report.stages
    assert analyzer.tokens_usd == 0 and analyzer.unpriced_models == []
    assert embedder.tokens_usd == pytest.approx(120 * 0.06 / 1e6, rel=1e-12)
    assert not report.complete
    assert report.notes == ["embedder: 1 of 3 rows of 'voyage-3.5' carry no reported usage "
                            "(written before usage was recorded, or the provider reported "
                            "none): their tokens are not included"]


def test_prices_are_overridable_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"as_of": "2027-01-01", "lambda_gb_second": {"arm64": 0.00001},
                                "tokens_per_million": {"claude-next": {"input": 1, "output": 2}}}))
    prices = cost.load_prices(path)
    assert prices.as_of == "2027-01-01"
    assert prices.lambda_gb_second == {"x86_64": 0.0000166667, "arm64": 0.00001}
    assert prices.tokens_per_million["claude-next"] == {"input": 1, "output": 2}
    assert prices.tokens_per_million["voyage-3.5"] == {"input": 0.06}
    report = cost.compute({"analyzer": [Report(1000, 1024)]},
                          {"analyzer": [Usage("claude-next", 1_000_000, 1_000_000)]},
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


@pytest.mark.parametrize(("table", "message"), [
    ({"tokens_per_million": {"m": {"input": 1}}}, "prices without a date"),
    ({"as_of": "soon"}, "is not a date"),
    ({"as_of": "2027-01-01", "tokens_per_million": {"m": {"input": -1}}}, "non-negative"),
    ({"as_of": "2027-01-01", "tokens_per_million": {"m": {"cached": 1}}}, "takes input and"),
    ({"as_of": "2027-01-01", "lambda_request": "free"}, "lambda_request"),
    ({"as_of": "2027-01-01", "currency": "EUR"}, "unknown price fields currency"),
])
def test_a_price_table_is_checked_before_it_is_used(table: dict, message: str) -> None:
    from collections_ops import errors

    with pytest.raises(errors.ConfigError, match=message):
        cost.with_overrides(cost.PRICES, table, "test")


def test_the_settings_file_overrides_an_environments_prices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections_ops import pipeline

    # GIVEN every environment's prices moved, and prod's Claude price moved again later
    (tmp_path / "collections.toml").write_text(
        '[prices]\nas_of = "2027-01-01"\n'
        '[prices.tokens_per_million."voyage-3.5"]\ninput = 0.05\n'
        '[environments.prod.prices]\nas_of = "2027-02-01"\n'
        '[environments.prod.prices.tokens_per_million."claude-sonnet-4-6"]\n'
        'input = 2.0\noutput = 10.0\n')
    monkeypatch.chdir(tmp_path)
    dev = cost.environment_prices(pipeline.environment("dev"))
    prod = cost.environment_prices(pipeline.environment("prod"))
    # THEN each environment gets its own dated table, the rest from the definition
    assert dev.as_of == "2027-01-01" and prod.as_of == "2027-02-01"
    assert dev.tokens_per_million["voyage-3.5"] == prod.tokens_per_million["voyage-3.5"] == {
        "input": 0.05}
    assert dev.tokens_per_million["claude-sonnet-4-6"] == {"input": 3.0, "output": 15.0}
    assert prod.tokens_per_million["claude-sonnet-4-6"] == {"input": 2.0, "output": 10.0}
    assert prod.lambda_gb_second == pipeline.PRICES.lambda_gb_second
    # AND a JSON file given on the command line goes last
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"as_of": "2027-03-01",
                                "tokens_per_million": {"voyage-3.5": {"input": 0.04}}}))
    last = cost.environment_prices(pipeline.environment("prod"), path)
    assert last.as_of == "2027-03-01" and last.tokens_per_million["voyage-3.5"] == {
        "input": 0.04}
    assert last.tokens_per_million["claude-sonnet-4-6"] == {"input": 2.0, "output": 10.0}


GROUP = {"stage": "analyzer", "provider": "anthropic", "model": "claude-sonnet-4-6", "rows": 2,
         "unreported": 1, "input_tokens": 10, "output_tokens": 4}


def test_the_usage_answer_becomes_usage_by_stage() -> None:
    local = {**GROUP, "stage": "embedder", "provider": "local", "model": "local-hash-v1",
             "input_tokens": 0, "output_tokens": 0}
    recorded = cost.recorded_from({"usage": [GROUP, local], "images": 3})
    assert recorded.images == 3
    assert recorded.usage == {
        "analyzer": [Usage(model="claude-sonnet-4-6", provider="anthropic", rows=2,
                           unreported=1, input_tokens=10, output_tokens=4)],
        # the offline provider reports no usage and owes nothing: nothing is missing
        "embedder": [Usage(model="local-hash-v1", provider="local", rows=2, unreported=0)]}


@pytest.mark.parametrize("answer", [
    None, [], {"images": 1}, {"usage": {}, "images": 1}, {"usage": [], "images": -1},
    {"usage": [], "images": "3"}, {"usage": [], "images": True},
    {"usage": [{**GROUP, "stage": "processor"}], "images": 1},
    {"usage": [{**GROUP, "model": None}], "images": 1},
    {"usage": [{**GROUP, "provider": 7}], "images": 1},
    {"usage": [{**GROUP, "input_tokens": -5}], "images": 1},
    {"usage": [{**GROUP, "output_tokens": 1.5}], "images": 1},
    {"usage": [{**GROUP, "rows": None}], "images": 1},
    {"usage": ["analyzer"], "images": 1},
], ids=lambda a: json.dumps(a)[:60])
def test_a_usage_answer_of_another_shape_is_refused(answer: object) -> None:
    from collections_ops import errors

    with pytest.raises(errors.CollectionsError, match="operations function f"):
        cost.recorded_from(answer, "operations function f")


def test_a_snapstart_restore_line_is_read() -> None:
    line = ("REPORT RequestId: b2\tDuration: 120.00 ms\tBilled Duration: 121 ms\t"
            "Memory Size: 1024 MB\tMax Memory Used: 150 MB\tRestore Duration: 474.16 ms\t"
            "Billed Restore Duration: 178 ms\t")
    assert cost.parse_report(line) == Report(121, 1024, restored=True, billed_restore_ms=178)


def test_snapstart_adds_the_cache_the_restores_and_their_billed_duration() -> None:
    reports = {"analyzer": [Report(1000, 2048, restored=True, billed_restore_ms=500),
                            Report(1000, 2048)]}
    off = cost.compute(reports, {}, images=2)
    on = cost.compute(reports, {}, images=2, snapstart=cost.SnapStart(
        window_s=3600, memory_mb={"analyzer": 2048}))
    prices = cost.PRICES
    cache = 2 * 3600 * prices.snapstart_cache_gb_second  # 2 GB for an hour, one version
    restore = 2 * prices.snapstart_restore_gb + 0.5 * 2 * prices.lambda_gb_second["x86_64"]
    (stage,) = on.stages
    assert stage.restores == 1
    assert stage.snapstart_usd == pytest.approx(cache + restore, rel=1e-12)
    assert on.total_usd - off.total_usd == pytest.approx(cache + restore, rel=1e-12)
    assert any("SnapStart is on" in note and prices.as_of in note for note in on.notes)
    assert not any("SnapStart" in note for note in off.notes)


def test_snapstart_prices_are_overridable_and_checked() -> None:
    prices = cost.with_overrides(cost.PRICES, {"as_of": "2027-02-01",
                                               "snapstart_restore_gb": 0.0002}, "test")
    assert prices.snapstart_restore_gb == 0.0002
    assert prices.snapstart_cache_gb_second == cost.PRICES.snapstart_cache_gb_second
    with pytest.raises(errors.ConfigError, match="snapstart_cache_gb_second"):
        cost.with_overrides(cost.PRICES, {"as_of": "2027-02-01",
                                          "snapstart_cache_gb_second": -1}, "test")
