"""Output: one console for humans (rich, imported lazily) and plain JSON for machines.

Two rules hold for everything printed here:
- Data never becomes markup or terminal control. Every string that came from a user or from
  AWS (object keys, item ids, analysis text, log messages, DLQ payloads) is passed as plain
  text — `table()` cells, `ok()`/`info()`/`error()` messages — and stripped of control
  characters and escape sequences (`clean`). Style is given separately (`Styled`, `style=`).
- Identity is never cut off. A table's identifying columns (the first, unless told) keep their
  full width; other columns fold. Off a terminal the console is as wide as the content needs
  (or `COLUMNS`), so `collections secrets list | grep NAME` finds the row.
- No column is dropped. A table too wide for the console even with every column folded to its
  header's width is printed as one block of `column value` lines per row instead: rich would
  squeeze the columns it cannot fit to nothing.
- Text shortened for a table says so (`cut`: a trailing `…`); JSON is never shortened.
"""

from __future__ import annotations

import json
import os
import re
import sys
from functools import lru_cache
from typing import Any, NamedTuple

# CSI/OSC escape sequences first (so their parameters go too), then any other C0/C1 control
# character except newline and tab.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)?|\x1b.?")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
UNBOUNDED_WIDTH = 10_000


class Styled(NamedTuple):
    """Text the program chose, with a style: the only way style reaches the console."""

    text: str
    style: str


def clean(value: Any) -> str:
    """`value` as text with no escape sequences or control characters (newline, tab kept)."""
    return _CONTROL.sub("", _ESCAPES.sub("", str(value)))


def safe(value: Any) -> str:
    """`value` cleaned and escaped, for the rare place that builds a rich markup string."""
    from rich.markup import escape

    return escape(clean(value))


def _width(stream: Any) -> int | None:
    if stream.isatty():
        return None  # rich measures the terminal
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else UNBOUNDED_WIDTH


def console() -> Any:
    return _console(_width(sys.stdout), stderr=False)


def err_console() -> Any:
    return _console(_width(sys.stderr), stderr=True)


@lru_cache(maxsize=8)
def _console(width: int | None, *, stderr: bool) -> Any:
    """One console per width: `COLUMNS` is read on every use, not once per process."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, width=width)


def cut(value: Any, limit: int) -> str:
    """`value` as clean text of at most `limit` characters, ending in `…` when shortened."""
    shown = clean("" if value is None else value)
    return shown if len(shown) <= limit else shown[:limit - 1].rstrip() + "…"


def text(value: Any, style: str = "") -> Any:
    """A rich Text of data (never parsed as markup), or of a `Styled` value."""
    from rich.text import Text

    if isinstance(value, Styled):
        return Text(clean(value.text), style=value.style)
    if isinstance(value, Text):
        return value
    return Text("" if value is None else clean(value), style=style)


class _Run:
    json_printed = False  # this run printed its JSON document (an error adds no second one)


run_state = _Run()


def print_json(data: Any) -> None:
    """The run's one JSON document."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()
    run_state.json_printed = True


def json_line(data: dict[str, Any]) -> None:
    """One JSON object on one line (JSON Lines, for --follow)."""
    sys.stdout.write(json.dumps(data, default=str) + "\n")
    sys.stdout.flush()


def ok(message: str) -> None:
    console().print(text("✓ ", "green") + text(message), soft_wrap=True)


def info(message: str, style: str = "") -> None:
    err_console().print(text(message, style), soft_wrap=True)


def line(message: Any) -> None:
    """One line of data on stdout."""
    console().print(text(message), soft_wrap=True)


def error(message: str, hint: str | None) -> None:
    c = err_console()
    c.print(text("error: ", "bold red") + text(message), soft_wrap=True)
    if hint:
        c.print(text("hint: ", "dim") + text(hint), soft_wrap=True)


def table(title: str | None, columns: list[str], rows: list[list[Any]], *,
          ids: tuple[int, ...] = (0,)) -> None:
    """A table of data. Columns in `ids` identify a row: they keep their full width."""
    from rich.table import Table

    cells = [[text(v) for v in row] for row in rows]
    widest = {i: max([len(col), *(c[i].cell_len for c in cells if i < len(c))])
              for i, col in enumerate(columns) if i in ids}
    # Identifying columns whole, every other one at least as wide as its header, " │ " between.
    needed = sum(widest.get(i, len(col)) for i, col in enumerate(columns)) \
        + 3 * (len(columns) - 1)
    out = console()
    if needed > out.width:
        _records(title, columns, cells)
        return
    t = Table(title=text(title) if title else None, title_justify="left", show_edge=False,
              pad_edge=False)
    for i, col in enumerate(columns):
        if i in ids:
            t.add_column(col, no_wrap=True, min_width=widest[i])
        else:
            t.add_column(col, overflow="fold", min_width=len(col))
    for row in cells:
        t.add_row(*row)
    out.print(t)


def _records(title: str | None, columns: list[str], cells: list[list[Any]]) -> None:
    """A table too wide for the console: each row as `column value` lines. A line is never
    folded by us (an identifier stays one greppable piece); a terminal wraps what is longer."""
    out = console()
    if title:
        out.print(text(title), soft_wrap=True)
    label = max(len(col) for col in columns)
    for n, row in enumerate(cells):
        if n:
            out.print()
        for col, cell in zip(columns, row, strict=False):
            out.print(text(f"{col:<{label}} " if cell.plain else col, "bold") + cell,
                      soft_wrap=True)


def confirm(question: str) -> bool:
    """The operator's answer; without a terminal the question cannot be asked, and a prompt
    that cannot be asked is declined (a script passes `--yes`), never an interruption."""
    if not sys.stdin.isatty():
        return False
    import typer

    return bool(typer.confirm(question))


def mark(value: bool) -> Styled:
    return Styled("✓", "green") if value else Styled("✗", "red")


def red(value: Any) -> Styled:
    return Styled(str(value), "red")
