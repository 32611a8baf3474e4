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

from collections_ops.cli import exits, ui
from collections_ops.cli.commands import (
    chaos,
    cost,
    db,
    dlq,
    environment,
    evaluation,
    inspect,
    monitoring,
    operations,
    pipeline,
    reconcile,
    reembed,
    secrets,
    shellenv,
)
from collections_ops.cli.options import RootGroup

app = typer.Typer(
    name="collections",
    cls=RootGroup,
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
app.add_typer(cost.app)
app.add_typer(monitoring.app)
app.add_typer(reconcile.app)
app.add_typer(reembed.app)
app.add_typer(chaos.app)
app.add_typer(shellenv.app)
app.add_typer(evaluation.app)
app.add_typer(secrets.app, name="secrets")
app.add_typer(dlq.app, name="dlq")
app.add_typer(db.app, name="db")

def version_text() -> str:
    """Package version, Python, boto3 and the pinned CDK CLI — without importing boto3."""
    import json
    import platform
    from importlib import metadata

    from collections_ops import __version__, paths

    try:
        boto3 = metadata.version("boto3")
    except metadata.PackageNotFoundError:
        boto3 = "not installed"
    try:
        package = json.loads((paths.infrastructure_root() / "package.json").read_text())
        cdk = str(package["devDependencies"]["aws-cdk"])
    except (OSError, KeyError, ValueError):
        cdk = "unknown"
    return (f"collections {__version__} (Python {platform.python_version()}, boto3 {boto3}, "
            f"CDK CLI {cdk})")


def _version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
          version: Annotated[bool, typer.Option(
              "--version", help="Show the version (and Python, boto3, CDK CLI) and exit.",
              callback=_version, is_eager=True)] = False) -> None:
    exits.debug = debug or bool(os.environ.get("COLLECTIONS_DEBUG"))


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except KeyboardInterrupt:  # before a command started (while parsing)
        ui.error("interrupted", None)
        code = exits.ExitCode.INTERRUPTED
    except Exception as exc:
        # Errors raised while parsing the root's own options (typer's bundled click).
        if "ClickException" not in {c.__name__ for c in type(exc).__mro__}:
            raise
        exits.plain_usage_message(exc)
        exc.show()  # type: ignore[attr-defined]
        code = getattr(exc, "exit_code", exits.ExitCode.USAGE)
    sys.exit(code if isinstance(code, int) else 0)
