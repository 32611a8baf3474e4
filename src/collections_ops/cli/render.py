"""Rendering shared by several commands: checks, log lines and the status screen. Every data
string goes through `ui.text` (plain, cleaned), never through markup."""

from __future__ import annotations

import time
from typing import Any

from collections_ops.checks import Check, failures
from collections_ops.cli import ui
from collections_ops.services.logs import LogEvent

COLOURS = {"processor": "cyan", "analyzer": "magenta", "embedder": "yellow"}


def checks(title: str | None, results: list[Check], *, as_json: bool,
           glimpse: int | None = None) -> list[Check]:
    """Preflight, doctor, verify and secrets verify: one table (or JSON array); returns the
    checks that failed (warnings do not fail). With `glimpse`, a passing check's detail is cut
    to that many characters in the table (`…`); a failure's reason, and JSON, stay whole."""
    if as_json:
        ui.print_json([c.as_dict() for c in results])
    else:
        ui.table(title, ["check", "ok", "detail", "fix"],
                 [[c.name, ui.Styled("!", "yellow") if not c.ok and c.severity == "warning"
                   else ui.mark(c.ok),
                   ui.cut(c.detail, glimpse) if glimpse and c.ok else c.detail, c.fix or ""]
                  for c in results])
    return failures(results)


def log_record(line: LogEvent, *, item_id: str | None = None) -> dict[str, Any]:
    """A log line as one flat JSON object: a structured line's fields are merged in (never a
    JSON string inside JSON); a plain line keeps its text as `message`. `item_id` is the item
    the line is known to be about (a followed upload's), for a line that does not name it."""
    fields = line.fields()
    known = {"item_id": item_id} if item_id and not fields.get("item_id") else {}
    return {**fields, **known, "function": line.function_key, "timestamp": line.timestamp,
            "event_id": line.event_id, "message": fields.get("message", line.message)}


def log_text(line: LogEvent, *, item_id: str | None = None) -> Any:
    """One coloured line: time, function, item, and the message (a structured line's text)."""
    fields = line.fields()
    message = str(fields.get("message", line.message))
    stamp = time.strftime("%H:%M:%S", time.localtime(line.timestamp / 1000))
    error = fields.get("level") in ("ERROR", "CRITICAL") or message.startswith('{"errorMessage"')
    out = ui.text(stamp, "dim") + " " + ui.text(f"{line.function_key:<9}",
                                                COLOURS.get(line.function_key, "white"))
    item = fields.get("item_id") or item_id
    if item:
        out += ui.text(" ") + ui.text(item, "dim")
    return out + " " + ui.text(message, "red" if error else "")


def log_line(line: LogEvent, *, as_json: bool) -> None:
    if as_json:
        ui.json_line(log_record(line))
    else:
        ui.console().print(log_text(line), soft_wrap=True)


def status(report: dict[str, Any]) -> None:
    if "parts" in report:
        ui.table(f"local cloud — {report['endpoint_url']}", ["part", "up", "detail"],
                 [[name, ui.mark(p["up"]), p["detail"]] for name, p in report["parts"].items()])
    deployed = report.get("deployment")
    if not deployed:
        return
    ui.table(f"functions ({deployed['env']}, {deployed['region']})",
             ["function", "state", "runtime", "memory", "timeout", "reserved", "modified"],
             [[f["name"], f["state"] if f["exists"] else ui.red("missing"), f["runtime"],
               f"{f['memory']} MB" if f["memory"] else "", f"{f['timeout']} s" if f["timeout"]
               else "", f["reserved_concurrency"], f["last_modified"]]
              for f in deployed["functions"]])
    ui.table(None, ["rule", "enabled", "targets"],
             [[r["name"], ui.mark(r["enabled"]) if r["exists"] else ui.red("missing"),
               ", ".join(t.rpartition(":")[2] for t in r["targets"])]
              for r in deployed["rules"]])
    cfg = deployed["notification"] or {}
    targets = [c.get("LambdaFunctionArn") or c.get("QueueArn") or c.get("TopicArn")
               for key in ("LambdaFunctionConfigurations", "QueueConfigurations",
                           "TopicConfigurations") for c in cfg.get(key, [])]
    ui.table(None, ["bucket", "notification"],
             [[deployed["images_bucket"],
               ", ".join(str(t).rpartition(":")[2] for t in targets) or ui.red("none")]])
    ui.table(None, ["dead-letter queue", "depth"],
             [[q, ui.red("missing") if d is None else (str(d) if d == 0 else ui.red(d))]
              for q, d in deployed["dead_letter_depths"].items()])
    ui.table(None, ["parameter", "present"],
             [[name, ui.mark(present)] for name, present in deployed["parameters"].items()])


def settings(title: str, rows: list[dict[str, Any]]) -> None:
    """The environment's effective settings and where each came from (`status`, `diff`):
    every value that is not the definition's, then how many are."""
    from collections_ops import settings as operator_settings

    chosen = [r for r in rows if r["source"] != "definition"]
    ui.table(title, ["setting", "value", "from"],
             [[r["key"], operator_settings.shown(r["value"]),
               operator_settings.SOURCE_WORDS[r["source"]]] for r in chosen])
    ui.info(f"{len(rows) - len(chosen)} other settings are the definition's "
            "(-o json lists every one)" if chosen else
            f"all {len(rows)} settings are the definition's (-o json lists them)")
