"""`collections cost` on AWS as an operator runs it against a private database: the dev
environment on moto (its functions' REPORT lines in CloudWatch Logs), its database reachable
only through the operations function (the real handler against the real PostgreSQL, behind a
stand-in for Lambda's Invoke API), whose `usage` query sums the rows' recorded tokens."""

from __future__ import annotations

import json
import time

import boto3
import pytest

from collections_ops.pipeline import FUNCTIONS, OPERATIONS, PRICES, environment
from tests.e2e.cli import run
from tests.fakes.lambda_invoke import FakeLambda

DEV = environment("dev")
VIA = f"operations function {OPERATIONS.function_name('dev')}"
# Two invocations per stage: (billed ms, memory MB)
REPORTS = {"processor": [(200, 1024), (200, 1024)], "analyzer": [(1500, 2048), (1100, 2048)],
           "embedder": [(100, 512), (100, 512)]}
# Two images, as the providers reported their calls: analyses (input, output), embeddings input
ROWS = [("a", 1200, 300, 40), ("b", 800, 200, 60)]


def _report(rid: str, billed_ms: int, memory_mb: int) -> str:
    return (f"REPORT RequestId: {rid}\tDuration: {billed_ms - 0.5:.2f} ms\t"
            f"Billed Duration: {billed_ms} ms\tMemory Size: {memory_mb} MB\t"
            "Max Memory Used: 100 MB\t")


def _logged() -> None:
    logs = boto3.client("logs", region_name="us-east-1")
    now = int(time.time() * 1000)
    for fn in FUNCTIONS:
        group = fn.log_group(DEV.name)
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="s")
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
            {"timestamp": now - 1000 + i, "message": _report(f"{fn.key}-{i}", billed, memory)}
            for i, (billed, memory) in enumerate(REPORTS[fn.key])])


def _stored(url: str) -> None:
    import psycopg

    from collections_core import migrate

    with psycopg.connect(url, autocommit=True) as conn:
        migrate.apply(conn)
        for item, tokens_in, tokens_out, embedded in ROWS:
            conn.execute("INSERT INTO items (id, user_id, bucket, original_key)"
                         " VALUES (%s, 'u', 'b', %s)", (item, f"u/{item}.jpg"))
            row = conn.execute(
                "INSERT INTO analyses (item_id, user_id, category, summary, provider, model,"
                " raw, input_tokens, output_tokens) VALUES (%s, 'u', 'photo', 's', 'anthropic',"
                " 'claude-sonnet-4-6', '{}', %s, %s) RETURNING id",
                (item, tokens_in, tokens_out)).fetchone()
            assert row is not None
            conn.execute(
                "INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
                " embedding_dimensions, embedding, content_hash, embedding_provider,"
                " input_tokens) VALUES (%s, 'u', %s, 'voyage-3.5', 4, '[1,0,0,0]'::vector, 'h',"
                " 'voyage', %s)", (item, row[0], embedded))


def test_cost_prices_the_tokens_read_through_the_operations_function(
        private_db: str, dev_cli_env: dict[str, str], fake_lambda: FakeLambda) -> None:
    _stored(private_db)
    _logged()

    # WHEN cost is asked of dev, whose database this machine cannot reach
    shown = run(dev_cli_env, "cost", "dev", "--since", "1h", "-o", "json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    data = json.loads(shown.stdout)

    # THEN the rows were read through the operations function, in one request, and it says so
    assert (data["route"], data["via"]) == ("operations", VIA)
    assert f"route: {VIA}" in shown.stderr
    assert [(i.invocation_type, i.payload["query"]) for i in fake_lambda.invocations] == [
        ("RequestResponse", "usage")]
    # AND the tokens are priced at the dated table (claude-sonnet-4-6 $3 / $15, voyage-3.5
    # $0.06 per million), the images are the items written
    stages = {s["stage"]: s for s in data["stages"]}
    analyzer, embedder = stages["analyzer"], stages["embedder"]
    assert (analyzer["input_tokens"], analyzer["output_tokens"]) == (2000, 500)
    assert embedder["input_tokens"] == 100
    assert analyzer["tokens_usd"] == pytest.approx((2000 * 3 + 500 * 15) / 1e6, rel=1e-12)
    assert embedder["tokens_usd"] == pytest.approx(100 * 0.06 / 1e6, rel=1e-12)
    assert data["images"] == 2 and data["complete"] is True and data["notes"] == []
    assert data["prices_as_of"] == PRICES.as_of
    # AND Lambda time is dev's REPORT lines at x86_64: (0.4 + 5.2 + 0.1) GB-s and 6 requests
    assert data["lambda_usd"] == pytest.approx(5.7 * 0.0000166667 + 6 * 0.2e-6, rel=1e-9)
    # AND every figure sums to the total
    assert sum(s["total_usd"] for s in data["stages"]) == pytest.approx(data["total_usd"])
    for stage in data["stages"]:
        assert stage["lambda_usd"] + stage["tokens_usd"] == pytest.approx(stage["total_usd"])
    assert data["lambda_usd"] + data["tokens_usd"] == pytest.approx(data["total_usd"])
    assert data["tokens_usd"] == pytest.approx(analyzer["tokens_usd"] + embedder["tokens_usd"])
    assert data["per_image_usd"] == pytest.approx(data["total_usd"] / 2)

    # AND the table names the route too, on stderr, with the same figures
    table = run(dev_cli_env, "cost", "dev", "--since", "1h")
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"route: {VIA}" in table.stderr
    assert "2000/500" in table.stdout and "2100/500" in table.stdout
