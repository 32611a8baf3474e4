"""Creating the pipeline's AWS resources on the local endpoint, from the pipeline definition.

Locally, S3 notifications and EventBridge rules deliver to SQS queues (moto cannot invoke a
Lambda target from `put_events`); the dispatcher drains those queues into the handlers.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import Any

from collections_ops.pipeline import FUNCTIONS, Environment


@dataclass(frozen=True)
class Provisioned:
    images_bucket: str
    thumbnails_bucket: str
    queue_urls: dict[str, str]  # function key -> trigger queue url
    dlq_urls: dict[str, str]  # function key -> dead-letter queue url


def provision(session: Any, env: Environment, *, account: str, database_url: str) -> Provisioned:
    s3 = session.client("s3")
    sqs = session.client("sqs")
    events = session.client("events")
    logs = session.client("logs")
    ssm = session.client("ssm")

    images, thumbs = env.images_bucket(account), env.thumbnails_bucket(account)
    for bucket in (images, thumbs):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=images, VersioningConfiguration={"Status": "Enabled"})

    queue_urls, dlq_urls, queue_arns = {}, {}, {}
    for fn in FUNCTIONS:
        dlq_urls[fn.key] = sqs.create_queue(QueueName=fn.dlq_name(env.name),
                                            Attributes={"MessageRetentionPeriod": "1209600"}
                                            )["QueueUrl"]
        url = sqs.create_queue(QueueName=fn.queue_name(env.name),
                               Attributes={"VisibilityTimeout": str(env.timeout(fn))})["QueueUrl"]
        queue_urls[fn.key] = url
        queue_arns[fn.key] = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=fn.log_group(env.name))
        logs.put_retention_policy(logGroupName=fn.log_group(env.name),
                                  retentionInDays=env.log_retention_days)

    for fn in FUNCTIONS:
        trigger = fn.trigger
        if trigger.kind == "s3":
            s3.put_bucket_notification_configuration(
                Bucket=images,
                NotificationConfiguration={"QueueConfigurations": [{
                    "Id": fn.logical_id,
                    "QueueArn": queue_arns[fn.key],
                    "Events": ["s3:ObjectCreated:*"],
                }]},
            )
        else:
            assert trigger.event is not None
            rule = fn.rule_name(env.name)
            events.put_rule(Name=rule, EventPattern=json.dumps(trigger.event.pattern()),
                            State="ENABLED",
                            Description=f"{trigger.event.detail_type} -> {fn.logical_id}")
            events.put_targets(Rule=rule, Targets=[{"Id": fn.logical_id,
                                                    "Arn": queue_arns[fn.key]}])

    ssm.put_parameter(Name=f"{env.parameter_prefix}/DATABASE_URL", Value=database_url,
                      Type="SecureString", Overwrite=True)
    return Provisioned(images, thumbs, queue_urls, dlq_urls)
