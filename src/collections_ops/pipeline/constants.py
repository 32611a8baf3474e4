"""The definition's vocabulary: the project's name, the parameter layout, the runtime, the
delivery settings (retries, event ages, retention) and the names derived from an environment's
name alone. Every other module of the definition builds on these; nothing here imports one.
"""

from __future__ import annotations

from typing import Literal

PROJECT = "collections"
# SSM Parameter Store layout. The shared scope is the prefix itself (the guide's
# `/collections/ANTHROPIC_API_KEY`): API keys every environment may use. Each environment has a
# scope of its own below it (`/collections/dev/...`) holding its DATABASE_URL, its deployment
# record and any override of a shared key -- and its functions may read no other environment's.
PARAMETER_PREFIX = "/collections"
# Which scope a parameter lives in: `shared` (every environment's functions read it) or `env`
# (the environment's own scope, which no other environment's functions can read).
Scope = Literal["shared", "env"]
SCOPES: tuple[Scope, ...] = ("shared", "env")
DEPLOYMENT_RECORD = "deployment"  # the record's name in an environment's scope
# Where the first layout kept what is now per environment (`collections secrets migrate`).
LEGACY_RECORD_FOLDER = "deployment"  # `/collections/deployment/<env>`
LOCAL_ENV = "local"
LOCAL_ACCOUNT = "123456789012"  # moto's default account id
DEFAULT_REGION = "us-east-1"

# `invoke`: called directly (by the CLI and by the deploy-time migration), never by an event.
TriggerKind = Literal["s3", "eventbridge", "invoke"]
# Where the database lives: `existing` (DATABASE_URL in SSM, optionally inside a VPC of the
# operator's) or `rds` (a private RDS PostgreSQL created by the database stack).
DatabaseMode = Literal["existing", "rds"]
DATABASE_MODES: tuple[DatabaseMode, ...] = ("existing", "rds")
# The functions' instruction set; `collections build` fetches wheels for it.
Architecture = Literal["x86_64", "arm64"]
ARCHITECTURES: tuple[Architecture, ...] = ("x86_64", "arm64")

# Spelled once, used by the stacks, the local cloud, the handlers' tests and the CLI.
RUNTIME = "python3.12"  # the guide's runtime; the bundles are built for it
PYTHON_VERSION = RUNTIME.removeprefix("python")
PARAMETER_STORE_POLICY = "ParameterStorePolicy"  # the guide's troubleshooting reads it by name
CORRELATION_METADATA = "correlation-id"  # S3 object metadata carrying an upload's correlation id

# Every deploy publishes a version of each function; the triggers invoke this alias, so an
# operator can point it back at the previous version (`collections rollback ENV --function F`).
LIVE_ALIAS = "live"

# Lambda's asynchronous invocation of the pipeline's functions (their EventInvokeConfig, on
# $LATEST and on `live`): retries after a function error, and how old an event may get.
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE_S = 6 * 3600
# EventBridge's delivery to a rule's target (the target's RetryPolicy); what still cannot be
# delivered goes to the target function's dead-letter queue.
RULE_RETRY_ATTEMPTS = 8
RULE_MAX_EVENT_AGE_S = 2 * 3600
RULE_TARGET_ID = "Target0"  # the id CDK gives a rule's first target
# How long a dead-letter queue keeps a message: SQS's maximum, time for an operator to replay.
DLQ_RETENTION_S = 14 * 24 * 3600


def resource_tags(env_name: str) -> dict[str, str]:
    """The tags every resource of an environment carries."""
    return {"project": PROJECT, "environment": env_name}

# Monitoring: the guide's dashboard and error alarm, per environment. Used by the CDK
# monitoring stack and by `collections dashboard/alarms`, which must agree on every name.
METRIC_PERIOD_S = 300  # the guide's period
ERROR_ALARM_THRESHOLD = 5  # the guide's: more than 5 errors in one period
DURATION_ALARM_FRACTION = 0.8  # alarm when an invocation takes 80 % of its timeout

# Lifecycle rules the storage construct sets and `collections lifecycle` checks.
THUMBNAIL_EXPIRY_RULE_ID = "ExpireThumbnails"
ABORT_MULTIPART_UPLOAD_DAYS = 7


def dashboard_name(env_name: str) -> str:
    return f"{PROJECT}-{env_name}-lambdas"  # the guide's `collections-lambdas`, per environment


def alarm_prefix(env_name: str) -> str:
    """What every alarm of the environment's name starts with (`alarm_name`)."""
    return f"{PROJECT}-{env_name}-"


def alarm_topic_name(env_name: str) -> str:
    """The monitoring stack's SNS topic: the action of every alarm it owns."""
    return f"{PROJECT}-{env_name}-alarms"
