"""The pipeline, described once.

Every name an operator or a machine uses to find a piece of the pipeline -- function names, log
groups, rule names, bucket names, queue names, SSM parameter names, stack names -- is spelled here
and nowhere else. The CDK stacks loop over this data, the local cloud provisions itself from it,
the CLI finds what it drives through it, and the tests assert the synthesized template against it.

This module is plain data and must stay import-light: the CLI imports it at start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Secret:
    """An SSM SecureString the pipeline reads at cold start."""

    name: str  # e.g. ANTHROPIC_API_KEY
    description: str
    required: bool  # required in dev/prod when the provider that needs it is selected
    used_by: tuple[str, ...]  # function keys
    example: str  # shape of a value, for prompts (never a real value)
    # True: an API key, kept in the shared scope unless an environment overrides it in its own.
    # False: one value per environment, never shared (DATABASE_URL: one environment's code
    # must never write another environment's database).
    shared: bool = True

    @property
    def home_scope(self) -> Scope:
        """Where `secrets put` writes it unless told otherwise."""
        return "shared" if self.shared else "env"

    @property
    def lookup_scopes(self) -> tuple[Scope, ...]:
        """The scopes a function reads it from, first found wins: the environment's override,
        then the shared value."""
        return ("env", "shared") if self.shared else ("env",)


@dataclass(frozen=True)
class EventType:
    """An EventBridge event the pipeline publishes: source, detail-type and its detail schema."""

    source: str
    detail_type: str
    required_detail: tuple[str, ...]
    optional_detail: tuple[str, ...] = ()

    def pattern(self) -> dict[str, list[str]]:
        return {"source": [self.source], "detail-type": [self.detail_type]}


IMAGE_PROCESSED = EventType(
    source="collections.imageprocessor",
    detail_type="ImageProcessed",
    # The guide's manual test event carries exactly these four; anything more is optional.
    required_detail=("item_id", "user_id", "bucket", "original_key"),
    optional_detail=(
        "thumbnail_bucket",
        "thumbnail_key",
        "content_type",
        "width",
        "height",
        "size_bytes",
        "sequencer",
        "correlation_id",
    ),
)

ANALYSIS_COMPLETE = EventType(
    source="collections.analyzer",
    detail_type="AnalysisComplete",
    required_detail=("item_id", "user_id", "analysis_id"),
    optional_detail=("category", "provider", "model", "correlation_id"),
)

EVENT_TYPES: tuple[EventType, ...] = (IMAGE_PROCESSED, ANALYSIS_COMPLETE)


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    # For eventbridge triggers: the event that invokes the function and the rule's logical name.
    event: EventType | None = None
    rule_id: str | None = None  # e.g. "ImageProcessedRule" -> collections-<env>-ImageProcessedRule


@dataclass(frozen=True)
class Function:
    key: str  # short name used on the command line: processor, analyzer, embedder
    logical_id: str  # ImageProcessorLambda -- the guide's construct id and name suffix
    code_dir: str  # directory under lambdas/
    handler: str
    description: str  # "<text> - <env>" in the guide
    trigger: Trigger
    secrets: tuple[str, ...]  # secret names this function may read
    publishes: EventType | None
    timeout_setting: str  # key in the environment settings
    memory_setting: str
    stage: str  # the stage an operator sees when following an upload
    # What the role may touch in S3: read uploads (s3:GetObject + s3:ListBucket, so a missing
    # key reads as 404, not 403) and write thumbnails.
    reads_images: bool = False
    writes_thumbnails: bool = False
    # The secret holding the URL this function connects to the database with: a pipeline
    # function's own role (collections_core/roles.py), the operations function's the owner.
    database_url_name: str = "DATABASE_URL"

    def function_name(self, env: str) -> str:
        return f"{PROJECT}-{env}-{self.logical_id}"

    def database_role(self, database: str) -> str:
        """The function's own login role in `database` (migration 0005; the functions'
        code names it with collections_core.roles.role_name, which a test keeps equal)."""
        suffix = f"_{self.key}"  # a long name is shortened, never the suffix
        return database[:63 - len(suffix)] + suffix

    def log_group(self, env: str) -> str:
        return f"/aws/lambda/{self.function_name(env)}"

    def role_name(self, env: str) -> str:
        return f"{PROJECT}-{env}-{self.logical_id}Role"

    def rule_name(self, env: str) -> str | None:
        if self.trigger.rule_id is None:
            return None
        return f"{PROJECT}-{env}-{self.trigger.rule_id}"

    def queue_name(self, env: str) -> str:
        """Local cloud: the queue that carries this function's trigger events."""
        return f"{PROJECT}-{env}-{self.logical_id}-events"

    def dlq_name(self, env: str) -> str:
        return f"{PROJECT}-{env}-{self.logical_id}-dlq"

    def dlq_env_var(self) -> str:
        return f"DLQ_URL_{self.key.upper()}"

    # Descriptions AWS shows for the function's resources (the stacks and the local cloud).
    def role_description(self, env: str) -> str:
        return f"Execution role of {self.function_name(env)}"

    def alias_description(self, env: str) -> str:
        return f"What the triggers of {self.function_name(env)} invoke"

    def rule_description(self, env: str) -> str | None:
        event = self.trigger.event
        if event is None:
            return None
        return f"{event.source} / {event.detail_type} -> {self.function_name(env)}"


