"""`collections` — the operator CLI: the root callback, the command groups and `main()`.

Each group lives in `cli/commands/<group>.py` and is registered here with one line; a module
without a group name contributes top-level commands. Command modules import only typer and the
option types at start-up, so `collections --help` stays fast.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from collections_ops import errors
from collections_ops.cli import ui
from collections_ops.cli.commands import (
    db,
    dlq,
    environment,
    inspect,
    monitoring,
    operations,
    pipeline,
    secrets,
)
from collections_ops.cli.options import JsonAliasGroup

app = typer.Typer(
    name="collections",
    cls=JsonAliasGroup,
    help="Deploy, drive and verify the collections image pipeline — on AWS or on a local cloud.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's help renderer costs ~100 ms of start-up
)
app.add_typer(environment.app)
app.add_typer(inspect.app)
app.add_typer(pipeline.app)
app.add_typer(operations.app)
app.add_typer(monitoring.app)
app.add_typer(secrets.app, name="secrets")
app.add_typer(dlq.app, name="dlq")
app.add_typer(db.app, name="db")

_debug = False


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
          ) -> None:
    global _debug
    _debug = debug or bool(os.environ.get("COLLECTIONS_DEBUG"))


def main() -> None:
    try:
        app(standalone_mode=False)
    except errors.CliError as exc:
        ui.error(exc.message, exc.hint)
        if _debug:
            raise
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        ui.error("interrupted", None)
        sys.exit(130)
    except Exception as exc:
        # typer raises the exceptions of the click copy it bundles: match them by name.
        kinds = {c.__name__ for c in type(exc).__mro__}
        if "Exit" in kinds:
            sys.exit(getattr(exc, "exit_code", 0))
        if "ClickException" in kinds:
            exc.show()  # type: ignore[attr-defined]
            sys.exit(getattr(exc, "exit_code", errors.ExitCode.USAGE) or errors.ExitCode.USAGE)
        if "Abort" in kinds:
            ui.error("aborted", None)
            sys.exit(130)
        mapped = errors.from_botocore(exc)
        if mapped is not None and not _debug:
            ui.error(mapped.message, mapped.hint)
            sys.exit(mapped.exit_code)
        if _debug:
            raise
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        ui.error(f"unexpected {type(exc).__name__}: {first_line}",
                 "rerun with --debug for the traceback")
        sys.exit(errors.ExitCode.FAILURE)
