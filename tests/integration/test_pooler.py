"""Connections that work through any pooler: no startup `options` (RDS Proxy refuses it:
"feature not supported"), nothing set on the session (a session `SET` pins the client to one
backend), the statement timeout set inside each transaction instead. Against the real
PostgreSQL with pgvector and moto.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from collections_ops import pipeline as definition
from collections_ops.localcloud import lambda_runtime
from tests import images

LOCAL = definition.environment("local")
TIMEOUT_MS = 300  # the statement timeout these tests set, far below the 15 s of production


@contextlib.contextmanager
def items_locked(url: str) -> Iterator[None]:
    """Another session holds the items table so that every statement on it waits: a statement
    that never ends unless its timeout cancels it."""
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        yield
        holder.rollback()


def _startup_options(conn: Any) -> str | None:
    return conn.info.get_parameters().get("options")


# ------------------------------------------------------------------ the statement timeout


def test_a_handlers_statement_over_the_timeout_is_cancelled_and_retried_later(
        pipeline: Any, db: Any, migrated_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections_core import db as core_db

    monkeypatch.setattr(core_db, "STATEMENT_TIMEOUT_MS", TIMEOUT_MS)
    pipeline.upload("user123/held.jpg", images.photo())
    [event] = pipeline.s3_events()

    # WHEN the processor's first statement waits on a lock another session holds
    started = time.monotonic()
    with items_locked(migrated_db):
        result = pipeline.invoke("processor", event)
    waited = time.monotonic() - started

    # THEN the server cancels it at the transaction's timeout: retryable, nothing dead-lettered
    assert not result.ok and result.error_type == "RetryableError", result
    assert result.error_message.startswith("database statement timed out: "), result
    assert waited < 10, f"cancelled at {TIMEOUT_MS} ms, not at the 15 s default ({waited:.1f} s)"
    assert pipeline.receive("processor", dlq=True, wait=0) == []
    # AND the connection carries no startup option and nothing on its session
    conn = core_db.connection()
    assert _startup_options(conn) in (None, "")
    assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    conn.rollback()
    # AND the next delivery, with the lock gone, stores the item
    assert pipeline.invoke("processor", event).ok
    assert db.execute("SELECT count(*) FROM items WHERE id = 'held'").fetchone() == (1,)


def test_an_operations_query_over_the_timeout_is_cancelled_and_retryable(
        pipeline: Any, migrated_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections_core import state

    lambda_runtime.load_handler(definition.OPERATIONS)
    import queries  # the operations function's module, as its handler imported it

    monkeypatch.setattr(queries, "QUERY_TIMEOUT_MS", TIMEOUT_MS)
    state.reset()
    started = time.monotonic()
    with items_locked(migrated_db):
        result = lambda_runtime.invoke(definition.OPERATIONS, LOCAL, {"action": "status"})
    waited = time.monotonic() - started

    assert result.ok, result.error_message
    answer = result.result
    assert answer["ok"] is False and answer["kind"] == "unreachable", answer
    assert answer["error"].startswith("database statement timed out: "), answer
    assert waited < 10, f"cancelled at {TIMEOUT_MS} ms, not at the 15 s default ({waited:.1f} s)"
    state.reset()
    again = lambda_runtime.invoke(definition.OPERATIONS, LOCAL, {"action": "status"})
    assert again.result["ok"] is True, again.result
