"""`CollectionsMonitoringStack-<env>`: the guide's dashboard and alarms, per function."""

from __future__ import annotations

import json

import pytest

from collections_ops import pipeline as definition
from collections_ops.pipeline import alarms
from collections_ops.services import monitoring
from tests.infra import templates as t
from tests.infra.support import SynthesizedApp
from tests.moto_server import reset_moto

AWS_ENVIRONMENTS = [e.name for e in definition.ENVIRONMENTS.values() if not e.is_local]


@pytest.fixture(params=AWS_ENVIRONMENTS)
def env_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _alarm(template: t.Template, name: str) -> dict[str, object]:
    return dict(t.the(template, "AWS::CloudWatch::Alarm", AlarmName=name)[1]["Properties"])


@pytest.mark.parametrize("fn", definition.FUNCTIONS, ids=lambda fn: fn.key)
def test_error_alarm_is_the_guides(existing_db_app: SynthesizedApp, env_name: str,
                                   fn: definition.Function) -> None:
    template = existing_db_app.template_json(env_name, "Monitoring")
    alarm = _alarm(template, f"collections-{env_name}-{fn.key}-errors")
    assert {k: alarm[k] for k in ("MetricName", "Namespace", "Statistic", "Period", "Threshold",
                                  "ComparisonOperator", "EvaluationPeriods")} == {
        "MetricName": "Errors", "Namespace": "AWS/Lambda", "Statistic": "Sum", "Period": 300,
        "Threshold": 5, "ComparisonOperator": "GreaterThanThreshold", "EvaluationPeriods": 1,
    }
    assert alarm["Dimensions"] == [{"Name": "FunctionName",
                                    "Value": fn.function_name(env_name)}]


@pytest.mark.parametrize("fn", definition.FUNCTIONS, ids=lambda fn: fn.key)
def test_dead_letter_queue_depth_alarm(existing_db_app: SynthesizedApp, env_name: str,
                                       fn: definition.Function) -> None:
    template = existing_db_app.template_json(env_name, "Monitoring")
    alarm = _alarm(template, f"collections-{env_name}-{fn.key}-dlq-depth")
    assert alarm["Namespace"] == "AWS/SQS"
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": fn.dlq_name(env_name)}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


@pytest.mark.parametrize("fn", definition.FUNCTIONS, ids=lambda fn: fn.key)
def test_duration_alarm_fires_before_the_timeout(existing_db_app: SynthesizedApp, env_name: str,
                                                 fn: definition.Function) -> None:
    timeout_ms = definition.environment(env_name).timeout(fn) * 1000
    template = existing_db_app.template_json(env_name, "Monitoring")
    alarm = _alarm(template, f"collections-{env_name}-{fn.key}-duration")
    assert alarm["MetricName"] == "Duration"
    assert alarm["Dimensions"] == [{"Name": "FunctionName",
                                    "Value": fn.function_name(env_name)}]
    threshold = alarm["Threshold"]
    assert isinstance(threshold, int | float)
    assert 0.5 * timeout_ms <= threshold < timeout_ms


def test_dashboard_shows_every_function_and_dead_letter_queue(existing_db_app: SynthesizedApp,
                                                             env_name: str) -> None:
    template = existing_db_app.template_json(env_name, "Monitoring")
    (dashboard,) = t.resources(template, "AWS::CloudWatch::Dashboard").values()
    assert dashboard["Properties"]["DashboardName"] == f"collections-{env_name}-lambdas"
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    for fn in definition.FUNCTIONS:
        for metric in ("Invocations", "Errors", "Duration"):
            assert f'\\"AWS/Lambda\\",\\"{metric}\\",\\"FunctionName\\",' \
                   f'\\"{fn.function_name(env_name)}\\"' in body
        assert fn.dlq_name(env_name) in body


def test_monitoring_needs_no_cross_stack_references(existing_db_app: SynthesizedApp,
                                                    env_name: str) -> None:
    body = json.dumps(existing_db_app.template_json(env_name, "Monitoring"))
    assert "Fn::ImportValue" not in body
    assert "Fn::GetStackOutput" not in body


def test_the_template_and_alarms_ensure_carry_the_definitions_alarms(
        existing_db_app: SynthesizedApp, env_name: str, moto_endpoint: str) -> None:
    import boto3

    env = definition.environment(env_name)
    specs = alarms.alarms(env)
    # GIVEN the environment's monitoring template
    template = existing_db_app.template_json(env_name, "Monitoring")
    synthesized = {props["AlarmName"]: props for props in
                   (r["Properties"] for r in t.resources(template, "AWS::CloudWatch::Alarm")
                    .values())}
    # WHEN `alarms ensure` writes the environment's alarms (to moto, as the local cloud does)
    reset_moto(moto_endpoint)
    cw = boto3.client("cloudwatch", region_name=env.region, endpoint_url=moto_endpoint)
    ensured = monitoring.ensure_alarms(cw, env)
    written = {a["AlarmName"]: a for a in cw.describe_alarms()["MetricAlarms"]}
    # THEN both are exactly the definition's alarms, property for property
    names = {spec.name for spec in specs}
    assert set(synthesized) == names
    assert set(ensured) == set(written) == names
    for spec in specs:
        wanted = spec.properties()
        assert {k: synthesized[spec.name].get(k) for k in wanted} == wanted, spec.name
        assert {k: written[spec.name].get(k) for k in wanted} == wanted, spec.name
    # AND every alarm of the template notifies the stack's topic
    assert all(props["AlarmActions"] for props in synthesized.values())
