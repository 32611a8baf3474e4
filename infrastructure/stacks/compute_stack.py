"""`CollectionsComputeStack-<env>`: the pipeline itself -- buckets, the three functions, the
upload notification and the EventBridge rules -- built by looping over the definition.

Deploying this one stack (the guide's `cdk deploy CollectionsComputeStack-dev`) yields a working
pipeline; monitoring and the optional RDS database are stacks of their own.
"""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from collections_ops import pipeline
from stacks.event_rules import PipelineEventRule
from stacks.function import FunctionNetwork, PipelineFunction
from stacks.settings import Deployment
from stacks.storage import PipelineStorage


class ComputeStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment,
                 network: FunctionNetwork | None = None) -> None:
        super().__init__(
            scope, construct_id,
            stack_name=deployment.stack_name("Compute"),
            env=deployment.cdk_environment,
            description=f"collections image pipeline ({deployment.name}): storage, functions, "
                        "triggers",
        )
        self.deployment = deployment
        self.storage = PipelineStorage(self, "Storage", deployment=deployment)

        self.functions: dict[str, PipelineFunction] = {}
        for fn in pipeline.FUNCTIONS:
            # The construct id is the guide's (`ImageProcessorLambda`, ...).
            self.functions[fn.key] = PipelineFunction(
                self, fn.logical_id, fn=fn, deployment=deployment, network=network)

        self.rules: dict[str, PipelineEventRule] = {}
        for fn in pipeline.FUNCTIONS:
            target = self.functions[fn.key]
            if fn.trigger.kind == "s3":
                self.storage.deliver_uploads_to(target.alias)
            elif fn.trigger.kind == "eventbridge":
                assert fn.trigger.rule_id is not None
                self.rules[fn.key] = PipelineEventRule(
                    self, fn.trigger.rule_id, target=target, env_name=deployment.name)

        cdk.CfnOutput(self, "ImagesBucketName", value=self.storage.images_bucket.bucket_name,
                      description="Upload images here: s3://<bucket>/<user_id>/<name>.jpg")
        cdk.CfnOutput(self, "ThumbnailsBucketName",
                      value=self.storage.thumbnails_bucket.bucket_name)
