"""Driving the pipeline: upload test images and follow them, read the functions' logs,
send its events by hand.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Annotated

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(rich_markup_mode=None)


@app.command()
def logs(
    function: opt.FunctionsArg = "all",
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")]
    = False,
    since: Annotated[str, typer.Option("--since", help="How far back: 30s, 10m, 2h, 1d.")]
    = "10m",
    filter_text: Annotated[str | None, typer.Option("--filter", help="Only lines containing "
                                                    "this text.")] = None,
    item: Annotated[str | None, typer.Option("--item", help="Only lines about this item id."
                                             )] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", "-n", min=1, help="Only the last N lines (with --follow: of those already "
        "written; new lines all follow).", show_default=False)] = None,
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """The three functions' logs in one ordered stream, one colour per function (with -o json:
    an array; with --follow, one JSON object per line)."""
    as_json = output is opt.Output.json
    from collections_ops.cli import render
    from collections_ops.services import logs as logs_service

    ctx = opt.context(env, profile, region)
    functions = logs_service.select_functions(function)
    groups = logs_service.resolve_log_groups(ctx.client("lambda"), ctx.env, functions)
    reader = logs_service.LogReader(ctx.client("logs"), groups,
                                    start_ms=logs_service.parse_since(since), text=filter_text,
                                    item_id=item)
    written = reader.poll()
    if limit is not None:
        written = written[-limit:]
    if not follow and as_json:  # one document; --follow streams JSON Lines
        ui.print_json([render.log_record(line) for line in written])
        return
    for line in itertools.chain(written, logs_service.follow(reader) if follow else ()):
        render.log_line(line, as_json=as_json)  # Ctrl-C ends --follow: 130, "interrupted"


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
    user: opt.UserIdOption = "user123",
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Build, validate and send one event; report a failed entry."""
    as_json = output is opt.Output.json
    import json as _json

    from collections_ops.services import events as events_service

    kinds = events_service.kinds()
    if kind not in kinds:
        raise errors.UsageError(f"unknown event kind {kind!r}", f"one of {', '.join(kinds)}")
    ctx = opt.context(env, profile, region)
    if detail is not None:
        try:
            body = _json.loads(detail)
        except _json.JSONDecodeError as exc:
            raise errors.UsageError(f"--detail is not JSON: {exc.msg}") from None
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
        raise errors.Failed(f"EventBridge rejected the event: {result.error}")
    if not as_json:
        ui.ok(f"sent {result.source} / {result.detail_type} (event id {result.event_id})")


@app.command("test-upload")
def test_upload(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Images to upload, or folders of them.", show_default=False)] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Upload the bundled sample image "
                                         "(the guide's test-image.jpg).")] = False,
    user: opt.UserIdOption = "user123",
    name: Annotated[str | None, typer.Option("--name", help="Object name (default: the file's "
                                             "name).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow it through all stages."
                                         )] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait when following."
                                           )] = 120.0,
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Upload images to <user>/<name> and, with --follow, watch them through the pipeline
    (with -o json: one JSON object per line while following)."""
    as_json = output is opt.Output.json
    from collections_ops.cli.render_follow import render_batch, render_follow
    from collections_ops.services import follow as following
    from collections_ops.services import uploads

    if not files and not sample:
        raise errors.UsageError("nothing to upload", "give image files or folders, or --sample")
    paths_ = following.expand_paths([*(files or []), *([uploads.sample_image()] if sample
                                                       else [])])
    if len(paths_) > 1 and name is not None:
        raise errors.UsageError("--name needs exactly one file")
    ctx = opt.context(env, profile, region)
    s3 = ctx.client("s3")
    if len(paths_) == 1:
        ups = [following.upload(s3, ctx.images_bucket, paths_[0], user_id=user, name=name)]
    else:
        ups = uploads.upload_many(s3, ctx.images_bucket, paths_, user_id=user)
    if not follow:
        rows = [{"bucket": u.bucket, "key": u.key, "item_id": u.item_id,
                 "correlation_id": u.correlation_id} for u in ups]
        if as_json:
            ui.print_json(rows[0] if len(rows) == 1 else rows)
        for u in [] if as_json else ups:
            ui.ok(f"uploaded s3://{u.bucket}/{u.key} (correlation id {u.correlation_id})")
        return
    if len(ups) == 1:
        if not as_json:
            ui.ok(f"uploaded s3://{ups[0].bucket}/{ups[0].key} "
                  f"(correlation id {ups[0].correlation_id})")
        follower = following.Follower(ctx.client("logs"), ctx.env, ups[0],
                                      sqs=ctx.client("sqs"))
        progress = render_follow(following.follow(follower, timeout_s=timeout), as_json=as_json,
                                 upload=ups[0])
        uploads.check_followed(progress, ups[0], timeout_s=timeout)
        return
    batch = following.BatchFollower(ctx.client("logs"), ctx.env, ups, sqs=ctx.client("sqs"))
    trackers = render_batch(batch.follow(timeout_s=timeout), total=len(ups), as_json=as_json)
    uploads.check_batch(trackers, timeout_s=timeout)
