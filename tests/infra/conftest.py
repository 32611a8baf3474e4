"""Fixtures for the infrastructure tests: the CDK app synthesized in-process once per session
and per database mode, with a fixed test account; a private CDK_HOME with telemetry off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.support import SynthesizedApp, synthesize


@pytest.fixture(scope="session", autouse=True)
def cdk_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private CDK_HOME with telemetry off for everything CDK in this session."""
    home = tmp_path_factory.mktemp("cdk-home")
    patch = pytest.MonkeyPatch()
    patch.setenv("CDK_HOME", str(home))
    patch.setenv("CDK_DISABLE_TELEMETRY", "true")
    patch.setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    yield home
    patch.undo()


@pytest.fixture(scope="session")
def existing_db_app(cdk_home: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """Database mode `existing` (the default): DATABASE_URL from SSM, functions outside a VPC."""
    return synthesize(tmp_path_factory.mktemp("cdk-out-existing"))


@pytest.fixture(scope="session")
def rds_app(cdk_home: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """Database mode `rds`: VPC, private PostgreSQL 16, functions in private subnets."""
    return synthesize(tmp_path_factory.mktemp("cdk-out-rds"), **{"collections:database": "rds"})


@pytest.fixture(scope="session")
def accountless_app(cdk_home: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """`cdk synth` with no account anywhere (no credentials): names resolve at deploy time."""
    return synthesize(tmp_path_factory.mktemp("cdk-out-accountless"), account=None,
                      **{"collections:environments": "dev"})


@pytest.fixture(scope="session")
def rds_proxy_app(cdk_home: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """Database mode `rds` through RDS Proxy, with an alarm email subscription (dev only)."""
    return synthesize(tmp_path_factory.mktemp("cdk-out-rds-proxy"), **{
        "collections:environments": "dev", "collections:database": "rds",
        "collections:rdsProxy": "true", "collections:alarmEmail": "ops@example.com"})


@pytest.fixture(scope="session")
def existing_vpc_app(cdk_home: Path, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedApp:
    """Database mode `existing` with the database inside the operator's VPC (dev only)."""
    return synthesize(tmp_path_factory.mktemp("cdk-out-existing-vpc"), **{
        "collections:environments": "dev",
        "collections:subnetIds": "subnet-0aaa1111,subnet-0bbb2222",
        "collections:securityGroupIds": "sg-0ccc3333"})


@pytest.fixture(scope="session",
                params=["existing", "rds", "accountless", "rds_proxy", "existing_vpc"])
def any_app(request: pytest.FixtureRequest) -> SynthesizedApp:
    app = request.getfixturevalue(f"{request.param}_app".replace("existing_app",
                                                                 "existing_db_app"))
    assert isinstance(app, SynthesizedApp)
    return app
