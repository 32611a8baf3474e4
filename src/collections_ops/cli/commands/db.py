"""`collections db …`: the PostgreSQL schema, reached directly or through the operations
function inside the database's VPC (the route is chosen by itself and named in the output).
"""

from __future__ import annotations

import typer

from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(help="The PostgreSQL schema.", no_args_is_help=True, rich_markup_mode=None)


@app.command("migrate")
def db_migrate(env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
               profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Apply pending schema migrations (idempotent, under an advisory lock)."""
    ctx = opt.context(env, profile, region)
    route = ctx.data_route
    applied = route.migrate()
    if output is opt.Output.json:
        ui.print_json({"applied": applied, "route": route.kind, "via": route.description})
        return
    ui.ok((f"applied {', '.join(applied)}" if applied else "schema is up to date")
          + f" (via {route.description})")


@app.command("status")
def db_status(env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
              profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Applied and pending migrations, row counts and index sizes."""
    ctx = opt.context(env, profile, region)
    route = ctx.data_route
    status = route.status()
    if output is opt.Output.json:
        ui.print_json({**status, "route": route.kind, "via": route.description})
        return
    ui.info(f"route: {route.description}")
    database = status.get("database") or {}
    ui.table(f"schema ({ctx.env.name}): PostgreSQL {database.get('server_version') or '?'}, "
             f"vector {database.get('vector') or 'not installed'}",
             ["migration", "state", "applied at"],
             [[a["version"], "applied", a["applied_at"]] for a in status.get("applied", [])]
             + [[v, ui.Styled("pending", "yellow"), ""] for v in status.get("pending", [])])
    ui.table(None, ["table", "rows"],
             [[t, "missing" if n is None else n] for t, n in status.get("tables", {}).items()])
    ui.table(None, ["index", "size"],
             [[i, _size(b)] for i, b in status.get("indexes", {}).items()])


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
