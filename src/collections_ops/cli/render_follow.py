"""Rendering a followed upload: a live per-stage view with the functions' log lines below it on
a terminal; one plain line per event otherwise (CI logs, pipes); JSON lines with --json."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from collections_ops.cli import ui
from collections_ops.cli.render import log_record, log_text
from collections_ops.services.follow import Progress, Stage, Tracker, Upload
from collections_ops.services.logs import LogEvent

ICONS = {"pending": ui.Styled("·", ""), "running": ui.Styled("…", ""),
         "done": ui.Styled("✓", "green"), "failed": ui.Styled("✗", "red")}
MAX_LINES = 12


def _stage_table(stages: list[Stage]) -> Any:
    from rich.table import Table

    t = Table(show_edge=False, pad_edge=False, box=None)
    for col in ("", "stage", "function", "duration", "detail"):
        t.add_column(col)
    for s in stages:
        duration = f"{s.duration_ms / 1000:.2f} s" if s.duration_ms is not None else ""
        t.add_row(ui.text(ICONS[s.status]), ui.text(s.name),
                  ui.text(s.function.logical_id if s.function else "s3"), ui.text(duration),
                  ui.text(s.detail))
    return t


class _ItemId:
    """The item a followed upload's lines are about: the id the upload was given, until a line
    names the one the processor stored (its first line comes before the row that decides it)."""

    def __init__(self, upload: Upload | None) -> None:
        self.value = upload.item_id if upload is not None else None

    def of(self, line: LogEvent) -> str | None:
        named = line.fields().get("item_id")
        if named:
            self.value = str(named)
        return self.value


def render_follow(updates: Iterator[Progress], *, as_json: bool,
                  upload: Upload | None = None) -> Progress:
    if as_json:
        return _render_json(updates, upload)
    if sys.stdout.isatty():
        return _render_live(updates, upload)
    return _render_plain(updates, upload)


def _render_live(updates: Iterator[Progress], upload: Upload | None) -> Progress:
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    item = _ItemId(upload)
    lines: list[Any] = []
    progress: Progress | None = None
    with Live(console=ui.console(), refresh_per_second=8, transient=False) as live:
        for progress in updates:
            lines.extend(log_text(ln, item_id=item.of(ln)) for ln in progress.new_lines)
            del lines[:-MAX_LINES]
            live.update(Group(_stage_table(progress.stages),
                              Text("\n").join(lines) if lines else Text("")))
    assert progress is not None
    return progress


def _finished(progress: Progress, reported: dict[str, str]) -> Iterator[Stage]:
    """The stages that finished (done or failed) since the last call, each once."""
    for s in progress.stages:
        if s.function and reported.get(s.name) != s.status and s.status in ("done", "failed"):
            reported[s.name] = s.status
            yield s


def _render_plain(updates: Iterator[Progress], upload: Upload | None) -> Progress:
    console = ui.console()
    item = _ItemId(upload)
    reported: dict[str, str] = {}
    progress: Progress | None = None
    for progress in updates:
        for line in progress.new_lines:
            console.print(log_text(line, item_id=item.of(line)), soft_wrap=True)
        for s in _finished(progress, reported):
            duration = f" in {s.duration_ms / 1000:.2f} s" if s.duration_ms else ""
            console.print(ui.text(ICONS[s.status]) + " " + ui.text(
                f"{s.name}{duration} {s.detail}".rstrip()), soft_wrap=True)
    assert progress is not None
    return progress


def _render_json(updates: Iterator[Progress], upload: Upload | None) -> Progress:
    """JSON Lines, one flat object per event: `log` lines, a `stage` object as each stage
    finishes, and one `result` at the end."""
    item = _ItemId(upload)
    reported: dict[str, str] = {}
    progress: Progress | None = None
    for progress in updates:
        for line in progress.new_lines:
            ui.json_line({"type": "log", **log_record(line, item_id=item.of(line))})
        for s in _finished(progress, reported):
            ui.json_line({"type": "stage", "stage": s.name, "function": s.function.key
                          if s.function else None, "status": s.status,
                          "duration_ms": s.duration_ms, "detail": s.detail})
    assert progress is not None
    ui.json_line(result_record(progress, upload=upload, item_id=item.value))
    return progress


def result_record(progress: Progress, *, upload: Upload | None = None,
                  item_id: str | None = None) -> dict[str, Any]:
    """The followed upload's outcome as one flat object: each stage's time is `<stage>_ms`."""
    failed = progress.failed
    out: dict[str, Any] = {"type": "result", "complete": progress.complete,
                           "failed_stage": failed.name if failed else None,
                           "failed_detail": failed.detail if failed else None,
                           "item_id": item_id}
    if upload is not None:
        finished = [s.finished_ms for s in progress.stages if s.finished_ms is not None]
        out.update(key=upload.key, user_id=upload.user_id,
                   correlation_id=upload.correlation_id,
                   duration_ms=max(finished) - upload.started_ms if progress.complete else None)
    out.update({f"{s.name}_ms": s.duration_ms for s in progress.stages if s.function})
    return out


def render_batch(updates: Iterator[list[Tracker]], *, total: int, as_json: bool) -> list[Tracker]:
    """A progress bar while many uploads flow; then one row per upload."""
    trackers: list[Tracker] = []
    if as_json or not sys.stdout.isatty():
        for update in updates:
            trackers = update
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        columns = ("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=ui.console()) as bar:
            task = bar.add_task("embedded", total=total)
            for trackers in updates:
                bar.update(task, completed=sum(t.progress.complete for t in trackers))
    rows = [{"key": t.upload.key, "status": "done" if t.progress.complete else
             f"failed: {t.progress.failed.name}" if t.progress.failed else
             f"waiting: {t.progress.current.name}",
             "seconds": round((max(s.finished_ms or 0 for s in t.progress.stages)
                               - t.upload.started_ms) / 1000, 2) if t.progress.complete else None,
             "detail": t.progress.failed.detail if t.progress.failed else ""}
            for t in trackers]
    if as_json:
        for row in rows:
            ui.json_line({"type": "upload", **row})
    else:
        ui.table(None, ["object", "status", "seconds", "detail"],
                 [[r["key"], r["status"], r["seconds"], r["detail"]] for r in rows])
    return trackers
