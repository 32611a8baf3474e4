"""The guide's Monitoring and Cost Optimization sections against moto's server: the dashboard and
its metrics, the alarms with the guide's parameters, alarm states and the alarm test, the metric
view, and the drift of reserved concurrency and of the thumbnail lifecycle rule."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collections_ops import errors
from collections_ops.pipeline import FUNCTIONS, LOCAL_ACCOUNT, Function, environment
from collections_ops.services import drift, monitoring
from tests.moto_server import reset_moto

REGION = "us-east-1"
DEV = environment("dev")
# Environments ship unreserved (small accounts cannot reserve); an operator who reserves:
PROD = replace(environment("prod"), reserved_concurrency={"processor": 10, "analyzer": 5,
                                                          "embedder": 5})

Clients = Callable[[str], Any]


@pytest.fixture
def client(moto_endpoint: str) -> Clients:
    """boto3 clients on a freshly reset moto server."""
    import boto3

    reset_moto(moto_endpoint)
    session: Any = boto3.session.Session(region_name=REGION)
    made: dict[str, Any] = {}

    def make(service: str) -> Any:
        if service not in made:
            made[service] = session.client(service, endpoint_url=moto_endpoint)
        return made[service]

    return make


def alarms_by_name(cw: Any) -> dict[str, dict[str, Any]]:
    return {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}


# --------------------------------------------------------------------------- dashboard


def test_dashboard_has_the_guides_metrics_for_every_function(client: Clients) -> None:
    cw = client("cloudwatch")
    name = monitoring.put_dashboard(cw, DEV, REGION, account=LOCAL_ACCOUNT)
    assert name == "collections-dev-lambdas"
    body = json.loads(cw.get_dashboard(DashboardName=name)["DashboardBody"])

    metric_widgets = [w for w in body["widgets"] if w["type"] == "metric"]
    by_title = {w["properties"]["title"]: w["properties"] for w in metric_widgets}
    for fn in FUNCTIONS:
        props = by_title[f"{fn.function_name('dev')} ({fn.stage})"]
        assert props["region"] == REGION and props["period"] == 300
        assert props["metrics"] == [
            ["AWS/Lambda", "Invocations", "FunctionName", fn.function_name("dev"), {"stat": "Sum"}],
            ["AWS/Lambda", "Errors", "FunctionName", fn.function_name("dev"), {"stat": "Sum"}],
            ["AWS/Lambda", "Duration", "FunctionName", fn.function_name("dev"),
             {"stat": "Average", "yAxis": "right"}],
        ]


def test_dashboard_shows_dead_letter_depth_latency_and_alarms(client: Clients) -> None:
    cw = client("cloudwatch")
    monitoring.put_dashboard(cw, DEV, REGION, account=LOCAL_ACCOUNT)
    body = json.loads(cw.get_dashboard(DashboardName="collections-dev-lambdas")["DashboardBody"])
    props = {w["properties"]["title"]: w["properties"] for w in body["widgets"]}

    dlq = props["Dead-letter queue depth"]["metrics"]
    assert [(m[0], m[1], m[3], m[4]["stat"]) for m in dlq] == [
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", fn.dlq_name("dev"), "Maximum")
        for fn in FUNCTIONS]

    latency = props["End-to-end latency (upload -> embedding stored)"]["metrics"]
    assert {tuple(m[:4]) for m in latency} == {
        ("Collections", "EndToEndLatency", "Environment", "dev")}
    assert [m[4]["stat"] for m in latency] == ["p50", "p90", "Maximum"]

    assert props["Alarms"]["alarms"] == [
        f"arn:aws:cloudwatch:{REGION}:{LOCAL_ACCOUNT}:alarm:collections-dev-{fn.key}-{kind}"
        for fn in FUNCTIONS for kind in ("errors", "throttles", "duration", "dlq-depth")]


def test_dashboard_without_an_account_leaves_out_the_alarm_widget() -> None:
    body = monitoring.dashboard_body(PROD, "eu-west-1")
    assert [w["type"] for w in body["widgets"]] == ["metric"] * 5
    assert {w["properties"]["region"] for w in body["widgets"]} == {"eu-west-1"}
    assert "collections-prod-EmbedderLambda" in json.dumps(body)


# --------------------------------------------------------------------------- alarms


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda fn: fn.key)
def test_error_alarm_is_the_guides(client: Clients, fn: Function) -> None:
    cw = client("cloudwatch")
    monitoring.ensure_alarms(cw, DEV)
    alarm = alarms_by_name(cw)[f"collections-dev-{fn.key}-errors"]
    assert {k: alarm[k] for k in ("MetricName", "Namespace", "Statistic", "Period", "Threshold",
                                  "ComparisonOperator", "EvaluationPeriods")} == {
        "MetricName": "Errors", "Namespace": "AWS/Lambda", "Statistic": "Sum", "Period": 300,
        "Threshold": 5, "ComparisonOperator": "GreaterThanThreshold", "EvaluationPeriods": 1}
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": fn.function_name("dev")}]
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda fn: fn.key)
def test_throttle_duration_and_dead_letter_alarms(client: Clients, fn: Function) -> None:
    cw = client("cloudwatch")
    monitoring.ensure_alarms(cw, DEV)
    alarms = alarms_by_name(cw)

    throttles = alarms[f"collections-dev-{fn.key}-throttles"]
    assert (throttles["MetricName"], throttles["Statistic"], throttles["Threshold"],
            throttles["ComparisonOperator"]) == ("Throttles", "Sum", 0, "GreaterThanThreshold")

    duration = alarms[f"collections-dev-{fn.key}-duration"]
    assert (duration["MetricName"], duration["Statistic"]) == ("Duration", "Maximum")
    assert duration["Threshold"] == DEV.timeout(fn) * 1000 * monitoring.DURATION_ALARM_FRACTION
    assert duration["Dimensions"] == [{"Name": "FunctionName",
                                       "Value": fn.function_name("dev")}]

    dlq = alarms[f"collections-dev-{fn.key}-dlq-depth"]
    assert (dlq["Namespace"], dlq["MetricName"], dlq["Statistic"]) == (
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum")
    assert dlq["Dimensions"] == [{"Name": "QueueName", "Value": fn.dlq_name("dev")}]
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_alarms_are_per_environment_and_idempotent(client: Clients) -> None:
    cw = client("cloudwatch")
    names = monitoring.ensure_alarms(cw, DEV)
    assert monitoring.ensure_alarms(cw, DEV) == names
    monitoring.ensure_alarms(cw, PROD)
    alarms = alarms_by_name(cw)
    assert len(alarms) == 2 * 4 * len(FUNCTIONS)
    assert [a.name for a in monitoring.list_alarms(cw, DEV)] == sorted(names)


def test_email_topic_notifies_and_a_rerun_without_it_keeps_the_actions(client: Clients) -> None:
    cw, sns = client("cloudwatch"), client("sns")
    note = monitoring.notification_topic(sns, DEV, "ops@example.com")
    assert note.topic_arn.endswith(":collections-dev-alarms")
    subs = sns.list_subscriptions_by_topic(TopicArn=note.topic_arn)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", "ops@example.com")]
    # Subscribing again neither fails nor adds a second subscription.
    monitoring.notification_topic(sns, DEV, "ops@example.com")
    assert len(sns.list_subscriptions_by_topic(TopicArn=note.topic_arn)["Subscriptions"]) == 1

    monitoring.ensure_alarms(cw, DEV, sns_topic_arn=note.topic_arn)
    monitoring.ensure_alarms(cw, DEV)
    for alarm in alarms_by_name(cw).values():
        assert alarm["AlarmActions"] == [note.topic_arn]
        assert alarm["OKActions"] == [note.topic_arn]
    assert all(a.actions == [note.topic_arn] for a in monitoring.list_alarms(cw, DEV))


def test_an_address_without_at_is_refused(client: Clients) -> None:
    with pytest.raises(errors.UsageError):
        monitoring.notification_topic(client("sns"), DEV, "ops.example.com")


def test_list_shows_state_with_firing_alarms_first(client: Clients) -> None:
    cw = client("cloudwatch")
    monitoring.ensure_alarms(cw, DEV)
    cw.set_alarm_state(AlarmName="collections-dev-embedder-dlq-depth", StateValue="ALARM",
                       StateReason="3 messages waiting")
    listed = monitoring.list_alarms(cw, DEV)
    first = listed[0]
    assert (first.name, first.state, first.reason) == (
        "collections-dev-embedder-dlq-depth", "ALARM", "3 messages waiting")
    assert first.condition == "Maximum ApproximateNumberOfMessagesVisible > 0"
    assert first.updated is not None
    assert {a.state for a in listed[1:]} == {"OK"}
    errors_alarm = next(a for a in listed if a.name == "collections-dev-analyzer-errors")
    assert errors_alarm.condition == "Sum Errors > 5"


def test_alarm_test_flips_to_alarm_and_back(client: Clients) -> None:
    cw, sns = client("cloudwatch"), client("sns")
    topic = monitoring.notification_topic(sns, DEV, "ops@example.com").topic_arn
    monitoring.ensure_alarms(cw, DEV, sns_topic_arn=topic)
    result = monitoring.test_alarm(cw, "collections-dev-analyzer-errors")
    assert (result.before, result.during, result.after) == ("OK", "ALARM", "OK")
    assert result.fired
    assert result.actions == [topic]
    assert alarms_by_name(cw)["collections-dev-analyzer-errors"]["StateValue"] == "OK"


def test_testing_an_unknown_alarm_is_not_found(client: Clients) -> None:
    with pytest.raises(errors.NotFound):
        monitoring.test_alarm(client("cloudwatch"), "collections-dev-nothing-errors")


# --------------------------------------------------------------------------- show


def test_show_reads_each_functions_metrics_into_periods(client: Clients) -> None:
    cw = client("cloudwatch")
    now = datetime(2030, 1, 1, 12, 2, 30, tzinfo=UTC)  # periods end at 12:00
    name = FUNCTIONS[0].function_name("dev")

    def put(metric: str, minutes_ago: int, value: float) -> None:
        cw.put_metric_data(Namespace="AWS/Lambda", MetricData=[{
            "MetricName": metric, "Dimensions": [{"Name": "FunctionName", "Value": name}],
            "Timestamp": datetime(2030, 1, 1, 12, 0, tzinfo=UTC) - timedelta(minutes=minutes_ago),
            "Value": value}])

    put("Invocations", 58, 2)  # 11:02 -> the first of twelve 5-minute periods
    put("Invocations", 57, 1)
    put("Invocations", 3, 7)  # 11:57 -> the last
    put("Errors", 3, 1)
    put("Duration", 3, 200)
    put("Duration", 3, 400)

    series = monitoring.show(cw, DEV, hours=1, period=300, now=now)
    assert set(series) == {fn.key for fn in FUNCTIONS}
    processor = series[FUNCTIONS[0].key]
    assert processor["Invocations"] == [3.0] + [0.0] * 10 + [7.0]
    assert processor["Errors"] == [0.0] * 11 + [1.0]
    assert processor["Duration"] == [None] * 11 + [300.0]
    assert series["embedder"]["Invocations"] == [0.0] * 12
    assert monitoring.sparkline(processor["Invocations"]) == "▄" + "▁" * 10 + "█"  # 3 of 7: the 4th of 8 steps


def test_show_refuses_a_period_cloudwatch_cannot_serve(client: Clients) -> None:
    with pytest.raises(errors.UsageError):
        monitoring.show(client("cloudwatch"), DEV, hours=1, period=90)


@pytest.mark.parametrize(("values", "line"), [
    ([0, 1, 2, 3, 4, 5, 6, 7], "▁▂▃▄▅▆▇█"),
    ([5, None, 5], "▄ ▄"),
    ([0, 0], "▁▁"),
    ([None, None], "  "),
    ([], ""),
    ([10, 0, 5], "█▁▅"),
])
def test_sparkline(values: list[float | None], line: str) -> None:
    assert monitoring.sparkline(values) == line


# --------------------------------------------------------------------------- concurrency


def deploy_functions(client: Clients, env_name: str, *, reserved: dict[str, int]) -> None:
    iam, lam = client("iam"), client("lambda")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("handler.py", "def handler(event, context):\n    return {}\n")
    for fn in FUNCTIONS:
        role = iam.create_role(RoleName=fn.role_name(env_name), AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}))
        lam.create_function(FunctionName=fn.function_name(env_name), Runtime="python3.12",
                            Role=role["Role"]["Arn"], Handler="handler.handler",
                            Code={"ZipFile": buf.getvalue()})
        if fn.key in reserved:
            lam.put_function_concurrency(FunctionName=fn.function_name(env_name),
                                         ReservedConcurrentExecutions=reserved[fn.key])


def test_concurrency_as_deployed_by_the_definition_is_in_sync(client: Clients) -> None:
    deploy_functions(client, "prod", reserved=PROD.reserved_concurrency)
    report = drift.concurrency_drift(client("lambda"), PROD)
    assert [(d.key, d.expected, d.deployed, d.in_sync) for d in report] == [
        ("processor", 10, 10, True), ("analyzer", 5, 5, True), ("embedder", 5, 5, True)]


def test_concurrency_drift_names_what_differs_and_set_fixes_it(client: Clients) -> None:
    deploy_functions(client, "prod", reserved={"processor": 10, "analyzer": 50})
    lam = client("lambda")
    report = {d.key: d for d in drift.concurrency_drift(lam, PROD)}
    assert report["processor"].in_sync
    assert report["analyzer"].detail == "deployed 50 reserved, definition says 5 reserved"
    assert report["embedder"].detail == "deployed unreserved, definition says 5 reserved"

    fixed = drift.set_concurrency(lam, PROD, FUNCTIONS[1], 5)
    assert fixed.in_sync and fixed.deployed == 5
    braked = drift.set_concurrency(lam, PROD, FUNCTIONS[0], 0)  # 0 stops the function
    assert (braked.deployed, braked.in_sync) == (0, False)
    released = drift.set_concurrency(lam, PROD, FUNCTIONS[0], None)
    assert (released.deployed, released.expected) == (None, 10)


def test_unreserved_environment_is_in_sync_when_nothing_is_reserved(client: Clients) -> None:
    deploy_functions(client, "dev", reserved={})
    assert all(d.in_sync and d.detail == "unreserved"
               for d in drift.concurrency_drift(client("lambda"), DEV))


def test_concurrency_of_missing_functions(client: Clients) -> None:
    lam = client("lambda")
    assert [d.exists for d in drift.concurrency_drift(lam, DEV)] == [False] * 3
    assert not drift.concurrency_drift(lam, DEV)[0].in_sync
    with pytest.raises(errors.NotFound):
        drift.set_concurrency(lam, DEV, FUNCTIONS[0], 3)
    with pytest.raises(errors.UsageError):
        drift.set_concurrency(lam, DEV, FUNCTIONS[0], -1)


# --------------------------------------------------------------------------- lifecycle


def test_missing_rule_is_drift_and_apply_writes_the_storage_stacks_rule(client: Clients) -> None:
    s3 = client("s3")
    bucket = DEV.thumbnails_bucket(LOCAL_ACCOUNT)
    s3.create_bucket(Bucket=bucket)
    before = drift.lifecycle_drift(s3, DEV, LOCAL_ACCOUNT)
    assert (before.bucket, before.rule_found, before.in_sync) == (bucket, False, False)

    after = drift.apply_lifecycle(s3, DEV, LOCAL_ACCOUNT)
    assert after.in_sync and after.deployed_expiry_days == 30
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["ID"] == "ExpireThumbnails" and rule["Status"] == "Enabled"
    assert rule["Expiration"] == {"Days": DEV.thumbnail_expiry_days}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rule["Filter"] in ({}, {"Prefix": ""})  # the whole bucket


def test_lifecycle_drift_reports_each_difference(client: Clients) -> None:
    s3 = client("s3")
    bucket = PROD.thumbnails_bucket(LOCAL_ACCOUNT)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
        "ID": "ExpireThumbnails", "Status": "Enabled", "Filter": {"Prefix": "user123/"},
        "Expiration": {"Days": 30}}]})
    report = drift.lifecycle_drift(s3, PROD, LOCAL_ACCOUNT)
    assert (report.expected_expiry_days, report.deployed_expiry_days) == (365, 30)
    assert report.differences == [
        "expiry: deployed 30 days, definition says 365 days",
        "incomplete multipart uploads: deployed never, definition says 7 days",
        "rule covers only part of the bucket (Prefix 'user123/'), not all of it",
    ]


def test_apply_keeps_the_buckets_other_rules(client: Clients) -> None:
    s3 = client("s3")
    bucket = PROD.thumbnails_bucket(LOCAL_ACCOUNT)
    s3.create_bucket(Bucket=bucket)
    other = {"ID": "SomeoneElses", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
             "Expiration": {"Days": 1}}
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        other, {"ID": "ExpireThumbnails", "Status": "Disabled", "Filter": {"Prefix": ""},
                "Expiration": {"Days": 30}}]})
    assert drift.apply_lifecycle(s3, PROD, LOCAL_ACCOUNT).in_sync
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"SomeoneElses", "ExpireThumbnails"}
    assert rules["SomeoneElses"]["Expiration"] == {"Days": 1}
    assert rules["ExpireThumbnails"]["Expiration"] == {"Days": 365}


def test_local_has_no_expiry_only_the_multipart_cleanup(client: Clients) -> None:
    s3 = client("s3")
    local = environment("local")
    s3.create_bucket(Bucket=local.thumbnails_bucket(LOCAL_ACCOUNT))
    report = drift.apply_lifecycle(s3, local, LOCAL_ACCOUNT)
    assert report.in_sync and report.expected_expiry_days is None
    (rule,) = s3.get_bucket_lifecycle_configuration(
        Bucket=local.thumbnails_bucket(LOCAL_ACCOUNT))["Rules"]
    assert "Expiration" not in rule


def test_lifecycle_of_a_missing_bucket(client: Clients) -> None:
    s3 = client("s3")
    report = drift.lifecycle_drift(s3, DEV, LOCAL_ACCOUNT)
    assert not report.bucket_exists and not report.in_sync
    with pytest.raises(errors.NotReady):
        drift.apply_lifecycle(s3, DEV, LOCAL_ACCOUNT)


# --------------------------------------------------------------- alarms owned by the stack


def test_on_aws_ensure_writes_no_alarm_and_subscribes_to_the_stacks_topic(
        client: Clients) -> None:
    # GIVEN what the monitoring stack deployed: its topic, and alarms whose action it is
    cw, sns = client("cloudwatch"), client("sns")
    topic = sns.create_topic(Name="collections-dev-alarms")["TopicArn"]
    monitoring.ensure_alarms(cw, DEV, sns_topic_arn=topic)  # stands in for the stack
    before = alarms_by_name(cw)
    # WHEN the operator asks for notifications by e-mail, twice
    names, note = monitoring.stack_alarms(cw, sns, DEV, email="ops@example.com")
    monitoring.stack_alarms(cw, sns, DEV, email="ops@example.com")
    # THEN the address is subscribed once to the stack's own topic, and no alarm was written
    assert note is not None and note.topic_arn == topic
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", "ops@example.com")]
    assert names == sorted(before)
    assert alarms_by_name(cw) == before
    assert [t["TopicArn"] for t in sns.list_topics()["Topics"]] == [topic]


def test_on_aws_without_the_monitoring_stack_ensure_says_to_deploy(client: Clients) -> None:
    with pytest.raises(errors.NotReady, match="collections-dev-alarms does not exist") as info:
        monitoring.stack_alarms(client("cloudwatch"), client("sns"), DEV)
    assert info.value.hint == "collections deploy dev"
