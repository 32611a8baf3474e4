"""Reconcile's classification, one kind at a time: a snapshot of what S3 and the three tables
hold goes in, the inconsistencies come out. Plain data, no services; the content hash and the
models' dimensions are the embedder's own (its `embedding` module)."""

from __future__ import annotations

from typing import Any

import pytest

from collections_ops.services import reconcile_classify as c
from collections_ops.services import reconcile_redrive as rd

NOW = 1_000_000.0
OLD = NOW - 3600
MODEL = "local-hash-v1"
SEQ = "0" * 16 + "00000000000000A1"


def item(name: str = "cat", user: str = "u", **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "id": name, "bucket": "images", "original_key": f"{user}/{name}.jpg",
            "thumbnail_bucket": "thumbs", "thumbnail_key": f"{user}/{name}.jpg", "etag": '"e1"',
            "size_bytes": 10, "sequencer": SEQ, "correlation_id": None, "updated_at": OLD,
            **extra}


def analysis(name: str = "cat", user: str = "u", **extra: Any) -> dict[str, Any]:
    return {"user_id": user, "item_id": name, "id": 7, "source_sequencer": SEQ,
            "source_etag": '"e1"', "category": "animal", "summary": "a cat",
            "description": "", "tags": ["cat"], "colors": [], "text_content": None,
            "provider": "local", "model": "local", "correlation_id": None,
            "updated_at": OLD, **extra}


def embedding(name: str = "cat", user: str = "u", **extra: Any) -> dict[str, Any]:
    row = {"user_id": user, "item_id": name, "id": 3, "analysis_id": 7,
           "embedding_model": MODEL, "embedding_dimensions": 1024, "updated_at": OLD}
    row["content_hash"] = c.content_hash(analysis(name, user))
    return {**row, **extra}


def snap(*, originals: list[str] | None = None, thumbnails: list[str] | None = None,
         items: list[dict[str, Any]] | None = None,
         analyses: list[dict[str, Any]] | None = None,
         embeddings: list[dict[str, Any]] | None = None, modified: float = OLD) -> c.Snapshot:
    return c.Snapshot(
        originals=[c.S3Entry(k, 10, '"e1"', modified) for k in (originals or [])],
        thumbnails=[c.S3Entry(k, 5, '"t"', modified) for k in (thumbnails or [])],
        items=items or [], analyses=analyses or [], embeddings=embeddings or [], read_at=NOW)


def consistent(**changes: Any) -> c.Snapshot:
    parts: dict[str, Any] = {"originals": ["u/cat.jpg"], "thumbnails": ["u/cat.jpg"],
                             "items": [item()], "analyses": [analysis()],
                             "embeddings": [embedding()]}
    parts.update(changes)
    return snap(**parts)


def kinds(s: c.Snapshot, min_age_s: float = 0.0) -> list[tuple[str, str | None, str]]:
    return [(i.kind, i.item_id, i.key) for i in c.classify(
        s, embedding_model=MODEL, images_bucket="images", min_age_s=min_age_s)]


def test_a_complete_item_is_consistent():
    assert kinds(consistent()) == []


def test_an_object_without_a_row():
    assert kinds(consistent(originals=["u/cat.jpg", "u/dog.png"])) == [
        (c.OBJECT_WITHOUT_ITEM, None, "u/dog.png")]


def test_an_object_outside_a_user_folder_is_not_an_item_to_be():
    assert kinds(consistent(originals=["u/cat.jpg", "loose.jpg", "u/folder/"])) == []


def test_an_item_without_its_thumbnail_object_or_without_a_recorded_key():
    assert kinds(consistent(thumbnails=[])) == [(c.ITEM_WITHOUT_THUMBNAIL, "cat", "u/cat.jpg")]
    assert kinds(consistent(items=[item(thumbnail_key=None)], thumbnails=[])) == [
        (c.ITEM_WITHOUT_THUMBNAIL, "cat", "u/cat.jpg")]


def test_an_item_without_an_analysis_has_no_embedding_finding_as_well():
    assert kinds(consistent(analyses=[], embeddings=[])) == [
        (c.ITEM_WITHOUT_ANALYSIS, "cat", "u/cat.jpg")]


