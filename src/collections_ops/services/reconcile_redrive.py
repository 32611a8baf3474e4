"""Re-driving what reconcile found: one event per item, from the earliest stage that repairs it.

`reconcile --fix` and `replay` build each event from the source of truth (the S3 listing or
the item's own rows, never guessed), so the handlers' own claim checks accept it, and deliver it
to exactly one stage. Finding (`reconcile_classify.py`) and scanning (`reconcile.py`) are kept
apart from this, the only writing part of reconcile.

Where a re-drive goes: on the local cloud, the function's trigger queue (the dispatcher then
applies Lambda's retries and dead-letter queue, as for a delivered event); on AWS, an
asynchronous invoke (InvocationType Event) of the function's `live` alias — the version its
triggers invoke. Not `put_events` on the bus: an event put there reaches every rule that
matches it (a second consumer, an archive), and an event with the pipeline's own `source`
from an operator is what the handlers are built to distrust; an asynchronous invoke reaches
exactly the one stage, and keeps Lambda's retries and on-failure destination.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from collections_ops.pipeline import (
    ANALYSIS_COMPLETE,
    IMAGE_PROCESSED,
    Environment,
    Function,
    function,
)
from collections_ops.services.reconcile_classify import (
    STAGES,
    WRONG_DIMENSION,
    Inconsistency,
    S3Entry,
    Snapshot,
    model_dimensions,
)

if TYPE_CHECKING:
    from collections_ops.services.dataroute import Route

ClientFactory = Callable[[str], Any]


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


Deliver = Callable[[Function, dict[str, Any]], str]  # returns where it went; raises if refused


class RedriveRefused(Exception):
    """The re-drive was not accepted (queue missing, Lambda refused the invoke)."""


def deliverer(client_factory: ClientFactory, env: Environment) -> Deliver:
    """To `fn` alone, as the target delivers there (`Target.delivery_to`: on AWS an
    asynchronous invoke of `live`, the delivery `dlq redrive` uses too; on the local cloud the
    function's trigger queue)."""
    from collections_ops.services import dlq_redrive
    from collections_ops.target import for_environment

    target = for_environment(env)
    deliveries = dlq_redrive.Deliveries(client_factory, env)

    def deliver(fn: Function, event: dict[str, Any]) -> str:
        try:
            return deliveries.send(target.delivery_to(fn), fn, event)
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
