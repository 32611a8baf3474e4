"""Embeddings per model (migration 0006, collections_core/models.py): the database records
which models its embeddings belong to and which one is active; the embedder embeds with the
active model and every model being filled; search embeds its query with the active model.
Real PostgreSQL with pgvector, the handlers on moto."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from tests import images

E5, HASH = "multilingual-e5-small-q4", "local-hash-v1"


@pytest.fixture
def fresh_url(database_url: str) -> Iterator[str]:
    name = f"models_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield urlsplit(database_url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rows(conn: Any, user: str, n: int, model: str, dims: int) -> None:
    for i in range(n):
        conn.execute("INSERT INTO items (id, user_id, bucket, original_key) VALUES"
                     " (%s, %s, 'b', %s) ON CONFLICT DO NOTHING", (f"i{i}", user, f"{user}/i{i}"))
        conn.execute("INSERT INTO analyses (item_id, user_id, category, summary, provider,"
                     " model, raw) VALUES (%s, %s, 'c', 's', 'p', 'm', '{}')"
                     " ON CONFLICT DO NOTHING", (f"i{i}", user))
        conn.execute("INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
                     " embedding_dimensions, embedding, content_hash)"
                     " SELECT %s, %s, id, %s, %s, %s::vector, 'h' FROM analyses"
                     " WHERE user_id = %s AND item_id = %s",
                     (f"i{i}", user, model, dims, str([1.0] + [0.0] * (dims - 1)), user,
                      f"i{i}"))


def test_migration_0006_records_the_models_of_existing_rows_and_keeps_every_row(fresh_url):
    from collections_core import migrate

    # GIVEN a database migrated up to 0005 holding 3 rows of one model and 1 of another
    with psycopg.connect(fresh_url) as conn:
        migrate.apply(conn)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute("DROP TABLE embedding_models")
        conn.execute("DELETE FROM schema_migrations WHERE version >= '0006'")
        _rows(conn, "u1", 3, "voyage-3.5", 8)
        _rows(conn, "u2", 1, HASH, 8)
        before = conn.execute("SELECT id, embedding_model, embedding::text FROM embeddings"
                              " ORDER BY id").fetchall()

    # WHEN 0006 (and what follows) is applied
    with psycopg.connect(fresh_url) as conn:
        applied = migrate.apply(conn)

    # THEN the model with most rows is active, the other retired, and no row moved or went
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        assert "0006_embedding_models" in applied
        assert conn.execute("SELECT model, dimensions, state FROM embedding_models"
                            " ORDER BY model").fetchall() == [
            (HASH, 8, "retired"), ("voyage-3.5", 8, "active")]
        assert conn.execute("SELECT id, embedding_model, embedding::text FROM embeddings"
                            " ORDER BY id").fetchall() == before
        # and one active model at most
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("UPDATE embedding_models SET state = 'active'")


def test_the_embedder_role_reads_the_registry_and_may_only_record_a_model(
        db, function_urls):
    db.execute("INSERT INTO embedding_models (model, dimensions, state) VALUES"
               " ('m', 4, 'active')")
    with psycopg.connect(function_urls["embedder"], autocommit=True) as embedder:
        assert embedder.execute("SELECT model FROM embedding_models").fetchall() == [("m",)]
        embedder.execute("INSERT INTO embedding_models (model, dimensions, state)"
                         " VALUES ('n', 4, 'retired')")
        for statement in ("UPDATE embedding_models SET state = 'retired'",
                          "DELETE FROM embedding_models"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                embedder.execute(statement)
    with psycopg.connect(function_urls["analyzer"], autocommit=True) as analyzer, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyzer.execute("SELECT model FROM embedding_models")


def test_the_first_embedding_records_the_configured_model_as_active(pipeline, db):
    results = pipeline.run_to_end("user1/a.jpg", images.photo(640, 480))
    assert results["embedder"].ok, results
    assert db.execute("SELECT model, dimensions, state FROM embedding_models").fetchall() == [
        (E5, 384, "active")]


def test_a_new_analysis_is_embedded_with_the_active_and_every_filling_model(pipeline, db):
    # GIVEN local-hash-v1 active (reembed activated it) and e5 being filled
    db.execute("INSERT INTO embedding_models (model, dimensions, state) VALUES"
               " (%s, 1024, 'active'), (%s, 384, 'filling')", (HASH, E5))
    # WHEN an upload goes through
    results = pipeline.run_to_end("user1/b.jpg", images.photo(640, 480))
    # THEN it has a vector of each
    assert results["embedder"].ok, results
    assert db.execute("SELECT embedding_model, embedding_dimensions FROM embeddings"
                      " ORDER BY 1").fetchall() == [(HASH, 1024), (E5, 384)]
    assert set(results["embedder"].result["models"]) == {E5, HASH}


def _analysis_event(db: Any, model: str) -> dict[str, Any]:
    from collections_ops.pipeline import ANALYSIS_COMPLETE

    item_id, user_id, analysis_id = db.execute(
        "SELECT item_id, user_id, id FROM analyses").fetchone()
    return {"version": "0", "id": str(uuid.uuid4()), "source": ANALYSIS_COMPLETE.source,
            "detail-type": ANALYSIS_COMPLETE.detail_type, "account": "000000000000",
            "region": "us-east-1", "time": "2026-12-07T00:00:00Z", "resources": [],
            "detail": {"item_id": item_id, "user_id": user_id, "analysis_id": analysis_id,
                       "embedding_model": model}}


def test_an_event_naming_a_model_is_embedded_with_that_model_only(pipeline, db):
    pipeline.run_to_end("user1/c.jpg", images.photo(640, 480))  # e5, active
    db.execute("INSERT INTO embedding_models (model, dimensions, state) VALUES"
               " (%s, 1024, 'filling')", (HASH,))
    db.execute("DELETE FROM embeddings")

    done = pipeline.invoke("embedder", _analysis_event(db, HASH))
    assert done.ok, done
    assert db.execute("SELECT embedding_model FROM embeddings").fetchall() == [(HASH,)]

    refused = pipeline.invoke("embedder", _analysis_event(db, "voyage-3-large"))
    assert refused.result["status"] == "failed"  # terminal: refused, never retried
    assert "neither the active model" in refused.result["reason"]
    assert db.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 1


def test_search_embeds_its_query_with_the_active_model(db):
    from collections_ops.services import search
    from collections_ops.services.dataroute import DirectRoute

    route = DirectRoute(db)
    assert search.search_model(route, configured_model=E5, configured_provider="local") == (
        E5, "local")
    db.execute("INSERT INTO embedding_models (model, dimensions, state) VALUES"
               " (%s, 1024, 'active'), (%s, 384, 'retired')", (HASH, E5))
    assert search.search_model(route, configured_model=E5, configured_provider="local") == (
        HASH, "local")
    assert search.search_model(route, configured_model="voyage-3.5",
                               configured_provider="voyage") == (HASH, "local")
