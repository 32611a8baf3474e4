"""Output: one console for humans (rich, imported lazily) and plain JSON for machines."""

from __future__ import annotations

import json
import sys
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


@lru_cache(maxsize=1)
def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def ok(message: str) -> None:
    console().print(f"[green]✓[/green] {message}")


def info(message: str) -> None:
    err_console().print(message)


def error(message: str, hint: str | None) -> None:
    c = err_console()
    c.print(f"[bold red]error:[/bold red] {message}", markup=True, soft_wrap=True)
    if hint:
        c.print(f"[dim]hint:[/dim] {hint}", soft_wrap=True)


def table(title: str | None, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*[("" if v is None else str(v)) for v in row])
    console().print(t)


def mark(value: bool) -> str:
    return "[green]✓[/green]" if value else "[red]✗[/red]"
