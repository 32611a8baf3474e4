"""The local cloud's IAM evaluation follows AWS's rules for identity policies where moto's
does not: ARN-scoped resources, conditions on request values, an Allow whose condition fails
grants nothing (it does not deny), an explicit Deny wins."""

from __future__ import annotations

from collections_ops.localcloud.aws.iam import evaluate

BUS = "arn:aws:events:us-east-1:123456789012:event-bus/default"
PUBLISH = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "events:PutEvents", "Resource": BUS,
    "Condition": {"StringEquals": {"events:source": "collections.analyzer",
                                   "events:detail-type": "AnalysisComplete"}}}]}
OWN = {"events:source": "collections.analyzer", "events:detail-type": "AnalysisComplete"}


def test_a_condition_on_request_values_is_evaluated():
    assert evaluate([PUBLISH], "events:PutEvents", BUS, OWN)
    forged = {**OWN, "events:source": "collections.imageprocessor"}
    assert not evaluate([PUBLISH], "events:PutEvents", BUS, forged)
    assert not evaluate([PUBLISH], "events:PutEvents", BUS, {}), "a missing key fails"


def test_an_allow_whose_condition_fails_does_not_deny_what_another_allows():
    anything = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "events:*", "Resource": "*"}]}
    assert evaluate([PUBLISH, anything], "events:PutEvents", BUS, {})


def test_resources_and_actions_match_with_iam_wildcards_only():
    policy = {"Statement": [{"Effect": "Allow", "Action": "S3:Put*",
                             "Resource": "arn:aws:s3:::thumbs/*"}]}
    assert evaluate([policy], "s3:PutObject", "arn:aws:s3:::thumbs/u/a.jpg", {})
    assert not evaluate([policy], "s3:PutObject", "arn:aws:s3:::images/u/a.jpg", {})
    assert not evaluate([policy], "s3:GetObject", "arn:aws:s3:::thumbs/u/a.jpg", {})
    literal = {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject",
                              "Resource": "arn:aws:s3:::b/[ab].jpg"}]}
    assert not evaluate([literal], "s3:GetObject", "arn:aws:s3:::b/a.jpg", {})
    assert evaluate([literal], "s3:GetObject", "arn:aws:s3:::b/[ab].jpg", {})


def test_an_explicit_deny_wins_and_nothing_is_allowed_by_default():
    allow = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    deny = {"Statement": [{"Effect": "Deny", "NotAction": "sqs:*", "Resource": "*"}]}
    assert evaluate([allow], "logs:PutLogEvents", "arn:aws:logs:x", {})
    assert not evaluate([allow, deny], "logs:PutLogEvents", "arn:aws:logs:x", {})
    assert evaluate([allow, deny], "sqs:SendMessage", "arn:aws:sqs:x", {})
    assert not evaluate([], "sqs:SendMessage", "arn:aws:sqs:x", {})


def test_condition_key_names_match_whatever_their_case():
    shouted = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "events:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "events:PutEvents", "Resource": "*",
         "Condition": {"StringEquals": {"Events:Source": "collections.imageprocessor"}}}]}
    forged = {**OWN, "events:source": "collections.imageprocessor"}
    assert not evaluate([shouted], "events:PutEvents", BUS, forged), "the Deny applies"
    assert evaluate([shouted], "events:PutEvents", BUS, OWN)
