"""How the operations function reaches the database as the schema's owner, migrates it, and
publishes each pipeline function's own database URL.

Its own, not shared: only this function holds the owner's credentials (the RDS-generated secret
or the `DATABASE_URL` parameter) and writes the functions' parameters. What it then answers --
the schema's status and the named read-only queries -- is collections_core.queries, which the
CLI's direct route runs too.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from collections_core import aws, log, queries, roles, secrets
from collections_core import migrate as migrations
from collections_core.errors import ConfigurationError, RetryableError, TerminalError

CONNECT_TIMEOUT_SECONDS = 10


def database_url() -> str:
    """The RDS-generated secret when the stack names one, else the DATABASE_URL parameter."""
    arn = os.environ.get("DATABASE_SECRET_ARN")
    if not arn:
        url = secrets.get("DATABASE_URL")
        assert url is not None
        return url
    try:
        value = aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    except Exception as exc:
        raise aws.classify(exc, "reading the database secret") from None
    try:
        secret = json.loads(value)
        user, password = str(secret["username"]), str(secret["password"])
        host = os.environ.get("DATABASE_HOST") or str(secret["host"])
        port, name = int(secret.get("port", 5432)), str(secret.get("dbname", "postgres"))
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError("the database secret is not an RDS credentials secret "
                                 "(username, password, host, port, dbname)") from None
    log.register_secret(password)
    # Percent-encoded, a host may also be a socket directory (libpq reads both).
    return (f"postgresql://{quote(user, safe='')}:{quote(password, safe='')}@"
            f"{quote(host, safe='')}:{port}/"
            f"{quote(name, safe='')}?sslmode=require")


def publish_database_url() -> bool:
    """Database mode `rds`: write the URL built from the RDS-generated secret to the
    `DATABASE_URL` parameter the pipeline's functions read (only when it differs).
    Returns whether it wrote."""
    name = os.environ.get("DATABASE_URL_PARAMETER")
    if not name or not os.environ.get("DATABASE_SECRET_ARN"):
        return False
    url = database_url()
    ssm = aws.client("ssm")
    if _parameter(ssm, name) == url:
        return False
    _put_parameter(ssm, name, url, "Written on deploy from the RDS-generated secret")
    return True


def publish_function_urls(conn: Any) -> list[str]:
    """Set each pipeline function's role password (migration 0005) and write the function's
    URL -- the owner's, as that role -- to its own parameter, DATABASE_URL_<FUNCTION>
    (collections_core.roles.publish); returns the function keys whose URL was written. In
    database mode `rds` each password is its role's generated secret (`DATABASE_ROLE_SECRETS`:
    RDS Proxy authenticates every user with a secret); in `existing` the one its parameter
    holds, or a new one on the first deploy."""
    ssm = aws.client("ssm")
    role_secrets = _role_secrets()
    database = str(conn.info.dbname)
    passwords = {key: _role_password(arn, roles.role_name(database, key))
                 for key, arn in role_secrets.items()}
    for password in passwords.values():
        log.register_secret(password)
    parameters = {key: secrets.parameter_name(roles.secret_name(key))
                  for key in roles.FUNCTION_KEYS}

    def write(name: str, url: str) -> None:
        log.register_secret(url)  # a new password, masked in whatever follows
        _put_parameter(ssm, name, url, "A pipeline function's own database role, written "
                                       "on deploy")

    return roles.publish(conn, database_url(), parameters,
                         read=lambda name: _parameter(ssm, name), write=write,
                         passwords=passwords)


def _role_secrets() -> dict[str, str]:
    raw = os.environ.get("DATABASE_ROLE_SECRETS")
    if not raw:
        return {}
    try:
        table = json.loads(raw)
        return {str(k): str(v) for k, v in table.items()}
    except (ValueError, AttributeError):
        raise ConfigurationError("DATABASE_ROLE_SECRETS is not a JSON object of secret ARNs",
                                 hint="the function's environment comes from the stack; "
                                      "redeploy") from None


def _role_password(arn: str, role: str) -> str:
    try:
        value = aws.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        secret = json.loads(value)
        username, password = str(secret["username"]), str(secret["password"])
    except (ValueError, KeyError, TypeError):
        raise ConfigurationError(f"the secret of role {role} is not a username and "
                                 "password") from None
    except Exception as exc:
        raise aws.classify(exc, f"reading the secret of role {role}") from None
    if username != role:
        raise ConfigurationError(f"the secret of role {role} names the user {username!r}")
    return password


def _parameter(ssm: Any, name: str) -> str | None:
    try:
        return str(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"])
    except Exception as exc:
        if aws.error_code(exc) != "ParameterNotFound":
            raise aws.classify(exc, f"reading {name}") from None
    return None


def _put_parameter(ssm: Any, name: str, value: str, description: str) -> None:
    try:
        ssm.put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True,
                          Description=description)
    except Exception as exc:
        raise aws.classify(exc, f"writing {name}") from None


@contextlib.contextmanager
def connect() -> Iterator[Any]:
    """A connection that sets nothing on its session: each query runs in
    collections_core.queries.read_only, a
    migration under migrate.apply's own timeouts. A statement over its timeout is retryable."""
    import psycopg

    url = database_url()
    password = _password(url)
    if password:
        log.register_secret(password)
    try:
        conn = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_SECONDS, autocommit=True,
                               application_name="collections-operations",
                               prepare_threshold=None)  # a prepared statement pins, too
    except psycopg.OperationalError as exc:
        raise RetryableError(f"database unreachable: {_first_line(exc)}") from None
    try:
        yield conn
    except psycopg.errors.QueryCanceled as exc:  # before OperationalError, its base class
        raise RetryableError(f"database statement timed out: {_first_line(exc)}",
                             hint="retry when the database is less busy") from None
    except psycopg.errors.LockNotAvailable as exc:  # likewise
        raise RetryableError(f"database lock not granted in time: {_first_line(exc)}",
                             hint="another session holds a lock on the tables; retry when "
                                  "it has finished") from None
    except psycopg.OperationalError as exc:
        raise RetryableError(f"database connection lost: {_first_line(exc)}") from None
    except psycopg.Error as exc:
        raise TerminalError(f"database error: {_first_line(exc)}") from None
    finally:
        with contextlib.suppress(Exception):
            conn.close()


def _password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    password = urlsplit(url).password
    return unquote(password) if password else None


def _first_line(exc: BaseException) -> str:
    lines = log.mask(str(exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def migrate(conn: Any) -> dict[str, Any]:
    """Apply pending migrations under collections_core's advisory lock, then publish each
    pipeline function's own credentials (`publish_function_urls`)."""
    try:
        applied = migrations.apply(conn)  # its own transactions, autocommit or not
    except migrations.IndexBuildInProgress as exc:
        raise RetryableError(str(exc), hint="run the migration again when the build has "
                             "finished") from None
    credentials = publish_function_urls(conn)
    with queries.read_only(conn) as cur:
        return {"applied": applied, "pending": migrations.pending_in(cur),
                "credentials_written": credentials}
