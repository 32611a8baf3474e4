"""Each function's queues and what happens when an asynchronous invocation fails, as data.

An event-triggered function has a dead-letter queue (its failed async invocations, its
terminal errors, what EventBridge could not deliver) and an asynchronous-invocation setting
(retries, event age, the on-failure destination) on `$LATEST` and on `live`. The local cloud
adds a trigger queue per function: moto cannot invoke Lambda, so the upload notification and
the rules deliver to it and the dispatcher drains it into the handler.

The compute stack (`infrastructure/stacks/function.py`) renders these as `sqs.Queue`s and the
function's `EventInvokeConfig`; the local cloud (`localcloud/provision.py`) as `create_queue`,
`set_queue_attributes` and `put_function_event_invoke_config` calls.
`tests/infra/test_local_contract.py` reads both back and compares each with the spec.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

from collections_ops.pipeline.constants import (
    ASYNC_MAX_EVENT_AGE_S,
    ASYNC_RETRY_ATTEMPTS,
    DLQ_RETENTION_S,
    LIVE_ALIAS,
)
from collections_ops.pipeline.environments import Environment
from collections_ops.pipeline.functions import FUNCTIONS, Function

QueuePurpose = Literal["dead-letter", "trigger"]
SQS_DEFAULT_RETENTION_S = 4 * 24 * 3600  # what a queue keeps when nothing is said


@dataclass(frozen=True)
class RuleSender:
    rule: str  # the rule's name
    sid: str  # its statement's id in the queue's policy (`rule_sender_sid`)


@dataclass(frozen=True)
class Queue:
    function: str  # the function's key
    name: str
    purpose: QueuePurpose
    retention_s: int = SQS_DEFAULT_RETENTION_S
    # None: SQS's default (30 s). A trigger queue hides a message for the function's timeout,
    # as Lambda's own event queue holds an event while the function runs.
    visibility_timeout_s: int | None = None
    sqs_managed_sse: bool = True
    tls_only: bool = False  # a policy denies every request that is not over TLS
    # The rules whose target's undeliverable events come here (events.amazonaws.com may send,
    # from that rule only).
    senders: tuple[RuleSender, ...] = ()
    local_only: bool = False  # the trigger queues: AWS hands the events to Lambda itself

    def attributes(self) -> dict[str, str]:
        """The queue's attributes as SQS's API spells them (`create_queue`, less the policy)."""
        attributes = {"MessageRetentionPeriod": str(self.retention_s),
                      "SqsManagedSseEnabled": str(self.sqs_managed_sse).lower()}
        if self.visibility_timeout_s is not None:
            attributes["VisibilityTimeout"] = str(self.visibility_timeout_s)
        return attributes

    def policy(self, arn: str, *, rule_arns: dict[str, str]) -> dict[str, Any] | None:
        """The queue's policy as the compute stack synthesizes it (`enforce_ssl`, then one
        statement per sending rule, as CDK's rule target adds it): None if it has none.
        `rule_arns`: rule name -> ARN."""
        statements: list[dict[str, Any]] = []
        if self.tls_only:
            statements.append({
                "Action": "sqs:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                "Effect": "Deny", "Principal": {"AWS": "*"}, "Resource": arn})
        for sender in self.senders:
            statements.append({
                "Action": "sqs:SendMessage",
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns[sender.rule]}},
                "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                "Resource": arn, "Sid": sender.sid})
        return {"Version": "2012-10-17", "Statement": statements} if statements else None


@dataclass(frozen=True)
class AsyncInvocation:
    """A function's EventInvokeConfig, the same on every qualifier it names."""

    function: str  # the function's key
    qualifiers: tuple[str, ...]
    retry_attempts: int
    max_event_age_s: int
    on_failure_queue: str  # the dead-letter queue's name


def rule_sender_sid(stack_name: str, rule_id: str) -> str:
    """The statement id CDK gives a rule's permission to send to a dead-letter queue:
    `AllowEventRule` and the rule construct's unique id -- its path below the app
    (`<stack>/<rule id>/Rule`) with a part the previous one ends with dropped and only letters
    and digits kept, then the first 8 hex digits of the path's MD5 (CDK's
    `Names.nodeUniqueId`)."""
    path = [stack_name, rule_id, "Rule"]
    human: list[str] = []
    for part in path:
        if not human or not human[-1].endswith(part):
            human.append(part)
    digest = hashlib.md5("/".join(path).encode(), usedforsecurity=False).hexdigest()[:8]
    return "AllowEventRule" + re.sub(r"[^A-Za-z0-9]", "", "".join(human)) + digest.upper()


def _asynchronous(fn: Function) -> bool:
    return fn.trigger.kind != "invoke"


def dead_letter_queue(env: Environment, fn: Function) -> Queue:
    rule, rule_id = fn.rule_name(env.name), fn.trigger.rule_id
    senders = () if rule is None or rule_id is None else (
        RuleSender(rule, rule_sender_sid(env.stack_name("Compute"), rule_id)),)
    return Queue(function=fn.key, name=fn.dlq_name(env.name), purpose="dead-letter",
                 retention_s=DLQ_RETENTION_S, tls_only=True, senders=senders)


def trigger_queue(env: Environment, fn: Function) -> Queue:
    return Queue(function=fn.key, name=fn.queue_name(env.name), purpose="trigger",
                 visibility_timeout_s=env.timeout(fn), sqs_managed_sse=False, local_only=True)


def async_invocation(env: Environment, fn: Function) -> AsyncInvocation:
    return AsyncInvocation(function=fn.key, qualifiers=("$LATEST", LIVE_ALIAS),
                           retry_attempts=ASYNC_RETRY_ATTEMPTS,
                           max_event_age_s=ASYNC_MAX_EVENT_AGE_S,
                           on_failure_queue=fn.dlq_name(env.name))


def queues(env: Environment, *, local: bool) -> tuple[Queue, ...]:
    """Every queue of the environment: the dead-letter queues, and locally the trigger
    queues."""
    found = [dead_letter_queue(env, fn) for fn in FUNCTIONS if _asynchronous(fn)]
    if local:
        found += [trigger_queue(env, fn) for fn in FUNCTIONS if _asynchronous(fn)]
    return tuple(found)


def async_invocations(env: Environment) -> tuple[AsyncInvocation, ...]:
    return tuple(async_invocation(env, fn) for fn in FUNCTIONS if _asynchronous(fn))
