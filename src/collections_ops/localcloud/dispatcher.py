"""Delivering queued events to the handlers, with Lambda's asynchronous-invocation semantics.

Each function gets a few worker threads; each worker is one "container" (the handlers cache
clients and connections per thread). A message is deleted only after the handler returns. A
handler that raises is retried (the message becomes visible again after a backoff) up to
`max_retries` times, then an on-failure record goes to the function's dead-letter queue. Every
invocation's log lines, START to REPORT, go to CloudWatch Logs under the function's log group.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from collections_ops.localcloud import lambda_runtime
from collections_ops.pipeline import FUNCTIONS, Environment, Function

log = logging.getLogger("collections.localcloud")


@dataclass(frozen=True)
class DispatchPolicy:
    workers_per_function: int = 2
    max_retries: int = 2  # Lambda's default for asynchronous invocations
    retry_delays_s: tuple[int, ...] = (1, 2)
    wait_time_s: int = 1


class Dispatcher:
    def __init__(self, session: Any, env: Environment, queue_urls: dict[str, str],
                 dlq_urls: dict[str, str], policy: DispatchPolicy | None = None) -> None:
        self._session = session
        self._env = env
        self._queue_urls = queue_urls
        self._dlq_urls = dlq_urls
        self._policy = policy or DispatchPolicy()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.invocations = 0
        self.last_beat = time.time()

    def start(self) -> None:
        for fn in FUNCTIONS:
            lambda_runtime.load_handler(fn)  # fail fast on an import error
            for n in range(self._policy.workers_per_function):
                t = threading.Thread(target=self._worker, args=(fn,), daemon=True,
                                     name=f"{fn.key}-{n}")
                t.start()
                self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    def _worker(self, fn: Function) -> None:
        sqs = self._session.client("sqs")
        logs = self._session.client("logs")
        stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"
        logs.create_log_stream(logGroupName=fn.log_group(self._env.name), logStreamName=stream)
        while not self._stop.is_set():
            self.last_beat = time.time()
            try:
                messages = sqs.receive_message(
                    QueueUrl=self._queue_urls[fn.key], MaxNumberOfMessages=1,
                    WaitTimeSeconds=self._policy.wait_time_s,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                ).get("Messages", [])
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("receive from %s failed: %s", fn.key, exc)
                time.sleep(0.5)
                continue
            for message in messages:
                self._deliver(fn, message, sqs, logs, stream)

    def _deliver(self, fn: Function, message: dict[str, Any], sqs: Any, logs: Any,
                 stream: str) -> None:
        url = self._queue_urls[fn.key]
        try:
            event = json.loads(message["Body"])
        except json.JSONDecodeError:
            event = {"malformed_body": message["Body"]}
        result = lambda_runtime.invoke(fn, self._env, event, log_stream=stream)
        self.invocations += 1
        self._write_logs(logs, fn, stream, result.log_events)
        if result.ok:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            return
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        if attempt <= self._policy.max_retries:
            delays = self._policy.retry_delays_s
            delay = delays[min(attempt - 1, len(delays) - 1)] if delays else 0
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"],
                                          VisibilityTimeout=delay)
            return
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
        sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    def _write_logs(self, logs: Any, fn: Function, stream: str,
                    events: list[tuple[int, str]]) -> None:
        if not events:
            return
        try:
            logs.put_log_events(logGroupName=fn.log_group(self._env.name), logStreamName=stream,
                                logEvents=[{"timestamp": ts, "message": msg} for ts, msg in events])
        except Exception as exc:
            log.warning("writing logs for %s failed: %s", fn.key, exc)
