"""Finishing half-done work: `reconcile` (the environment is its subject: first argument or
--env) lists every item stopped between stages and, with --fix, re-drives each once; `replay`
re-runs one item from a stage. Both read the database through the data route the other data
commands use (named on stderr). The logic is in `services/reconcile.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui

if TYPE_CHECKING:
    StageName = str
else:  # a choice typer shows in --help and checks (exit 2 for anything else)
    StageName = Literal["processor", "analyzer", "embedder"]

app = typer.Typer(rich_markup_mode=None)

RECONCILE_LOCK_FILE = "reconcile.lock"  # in the environment's state directory


@app.command()
def reconcile(
    env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
    user: opt.UserFilterOption = None,
    fix: Annotated[bool, typer.Option("--fix", help="Re-drive each inconsistent item once, "
                                      "from the stage that repairs it, and report the result.")]
    = False,
    min_age: Annotated[float, typer.Option("--min-age", min=0, help="Leave alone what was "
                                           "written less than this many seconds ago (it may "
                                           "be in flight).")] = 120.0,
    timeout: Annotated[float, typer.Option("--timeout", min=0, help="With --fix: seconds to "
                                           "wait for the re-driven items.")] = 120.0,
    lock_wait: Annotated[float, typer.Option("--lock-wait", min=0, help="With --fix: seconds "
                                             "to wait while another `reconcile --fix` of this "
                                             "environment runs (0: exit 4 at once, naming "
                                             "it).")] = 300.0,
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Compare the originals, thumbnails, items, analyses and embeddings; list every
    inconsistency by kind (exit 8 when any is left)."""
    from functools import partial

    from collections_ops import locks
    from collections_ops.services import reconcile as reconciling

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    ctx.require_credentials()
    route = ctx.data_route
    ui.info(f"route: {route.description}")
    fix_lock = partial(locks.held, ctx.state_dir / RECONCILE_LOCK_FILE, wait_s=lock_wait,
                       what=f"reconcile {ctx.env.name} --fix", notify=ui.info)
    report = reconciling.reconcile(ctx.client, route, ctx.env, account=ctx.account,
                                   region=ctx.region, user_id=user, fix=fix,
                                   min_age_s=min_age, timeout_s=timeout, fix_lock=fix_lock)
    if output is opt.Output.json:
        ui.print_json(report.as_dict())
    else:
        _render(report)
    left = report.found if report.remaining is None else report.remaining
    if left:
        raise errors.VerifyFailed(f"{len(left)} inconsistenc{'y' if len(left) == 1 else 'ies'}"
                                  " left", None if fix else
                                  f"collections reconcile {ctx.env.name} --fix")


def _render(report: object) -> None:
    from collections_ops.services.reconcile import Report

    assert isinstance(report, Report)
    seen = ", ".join(f"{n} {what}" for what, n in report.scanned.items())
    ui.info(f"scanned {seen} in {report.seconds:.1f} s")
    if not report.found:
        ui.ok("no inconsistencies")
        return
    ui.table(f"{len(report.found)} inconsistencies", ["kind", "user", "item", "key", "stage",
                                                      "detail"],
             [[i.kind, i.user_id, i.item_id or "", i.key, i.stage or "-", i.detail]
              for i in report.found], ids=(0, 1, 2))
    if report.redrives:
        ui.table("re-driven", ["stage", "user", "item or key", "result", "target", "detail"],
                 [[r.stage, r.user_id, r.item_id or r.key,
                   ui.red(r.status) if r.status not in ("resolved",) else r.status,
                   r.target or "", r.detail] for r in report.redrives], ids=(0, 1, 2))
    for key in report.removed_thumbnails:
        ui.ok(f"removed orphan thumbnail {key}")
    if report.remaining is not None:
        if report.remaining:
            ui.info(f"{len(report.remaining)} still inconsistent", "red")
        else:
            ui.ok("no inconsistencies left")


@app.command()
def replay(
    item_id: Annotated[str, typer.Argument(metavar="ITEM", help="Item id: the file name "
                                           "without extension.")],
    stage: Annotated[StageName, typer.Option("--from", help="The stage to re-run from: "
                                             "processor, analyzer or embedder.")],
    user: opt.ItemUserOption = None,
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Re-run one item from a stage, with the event that stage's trigger carries, built from
    the item's rows (from the embedder, no vision model is called)."""
    from collections_ops.services import reconcile as reconciling

    ctx = opt.context(env, profile, region)
    ctx.require_credentials()
    route = ctx.data_route
    ui.info(f"route: {route.description}")
    sent = reconciling.replay(ctx.client, route, ctx.env, item_id, stage=stage,
                              account=ctx.account, region=ctx.region, user_id=user)
    if output is opt.Output.json:
        ui.print_json({**sent.as_dict(), "route": route.kind, "via": route.description})
        return
    ui.ok(f"re-driven {sent.user_id}/{sent.item_id} from the {sent.stage}: {sent.target}")
