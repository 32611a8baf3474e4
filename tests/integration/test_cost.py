"""`collections cost` from the functions' REPORT lines in CloudWatch Logs (moto) and the usage
recorded with the rows: on dev's log groups, and on a real local cloud after a small load test
whose analyzer and embedder call the real SDKs against the fake providers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from collections_ops import pipeline
from collections_ops.services import cost
from tests.e2e.cli import local_env, run
from tests.fakes.providers import FakeProviders


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
    assert not report.complete
    assert report.notes == ["token costs are not included, and images are counted as processor "
                            "invocations: the rows were not read"]


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
    # dev's database is not reachable from here: Lambda time stands, tokens are said missing
    assert data["complete"] is False and data["tokens_usd"] == 0
    assert any(n.startswith("token costs are not included") and "database is not reachable"
               in n for n in data["notes"]), data["notes"]
    table = CliRunner().invoke(app, ["cost", "dev", "--since", "1h"])
    assert table.exit_code == 0 and "per image" in table.output, table.output


# --------------------------------------------------------------------------- on a local cloud

COUNT = 3


@pytest.fixture(scope="module")
def loaded_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, FakeProviders]]:
    """A local cloud of its own whose analyzer (anthropic) and embedder (voyage) use the real
    SDKs against the fake providers, after `collections load-test local --count 3`."""
    with FakeProviders(api_key="sk-cost-test") as fake:
        env = local_env(tmp_path_factory.mktemp("cost-state"),
                        COLLECTIONS_ANALYZER_PROVIDER="anthropic",
                        COLLECTIONS_ANALYZER_MODEL="claude-sonnet-4-6",
                        COLLECTIONS_EMBEDDING_PROVIDER="voyage",
                        COLLECTIONS_EMBEDDING_MODEL="voyage-3.5",
                        ANTHROPIC_BASE_URL=fake.anthropic_base_url,
                        VOYAGE_BASE_URL=fake.voyage_base_url, PROVIDER_TIMEOUT_S="5")
        started = run(env, "deploy", "local")
        assert started.returncode == 0, started.stdout + started.stderr
        try:
            for name in ("ANTHROPIC_API_KEY", "VOYAGE_API_KEY"):
                put = run(env, "secrets", "put", name, input="sk-cost-test")
                assert put.returncode == 0, put.stderr
            loaded = run(env, "load-test", "local", "--count", str(COUNT), "--concurrency", "3",
                         "--timeout", "120", "-o", "json")
            assert loaded.returncode == 0, loaded.stdout + loaded.stderr
            assert json.loads(loaded.stdout)["completed"] == COUNT
            yield env, fake
        finally:
            run(env, "destroy", "local")


def test_cost_on_local_after_a_load_test_prices_the_providers_reported_tokens(
        loaded_local: tuple[dict, FakeProviders]) -> None:
    env, fake = loaded_local
    shown = run(env, "cost", "local", "--since", "1h", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    stages = {s["stage"]: s for s in data["stages"]}

    # Lambda time from every invocation's REPORT line; the images are the items written (the
    # processor also ran for S3's test event)
    assert data["images"] == COUNT
    assert all(stages[k]["invocations"] >= COUNT and stages[k]["gb_seconds"] > 0
               for k in ("processor", "analyzer", "embedder"))
    # Tokens: exactly what the fake providers reported, one call per row
    reported = [r.answered["usage"] for r in fake.messages.requests]
    embedded = [r.answered["usage"] for r in fake.embeddings.requests]
    assert len(reported) == len(embedded) == COUNT
    analyzer, embedder = stages["analyzer"], stages["embedder"]
    assert analyzer["input_tokens"] == sum(u["input_tokens"] for u in reported)
    assert analyzer["output_tokens"] == sum(u["output_tokens"] for u in reported)
    assert embedder["input_tokens"] == sum(u["total_tokens"] for u in embedded)
    assert stages["processor"]["input_tokens"] == 0
    # at the definition's prices: claude-sonnet-4-6 $3 / $15, voyage-3.5 $0.06 per million
    assert analyzer["tokens_usd"] == pytest.approx(
        (analyzer["input_tokens"] * 3 + analyzer["output_tokens"] * 15) / 1e6, rel=1e-9)
    assert embedder["tokens_usd"] == pytest.approx(embedder["input_tokens"] * 0.06 / 1e6,
                                                   rel=1e-9)
    # Every figure sums to the total
    assert sum(s["total_usd"] for s in data["stages"]) == pytest.approx(data["total_usd"])
    for stage in data["stages"]:
        assert stage["lambda_usd"] + stage["tokens_usd"] == pytest.approx(stage["total_usd"])
    assert data["lambda_usd"] + data["tokens_usd"] == pytest.approx(data["total_usd"])
    assert data["input_tokens"] == analyzer["input_tokens"] + embedder["input_tokens"]
    assert data["per_image_usd"] == pytest.approx(data["total_usd"] / COUNT)
    assert data["complete"] is True and data["notes"] == []
    assert data["prices_as_of"] == pipeline.PRICES.as_of


def test_cost_on_local_uses_the_settings_files_prices(
        loaded_local: tuple[dict, FakeProviders], tmp_path: Path) -> None:
    env, _ = loaded_local
    (tmp_path / "collections.toml").write_text(
        '[environments.local.prices]\nas_of = "2027-01-01"\n'
        '[environments.local.prices.tokens_per_million."voyage-3.5"]\ninput = 600000.0\n')
    shown = subprocess.run([sys.executable, "-m", "collections_ops", "cost", "local",
                            "--since", "1h", "-o", "json"], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    embedder = next(s for s in data["stages"] if s["stage"] == "embedder")
    assert data["prices_as_of"] == "2027-01-01"
    assert embedder["tokens_usd"] == pytest.approx(embedder["input_tokens"] * 0.6, rel=1e-9)
