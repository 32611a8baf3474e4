"""The dashboard and `collections alarms …`: the environment is their subject (first
argument or --env), except for `alarms test NAME`."""

from __future__ import annotations

from typing import Annotated

import typer

from collections_ops import errors
from collections_ops.cli import options as opt
from collections_ops.cli import ui

app = typer.Typer(rich_markup_mode=None)
alarms_app = typer.Typer(help="CloudWatch alarms: the guide's error alarm and more.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(alarms_app, name="alarms")


@app.command()
def dashboard(
    env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
    show: Annotated[bool, typer.Option("--show", help="Render the metrics here instead.")]
    = False,
    hours: Annotated[float, typer.Option("--hours", help="With --show: how far back.")] = 3,
    output: opt.OutputOption = opt.Output.table,
    profile: opt.ProfileOption = None, region: opt.RegionOption = None,
) -> None:
    """Create the guide's dashboard (plus DLQ depth and latency), or --show it in the terminal."""
    from collections_ops.services import monitoring

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    cw = ctx.client("cloudwatch")
    if not show:
        name = monitoring.put_dashboard(cw, ctx.env, ctx.region, account=ctx.account)
        if output is opt.Output.json:
            ui.print_json({"dashboard": name})
        else:
            ui.ok(f"dashboard {name} written (the CDK monitoring stack keeps the same one)")
        return
    data = monitoring.show(cw, ctx.env, hours=hours)
    if output is opt.Output.json:
        ui.print_json(data)
        return
    ui.table(f"last {hours:g} h ({ctx.env.name})", ["function", "metric", "trend", "total"],
             [[r.function, r.metric, r.trend, r.total] for r in monitoring.summarize(data)])


@alarms_app.command("ensure")
def alarms_ensure(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
                  email: Annotated[str | None, typer.Option("--email", help="Notify this "
                                                            "address (SNS).")] = None,
                  output: opt.OutputOption = opt.Output.table,
                  profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Create or update every alarm: errors, throttles, duration near timeout, DLQ depth.

    On AWS the monitoring stack owns the alarms and their topic: this lists them and, with
    --email, subscribes the address to the stack's topic."""
    from collections_ops.services import monitoring

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    if ctx.target.stack_owns_alarms:
        ctx.require_credentials()
        names, note = monitoring.stack_alarms(ctx.client("cloudwatch"), ctx.client("sns"),
                                              ctx.env, email=email)
        if output is opt.Output.json:
            ui.print_json({"alarms": names, "owner": "stack",
                           "topic_arn": note.topic_arn if note else None, "email": email})
            return
        ui.ok(f"{len(names)} alarms, owned by the monitoring stack (changed by `collections "
              f"deploy {ctx.env.name}`)")
        if note:
            ui.ok(f"{email} subscribed to {note.topic_arn} ({note.subscription})")
        return
    topic = None
    if email:
        topic = monitoring.notification_topic(ctx.client("sns"), ctx.env, email).topic_arn
    names = monitoring.ensure_alarms(ctx.client("cloudwatch"), ctx.env, sns_topic_arn=topic)
    if output is opt.Output.json:
        ui.print_json({"alarms": names, "topic_arn": topic, "email": email})
        return
    if email:
        ui.ok(f"alarms notify {email} through {topic}")
    ui.ok(f"{len(names)} alarms in place")


@alarms_app.command("list")
def alarms_list(env: opt.EnvArgument = None, env_option: opt.EnvOption = None,
                output: opt.OutputOption = opt.Output.table,
                profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """The pipeline's alarms with their state, firing ones first."""
    from dataclasses import asdict

    from collections_ops.services import monitoring

    ctx = opt.context(opt.env_name(env, env_option), profile, region)
    alarms = monitoring.list_alarms(ctx.client("cloudwatch"), ctx.env)
    if output is opt.Output.json:
        ui.print_json([asdict(a) for a in alarms])
        return
    ui.table(f"alarms ({ctx.env.name})", ["alarm", "state", "condition", "since"],
             [[a.name, ui.red(a.state) if a.state == "ALARM" else a.state,
               a.condition, a.updated] for a in alarms])


@alarms_app.command("test")
def alarms_test(name: Annotated[str, typer.Argument(help="Alarm name.")],
                env: opt.EnvOption = None, output: opt.OutputOption = opt.Output.table,
                profile: opt.ProfileOption = None, region: opt.RegionOption = None) -> None:
    """Set an alarm to ALARM and back to OK, proving its wiring and notifications."""
    from dataclasses import asdict

    from collections_ops.services import monitoring

    ctx = opt.context(env, profile, region)
    result = monitoring.test_alarm(ctx.client("cloudwatch"), name)
    if output is opt.Output.json:
        ui.print_json(asdict(result))
    if not result.fired:
        raise errors.CollectionsError(f"{name} did not enter ALARM (read back {result.during})")
    if output is not opt.Output.json:
        ui.ok(f"{name}: {result.before} -> {result.during} -> {result.after}; notified: "
              f"{', '.join(result.actions) or 'no actions configured'}")
