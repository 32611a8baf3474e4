"""Rendering shared by several commands: log lines and the status screen."""

from __future__ import annotations

import json
import time
from typing import Any

from collections_ops.cli import ui
from collections_ops.services.logs import LogEvent

COLOURS = {"processor": "cyan", "analyzer": "magenta", "embedder": "yellow"}


def line_markup(line: LogEvent) -> str:
    """One coloured line: time, function, and the message (from a structured line, its text)."""
    from rich.markup import escape

    fields = line.fields()
    message = str(fields.get("message", line.message))
    colour = COLOURS.get(line.function_key, "white")
    stamp = time.strftime("%H:%M:%S", time.localtime(line.timestamp / 1000))
    error = fields.get("level") in ("ERROR", "CRITICAL") or message.startswith('{"errorMessage"')
    text = f"[red]{escape(message)}[/red]" if error else escape(message)
    item = f" [dim]{escape(str(fields['item_id']))}[/dim]" if fields.get("item_id") else ""
    return (f"[dim]{stamp}[/dim] [{colour}]{line.function_key:<9}[/{colour}]{item} {text}")


def log_line(line: LogEvent, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"function": line.function_key, "timestamp": line.timestamp,
                          "message": line.message, "event_id": line.event_id}), flush=True)
    else:
        ui.console().print(line_markup(line), soft_wrap=True)


def status(report: dict[str, Any]) -> None:
    if "parts" in report:
        ui.table(f"local cloud — {report['endpoint_url']}", ["part", "up", "detail"],
                 [[name, ui.mark(p["up"]), p["detail"]] for name, p in report["parts"].items()])
    deployed = report.get("deployment")
    if not deployed:
        return
    ui.table(f"functions ({deployed['env']}, {deployed['region']})",
             ["function", "state", "runtime", "memory", "timeout", "reserved", "modified"],
             [[f["name"], f["state"] if f["exists"] else "[red]missing[/red]", f["runtime"],
               f"{f['memory']} MB" if f["memory"] else "", f"{f['timeout']} s" if f["timeout"]
               else "", f["reserved_concurrency"], f["last_modified"]]
              for f in deployed["functions"]])
    ui.table(None, ["rule", "enabled", "targets"],
             [[r["name"], ui.mark(r["enabled"]) if r["exists"] else "[red]missing[/red]",
               ", ".join(t.rpartition(":")[2] for t in r["targets"])]
              for r in deployed["rules"]])
    cfg = deployed["notification"] or {}
    targets = [c.get("LambdaFunctionArn") or c.get("QueueArn") or c.get("TopicArn")
               for key in ("LambdaFunctionConfigurations", "QueueConfigurations",
                           "TopicConfigurations") for c in cfg.get(key, [])]
    ui.table(None, ["bucket", "notification"],
             [[deployed["images_bucket"],
               ", ".join(str(t).rpartition(":")[2] for t in targets) or "[red]none[/red]"]])
    ui.table(None, ["dead-letter queue", "depth"],
             [[q, "[red]missing[/red]" if d is None else (str(d) if d == 0 else f"[red]{d}[/red]")]
              for q, d in deployed["dead_letter_depths"].items()])
    ui.table(None, ["parameter", "present"],
             [[name, ui.mark(present)] for name, present in deployed["parameters"].items()])
