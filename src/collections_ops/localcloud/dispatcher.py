"""Delivering queued events to the handlers, with Lambda's asynchronous-invocation semantics.

Each function gets one poller thread and a few worker threads; each worker is one "container"
(the handlers cache clients and connections per thread). A message is deleted only after the
handler returns. A handler that raises is retried (the message becomes visible again after a
backoff) up to `max_retries` times, then an on-failure record goes to the function's
dead-letter queue. Every invocation's log lines, START to REPORT, go to CloudWatch Logs under
the function's log group.

Under load the cost is in the calls: each SQS or CloudWatch Logs call costs the in-process moto
server and the client several milliseconds of the one interpreter's time. So the poller
receives up to ten messages at a time, holding at most one waiting message per worker (a busy
worker finds its next message at once; no message waits long behind another), and deletes
finished messages in batches; a busy worker sends its log lines a few invocations at a time,
an idle one at once.

Workers per function: `COLLECTIONS_LOCAL_WORKERS`, either one number for every function
(`4`) or per function (`processor=4,analyzer=4,embedder=2`; a bare number sets the default).
The dispatcher always runs in the process that serves moto, so it also removes two pure,
repeated computations from moto's request path (see `moto_tuning`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from collections_ops.localcloud import lambda_runtime
from collections_ops.pipeline import FUNCTIONS, Environment, Function

log = logging.getLogger("collections.localcloud")
WORKERS_ENV = "COLLECTIONS_LOCAL_WORKERS"
# Fault injection for reliability tests: kill every Nth first delivery (0: never).
FAULT_EVERY_ENV = "COLLECTIONS_LOCAL_FAULT_EVERY"
SQS_BATCH_MAX = 10
LOG_LINGER_S = 0.05  # how long a worker waits for more work before sending its log lines
LOG_FLUSH_S = 0.5  # log lines are never held longer than this
LOG_BATCH_EVENTS = 5_000  # PutLogEvents takes at most 10,000 events
LOG_BATCH_BYTES = 512 * 1024  # ... and at most 1 MB


@dataclass(frozen=True)
class DispatchPolicy:
    workers_per_function: int = 3
    workers: Mapping[str, int] = field(default_factory=dict)  # function key -> workers
    max_retries: int = 2  # Lambda's default for asynchronous invocations
    retry_delays_s: tuple[int, ...] = (1, 2)
    wait_time_s: int = 1
    batch_size: int = SQS_BATCH_MAX  # messages per receive, at most
    prefetch_per_worker: int = 1  # messages received ahead of a free worker
    # Kill every Nth first delivery, alternately before the handler runs and after it has
    # done its work but before the message is acknowledged (as a crashed container would).
    fault_every: int = 0

    def workers_for(self, fn: Function) -> int:
        return max(1, int(self.workers.get(fn.key, self.workers_per_function)))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> DispatchPolicy:
        """The default policy, with workers per function from COLLECTIONS_LOCAL_WORKERS."""
        policy = cls()
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


class _Lane:
    """One function's poller, its free message slots and its finished-message buffer."""

    def __init__(self, fn: Function, slots: int, refill_at: int) -> None:
        self.fn = fn
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.slots = slots  # messages the poller may still hand out (guarded by `lock`)
        self.refill_at = max(1, min(refill_at, slots))  # receive once this many are free
        self.lock = threading.Condition()
        self.finished: list[str] = []  # receipt handles to delete (guarded by `lock`)

    def take(self, count: int) -> None:
        with self.lock:
            self.slots -= count

    def done(self, receipt_handle: str | None) -> None:
        with self.lock:
            self.slots += 1
            if receipt_handle is not None:
                self.finished.append(receipt_handle)
            self.lock.notify_all()


