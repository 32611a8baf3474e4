"""`collections` — the operator CLI.

Commands stay thin: options in, one service call, rendering out. Heavy modules (boto3, psycopg,
rich tables) are imported inside commands so `collections --help` starts fast.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from collections_ops import errors
from collections_ops.cli import ui

app = typer.Typer(
    name="collections",
    help="Deploy, drive and verify the collections image pipeline — on AWS or on a local cloud.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich's help renderer costs ~100 ms of start-up
)
secrets_app = typer.Typer(help="SSM SecureString secrets the functions read.",
                          no_args_is_help=True, rich_markup_mode=None)
db_app = typer.Typer(help="The PostgreSQL schema.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(secrets_app, name="secrets")
app.add_typer(db_app, name="db")

EnvOption = Annotated[str | None, typer.Option(
    "--env", "-e", help="Environment: local, dev or prod (default: config, else local).",
    show_default=False)]
ProfileOption = Annotated[str | None, typer.Option("--profile", help="AWS profile.")]
RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table or json "
                                              "(--json is short for -o json).")]

_debug = False


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
          ) -> None:
    global _debug
    _debug = debug or bool(os.environ.get("COLLECTIONS_DEBUG"))


def _context(env: str | None, profile: str | None = None, region: str | None = None):
    from collections_ops.context import Context

    return Context(env, profile=profile, region=region)


# --------------------------------------------------------------------------- deploy / destroy


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


def _require_aws(ctx: Any, verb: str) -> None:
    if ctx.is_local:
        raise errors.CliError(f"`{verb}` is for AWS environments",
                              "the local cloud needs no CDK: `collections deploy local`",
                              exit_code=errors.ExitCode.USAGE)


@app.command()
def build(env: Annotated[str, typer.Argument(help="Environment to build for.")] = "dev",
          as_json: JsonOption = False,
          output: OutputOption = Output.table) -> None:
    """Build each function's bundle with its dependencies vendored for the Lambda runtime."""
    as_json = as_json or output is Output.json
    from dataclasses import asdict

    from collections_ops.services import build as building

    ctx = _context(env)
    reports = building.build(ctx.env.name, out_dir=_bundle_dir(ctx))
    if as_json:
        ui.print_json([asdict(r) for r in reports])
        return
    ui.table(f"bundles ({ctx.env.name}) in {_bundle_dir(ctx)}", ["function", "size", "files"],
             [[r.function, f"{r.size_mb:.1f} MB", r.file_count] for r in reports])


@app.command()
def synth(env: Annotated[str, typer.Argument(help="dev or prod.")],
          database: DatabaseOption = "existing") -> None:
    """Synthesize the environment's CloudFormation templates (offline)."""
    ctx = _context(env)
    _require_aws(ctx, "synth")
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
    ctx = _context(env, profile, region)
    _require_aws(ctx, "diff")
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
    ctx = _context(env, profile, region)
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
    ctx = _context(env, profile, region)
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
    function: Annotated[str | None, typer.Option("--function", "-f", help="Move this "
                                                 "function's `live` alias back instead.")]
    = None,
    to: Annotated[str | None, typer.Option("--to", help="With --function: the version to "
                                           "return to (default: the one before).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change.")] = False,
    as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Roll back: a stack stuck in a failed update (CloudFormation), or with --function, the
    function's `live` alias to an earlier published version, showing what changed."""
    as_json = as_json or output is Output.json
    ctx = _context(env, profile, region)
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
    _require_aws(ctx, "rollback")
    rc = _cdk(ctx, ["rollback", ctx.env.stack_name("Compute")], bundle=False)
    if rc:
        raise errors.CliError(f"cdk rollback failed (exit {rc})", "see the CDK output above")


