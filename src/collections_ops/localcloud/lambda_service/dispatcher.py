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
What the threads consult lives beside this module: when to retry, back off or give up
(`retry_policy`), what this process holds for its successor (`journal`), reserved concurrency
across processes (`concurrency`), and the log lines and metrics sent to CloudWatch
(`telemetry`). Each dispatcher is a process of its own, started by the supervisor
(`run_process`); tests run one in their own process (`Dispatcher`).
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
from dataclasses import dataclass
from typing import Any

from collections_ops.localcloud.lambda_service import lambda_runtime
from collections_ops.localcloud.lambda_service.concurrency import ReservedConcurrency
from collections_ops.localcloud.lambda_service.journal import (
    FINISHED,
    HELD,
    JOURNAL_FLUSH_S,
    RUNNING,
    Journal,
)
from collections_ops.localcloud.lambda_service.retry_policy import (
    SQS_BATCH_MAX,
    THROTTLED_ATTRIBUTE,
    DispatchPolicy,
    on_failure_record,
    throttled_attribute,
    throttles_so_far,
)
from collections_ops.localcloud.lambda_service.telemetry import (
    LOG_FLUSH_S,
    LOG_LINGER_S,
    METRICS_FLUSH_S,
    LogBuffer,
    Metrics,
)
from collections_ops.localcloud.state import StateDir, local_environment
from collections_ops.pipeline import FUNCTIONS, Environment, Function

log = logging.getLogger("collections.localcloud")


