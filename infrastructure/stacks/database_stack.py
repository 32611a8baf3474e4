"""`CollectionsDatabaseStack-<env>` (database mode `rds` only): a private PostgreSQL 16 for
the pipeline, reachable only from the functions' security group.

RDS for PostgreSQL 16 ships pgvector; the pipeline's migrations run `CREATE EXTENSION vector`.
The operations function (compute stack) reads the RDS-generated secret directly, applies the
migrations on every deploy and writes `/collections/<env>/DATABASE_URL` from the secret for the
pipeline's functions -- CloudFormation cannot write SecureString parameters, and the first
deploy must not wait for an operator to type a URL that exists only once this stack does.

With the environment's `rds_proxy` setting, the functions connect through an RDS Proxy (TLS
required), which pools the connections of many warm containers into few database
connections; see docs/operations.md for its cost.

In the `existing` mode this stack is not created.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from collections_ops import pipeline
from stacks import nag
from stacks.function import DatabaseAccess, FunctionNetwork, log_retention
from stacks.settings import Deployment

DATABASE_NAME = pipeline.PROJECT
DATABASE_USER = pipeline.PROJECT
POSTGRES_PORT = 5432
BACKUP_RETENTION = cdk.Duration.days(7)
# A current 16.x minor (a bare "16" is deprecated for new instances); minor upgrades then apply
# automatically in the maintenance window.
POSTGRES_VERSION = rds.PostgresEngineVersion.VER_16_13
AVAILABILITY_ZONES = 2


class DatabaseStack(cdk.Stack):
    @property
    def availability_zones(self) -> list[str]:
        # Resolved by CloudFormation (Fn::GetAZs), so synth needs no AWS credentials or
        # context lookups and no zone name is hard-coded.
        return [cdk.Fn.select(i, cdk.Fn.get_azs()) for i in range(AVAILABILITY_ZONES)]

    def __init__(self, scope: Construct, construct_id: str, *, deployment: Deployment) -> None:
        super().__init__(
            scope, construct_id,
            stack_name=deployment.stack_name("Database"),
            env=deployment.cdk_environment,
            description=f"collections image pipeline ({deployment.name}): network and "
                        "PostgreSQL 16 with pgvector",
        )
        production = deployment.is_production
        flow_logs = logs.LogGroup(
            self, "FlowLogs",
            retention=log_retention(deployment.settings.log_retention_days),
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.vpc = ec2.Vpc(
            self, "Vpc",
            max_azs=AVAILABILITY_ZONES,
            # Functions call SSM, S3, EventBridge and the model providers' APIs on the internet.
            nat_gateways=2 if production else 1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC,
                                        cidr_mask=24),
                ec2.SubnetConfiguration(name="Functions",
                                        subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS,
                                        cidr_mask=22),
                ec2.SubnetConfiguration(name="Database",
                                        subnet_type=ec2.SubnetType.PRIVATE_ISOLATED,
                                        cidr_mask=24),
            ],
            # Nothing is ever placed in the default security group; restricting it would need
            # a custom-resource Lambda in this stack.
            restrict_default_security_group=False,
            flow_logs={"All": ec2.FlowLogOptions(
                destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                traffic_type=ec2.FlowLogTrafficType.ALL,
            )},
        )
        # Image downloads and thumbnail writes stay off the NAT gateway (and its per-GB cost).
        self.vpc.add_gateway_endpoint("S3Endpoint", service=ec2.GatewayVpcEndpointAwsService.S3)

        self.functions_security_group = ec2.SecurityGroup(
            self, "FunctionsSecurityGroup", vpc=self.vpc,
            description="collections pipeline functions", allow_all_outbound=True,
        )
        database_security_group = ec2.SecurityGroup(
            self, "DatabaseSecurityGroup", vpc=self.vpc,
            description="collections PostgreSQL: only the pipeline functions may connect",
            allow_all_outbound=False,
        )
        database_security_group.add_ingress_rule(
            self.functions_security_group, ec2.Port.tcp(POSTGRES_PORT),
            "PostgreSQL from the pipeline functions",
        )

        engine = rds.DatabaseInstanceEngine.postgres(version=POSTGRES_VERSION)
        self.instance = rds.DatabaseInstance(
            self, "Database",
            engine=engine,
            instance_type=ec2.InstanceType.of(ec2.InstanceClass.T4G,
                                              ec2.InstanceSize.SMALL if production
                                              else ec2.InstanceSize.MICRO),
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[database_security_group],
            port=POSTGRES_PORT,
            database_name=DATABASE_NAME,
            credentials=rds.Credentials.from_generated_secret(DATABASE_USER),
            parameter_group=rds.ParameterGroup(
                self, "Parameters", engine=engine,
                parameters={"rds.force_ssl": "1"},
            ),
            storage_encrypted=True,
            allocated_storage=20,
            max_allocated_storage=200,
            multi_az=production,
            deletion_protection=production,
            backup_retention=BACKUP_RETENTION,
            auto_minor_version_upgrade=True,
            publicly_accessible=False,
            removal_policy=cdk.RemovalPolicy.SNAPSHOT,
        )
        self.network = FunctionNetwork(vpc=self.vpc,
                                       security_group=self.functions_security_group)
        self.endpoint = self.instance.db_instance_endpoint_address
        secret = self.instance.secret
        assert secret is not None  # from_generated_secret
        self.role_secrets = self._role_secrets()
        self.proxy: rds.DatabaseProxy | None = None
        if deployment.settings.rds_proxy:
            self.proxy = self._proxy([secret, *self.role_secrets.values()],
                                     database_security_group)
        self.access = DatabaseAccess(
            secret=secret,
            proxy_endpoint=self.proxy.endpoint if self.proxy is not None else None,
            role_secrets=dict(self.role_secrets))
        # Where the pipeline connects: the proxy when there is one. The migration resource
        # carries it, so turning the proxy on or off re-runs the migration, which rewrites
        # DATABASE_URL for the new endpoint.
        self.connection_endpoint = (self.proxy.endpoint if self.proxy is not None
                                    else self.endpoint)

        nag.acknowledge(
            self.instance, "AwsSolutions-RDS11",
            "Port 5432 is reachable only from the functions' security group inside a VPC with "
            "no public path to the isolated database subnets; a non-default port would add no "
            "protection.",
        )
        if self.instance.secret is not None:
            nag.acknowledge(  # the generated secret is a child of the instance construct
                self.instance, "AwsSolutions-SMG4",
                "The pipeline's functions read DATABASE_URL from SSM, which the deploy-time "
                "migration writes from this secret; a rotation between deploys would break them "
                "until the next deploy. Rotation lands once the functions read the secret itself.",
            )
        if not production:
            nag.acknowledge(
                self.instance, "AwsSolutions-RDS3",
                "Non-production database: a single-AZ instance is an accepted availability "
                "trade-off for development; production runs multi-AZ.",
            )
            nag.acknowledge(
                self.instance, "AwsSolutions-RDS10",
                "Non-production database: deletion protection is off so the environment can be "
                "torn down; removal still takes a final snapshot. Production is protected.",
            )

        cdk.CfnOutput(self, "DatabaseEndpoint", value=self.instance.db_instance_endpoint_address)
        if self.proxy is not None:
            cdk.CfnOutput(self, "DatabaseProxyEndpoint", value=self.proxy.endpoint)
        cdk.CfnOutput(self, "DatabasePort", value=self.instance.db_instance_endpoint_port)
        cdk.CfnOutput(self, "DatabaseName", value=DATABASE_NAME)
        if self.instance.secret is not None:
            cdk.CfnOutput(
                self, "DatabaseSecretArn", value=self.instance.secret.secret_arn,
                description=("The RDS-generated credentials; every deploy writes DATABASE_URL "
                             f"(postgresql://...@<endpoint>:<port>/{DATABASE_NAME}"
                             "?sslmode=require) from it"),
            )

    def _role_secrets(self) -> dict[str, rds.DatabaseSecret]:
        """Each pipeline function's own database role (migration 0005), its password generated
        here: the operations function sets it on the role and writes the function's URL, and
        RDS Proxy, which authenticates every user with a secret, admits the role with it."""
        role_secrets: dict[str, rds.DatabaseSecret] = {}
        for fn in pipeline.FUNCTIONS:
            role_secret = rds.DatabaseSecret(
                self, f"{fn.logical_id}DatabaseRole",
                username=fn.database_role(DATABASE_NAME),
                dbname=DATABASE_NAME)
            nag.acknowledge(
                role_secret, "AwsSolutions-SMG4",
                "The function reads its URL from SSM, which the deploy-time migration writes "
                "from this secret, setting the role's password to it; a rotation between "
                "deploys would break the function until the next deploy.")
            role_secrets[fn.key] = role_secret
        return role_secrets

    def _proxy(self, secrets: list[secretsmanager.ISecret],
               database_security_group: ec2.SecurityGroup) -> rds.DatabaseProxy:
        proxy_security_group = ec2.SecurityGroup(
            self, "ProxySecurityGroup", vpc=self.vpc,
            description="collections RDS Proxy: only the pipeline functions may connect",
            allow_all_outbound=False,
        )
        proxy_security_group.add_ingress_rule(
            self.functions_security_group, ec2.Port.tcp(POSTGRES_PORT),
            "PostgreSQL through the proxy from the pipeline functions")
        proxy_security_group.add_egress_rule(
            database_security_group, ec2.Port.tcp(POSTGRES_PORT), "PostgreSQL to the database")
        database_security_group.add_ingress_rule(
            proxy_security_group, ec2.Port.tcp(POSTGRES_PORT), "PostgreSQL from the RDS Proxy")
        return rds.DatabaseProxy(
            self, "Proxy",
            proxy_target=rds.ProxyTarget.from_instance(self.instance),
            secrets=secrets,
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[proxy_security_group],
            require_tls=True,
        )
