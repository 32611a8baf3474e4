"""The composition root: every command gets its AWS clients, database connection and console
from here, built once from --env/--profile/--region, and never builds its own.

For `local` the endpoint, region and (fake) credentials come from the running local cloud's
state file; for other environments boto3's usual chain applies, and AWS_ENDPOINT_URL is honoured.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

from collections_ops import aws, errors, settings
from collections_ops.pipeline import Environment, environment
from collections_ops.target import LocalCloud, Target, for_environment


class Context:
    def __init__(self, env_name: str | None = None, *, profile: str | None = None,
                 region: str | None = None) -> None:
        self.settings = settings.load()
        name = env_name or self.settings.default_env
        try:
            # The definition's environment; `env` is it as the operator's settings make it.
            self.definition: Environment = environment(name)
        except KeyError as exc:
            raise errors.ConfigError(str(exc.args[0]),
                                     "pass --env local, dev or prod") from None
        self.env: Environment = self.definition
        self.env = self.effective.env
        self.profile = profile
        self._region = region
        self._clients: dict[str, Any] = {}

    @cached_property
    def target(self) -> Target:
        """What this environment's cloud does (`collections_ops.target`): commands and
        services ask it rather than branch on the environment's name."""
        return for_environment(self.env, self.state_dir)

    @property
    def local_cloud(self) -> LocalCloud | None:
        """The local cloud this environment runs on, on this machine; None on AWS."""
        return self.target.local_cloud

    def require_local_cloud(self, refusal: str, hint: str) -> LocalCloud:
        """The local cloud, for a command that works on nothing else (on AWS: UsageError
        `refusal`)."""
        cloud = self.local_cloud
        if cloud is None:
            raise errors.UsageError(refusal, hint)
        return cloud

    @property
    def state_dir(self) -> Path:
        return self.settings.state_dir(self.env.name)

    @property
    def local(self) -> Any:
        """The running local cloud's state; raises NotReady when it is not running."""
        return self.require_local_cloud(f"{self.env.name} does not run on the local cloud",
                                        "pass --env local").running()

    @cached_property
    def session(self) -> Any:
        return self.target.session(profile=self.profile, region=lambda: self.aws_region)

    @cached_property
    def effective(self) -> settings.Effective:
        """Each setting of the environment and where it came from: the settings file, then
        this machine's copy of the deployment record, then the definition (a deploy reads the
        account's record: `services.deploy`)."""
        from collections_ops.services import deployment

        return deployment.effective(self.definition, self.record,
                                    file=self.settings.file_settings(self.definition.name))

    @cached_property
    def record(self) -> Any:
        """What was deployed to this environment (`services.deployment`), None if unknown."""
        if not self.target.records_settings:
            return None
        from collections_ops.services import deployment

        return deployment.load(self.state_dir)

    def effective_as_deployed(self) -> settings.Effective:
        """The settings as deployed: the settings file over the deployment record (this
        machine's copy, else the account's) over the definition. The local cloud has no
        record: its settings are `effective`."""
        if not self.target.records_settings:
            return self.effective
        from collections_ops.services import deployment

        record = deployment.current(self.state_dir, self.definition, ssm=self.client("ssm"))
        return deployment.effective(self.definition, record,
                                    file=self.settings.file_settings(self.env.name))

    def remember(self, values: dict[str, Any], *, versioned: bool = True) -> Any:
        """Settings changed outside a deploy, written where the next deploy reads them
        (`services.deployment.Remembered`). The local cloud's version history keeps what a
        version carries (`versioned`: memory, timeout); what it does not (reserved
        concurrency) it is not asked to keep: None."""
        from collections_ops.services import deployment

        if not self.target.records_settings:
            if not versioned:
                return None
            return deployment.Remembered(False, {}, "the local cloud keeps it across "
                                         "restarts; `collections destroy local` forgets it")
        return deployment.remember(self.client("ssm"), self.definition, self.state_dir, values,
                                   file=self.settings.file_settings(self.env.name))

    @property
    def aws_region(self) -> str:
        """The region of an AWS environment; a --region naming another is an error."""
        from collections_ops.services import deployment

        return deployment.region_for(self.env, self.record, requested=self._region)

    @property
    def region(self) -> str:
        return str(self.session.region_name or self.env.region)

    def client(self, service: str, *, config: Any = None) -> Any:
        """This context's client of `service` (made once); with `config`, a client of its own
        with those timeouts and retries."""
        if config is not None:
            return self._new_client(service, config)
        if service not in self._clients:
            self._clients[service] = self._new_client(service, None)
        return self._clients[service]

    def _new_client(self, service: str, config: Any) -> Any:
        return self.session.client(service, **self.target.client_options(self.session, config))

    @cached_property
    def aws(self) -> aws.Aws:
        """The typed AWS access layer over this context's clients."""
        return aws.Aws(self.client)

    def require_credentials(self) -> str:
        """The caller's account, checked before any work that needs AWS: CredentialsError
        (no credentials, unknown profile, expired session) rather than a failure halfway."""
        if not self.target.asks_caller_identity:
            return str(self.target.known_account)
        try:
            identity = self.client("sts").get_caller_identity()
        except Exception as exc:
            mapped = aws.translate(exc)
            if mapped is None:
                raise
            raise mapped from None
        self.__dict__["account"] = self.env.account or str(identity["Account"])
        return str(identity["Account"])

    @cached_property
    def account(self) -> str:
        known = self.target.known_account
        if known:
            return known
        return str(self.client("sts").get_caller_identity()["Account"])

    @property
    def images_bucket(self) -> str:
        return self.env.images_bucket(self.account)

    @property
    def thumbnails_bucket(self) -> str:
        return self.env.thumbnails_bucket(self.account)

    def secret_value(self, name: str) -> str:
        """A secret from SSM (decrypted), for commands that call a provider themselves."""
        lookup = self.env.parameter_lookup(name)  # as the functions read it: override first
        parameter = lookup[-1]
        value = next((v for v in map(self.aws.parameter, lookup) if v is not None), None)
        if value is None:
            raise errors.ConfigError(f"SSM parameter {parameter} does not exist",
                                     f"collections secrets put {name} --env {self.env.name}")
        return value

    def provider_key(self, name: str) -> str:
        """A provider's API key for a call the CLI makes itself (e.g. `search` embedding the
        query): the operator's environment variable wins, else the environment's secret."""
        return os.environ.get(name) or self.secret_value(name)

    def database_url(self) -> str:
        return self.target.database_url(self.secret_value)

    @cached_property
    def db(self) -> Any:
        return open_database(self.database_url())

    def operations_route(self, because: str | None = None) -> Any:
        """The operations function as a data route: waiting longer than the function may run
        (botocore's 60 s gave up on a long migration and, retrying, started it again), and
        sending what is not idempotent (`migrate`) once."""
        from botocore.config import Config

        from collections_ops.pipeline import OPERATIONS
        from collections_ops.services import dataroute

        name = OPERATIONS.function_name(self.env.name)
        read_timeout = int(getattr(self.env, str(OPERATIONS.timeout_setting))) + 30

        def lam(attempts: int) -> Any:
            return self.client("lambda", config=Config(
                retries={"mode": "standard", "total_max_attempts": attempts},
                connect_timeout=5, read_timeout=read_timeout))

        return dataroute.OperationsRoute(dataroute.lambda_invoker(lam(3), name, once=lam(1)),
                                         name, because=because)

    @cached_property
    def data_route(self) -> Any:
        """How database commands reach the database: directly when this machine can connect,
        else through the operations function in the database's VPC (`services.dataroute`)."""
        from collections_ops.services import dataroute

        private = (self.record is not None and self.record.database == "rds"
                   and not os.environ.get("DATABASE_URL"))
        if private:  # in isolated subnets: a direct attempt could only time out
            return self.operations_route("database mode rds: the database is private")
        return dataroute.choose(connect=lambda: self.db,
                                operations=(self.operations_route
                                            if self.target.has_operations_function else None),
                                # The local cloud gives the roles their passwords itself.
                                publish=(self._publish_function_urls
                                         if self.target.publishes_role_urls else None))

    def _publish_function_urls(self, conn: Any) -> list[str]:
        from collections_ops.services import database

        return database.publish_function_urls(conn, self.client("ssm"), self.env,
                                              self.database_url())


def _mask_url(text: str, url: str) -> str:
    from urllib.parse import urlsplit

    password = urlsplit(url).password
    return text.replace(password, "****") if password else text


def open_database(url: str) -> Any:
    """The CLI's own connection (`verify`, `search`, `db` on a direct route): autocommit, and
    nothing a pooler keeps per client: no startup options and no prepared statements (psycopg
    prepares a query run five times; RDS Proxy pins a client that prepares)."""
    import psycopg

    try:
        conn = psycopg.connect(url, connect_timeout=5, autocommit=True, prepare_threshold=None)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
        raise errors.DatabaseError(
            f"cannot connect to the database: {_mask_url(first, url)}",
            "check DATABASE_URL and that this machine can reach the database") from None
    try:
        from pgvector.psycopg import register_vector

        register_vector(conn)
    except psycopg.ProgrammingError:
        pass  # no vector extension yet: `db migrate` creates it
    return conn
