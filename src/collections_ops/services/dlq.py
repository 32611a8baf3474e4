"""The dead-letter queues, read: what is waiting in each, and which dead letters name an item.

`collections dlq list` and `dlq show`, and `verify`/`follow` when they explain a stopped item,
look into the queues without changing them. Reading never loses a message: messages are
received with a visibility timeout, never deleted, and made visible again when the read is done.
The receive and release primitives here are also what a redrive (`dlq_redrive.py`) reads with;
what a message says is decoded by `dlq_records.py`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from collections_ops import aws, errors
from collections_ops.pipeline import FUNCTIONS, Environment, Function
from collections_ops.services.dlq_records import FailedEvent, decode, function_of, sent_at

PEEK_VISIBILITY_S = 30  # how long a message read by `peek` stays hidden at most
AGE_SAMPLE = 10  # messages read to estimate the age of the oldest


@dataclass(frozen=True)
class QueueInfo:
    function_key: str
    stage: str
    queue_name: str
    url: str | None  # None: the queue does not exist (environment not deployed)
    depth: int | None  # messages waiting
    in_flight: int | None  # messages received by someone and not yet deleted
    oldest_age_s: float | None  # age of the oldest message seen (sampled when deep)
    age_sampled: int = 0  # how many messages the age was taken from

    @property
    def exists(self) -> bool:
        return self.url is not None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "exists": self.exists}


def queue_url(sqs: Any, name: str) -> str | None:
    found = aws.or_none(lambda: sqs.get_queue_url(QueueName=name))
    return None if found is None else str(found["QueueUrl"])


def dlq_url(sqs: Any, env: Environment, fn: Function) -> str:
    url = queue_url(sqs, fn.dlq_name(env.name))
    if url is None:
        raise errors.NotReady(f"the dead-letter queue {fn.dlq_name(env.name)} does not exist",
                              f"is the {env.name} environment deployed? "
                              f"(`collections deploy {env.name}`)")
    return url


def list_queues(sqs: Any, env: Environment, *,
                now: Callable[[], float] = time.time) -> list[QueueInfo]:
    """Each function's dead-letter queue with its depth and the age of its oldest message.

    SQS has no attribute for the age (ApproximateAgeOfOldestMessage is a CloudWatch metric,
    minutes behind), so it is read from the SentTimestamp of up to AGE_SAMPLE messages, which
    are made visible again at once. On a deeper queue the age is that of the oldest one seen.
    """
    out = []
    for fn in FUNCTIONS:
        name = fn.dlq_name(env.name)
        url = queue_url(sqs, name)
        if url is None:
            out.append(QueueInfo(fn.key, fn.stage, name, None, None, None, None))
            continue
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        depth = int(attrs.get("ApproximateNumberOfMessages", 0))
        in_flight = int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
        age, sampled = None, 0
        if depth:
            with _borrowed(sqs, url) as borrow:
                sent = [sent_at(m) for m in borrow(AGE_SAMPLE, visibility_s=5)]
            known = [s for s in sent if s is not None]
            sampled = len(sent)
            age = max(0.0, now() - min(known)) if known else None
        out.append(QueueInfo(fn.key, fn.stage, name, url, depth, in_flight, age, sampled))
    return out


def peek(sqs: Any, env: Environment, function_key: str, *,
         limit: int = 10) -> list[FailedEvent]:
    """Decode up to `limit` dead letters of a function, oldest first, without removing any
    (on a deeper queue: `limit` of them, as SQS hands them out)."""
    fn = function_of(function_key)
    url = dlq_url(sqs, env, fn)
    with _borrowed(sqs, url) as borrow:
        messages = borrow(limit, visibility_s=PEEK_VISIBILITY_S)
    events = [decode(fn, m) for m in messages]
    return sorted(events, key=lambda e: (e.failed_at is None, e.failed_at or 0.0))


FIND_LIMIT = 100  # dead letters read per queue when looking for one item's


def find(sqs: Any, env: Environment, *, item_id: str | None = None,
         user_id: str | None = None, key: str | None = None,
         correlation_id: str | None = None, function_keys: Iterable[str] | None = None,
         limit: int = FIND_LIMIT) -> list[FailedEvent]:
    """The dead letters, in the given functions' queues (all by default), that name this item
    (and user), S3 key or correlation id -- newest first. Nothing is removed; a queue that
    does not exist holds nothing. Matching is on the decoded fields, never on error text."""
    keys = list(function_keys) if function_keys is not None else [fn.key for fn in FUNCTIONS]
    found: list[FailedEvent] = []
    for fn in map(function_of, keys):
        url = queue_url(sqs, fn.dlq_name(env.name))
        if url is None:
            continue
        with _borrowed(sqs, url) as borrow:
            messages = borrow(limit, visibility_s=PEEK_VISIBILITY_S)
        for failed in (decode(fn, m) for m in messages):
            if item_id is not None and failed.item_id != item_id:
                continue
            if user_id is not None and failed.user_id != user_id:
                continue
            if key is not None and failed.key != key:
                continue
            if correlation_id is not None and failed.correlation_id != correlation_id:
                continue
            found.append(failed)
    return sorted(found, key=lambda e: -(e.failed_at or 0.0))


@contextlib.contextmanager
def _borrowed(sqs: Any, url: str) -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """Receive messages for reading only; on leaving, make every one visible again."""
    held: dict[str, str] = {}  # message id -> latest receipt handle

    def borrow(limit: int, *, visibility_s: int) -> list[dict[str, Any]]:
        got: dict[str, dict[str, Any]] = {}
        while len(got) < limit:
            fresh = [m for m in receive(sqs, url, limit - len(got), visibility_s)
                     if m["MessageId"] not in got]
            if not fresh:
                break
            for m in fresh:
                got[m["MessageId"]] = m
                held[m["MessageId"]] = m["ReceiptHandle"]
        return list(got.values())

    try:
        yield borrow
    finally:
        release(sqs, url, list(held.values()))


def receive(sqs: Any, url: str, count: int, visibility_s: int) -> list[dict[str, Any]]:
    """Up to `count` (at most 10) messages. A short poll samples only some of SQS's servers
    and may come back empty while messages wait, so an empty answer from a queue that still
    reports messages is followed by one long poll."""
    for wait_s in (0, 1):
        messages: list[dict[str, Any]] = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=max(1, min(10, count)),
            VisibilityTimeout=visibility_s, WaitTimeSeconds=wait_s,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount"],
        ).get("Messages", [])
        if messages or wait_s or not visible_count(sqs, url):
            return messages
    return []


def visible_count(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]
    return int(attrs.get("ApproximateNumberOfMessages", 0))


def release(sqs: Any, url: str, receipt_handles: Iterable[str]) -> None:
    """Make received messages visible again now (best effort: at worst they reappear when
    their visibility timeout ends)."""
    handles = list(receipt_handles)
    for start in range(0, len(handles), 10):
        entries = [{"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0}
                   for n, h in enumerate(handles[start:start + 10])]
        with contextlib.suppress(Exception):
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)
