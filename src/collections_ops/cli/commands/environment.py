"""Commands whose subject is an environment: build, synth, diff, deploy, destroy, rollback,
bootstrap. The environment is the first argument or --env. `local` runs the embedded cloud;
dev/prod run the pinned CDK CLI, after the credentials are checked (exit 5 before any build),
on the environment as its deployment record describes it (database mode, VPC placement).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui

if TYPE_CHECKING:
    from collections_ops.context import Context
    from collections_ops.services.deploy import CdkInvocation, DeployPlan
    from collections_ops.services.deployment import DeploymentRecord
    from collections_ops.target import LocalCloud

app = typer.Typer(rich_markup_mode=None)

ApprovalOption = Annotated[str, typer.Option(
    "--require-approval", help="never, broadening or any-change (CDK's approval level).")]
DatabaseOption = Annotated[str | None, typer.Option(
    "--database", help="existing (DATABASE_URL in SSM) or rds (a private RDS PostgreSQL). "
    "Default: what was deployed before, else the environment's setting.", show_default=False)]
SubnetOption = Annotated[list[str] | None, typer.Option(
    "--subnet", help="With an existing database inside a VPC: a private subnet for the "
    "functions (repeat for each; needs --security-group). Remembered.")]
SecurityGroupOption = Annotated[list[str] | None, typer.Option(
    "--security-group", help="With --subnet: a security group the database admits (repeat).")]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=VALUE", help="A setting for this deploy, over collections.toml and "
    "the deployment record (repeat; e.g. --set architecture=arm64). Recorded: the next deploy "
    "keeps it.")]


def _aws(env: str | None, option: str | None, profile: str | None, region: str | None,
         verb: str) -> Context:
    """The context of an AWS environment whose credentials were checked (before any work)."""
    ctx = opt.context(opt.env_name(env, option), profile, region)
    opt.require_aws(ctx, verb)
    ctx.require_credentials()
    return ctx


def _run_cdk(ctx: Context, command: list[str], *, record: DeploymentRecord,
             bundle: bool = True, as_json: bool = False) -> int:
    from collections_ops.services import deploy as deploying

    return _run(deploying.cdk(command, env=ctx.env, state_root=Path(ctx.settings.state_root),
                              profile=ctx.profile, region=ctx.aws_region, record=record,
                              bundle=bundle), as_json=as_json)


def _run(inv: CdkInvocation, *, as_json: bool = False) -> int:
    from collections_ops.services import deploy as deploying

    ui.info(f"$ {' '.join(inv.argv)}", "dim")
    return deploying.run(inv, stdout_to_stderr=as_json)


def _cdk_failed(verb: str, rc: int, hint: str = "see the CDK output above") -> None:
    if rc:
        raise errors.CollectionsError(f"cdk {verb} failed (exit {rc})", hint)


def _recorded(ctx: Context, database: str | None = None, *,
              with_file: bool = False) -> DeploymentRecord:
    """The deployment record; `with_file`: as the next deploy would make it (`diff`)."""
    from collections_ops.services import deploy as deploying

    return deploying.recorded(ctx.client, ctx.definition, ctx.state_dir, database=database,
                              file=ctx.settings.file_settings(ctx.env.name) if with_file
                              else None)


LockOption = Annotated[bool, typer.Option(
    "--lock", help="Instead of building: resolve each function's requirements.txt afresh, one "
    "version per package for x86_64 and arm64, into lambdas/<fn>/requirements.lock (commit "
    "them; the build installs only what they pin).")]


@app.command()
def build(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
          lock: LockOption = False, output: opt.OutputOption = opt.Output.table) -> None:
    """Build each function's bundle with its dependencies vendored for the Lambda runtime, at
    the versions its requirements.lock pins (--lock writes the locks)."""
    from dataclasses import asdict

    from collections_ops.services import build as building
    from collections_ops.services import deploy as deploying
    from collections_ops.services.bundle_deps import PLATFORMS

    if lock:
        _lock(as_json=output is opt.Output.json)
        return
    ctx = opt.context(opt.env_name(env, env_option))
    out_dir = deploying.bundle_dir_for(Path(ctx.settings.state_root), ctx.env)
    # The environment's architecture as its settings make it (collections.toml, the record).
    reports = building.build(ctx.env.name, out_dir=out_dir,
                             platform=PLATFORMS[ctx.env.architecture])
    if output is opt.Output.json:
        ui.print_json([asdict(r) for r in reports])
        return
    ui.table(f"bundles ({ctx.env.name}) in {out_dir}",
             ["function", "size", "files", "platform", "bytecode"],
             [[r.function, f"{r.size_mb:.1f} MB", r.file_count, r.platform,
               f"{r.bytecode_bytes / 1e6:.1f} MB ({r.bytecode.split(' at ')[0]})"
               if r.bytecode else "none"]
              for r in reports])
    for note in dict.fromkeys(n for r in reports for n in r.notes):
        ui.info(note)


def _lock(*, as_json: bool) -> None:
    from dataclasses import asdict

    from collections_ops.services import bundle_lock

    reports = bundle_lock.lock()
    if as_json:
        ui.print_json([asdict(r) for r in reports])
        return
    ui.table("locks (x86_64 and arm64)", ["function", "packages", "lock", "aligned"],
             [[r.function, len(r.packages), f"{r.path} ({'written' if r.changed else 'unchanged'})",
               ", ".join(_aligned(name, r.packages.get(name, "?"), versions)
                         for name, versions in r.aligned.items()) or "-"]
              for r in reports])
    ui.info("commit the lock files; `collections build ENV` installs what they pin")


def _aligned(name: str, locked: str, versions: dict[str, str]) -> str:
    """`psycopg 3.2.13 (x86_64 3.3.9)`: the locked version, and what an architecture resolved
    on its own where that was another."""
    others = ", ".join(f"{arch} {v}" for arch, v in versions.items() if v != locked)
    return f"{name} {locked} ({others})" if others else f"{name} {locked}"


@app.command()
def synth(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
          database: DatabaseOption = None,
          output: opt.OutputOption = opt.Output.table) -> None:
    """Synthesize the environment's CloudFormation templates (offline: no credentials)."""
    ctx = opt.context(opt.env_name(env, env_option))
    opt.require_aws(ctx, "synth")
    from collections_ops.services import deploy as deploying
    from collections_ops.services import deployment

    as_json = output is opt.Output.json
    record = deployment.plan(ctx.definition, deployment.load(ctx.state_dir), database=database,
                             file=ctx.settings.file_settings(ctx.env.name))
    _cdk_failed("synth", _run_cdk(ctx, ["synth", *deploying.stacks_for(
        ctx.env, database=record.database), "--quiet"], record=record, as_json=as_json))
    out_dir = Path(ctx.settings.state_root) / "cdk.out" / ctx.env.name
    if as_json:
        ui.print_json({"env": ctx.env.name, "out_dir": str(out_dir),
                       "database": record.database})
    else:
        ui.ok(f"synthesized {ctx.env.name} into {out_dir}")


