"""`CollectionsComputeStack-<env>`: the pipeline itself -- buckets, the three functions, the
upload notification and the EventBridge rules -- built by looping over the definition, plus the
operations function and the deploy-time schema migration it runs.

Deploying this one stack (the guide's `cdk deploy CollectionsComputeStack-dev`) yields a working
pipeline; monitoring and the optional RDS database are stacks of their own.
"""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from collections_ops import pipeline
from collections_ops.pipeline import rules
from stacks.event_rules import PipelineEventRule
from stacks.function import DatabaseAccess, FunctionNetwork, PipelineFunction
from stacks.migration import SchemaMigration
from stacks.settings import Deployment
from stacks.storage import PipelineStorage


class ComputeStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment,
                 network: FunctionNetwork | None = None,
                 database: DatabaseAccess | None = None,
                 database_endpoint: str | None = None) -> None:
        super().__init__(
            scope, construct_id,
            stack_name=deployment.stack_name("Compute"),
            env=deployment.cdk_environment,
            description=f"collections image pipeline ({deployment.name}): storage, functions, "
                        "triggers",
        )
        # What this stack takes from the database stack (subnets, security group, secret,
        # endpoints) is imported from that stack's exports, not read by name when it deploys
        # (the app's default, Fn::GetStackOutput): CloudFormation then knows the one depends
        # on the other -- an exported value cannot change or vanish under the functions, and
        # the database stack cannot be deleted while this one still uses it. Set before any
        # child exists (it is this scope's context).
        cdk.CrossStackReferences.of(self).consume(cdk.ReferenceStrength.STRONG)
        self.deployment = deployment
        self.storage = PipelineStorage(self, "Storage", deployment=deployment)

        self.functions: dict[str, PipelineFunction] = {}
        for fn in pipeline.FUNCTIONS:
            # The construct id is the guide's (`ImageProcessorLambda`, ...).
            self.functions[fn.key] = PipelineFunction(
                self, fn.logical_id, fn=fn, deployment=deployment, network=network)

        operations = pipeline.OPERATIONS
        self.operations = PipelineFunction(self, operations.logical_id, fn=operations,
                                           deployment=deployment, network=network,
                                           database=database)
        self.migration = SchemaMigration(self, "SchemaMigration", operations=self.operations,
                                         database=database_endpoint,
                                         timeout_s=deployment.settings.timeout(operations))
        for function in self.functions.values():
            if function.alias is not None:
                function.alias.node.add_dependency(self.migration)

        self.rules: dict[str, PipelineEventRule] = {}
        for fn in pipeline.FUNCTIONS:
            target = self.functions[fn.key]
            if fn.trigger.kind == "s3":
                self.storage.deliver_uploads_to(target.target)
        for spec in rules.rules(deployment.settings):
            self.rules[spec.function] = PipelineEventRule(
                self, spec.rule_id, target=self.functions[spec.function], spec=spec)

        cdk.CfnOutput(self, "ImagesBucketName", value=self.storage.images_bucket.bucket_name,
                      description="Upload images here: s3://<bucket>/<user_id>/<name>.jpg")
        cdk.CfnOutput(self, "ThumbnailsBucketName",
                      value=self.storage.thumbnails_bucket.bucket_name)
        cdk.CfnOutput(self, "OperationsFunctionName",
                      value=self.operations.function.function_name,
                      description="Invoked by the CLI's database commands when the database is "
                                  "private: {\"action\": \"migrate\"|\"status\"|\"query\"}")