@app.command("versions")
def versions_command(
    function: Annotated[str, typer.Argument(help="processor, analyzer or embedder.")],
    env: EnvOption = None, as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """A function's published versions, and which one its triggers invoke (`live`)."""
    as_json = as_json or output is Output.json
    from dataclasses import asdict

    from collections_ops.pipeline import function as find_function
    from collections_ops.services import versions

    ctx = _context(env, profile, region)
    found = versions.list_versions(ctx.client("lambda"), ctx.env, find_function(function))
    if as_json:
        ui.print_json([asdict(v) for v in found])
        return
    ui.table(None, ["version", "live", "code", "memory", "timeout", "published"],
             [[v.version, "◀ live" if v.live else "", v.code_sha256[:12], v.memory, v.timeout,
               v.last_modified] for v in found])


@app.command()
def bootstrap(env: Annotated[str, typer.Argument(help="dev or prod.")],
              profile: ProfileOption = None, region: RegionOption = None) -> None:
    """Prepare the account and region for CDK deployments (`cdk bootstrap`)."""
    ctx = _context(env, profile, region)
    _require_aws(ctx, "bootstrap")
    rc = _cdk(ctx, ["bootstrap", f"aws://{ctx.account}/{ctx.region}"], bundle=False)
    if rc:
        raise errors.CliError(f"cdk bootstrap failed (exit {rc})", "see the CDK output above")


# --------------------------------------------------------------------------- status


@app.command()
def status(env: EnvOption = None, as_json: JsonOption = False, output: OutputOption = Output.table,
           profile: ProfileOption = None, region: RegionOption = None) -> None:
    """The guide's Step 4 in one screen: functions, rules, notification, DLQs, parameters."""
    as_json = as_json or output is Output.json
    from collections_ops.cli import render
    from collections_ops.services import inspect

    ctx = _context(env, profile, region)
    report: dict[str, Any] = {}
    degraded: list[str] = []
    if ctx.is_local:
        from collections_ops.localcloud import manager

        report = manager.status(ctx.state_dir)
        degraded = [n for n, p in report["parts"].items() if not p["up"]]
    if not degraded:
        deployed = inspect.gather_status(ctx.client, ctx.env, account=ctx.account,
                                         region=ctx.region)
        report["deployment"] = deployed.as_dict()
    if as_json:
        ui.print_json(report)
    else:
        render.status(report)
    if degraded:
        raise errors.NotReady(f"the local cloud is degraded: {', '.join(degraded)} down",
                              "restart it: `collections destroy local && "
                              "collections deploy local`")


@app.command()
def doctor(env: EnvOption = None, as_json: JsonOption = False, output: OutputOption = Output.table,
           profile: ProfileOption = None, region: RegionOption = None) -> None:
    """The guide's Troubleshooting section, automated: each check passed or failed, with the fix."""
    as_json = as_json or output is Output.json
    from dataclasses import asdict

    from collections_ops.services import inspect

    ctx = _context(env, profile, region)
    findings = inspect.doctor(ctx.client, ctx.env, account=ctx.account, region=ctx.region,
                              connect=lambda: ctx.db)
    if as_json:
        ui.print_json([asdict(f) for f in findings])
    else:
        ui.table(f"doctor ({ctx.env.name})", ["check", "ok", "detail", "fix"],
                 [[f.check, "[yellow]![/yellow]" if not f.ok and f.severity == "warning"
                   else ui.mark(f.ok), f.detail, f.fix or ""] for f in findings])
    failed = [f for f in findings if not f.ok and f.severity == "error"]
    if failed:
        raise errors.CliError(f"{len(failed)} check(s) failed: "
                              f"{', '.join(f.check for f in failed)}",
                              "apply the fixes listed above",
                              exit_code=errors.ExitCode.VERIFY_FAILED)


# --------------------------------------------------------------------------- secrets


def _read_secret_value(name: str, from_file: Path | None, stdin: bool) -> str:
    if from_file is not None:
        try:
            return from_file.read_text()
        except OSError as exc:
            raise errors.NotFound(f"cannot read {from_file}: {exc.strerror}") from None
    if stdin or not sys.stdin.isatty():
        return sys.stdin.read()
    return str(typer.prompt(f"Value for {name}", hide_input=True, confirmation_prompt=True))


@secrets_app.command("put")
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

    ctx = _context(env, profile, region)
    value = _read_secret_value(name, from_file, stdin)
    info = secrets.put(ctx.client("ssm"), ctx.env, name.upper(), value, kms_key_id=kms_key_id)
    ui.ok(f"{info.parameter} written (SecureString, version {info.version}, {info.fingerprint})")


@secrets_app.command("list")
def secrets_list(env: EnvOption = None, as_json: JsonOption = False,
                 output: OutputOption = Output.table, profile: ProfileOption = None,
                 region: RegionOption = None) -> None:
    """List the pipeline's secrets, masked: presence, fingerprint, version."""
    as_json = as_json or output is Output.json
    from dataclasses import asdict

    from collections_ops.services import secrets

    ctx = _context(env, profile, region)
    infos = secrets.list_secrets(ctx.client("ssm"), ctx.env)
    if as_json:
        ui.print_json([asdict(i) for i in infos])
        return
    ui.table(f"secrets ({ctx.env.name})", ["name", "present", "required", "fingerprint",
                                           "version", "modified"],
             [[i.parameter, ui.mark(i.present), "yes" if i.required else "optional",
               i.fingerprint, i.version, i.last_modified] for i in infos])


@secrets_app.command("import")
def secrets_import(
    dotenv: Annotated[Path, typer.Argument(help=".env file with KEY=VALUE lines.",
                                           exists=True, dir_okay=False)],
    env: EnvOption = None, profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Write every known secret found in a .env file (unknown keys are ignored)."""
    from collections_ops.services import secrets

    ctx = _context(env, profile, region)
    values = secrets.parse_dotenv(dotenv.read_text())
    if not values:
        raise errors.CliError(f"no known secrets in {dotenv}",
                              "expected names like ANTHROPIC_API_KEY=…")
    for name, value in values.items():
        info = secrets.put(ctx.client("ssm"), ctx.env, name, value)
        ui.ok(f"{info.parameter} written (version {info.version}, {info.fingerprint})")


@secrets_app.command("verify")
def secrets_verify(
    env: EnvOption = None, as_json: JsonOption = False, output: OutputOption = Output.table,
    live: Annotated[bool, typer.Option("--live", help="Also ask each provider whether it "
                                       "accepts its key.")] = False,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Check that every parameter the functions need exists and decrypts."""
    as_json = as_json or output is Output.json
    from dataclasses import asdict

    from collections_ops.services import secrets

    ctx = _context(env, profile, region)
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


@secrets_app.command("rm")
def secrets_rm(name: Annotated[str, typer.Argument(help="Secret name.")],
               env: EnvOption = None,
               yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
               profile: ProfileOption = None, region: RegionOption = None) -> None:
    """Delete a secret."""
    from collections_ops.services import secrets

    ctx = _context(env, profile, region)
    if not yes and not typer.confirm(f"Delete {name.upper()} from {ctx.env.name}?"):
        raise typer.Abort()
    ui.ok(f"{secrets.remove(ctx.client('ssm'), ctx.env, name.upper())} deleted")


# --------------------------------------------------------------------------- logs and events


@app.command()
def logs(
    function: Annotated[str, typer.Argument(help="processor, analyzer, embedder or all.")]
    = "all",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")]
    = False,
    since: Annotated[str, typer.Option("--since", help="How far back: 30s, 10m, 2h, 1d.")]
    = "10m",
    filter_text: Annotated[str | None, typer.Option("--filter", help="Only lines containing "
                                                    "this text.")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Only lines about this item id."
                                             )] = None,
    env: EnvOption = None, as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """The three functions' logs in one ordered stream, one colour per function."""
    as_json = as_json or output is Output.json
    from collections_ops.cli import render
    from collections_ops.services import logs as logs_service

    ctx = _context(env, profile, region)
    functions = logs_service.select_functions(function)
    groups = logs_service.resolve_log_groups(ctx.client("lambda"), ctx.env, functions)
    reader = logs_service.LogReader(ctx.client("logs"), groups,
                                    start_ms=logs_service.parse_since(since), text=filter_text,
                                    item_id=item)
    lines = logs_service.follow(reader) if follow else iter(reader.poll())
    try:
        for line in lines:
            render.log_line(line, as_json=as_json)
    except KeyboardInterrupt:
        pass


events_app = typer.Typer(help="Send the pipeline's events by hand.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(events_app, name="events")


@events_app.command("send")
def events_send(
    kind: Annotated[str, typer.Argument(help="ImageProcessed, AnalysisComplete, or guide "
                                        "(the guide's manual test event).")],
    detail: Annotated[str | None, typer.Option("--detail", help="JSON detail (overrides the "
                                               "generated one).")] = None,
    item: Annotated[str, typer.Option("--item", help="Item id for the generated detail.")]
    = "test-image",
    user: Annotated[str, typer.Option("--user", "-u", help="User id for the generated "
                                      "detail.")] = "user123",
    env: EnvOption = None, as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Build, validate and send one event; report a failed entry."""
    as_json = as_json or output is Output.json
    import json as _json

    from collections_ops.services import events as events_service

    kinds = events_service.kinds()
    if kind not in kinds:
        raise errors.CliError(f"unknown event kind {kind!r}", f"one of {', '.join(kinds)}",
                              exit_code=errors.ExitCode.USAGE)
    ctx = _context(env, profile, region)
    if detail is not None:
        try:
            body = _json.loads(detail)
        except _json.JSONDecodeError as exc:
            raise errors.CliError(f"--detail is not JSON: {exc.msg}",
                                  exit_code=errors.ExitCode.USAGE) from None
    else:
        body = events_service.sample_detail(kind, images_bucket=ctx.images_bucket,
                                            item_id=item, user_id=user)
    body = events_service.validate(kinds[kind], body)
    result = events_service.send(ctx.client("events"), kinds[kind], body)
    if as_json:
        ui.print_json({"detail_type": result.detail_type, "source": result.source,
                       "detail": result.detail, "event_id": result.event_id,
                       "error": result.error})
    if result.error:
        raise errors.CliError(f"EventBridge rejected the event: {result.error}")
    if not as_json:
        ui.ok(f"sent {result.source} / {result.detail_type} (event id {result.event_id})")


# --------------------------------------------------------------------------- db


@db_app.command("migrate")
def db_migrate(env: EnvOption = None, profile: ProfileOption = None,
               region: RegionOption = None) -> None:
    """Apply pending schema migrations (idempotent)."""
    from collections_ops.services import database

    ctx = _context(env, profile, region)
    applied = database.migrate(ctx.db)
    ui.ok(f"applied {', '.join(applied)}" if applied else "schema is up to date")


# --------------------------------------------------------------------------- test-upload


@app.command("test-upload")
def test_upload(
    files: Annotated[list[Path], typer.Argument(help="Images to upload, or folders of them.",
                                                exists=True)],
    user: Annotated[str, typer.Option("--user", "-u", help="User id: the key prefix.")]
    = "user123",
    name: Annotated[str | None, typer.Option("--name", help="Object name (default: the file's "
                                             "name).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow it through all stages."
                                         )] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait when following."
                                           )] = 120.0,
    env: EnvOption = None,
    as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Upload images to <user>/<name> and, with --follow, watch them through the pipeline."""
    as_json = as_json or output is Output.json
    from collections_ops.services import follow as following

    ctx = _context(env, profile, region)
    paths_ = following.expand_paths(files)
    if len(paths_) > 1:
        if name is not None:
            raise errors.CliError("--name needs exactly one file", exit_code=errors.ExitCode.USAGE)
        _upload_many(ctx, paths_, user=user, follow=follow, timeout=timeout, as_json=as_json)
        return
    file = paths_[0]
    up = following.upload(ctx.client("s3"), ctx.images_bucket, file, user_id=user, name=name)
    if not as_json:
        ui.ok(f"uploaded s3://{up.bucket}/{up.key} (correlation id {up.correlation_id})")
    if not follow:
        if as_json:
            ui.print_json({"bucket": up.bucket, "key": up.key, "item_id": up.item_id,
                           "correlation_id": up.correlation_id})
        return
    from collections_ops.cli.render_follow import render_follow

    follower = following.Follower(ctx.client("logs"), ctx.env, up)
    progress = render_follow(following.follow(follower, timeout_s=timeout), as_json=as_json)
    if progress.failed:
        stage = progress.failed
        key = stage.function.key if stage.function else "all"
        raise errors.CliError(f"the {stage.name} stage ({key}) failed: {stage.detail}",
                              f"see `collections logs {key} --item {up.item_id}`",
                              exit_code=errors.ExitCode.STAGE_FAILED)
    if not progress.complete:
        stage = progress.current
        raise errors.CliError(f"timed out after {timeout:.0f} s waiting for the {stage.name} stage"
                              + (f" ({stage.detail})" if stage.detail else ""),
                              "check the function's logs and its dead-letter queue",
                              exit_code=errors.ExitCode.STALLED)


def _upload_many(ctx: Any, files: list[Path], *, user: str, follow: bool, timeout: float,
                 as_json: bool) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from collections_ops.cli.render_follow import render_batch
    from collections_ops.services import follow as following

    s3 = ctx.client("s3")
    with ThreadPoolExecutor(max_workers=8) as pool:
        uploads = list(pool.map(lambda p: following.upload(s3, ctx.images_bucket, p,
                                                           user_id=user), files))
    if not follow:
        rows = [{"key": u.key, "item_id": u.item_id, "correlation_id": u.correlation_id}
                for u in uploads]
        if as_json:
            ui.print_json(rows)
        else:
            ui.ok(f"uploaded {len(uploads)} images to s3://{ctx.images_bucket}/{user}/")
        return
    batch = following.BatchFollower(ctx.client("logs"), ctx.env, uploads)
    trackers = render_batch(batch.follow(timeout_s=timeout), total=len(uploads), as_json=as_json)
    failed = [t for t in trackers if t.progress.failed]
    stalled = [t for t in trackers if not t.finished]
    if failed:
        stages = sorted({t.progress.failed.name for t in failed if t.progress.failed})
        raise errors.CliError(f"{len(failed)} of {len(trackers)} uploads failed "
                              f"(stage: {', '.join(stages)})",
                              "see the table above and `collections logs`",
                              exit_code=errors.ExitCode.STAGE_FAILED)
    if stalled:
        stages = sorted({t.progress.current.name for t in stalled})
        raise errors.CliError(f"{len(stalled)} of {len(trackers)} uploads did not finish in "
                              f"{timeout:.0f} s (waiting for: {', '.join(stages)})",
                              "check the functions' logs and dead-letter queues",
                              exit_code=errors.ExitCode.STALLED)


# --------------------------------------------------------------------------- verify


@app.command()
def verify(
    item_id: Annotated[str, typer.Argument(help="Item id: the file name without extension.")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="User id, when several "
                                             "users have this item.")] = None,
    env: EnvOption = None,
    as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Check the item, its thumbnail, its analysis and its embedding."""
    as_json = as_json or output is Output.json
    from collections_ops.services import verify as verifying

    ctx = _context(env, profile, region)
    report = verifying.verify(ctx.db, ctx.client("s3"), item_id, user_id=user)
    if as_json:
        ui.print_json(report.as_dict())
    else:
        ui.table(f"{report.user_id or '?'}/{item_id}", ["check", "ok", "detail"],
                 [[c.name, ui.mark(c.ok), c.detail] for c in report.checks])
    if not report.ok:
        failed = ", ".join(c.name for c in report.checks if not c.ok)
        missing_item = report.item is None
        raise errors.CliError(
            f"verification failed: {failed}",
            "was it uploaded to this environment? try `collections test-upload FILE --follow`"
            if missing_item else "see `collections logs` for the stage that failed",
            exit_code=errors.ExitCode.NOT_FOUND if missing_item
            else errors.ExitCode.VERIFY_FAILED)


# --------------------------------------------------------------------------- search


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in words.")],
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's items.")]
    = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many results.", min=1,
                                       max=1000)] = 10,
    env: EnvOption = None, as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Semantic search over the stored embeddings, with the pipeline's own embedder."""
    as_json = as_json or output is Output.json
    from collections_ops.services import search as searching

    ctx = _context(env, profile, region)
    provider, model = ctx.env.embedding_provider, ctx.env.embedding_model
    api_key = None
    if provider == "voyage":
        api_key = os.environ.get("VOYAGE_API_KEY") or ctx.secret_value("VOYAGE_API_KEY")
    try:
        vector = searching.embed_query(query, provider=provider, model=model, api_key=api_key)
        hits = searching.search(ctx.db, vector, model=model, dimensions=len(vector),
                                user_id=user, limit=limit)
    except ValueError as exc:
        raise errors.CliError(str(exc), exit_code=errors.ExitCode.USAGE) from None
    if as_json:
        ui.print_json([h.as_dict() for h in hits])
        return
    if not hits:
        ui.info(f"no embeddings of model {model} yet" + (f" for user {user}" if user else ""))
        return
    ui.table(f"{len(hits)} nearest to {query!r} ({model})",
             ["similarity", "item", "user", "category", "summary"],
             [[f"{h.similarity:.3f}", h.item_id, h.user_id, h.category, h.summary[:80]]
              for h in hits])


# --------------------------------------------------------------------------- operations

alarms_app = typer.Typer(help="CloudWatch alarms: the guide's error alarm and more.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(alarms_app, name="alarms")


@app.command()
def dashboard(
    env: Annotated[str, typer.Argument(help="Environment.")],
    show: Annotated[bool, typer.Option("--show", help="Render the metrics here instead.")]
    = False,
    hours: Annotated[float, typer.Option("--hours", help="With --show: how far back.")] = 3,
    as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Create the guide's dashboard (plus DLQ depth and latency), or --show it in the terminal."""
    as_json = as_json or output is Output.json
    from collections_ops.services import monitoring

    ctx = _context(env, profile, region)
    cw = ctx.client("cloudwatch")
    if not show:
        name = monitoring.put_dashboard(cw, ctx.env, ctx.region, account=ctx.account)
        ui.ok(f"dashboard {name} written (the CDK monitoring stack keeps the same one)")
        return
    data = monitoring.show(cw, ctx.env, hours=hours)
    if as_json:
        ui.print_json(data)
        return
    rows = []
    for key, metrics in data.items():
        for metric, values in metrics.items():
            present = [v for v in values if v is not None]
            total = (f"{sum(present):g}" if metric != "Duration" else
                     f"{max(present):.0f} ms max" if present else "")
            rows.append([key, metric, monitoring.sparkline(values), total])
    ui.table(f"last {hours:g} h ({ctx.env.name})", ["function", "metric", "trend", "total"], rows)


@alarms_app.command("ensure")
def alarms_ensure(env: Annotated[str, typer.Argument(help="Environment.")],
                  email: Annotated[str | None, typer.Option("--email", help="Notify this "
                                                            "address (SNS).")] = None,
                  profile: ProfileOption = None, region: RegionOption = None) -> None:
    """Create or update every alarm: errors, throttles, duration near timeout, DLQ depth."""
    from collections_ops.services import monitoring

    ctx = _context(env, profile, region)
    topic = None
    if email:
        note = monitoring.notification_topic(ctx.client("sns"), ctx.env, email)
        topic = note.topic_arn
        ui.ok(f"alarms notify {email} through {note.topic_arn}")
    names = monitoring.ensure_alarms(ctx.client("cloudwatch"), ctx.env, sns_topic_arn=topic)
    ui.ok(f"{len(names)} alarms in place")


@alarms_app.command("list")
def alarms_list(env: Annotated[str, typer.Argument(help="Environment.")],
                as_json: JsonOption = False, output: OutputOption = Output.table,
                profile: ProfileOption = None, region: RegionOption = None) -> None:
    """The pipeline's alarms with their state, firing ones first."""
    as_json = as_json or output is Output.json
    from dataclasses import asdict

    from collections_ops.services import monitoring

    ctx = _context(env, profile, region)
    alarms = monitoring.list_alarms(ctx.client("cloudwatch"), ctx.env)
    if as_json:
        ui.print_json([asdict(a) for a in alarms])
        return
    ui.table(f"alarms ({ctx.env.name})", ["alarm", "state", "condition", "since"],
             [[a.name, f"[red]{a.state}[/red]" if a.state == "ALARM" else a.state,
               a.condition, a.updated] for a in alarms])


@alarms_app.command("test")
def alarms_test(name: Annotated[str, typer.Argument(help="Alarm name.")],
                env: EnvOption = None, profile: ProfileOption = None,
                region: RegionOption = None) -> None:
    """Set an alarm to ALARM and back to OK, proving its wiring and notifications."""
    from collections_ops.services import monitoring

    ctx = _context(env, profile, region)
    result = monitoring.test_alarm(ctx.client("cloudwatch"), name)
    if not result.fired:
        raise errors.CliError(f"{name} did not enter ALARM (read back {result.during})")
    ui.ok(f"{name}: {result.before} -> {result.during} -> {result.after}; notified: "
          f"{', '.join(result.actions) or 'no actions configured'}")


@app.command()
def tune(
    function: Annotated[str, typer.Argument(help="processor, analyzer or embedder.")],
    env: Annotated[str, typer.Argument(help="dev or prod.")],
    payload: Annotated[Path, typer.Option("--payload", help="JSON event to invoke with.",
                                          exists=True, dir_okay=False)],
    strategy: Annotated[str, typer.Option("--strategy", help="cost, speed or balanced.")]
    = "balanced",
    memory: Annotated[str, typer.Option("--memory", help="Comma-separated sizes in MB.")]
    = "512,1024,1536,2048,3008",
    runs: Annotated[int, typer.Option("--runs", min=3, help="Invocations per size.")] = 5,
    recorded: Annotated[bool, typer.Option("--recorded", help="Use the offline providers: "
                                           "no LLM or embedding spend.")] = False,
    apply_it: Annotated[bool, typer.Option("--apply", help="Set the recommended memory.")]
    = False,
    as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Right-size a function's memory in the manner of AWS Lambda Power Tuning."""
    as_json = as_json or output is Output.json
    import json as _json

    from collections_ops.pipeline import function as find_function
    from collections_ops.services import tune as tuning

    ctx = _context(env, profile, region)
    _require_aws(ctx, "tune")
    if strategy not in ("cost", "speed", "balanced"):
        raise errors.CliError(f"unknown strategy {strategy!r}", "cost, speed or balanced",
                              exit_code=errors.ExitCode.USAGE)
    fn = find_function(function)
    lam = ctx.client("lambda")
    invoker = tuning.LambdaInvoker(lam, fn.function_name(ctx.env.name),
                                   _json.loads(payload.read_text()),
                                   env_overrides=tuning.recorded_overrides() if recorded else None)
    try:
        result = tuning.tune(invoker, [int(m) for m in memory.split(",")], runs=runs,
                             strategy=strategy)  # type: ignore[arg-type]
    finally:
        invoker.restore()
    if as_json:
        ui.print_json(result.table())
    else:
        ui.table(f"{fn.function_name(ctx.env.name)} ({strategy})",
                 ["memory", "average", "cost / 1M", "kept", ""],
                 [[f"{r['memory_mb']} MB", f"{r['average_ms']} ms",
                   f"${r['cost_per_million_usd']}", f"{r['kept']}/{r['runs']}",
                   "◀ recommended" if r["recommended"] else ""] for r in result.table()])
        for line in tuning.chart(result):
            ui.console().print(line, markup=False)
    if apply_it:
        tuning.apply(lam, fn.function_name(ctx.env.name), result.recommended.memory_mb)
        ui.ok(f"memory set to {result.recommended.memory_mb} MB")


@app.command()
def concurrency(
    function: Annotated[str, typer.Argument(help="processor, analyzer or embedder.")],
    env: Annotated[str, typer.Argument(help="Environment.")],
    limit: Annotated[int | None, typer.Argument(help="Reserved concurrency to set (omit to "
                                                "show drift).")] = None,
    unreserve: Annotated[bool, typer.Option("--unreserve", help="Remove the reservation.")]
    = False,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Reserved concurrency: show settings against what is deployed, or set it."""
    from collections_ops.pipeline import function as find_function
    from collections_ops.services import drift

    ctx = _context(env, profile, region)
    lam = ctx.client("lambda")
    fn = find_function(function)
    if limit is not None or unreserve:
        state = drift.set_concurrency(lam, ctx.env, fn, None if unreserve else limit)
    else:
        state = drift.function_concurrency(lam, ctx.env, fn)
    ui.table(None, ["function", "setting", "deployed", "state"],
             [[state.function_name, state.expected, state.deployed,
               state.detail if state.in_sync else f"[red]{state.detail}[/red]"]])


@app.command()
def lifecycle(env: Annotated[str, typer.Argument(help="Environment.")],
              apply_it: Annotated[bool, typer.Option("--apply", help="Put the rule the "
                                                     "settings ask for.")] = False,
              profile: ProfileOption = None, region: RegionOption = None) -> None:
    """The thumbnails bucket's expiry rule: settings against what is deployed."""
    from collections_ops.services import drift

    ctx = _context(env, profile, region)
    s3 = ctx.client("s3")
    if apply_it:
        drift.apply_lifecycle(s3, ctx.env, ctx.account)
    state = drift.lifecycle_drift(s3, ctx.env, ctx.account)
    ui.table(f"lifecycle ({state.bucket})", ["rule", "setting", "deployed", "differences"],
             [[state.rule_id, state.expected_expiry_days, state.deployed_expiry_days,
               "; ".join(state.differences) or "none"]])
    if not state.in_sync and not apply_it:
        raise errors.CliError("the lifecycle rule differs from the settings",
                              f"collections lifecycle {ctx.env.name} --apply",
                              exit_code=errors.ExitCode.CHANGES)


# --------------------------------------------------------------------------- dead letters, load

dlq_app = typer.Typer(help="Dead-letter queues: list, decode, replay.", no_args_is_help=True,
                      rich_markup_mode=None)
app.add_typer(dlq_app, name="dlq")
FunctionArgument = Annotated[str, typer.Argument(help="processor, analyzer or embedder.")]


@dlq_app.command("list")
def dlq_list(env: EnvOption = None, as_json: JsonOption = False,
             output: OutputOption = Output.table, profile: ProfileOption = None,
             region: RegionOption = None) -> None:
    """Each function's dead-letter queue with its depth and the age of its oldest message."""
    as_json = as_json or output is Output.json
    from collections_ops.services import dlq

    ctx = _context(env, profile, region)
    queues = dlq.list_queues(ctx.client("sqs"), ctx.env)
    if as_json:
        ui.print_json([q.as_dict() for q in queues])
        return
    ui.table(f"dead-letter queues ({ctx.env.name})", ["stage", "queue", "depth", "oldest"],
             [[q.stage, q.queue_name, "[red]missing[/red]" if q.url is None else q.depth,
               f"{q.oldest_age_s:.0f} s" if q.oldest_age_s is not None else ""]
              for q in queues])


@dlq_app.command("show")
def dlq_show(function: FunctionArgument, env: EnvOption = None,
             limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 10,
             as_json: JsonOption = False, output: OutputOption = Output.table,
             profile: ProfileOption = None, region: RegionOption = None) -> None:
    """Decode the failed events: which stage, which item, the error. Nothing is removed."""
    as_json = as_json or output is Output.json
    from collections_ops.services import dlq

    ctx = _context(env, profile, region)
    failed = dlq.peek(ctx.client("sqs"), ctx.env, function, limit=limit)
    if as_json:
        ui.print_json([f.as_dict() for f in failed])
        return
    ui.table(f"{len(failed)} failed event(s) for {function}",
             ["item", "user", "condition", "error", "attempts"],
             [[f.item_id or f.key, f.user_id, f.condition, f.error_message, f.attempts]
              for f in failed])


@dlq_app.command("redrive")
def dlq_redrive(
    function: FunctionArgument, env: EnvOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed.")]
    = False,
    rate: Annotated[float, typer.Option("--rate", help="Replays per second, at most.")] = 5.0,
    max_messages: Annotated[int | None, typer.Option("--max", help="Replay at most this "
                                                     "many.")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Go on after a failed "
                                             "replay.")] = False,
    as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Replay failed events to their function or rule; each dead letter is removed only after
    its replay is accepted."""
    as_json = as_json or output is Output.json
    from collections_ops.services import dlq

    ctx = _context(env, profile, region)

    def show(outcome: Any) -> None:
        if not as_json:
            ui.info(f"{outcome.status:>12}  {outcome.stage}  {outcome.user_id}/{outcome.item_id}"
                    f"  {outcome.detail}".rstrip())

    report = dlq.redrive(ctx.client, ctx.env, function, dry_run=dry_run, rate_per_s=rate,
                         max_messages=max_messages, keep_going=keep_going, on_outcome=show)
    if as_json:
        ui.print_json(report.as_dict())
    else:
        ui.ok(f"{'would replay' if dry_run else 'replayed'} "
              f"{report.would_replay if dry_run else report.replayed}, failed {report.failed}, "
              f"skipped {report.skipped}")
    if report.failed:
        raise errors.CliError(f"{report.failed} replay(s) failed; those events are still in the "
                              "dead-letter queue", "fix the cause, then redrive again")


@app.command("load-test")
def load_test(
    env: Annotated[str, typer.Argument(help="Environment.")] = "local",
    count: Annotated[int, typer.Option("--count", min=1, help="Images to upload.")] = 100,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Uploads at once.")]
    = 8,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for them all.")]
    = 300.0,
    user: Annotated[str, typer.Option("--user", "-u", help="User id for the test images.")]
    = "loadtest",
    as_json: JsonOption = False, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Upload N generated images, follow them all, report throughput and stage latencies."""
    as_json = as_json or output is Output.json
    from collections_ops.services import loadtest

    ctx = _context(env, profile, region)
    report = loadtest.run_load_test(ctx.client, ctx.env, count=count, concurrency=concurrency,
                                    timeout=timeout, user_id=user, bucket=ctx.images_bucket)
    if as_json:
        ui.print_json(report.as_dict(items=False))
    else:
        ui.ok(f"{report.completed}/{report.count} completed, {report.throughput_per_s:.1f} "
              f"images/s end to end")
        ui.table(None, ["stage", "p50", "p95", "max"],
                 [[stage, f"{s.p50:.2f} s", f"{s.p95:.2f} s", f"{s.max:.2f} s"]
                  for stage, s in report.latency_s.items() if s is not None])
    if report.failed:
        raise errors.CliError(f"{report.failed} upload(s) failed: {report.failures}",
                              "collections dlq show processor",
                              exit_code=errors.ExitCode.STAGE_FAILED)
    if report.stalled:
        raise errors.CliError(f"{report.stalled} upload(s) did not finish: {report.stalls}",
                              exit_code=errors.ExitCode.STALLED)


# --------------------------------------------------------------------------- entry point


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
