"""`collections db …`: the PostgreSQL schema.
"""

from __future__ import annotations

import typer

from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(help="The PostgreSQL schema.", no_args_is_help=True, rich_markup_mode=None)


@app.command("migrate")
def db_migrate(env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
               profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Apply pending schema migrations (idempotent)."""
    from collections_ops.services import database

    ctx = opt.context(env, profile, region)
    applied = database.migrate(ctx.db)
    if output is opt.Output.json:
        ui.print_json({"applied": applied})
    else:
        ui.ok(f"applied {', '.join(applied)}" if applied else "schema is up to date")
