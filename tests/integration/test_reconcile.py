"""Reconcile and replay against moto and a real PostgreSQL with pgvector: work stopped at every
stage (handlers not run, rows and objects removed or altered), then `reconcile --fix` re-drives
each item once through the trigger queues the local cloud's dispatcher reads, and the handlers
drain them as the dispatcher does."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from collections_ops import errors
from collections_ops.pipeline import LOCAL_ACCOUNT, function
from collections_ops.services import reconcile as reconciling
from collections_ops.services import reconcile_classify as classifying
from collections_ops.services import reconcile_redrive as redriving
from collections_ops.services import verify as verifying
from collections_ops.services.dataroute import DirectRoute
from tests import images


def drain(pipeline: Any, invoked: Counter[tuple[str, str]]) -> None:
    """Deliver what waits in the trigger queues, stage by stage, as the dispatcher does;
    count invocations per (stage, key or item)."""
    for key in ("processor", "analyzer", "embedder"):
        for event in pipeline.receive(key, wait=0):
            if event.get("Event") == "s3:TestEvent":
                continue
            result = pipeline.invoke(key, event)
            assert result.ok, (key, result.error_message)
            if "Records" in event:
                from urllib.parse import unquote_plus
                ident = unquote_plus(event["Records"][0]["s3"]["object"]["key"])
            else:
                ident = f"{event['detail']['user_id']}/{event['detail']['item_id']}"
            invoked[(key, ident)] += 1


def run_partly(pipeline: Any, key: str, body: bytes, *, stages: int) -> None:
    """Upload and run only the first `stages` handlers; the rest of the events are lost."""
    pipeline.upload(key, body)
    for stage in ("processor", "analyzer", "embedder"):
        events = [e for e in pipeline.receive(stage) if e.get("Event") != "s3:TestEvent"]
        if stages <= 0:
            continue  # the event is lost: the function never ran
        for event in events:
            assert pipeline.invoke(stage, event).ok
        stages -= 1


def scan(pipeline: Any, db: Any) -> list[classifying.Inconsistency]:
    snap = reconciling.snapshot(pipeline.client, DirectRoute(db), images_bucket=pipeline.images_bucket,
                                thumbnails_bucket=pipeline.thumbnails_bucket)
    return classifying.classify(snap, embedding_model=pipeline.env.embedding_model,
                                images_bucket=pipeline.images_bucket)


def test_reconcile_fix_finishes_work_stopped_at_every_stage(pipeline, db):
    # GIVEN two complete items and, for each way work can stop, two items stopped there
    complete = ["u1/done-a.jpg", "u1/done-b.jpg"]
    for n, key in enumerate(complete):
        run_partly(pipeline, key, images.photo(seed=n), stages=3)
    no_item = ["u2/lost-a.jpg", "u2/lost-b.jpg"]  # the processor never ran
    no_analysis = ["u3/half-a.jpg", "u3/half-b.jpg"]  # stopped after the processor
    no_embedding = ["u4/most-a.jpg", "u4/most-b.jpg"]  # stopped after the analyzer
    for stages, keys in ((0, no_item), (1, no_analysis), (2, no_embedding)):
        for n, key in enumerate(keys):
            run_partly(pipeline, key, images.photo(seed=10 * stages + n + 5), stages=stages)
    damaged = ["u5/thumb.jpg", "u5/stale.jpg", "u5/dims.jpg", "u5/newer.jpg"]
    for n, key in enumerate(damaged):
        run_partly(pipeline, key, images.photo(seed=40 + n), stages=3)
    s3 = pipeline.client("s3")
    s3.delete_object(Bucket=pipeline.thumbnails_bucket, Key="u5/thumb.jpg")
    db.execute("UPDATE analyses SET summary = summary || ' (edited)' WHERE item_id = 'stale'")
    db.execute("UPDATE embeddings SET embedding = '[1,2,3]', embedding_dimensions = 3"
               " WHERE item_id = 'dims'")
    db.execute("UPDATE analyses SET source_sequencer = lpad('F', 32, 'F')"
               " WHERE item_id = 'newer'")
    s3.put_object(Bucket=pipeline.thumbnails_bucket, Key="u6/ghost.jpg", Body=b"x")

    # WHEN reconcile looks
    found = scan(pipeline, db)
    # THEN every stopped item is found, by kind, and nothing about the complete ones
    kinds = Counter(i.kind for i in found)
    assert kinds == {classifying.OBJECT_WITHOUT_ITEM: 2, classifying.ITEM_WITHOUT_ANALYSIS: 2,
                     classifying.ANALYSIS_WITHOUT_EMBEDDING: 2,
                     classifying.ITEM_WITHOUT_THUMBNAIL: 1, classifying.STALE_EMBEDDING: 1,
                     classifying.WRONG_DIMENSION: 1, classifying.ANALYSIS_NEWER_THAN_ITEM: 1,
                     classifying.ORPHAN_THUMBNAIL: 1}, found
    assert not {i.user_id for i in found} & {"u1"}

    # WHEN reconcile --fix re-drives them through the trigger queues, which the handlers drain
    sent: Counter[tuple[str, str]] = Counter()
    real = redriving.deliverer(pipeline.client, pipeline.env)

    def deliver(fn: Any, event: dict[str, Any]) -> str:
        sent[(fn.key, _ident(event))] += 1
        return real(fn, event)

    invoked: Counter[tuple[str, str]] = Counter()
    report = reconciling.reconcile(pipeline.client, DirectRoute(db), pipeline.env, account=LOCAL_ACCOUNT,
                                   region="us-east-1", fix=True, timeout_s=60,
                                   deliver=deliver, sleep=lambda _s: drain(pipeline, invoked))

    # THEN each item was re-driven exactly once, from the stage that repairs it
    assert all(n == 1 for n in sent.values()), sent
    assert {(r.stage, r.key) for r in report.redrives} == {
        *(("processor", k) for k in [*no_item, "u5/thumb.jpg", "u5/newer.jpg"]),
        *(("analyzer", k) for k in no_analysis),
        *(("embedder", k) for k in [*no_embedding, "u5/stale.jpg", "u5/dims.jpg"])}
    assert all(r.status == "resolved" for r in report.redrives), report.redrives
    assert report.removed_thumbnails == ["u6/ghost.jpg"]
    assert report.remaining == []
    # a re-drive from the embedder never reached the analyzer (no vision model call)
    assert not [k for k in invoked if k[0] == "analyzer" and k[1].startswith("u4/")]

    # THEN every item verifies, nothing is duplicated, and a second reconcile finds nothing
    all_keys = [*complete, *no_item, *no_analysis, *no_embedding, *damaged]
    for key in all_keys:
        user, name = key.split("/")
        assert verifying.verify(db, s3, name.rpartition(".")[0], user_id=user).ok, key
    rows = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("items", "analyses", "embeddings")}
    assert rows == dict.fromkeys(("items", "analyses", "embeddings"), len(all_keys))
    thumbs = s3.list_objects_v2(Bucket=pipeline.thumbnails_bucket).get("KeyCount")
    assert thumbs == len(all_keys)
    assert scan(pipeline, db) == []


def _ident(event: dict[str, Any]) -> str:
    if "Records" in event:
        return str(event["Records"][0]["s3"]["object"]["key"])
    return f"{event['detail']['user_id']}/{event['detail']['item_id']}"


def test_a_fix_that_cannot_be_delivered_is_reported_refused(pipeline, db):
    # GIVEN an item whose analyzer never ran, and a trigger that refuses every re-drive
    run_partly(pipeline, "u/half.jpg", images.photo(seed=3), stages=1)

    def refuse(fn: Any, event: dict[str, Any]) -> str:
        raise redriving.RedriveRefused(f"the {fn.key} is not there")

    # WHEN reconcile --fix runs THEN the re-drive is refused by name and the item remains
    report = reconciling.reconcile(pipeline.client, DirectRoute(db), pipeline.env, account=LOCAL_ACCOUNT,
                                   region="us-east-1", fix=True, timeout_s=0, deliver=refuse,
                                   sleep=lambda _s: None)
    assert [(r.stage, r.status, r.detail) for r in report.redrives] == [
        ("analyzer", "refused", "the analyzer is not there")]
    assert [i.kind for i in report.remaining or []] == [classifying.ITEM_WITHOUT_ANALYSIS]


def test_replay_from_each_stage_reaches_only_that_stage(pipeline, db):
    run_partly(pipeline, "u/cat.jpg", images.photo(seed=7), stages=3)
    for stage in ("processor", "analyzer", "embedder"):
        sent = reconciling.replay(pipeline.client, DirectRoute(db), pipeline.env, "cat", stage=stage,
                                  account=LOCAL_ACCOUNT, region="us-east-1")
        assert sent.target == f"queue {function(stage).queue_name('local')}"
        waiting = {k: pipeline.receive(k, wait=0) for k in ("processor", "analyzer",
                                                            "embedder")}
        assert [k for k, v in waiting.items() if v] == [stage]
        # the replayed event is accepted by the handler's claim checks
        assert pipeline.invoke(stage, waiting[stage][0]).ok
        for later in ("analyzer", "embedder"):
            pipeline.receive(later, wait=0)
    assert verifying.verify(db, pipeline.client("s3"), "cat", user_id="u").ok


def test_replay_of_an_unknown_item_is_not_found(pipeline, db):
    with pytest.raises(errors.NotFound):
        reconciling.replay(pipeline.client, DirectRoute(db), pipeline.env, "nosuch", stage="analyzer",
                           account=LOCAL_ACCOUNT, region="us-east-1")


def test_replay_from_the_embedder_needs_an_analysis(pipeline, db):
    run_partly(pipeline, "u/half.jpg", images.photo(seed=3), stages=1)
    with pytest.raises(errors.NotFound, match="no analysis"):
        reconciling.replay(pipeline.client, DirectRoute(db), pipeline.env, "half", stage="embedder",
                           account=LOCAL_ACCOUNT, region="us-east-1")


def test_read_rows_is_one_users_or_everyones(db):
    # GIVEN two users' items, one of them with a quote in its id
    with db.cursor() as cur:
        for user, item in (("ra", "x"), ("rb", "o'y")):
            cur.execute("INSERT INTO items (user_id, id, bucket, original_key) "
                        "VALUES (%s, %s, 'b', %s)", (user, item, f"{user}/{item}.jpg"))
    db.commit()
    # WHEN the rows are read for one user, and for all
    (mine, _, _) = reconciling.read_rows(DirectRoute(db), user_id="rb")
    (every, _, _) = reconciling.read_rows(DirectRoute(db))
    # THEN the filter is a parameter: one user's row, or both
    assert [(r["user_id"], r["id"]) for r in mine] == [("rb", "o'y")]
    assert {("ra", "x"), ("rb", "o'y")} <= {(r["user_id"], r["id"]) for r in every}
