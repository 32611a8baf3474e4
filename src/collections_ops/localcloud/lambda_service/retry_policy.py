"""Lambda's asynchronous-invocation policy, as the local dispatcher keeps it.

Kept apart from the dispatcher's threads because it is the part that must match AWS and can be
checked without a queue: how many workers a function gets, when a failed event is tried again,
how a throttled one backs off and for how long it is kept, and what the on-failure record that
reaches the dead-letter queue says. The dispatcher asks; this module holds no state.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from collections_ops.pipeline import (
    ASYNC_MAX_EVENT_AGE_S,
    ASYNC_RETRY_ATTEMPTS,
    FUNCTIONS,
    Environment,
    Function,
)

log = logging.getLogger("collections.localcloud")
WORKERS_ENV = "COLLECTIONS_LOCAL_WORKERS"
# Fault injection for reliability tests: kill every Nth first delivery (0: never).
FAULT_EVERY_ENV = "COLLECTIONS_LOCAL_FAULT_EVERY"
# Lambda's asynchronous-invocation timings, scaled: a function error is retried after 1 and
# 2 minutes; a throttled event backs off from 1 s doubling to 5 minutes, kept for up to 6 h.
# COLLECTIONS_LOCAL_TIME_SCALE multiplies them (default 1/60: retries after 1 s and 2 s,
# throttles for up to 6 minutes); SQS counts visibility in whole seconds, so 1 s at least.
TIME_SCALE_ENV = "COLLECTIONS_LOCAL_TIME_SCALE"
DEFAULT_TIME_SCALE = 1 / 60
# AWS retries after 1 minute, then 2; the definition's EventInvokeConfig says how many times.
LAMBDA_RETRY_DELAYS_S = (60, 120)[:ASYNC_RETRY_ATTEMPTS]
LAMBDA_THROTTLE_BACKOFF_S = (1, 300)  # first, longest
LAMBDA_MAX_EVENT_AGE_S = ASYNC_MAX_EVENT_AGE_S
THROTTLED_ATTRIBUTE = "collections-throttled"  # how often, and since when (a message attribute)
SQS_BATCH_MAX = 10  # messages per ReceiveMessage or DeleteMessageBatch, at most


@dataclass(frozen=True)
class DispatchPolicy:
    workers_per_function: int = 3
    workers: Mapping[str, int] = field(default_factory=dict)  # function key -> workers
    max_retries: int = ASYNC_RETRY_ATTEMPTS  # the functions' EventInvokeConfig
    time_scale: float = DEFAULT_TIME_SCALE
    # LAMBDA_RETRY_DELAYS_S at the default scale
    retry_delays_s: tuple[int, ...] = tuple(max(1, round(d * DEFAULT_TIME_SCALE))
                                            for d in LAMBDA_RETRY_DELAYS_S)
    wait_time_s: int = 1
    batch_size: int = SQS_BATCH_MAX  # messages per receive, at most
    prefetch_per_worker: int = 1  # messages received ahead of a free worker
    # Kill every Nth first delivery, alternately before the handler runs and after it has
    # done its work but before the message is acknowledged (as a crashed container would).
    fault_every: int = 0

    def workers_for(self, fn: Function) -> int:
        return max(1, int(self.workers.get(fn.key, self.workers_per_function)))

    def scaled(self, seconds: float) -> int:
        return max(1, round(seconds * self.time_scale))

    def retry_delay_s(self, attempt: int) -> int:
        """How long a failed event waits before its next attempt (`attempt` counts from 1)."""
        delays = self.retry_delays_s
        return delays[min(attempt - 1, len(delays) - 1)] if delays else 0

    def throttle_delay_s(self, throttles: int) -> int:
        first, longest = LAMBDA_THROTTLE_BACKOFF_S
        return min(self.scaled(longest), self.scaled(first * 2 ** max(0, throttles - 1)))

    @property
    def max_event_age_s(self) -> float:
        return LAMBDA_MAX_EVENT_AGE_S * self.time_scale

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> DispatchPolicy:
        """The default policy, with workers per function from COLLECTIONS_LOCAL_WORKERS."""
        policy = cls()
        scale = environ.get(TIME_SCALE_ENV, "").strip()
        if scale:
            try:
                factor = float(scale)
                if factor <= 0:
                    raise ValueError("must be above 0")
                policy = replace(policy, time_scale=factor, retry_delays_s=tuple(
                    max(1, round(d * factor)) for d in LAMBDA_RETRY_DELAYS_S))
            except ValueError as exc:
                log.warning("ignoring %s=%r: %s", TIME_SCALE_ENV, scale, exc)
        faults = environ.get(FAULT_EVERY_ENV, "").strip()
        if faults.isdigit():
            policy = replace(policy, fault_every=int(faults))
        spec = environ.get(WORKERS_ENV, "").strip()
        if not spec:
            return policy
        default, per_function = policy.workers_per_function, {}
        known = {fn.key for fn in FUNCTIONS}
        try:
            for part in filter(None, (p.strip() for p in spec.split(","))):
                key, sep, value = part.partition("=")
                if not sep:
                    default = int(key)
                elif key.strip() in known:
                    per_function[key.strip()] = int(value)
                else:
                    raise ValueError(f"unknown function {key.strip()!r}")
        except ValueError as exc:
            log.warning("ignoring %s=%r: %s", WORKERS_ENV, spec, exc)
            return policy
        return replace(policy, workers_per_function=default, workers=per_function)


def throttles_so_far(message: Mapping[str, Any]) -> tuple[int, int]:
    """How often a message's event was throttled, and when it was first sent (ms since the
    epoch): from THROTTLED_ATTRIBUTE, or (0, its SentTimestamp) before its first throttle."""
    attrs = message.get("MessageAttributes", {}).get(THROTTLED_ATTRIBUTE, {})
    try:
        throttles, first = (int(x) for x in attrs.get("StringValue", "").split(":"))
    except ValueError:
        return 0, int(message.get("Attributes", {}).get("SentTimestamp", time.time() * 1000))
    return throttles, first


def throttled_attribute(throttles: int, first: int) -> dict[str, dict[str, str]]:
    """The message attribute a throttled event is sent again with (see `throttles_so_far`)."""
    return {THROTTLED_ATTRIBUTE: {"DataType": "String", "StringValue": f"{throttles}:{first}"}}


def on_failure_record(fn: Function, env: Environment, event: Any, *, request_id: str,
                      condition: str, attempts: int, error_type: str | None,
                      error_message: str | None) -> dict[str, Any]:
    """Lambda's on-failure record for the function's dead-letter queue: `RetriesExhausted`
    (with the last error) or `EventAgeExceeded` (a throttled event kept too long)."""
    record: dict[str, Any] = {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {"requestId": request_id,
                           "functionArn": fn.function_name(env.name),
                           "condition": condition, "approximateInvokeCount": attempts},
        "requestPayload": event,
    }
    if condition == "RetriesExhausted":
        record["responseContext"] = {"statusCode": 200, "functionError": "Unhandled"}
        record["responsePayload"] = {"errorType": error_type, "errorMessage": error_message}
    return record
