"""The operations function (lambdas/operations): its closed vocabulary, migrations under the
advisory lock, the schema's status, the CLI's read-only queries and the deploy-time custom
resource -- against the real PostgreSQL with pgvector, SSM and Secrets Manager on moto, and a
real HTTP server standing in for CloudFormation's ResponseURL."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from collections_ops import pipeline
from collections_ops.localcloud.lambda_service import lambda_runtime
from tests.images import photo
from tests.moto_server import reset_moto

OPERATIONS = pipeline.OPERATIONS
LOCAL = pipeline.environment("local")


@pytest.fixture(autouse=True)
def _function_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the stack (and the local cloud) gives every function, ops included."""
    for key, value in pipeline.common_env(LOCAL, account=pipeline.LOCAL_ACCOUNT).items():
        monkeypatch.setenv(key, value)


def invoke(event: Any) -> dict[str, Any]:
    from collections_core import state

    state.reset()  # a fresh container: no cached secret or client from another test
    result = lambda_runtime.invoke(OPERATIONS, LOCAL, event)
    assert result.ok, result.error_message
    assert isinstance(result.result, dict)
    return result.result


def _put_database_url(url: str) -> None:
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=LOCAL.parameter_name("DATABASE_URL"), Value=url, Type="SecureString",
        Overwrite=True)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{name}").geturl()


@pytest.fixture
def fresh_db(database_url: str, moto_endpoint: str) -> Iterator[str]:
    """An empty database of its own on the session's server, named by DATABASE_URL in SSM."""
    import psycopg

    name = f"ops_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(database_url, name)
    reset_moto(moto_endpoint)
    _put_database_url(url)
    yield url
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for fn in pipeline.FUNCTIONS:  # roles are the server's: they outlive the database
            admin.execute(f'DROP ROLE IF EXISTS "{fn.database_role(name)}"')


def _versions() -> list[str]:
    from collections_core import migrate

    return [v for v, _ in migrate.migrations()]


# ------------------------------------------------------------------------------ vocabulary


def test_vocabulary_is_the_definitions() -> None:
    handler = lambda_runtime.load_handler(OPERATIONS)
    module = handler.__globals__
    assert module["ACTIONS"] == pipeline.OPERATIONS_ACTIONS
    assert module["QUERIES"] == pipeline.OPERATIONS_QUERIES


def test_helper_modules_of_every_deployed_function_have_unique_names() -> None:
    """The local cloud loads every function, the operations one included, in one interpreter."""
    seen: dict[str, str] = {}
    for fn in pipeline.DEPLOYED_FUNCTIONS:
        for path in (Path(pipeline.__file__).parents[3] / "lambdas" / fn.code_dir).glob("*.py"):
            if path.name != "handler.py":
                assert path.stem not in seen, f"{path.stem}: {seen.get(path.stem)} and {fn.key}"
                seen[path.stem] = fn.key


@pytest.mark.parametrize("event", [
    "migrate",
    {"action": "DROP TABLE items"},
    {"action": "query", "query": "sql", "params": {"sql": "SELECT 1"}},
    {"action": "query", "query": "find_items", "params": {"item_id": "x", "sql": "SELECT 1"}},
    {"action": "query", "query": "find_items", "params": {"item_id": 7}},
    {"action": "query", "query": "find_items", "params": {"item_id": "x" * 1025}},
    {"action": "query", "query": "item_rows", "params": {"item_id": "x"}},
    {"action": "query", "query": "search", "params": {"vector": [0.1, 0.2], "model": "m",
                                                      "dimensions": 3}},
    {"action": "query", "query": "search", "params": {"vector": [1.0], "model": "m",
                                                      "dimensions": 1, "limit": 10**6}},
    {"action": "query", "query": "search", "params": {"vector": ["1"], "model": "m",
                                                      "dimensions": 1}},
    {"action": "migrate", "params": {"version": "0001_initial"}},
    {"action": "status", "sql": "SELECT 1"},
    {"action": "query", "query": "reconcile_rows", "params": {"table": "schema_migrations"}},
    {"action": "query", "query": "reconcile_rows", "params": {"table": "items",
                                                              "after": "user1"}},
    {"action": "query", "query": "reconcile_rows", "params": {"table": "embeddings",
                                                              "after": ["u", "i"]}},
    {"action": "query", "query": "reconcile_rows", "params": {"table": "items",
                                                              "limit": 5001}},
    {"action": "query", "query": "reconcile_rows", "params": {"table": "items",
                                                              "sql": "SELECT 1"}},
    {"action": "query", "query": "usage", "params": {}},
    {"action": "query", "query": "usage", "params": {"since": -1}},
    {"action": "query", "query": "usage", "params": {"since": "1700000000000"}},
    {"action": "query", "query": "usage", "params": {"since": True}},
    {"action": "query", "query": "usage", "params": {"since": 100, "until": 50}},
    {"action": "query", "query": "usage", "params": {"since": 0, "user_id": ""}},
    {"action": "query", "query": "usage", "params": {"since": 0, "sql": "SELECT 1"}},
], ids=lambda e: json.dumps(e)[:60])
def test_anything_outside_the_vocabulary_is_refused_before_connecting(
        event: Any, moto_endpoint: str) -> None:
    reset_moto(moto_endpoint)  # no DATABASE_URL at all: a refusal must not need it
    response = invoke(event)
    assert response["ok"] is False
    assert response["kind"] == "usage"
    assert "queries: find_items" in response["hint"]


