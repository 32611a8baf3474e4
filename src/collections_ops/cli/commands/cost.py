"""`collections cost`: what an image costs, by stage — billed Lambda time from the functions'
REPORT lines and the providers' tokens, at a dated price table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(rich_markup_mode=None)


@app.command()
def cost(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
         since: Annotated[str, typer.Option("--since", help="Window, e.g. 1h or 7d.")] = "7d",
         prices: Annotated[Path | None, typer.Option(
             "--prices", help="JSON price table overriding the built-in one.", exists=True,
             dir_okay=False)] = None,
         output: opt.OutputOption = opt.Output.table,
         profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """What an image costs, by stage (local: priced as if deployed)."""
    from collections_ops.services import cost as costing
    from collections_ops.services.logs import parse_since

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    table = costing.Prices.load(prices) if prices else costing.PRICES
    report = costing.collect(ctx.client("logs"), ctx.env, since_ms=parse_since(since),
                             prices=table)
    if output is opt.Output.json:
        ui.print_json(report.as_dict())
        return
    per_image = report.per_image_usd
    ui.table(f"cost ({ctx.env.name}, {since}, {report.architecture}, prices as of "
             f"{report.prices_as_of}): {report.images} images",
             ["stage", "invocations", "GB-s", "Lambda", "tokens in/out", "tokens", "total"],
             [[s.stage, s.invocations, f"{s.gb_seconds:.3f}", f"${s.lambda_usd:.6f}",
               f"{s.input_tokens}/{s.output_tokens}",
               "-" if s.tokens_usd is None else f"${s.tokens_usd:.6f}", f"${s.total_usd:.6f}"]
              for s in report.stages]
             + [["total", "", "", "", "", "", f"${report.total_usd:.6f}"],
                ["per image", "", "", "", "", "",
                 "-" if per_image is None else f"${per_image:.6f}"]])
    for note in report.notes:
        ui.info(note)
