"""`CollectionsMonitoringStack-<env>`: the guide's dashboard and error alarms, plus dead-letter
queue depth and duration-near-timeout alarms, for every function in the definition.

Metrics are addressed by the names the definition gives functions and queues, so this stack
holds no cross-stack references: it can be deployed, changed or removed without touching the
pipeline.

Every alarm notifies the stack's own SNS topic (`collections-<env>-alarms`), subscribed from
the environment's `alarm_email` setting. Actions that live in the template survive stack
updates, which actions added by hand (or by an older `alarms ensure`) do not. The topic is not
KMS-encrypted: CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed
`aws/sns` key, and an alarm notification carries only alarm names and metric values.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from collections_ops import pipeline
from stacks import nag
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
        self.topic = self._alarm_topic(deployment)
        action = cloudwatch_actions.SnsAction(self.topic)
        for group in self.alarms.values():
            for alarm in group.alarms:
                alarm.add_alarm_action(action)

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

    def _alarm_topic(self, deployment: Deployment) -> sns.Topic:
        topic = sns.Topic(
            self, "AlarmTopic",
            topic_name=pipeline.alarm_topic_name(deployment.name),
            display_name=f"collections {deployment.name} alarms",
            enforce_ssl=True,
        )
        # The TLS-only policy replaces the topic's default one: allow this account's alarms.
        topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AlarmsOfThisEnvironmentPublish",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={
                "StringEquals": {"aws:SourceAccount": self.account},
                "ArnLike": {"aws:SourceArn": self.format_arn(
                    service="cloudwatch", resource="alarm",
                    resource_name=f"{pipeline.PROJECT}-{deployment.name}-*",
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)},
            },
        ))
        if deployment.settings.alarm_email:
            subscription = topic.add_subscription(subscriptions.EmailSubscription(
                deployment.settings.alarm_email))
            nag.acknowledge(
                subscription, "Serverless-SNSRedrivePolicy",
                "An email subscription: SNS retries delivery to the mail server by its own "
                "policy, and an undeliverable alarm notification is still visible as the alarm's "
                "state, its history and the topic's NumberOfNotificationsFailed metric.",
            )
        cdk.CfnOutput(self, "AlarmTopicArn", value=topic.topic_arn,
                      description="Every alarm of this environment notifies this topic")
        return topic
