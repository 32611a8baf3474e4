"""The pipeline's functions and the events that connect them: what each function is called,
what triggers it, what it may read and write, and the names of everything that belongs to it
(role, log group, rule, queues).
"""

from __future__ import annotations

from dataclasses import dataclass

from collections_ops.pipeline.constants import PROJECT, TriggerKind


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


def _stage(key: str, logical_id: str, code_dir: str, *, description: str, trigger: Trigger,
           api_keys: tuple[str, ...], publishes: EventType | None, stage: str,
           reads_images: bool, writes_thumbnails: bool) -> Function:
    """A pipeline stage: its settings are named after its key (`lambda_timeout_<key>`), and it
    reads its own database URL (`DATABASE_URL_<KEY>`) and the API keys of its providers."""
    database_url = f"DATABASE_URL_{key.upper()}"
    return Function(key=key, logical_id=logical_id, code_dir=code_dir, handler="handler.handler",
                    description=description, trigger=trigger,
                    secrets=(database_url, *api_keys), publishes=publishes,
                    timeout_setting=f"lambda_timeout_{key}",
                    memory_setting=f"lambda_memory_{key}", stage=stage,
                    reads_images=reads_images, writes_thumbnails=writes_thumbnails,
                    database_url_name=database_url)


IMAGE_PROCESSOR = _stage(
    "processor", "ImageProcessorLambda", "image_processor",
    description="Image processor Lambda", trigger=Trigger(kind="s3"), api_keys=(),
    publishes=IMAGE_PROCESSED, stage="thumbnail", reads_images=True, writes_thumbnails=True)

ANALYZER = _stage(
    "analyzer", "AnalyzerLambda", "analyzer", description="Image analyzer Lambda",
    trigger=Trigger(kind="eventbridge", event=IMAGE_PROCESSED, rule_id="ImageProcessedRule"),
    api_keys=("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LANGSMITH_API_KEY"),
    publishes=ANALYSIS_COMPLETE, stage="analysis", reads_images=True, writes_thumbnails=False)

EMBEDDER = _stage(
    "embedder", "EmbedderLambda", "embedder", description="Embedding generator Lambda",
    trigger=Trigger(kind="eventbridge", event=ANALYSIS_COMPLETE, rule_id="AnalysisCompleteRule"),
    api_keys=("VOYAGE_API_KEY",), publishes=None, stage="embedding", reads_images=False,
    writes_thumbnails=False)

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
                                       "reconcile_rows", "usage", "embedding_models")


def alarm_name(env_name: str, fn: Function, kind: str) -> str:
    return f"{PROJECT}-{env_name}-{fn.key}-{kind}"


def function(key_or_name: str) -> Function:
    """Find a function by CLI key (`analyzer`), logical id or code directory."""
    wanted = key_or_name.lower()
    for fn in FUNCTIONS:
        if wanted in (fn.key, fn.logical_id.lower(), fn.code_dir, fn.logical_id.lower()[:-6]):
            return fn
    raise KeyError(key_or_name)
