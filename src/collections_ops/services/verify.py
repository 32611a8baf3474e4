"""Checking what the pipeline stored for one item: the guide's three SQL checks, the thumbnail
in S3, the analysis fields, and the stored vector against its recorded dimension and norm.

When a stage left the item short, the dead-letter queues say where and why: `explain` adds
the records that name the item ("failed in the processor: unreadable image") so the answer is
the failure, not "no row -- was it uploaded?"."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from collections_ops import aws, errors
from collections_ops.checks import Check, failures

if TYPE_CHECKING:
    from collections_ops.services.dlq_records import FailedEvent


@dataclass
class VerifyReport:
    item_id: str
    user_id: str | None
    checks: list[Check] = field(default_factory=list)
    item: dict[str, Any] | None = None
    analysis: dict[str, Any] | None = None
    embedding: dict[str, Any] | None = None
    dead_letters: list[dict[str, Any]] = field(default_factory=list)  # see `explain`

    @property
    def ok(self) -> bool:
        return bool(self.checks) and not failures(self.checks)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        return out


def _one(conn: Any, sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
        if not rows:
            return None
        names = [d.name for d in cur.description]
    return {n: _plain(v) for n, v in zip(names, rows[0], strict=True)}


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def missing_object(exc: BaseException) -> str | None:
    """Why an object cannot be read, when that means it is gone; None for other errors.

    S3 answers 403, not 404, for a missing key when the caller may not list the bucket
    (no s3:ListBucket): for a key the pipeline wrote, that is most often a deleted object.
    """
    if aws.is_not_found(exc, *aws.MISSING_OBJECT):
        return "no longer exists in S3"
    if aws.is_access_denied(exc):
        return ("no longer exists in S3, or this identity may not read it (S3 answers 403 for "
                "a missing key without s3:ListBucket)")
    if aws.is_not_found(exc, *aws.MISSING_BUCKET):
        return "its bucket does not exist"
    return None


def find_items(conn: Any, item_id: str) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT user_id, id FROM items WHERE id = %s ORDER BY updated_at DESC",
                    (item_id,))
        return [(r[0], r[1]) for r in cur.fetchall()]


def item_rows(conn: Any, item_id: str, user_id: str) -> dict[str, Any]:
    """The rows `verify` checks (the operations function's `item_rows` has the same shape)."""
    item = _one(conn, "SELECT * FROM items WHERE id = %s AND user_id = %s", (item_id, user_id))
    analysis = _one(conn, "SELECT id, item_id, category, summary, description, tags, provider,"
                    " model, updated_at FROM analyses WHERE item_id = %s AND user_id = %s",
                    (item_id, user_id))
    embedding = _one(conn, "SELECT id, item_id, embedding_model, embedding_dimensions,"
                     " vector_dims(embedding) AS stored_dimensions,"
                     " vector_norm(embedding) AS norm, analysis_id, updated_at"
                     " FROM embeddings WHERE item_id = %s AND user_id = %s"
                     " ORDER BY updated_at DESC LIMIT 1", (item_id, user_id))
    return {"item": item, "analysis": analysis, "embedding": embedding}


def verify(conn: Any, s3: Any, item_id: str, *, user_id: str | None = None) -> VerifyReport:
    return check(s3, item_id, user_id=user_id, find=lambda: find_items(conn, item_id),
                 rows=lambda user: item_rows(conn, item_id, user))


def through(route: Any, s3: Any, item_id: str, *, user_id: str | None = None) -> VerifyReport:
    """Verify one item through a `services.dataroute` route (direct or the operations
    function): the same checks, whichever route reads the rows."""
    return check(s3, item_id, user_id=user_id, find=lambda: route.find_items(item_id),
                 rows=lambda owner: route.item_rows(item_id, owner))


def thumbnail_check(s3: Any, item: dict[str, Any] | None) -> Check:
    """The item's thumbnail in S3: present, gone, or S3 not answering (raised: exit 4).
    A missing object is a failed check, not an error: `translate` would read its 404 as an
    environment that is not deployed, so the missing object is recognised first."""
    if not item or not item.get("thumbnail_key"):
        return Check("thumbnail", False, "the item records no thumbnail")
    try:
        head = s3.head_object(Bucket=item["thumbnail_bucket"], Key=item["thumbnail_key"])
    except Exception as exc:
        gone = missing_object(exc)
        if gone is None:
            # S3 not answering is not a missing thumbnail: say so, with exit 4.
            unreachable = aws.translate(exc)
            if isinstance(unreachable, errors.NotReady):
                raise unreachable from None
            raise
        return Check("thumbnail", False, gone)
    return Check("thumbnail", True, f"s3://{item['thumbnail_bucket']}/{item['thumbnail_key']} "
                 f"({head['ContentLength']} bytes)")


def check(s3: Any, item_id: str, *, user_id: str | None,
          find: Callable[[], list[tuple[str, str]]],
          rows: Callable[[str], dict[str, Any]]) -> VerifyReport:
    """Verify one item from rows fetched by `find`/`rows` (either route to the database)."""
    matches = find()
    if user_id is not None:
        matches = [m for m in matches if m[0] == user_id]
    report = VerifyReport(item_id, user_id)
    if not matches:
        report.checks.append(Check("item", False, f"no row in items with id = {item_id!r}"
                                   + (f" for user {user_id!r}" if user_id else "")))
        return report
    if len(matches) > 1 and user_id is None:
        users = ", ".join(m[0] for m in matches)
        report.checks.append(Check("item", False, f"{len(matches)} users have this item ({users});"
                                   f" checking the newest, {matches[0][0]}",
                                   fix="pass --user to choose one", severity="warning"))
    user_id = report.user_id = matches[0][0]
    fetched = rows(user_id)

    item = fetched.get("item")
    report.item = item
    report.checks.append(Check("item", item is not None, "row in items" if item else "missing"))

    report.checks.append(thumbnail_check(s3, item))

    analysis = fetched.get("analysis")
    report.analysis = analysis
    if analysis is None:
        report.checks.append(Check("analysis", False, "no row in analyses"))
    else:
        empty = [k for k in ("category", "summary") if not analysis.get(k)]
        report.checks.append(Check("analysis", not empty,
                                   f"missing {', '.join(empty)}" if empty else
                                   f"{analysis['category']}: {analysis['summary']}"))

    embedding = fetched.get("embedding")
    report.embedding = embedding
    if embedding is None:
        report.checks.append(Check("embedding", False, "no row in embeddings"))
    else:
        dims_ok = embedding["stored_dimensions"] == embedding["embedding_dimensions"]
        norm = float(embedding["norm"])
        norm_ok = math.isfinite(norm) and 0.01 < norm < 1000
        linked = analysis is not None and embedding["analysis_id"] == analysis["id"]
        problems = []
        if not dims_ok:
            problems.append(f"stored dimension {embedding['stored_dimensions']} != "
                            f"embedding_dimensions {embedding['embedding_dimensions']}")
        if not norm_ok:
            problems.append(f"norm {norm:.3g} is not sane")
        if not linked:
            problems.append("it does not belong to the current analysis")
        report.checks.append(Check(
            "embedding", not problems, "; ".join(problems) if problems else
            f"{embedding['embedding_model']}, {embedding['stored_dimensions']} dimensions, "
            f"norm {norm:.3f}"))
    return report


def explain(report: VerifyReport, dead_letters: list[FailedEvent]) -> None:
    """Add, to a report that fell short, the dead letters that name its item (and user): the
    newest per stage, as a failed check saying where and why. Matched on the records' decoded
    fields (item, user), never on their text."""
    if report.ok:
        return
    newest: dict[str, FailedEvent] = {}
    for failed in sorted(dead_letters, key=lambda f: -(f.failed_at or 0.0)):
        if failed.item_id != report.item_id:
            continue
        if report.user_id is not None and failed.user_id != report.user_id:
            continue
        newest.setdefault(f"{failed.function_key}\0{failed.user_id}", failed)
    for failed in newest.values():
        reason = failed.error_message or failed.error_type or failed.condition or "unknown error"
        who = f" (user {failed.user_id})" if report.user_id is None and failed.user_id else ""
        redrive = "" if failed.terminal else \
            f"; after a fix: `collections dlq redrive {failed.function_key}`"
        report.checks.append(Check(
            failed.stage, False, f"failed in the {failed.function_key}{who}: {reason}",
            fix=f"`collections dlq show {failed.function_key}`{redrive}"))
        report.dead_letters.append(failed.as_dict() | {"event": None})


def raise_for_failure(report: VerifyReport) -> None:
    """NotFound when the item is not there at all (and no stage recorded a failure for it);
    VerifyFailed when a stage left it short or failed it."""
    if report.ok:
        return
    failed = ", ".join(c.name for c in failures(report.checks))
    if report.dead_letters:
        first = report.dead_letters[0]
        raise errors.VerifyFailed(
            f"verification failed: {failed}; failed in the {first['function_key']}: "
            f"{first['error_message'] or first['error']}",
            f"see `collections dlq show {first['function_key']}`")
    if report.item is None:
        raise errors.NotFound(f"verification failed: {failed}",
                              "was it uploaded to this environment? try "
                              "`collections test-upload FILE --follow`")
    raise errors.VerifyFailed(f"verification failed: {failed}",
                              "see `collections logs` for the stage that failed")
