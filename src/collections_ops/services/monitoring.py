"""The guide's Monitoring section, runnable from the CLI: the `collections-<env>-lambdas`
dashboard, the per-function alarms, a terminal view of the functions' metrics, and a way to prove
an alarm notifies someone.

The alarms are the definition's (`pipeline.alarms`): the CDK monitoring stack
(`infrastructure/stacks/monitoring_stack.py`) deploys them on AWS, and `stack_resources` writes
the same ones with plain boto3 for the local cloud (moto), which has no CloudFormation; a test
proves the two equal. The same module draws the dashboard (the stack's, plus the end-to-end
latency widget), and `dashboard --show` reads the metrics without a browser.

Every function takes the client it needs (`cw`, `sns`), built by the composition root.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from collections_ops import errors
from collections_ops.pipeline import DURATION_ALARM_FRACTION as DURATION_ALARM_FRACTION
from collections_ops.pipeline import (
    FUNCTIONS,
    Environment,
    Function,
    alarm_topic_name,
)
from collections_ops.pipeline.alarms import ALARM_KINDS as ALARM_KINDS
from collections_ops.stack_resources import (
    LAMBDA_METRICS,
    PERIOD_S,
    existing_alarms,
    resource_tags,
)

# Writing the dashboard and the alarms is shared with the local cloud's provisioning.
from collections_ops.stack_resources import dashboard_body as dashboard_body
from collections_ops.stack_resources import ensure_alarms as ensure_alarms
from collections_ops.stack_resources import put_dashboard as put_dashboard

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


# The stack's topic; locally `alarms ensure --email` creates it.
topic_name = alarm_topic_name


# --------------------------------------------------------------------------- show


def _query_id(fn: Function, metric: str) -> str:
    return f"{fn.key}_{metric.lower()}"  # ids start with a lower-case letter: [a-z][a-zA-Z0-9_]


def metric_queries(env: Environment, period: int = PERIOD_S) -> list[dict[str, Any]]:
    return [{"Id": _query_id(fn, metric), "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "AWS/Lambda", "MetricName": metric,
                   "Dimensions": [{"Name": "FunctionName", "Value": fn.function_name(env.name)}]},
        "Period": period, "Stat": stat}}
        for fn in FUNCTIONS for metric, stat in LAMBDA_METRICS]


def show(cw: Any, env: Environment, hours: float = 3, period: int = PERIOD_S, *,
         now: datetime | None = None) -> dict[str, dict[str, list[float | None]]]:
    """Invocations, Errors and Duration of every function over the last `hours`, one value per
    `period` seconds, oldest first: {fn key: {metric: [value or None]}}.

    Periods without a datapoint are None (no invocation, so no Duration either); for the Sum
    metrics that means 0, and they are returned as 0.0.
    """
    if period <= 0 or period % 60:
        raise errors.UsageError(f"a period of {period} s is not a multiple of 60")
    end = _floor(now or datetime.now(UTC), period)
    slots = max(1, math.ceil(hours * 3600 / period))
    start = end - timedelta(seconds=slots * period)
    series: dict[str, dict[str, list[float | None]]] = {
        fn.key: {metric: [0.0 if stat == "Sum" else None] * slots
                 for metric, stat in LAMBDA_METRICS} for fn in FUNCTIONS}
    by_id = {_query_id(fn, metric): (fn.key, metric)
             for fn in FUNCTIONS for metric, _ in LAMBDA_METRICS}
    for result in _metric_data(cw, metric_queries(env, period), start, end):
        key, metric = by_id[result["Id"]]
        for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=True):
            slot = int((_as_utc(ts) - start).total_seconds() // period)
            if 0 <= slot < slots:
                series[key][metric][slot] = float(value)
    return series


def _metric_data(cw: Any, queries: list[dict[str, Any]], start: datetime,
                 end: datetime) -> Iterable[dict[str, Any]]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start,
                                  "EndTime": end, "ScanBy": "TimestampAscending"}
        if token:
            kwargs["NextToken"] = token
        response = cw.get_metric_data(**kwargs)
        yield from response.get("MetricDataResults", [])
        token = response.get("NextToken")
        if not token:
            return


def _floor(moment: datetime, period: int) -> datetime:
    moment = _as_utc(moment)
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % period, UTC)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def sparkline(values: Sequence[float | None]) -> str:
    """One character per value, ▁ (lowest) to █ (highest); a gap (None) is a space.

    All-equal values draw as ▁ (zero) or ▄ (a flat non-zero line), so a steady load is not
    mistaken for a peak.
    """
    present = [v for v in values if v is not None]
    if not present:
        return " " * len(values)
    low, high = min(present), max(present)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif high == low:
            out.append(SPARK_BLOCKS[0] if high == 0 else SPARK_BLOCKS[3])
        else:
            index = round((v - low) / (high - low) * (len(SPARK_BLOCKS) - 1))
            out.append(SPARK_BLOCKS[index])
    return "".join(out)


# --------------------------------------------------------------------------- alarms


@dataclass(frozen=True)
class Notification:
    topic_arn: str
    email: str
    subscription: str  # the subscription ARN, or "pending confirmation"

    @property
    def pending(self) -> bool:
        return not self.subscription.startswith("arn:")


def notification_topic(sns: Any, env: Environment, email: str) -> Notification:
    """The `collections-<env>-alarms` topic with `email` subscribed (idempotent). AWS mails the
    address a confirmation link; nothing is delivered until it is followed."""
    if "@" not in email:
        raise errors.UsageError(f"{email!r} is not an e-mail address")
    arn = str(sns.create_topic(Name=topic_name(env.name))["TopicArn"])
    # Tagged apart: create_topic refuses an existing topic whose tags differ from the ones given.
    sns.tag_resource(ResourceArn=arn, Tags=resource_tags(env.name))
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn):
        for sub in page.get("Subscriptions", []):
            if sub.get("Protocol") == "email" and sub.get("Endpoint") == email:
                return Notification(arn, email, _subscription_state(sub["SubscriptionArn"]))
    sub_arn = sns.subscribe(TopicArn=arn, Protocol="email", Endpoint=email,
                            ReturnSubscriptionArn=True)["SubscriptionArn"]
    return Notification(arn, email, _subscription_state(str(sub_arn)))


def stack_alarms(cw: Any, sns: Any, env: Environment, *,
                 email: str | None = None) -> tuple[list[str], Notification | None]:
    """On AWS the monitoring stack owns the alarms and their topic: nothing here writes them
    (CloudFormation would undo or fight it). Returns the stack's alarms and, with `email`, a
    subscription to the stack's topic -- a subscription is not a property of the stack."""
    if email is not None and "@" not in email:
        raise errors.UsageError(f"{email!r} is not an e-mail address")
    wanted = alarm_topic_name(env.name)
    arn = next((str(t["TopicArn"]) for page in sns.get_paginator("list_topics").paginate()
                for t in page.get("Topics", [])
                if str(t["TopicArn"]).rpartition(":")[2] == wanted), None)
    if arn is None:
        raise errors.NotReady(f"the {env.name} monitoring stack's topic {wanted} does not exist",
                              f"collections deploy {env.name}")
    names = sorted(existing_alarms(cw, env.name))
    if email is None:
        return names, None
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=arn):
        for sub in page.get("Subscriptions", []):
            if sub.get("Protocol") == "email" and sub.get("Endpoint") == email:
                return names, Notification(arn, email, _subscription_state(sub["SubscriptionArn"]))
    sub_arn = sns.subscribe(TopicArn=arn, Protocol="email", Endpoint=email,
                            ReturnSubscriptionArn=True)["SubscriptionArn"]
    return names, Notification(arn, email, _subscription_state(str(sub_arn)))


