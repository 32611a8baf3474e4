"""Reading the three functions' CloudWatch Logs as one ordered stream.

Each log group is paged to the end (no gaps across pages), every event is remembered by its
`eventId` (no line twice), and the merged lines come out in timestamp order. Lines can reach
CloudWatch after newer ones (each Lambda container delivers its own batch), so every poll
re-reads a lookback window behind the newest line seen; the `eventId`s drop the repeats.
Following polls with a short interval that backs off while nothing arrives, so a new line
shows within about a second of being written. Filtering by item uses a server-side term
filter and an exact client-side check on the structured line.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from collections_ops import aws, errors
from collections_ops.pipeline import FUNCTIONS, Environment, Function

LOOKBACK_MS = 15_000  # how late a line may arrive behind a newer one and still be shown
_SINCE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: float | None = None) -> int:
    """`10m`, `2h`, `30s`, `1d` -> epoch milliseconds that long ago."""
    match = _SINCE.match(text.strip())
    if not match:
        raise errors.UsageError(f"cannot read --since {text!r}", "use e.g. 30s, 10m, 2h or 1d")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    return int(((now if now is not None else time.time()) - seconds) * 1000)


def select_functions(which: str) -> list[Function]:
    if which == "all":
        return list(FUNCTIONS)
    from collections_ops.pipeline import function

    try:
        return [function(which)]
    except KeyError:
        raise errors.UsageError(f"unknown function {which!r}",
                              "one of processor, analyzer, embedder, all") from None


@dataclass(frozen=True)
class LogEvent:
    function_key: str
    timestamp: int
    message: str
    event_id: str
    stream: str

    def fields(self) -> dict[str, Any]:
        try:
            data = json.loads(self.message)
        except (json.JSONDecodeError, TypeError):
            return {}
        return data if isinstance(data, dict) else {}


def resolve_log_groups(lam: Any, env: Environment, functions: list[Function]) -> dict[str, str]:
    """Function key -> log group, from each function's logging configuration."""
    from collections_ops.services.inspect import log_group_of

    groups = {}
    for fn in functions:
        cfg = aws.or_none(lambda f=fn: lam.get_function_configuration(  # type: ignore[misc]
            FunctionName=f.function_name(env.name)))
        # Not deployed yet: Lambda's default group.
        groups[fn.key] = log_group_of(cfg) if cfg is not None else fn.log_group(env.name)
    return groups


class LogReader:
    def __init__(self, logs: Any, groups: dict[str, str], *, start_ms: int,
                 text: str | None = None, item_id: str | None = None,
                 page_size: int | None = None) -> None:
        self._logs = logs
        self._page_size = page_size
        self._groups = groups
        self._floor = start_ms
        self._start = dict.fromkeys(groups, start_ms)
        self._seen: dict[str, int] = {}  # eventId -> timestamp
        self._text = text
        self._item = item_id

    def _pattern(self) -> str | None:
        terms = [t for t in (self._item, self._text) if t]
        return " ".join(f'"{t}"' for t in terms) if terms else None

    def poll(self) -> list[LogEvent]:
        """Everything new since the last poll, all groups merged in time order."""
        out: list[LogEvent] = []
        for key, group in self._groups.items():
            out.extend(self._read(key, group))
        out.sort(key=lambda e: (e.timestamp, e.event_id))
        return out

    def _read(self, key: str, group: str) -> list[LogEvent]:
        kwargs: dict[str, Any] = {"logGroupName": group, "startTime": self._start[key]}
        if self._page_size:
            kwargs["limit"] = self._page_size
        pattern = self._pattern()
        if pattern:
            kwargs["filterPattern"] = pattern
        events: list[LogEvent] = []
        newest = self._start[key]
        while True:
            page = aws.or_none(lambda: self._logs.filter_log_events(**kwargs))
            if page is None:  # the group does not exist (yet)
                return events
            for raw in page.get("events", []):
                if raw["eventId"] in self._seen:
                    continue
                self._seen[raw["eventId"]] = int(raw["timestamp"])
                newest = max(newest, int(raw["timestamp"]))
                event = LogEvent(key, int(raw["timestamp"]), str(raw["message"]).rstrip("\n"),
                                 raw["eventId"], raw.get("logStreamName", ""))
                if self._matches(event):
                    events.append(event)
            token = page.get("nextToken")
            if not token:
                break
            kwargs["nextToken"] = token
        # Next time, re-read the lookback window: a line that arrives late with an older
        # timestamp is still found; `_seen` drops the repeats.
        self._start[key] = max(self._floor, newest - LOOKBACK_MS)
        self._forget_before(min(self._start.values()))
        return events

    def _forget_before(self, start_ms: int) -> None:
        if len(self._seen) > 20_000:
            self._seen = {k: ts for k, ts in self._seen.items() if ts >= start_ms}

    def _matches(self, event: LogEvent) -> bool:
        if self._item is not None and event.fields().get("item_id") != self._item:
            return False
        return not (self._text and self._text not in event.message)


def follow(reader: LogReader, *, stop: Callable[[], bool] = lambda: False,
           min_interval: float = 0.25, max_interval: float = 1.0,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[LogEvent]:
    """Yield lines as they arrive until `stop()`; back off while idle, up to `max_interval`."""
    interval = min_interval
    while not stop():
        batch = reader.poll()
        yield from batch
        interval = min_interval if batch else min(max_interval, interval * 1.5)
        sleep(interval)
