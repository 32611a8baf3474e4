"""What `aws` reads from AWS's answers: each predicate against the error moto (speaking the
services' wire formats) really returns, so a service never has to spell a code."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from collections_ops import aws, errors

REGION = "us-east-1"


@pytest.fixture
def session(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.session.Session(region_name=REGION)


def _raised(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


def test_missing_things_are_not_found_and_tell_key_from_bucket(session: Any) -> None:
    s3 = session.client("s3")
    s3.create_bucket(Bucket="images")
    # GIVEN a bucket without the key, a bucket that does not exist, and a HEAD (no body)
    no_key = _raised(lambda: s3.get_object(Bucket="images", Key="gone.jpg"))
    no_head = _raised(lambda: s3.head_object(Bucket="images", Key="gone.jpg"))
    no_bucket = _raised(lambda: s3.get_object(Bucket="nosuch", Key="gone.jpg"))
    no_rules = _raised(lambda: s3.get_bucket_lifecycle_configuration(Bucket="images"))
    # THEN each is "not found", and the narrower groups tell them apart
    assert all(map(aws.is_not_found, (no_key, no_head, no_bucket, no_rules)))
    assert aws.is_not_found(no_key, *aws.MISSING_OBJECT)
    assert aws.is_not_found(no_head, *aws.MISSING_OBJECT)
    assert not aws.is_not_found(no_bucket, *aws.MISSING_OBJECT)
    assert aws.is_not_found(no_bucket, *aws.MISSING_BUCKET)
    assert aws.is_not_found(no_rules, *aws.NO_LIFECYCLE)
    assert not aws.is_not_found(no_rules, *aws.MISSING_BUCKET)
    assert aws.or_none(lambda: s3.head_object(Bucket="images", Key="gone.jpg")) is None


def test_not_found_across_the_services_the_pipeline_uses(session: Any) -> None:
    calls: list[Callable[[], Any]] = [
        lambda: session.client("ssm").get_parameter(Name="/collections/nosuch"),
        lambda: session.client("lambda").get_function_configuration(FunctionName="nosuch"),
        lambda: session.client("events").describe_rule(Name="nosuch"),
        lambda: session.client("sqs").get_queue_url(QueueName="nosuch"),
        lambda: session.client("iam").get_role_policy(RoleName="nosuch", PolicyName="p"),
        lambda: session.client("rds").describe_db_instances(DBInstanceIdentifier="nosuch"),
    ]
    for call in calls:
        assert aws.or_none(call) is None


def test_a_missing_stack_is_told_from_other_validation_errors(session: Any) -> None:
    cfn = session.client("cloudformation")
    missing = _raised(lambda: list(cfn.get_paginator("list_stack_resources").paginate(
        StackName="nosuch")))
    from botocore.exceptions import ClientError

    invalid = ClientError({"Error": {"Code": "ValidationError", "Message": "Template format "
                                     "error: unsupported structure"}}, "CreateStack")
    assert aws.error_code(missing) == aws.error_code(invalid) == "ValidationError"
    assert aws.is_missing_stack(missing)
    assert not aws.is_missing_stack(invalid)
    assert not aws.is_not_found(missing)  # ValidationError alone says nothing of existence
    assert aws.stack_or_none(lambda: cfn.describe_stacks(StackName="nosuch")) is None
    with pytest.raises(ClientError):
        aws.stack_or_none(lambda: (_ for _ in ()).throw(invalid))


def test_a_version_in_use_is_a_conflict_and_other_errors_are_not(session: Any) -> None:
    # botocore's own error type, as a call answers it: Lambda's 409 for a version in use
    from botocore.exceptions import ClientError

    conflict = ClientError({"Error": {"Code": "ResourceConflictException",
                                      "Message": "alias beta uses version 2"}}, "DeleteFunction")
    assert aws.is_conflict(conflict)
    assert aws.error_message(conflict) == "alias beta uses version 2"
    assert not aws.is_conflict(ValueError("no code"))
    assert aws.error_message(ValueError("plain")) == "plain"


def test_access_denied_includes_s3s_bare_403_and_maps_to_credentials() -> None:
    from botocore.exceptions import ClientError

    for code in ("AccessDenied", "AccessDeniedException", "403"):
        denied = ClientError({"Error": {"Code": code, "Message": ""}}, "HeadObject")
        assert aws.is_access_denied(denied)
        assert not aws.is_not_found(denied)
        assert isinstance(aws.translate(denied), errors.CredentialsError)
    refused = ClientError({"Error": {"Code": "InvalidParameterValueException",
                                     "Message": "over the limit"}}, "PutFunctionConcurrency")
    assert aws.is_refused_value(refused) and not aws.is_access_denied(refused)