IMAGE_PROCESSOR = Function(
    key="processor",
    logical_id="ImageProcessorLambda",
    code_dir="image_processor",
    handler="handler.handler",
    description="Image processor Lambda",
    trigger=Trigger(kind="s3"),
    secrets=("DATABASE_URL_PROCESSOR",),
    publishes=IMAGE_PROCESSED,
    timeout_setting="lambda_timeout_processor",
    memory_setting="lambda_memory_processor",
    stage="thumbnail",
    reads_images=True,
    writes_thumbnails=True,
    database_url_name="DATABASE_URL_PROCESSOR",
)

ANALYZER = Function(
    key="analyzer",
    logical_id="AnalyzerLambda",
    code_dir="analyzer",
    handler="handler.handler",
    description="Image analyzer Lambda",
    trigger=Trigger(kind="eventbridge", event=IMAGE_PROCESSED, rule_id="ImageProcessedRule"),
    secrets=("DATABASE_URL_ANALYZER", "ANTHROPIC_API_KEY", "OPENAI_API_KEY",
             "LANGSMITH_API_KEY"),
    publishes=ANALYSIS_COMPLETE,
    timeout_setting="lambda_timeout_analyzer",
    memory_setting="lambda_memory_analyzer",
    stage="analysis",
    reads_images=True,
    writes_thumbnails=False,
    database_url_name="DATABASE_URL_ANALYZER",
)

EMBEDDER = Function(
    key="embedder",
    logical_id="EmbedderLambda",
    code_dir="embedder",
    handler="handler.handler",
    description="Embedding generator Lambda",
    trigger=Trigger(kind="eventbridge", event=ANALYSIS_COMPLETE, rule_id="AnalysisCompleteRule"),
    secrets=("DATABASE_URL_EMBEDDER", "VOYAGE_API_KEY"),
    publishes=None,
    timeout_setting="lambda_timeout_embedder",
    memory_setting="lambda_memory_embedder",
    stage="embedding",
    reads_images=False,
    writes_thumbnails=False,
    database_url_name="DATABASE_URL_EMBEDDER",
)

FUNCTIONS: tuple[Function, ...] = (IMAGE_PROCESSOR, ANALYZER, EMBEDDER)

# Not a pipeline stage: the database's in-VPC operator. It applies the migrations on every
# deploy (a CloudFormation custom resource) and answers the CLI's database commands when the
# database is not reachable from the operator's machine. Its request/response contract is the
# docstring of lambdas/operations/handler.py.
OPERATIONS = Function(
    key="operations",
    logical_id="OperationsLambda",
    code_dir="operations",
    handler="handler.handler",
    description="Database operations Lambda",
    trigger=Trigger(kind="invoke"),
    secrets=("DATABASE_URL",),
    publishes=None,
    timeout_setting="lambda_timeout_operations",
    memory_setting="lambda_memory_operations",
    stage="operations",
)
# Every function the CDK app deploys (and `collections build` bundles).
DEPLOYED_FUNCTIONS: tuple[Function, ...] = (*FUNCTIONS, OPERATIONS)

# The operations function's closed vocabulary (lambdas/operations/handler.py; a test keeps the
# two equal). No request can carry SQL: a query is one of these names plus typed parameters.
OPERATIONS_ACTIONS: tuple[str, ...] = ("migrate", "status", "query")
OPERATIONS_QUERIES: tuple[str, ...] = ("find_items", "item_rows", "search", "database_check",
                                       "reconcile_rows", "usage")

