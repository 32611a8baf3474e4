"""What CloudWatch does on its own in AWS and moto does not: queue-depth metrics and alarm
evaluation, for the local cloud.

On AWS, SQS publishes `AWS/SQS ApproximateNumberOfMessagesVisible` per queue every minute and
CloudWatch evaluates every alarm against its metric. moto stores metrics and alarms but never
does either, so locally every alarm would stay as it was created. The supervisor runs this
every EVALUATE_EVERY_S: it publishes each queue's depth, then evaluates each of the pipeline's
alarms over its own period (statistic, threshold, comparison, missing data treated as the
alarm says) and sets its state when it changed, with a reason in CloudWatch's words.
The dispatchers publish the `AWS/Lambda` metrics (`lambda_service.telemetry.Metrics`).
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("collections.localcloud")
EVALUATE_EVERY_S = 5.0

_COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def publish_queue_depths(sqs: Any, cw: Any, queue_urls: dict[str, str]) -> dict[str, int]:
    depths: dict[str, int] = {}
    data = []
    for url in queue_urls.values():
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]
        name = url.rstrip("/").rsplit("/", 1)[-1]
        depths[name] = int(attrs.get("ApproximateNumberOfMessages", 0))
        data.append({"MetricName": "ApproximateNumberOfMessagesVisible", "Unit": "Count",
                     "Dimensions": [{"Name": "QueueName", "Value": name}],
                     "Value": float(depths[name])})
    for start in range(0, len(data), 20):
        cw.put_metric_data(Namespace="AWS/SQS", MetricData=data[start:start + 20])
    return depths


def _aggregate(statistic: str, points: list[dict[str, Any]]) -> float:
    values = [float(p[statistic]) for p in points if statistic in p]
    if statistic == "Sum" or statistic == "SampleCount":
        return sum(values)
    if statistic == "Maximum":
        return max(values)
    if statistic == "Minimum":
        return min(values)
    return statistics.fmean(values)


def evaluate_alarms(cw: Any, prefix: str, *, now: datetime | None = None) -> dict[str, str]:
    """Evaluate every alarm named `prefix…`; returns {alarm name: state} of those changed."""
    now = now or datetime.now(UTC)
    changed: dict[str, str] = {}
    for page in cw.get_paginator("describe_alarms").paginate(AlarmNamePrefix=prefix,
                                                             AlarmTypes=["MetricAlarm"]):
        for alarm in page.get("MetricAlarms", []):
            state, reason = _evaluate(cw, alarm, now)
            if state != alarm.get("StateValue"):
                cw.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=state,
                                   StateReason=reason)
                changed[alarm["AlarmName"]] = state
    return changed


def _evaluate(cw: Any, alarm: dict[str, Any], now: datetime) -> tuple[str, str]:
    period = int(alarm.get("Period", 300))
    window = period * int(alarm.get("EvaluationPeriods", 1))
    statistic = alarm.get("Statistic", "Sum")
    points = cw.get_metric_statistics(
        Namespace=alarm["Namespace"], MetricName=alarm["MetricName"],
        Dimensions=alarm.get("Dimensions", []), StartTime=now - timedelta(seconds=window),
        EndTime=now + timedelta(seconds=1), Period=period, Statistics=[statistic],
    ).get("Datapoints", [])
    threshold = float(alarm["Threshold"])
    if not points:
        missing = alarm.get("TreatMissingData", "missing")
        if missing == "breaching":
            return "ALARM", "no datapoints, treated as breaching"
        if missing in ("notBreaching", "ignore"):
            return "OK", "no datapoints, treated as not breaching"
        return "INSUFFICIENT_DATA", "no datapoints"
    value = _aggregate(statistic, points)
    compare = _COMPARE.get(alarm.get("ComparisonOperator", "GreaterThanThreshold"),
                           _COMPARE["GreaterThanThreshold"])
    breaching = compare(value, threshold)
    verb = "crossed" if breaching else "not crossed"
    reason = (f"Threshold {verb}: the {statistic} over the last {window} s was {value:g} "
              f"({alarm.get('ComparisonOperator')} {threshold:g})")
    return ("ALARM" if breaching else "OK"), reason


class Monitor:
    """The supervisor's thread: queue depths and alarms every EVALUATE_EVERY_S."""

    def __init__(self, endpoint: str, region: str, queue_urls: dict[str, str],
                 alarm_prefix: str) -> None:
        self._endpoint = endpoint
        self._region = region
        self._queue_urls = queue_urls
        self._prefix = alarm_prefix
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="monitor")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(region_name=self._region)
        config = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1})
        sqs = session.client("sqs", endpoint_url=self._endpoint, config=config)
        cw = session.client("cloudwatch", endpoint_url=self._endpoint, config=config)
        while not self._stop.wait(EVALUATE_EVERY_S):
            try:
                publish_queue_depths(sqs, cw, self._queue_urls)
                for name, state in evaluate_alarms(cw, self._prefix).items():
                    log.info("alarm %s is now %s", name, state)
            except Exception as exc:  # the emulator restarting: next round
                log.debug("monitoring round failed: %s", exc)
            time.sleep(0)
