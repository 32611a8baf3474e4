"""What the storage and monitoring stacks own that is also written outside CloudFormation: the
thumbnails bucket's lifecycle rule, the functions' alarms and the Lambda dashboard.

The alarms are the definition's (`pipeline.alarms`), rendered here as `put_metric_alarm`
calls as the monitoring stack renders them as CloudFormation. On AWS the stacks create them, and
the services compare with them (`services.drift`, `services.monitoring`) or put them back by
hand. The local cloud has no CloudFormation: its provisioning writes the same resources with the
same functions, so both sides agree on every rule, alarm and widget. Built from the definition
(`pipeline`) only, below the services and the local cloud alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from collections_ops import aws, errors
from collections_ops.pipeline import (
    ABORT_MULTIPART_UPLOAD_DAYS,
    FUNCTIONS,
    METRIC_PERIOD_S,
    PROJECT,
    THUMBNAIL_EXPIRY_RULE_ID,
    Environment,
    Function,
    alarm_prefix,
    dashboard_name,
)
from collections_ops.pipeline import alarms as definition_alarms

PERIOD_S = METRIC_PERIOD_S
DASHBOARD_START = "-PT3H"  # the stack's default_interval

# The guide's three Lambda metrics, with the statistic its dashboard.json gives each.
LAMBDA_METRICS: tuple[tuple[str, str], ...] = (
    ("Invocations", "Sum"), ("Errors", "Sum"), ("Duration", "Average"))

# A custom metric: upload -> embedding stored, in milliseconds, one value per item, dimension
# Environment=<env>. Nothing emits it yet: the embedder has to publish it (an EMF line on
# "Embedding stored"); until then the dashboard's latency widget stays empty.
E2E_NAMESPACE = "Collections"
E2E_METRIC = "EndToEndLatency"
E2E_STATS = ("p50", "p90", "Maximum")

THUMBNAIL_RULE_ID = THUMBNAIL_EXPIRY_RULE_ID


# --------------------------------------------------------------------------- dashboard


def _function_widget(fn: Function, env_name: str, region: str, y: int) -> dict[str, Any]:
    name = fn.function_name(env_name)
    metrics: list[list[Any]] = []
    for metric, stat in LAMBDA_METRICS:
        options: dict[str, Any] = {"stat": stat}
        if metric == "Duration":
            options["yAxis"] = "right"  # milliseconds next to counts
        metrics.append(["AWS/Lambda", metric, "FunctionName", name, options])
    return {"type": "metric", "x": 0, "y": y, "width": 24, "height": 6, "properties": {
        "view": "timeSeries", "title": f"{name} ({fn.stage})", "region": region,
        "metrics": metrics, "period": PERIOD_S, "yAxis": {}}}


def _dead_letter_widget(env_name: str, region: str, y: int) -> dict[str, Any]:
    metrics = [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName",
                fn.dlq_name(env_name), {"label": fn.dlq_name(env_name), "stat": "Maximum"}]
               for fn in FUNCTIONS]
    return {"type": "metric", "x": 0, "y": y, "width": 12, "height": 6, "properties": {
        "view": "timeSeries", "title": "Dead-letter queue depth", "region": region,
        "metrics": metrics, "period": PERIOD_S, "yAxis": {}}}


def _latency_widget(env_name: str, region: str, x: int, y: int) -> dict[str, Any]:
    metrics = [[E2E_NAMESPACE, E2E_METRIC, "Environment", env_name,
                {"stat": stat, "label": f"upload -> embedding {stat}"}] for stat in E2E_STATS]
    return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": {
        "view": "timeSeries", "title": "End-to-end latency (upload -> embedding stored)",
        "region": region, "metrics": metrics, "period": PERIOD_S, "yAxis": {}}}


def _alarm_widget(env: Environment, region: str, account: str, y: int) -> dict[str, Any]:
    arns = [f"arn:aws:cloudwatch:{region}:{account}:alarm:{name}"
            for name in (spec["AlarmName"] for spec in alarm_specs(env))]
    return {"type": "alarm", "x": 0, "y": y, "width": 24, "height": 3, "properties": {
        "title": "Alarms", "alarms": arns}}


def dashboard_body(env: Environment, region: str, *, account: str | None = None) -> dict[str, Any]:
    """The guide's dashboard.json, per function: Invocations and Errors (Sum), Duration (Average)
    on the right axis, as the monitoring stack draws them; then dead-letter queue depth and the
    end-to-end latency. With `account`, an alarm status widget too (it addresses alarms by ARN).
    """
    widgets = [_function_widget(fn, env.name, region, 6 * i) for i, fn in enumerate(FUNCTIONS)]
    y = 6 * len(FUNCTIONS)
    widgets += [_dead_letter_widget(env.name, region, y),
                _latency_widget(env.name, region, 12, y)]
    if account is not None:
        widgets.append(_alarm_widget(env, region, account, y + 6))
    return {"start": DASHBOARD_START, "widgets": widgets}


def put_dashboard(cw: Any, env: Environment, region: str, *,
                  account: str | None = None) -> str:
    """Create or replace the dashboard; returns its name."""
    name = dashboard_name(env.name)
    response = cw.put_dashboard(DashboardName=name, DashboardBody=json.dumps(
        dashboard_body(env, region, account=account)))
    problems = response.get("DashboardValidationMessages") or []
    if problems:
        raise errors.Failed(f"CloudWatch rejected parts of dashboard {name}: "
                            + "; ".join(str(p.get("Message")) for p in problems))
    return name


# --------------------------------------------------------------------------- alarms


def resource_tags(env_name: str) -> list[dict[str, str]]:
    return [{"Key": "environment", "Value": env_name}, {"Key": "project", "Value": PROJECT}]


def alarm_specs(env: Environment) -> list[dict[str, Any]]:
    """`put_metric_alarm` arguments for the definition's alarms (`pipeline.alarms`), tagged as
    the stack tags them."""
    return [{**alarm.properties(), "Tags": resource_tags(env.name)}
            for alarm in definition_alarms.alarms(env)]


def existing_alarms(cw: Any, env_name: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for page in cw.get_paginator("describe_alarms").paginate(
            AlarmNamePrefix=alarm_prefix(env_name), AlarmTypes=["MetricAlarm"]):
        for alarm in page.get("MetricAlarms", []):
            found[alarm["AlarmName"]] = alarm
    return found


def ensure_alarms(cw: Any, env: Environment, *, sns_topic_arn: str | None = None) -> list[str]:
    """Create or update every function's alarms; returns their names.

    With `sns_topic_arn` the topic is notified on ALARM and on the return to OK. Without it, the
    actions an alarm already has are kept, so re-running without `--email` does not silence it.
    """
    existing = existing_alarms(cw, env.name)
    names = []
    for spec in alarm_specs(env):
        current = existing.get(spec["AlarmName"], {})
        if sns_topic_arn is not None:
            alarm_actions = sorted({*current.get("AlarmActions", []), sns_topic_arn})
            ok_actions = sorted({*current.get("OKActions", []), sns_topic_arn})
        else:
            alarm_actions = list(current.get("AlarmActions", []))
            ok_actions = list(current.get("OKActions", []))
        cw.put_metric_alarm(**spec, ActionsEnabled=True, AlarmActions=alarm_actions,
                            OKActions=ok_actions)
        names.append(spec["AlarmName"])
    return names


# --------------------------------------------------------------------------- lifecycle


def expected_thumbnail_rule(env: Environment) -> dict[str, Any]:
    """The storage stack's thumbnail rule, in S3's API shape."""
    rule: dict[str, Any] = {
        "ID": THUMBNAIL_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_UPLOAD_DAYS},
    }
    if env.thumbnail_expiry_days:
        rule["Expiration"] = {"Days": env.thumbnail_expiry_days}
    return rule


@dataclass(frozen=True)
class LifecycleDrift:
    bucket: str
    rule_id: str
    expected_expiry_days: int | None
    deployed_expiry_days: int | None
    bucket_exists: bool
    rule_found: bool
    differences: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return self.bucket_exists and self.rule_found and not self.differences


def _scope(rule: dict[str, Any]) -> str:
    """'' when the rule covers the whole bucket; otherwise what narrows it."""
    if rule.get("Prefix"):  # the legacy top-level prefix
        return f"prefix {rule['Prefix']!r}"
    flt = rule.get("Filter") or {}
    narrowing = [f"{k} {v!r}" for k, v in flt.items() if k != "Prefix" or v]
    return ", ".join(narrowing)


def _differences(expected: dict[str, Any], deployed: dict[str, Any]) -> list[str]:
    found = []
    if deployed.get("Status") != "Enabled":
        found.append(f"rule is {deployed.get('Status', 'missing a status')}, not Enabled")
    want = (expected.get("Expiration") or {}).get("Days")
    have = (deployed.get("Expiration") or {}).get("Days")
    if want != have or set(deployed.get("Expiration") or {}) - {"Days"}:
        found.append(f"expiry: deployed {_days(have, deployed.get('Expiration'))}, "
                     f"definition says {_days(want, None)}")
    want_abort = expected["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
    have_abort = (deployed.get("AbortIncompleteMultipartUpload") or {}).get("DaysAfterInitiation")
    if want_abort != have_abort:
        found.append(f"incomplete multipart uploads: deployed {_days(have_abort, None)}, "
                     f"definition says {want_abort} days")
    scope = _scope(deployed)
    if scope:
        found.append(f"rule covers only part of the bucket ({scope}), not all of it")
    return found


def _days(days: int | None, expiration: dict[str, Any] | None) -> str:
    if days is not None:
        return f"{days} days"
    if expiration:
        return ", ".join(f"{k} {v}" for k, v in expiration.items())
    return "never"


def _deployed_rules(s3: Any, bucket: str) -> list[dict[str, Any]] | None:
    """The bucket's lifecycle rules; [] when it has none; None when the bucket does not exist."""
    try:
        return list(s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
    except Exception as exc:
        if aws.is_not_found(exc, *aws.NO_LIFECYCLE):
            return []
        if aws.is_not_found(exc, *aws.MISSING_BUCKET):
            return None
        raise


def lifecycle_drift(s3: Any, env: Environment, account: str) -> LifecycleDrift:
    """The thumbnails bucket's `ExpireThumbnails` rule against `thumbnail_expiry_days`."""
    bucket = env.thumbnails_bucket(account)
    expected = expected_thumbnail_rule(env)
    want = env.thumbnail_expiry_days or None
    rules = _deployed_rules(s3, bucket)
    if rules is None:
        return LifecycleDrift(bucket, THUMBNAIL_RULE_ID, want, None, False, False,
                              [f"bucket {bucket} does not exist"])
    deployed = next((r for r in rules if r.get("ID") == THUMBNAIL_RULE_ID), None)
    if deployed is None:
        return LifecycleDrift(bucket, THUMBNAIL_RULE_ID, want, None, True, False,
                              [f"no rule {THUMBNAIL_RULE_ID} on {bucket}"])
    have = (deployed.get("Expiration") or {}).get("Days")
    return LifecycleDrift(bucket, THUMBNAIL_RULE_ID, want, have, True, True,
                          _differences(expected, deployed))


def apply_lifecycle(s3: Any, env: Environment, account: str) -> LifecycleDrift:
    """Write the definition's thumbnail rule, keeping the bucket's other rules (S3 replaces the
    whole configuration on every put). Returns the state read back."""
    bucket = env.thumbnails_bucket(account)
    rules = _deployed_rules(s3, bucket)
    if rules is None:
        raise errors.NotReady(f"bucket {bucket} does not exist",
                              f"deploy the pipeline first: `collections deploy {env.name}`")
    others = [r for r in rules if r.get("ID") != THUMBNAIL_RULE_ID]
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [*others, expected_thumbnail_rule(env)]})
    return lifecycle_drift(s3, env, account)
