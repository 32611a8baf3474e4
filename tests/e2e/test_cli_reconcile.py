"""`collections reconcile` and `replay` as an operator runs them, against a real local cloud:
items broken at each stage after they completed, then `reconcile --fix` re-drives them through
the dispatcher and a second `reconcile` finds nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from collections_ops.localcloud.aws import iam
from tests import images
from tests.e2e.cli import owner_url, run

USER = "rec"


@pytest.fixture(scope="module")
def cli_env(shared_local_cloud: dict[str, Any]) -> dict[str, str]:
    """The session's shared local cloud: every upload, break, reconcile and replay here is of
    the users `rec` and `rep`, named on each command."""
    return dict(shared_local_cloud["env"])



def _status(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(run(env, "status", "--json").stdout)  # type: ignore[no-any-return]


def test_reconcile_fix_finishes_broken_items_and_a_second_run_finds_none(cli_env, tmp_path):
    import psycopg

    # GIVEN six uploads that completed, then broken at each stage
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(6):
        (folder / f"p{n}.jpg").write_bytes(images.photo(seed=100 + n))
    upload = run(cli_env, "test-upload", str(folder), "-u", USER, "--follow", "--timeout", "120")
    assert upload.returncode == 0, upload.stdout + upload.stderr
    status = _status(cli_env)
    s3 = iam.admin_session(status["state_dir"], "us-east-1").client(
        "s3", endpoint_url=status["endpoint_url"])
    s3.delete_object(Bucket=status["buckets"]["thumbnails"], Key=f"{USER}/p0.jpg")
    with psycopg.connect(owner_url(status), autocommit=True) as conn:
        conn.execute("DELETE FROM analyses WHERE user_id = %s AND item_id IN ('p1', 'p2')",
                     (USER,))
        conn.execute("DELETE FROM embeddings WHERE user_id = %s AND item_id IN ('p3', 'p4')",
                     (USER,))
        conn.execute("DELETE FROM items WHERE user_id = %s AND id = 'p5'", (USER,))

    # WHEN reconcile looks THEN it lists each by kind and exits 8
    found = run(cli_env, "reconcile", "local", "-u", USER, "--min-age", "0", "-o", "json")
    assert found.returncode == 8, found.stderr
    counts = {k: v for k, v in json.loads(found.stdout)["counts"].items() if v}
    # (p5's thumbnail is an orphan now that its row is gone)
    assert counts == {"object-without-item": 1, "item-without-thumbnail": 1,
                      "item-without-analysis": 2, "analysis-without-embedding": 2,
                      "orphan-thumbnail": 1}

    table = run(cli_env, "reconcile", "local", "-u", USER, "--min-age", "0")
    assert table.returncode == 8 and "collections reconcile local --fix" in table.stderr
    for kind in counts:
        assert kind in table.stdout

    # WHEN reconcile --fix runs THEN each is re-driven once, from its stage, and resolved
    fixed = run(cli_env, "reconcile", "local", "-u", USER, "--min-age", "0", "--fix",
                "--timeout", "120", "-o", "json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    report = json.loads(fixed.stdout)
    assert sorted((r["stage"], r["key"], r["status"]) for r in report["redrives"]) == [
        ("analyzer", f"{USER}/p1.jpg", "resolved"), ("analyzer", f"{USER}/p2.jpg", "resolved"),
        ("embedder", f"{USER}/p3.jpg", "resolved"), ("embedder", f"{USER}/p4.jpg", "resolved"),
        ("processor", f"{USER}/p0.jpg", "resolved"),
        ("processor", f"{USER}/p5.jpg", "resolved")]
    assert report["remaining"] == []
    assert report["removed_thumbnails"] == []  # p5's row, stored again, claims it

    # THEN every item verifies, nothing is duplicated, and a second reconcile finds nothing
    for n in range(6):
        verify = run(cli_env, "verify", f"p{n}", "-u", USER, "-o", "json")
        assert verify.returncode == 0, verify.stdout
    with psycopg.connect(owner_url(status)) as conn:
        for table in ("items", "analyses", "embeddings"):
            count = conn.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s",
                                 (USER,)).fetchone()
            assert count == (6,), table
    again = run(cli_env, "reconcile", "local", "-u", USER, "--min-age", "0")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "no inconsistencies" in again.stdout


def test_replay_reruns_one_item_and_refuses_an_unknown_one(cli_env, tmp_path):
    photo = tmp_path / "solo.jpg"
    photo.write_bytes(images.photo(seed=7))
    upload = run(cli_env, "test-upload", str(photo), "-u", "rep", "--follow", "--timeout", "60")
    assert upload.returncode == 0, upload.stdout + upload.stderr
    unknown = run(cli_env, "replay", "no-such-item", "--from", "analyzer", "-o", "json")
    assert unknown.returncode == 3, unknown.stderr
    assert json.loads(unknown.stdout)["exit_code"] == 3
    sent = run(cli_env, "replay", "solo", "-u", "rep", "--from", "embedder", "-o", "json")
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["target"] == "queue collections-local-EmbedderLambda-events"
