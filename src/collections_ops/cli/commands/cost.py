"""`collections cost`: what an image costs, by stage — billed Lambda time from the functions'
REPORT lines and the providers' reported tokens stored with the rows, at a dated price table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from collections_ops.cli import options as opt
from collections_ops.cli import ui

if TYPE_CHECKING:
    from collections_ops.services.cost import CostReport

app = typer.Typer(rich_markup_mode=None)


@app.command()
def cost(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
         since: Annotated[str, typer.Option("--since", help="Window, e.g. 1h or 7d.")] = "7d",
         prices: Annotated[Path | None, typer.Option(
             "--prices", help="JSON price table overriding the environment's.", exists=True,
             dir_okay=False)] = None,
         output: opt.OutputOption = opt.Output.table,
         profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """What an image costs, by stage (local: priced as if deployed)."""
    from collections_ops.services import cost as costing
    from collections_ops.services.logs import parse_since

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    since_ms = parse_since(since)
    table = costing.environment_prices(ctx.env, prices)
    recorded, why = costing.recorded_through(lambda: ctx.data_route, since_ms=since_ms)
    report = costing.collect(ctx.client("logs"), ctx.env, since_ms=since_ms, prices=table,
                             recorded=recorded, unavailable=why)
    if output is opt.Output.json:
        ui.print_json(report.as_dict())
        return
    ui.table(f"cost ({ctx.env.name}, {since}, {report.architecture}, prices as of "
             f"{report.prices_as_of}): {report.images} images",
             ["stage", "invocations", "GB-s", "Lambda", "tokens in/out", "tokens", "total",
              "per image"], _rows(report))
    for note in report.notes:
        ui.info(note)


def _money(value: float | None, unpriced: bool = False) -> str:
    return "-" if value is None else f"${value:.6f}" + (" + ?" if unpriced else "")


def _rows(report: CostReport) -> list[list[object]]:
    images = report.images or None
    rows: list[list[object]] = []
    for s in report.stages:
        unpriced = bool(s.unpriced_models)
        rows.append([s.stage, s.invocations, f"{s.gb_seconds:.3f}", _money(s.lambda_usd),
                     f"{s.input_tokens}/{s.output_tokens}", _money(s.tokens_usd, unpriced),
                     _money(s.total_usd, unpriced),
                     _money(s.total_usd / images if images else None, unpriced)])
    incomplete = not report.complete
    rows.append(["total", sum(s.invocations for s in report.stages),
                 f"{sum(s.gb_seconds for s in report.stages):.3f}", _money(report.lambda_usd),
                 f"{sum(s.input_tokens for s in report.stages)}/"
                 f"{sum(s.output_tokens for s in report.stages)}",
                 _money(report.tokens_usd, incomplete), _money(report.total_usd, incomplete),
                 _money(report.per_image_usd, incomplete)])
    return rows
