"""The database failing under the handlers, against moto and a real PostgreSQL: a connection
killed between invocations or in the middle of a transaction, and a server with no connection
slot left. Each is retryable, writes nothing, and the next delivery succeeds. Plus: every SQL
statement the code sends is parameterized.

The database being down when an invocation starts is
tests/integration/test_handlers.py::test_a_database_outage_is_retryable.
"""

from __future__ import annotations

import ast
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests import images

ROOT = Path(__file__).resolve().parents[2]
TABLES = (("items", "id"), ("analyses", "item_id"), ("embeddings", "item_id"))
SLOTS_FULL = ("too many clients", "connection slots are reserved")


def counts(db: Any, user_id: str, item_id: str) -> tuple[int, ...]:
    return tuple(
        db.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s AND {col} = %s",
                   (user_id, item_id)).fetchone()[0]
        for table, col in TABLES)


def terminate(url: str, pid: int) -> None:
    """Kill backend `pid` from another connection, as a failover or an operator would."""
    with psycopg.connect(url, autocommit=True) as admin:
        # The second argument waits (ms) until the backend is really gone.
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (
            True,)


def handler_backend_pid() -> int:
    """The backend of the connection the handlers cached for this thread (one "container")."""
    from collections_core import db as core_db

    return int(core_db.connection().info.backend_pid)


def one_event(pipeline: Any, key: str) -> dict[str, Any]:
    pipeline.upload(key, images.photo(seed=len(key)))
    [event] = pipeline.s3_events()
    return event


# --------------------------------------------------------------------------- connection lost


def test_a_connection_killed_between_invocations_is_replaced_before_use(
        pipeline, db, migrated_db):
    """A warm container's connection that died while idle (a restart, a failover) is found by
    the once-per-invocation check and replaced: the invocation succeeds on a new one."""
    assert pipeline.invoke("processor", one_event(pipeline, "user123/first.jpg")).ok
    old_pid = handler_backend_pid()
    terminate(migrated_db, old_pid)

    event = one_event(pipeline, "user123/second.jpg")
    result = pipeline.invoke("processor", event)

    assert result.ok and result.result["results"][0]["status"] == "processed"
    assert handler_backend_pid() != old_pid
    assert counts(db, "user123", "second") == (1, 0, 0)
    assert pipeline.receive("processor", dlq=True, wait=0) == []


def test_a_warm_container_prepares_no_statement_so_rds_proxy_never_pins_it(
        pipeline, migrated_db):
    """psycopg prepares a statement once it has run 5 times on a connection; behind RDS Proxy
    that pins the client to one database connection. Eight uploads through one warm container
    run each of the processor's statements eight times and leave nothing prepared."""
    for n in range(8):
        assert pipeline.invoke("processor", one_event(pipeline, f"user123/warm-{n}.jpg")).ok
    from collections_core import db as core_db

    conn = core_db.connection()
    assert conn.prepare_threshold is None
    assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)
    conn.rollback()


class _KillAfterWrite:
    """A cursor that, right after the stage's INSERT ... ON CONFLICT has run and before its
    transaction commits, has the server terminate its connection."""

    def __init__(self, cur: Any, url: str, fired: list[bool]) -> None:
        self._cur, self._url, self._fired = cur, url, fired

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        out = self._cur.execute(query, params, **kwargs)
        if "INSERT INTO" in str(query) and not self._fired:
            self._fired.append(True)
            terminate(self._url, self._cur.connection.info.backend_pid)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cur, name)


