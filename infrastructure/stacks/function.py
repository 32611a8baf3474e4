"""One pipeline function: its Lambda, execution role, log group and dead-letter queue.

Everything is derived from one `pipeline.Function` and the environment's settings. The role is
least privilege: `ParameterStorePolicy` reads exactly the function's SSM parameters (the guide's
troubleshooting command reads that policy by name), the function reads only the images bucket,
writes only the thumbnails bucket, publishes only its own event source on the default bus, and
sends only to its own dead-letter queue.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from collections_ops import pipeline
from stacks import nag
from stacks.settings import ConfigurationError, Deployment

RUNTIME = lambda_.Runtime.PYTHON_3_12  # the guide's runtime; bundles are built for it
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = cdk.Duration.hours(6)
DLQ_RETENTION = cdk.Duration.days(14)  # SQS maximum: time for an operator to replay

_RETENTION_DAYS = {
    1: logs.RetentionDays.ONE_DAY, 3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS, 7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS, 90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS, 150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS, 365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS, 545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS, 1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS, 2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS, 2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS, 3653: logs.RetentionDays.TEN_YEARS,
}


def log_retention(days: int) -> logs.RetentionDays:
    try:
        return _RETENTION_DAYS[days]
    except KeyError:
        allowed = ", ".join(str(d) for d in _RETENTION_DAYS)
        raise ConfigurationError(
            f"log_retention_days={days} is not a CloudWatch Logs retention (use one of {allowed})"
        ) from None


def reads_images(fn: pipeline.Function) -> bool:
    """The processor is triggered by uploads; a function triggered by an event whose detail
    names the uploaded object (`bucket`, `original_key`) downloads it too."""
    explicit = getattr(fn, "reads_images", None)
    if explicit is not None:
        return bool(explicit)
    if fn.trigger.kind == "s3":
        return True
    event = fn.trigger.event
    return event is not None and {"bucket", "original_key"} <= set(event.required_detail)


def writes_thumbnails(fn: pipeline.Function) -> bool:
    """The function whose published event can name the thumbnail it wrote."""
    explicit = getattr(fn, "writes_thumbnails", None)
    if explicit is not None:
        return bool(explicit)
    published = fn.publishes
    return published is not None and "thumbnail_key" in (
        published.required_detail + published.optional_detail)


@dataclass(frozen=True)
class FunctionNetwork:
    """Where the functions run when the database is private (the `rds` database mode)."""

    vpc: ec2.IVpc
    security_group: ec2.ISecurityGroup


class PipelineFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, fn: pipeline.Function,
                 deployment: Deployment, network: FunctionNetwork | None = None) -> None:
        super().__init__(scope, construct_id)
        self.definition = fn
        settings = deployment.settings
        env_name = deployment.name

        self.dead_letter_queue = sqs.Queue(
            self, "DeadLetterQueue",
            queue_name=fn.dlq_name(env_name),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        nag.acknowledge(
            self.dead_letter_queue, "AwsSolutions-SQS3",
            "This queue is the dead-letter queue itself: it receives the function's failed "
            "async invocations (on-failure destination), its terminal errors and the events "
            "EventBridge could not deliver. Messages are kept 14 days for an operator to replay.",
        )
        nag.acknowledge(
            self.dead_letter_queue, "Serverless-SQSRedrivePolicy",
            "This queue is the end of the failure path (a dead-letter queue); nothing consumes "
            "it automatically, so a redrive policy to a further queue would only move the "
            "messages. Its depth is alarmed on in the monitoring stack.",
        )

        self.log_group = logs.LogGroup(
            self, "LogGroup",
            log_group_name=fn.log_group(env_name),
            retention=log_retention(settings.log_retention_days),
            removal_policy=(cdk.RemovalPolicy.RETAIN if deployment.is_production
                            else cdk.RemovalPolicy.DESTROY),
        )

        self.role = iam.Role(
            self, "Role",
            role_name=fn.role_name(env_name),
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {fn.function_name(env_name)}",
            inline_policies={
                "ParameterStorePolicy": self._parameter_store_policy(deployment),
                "LoggingPolicy": iam.PolicyDocument(statements=[iam.PolicyStatement(
                    sid="WriteOwnLogGroup",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[self.log_group.log_group_arn],
                )]),
                "PipelinePolicy": self._pipeline_policy(deployment),
            },
        )

        code_path = deployment.code.path_for(fn)
        deployment.code.check_architecture(fn, deployment.architecture)
        self.function = lambda_.Function(
            self, "Function",
            function_name=fn.function_name(env_name),
            description=f"{fn.description} - {env_name}",
            runtime=RUNTIME,
            architecture=(lambda_.Architecture.ARM_64 if deployment.architecture == "arm64"
                          else lambda_.Architecture.X86_64),
            snap_start=(lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if deployment.snapstart
                        else None),
            handler=fn.handler,
            code=lambda_.Code.from_asset(str(code_path), exclude=deployment.code.excludes),
            timeout=cdk.Duration.seconds(settings.timeout(fn)),
            memory_size=settings.memory(fn),
            environment=pipeline.common_env(
                settings, account=deployment.account_or_token,
                dlq_urls={fn.key: self.dead_letter_queue.queue_url},
            ),
            log_group=self.log_group,
            role=self.role,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=settings.reserved_concurrency.get(fn.key),
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            max_event_age=ASYNC_MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
            vpc=network.vpc if network else None,
            vpc_subnets=(ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
                         if network else None),
            security_groups=[network.security_group] if network else None,
        )
        if network is not None:
            self._allow_vpc_networking()
        if deployment.snapstart:
            cdk.Annotations.of(self.function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                "SnapStart applies to published versions: every deploy that changes the function "
                "publishes one (current_version) and the triggers invoke the `live` alias on it.")

        # Each deploy that changes the code or configuration publishes a version; the triggers
        # invoke the `live` alias, which an operator can move back to an earlier version.
        self.alias = lambda_.Alias(
            self, "LiveAlias",
            alias_name=pipeline.LIVE_ALIAS,
            version=self.function.current_version,
            description=f"What the triggers of {fn.function_name(env_name)} invoke",
            retry_attempts=ASYNC_RETRY_ATTEMPTS,
            max_event_age=ASYNC_MAX_EVENT_AGE,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
        )

        wildcard_reasons = [
            "X-Ray active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords do not "
            "support resource-level permissions, so AWS requires Resource '*'.",
        ]
        if network is not None:
            wildcard_reasons.append(
                "VPC attachment: ec2:CreateNetworkInterface/DescribeNetworkInterfaces/"
                "DeleteNetworkInterface (the actions of AWSLambdaVPCAccessExecutionRole) are "
                "not resource-scopable for Lambda's ENI management.")
        nag.acknowledge(self.role, "AwsSolutions-IAM5", " ".join(wildcard_reasons),
                        finding="Resource::*")
        runtime_reason = (
            f"The deployment guide fixes the runtime at {RUNTIME.name}, which AWS supports; the "
            "bundles (Pillow, psycopg binary wheels) are built for it. Moving to a newer runtime "
            "is a deliberate upgrade of the bundle build, not a drive-by change."
        )
        nag.acknowledge(self.function, "AwsSolutions-L1", runtime_reason)
        nag.acknowledge(self.function, "Serverless-LambdaLatestVersion", runtime_reason)
        nag.acknowledge(
            self.function, "Serverless-LambdaDLQ",
            "Failed async invocations go to the function's SQS dead-letter queue through an "
            "on-failure destination (EventInvokeConfig), which records the error and request "
            "context a DeadLetterConfig would drop; configuring both would deliver every "
            "failure twice.",
        )

    # -- policies --------------------------------------------------------------------------

    def _parameter_store_policy(self, deployment: Deployment) -> iam.PolicyDocument:
        fn = self.definition
        stack = cdk.Stack.of(self)
        parameter_arns = [
            stack.format_arn(
                service="ssm", resource="parameter",
                resource_name=pipeline.secret(name).parameter_name(
                    deployment.settings.parameter_prefix).lstrip("/"),
                arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
            )
            for name in fn.secrets
        ]
        any_key = stack.format_arn(service="kms", resource="key", resource_name="*",
                                   arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME)
        nag.acknowledge(
            self, "AwsSolutions-IAM5",
            "SecureString parameters are encrypted with the account's aws/ssm key, whose key id "
            "differs per account and is not known at synth time. kms:Decrypt is bounded by "
            "conditions instead: only through SSM in this region (kms:ViaService) and only for "
            "this function's own parameters (kms:EncryptionContext:PARAMETER_ARN).",
            finding=f"Resource::{nag.rendered(self, any_key)}",
        )
        return iam.PolicyDocument(statements=[
            iam.PolicyStatement(
                sid="ReadOwnParameters",
                actions=["ssm:GetParameter"],
                resources=parameter_arns,
            ),
            iam.PolicyStatement(
                sid="DecryptOwnParametersThroughSsm",
                actions=["kms:Decrypt"],
                resources=[any_key],
                conditions={"StringEquals": {
                    "kms:ViaService": f"ssm.{deployment.region}.amazonaws.com",
                    "kms:EncryptionContext:PARAMETER_ARN": parameter_arns,
                }},
            ),
        ])

    def _pipeline_policy(self, deployment: Deployment) -> iam.PolicyDocument:
        fn = self.definition
        stack = cdk.Stack.of(self)
        statements: list[iam.PolicyStatement] = []

        def objects(bucket_name: str) -> str:
            return stack.format_arn(service="s3", region="", account="", resource=bucket_name,
                                    resource_name="*", arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME)

        if reads_images(fn):
            images = objects(deployment.images_bucket_name)
            statements.append(iam.PolicyStatement(
                sid="ReadUploadedImages", actions=["s3:GetObject"], resources=[images]))
            nag.acknowledge(
                self, "AwsSolutions-IAM5",
                "Object keys are chosen by uploaders (<user_id>/<name>), so reading an upload "
                "needs every key of the images bucket; the grant is s3:GetObject on that one "
                "bucket only.",
                finding=f"Resource::{nag.rendered(self, images)}",
            )
        if writes_thumbnails(fn):
            thumbnails = objects(deployment.thumbnails_bucket_name)
            statements.append(iam.PolicyStatement(
                sid="WriteThumbnails", actions=["s3:PutObject"], resources=[thumbnails]))
            nag.acknowledge(
                self, "AwsSolutions-IAM5",
                "Thumbnail keys mirror the uploader's keys (<user_id>/<item_id>.jpg); the grant "
                "is s3:PutObject on the thumbnails bucket only, which has no notification.",
                finding=f"Resource::{nag.rendered(self, thumbnails)}",
            )
        if fn.publishes is not None:
            default_bus = stack.format_arn(service="events", resource="event-bus",
                                           resource_name="default",
                                           arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME)
            statements.append(iam.PolicyStatement(
                sid="PublishOwnEvents",
                actions=["events:PutEvents"],
                resources=[default_bus],
                conditions={"StringEquals": {
                    "events:source": fn.publishes.source,
                    "events:detail-type": fn.publishes.detail_type,
                }},
            ))
        statements.append(iam.PolicyStatement(
            sid="DeadLetterOwnFailures",
            actions=["sqs:SendMessage"],
            resources=[self.dead_letter_queue.queue_arn],
        ))
        return iam.PolicyDocument(statements=statements)

    def _allow_vpc_networking(self) -> None:
        self.role.add_to_policy(iam.PolicyStatement(
            sid="ManageFunctionNetworkInterfaces",
            actions=[
                "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeSubnets", "ec2:DeleteNetworkInterface",
                "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
            ],
            resources=["*"],
        ))

