"""The database's login roles, one per pipeline function: who each function is to PostgreSQL.

Migration 0005 creates them and grants each only what its handler's statements need; the owner
(the `DATABASE_URL` user) keeps the schema and runs the migrations, and no function connects as
it. A role is named after the database it serves (`<database>_<function>`, `collections_processor`
in the database mode `rds`): roles are the server's, grants the database's, so two environments'
databases on one server never share a role or overwrite each other's password.

Passwords never appear in a migration. Whoever holds the owner's connection sets them
(`set_password`, which sends PostgreSQL a SCRAM verifier computed here, never the password) and
publishes each function's URL -- the owner's URL with the role's user and password -- in its
own SSM parameter, `DATABASE_URL_<FUNCTION>` in the environment's scope: the operations function
on every deploy, the local cloud at start. A function reads only its own parameter.
"""

from __future__ import annotations

import secrets as _random
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

# The pipeline's functions that connect to the database, by their key in the definition.
FUNCTION_KEYS = ("processor", "analyzer", "embedder")
MAX_NAME_BYTES = 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1)
PASSWORD_BYTES = 32  # token_urlsafe: 43 characters that need no quoting in a URL


def secret_name(function_key: str) -> str:
    """The secret (SSM parameter name in the environment's scope) holding the function's URL."""
    return f"DATABASE_URL_{function_key.upper()}"


def role_name(database: str, function_key: str) -> str:
    """The role migration 0005 creates for `function_key` in `database` (its expression is
    `current_database() || '_' || <key>`, cut to PostgreSQL's identifier limit as the server
    cuts it)."""
    name = f"{database}_{function_key}".encode()[:MAX_NAME_BYTES]
    return name.decode(errors="ignore")


def new_password() -> str:
    return _random.token_urlsafe(PASSWORD_BYTES)


def role_url(owner_url: str, role: str, password: str) -> str:
    """The owner's URL (host, port, database, sslmode...) with the role's user and password."""
    parts = urlsplit(owner_url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(role, safe='')}:{quote(password, safe='')}"
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query,
                       parts.fragment))


def url_password(url: str) -> str | None:
    password = urlsplit(url).password
    return unquote(password) if password else None


def set_password(conn: Any, role: str, password: str) -> None:
    """Give `role` this password. The statement carries its SCRAM-SHA-256 verifier (libpq's
    PQencryptPasswordConn), so the password itself is never in a statement a server log or
    pg_stat_activity could show."""
    from psycopg import sql

    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(),
                                            b"scram-sha-256").decode()
    conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role),
                                                            sql.Literal(verifier)))


def role_exists(conn: Any, role: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    return row is not None


def function_urls(conn: Any, owner_url: str, passwords: dict[str, str]) -> dict[str, str]:
    """Set each function's role password (function key -> password) and return each
    function's URL (function key -> URL). The roles must exist (the migrations ran)."""
    database = str(conn.info.dbname)
    urls: dict[str, str] = {}
    for key, password in passwords.items():
        role = role_name(database, key)
        set_password(conn, role, password)
        urls[key] = role_url(owner_url, role, password)
    if not conn.autocommit:
        conn.commit()
    return urls