# ---------------------------------------------------------------------- migrate and status


def test_status_of_an_empty_database_lists_every_migration_as_pending(fresh_db: str) -> None:
    response = invoke({"action": "status"})
    assert response["ok"] is True, response
    status = response["result"]
    assert status["applied"] == []
    assert status["pending"] == _versions()
    assert status["tables"] == {"items": None, "analyses": None, "embeddings": None}


def test_migrate_applies_once_and_status_reports_it(fresh_db: str) -> None:
    first = invoke({"action": "migrate"})
    assert first["ok"] is True, first
    assert first["result"] == {"applied": _versions(), "pending": [],
                               "credentials_written": ["processor", "analyzer", "embedder"]}
    again = invoke({"action": "migrate"})
    assert again["result"] == {"applied": [], "pending": [], "credentials_written": []}

    status = invoke({"action": "status"})["result"]
    assert [a["version"] for a in status["applied"]] == _versions()
    assert status["pending"] == []
    assert status["tables"] == {"items": 0, "analyses": 0, "embeddings": 0}
    assert "embeddings_hnsw_1024" in status["indexes"]
    assert all(isinstance(size, int) and size > 0 for size in status["indexes"].values())
    assert status["database"]["vector"]


def test_concurrent_migrations_apply_each_version_exactly_once(fresh_db: str) -> None:
    # GIVEN two deploys' migrations racing (a retried custom resource, an operator's migrate)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: lambda_runtime.invoke(
            OPERATIONS, LOCAL, {"action": "migrate"}).result, range(3)))
    # THEN the advisory lock serializes them: every version is applied by exactly one
    assert all(r["ok"] for r in results), results
    applied = [v for r in results for v in r["result"]["applied"]]
    assert sorted(applied) == sorted(_versions())


def test_unreachable_database_is_reported_without_its_password(moto_endpoint: str) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reset_moto(moto_endpoint)
    _put_database_url(f"postgresql://collections:s3cret-pass@127.0.0.1:{port}/collections")
    response = invoke({"action": "status"})
    assert (response["ok"], response["kind"]) == (False, "unreachable")
    assert "database unreachable" in response["error"]
    assert "s3cret-pass" not in json.dumps(response)


def test_the_rds_generated_secret_is_read_directly(fresh_db: str, database_url: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the RDS-generated secret (JSON credentials) and no DATABASE_URL parameter at all
    boto3.client("ssm", region_name="us-east-1").delete_parameter(
        Name=LOCAL.parameter_name("DATABASE_URL"))
    parts = urlsplit(fresh_db)
    socket_dir = parse_qs(parts.query)["host"][0]
    (socket_file,) = Path(socket_dir).glob(".s.PGSQL.*[0-9]")
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=f"collections-test-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"username": parts.username, "password": "rds-generated-pw",
                                 "engine": "postgres", "host": socket_dir,
                                 "port": int(socket_file.name.rsplit(".", 1)[1]),
                                 "dbname": parts.path.lstrip("/")}))
    monkeypatch.setenv("DATABASE_SECRET_ARN", secret["ARN"])
    # WHEN the function migrates
    response = invoke({"action": "migrate"})
    # THEN it connected with the secret's credentials
    assert response["ok"] is True, response
    assert response["result"]["applied"] == _versions()