@dataclass(frozen=True)
class RoleCredentials:
    """What Lambda gives a function's containers: its role's session, as variables."""

    environ: Mapping[str, str]

    def session(self, region: str, models_of: Any = None) -> Any:
        """A session signing as the role. With `models_of` (another boto3 session), the service
        models that session has loaded are shared, so this one parses no JSON again."""
        import boto3
        import botocore.session

        core = botocore.session.Session()
        if models_of is not None:
            core.register_component("data_loader",
                                    models_of._session.get_component("data_loader"))
        return boto3.session.Session(
            aws_access_key_id=self.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.environ["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=self.environ["AWS_SESSION_TOKEN"], region_name=region,
            botocore_session=core)




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
                 dlq_urls: dict[str, str], policy: DispatchPolicy | None = None,
                 slots_dir: Any = None, roles: Mapping[str, RoleCredentials] | None = None,
                 journal: Journal | None = None) -> None:
        # `session`: the Lambda service's side (polling, metrics, concurrency); `roles`: each
        # function's execution-role credentials, which its handler, its log lines and its
        # on-failure records use (as on Lambda). Without them, everything uses `session`.
        # `journal`: what this process holds, for its successor after a crash (see Journal).
        self._session = session
        self._roles = dict(roles or {})
        # One session per role, made once (a session's first clients load the service models):
        # every worker of the function makes its clients from it.
        self._role_sessions = {key: role.session(session.region_name, models_of=session)
                               for key, role in self._roles.items()}
        self._clients_lock = threading.Lock()
        self._journal = journal
        self._slots_dir = slots_dir
        self._concurrency: dict[str, ReservedConcurrency] = {}
        self._metrics = Metrics(session.client("cloudwatch"), env)
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
        lam = self._session.client("lambda")
        for fn in FUNCTIONS:
            lambda_runtime.load_handler(fn)  # fail fast on an import error
            self._concurrency[fn.key] = ReservedConcurrency(
                lam, fn.function_name(self._env.name),
                None if self._slots_dir is None else self._slots_dir / fn.key)
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
        flusher = threading.Thread(target=self._flush_metrics, daemon=True, name="metrics")
        flusher.start()
        self._threads.append(flusher)
        if self._journal is not None:
            journal = self._journal
            writer = threading.Thread(target=self._flush_journal, args=(journal,),
                                      daemon=True, name="journal")
            writer.start()
            self._threads.append(writer)

    def _flush_journal(self, journal: Journal) -> None:
        while not self._stop.wait(JOURNAL_FLUSH_S):
            journal.flush()
        journal.flush()

    def _flush_metrics(self) -> None:
        while not self._stop.wait(METRICS_FLUSH_S):
            self._metrics.flush()
        self._metrics.flush()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        if self._lanes:  # what workers finished after their poller stopped
            sqs = self._session.client("sqs")
            for lane in self._lanes:
                self._delete_finished(sqs, self._queue_urls[lane.fn.key], lane)
        if self._journal is not None:  # what the workers did after the journal's writer stopped
            self._journal.flush()

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
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
                    MessageAttributeNames=[THROTTLED_ATTRIBUTE],
                ).get("Messages", [])
            except Exception as exc:
                if self._stop.is_set():
                    break
                log.warning("receive from %s failed: %s", lane.fn.key, exc)
                time.sleep(0.5)
                continue
            lane.take(len(messages))
            if self._journal is not None and messages:
                for message in messages:
                    self._journal.mark(message["ReceiptHandle"], lane.fn.key, HELD)
                self._journal.flush()  # before any of them runs: a crash now loses none
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
            if self._journal is not None:
                for handle in chunk:
                    self._journal.drop(handle)

    # ----------------------------------------------------------------------- invoking

    def _worker(self, lane: _Lane) -> None:
        fn = lane.fn
        role = self._roles.get(fn.key)
        if role is not None:
            lambda_runtime.enter_container(dict(role.environ))
        with self._clients_lock:  # boto3 sessions are not thread-safe; their clients are
            sqs = self._session.client("sqs")
            role_session = self._role_sessions.get(fn.key, self._session)
            dlq = role_session.client("sqs")
            logs = LogBuffer(role_session.client("logs"), fn.log_group(self._env.name))
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
                finished = self._deliver(fn, message, sqs, logs, dlq)
            except Exception as exc:  # never lose the worker; the message reappears later
                log.warning("delivering to %s failed: %s", fn.key, exc)
            finally:
                # Journal first: once `done`, the poller may delete it and drop its entry.
                if self._journal is not None:  # to delete, or already handed back
                    if finished is not None:
                        self._journal.mark(finished, fn.key, FINISHED)
                    else:
                        self._journal.drop(message["ReceiptHandle"])
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

    def _release(self, message: dict[str, Any]) -> None:
        """Before a message is made visible again for its retry: out of the journal, on disk,
        so no successor hands back a message that another process may by then be running
        (a crash in between leaves it invisible until its timeout: late, never twice)."""
        if self._journal is not None:
            self._journal.drop(message["ReceiptHandle"])
            self._journal.flush()

    def _killed(self, fn: Function, message: dict[str, Any], sqs: Any,
                logs: LogBuffer) -> None:
        """The container died: no acknowledgement, and Lambda retries the event shortly."""
        logs.add([(int(time.time() * 1000),
                   "Runtime exited with error: signal: killed (fault injection)")])
        self._release(message)
        sqs.change_message_visibility(QueueUrl=self._queue_urls[fn.key],
                                      ReceiptHandle=message["ReceiptHandle"],
                                      VisibilityTimeout=self._policy.retry_delays_s[0])
        with self._count_lock:
            self.killed += 1

    def _deliver(self, fn: Function, message: dict[str, Any], sqs: Any,
                 logs: LogBuffer, dlq: Any = None) -> str | None:
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
        concurrency = self._concurrency[fn.key]
        token = concurrency.acquire()
        if token is None:
            self._throttle(fn, message, event, sqs, dlq or sqs)
            return str(message["ReceiptHandle"])  # sent again, later (or parked)
        if self._journal is not None:
            self._journal.mark(message["ReceiptHandle"], fn.key, RUNNING)
        try:
            running = concurrency.held
            result = lambda_runtime.invoke(fn, self._env, event, log_stream=logs.stream)
        finally:
            concurrency.release(token)
        # An unexpected error's text (its log line, the DLQ record's errorMessage) may quote a
        # secret; the handlers' one masking function knows them all (on sys.path once loaded).
        from collections_core.log import mask

        result.error_message = mask(result.error_message) if result.error_message else None
        result.log_events = [(ts, mask(line)) for ts, line in result.log_events]
        self._metrics.invoked(fn, ok=result.ok, duration_ms=result.duration_ms,
                              concurrent=running)
        with self._count_lock:
            self.invocations += 1
        logs.add(result.log_events)
        if kill == "after":
            self._killed(fn, message, sqs, logs)
            return None
        if result.ok:
            return str(message["ReceiptHandle"])
        if attempt <= self._policy.max_retries:
            self._release(message)
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=self._policy.retry_delay_s(attempt))
            return None
        self._park(fn, event, request_id=result.request_id, condition="RetriesExhausted",
                   attempts=attempt, error_type=result.error_type,
                   error_message=result.error_message, sqs=dlq or sqs)
        return str(message["ReceiptHandle"])  # parked in the dead-letter queue: done with it

    def _park(self, fn: Function, event: Any, *, request_id: str, condition: str,
              attempts: int, error_type: str | None, error_message: str | None,
              sqs: Any) -> None:
        """Lambda's on-failure record, to the function's dead-letter queue."""
        record = on_failure_record(fn, self._env, event, request_id=request_id,
                                   condition=condition, attempts=attempts,
                                   error_type=error_type, error_message=error_message)
        sqs.send_message(QueueUrl=self._dlq_urls[fn.key], MessageBody=json.dumps(record))

    def _throttle(self, fn: Function, message: dict[str, Any], event: Any, sqs: Any,
                  dlq: Any) -> None:
        """Throttled (reserved concurrency reached): Lambda keeps the event and tries again
        with a growing pause, not counting it as a retry, until the event is too old. The
        message is sent again with a delay and a count of its throttles (so the receive
        count, which counts retries, starts again)."""
        self._metrics.throttled(fn)
        throttles, first = throttles_so_far(message)
        throttles += 1
        if time.time() - first / 1000 > self._policy.max_event_age_s:
            self._park(fn, event, request_id=str(uuid.uuid4()), condition="EventAgeExceeded",
                       attempts=0, error_type=None, error_message=None, sqs=dlq)
            return
        sqs.send_message(
            QueueUrl=self._queue_urls[fn.key], MessageBody=message["Body"],
            DelaySeconds=min(900, self._policy.throttle_delay_s(throttles)),
            MessageAttributes=throttled_attribute(throttles, first))


