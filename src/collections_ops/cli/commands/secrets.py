"""`collections secrets …`: the SSM SecureString parameters the functions read. Values
come from a hidden prompt, stdin or a file, never from argv.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui
from collections_ops.pipeline import Scope

ScopeOption = Annotated[Scope | None, typer.Option(
    "--scope", help="Which parameter: 'shared' (/collections/NAME, read by every environment "
    "that has none of its own) or 'env' (/collections/<env>/NAME, this environment only). "
    "Default: shared for the API keys, env for DATABASE_URL (never shared).")]

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


def _written(infos: list[Any], *, as_json: bool) -> None:
    from dataclasses import asdict

    if as_json:
        ui.print_json([{k: v for k, v in asdict(i).items() if k != "last_modified"}
                       for i in infos])
        return
    for info in infos:
        ui.ok(f"{info.parameter} written (SecureString, version {info.version}, "
              f"{info.fingerprint}; scope: {info.scope_label})")


@app.command("put")
def secrets_put(
    name: Annotated[str, typer.Argument(help="Secret name, e.g. ANTHROPIC_API_KEY.")],
    env: opt.EnvOption = None,
    from_file: Annotated[Path | None, typer.Option("--from-file", help="Read the value from "
                                                   "this file.")] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the value from stdin.")] = False,
    kms_key_id: Annotated[str | None, typer.Option("--kms-key-id", help="KMS key for the "
                                                   "SecureString.")] = None,
    scope: ScopeOption = None,
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Write a secret as an SSM SecureString. The value is read from a hidden prompt, stdin or a
    file — never from the command line."""
    from collections_ops.services import secrets

    secrets.resolve_scope(name.upper(), scope)  # an unknown name or scope fails before a prompt
    ctx = opt.context(env, profile, region)
    value = _read_secret_value(name, from_file, stdin)
    info = secrets.put(ctx.client("ssm"), ctx.env, name.upper(), value, scope=scope,
                       kms_key_id=kms_key_id)
    _written([info], as_json=output is opt.Output.json)


@app.command("list")
def secrets_list(env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
                 profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """List the pipeline's secrets, masked: presence, fingerprint, version."""
    from dataclasses import asdict

    from collections_ops.services import secrets

    ctx = opt.context(env, profile, region)
    infos = secrets.list_secrets(ctx.client("ssm"), ctx.env)
    if output is opt.Output.json:
        ui.print_json([asdict(i) for i in infos])
        return
    ui.table(f"secrets ({ctx.env.name})", ["name", "present", "required", "scope",
                                           "fingerprint", "version", "modified"],
             [[i.parameter, ui.mark(i.present), "yes" if i.required else "optional",
               i.scope_label + (f", overrides {i.overrides}" if i.overrides else ""),
               i.fingerprint, i.version, i.last_modified] for i in infos])


@app.command("import")
def secrets_import(
    dotenv: Annotated[Path, typer.Argument(help=".env file with KEY=VALUE lines.")],
    env: opt.EnvOption = None, scope: ScopeOption = None,
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Write every known secret found in a .env file (unknown keys are ignored), each to its
    home scope unless --scope says otherwise (DATABASE_URL always to the environment's)."""
    from collections_ops.services import secrets

    ctx = opt.context(env, profile, region)
    try:
        text = dotenv.read_text()
    except OSError as exc:
        raise errors.NotFound(f"cannot read {dotenv}: {exc.strerror}") from None
    values = secrets.parse_dotenv(text)
    if not values:
        raise errors.UsageError(f"no known secrets in {dotenv}",
                                "expected names like ANTHROPIC_API_KEY=…")
    _written([secrets.put(ctx.client("ssm"), ctx.env, name, value,
                          scope=scope if secrets.known_secret(name).shared else None)
              for name, value in values.items()], as_json=output is opt.Output.json)


@app.command("verify")
def secrets_verify(
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    live: Annotated[bool, typer.Option("--live", help="Also ask each provider whether it "
                                       "accepts its key.")] = False,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Check that every parameter the functions need exists and decrypts."""
    from collections_ops.cli import render
    from collections_ops.services import secrets

    ctx = opt.context(env, profile, region)
    checks = secrets.verify(ctx.client("ssm"), ctx.env, live=live)
    render.checks(f"secrets ({ctx.env.name})", checks, as_json=output is opt.Output.json)
    secrets.require_usable(checks)


@app.command("rm")
def secrets_rm(name: Annotated[str, typer.Argument(help="Secret name.")],
               env: opt.EnvOption = None, scope: ScopeOption = None,
               yes: opt.YesOption = False,
               output: opt.OutputOption = opt.Output.table,
               profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Delete a secret from one scope (default: its home, as for put)."""
    from collections_ops.services import secrets

    chosen = secrets.resolve_scope(name.upper(), scope)
    ctx = opt.context(env, profile, region)
    label = secrets.scope_label(ctx.env, chosen)
    if not yes and not ui.confirm(f"Delete {ctx.env.parameter_name(name.upper(), chosen)} "
                                  f"({label})?"):
        raise errors.CollectionsError("not confirmed: nothing was deleted",
                                      "pass --yes to delete without a prompt")
    parameter = secrets.remove(ctx.client("ssm"), ctx.env, name.upper(), scope=chosen)
    if output is opt.Output.json:
        ui.print_json({"deleted": parameter, "scope": chosen})
    else:
        ui.ok(f"{parameter} deleted (scope: {label})")


@app.command("migrate")
def secrets_migrate(
    env: opt.EnvOption = None,
    remove_old: Annotated[bool, typer.Option("--remove-old", help="Also delete the old "
                                             "parameters whose values are in place (do it once "
                                             "the environment runs the new layout: `deploy` "
                                             "does both itself).")] = False,
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Move the environment's parameters from the first layout (/collections/DATABASE_URL,
    /collections/deployment/<env>) into its own scope, printing each move."""
    from collections_ops.services import layout

    ctx = opt.context(env, profile, region)
    moves = layout.migrate(ctx.client("ssm"), ctx.env, remove_old=remove_old)
    if output is opt.Output.json:
        ui.print_json([m.as_dict() for m in moves])
        return
    for move in moves:
        ui.ok(move.sentence())
    if not moves:
        ui.ok(f"nothing to move: {ctx.env.name} has no parameter in the first layout")
