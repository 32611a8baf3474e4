"""Nothing gets into the local cloud without a valid signature: every shortcut in moto's own
request authentication (Cognito's public operations named in `X-Amz-Target`, a missing or
garbage `Authorization`, an unknown key, a session without its token, a stale or tampered
signature) is refused with AWS's 403 and changes nothing, on every service the pipeline uses;
presigned URLs work and are checked the same way. A real local cloud, raw HTTP."""

from __future__ import annotations

import datetime
import http.client
import json
import urllib.parse
from typing import Any
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.authorization import ActionAuthenticatorMixin

from collections_ops.localcloud.aws import iam
from tests.e2e.cli import local_client

# moto's list as it ships (this process does not run the local cloud's patches)
PUBLIC_OPERATIONS = list(ActionAuthenticatorMixin.PUBLIC_OPERATIONS)
DUMMY_AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAFAKE/20260101/us-east-1/{service}/aws4_request, "
              "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
VICTIM_KEY = "victim/photo.jpg"
VICTIM_BODY = b"the victim's photo"
CANARY = "sk-ant-canary-value-never-leaks"


@pytest.fixture(scope="module")
def cloud(shared_local_cloud: dict[str, Any]) -> dict[str, Any]:
    """The session's shared local cloud, with this module's victim object and canary
    parameter: every refused request must leave those as they are; the keys the tests create
    they delete."""
    status: dict[str, Any] = shared_local_cloud["status"]
    local_client(status, "s3").put_object(Bucket=status["buckets"]["images"], Key=VICTIM_KEY,
                                          Body=VICTIM_BODY)
    local_client(status, "ssm").put_parameter(Name="/collections/FRONT_DOOR_CANARY",
                                              Value=CANARY, Type="SecureString", Overwrite=True)
    return status


