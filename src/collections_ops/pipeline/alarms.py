"""The functions' alarms, as data: one list per environment, each alarm with its name, metric,
statistic, threshold and condition.

The monitoring stack (`infrastructure/stacks/monitoring_stack.py`) renders them as
`cloudwatch.Alarm`s; `alarms ensure` and the local cloud's provisioning
(`stack_resources.ensure_alarms`) as `put_metric_alarm` calls. `tests/infra/
test_monitoring_stack.py` proves the template's alarms and the ones `alarms ensure` writes equal
to these, so the two cannot disagree on a name or a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from collections_ops.pipeline.constants import (
    DURATION_ALARM_FRACTION,
    ERROR_ALARM_THRESHOLD,
    METRIC_PERIOD_S,
)
from collections_ops.pipeline.environments import Environment
from collections_ops.pipeline.functions import FUNCTIONS, Function, alarm_name

# What each function is alarmed on, in the order the dashboard lists them.
ALARM_KINDS = ("errors", "throttles", "duration", "dlq-depth")


@dataclass(frozen=True)
class Alarm:
    kind: str  # one of ALARM_KINDS
    function: str  # the function's key
    name: str
    description: str
    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]  # (name, value)
    statistic: str
    threshold: int
    comparison: str = "GreaterThanThreshold"
    evaluation_periods: int = 1
    period_s: int = METRIC_PERIOD_S
    # A function nobody invoked is healthy: missing data is not breaching.
    treat_missing_data: str = "notBreaching"

    def properties(self) -> dict[str, Any]:
        """The alarm as CloudWatch's API and CloudFormation both spell it (`put_metric_alarm`'s
        arguments, the `AWS::CloudWatch::Alarm` properties), without actions and tags."""
        return {
            "AlarmName": self.name, "AlarmDescription": self.description,
            "Namespace": self.namespace, "MetricName": self.metric,
            "Dimensions": [{"Name": n, "Value": v} for n, v in self.dimensions],
            "Statistic": self.statistic, "Period": self.period_s,
            "EvaluationPeriods": self.evaluation_periods, "Threshold": self.threshold,
            "ComparisonOperator": self.comparison, "TreatMissingData": self.treat_missing_data,
        }


def function_alarms(env: Environment, fn: Function) -> tuple[Alarm, ...]:
    """One function's four alarms.

    errors: the guide's alarm as written (Errors, Sum, 300 s, > 5, 1 evaluation period);
    throttles: any throttled invocation (reserved concurrency reached);
    duration: the slowest invocation of a period above DURATION_ALARM_FRACTION of the timeout;
    dlq-depth: any message waiting in the function's dead-letter queue.
    """
    name = fn.function_name(env.name)
    timeout_ms = env.timeout(fn) * 1000
    by_function = (("FunctionName", name),)
    return (
        Alarm("errors", fn.key, alarm_name(env.name, fn, "errors"),
              f"Alert when {name} has errors", "AWS/Lambda", "Errors", by_function, "Sum",
              ERROR_ALARM_THRESHOLD),
        Alarm("throttles", fn.key, alarm_name(env.name, fn, "throttles"),
              f"{name} invocations are throttled (reserved concurrency reached)",
              "AWS/Lambda", "Throttles", by_function, "Sum", 0),
        Alarm("duration", fn.key, alarm_name(env.name, fn, "duration"),
              (f"{name} invocations take more than {int(DURATION_ALARM_FRACTION * 100)} % of "
               f"the {timeout_ms // 1000} s timeout"),
              "AWS/Lambda", "Duration", by_function, "Maximum",
              int(timeout_ms * DURATION_ALARM_FRACTION)),
        Alarm("dlq-depth", fn.key, alarm_name(env.name, fn, "dlq-depth"),
              f"Messages are waiting in {fn.dlq_name(env.name)}: events {name} could not process",
              "AWS/SQS", "ApproximateNumberOfMessagesVisible",
              (("QueueName", fn.dlq_name(env.name)),), "Maximum", 0),
    )


def alarms(env: Environment) -> tuple[Alarm, ...]:
    """Every alarm of the environment, function by function."""
    return tuple(alarm for fn in FUNCTIONS for alarm in function_alarms(env, fn))
