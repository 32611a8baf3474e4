"""`collections db …`: the PostgreSQL schema, reached directly or through the operations
function inside the database's VPC (the route is chosen by itself and named in the output).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer

from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(help="The PostgreSQL schema.", no_args_is_help=True, rich_markup_mode=None)


@app.command("migrate")
def db_migrate(env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
               profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Apply pending schema migrations (idempotent, under an advisory lock)."""
    _, route, applied = _through_route(env, profile, region, lambda r: r.migrate())
    if _printed_json(output, {"applied": applied}, route):
        return
    ui.ok((f"applied {', '.join(applied)}" if applied else "schema is up to date")
          + f" (via {route.description})")


@app.command("status")
def db_status(env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
              profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Applied and pending migrations, row counts and index sizes."""
    ctx, route, status = _through_route(env, profile, region, lambda r: r.status())
    if _printed_json(output, status, route):
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


T = TypeVar("T")


def _through_route(env: str | None, profile: str | None, region: str | None,
                   call: Callable[[Any], T]) -> tuple[Any, Any, T]:
    """The context, the data route it chose, and what `call(route)` answered."""
    ctx = opt.context(env, profile, region)
    route = ctx.data_route
    return ctx, route, call(route)


def _printed_json(output: opt.Output, result: dict[str, Any], route: Any) -> bool:
    """With `-o json`: print `result` with the route that answered, and say so."""
    if output is not opt.Output.json:
        return False
    ui.print_json({**result, "route": route.kind, "via": route.description})
    return True


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
