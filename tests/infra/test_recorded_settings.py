"""A setting reaches the template the way `collections deploy` sends it: collections.toml's
`[environments.dev]` resolved with the deployment record (`services/deployment.py`) into the
`collections:settings` context document -- and a value the file gave once stays in the
template after the file stops saying it, because the record keeps it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from collections_ops import pipeline as definition
from collections_ops.services import bundle_deps, deployment
from stacks import settings
from stacks.settings import ConfigurationError
from tests.infra.support import SynthesizedApp, synthesize
from tests.infra.test_coldstart import _bundles

DEV = definition.environment("dev")
FILE = {"architecture": "arm64", "snapstart": True, "lambda_memory_analyzer": 2048,
        "reserved_concurrency": {"embedder": 3}, "alarm_email": "ops@example.com"}


def _synth(tmp: pytest.TempPathFactory, name: str, record: deployment.DeploymentRecord,
           bundles: Path) -> SynthesizedApp:
    return synthesize(tmp.mktemp(name), **{"collections:environments": "dev",
                                           "collections:bundleDir": str(bundles),
                                           **deployment.cdk_context(record)})


@pytest.fixture(scope="module")
def arm64_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _bundles(tmp_path_factory.mktemp("bundles-settings"), bundle_deps.PLATFORMS["arm64"])


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory,
          arm64_bundles: Path) -> tuple[deployment.DeploymentRecord, SynthesizedApp]:
    """The first deploy: the settings come from collections.toml."""
    record = deployment.stamped(deployment.plan(DEV, None, file=FILE))
    return record, _synth(tmp_path_factory, "cdk-out-settings-file", record, arm64_bundles)


@pytest.fixture(scope="module")
def kept(tmp_path_factory: pytest.TempPathFactory, arm64_bundles: Path,
         first: tuple[deployment.DeploymentRecord, SynthesizedApp]) -> SynthesizedApp:
    """The next deploy, with the table gone from collections.toml: only the record says it."""
    record = deployment.plan(DEV, first[0], file={})
    return _synth(tmp_path_factory, "cdk-out-settings-kept", record, arm64_bundles)


def _template(app: SynthesizedApp, kind: str = "Compute") -> dict[str, Any]:
    return dict(app.template_json("dev", kind)["Resources"])


def _function(resources: dict[str, Any], fn: definition.Function) -> dict[str, Any]:
    (props,) = [r["Properties"] for r in resources.values()
                if r["Type"] == "AWS::Lambda::Function"
                and r["Properties"].get("FunctionName") == fn.function_name("dev")]
    return dict(props)


def _assert_the_files_settings(app: SynthesizedApp) -> None:
    resources = _template(app)
    analyzer = _function(resources, definition.ANALYZER)
    assert analyzer["Architectures"] == ["arm64"]
    assert analyzer["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert analyzer["MemorySize"] == 2048
    assert _function(resources, definition.EMBEDDER)["ReservedConcurrentExecutions"] == 3
    # Untouched settings stay the definition's.
    processor = _function(resources, definition.IMAGE_PROCESSOR)
    assert processor["MemorySize"] == DEV.lambda_memory_processor
    assert "ReservedConcurrentExecutions" not in processor
    subscriptions = [r["Properties"] for r in _template(app, "Monitoring").values()
                     if r["Type"] == "AWS::SNS::Subscription"]
    assert [s["Endpoint"] for s in subscriptions] == ["ops@example.com"]


def test_a_setting_from_collections_toml_reaches_the_template(
        first: tuple[deployment.DeploymentRecord, SynthesizedApp]) -> None:
    _assert_the_files_settings(first[1])


def test_the_recorded_setting_is_kept_when_the_file_no_longer_says_it(
        kept: SynthesizedApp) -> None:
    _assert_the_files_settings(kept)


def test_without_the_record_the_definition_applies(existing_db_app: SynthesizedApp) -> None:
    # The same app with neither file nor record: what the assertions above could tell apart.
    analyzer = _function(dict(existing_db_app.template_json("dev", "Compute")["Resources"]),
                         definition.ANALYZER)
    assert "SnapStart" not in analyzer and analyzer["MemorySize"] == DEV.lambda_memory_analyzer


@pytest.mark.parametrize(("document", "message"), [
    ('{"snapstrat": true}', "unknown setting `snapstrat`"),
    ('{"architecture": "sparc"}', "must be one of x86_64, arm64"),
    ("[1]", "not a JSON object"),
])
def test_a_bad_settings_document_is_refused_by_the_app(document: str, message: str) -> None:
    import aws_cdk as cdk

    with pytest.raises(ConfigurationError, match=message):
        settings.deployments(cdk.App(context={settings.CONTEXT_SETTINGS: document,
                                              settings.CONTEXT_ENVIRONMENTS: "dev"}).node)
