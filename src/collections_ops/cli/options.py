"""The command vocabulary, defined once: every command takes its environment, function, output
format and AWS identity through these types, so one letter means one thing everywhere and a new
command gets the same spelling for free.

- `EnvOption` (`--env/-e`) on every command; `EnvArgument` in addition, first, on commands whose
  subject is the environment itself (`collections deploy dev` and `collections deploy -e dev`);
  `env_name()` reconciles the two.
- `FunctionArg`: a choice from the pipeline definition, so `--help` lists the functions and an
  unknown one is a usage error (exit 2) with the same message in every command.
- `OutputOption` (`-o/--output table|json`); `--json` is its alias, rewritten once at the root
  (`JsonAliasGroup`) instead of a second flag in every command.
- `ProfileOption`/`RegionOption` for the AWS identity.
- `--user/-u`: `UserFilterOption` (only this user's), `ItemUserOption` (whose item, when
  several have it), `UserIdOption` (the user id of what a command makes).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from typer.core import TyperGroup

from collections_ops import errors
from collections_ops.pipeline import FUNCTIONS

if TYPE_CHECKING:
    from collections_ops.context import Context

FUNCTION_KEYS = tuple(fn.key for fn in FUNCTIONS)
if TYPE_CHECKING:
    FunctionKey = str
    FunctionOrAll = str
else:  # a Literal built from the definition: typer shows it as a choice and rejects others
    FunctionKey = Literal[FUNCTION_KEYS]
    FunctionOrAll = Literal[(*FUNCTION_KEYS, "all")]


class Output(StrEnum):
    table = "table"
    json = "json"


EnvOption = Annotated[str | None, typer.Option(
    "--env", "-e", help="Environment: local, dev or prod (default: COLLECTIONS_ENV, then the "
    "config file, then local).", show_default=False)]
EnvArgument = Annotated[str | None, typer.Argument(
    help="Environment (the same as --env).", show_default=False, metavar="[ENV]")]
ProfileOption = Annotated[str | None, typer.Option("--profile", help="AWS profile.")]
RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region.")]
OutputOption = Annotated[Output, typer.Option(
    "--output", "-o", help="table or json (--json is short for -o json).")]
FunctionArg = Annotated[FunctionKey, typer.Argument(
    metavar="FUNCTION",
    help=f"One of the pipeline's functions: {', '.join(FUNCTION_KEYS)}.")]
FunctionsArg = Annotated[FunctionOrAll, typer.Argument(
    metavar="FUNCTION",
    help=f"{', '.join(FUNCTION_KEYS)} or all.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")]
DeployYesOption = Annotated[bool, typer.Option(
    "--yes", "-y", help="Do not ask; same as --require-approval never.")]
# `--user/-u` means a user id everywhere; which of three roles it plays is the type's name.
UserFilterOption = Annotated[str | None, typer.Option(
    "--user", "-u", help="Only this user's items.")]
ItemUserOption = Annotated[str | None, typer.Option(
    "--user", "-u", help="User id, when several users have this item.")]
UserIdOption = Annotated[str, typer.Option(
    "--user", "-u", help="User id of the items made: their key prefix.")]


def env_name(positional: str | None, option: str | None) -> str | None:
    """The environment named positionally or with --env (they must agree), else None: the
    context then applies the default (COLLECTIONS_ENV, the config file, local)."""
    if positional and option and positional != option:
        raise typer.BadParameter(f"the environment is given twice: {positional!r} and "
                               f"--env {option!r}")
    return positional or option


def context(env: str | None, profile: str | None = None, region: str | None = None) -> Context:
    """The composition root for one command run (imported lazily: it pulls in settings)."""
    from collections_ops.context import Context

    return Context(env, profile=profile, region=region)


def split_json_alias(args: list[str]) -> list[str]:
    """`--json` → `--output json`, for the arguments before a `--`."""
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            return out + args[i:]
        out.extend(("--output", "json") if arg == "--json" else (arg,))
    return out


def wants_json(args: list[str]) -> bool:
    """Whether the arguments ask for JSON output (so errors are JSON too)."""
    args = args[:args.index("--")] if "--" in args else args
    pairs = zip(args, [*args[1:], ""], strict=True)
    return any(a in ("--output=json", "-ojson") or (a in ("--output", "-o") and b == "json")
               for a, b in pairs)


class RootGroup(TyperGroup):
    """The root group: applies the `--json` alias, and runs every command under the one
    error-to-exit-code guard (`cli.exits`), in `main()` and in `CliRunner` alike."""

    def parse_args(self, ctx: Any, args: list[str]) -> Any:
        args = split_json_alias(list(args))
        ctx.meta["collections.json"] = wants_json(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        from collections_ops.cli import exits

        return exits.guard(lambda: super(RootGroup, self).invoke(ctx),
                           as_json=bool(ctx.meta.get("collections.json")))


def require_aws(ctx: Context, verb: str) -> None:
    """For the commands that work on what the CDK app deploys (its stacks, their rollback,
    Lambda's billed durations): a usage error where the target deploys without it."""
    if not ctx.target.deploys_with_cdk:
        raise errors.UsageError(f"`{verb}` is for AWS environments",
                              "the local cloud needs no CDK: `collections deploy local`")
