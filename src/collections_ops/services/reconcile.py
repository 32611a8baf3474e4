"""Finding and finishing half-done work: `collections reconcile` and `collections replay`.

S3 and EventBridge deliver at least once, but a fault (a function killed, a dead letter never
redriven, a row or object deleted by hand) can still leave an item stopped between stages, and
nothing downstream ever notices. Reconcile compares the five places an item lives — the
original in the images bucket, its thumbnail, its `items`, `analyses` and `embeddings` rows —
and names every inconsistency by kind. `--fix` re-drives each item once, from the earliest
stage that would repair it, with an event built from the source of truth (the S3 listing or
the item's own rows, never guessed), so the handlers' own claim checks accept it.

Where a re-drive goes: on the local cloud, the function's trigger queue (the dispatcher then
applies Lambda's retries and dead-letter queue, as for a delivered event); on AWS, an
asynchronous invoke (InvocationType Event) of the function's `live` alias — the version its
triggers invoke. Not `put_events` on the bus: an event put there reaches every rule that
matches it (a second consumer, an archive), and an event with the pipeline's own `source`
from an operator is what the handlers are built to distrust; an asynchronous invoke reaches
exactly the one stage, and keeps Lambda's retries and on-failure destination.

Everything is read in bulk: paginated S3 listings and, per table, the operations function's
named query `reconcile_rows` page by page (`read_rows`, the only database read here), through
the data route the other data commands use (`services/dataroute.py`): a direct connection when
this machine can reach the database, else the operations function inside its VPC. What was
read is classified in memory by `classify`, a plain function of it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.util
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from collections_ops import errors, paths
from collections_ops.pipeline import (
    ANALYSIS_COMPLETE,
    IMAGE_PROCESSED,
    Environment,
    Function,
    function,
)

if TYPE_CHECKING:
    from collections_ops.services.dataroute import Route

ClientFactory = Callable[[str], Any]

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


# --------------------------------------------------------------------------- reading


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


def list_objects(s3: Any, bucket: str, *, prefix: str = "") -> list[S3Entry]:
    """Every object under `prefix`, page by page (S3 returns at most 1,000 a page)."""
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out.append(S3Entry(obj["Key"], int(obj.get("Size", 0)), str(obj.get("ETag", "")),
                               obj["LastModified"].timestamp()))
    return out


def read_rows(route: Route, *, user_id: str | None = None, item_id: str | None = None
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The items, analyses and embeddings rows (of one user, one item, or all), each table
    page by page through `route` (the statements are the operations function's
    `reconcile_rows`, whichever route answers). The only database read of reconcile and
    replay."""
    from collections_ops.services.dataroute import reconcile_rows

    items, analyses, embeddings = (reconcile_rows(route, table, user_id=user_id,
                                                  item_id=item_id)
                                   for table in ("items", "analyses", "embeddings"))
    return items, analyses, embeddings


def snapshot(client_factory: ClientFactory, route: Route, *, images_bucket: str,
             thumbnails_bucket: str, user_id: str | None = None,
             clock: Callable[[], float] = time.time) -> Snapshot:
    """Read everything, in the order that keeps a running pipeline from looking broken.

    The processor stores the row before it puts the thumbnail, so the thumbnails are listed
    before the rows are read (a listed thumbnail's row is already there); the originals are
    listed before the rows too, and `min_age` in `classify` leaves the newest alone.
    """
    read_at = clock()
    s3 = client_factory("s3")
    prefix = f"{user_id}/" if user_id is not None else ""
    # The two listings at once: S3 (or moto) answers one while this process parses the other.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        listed = pool.map(lambda bucket: list_objects(s3, bucket, prefix=prefix),
                          (thumbnails_bucket, images_bucket))
        thumbnails, originals = list(listed)
    items, analyses, embeddings = read_rows(route, user_id=user_id)
    return Snapshot(originals, thumbnails, items, analyses, embeddings, read_at)


# --------------------------------------------------------------------------- classifying


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


