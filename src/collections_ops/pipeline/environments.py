"""The environments (local, dev, prod) and their settings, the secrets the functions read and
where each lives in Parameter Store, the prices `collections cost` applies, and the environment
variables every function starts with.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from collections_ops.pipeline.constants import (
    DEFAULT_REGION,
    DEPLOYMENT_RECORD,
    LEGACY_RECORD_FOLDER,
    LOCAL_ACCOUNT,
    LOCAL_ENV,
    PARAMETER_PREFIX,
    PROJECT,
    Architecture,
    DatabaseMode,
    Scope,
)
from collections_ops.pipeline.functions import (
    ANALYSIS_COMPLETE,
    DEPLOYED_FUNCTIONS,
    FUNCTIONS,
    IMAGE_PROCESSED,
    Function,
)


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


def secret(name: str) -> Secret:
    for s in SECRETS:
        if s.name == name:
            return s
    raise KeyError(name)


@dataclass(frozen=True)
class VpcPlacement:
    """Where the functions run to reach a database inside a VPC (database mode `existing`):
    private subnets with a route to the internet (NAT) or VPC endpoints for SSM, S3 and
    EventBridge, and security groups the database admits."""

    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]


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


_DEV = Environment(
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
)

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
    "dev": _DEV,
    # prod is dev with more memory for the processor, longer-kept logs and thumbnails, and
    # multi-AZ, deletion protection and retained log groups (a dict of its own, not dev's).
    "prod": replace(_DEV, name="prod", lambda_memory_processor=1536, log_retention_days=30,
                    thumbnail_expiry_days=365, production=True, reserved_concurrency={}),
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
