"""One target per environment: what differs between AWS and the local cloud, said once.

An environment runs either on AWS (the CDK app) or on the embedded local cloud. Where the two
behave differently — what a trigger invokes, how an event is put back to a function, who owns
the alarms, whether an operations function exists, whether a cloud runs on this machine —
commands and services ask the environment's `Target` for the behaviour instead of branching on
the environment's name. `for_environment` is the only place that looks at which one it is.

It sits between the services (which ask it) and the local cloud (whose supervisor its
`LocalCloud` drives); `Context.target` hands it to the commands.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from collections_ops import aws, errors
from collections_ops.pipeline import LIVE_ALIAS, LOCAL_ACCOUNT, Environment, Function


@dataclass(frozen=True)
class Delivery:
    """How an event reaches a function the way its trigger delivers it.

    `invoke`: an asynchronous invoke of the function's `live` alias (Lambda then applies its
    retries and on-failure destination); `queue`: the function's trigger queue, which the local
    cloud's dispatcher reads; `bus`: back onto the event bus, where the function's rule picks
    it up.
    """

    way: Literal["invoke", "queue", "bus"]
    name: str  # the function, queue or rule

    def describe(self) -> str:
        if self.way == "invoke":
            return f"function {self.name}:{LIVE_ALIAS} (asynchronous invoke)"
        if self.way == "queue":
            return f"queue {self.name}"
        return f"rule {self.name} (put_events)"


class LocalCloud:
    """The local cloud of an environment, on this machine: started, stopped and inspected
    through its supervisor."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._running: Any = None

    def start(self) -> tuple[Any, bool]:
        """(its state, whether it was started now rather than already running)."""
        from collections_ops.localcloud.supervisor import manager

        self._running = None
        return manager.start(self.state_dir)

    def stop(self, *, remove: bool) -> bool:
        """Stop it (and with `remove`, delete its state); whether it was running."""
        from collections_ops.localcloud.supervisor import manager

        self._running = None
        return manager.stop(self.state_dir, remove=remove)

    def data_summary(self) -> str:
        """What it holds, in words ('' when nothing)."""
        from collections_ops.localcloud.supervisor import manager

        return manager.data_summary(self.state_dir)

    def running(self) -> Any:
        """Its state file's contents (endpoint, region, database URL); NotReady (exit 4) when
        it is not running."""
        from collections_ops.localcloud.supervisor import manager

        if self._running is None:
            state = manager.running_state(self.state_dir)
            if state is None:
                raise errors.NotReady("the local cloud is not running",
                                      "start it with `collections deploy local`")
            self._running = state  # read once, until this object starts or stops it
        return self._running

    def status(self) -> dict[str, Any]:
        """Its parts and whether each is up (`parts`), its endpoints and database URL."""
        from collections_ops.localcloud.supervisor import manager

        return manager.status(self.state_dir)

    def operator_environment(self, state: Any) -> tuple[dict[str, str], tuple[str, ...]]:
        """(the variables that point the `aws` CLI and SDKs at it, those to unset first)."""
        from collections_ops.localcloud.aws.access import OPERATOR_UNSET, operator_environment

        return operator_environment(state), tuple(OPERATOR_UNSET)


class Target:
    """What an environment's cloud does, asked for by name."""

    kind: ClassVar[Literal["aws", "local"]]
    # `deploy` runs the CDK app, which `synth`, `diff` and `bootstrap` need too.
    deploys_with_cdk: ClassVar[bool]
    # The monitoring stack owns the alarms and their topic; else `alarms ensure` writes them.
    stack_owns_alarms: ClassVar[bool]
    # An operations function in the database's VPC can carry the database commands.
    has_operations_function: ClassVar[bool]
    # The functions' own database URLs are published by a migration the operator runs
    # (`db migrate`); else the cloud writes them as it starts.
    publishes_role_urls: ClassVar[bool]
    # The pipeline calls hosted providers (Anthropic, Voyage); the local cloud calls none.
    calls_hosted_providers: ClassVar[bool]
    # Settings changed outside a deploy need writing into the deployment record for the next
    # deploy to keep them; the local cloud's version history keeps a version's settings.
    records_settings: ClassVar[bool]
    # Who the caller is must be asked of STS (a profile can be missing or expired); the local
    # cloud's administrator key is in its own state, so there is nobody to ask.
    asks_caller_identity: ClassVar[bool]

    def __init__(self, env: Environment) -> None:
        self.env = env

    def session(self, *, profile: str | None, region: Callable[[], str]) -> Any:
        """The boto3 session every client of the environment comes from (`region`: the
        environment's region, asked only where it decides)."""
        raise NotImplementedError

    def client_options(self, session: Any, config: Any) -> dict[str, Any]:
        """The arguments of `session.client` besides the service: timeouts and retries
        (`config`, if the caller has its own), the endpoint, the region."""
        raise NotImplementedError

    def database_url(self, secret: Callable[[str], str]) -> str:
        """The operator's database URL (`secret(name)`: an SSM parameter of the environment)."""
        raise NotImplementedError

    @property
    def known_account(self) -> str | None:
        """The account, when it is known without asking STS."""
        return self.env.account

    @property
    def local_cloud(self) -> LocalCloud | None:
        """The cloud running on this machine, if the environment has one."""
        return None

    def trigger_arn(self, fn: Function, *, account: str, region: str) -> str:
        """The ARN that the S3 notification or the rule of `fn` must name."""
        raise NotImplementedError

    def invoke_permission_on_alias(self) -> bool:
        """Whether S3's permission to invoke must be on the `live` alias (what the
        notification names) rather than the function."""
        raise NotImplementedError

    def redelivery(self, fn: Function, event_kind: Literal["s3", "eventbridge"]) -> Delivery:
        """How an event of `event_kind` is delivered to `fn` again, as its trigger would
        (`dlq redrive`)."""
        raise NotImplementedError

    def delivery_to(self, fn: Function) -> Delivery:
        """How a trigger-shaped event reaches `fn` and no other function (`reconcile`)."""
        raise NotImplementedError

    def role_urls_fix(self) -> str:
        """The command that writes the functions' own database URLs."""
        raise NotImplementedError


