"""Commands whose subject is an environment: build, synth, diff, deploy, destroy,
rollback, bootstrap. `local` runs the embedded cloud; dev/prod run the pinned CDK CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from collections_ops import errors
from collections_ops.cli import ui
from collections_ops.cli.options import (
    FunctionKey,
    Output,
    OutputOption,
    ProfileOption,
    RegionOption,
    context,
    require_aws,
)

app = typer.Typer(rich_markup_mode=None)


ApprovalOption = Annotated[str, typer.Option(
    "--require-approval", help="never, broadening or any-change (CDK's approval level).")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; same as "
                                         "--require-approval never.")]
DatabaseOption = Annotated[str, typer.Option("--database", help="existing (DATABASE_URL in "
                                             "SSM) or rds (a private RDS PostgreSQL).")]


def _bundle_dir(ctx: Any) -> Path:
    return Path(ctx.settings.state_root) / "build" / ctx.env.name


def _cdk(ctx: Any, command: list[str], *, database: str = "existing",
         bundle: bool = True) -> int:
    from collections_ops.services import deploy as deploying

    inv = deploying.invocation(
        command, env=ctx.env, profile=ctx.profile, region=ctx._region,
        bundle_dir=_bundle_dir(ctx) if bundle and _bundle_dir(ctx).is_dir() else None,
        out_dir=Path(ctx.settings.state_root) / "cdk.out" / ctx.env.name,
        cache_root=Path(ctx.settings.state_root) / "tools",
        extra_context={"collections:database": database})
    ui.info(f"[dim]$ {' '.join(inv.argv)}[/dim]")
    return deploying.run(inv)


@app.command()
def build(env: Annotated[str, typer.Argument(help="Environment to build for.")] = "dev",
          output: OutputOption = Output.table) -> None:
    """Build each function's bundle with its dependencies vendored for the Lambda runtime."""
    as_json = output is Output.json
    from dataclasses import asdict

    from collections_ops.services import build as building

    ctx = context(env)
    reports = building.build(ctx.env.name, out_dir=_bundle_dir(ctx))
    if as_json:
        ui.print_json([asdict(r) for r in reports])
        return
    ui.table(f"bundles ({ctx.env.name}) in {_bundle_dir(ctx)}",
             ["function", "size", "files", "platform", "bytecode"],
             [[r.function, f"{r.size_mb:.1f} MB", r.file_count, r.platform,
               f"{r.bytecode_bytes / 1e6:.1f} MB ({r.bytecode.split(' at ')[0]})"
               if r.bytecode else "none"]
              for r in reports])
    for note in dict.fromkeys(n for r in reports for n in r.notes):
        ui.info(note)


@app.command()
def synth(env: Annotated[str, typer.Argument(help="dev or prod.")],
          database: DatabaseOption = "existing") -> None:
    """Synthesize the environment's CloudFormation templates (offline)."""
    ctx = context(env)
    require_aws(ctx, "synth")
    from collections_ops.services import deploy as deploying

    rc = _cdk(ctx, ["synth", *deploying.stacks_for(ctx.env, database=database), "--quiet"],
              database=database)
    if rc:
        raise errors.CliError(f"cdk synth failed (exit {rc})", "see the CDK output above")
    ui.ok(f"synthesized {ctx.env.name} into {Path(ctx.settings.state_root) / 'cdk.out'}")


@app.command()
def diff(env: Annotated[str, typer.Argument(help="dev or prod.")],
         database: DatabaseOption = "existing", profile: ProfileOption = None,
         region: RegionOption = None) -> None:
    """Show what a deploy would change. Exit 0: no changes; 11: changes; other: error."""
    ctx = context(env, profile, region)
    require_aws(ctx, "diff")
    from collections_ops.services import deploy as deploying

    rc = _cdk(ctx, ["diff", *deploying.stacks_for(ctx.env, database=database), "--fail"],
              database=database)
    if rc == 1:
        raise errors.CliError("the deployed stacks differ from the app", None,
                              exit_code=errors.ExitCode.CHANGES)
    if rc:
        raise errors.CliError(f"cdk diff failed (exit {rc})", "see the CDK output above")


