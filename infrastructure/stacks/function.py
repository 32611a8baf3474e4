"""One deployed function: its Lambda, execution role, log group and -- for the pipeline's
event-driven functions -- its dead-letter queue, retained versions and `live` alias.

Everything is derived from one `pipeline.Function` and the environment's settings. The role is
least privilege: `ParameterStorePolicy` reads exactly the function's SSM parameters (the guide's
troubleshooting command reads that policy by name), the function reads only the images bucket
(s3:GetObject, and s3:ListBucket so that a missing key is a 404, not a 403), writes only the
thumbnails bucket, publishes only its own event source on the default bus, and sends only to
its own dead-letter queue. Published versions are retained (CloudFormation would otherwise
delete the previous one on every deploy, leaving `rollback` nothing to roll back to); the CLI
prunes those beyond the environment's `versions_to_keep`.

The operations function (trigger `invoke`) is called synchronously by the CLI and by the
deploy-time migration, so it has no dead-letter queue, alias or versions; in the `rds` mode it
reads the RDS-generated secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from collections_ops import pipeline
from collections_ops.pipeline import permissions, queues
from stacks import nag
from stacks import permissions as stack_permissions
from stacks.settings import ConfigurationError, Deployment

# SnapStart is offered for the Python runtimes from python3.12 on (the definition's runtime);
# CDK's own Runtime.PYTHON_3_12 says so, a Runtime built from the name must say it too.
RUNTIME = lambda_.Runtime(pipeline.RUNTIME, lambda_.RuntimeFamily.PYTHON,
                          supports_snap_start=True)

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


@dataclass(frozen=True)
class FunctionNetwork:
    """Where the functions run when the database is private (the `rds` database mode)."""

    vpc: ec2.IVpc
    security_group: ec2.ISecurityGroup


@dataclass(frozen=True)
class DatabaseAccess:
    """Database mode `rds`: the RDS-generated credentials secret, and the RDS Proxy endpoint
    when the environment connects through one."""

    secret: secretsmanager.ISecret
    proxy_endpoint: str | None = None
    # Function key -> the generated credentials of its own database role (migration 0005),
    # from which the operations function sets the role's password and writes its URL.
    role_secrets: dict[str, secretsmanager.ISecret] | None = None


class PipelineFunction(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, fn: pipeline.Function,
                 deployment: Deployment, network: FunctionNetwork | None = None,
                 database: DatabaseAccess | None = None) -> None:
        super().__init__(scope, construct_id)
        self.definition = fn
        settings = deployment.settings
        env_name = deployment.name
        # Called synchronously (the CLI, the deploy-time migration): no async failure path.
        self.invoked_directly = fn.trigger.kind == "invoke"
        self.snapstart = deployment.snapstart and not self.invoked_directly
        self.dead_letter_queue: sqs.Queue | None = (
            None if self.invoked_directly
            else self._dead_letter_queue(queues.dead_letter_queue(settings, fn)))

        self.log_group = logs.LogGroup(
            self, "LogGroup",
            log_group_name=fn.log_group(env_name),
            retention=log_retention(settings.log_retention_days),
            removal_policy=(cdk.RemovalPolicy.RETAIN if deployment.is_production
                            else cdk.RemovalPolicy.DESTROY),
        )

        in_vpc = network is not None or deployment.database_vpc is not None
        # The role's policies, from the definition: the inline ones rendered here, CDK's
        # default policy granted by the constructs (tracing, the on-failure destination) plus
        # what no construct grants.
        self.policies = permissions.role_policies(settings, fn, database=deployment.database,
                                                  in_vpc=in_vpc)
        filled = stack_permissions.values(
            self, log_group_arn=self.log_group.log_group_arn,
            **({"dlq_arn": self.dead_letter_queue.queue_arn}
               if self.dead_letter_queue is not None else {}))
        policies = {policy.name: stack_permissions.document(policy, filled)
                    for policy in self.policies if policy.inline}
        self.role = iam.Role(
            self, "Role",
            role_name=fn.role_name(env_name),
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=fn.role_description(env_name),
            inline_policies=policies,
        )

        environment = pipeline.common_env(
            settings, account=deployment.account_or_token,
            dlq_urls=({fn.key: self.dead_letter_queue.queue_url}
                      if self.dead_letter_queue is not None else None),
        )
        if database is not None and self.invoked_directly:
            # The operations function reads the RDS-generated secret: the first deploy needs
            # no hand-written DATABASE_URL (it writes that parameter for the pipeline).
            environment["DATABASE_SECRET_ARN"] = database.secret.secret_arn
            environment["DATABASE_URL_PARAMETER"] = settings.parameter_name("DATABASE_URL")
            if database.proxy_endpoint is not None:
                environment["DATABASE_HOST"] = database.proxy_endpoint
            database.secret.grant_read(self.role)
            role_secrets = database.role_secrets or {}
            if role_secrets:
                environment["DATABASE_ROLE_SECRETS"] = cdk.Stack.of(self).to_json_string(
                    {key: secret.secret_arn for key, secret in role_secrets.items()})
            for role_secret in role_secrets.values():
                role_secret.grant_read(self.role)

        # Retained: `rollback --function` needs the previous versions (aws-cdk#7636).
        version_options = (None if self.invoked_directly else lambda_.VersionOptions(
            removal_policy=cdk.RemovalPolicy.RETAIN))
        async_failures = self._async_failures(settings)
        self.function = lambda_.Function(
            self, "Function",
            function_name=fn.function_name(env_name),
            description=f"{fn.description} - {env_name}",
            runtime=RUNTIME,
            architecture=(lambda_.Architecture.ARM_64 if deployment.architecture == "arm64"
                          else lambda_.Architecture.X86_64),
            # SnapStart restores published versions only: the operations function, invoked
            # directly on $LATEST, would gain nothing (and cfn-lint W2530 says so).
            snap_start=(lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if self.snapstart
                        else None),
            handler=fn.handler,
            code=deployment.code.code_for(fn, env_name=env_name,
                                          architecture=deployment.architecture),
            timeout=cdk.Duration.seconds(settings.timeout(fn)),
            memory_size=settings.memory(fn),
            environment=environment,
            log_group=self.log_group,
            role=self.role,
            tracing=lambda_.Tracing.ACTIVE,
            reserved_concurrent_executions=settings.reserved_concurrency.get(fn.key),
            current_version_options=version_options,
            vpc=network.vpc if network else None,
            vpc_subnets=(ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
                         if network else None),
            security_groups=[network.security_group] if network else None,
            **async_failures,
        )
        placement = deployment.database_vpc
        if network is None and placement is not None:
            # An existing database inside the operator's VPC: ids only, so synth needs no
            # VPC lookup (and no credentials).
            cfn_function = self.function.node.default_child
            assert isinstance(cfn_function, lambda_.CfnFunction)
            cfn_function.vpc_config = lambda_.CfnFunction.VpcConfigProperty(
                subnet_ids=list(placement.subnet_ids),
                security_group_ids=list(placement.security_group_ids))
        for policy in self.policies:
            if not policy.inline:
                for added in policy.statements:
                    if added in permissions.ADDED_TO_DEFAULT_POLICY:
                        self.role.add_to_policy(stack_permissions.statement(added, filled))
            stack_permissions.acknowledge_wildcards(self, policy, filled)
        if self.snapstart:
            cdk.Annotations.of(self.function).acknowledge_warning(
                "@aws-cdk/aws-lambda:snapStartRequirePublish",
                "SnapStart applies to published versions: every deploy that changes the function "
                "publishes one (current_version) and the triggers invoke the `live` alias on it.")

        self.alias: lambda_.Alias | None = None
        if not self.invoked_directly:
            # Each deploy that changes the code or configuration publishes a version; the
            # triggers invoke the `live` alias, which an operator can move back.
            self.alias = lambda_.Alias(
                self, "LiveAlias",
                alias_name=pipeline.LIVE_ALIAS,
                version=self.function.current_version,
                description=fn.alias_description(env_name),
                **async_failures,
            )

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
            "failure twice." if not self.invoked_directly else
            "The operations function is only ever invoked synchronously (RequestResponse) by "
            "the operator's CLI and by CloudFormation's custom resource; the caller receives "
            "the error, so there is no asynchronous event that a dead-letter queue could keep.",
        )

    @property
    def target(self) -> lambda_.IFunction:
        """What a trigger invokes: the `live` alias (the function itself if it has none)."""
        return self.alias if self.alias is not None else self.function

    def _async_failures(self, settings: pipeline.Environment) -> dict[str, Any]:
        """The definition's EventInvokeConfig (for the function, $LATEST, and for `live`)."""
        if self.dead_letter_queue is None:
            return {}
        invocation = queues.async_invocation(settings, self.definition)
        return {"retry_attempts": invocation.retry_attempts,
                "max_event_age": cdk.Duration.seconds(invocation.max_event_age_s),
                "on_failure": destinations.SqsDestination(self.dead_letter_queue)}

    def _dead_letter_queue(self, spec: queues.Queue) -> sqs.Queue:
        # The statement letting a rule send here is CDK's (the rule target adds it).
        queue = sqs.Queue(
            self, "DeadLetterQueue",
            queue_name=spec.name,
            encryption=(sqs.QueueEncryption.SQS_MANAGED if spec.sqs_managed_sse
                        else sqs.QueueEncryption.UNENCRYPTED),
            enforce_ssl=spec.tls_only,
            retention_period=cdk.Duration.seconds(spec.retention_s),
            visibility_timeout=(cdk.Duration.seconds(spec.visibility_timeout_s)
                                if spec.visibility_timeout_s is not None else None),
        )
        nag.acknowledge(
            queue, "AwsSolutions-SQS3",
            "This queue is the dead-letter queue itself: it receives the function's failed "
            "async invocations (on-failure destination), its terminal errors and the events "
            "EventBridge could not deliver. Messages are kept 14 days for an operator to replay.",
        )
        nag.acknowledge(
            queue, "Serverless-SQSRedrivePolicy",
            "This queue is the end of the failure path (a dead-letter queue); nothing consumes "
            "it automatically, so a redrive policy to a further queue would only move the "
            "messages. Its depth is alarmed on in the monitoring stack.",
        )
        return queue