@pytest.mark.parametrize("stage", ["processor", "analyzer", "embedder"])
def test_a_connection_lost_mid_transaction_writes_nothing_and_the_retry_completes(
        pipeline, db, migrated_db, monkeypatch, stage):
    from collections_core import db as core_db

    real_transaction = core_db.transaction
    fired: list[bool] = []
    armed = {"on": False}

    @contextmanager
    def transaction() -> Iterator[Any]:
        with real_transaction() as cur:
            yield _KillAfterWrite(cur, migrated_db, fired) if armed["on"] else cur

    monkeypatch.setattr(core_db, "transaction", transaction)
    pending = [one_event(pipeline, "user123/midway.jpg")]
    for step, queue in (("processor", None), ("analyzer", "analyzer"),
                        ("embedder", "embedder")):
        events = pending if queue is None else pipeline.receive(queue)
        assert len(events) == 1, f"{step} should have exactly one event"
        if step != stage:
            assert pipeline.invoke(step, events[0]).ok
            continue
        armed["on"] = True
        result = pipeline.invoke(step, events[0])
        armed["on"] = False
        assert fired, "the connection was killed inside the write's transaction"
        assert not result.ok and result.error_type == "RetryableError", result
        assert result.error_message.startswith("database error: ")
        stored = counts(db, "user123", "midway")
        written = ("processor", "analyzer", "embedder").index(stage)
        assert stored == tuple(1 if i < written else 0 for i in range(3)), (
            f"the {stage}'s rolled-back write left a row: {stored}")
        downstream = {"processor": "analyzer", "analyzer": "embedder"}.get(stage)
        if downstream:
            assert pipeline.receive(downstream, wait=0) == [], "nothing announced"
        assert pipeline.receive(stage, dlq=True, wait=0) == []
        retried = pipeline.invoke(step, events[0])  # the redelivery, on a new connection
        assert retried.ok, retried
    assert counts(db, "user123", "midway") == (1, 1, 1)


# --------------------------------------------------------------------------- no slot left


@contextmanager
def every_connection_slot_taken(url: str, *, leave_free: int = 0) -> Iterator[list[Any]]:
    """Open connections until the server refuses one, then give back `leave_free` of them.
    Everything opened here is closed on the way out, whatever happens."""
    hogs: list[Any] = []
    refusal = ""
    try:
        while not refusal:
            try:
                hogs.append(psycopg.connect(url, autocommit=True, connect_timeout=5))
            except psycopg.OperationalError as exc:
                refusal = str(exc)
            assert len(hogs) < 2000, "the server accepts connections without end"
        assert any(s in refusal for s in SLOTS_FULL), refusal
        for _ in range(leave_free):
            hogs.pop().close()
        yield hogs
    finally:
        for conn in hogs:
            with contextlib.suppress(Exception):
                conn.close()


def test_no_connection_slot_left_is_retryable_and_says_so(pipeline, db, migrated_db):
    event = one_event(pipeline, "user123/crowded.jpg")
    with every_connection_slot_taken(migrated_db):
        result = pipeline.invoke("processor", event)
    assert not result.ok and result.error_type == "RetryableError"
    assert result.error_message.startswith("database unreachable: ")
    assert any(s in result.error_message for s in SLOTS_FULL), result.error_message
    assert counts(db, "user123", "crowded") == (0, 0, 0)
    assert pipeline.receive("analyzer", wait=0) == []
    assert pipeline.receive("processor", dlq=True, wait=0) == []

    assert pipeline.invoke("processor", event).ok  # the retry, once slots are free
    assert counts(db, "user123", "crowded") == (1, 0, 0)


def test_concurrent_invocations_that_exhaust_the_connections_lose_and_duplicate_nothing(
        pipeline, db, migrated_db):
    n = 8
    events = [one_event(pipeline, f"user123/burst{i}.jpg") for i in range(n)]
    results: dict[int, Any] = {}

    def run(i: int) -> None:  # each thread is a container with its own connection
        results[i] = pipeline.invoke("processor", events[i])

    with every_connection_slot_taken(migrated_db, leave_free=2):
        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    failed = [i for i, r in results.items() if not r.ok]
    assert len(results) == n and failed, "some invocations found no slot"
    for i in failed:
        assert results[i].error_type == "RetryableError"
        assert any(s in results[i].error_message for s in SLOTS_FULL)
        assert counts(db, "user123", f"burst{i}") == (0, 0, 0)
    assert pipeline.receive("processor", dlq=True, wait=0) == []
    for i in failed:  # Lambda's retries, once the burst is over
        assert pipeline.invoke("processor", events[i]).ok
    for i in range(n):
        assert counts(db, "user123", f"burst{i}") == (1, 0, 0)
    assert len(pipeline.receive("analyzer")) == n  # each item announced exactly once


