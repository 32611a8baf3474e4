"""IAM is enforced in the local cloud: each handler runs with its own role's credentials and
the synthesized policies, so a permission missing from a role fails the pipeline locally, with
AWS's AccessDenied naming the action, as it would in an AWS account. A real local cloud, driven
through the CLI; the role is changed through the local IAM API as an operator would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from botocore.exceptions import ClientError

from collections_ops.localcloud.aws import iam
from collections_ops.pipeline import FUNCTIONS, environment
from tests import images
from tests.e2e.cli import deployed, local_client, local_env, owner_url, wait_for

_wait = partial(wait_for, timeout=120)
PROCESSOR = next(fn for fn in FUNCTIONS if fn.key == "processor")


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with deployed(local_env(tmp_path_factory.mktemp("iam") / "state")) as cloud:
        yield cloud


def _embedded(status: dict[str, Any], user: str, item: str) -> bool:
    with psycopg.connect(owner_url(status), connect_timeout=3) as conn:
        row = conn.execute("SELECT count(*) FROM embeddings WHERE user_id = %s AND item_id = %s",
                           (user, item)).fetchone()
    return bool(row and row[0])


def _dead_letters(status: dict[str, Any], key: str) -> list[dict[str, Any]]:
    sqs = local_client(status, "sqs")
    found = sqs.receive_message(QueueUrl=status["dead_letter_queues"][key],
                                MaxNumberOfMessages=10, VisibilityTimeout=0,
                                WaitTimeSeconds=1).get("Messages", [])
    return [json.loads(m["Body"]) for m in found]


def _function_log(status: dict[str, Any], text: str) -> list[str]:
    events = local_client(status, "logs").filter_log_events(
        logGroupName=PROCESSOR.log_group("local"), filterPattern=f'"{text}"')["events"]
    return [e["message"] for e in events]


def test_a_request_with_credentials_the_local_cloud_did_not_issue_is_refused(cloud):
    status = cloud["status"]
    import boto3

    stranger = boto3.session.Session(aws_access_key_id="AKIASTRANGER0000", region_name="us-east-1",
                                     aws_secret_access_key="not-issued-here")
    with pytest.raises(ClientError) as refused:
        stranger.client("s3", endpoint_url=status["endpoint_url"]).list_objects_v2(
            Bucket=status["buckets"]["images"])
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_motos_unsigned_api_is_closed_so_no_secret_or_reset_bypasses_iam(cloud):
    """moto serves `/moto-api/data.json` (every resource, secrets included) and `reset` to
    anyone; the local cloud answers 403 there, and only its probe page stays open."""
    import urllib.error
    import urllib.request

    status = cloud["status"]
    for method, path in (("GET", "/moto-api/data.json"), ("POST", "/moto-api/reset"),
                         ("GET", "/moto-api/recorder/download-recording")):
        request = urllib.request.Request(status["endpoint_url"] + path, method=method)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403, path
        body = refused.value.read().decode()
        assert "secret" not in body.lower() and "SecretAccessKey" not in body
    with urllib.request.urlopen(status["endpoint_url"] + "/moto-api/", timeout=10) as page:
        assert page.status == 200
    # The reset above did nothing: the buckets are still there.
    local_client(status, "s3").head_bucket(Bucket=status["buckets"]["images"])


def test_a_handler_may_do_only_what_its_role_allows(cloud):
    # The embedder's role has no S3 permission: its own credentials cannot read an upload.
    status = cloud["status"]
    creds = iam.read(status["state_dir"])
    assert creds is not None
    variables = iam.function_environment(creds, "embedder")
    import boto3

    embedder = boto3.session.Session(
        aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=variables["AWS_SESSION_TOKEN"], region_name=status["region"])
    identity = embedder.client("sts", endpoint_url=status["endpoint_url"]).get_caller_identity()
    assert identity["Arn"].endswith(":assumed-role/collections-local-EmbedderLambdaRole/"
                                    "collections-local-EmbedderLambda")
    with pytest.raises(ClientError) as denied:
        embedder.client("s3", endpoint_url=status["endpoint_url"]).get_object(
            Bucket=status["buckets"]["images"], Key="anything.jpg")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert "s3:GetObject" in denied.value.response["Error"]["Message"]
    # ... nor publish the analyzer's event (events:source is a condition of its grant).
    with pytest.raises(ClientError) as forged:
        embedder.client("events", endpoint_url=status["endpoint_url"]).put_events(Entries=[{
            "Source": "collections.analyzer", "DetailType": "AnalysisComplete",
            "Detail": "{}"}])
    assert "events:PutEvents" in forged.value.response["Error"]["Message"]


def _session_of(status: dict[str, Any], function_key: str) -> Any:
    import boto3

    creds = iam.read(status["state_dir"])
    assert creds is not None
    variables = iam.function_environment(creds, function_key)
    return boto3.session.Session(
        aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=variables["AWS_SESSION_TOKEN"], region_name=status["region"])


def test_the_processors_credentials_read_its_own_database_url_and_are_refused_the_owners(cloud):
    status = cloud["status"]
    env = environment("local")
    ssm = _session_of(status, "processor").client("ssm", endpoint_url=status["endpoint_url"])
    # The processor reads its own URL: its role's user, not the owner's
    own = ssm.get_parameter(Name=env.parameter_name("DATABASE_URL_PROCESSOR"),
                            WithDecryption=True)["Parameter"]["Value"]
    assert urlsplit(own).username == "postgres_processor"
    # ... and is refused the owner's, and every other function's, with AWS's AccessDenied
    for name in ("DATABASE_URL", "DATABASE_URL_ANALYZER", "DATABASE_URL_EMBEDDER"):
        with pytest.raises(ClientError) as denied:
            ssm.get_parameter(Name=env.parameter_name(name), WithDecryption=True)
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException", name
    # ... also as one of several names in one call (GetParameters is refused whole)
    with pytest.raises(ClientError):
        ssm.get_parameters(Names=[env.parameter_name("DATABASE_URL_PROCESSOR"),
                                  env.parameter_name("DATABASE_URL")], WithDecryption=True)


def test_the_local_database_admits_only_scram_passwords(cloud):
    status = cloud["status"]
    owner = owner_url(status)
    parts = urlsplit(owner)
    assert parts.password  # the owner's URL carries the local cloud's password
    # GIVEN the owner's URL without its password, or with a wrong one
    for password in ("", "wrong-password"):
        forged = parts._replace(netloc=f"postgres:{password}@{parts.hostname or ''}").geturl()
        # THEN the server refuses it
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(forged, connect_timeout=5).close()
        assert "password" in str(refused.value)
    with psycopg.connect(owner, connect_timeout=5) as conn:
        method = conn.execute("SELECT auth_method FROM pg_hba_file_rules"
                              " WHERE type = 'local'").fetchone()
        stored = conn.execute("SELECT rolpassword FROM pg_authid"
                              " WHERE rolname = 'postgres_processor'").fetchone()
    assert method == ("scram-sha-256",)
    assert stored is not None and stored[0].startswith("SCRAM-SHA-256$")


def test_removing_a_permission_fails_the_pipeline_with_access_denied_naming_the_action(cloud):
    status = cloud["status"]
    user = "iam-user"
    s3, iam_api = local_client(status, "s3"), local_client(status, "iam")
    role = PROCESSOR.role_name("local")
    bucket = status["buckets"]["images"]
    # GIVEN the pipeline flows with the synthesized policies
    s3.put_object(Bucket=bucket, Key=f"{user}/before.jpg", Body=images.photo(seed=11))
    _wait(lambda: _embedded(status, user, "before"), "the first upload embedded")

    # WHEN the processor's role loses s3:PutObject on the thumbnails bucket
    original = iam_api.get_role_policy(RoleName=role, PolicyName="PipelinePolicy")[
        "PolicyDocument"]
    if isinstance(original, str):
        original = json.loads(original)
    reduced = {**original, "Statement": [s for s in original["Statement"]
                                         if s.get("Sid") != "WriteThumbnails"]}
    assert len(reduced["Statement"]) == len(original["Statement"]) - 1
    iam_api.put_role_policy(RoleName=role, PolicyName="PipelinePolicy",
                            PolicyDocument=json.dumps(reduced))
    try:
        s3.put_object(Bucket=bucket, Key=f"{user}/denied.jpg", Body=images.photo(seed=12))
        # THEN the upload fails at the processor, dead-lettered with AWS's AccessDenied,
        # which names the action and the resource
        letters = _wait(lambda: [d for d in _dead_letters(status, "processor")
                                 if "denied.jpg" in json.dumps(d["requestPayload"])],
                        "the denied upload in the processor's dead-letter queue")
        reason = letters[0]["responsePayload"]["errorMessage"]
        assert "access denied" in reason
        assert "s3:PutObject" in reason
        assert f"{status['buckets']['thumbnails']}/{user}/denied.jpg" in reason
        # The log lines are shipped in batches, so they may follow the dead letter by moments.
        _wait(lambda: _function_log(status, "s3:PutObject"), "the function's log naming the action",
              timeout=30)
        assert not _embedded(status, user, "denied")
    finally:
        # WHEN the permission is restored
        iam_api.put_role_policy(RoleName=role, PolicyName="PipelinePolicy",
                                PolicyDocument=json.dumps(original))
    # THEN the pipeline flows again
    s3.put_object(Bucket=bucket, Key=f"{user}/after.jpg", Body=images.photo(seed=13))
    _wait(lambda: _embedded(status, user, "after"), "the upload after the restore embedded")
