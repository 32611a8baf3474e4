"""`CollectionsMonitoringStack-<env>`: the guide's dashboard and error alarms, plus dead-letter
queue depth and duration-near-timeout alarms, for every function in the definition.

Metrics are addressed by the names the definition gives functions and queues, so this stack
holds no cross-stack references: it can be deployed, changed or removed without touching the
pipeline.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from collections_ops import pipeline
from stacks.settings import Deployment

PERIOD = cdk.Duration.seconds(pipeline.METRIC_PERIOD_S)
ERROR_THRESHOLD = pipeline.ERROR_ALARM_THRESHOLD
DURATION_ALARM_FRACTION = pipeline.DURATION_ALARM_FRACTION
dashboard_name = pipeline.dashboard_name
alarm_name = pipeline.alarm_name


def lambda_metric(fn: pipeline.Function, env_name: str, metric: str,
                  statistic: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/Lambda", metric_name=metric,
        dimensions_map={"FunctionName": fn.function_name(env_name)},
        statistic=statistic, period=PERIOD,
    )


def dlq_depth_metric(fn: pipeline.Function, env_name: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
        dimensions_map={"QueueName": fn.dlq_name(env_name)},
        statistic="Maximum", period=PERIOD,
    )


class FunctionAlarms(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, fn: pipeline.Function,
                 deployment: Deployment) -> None:
        super().__init__(scope, construct_id)
        env_name = deployment.name
        name = fn.function_name(env_name)
        timeout_ms = deployment.settings.timeout(fn) * 1000

        self.errors = cloudwatch.Alarm(
            self, "Errors",
            alarm_name=alarm_name(env_name, fn, "errors"),
            alarm_description=f"Alert when {name} has errors",
            metric=lambda_metric(fn, env_name, "Errors", "Sum"),
            threshold=ERROR_THRESHOLD,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.dead_letters = cloudwatch.Alarm(
            self, "DeadLetters",
            alarm_name=alarm_name(env_name, fn, "dlq-depth"),
            alarm_description=(f"Messages are waiting in {fn.dlq_name(env_name)}: "
                               f"events {name} could not process"),
            metric=dlq_depth_metric(fn, env_name),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.duration = cloudwatch.Alarm(
            self, "Duration",
            alarm_name=alarm_name(env_name, fn, "duration"),
            alarm_description=(f"{name} invocations take more than "
                               f"{int(DURATION_ALARM_FRACTION * 100)} % of the "
                               f"{timeout_ms // 1000} s timeout"),
            metric=lambda_metric(fn, env_name, "Duration", "Maximum"),
            threshold=int(timeout_ms * DURATION_ALARM_FRACTION),
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        return [self.errors, self.dead_letters, self.duration]


class MonitoringStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment) -> None:
        super().__init__(
            scope, construct_id,
            stack_name=deployment.stack_name("Monitoring"),
            env=deployment.cdk_environment,
            description=f"collections image pipeline ({deployment.name}): dashboard and alarms",
        )
        env_name = deployment.name
        self.alarms: dict[str, FunctionAlarms] = {
            fn.key: FunctionAlarms(self, f"{fn.logical_id}Alarms", fn=fn, deployment=deployment)
            for fn in pipeline.FUNCTIONS
        }

        dashboard = cloudwatch.Dashboard(
            self, "Dashboard",
            dashboard_name=dashboard_name(env_name),
            default_interval=cdk.Duration.hours(3),
        )
        for fn in pipeline.FUNCTIONS:
            dashboard.add_widgets(cloudwatch.GraphWidget(
                title=f"{fn.function_name(env_name)} ({fn.stage})",
                left=[lambda_metric(fn, env_name, "Invocations", "Sum"),
                      lambda_metric(fn, env_name, "Errors", "Sum")],
                right=[lambda_metric(fn, env_name, "Duration", "Average")],
                width=24,
            ))
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Dead-letter queue depth",
                left=[dlq_depth_metric(fn, env_name).with_(label=fn.dlq_name(env_name))
                      for fn in pipeline.FUNCTIONS],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(
                title="Alarms",
                alarms=[a for group in self.alarms.values() for a in group.alarms],
                width=12,
            ),
        )
