"""Applying the schema (`collections db migrate`)."""

from __future__ import annotations

from typing import Any

from collections_ops import paths


def migrate(conn: Any) -> list[str]:
    paths.add_shared_to_path()
    from collections_core import migrate as migrations

    autocommit = conn.autocommit
    conn.autocommit = False
    try:
        return list(migrations.apply(conn))
    finally:
        conn.autocommit = autocommit