def test_an_analysis_without_an_embedding_of_the_environments_model():
    assert kinds(consistent(embeddings=[])) == [
        (c.ANALYSIS_WITHOUT_EMBEDDING, "cat", "u/cat.jpg")]
    other = embedding(embedding_model="voyage-3.5")
    assert kinds(consistent(embeddings=[other])) == [
        (c.ANALYSIS_WITHOUT_EMBEDDING, "cat", "u/cat.jpg")]


def test_an_embedding_of_an_earlier_text_of_the_analysis_is_stale():
    edited = analysis(summary="a cat, edited")
    assert kinds(consistent(analyses=[edited])) == [(c.STALE_EMBEDDING, "cat", "u/cat.jpg")]


def test_an_embedding_of_another_analysis_is_stale():
    assert kinds(consistent(embeddings=[embedding(analysis_id=99)])) == [
        (c.STALE_EMBEDDING, "cat", "u/cat.jpg")]


def test_an_embedding_of_the_wrong_dimension_for_its_model():
    found = c.classify(consistent(embeddings=[embedding(embedding_dimensions=3)]),
                       embedding_model=MODEL, images_bucket="images")
    assert [(i.kind, i.stage) for i in found] == [(c.WRONG_DIMENSION, "embedder")]
    assert "makes 1024 dimensions" in found[0].detail


def test_an_unknown_models_dimension_is_not_judged():
    row = embedding(embedding_model="someone-elses-model", embedding_dimensions=3)
    assert kinds(consistent(embeddings=[embedding(), row])) == []


def test_an_orphan_thumbnail():
    assert kinds(consistent(thumbnails=["u/cat.jpg", "v/ghost.jpg"])) == [
        (c.ORPHAN_THUMBNAIL, None, "v/ghost.jpg")]


def test_an_analysis_of_a_newer_version_than_the_item():
    newer = analysis(source_sequencer="F" * 32)
    found = c.classify(consistent(analyses=[newer]), embedding_model=MODEL,
                       images_bucket="images")
    assert [(i.kind, i.stage) for i in found] == [(c.ANALYSIS_NEWER_THAN_ITEM, "processor")]


@pytest.mark.parametrize("changed", [{"source_sequencer": "0" * 32},
                                     {"source_etag": '"e0"'}])
def test_an_analysis_of_an_older_version_is_stale(changed):
    assert kinds(consistent(analyses=[analysis(**changed)])) == [
        (c.STALE_ANALYSIS, "cat", "u/cat.jpg")]


def test_an_item_whose_original_is_gone_is_reported_and_nothing_else():
    assert kinds(consistent(originals=[], thumbnails=[], analyses=[], embeddings=[])) == [
        (c.ITEM_WITHOUT_OBJECT, "cat", "u/cat.jpg")]
    assert c.STAGE_OF[c.ITEM_WITHOUT_OBJECT] is None


def test_recent_work_is_left_alone_with_min_age():
    recent = snap(originals=["u/new.jpg", "u/half.jpg"], thumbnails=["u/orphan-now.jpg"], modified=NOW - 5,
                  items=[item("half", updated_at=NOW - 5)])
    assert kinds(recent, min_age_s=60) == []
    assert {k for k, _, _ in kinds(recent)} == {c.OBJECT_WITHOUT_ITEM, c.ORPHAN_THUMBNAIL,
                                                c.ITEM_WITHOUT_THUMBNAIL,
                                                c.ITEM_WITHOUT_ANALYSIS}


def test_the_plan_redrives_each_item_once_from_its_earliest_stage():
    found = c.classify(consistent(thumbnails=[], embeddings=[]), embedding_model=MODEL,
                       images_bucket="images")
    assert {i.kind for i in found} == {c.ITEM_WITHOUT_THUMBNAIL, c.ANALYSIS_WITHOUT_EMBEDDING}
    [one] = rd.plan(found)
    assert (one.stage, one.key, sorted(one.kinds)) == (
        "processor", "u/cat.jpg", sorted([c.ITEM_WITHOUT_THUMBNAIL,
                                          c.ANALYSIS_WITHOUT_EMBEDDING]))


