"""The dead-letter queues: what is waiting in them, why it failed, and replaying it.

Each function has one dead-letter queue (`Function.dlq_name`). Two kinds of message land there:

- a *Lambda on-failure record* -- written by Lambda when its asynchronous retries are exhausted,
  by a handler for a terminal failure (`collections_core.runtime`), and by the local dispatcher:
  `requestContext.condition`, `responsePayload.errorType/errorMessage`, and the original event
  as `requestPayload`;
- an *EventBridge dead letter* -- a rule that could not deliver to its target: the body is the
  original event, the reason is in the message attributes ERROR_CODE / ERROR_MESSAGE (plus
  RULE_ARN / TARGET_ARN).

Reading never loses a message: messages are received with a visibility timeout, never deleted,
and made visible again when the read is done. A redrive replays each original event to the
function that failed it, as its trigger delivered it, and deletes a dead letter only once the
replay was accepted. Replays are rate-limited by a token bucket.

On AWS every replay is an asynchronous invoke (`InvocationType=Event`) of the function's `live`
alias: the alias is what the S3 notification and the EventBridge rules invoke, while `$LATEST`
may hold code that was never published. An EventBridge event is not put back on the bus there:
on the bus it would reach every rule that matches it (an archive, another consumer), not just
the one function that failed it. The local cloud has no Lambda service: an S3 event goes to the
function's trigger queue, an EventBridge event back onto the bus, whose rule's SQS target the
dispatcher reads (both deliver to the same handler, with Lambda's retries and dead-letter queue).
`invoke_live` and `TriggerQueues` are also how `collections reconcile --fix` and `replay`
deliver.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from collections_ops import aws, errors
from collections_ops.pipeline import FUNCTIONS, LIVE_ALIAS, Environment, Function

ClientFactory = Callable[[str], Any]
Replay = Callable[["FailedEvent"], str]  # returns where the event went; raises if not accepted

LAMBDA_RECORD = "lambda-destination"
EVENTBRIDGE_DLQ = "eventbridge-dlq"
LAMBDA_DLQ = "lambda-dlq"  # a function's DeadLetterConfig: body = event, ErrorCode attributes
UNREADABLE = "unreadable"

# The condition of the record a handler writes for its own terminal failures
# (`collections_core.runtime.dead_letter`); its errorType is the TerminalError subclass.
TERMINAL_CONDITION = "TerminalError"
REDRIVABLE_TERMINAL = frozenset({"ConfigurationError"})

PEEK_VISIBILITY_S = 30  # how long a message read by `peek` stays hidden at most
AGE_SAMPLE = 10  # messages read to estimate the age of the oldest


# --------------------------------------------------------------------------- reading


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


@dataclass(frozen=True)
class FailedEvent:
    """One dead letter, decoded: which stage failed, on which item, with what error."""

    function_key: str
    stage: str
    message_id: str
    format: str  # LAMBDA_RECORD | EVENTBRIDGE_DLQ | LAMBDA_DLQ | UNREADABLE
    condition: str | None  # TerminalError, RetriesExhausted, EventAgeExceeded, ERROR_CODE...
    error_type: str | None
    error_message: str | None
    user_id: str | None
    item_id: str | None
    key: str | None  # the S3 key, decoded (S3 events only)
    event_kind: str  # "s3" | "eventbridge" | "unknown"
    failed_at: float | None  # epoch seconds
    attempts: int | None  # invocations before it was given up on
    receive_count: int  # times this dead letter has been read
    event: Any  # the original event, as it was delivered: what a redrive replays
    rule_arn: str | None = None
    target_arn: str | None = None
    receipt_handle: str = field(default="", repr=False, compare=False)
    correlation_id: str | None = None  # from an EventBridge detail (an S3 event has none)

    @property
    def terminal(self) -> bool:
        """A failure the handler itself marked as one that can never succeed (its own
        on-failure record, condition TerminalError): replaying it only brings it back. A
        ConfigurationError is the exception: it succeeds once an operator fixes the setting,
        and a redrive is what follows the fix. Lambda's own records (RetriesExhausted,
        EventAgeExceeded) and EventBridge delivery failures are not terminal."""
        return (self.format == LAMBDA_RECORD and self.condition == TERMINAL_CONDITION
                and self.error_type not in REDRIVABLE_TERMINAL)

    @property
    def error(self) -> str:
        parts = [p for p in (self.error_type, self.error_message) if p]
        return ": ".join(parts) if parts else (self.condition or "unknown error")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("receipt_handle")
        out["error"] = self.error
        out["terminal"] = self.terminal
        return out


def function_of(function_key: str) -> Function:
    from collections_ops.pipeline import function

    try:
        return function(function_key)
    except KeyError:
        keys = ", ".join(fn.key for fn in FUNCTIONS)
        raise errors.UsageError(f"unknown function {function_key!r}", f"one of {keys}") from None




_NO_QUEUE = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


def queue_url(sqs: Any, name: str) -> str | None:
    found = aws.or_none(lambda: sqs.get_queue_url(QueueName=name), *_NO_QUEUE)
    return None if found is None else str(found["QueueUrl"])


def _dlq_url(sqs: Any, env: Environment, fn: Function) -> str:
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
                sent = [_sent_at(m) for m in borrow(AGE_SAMPLE, visibility_s=5)]
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
    url = _dlq_url(sqs, env, fn)
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
            fresh = [m for m in _receive(sqs, url, limit - len(got), visibility_s)
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


def _receive(sqs: Any, url: str, count: int, visibility_s: int) -> list[dict[str, Any]]:
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
        if messages or wait_s or not _visible(sqs, url):
            return messages
    return []


def _visible(sqs: Any, url: str) -> int:
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


# --------------------------------------------------------------------------- decoding


def _sent_at(message: dict[str, Any]) -> float | None:
    raw = message.get("Attributes", {}).get("SentTimestamp")
    try:
        return int(raw) / 1000 if raw is not None else None
    except (TypeError, ValueError):
        return None


def _iso_epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    if isinstance(value, dict) and value.get("StringValue") is not None:
        return str(value["StringValue"])
    return None


def event_kind(event: Any) -> str:
    if isinstance(event, dict):
        records = event.get("Records")
        if isinstance(records, list) and records and isinstance(records[0], dict) \
                and "s3" in records[0]:
            return "s3"
        if event.get("source") and event.get("detail-type"):
            return "eventbridge"
    return "unknown"


def identity(event: Any) -> tuple[str | None, str | None, str | None]:
    """(user_id, item_id, decoded S3 key) of an original event, as far as it says."""
    kind = event_kind(event)
    if kind == "s3":
        try:
            key = unquote_plus(str(event["Records"][0]["s3"]["object"]["key"]))
        except (KeyError, TypeError, IndexError):
            return None, None, None
        user_id, sep, rest = key.partition("/")
        if not sep or not rest:
            return None, None, key
        stem = rest.rpartition(".")[0]
        return user_id, stem or rest, key
    if kind == "eventbridge":
        detail = event.get("detail")
        if isinstance(detail, str):
            with contextlib.suppress(json.JSONDecodeError):
                detail = json.loads(detail)
        if isinstance(detail, dict):
            user, item = detail.get("user_id"), detail.get("item_id")
            return (str(user) if user is not None else None,
                    str(item) if item is not None else None, None)
    return None, None, None


def correlation_of(event: Any) -> str | None:
    """The correlation id an EventBridge event's detail carries (ImageProcessed and
    AnalysisComplete both do); None for anything else."""
    if event_kind(event) != "eventbridge":
        return None
    detail = event.get("detail")
    if isinstance(detail, str):
        with contextlib.suppress(json.JSONDecodeError):
            detail = json.loads(detail)
    value = detail.get("correlation_id") if isinstance(detail, dict) else None
    return value if isinstance(value, str) and value else None


def decode(fn: Function, message: dict[str, Any]) -> FailedEvent:
    """Read one dead letter, whichever of the formats it is in."""
    attrs = message.get("Attributes", {})
    common: dict[str, Any] = {
        "function_key": fn.key, "stage": fn.stage, "message_id": message.get("MessageId", ""),
        "receipt_handle": message.get("ReceiptHandle", ""),
        "receive_count": int(attrs.get("ApproximateReceiveCount", 0) or 0),
    }
    sent = _sent_at(message)
    try:
        body = json.loads(message.get("Body", ""))
    except (json.JSONDecodeError, TypeError):
        return FailedEvent(**common, format=UNREADABLE, condition=None, error_type=None,
                           error_message="the dead letter's body is not JSON", user_id=None,
                           item_id=None, key=None, event_kind="unknown", failed_at=sent,
                           attempts=None, event=None)

    if isinstance(body, dict) and isinstance(body.get("requestContext"), dict) \
            and "requestPayload" in body:
        context = body["requestContext"]
        response = body.get("responsePayload")
        response = response if isinstance(response, dict) else {}
        event = body["requestPayload"]
        user_id, item_id, key = identity(event)
        attempts = context.get("approximateInvokeCount")
        return FailedEvent(
            **common, format=LAMBDA_RECORD, condition=context.get("condition"),
            error_type=response.get("errorType"), error_message=response.get("errorMessage"),
            user_id=user_id, item_id=item_id, key=key, event_kind=event_kind(event),
            failed_at=_iso_epoch(body.get("timestamp")) or sent,
            attempts=int(attempts) if isinstance(attempts, int | str) and str(attempts).isdigit()
            else None,
            event=event, correlation_id=correlation_of(event))

    user_id, item_id, key = identity(body)
    if _attribute(message, "ERROR_CODE") is not None or _attribute(message, "RULE_ARN"):
        return FailedEvent(
            **common, format=EVENTBRIDGE_DLQ, condition=_attribute(message, "ERROR_CODE"),
            error_type=_attribute(message, "ERROR_CODE"),
            error_message=_attribute(message, "ERROR_MESSAGE"), user_id=user_id,
            item_id=item_id, key=key, event_kind=event_kind(body), failed_at=sent,
            attempts=None, event=body, rule_arn=_attribute(message, "RULE_ARN"),
            target_arn=_attribute(message, "TARGET_ARN"), correlation_id=correlation_of(body))
    return FailedEvent(
        **common, format=LAMBDA_DLQ, condition=_attribute(message, "ErrorCode"),
        error_type=_attribute(message, "ErrorCode"),
        error_message=_attribute(message, "ErrorMessage"), user_id=user_id, item_id=item_id,
        key=key, event_kind=event_kind(body), failed_at=sent, attempts=None, event=body,
        correlation_id=correlation_of(body))


# --------------------------------------------------------------------------- replaying


class ReplayError(Exception):
    """A replay was not accepted; the dead letter stays where it is."""


class NotReplayable(Exception):
    """The event cannot be sent back where it came from; it is left in the queue."""


def live_target(env: Environment, fn: Function) -> str:
    return f"function {fn.function_name(env.name)}:{LIVE_ALIAS} (asynchronous invoke)"


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


def replay_target(env: Environment, fn: Function, failed: FailedEvent) -> str:
    """Where `failed` would be replayed to, in words; NotReplayable if nowhere safe."""
    if failed.event_kind == "unknown":
        raise NotReplayable("the original event is missing or of an unknown kind")
    if failed.event_kind == "s3":
        if fn.trigger.kind != "s3":
            raise NotReplayable(f"an S3 event cannot be replayed to the {fn.key}")
        if env.is_local:
            return f"queue {fn.queue_name(env.name)}"
        return live_target(env, fn)
    wanted = fn.trigger.event
    event = failed.event
    if fn.trigger.kind != "eventbridge" or wanted is None or (
            event.get("source"), event.get("detail-type")) != (wanted.source, wanted.detail_type):
        # Put back on the bus, it would match no rule of this function and be dropped.
        raise NotReplayable(
            f"{event.get('source')}/{event.get('detail-type')} does not match the rule "
            f"{fn.rule_name(env.name)}")
    if not env.is_local:
        return live_target(env, fn)
    return f"rule {fn.rule_name(env.name)} (put_events)"


def replayer(client_factory: ClientFactory, env: Environment, *,
             event_bus: str = "default") -> Replay:
    """The default replay. AWS: every event by an asynchronous invoke of the function's `live`
    alias. Local cloud: an S3 event to the function's trigger queue, an EventBridge event back
    onto the bus."""
    queues = TriggerQueues(client_factory, env)

    def replay(failed: FailedEvent) -> str:
        fn = function_of(failed.function_key)
        target = replay_target(env, fn, failed)
        if not env.is_local:
            return invoke_live(client_factory("lambda"), env, fn, failed.event)
        if failed.event_kind == "s3":
            return queues.send(fn, failed.event)
        event = failed.event
        detail = event.get("detail")
        entry: dict[str, Any] = {
            "Source": event["source"], "DetailType": event["detail-type"],
            "Detail": detail if isinstance(detail, str) else json.dumps(detail),
            "EventBusName": event_bus,
        }
        if event.get("resources"):
            entry["Resources"] = list(event["resources"])
        response = client_factory("events").put_events(Entries=[entry])
        if response.get("FailedEntryCount", 0):
            first = (response.get("Entries") or [{}])[0]
            raise ReplayError(f"put_events refused the event: {first.get('ErrorCode')} "
                              f"{first.get('ErrorMessage')}")
        return target

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
    url = _dlq_url(sqs, env, fn)
    send = replay or replayer(client_factory, env)
    report = RedriveReport(fn.key, fn.dlq_name(env.name), dry_run)
    budget = _visible(sqs, url)
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
            batch = _receive(sqs, url, budget - len(report.outcomes), visibility)
            fresh = [m for m in batch if m["MessageId"] not in held]
            if not fresh:
                break
            for message in fresh:
                held[message["MessageId"]] = message["ReceiptHandle"]
                if len(report.outcomes) >= budget or report.stopped_early:
                    continue
                sent = _sent_at(message)
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
