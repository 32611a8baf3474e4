"""`collections eval`: how well search finds the golden photos by content (recall@1, recall@5,
MRR), with the environment's own analysis and embedding, through the real pipeline; with
`--compare`, a candidate model beside it, run in this process and written nowhere
(`services.evaluation_compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
             compare: Annotated[str | None, typer.Option(
                 "--compare", metavar="CANDIDATE",
                 help="Also score a candidate on the same photos, written nowhere: an offline "
                      "model (local-pillow-v1, local-hash-v1), provider:model "
                      "(anthropic:claude-haiku-4-5, voyage:voyage-3.5), or one of each "
                      "joined by +.")] = None,
             prompt: Annotated[Path | None, typer.Option(
                 "--prompt", metavar="FILE", exists=True, dir_okay=False,
                 help="The candidate's analysis reads this prompt instead of the analyzer's "
                      "own (a real analysis model only: with --compare anthropic:MODEL, or "
                      "alone on an environment that analyses with one).")] = None,
             yes: opt.YesOption = False,
             output: opt.OutputOption = opt.Output.table,
             profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Upload the golden photos, search with the golden queries, print recall and MRR."""
    from collections_ops.cli.render_follow import render_batch
    from collections_ops.services import evaluation, uploads
    from collections_ops.services import evaluation_compare as comparing
    from collections_ops.services import follow as following
    from collections_ops.services import search as searching

    golden_set = evaluation.golden_set(golden)  # a bad set is refused before any upload
    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    provider, model = ctx.env.embedding_provider, ctx.env.embedding_model
    current = comparing.Candidate(ctx.env.analyzer_provider, ctx.env.analyzer_model,
                                  provider, model)
    candidate = comparing.parse(compare, current=current) if compare else None
    if prompt is not None:
        candidate = comparing.with_prompt(candidate or current, prompt)
    keys: dict[str, str] = {}
    if candidate is not None and not candidate.offline:
        _confirm_cost(comparing, candidate, current, golden_set, ctx, yes=yes)
        keys = {name: ctx.provider_key(name) for name in comparing.keys_needed(candidate)}
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
    if candidate is not None:
        stored = {item: (route.item_rows(item, report.user_id) or {}).get("analysis")
                  for item in golden_set.photos}
        same_analysis = (candidate.analyzer_provider, candidate.analyzer_model,
                         candidate.prompt) == (current.analyzer_provider,
                                               current.analyzer_model, current.prompt)
        scored, analyses = comparing.run(
            golden_set, candidate, comparing.calls_for(candidate, keys=keys), stored=stored,
            reuse_stored=same_analysis and current.analyzer_provider != comparing.LOCAL)
        compared = comparing.diff(report, scored, before=stored, after=analyses)
        compared.update(baseline=current.label, candidate=candidate.label,
                        user_id=report.user_id, cost=comparing.estimate(
                            candidate, current, golden_set, prices=_prices(ctx)))
        _render_comparison(compared, as_json=output is opt.Output.json)
        return
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


def _prices(ctx: Any) -> Any:
    from collections_ops.services import cost

    return cost.environment_prices(ctx.env)


def _usd(value: object) -> str:
    return "unknown (no price)" if value is None else f"${value:.4f}"


def _confirm_cost(comparing: Any, candidate: Any, current: Any, golden_set: Any, ctx: Any,
                  *, yes: bool) -> None:
    """A real provider's candidate costs money: the estimate is printed (on stderr, before
    anything is spent, whatever the output format) and the operator says yes."""
    estimate = comparing.estimate(candidate, current, golden_set, prices=_prices(ctx))
    ui.info(f"--compare {candidate.label} calls a real provider for "
            f"{estimate['photos']} photos and {estimate['queries']} queries: about "
            f"{_usd(estimate['run_usd'])} (prices as of {estimate['prices_as_of']}); "
            f"switching the environment: about "
            f"{_usd(estimate['switch_usd_per_1000_photos'])} per 1,000 photos")
    if not yes and not ui.confirm("Run the candidate?"):
        raise errors.CollectionsError("not confirmed: the candidate was not run and nothing "
                                      "was spent", "pass --yes to run it without a prompt")


def _render_comparison(compared: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        ui.print_json(compared)
        return
    changed = [i for i in compared["items"] if i["changed"]]
    ui.table(f"analyses: {len(changed)} of {len(compared['items'])} items differ "
             f"({compared['baseline']} -> {compared['candidate']})",
             ["item", "category", "summary (candidate)", "tags +", "tags -"],
             [[i["item_id"], " -> ".join(str(c) for c in i["category"]), i["summary"][1] or "",
               ", ".join(i["tags_added"][:6]), ", ".join(i["tags_removed"][:6])]
              for i in changed])
    ui.table("rank of the expected photo per query (smaller is better)",
             ["query", "expected", "before", "after", "change", "first after"],
             [[q["query"], ", ".join(q["expected"]), q["rank"][0] or "-", q["rank"][1] or "-",
               "-" if q["better_by"] is None else f"{q['better_by']:+d}", q["nearest"][1] or "-"]
              for q in compared["queries"]])
    figures = compared["figures"]
    ui.table(f"{len(compared['queries'])} queries over {len(compared['items'])} photos",
             ["pair", "recall@1", "recall@5", "MRR"],
             [[label, f"{f['recall_at_1']:.3f}", f"{f['recall_at_5']:.3f}", f"{f['mrr']:.3f}"]
              for label, f in ((compared["baseline"], figures["baseline"]),
                               (compared["candidate"], figures["candidate"]))])
    cost = compared["cost"]
    ui.info(f"cost of switching to {compared['candidate']}: "
            f"{_usd(cost['switch_usd_per_1000_photos'])} per 1,000 photos"
            f"{' (offline: free)' if cost['offline'] else ''}; this comparison: "
            f"{_usd(cost['run_usd'])}")