def test_deploy_writes_database_url_from_the_rds_secret(
        fresh_db: str, monkeypatch: pytest.MonkeyPatch, response_url: _ResponseUrl) -> None:
    # GIVEN database mode rds: the secret, and no DATABASE_URL yet (the first deploy)
    parameter = LOCAL.parameter_name("DATABASE_URL")
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.delete_parameter(Name=parameter)
    parts = urlsplit(fresh_db)
    socket_dir = parse_qs(parts.query)["host"][0]
    (socket_file,) = Path(socket_dir).glob(".s.PGSQL.*[0-9]")
    port = int(socket_file.name.rsplit(".", 1)[1])
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=f"collections-test-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"username": parts.username, "password": "pw/with:odd@chars",
                                 "host": socket_dir, "port": port,
                                 "dbname": parts.path.lstrip("/")}))
    monkeypatch.setenv("DATABASE_SECRET_ARN", secret["ARN"])
    monkeypatch.setenv("DATABASE_URL_PARAMETER", parameter)
    # WHEN CloudFormation runs the deploy-time migration, twice
    invoke(_cfn_event("Create", response_url.url))
    first = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]
    invoke(_cfn_event("Update", response_url.url, PhysicalResourceId="p-1"))
    # THEN the pipeline's parameter holds a URL that reaches the database, written once
    assert [r["body"]["Status"] for r in response_url.received] == ["SUCCESS", "SUCCESS"]
    assert first["Type"] == "SecureString"
    second = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]
    assert second["Version"] == first["Version"]
    import psycopg

    with psycopg.connect(first["Value"]) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (
            len(_versions()),)
    assert "pw/with:odd@chars" not in json.dumps(response_url.received)


