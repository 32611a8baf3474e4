"""What is inconsistent in what reconcile read: a plain function of two listings and three tables.

`collections reconcile` reads the five places an item lives (`reconcile.py`) and re-drives what
is broken (`reconcile_redrive.py`); between the two, `classify` names every inconsistency by
kind, with the stage that repairs it, and reads nothing itself, so the rules can be tested on
hand-built snapshots. The embedder's own rules (the text it embeds, its hash, each model's
dimensions) are collections_core.embedding_rules, which the embedder imports too: never
restated here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# The kinds, each with the stage that repairs it (None: not repaired by a re-drive).
OBJECT_WITHOUT_ITEM = "object-without-item"
ITEM_WITHOUT_OBJECT = "item-without-object"
ITEM_WITHOUT_THUMBNAIL = "item-without-thumbnail"
ANALYSIS_NEWER_THAN_ITEM = "analysis-newer-than-item"
ITEM_WITHOUT_ANALYSIS = "item-without-analysis"
STALE_ANALYSIS = "stale-analysis"
ANALYSIS_WITHOUT_EMBEDDING = "analysis-without-embedding"
STALE_EMBEDDING = "stale-embedding"
WRONG_DIMENSION = "wrong-dimension"
ORPHAN_THUMBNAIL = "orphan-thumbnail"

STAGE_OF: dict[str, str | None] = {
    OBJECT_WITHOUT_ITEM: "processor",
    ITEM_WITHOUT_OBJECT: None,  # the original is gone: nothing can be re-driven
    ITEM_WITHOUT_THUMBNAIL: "processor",
    ANALYSIS_NEWER_THAN_ITEM: "processor",  # the row is behind: re-read the object
    ITEM_WITHOUT_ANALYSIS: "analyzer",
    STALE_ANALYSIS: "analyzer",
    ANALYSIS_WITHOUT_EMBEDDING: "embedder",
    STALE_EMBEDDING: "embedder",
    WRONG_DIMENSION: "embedder",  # after the unusable vector is removed
    ORPHAN_THUMBNAIL: None,  # removed, once no re-driven item claims it
}
KINDS = tuple(STAGE_OF)
STAGES = ("processor", "analyzer", "embedder")


@dataclass(frozen=True)
class S3Entry:
    key: str
    size: int
    etag: str
    modified: float  # epoch seconds


@dataclass
class Snapshot:
    """What was read: the two buckets' listings and the three tables' rows (as dicts)."""

    originals: list[S3Entry] = field(default_factory=list)
    thumbnails: list[S3Entry] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    analyses: list[dict[str, Any]] = field(default_factory=list)
    embeddings: list[dict[str, Any]] = field(default_factory=list)
    read_at: float = 0.0


@dataclass(frozen=True)
class Inconsistency:
    kind: str
    user_id: str
    item_id: str | None  # None for an object without a row, an orphan thumbnail
    key: str  # the original's key (the thumbnail's, for an orphan thumbnail)
    detail: str

    @property
    def stage(self) -> str | None:
        return STAGE_OF[self.kind]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "stage": self.stage}


def content_hash(analysis: dict[str, Any]) -> str | None:
    """What the embedder records as `content_hash` for this analysis (None: it cannot embed
    it at all, e.g. over-long text — a terminal failure, not an inconsistency to re-drive).
    The embedder's own rules (collections_core.embedding_rules), so reconcile judges by
    exactly the same ones."""
    from collections_core import embedding_rules

    try:
        text = embedding_rules.document_text(analysis)
    except Exception:
        return None
    return embedding_rules.content_hash(text)


def model_dimensions(model: str) -> int | None:
    from collections_core import embedding_rules

    value = embedding_rules.MODEL_DIMENSIONS.get(model)
    return int(value) if value is not None else None


def _epoch(value: Any) -> float:
    if isinstance(value, str):  # as both data routes give it: ISO 8601 with its offset
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value or 0)


def classify(snap: Snapshot, *, embedding_model: str, min_age_s: float = 0.0,
             images_bucket: str | None = None,
             hash_of: Callable[[dict[str, Any]], str | None] = content_hash,
             dimensions_of: Callable[[str], int | None] = model_dimensions
             ) -> list[Inconsistency]:
    """Every inconsistency in `snap`, in a stable order (user, item or key, kind).

    Anything written less than `min_age_s` before the snapshot was taken is left alone: it may
    be in flight between stages right now.
    """
    cutoff = snap.read_at - min_age_s if min_age_s > 0 else float("inf")
    by_key = {(r["user_id"], r["original_key"]) for r in snap.items}
    analyses = {(r["user_id"], r["item_id"]): r for r in snap.analyses}
    embeddings: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in snap.embeddings:
        embeddings.setdefault((row["user_id"], row["item_id"]), []).append(row)
    originals = {o.key for o in snap.originals}
    thumbnails = {t.key for t in snap.thumbnails}
    claimed = {r["thumbnail_key"] for r in snap.items if r.get("thumbnail_key")}

    out = _object_findings(snap.originals, by_key, cutoff, images_bucket)
    for row in snap.items:
        if _epoch(row["updated_at"]) > cutoff:
            continue
        if images_bucket is not None and row["bucket"] == images_bucket \
                and row["original_key"] not in originals:
            out.append(_found(ITEM_WITHOUT_OBJECT, row, f"the original s3://{row['bucket']}/"
                              f"{row['original_key']} no longer exists"))
            continue  # every stage reads the original: nothing else can be repaired
        if not row.get("thumbnail_key") or row["thumbnail_key"] not in thumbnails:
            out.append(_found(ITEM_WITHOUT_THUMBNAIL, row, "no thumbnail at "
                              f"{row.get('thumbnail_key') or '(none recorded)'}"))
        ident = (row["user_id"], row["id"])
        analysis = analyses.get(ident)
        if analysis is not None and _epoch(analysis["updated_at"]) > cutoff:
            continue
        version = _analysis_findings(row, analysis)
        out.extend(version)
        if analysis is not None and not version:
            out.extend(_embedding_findings(row["user_id"], row["id"], row["original_key"],
                                           analysis, embeddings.get(ident, []),
                                           embedding_model, hash_of, dimensions_of))
    for thumb in snap.thumbnails:
        if thumb.key not in claimed and thumb.modified <= cutoff:
            out.append(Inconsistency(ORPHAN_THUMBNAIL, thumb.key.partition("/")[0], None,
                                     thumb.key, "no item records this thumbnail"))
    return sorted(out, key=lambda i: (i.user_id, i.item_id or i.key, KINDS.index(i.kind)))


def _object_findings(originals: list[S3Entry], by_key: set[tuple[str, str]], cutoff: float,
                     images_bucket: str | None) -> list[Inconsistency]:
    out = []
    for obj in originals:
        user, sep, name = obj.key.partition("/")
        if not sep or not user or not name or name.endswith("/") or obj.modified > cutoff:
            continue  # not `<user>/<name>`: the processor refuses it, it never gets a row
        if (user, obj.key) not in by_key:
            out.append(Inconsistency(OBJECT_WITHOUT_ITEM, user, None, obj.key,
                                     f"s3://{images_bucket or '<images>'}/{obj.key} has no "
                                     "row in items"))
    return out


def _found(kind: str, item: dict[str, Any], detail: str) -> Inconsistency:
    return Inconsistency(kind, item["user_id"], item["id"], item["original_key"], detail)


def _analysis_findings(item: dict[str, Any],
                       analysis: dict[str, Any] | None) -> list[Inconsistency]:
    """Whether the item has an analysis, of the version its row records."""
    if analysis is None:
        return [_found(ITEM_WITHOUT_ANALYSIS, item, "no row in analyses")]
    item_seq, analysis_seq = item["sequencer"] or "", analysis["source_sequencer"] or ""
    if analysis_seq > item_seq:
        return [_found(ANALYSIS_NEWER_THAN_ITEM, item, f"the analysis is of version "
                       f"{analysis_seq}, the item records {item_seq or '-'}")]
    if analysis_seq < item_seq or (item.get("etag") and analysis.get("source_etag")
                                   and analysis["source_etag"] != item["etag"]):
        return [_found(STALE_ANALYSIS, item,
                       f"the analysis is of {analysis_seq or '-'}/{analysis.get('source_etag')}"
                       f", the item is {item_seq or '-'}/{item.get('etag')}")]
    return []


def _embedding_findings(user: str, item_id: str, key: str, analysis: dict[str, Any],
                        rows: list[dict[str, Any]], embedding_model: str,
                        hash_of: Callable[[dict[str, Any]], str | None],
                        dimensions_of: Callable[[str], int | None]) -> list[Inconsistency]:
    out = []
    current, unusable = None, False
    for row in rows:
        expected = dimensions_of(row["embedding_model"])
        if expected is not None and row["embedding_dimensions"] != expected:
            out.append(Inconsistency(
                WRONG_DIMENSION, user, item_id, key,
                f"{row['embedding_model']} makes {expected} dimensions; the stored vector has "
                f"{row['embedding_dimensions']}"))
            unusable = unusable or row["embedding_model"] == embedding_model
        elif row["embedding_model"] == embedding_model:
            current = row
    if current is None:
        if not unusable:  # a wrong-dimension row of this model is re-embedded already
            out.append(Inconsistency(ANALYSIS_WITHOUT_EMBEDDING, user, item_id, key,
                                     f"no {embedding_model} embedding"))
        return out
    wanted = hash_of(analysis)
    if current["analysis_id"] != analysis["id"] or (wanted is not None
                                                    and current["content_hash"] != wanted):
        out.append(Inconsistency(STALE_EMBEDDING, user, item_id, key,
                                 "the embedding is of an earlier text of the analysis"
                                 if current["analysis_id"] == analysis["id"] else
                                 f"the embedding is of analysis {current['analysis_id']}, "
                                 f"not {analysis['id']}"))
    return out
