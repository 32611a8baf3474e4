"""Looking at a deployment: status, doctor (the environment is their subject: first argument
or --env), verify and search."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(rich_markup_mode=None)
# How much of an analysis summary a table row shows (cut with "…"); JSON carries it whole.
SUMMARY_CHARS = 80


@app.command()
def status(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
           output: opt.OutputOption = opt.Output.table,
           profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """The guide's Step 4 in one screen: functions, rules, notification, DLQs, parameters,
    and the environment's settings with where each came from."""
    from collections_ops.cli import render
    from collections_ops.services import inspect

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    report: dict[str, Any] = {"settings": ctx.effective_as_deployed().as_dicts()}
    degraded: list[str] = []
    if (cloud := ctx.local_cloud) is not None:  # running here: its parts, each up or down
        report = {**cloud.status(), **report}
        # The owner's URL names its password: shown with the password masked, as every
        # output does (the URL itself is in the state directory's state.json, 0600).
        report["database_url"] = masked_url(report["database_url"])
        degraded = [n for n, p in report["parts"].items() if not p["up"]]
    if not degraded:
        deployed = inspect.gather_status(ctx.client, ctx.env, account=ctx.account,
                                         region=ctx.region)
        report["deployment"] = deployed.as_dict()
    if output is opt.Output.json:
        ui.print_json(report)
    else:
        render.status(report)
        render.settings(f"settings ({ctx.env.name})", report["settings"])
    if degraded:
        raise errors.NotReady(f"the local cloud is degraded: {', '.join(degraded)} down",
                              "repair it: `collections deploy local` restarts what is down "
                              "and keeps the data")


@app.command()
def doctor(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
           output: opt.OutputOption = opt.Output.table,
           profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """The guide's Troubleshooting section, automated: each check passed or failed, with the fix."""
    from collections_ops.cli import render
    from collections_ops.services import inspect

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    findings = inspect.doctor(ctx.client, ctx.env, account=ctx.account, region=ctx.region,
                              route=lambda: ctx.data_route)
    failed = render.checks(f"doctor ({ctx.env.name})", findings,
                           as_json=output is opt.Output.json)
    if failed:
        raise errors.VerifyFailed(f"{len(failed)} check(s) failed: "
                                  f"{', '.join(f.name for f in failed)}",
                                  "apply the fixes listed above")


@app.command()
def verify(
    item_id: Annotated[str, typer.Argument(help="Item id: the file name without extension.")],
    user: opt.ItemUserOption = None,
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Check the item, its thumbnail, its analysis and its embedding."""
    from collections_ops.cli import render
    from collections_ops.services import verify as verifying

    ctx = opt.context(env, profile, region)
    route = ctx.data_route
    ui.info(f"route: {route.description}")
    report = verifying.through(route, ctx.client("s3"), item_id, user_id=user)
    if not report.ok:
        from collections_ops.services import dlq

        verifying.explain(report, dlq.find(ctx.client("sqs"), ctx.env, item_id=item_id,
                                           user_id=report.user_id))
    if output is opt.Output.json:
        ui.print_json({**report.as_dict(), "route": route.kind})
    else:
        render.checks(f"{report.user_id or '?'}/{item_id}", report.checks, as_json=False,
                      glimpse=SUMMARY_CHARS)
    verifying.raise_for_failure(report)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for, in words.")],
    user: opt.UserFilterOption = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many results.", min=1,
                                       max=1000)] = 10,
    env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Semantic search over the stored embeddings, with the pipeline's own embedder."""
    from collections_ops.services import search as searching

    ctx = opt.context(env, profile, region)
    route = ctx.data_route
    ui.info(f"route: {route.description}")
    # The database's active model (`collections reembed --activate`), else the configured one.
    model, provider = searching.search_model(
        route, configured_model=ctx.env.embedding_model,
        configured_provider=ctx.env.embedding_provider)
    api_key = ctx.provider_key("VOYAGE_API_KEY") if provider == "voyage" else None
    try:
        vector = searching.embed_query(query, provider=provider, model=model, api_key=api_key)
        hits = route.search(vector, model=model, dimensions=len(vector), user_id=user,
                            limit=limit)
    except ValueError as exc:
        raise errors.UsageError(str(exc)) from None
    if output is opt.Output.json:
        ui.print_json([h.as_dict() for h in hits])
        return
    if not hits:
        ui.info(f"no embeddings of model {model} yet" + (f" for user {user}" if user else ""))
        return
    ui.table(f"{len(hits)} nearest to {query!r} ({model})",
             ["similarity", "item", "user", "category", "summary"],
             [[f"{h.similarity:.3f}", h.item_id, h.user_id, h.category,
               ui.cut(h.summary, SUMMARY_CHARS)]
              for h in hits], ids=(1, 2))


def masked_url(url: str) -> str:
    """`url` with its password, if any, shown as ****."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return parts._replace(netloc=netloc).geturl()