def _function_url(function_key: str) -> str | None:
    ssm = boto3.client("ssm", region_name="us-east-1")
    name = LOCAL.parameter_name(pipeline.function(function_key).database_url_name)
    try:
        return str(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None


def _current_user(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        return str(conn.execute("SELECT current_user").fetchone()[0])


def test_migrate_publishes_each_functions_own_url_once_and_keeps_its_password(
        fresh_db: str) -> None:
    database = urlsplit(fresh_db).path.lstrip("/")
    # WHEN the function migrates an empty database (database mode `existing`)
    first = invoke({"action": "migrate"})["result"]
    # THEN each pipeline function has a URL of its own, which logs in as its own role
    assert first["credentials_written"] == ["processor", "analyzer", "embedder"]
    urls = {fn.key: _function_url(fn.key) for fn in pipeline.FUNCTIONS}
    for fn in pipeline.FUNCTIONS:
        url = urls[fn.key]
        assert url is not None and _current_user(url) == fn.database_role(database)
        assert urlsplit(url).password and urlsplit(url).password != urlsplit(fresh_db).password
    # WHEN it migrates again: nothing is rewritten and every password is kept
    again = invoke({"action": "migrate"})["result"]
    assert again["credentials_written"] == []
    assert {fn.key: _function_url(fn.key) for fn in pipeline.FUNCTIONS} == urls
    # WHEN one function's URL is lost, the next migrate gives that function a new one
    boto3.client("ssm", region_name="us-east-1").delete_parameter(
        Name=LOCAL.parameter_name("DATABASE_URL_ANALYZER"))
    assert invoke({"action": "migrate"})["result"]["credentials_written"] == ["analyzer"]
    renewed = _function_url("analyzer")
    assert renewed is not None and renewed != urls["analyzer"]
    assert _current_user(renewed) == pipeline.ANALYZER.database_role(database)


def test_concurrent_publishes_write_each_url_once_with_the_password_its_role_has(
        fresh_db: str) -> None:
    import psycopg

    invoke({"action": "migrate"})
    boto3.client("ssm", region_name="us-east-1").delete_parameters(
        Names=[LOCAL.parameter_name(fn.database_url_name) for fn in pipeline.FUNCTIONS])

    def publish(_: int) -> list[str]:
        import connection  # the operations function's own module

        with psycopg.connect(fresh_db, autocommit=True) as conn:
            return list(connection.publish_function_urls(conn))

    # GIVEN three publishes racing (two deploys' migrations and an operator's migrate)
    with ThreadPoolExecutor(max_workers=3) as pool:
        written = [key for keys in pool.map(publish, range(3)) for key in keys]
    # THEN the advisory lock makes them take turns: each URL is written once, and the
    # password it holds is the one its role has
    assert sorted(written) == sorted(fn.key for fn in pipeline.FUNCTIONS)
    for fn in pipeline.FUNCTIONS:
        url = _function_url(fn.key)
        assert url is not None and _current_user(url) == fn.database_role(
            urlsplit(fresh_db).path.lstrip("/"))


def test_with_generated_role_secrets_each_functions_url_carries_its_secrets_password(
        fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN database mode `rds`: a generated secret per function role (the database stack's)
    database = urlsplit(fresh_db).path.lstrip("/")
    manager = boto3.client("secretsmanager", region_name="us-east-1")
    arns = {fn.key: manager.create_secret(
        Name=f"collections-test-{fn.key}-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"username": fn.database_role(database),
                                 "password": f"generated-{fn.key}-{uuid.uuid4().hex}"}))["ARN"]
        for fn in pipeline.FUNCTIONS}
    monkeypatch.setenv("DATABASE_ROLE_SECRETS", json.dumps(arns))
    # WHEN the function migrates
    invoke({"action": "migrate"})
    # THEN each function's URL logs in as its role with the password of its role's secret
    for fn in pipeline.FUNCTIONS:
        url = _function_url(fn.key)
        assert url is not None
        secret = json.loads(manager.get_secret_value(SecretId=arns[fn.key])["SecretString"])
        assert urlsplit(url).password == secret["password"]
        assert _current_user(url) == fn.database_role(database)


# ------------------------------------------------------------------------- named queries


def test_verify_rows_are_the_direct_routes(pipeline: Any, db: Any) -> None:
    from collections_ops.services import verify

    pipeline.run_to_end("user123/test-image.jpg", photo())
    direct = verify.verify(db, pipeline.client("s3"), "test-image")

    found = invoke({"action": "query", "query": "find_items",
                    "params": {"item_id": "test-image"}})
    assert found["ok"] is True, found
    assert found["result"] == [{"user_id": "user123", "id": "test-image"}]
    rows = invoke({"action": "query", "query": "item_rows",
                   "params": {"item_id": "test-image", "user_id": "user123"}})["result"]
    assert rows["item"] == direct.item
    assert rows["analysis"] == direct.analysis
    assert rows["embedding"] == direct.embedding
    json.dumps(rows)  # the whole answer is plain JSON


@pytest.mark.parametrize("user_id", [None, "user123"])
def test_search_answers_as_the_direct_route(pipeline: Any, db: Any,
                                            user_id: str | None) -> None:
    from collections_ops.services import search

    for name, seed in (("a", 1), ("b", 2), ("c", 3)):
        pipeline.run_to_end(f"user123/{name}.jpg", photo(seed=seed))
    settings = pipeline.env
    vector = search.embed_query("a photo", provider=settings.embedding_provider,
                                model=settings.embedding_model)
    direct = search.search(db, vector, model=settings.embedding_model,
                           dimensions=len(vector), user_id=user_id, limit=2)
    response = invoke({"action": "query", "query": "search", "params": {
        "vector": vector, "model": settings.embedding_model, "dimensions": len(vector),
        "user_id": user_id, "limit": 2}})
    assert response["ok"] is True, response
    assert [(h["item_id"], h["user_id"]) for h in response["result"]] == \
        [(h.item_id, h.user_id) for h in direct]
    for remote, local in zip(response["result"], direct, strict=True):
        assert remote["distance"] == pytest.approx(local.distance, abs=1e-5)


def test_database_check_is_the_doctors(pipeline: Any) -> None:
    response = invoke({"action": "query", "query": "database_check"})
    assert response["ok"] is True, response
    assert response["result"]["reachable"] is True
    assert response["result"]["vector"]
    assert response["result"]["pending"] == []


def _counting_route() -> tuple[Any, list[dict[str, Any]]]:
    """The CLI's operations route, its requests reaching the real handler; and what it sent."""
    from collections_ops.services.dataroute import OperationsRoute

    sent: list[dict[str, Any]] = []

    def invoker(request: dict[str, Any]) -> dict[str, Any]:
        sent.append(request)
        response = invoke(json.loads(json.dumps(request)))  # as it crosses the wire
        assert len(json.dumps(response)) < LAMBDA_RESPONSE_LIMIT
        return response

    return OperationsRoute(invoker, OPERATIONS.function_name("dev")), sent


LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024  # a synchronous invoke's response payload


def _store_many(db: Any, count: int, *, users: int = 20, description: str = "") -> None:
    """`count` complete items (items, analyses, embeddings rows), written with COPY."""
    with db.cursor() as cur:
        with cur.copy("COPY items (id, user_id, bucket, original_key, sequencer) FROM STDIN"
                      ) as copy:
            for n in range(count):
                user = f"user{n % users:02d}"
                copy.write_row((f"img-{n:05d}", user, "b", f"{user}/img-{n:05d}.jpg", "0A"))
        with cur.copy("COPY analyses (item_id, user_id, category, summary, description,"
                      " tags, provider, model, source_sequencer, raw) FROM STDIN") as copy:
            for n in range(count):
                copy.write_row((f"img-{n:05d}", f"user{n % users:02d}", "photo",
                                f"image {n}", description, "{a,b}", "local", "local", "0A",
                                "{}"))
        cur.execute("INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
                    " embedding_dimensions, embedding, content_hash)"
                    " SELECT item_id, user_id, id, 'local-hash-v1', 4,"
                    " '[1,0,0,0]'::vector, 'h' FROM analyses")


def test_reconcile_rows_of_10000_items_page_through_the_function_as_the_direct_route_reads(
        pipeline: Any, db: Any) -> None:
    from collections_ops.services import reconcile
    from collections_ops.services.dataroute import RECONCILE_PAGE_ROWS, DirectRoute

    # GIVEN 10,000 complete items of 20 users
    _store_many(db, 10_000)
    route, sent = _counting_route()
    # WHEN reconcile reads them through the operations function
    items, analyses, embeddings = reconcile.read_rows(route)
    # THEN every row arrives once, page by page, each page far below Lambda's response limit
    assert (len(items), len(analyses), len(embeddings)) == (10_000, 10_000, 10_000)
    assert len({(r["user_id"], r["id"]) for r in items}) == 10_000
    assert len(sent) == 3 * (10_000 // RECONCILE_PAGE_ROWS)  # no empty last page
    assert all(r["query"] == "reconcile_rows" for r in sent)
    # AND the direct route reads the same rows, as JSON gives them
    assert (items, analyses, embeddings) == reconcile.read_rows(DirectRoute(db))
    assert "embedding" not in embeddings[0] and "raw" not in analyses[0]
    # AND the user and item filters are parameters of the same statements
    mine, _, _ = reconcile.read_rows(route, user_id="user03")
    assert len(mine) == 500 and {r["user_id"] for r in mine} == {"user03"}
    one = reconcile.read_rows(route, user_id="user03", item_id="img-00003")
    assert [len(rows) for rows in one] == [1, 1, 1]


def test_a_page_of_long_texts_ends_before_the_response_limit(pipeline: Any, db: Any) -> None:
    from collections_ops.services import reconcile

    # GIVEN analyses whose texts are as long as the analyzer allows, in a script JSON escapes
    _store_many(db, 300, description="é" * 4000)  # 24 kB of JSON per row
    route, sent = _counting_route()
    # WHEN they are read THEN pages end at the byte budget, not the row count, and none is lost
    _, analyses, _ = reconcile.read_rows(route)
    assert len(analyses) == 300 and {len(a["description"]) for a in analyses} == {4000}
    pages = [r for r in sent if r["params"]["table"] == "analyses"]
    assert len(pages) == 2


def test_a_cursor_that_does_not_advance_is_refused(pipeline: Any, db: Any) -> None:
    from collections_ops import errors
    from collections_ops.services import dataroute

    class Stuck:
        kind, description = "operations", "a function that repeats itself"

        def reconcile_page(self, table: str, **_: Any) -> dict[str, Any]:
            return {"rows": [{"user_id": "u", "id": "i"}], "next": ["u", "i"]}

    with pytest.raises(errors.CollectionsError, match="did not advance"):
        dataroute.reconcile_rows(Stuck(), "items")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- usage

DAY_MS = 86_400_000
# (user, item, age in days, analysis (provider, model, input, output) | None,
#  embedding (provider, model, input) | None): None tokens are rows written before 0004.
USAGE_ROWS: list[tuple[str, str, int, tuple[Any, ...] | None, tuple[Any, ...] | None]] = [
    ("u1", "a", 0, ("anthropic", "claude-sonnet-4-6", 100, 20), ("voyage", "voyage-3.5", 30)),
    ("u1", "b", 0, ("anthropic", "claude-sonnet-4-6", 300, 40), ("voyage", "voyage-3.5", 40)),
    ("u1", "c", 0, ("anthropic", "claude-sonnet-4-6", None, None), (None, "voyage-3.5", None)),
    ("u2", "d", 0, ("openai", "gpt-4o", 50, 5), ("local", "local-hash-v1", None)),
    ("u2", "e", 10, ("anthropic", "claude-sonnet-4-6", 1000, 1000), ("voyage", "voyage-3.5", 999)),
    ("u2", "f", 0, None, None),  # processed, not analysed yet
]


def _store_usage(db: Any) -> None:
    for user, item, age, analysis, embedding in USAGE_ROWS:
        at = {"user": user, "item": item, "age": age}
        db.execute("INSERT INTO items (id, user_id, bucket, original_key, updated_at)"
                   " VALUES (%(item)s, %(user)s, 'b', %(item)s,"
                   " now() - make_interval(days => %(age)s))", at)
        if analysis is None:
            continue
        provider, model, tokens_in, tokens_out = analysis
        row = db.execute(
            "INSERT INTO analyses (item_id, user_id, category, summary, provider, model, raw,"
            " input_tokens, output_tokens, updated_at) VALUES (%(item)s, %(user)s, 'photo', 's',"
            " %(provider)s, %(model)s, '{}', %(in)s, %(out)s,"
            " now() - make_interval(days => %(age)s)) RETURNING id",
            {**at, "provider": provider, "model": model, "in": tokens_in,
             "out": tokens_out}).fetchone()
        assert embedding is not None and row is not None
        provider, model, tokens_in = embedding
        db.execute(
            "INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
            " embedding_dimensions, embedding, content_hash, embedding_provider, input_tokens,"
            " updated_at) VALUES (%(item)s, %(user)s, %(analysis)s, %(model)s, 4,"
            " '[1,0,0,0]'::vector, 'h', %(provider)s, %(in)s,"
            " now() - make_interval(days => %(age)s))",
            {**at, "analysis": row[0], "provider": provider, "model": model, "in": tokens_in})


def _group(stage: str, provider: str | None, model: str, rows: int, unreported: int,
           tokens_in: int, tokens_out: int = 0) -> dict[str, Any]:
    return {"stage": stage, "provider": provider, "model": model, "rows": rows,
            "unreported": unreported, "input_tokens": tokens_in, "output_tokens": tokens_out}


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def test_usage_sums_the_windows_tokens_in_sql_alike_on_both_routes(pipeline: Any,
                                                                   db: Any) -> None:
    from collections_ops.services import cost
    from collections_ops.services.dataroute import DirectRoute

    _store_usage(db)
    route, sent = _counting_route()
    direct = DirectRoute(db)
    day = _now_ms() - DAY_MS

    # WHEN the last day's usage is asked through the operations function
    answer = route.usage(since_ms=day, until_ms=None, user_id=None)
    # THEN it is summed per stage, model and provider, in one request, the 10-day-old row out
    assert [r["query"] for r in sent] == ["usage"]
    assert answer == {"images": 5, "usage": [
        _group("analyzer", "anthropic", "claude-sonnet-4-6", 3, 1, 400, 60),
        _group("analyzer", "openai", "gpt-4o", 1, 0, 50, 5),
        _group("embedder", "local", "local-hash-v1", 1, 1, 0),
        _group("embedder", "voyage", "voyage-3.5", 2, 0, 70),
        _group("embedder", None, "voyage-3.5", 1, 1, 0)]}
    # AND the direct route runs the same statements to the same answer
    assert direct.usage(since_ms=day, until_ms=None, user_id=None) == answer
    # AND the user and the window's end are parameters of those statements, on both routes
    for window in ({"since_ms": day, "until_ms": None, "user_id": "u2"},
                   {"since_ms": day - 19 * DAY_MS, "until_ms": day - 4 * DAY_MS,
                    "user_id": None}):
        assert route.usage(**window) == direct.usage(**window)
    assert route.usage(since_ms=day, until_ms=None, user_id="u2") == {"images": 2, "usage": [
        _group("analyzer", "openai", "gpt-4o", 1, 0, 50, 5),
        _group("embedder", "local", "local-hash-v1", 1, 1, 0)]}
    assert route.usage(since_ms=day - 19 * DAY_MS, until_ms=day - 4 * DAY_MS,
                       user_id=None) == {"images": 1, "usage": [
        _group("analyzer", "anthropic", "claude-sonnet-4-6", 1, 0, 1000, 1000),
        _group("embedder", "voyage", "voyage-3.5", 1, 0, 999)]}
    # AND cost reads the same figures either way (the offline provider's rows owe nothing)
    recorded = cost.read_recorded(route, since_ms=day)
    assert recorded == cost.read_recorded(direct, since_ms=day)
    assert recorded.images == 5
    assert [(u.model, u.provider, u.unreported) for u in recorded.usage["embedder"]] == [
        ("local-hash-v1", "local", 0), ("voyage-3.5", "voyage", 0), ("voyage-3.5", None, 1)]


def test_usage_of_100000_rows_is_one_small_group(pipeline: Any, db: Any) -> None:
    """The answer's size does not grow with the rows: it is summed in the database."""
    db.execute("INSERT INTO items (id, user_id, bucket, original_key)"
               " SELECT 'i' || n, 'u' || (n % 50), 'b', 'k' || n"
               " FROM generate_series(1, 100000) AS n")
    db.execute("INSERT INTO analyses (item_id, user_id, category, summary, provider, model,"
               " raw, input_tokens, output_tokens) SELECT id, user_id, 'photo', 's',"
               " 'anthropic', 'claude-sonnet-4-6', '{}', 7, 3 FROM items")
    route, _ = _counting_route()
    answer = route.usage(since_ms=_now_ms() - DAY_MS, until_ms=None, user_id=None)
    assert answer == {"images": 100_000, "usage": [
        _group("analyzer", "anthropic", "claude-sonnet-4-6", 100_000, 0, 700_000, 300_000)]}
    assert len(json.dumps(answer)) < 300


def test_usage_of_more_groups_than_the_cap_is_refused_whole(pipeline: Any, db: Any) -> None:
    from collections_ops import errors
    from collections_ops.services.dataroute import DirectRoute

    queries = lambda_runtime.load_handler(OPERATIONS).__globals__["queries"]
    groups = queries.USAGE_MAX_GROUPS + 1
    db.execute("INSERT INTO items (id, user_id, bucket, original_key)"
               " SELECT 'i' || n, 'u', 'b', 'k' || n FROM generate_series(1, %s) AS n",
               (groups,))
    db.execute("INSERT INTO analyses (item_id, user_id, category, summary, provider, model,"
               " raw) SELECT id, user_id, 'photo', 's', 'anthropic', 'model-' || id, '{}'"
               " FROM items")
    response = invoke({"action": "query", "query": "usage",
                       "params": {"since": _now_ms() - DAY_MS}})
    assert (response["ok"], response["kind"]) == (False, "failed")
    assert f"more than {queries.USAGE_MAX_GROUPS}" in response["error"]
    assert "result" not in response  # never a part of the groups, which would sum short
    with pytest.raises(errors.DatabaseError, match="more than"):
        DirectRoute(db).usage(since_ms=_now_ms() - DAY_MS, until_ms=None, user_id=None)


def test_usage_before_the_usage_migration_says_to_migrate(fresh_db: str) -> None:
    import psycopg

    from collections_core import migrate
    from collections_ops.services import cost
    from collections_ops.services.dataroute import DirectRoute

    with psycopg.connect(fresh_db, autocommit=True) as conn:
        for version, sql in migrate.migrations():
            if version < "0004":
                conn.execute(sql)
        response = invoke({"action": "query", "query": "usage", "params": {"since": 0}})
        assert (response["ok"], response["error"], response["hint"]) == (
            False, "the database has no usage columns yet", "run: collections db migrate")
        recorded, why, route = cost.recorded_through(lambda: DirectRoute(conn), since_ms=0)
    assert (recorded, route) == (None, None)
    assert why == "the database has no usage columns yet: run: collections db migrate"


# -------------------------------------------------------------- deploy-time custom resource


class _ResponseUrl:
    """CloudFormation's side of a custom resource: a URL that receives one PUT."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                length = int(self.headers["Content-Length"])
                received.append({"content_type": self.headers.get("Content-Type"),
                                 "body": json.loads(self.rfile.read(length))})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response?sig=x"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def response_url() -> Iterator[_ResponseUrl]:
    server = _ResponseUrl()
    yield server
    server.close()


def _cfn_event(request: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"RequestType": request, "ResponseURL": url, "RequestId": str(uuid.uuid4()),
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/S/1",
            "LogicalResourceId": "SchemaMigration", "ResourceType": "Custom::SchemaMigration",
            "ResourceProperties": {"ServiceToken": "arn", "MigrationsHash": "h"}, **extra}


def test_deploy_time_migration_reports_success_to_cloudformation(
        fresh_db: str, response_url: _ResponseUrl) -> None:
    invoke(_cfn_event("Create", response_url.url))
    invoke(_cfn_event("Update", response_url.url, PhysicalResourceId="p-1"))
    (created, updated) = response_url.received
    assert created["body"]["Status"] == "SUCCESS"
    assert created["body"]["Data"] == {"Applied": ",".join(_versions())}
    assert created["content_type"] == ""  # as the pre-signed URL was signed
    assert updated["body"]["Status"] == "SUCCESS"
    assert updated["body"]["Data"] == {"Applied": "none"}
    assert updated["body"]["PhysicalResourceId"] == "p-1"  # never replaced
    assert invoke({"action": "status"})["result"]["pending"] == []


def test_a_failed_migration_fails_the_deploy_with_the_error(
        fresh_db: str, response_url: _ResponseUrl) -> None:
    import psycopg

    # GIVEN a database where the first migration cannot run (a table of that name that is
    # not a table)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE VIEW items AS SELECT 1 AS id")
    invoke(_cfn_event("Create", response_url.url))
    (answer,) = response_url.received
    assert answer["body"]["Status"] == "FAILED"
    assert answer["body"]["Reason"].startswith("migration failed: database error:")
    assert "items" in answer["body"]["Reason"]
    # and nothing was half-applied
    assert invoke({"action": "status"})["result"]["applied"] == []


def _stack_in(status: str) -> str:
    """A stack in moto's CloudFormation (this process's server) with the given status."""
    from moto.cloudformation.models import cloudformation_backends

    cfn = boto3.client("cloudformation", region_name="us-east-1")
    stack_id = cfn.create_stack(StackName=f"collections-test-{uuid.uuid4().hex[:8]}",
                                TemplateBody=json.dumps({"Resources": {"Handle": {
                                    "Type": "AWS::CloudFormation::WaitConditionHandle"}}}))[
        "StackId"]
    backend = cloudformation_backends[pipeline.LOCAL_ACCOUNT]["us-east-1"]
    backend.stacks[stack_id].status = status
    return str(stack_id)


def test_a_rollbacks_update_applies_nothing_and_succeeds(
        fresh_db: str, response_url: _ResponseUrl) -> None:
    import psycopg

    # GIVEN a database where a migration fails, and a stack rolling back from that failure
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("CREATE VIEW items AS SELECT 1 AS id")
    rolling_back = _stack_in("UPDATE_ROLLBACK_IN_PROGRESS")
    invoke(_cfn_event("Update", response_url.url, PhysicalResourceId="p-1",
                      StackId=rolling_back))
    # an Update of a stack going forward still migrates (and here fails)
    invoke(_cfn_event("Update", response_url.url, PhysicalResourceId="p-1",
                      StackId=_stack_in("UPDATE_IN_PROGRESS")))
    (rollback, forward) = response_url.received
    assert rollback["body"]["Status"] == "SUCCESS"
    assert "rolling back" in rollback["body"]["Reason"]
    assert forward["body"]["Status"] == "FAILED"
    assert invoke({"action": "status"})["result"]["applied"] == []


def test_removing_the_resource_leaves_the_schema(moto_endpoint: str,
                                                 response_url: _ResponseUrl) -> None:
    reset_moto(moto_endpoint)  # no database at all: Delete must not need one
    invoke(_cfn_event("Delete", response_url.url, PhysicalResourceId="p-1"))
    (answer,) = response_url.received
    assert answer["body"]["Status"] == "SUCCESS"
