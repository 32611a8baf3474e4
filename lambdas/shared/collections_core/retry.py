"""Retrying a call within the time the function has left.

Provider SDKs retry on their own schedule and some obey `retry-after` without a cap, which can
outlive a Lambda. Here the SDK's retries are off and this loop decides: back off (honouring
`retry-after`), but only while the attempt and its wait fit in the remaining time; otherwise give
up with a `RetryableError` so Lambda retries the whole event later.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from collections_core.errors import RetryableError

T = TypeVar("T")
SAFETY_MARGIN_S = 3.0


class Retry(Exception):
    """Raised by an attempt to ask for another try; `after` is the server's retry-after."""

    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


def with_budget(attempt: Callable[[float], T], *, remaining_s: Callable[[], float],
                attempt_timeout_s: float, max_attempts: int = 4, base_delay_s: float = 0.5,
                sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `attempt(timeout)` until it succeeds, stops asking for retries, or time runs out."""
    last = "no attempt made"
    for number in range(1, max_attempts + 1):
        budget = remaining_s() - SAFETY_MARGIN_S
        if budget <= 1.0:
            break
        try:
            return attempt(min(attempt_timeout_s, budget))
        except Retry as exc:
            last = exc.reason
            if number == max_attempts:
                break
            delay = exc.after if exc.after is not None else base_delay_s * 2 ** (number - 1)
            delay = max(0.0, delay) + random.uniform(0, 0.1)
            # Only wait if there is still time for a useful attempt afterwards.
            if remaining_s() - SAFETY_MARGIN_S - delay < min(attempt_timeout_s, 5.0):
                break
            sleep(delay)
    raise RetryableError(f"gave up for now: {last}")


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