# DATABASE_URL is the owner's: only the operations function (which runs the migrations) and
# the operator's CLI use it. Each pipeline function connects as a role of its own, with a URL
# the deploy writes (the operations function from the owner's connection, the local cloud at
# start): DATABASE_URL_<FUNCTION>, readable by that function alone.
SECRETS: tuple[Secret, ...] = (
    Secret("DATABASE_URL", "PostgreSQL connection string of the schema's owner", True,
           ("operations",), "postgresql://user:password@host:5432/collections",
           shared=False),
    *(Secret(fn.database_url_name, f"PostgreSQL connection string of the {fn.key}'s own role "
                                 "(written by the deploy)", False, (fn.key,),
             f"postgresql://collections_{fn.key}:password@host:5432/collections", shared=False)
      for fn in FUNCTIONS),
    Secret("ANTHROPIC_API_KEY", "Anthropic API key (analyzer)", True, ("analyzer",), "sk-ant-..."),
    Secret("OPENAI_API_KEY", "OpenAI API key (optional analyzer provider)", False,
           ("analyzer",), "sk-..."),
    Secret("LANGSMITH_API_KEY", "LangSmith API key (optional analyzer tracing)", False,
           ("analyzer",), "ls-..."),
    Secret("VOYAGE_API_KEY", "Voyage AI API key (embedder)", True, ("embedder",), "pa-..."),
)

# Which secret a provider needs. A provider that is selected makes its secret required.
PROVIDER_SECRETS: dict[str, str] = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "voyage": "VOYAGE_API_KEY",
}


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


def alarm_name(env_name: str, fn: Function, kind: str) -> str:
    return f"{PROJECT}-{env_name}-{fn.key}-{kind}"


def alarm_prefix(env_name: str) -> str:
    """What every alarm of the environment's name starts with (`alarm_name`)."""
    return f"{PROJECT}-{env_name}-"


def alarm_topic_name(env_name: str) -> str:
    """The monitoring stack's SNS topic: the action of every alarm it owns."""
    return f"{PROJECT}-{env_name}-alarms"


@dataclass(frozen=True)
class VpcPlacement:
    """Where the functions run to reach a database inside a VPC (database mode `existing`):
    private subnets with a route to the internet (NAT) or VPC endpoints for SSM, S3 and
    EventBridge, and security groups the database admits."""

    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]


def function(key_or_name: str) -> Function:
    """Find a function by CLI key (`analyzer`), logical id or code directory."""
    wanted = key_or_name.lower()
    for fn in FUNCTIONS:
        if wanted in (fn.key, fn.logical_id.lower(), fn.code_dir, fn.logical_id.lower()[:-6]):
            return fn
    raise KeyError(key_or_name)


def secret(name: str) -> Secret:
    for s in SECRETS:
        if s.name == name:
            return s
    raise KeyError(name)


@dataclass(frozen=True)
class Prices:
    """List prices that `collections cost` applies, in USD, for us-east-1, dated: they change,
    so every figure names the date of the table it used. An environment's table can be
    overridden in the settings file (`[environments.<name>.prices]`, docs/benchmarks.md)."""

    as_of: str
    # USD per GB-second of billed duration, by architecture.
    lambda_gb_second: Mapping[str, float]
    lambda_request: float  # USD per request
    # USD per million tokens, by model: {"input": ..., "output": ...} ("input" only for
    # embedding models, whose usage is one token count). A model missing here is unpriced
    # (shown as unknown, never as free); the offline `local` providers cost nothing.
    tokens_per_million: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # SnapStart for Python: each published version's snapshot is cached (USD per GB-second of
    # the function's memory, for as long as the version exists, at least 3 hours), and each
    # restore of it is charged (USD per GB restored); the restore's billed duration is
    # charged as duration.
    snapstart_cache_gb_second: float = 0.0000015046
    snapstart_restore_gb: float = 0.0001397998


PRICES = Prices(
    as_of="2026-12-01",
    lambda_gb_second={"x86_64": 0.0000166667, "arm64": 0.0000133334},
    lambda_request=0.20 / 1_000_000,
    tokens_per_million={
        "claude-sonnet-4-6": {"input": 3.00, "output": 15.00},
        "claude-haiku-4-5": {"input": 1.00, "output": 5.00},
        "gpt-4o": {"input": 2.50, "output": 10.00},
        "gpt-4o-mini": {"input": 0.15, "output": 0.60},
        "voyage-3.5": {"input": 0.06},
        "voyage-3.5-lite": {"input": 0.02},
    },
)


