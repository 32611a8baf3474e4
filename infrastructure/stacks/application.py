"""Composition root of the CDK app: for every environment in the definition, the stacks it
needs, with cdk-nag attached once to the whole app."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk

from collections_ops import pipeline
from stacks import nag
from stacks.compute_stack import ComputeStack
from stacks.database_stack import DatabaseStack
from stacks.monitoring_stack import MonitoringStack
from stacks.settings import Deployment, deployments

UNTAGGABLE_RESOURCE_TYPES = ["AWS::RDS::DBProxyTargetGroup"]


@dataclass(frozen=True)
class EnvironmentStacks:
    deployment: Deployment
    compute: ComputeStack
    monitoring: MonitoringStack
    database: DatabaseStack | None

    @property
    def all(self) -> list[cdk.Stack]:
        stacks: list[cdk.Stack] = [self.compute, self.monitoring]
        return [self.database, *stacks] if self.database else stacks


def build(app: cdk.App) -> dict[str, EnvironmentStacks]:
    nag.add_rule_packs(app)
    built: dict[str, EnvironmentStacks] = {}
    for deployment in deployments(app.node):
        database = None
        if deployment.database == "rds":
            database = DatabaseStack(app, deployment.stack_name("Database"),
                                     deployment=deployment)
        compute = ComputeStack(app, deployment.stack_name("Compute"), deployment=deployment,
                               network=database.network if database else None,
                               database=database.access if database else None,
                               database_endpoint=(database.connection_endpoint if database
                                                  else None))
        monitoring = MonitoringStack(app, deployment.stack_name("Monitoring"),
                                     deployment=deployment)
        # Names, not references, connect them: the order only keeps alarms from pointing at
        # functions that do not exist yet.
        monitoring.add_stack_dependency(compute)
        stacks = EnvironmentStacks(deployment, compute, monitoring, database)
        for stack in stacks.all:
            for key, value in pipeline.resource_tags(deployment.name).items():
                # CDK would tag an RDS Proxy target group, which CloudFormation rejects.
                cdk.Tags.of(stack).add(key, value,
                                       exclude_resource_types=UNTAGGABLE_RESOURCE_TYPES)
        built[deployment.name] = stacks
    return built
