"""`collections deploy/diff/destroy/synth` for AWS environments: preflight against moto, the
CDK command proven with a stand-in `cdk` on PATH that records its arguments, and a real synth
with the pinned CDK CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.e2e.cli import run
from tests.infra.support import fake_bundles
from tests.moto_server import reset_moto

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = """#!{python}
import json, os, sys
with open(os.environ["FAKE_CDK_LOG"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
sys.exit(int(os.environ.get("FAKE_CDK_EXIT", "0"))
         or (3 if os.environ.get("FAKE_CDK_FAIL_ON", "-") in sys.argv else 0))
"""




@pytest.fixture
def aws_env(tmp_path: Path, moto_endpoint: str) -> dict[str, str]:
    """A CLI environment whose AWS is moto, with a profile `ops` and a stand-in `cdk`."""
    reset_moto(moto_endpoint)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    cdk = bindir / "cdk"
    cdk.write_text(STAND_IN.format(python=sys.executable))
    cdk.chmod(0o755)
    (tmp_path / "config").write_text("[profile ops]\nregion = us-east-1\n")
    (tmp_path / "credentials").write_text(
        "[ops]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    state = tmp_path / "state"
    for code_dir in ("image_processor", "analyzer", "embedder"):
        (state / "build" / "dev" / code_dir).mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COLLECTIONS_"))}
    env.update({
        "PATH": f"{bindir}{os.pathsep}{env['PATH']}", "FAKE_CDK_LOG": str(tmp_path / "cdk.log"),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_ENDPOINT_URL": moto_endpoint, "COLLECTIONS_STATE_DIR": str(state),
        "NO_COLOR": "1", "COLUMNS": "200",
    })
    return env


def put_parameters(endpoint: str, *names: str) -> None:
    ssm = boto3.client("ssm", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="t", aws_secret_access_key="t")
    for name in names:
        ssm.put_parameter(Name=name, Value="value-" + name.rpartition("/")[2],
                          Type="SecureString" if name.startswith("/collections") else "String",
                          Overwrite=True)


def recorded(env: dict[str, str]) -> list[list[str]]:
    log = Path(env["FAKE_CDK_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


READY = ("/cdk-bootstrap/hnb659fds/version", "/collections/dev/DATABASE_URL",
         "/collections/ANTHROPIC_API_KEY", "/collections/VOYAGE_API_KEY")


def test_deploy_runs_the_right_cdk_command(aws_env, moto_endpoint):
    put_parameters(moto_endpoint, *READY)
    result = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    [argv] = recorded(aws_env)
    assert argv[:5] == ["deploy", "CollectionsComputeStack-dev", "CollectionsMonitoringStack-dev",
                        "--require-approval", "never"]
    assert argv[argv.index("--app") + 1] == f"{sys.executable} app.py"
    assert argv[argv.index("--profile") + 1] == "ops"
    contexts = [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]
    assert "collections:environments=dev" in contexts
    assert f"collections:bundleDir={aws_env['COLLECTIONS_STATE_DIR']}/build/dev" in contexts
    assert "✓" in result.stdout and "bootstrap" in result.stdout


def test_deploy_all_with_an_approval_level(aws_env, moto_endpoint):
    put_parameters(moto_endpoint, *READY)
    result = run(aws_env, "deploy", "dev", "--all", "--require-approval", "any-change",
                 "--profile", "ops", "--skip-build")
    assert result.returncode == 0, result.stderr
    [argv] = recorded(aws_env)
    assert argv[:4] == ["deploy", "--all", "--require-approval", "any-change"]


def test_deploy_json_is_one_document_with_cdk_output_on_stderr(aws_env, moto_endpoint):
    put_parameters(moto_endpoint, *READY)
    result = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes",
                 "-o", "json")
    assert result.returncode == 0, result.stderr
    checks = json.loads(result.stdout)
    assert {c["name"] for c in checks} >= {"credentials", "region", "bootstrap"}
    assert all(c["ok"] for c in checks)


def test_diff_without_credentials_is_5_not_changes(aws_env):
    env = dict(aws_env, AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_CONFIG_FILE="/dev/null",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    for verb in ("diff", "destroy", "rollback", "bootstrap"):
        result = run(env, verb, "dev")
        assert result.returncode == 5, (verb, result.stderr)
        assert "no AWS credentials found" in result.stderr
    assert recorded(aws_env) == [], "the CDK CLI never ran"


def test_missing_parameters_stop_the_deploy_before_cdk(aws_env, moto_endpoint):
    put_parameters(moto_endpoint, "/cdk-bootstrap/hnb659fds/version", "/collections/dev/DATABASE_URL")
    result = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert result.returncode == 10
    assert "preflight failed: parameter /collections/ANTHROPIC_API_KEY: missing" in result.stderr
    assert "collections secrets put ANTHROPIC_API_KEY --env dev" in result.stderr
    assert recorded(aws_env) == []


def test_an_unbootstrapped_account_is_named(aws_env, moto_endpoint):
    put_parameters(moto_endpoint, *READY[1:])
    result = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert result.returncode == 10
    assert "bootstrap" in result.stderr and "collections bootstrap dev" in result.stderr


def test_no_credentials_is_a_sentence_not_a_traceback(aws_env):
    env = dict(aws_env, AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_CONFIG_FILE="/dev/null",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    result = run(env, "deploy", "dev", "--skip-build", "--yes")
    assert result.returncode == 5, result.stderr
    assert "no AWS credentials found" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_profile_is_named(aws_env):
    result = run(aws_env, "deploy", "dev", "--profile", "nope", "--skip-build")
    assert result.returncode == 5
    assert "nope" in result.stderr


def test_cdk_failing_mid_deploy_is_reported(aws_env, moto_endpoint):
    put_parameters(moto_endpoint, *READY)
    env = dict(aws_env, FAKE_CDK_EXIT="1")
    result = run(env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert result.returncode == 1
    assert "cdk deploy failed (exit 1)" in result.stderr
    assert "collections rollback dev" in result.stderr


def test_diff_exit_codes_tell_changes_from_errors(aws_env):
    assert run(aws_env, "diff", "dev", "--profile", "ops").returncode == 0
    changed = run(dict(aws_env, FAKE_CDK_EXIT="1"), "diff", "dev", "--profile", "ops")
    assert changed.returncode == 11
    broken = run(dict(aws_env, FAKE_CDK_EXIT="2"), "diff", "dev", "--profile", "ops")
    assert broken.returncode == 1
    assert all(argv[0] == "diff" and "--fail" in argv for argv in recorded(aws_env))


def test_destroy_and_rollback_name_the_stacks(aws_env):
    assert run(aws_env, "destroy", "prod", "--yes", "--profile", "ops").returncode == 0
    assert run(aws_env, "rollback", "prod", "--profile", "ops").returncode == 0
    destroy, rollback = recorded(aws_env)
    assert destroy[:4] == ["destroy", "CollectionsComputeStack-prod",
                           "CollectionsMonitoringStack-prod", "--force"]
    assert rollback[:2] == ["rollback", "CollectionsComputeStack-prod"]


def test_an_unknown_environment_is_refused(aws_env):
    result = run(aws_env, "deploy", "staging")
    assert result.returncode == 10
    assert "unknown environment 'staging'" in result.stderr


def test_synth_runs_the_real_pinned_cdk_cli(tmp_path):
    cdk = ROOT / "infrastructure" / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        pytest.skip("the pinned CDK CLI is not installed (make setup runs npm ci)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COLLECTIONS_"))}
    env.update({"COLLECTIONS_STATE_DIR": str(tmp_path), "COLLECTIONS_CDK": str(cdk),
                "CDK_HOME": str(tmp_path / "cdk-home"), "AWS_EC2_METADATA_DISABLED": "true",
                "NO_COLOR": "1",
                # Bundles shaped as `collections build` makes them, without pip's minutes
                # (tests/infra/test_cdk_cli.py builds for real).
                "COLLECTIONS_BUNDLE_DIR": str(fake_bundles(tmp_path / "bundles"))})
    result = run(env, "synth", "dev")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    template = json.loads((tmp_path / "cdk.out" / "dev" /
                           "CollectionsComputeStack-dev.template.json").read_text())
    names = {r["Properties"].get("FunctionName") for r in template["Resources"].values()
             if r["Type"] == "AWS::Lambda::Function"}
    assert {"collections-dev-ImageProcessorLambda", "collections-dev-AnalyzerLambda",
            "collections-dev-EmbedderLambda", "collections-dev-OperationsLambda"} <= names


def test_without_the_infra_extra_the_cdk_commands_name_it(tmp_path):
    # aws-cdk-lib made unimportable for this one process, as in an install without [infra]
    probe = ("import sys; sys.modules['aws_cdk'] = None; sys.argv = ['collections', 'synth', "
             "'prod']; from collections_ops.cli.app import main; main()")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COLLECTIONS_"))}
    env.update({"COLLECTIONS_STATE_DIR": str(tmp_path / "state"), "NO_COLOR": "1"})
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 10, result.stderr
    assert "pip install 'collections-ops[infra]'" in result.stderr
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- the record


def contexts_of(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-c"]


def test_the_database_mode_is_remembered_from_deploy_to_destroy(aws_env, moto_endpoint):
    # GIVEN a first deploy with a private RDS database: no DATABASE_URL exists yet
    put_parameters(moto_endpoint, "/cdk-bootstrap/hnb659fds/version",
                   "/collections/ANTHROPIC_API_KEY", "/collections/VOYAGE_API_KEY")
    first = run(aws_env, "deploy", "dev", "--database", "rds", "--profile", "ops",
                "--skip-build", "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    # WHEN the next deploy, a diff and the destroy name no database mode
    again = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    diffed = run(aws_env, "diff", "dev", "--profile", "ops")
    assert diffed.returncode == 0, diffed.stderr
    gone = run(aws_env, "destroy", "dev", "--yes", "--profile", "ops")
    assert gone.returncode == 0, gone.stderr
    # THEN each of them kept the database stack and the rds context
    for argv in recorded(aws_env):
        assert "CollectionsDatabaseStack-dev" in argv, argv
        assert "collections:database=rds" in contexts_of(argv)
    # AND the record is gone with the environment
    assert not (Path(aws_env["COLLECTIONS_STATE_DIR"]) / "dev" / "deployment.json").exists()


def test_another_machine_finds_the_record_in_the_account(aws_env, moto_endpoint, tmp_path):
    put_parameters(moto_endpoint, *READY)
    assert run(aws_env, "deploy", "dev", "--database", "rds", "--profile", "ops",
               "--skip-build", "--yes").returncode == 0
    elsewhere = dict(aws_env, COLLECTIONS_STATE_DIR=str(tmp_path / "other-laptop"))
    assert run(elsewhere, "destroy", "dev", "--yes", "--profile", "ops").returncode == 0
    assert "CollectionsDatabaseStack-dev" in recorded(aws_env)[-1]


@pytest.mark.parametrize("verb", ["diff", "deploy", "destroy", "rollback", "bootstrap"])
def test_no_credentials_stops_before_any_build(aws_env, verb):
    env = dict(aws_env, AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_CONFIG_FILE="/dev/null",
               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    result = run(env, verb, "dev", *(["--yes"] if verb in ("deploy", "destroy") else []))
    assert result.returncode == 5, result.stdout + result.stderr
    assert "no AWS credentials found" in result.stderr
    assert recorded(aws_env) == []
    assert "bundles (" not in result.stdout  # deploy did not build


def test_a_region_other_than_the_stacks_is_refused_naming_both(aws_env):
    result = run(aws_env, "deploy", "dev", "--profile", "ops", "--region", "eu-west-1",
                 "--skip-build", "--yes")
    assert result.returncode == 10, result.stderr
    assert "eu-west-1" in result.stderr and "us-east-1" in result.stderr
    assert recorded(aws_env) == []


def test_the_profiles_region_does_not_send_commands_elsewhere(aws_env, moto_endpoint):
    # The profile says eu-west-1; the dev stacks (and their secrets) are in us-east-1.
    Path(aws_env["AWS_CONFIG_FILE"]).write_text("[profile ops]\nregion = eu-west-1\n")
    put_parameters(moto_endpoint, *READY)
    result = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    [argv] = recorded(aws_env)
    assert argv[0] == "deploy"


def test_configure_takes_effect_on_live_and_versions_shows_it(aws_env, moto_endpoint):
    from tests.integration.test_doctor_aws import aws_shaped_dev

    aws_shaped_dev(boto3.session.Session(region_name="us-east-1"))
    result = run(aws_env, "configure", "analyzer", "--env", "dev", "--timeout", "600",
                 "--profile", "ops")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "live moved from version 1 to 2" in result.stdout
    lam = boto3.client("lambda", region_name="us-east-1")
    live = lam.get_function_configuration(FunctionName="collections-dev-AnalyzerLambda",
                                          Qualifier="live")
    assert (live["Version"], live["Timeout"]) == ("2", 600)
    shown = json.loads(run(aws_env, "versions", "analyzer", "--env", "dev", "-o", "json",
                           "--profile", "ops").stdout)
    assert [(v["version"], v["live"]) for v in shown] == [("1", False), ("2", True)]


def test_a_deploy_moves_the_first_layout_into_the_environments_scope(aws_env, moto_endpoint):
    # GIVEN dev deployed with the first layout: the URL and the record under the shared prefix
    put_parameters(moto_endpoint, "/cdk-bootstrap/hnb659fds/version", "/collections/DATABASE_URL",
                   "/collections/ANTHROPIC_API_KEY", "/collections/VOYAGE_API_KEY")
    ssm = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="t", aws_secret_access_key="t")
    ssm.put_parameter(Name="/collections/deployment/dev", Type="String", Value=json.dumps(
        {"env": "dev", "database": "existing", "region": "us-east-1", "version": 1}))
    # WHEN a deploy fails in CDK, the values are copied and nothing old is removed
    failed = run({**aws_env, "FAKE_CDK_EXIT": "1"}, "deploy", "dev", "--profile", "ops",
                 "--skip-build", "--yes")
    assert failed.returncode != 0
    assert "copied /collections/DATABASE_URL to /collections/dev/DATABASE_URL" in failed.stderr
    assert ssm.get_parameter(Name="/collections/DATABASE_URL")
    # WHEN the retry succeeds, the old parameters go: their values are in dev's scope
    result = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "removed /collections/DATABASE_URL" in result.stderr
    assert "removed /collections/deployment/dev" in result.stderr
    left = ssm.get_parameters(Names=["/collections/DATABASE_URL", "/collections/deployment/dev"])
    assert left["Parameters"] == []
    moved = ssm.get_parameter(Name="/collections/dev/DATABASE_URL", WithDecryption=True)
    assert moved["Parameter"]["Value"] == "value-DATABASE_URL"
    record = json.loads(ssm.get_parameter(Name="/collections/dev/deployment")["Parameter"]["Value"])
    assert record["env"] == "dev" and record["deployed_at"]


# --------------------------------------------------------------------------- a failed deploy


def test_a_retry_after_a_failed_first_deploy_adopts_what_it_left(aws_env, moto_endpoint):
    # GIVEN dev's first deploy rolled back: no stack, but its retained buckets exist
    put_parameters(moto_endpoint, *READY)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="t", aws_secret_access_key="t")
    images, thumbnails = ("collections-images-dev-123456789012",
                          "collections-thumbnails-dev-123456789012")
    for bucket in (images, thumbnails):
        s3.create_bucket(Bucket=bucket)
    # WHEN the deploy is run again
    result = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    # THEN CloudFormation is asked to adopt them, with names static in the template
    first, then = recorded(aws_env)
    assert first[:3] == ["deploy", "CollectionsComputeStack-dev", "CollectionsMonitoringStack-dev"]
    assert "--import-existing-resources" in first
    assert "collections:account=123456789012" in contexts_of(first)
    assert images in result.stdout and thumbnails in result.stdout
    # AND a second, drift-reverting deploy of the stack that adopted them applies the
    # template's configuration (an import keeps a resource as it was)
    assert then[:3] == ["deploy", "CollectionsComputeStack-dev", "--exclusively"]
    assert "--revert-drift" in then and "--import-existing-resources" not in then


def test_a_failed_drift_revert_after_an_adoption_keeps_the_record(aws_env, moto_endpoint):
    put_parameters(moto_endpoint, *READY)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="t", aws_secret_access_key="t")
    s3.create_bucket(Bucket="collections-thumbnails-dev-123456789012")
    result = run(dict(aws_env, FAKE_CDK_FAIL_ON="--revert-drift"), "deploy", "dev",
                 "--profile", "ops", "--skip-build", "--yes")
    # the stack is deployed and recorded; the hint is the command that finishes the job
    assert result.returncode == 1, result.stdout + result.stderr
    assert "collections deploy dev --revert-drift" in result.stderr
    assert (Path(aws_env["COLLECTIONS_STATE_DIR"]) / "dev" / "deployment.json").exists()


def test_an_ordinary_deploy_adopts_nothing(aws_env, moto_endpoint):
    put_parameters(moto_endpoint, *READY)
    result = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    [argv] = recorded(aws_env)
    assert "--import-existing-resources" not in argv and "--revert-drift" not in argv
    assert "nothing retained by an earlier deploy" in result.stdout


# --------------------------------------------------------------------------- cross-stack


def test_turning_the_proxy_off_deploys_the_compute_stack_first(aws_env, moto_endpoint):
    # GIVEN dev runs on RDS through the proxy: the compute stack imports the proxy's endpoint
    put_parameters(moto_endpoint, *READY)
    assert run(aws_env, "deploy", "dev", "--database", "rds", "--set", "rds_proxy=true",
               "--profile", "ops", "--skip-build", "--yes").returncode == 0
    # WHEN a deploy turns the proxy off (the database stack drops the endpoint's export)
    result = run(aws_env, "deploy", "dev", "--set", "rds_proxy=false", "--profile", "ops",
                 "--skip-build", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    # THEN the compute stack stops importing it alone, before the database stack deploys:
    # CloudFormation refuses to delete an export that another stack imports
    _, first, full = recorded(aws_env)
    assert first[:3] == ["deploy", "CollectionsComputeStack-dev", "--exclusively"]
    assert full[:2] == ["deploy", "CollectionsDatabaseStack-dev"]
    assert all('"rds_proxy":false' in " ".join(contexts_of(argv)) for argv in (first, full))
    # AND a deploy that leaves the proxy alone runs once
    again = run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build", "--yes")
    assert again.returncode == 0
    assert len(recorded(aws_env)) == 4


# --------------------------------------------------------------------------- mode changes


def running_database_stack(endpoint: str) -> str:
    """The database stack an rds deploy left in the account (a stand-in with its output)."""
    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="t", aws_secret_access_key="t")
    template = {"Resources": {"Network": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {"DatabaseEndpoint": {"Value": "db.abc123.us-east-1.rds.amazonaws.com"}}}
    cfn.create_stack(StackName="CollectionsDatabaseStack-dev", TemplateBody=json.dumps(template))
    return "CollectionsDatabaseStack-dev"


def stack_exists(endpoint: str, name: str) -> bool:
    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="t", aws_secret_access_key="t")
    return any(s["StackName"] == name and s["StackStatus"] != "DELETE_COMPLETE"
               for s in cfn.list_stacks()["StackSummaries"])


def test_switching_rds_to_existing_removes_the_database_stack_with_yes(aws_env, moto_endpoint):
    # GIVEN dev deployed in mode rds, its database stack running, and DATABASE_URL now naming
    # the existing database the environment moves to
    put_parameters(moto_endpoint, *READY)
    assert run(aws_env, "deploy", "dev", "--database", "rds", "--profile", "ops",
               "--skip-build", "--yes").returncode == 0
    stack = running_database_stack(moto_endpoint)
    # WHEN the switch is deployed from a script without --yes
    refused = run(aws_env, "deploy", "dev", "--database", "existing", "--profile", "ops",
                  "--skip-build", input="")
    # THEN it says what it would remove and stops before CDK runs
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"removes {stack}" in refused.stderr and "--yes" in refused.stderr
    assert len(recorded(aws_env)) == 1 and stack_exists(moto_endpoint, stack)
    # WHEN it is deployed with --yes
    result = run(aws_env, "deploy", "dev", "--database", "existing", "--profile", "ops",
                 "--skip-build", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    # THEN the compute and monitoring stacks deploy (the compute stack stops importing from
    # the database stack), and then the database stack is deleted
    argv = recorded(aws_env)[-1]
    assert argv[:3] == ["deploy", "CollectionsComputeStack-dev", "CollectionsMonitoringStack-dev"]
    assert f"removed {stack}" in result.stderr
    assert not stack_exists(moto_endpoint, stack)


def test_the_switch_stops_while_database_url_still_names_the_rds_database(aws_env,
                                                                          moto_endpoint):
    put_parameters(moto_endpoint, *READY)
    stack = running_database_stack(moto_endpoint)
    ssm = boto3.client("ssm", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="t", aws_secret_access_key="t")
    ssm.put_parameter(Name="/collections/dev/DATABASE_URL", Type="SecureString", Overwrite=True,
                      Value="postgresql://u:p@db.abc123.us-east-1.rds.amazonaws.com:5432/c")
    result = run(aws_env, "deploy", "dev", "--database", "existing", "--profile", "ops",
                 "--skip-build", "--yes")
    assert result.returncode == 10, result.stdout + result.stderr
    assert "collections secrets put DATABASE_URL --env dev" in result.stderr
    assert recorded(aws_env) == [] and stack_exists(moto_endpoint, stack)


def test_destroy_removes_a_database_stack_the_app_no_longer_has(aws_env, moto_endpoint):
    # GIVEN the record says existing, but the database stack of an earlier rds deploy runs
    put_parameters(moto_endpoint, *READY)
    assert run(aws_env, "deploy", "dev", "--profile", "ops", "--skip-build",
               "--yes").returncode == 0
    stack = running_database_stack(moto_endpoint)
    # WHEN the environment is destroyed
    result = run(aws_env, "destroy", "dev", "--yes", "--profile", "ops")
    assert result.returncode == 0, result.stdout + result.stderr
    # THEN CDK destroys the app's stacks and the database stack goes too
    assert recorded(aws_env)[-1][:3] == ["destroy", "CollectionsComputeStack-dev",
                                        "CollectionsMonitoringStack-dev"]
    assert not stack_exists(moto_endpoint, stack)


def test_diff_names_a_stack_the_app_no_longer_has(aws_env, moto_endpoint):
    stack = running_database_stack(moto_endpoint)
    result = run(aws_env, "diff", "dev", "--profile", "ops", "-o", "json")
    assert result.returncode == 11, result.stdout + result.stderr
    assert json.loads(result.stdout)["stale_stacks"] == [stack]
