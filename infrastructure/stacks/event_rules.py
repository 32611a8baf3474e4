"""EventBridge: one rule per event-triggered function, rendered from its spec (`pipeline.rules`:
name, source and detail-type, the target's retry policy and dead-letter queue).

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

from collections_ops.pipeline import rules
from stacks.function import PipelineFunction


def event_pattern(spec: rules.Rule) -> events.EventPattern:
    """The definition's pattern (`{"source": [...], "detail-type": [...]}`) as a CDK pattern."""
    fields: dict[str, Any] = {
        key.replace("-", "_"): values for key, values in spec.pattern().items()
    }
    return events.EventPattern(**fields)


class PipelineEventRule(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, target: PipelineFunction,
                 spec: rules.Rule) -> None:
        super().__init__(scope, construct_id)
        if target.alias is None or target.dead_letter_queue is None:
            raise ValueError(f"{spec.function} has no `live` alias or dead-letter queue")
        if target.alias.alias_name != spec.target_qualifier:
            raise ValueError(f"{spec.name} targets `{spec.target_qualifier}`, not the alias")
        self.spec = spec
        self.rule = events.Rule(
            self, "Rule",
            rule_name=spec.name,
            description=spec.description,
            event_pattern=event_pattern(spec),
            enabled=spec.state == "ENABLED",
        )
        self.rule.add_target(targets.LambdaFunction(
            target.target,
            dead_letter_queue=target.dead_letter_queue,
            retry_attempts=spec.retry_attempts,
            max_event_age=cdk.Duration.seconds(spec.max_event_age_s),
        ))
