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
DatabaseOption = Annotated[str | None, typer.Option(
    "--database", help="existing (DATABASE_URL in SSM) or rds (a private RDS PostgreSQL). "
    "Default: what was deployed before, else existing.", show_default=False)]
SubnetOption = Annotated[list[str] | None, typer.Option(
    "--subnet", help="With an existing database inside a VPC: a private subnet for the "
    "functions (repeat for each; needs --security-group). Remembered.")]
SecurityGroupOption = Annotated[list[str] | None, typer.Option(
    "--security-group", help="With --subnet: a security group the database admits (repeat).")]


def _bundle_dir(ctx: Any) -> Path:
    return Path(ctx.settings.state_root) / "build" / ctx.env.name


def _cdk(ctx: Any, command: list[str], *, record: Any, bundle: bool = True) -> int:
    from collections_ops.services import deploy as deploying
    from collections_ops.services import deployment

    inv = deploying.invocation(
        command, env=ctx.env, profile=ctx.profile, region=ctx.aws_region,
        bundle_dir=_bundle_dir(ctx) if bundle and _bundle_dir(ctx).is_dir() else None,
        out_dir=Path(ctx.settings.state_root) / "cdk.out" / ctx.env.name,
        cache_root=Path(ctx.settings.state_root) / "tools",
        extra_context=deployment.cdk_context(record))
    ui.info(f"[dim]$ {' '.join(inv.argv)}[/dim]")
    return deploying.run(inv)


def _credentials(ctx: Any) -> None:
    """Before anything is built or synthesized: without credentials nothing else can work."""
    from collections_ops.services import deploy as deploying

    deploying.require_credentials(ctx.client)


def _previous(ctx: Any) -> Any:
    """What was deployed: the account's record, else the local copy."""
    from collections_ops.services import deployment

    return deployment.in_account(ctx.state_dir, ctx.env, ssm=ctx.client("ssm"))


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
    ui.table(f"bundles ({ctx.env.name}) in {_bundle_dir(ctx)}", ["function", "size", "files"],
             [[r.function, f"{r.size_mb:.1f} MB", r.file_count] for r in reports])


@app.command()
def synth(env: Annotated[str, typer.Argument(help="dev or prod.")],
          database: DatabaseOption = None) -> None:
    """Synthesize the environment's CloudFormation templates (offline)."""
    ctx = context(env)
    require_aws(ctx, "synth")
    from collections_ops.services import deploy as deploying
    from collections_ops.services import deployment

    record = deployment.plan(ctx.env, deployment.load(ctx.state_dir), database=database)
    rc = _cdk(ctx, ["synth", *deploying.stacks_for(ctx.env, database=record.database),
                    "--quiet"], record=record)
    if rc:
        raise errors.CliError(f"cdk synth failed (exit {rc})", "see the CDK output above")
    ui.ok(f"synthesized {ctx.env.name} into {Path(ctx.settings.state_root) / 'cdk.out'}")


