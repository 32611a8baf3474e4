"""How the app reads its context: environments, database mode, account and code location."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest

from collections_ops import pipeline as definition
from stacks import settings
from stacks.settings import CodeLocator, ConfigurationError
from tests.infra.support import REPO

pytestmark = pytest.mark.infra


def _deployments(context: dict[str, object]) -> list[settings.Deployment]:
    return settings.deployments(cdk.App(context=context).node)


def test_every_aws_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDK_DEFAULT_ACCOUNT", raising=False)
    deployments = _deployments({})
    assert [d.name for d in deployments] == [
        e.name for e in definition.ENVIRONMENTS.values() if not e.is_local]
    assert all(d.database == "existing" and d.account is None for d in deployments)
    assert all(d.code == CodeLocator() for d in deployments)


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


def test_code_comes_from_the_bundle_directory_when_a_build_made_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for fn in definition.FUNCTIONS:
        (tmp_path / fn.code_dir).mkdir()
    monkeypatch.setenv(settings.ENV_BUNDLE_DIR, str(tmp_path))
    (deployment, *_) = _deployments({})
    for fn in definition.FUNCTIONS:
        assert deployment.code.path_for(fn) == tmp_path / fn.code_dir
    # Context wins over the environment variable.
    (deployment, *_) = _deployments({settings.CONTEXT_BUNDLE_DIR: str(REPO / "lambdas")})
    assert deployment.code.path_for(definition.FUNCTIONS[0]) == (
        REPO / "lambdas" / definition.FUNCTIONS[0].code_dir)


def test_a_half_built_bundle_is_refused(tmp_path: Path) -> None:
    locator = CodeLocator(bundle_dir=tmp_path)
    with pytest.raises(ConfigurationError, match="has no"):
        locator.path_for(definition.FUNCTIONS[0])


def test_source_directories_by_default() -> None:
    for fn in definition.FUNCTIONS:
        assert CodeLocator().path_for(fn) == REPO / "lambdas" / fn.code_dir
