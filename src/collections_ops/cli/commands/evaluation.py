"""`collections eval`: how well search finds the golden photos by content (recall@1, recall@5,
MRR), with the environment's own analysis and embedding, through the real pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(rich_markup_mode=None)


@app.command(name="eval")
def evaluate(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
             golden: Annotated[Path | None, typer.Option(
                 "--golden", help="A golden set JSON (default: the bundled one).",
                 exists=True, dir_okay=False)] = None,
             timeout: Annotated[float, typer.Option(
                 "--timeout", help="Seconds to wait for the photos to be embedded.")] = 600.0,
             output: opt.OutputOption = opt.Output.table,
             profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Upload the golden photos, search with the golden queries, print recall and MRR."""
    from collections_ops.cli.render_follow import render_batch
    from collections_ops.services import evaluation, uploads
    from collections_ops.services import follow as following
    from collections_ops.services import search as searching

    golden_set = evaluation.golden_set(golden)  # a bad set is refused before any upload
    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    provider, model = ctx.env.embedding_provider, ctx.env.embedding_model
    api_key = ctx.provider_key("VOYAGE_API_KEY") if provider == "voyage" else None
    route = ctx.data_route

    def upload_and_follow(paths: list[Path], user_id: str) -> None:
        ups = uploads.upload_many(ctx.client("s3"), ctx.images_bucket, paths, user_id=user_id)
        batch = following.BatchFollower(ctx.client("logs"), ctx.env, ups, sqs=ctx.client("sqs"))
        updates = batch.follow(timeout_s=timeout)
        if output is opt.Output.json:  # one JSON document: progress is not shown
            for _update in updates:
                continue
            trackers = list(batch.trackers.values())
        else:
            trackers = render_batch(updates, total=len(ups), as_json=False)
        uploads.check_batch(trackers, timeout_s=timeout)

    def search(query: str, user_id: str, limit: int) -> list[str]:
        try:
            vector = searching.embed_query(query, provider=provider, model=model,
                                           api_key=api_key)
        except ValueError as exc:
            raise errors.UsageError(str(exc)) from None
        return [h.item_id for h in route.search(vector, model=model, dimensions=len(vector),
                                                user_id=user_id, limit=limit)]

    if output is not opt.Output.json:
        ui.info(f"route: {route.description}; uploading {len(golden_set.photos)} golden photos")
    report = evaluation.run(golden_set, model=model, upload_and_follow=upload_and_follow,
                            search=search)
    if output is opt.Output.json:
        ui.print_json({**report.as_dict(), "analyzer_model": ctx.env.analyzer_model})
        return
    ui.table(f"golden queries ({ctx.env.analyzer_model} + {model}, user {report.user_id})",
             ["query", "expected", "rank", "nearest"],
             [[r.query, ", ".join(r.expected), r.first_rank or "-", ", ".join(r.ranked[:3])]
              for r in report.results])
    ui.table(f"{len(report.results)} queries over {report.photos} photos",
             ["recall@1", "recall@5", "MRR"],
             [[f"{report.recall_at(1):.3f}", f"{report.recall_at(5):.3f}", f"{report.mrr:.3f}"]])