@app.command()
def diff(env: Annotated[str, typer.Argument(help="dev or prod.")],
         database: DatabaseOption = None, profile: ProfileOption = None,
         region: RegionOption = None) -> None:
    """Show what a deploy would change. Exit 0: no changes; 11: changes; other: error."""
    ctx = context(env, profile, region)
    require_aws(ctx, "diff")
    _credentials(ctx)
    from collections_ops.services import deploy as deploying
    from collections_ops.services import deployment, drift

    record = deployment.plan(ctx.env, _previous(ctx), database=database)
    rc = _cdk(ctx, ["diff", *deploying.stacks_for(ctx.env, database=record.database), "--fail"],
              record=record)
    moved = [a for a in drift.alias_drift(ctx.client("cloudformation"), ctx.client("lambda"),
                                          ctx.env) if not a.in_sync]
    for alias in moved:
        ui.info(f"[yellow]![/yellow] {alias.detail}")
    if rc == 1 or moved:
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
    database: DatabaseOption = None,
    subnet: SubnetOption = None,
    security_group: SecurityGroupOption = None,
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
    from collections_ops.services import deployment

    if require_approval not in deploying.APPROVALS:
        raise errors.CliError(f"--require-approval {require_approval!r} is not one of "
                              f"{', '.join(deploying.APPROVALS)}", exit_code=errors.ExitCode.USAGE)
    _credentials(ctx)
    previous = _previous(ctx)
    record = deployment.plan(ctx.env, previous, database=database, subnet_ids=subnet or (),
                             security_group_ids=security_group or (), region=region,
                             account=ctx.account)
    for change in deployment.changes(previous, record):
        ui.info(f"deployment: {change}")
    if not skip_build:
        build(ctx.env.name)
    checks = deploying.preflight(ctx.client, ctx.env, bundle_dir=_bundle_dir(ctx), record=record)
    ui.table(f"preflight ({ctx.env.name})", ["check", "ok", "detail", "fix"],
             [[c.name, ui.mark(c.ok), c.detail, c.fix or ""] for c in checks])
    failed = [c for c in checks if not c.ok]
    if failed:
        first = failed[0]
        raise errors.CliError(f"preflight failed: {first.name}: {first.detail}", first.fix,
                              exit_code=errors.ExitCode.CREDENTIALS
                              if first.name == "credentials" else errors.ExitCode.CONFIG)
    targets = (["--all"] if all_stacks
               else deploying.stacks_for(ctx.env, database=record.database))
    approval = "never" if yes else require_approval
    rc = _cdk(ctx, ["deploy", *targets, "--require-approval", approval], record=record)
    if rc:
        raise errors.CliError(f"cdk deploy failed (exit {rc})",
                              f"see the CDK output above; `collections rollback {ctx.env.name}`"
                              " returns a stack stuck in a failed update")
    stamped = deployment.stamped(record)
    deployment.save(ctx.state_dir, stamped)
    deployment.publish(ctx.client("ssm"), ctx.env, stamped)
    from collections_ops.services import versions

    for name, deleted in versions.prune_all(ctx.client("lambda"), ctx.env,
                                            keep=ctx.env.versions_to_keep).items():
        ui.info(f"{name}: pruned versions {', '.join(deleted)} "
                f"(keeping {ctx.env.versions_to_keep})")
    ui.ok(f"deployed {ctx.env.name} (database {record.database}, {record.region})")


@app.command()
def destroy(
    env: Annotated[str, typer.Argument(help="Environment to destroy.")],
    yes: YesOption = False, database: DatabaseOption = None,
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
    from collections_ops.services import deployment

    _credentials(ctx)
    # What was deployed decides what is destroyed (the database stack too).
    record = deployment.plan(ctx.env, _previous(ctx), database=database)
    command = ["destroy", *deploying.stacks_for(ctx.env, database=record.database)]
    if yes:
        command.append("--force")
    rc = _cdk(ctx, command, record=record, bundle=False)
    if rc:
        raise errors.CliError(f"cdk destroy failed (exit {rc})", "see the CDK output above")
    deployment.forget(ctx.state_dir)
    deployment.unpublish(ctx.client("ssm"), ctx.env)


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
    _credentials(ctx)
    from collections_ops.services import deployment

    rc = _cdk(ctx, ["rollback", ctx.env.stack_name("Compute")],
              record=deployment.plan(ctx.env, _previous(ctx)), bundle=False)
    if rc:
        raise errors.CliError(f"cdk rollback failed (exit {rc})", "see the CDK output above")


@app.command()
def bootstrap(env: Annotated[str, typer.Argument(help="dev or prod.")],
              profile: ProfileOption = None, region: RegionOption = None) -> None:
    """Prepare the account and region for CDK deployments (`cdk bootstrap`)."""
    ctx = context(env, profile, region)
    require_aws(ctx, "bootstrap")
    _credentials(ctx)
    from collections_ops.services import deployment

    rc = _cdk(ctx, ["bootstrap", f"aws://{ctx.account}/{ctx.region}"],
              record=deployment.plan(ctx.env, None), bundle=False)
    if rc:
        raise errors.CliError(f"cdk bootstrap failed (exit {rc})", "see the CDK output above")
