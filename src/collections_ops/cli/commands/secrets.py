"""`collections secrets …`: the SSM SecureString parameters the functions read. Values
come from a hidden prompt, stdin or a file, never from argv.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from collections_ops import errors
from collections_ops.cli import ui
from collections_ops.cli.options import (
    EnvOption,
    Output,
    OutputOption,
    ProfileOption,
    RegionOption,
    context,
)

app = typer.Typer(help="SSM SecureString secrets the functions read.", no_args_is_help=True,
                  rich_markup_mode=None)


def _read_secret_value(name: str, from_file: Path | None, stdin: bool) -> str:
    if from_file is not None:
        try:
            return from_file.read_text()
        except OSError as exc:
            raise errors.NotFound(f"cannot read {from_file}: {exc.strerror}") from None
    if stdin or not sys.stdin.isatty():
        return sys.stdin.read()
    return str(typer.prompt(f"Value for {name}", hide_input=True, confirmation_prompt=True))


@app.command("put")
def secrets_put(
    name: Annotated[str, typer.Argument(help="Secret name, e.g. ANTHROPIC_API_KEY.")],
    env: EnvOption = None,
    from_file: Annotated[Path | None, typer.Option("--from-file", help="Read the value from "
                                                   "this file.")] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the value from stdin.")] = False,
    kms_key_id: Annotated[str | None, typer.Option("--kms-key-id", help="KMS key for the "
                                                   "SecureString.")] = None,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Write a secret as an SSM SecureString. The value is read from a hidden prompt, stdin or a
    file — never from the command line."""
    from collections_ops.services import secrets

    ctx = context(env, profile, region)
    value = _read_secret_value(name, from_file, stdin)
    info = secrets.put(ctx.client("ssm"), ctx.env, name.upper(), value, kms_key_id=kms_key_id)
    ui.ok(f"{info.parameter} written (SecureString, version {info.version}, {info.fingerprint})")


@app.command("list")
def secrets_list(env: EnvOption = None, output: OutputOption = Output.table,
                 profile: ProfileOption = None,
                 region: RegionOption = None) -> None:
    """List the pipeline's secrets, masked: presence, fingerprint, version."""
    as_json = output is Output.json
    from dataclasses import asdict

    from collections_ops.services import secrets

    ctx = context(env, profile, region)
    infos = secrets.list_secrets(ctx.client("ssm"), ctx.env)
    if as_json:
        ui.print_json([asdict(i) for i in infos])
        return
    ui.table(f"secrets ({ctx.env.name})", ["name", "present", "required", "fingerprint",
                                           "version", "modified"],
             [[i.parameter, ui.mark(i.present), "yes" if i.required else "optional",
               i.fingerprint, i.version, i.last_modified] for i in infos])


@app.command("import")
def secrets_import(
    dotenv: Annotated[Path, typer.Argument(help=".env file with KEY=VALUE lines.",
                                           exists=True, dir_okay=False)],
    env: EnvOption = None, profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Write every known secret found in a .env file (unknown keys are ignored)."""
    from collections_ops.services import secrets

    ctx = context(env, profile, region)
    values = secrets.parse_dotenv(dotenv.read_text())
    if not values:
        raise errors.CliError(f"no known secrets in {dotenv}",
                              "expected names like ANTHROPIC_API_KEY=…")
    for name, value in values.items():
        info = secrets.put(ctx.client("ssm"), ctx.env, name, value)
        ui.ok(f"{info.parameter} written (version {info.version}, {info.fingerprint})")


@app.command("verify")
def secrets_verify(
    env: EnvOption = None, output: OutputOption = Output.table,
    live: Annotated[bool, typer.Option("--live", help="Also ask each provider whether it "
                                       "accepts its key.")] = False,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Check that every parameter the functions need exists and decrypts."""
    as_json = output is Output.json
    from dataclasses import asdict

    from collections_ops.services import secrets

    ctx = context(env, profile, region)
    verdicts = secrets.verify(ctx.client("ssm"), ctx.env, live=live)
    if as_json:
        ui.print_json([asdict(v) for v in verdicts])
    else:
        ui.table(f"secrets ({ctx.env.name})", ["parameter", "ok", "required", "detail"],
                 [[v.parameter, ui.mark(v.ok), "yes" if v.required else "optional", v.detail]
                  for v in verdicts])
    bad = [v.name for v in verdicts if not v.ok]
    if bad:
        raise errors.ConfigError(f"secrets not usable: {', '.join(bad)}",
                                 f"collections secrets put {bad[0]} --env {ctx.env.name}")


@app.command("rm")
def secrets_rm(name: Annotated[str, typer.Argument(help="Secret name.")],
               env: EnvOption = None,
               yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
               profile: ProfileOption = None, region: RegionOption = None) -> None:
    """Delete a secret."""
    from collections_ops.services import secrets

    ctx = context(env, profile, region)
    if not yes and not typer.confirm(f"Delete {name.upper()} from {ctx.env.name}?"):
        raise typer.Abort()
    ui.ok(f"{secrets.remove(ctx.client('ssm'), ctx.env, name.upper())} deleted")
