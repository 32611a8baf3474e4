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
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

# The pipeline's functions that connect to the database, by their key in the definition.
FUNCTION_KEYS = ("processor", "analyzer", "embedder")
MAX_NAME_CHARS = 63  # PostgreSQL's identifier limit (NAMEDATALEN - 1, in bytes)
PASSWORD_BYTES = 32  # token_urlsafe: 43 characters that need no quoting in a URL


def secret_name(function_key: str) -> str:
    """The secret (SSM parameter name in the environment's scope) holding the function's URL."""
    return f"DATABASE_URL_{function_key.upper()}"


def role_name(database: str, function_key: str) -> str:
    """The role migration 0005 creates for `function_key` in `database`: the database's name
    and `_<key>`, the name shortened (never the suffix) to PostgreSQL's identifier limit, so
    each function's role stays its own (the migration's `left(current_database(), ...)`
    counts characters, as this does; database names are ASCII in practice)."""
    suffix = f"_{function_key}"
    return database[:MAX_NAME_CHARS - len(suffix)] + suffix


def new_password() -> str:
    return _random.token_urlsafe(PASSWORD_BYTES)


def role_url(owner_url: str, role: str, password: str) -> str:
    """The owner's URL (host, port, database, sslmode...) with the role's user and password."""
    parts = urlsplit(owner_url)
    host = parts.netloc.rpartition("@")[2]
    userinfo = f"{quote(role, safe='')}:{quote(password, safe='')}"
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, parts.query,
                       parts.fragment))


def url_user(url: str | None) -> str | None:
    user = urlsplit(url).username if url else None
    return unquote(user) if user else None


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


def publish(conn: Any, owner_url: str, parameters: Mapping[str, str], *,
            read: Callable[[str], str | None], write: Callable[[str, str], None],
            passwords: Mapping[str, str] | None = None) -> list[str]:
    """Give each function's role (function key -> its URL's parameter) a password and write
    the function's URL where it changed; return the keys written. The password is the one
    `passwords` names (generated secrets: database mode `rds`), else the one the parameter
    already holds for that role, else a new one. Every role's password is set on every call,
    so a role and its URL cannot drift apart, under the migrations' advisory lock held until
    the passwords are committed: two concurrent runs take turns, and the second finds the
    first's URLs and keeps them."""
    from collections_core import migrate

    database = str(conn.info.dbname)
    written: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (migrate.LOCK_ID,))
        for key, name in parameters.items():
            role = role_name(database, key)
            current = read(name)
            password = (passwords or {}).get(key)
            if password is None:
                kept = url_password(current) if current else None
                password = kept if kept and url_user(current) == role else new_password()
            set_password(conn, role, password)
            url = role_url(owner_url, role, password)
            if url != current:
                write(name, url)
                written.append(key)
    return written
