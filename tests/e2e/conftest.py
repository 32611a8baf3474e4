"""Fixtures shared by the end-to-end tests: a local cloud per test module, and the dev
environment on moto with a database only the operations function can reach, behind a stand-in
for Lambda's Invoke API."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from collections_ops.pipeline import FUNCTIONS, common_env, environment
from tests.e2e.cli import local_env, run
from tests.fakes.lambda_invoke import FakeLambda
from tests.fakes.providers import FakeProviders
from tests.moto_server import reset_moto

DEV = environment("dev")


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A local cloud of the test module's own, deployed with the CLI and destroyed after."""
    state = tmp_path_factory.mktemp("state")
    env = local_env(state)
    started = run(env, "deploy", "local")
    assert started.returncode == 0, started.stderr
    yield env
    run(env, "destroy", "local")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


@pytest.fixture
def private_db(database_url: str, moto_endpoint: str,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty database of its own, whose credentials only the operations function has (the
    RDS-generated secret); the DATABASE_URL parameter the CLI reads names a refused address."""
    import psycopg

    reset_moto(moto_endpoint)
    name = f"private_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(database_url)
    url = parts._replace(path=f"/{name}").geturl()
    socket_dir = parse_qs(parts.query)["host"][0]
    (socket_file,) = Path(socket_dir).glob(".s.PGSQL.*[0-9]")
    secret = boto3.client("secretsmanager", region_name="us-east-1").create_secret(
        Name=f"collections-dev-db-{uuid.uuid4().hex[:8]}",
        SecretString=json.dumps({"username": parts.username, "password": "rds-generated",
                                 "engine": "postgres", "host": socket_dir,
                                 "port": int(socket_file.name.rsplit(".", 1)[1]),
                                 "dbname": name}))
    # The function's environment: what the stack gives every function, and the secret.
    for key, value in common_env(DEV, account="123456789012").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATABASE_SECRET_ARN", secret["ARN"])
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name="/collections/dev/DATABASE_URL", Type="SecureString", Overwrite=True,
        Value=f"postgresql://collections:pw@127.0.0.1:{_closed_port()}/collections")
    yield url
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        for fn in FUNCTIONS:  # the migration's roles are the server's
            admin.execute(f'DROP ROLE IF EXISTS "{fn.database_role(name)}"')


@pytest.fixture
def fake_lambda() -> Iterator[FakeLambda]:
    """Lambda's Invoke API for the dev functions: the operations function runs for real,
    asynchronous invokes of the pipeline's functions are recorded."""
    fake = FakeLambda(DEV).start()
    yield fake
    fake.stop()


@pytest.fixture
def providers() -> Iterator[FakeProviders]:
    with FakeProviders() as fake:
        yield fake


@pytest.fixture
def dev_cli_env(tmp_path: Path, moto_endpoint: str, fake_lambda: FakeLambda,
            providers: FakeProviders) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "COLLECTIONS_", "DATABASE_"))}
    env.update({"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ENDPOINT_URL_LAMBDA": fake_lambda.url,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                "COLLECTIONS_STATE_DIR": str(tmp_path / "state"), "COLLECTIONS_ENV": "dev",
                "VOYAGE_API_KEY": "pa-test", "VOYAGE_BASE_URL": providers.voyage_base_url,
                "NO_COLOR": "1", "COLUMNS": "200"})
    return env