@dataclass(frozen=True)
class Environment:
    """Per-environment settings. `local` runs on the embedded cloud; the others on AWS."""

    name: str
    lambda_timeout_processor: int
    lambda_timeout_analyzer: int
    lambda_timeout_embedder: int
    lambda_memory_processor: int
    lambda_memory_analyzer: int
    lambda_memory_embedder: int
    log_retention_days: int
    analyzer_provider: str  # anthropic | openai | local
    analyzer_model: str
    embedding_provider: str  # voyage | local
    embedding_model: str
    thumbnail_size: int = 512
    thumbnail_expiry_days: int | None = None
    # Reserved concurrent executions per function key. Lambda refuses a reservation that
    # leaves the account fewer than 100 unreserved executions, and new accounts may have a
    # limit of 10-50: every environment ships unreserved and an operator opts in (preflight
    # compares the sum with `get_account_settings`).
    reserved_concurrency: dict[str, int] = field(default_factory=dict)
    lambda_timeout_operations: int = 300  # a migration may build an index
    lambda_memory_operations: int = 512
    production: bool = False  # multi-AZ and deletion protection, retained log groups
    database: DatabaseMode = "existing"  # the default; `--database` / CDK context override it
    rds_proxy: bool = False  # database mode `rds`: connect through RDS Proxy (docs/operations.md)
    database_vpc: VpcPlacement | None = None  # database mode `existing`, inside a VPC
    versions_to_keep: int = 10  # published versions kept per function (older ones are pruned)
    # Cold starts (docs/benchmarks.md): SnapStart on published versions, which the `live` alias
    # runs (billed for Python: snapshot caching and restores); the functions' architecture
    # (arm64 costs 20 % less per GB-second; the bundles must be built for it).
    snapstart: bool = False
    architecture: Architecture = "x86_64"
    prices: Prices = PRICES  # what `collections cost` charges (the settings file overrides it)
    alarm_email: str | None = None  # subscribed to the alarm topic when set
    parameter_prefix: str = PARAMETER_PREFIX  # the shared scope; the environment's is below it
    region: str = DEFAULT_REGION
    account: str | None = None  # None: taken from the credentials at deploy time

    def setting(self, key: str) -> int:
        value = getattr(self, key)
        assert isinstance(value, int)
        return value

    def timeout(self, fn: Function) -> int:
        return self.setting(fn.timeout_setting)

    def memory(self, fn: Function) -> int:
        return self.setting(fn.memory_setting)

    @property
    def is_local(self) -> bool:
        return self.name == LOCAL_ENV

    def reserved_total(self) -> int:
        """Concurrent executions the environment reserves (preflight: account limit - 100)."""
        return sum(self.reserved_concurrency.get(fn.key, 0) for fn in DEPLOYED_FUNCTIONS)

    def images_bucket(self, account: str) -> str:
        return f"{PROJECT}-images-{self.name}-{account}"

    def thumbnails_bucket(self, account: str) -> str:
        # A bucket of its own: the processor's notification can never see a thumbnail.
        return f"{PROJECT}-thumbnails-{self.name}-{account}"

    def stack_name(self, kind: str = "Compute") -> str:
        return f"Collections{kind}Stack-{self.name}"

    # -- SSM Parameter Store: the environment's scope and the shared one -----------------

    def scope_prefix(self, scope: Scope) -> str:
        prefix = self.parameter_prefix
        return prefix if scope == "shared" else f"{prefix}/{self.name}"

    def parameter_name(self, name: str, scope: Scope | None = None) -> str:
        """The parameter of secret `name` in `scope` (default: the secret's home scope). A
        secret that is never shared has no shared parameter."""
        spec = secret(name)
        scope = scope or spec.home_scope
        if scope not in spec.lookup_scopes:
            raise ValueError(f"{name} is kept per environment, never in the shared scope")
        return f"{self.scope_prefix(scope)}/{name}"

    def parameter_lookup(self, name: str) -> tuple[str, ...]:
        """The parameters a function of this environment reads secret `name` from, in order
        (the first that exists wins). Its role may read exactly these."""
        return tuple(self.parameter_name(name, scope) for scope in secret(name).lookup_scopes)

    def function_url_parameters(self) -> tuple[str, ...]:
        """Each pipeline function's own database URL, which the operations function writes
        (and nothing else may read but that function)."""
        return tuple(self.parameter_name(fn.database_url_name) for fn in FUNCTIONS)

    def record_parameter(self) -> str:
        """The deployment record (services/deployment.py), in the environment's scope."""
        return f"{self.scope_prefix('env')}/{DEPLOYMENT_RECORD}"

    def legacy_parameters(self) -> dict[str, str]:
        """The first layout's parameters that belong to this environment now: old -> new.
        It kept everything under the shared prefix, so one DATABASE_URL served every
        environment and the record sat in a folder of its own."""
        return {
            # The functions' own URLs came after it: they never had a shared name.
            f"{self.parameter_prefix}/DATABASE_URL": self.parameter_name("DATABASE_URL"),
            f"{self.parameter_prefix}/{LEGACY_RECORD_FOLDER}/{self.name}": self.record_parameter(),
        }

    def required_secrets(self) -> tuple[Secret, ...]:
        """Secrets the functions cannot start without, given the selected providers."""
        needed = {"DATABASE_URL"} if not self.is_local else set()
        for provider in (self.analyzer_provider, self.embedding_provider):
            if provider in PROVIDER_SECRETS:
                needed.add(PROVIDER_SECRETS[provider])
        return tuple(s for s in SECRETS if s.name in needed)