def test_redrive_events_are_built_from_the_rows():
    s = consistent(analyses=[analysis(source_sequencer="F" * 32)])
    rows = rd.Rows.of(s)
    redrive = rd.Redrive("processor", "u", "cat", "u/cat.jpg", [c.ANALYSIS_NEWER_THAN_ITEM])
    event = rd.event_for(redrive, rows, images_bucket="images", account="1", region="us-east-1")
    obj = event["Records"][0]["s3"]["object"]
    assert (obj["key"], obj["sequencer"], obj["eTag"]) == ("u/cat.jpg", "F" * 32, "e1")
    redrive.stage = "analyzer"
    detail = rd.event_for(redrive, rows, images_bucket="images", account="1",
                         region="us-east-1")["detail"]
    assert detail == {"item_id": "cat", "user_id": "u", "bucket": "images",
                      "original_key": "u/cat.jpg", "thumbnail_bucket": "thumbs",
                      "thumbnail_key": "u/cat.jpg", "sequencer": SEQ}
    redrive.stage = "embedder"
    detail = rd.event_for(redrive, rows, images_bucket="images", account="1",
                         region="us-east-1")["detail"]
    assert (detail["analysis_id"], detail["item_id"]) == ("7", "cat")


def test_an_s3_key_is_url_encoded_as_s3_encodes_it():
    event = rd.s3_event("images", "u/my photo+1.jpg", size=1, etag=None, sequencer=None,
                       region="us-east-1")
    assert event["Records"][0]["s3"]["object"]["key"] == "u/my+photo%2B1.jpg"


def test_timestamps_as_the_data_routes_give_them_are_judged_by_age() -> None:
    """Both data routes give `updated_at` as ISO 8601 text: recent work is still left alone."""
    import datetime as dt

    def iso(epoch: float) -> str:
        return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()

    recent = snap(originals=["u/cat.jpg"], thumbnails=["u/cat.jpg"],
                  items=[item(updated_at=iso(NOW - 5))])
    old = snap(originals=["u/cat.jpg"], thumbnails=["u/cat.jpg"], items=[item(updated_at=iso(OLD))])
    assert kinds(recent, min_age_s=60) == []
    assert kinds(old, min_age_s=60) == [(c.ITEM_WITHOUT_ANALYSIS, "cat", "u/cat.jpg")]


def test_a_wrong_dimension_vector_is_not_re_driven_where_it_cannot_be_removed() -> None:
    # GIVEN an item whose vector has the wrong length, and one without an analysis
    found_in = consistent(embeddings=[embedding(embedding_dimensions=3)],
                          originals=["u/cat.jpg", "u/dog.jpg"],
                          thumbnails=["u/cat.jpg", "u/dog.jpg"], items=[item(), item("dog")])
    found = c.classify(found_in, embedding_model=MODEL, images_bucket="images")
    assert {i.kind for i in found} == {c.WRONG_DIMENSION, c.ITEM_WITHOUT_ANALYSIS}
    sent: list[str] = []

    def deliver(fn: Any, event: dict[str, Any]) -> str:
        sent.append(fn.key)
        return f"function {fn.key}:live"

    # WHEN --fix runs through the operations function, which deletes nothing
    from collections_ops.services.dataroute import OperationsRoute

    def never(request: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError(f"nothing is invoked to remove a vector: {request}")

    fix = rd.actions(OperationsRoute(never, "collections-dev-OperationsLambda"), None, "thumbs")
    redrives = rd.redrive_all(found, found_in, deliver, fix, images_bucket="images",
                             account="123456789012", region="us-east-1")
    # THEN that item is refused, saying why, and the other one is re-driven
    status = {(x.item_id, x.stage): (x.status, x.detail) for x in redrives}
    assert status[("cat", "embedder")][0] == "refused"
    assert "needs a direct database connection" in status[("cat", "embedder")][1]
    assert status[("dog", "analyzer")] == ("sent", "")
    assert sent == ["analyzer"]
