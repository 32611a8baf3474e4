"""A setting's life on an AWS environment, as the operator drives it: set in collections.toml,
deployed and recorded; kept by a deploy after the file stops saying it; changed by
`configure` and kept by the next deploy; shown by `status`/`diff` with where it came from.
AWS is moto; `cdk` is a stand-in that records the context each deploy hands the app (the
template side of the same context: tests/infra/test_recorded_settings.py)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3

from collections_ops.pipeline import environment
from tests.e2e.cli import run
from tests.e2e.test_cli_deploy import READY, put_parameters, recorded
from tests.e2e.test_cli_deploy import aws_env as aws_env

DEV = environment("dev")


def _settings_context(argv: list[str]) -> dict[str, object]:
    contexts = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    found = [c.partition("=")[2] for c in contexts if c.startswith("collections:settings=")]
    return json.loads(found[0]) if found else {}


def _record(endpoint: str) -> dict[str, object]:
    ssm = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="t", aws_secret_access_key="t")
    value = ssm.get_parameter(Name=DEV.record_parameter())["Parameter"]["Value"]
    return dict(json.loads(value)["settings"])


def _sources(rows: list[dict[str, object]]) -> dict[object, tuple[object, object]]:
    return {r["key"]: (r["value"], r["source"]) for r in rows}


def test_a_setting_is_applied_recorded_kept_and_configured(aws_env, moto_endpoint, tmp_path):
    from tests.integration.test_doctor_aws import aws_shaped_dev

    aws_shaped_dev(boto3.session.Session(region_name="us-east-1"))
    put_parameters(moto_endpoint, *READY)
    config = tmp_path / "xdg" / "collections" / "config.toml"
    config.parent.mkdir(parents=True)
    env = dict(aws_env, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    deploy = ("deploy", "dev", "--profile", "ops", "--skip-build", "--yes")

    # GIVEN collections.toml sets SnapStart and the analyzer's memory
    config.write_text("[environments.dev]\nsnapstart = true\nlambda_memory_analyzer = 2048\n")
    first = run(env, *deploy)
    assert first.returncode == 0, first.stdout + first.stderr
    # THEN the deploy hands them to the app and records them
    want = {"snapstart": True, "lambda_memory_analyzer": 2048}
    assert _settings_context(recorded(env)[-1]) == want
    assert _record(moto_endpoint) == want

    # WHEN the file no longer says them, a plain deploy keeps what was deployed
    config.write_text("")
    again = run(env, *deploy)
    assert again.returncode == 0, again.stderr
    assert _settings_context(recorded(env)[-1]) == want
    status = json.loads(run(env, "status", "dev", "--profile", "ops", "-o", "json").stdout)
    shown = _sources(status["settings"])
    assert shown["snapstart"] == (True, "record")
    assert shown["architecture"] == ("x86_64", "definition")

    # WHEN configure changes the analyzer's timeout, it is recorded and the next deploy keeps it
    configured = run(env, "configure", "analyzer", "-e", "dev", "--timeout", "600",
                     "--profile", "ops", "-o", "json")
    assert configured.returncode == 0, configured.stderr
    assert json.loads(configured.stdout)["settings"]["kept_by_deploy"] is True
    assert _record(moto_endpoint)["lambda_timeout_analyzer"] == 600
    kept = run(env, *deploy)
    assert kept.returncode == 0, kept.stderr
    assert _settings_context(recorded(env)[-1]) == {**want, "lambda_timeout_analyzer": 600}

    # WHEN the file says otherwise, configure says the file wins at the next deploy
    config.write_text("[environments.dev]\nlambda_timeout_analyzer = 300\n")
    overridden = json.loads(run(env, "configure", "analyzer", "-e", "dev", "--timeout", "700",
                                "--profile", "ops", "-o", "json").stdout)["settings"]
    assert overridden["kept_by_deploy"] is False
    assert overridden["overridden_by_file"] == {"lambda_timeout_analyzer": 300}

    # AND diff shows what a deploy would deploy, and from where
    diffed = run(env, "diff", "dev", "--profile", "ops", "-o", "json")
    assert diffed.returncode == 0, diffed.stderr
    shown = _sources(json.loads(diffed.stdout)["settings"])
    assert shown["lambda_timeout_analyzer"] == (300, "file")
    assert shown["lambda_memory_analyzer"] == (2048, "record")
    assert _settings_context(recorded(env)[-1])["lambda_timeout_analyzer"] == 300

    # AND --set wins over all of them, and is recorded in turn
    flagged = run(env, *deploy, "--set", "lambda_timeout_analyzer=450")
    assert flagged.returncode == 0, flagged.stderr
    assert "lambda_timeout_analyzer: 700 -> 450" in flagged.stderr
    assert _record(moto_endpoint)["lambda_timeout_analyzer"] == 450


def test_a_misspelt_key_stops_the_deploy_before_cdk(aws_env, tmp_path: Path):
    config = tmp_path / "xdg" / "collections" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[environments.dev]\nsnapstrat = true\n")
    env = dict(aws_env, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    result = run(env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert result.returncode == 2
    assert "unknown setting `snapstrat`" in result.stderr and "snapstart" in result.stderr
    assert recorded(env) == []
