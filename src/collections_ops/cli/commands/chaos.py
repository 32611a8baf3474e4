"""`collections chaos local`: named faults injected into the running local cloud with uploads
in flight, judged by invariants (nothing acknowledged lost, no duplicate rows, no cross-user
write, nothing let in that should be refused, recovery by one `deploy local`). Exit 0 when
every invariant held, 8 when one broke. The logic is in `services/chaos.py`."""

from __future__ import annotations

from typing import Annotated

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(rich_markup_mode=None)


@app.command()
def chaos(
    env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
    fault: Annotated[list[str] | None, typer.Option(
        "--fault", "-f", help="A fault to inject (repeat); default: all of them. "
        "kill-dispatchers, kill-emulator, kill-database, kill-all, freeze-emulator, "
        "read-only-store (root), hostile-requests, hostile-keys.")] = None,
    short: Annotated[bool, typer.Option("--short", help="The CI's form: kill-emulator, "
                                        "kill-all, hostile-requests, hostile-keys.")] = False,
    uploads: Annotated[int, typer.Option("--uploads", min=1, max=500,
                                         help="Uploads in flight per fault.")] = 24,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64)] = 6,
    settle: Annotated[float, typer.Option("--settle", min=1, help="Seconds to wait, after "
                                          "recovering, for every acknowledged upload to "
                                          "complete before it counts as lost.")] = 240.0,
    output: opt.OutputOption = opt.Output.table,
) -> None:
    """Break the local cloud on purpose, and check it kept everything it acknowledged."""
    import os

    from collections_ops.services import chaos as chaotic

    ctx = opt.context(opt.env_name(env, env_option))
    ctx.require_local_cloud("chaos runs against the local cloud only",
                            "collections chaos local")
    state = ctx.local
    names = list(fault or (chaotic.SHORT if short else chaotic.FAULTS))
    cloud = chaotic.Cloud(
        state_dir=ctx.state_dir,
        status={"endpoint_url": state.endpoint_url, "region": state.region,
                "database_url": state.database_url,
                "buckets": {"images": state.images_bucket}},
        deploy=lambda: chaotic.deploy_local(dict(os.environ)))
    outcomes = chaotic.run(cloud, names, uploads=uploads, concurrency=concurrency,
                           settle_s=settle, notify=ui.info)
    broken = [o for o in outcomes if not o.ok]
    if output is opt.Output.json:
        ui.print_json({"ok": not broken, "faults": [o.as_dict() for o in outcomes]})
    else:
        ui.table("chaos on the local cloud",
                 ["fault", "uploads", "acknowledged", "completed", "lost", "duplicates",
                  "cross-user", "let in", "recovered", "result"],
                 [[o.fault, o.uploads, o.acknowledged, o.completed, len(o.lost),
                   len(o.duplicates), len(o.cross_user), len(o.let_in),
                   "yes" if o.recovered else "no", "ok" if o.ok else "BROKEN"]
                  for o in outcomes])
        for o in outcomes:
            ui.info(f"{o.fault}: {o.detail} ({o.seconds} s)")
            for what in (*o.lost[:5], *o.duplicates[:5], *o.cross_user[:5], *o.let_in[:5]):
                ui.line(f"  {o.fault}: {what}")
    if broken:
        raise errors.VerifyFailed(
            f"{len(broken)} of {len(outcomes)} faults broke an invariant: "
            + ", ".join(o.fault for o in broken), "see the rows marked BROKEN")