class Dispatcher:
    def __init__(self, session: Any, env: Environment, queue_urls: dict[str, str],
                 dlq_urls: dict[str, str], policy: DispatchPolicy | None = None) -> None:
        self._session = session
        self._env = env
        self._queue_urls = queue_urls
        self._dlq_urls = dlq_urls
        self._policy = policy or DispatchPolicy.from_environ()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lanes: list[_Lane] = []
        self._count_lock = threading.Lock()
        self.invocations = 0
        self.killed = 0
        self._first_deliveries = 0
        self.last_beat = time.time()

    @property
    def policy(self) -> DispatchPolicy:
        return self._policy

    def start(self) -> None:
        for fn in FUNCTIONS:
            lambda_runtime.load_handler(fn)  # fail fast on an import error
            workers = self._policy.workers_for(fn)
            # With a message in hand for every worker there is no hurry: receive again once
            # a worker's worth of slots is free, several messages in one call.
            lane = _Lane(fn, workers * (1 + max(0, self._policy.prefetch_per_worker)),
                         refill_at=workers)
            self._lanes.append(lane)
            threads = [threading.Thread(target=self._poller, args=(lane,), daemon=True,
                                        name=f"{fn.key}-poller")]
            threads += [threading.Thread(target=self._worker, args=(lane,), daemon=True,
                                         name=f"{fn.key}-{n}") for n in range(workers)]
            for t in threads:
                t.start()
            self._threads += threads

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if self._lanes:  # what workers finished after their poller stopped
            sqs = self._session.client("sqs")
            for lane in self._lanes:
                self._delete_finished(sqs, self._queue_urls[lane.fn.key], lane)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    # ----------------------------------------------------------------------- polling

    def _poller(self, lane: _Lane) -> None:
        sqs = self._session.client("sqs")
        url = self._queue_urls[lane.fn.key]
        while not self._stop.is_set():
            self.last_beat = time.time()
            with lane.lock:
                if lane.slots < lane.refill_at and len(lane.finished) < SQS_BATCH_MAX:
                    woken = lane.lock.wait(0.5)
                    if woken:
                        continue  # deletes wait for the next receive, or a full batch
                ready = lane.slots >= lane.refill_at
                wanted = min(lane.slots, max(1, self._policy.batch_size), SQS_BATCH_MAX)
            self._delete_finished(sqs, url, lane)
            if not ready:
                continue
            try:
                messages = sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=wanted,
                    WaitTimeSeconds=self._policy.wait_time_s,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                ).get("Messages", [])
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("receive from %s failed: %s", lane.fn.key, exc)
                time.sleep(0.5)
                continue
            lane.take(len(messages))
            for message in messages:
                lane.inbox.put(message)
        self._delete_finished(sqs, url, lane)

    def _delete_finished(self, sqs: Any, url: str, lane: _Lane) -> None:
        with lane.lock:
            handles, lane.finished = lane.finished, []
        for start in range(0, len(handles), SQS_BATCH_MAX):
            chunk = handles[start:start + SQS_BATCH_MAX]
            try:
                response = sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(chunk)])
                failed = response.get("Failed", [])
            except Exception as exc:
                log.warning("deleting %d message(s) from %s failed: %s", len(chunk),
                            lane.fn.key, exc)
                failed = [{"Id": str(n)} for n in range(len(chunk))]
            if failed:  # they reappear after their visibility timeout: delivered again
                log.warning("%d message(s) of %s could not be deleted", len(failed), lane.fn.key)

    # ----------------------------------------------------------------------- invoking

    def _worker(self, lane: _Lane) -> None:
        fn = lane.fn
        sqs = self._session.client("sqs")
        logs = _LogBuffer(self._session.client("logs"), fn.log_group(self._env.name))
        while not self._stop.is_set():
            # Under load the next message follows within moments: keep the log lines and send
            # several invocations' worth in one call. When none comes, send them now.
            try:
                message = lane.inbox.get(timeout=LOG_LINGER_S if logs.pending else 0.5)
            except queue.Empty:
                logs.flush()
                continue
            finished: str | None = None
            try:
                finished = self._deliver(fn, message, sqs, logs)
            except Exception as exc:  # never lose the worker; the message reappears later
                log.warning("delivering to %s failed: %s", fn.key, exc)
            finally:
                lane.done(finished)
            if logs.age_s() >= LOG_FLUSH_S:
                logs.flush()
        logs.flush()

    def _fault(self, attempt: int) -> str | None:
        """Which first deliveries to kill, when fault injection is on."""
        every = self._policy.fault_every
        if every <= 0 or attempt != 1:
            return None
        with self._count_lock:
            self._first_deliveries += 1
            n = self._first_deliveries
        if n % every:
            return None
        return "before" if (n // every) % 2 else "after"

    def _killed(self, fn: Function, message: dict[str, Any], sqs: Any,
                logs: _LogBuffer) -> None:
        """The container died: no acknowledgement, and Lambda retries the event shortly."""
        logs.add([(int(time.time() * 1000),
                   "Runtime exited with error: signal: killed (fault injection)")])
        sqs.change_message_visibility(QueueUrl=self._queue_urls[fn.key],
                                      ReceiptHandle=message["ReceiptHandle"],
                                      VisibilityTimeout=self._policy.retry_delays_s[0])
        with self._count_lock:
            self.killed += 1

    def _deliver(self, fn: Function, message: dict[str, Any], sqs: Any,
                 logs: _LogBuffer) -> str | None:
        """Invoke the handler; return the receipt handle if the message is to be deleted."""
        url = self._queue_urls[fn.key]
        try:
            event = json.loads(message["Body"])
        except json.JSONDecodeError:
            event = {"malformed_body": message["Body"]}
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        kill = self._fault(attempt)
        if kill == "before":
            self._killed(fn, message, sqs, logs)
            return None
        result = lambda_runtime.invoke(fn, self._env, event, log_stream=logs.stream)
        # An unexpected error's text (its log line, the DLQ record's errorMessage) may quote a
        # secret; the handlers' one masking function knows them all (on sys.path once loaded).
        from collections_core.log import mask

        result.error_message = mask(result.error_message) if result.error_message else None
        result.log_events = [(ts, mask(line)) for ts, line in result.log_events]
        with self._count_lock:
            self.invocations += 1
        logs.add(result.log_events)
        if kill == "after":
            self._killed(fn, message, sqs, logs)
            return None
        if result.ok:
            return str(message["ReceiptHandle"])
        if attempt <= self._policy.max_retries:
            delays = self._policy.retry_delays_s
            delay = delays[min(attempt - 1, len(delays) - 1)] if delays else 0
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=delay)
            return None
        record = {
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "requestContext": {"requestId": result.request_id,
                               "functionArn": fn.function_name(self._env.name),
                               "condition": "RetriesExhausted", "approximateInvokeCount": attempt},
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorType": result.error_type,
                                "errorMessage": result.error_message},
        }
        sqs.send_message(QueueUrl=self._dlq_urls[fn.key], MessageBody=json.dumps(record))
        return str(message["ReceiptHandle"])  # parked in the dead-letter queue: done with it



