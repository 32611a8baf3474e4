"""A small load test against a real local cloud of its own: every upload completes, and the
report's figures agree with each other and with the database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from collections_ops.localcloud.state import read_state
from collections_ops.pipeline import environment
from collections_ops.services import loadtest

COUNT, CONCURRENCY = 10, 4


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collections_ops", *args], env=env,
                          capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    state_root = tmp_path_factory.mktemp("load-state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"COLLECTIONS_STATE_DIR": str(state_root), "NO_COLOR": "1",
                "COLLECTIONS_ENV": "local"})
    started = cli(env, "deploy", "local")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        state = read_state(state_root / "local")
        assert state is not None and state.ready
        yield state
    finally:
        destroyed = cli(env, "destroy", "local")
        assert destroyed.returncode == 0, destroyed.stderr
        assert not (state_root / "local").exists()


def test_a_small_load_test_completes_with_consistent_figures(local_cloud):
    import psycopg

    from collections_ops.localcloud.aws.access import client_factory

    client = client_factory(local_cloud)

    seen: list[int] = []
    report = loadtest.run_load_test(
        client, environment("local"), count=COUNT, concurrency=CONCURRENCY, timeout=120,
        user_id="load-e2e", poll_interval_s=0.5,
        on_progress=lambda trackers: seen.append(sum(t.progress.complete for t in trackers)))

    assert report.ok, report.as_dict(items=False)
    assert (report.count, report.completed, report.failed, report.stalled) == (COUNT, COUNT, 0, 0)
    assert report.failures == {} and report.stalls == {}
    assert seen and seen[-1] == COUNT
    assert len({i.key for i in report.items}) == COUNT  # distinct uploads
    assert len({i.size for i in report.items}) > 1  # distinct images
    assert 0 < report.upload_s <= report.wall_s
    assert report.span_s is not None and 0 < report.span_s <= report.wall_s + 1.0
    # The report rounds throughput to 0.01 per second.
    assert report.throughput_per_s == pytest.approx(COUNT / report.span_s, abs=0.005)

    lat = report.latency_s
    for name in ("thumbnail", "analysis", "embedding", "end_to_end"):
        s = lat[name]
        assert s is not None and s.count == COUNT, name
        assert 0 <= s.p50 <= s.p95 <= s.max, (name, s)
    # Each upload's end-to-end time is the sum of its three stage latencies.
    for item in report.items:
        per = item.latency_s()
        assert per["end_to_end"] == pytest.approx(
            per["thumbnail"] + per["analysis"] + per["embedding"], abs=0.002)
        assert per["end_to_end"] <= report.span_s + 0.001
    assert lat["end_to_end"].max <= report.span_s + 0.001
    for name in ("thumbnail", "analysis", "embedding"):
        handler = report.handler_s[name]
        # A stage's latency starts at the previous stage's "published" log line, which that
        # function writes just after put_events returns -- by then the next function may
        # already have logged its first line. So a handler time can exceed its stage's
        # latency by that gap (milliseconds), never by more.
        assert handler is not None and handler.max <= lat[name].max + 0.1

    # Every upload really reached the database.
    with psycopg.connect(local_cloud.database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM embeddings WHERE user_id = 'load-e2e'"
                            ).fetchone()
    assert rows == (COUNT,)
    assert report.as_dict(items=False)["ok"] is True


def test_generated_images_are_deterministic_and_distinct():
    assert loadtest.photo_jpeg(3) == loadtest.photo_jpeg(3)
    assert loadtest.photo_jpeg(3) != loadtest.photo_jpeg(4)
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(loadtest.photo_jpeg(0))) as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (1024, 768), "RGB")


def test_the_report_of_a_failed_and_a_stalled_upload():
    ok = loadtest.ItemResult("u/a.jpg", "a", "c1", 10, "done", None, "", 1000,
                             {"thumbnail": 1200, "analysis": 1500, "embedding": 1600},
                             {"thumbnail": 100, "analysis": 200, "embedding": 50})
    failed = loadtest.ItemResult("u/b.jpg", "b", "c2", 10, "failed", "thumbnail", "corrupt",
                                 1100, dict.fromkeys(("thumbnail", "analysis", "embedding")),
                                 dict.fromkeys(("thumbnail", "analysis", "embedding")))
    stalled = loadtest.ItemResult("u/c.jpg", "c", "c3", 10, "stalled", "analysis", "", 1100,
                                  {"thumbnail": 1300, "analysis": None, "embedding": None},
                                  {"thumbnail": 100, "analysis": None, "embedding": None})
    report = loadtest.summarize([ok, failed, stalled], env="local", concurrency=2,
                                upload_s=0.1, wall_s=5.0)
    assert (report.completed, report.failed, report.stalled, report.ok) == (1, 1, 1, False)
    assert report.failures == {"thumbnail": 1} and report.stalls == {"analysis": 1}
    assert report.span_s == 0.6 and report.throughput_per_s == pytest.approx(1 / 0.6, rel=0.01)
    assert report.latency_s["end_to_end"].p50 == 0.6
    assert report.latency_s["analysis"].p50 == 0.3
    assert report.handler_s["embedding"].max == 0.05