ENVIRONMENTS: dict[str, Environment] = {
    "local": Environment(
        name="local",
        lambda_timeout_processor=60,
        lambda_timeout_analyzer=120,
        lambda_timeout_embedder=60,
        lambda_memory_processor=1024,
        lambda_memory_analyzer=1024,
        lambda_memory_embedder=512,
        log_retention_days=7,
        analyzer_provider="local",
        analyzer_model="local-mobilenet-v2",
        embedding_provider="local",
        embedding_model="multilingual-e5-small-q4",
        account=LOCAL_ACCOUNT,
    ),
    "dev": Environment(
        name="dev",
        lambda_timeout_processor=60,
        lambda_timeout_analyzer=300,
        lambda_timeout_embedder=60,
        lambda_memory_processor=1024,
        lambda_memory_analyzer=1024,
        lambda_memory_embedder=512,
        log_retention_days=7,
        analyzer_provider="anthropic",
        analyzer_model="claude-sonnet-4-6",
        embedding_provider="voyage",
        embedding_model="voyage-3.5",
        thumbnail_expiry_days=30,
    ),
    "prod": Environment(
        name="prod",
        lambda_timeout_processor=60,
        lambda_timeout_analyzer=300,
        lambda_timeout_embedder=60,
        lambda_memory_processor=1536,
        lambda_memory_analyzer=1024,
        lambda_memory_embedder=512,
        log_retention_days=30,
        analyzer_provider="anthropic",
        analyzer_model="claude-sonnet-4-6",
        embedding_provider="voyage",
        embedding_model="voyage-3.5",
        thumbnail_expiry_days=365,
        production=True,
    ),
}


def environment(name: str) -> Environment:
    try:
        return ENVIRONMENTS[name]
    except KeyError:
        known = ", ".join(ENVIRONMENTS)
        raise KeyError(f"unknown environment {name!r} (known: {known})") from None


def common_env(env: Environment, *, account: str, dlq_urls: dict[str, str] | None = None,
               event_bus: str = "default") -> dict[str, str]:
    """The environment every function gets (the guide's `common_env`), built from the settings.

    Functions learn names from here and secrets from SSM, never from the CLI package.
    """
    values = {
        "COLLECTIONS_ENV": env.name,
        "IMAGES_BUCKET": env.images_bucket(account),
        "THUMBNAILS_BUCKET": env.thumbnails_bucket(account),
        "THUMBNAIL_SIZE": str(env.thumbnail_size),
        "EVENT_BUS_NAME": event_bus,
        # Secret name -> the parameters to read it from, in order (Environment.parameter_lookup).
        "SECRET_PARAMETERS": json.dumps({s.name: list(env.parameter_lookup(s.name))
                                         for s in SECRETS}, separators=(",", ":")),
        "ANALYZER_PROVIDER": env.analyzer_provider,
        "ANALYZER_MODEL": env.analyzer_model,
        "EMBEDDING_PROVIDER": env.embedding_provider,
        "EMBEDDING_MODEL": env.embedding_model,
        "IMAGE_PROCESSED_SOURCE": IMAGE_PROCESSED.source,
        "IMAGE_PROCESSED_DETAIL_TYPE": IMAGE_PROCESSED.detail_type,
        "ANALYSIS_COMPLETE_SOURCE": ANALYSIS_COMPLETE.source,
        "ANALYSIS_COMPLETE_DETAIL_TYPE": ANALYSIS_COMPLETE.detail_type,
        "LOG_LEVEL": "INFO",
    }
    for fn in FUNCTIONS:
        if dlq_urls and fn.key in dlq_urls:
            values[fn.dlq_env_var()] = dlq_urls[fn.key]
    return values
