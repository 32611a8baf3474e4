"""Driving the pipeline: upload test images and follow them, read the functions' logs,
send its events by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from collections_ops import errors
from collections_ops.cli import ui
from collections_ops.cli.options import (
    EnvOption,
    FunctionsArg,
    Output,
    OutputOption,
    ProfileOption,
    RegionOption,
    context,
)

app = typer.Typer(rich_markup_mode=None)


@app.command()
def logs(
    function: FunctionsArg = "all",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")]
    = False,
    since: Annotated[str, typer.Option("--since", help="How far back: 30s, 10m, 2h, 1d.")]
    = "10m",
    filter_text: Annotated[str | None, typer.Option("--filter", help="Only lines containing "
                                                    "this text.")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Only lines about this item id."
                                             )] = None,
    env: EnvOption = None, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """The three functions' logs in one ordered stream, one colour per function."""
    as_json = output is Output.json
    from collections_ops.cli import render
    from collections_ops.services import logs as logs_service

    ctx = context(env, profile, region)
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
    env: EnvOption = None, output: OutputOption = Output.table,
    profile: ProfileOption = None, region: RegionOption = None,
) -> None:
    """Build, validate and send one event; report a failed entry."""
    as_json = output is Output.json
    import json as _json

    from collections_ops.services import events as events_service

    kinds = events_service.kinds()
    if kind not in kinds:
        raise errors.CliError(f"unknown event kind {kind!r}", f"one of {', '.join(kinds)}",
                              exit_code=errors.ExitCode.USAGE)
    ctx = context(env, profile, region)
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
    output: OutputOption = Output.table,
    profile: ProfileOption = None,
    region: RegionOption = None,
) -> None:
    """Upload images to <user>/<name> and, with --follow, watch them through the pipeline."""
    as_json = output is Output.json
    from collections_ops.services import follow as following

    ctx = context(env, profile, region)
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
