"""`collections dlq …`: the dead-letter queues — list, decode, replay.
"""

from __future__ import annotations

from typing import Annotated

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(help="Dead-letter queues: list, decode, replay.", no_args_is_help=True,
                  rich_markup_mode=None)




@app.command("list")
def dlq_list(env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
             profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Each function's dead-letter queue with its depth and the age of its oldest message."""
    as_json = output is opt.Output.json
    from collections_ops.services import dlq

    ctx = opt.context(env, profile, region)
    queues = dlq.list_queues(ctx.client("sqs"), ctx.env)
    if as_json:
        ui.print_json([q.as_dict() for q in queues])
        return
    ui.table(f"dead-letter queues ({ctx.env.name})", ["stage", "queue", "depth", "oldest"],
             [[q.stage, q.queue_name, ui.red("missing") if q.url is None else q.depth,
               f"{q.oldest_age_s:.0f} s" if q.oldest_age_s is not None else ""]
              for q in queues])


@app.command("show")
def dlq_show(function: opt.FunctionArg, env: opt.EnvOption = None,
             limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100)] = 10,
             output: opt.OutputOption = opt.Output.table,
             profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Decode the failed events: which stage, which item, the error. Nothing is removed."""
    as_json = output is opt.Output.json
    from collections_ops.services import dlq

    ctx = opt.context(env, profile, region)
    failed = dlq.peek(ctx.client("sqs"), ctx.env, function, limit=limit)
    if as_json:
        ui.print_json([f.as_dict() for f in failed])
        return
    ui.table(f"{len(failed)} failed event(s) for {function}",
             ["item", "user", "condition", "error", "attempts"],
             [[f.item_id or f.key, f.user_id, f.condition, f.error_message, f.attempts]
              for f in failed], ids=(0, 1))


@app.command("redrive")
def dlq_redrive(
    function: opt.FunctionArg, env: opt.EnvOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be replayed.")]
    = False,
    rate: Annotated[float, typer.Option("--rate", help="Replays per second, at most.")] = 5.0,
    max_messages: Annotated[int | None, typer.Option("--max", help="Replay at most this "
                                                     "many.")] = None,
    keep_going: Annotated[bool, typer.Option("--keep-going", help="Go on after a failed "
                                             "replay.")] = False,
    include_terminal: Annotated[bool, typer.Option(
        "--include-terminal", help="Also replay failures the handler marked terminal (they "
        "fail again unless what they name changed).")] = False,
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Replay failed events to their function or rule; each dead letter is removed only after
    its replay is accepted. Terminal failures are skipped and kept unless --include-terminal."""
    as_json = output is opt.Output.json
    from collections_ops.services import dlq_redrive

    ctx = opt.context(env, profile, region)

    report = dlq_redrive.redrive(ctx.client, ctx.env, function, dry_run=dry_run,
                                 rate_per_s=rate, max_messages=max_messages,
                                 keep_going=keep_going, include_terminal=include_terminal)
    if as_json:
        ui.print_json(report.as_dict())
    else:
        if report.outcomes:
            ui.table(f"redrive of {report.queue_name}", ["status", "stage", "user", "item",
                                                         "detail"],
                     [[o.status, o.stage, o.user_id, o.item_id, o.detail]
                      for o in report.outcomes], ids=(2, 3))
        terminal = (f" ({report.skipped_terminal} terminal: --include-terminal replays them)"
                    if report.skipped_terminal else "")
        ui.ok(f"{'would re-queue' if dry_run else 're-queued'} "
              f"{report.would_replay if dry_run else report.replayed}, failed {report.failed}, "
              f"skipped {report.skipped}{terminal}")
    if report.failed:
        raise errors.CollectionsError(f"{report.failed} replay(s) failed; those events are "
                                      "still in the dead-letter queue",
                                      "fix the cause, then redrive again")
