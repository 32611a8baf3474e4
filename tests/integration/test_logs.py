"""Reading the functions' logs as one stream: every line once, none lost across pages, new
lines found on the next poll, filters exact."""

from __future__ import annotations

import json
import time

import pytest

from collections_ops.services.logs import LogReader, follow, parse_since, select_functions


def write(logs, group: str, stream: str, messages: list[str], start_ms: int) -> None:
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
        {"timestamp": start_ms + i, "message": m} for i, m in enumerate(messages)])


@pytest.fixture
def groups(pipeline):
    logs = pipeline.client("logs")
    names = {}
    for fn in select_functions("all"):
        group = fn.log_group("local")
        logs.create_log_stream(logGroupName=group, logStreamName="s1")
        names[fn.key] = group
    return logs, names


def test_lines_are_merged_in_time_order_without_duplicates_across_pages(groups):
    logs, names = groups
    base = int(time.time() * 1000) - 10_000
    write(logs, names["processor"], "s1", [f"p{i}" for i in range(40)], base)
    write(logs, names["analyzer"], "s1", [f"a{i}" for i in range(40)], base + 20)
    reader = LogReader(logs, names, start_ms=base - 1, page_size=7)

    first = reader.poll()
    assert len(first) == 80
    assert len({e.event_id for e in first}) == 80
    assert [e.timestamp for e in first] == sorted(e.timestamp for e in first)

    write(logs, names["embedder"], "s1", ["e-late"], base + 5000)
    write(logs, names["processor"], "s1", ["p-late"], base + 5000)
    second = reader.poll()
    assert sorted(e.message for e in second) == ["e-late", "p-late"]
    assert reader.poll() == []


def test_item_filter_is_exact_on_the_structured_field(groups):
    logs, names = groups
    base = int(time.time() * 1000) - 1000
    write(logs, names["processor"], "s1", [
        json.dumps({"message": "Thumbnail created", "item_id": "cat"}),
        json.dumps({"message": "Thumbnail created", "item_id": "cat-2"}),
        json.dumps({"message": "mentions cat in passing", "item_id": "dog"}),
    ], base)
    reader = LogReader(logs, names, start_ms=base - 1, item_id="cat")
    assert [e.fields()["item_id"] for e in reader.poll()] == ["cat"]


def test_follow_picks_up_a_line_written_after_it_started(groups):
    logs, names = groups
    reader = LogReader(logs, names, start_ms=int(time.time() * 1000))
    written_at: list[float] = []

    def sleep(seconds: float) -> None:
        if not written_at:
            write(logs, names["analyzer"], "s1", ["late line"], int(time.time() * 1000))
            written_at.append(time.monotonic())
        time.sleep(seconds)

    stream = follow(reader, sleep=sleep)
    line = next(stream)
    assert line.message == "late line"
    assert time.monotonic() - written_at[0] < 2.0


def test_since_reads_durations():
    assert parse_since("10m", now=1000.0) == (1000 - 600) * 1000
    assert parse_since("2h", now=10_000.0) == (10_000 - 7200) * 1000
    with pytest.raises(Exception, match="cannot read --since"):
        parse_since("yesterday")


def test_a_line_that_arrives_late_with_an_older_timestamp_is_not_lost(groups):
    """Two containers deliver their batches independently: the older batch may land second."""
    logs, names = groups
    now = int(time.time() * 1000)
    logs.create_log_stream(logGroupName=names["processor"], logStreamName="s2")
    reader = LogReader(logs, names, start_ms=now - 60_000)
    write(logs, names["processor"], "s1", ["newer, delivered first"], now - 1000)
    assert [e.message for e in reader.poll()] == ["newer, delivered first"]
    write(logs, names["processor"], "s2", ["older, delivered late"], now - 3000)
    assert [e.message for e in reader.poll()] == ["older, delivered late"]
    assert reader.poll() == []
