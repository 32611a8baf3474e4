"""How the app reads its context: environments, database mode, account and code location."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest

from collections_ops import pipeline as definition
from stacks import settings
from stacks.code import BundleError, CodeLocator, source_hash
from stacks.settings import ConfigurationError
from tests.infra.support import REPO


def _deployments(context: dict[str, object]) -> list[settings.Deployment]:
    return settings.deployments(cdk.App(context=context).node)


def test_every_aws_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
    deployments = _deployments({})
    assert [d.name for d in deployments] == [
        e.name for e in definition.ENVIRONMENTS.values() if not e.is_local]
    assert all(d.database == "existing" and d.account is None for d in deployments)
    assert all(d.code == CodeLocator() for d in deployments)
    assert all(d.database == d.settings.database for d in deployments)  # the definition's


def test_context_selects_environments_account_and_database() -> None:
    (deployment,) = _deployments({settings.CONTEXT_ENVIRONMENTS: "prod",
                                  settings.CONTEXT_ACCOUNT: "210987654321",
                                  settings.CONTEXT_DATABASE: "rds"})
    assert (deployment.name, deployment.account, deployment.database) == (
        "prod", "210987654321", "rds")
    assert deployment.images_bucket_name == "collections-images-prod-210987654321"


@pytest.mark.parametrize(("context", "message"), [
    ({settings.CONTEXT_DATABASE: "aurora"}, "choose one of existing, rds"),
    ({settings.CONTEXT_ENVIRONMENTS: "staging"}, "unknown environment 'staging'"),
    ({settings.CONTEXT_ENVIRONMENTS: "local"}, "embedded local cloud"),
])
def test_bad_context_is_a_clear_error(context: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _deployments(context)


def _bundle(path: Path, fn: definition.Function) -> Path:
    (path / fn.code_dir / "collections_core").mkdir(parents=True)
    (path / fn.code_dir / "handler.py").write_text("")
    return path / fn.code_dir


def test_code_comes_from_the_bundle_directory_when_a_build_made_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for fn in definition.FUNCTIONS:
        _bundle(tmp_path / "env", fn)
    monkeypatch.setenv(settings.ENV_BUNDLE_DIR, str(tmp_path / "env"))
    (deployment, *_) = _deployments({})
    for fn in definition.FUNCTIONS:
        assert deployment.code.path_for(fn) == tmp_path / "env" / fn.code_dir
    # A function the bundle step did not build is built by the synth, not taken from source.
    assert deployment.code.path_for(definition.OPERATIONS) is None
    # Context wins over the environment variable.
    _bundle(tmp_path / "ctx", definition.FUNCTIONS[0])
    (deployment, *_) = _deployments({settings.CONTEXT_BUNDLE_DIR: str(tmp_path / "ctx")})
    assert deployment.code.path_for(definition.FUNCTIONS[0]) == (
        tmp_path / "ctx" / definition.FUNCTIONS[0].code_dir)


def test_a_half_built_bundle_is_refused(tmp_path: Path) -> None:
    (tmp_path / definition.FUNCTIONS[0].code_dir).mkdir()
    (tmp_path / definition.FUNCTIONS[0].code_dir / "handler.py").write_text("")
    locator = CodeLocator(bundle_dir=tmp_path)
    with pytest.raises(BundleError, match=r"no collections_core.*collections build"):
        locator.path_for(definition.FUNCTIONS[0])


def test_without_bundles_the_synth_builds_them() -> None:
    for fn in definition.DEPLOYED_FUNCTIONS:
        assert CodeLocator().path_for(fn) is None  # local bundling, never the source folder


def test_the_bundle_hash_follows_code_shared_package_and_requirements(tmp_path: Path) -> None:
    import shutil

    lambdas = tmp_path / "lambdas"
    shutil.copytree(REPO / "lambdas" / "operations", lambdas / "operations")
    shutil.copytree(REPO / "lambdas" / "shared", lambdas / "shared")
    fn = definition.OPERATIONS
    first = source_hash(fn, lambdas)
    (lambdas / "operations" / "requirements.txt").write_text("psycopg[binary]\n")
    second = source_hash(fn, lambdas)
    (lambdas / "shared" / "collections_core" / "migrations" / "9999_x.sql").write_text("")
    third = source_hash(fn, lambdas)
    assert len({first, second, third}) == 3


def test_database_vpc_placement_for_an_existing_database() -> None:
    (deployment,) = _deployments({settings.CONTEXT_ENVIRONMENTS: "dev",
                                  settings.CONTEXT_SUBNET_IDS: "subnet-1, subnet-2",
                                  settings.CONTEXT_SECURITY_GROUP_IDS: "sg-1"})
    assert deployment.database_vpc == definition.VpcPlacement(("subnet-1", "subnet-2"), ("sg-1",))
    assert _deployments({settings.CONTEXT_ENVIRONMENTS: "dev"})[0].database_vpc is None


@pytest.mark.parametrize(("context", "message"), [
    ({settings.CONTEXT_SUBNET_IDS: "subnet-1"}, "go together"),
    ({settings.CONTEXT_SUBNET_IDS: "vpc-1", settings.CONTEXT_SECURITY_GROUP_IDS: "sg-1"},
     "not subnet-/sg- ids: vpc-1"),
    ({settings.CONTEXT_SUBNET_IDS: "subnet-1", settings.CONTEXT_SECURITY_GROUP_IDS: "sg-1",
      settings.CONTEXT_DATABASE: "rds"}, "creates its own VPC"),
    ({settings.CONTEXT_RDS_PROXY: "yes"}, "use true or false"),
])
def test_bad_placement_is_a_clear_error(context: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _deployments(context)


def test_context_carries_the_operators_alarm_email_and_proxy_choice() -> None:
    (deployment,) = _deployments({settings.CONTEXT_ENVIRONMENTS: "dev",
                                  settings.CONTEXT_ALARM_EMAIL: "ops@example.com",
                                  settings.CONTEXT_RDS_PROXY: "true"})
    assert deployment.settings.alarm_email == "ops@example.com"
    assert deployment.settings.rds_proxy is True
    assert deployment.settings.name == "dev"