def _subscription_state(arn: str) -> str:
    # AWS lists an unconfirmed subscription as "PendingConfirmation" (or "pending confirmation").
    return arn if arn.startswith("arn:") else "pending confirmation"


@dataclass(frozen=True)
class AlarmInfo:
    name: str
    state: str  # OK | ALARM | INSUFFICIENT_DATA
    reason: str
    updated: str | None  # ISO 8601, when the state last changed
    metric: str  # "AWS/Lambda Errors"
    statistic: str | None
    comparison: str | None
    threshold: float | None
    actions: list[str] = field(default_factory=list)  # ALARM actions (topic ARNs)

    @property
    def condition(self) -> str:
        symbol = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">=",
                  "LessThanThreshold": "<", "LessThanOrEqualToThreshold": "<="}.get(
            self.comparison or "", self.comparison or "?")
        threshold = "?" if self.threshold is None else f"{self.threshold:g}"
        return f"{self.statistic} {self.metric.rpartition(' ')[2]} {symbol} {threshold}"


def _alarm_info(alarm: dict[str, Any]) -> AlarmInfo:
    updated = alarm.get("StateUpdatedTimestamp")
    return AlarmInfo(
        name=alarm["AlarmName"], state=alarm.get("StateValue", "INSUFFICIENT_DATA"),
        reason=alarm.get("StateReason", ""),
        updated=_as_utc(updated).isoformat() if isinstance(updated, datetime) else None,
        metric=f"{alarm.get('Namespace', '?')} {alarm.get('MetricName', '?')}",
        statistic=alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
        comparison=alarm.get("ComparisonOperator"),
        threshold=alarm.get("Threshold"), actions=list(alarm.get("AlarmActions", [])))