# --------------------------------------------------------------------------- process


def run_process(state_dir: Any, index: int) -> None:
    """One dispatcher process: the queues' pollers and this process's share of the handler
    workers. The supervisor runs several (one per core by default), so handlers run in
    parallel on every core; SQS hands each message to one of them."""
    from collections_ops.localcloud.aws import iam
    from collections_ops.pipeline import LOCAL_ACCOUNT, common_env

    for fn in FUNCTIONS:  # the slow part of starting (imports), done while moto starts
        lambda_runtime.load_handler(fn)
    files = StateDir(state_dir)
    lambda_runtime.watch_code(files.code_stamp)  # `deploy local --watch` reloads
    ready: dict[str, Any] = {}
    while not ready:
        try:
            ready = json.loads(files.emulator.read_text())
        except (OSError, ValueError):
            time.sleep(0.05)
    env = local_environment()
    # No process-wide credentials: the Lambda side uses the administrator's, each function's
    # containers their role's (iam).
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ["AWS_DEFAULT_REGION"] = ready["region"]
    os.environ["AWS_ENDPOINT_URL"] = ready["endpoint_url"]
    queue_urls, dlq_urls = ready["resources"]["queue_urls"], ready["resources"]["dlq_urls"]
    os.environ.update(common_env(env, account=LOCAL_ACCOUNT, dlq_urls=dlq_urls))
    credentials = iam.read(state_dir)
    assert credentials is not None, "the emulator writes the credentials before it is ready"
    session = iam.admin_session(state_dir, ready["region"])
    roles = {fn.key: RoleCredentials(iam.function_environment(credentials, fn.key))
             for fn in FUNCTIONS}
    policy = DispatchPolicy.from_environ()
    journal_path = files.dispatcher_journal(index)
    handed_back = Journal.recover(journal_path, session.client("sqs"), queue_urls,
                                  policy.retry_delays_s[0] if policy.retry_delays_s else 0)
    if any(handed_back.values()):
        log.info("handed back what the previous dispatcher-%d held: %s", index, handed_back)
    dispatcher = Dispatcher(session, env, queue_urls, dlq_urls, policy,
                            slots_dir=files.concurrency, roles=roles,
                            journal=Journal(journal_path))
    dispatcher.start()

    stopping = threading.Event()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    path = files.dispatcher_heartbeat(index)
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

    from collections_ops import paths

    # The handlers run with the deployed collections_core (their bundle's, COLLECTIONS_LAMBDAS_DIR's
    # working copy), never the installed one: first on the path before anything imports it.
    paths.add_shared_to_path()

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s dispatcher-{sys.argv[2]}: "
                               "%(message)s")
    logging.getLogger().handlers[0].addFilter(
        lambda record: record.name.startswith("collections.localcloud"))
    run_process(Path(sys.argv[1]), int(sys.argv[2]))


if __name__ == "__main__":
    main()
