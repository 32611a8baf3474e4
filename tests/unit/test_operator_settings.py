"""Every setting in one place: collections.toml's `[environments.<env>]`, `--set`, and the
deployment record, resolved in one documented order (flag > file > record > definition), and
an unknown key refused by name (exit 2), never ignored."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collections_ops import errors, pipeline, settings
from collections_ops.cli.app import app
from collections_ops.services import deployment

DEV = pipeline.environment("dev")


# --------------------------------------------------------------------------- the order


def test_each_layer_wins_over_the_ones_below() -> None:
    effective = settings.resolve(
        "dev", flags={"architecture": "arm64"},
        file={"architecture": "x86_64", "snapstart": True},
        recorded={"architecture": "x86_64", "snapstart": False, "lambda_memory_analyzer": 2048})
    assert effective.env.architecture == "arm64" and effective.source("architecture") == "flag"
    assert effective.env.snapstart is True and effective.source("snapstart") == "file"
    assert effective.env.lambda_memory_analyzer == 2048
    assert effective.source("lambda_memory_analyzer") == "record"
    assert effective.env.lambda_memory_processor == DEV.lambda_memory_processor
    assert effective.source("lambda_memory_processor") == "definition"


def test_what_is_not_the_definitions_is_what_the_record_keeps() -> None:
    effective = settings.resolve("dev", file={"rds_proxy": True},
                                 recorded={"reserved_concurrency": {"analyzer": 5}})
    assert effective.chosen() == {"rds_proxy": True, "reserved_concurrency": {"analyzer": 5}}
    assert effective.env.reserved_concurrency == {"analyzer": 5}


def test_a_recorded_setting_is_kept_when_the_file_no_longer_says_it() -> None:
    # GIVEN a deploy that took arm64 from collections.toml
    first = deployment.plan(DEV, None, file={"architecture": "arm64"})
    assert first.settings == {"architecture": "arm64"}
    # WHEN the file no longer says it, the next deploy keeps what was deployed
    again = deployment.plan(DEV, first, file={})
    assert again.settings == {"architecture": "arm64"}
    assert deployment.environment_of(DEV, again).architecture == "arm64"
    # and the file, once it says otherwise, wins over the record
    changed = deployment.plan(DEV, again, file={"architecture": "x86_64"})
    assert deployment.environment_of(DEV, changed).architecture == "x86_64"
    assert deployment.changes(again, changed) == ["architecture: arm64 -> x86_64"]


def test_the_database_mode_follows_the_same_order() -> None:
    rds = deployment.plan(DEV, None, file={"database": "rds"})
    assert rds.database == "rds"
    assert deployment.plan(DEV, rds).database == "rds"  # recorded
    assert deployment.plan(DEV, rds, database="existing").database == "existing"  # flag


def test_the_record_carries_the_settings_to_the_cdk_app() -> None:
    record = deployment.plan(DEV, None, flags={"snapstart": True, "lambda_timeout_analyzer": 600})
    context = deployment.cdk_context(record)
    assert json.loads(context[deployment.CONTEXT_SETTINGS]) == {
        "lambda_timeout_analyzer": 600, "snapstart": True}
    assert deployment.DeploymentRecord.from_dict(record.as_dict()) == record


def test_configure_writes_its_value_into_the_record() -> None:
    record = deployment.with_settings(deployment.plan(DEV, None), {"lambda_memory_analyzer": 4096})
    assert deployment.environment_of(DEV, record).lambda_memory_analyzer == 4096
    assert deployment.plan(DEV, record).settings == {"lambda_memory_analyzer": 4096}


def test_a_record_with_a_setting_this_cli_does_not_know_still_reads() -> None:
    data = {**deployment.plan(DEV, None).as_dict(), "settings": {"from_the_future": 1}}
    assert deployment.DeploymentRecord.from_dict(data).settings == {}


def test_a_recorded_value_of_the_wrong_kind_is_a_malformed_record() -> None:
    data = {**deployment.plan(DEV, None).as_dict(), "settings": {"snapstart": "maybe"}}
    with pytest.raises(errors.ConfigError, match="malformed"):
        deployment.DeploymentRecord.from_dict(data)


def test_every_field_of_the_definition_is_settable_or_says_why_not() -> None:
    fields = {f.name for f in dataclasses.fields(pipeline.Environment)}
    assert fields == set(settings.SETTABLE) | set(settings.NOT_SETTABLE)
    assert not set(settings.SETTABLE) & set(settings.NOT_SETTABLE)
    for name in ("snapstart", "architecture", "rds_proxy", "alarm_email",
                 "reserved_concurrency", "lambda_memory_analyzer", "lambda_timeout_operations"):
        assert name in settings.SETTABLE


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("values", "message"), [
    ({"snapstrat": True}, "unknown setting `snapstrat`"),
    ({"architecture": "arm"}, "`architecture` must be one of x86_64, arm64"),
    ({"lambda_timeout_analyzer": 901}, "`lambda_timeout_analyzer` must be 1-900"),
    ({"lambda_memory_embedder": "1024"}, "must be a whole number"),
    ({"rds_proxy": 1}, "`rds_proxy` must be true or false"),
    ({"reserved_concurrency": {"analyser": 5}}, "unknown function 'analyser'"),
    ({"alarm_email": "ops"}, "must be an email address"),
])
def test_a_bad_setting_is_a_usage_error_naming_the_key(values: dict[str, object],
                                                       message: str) -> None:
    with pytest.raises(errors.UsageError, match=message):
        settings.validate(values, where="collections.toml", env="dev")


def test_a_misspelt_key_gets_a_suggestion() -> None:
    with pytest.raises(errors.UsageError) as raised:
        settings.validate({"lambda_memroy_analyzer": 1}, where="x", env="dev")
    assert raised.value.hint == "did you mean `lambda_memory_analyzer`?"


def test_set_reads_values_as_toml() -> None:
    assert settings.parse_assignments(
        ["snapstart=true", "architecture=arm64", "lambda_memory_analyzer=2048",
         'alarm_email="ops@example.com"'], env="dev") == {
        "snapstart": True, "architecture": "arm64", "lambda_memory_analyzer": 2048,
        "alarm_email": "ops@example.com"}
    with pytest.raises(errors.UsageError, match="not KEY=VALUE"):
        settings.parse_assignments(["snapstart"], env="dev")


# --------------------------------------------------------------------------- the CLI


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("COLLECTIONS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("COLLECTIONS_ENV", raising=False)
    return CliRunner()


@pytest.mark.parametrize(("toml", "key"), [
    ('[environments.dev]\nsnapstrat = true\n', "snapstrat"),
    ('[environments.prod]\narchitecure = "arm64"\n', "architecure"),
    ('envv = "dev"\n', "envv"),
    ('[environments.staging]\nsnapstart = true\n', "staging"),
])
def test_a_misspelt_key_in_collections_toml_exits_2_naming_it(
        runner: CliRunner, tmp_path: Path, toml: str, key: str) -> None:
    (tmp_path / "collections.toml").write_text(toml)
    result = runner.invoke(app, ["synth", "dev", "-o", "json"])
    assert result.exit_code == 2, result.output
    error = json.loads(result.stdout)
    assert f"`{key}`" in error["error"] and "collections.toml" in error["error"]
    assert error["exit_code"] == 2


def test_a_setting_the_local_cloud_cannot_run_is_refused_not_ignored(
        runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "collections.toml").write_text("[environments.local]\nsnapstart = true\n")
    result = runner.invoke(app, ["status", "local"])
    assert result.exit_code == 2
    assert "`snapstart` is not a setting of the local cloud" in result.stderr


def test_a_bad_set_on_deploy_exits_2_before_any_work(runner: CliRunner) -> None:
    result = runner.invoke(app, ["deploy", "dev", "--set", "snapstart=perhaps"])
    assert result.exit_code == 2 and "`snapstart` must be true or false" in result.stderr


def test_the_price_tables_are_still_read_beside_the_settings(runner: CliRunner,
                                                              tmp_path: Path) -> None:
    (tmp_path / "collections.toml").write_text(
        '[prices]\nas_of = "2027-01-01"\n[environments.dev]\nsnapstart = true\n'
        '[environments.dev.prices]\nas_of = "2027-02-01"\n')
    loaded = settings.load()
    assert loaded.file_settings("dev") == {"snapstart": True}
    assert [name for name, _ in settings.price_overrides("dev")] == [
        "config file [prices]", "config file [environments.dev.prices]"]