class _LogBuffer:
    """One worker's log stream (one "container"), written a few invocations at a time."""

    def __init__(self, logs: Any, group: str) -> None:
        self._logs = logs
        self._group = group
        self.stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        logs.create_log_stream(logGroupName=group, logStreamName=self.stream)
        self.pending: list[dict[str, Any]] = []
        self._bytes = 0
        self._since = 0.0

    def add(self, events: list[tuple[int, str]]) -> None:
        if not self.pending:
            self._since = time.monotonic()
        for ts, msg in events:
            self.pending.append({"timestamp": ts, "message": msg})
            self._bytes += len(msg.encode()) + 26  # PutLogEvents counts 26 bytes per event
        if len(self.pending) >= LOG_BATCH_EVENTS or self._bytes >= LOG_BATCH_BYTES:
            self.flush()

    def age_s(self) -> float:
        return time.monotonic() - self._since if self.pending else 0.0

    def flush(self) -> None:
        if not self.pending:
            return
        events, self.pending, self._bytes = self.pending, [], 0
        try:
            self._logs.put_log_events(logGroupName=self._group, logStreamName=self.stream,
                                      logEvents=events)
        except Exception as exc:
            log.warning("writing logs to %s failed: %s", self._group, exc)


# --------------------------------------------------------------------------- process


def heartbeat_path(state_dir: Any, index: int) -> Any:
    return state_dir / f"dispatcher-{index}.json"


def run_process(state_dir: Any, index: int) -> None:
    """One dispatcher process: the queues' pollers and this process's share of the handler
    workers. The supervisor runs several (one per core by default), so handlers run in
    parallel on every core; SQS hands each message to one of them."""
    import boto3

    from collections_ops.localcloud.daemon import local_environment
    from collections_ops.localcloud.emulator import EMULATOR_FILE, FAKE_CREDENTIALS
    from collections_ops.pipeline import LOCAL_ACCOUNT, common_env

    ready = json.loads((state_dir / EMULATOR_FILE).read_text())
    env = local_environment()
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_DEFAULT_REGION"] = ready["region"]
    os.environ["AWS_ENDPOINT_URL"] = ready["endpoint_url"]
    queue_urls, dlq_urls = ready["resources"]["queue_urls"], ready["resources"]["dlq_urls"]
    os.environ.update(common_env(env, account=LOCAL_ACCOUNT, dlq_urls=dlq_urls))
    session = boto3.session.Session(region_name=ready["region"])
    dispatcher = Dispatcher(session, env, queue_urls, dlq_urls)
    dispatcher.start()

    stopping = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    path = heartbeat_path(state_dir, index)
    while True:
        beat = {"pid": os.getpid(), "time": time.time(), "alive": dispatcher.alive(),
                "invocations": dispatcher.invocations, "killed": dispatcher.killed}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(beat))
        os.replace(tmp, path)
        if stopping.wait(0.5):
            break
    dispatcher.stop()


def main() -> None:
    import sys
    from pathlib import Path

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s dispatcher-{sys.argv[2]}: "
                               "%(message)s")
    logging.getLogger().handlers[0].addFilter(
        lambda record: record.name.startswith("collections.localcloud"))
    run_process(Path(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()
