"""`collections env local`: the shell exports that let the `aws` CLI and any SDK talk to the
local cloud as its administrator, so the guide's `aws s3 cp`, `aws ssm put-parameter`,
`aws logs tail` and `aws events put-events` work as written after
`eval "$(collections env local)"`.

The local cloud's keys are random per state directory (so no other local user can guess them);
this is the one command that hands them out. Printing them on stdout is its purpose, as with
`aws configure export-credentials`; they are never logged. Exit 4 when the local cloud is not
running: the endpoint would point nowhere.
"""

from __future__ import annotations

import shlex

import typer

from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(rich_markup_mode=None)


@app.command("env")
def env_exports(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
                output: opt.OutputOption = opt.Output.table) -> None:
    """Print shell exports for the `aws` CLI and SDKs against the local cloud:
    eval "$(collections env local)". -o json prints them as one JSON document."""
    ctx = opt.context(opt.env_name(env, env_option))
    cloud = ctx.require_local_cloud(f"`env` is for the local cloud only: {ctx.env.name} uses "
                                    "your own AWS credentials",
                                    "the aws CLI and `collections` both take --profile or "
                                    "AWS_PROFILE")
    # ctx.local: NotReady (exit 4) when not running.
    variables, unset = cloud.operator_environment(ctx.local)
    if output is opt.Output.json:
        ui.print_json({"env": ctx.env.name, "variables": variables, "unset": list(unset)})
        return
    lines = [f"unset {' '.join(unset)}"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in variables.items()]
    # Plain stdout, not the console: rich would wrap or style what a shell must read as is.
    typer.echo("\n".join(lines))
