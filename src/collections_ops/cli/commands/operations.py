"""Operating the functions: versions, memory tuning, reserved concurrency (their subject is a
function: FUNCTION, then --env), the thumbnails' lifecycle rule and load tests (their subject is
the environment: first argument or --env)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(rich_markup_mode=None)


@app.command("versions")
def versions_command(
    function: opt.FunctionArg,
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """A function's published versions, and which one its triggers invoke (`live`)."""
    from dataclasses import asdict

    from collections_ops.pipeline import function as find_function
    from collections_ops.services import versions

    ctx = opt.context(env, profile, region)
    found = versions.list_versions(ctx.client("lambda"), ctx.env, find_function(function))
    if output is opt.Output.json:
        ui.print_json([asdict(v) for v in found])
        return
    ui.table(None, ["version", "live", "code", "memory", "timeout", "published"],
             [[v.version, "◀ live" if v.live else "", v.code_sha256[:12], v.memory, v.timeout,
               v.last_modified] for v in found])


def _payload(path: Path) -> Any:
    import json

    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise errors.NotFound(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise errors.UsageError(f"{path} is not JSON: {exc.msg} (line {exc.lineno})") from None


def _sizes(memory: str) -> list[int]:
    try:
        return [int(m) for m in memory.split(",") if m.strip()]
    except ValueError:
        raise errors.UsageError(f"--memory {memory!r} is not a list of sizes in MB",
                                "e.g. --memory 512,1024,2048") from None


@app.command()
def tune(
    function: opt.FunctionArg,
    payload: Annotated[Path, typer.Option("--payload", help="JSON event to invoke with.")],
    strategy: Annotated[str, typer.Option("--strategy", help="cost, speed or balanced.")]
    = "balanced",
    memory: Annotated[str, typer.Option("--memory", help="Comma-separated sizes in MB.")]
    = "512,1024,1536,2048,3008",
    runs: Annotated[int, typer.Option("--runs", min=3, help="Invocations per size.")] = 5,
    recorded: Annotated[bool, typer.Option("--recorded", help="Use the offline providers: "
                                           "no LLM or embedding spend.")] = False,
    apply_it: Annotated[bool, typer.Option("--apply", help="Set the recommended memory.")]
    = False,
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Right-size a function's memory in the manner of AWS Lambda Power Tuning."""
    from collections_ops.pipeline import function as find_function
    from collections_ops.services import cost as costing
    from collections_ops.services import tune as tuning

    event, sizes = _payload(payload), _sizes(memory)
    if strategy not in tuning.STRATEGIES:
        raise errors.UsageError(f"unknown strategy {strategy!r}",
                                f"one of {', '.join(tuning.STRATEGIES)}")
    ctx = opt.context(env, profile, region)
    opt.require_aws(ctx, "tune")
    ctx.require_credentials()
    fn = find_function(function)
    prices = costing.environment_prices(ctx.env)  # what `collections cost` charges
    lam = ctx.client("lambda")
    invoker = tuning.LambdaInvoker(lam, fn.function_name(ctx.env.name), event,
                                   env_overrides=tuning.recorded_overrides() if recorded else None)
    try:
        result = tuning.tune(invoker, sizes, runs=runs, strategy=strategy,
                             arch=ctx.env.architecture, prices=prices)
    finally:
        invoker.restore()
    published = (tuning.apply_live(lam, ctx.env, fn, result.recommended.memory_mb,
                                   keep=ctx.env.versions_to_keep) if apply_it else None)
    kept = (ctx.remember({fn.memory_setting: result.recommended.memory_mb})
            if published is not None else None)
    if output is opt.Output.json:  # with --apply, the version it published too
        ui.print_json(result.table() if published is None or kept is None
                      else {"results": result.table(), "published": published.as_dict(),
                            "settings": kept.as_dict()})
        return
    ui.table(f"{fn.function_name(ctx.env.name)} ({strategy})",
             ["memory", "average", "cost / 1M", "kept", ""],
             [[f"{r['memory_mb']} MB", f"{r['average_ms']} ms",
               f"${r['cost_per_million_usd']}", f"{r['kept']}/{r['runs']}",
               "◀ recommended" if r["recommended"] else ""] for r in result.table()])
    for line in tuning.chart(result):
        ui.line(line)
    if published is not None and kept is not None:
        _report_published(published, f"memory {result.recommended.memory_mb} MB", kept)


def _report_published(published: Any, what: str, kept: Any) -> None:
    moved = (f"live moved from version {published.from_version} to {published.to_version}"
             if published.from_version != published.to_version
             else f"live already runs version {published.to_version}")
    ui.ok(f"{published.function_name}: {what}; {moved}")
    for change in published.changes:
        ui.line(f"  {change}")
    if published.pruned:
        ui.info(f"pruned old versions {', '.join(published.pruned)}")
    ui.info(kept.note, "" if kept.recorded and not kept.overridden else "yellow")


@app.command()
def configure(
    function: opt.FunctionArg,
    env: opt.EnvOption = None,
    timeout: Annotated[int | None, typer.Option("--timeout", help="Seconds (1-900).")] = None,
    memory: Annotated[int | None, typer.Option("--memory", help="MB (128-10240).")] = None,
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """The guide's "Increase timeout", in a form that takes effect: change the configuration,
    publish a version and move `live` (what the triggers invoke) to it; recorded in the
    deployment record, so the next deploy keeps it."""
    from collections_ops.pipeline import function as find_function
    from collections_ops.services import versions

    ctx = opt.context(env, profile, region)
    fn = find_function(function)
    published = versions.configure(ctx.client("lambda"), ctx.env, fn, timeout=timeout,
                                   memory=memory, keep=ctx.env.versions_to_keep)
    values = {**({fn.timeout_setting: timeout} if timeout is not None else {}),
              **({fn.memory_setting: memory} if memory is not None else {})}
    kept = ctx.remember(values)
    if output is opt.Output.json:
        ui.print_json({**published.as_dict(), "settings": kept.as_dict()})
        return
    parts = [f"timeout {timeout} s" if timeout is not None else "",
             f"memory {memory} MB" if memory is not None else ""]
    _report_published(published, ", ".join(p for p in parts if p), kept)


@app.command()
def concurrency(
    function: opt.FunctionArg,
    limit: Annotated[int | None, typer.Argument(help="Reserved concurrency to set (omit to "
                                                "show drift).")] = None,
    unreserve: Annotated[bool, typer.Option("--unreserve", help="Remove the reservation.")]
    = False,
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Reserved concurrency: show settings against what is deployed, or set it."""
    from dataclasses import asdict

    from collections_ops.pipeline import function as find_function
    from collections_ops.services import drift

    ctx = opt.context(env, profile, region)
    lam = ctx.client("lambda")
    fn = find_function(function)
    kept = None
    if limit is not None or unreserve:
        state = drift.set_concurrency(lam, ctx.env, fn, None if unreserve else limit)
        reserved = {k: v for k, v in ctx.env.reserved_concurrency.items() if k != fn.key}
        # Reserved concurrency is the function's, not a version's.
        kept = ctx.remember({"reserved_concurrency": reserved if unreserve
                             else {**reserved, fn.key: limit}}, versioned=False)
    else:
        state = drift.function_concurrency(lam, ctx.env, fn)
    if output is opt.Output.json:
        ui.print_json({**asdict(state), **({"settings": kept.as_dict()} if kept else {})})
        return
    ui.table(None, ["function", "setting", "deployed", "state"],
             [[state.function_name, state.expected, state.deployed,
               state.detail if state.in_sync else ui.red(state.detail)]])
    if limit is not None or unreserve:
        # PutFunctionConcurrency has no qualifier: it covers `live` and every version at once.
        ui.info("reserved concurrency is the function's, for every version: in effect now")
    if kept is not None:
        ui.info(kept.note)


@app.command()
def lifecycle(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
              apply_it: Annotated[bool, typer.Option("--apply", help="Put the rule the "
                                                     "settings ask for.")] = False,
              output: opt.OutputOption = opt.Output.table,
              profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """The thumbnails bucket's expiry rule: settings against what is deployed (exit 11 when
    they differ)."""
    from dataclasses import asdict

    from collections_ops.services import drift

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    s3 = ctx.client("s3")
    if apply_it:
        drift.apply_lifecycle(s3, ctx.env, ctx.account)
    state = drift.lifecycle_drift(s3, ctx.env, ctx.account)
    if output is opt.Output.json:
        ui.print_json(asdict(state))
    else:
        ui.table(f"lifecycle ({state.bucket})", ["rule", "setting", "deployed", "differences"],
                 [[state.rule_id, state.expected_expiry_days, state.deployed_expiry_days,
                   "; ".join(state.differences) or "none"]])
    if not state.in_sync and not apply_it:
        raise errors.Changes("the lifecycle rule differs from the settings",
                             f"collections lifecycle {ctx.env.name} --apply")


@app.command("load-test")
def load_test(
    env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
    count: Annotated[int, typer.Option("--count", min=1, help="Images to upload.")] = 100,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Uploads at once.")]
    = 8,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for them all.")]
    = 300.0,
    user: opt.UserIdOption = "loadtest",
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Upload N generated images, follow them all, report throughput and stage latencies."""
    from collections_ops.services import loadtest

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    report = loadtest.run_load_test(ctx.client, ctx.env, count=count, concurrency=concurrency,
                                    timeout=timeout, user_id=user, bucket=ctx.images_bucket)
    if output is opt.Output.json:
        ui.print_json(report.as_dict(items=False))
    else:
        ui.ok(f"{report.completed}/{report.count} completed, {report.throughput_per_s:.1f} "
              f"images/s end to end")
        ui.table(None, ["stage", "p50", "p95", "max"],
                 [[stage, f"{s.p50:.2f} s", f"{s.p95:.2f} s", f"{s.max:.2f} s"]
                  for stage, s in report.latency_s.items() if s is not None])
    if report.failed:
        raise errors.StageFailed(f"{report.failed} upload(s) failed: {report.failures}",
                                 "collections dlq show processor")
    if report.stalled:
        raise errors.Stalled(f"{report.stalled} upload(s) did not finish: {report.stalls}")