@lru_cache(maxsize=1)
def _embedder_module() -> Any:
    """The embedder's own `embedding` module: the text it embeds and the models' dimensions
    are defined there once, and reconcile must judge by exactly the same rules."""
    paths.add_shared_to_path()
    name = "collections_embedder_embedding"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, paths.lambda_code_dir(function("embedder").code_dir) / "embedding.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def content_hash(analysis: dict[str, Any]) -> str | None:
    """What the embedder records as `content_hash` for this analysis (None: it cannot embed
    it at all, e.g. over-long text — a terminal failure, not an inconsistency to re-drive)."""
    try:
        text = _embedder_module().document_text(analysis)
    except Exception:
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def model_dimensions(model: str) -> int | None:
    value = _embedder_module().MODEL_DIMENSIONS.get(model)
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


# --------------------------------------------------------------------------- events


def _envelope(source: str, detail_type: str, detail: dict[str, Any], *, account: str,
              region: str) -> dict[str, Any]:
    """An event as EventBridge delivers it to a target."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": detail_type,
            "source": source, "account": account,
            "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region, "resources": [], "detail": detail}


def s3_event(bucket: str, key: str, *, size: int | None, etag: str | None,
             sequencer: str | None, region: str) -> dict[str, Any]:
    """An S3 ObjectCreated notification as Lambda receives it (the key URL-encoded, as S3
    encodes it). The sequencer is one the database recorded for this object, or none."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if size is not None:
        obj["size"] = size
    if etag:
        obj["eTag"] = etag.strip('"')
    if sequencer:
        obj["sequencer"] = sequencer
    return {"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": region,
        "eventTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "collections-reconcile",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }]}


def image_processed_event(item: dict[str, Any], *, account: str,
                          region: str) -> dict[str, Any]:
    """The ImageProcessed event the processor published for this row, rebuilt from the row."""
    detail: dict[str, Any] = {"item_id": item["id"], "user_id": item["user_id"],
                              "bucket": item["bucket"], "original_key": item["original_key"]}
    for name in ("thumbnail_bucket", "thumbnail_key", "sequencer", "correlation_id"):
        if item.get(name):
            detail[name] = item[name]
    return _envelope(IMAGE_PROCESSED.source, IMAGE_PROCESSED.detail_type, detail,
                     account=account, region=region)


def analysis_complete_event(analysis: dict[str, Any], *, account: str,
                            region: str) -> dict[str, Any]:
    """The AnalysisComplete event the analyzer published for this row, rebuilt from the row."""
    detail: dict[str, Any] = {"item_id": analysis["item_id"], "user_id": analysis["user_id"],
                              "analysis_id": str(analysis["id"])}
    for name in ("category", "provider", "model", "correlation_id"):
        if analysis.get(name):
            detail[name] = analysis[name]
    return _envelope(ANALYSIS_COMPLETE.source, ANALYSIS_COMPLETE.detail_type, detail,
                     account=account, region=region)


# --------------------------------------------------------------------------- re-driving


Deliver = Callable[[Function, dict[str, Any]], str]  # returns where it went; raises if refused


class RedriveRefused(Exception):
    """The re-drive was not accepted (queue missing, Lambda refused the invoke)."""


def deliverer(client_factory: ClientFactory, env: Environment) -> Deliver:
    """Local cloud: the function's trigger queue. AWS: an asynchronous invoke of `live`
    (the delivery `dlq redrive` uses too)."""
    from collections_ops.services import dlq_redrive

    queues = dlq_redrive.TriggerQueues(client_factory, env)

    def deliver(fn: Function, event: dict[str, Any]) -> str:
        try:
            if env.is_local:
                return queues.send(fn, event)
            return dlq_redrive.invoke_live(client_factory("lambda"), env, fn, event)
        except dlq_redrive.ReplayError as exc:
            raise RedriveRefused(str(exc)) from None

    return deliver


@dataclass
class Redrive:
    """One re-drive: an item (or an object without one) from one stage."""

    stage: str
    user_id: str
    item_id: str | None
    key: str
    kinds: list[str]
    target: str | None = None
    status: str = "planned"  # planned | sent | refused | resolved | unresolved
    detail: str = ""

    @property
    def ident(self) -> tuple[str, str]:
        return (self.user_id, self.key)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan(found: Iterable[Inconsistency]) -> list[Redrive]:
    """One re-drive per item, from the earliest stage any of its inconsistencies needs: the
    later stages follow from it (the processor's event reaches the analyzer, and so on)."""
    by_item: dict[tuple[str, str], Redrive] = {}
    for inc in found:
        if inc.stage is None:
            continue
        ident = (inc.user_id, inc.key)
        current = by_item.get(ident)
        if current is None:
            by_item[ident] = Redrive(inc.stage, inc.user_id, inc.item_id, inc.key, [inc.kind])
            continue
        current.kinds.append(inc.kind)
        if STAGES.index(inc.stage) < STAGES.index(current.stage):
            current.stage = inc.stage
    return list(by_item.values())


@dataclass
class Rows:
    """The rows of one snapshot, indexed for building events."""

    items: dict[tuple[str, str], dict[str, Any]]
    by_key: dict[tuple[str, str], dict[str, Any]]
    analyses: dict[tuple[str, str], dict[str, Any]]
    originals: dict[str, S3Entry]

    @classmethod
    def of(cls, snap: Snapshot) -> Rows:
        return cls({(r["user_id"], r["id"]): r for r in snap.items},
                   {(r["user_id"], r["original_key"]): r for r in snap.items},
                   {(r["user_id"], r["item_id"]): r for r in snap.analyses},
                   {o.key: o for o in snap.originals})


def event_for(redrive: Redrive, rows: Rows, *, images_bucket: str, account: str,
              region: str) -> dict[str, Any]:
    """The event that re-drives `redrive` from its stage, built from what was read."""
    item = rows.by_key.get(redrive.ident)
    if redrive.stage == "processor":
        obj = rows.originals.get(redrive.key)
        sequencer = None
        if item is not None:
            # The row refuses an older sequencer than its own; the analysis may record a
            # newer one than the row (ANALYSIS_NEWER_THAN_ITEM). Both came from S3.
            analysis = rows.analyses.get((item["user_id"], item["id"]))
            known = [item.get("sequencer") or "",
                     (analysis or {}).get("source_sequencer") or ""]
            sequencer = max(known) or None
        return s3_event(images_bucket, redrive.key, size=obj.size if obj else None,
                        etag=obj.etag if obj else None, sequencer=sequencer, region=region)
    if item is None:
        raise RedriveRefused(f"no items row for {redrive.key}")
    if redrive.stage == "analyzer":
        return image_processed_event(item, account=account, region=region)
    analysis = rows.analyses.get((item["user_id"], item["id"]))
    if analysis is None:
        raise RedriveRefused(f"no analysis of {item['user_id']}/{item['id']}")
    return analysis_complete_event(analysis, account=account, region=region)


@dataclass
class FixActions:
    """Writes a fix needs besides re-drives: removing what no stage can repair in place."""

    delete_embeddings: Callable[[list[int]], None]
    delete_thumbnails: Callable[[list[str]], None]


def actions(route: Route, s3: Any, thumbnails_bucket: str) -> FixActions:
    def delete_embeddings(ids: list[int]) -> None:
        if not ids:
            return
        if not route.delete_embeddings(ids):
            raise RedriveRefused(f"removing the wrong-dimension vector needs a direct "
                                 f"database connection (this one is via {route.description}"
                                 "): set DATABASE_URL, e.g. through an SSM tunnel")

    def delete_thumbnails(keys: list[str]) -> None:
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=thumbnails_bucket, Delete={
                "Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})

    return FixActions(delete_embeddings, delete_thumbnails)


def redrive_all(found: list[Inconsistency], snap: Snapshot, deliver: Deliver,
                fix_actions: FixActions, *, images_bucket: str, account: str, region: str,
                dimensions_of: Callable[[str], int | None] = model_dimensions
                ) -> list[Redrive]:
    """Re-drive each item once from its stage; return what was sent where, or why not.

    A vector of the wrong dimension is removed first: the embedder skips a text it has
    embedded already, whatever the stored vector looks like. Where it cannot be removed (the
    operations function deletes nothing), that item's re-drive is refused, with why.
    """
    rows = Rows.of(snap)
    bad = [e["id"] for e in snap.embeddings
           if (d := dimensions_of(e["embedding_model"])) is not None
           and e["embedding_dimensions"] != d]
    wrong = {(i.user_id, i.item_id) for i in found if i.kind == WRONG_DIMENSION}
    kept: str | None = None
    try:
        fix_actions.delete_embeddings([e["id"] for e in snap.embeddings if e["id"] in bad
                                       and (e["user_id"], e["item_id"]) in wrong])
    except RedriveRefused as exc:
        kept = str(exc)
    planned = plan(found)
    for redrive in planned:
        if kept is not None and WRONG_DIMENSION in redrive.kinds:
            redrive.status, redrive.detail = "refused", kept
            continue
        try:
            event = event_for(redrive, rows, images_bucket=images_bucket, account=account,
                              region=region)
            redrive.target = deliver(function(redrive.stage), event)
            redrive.status = "sent"
        except Exception as exc:
            redrive.status = "refused"
            redrive.detail = str(exc) if isinstance(exc, RedriveRefused) else \
                f"{type(exc).__name__}: {exc}"
    return planned


def settle(planned: list[Redrive], rescan: Callable[[], list[Inconsistency]], *,
           timeout_s: float, interval_s: float = 1.0,
           sleep: Callable[[float], None] = time.sleep,
           clock: Callable[[], float] = time.monotonic) -> list[Inconsistency]:
    """Rescan until no re-driven item is inconsistent any more, or `timeout_s`; mark each
    re-drive resolved or unresolved. Returns the last scan."""
    deadline = clock() + timeout_s
    sent = [r for r in planned if r.status == "sent"]
    while True:
        found = rescan()
        open_ = {(i.user_id, i.key) for i in found if i.stage is not None}
        # an object without a row is found again under its key once it has one
        pending = [r for r in sent if r.ident in open_]
        if not pending or clock() >= deadline:
            break
        sleep(interval_s)
    for r in sent:
        if r.ident in open_:
            r.status = "unresolved"
            r.detail = ", ".join(sorted({i.kind for i in found if (i.user_id, i.key) == r.ident}))
        else:
            r.status = "resolved"
    return found


@dataclass
class Report:
    found: list[Inconsistency]
    redrives: list[Redrive] = field(default_factory=list)
    removed_thumbnails: list[str] = field(default_factory=list)
    remaining: list[Inconsistency] | None = None  # after --fix: what is still inconsistent
    counts: dict[str, int] = field(default_factory=dict)
    scanned: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    route: str = ""  # the data route's kind: direct | operations
    via: str = ""  # and its description

    def as_dict(self) -> dict[str, Any]:
        return {"inconsistencies": [i.as_dict() for i in self.found], "counts": self.counts,
                "scanned": self.scanned, "seconds": round(self.seconds, 3),
                "route": self.route, "via": self.via,
                "redrives": [r.as_dict() for r in self.redrives],
                "removed_thumbnails": self.removed_thumbnails,
                "remaining": None if self.remaining is None
                else [i.as_dict() for i in self.remaining]}


def counts(found: Iterable[Inconsistency]) -> dict[str, int]:
    out = dict.fromkeys(KINDS, 0)
    for inc in found:
        out[inc.kind] += 1
    return out


def scanned(snap: Snapshot) -> dict[str, int]:
    return {"originals": len(snap.originals), "thumbnails": len(snap.thumbnails),
            "items": len(snap.items), "analyses": len(snap.analyses),
            "embeddings": len(snap.embeddings)}


def reconcile(client_factory: ClientFactory, route: Route, env: Environment, *, account: str,
              region: str, user_id: str | None = None, fix: bool = False,
              min_age_s: float = 0.0, timeout_s: float = 120.0,
              deliver: Deliver | None = None,
              fix_lock: Callable[[], AbstractContextManager[Any]] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> Report:
    """Scan; with `fix`, re-drive each item once, wait for them to settle, remove orphan
    thumbnails that no item claimed meanwhile, and scan again.

    With `fix`, all of it runs holding `fix_lock()` (the environment's `reconcile --fix`
    lock), the first scan included: two runs that scanned before either re-drove would both
    re-drive every item they found. The second scans only once the first is done, and finds
    what the first left."""
    with fix_lock() if fix and fix_lock is not None else contextlib.nullcontext():
        return _reconcile(client_factory, route, env, account=account, region=region,
                          user_id=user_id, fix=fix, min_age_s=min_age_s, timeout_s=timeout_s,
                          deliver=deliver, sleep=sleep)


def _reconcile(client_factory: ClientFactory, route: Route, env: Environment, *, account: str,
               region: str, user_id: str | None, fix: bool, min_age_s: float,
               timeout_s: float, deliver: Deliver | None,
               sleep: Callable[[float], None]) -> Report:
    started = time.perf_counter()
    images, thumbs = env.images_bucket(account), env.thumbnails_bucket(account)

    def scan(min_age: float = 0.0) -> tuple[Snapshot, list[Inconsistency]]:
        snap = snapshot(client_factory, route, images_bucket=images, thumbnails_bucket=thumbs,
                        user_id=user_id)
        return snap, classify(snap, embedding_model=env.embedding_model, min_age_s=min_age,
                              images_bucket=images)

    # Only the first scan leaves recent work alone: afterwards the re-driven items are the
    # recent ones, and must be judged as they are.
    snap, found = scan(min_age_s)
    report = Report(found, counts=counts(found), scanned=scanned(snap), route=route.kind,
                    via=route.description)
    if fix and found:
        fix_actions = actions(route, client_factory("s3"), thumbs)
        report.redrives = redrive_all(found, snap, deliver or deliverer(client_factory, env),
                                      fix_actions, images_bucket=images, account=account,
                                      region=region)
        last = settle(report.redrives, lambda: scan()[1], timeout_s=timeout_s, sleep=sleep)
        # Only what the first scan judged (old enough) and no re-driven item claimed since.
        first = {i.key for i in found if i.kind == ORPHAN_THUMBNAIL}
        orphans = [i.key for i in last if i.kind == ORPHAN_THUMBNAIL and i.key in first]
        fix_actions.delete_thumbnails(orphans)
        report.removed_thumbnails = orphans
        report.remaining = scan()[1] if orphans else last
    report.seconds = time.perf_counter() - started
    return report


# --------------------------------------------------------------------------- replay


def find_item(route: Route, item_id: str, user_id: str | None
              ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The one items row of `item_id` (of `user_id`) and the item's analyses: NotFound, or
    UsageError when several users have it and none was named."""
    items, analyses, _ = read_rows(route, user_id=user_id, item_id=item_id)
    matches = [r for r in items if r["id"] == item_id]
    if not matches:
        raise errors.NotFound(f"no item {item_id!r}" + (f" of user {user_id!r}" if user_id
                                                          else ""),
                              "was it uploaded? `collections reconcile` lists objects "
                              "without an item")
    if len(matches) > 1:
        users = ", ".join(sorted(r["user_id"] for r in matches))
        raise errors.UsageError(f"{len(matches)} users have an item {item_id!r} ({users})",
                                "pass --user")
    item = matches[0]
    return item, [a for a in analyses if a["user_id"] == item["user_id"]]


def replay(client_factory: ClientFactory, route: Route, env: Environment, item_id: str, *,
           stage: str, account: str, region: str, user_id: str | None = None,
           deliver: Deliver | None = None) -> Redrive:
    """Re-run one item from `stage`, with the event that stage's trigger would carry, built
    from the item's rows. From the embedder the vision model is never involved; the handlers
    still skip work already done for the same version (a duplicate costs no model call)."""
    if stage not in STAGES:
        raise errors.UsageError(f"unknown stage {stage!r}", f"one of {', '.join(STAGES)}")
    item, analyses = find_item(route, item_id, user_id)
    user = item["user_id"]
    images = env.images_bucket(account)
    s3 = client_factory("s3")
    originals = []
    if stage == "processor":
        originals = [o for o in list_objects(s3, images, prefix=item["original_key"])
                     if o.key == item["original_key"]]
        if not originals:
            raise errors.NotFound(f"the original s3://{images}/{item['original_key']} no "
                                  "longer exists", "nothing to process again")
    rows = Rows({(user, item["id"]): item}, {(user, item["original_key"]): item},
                {(a["user_id"], a["item_id"]): a for a in analyses if a["item_id"] == item_id},
                {o.key: o for o in originals})
    redrive = Redrive(stage, user, item["id"], item["original_key"], [f"replay --from {stage}"])
    try:
        event = event_for(redrive, rows, images_bucket=images, account=account, region=region)
    except RedriveRefused as exc:
        raise errors.NotFound(str(exc), "replay it from an earlier stage") from None
    send = deliver or deliverer(client_factory, env)
    try:
        redrive.target = send(function(stage), event)
    except RedriveRefused as exc:
        raise errors.NotReady(str(exc), f"is {env.name} deployed?") from None
    redrive.status = "sent"
    return redrive
