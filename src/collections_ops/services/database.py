"""Applying the schema (`collections db migrate`), and -- on a direct route to an AWS
environment's database -- publishing each pipeline function's own credentials as the
operations function's migrate does."""

from __future__ import annotations

from typing import Any

from collections_ops import aws
from collections_ops.errors import DatabaseError
from collections_ops.pipeline import FUNCTIONS, Environment


def migrate(conn: Any) -> list[str]:
    from collections_core import migrate as migrations

    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        return list(migrations.apply(conn))
    except migrations.IndexBuildInProgress as exc:
        raise DatabaseError(str(exc), hint="the migrations before it are applied; run "
                            "`collections db migrate` again in a few minutes") from None
    finally:
        conn.autocommit = autocommit


def publish_function_urls(conn: Any, ssm: Any, env: Environment, owner_url: str) -> list[str]:
    """Give each pipeline function's role its password and write the function's URL to its
    parameter in the environment's scope (collections_core.roles.publish: a password the
    parameter holds for the role is kept); returns the function keys written."""
    from collections_core import roles

    parameters = {fn.key: env.parameter_name(fn.database_url_name) for fn in FUNCTIONS}

    def read(name: str) -> str | None:
        found = aws.or_none(lambda: ssm.get_parameter(Name=name, WithDecryption=True))
        return None if found is None else str(found["Parameter"]["Value"])

    def write(name: str, url: str) -> None:
        ssm.put_parameter(Name=name, Value=url, Type="SecureString", Overwrite=True,
                          Description="A pipeline function's own database role")

    autocommit = conn.autocommit
    conn.autocommit = True  # roles.publish opens its own transaction
    try:
        return roles.publish(conn, owner_url, parameters, read=read, write=write)
    finally:
        conn.autocommit = autocommit
