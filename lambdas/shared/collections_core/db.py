"""PostgreSQL access: one connection per container, reused across warm invocations.

Every write happens inside one transaction (`transaction()`), so an invocation either stores all
its rows or none. Connection-level failures become `RetryableError`: the event is retried later
rather than lost. Every statement is parameterized.

Statements are never prepared on the server (`prepare_threshold=None`). Behind RDS Proxy a
prepared statement pins the client to one database connection for its lifetime, which undoes
the pooling the proxy is for; the pipeline's statements are few and small, so planning them
each time costs microseconds. The same setting serves a direct connection, so there is one
code path for both.

For the same reason nothing is set on the session. RDS Proxy refuses the startup parameter
`options` ("feature not supported"), and a session-level `SET` pins the client to its backend
(https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/rds-proxy-pinning.html). The statement
timeout is the first statement of every transaction instead: `SET LOCAL`, written as
`set_config(..., true)` so that its value is a bound parameter. It ends with the transaction,
which is where a pooler in transaction mode (RDS Proxy, PgBouncer) may hand the backend to
another client. tests/integration/test_pooler.py runs the handlers through PgBouncer in
transaction mode, which refuses `options` as RDS Proxy does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from collections_core import log, roles, secrets, state
from collections_core.errors import ConfigurationError, RetryableError, TerminalError

CONNECT_TIMEOUT_SECONDS = 5
STATEMENT_TIMEOUT_MS = 15_000
# SET LOCAL in its function form (set_config's third argument, is_local): the same
# transaction-scoped setting, with the value a bound parameter as every value here is.
SET_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, true)"


OWNER_URL_NAME = "DATABASE_URL"


def connect_as(function_key: str) -> None:
    """This container runs `function_key`'s code: its connection is made with that function's
    own credentials (collections_core/roles.py), never the owner's. Called by runtime.invoke
    on every invocation; a cached connection made with other credentials (the local cloud and
    the tests run several functions on one thread) is replaced on its next use."""
    state.forget("db_secret")
    state.cached("db_secret", lambda: roles.secret_name(function_key))


def secret_name() -> str:
    """The secret this container connects with: its function's own (the owner's only for code
    that is no function's, as the operator's tools and tests are)."""
    return str(state.peek("db_secret") or OWNER_URL_NAME)


def database_url() -> str:
    url = secrets.get(secret_name())
    assert url is not None
    log.register_secret(url)  # the URL, and its password in every form a parser may quote it
    return url


def _connect() -> Any:
    import psycopg
    from pgvector.psycopg import register_vector

    url = database_url()
    state.forget("db_made_with")
    state.cached("db_made_with", secret_name)
    try:
        conn = psycopg.connect(
            url,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            autocommit=False,
            application_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "collections")[:60],
            prepare_threshold=None,
        )
    except psycopg.OperationalError as exc:
        raise RetryableError(f"database unreachable: {_first_line(exc)}",
                             hint="check the database is running and reachable") from None
    except psycopg.ProgrammingError as exc:
        # libpq could not parse the connection string: no retry can fix that, an operator can.
        raise ConfigurationError(f"{secret_name()} is not a valid connection URL: "
                                 f"{_first_line(exc)}",
                                 hint="percent-encode reserved characters in the password, "
                                      f"then: collections secrets put {secret_name()}") from None
    try:
        register_vector(conn)
        conn.commit()
    except psycopg.ProgrammingError:
        conn.close()
        raise TerminalError("the database has no `vector` extension",
                            hint="run: collections db migrate") from None
    return conn


def _first_line(exc: BaseException) -> str:
    text = log.mask(str(exc)).strip().splitlines()
    return text[0] if text else type(exc).__name__


def connection() -> Any:
    """The container's connection. On its first use in an invocation a cached connection is
    checked with a round trip: one that died while the container was idle (a database restart
    or failover) is replaced, instead of failing the invocation."""
    import psycopg

    conn = state.cached("db", _connect)
    if state.peek("db_made_with") not in (None, secret_name()):
        state.forget("db")
        with contextlib.suppress(Exception):
            conn.close()
        conn = state.cached("db", _connect)
    elif conn.closed or conn.broken:
        state.forget("db")
        conn = state.cached("db", _connect)
    elif not state.cached("db_checked", lambda: False):
        try:
            conn.execute("SELECT 1")
            conn.rollback()
        except psycopg.OperationalError:
            state.forget("db")
            with contextlib.suppress(Exception):
                conn.close()
            conn = state.cached("db", _connect)
    state.forget("db_checked")
    state.cached("db_checked", lambda: True)
    return conn


@contextmanager
def transaction() -> Iterator[Any]:
    """Yield a cursor inside a transaction whose statements are cancelled after
    STATEMENT_TIMEOUT_MS; commit on success, roll back on any error. Nested, it is a savepoint
    of the enclosing transaction (whose timeout it sets again)."""
    import psycopg

    conn = connection()
    try:
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(SET_STATEMENT_TIMEOUT, (f"{STATEMENT_TIMEOUT_MS}ms",))
            yield cur
    except psycopg.errors.QueryCanceled as exc:
        # An OperationalError too, but the connection is fine: it is kept for the next event.
        raise RetryableError(f"database statement timed out: {_first_line(exc)}") from None
    except psycopg.OperationalError as exc:
        state.forget("db")
        with contextlib.suppress(Exception):  # the connection is already gone
            conn.close()
        raise RetryableError(f"database error: {_first_line(exc)}") from None
