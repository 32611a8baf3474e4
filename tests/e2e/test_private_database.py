"""A database reachable only from inside its VPC: the CLI's direct connection is refused, and
`db migrate`, `db status`, `verify`, `search` and `doctor` answer through the operations
function -- the real handler (lambdas/operations) against the real PostgreSQL, invoked by the
CLI's real Lambda client through a stand-in for Lambda's Invoke API -- and say so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3

from collections_ops.pipeline import OPERATIONS, environment
from tests.e2e.cli import run
from tests.fakes.lambda_invoke import FakeLambda
from tests.fakes.providers import fake_embedding

DEV = environment("dev")
ACCOUNT = "123456789012"
FUNCTION = OPERATIONS.function_name("dev")


def _store_item(url: str, *, thumbnails_bucket: str) -> None:
    """What the pipeline would have stored for user123/test-image.jpg."""
    import psycopg
    from pgvector.psycopg import register_vector

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=thumbnails_bucket)
    boto3.client("s3", region_name="us-east-1").put_object(
        Bucket=thumbnails_bucket, Key="user123/test-image.jpg", Body=b"\xff\xd8thumb")
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("INSERT INTO items (id, user_id, bucket, original_key, thumbnail_bucket,"
                     " thumbnail_key) VALUES ('test-image', 'user123', 'b',"
                     " 'user123/test-image.jpg', %s, 'user123/test-image.jpg')",
                     (thumbnails_bucket,))
        (analysis_id,) = conn.execute(
            "INSERT INTO analyses (item_id, user_id, category, summary, provider, model, raw)"
            " VALUES ('test-image', 'user123', 'outdoors', 'a red kayak on a lake',"
            " 'anthropic', 'claude-sonnet-4-6', '{}') RETURNING id").fetchone()
        import numpy as np

        conn.execute("INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
                     " embedding_dimensions, embedding, content_hash) VALUES ('test-image',"
                     " 'user123', %s, 'voyage-3.5', 1024, %s, 'h')",
                     (analysis_id, np.array(fake_embedding("a red kayak on a lake", 1024),
                                            dtype=np.float32)))


def test_every_data_command_answers_through_the_operations_function(
        private_db: str, dev_cli_env: dict[str, str], fake_lambda: FakeLambda) -> None:
    from collections_core import migrate

    via = f"operations function {FUNCTION}"
    every = [version for version, _ in migrate.migrations()]
    # WHEN the schema is applied: the direct connection is refused, the function answers
    migrated = run(dev_cli_env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert f"applied {', '.join(every)}" in migrated.stdout and via in migrated.stdout
    again = json.loads(run(dev_cli_env, "db", "migrate", "-o", "json").stdout)
    assert again == {"applied": [], "route": "operations", "via": via}

    # AND db status reports migrations, row counts and index sizes through it
    status = run(dev_cli_env, "db", "status", "-o", "json")
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["route"] == "operations"
    assert [a["version"] for a in report["applied"]] == every
    assert report["pending"] == [] and report["tables"] == {"items": 0, "analyses": 0,
                                                            "embeddings": 0}
    assert "embeddings_hnsw_1024" in report["indexes"]

    # GIVEN an item the pipeline stored
    _store_item(private_db, thumbnails_bucket=DEV.thumbnails_bucket(ACCOUNT))
    # THEN verify checks it through the function
    verified = run(dev_cli_env, "verify", "test-image", "-o", "json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    checked = json.loads(verified.stdout)
    assert checked["ok"] and checked["route"] == "operations"
    assert f"route: {via}" in verified.stderr
    # AND search finds it, the query embedded here and the vector sent to the function
    found = run(dev_cli_env, "search", "red kayak", "-o", "json")
    assert found.returncode == 0, found.stderr
    assert [h["item_id"] for h in json.loads(found.stdout)] == ["test-image"]
    assert f"route: {via}" in found.stderr
    assert [p.get("query") for _, p in fake_lambda.calls if p["action"] == "query"] == [
        "find_items", "item_rows", "embedding_models", "search"]


def test_status_table_names_the_route(private_db: str, dev_cli_env: dict[str, str]) -> None:
    assert run(dev_cli_env, "db", "migrate").returncode == 0
    shown = run(dev_cli_env, "db", "status")
    assert shown.returncode == 0, shown.stderr
    assert f"route: operations function {FUNCTION}" in shown.stderr
    assert "0002_hnsw" in shown.stdout and "embeddings" in shown.stdout


def test_rds_mode_goes_straight_to_the_function(private_db: str, dev_cli_env: dict[str, str],
                                                fake_lambda: FakeLambda) -> None:
    from collections_ops.services import deployment

    state = Path(dev_cli_env["COLLECTIONS_STATE_DIR"]) / "dev"
    deployment.save(state, deployment.plan(DEV, None, database="rds"))
    boto3.client("ssm", region_name="us-east-1").delete_parameter(
        Name="/collections/dev/DATABASE_URL")  # an RDS deploy writes none
    result = run(dev_cli_env, "db", "migrate", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["route"] == "operations"


def test_no_route_at_all_says_both_reasons(private_db: str, dev_cli_env: dict[str, str]) -> None:
    env = dict(dev_cli_env, AWS_ENDPOINT_URL_LAMBDA=dev_cli_env["AWS_ENDPOINT_URL"])  # moto: no such fn
    result = run(env, "db", "status")
    assert result.returncode == 9, result.stdout + result.stderr
    assert "not reachable directly" in result.stderr and FUNCTION in result.stderr
    assert "Traceback" not in result.stderr


def test_the_direct_route_is_taken_when_it_works(migrated_db: str, dev_cli_env: dict[str, str],
                                                 moto_endpoint: str) -> None:
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/collections/dev/DATABASE_URL", Type="SecureString", Overwrite=True,
        Value=migrated_db)
    result = run(dev_cli_env, "db", "status", "-o", "json")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["route"] == "direct" and report["pending"] == []