def list_alarms(cw: Any, env: Environment) -> list[AlarmInfo]:
    """Every alarm named `collections-<env>-...`, with its state, those firing first."""
    alarms = [_alarm_info(a) for a in existing_alarms(cw, env.name).values()]
    order = {"ALARM": 0, "INSUFFICIENT_DATA": 1, "OK": 2}
    return sorted(alarms, key=lambda a: (order.get(a.state, 3), a.name))


@dataclass(frozen=True)
class AlarmTest:
    name: str
    before: str  # the state before the test
    during: str  # the state read back after setting ALARM
    after: str  # the state read back after setting OK
    actions: list[str]  # what was notified (the alarm's ALARM and OK actions)

    @property
    def fired(self) -> bool:
        return self.during == "ALARM"


def test_alarm(cw: Any, name: str) -> AlarmTest:
    """Set the alarm to ALARM (its actions run: the topic mails its subscribers), read the state
    back, then set it to OK. CloudWatch re-evaluates the alarm at its next period anyway, so a
    real condition shows again within minutes."""
    alarm = _describe_one(cw, name)
    reason = "collections alarms test: checking that the alarm notifies"
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=reason)
    during = _describe_one(cw, name)["StateValue"]
    cw.set_alarm_state(AlarmName=name, StateValue="OK", StateReason=f"{reason} (reset)")
    after = _describe_one(cw, name)["StateValue"]
    actions = sorted({*alarm.get("AlarmActions", []), *alarm.get("OKActions", [])})
    return AlarmTest(name, str(alarm["StateValue"]), str(during), str(after), actions)


def _describe_one(cw: Any, name: str) -> dict[str, Any]:
    alarms = cw.describe_alarms(AlarmNames=[name]).get("MetricAlarms", [])
    if not alarms:
        raise errors.NotFound(f"no alarm named {name}",
                              "list them with `collections alarms ENV`")
    return dict(alarms[0])


@dataclass(frozen=True)
class MetricSummary:
    function: str
    metric: str
    trend: str  # a sparkline of the period's values
    total: str  # the sum, or for Duration the maximum


def summarize(data: dict[str, dict[str, list[float | None]]]) -> list[MetricSummary]:
    """`show()`'s series as one line per function and metric."""
    rows = []
    for key, metrics in data.items():
        for metric, values in metrics.items():
            present = [v for v in values if v is not None]
            total = (f"{sum(present):g}" if metric != "Duration" else
                     f"{max(present):.0f} ms max" if present else "")
            rows.append(MetricSummary(key, metric, sparkline(values), total))
    return rows
