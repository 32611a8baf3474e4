"""`collections reembed ENV --model M [--activate] [--drop]`: fill a second embedding model's
vectors from the stored analyses, switch search to it, drop the old model's rows
(services/reembed.py says how each step is safe to interrupt and repeat)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(rich_markup_mode=None)
POLL_S = 2.0


@app.command()
def reembed(
    env: opt.EnvArgument = None,
    model: Annotated[str, typer.Option("--model", "-m", help="The embedding model to fill.")]
    = "",
    activate: Annotated[bool, typer.Option(
        "--activate", help="Then make it the model search uses (atomically).")] = False,
    drop: Annotated[bool, typer.Option(
        "--drop", help="Then remove the rows of the models it replaced.")] = False,
    wait: Annotated[int, typer.Option(
        "--wait", help="AWS: seconds to wait for the embedder to fill it.", min=0)] = 900,
    env_option: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Embed every stored analysis with another model (no image is analysed again)."""
    from collections_ops import errors
    from collections_ops.services import reembed as service

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    conn = service.direct_connection(ctx.data_route)
    if not model:
        raise errors.UsageError("--model is required", "e.g. --model local-hash-v1")
    provider = service.provider_for(model, ctx.env)
    dimensions = service.start(conn, model)
    outcome = service.Outcome(model=model, dimensions=dimensions, provider=provider)
    # In this process where the pipeline's embedder could not make these vectors: an offline
    # model, or a cloud that calls no hosted provider.
    if provider == "local" or not ctx.target.calls_hosted_providers:
        embed = service.local_embedder(model)
        for step in service.fill_local(conn, model, embed):
            ui.info(f"{model}: {step.embedded} embedded, {step.pending} to go")
            outcome.embedded = step.embedded
    else:
        from collections_ops.pipeline import ANALYSIS_COMPLETE

        outcome.estimate = service.estimate(conn, model, ctx.env.prices)
        est = outcome.estimate
        usd = "unpriced" if est["estimated_usd"] is None else f"${est['estimated_usd']}"
        ui.info(f"estimate: {est['analyses']} analyses, about {est['estimated_tokens']} "
                f"tokens, {usd} (prices of {est['prices_as_of']})")
        for step in service.fan_out(conn, ctx.client("events"), bus="default",
                                    source=ANALYSIS_COMPLETE.source,
                                    detail_type=ANALYSIS_COMPLETE.detail_type, model=model):
            ui.info(f"{model}: {step.embedded} events sent")
            outcome.events_sent = step.embedded
        deadline = time.monotonic() + wait
        while (left := service.pending(conn, model)) and time.monotonic() < deadline:
            ui.info(f"{model}: {left} analyses still to embed")
            time.sleep(POLL_S)
    outcome.pending = service.pending(conn, model)
    if outcome.pending:
        raise errors.Stalled(f"{outcome.pending} analyses have no {model} vector yet",
                             f"run `collections reembed {ctx.env.name} --model {model}` again "
                             "(what is stored is not embedded twice); see `collections dlq`")
    outcome.index = service.build_index(conn, model, dimensions)
    if activate or drop:
        service.activate(conn, model)
        outcome.activated = True
    if drop:
        outcome.dropped = service.drop(conn, model)
    if output is opt.Output.json:
        ui.print_json({**outcome.as_dict(), "models": service.models_table(conn)})
        return
    new = outcome.embedded or outcome.events_sent
    ui.ok(f"{model}: every analysis has a {dimensions}-d vector ({new} new), "
          f"index {outcome.index}")
    if outcome.activated:
        ui.ok(f"{model} is the active model: search uses it")
    if outcome.dropped:
        ui.ok(f"dropped {', '.join(outcome.dropped)}")
    ui.table(None, ["model", "dimensions", "state", "rows"],
             [[m["model"], m["dimensions"], m["state"], m["rows"]]
              for m in service.models_table(conn)], ids=(0,))
