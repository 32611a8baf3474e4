"""Least privilege in the database: each pipeline function connects as a role of its own
(migration 0005), which may do what its handler's statements do and nothing else. A real
PostgreSQL; the refusals are the server's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from collections_core import migrate, roles
from tests import images

ROLES_MIGRATION = "0005_function_roles"


@pytest.fixture
def connect_as(db: Any, function_urls: dict[str, str]) -> Iterator[Any]:
    opened: list[Any] = []

    def connect(function_key: str) -> Any:
        conn = psycopg.connect(function_urls[function_key], autocommit=True)
        opened.append(conn)
        return conn

    yield connect
    for conn in opened:
        conn.close()


def _seed(db: Any) -> int:
    """An item, its analysis and embedding, written by the owner; returns the analysis id."""
    db.execute("INSERT INTO items (id, user_id, bucket, original_key)"
               " VALUES ('photo', 'u1', 'b', 'u1/photo.jpg')")
    row = db.execute("INSERT INTO analyses (item_id, user_id, category, summary, provider,"
                     " model, raw) VALUES ('photo', 'u1', 'other', 's', 'local', 'm', '{}')"
                     " RETURNING id").fetchone()
    assert row is not None
    return int(row[0])


def _refused(conn: Any, statement: str, params: tuple[Any, ...] = ()) -> str:
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        conn.execute(statement, params)
    return str(refused.value)


def test_each_function_connects_as_its_own_role_not_the_owner(db, function_urls):
    owner = db.execute("SELECT current_user").fetchone()[0]
    database = db.info.dbname
    for key, url in function_urls.items():
        with psycopg.connect(url) as conn:
            user = conn.execute("SELECT current_user").fetchone()[0]
        assert user == roles.role_name(database, key) != owner


def test_the_processors_credentials_are_refused_an_update_of_analyses(db, connect_as):
    # GIVEN an item and its analysis
    _seed(db)
    processor = connect_as("processor")
    # WHEN the processor's credentials store an item as its handler does, it may
    processor.execute("INSERT INTO items (id, user_id, bucket, original_key, sequencer)"
                      " VALUES ('other', 'u1', 'b', 'u1/other.jpg', '01')"
                      " ON CONFLICT (user_id, id) DO UPDATE SET sequencer = EXCLUDED.sequencer,"
                      " updated_at = now() WHERE items.sequencer <= EXCLUDED.sequencer")
    # THEN an update of analyses is refused by the server, naming the table
    assert "analyses" in _refused(processor, "UPDATE analyses SET summary = 'forged'")
    # ... as is reading them, writing embeddings, or deleting an item
    _refused(processor, "SELECT summary FROM analyses")
    _refused(processor, "DELETE FROM items")
    # ... and changing what identifies an item (UPDATE is granted on the columns it changes)
    _refused(processor, "UPDATE items SET original_key = 'u1/elsewhere.jpg'")
    assert db.execute("SELECT summary FROM analyses").fetchone()[0] == "s"


def test_the_analyzers_credentials_are_refused_a_write_of_embeddings(db, connect_as):
    analysis_id = _seed(db)
    analyzer = connect_as("analyzer")
    # The analyzer reads items and writes analyses ...
    analyzer.execute("UPDATE analyses SET source_sequencer = '02' WHERE id = %s",
                     (analysis_id,))
    analyzer.execute("INSERT INTO analyses (item_id, user_id, category, summary, provider,"
                     " model, raw) VALUES ('photo', 'u1', 'x', 'y', 'local', 'm', '{}')"
                     " ON CONFLICT (user_id, item_id) DO UPDATE SET summary = EXCLUDED.summary,"
                     " updated_at = now()")
    # ... but may not write an embedding, nor change an item
    message = _refused(analyzer, "INSERT INTO embeddings (item_id, user_id, analysis_id,"
                                 " embedding_model, embedding_dimensions, embedding, content_hash)"
                                 " VALUES ('photo', 'u1', %s, 'm', 3, '[1,2,3]', 'h')",
                       (analysis_id,))
    assert "embeddings" in message
    _refused(analyzer, "UPDATE items SET status = 'forged'")
    _refused(analyzer, "DELETE FROM analyses")


def test_the_embedders_credentials_may_write_only_embeddings(db, connect_as):
    analysis_id = _seed(db)
    embedder = connect_as("embedder")
    row = embedder.execute(
        "INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
        " embedding_dimensions, embedding, content_hash) VALUES ('photo', 'u1', %s, 'm', 3,"
        " '[1,2,3]', 'h') RETURNING id", (analysis_id,)).fetchone()
    assert row is not None  # the identity column's sequence needs no grant of its own
    _refused(embedder, "UPDATE analyses SET summary = 'forged'")
    _refused(embedder, "INSERT INTO items (id, user_id, bucket, original_key)"
                       " VALUES ('x', 'u1', 'b', 'u1/x.jpg')")
    _refused(embedder, "SELECT * FROM schema_migrations")


def test_running_the_roles_migration_again_keeps_the_roles_and_their_exact_grants(db,
                                                                                  function_urls):
    # GIVEN the roles, one of which was given more than its share by hand
    role = roles.role_name(db.info.dbname, "processor")
    db.execute(f'GRANT DELETE ON analyses TO "{role}"')
    # WHEN migration 0005 runs again
    sql = dict(migrate.migrations())[ROLES_MIGRATION]
    db.execute(sql)
    # THEN the role is kept, with its password, and its grants are those the migration lists
    with psycopg.connect(function_urls["processor"]) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == role
    granted = db.execute(
        "SELECT table_name, privilege_type FROM information_schema.role_table_grants"
        " WHERE grantee = %s ORDER BY 1, 2", (role,)).fetchall()
    assert granted == [("items", "INSERT"), ("items", "SELECT")]
    columns = {r[0] for r in db.execute(
        "SELECT column_name FROM information_schema.column_privileges WHERE grantee = %s"
        " AND table_name = 'items' AND privilege_type = 'UPDATE'", (role,)).fetchall()}
    assert "sequencer" in columns and not columns & {"id", "user_id", "original_key"}


def test_a_role_password_is_set_as_a_scram_verifier_never_as_text(db):
    role = roles.role_name(db.info.dbname, "embedder")
    password = roles.new_password()
    roles.set_password(db, role, password)
    stored = db.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s",
                        (role,)).fetchone()[0]
    assert stored.startswith("SCRAM-SHA-256$") and password not in stored


def test_the_pipeline_runs_end_to_end_with_each_functions_own_credentials(pipeline, db):
    # The handlers connect with their own URLs (the pipeline fixture puts them), so every
    # statement they make is checked against their role's grants.
    results = pipeline.run_to_end("u1/roles.jpg", images.photo(seed=5))
    assert all(r.ok for r in results.values()), results
    counts = db.execute("SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM analyses),"
                        " (SELECT count(*) FROM embeddings)").fetchone()
    assert counts == (1, 1, 1)


def test_a_database_name_at_postgresqls_limit_names_its_roles_as_the_code_does(database_url):
    # GIVEN a database whose name leaves no room for the role's suffix (63 bytes)
    import uuid
    from urllib.parse import urlsplit

    name = f"long_{'x' * 50}{uuid.uuid4().hex[:8]}"
    assert len(name) == roles.MAX_NAME_CHARS
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = urlsplit(database_url)._replace(path=f"/{name}").geturl()
        # WHEN it is migrated
        with psycopg.connect(url) as conn:
            migrate.apply(conn)
            # THEN each role is where collections_core.roles says, and takes its password,
            urls = roles.function_urls(conn, url, {key: roles.new_password()
                                                   for key in roles.FUNCTION_KEYS})
        # ... each function's own (the name shortened, never the suffix)
        users = {key: urlsplit(u).username for key, u in urls.items()}
        assert users == {key: f"{name[:62 - len(key)]}_{key}" for key in roles.FUNCTION_KEYS}
        for key, role_url in urls.items():
            with psycopg.connect(role_url) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (users[key],)
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for key in roles.FUNCTION_KEYS:
                admin.execute(f'DROP ROLE IF EXISTS "{roles.role_name(name, key)}"')
