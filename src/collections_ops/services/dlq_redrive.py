"""Replaying dead letters: `collections dlq redrive`, and how an event reaches one function.

A redrive replays each original event to the function that failed it, as its trigger
delivered it, and deletes a dead letter only once the replay was accepted. Replays are
rate-limited by a token bucket. It reads the queue with `dlq.py`'s primitives and decides what
to replay from `dlq_records.py`'s decoding; this module holds only the writing side.

On AWS every replay is an asynchronous invoke (`InvocationType=Event`) of the function's `live`
alias: the alias is what the S3 notification and the EventBridge rules invoke, while `$LATEST`
may hold code that was never published. An EventBridge event is not put back on the bus there:
on the bus it would reach every rule that matches it (an archive, another consumer), not just
the one function that failed it. The local cloud has no Lambda service: an S3 event goes to the
function's trigger queue, an EventBridge event back onto the bus, whose rule's SQS target the
dispatcher reads (both deliver to the same handler, with Lambda's retries and dead-letter queue).
Which of these an event takes is the target's to say (`collections_ops.target.Delivery`);
`Deliveries` sends it there, and is also how `collections reconcile --fix` and `replay`
deliver.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from collections_ops.pipeline import LIVE_ALIAS, Environment, Function
from collections_ops.services.dlq import dlq_url, queue_url, receive, release, visible_count
from collections_ops.services.dlq_records import FailedEvent, decode, function_of, sent_at
from collections_ops.target import Delivery, for_environment

ClientFactory = Callable[[str], Any]
Replay = Callable[[FailedEvent], str]  # returns where the event went; raises if not accepted


class ReplayError(Exception):
    """A replay was not accepted; the dead letter stays where it is."""


class NotReplayable(Exception):
    """The event cannot be sent back where it came from; it is left in the queue."""


def live_target(env: Environment, fn: Function) -> str:
    return Delivery("invoke", fn.function_name(env.name)).describe()


def invoke_live(lam: Any, env: Environment, fn: Function, event: Any) -> str:
    """Deliver `event` to `fn` on AWS as its trigger does: an asynchronous invoke of its `live`
    alias (Lambda then applies the function's retries and on-failure destination). Lambda
    answers 202 once it has queued the event; anything else is a ReplayError."""
    response = lam.invoke(FunctionName=fn.function_name(env.name), Qualifier=LIVE_ALIAS,
                          InvocationType="Event", Payload=json.dumps(event).encode())
    if response.get("StatusCode") != 202 or response.get("FunctionError"):
        raise ReplayError(f"Lambda answered {response.get('StatusCode')} "
                          f"{response.get('FunctionError') or ''}".strip())
    return live_target(env, fn)


class TriggerQueues:
    """Deliver an event to a function of the local cloud through its trigger queue, which the
    dispatcher reads (the local cloud has no Lambda service to invoke)."""

    def __init__(self, client_factory: ClientFactory, env: Environment) -> None:
        self._client_factory = client_factory
        self._env = env
        self._urls: dict[str, str] = {}

    def send(self, fn: Function, event: Any) -> str:
        name = fn.queue_name(self._env.name)
        sqs = self._client_factory("sqs")
        if fn.key not in self._urls:
            url = queue_url(sqs, name)
            if url is None:
                raise ReplayError(f"the trigger queue {name} is missing")
            self._urls[fn.key] = url
        sqs.send_message(QueueUrl=self._urls[fn.key], MessageBody=json.dumps(event))
        return f"queue {name}"


class Deliveries:
    """Send an event where a `Delivery` says: an asynchronous invoke of `live`, the function's
    trigger queue, or back onto the bus (`event_bus`)."""

    def __init__(self, client_factory: ClientFactory, env: Environment, *,
                 event_bus: str = "default") -> None:
        self._client_factory = client_factory
        self._env = env
        self._event_bus = event_bus
        self._queues = TriggerQueues(client_factory, env)

    def send(self, delivery: Delivery, fn: Function, event: Any) -> str:
        """Where the event went, in words; ReplayError when it was not accepted."""
        if delivery.way == "invoke":
            return invoke_live(self._client_factory("lambda"), self._env, fn, event)
        if delivery.way == "queue":
            return self._queues.send(fn, event)
        return self._put_back(delivery, event)

    def _put_back(self, delivery: Delivery, event: Any) -> str:
        detail = event.get("detail")
        entry: dict[str, Any] = {
            "Source": event["source"], "DetailType": event["detail-type"],
            "Detail": detail if isinstance(detail, str) else json.dumps(detail),
            "EventBusName": self._event_bus,
        }
        if event.get("resources"):
            entry["Resources"] = list(event["resources"])
        response = self._client_factory("events").put_events(Entries=[entry])
        if response.get("FailedEntryCount", 0):
            first = (response.get("Entries") or [{}])[0]
            raise ReplayError(f"put_events refused the event: {first.get('ErrorCode')} "
                              f"{first.get('ErrorMessage')}")
        return delivery.describe()


def replay_target(env: Environment, fn: Function, failed: FailedEvent) -> str:
    """Where `failed` would be replayed to, in words; NotReplayable if nowhere safe."""
    if failed.event_kind == "unknown":
        raise NotReplayable("the original event is missing or of an unknown kind")
    if failed.event_kind == "s3":
        if fn.trigger.kind != "s3":
            raise NotReplayable(f"an S3 event cannot be replayed to the {fn.key}")
        return for_environment(env).redelivery(fn, "s3").describe()
    wanted = fn.trigger.event
    event = failed.event
    if fn.trigger.kind != "eventbridge" or wanted is None or (
            event.get("source"), event.get("detail-type")) != (wanted.source, wanted.detail_type):
        # Put back on the bus, it would match no rule of this function and be dropped.
        raise NotReplayable(
            f"{event.get('source')}/{event.get('detail-type')} does not match the rule "
            f"{fn.rule_name(env.name)}")
    return for_environment(env).redelivery(fn, "eventbridge").describe()


def replayer(client_factory: ClientFactory, env: Environment, *,
             event_bus: str = "default") -> Replay:
    """The default replay. AWS: every event by an asynchronous invoke of the function's `live`
    alias. Local cloud: an S3 event to the function's trigger queue, an EventBridge event back
    onto the bus."""
    target = for_environment(env)
    deliveries = Deliveries(client_factory, env, event_bus=event_bus)

    def replay(failed: FailedEvent) -> str:
        fn = function_of(failed.function_key)
        replay_target(env, fn, failed)  # NotReplayable where nowhere is safe
        kind: Literal["s3", "eventbridge"] = "s3" if failed.event_kind == "s3" else "eventbridge"
        return deliveries.send(target.redelivery(fn, kind), fn, failed.event)

    return replay


class TokenBucket:
    """At most `rate_per_s` acquisitions per second on average, `burst` at once."""

    def __init__(self, rate_per_s: float, *, burst: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate_per_s <= 0:
            raise ValueError("the rate must be positive")
        self.rate = rate_per_s
        self.capacity = float(max(1, burst))
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self) -> None:
        self._refill()
        while self._tokens < 1:
            self._sleep((1 - self._tokens) / self.rate)
            self._refill()
        self._tokens -= 1


@dataclass(frozen=True)
class Outcome:
    """What happened to one dead letter in a redrive."""

    message_id: str
    stage: str
    user_id: str | None
    item_id: str | None
    status: str  # replayed | would-replay | failed | skipped
    target: str | None
    detail: str = ""
    deleted: bool = False
    terminal: bool = False  # the failure was terminal (skipped unless include_terminal)


@dataclass
class RedriveReport:
    function_key: str
    queue_name: str
    dry_run: bool
    outcomes: list[Outcome] = field(default_factory=list)
    stopped_early: bool = False  # a replay failed and keep_going was off
    arrived_during: int = 0  # dead letters that arrived after the start: left for next time

    def _count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def replayed(self) -> int:
        return self._count("replayed")

    @property
    def would_replay(self) -> int:
        return self._count("would-replay")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def skipped_terminal(self) -> int:
        return sum(1 for o in self.outcomes if o.status == "skipped" and o.terminal)

    @property
    def not_deleted(self) -> int:
        """Replayed, but the dead letter could not be deleted (it may be replayed twice)."""
        return sum(1 for o in self.outcomes if o.status == "replayed" and not o.deleted)

    def as_dict(self) -> dict[str, Any]:
        return {"function": self.function_key, "queue": self.queue_name,
                "dry_run": self.dry_run, "replayed": self.replayed,
                "would_replay": self.would_replay, "failed": self.failed,
                "requeued": self.replayed, "skipped": self.skipped,
                "skipped_terminal": self.skipped_terminal, "not_deleted": self.not_deleted,
                "stopped_early": self.stopped_early, "arrived_during": self.arrived_during,
                "outcomes": [asdict(o) for o in self.outcomes]}


def redrive(client_factory: ClientFactory, env: Environment, function_key: str, *,
            dry_run: bool = False, rate_per_s: float = 5.0, max_messages: int | None = None,
            replay: Replay | None = None, keep_going: bool = False,
            include_terminal: bool = False,
            on_outcome: Callable[[Outcome], None] | None = None,
            clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep,
            now: Callable[[], float] = time.time) -> RedriveReport:
    """Replay a function's dead letters to where they came from, at most `rate_per_s` a second.

    A dead letter is deleted only after its replay was accepted. One that fails to replay stays
    in the queue; the redrive then stops, unless `keep_going`. Only the messages present when the
    redrive starts are handled: a replay that fails again and lands back in the queue is left
    for the next redrive rather than replayed in a loop. A terminal failure (`FailedEvent.terminal`)
    cannot succeed by being replayed: it is skipped, counted and kept, unless
    `include_terminal`. Messages read but not deleted are made
    visible again at the end, so a dry run or an interrupted redrive leaves the queue as it was.
    """
    fn = function_of(function_key)
    sqs = client_factory("sqs")
    url = dlq_url(sqs, env, fn)
    send = replay or replayer(client_factory, env)
    report = RedriveReport(fn.key, fn.dlq_name(env.name), dry_run)
    budget = visible_count(sqs, url)
    if max_messages is not None:
        budget = min(budget, max_messages)
    started_ms = int(now() * 1000)
    bucket = TokenBucket(rate_per_s, clock=clock, sleep=sleep)
    # Keep what we have read hidden for the whole redrive, so each message is seen once.
    visibility = int(min(43_200, 60 + budget / rate_per_s * 2))
    held: dict[str, str] = {}  # message id -> receipt handle, for messages left in the queue

    def record(outcome: Outcome) -> None:
        report.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    try:
        while len(report.outcomes) < budget and not report.stopped_early:
            batch = receive(sqs, url, budget - len(report.outcomes), visibility)
            fresh = [m for m in batch if m["MessageId"] not in held]
            if not fresh:
                break
            for message in fresh:
                held[message["MessageId"]] = message["ReceiptHandle"]
                if len(report.outcomes) >= budget or report.stopped_early:
                    continue
                sent = sent_at(message)
                if sent is not None and sent * 1000 > started_ms:
                    report.arrived_during += 1  # perhaps one of our own replays, failed again
                    continue
                outcome = _redrive_one(sqs, url, env, fn, decode(fn, message), send, bucket,
                                       dry_run, include_terminal)
                if outcome.deleted:
                    held.pop(message["MessageId"])
                record(outcome)
                if outcome.status == "failed" and not keep_going:
                    report.stopped_early = True
    finally:
        release(sqs, url, held.values())
    return report


def _redrive_one(sqs: Any, url: str, env: Environment, fn: Function, failed: FailedEvent,
                 send: Replay, bucket: TokenBucket, dry_run: bool,
                 include_terminal: bool = False) -> Outcome:
    def outcome(status: str, target: str | None, detail: str = "",
                deleted: bool = False) -> Outcome:
        return Outcome(failed.message_id, failed.stage, failed.user_id, failed.item_id, status,
                       target, detail[:300], deleted, failed.terminal)

    if failed.terminal and not include_terminal:
        return outcome("skipped", None, f"terminal: {failed.error}")

    try:
        target = replay_target(env, fn, failed)
    except NotReplayable as exc:
        return outcome("skipped", None, str(exc))
    if dry_run:
        return outcome("would-replay", target, failed.error)
    bucket.acquire()
    try:
        target = send(failed)
    except NotReplayable as exc:
        return outcome("skipped", None, str(exc))
    except Exception as exc:
        return outcome("failed", target,
                       str(exc) if isinstance(exc, ReplayError) else f"{type(exc).__name__}: {exc}")
    try:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=failed.receipt_handle)
    except Exception as exc:
        return outcome("replayed", target,
                       f"replayed, but the dead letter could not be deleted: {exc}")
    return outcome("replayed", target, deleted=True)