def _raw(status: dict[str, Any], method: str, path: str, headers: dict[str, str],
         body: bytes = b"") -> tuple[int, bytes]:
    url = urllib.parse.urlsplit(status["endpoint_url"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _requests(status: dict[str, Any]) -> list[tuple[str, str, str, dict[str, str], bytes]]:
    """(service, method, path, headers, body): one harmful or revealing call per service."""
    images = status["buckets"]["images"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def target(name: str) -> dict[str, str]:
        return {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": name}

    return [
        ("iam", "POST", "/", form,
         b"Action=CreateAccessKey&UserName=" + iam.ADMIN_USER.encode() + b"&Version=2010-05-08"),
        ("s3", "GET", f"/{images}/{VICTIM_KEY}", {}, b""),
        ("s3", "PUT", f"/{images}/{VICTIM_KEY}", {}, b"overwritten"),
        ("s3", "GET", f"/{images}?list-type=2", {}, b""),
        ("ssm", "POST", "/", target("AmazonSSM.GetParameter"),
         json.dumps({"Name": "/collections/FRONT_DOOR_CANARY", "WithDecryption": True}).encode()),
        ("sqs", "POST", "/", target("AmazonSQS.ListQueues"), b"{}"),
        ("events", "POST", "/", target("AWSEvents.PutEvents"), json.dumps(
            {"Entries": [{"Source": "x", "DetailType": "y", "Detail": "{}"}]}).encode()),
        ("logs", "POST", "/", target("Logs_20140328.DescribeLogGroups"), b"{}"),
        ("lambda", "GET", "/2015-03-31/functions/", {}, b""),
        ("sts", "POST", "/", form, b"Action=GetCallerIdentity&Version=2011-06-15"),
        ("monitoring", "POST", "/", form, b"Action=ListMetrics&Version=2010-08-01"),
    ]


def _admin_keys(status: dict[str, Any]) -> list[str]:
    keys = local_client(status, "iam").list_access_keys(UserName=iam.ADMIN_USER)
    return sorted(k["AccessKeyId"] for k in keys["AccessKeyMetadata"])


def _victim(status: dict[str, Any]) -> bytes:
    got = local_client(status, "s3").get_object(Bucket=status["buckets"]["images"],
                                                Key=VICTIM_KEY)
    return bytes(got["Body"].read())


def test_every_shortcut_in_motos_authentication_is_refused_with_403_and_changes_nothing(cloud):
    status = cloud
    keys_before = _admin_keys(status)
    variants: list[tuple[str, dict[str, str]]] = [("no Authorization", {}),
                                                  ("garbage Authorization", {"Authorization":
                                                                             "garbage"})]
    variants += [(f"X-Amz-Target {op}", {"X-Amz-Target": op, "Authorization": DUMMY_AUTH})
                 for op in PUBLIC_OPERATIONS]
    assert len(variants) >= 9  # moto's public operations are still there to be tried
    let_in = []
    for service, method, path, headers, body in _requests(status):
        for name, extra in variants:
            sent = {**headers, **{k: v.format(service=service) for k, v in extra.items()}}
            code, answer = _raw(status, method, path, sent, body)
            if code != 403 or CANARY.encode() in answer:
                let_in.append((service, method, path, name, code, answer[:200]))
    assert let_in == []
    assert _admin_keys(status) == keys_before
    assert _victim(status) == VICTIM_BODY


def test_a_refusal_has_the_shape_of_the_protocol_that_was_called(cloud):
    status = cloud
    code, answer = _raw(status, "GET", f"/{status['buckets']['images']}/{VICTIM_KEY}", {})
    assert code == 403 and b"<Code>" in answer and b"MissingAuthenticationToken" in answer
    code, answer = _raw(status, "POST", "/", {"X-Amz-Target": "AmazonSSM.GetParameter",
                                              "Content-Type": "application/x-amz-json-1.1"},
                        b'{"Name": "/collections/FRONT_DOOR_CANARY"}')
    assert code == 403
    assert json.loads(answer)["__type"] == "MissingAuthenticationTokenException"


def _processor(status: dict[str, Any], **overrides: Any) -> boto3.session.Session:
    session = {**iam.read(status["state_dir"])["functions"]["processor"], **overrides}
    return boto3.session.Session(region_name=status["region"], **session)


def test_a_signed_request_naming_a_public_operation_is_still_checked_against_its_policies(cloud):
    """The bypass with a real signature: the processor's role may not mint IAM keys, header
    or no header."""
    status = cloud
    keys_before = _admin_keys(status)
    client = _processor(status).client("iam", endpoint_url=status["endpoint_url"])
    client.meta.events.register("before-sign.iam.*", lambda request, **_: request.headers
                                .__setitem__("X-Amz-Target", PUBLIC_OPERATIONS[-1]))
    with pytest.raises(ClientError) as refused:
        client.create_access_key(UserName=iam.ADMIN_USER)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert _admin_keys(status) == keys_before


@pytest.mark.parametrize(("overrides", "code"), [
    ({"aws_session_token": None}, "InvalidClientTokenId"),
    ({"aws_session_token": "not-the-sessions-token"}, "InvalidToken"),
    ({"aws_secret_access_key": "not-the-secret"}, "SignatureDoesNotMatch"),
], ids=["session without its token", "session with another token", "wrong secret"])
def test_a_session_key_needs_its_own_secret_and_token(cloud, overrides, code):
    status = cloud
    client = _processor(status, **overrides).client("s3", endpoint_url=status["endpoint_url"])
    with pytest.raises(ClientError) as refused:
        client.get_object(Bucket=status["buckets"]["images"], Key=VICTIM_KEY)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["Error"]["Code"] == code


def test_a_signature_from_twenty_minutes_ago_is_refused_as_skewed(cloud):
    status = cloud
    client = local_client(status, "s3")
    stale = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) \
        - datetime.timedelta(minutes=20)
    with mock.patch("botocore.auth.get_current_datetime", return_value=stale), \
            pytest.raises(ClientError) as refused:
        client.get_object(Bucket=status["buckets"]["images"], Key=VICTIM_KEY)
    assert refused.value.response["Error"]["Code"] == "RequestTimeTooSkewed"


def _get(url: str) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("GET", parts.path + "?" + parts.query)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.mark.parametrize("version", ["s3", "s3v4"], ids=["SigV2 (boto3's default)", "SigV4"])
def test_a_presigned_get_works_and_an_expired_or_tampered_one_is_refused(cloud, version):
    from botocore.config import Config

    status = cloud
    client = iam.admin_session(status["state_dir"], status["region"]).client(
        "s3", endpoint_url=status["endpoint_url"], config=Config(signature_version=version))
    params = {"Bucket": status["buckets"]["images"], "Key": VICTIM_KEY}
    url = client.generate_presigned_url("get_object", Params=params, ExpiresIn=300)
    assert _get(url) == (200, VICTIM_BODY)

    tampered = url.replace(urllib.parse.quote(VICTIM_KEY), "victim/other.jpg")
    code, answer = _get(tampered)
    assert code == 403 and b"SignatureDoesNotMatch" in answer

    an_hour_ago = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) \
        - datetime.timedelta(hours=1)
    with mock.patch("botocore.auth.get_current_datetime", return_value=an_hour_ago), \
            mock.patch("time.time", return_value=an_hour_ago.replace(
                tzinfo=datetime.UTC).timestamp()):
        expired = client.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
    code, answer = _get(expired)
    assert code == 403 and b"Request has expired" in answer


def test_a_presigned_url_is_authorized_with_its_signers_policies(cloud):
    """The analyzer's role reads no image bucket objects it was not given: a URL it signs
    for an object outside its grants is refused like its own request would be."""
    status = cloud
    session = {**iam.read(status["state_dir"])["functions"]["embedder"]}
    client = boto3.session.Session(region_name=status["region"], **session).client(
        "s3", endpoint_url=status["endpoint_url"])
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": status["buckets"]["images"], "Key": VICTIM_KEY},
        ExpiresIn=300)
    code, answer = _get(url)
    assert code == 403 and b"AccessDenied" in answer


def test_a_key_the_administrator_creates_works_until_it_is_deleted(cloud):
    """moto's IAM is the source of truth for keys: the front door knows no list of its own."""
    status = cloud
    admin_iam = local_client(status, "iam")
    admin_iam.create_user(UserName="door-reader")
    admin_iam.put_user_policy(UserName="door-reader", PolicyName="read", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                                                 "Resource": "*"}]}))
    key = admin_iam.create_access_key(UserName="door-reader")["AccessKey"]
    reader = boto3.session.Session(aws_access_key_id=key["AccessKeyId"],
                                   aws_secret_access_key=key["SecretAccessKey"],
                                   region_name=status["region"]).client(
        "s3", endpoint_url=status["endpoint_url"])
    got = reader.get_object(Bucket=status["buckets"]["images"], Key=VICTIM_KEY)
    assert got["Body"].read() == VICTIM_BODY
    admin_iam.delete_access_key(UserName="door-reader", AccessKeyId=key["AccessKeyId"])
    with pytest.raises(ClientError) as refused:
        reader.get_object(Bucket=status["buckets"]["images"], Key=VICTIM_KEY)
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
