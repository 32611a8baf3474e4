"""Finding and finishing half-done work: `collections reconcile` and `collections replay`.

S3 and EventBridge deliver at least once, but a fault (a function killed, a dead letter never
redriven, a row or object deleted by hand) can still leave an item stopped between stages, and
nothing downstream ever notices. Reconcile compares the five places an item lives — the
original in the images bucket, its thumbnail, its `items`, `analyses` and `embeddings` rows —
and names every inconsistency by kind (`reconcile_classify.py`). `--fix` re-drives each item
once, from the earliest stage that would repair it (`reconcile_redrive.py`). This module reads
and runs the whole: scan, fix, wait for the re-driven items to settle, scan again.

Everything is read in bulk: paginated S3 listings and, per table, the operations function's
named query `reconcile_rows` page by page (`read_rows`, the only database read here), through
the data route the other data commands use (`services/dataroute.py`): a direct connection when
this machine can reach the database, else the operations function inside its VPC. What was
read is classified in memory by `classify`, a plain function of it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collections_ops import errors
from collections_ops.pipeline import Environment, function
from collections_ops.services.reconcile_classify import (
    KINDS,
    ORPHAN_THUMBNAIL,
    STAGES,
    Inconsistency,
    S3Entry,
    Snapshot,
    classify,
)
from collections_ops.services.reconcile_redrive import (
    Deliver,
    Redrive,
    RedriveRefused,
    Rows,
    actions,
    deliverer,
    event_for,
    redrive_all,
    settle,
)

if TYPE_CHECKING:
    from collections_ops.services.dataroute import Route

ClientFactory = Callable[[str], Any]


# --------------------------------------------------------------------------- reading


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


# --------------------------------------------------------------------------- running


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