@app.command()
def deploy(
    env: Annotated[str, typer.Argument(help="Environment to deploy: local, dev or prod.")],
    all_stacks: Annotated[bool, typer.Option("--all", help="Every stack of the app.")] = False,
    require_approval: ApprovalOption = "broadening",
    yes: YesOption = False,
    database: DatabaseOption = "existing",
    skip_build: Annotated[bool, typer.Option("--skip-build", help="Deploy the bundles "
                                             "already built.")] = False,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Deploy an environment. `local` starts the embedded local cloud in the background;
    dev/prod run preflight checks, build the bundles and run `cdk deploy`."""
    ctx = context(env, profile, region)
    if ctx.is_local:
        from collections_ops.localcloud import manager

        ui.info("starting the local cloud…")
        state, started = manager.start(ctx.state_dir)
        ui.ok(("local cloud started" if started else "local cloud already running")
              + f" at {state.endpoint_url} (state: {ctx.state_dir})")
        return
    from collections_ops.services import deploy as deploying

    if require_approval not in deploying.APPROVALS:
        raise errors.CliError(f"--require-approval {require_approval!r} is not one of "
                              f"{', '.join(deploying.APPROVALS)}", exit_code=errors.ExitCode.USAGE)
    if not skip_build:
        build(ctx.env.name)
    checks = deploying.preflight(ctx.client, ctx.env, bundle_dir=_bundle_dir(ctx))
    ui.table(f"preflight ({ctx.env.name})", ["check", "ok", "detail", "fix"],
             [[c.name, ui.mark(c.ok), c.detail, c.fix or ""] for c in checks])
    failed = [c for c in checks if not c.ok]
    if failed:
        first = failed[0]
        raise errors.CliError(f"preflight failed: {first.name}: {first.detail}", first.fix,
                              exit_code=errors.ExitCode.CREDENTIALS
                              if first.name == "credentials" else errors.ExitCode.CONFIG)
    targets = ["--all"] if all_stacks else deploying.stacks_for(ctx.env, database=database)
    approval = "never" if yes else require_approval
    rc = _cdk(ctx, ["deploy", *targets, "--require-approval", approval], database=database)
    if rc:
        raise errors.CliError(f"cdk deploy failed (exit {rc})",
                              f"see the CDK output above; `collections rollback {ctx.env.name}`"
                              " returns a stack stuck in a failed update")
    ui.ok(f"deployed {ctx.env.name}")


@app.command()
def destroy(
    env: Annotated[str, typer.Argument(help="Environment to destroy.")],
    yes: YesOption = False, database: DatabaseOption = "existing",
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Destroy an environment. `local` stops the local cloud and deletes its state."""
    ctx = context(env, profile, region)
    if ctx.is_local:
        from collections_ops.localcloud import manager

        was_running = manager.stop(ctx.state_dir, remove=True)
        ui.ok("local cloud stopped and its state removed" if was_running
              else "local cloud was not running; state removed")
        return
    from collections_ops.services import deploy as deploying

    command = ["destroy", *deploying.stacks_for(ctx.env, database=database)]
    if yes:
        command.append("--force")
    rc = _cdk(ctx, command, database=database, bundle=False)
    if rc:
        raise errors.CliError(f"cdk destroy failed (exit {rc})", "see the CDK output above")


@app.command()
def rollback(
    env: Annotated[str, typer.Argument(help="dev or prod.")],
    function: Annotated[FunctionKey | None, typer.Option(
        "--function", metavar="FUNCTION",
        help="Move this function's `live` alias back instead.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="With --function: the version to "
                                           "return to (default: the one before).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")] = False,
    output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Roll back: a stack stuck in a failed update (CloudFormation), or with --function, the
    function's `live` alias to an earlier published version, showing what changed."""
    as_json = output is Output.json
    ctx = context(env, profile, region)
    if function is not None:
        from collections_ops.pipeline import function as find_function
        from collections_ops.services import versions

        result = versions.roll_back(ctx.client("lambda"), ctx.env, find_function(function),
                                    to=to, dry_run=dry_run)
        if as_json:
            ui.print_json(result.as_dict())
            return
        verb = "would move" if dry_run else "moved"
        ui.ok(f"{result.function_name}: live {verb} from version {result.from_version} to "
              f"{result.to_version}")
        for change in result.changes or ["no differences in code or configuration"]:
            ui.console().print(f"  {change}", markup=False)
        return
    require_aws(ctx, "rollback")
    rc = _cdk(ctx, ["rollback", ctx.env.stack_name("Compute")], bundle=False)
    if rc:
        raise errors.CliError(f"cdk rollback failed (exit {rc})", "see the CDK output above")


@app.command()
def bootstrap(env: Annotated[str, typer.Argument(help="dev or prod.")],
              profile: ProfileOption = None, region: RegionOption = None) -> None:
    """Prepare the account and region for CDK deployments (`cdk bootstrap`)."""
    ctx = context(env, profile, region)
    require_aws(ctx, "bootstrap")
    rc = _cdk(ctx, ["bootstrap", f"aws://{ctx.account}/{ctx.region}"], bundle=False)
    if rc:
        raise errors.CliError(f"cdk bootstrap failed (exit {rc})", "see the CDK output above")
