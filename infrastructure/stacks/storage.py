"""Storage: the images bucket users upload to, the thumbnails bucket the processor writes to,
and the bucket both send their server access logs to.

Thumbnails live in a bucket of their own that has no notification, so a thumbnail can never
trigger the processor. The upload notification is written straight into the bucket's
CloudFormation (no custom resource); its Lambda permission names the bucket by its ARN built from
the definition's bucket name, which keeps the graph acyclic: bucket -> permission -> function.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from collections_ops import pipeline
from stacks.settings import Deployment

NONCURRENT_IMAGE_VERSION_DAYS = 90  # overwritten/deleted uploads stay recoverable this long
ACCESS_LOG_EXPIRY_DAYS = 365
ABORT_MULTIPART_UPLOAD_DAYS = pipeline.ABORT_MULTIPART_UPLOAD_DAYS


def _secure_bucket_props() -> dict[str, object]:
    return {
        "encryption": s3.BucketEncryption.S3_MANAGED,
        "block_public_access": s3.BlockPublicAccess.BLOCK_ALL,
        "object_ownership": s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        "enforce_ssl": True,
        "minimum_tls_version": 1.2,
    }


class PipelineStorage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment) -> None:
        super().__init__(scope, construct_id)
        settings = deployment.settings
        self._deployment = deployment

        # cdk-nag's S1 (server access logs) recognises a log target bucket and exempts it.
        self.access_logs_bucket = s3.Bucket(
            self, "AccessLogsBucket",
            **_secure_bucket_props(),  # type: ignore[arg-type]
            lifecycle_rules=[s3.LifecycleRule(
                id="ExpireAccessLogs",
                expiration=cdk.Duration.days(ACCESS_LOG_EXPIRY_DAYS),
                abort_incomplete_multipart_upload_after=cdk.Duration.days(
                    ABORT_MULTIPART_UPLOAD_DAYS),
            )],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

        self.images_bucket = s3.Bucket(
            self, "ImagesBucket",
            bucket_name=deployment.images_bucket_name,
            **_secure_bucket_props(),  # type: ignore[arg-type]
            versioned=True,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="images/",
            lifecycle_rules=[s3.LifecycleRule(
                id="ExpireReplacedUploads",
                noncurrent_version_expiration=cdk.Duration.days(NONCURRENT_IMAGE_VERSION_DAYS),
                abort_incomplete_multipart_upload_after=cdk.Duration.days(
                    ABORT_MULTIPART_UPLOAD_DAYS),
            )],
            # Uploads are user data: never deleted by a stack operation.
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

        thumbnail_rule = s3.LifecycleRule(
            id=pipeline.THUMBNAIL_EXPIRY_RULE_ID,
            expiration=(cdk.Duration.days(settings.thumbnail_expiry_days)
                        if settings.thumbnail_expiry_days else None),
            abort_incomplete_multipart_upload_after=cdk.Duration.days(
                ABORT_MULTIPART_UPLOAD_DAYS),
        )
        self.thumbnails_bucket = s3.Bucket(
            self, "ThumbnailsBucket",
            bucket_name=deployment.thumbnails_bucket_name,
            **_secure_bucket_props(),  # type: ignore[arg-type]
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="thumbnails/",
            lifecycle_rules=[thumbnail_rule],
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )

    def deliver_uploads_to(self, function: lambda_.IFunction) -> None:
        """S3 ObjectCreated on the images bucket invokes `function` (the image processor)."""
        stack = cdk.Stack.of(self)
        images_bucket_arn = stack.format_arn(
            service="s3", region="", account="", resource=self._deployment.images_bucket_name,
            arn_format=cdk.ArnFormat.NO_RESOURCE_NAME,
        )
        permission = lambda_.CfnPermission(
            self, "ImagesBucketInvokesProcessor",
            action="lambda:InvokeFunction",
            function_name=function.function_arn,
            principal="s3.amazonaws.com",
            source_arn=images_bucket_arn,
            # Bucket ARNs carry no account: pin the owner so no other account's bucket of the
            # same name could ever invoke the function.
            source_account=self._deployment.account_or_token,
        )
        cfn_bucket = self.images_bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        if cfn_bucket.notification_configuration is not None:
            raise ValueError("the images bucket already notifies a function; the definition "
                             "must have exactly one S3-triggered function")
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            lambda_configurations=[s3.CfnBucket.LambdaConfigurationProperty(
                event="s3:ObjectCreated:*", function=function.function_arn,
            )],
        )
        # S3 checks that it may invoke the function when the notification is put.
        cfn_bucket.node.add_dependency(permission)
