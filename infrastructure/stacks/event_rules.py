"""EventBridge: one rule per event-triggered function, on the default bus, with the pattern of
the event the definition says triggers it.

EventBridge invokes Lambda asynchronously, so once Lambda accepts an event the function's own
async retries and on-failure destination take over. The rule's retry policy covers delivery
itself (throttling, a function being updated); what still cannot be delivered lands in the
target function's dead-letter queue -- one queue per stage for an operator to inspect.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from collections_ops import pipeline
from stacks.function import PipelineFunction

DELIVERY_RETRY_ATTEMPTS = pipeline.RULE_RETRY_ATTEMPTS
DELIVERY_MAX_EVENT_AGE = cdk.Duration.seconds(pipeline.RULE_MAX_EVENT_AGE_S)


def event_pattern(event: pipeline.EventType) -> events.EventPattern:
    """The definition's pattern (`{"source": [...], "detail-type": [...]}`) as a CDK pattern."""
    fields: dict[str, Any] = {
        key.replace("-", "_"): values for key, values in event.pattern().items()
    }
    return events.EventPattern(**fields)


class PipelineEventRule(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, target: PipelineFunction,
                 env_name: str) -> None:
        super().__init__(scope, construct_id)
        fn = target.definition
        event = fn.trigger.event
        rule_name = fn.rule_name(env_name)
        if fn.trigger.kind != "eventbridge" or event is None or rule_name is None:
            raise ValueError(f"{fn.key} is not triggered by an EventBridge event")
        self.rule = events.Rule(
            self, "Rule",
            rule_name=rule_name,
            description=fn.rule_description(env_name),
            event_pattern=event_pattern(event),
        )
        self.rule.add_target(targets.LambdaFunction(
            target.target,
            dead_letter_queue=target.dead_letter_queue,
            retry_attempts=DELIVERY_RETRY_ATTEMPTS,
            max_event_age=DELIVERY_MAX_EVENT_AGE,
        ))
