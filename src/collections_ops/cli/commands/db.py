"""`collections db …`: the PostgreSQL schema.
"""

from __future__ import annotations

import typer

from collections_ops.cli import ui
from collections_ops.cli.options import (
    EnvOption,
    Output,
    OutputOption,
    ProfileOption,
    RegionOption,
    context,
)

app = typer.Typer(help="The PostgreSQL schema.", no_args_is_help=True, rich_markup_mode=None)


@app.command("migrate")
def db_migrate(env: EnvOption = None, output: OutputOption = Output.table,
               profile: ProfileOption = None, region: RegionOption = None) -> None:
    """Apply pending schema migrations (idempotent)."""
    from collections_ops.services import database

    ctx = context(env, profile, region)
    applied = database.migrate(ctx.db)
    if output is Output.json:
        ui.print_json({"applied": applied})
    else:
        ui.ok(f"applied {', '.join(applied)}" if applied else "schema is up to date")
