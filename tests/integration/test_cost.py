"""`collections cost` from the functions' REPORT lines in CloudWatch Logs (moto)."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from collections_ops import pipeline
from collections_ops.services import cost


def _report(rid: str, billed_ms: int, memory_mb: int) -> str:
    return (f"REPORT RequestId: {rid}\tDuration: {billed_ms - 0.5:.2f} ms\t"
            f"Billed Duration: {billed_ms} ms\tMemory Size: {memory_mb} MB\t"
            "Max Memory Used: 100 MB\t")


@pytest.fixture
def logged(moto_endpoint: str) -> Any:
    """dev's three log groups with two images' invocations (and lines that are not REPORTs)."""
    logs = boto3.session.Session(region_name="us-east-1").client("logs")
    env = pipeline.environment("dev")
    lines = {"processor": [(200, 1024), (300, 1024)], "analyzer": [(1500, 2048), (500, 2048)],
             "embedder": [(100, 512), (100, 512)]}
    now = int(time.time() * 1000)
    for fn in pipeline.FUNCTIONS:
        group = fn.log_group(env.name)
        for existing in logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
            logs.delete_log_group(logGroupName=existing["logGroupName"])
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
        events = [{"timestamp": now - 3_600_000 * 5, "message": _report("old", 9000, 1024)}]
        for i, (billed, memory) in enumerate(lines[fn.key]):
            events += [{"timestamp": now - 1000 + i, "message": f"START RequestId: r{i}"},
                       {"timestamp": now - 1000 + i, "message": _report(f"r{i}", billed, memory)}]
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=events)
    return logs


def test_cost_is_read_from_the_report_lines_of_the_window(logged: Any) -> None:
    report = cost.collect(logged, pipeline.environment("dev"),
                          since_ms=int(time.time() * 1000) - 3_600_000)
    by_stage = {s.stage: s for s in report.stages}
    assert report.images == 2  # processor invocations; the 5-hour-old line is outside
    assert {k: (s.invocations, round(s.gb_seconds, 6)) for k, s in by_stage.items()} == {
        "processor": (2, 0.5), "analyzer": (2, 4.0), "embedder": (2, 0.1)}
    # dev is x86_64: 4.6 GB-s x $0.0000166667 + 6 requests x $0.0000002
    assert report.total_usd == pytest.approx(4.6 * 0.0000166667 + 6 * 0.2e-6, rel=1e-9)
    assert cost.USAGE_NOT_RECORDED in report.notes


def test_an_environment_never_deployed_costs_nothing(moto_endpoint: str) -> None:
    logs = boto3.session.Session(region_name="us-east-1").client("logs")
    report = cost.collect(logs, pipeline.environment("prod"), since_ms=0)
    assert report.images == 0 and report.total_usd == 0 and report.per_image_usd is None


def test_the_cost_command_prints_json_that_sums_to_the_total(logged: Any) -> None:
    from collections_ops.cli.app import app

    result = CliRunner().invoke(app, ["cost", "dev", "--since", "1h", "-o", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [s["stage"] for s in data["stages"]] == ["processor", "analyzer", "embedder"]
    assert sum(s["total_usd"] for s in data["stages"]) == pytest.approx(data["total_usd"])
    assert data["per_image_usd"] == pytest.approx(data["total_usd"] / 2)
    table = CliRunner().invoke(app, ["cost", "dev", "--since", "1h"])
    assert table.exit_code == 0 and "per image" in table.output, table.output