@app.command()
def diff(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
         database: DatabaseOption = None, output: opt.OutputOption = opt.Output.table,
         profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Show what a deploy would change -- the settings it would deploy and where each comes
    from, the stacks' differences, a `live` alias moved outside the stack.
    Exit 0: no changes; 11: changes; 5: no credentials; other: error."""
    ctx = _aws(env, env_option, profile, region, "diff")
    from collections_ops.cli import render
    from collections_ops.services import deploy as deploying
    from collections_ops.services import drift

    as_json = output is opt.Output.json
    record, effective = deploying.planned(ctx.client, ctx.definition, ctx.state_dir,
                                          database=database,
                                          file=ctx.settings.file_settings(ctx.env.name))
    if not as_json:
        render.settings(f"settings a deploy of {ctx.env.name} deploys", effective.as_dicts())
    rc = _run_cdk(ctx, ["diff", *deploying.stacks_for(ctx.env, database=record.database),
                        "--fail"], record=record, as_json=as_json)
    if rc not in (0, 1):  # 1 is `--fail`'s "differences"; anything else is cdk failing
        _cdk_failed("diff", rc)
    moved = [a for a in drift.alias_drift(ctx.client("cloudformation"), ctx.client("lambda"),
                                          ctx.env) if not a.in_sync]
    stale = deploying.stale_stacks(ctx.client, ctx.env,
                                   deploying.stacks_for(ctx.env, database=record.database))
    if as_json:
        ui.print_json({"env": ctx.env.name, "database": record.database,
                       "settings": effective.as_dicts(), "stacks_differ": rc == 1,
                       "moved_aliases": [a.detail for a in moved], "stale_stacks": stale})
    for alias in moved:
        ui.info(f"! {alias.detail}", "yellow")
    for stack in stale:
        ui.info(f"! {stack} runs, but the app no longer has it: a deploy removes it", "yellow")
    if rc == 1 or moved or stale:
        raise errors.Changes("the deployed stacks differ from the app" if rc == 1 else
                             f"{len(moved)} live alias(es) moved outside the stack" if moved
                             else f"{', '.join(stale)} is no longer in the app",
                             f"`collections deploy {ctx.env.name}` puts back what the app says")


@app.command()
def deploy(
    env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
    all_stacks: Annotated[bool, typer.Option("--all", help="Every stack of the app.")] = False,
    require_approval: ApprovalOption = "broadening",
    yes: opt.DeployYesOption = False,
    database: DatabaseOption = None,
    subnet: SubnetOption = None,
    security_group: SecurityGroupOption = None,
    set_: SetOption = None,
    skip_build: Annotated[bool, typer.Option("--skip-build", help="Deploy the bundles "
                                             "already built.")] = False,
    revert_drift: Annotated[bool, typer.Option(
        "--revert-drift", help="Also put back what was changed outside CloudFormation "
        "(a drift-aware change set).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="local: then watch the handlers' "
                                        "sources and reload each change (Ctrl-C stops "
                                        "watching; the cloud keeps running).")] = False,
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None,
    region: opt.RegionOption = None,
) -> None:
    """Deploy an environment. `local` starts the embedded local cloud in the background;
    dev/prod check credentials, build the bundles, run preflight checks and `cdk deploy`,
    then record what was deployed and prune old function versions."""
    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    from collections_ops import settings

    flags = settings.parse_assignments(set_ or [], env=ctx.env.name)  # exit 2 before any work
    if (cloud := ctx.local_cloud) is not None:  # deploying it is starting it
        _deploy_local(ctx, cloud, as_json=output is opt.Output.json)
        if watch:
            _watch_local(ctx)
        return
    if watch:
        raise errors.UsageError("--watch reloads the local cloud's handlers",
                                "use it with `collections deploy local --watch`")
    from collections_ops.cli import render
    from collections_ops.services import deploy as deploying

    as_json = output is opt.Output.json
    ctx.require_credentials()
    plan = deploying.deploy(
        ctx.client, ctx.definition, state_root=Path(ctx.settings.state_root),
        state_dir=ctx.state_dir,
        profile=ctx.profile, all_stacks=all_stacks, approval="never" if yes else require_approval,
        database=database, subnet_ids=subnet or (), security_group_ids=security_group or (),
        region=region, account=ctx.account, build=not skip_build,
        file=ctx.settings.file_settings(ctx.env.name), flags=flags, revert_drift=revert_drift)
    for change in plan.changes:
        ui.info(f"deployment: {change}")
    if plan.built:
        ui.info(f"built {len(plan.built)} bundles ({sum(r.size_mb for r in plan.built):.0f} MB)")
    failed = render.checks(f"preflight ({ctx.env.name})", plan.checks, as_json=as_json)
    if failed:
        first = failed[0]
        raise errors.ConfigError(f"preflight failed: {first.name}: {first.detail}", first.fix)
    _agree_to_remove(ctx, plan.removes, yes=yes, verb="deploy")
    _run_deploy(ctx, plan, as_json=as_json)
    record, pruned, retired = deploying.deployed(ctx.client, ctx.definition, plan,
                                                 state_dir=ctx.state_dir)
    _after_deploy(ctx, plan, as_json=as_json)
    from collections_ops.services import deployment

    keep = deployment.environment_of(ctx.definition, record).versions_to_keep
    for moved in retired:
        ui.info(f"parameters: {moved}")
    for name, deleted in pruned.items():
        ui.info(f"{name}: pruned versions {', '.join(deleted)} (keeping {keep})")
    (ui.info if as_json else ui.ok)(f"deployed {ctx.env.name} (database {record.database}, "
                                    f"{record.region})")


def _run_deploy(ctx: Context, plan: DeployPlan, *, as_json: bool) -> None:
    """The deploy's `cdk deploy` runs, the compute stack alone first when it must stop
    importing what the database stack stops exporting."""
    if plan.first is not None:
        ui.info("the compute stack stops using what the database stack removes, first")
        _cdk_failed("deploy", _run(plan.first, as_json=as_json))
    _cdk_failed("deploy", _run(plan.invocation, as_json=as_json),
                f"see the CDK output above and docs/operations.md, 'When a deploy fails'; "
                f"`collections rollback {ctx.env.name}` returns a stack stuck in a failed "
                "update")


def _after_deploy(ctx: Context, plan: DeployPlan, *, as_json: bool) -> None:
    """Once the deploy succeeded (and is recorded): the template's configuration applied to
    what it adopted, and the stacks its app no longer has removed."""
    if plan.then is not None:
        ui.info("adopted: " + "; ".join(f.sentence() for f in plan.adopted if f.adoptable)
                + ". An import keeps a resource as it was: applying the template's "
                "configuration to it")
        _cdk_failed("deploy --revert-drift", _run(plan.then, as_json=as_json),
                    f"the stack is deployed; `collections deploy {ctx.env.name} --revert-drift` "
                    "applies the template to the adopted resources")
    _remove_stale(ctx, plan.removes)


def _agree_to_remove(ctx: Context, stacks: list[str], *, yes: bool, verb: str) -> None:
    """Say which stacks the app no longer has and go on only if the operator agrees: --yes,
    or an answer at a terminal. A script without --yes stops before anything runs."""
    if not stacks:
        return
    names = ", ".join(stacks)
    ui.info(f"removes: {names} (the environment's app no longer has it: database mode "
            "existing)", "yellow")
    if yes:
        return
    if sys.stdin.isatty():
        if not typer.confirm(f"Delete {names}?"):
            raise typer.Abort()
        return
    raise errors.UsageError(f"{verb} {ctx.env.name} removes {names}",
                            f"pass --yes to remove it, or keep database mode rds: "
                            f"`collections deploy {ctx.env.name} --database rds`")


def _remove_stale(ctx: Context, stacks: list[str]) -> None:
    from collections_ops.services import deploy as deploying

    for stack in stacks:
        ui.info(f"removing {stack}…")
        deploying.remove_stale(ctx.client, stack)
        ui.info(f"removed {stack}")


def _deploy_local(ctx: Context, cloud: LocalCloud, *, as_json: bool) -> None:
    ui.info("starting the local cloud…")
    state, started = cloud.start()
    if as_json:
        ui.print_json({"env": ctx.env.name, "started": started,
                       "endpoint_url": state.endpoint_url, "state_dir": str(ctx.state_dir)})
    else:
        ui.ok(("local cloud started" if started else "local cloud already running")
              + f" at {state.endpoint_url} (state: {ctx.state_dir})")


def _watch_local(ctx: Context) -> None:
    """Publish a version for each saved change and have the dispatchers run it next."""
    from collections_ops import paths
    from collections_ops.localcloud.lambda_service import watch

    try:
        # Inside the try: a Ctrl-C that lands while this line is still being written (the
        # moment a reader sees it) is the end of watching too, not an interrupted deploy.
        ui.info(f"watching {paths.lambdas_root()} for changes (Ctrl-C to stop)…")
        watch.watch(ctx.client("lambda"), ctx.env, ctx.state_dir,
                    report=lambda r: ui.info(r.line(), "red" if r.error else "green"))
    except KeyboardInterrupt:  # Ctrl-C is how watching ends: 130, as for every --follow
        ui.info("stopped watching; the local cloud keeps running")
        raise


@app.command()
def destroy(
    env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
    yes: opt.DeployYesOption = False, database: DatabaseOption = None,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Destroy an environment: what was deployed to it (the database stack too). `local`
    stops the local cloud and deletes its state."""
    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    if (cloud := ctx.local_cloud) is not None:  # destroying it is deleting its state
        held = cloud.data_summary()
        # Asks at a terminal; a script (no terminal) destroys as before, as it always did.
        if held and not yes and sys.stdin.isatty() and not typer.confirm(
                f"Delete the local cloud's data ({held}) in {ctx.state_dir}?"):
            raise typer.Abort()
        was_running = cloud.stop(remove=True)
        ui.ok("local cloud stopped and its state removed" if was_running
              else "local cloud was not running; state removed")
        return
    from collections_ops.services import deploy as deploying

    ctx.require_credentials()
    record = _recorded(ctx, database)
    stacks = deploying.stacks_for(ctx.env, database=record.database)
    # Every stack the environment has in the account, also one its app no longer has (the
    # database stack after a switch to `existing`): removed once the app's stacks are gone.
    stale = deploying.stale_stacks(ctx.client, ctx.env, stacks)
    _agree_to_remove(ctx, stale, yes=yes, verb="destroy")
    _cdk_failed("destroy", _run_cdk(ctx, ["destroy", *stacks, *(["--force"] if yes else [])],
                                    record=record, bundle=False))
    _remove_stale(ctx, stale)
    deploying.destroyed(ctx.client, ctx.env, state_dir=ctx.state_dir)


@app.command()
def rollback(
    env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
    function: Annotated[opt.FunctionKey | None, typer.Option(
        "--function", metavar="FUNCTION",
        help="Move this function's `live` alias back instead.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="With --function: the version to "
                                           "return to (default: the one before).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")] = False,
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Roll back: a stack stuck in a failed update (CloudFormation), or with --function, the
    function's `live` alias to an earlier published version, showing what changed."""
    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    ctx.require_credentials()
    if function is None:
        opt.require_aws(ctx, "rollback")
        _cdk_failed("rollback", _run_cdk(ctx, ["rollback", ctx.env.stack_name("Compute")],
                                         record=_recorded(ctx), bundle=False))
        return
    from collections_ops.pipeline import function as find_function
    from collections_ops.services import versions

    result = versions.roll_back(ctx.client("lambda"), ctx.env, find_function(function),
                                to=to, dry_run=dry_run)
    if output is opt.Output.json:
        ui.print_json(result.as_dict())
        return
    verb = "would move" if dry_run else "moved"
    ui.ok(f"{result.function_name}: live {verb} from version {result.from_version} to "
          f"{result.to_version}")
    for change in result.changes or ["no differences in code or configuration"]:
        ui.line(f"  {change}")


@app.command()
def bootstrap(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
              profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Prepare the account and region for CDK deployments (`cdk bootstrap`)."""
    from collections_ops.services import deployment

    ctx = _aws(env, env_option, profile, region, "bootstrap")
    _cdk_failed("bootstrap", _run_cdk(ctx, ["bootstrap", f"aws://{ctx.account}/{ctx.region}"],
                                      record=deployment.plan(ctx.definition, None),
                                      bundle=False))