class AwsTarget(Target):
    kind = "aws"
    deploys_with_cdk = True
    stack_owns_alarms = True
    has_operations_function = True
    publishes_role_urls = True
    calls_hosted_providers = True
    records_settings = True
    asks_caller_identity = True

    def session(self, *, profile: str | None, region: Callable[[], str]) -> Any:
        import boto3

        try:
            # The environment's region, not the profile's: that is where its stacks are.
            return boto3.session.Session(profile_name=profile, region_name=region())
        except Exception as exc:
            mapped = aws.translate(exc)
            if mapped:
                raise mapped from None
            raise

    def client_options(self, session: Any, config: Any) -> dict[str, Any]:
        from botocore.config import Config

        options: dict[str, Any] = {"config": config or Config(
            retries={"mode": "standard"}, connect_timeout=5, read_timeout=60)}
        if not session.region_name:
            options["region_name"] = self.env.region
        return options  # AWS_ENDPOINT_URL, where set, is boto3's own

    def database_url(self, secret: Callable[[str], str]) -> str:
        return os.environ.get("DATABASE_URL") or secret("DATABASE_URL")

    def trigger_arn(self, fn: Function, *, account: str, region: str) -> str:
        # The triggers invoke the `live` alias, never the bare function.
        return (f"arn:aws:lambda:{region}:{account}:function:{fn.function_name(self.env.name)}"
                f":{LIVE_ALIAS}")

    def invoke_permission_on_alias(self) -> bool:
        return True

    def redelivery(self, fn: Function, event_kind: Literal["s3", "eventbridge"]) -> Delivery:
        # Not back onto the bus: there it would reach every rule that matches it (an archive,
        # another consumer), not just the function that failed it.
        return self.delivery_to(fn)

    def delivery_to(self, fn: Function) -> Delivery:
        return Delivery("invoke", fn.function_name(self.env.name))

    def role_urls_fix(self) -> str:
        return f"collections db migrate --env {self.env.name}"


class LocalTarget(Target):
    kind = "local"
    deploys_with_cdk = False
    stack_owns_alarms = False
    has_operations_function = False
    publishes_role_urls = False
    calls_hosted_providers = False
    records_settings = False
    asks_caller_identity = False

    def __init__(self, env: Environment, state_dir: Path | None = None) -> None:
        super().__init__(env)
        self._cloud = LocalCloud(state_dir) if state_dir is not None else None

    def _here(self) -> LocalCloud:
        if self._cloud is None:
            raise ValueError("a local target built without its state directory")
        return self._cloud

    def running(self) -> Any:
        """The running local cloud's state; NotReady when it is not running."""
        return self._here().running()

    def session(self, *, profile: str | None, region: Callable[[], str]) -> Any:
        from collections_ops.localcloud.aws import iam

        # The local cloud's administrator, whose key the local cloud keeps in its state; its
        # region is the cloud's, whatever a profile says.
        cloud = self._here()
        state = cloud.running()
        return iam.admin_session(state.state_dir or cloud.state_dir, state.region)

    def client_options(self, session: Any, config: Any) -> dict[str, Any]:
        from botocore.config import Config

        # A frozen local part must not hang a command for minutes: give up after two tries of
        # 10 s (the local cloud answers in milliseconds) with exit 4.
        return {"config": config or Config(retries={"mode": "standard", "max_attempts": 2},
                                           connect_timeout=3, read_timeout=10),
                "endpoint_url": self.running().endpoint_url}

    def database_url(self, secret: Callable[[str], str]) -> str:
        return str(self.running().database_url)

    @property
    def known_account(self) -> str | None:
        return self.env.account or LOCAL_ACCOUNT

    @property
    def local_cloud(self) -> LocalCloud | None:
        return self._here()

    def trigger_arn(self, fn: Function, *, account: str, region: str) -> str:
        # The dispatcher invokes the handler: triggers deliver to the function's queue.
        return f"arn:aws:sqs:{region}:{account}:{fn.queue_name(self.env.name)}"

    def invoke_permission_on_alias(self) -> bool:
        return False  # the dispatcher, not S3, invokes the handler

    def redelivery(self, fn: Function, event_kind: Literal["s3", "eventbridge"]) -> Delivery:
        if event_kind == "s3":
            return self.delivery_to(fn)
        rule = fn.rule_name(self.env.name)
        if rule is None:
            raise ValueError(f"the {fn.key} has no rule to put an event back through")
        return Delivery("bus", rule)

    def delivery_to(self, fn: Function) -> Delivery:
        # No Lambda service to invoke: the dispatcher reads the function's trigger queue.
        return Delivery("queue", fn.queue_name(self.env.name))

    def role_urls_fix(self) -> str:
        return f"collections deploy {self.env.name}"


def for_environment(env: Environment, state_dir: Path | None = None) -> Target:
    """The target `env` runs on (`state_dir`: where its local cloud keeps its state)."""
    if env.is_local:
        return LocalTarget(env, state_dir)
    return AwsTarget(env)
