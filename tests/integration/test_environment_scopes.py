"""Two environments in one account: dev's and prod's parameters side by side in the local
cloud's SSM (AWS_ENDPOINT_URL at it, its administrator's keys), driven through the CLI as an
operator would. Each environment reads and writes only its own DATABASE_URL and deployment
record; a function's credentials (local IAM enforces the roles' policies, built from the same
definition as the synthesized ones) are refused another environment's; and a deployment with
the first layout (`/collections/DATABASE_URL`, `/collections/deployment/<env>`) is moved over
without losing a value.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from collections_ops.localcloud.aws import iam, policies
from collections_ops.pipeline import IMAGE_PROCESSOR, environment
from collections_ops.services import deployment
from collections_ops.services.secrets import fingerprint
from tests.e2e.cli import local_client, local_env, run

DEV, PROD, LOCAL = environment("dev"), environment("prod"), environment("local")
URLS = {"dev": "postgresql://dev:pw@db-dev/collections",
        "prod": "postgresql://prod:pw@db-prod/collections"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("scopes") / "state"
    env = local_env(state)
    try:
        started = run(env, "deploy", "local")
        assert started.returncode == 0, started.stderr
        status = json.loads(run(env, "status", "--json").stdout)
        admin = iam.admin_credentials(status["state_dir"])
        # The CLI's dev and prod, pointed at the local cloud as at any AWS endpoint.
        aws_env = {**env, "AWS_ENDPOINT_URL": status["endpoint_url"],
                   "AWS_ACCESS_KEY_ID": admin["aws_access_key_id"],
                   "AWS_SECRET_ACCESS_KEY": admin["aws_secret_access_key"],
                   "AWS_DEFAULT_REGION": status["region"], "AWS_EC2_METADATA_DISABLED": "true"}
        yield {"env": env, "aws_env": aws_env, "status": status,
               "ssm": local_client(status, "ssm")}
    finally:
        run(env, "destroy", "local", "--yes")


def _session(status: dict[str, Any], credentials: dict[str, str]) -> Any:
    return boto3.session.Session(region_name=status["region"], **credentials).client(
        "ssm", endpoint_url=status["endpoint_url"])


def _denied(call: Any) -> str:
    with pytest.raises(ClientError) as denied:
        call()
    assert denied.value.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException")
    return str(denied.value.response["Error"]["Message"])


def _dev_processor_role(cloud: dict[str, Any]) -> dict[str, str]:
    """dev's processor role, created in the local IAM with the policies the compute stack
    gives it, and a session of it as Lambda would assume it."""
    status = cloud["status"]
    admin = iam.admin_session(status["state_dir"], status["region"])
    client = admin.client("iam", endpoint_url=status["endpoint_url"])
    role = IMAGE_PROCESSOR.role_name("dev")
    client.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "lambda.amazonaws.com"}}]}))
    account = status.get("account") or "123456789012"
    for name, document in policies.role_policies(DEV, IMAGE_PROCESSOR, region=status["region"],
                                                 account=account).items():
        client.put_role_policy(RoleName=role, PolicyName=name, PolicyDocument=json.dumps(document))
    assumed = admin.client("sts", endpoint_url=status["endpoint_url"]).assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/{role}",
        RoleSessionName=IMAGE_PROCESSOR.function_name("dev"))["Credentials"]
    return {"aws_access_key_id": assumed["AccessKeyId"],
            "aws_secret_access_key": assumed["SecretAccessKey"],
            "aws_session_token": assumed["SessionToken"]}


def test_each_environment_reads_and_writes_only_its_own_url_and_record(cloud):
    aws_env, ssm = cloud["aws_env"], cloud["ssm"]
    # GIVEN dev's and prod's DATABASE_URL and records side by side (local's is the cloud's own)
    for env in ("dev", "prod"):
        put = run(aws_env, "secrets", "put", "DATABASE_URL", "--stdin", "--env", env,
                  "-o", "json", input=URLS[env])
        assert put.returncode == 0, put.stderr
        assert json.loads(put.stdout)[0]["parameter"] == f"/collections/{env}/DATABASE_URL"
    for env in (DEV, PROD):
        deployment.publish(ssm, env, deployment.plan(env, None))
    # THEN each environment's commands see its own
    for env in ("dev", "prod"):
        listed = {i["name"]: i for i in json.loads(
            run(aws_env, "secrets", "list", "--env", env, "-o", "json").stdout)}
        assert listed["DATABASE_URL"]["parameter"] == f"/collections/{env}/DATABASE_URL"
        assert listed["DATABASE_URL"]["fingerprint"] == fingerprint(URLS[env])
    assert deployment.fetch(ssm, DEV).env == "dev"  # type: ignore[union-attr]
    assert deployment.fetch(ssm, PROD).env == "prod"  # type: ignore[union-attr]
    # AND removing dev's URL leaves prod's and local's
    assert run(aws_env, "secrets", "rm", "DATABASE_URL", "--env", "dev", "-y").returncode == 0
    names = {p["Name"] for p in ssm.get_parameters(Names=[
        "/collections/dev/DATABASE_URL", "/collections/prod/DATABASE_URL",
        "/collections/local/DATABASE_URL"])["Parameters"]}
    assert names == {"/collections/prod/DATABASE_URL", "/collections/local/DATABASE_URL"}
    run(aws_env, "secrets", "put", "DATABASE_URL", "--stdin", "--env", "dev", input=URLS["dev"])


def test_a_functions_credentials_are_refused_another_environments_parameters(cloud):
    status = cloud["status"]
    # GIVEN the local processor's own session (the local cloud's) and dev's processor role
    creds = iam.read(status["state_dir"])
    assert creds is not None
    variables = iam.function_environment(creds, "processor")
    local = _session(status, {"aws_access_key_id": variables["AWS_ACCESS_KEY_ID"],
                              "aws_secret_access_key": variables["AWS_SECRET_ACCESS_KEY"],
                              "aws_session_token": variables["AWS_SESSION_TOKEN"]})
    dev = _session(status, _dev_processor_role(cloud))
    # AND dev's processor URL (what dev's migration writes)
    own_url = "/collections/dev/DATABASE_URL_PROCESSOR"
    cloud["ssm"].put_parameter(Name=own_url, Value=URLS["dev"], Type="SecureString",
                               Overwrite=True)
    # THEN each reads its own environment's URL of the processor
    own = local.get_parameters(Names=["/collections/local/DATABASE_URL_PROCESSOR"],
                               WithDecryption=True)
    assert [p["Name"] for p in own["Parameters"]] == ["/collections/local/DATABASE_URL_PROCESSOR"]
    assert dev.get_parameter(Name=own_url, WithDecryption=True)["Parameter"]["Value"] == \
        URLS["dev"]
    # AND is refused the others' URLs and records, naming the action (and its own
    # environment's owner URL: a function connects as its own role)
    for client, env, others in ((local, "local", ("dev", "prod")),
                                (dev, "dev", ("local", "prod"))):
        _denied(lambda c=client, e=env: c.get_parameter(Name=f"/collections/{e}/DATABASE_URL"))
        for other in others:
            for name in ("DATABASE_URL", "DATABASE_URL_PROCESSOR"):
                message = _denied(lambda c=client, o=other, n=name: c.get_parameter(
                    Name=f"/collections/{o}/{n}", WithDecryption=True))
                assert "ssm:GetParameter" in message
            _denied(lambda c=client, o=other: c.get_parameter(Name=f"/collections/{o}/deployment"))
        # (GetParameters is refused whole when one name is not allowed)
        _denied(lambda c=client, o=others[0]: c.get_parameters(Names=[
            f"/collections/{o}/DATABASE_URL_PROCESSOR", "/collections/ANTHROPIC_API_KEY"]))
    # AND neither may write its own URL (only the operations function may)
    _denied(lambda: dev.put_parameter(Name=own_url, Value="x", Type="SecureString",
                                      Overwrite=True))


def test_the_first_layout_is_moved_over_without_losing_a_value(cloud):
    aws_env, ssm = cloud["aws_env"], cloud["ssm"]
    # GIVEN dev and prod deployed with the first layout: one URL, records in a folder
    for name in ("/collections/dev/DATABASE_URL", "/collections/prod/DATABASE_URL",
                 DEV.record_parameter(), PROD.record_parameter()):
        with contextlib.suppress(ClientError):
            ssm.delete_parameter(Name=name)
    legacy_url = "postgresql://shared:pw@db-old/collections"
    ssm.put_parameter(Name="/collections/DATABASE_URL", Value=legacy_url, Type="SecureString",
                      Description="the first layout's URL")
    for env in (DEV, PROD):
        ssm.put_parameter(Name=f"/collections/deployment/{env.name}", Type="String",
                          Value=json.dumps(deployment.plan(env, None, database="rds").as_dict()))
    # THEN every command still finds the old record until the move
    assert deployment.fetch(ssm, DEV).database == "rds"  # type: ignore[union-attr]
    # WHEN dev is migrated (the copy a deploy makes before `cdk deploy`)
    copied = run(aws_env, "secrets", "migrate", "--env", "dev")
    assert copied.returncode == 0, copied.stderr
    assert "copied /collections/DATABASE_URL to /collections/dev/DATABASE_URL" in copied.stdout
    assert "copied /collections/deployment/dev to /collections/dev/deployment" in copied.stdout
    value = ssm.get_parameter(Name="/collections/dev/DATABASE_URL", WithDecryption=True)
    assert (value["Parameter"]["Value"], value["Parameter"]["Type"]) == (legacy_url,
                                                                         "SecureString")
    assert ssm.get_parameter(Name="/collections/DATABASE_URL")  # nothing removed yet
    # WHEN the old parameters are retired (as after dev's deploy succeeded)
    retired = json.loads(run(aws_env, "secrets", "migrate", "--env", "dev", "--remove-old",
                             "-o", "json").stdout)
    outcomes = {(m["source"], m["outcome"]) for m in retired}
    # THEN dev's old record goes, but the old URL stays: prod's functions still read it
    assert ("/collections/deployment/dev", "removed") in outcomes
    assert ("/collections/DATABASE_URL", "kept") in outcomes
    assert "prod still run" in next(m["detail"] for m in retired
                                    if m["source"] == "/collections/DATABASE_URL"
                                    and m["outcome"] == "kept")
    # WHEN prod moves too, nothing of the first layout is left and no value was lost
    assert run(aws_env, "secrets", "migrate", "--env", "prod", "--remove-old").returncode == 0
    left = ssm.get_parameters(Names=["/collections/DATABASE_URL", "/collections/deployment/dev",
                                     "/collections/deployment/prod"])
    assert left["Parameters"] == []
    for env in (DEV, PROD):
        moved = ssm.get_parameter(Name=env.parameter_name("DATABASE_URL"), WithDecryption=True)
        assert moved["Parameter"]["Value"] == legacy_url
        assert deployment.fetch(ssm, env) == deployment.plan(env, None, database="rds")
    # AND running it again moves nothing
    again = run(aws_env, "secrets", "migrate", "--env", "prod", "--remove-old")
    assert "nothing to move" in again.stdout
