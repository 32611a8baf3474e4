"""`CollectionsMonitoringStack-<env>`: the guide's dashboard and error alarms, plus throttle,
duration-near-timeout and dead-letter queue depth alarms, for every function in the definition.
The alarms are the definition's (`pipeline.alarms`), rendered here; `alarms ensure` renders the
same ones for the local cloud.

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

import re

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from collections_ops import pipeline
from collections_ops.pipeline import alarms as definition_alarms
from stacks import nag
from stacks.settings import Deployment

PERIOD = cdk.Duration.seconds(pipeline.METRIC_PERIOD_S)
dashboard_name = pipeline.dashboard_name


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


# The construct id of each kind of alarm (it makes the alarm's logical id: keep it).
CONSTRUCT_IDS = {"errors": "Errors", "throttles": "Throttles", "duration": "Duration",
                 "dlq-depth": "DeadLetters"}


def _member(value: str) -> str:
    """CloudWatch's spelling (`GreaterThanThreshold`, `notBreaching`) as CDK's enum member."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", value).upper()


def alarm(scope: Construct, spec: definition_alarms.Alarm) -> cloudwatch.Alarm:
    """One of the definition's alarms as CloudFormation."""
    return cloudwatch.Alarm(
        scope, CONSTRUCT_IDS[spec.kind],
        alarm_name=spec.name,
        alarm_description=spec.description,
        metric=cloudwatch.Metric(
            namespace=spec.namespace, metric_name=spec.metric,
            dimensions_map=dict(spec.dimensions), statistic=spec.statistic,
            period=cdk.Duration.seconds(spec.period_s)),
        threshold=spec.threshold,
        comparison_operator=cloudwatch.ComparisonOperator[_member(spec.comparison)],
        evaluation_periods=spec.evaluation_periods,
        treat_missing_data=cloudwatch.TreatMissingData[_member(spec.treat_missing_data)],
    )


class FunctionAlarms(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, fn: pipeline.Function,
                 deployment: Deployment) -> None:
        super().__init__(scope, construct_id)
        self.specs = definition_alarms.function_alarms(deployment.settings, fn)
        self.by_kind = {spec.kind: alarm(self, spec) for spec in self.specs}

    @property
    def alarms(self) -> list[cloudwatch.Alarm]:
        return list(self.by_kind.values())


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
