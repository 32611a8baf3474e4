"""The CLI knows each pipeline function's own database URL: `db migrate` on a direct route
writes them as the operations function's migrate does, `secrets list` shows them beside the
owner's DATABASE_URL, for their function only. Driven in process through the CLI against the
tests' PostgreSQL and SSM on the moto server; nothing is patched."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import psycopg
import pytest
from typer.testing import CliRunner

from collections_ops.cli.app import app
from collections_ops.pipeline import FUNCTIONS, environment
from tests.moto_server import reset_moto

DEV = environment("dev")


@pytest.fixture
def dev_database(database_url: str, moto_endpoint: str) -> Iterator[str]:
    """An empty database of its own, named by dev's DATABASE_URL (the owner's)."""
    name = f"creds_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(database_url)._replace(path=f"/{name}").geturl()
    reset_moto(moto_endpoint)
    boto3.client("ssm", region_name="us-east-1").put_parameter(
        Name=DEV.parameter_name("DATABASE_URL"), Value=url, Type="SecureString")
    yield url
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for fn in FUNCTIONS:
            admin.execute(f'DROP ROLE IF EXISTS "{fn.database_role(name)}"')


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("COLLECTIONS_STATE_DIR", str(tmp_path / "state"))
    for name in ("COLLECTIONS_ENV", "DATABASE_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
        monkeypatch.setenv(key, value)
    return CliRunner()


def _urls() -> dict[str, str | None]:
    ssm = boto3.client("ssm", region_name="us-east-1")
    found = ssm.get_parameters(Names=[DEV.parameter_name(fn.database_url_name)
                                      for fn in FUNCTIONS], WithDecryption=True)["Parameters"]
    values = {p["Name"]: p["Value"] for p in found}
    return {fn.key: values.get(DEV.parameter_name(fn.database_url_name)) for fn in FUNCTIONS}


def test_db_migrate_on_a_direct_route_writes_each_functions_own_url(cli, dev_database):
    database = urlsplit(dev_database).path.lstrip("/")
    # WHEN the operator migrates dev's database from this machine
    migrated = cli.invoke(app, ["db", "migrate", "--env", "dev", "-o", "json"])
    assert migrated.exit_code == 0, migrated.output
    assert json.loads(migrated.stdout)["route"] == "direct"
    # THEN each function has its own URL, which logs in as its own role
    urls = _urls()
    for fn in FUNCTIONS:
        url = urls[fn.key]
        assert url is not None, fn.key
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (
                fn.database_role(database),)
    # AND migrating again keeps them as they are
    assert cli.invoke(app, ["db", "migrate", "--env", "dev"]).exit_code == 0
    assert _urls() == urls
    # AND secrets list shows them, in dev's own scope, each for its function
    listed = {i["name"]: i for i in json.loads(cli.invoke(
        app, ["secrets", "list", "--env", "dev", "-o", "json"]).stdout)}
    for fn in FUNCTIONS:
        shown = listed[fn.database_url_name]
        assert shown["present"] and shown["parameter"] == DEV.parameter_name(
            fn.database_url_name)
    text = cli.invoke(app, ["secrets", "list", "--env", "dev"]).stdout
    assert all(fn.database_url_name in text for fn in FUNCTIONS)
    assert all(url and urlsplit(url).password not in text for url in urls.values())
