"""What one image costs, by stage: Lambda time from the functions' REPORT lines (billed
duration x memory at the architecture's price, plus the request charge) and model tokens at a
dated price table.

The arithmetic lives here as plain functions over plain data, so it can be checked against a
hand-computed fixture (tests/unit/test_cost.py); reading the REPORT lines and the recorded
usage is the caller's part. The prices are list prices on the date in `PRICES.as_of`, in USD,
for us-east-1; an operator overrides them with a JSON file of the same shape (`Prices.load`).
On the local cloud the same REPORT lines exist, so the same figures come out "as if deployed".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

GB = 1024.0  # Lambda bills memory in MB; a GB-second is 1,024 MB for one second


@dataclass(frozen=True)
class Prices:
    as_of: str
    # USD per GB-second of billed duration, by architecture.
    lambda_gb_second: Mapping[str, float]
    lambda_request: float  # USD per request
    # USD per million tokens, by model: {"input": ..., "output": ...} ("input" only for
    # embedding models, whose usage is one token count).
    tokens_per_million: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, base: Prices | None = None) -> Prices:
        """`base` with the fields (and models) a JSON file gives replaced."""
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a JSON object of prices was expected")
        start = base or PRICES
        models = {**start.tokens_per_million, **data.get("tokens_per_million", {})}
        return replace(start, as_of=str(data.get("as_of", start.as_of)),
                       lambda_gb_second={**start.lambda_gb_second,
                                         **data.get("lambda_gb_second", {})},
                       lambda_request=float(data.get("lambda_request", start.lambda_request)),
                       tokens_per_million=models)


PRICES = Prices(
    as_of="2026-12-01",
    lambda_gb_second={"x86_64": 0.0000166667, "arm64": 0.0000133334},
    lambda_request=0.20 / 1_000_000,
    tokens_per_million={
        "claude-sonnet-4-6": {"input": 3.00, "output": 15.00},
        "claude-haiku-4-5": {"input": 1.00, "output": 5.00},
        "gpt-4o": {"input": 2.50, "output": 10.00},
        "gpt-4o-mini": {"input": 0.15, "output": 0.60},
        "voyage-3.5": {"input": 0.06},
        "voyage-3.5-lite": {"input": 0.02},
        "local": {"input": 0.0, "output": 0.0},
    },
)


# ------------------------------------------------------------------------- REPORT lines


@dataclass(frozen=True)
class Report:
    """One invocation's REPORT line."""

    billed_ms: float
    memory_mb: int
    init_ms: float = 0.0  # cold starts only; informational, the bill uses Billed Duration


_REPORT = re.compile(
    r"REPORT RequestId:\s*\S+.*?Billed Duration:\s*(?P<billed>[\d.]+)\s*ms"
    r".*?Memory Size:\s*(?P<memory>\d+)\s*MB(?:.*?Init Duration:\s*(?P<init>[\d.]+)\s*ms)?",
    re.DOTALL)


def parse_report(message: str) -> Report | None:
    """The figures of a Lambda REPORT log line; None for any other line."""
    match = _REPORT.search(message)
    if not match:
        return None
    return Report(billed_ms=float(match["billed"]), memory_mb=int(match["memory"]),
                  init_ms=float(match["init"] or 0.0))


# --------------------------------------------------------------------------------- usage


