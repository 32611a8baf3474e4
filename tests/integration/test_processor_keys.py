"""The image processor refuses a key with an empty, `.` or `..` segment (no user, `u//x.jpg`)
as bad input: S3 keeps `u/../x.jpg` as it is, and read as a path it leaves the user's folder.
One terminal refusal (dead-lettered, not retried), nothing written, nothing passed on. moto and a real
PostgreSQL, with the events moto's S3 notifications deliver."""

from __future__ import annotations

from urllib.parse import unquote_plus

import pytest

from tests import images


@pytest.mark.parametrize("key", ["u1/../x.jpg", "../x.jpg", "u1/./x.jpg", "./x.jpg",
                                 "u1/a/../../x.jpg", "u1/..", "/x.jpg", "u1//x.jpg",
                                 "u1/a//x.jpg"])
def test_a_key_with_an_empty_or_dot_segment_is_refused_terminally(pipeline, db, key):
    # GIVEN an upload S3 accepted under such a key
    pipeline.upload(key, images.photo(seed=4))
    [event] = pipeline.s3_events()
    # WHEN the processor gets its notification
    result = pipeline.invoke("processor", event)
    # THEN it refuses it once, as bad input: handled, not raised (no retry)
    assert result.ok, "a terminal refusal is handled, not raised"
    assert result.result["status"] == "failed"
    assert "'.' or '..' segment" in result.result["reason"]
    # AND nothing is written or passed on: no row, no thumbnail, no event for the analyzer
    assert db.execute("SELECT count(*) FROM items").fetchone() == (0,)
    assert pipeline.client("s3").list_objects_v2(
        Bucket=pipeline.thumbnails_bucket).get("KeyCount") == 0
    assert pipeline.receive("analyzer", wait=0) == []
    # AND the refusal is parked once in the dead-letter queue, naming the key
    [dead] = pipeline.receive("processor", dlq=True, wait=0)
    assert dead["requestContext"]["condition"] == "TerminalError"
    assert unquote_plus(dead["requestPayload"]["Records"][0]["s3"]["object"]["key"]) == key


def test_dots_inside_a_name_are_not_segments(pipeline, db):
    results = pipeline.run_to_end("u1/..hidden..x.jpg", images.photo(seed=5))
    assert all(r.ok for r in results.values())
    assert results["processor"].result["results"][0]["status"] == "processed"