# --------------------------------------------------------------------------- parameterized SQL


def _sql_sources() -> list[Path]:
    return sorted(p for folder in (ROOT / "lambdas", ROOT / "src")
                  for p in folder.rglob("*.py") if ".venv" not in p.parts)


def _built_sql(node: ast.expr) -> bool:
    """True if the SQL text is assembled at run time from values (f-string, +, %, format).
    psycopg's composition of a constant with quoted identifiers and literals only
    (`sql.SQL("...").format(sql.Identifier(name), sql.Literal(value))`) is not: neither can
    carry SQL (a statement that takes no bound parameters, ALTER ROLE ... PASSWORD, needs a
    literal)."""
    if isinstance(node, ast.JoinedStr | ast.BinOp):
        return True
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "format" and not _identifiers_only(node))


def _named_call(node: ast.expr, name: str) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == name)


def _identifiers_only(call: ast.Call) -> bool:
    receiver = call.func.value if isinstance(call.func, ast.Attribute) else None
    return (receiver is not None and _named_call(receiver, "SQL")
            and isinstance(receiver, ast.Call) and len(receiver.args) == 1
            and isinstance(receiver.args[0], ast.Constant)
            and all(_named_call(arg, "Identifier") or _named_call(arg, "Literal")
                    for arg in [*call.args, *(k.value for k in call.keywords)]))


def test_the_scan_tells_composed_identifiers_from_text_built_from_values():
    def built(src: str) -> bool:
        return _built_sql(ast.parse(src, mode="eval").body)

    assert not built('sql.SQL("DROP INDEX {n}").format(sql.Identifier(x))')
    assert not built('sql.SQL("CREATE INDEX {n} ... {d}").format(n=sql.Identifier(x),'
                     ' d=sql.Literal(3))')
    assert built('sql.SQL("DROP INDEX {n}").format(n=x)')
    assert built('sql.SQL("DROP INDEX {}").format(x)')
    assert built('"SELECT " + x')
    assert built('f"SELECT {x}"')
    assert built('"SELECT {}".format(x)')


def test_no_sql_text_is_built_from_values_in_the_functions_or_the_cli():
    offenders, calls = [], 0
    for path in _sql_sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("execute", "executemany") and node.args):
                calls += 1
                if _built_sql(node.args[0]):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert calls >= 15, "the scan found the code's execute() calls"
    assert offenders == []


def test_every_statement_a_hostile_upload_causes_carries_its_values_as_parameters(
        pipeline, db, monkeypatch):
    user, item = "o'brien\"; --", "x'); DELETE FROM items; --"
    sent: list[tuple[str, Any]] = []
    real_execute = psycopg.Cursor.execute

    def recording(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query.as_string(self) if hasattr(query, "as_string") else str(query)
        sent.append((text, params))
        return real_execute(self, query, params, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(psycopg.Cursor, "execute", recording)
        results = pipeline.run_to_end(f"{user}/{item}.jpg", images.photo())

    assert all(r.ok for r in results.values()), results
    assert counts(db, user, item) == (1, 1, 1)
    handler_sql = [(q, p) for q, p in sent if any(t in q for t, _ in TABLES)]
    assert len(handler_sql) >= 6  # lookups and upserts of all three stages
    assert {t for q, _ in handler_sql for t, _ in TABLES if f"INSERT INTO {t} " in q} == {
        "items", "analyses", "embeddings"}
    for query, params in handler_sql:
        for value in (user, item, "o'brien", "DELETE FROM"):
            assert value not in query, query
        assert params, f"a statement with no parameters: {query}"
    bound = [v for _, p in handler_sql
             for v in (p.values() if isinstance(p, dict) else p)]
    assert user in bound and item in bound
