"""The EventBridge rules, as data: one per event-triggered function, on the default bus, with
the source and detail-type of the event that triggers it, its one target (the function's `live`
alias), the target's retry policy and the dead-letter queue for what cannot be delivered.

The compute stack (`infrastructure/stacks/event_rules.py`) renders each as an `events.Rule`
with a Lambda target; the local cloud (`localcloud/provision.py`) as `put_rule` and
`put_targets`, its target the function's trigger queue (a Lambda target makes moto's
`put_events` fail). `tests/infra/test_local_contract.py` reads both back and compares each with
the spec.
"""

from __future__ import annotations

from dataclasses import dataclass

from collections_ops.pipeline.constants import (
    LIVE_ALIAS,
    RULE_MAX_EVENT_AGE_S,
    RULE_RETRY_ATTEMPTS,
    RULE_TARGET_ID,
)
from collections_ops.pipeline.environments import Environment
from collections_ops.pipeline.functions import FUNCTIONS, Function

EVENT_BUS = "default"


@dataclass(frozen=True)
class Rule:
    function: str  # the target function's key
    rule_id: str  # the construct id: ImageProcessedRule
    name: str
    description: str
    source: str
    detail_type: str
    target_id: str  # the id CDK gives the rule's first target
    target_function: str  # the function's name; the target is its `target_qualifier`
    target_qualifier: str
    retry_attempts: int
    max_event_age_s: int
    dead_letter_queue: str  # its name
    event_bus: str = EVENT_BUS
    state: str = "ENABLED"

    def pattern(self) -> dict[str, list[str]]:
        return {"source": [self.source], "detail-type": [self.detail_type]}

    def arn(self, *, region: str, account: str, partition: str = "aws") -> str:
        return f"arn:{partition}:events:{region}:{account}:rule/{self.name}"

    def retry_policy(self) -> dict[str, int]:
        """The target's RetryPolicy as EventBridge's API and CloudFormation spell it."""
        return {"MaximumRetryAttempts": self.retry_attempts,
                "MaximumEventAgeInSeconds": self.max_event_age_s}


def rule(env: Environment, fn: Function) -> Rule:
    event, rule_id, name = fn.trigger.event, fn.trigger.rule_id, fn.rule_name(env.name)
    description = fn.rule_description(env.name)
    if fn.trigger.kind != "eventbridge" or event is None or rule_id is None or name is None \
            or description is None:
        raise ValueError(f"{fn.key} is not triggered by an EventBridge event")
    return Rule(function=fn.key, rule_id=rule_id, name=name, description=description,
                source=event.source, detail_type=event.detail_type, target_id=RULE_TARGET_ID,
                target_function=fn.function_name(env.name), target_qualifier=LIVE_ALIAS,
                retry_attempts=RULE_RETRY_ATTEMPTS, max_event_age_s=RULE_MAX_EVENT_AGE_S,
                dead_letter_queue=fn.dlq_name(env.name))


def rules(env: Environment) -> tuple[Rule, ...]:
    """Every rule of the environment, in the definition's order of functions."""
    return tuple(rule(env, fn) for fn in FUNCTIONS if fn.trigger.kind == "eventbridge")
