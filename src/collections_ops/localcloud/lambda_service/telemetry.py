"""What an invocation leaves in CloudWatch: its log lines and the AWS/Lambda metrics.

Apart from the dispatcher because both are batching against the emulator's cost per call (each
PutLogEvents or PutMetricData costs the one interpreter several milliseconds), with limits that
are CloudWatch's, not the dispatcher's; the dispatcher only says when to send.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

from collections_ops.pipeline import Environment, Function

log = logging.getLogger("collections.localcloud")
METRICS_FLUSH_S = 2.0
LOG_LINGER_S = 0.05  # how long a worker waits for more work before sending its log lines
LOG_FLUSH_S = 0.5  # log lines are never held longer than this
LOG_BATCH_EVENTS = 5_000  # PutLogEvents takes at most 10,000 events
LOG_BATCH_BYTES = 512 * 1024  # ... and at most 1 MB


class Metrics:
    """AWS/Lambda metrics of this process's invocations, sent every METRICS_FLUSH_S as
    statistic sets: Invocations, Errors, Throttles (Sum), Duration (ms) and
    ConcurrentExecutions (the most this process ran at once; with several dispatcher
    processes the Maximum statistic is therefore a lower bound of the total)."""

    def __init__(self, cw: Any, env: Environment) -> None:
        self._cw = cw
        self._env = env
        self._lock = threading.Lock()
        self._stats: dict[str, dict[str, list[float]]] = {}

    def _add(self, fn: Function, metric: str, value: float) -> None:
        with self._lock:
            self._stats.setdefault(fn.function_name(self._env.name), {}).setdefault(
                metric, []).append(value)

    def invoked(self, fn: Function, *, ok: bool, duration_ms: float, concurrent: int) -> None:
        self._add(fn, "Invocations", 1)
        self._add(fn, "Errors", 0 if ok else 1)
        self._add(fn, "Duration", duration_ms)
        self._add(fn, "ConcurrentExecutions", concurrent)

    def throttled(self, fn: Function) -> None:
        self._add(fn, "Throttles", 1)

    def flush(self) -> None:
        with self._lock:
            stats, self._stats = self._stats, {}
        units = {"Duration": "Milliseconds"}
        data = [{"MetricName": metric, "Dimensions": [{"Name": "FunctionName", "Value": name}],
                 "Timestamp": time.time(), "Unit": units.get(metric, "Count"),
                 "StatisticValues": {"SampleCount": float(len(values)), "Sum": float(sum(values)),
                                     "Minimum": float(min(values)),
                                     "Maximum": float(max(values))}}
                for name, metrics in stats.items() for metric, values in metrics.items()]
        try:
            for start in range(0, len(data), 20):
                self._cw.put_metric_data(Namespace="AWS/Lambda", MetricData=data[start:start + 20])
        except Exception as exc:  # the emulator restarting: keep them for the next flush
            log.warning("publishing AWS/Lambda metrics failed (kept for the next try): %s", exc)
            with self._lock:
                for name, metrics in stats.items():
                    for metric, values in metrics.items():
                        self._stats.setdefault(name, {}).setdefault(metric, []).extend(values)


class LogBuffer:
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
            self._put(events)
        except Exception as exc:
            log.warning("writing logs to %s failed: %s", self._group, exc)

    def _put(self, events: list[dict[str, Any]]) -> None:
        try:
            self._logs.put_log_events(logGroupName=self._group, logStreamName=self.stream,
                                      logEvents=events)
        except self._logs.exceptions.ResourceNotFoundException:
            # The emulator lost the stream (a restart before it was kept): make it again.
            with contextlib.suppress(self._logs.exceptions.ResourceAlreadyExistsException):
                self._logs.create_log_stream(logGroupName=self._group, logStreamName=self.stream)
            self._logs.put_log_events(logGroupName=self._group, logStreamName=self.stream,
                                      logEvents=events)
