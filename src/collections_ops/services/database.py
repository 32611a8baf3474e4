"""Applying the schema (`collections db migrate`)."""

from __future__ import annotations

from typing import Any

from collections_ops import paths
from collections_ops.errors import DatabaseError


def migrate(conn: Any) -> list[str]:
    paths.add_shared_to_path()
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