@dataclass(frozen=True)
class Usage:
    """Tokens a stage's provider reported, summed over the window, for one model."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0


# ---------------------------------------------------------------------------- arithmetic


@dataclass
class StageCost:
    stage: str
    invocations: int
    gb_seconds: float
    lambda_usd: float
    input_tokens: int
    output_tokens: int
    tokens_usd: float | None  # None: a model the price table does not know
    model: str | None = None

    @property
    def total_usd(self) -> float:
        return self.lambda_usd + (self.tokens_usd or 0.0)


@dataclass
class CostReport:
    architecture: str
    prices_as_of: str
    images: int
    stages: list[StageCost]
    notes: list[str] = field(default_factory=list)

    @property
    def total_usd(self) -> float:
        return sum(s.total_usd for s in self.stages)

    @property
    def per_image_usd(self) -> float | None:
        return self.total_usd / self.images if self.images else None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for stage, data in zip(self.stages, out["stages"], strict=True):
            data["total_usd"] = stage.total_usd
            data["per_image_usd"] = stage.total_usd / self.images if self.images else None
        out["total_usd"] = self.total_usd
        out["per_image_usd"] = self.per_image_usd
        return out


def stage_cost(stage: str, reports: Iterable[Report], usage: Usage | None, *,
               architecture: str, prices: Prices) -> StageCost:
    rows = list(reports)
    gb_seconds = sum(r.billed_ms / 1000.0 * r.memory_mb / GB for r in rows)
    lambda_usd = (gb_seconds * prices.lambda_gb_second[architecture]
                  + len(rows) * prices.lambda_request)
    tokens_usd: float | None = 0.0
    if usage is not None:
        table = prices.tokens_per_million.get(usage.model)
        tokens_usd = None if table is None else (
            usage.input_tokens * table.get("input", 0.0)
            + usage.output_tokens * table.get("output", 0.0)) / 1_000_000
    return StageCost(stage=stage, invocations=len(rows), gb_seconds=gb_seconds,
                     lambda_usd=lambda_usd,
                     input_tokens=usage.input_tokens if usage else 0,
                     output_tokens=usage.output_tokens if usage else 0,
                     tokens_usd=tokens_usd, model=usage.model if usage else None)


def compute(reports: Mapping[str, Iterable[Report]], usage: Mapping[str, Usage], *,
            images: int, architecture: str = "x86_64", prices: Prices = PRICES) -> CostReport:
    """Cost per stage and in total over a window in which `images` images went through."""
    if architecture not in prices.lambda_gb_second:
        raise ValueError(f"no Lambda price for architecture {architecture!r}")
    stages = [stage_cost(stage, rows, usage.get(stage), architecture=architecture,
                         prices=prices) for stage, rows in reports.items()]
    notes = [f"{s.stage}: no price for model {s.model!r} in the price table (as of "
             f"{prices.as_of}); its tokens are counted but not priced"
             for s in stages if s.tokens_usd is None]
    return CostReport(architecture=architecture, prices_as_of=prices.as_of, images=images,
                      stages=stages, notes=notes)


# ------------------------------------------------------------------------ from the logs

USAGE_NOT_RECORDED = ("the providers' token usage is not recorded with the rows yet: token "
                      "costs are not included")


def read_reports(logs: Any, log_group: str, *, since_ms: int,
                 until_ms: int | None = None) -> list[Report]:
    """Every REPORT line of one log group in the window (an absent group has none)."""
    from collections_ops import errors

    kwargs: dict[str, Any] = {"logGroupName": log_group, "startTime": since_ms,
                              "filterPattern": '"REPORT RequestId"'}
    if until_ms is not None:
        kwargs["endTime"] = until_ms
    found: list[Report] = []
    try:
        for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
            for event in page.get("events", []):
                report = parse_report(str(event.get("message", "")))
                if report is not None:
                    found.append(report)
    except Exception as exc:
        if errors.aws_error_code(exc) == "ResourceNotFoundException":
            return []
        raise
    return found


def collect(logs: Any, env: Any, *, since_ms: int, until_ms: int | None = None,
            prices: Prices = PRICES) -> CostReport:
    """The cost report of `env` (a pipeline.Environment) over a window, from its functions'
    REPORT lines at the environment's architecture; one processor invocation is one image
    (S3 sends one record per notification)."""
    from collections_ops import pipeline

    reports = {fn.key: read_reports(logs, fn.log_group(env.name), since_ms=since_ms,
                                    until_ms=until_ms) for fn in pipeline.FUNCTIONS}
    report = compute(reports, {}, images=len(reports[pipeline.IMAGE_PROCESSOR.key]),
                     architecture=env.architecture, prices=prices)
    report.notes.append(USAGE_NOT_RECORDED)
    return report
