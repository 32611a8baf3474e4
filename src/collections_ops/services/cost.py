"""What one image costs, by stage: Lambda time from the functions' REPORT lines (billed
duration x memory at the architecture's price, plus the request charge) and model tokens, as
the providers reported them with each row, at a dated price table.

The arithmetic lives here as plain functions over plain data, so it can be checked against a
hand-computed fixture (tests/unit/test_cost.py); reading the REPORT lines and the recorded
usage is the caller's part. The prices are the environment's table (`pipeline.Prices`, dated),
overridden by the settings file and then by a JSON file of the same shape (`with_overrides`).
On the local cloud the same REPORT lines and rows exist, so the same figures come out "as if
deployed".

What the token figures are: the usage stored with each `analyses` and `embeddings` row written
or rewritten in the window -- one figure per row, the call's that produced it, so a retry or a
replay replaces a row's tokens instead of adding to them. Calls whose result was never stored
(a failed validation, an older version losing to a newer one) are not in any row and so not
counted; Lambda time, read from every invocation's REPORT line, includes them.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any

from collections_ops import aws, errors
from collections_ops.pipeline import PRICES, Prices

__all__ = ["PRICES", "Prices", "Recorded", "Report", "Usage", "collect", "compute",
           "read_recorded", "recorded_from"]

GB = 1024.0  # Lambda bills memory in MB; a GB-second is 1,024 MB for one second
FREE_PROVIDERS = ("local",)  # offline providers: no bill, whatever the model is called


# ----------------------------------------------------------------------------- prices


def with_overrides(base: Prices, data: Mapping[str, Any], where: str) -> Prices:
    """`base` with the fields (and models) that `data` gives replaced. A table that changes a
    price must carry its own date (`as_of`): a figure is only as good as the date it names."""
    known = {"as_of", "lambda_gb_second", "lambda_request", "tokens_per_million",
             "snapstart_cache_gb_second", "snapstart_restore_gb"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise errors.ConfigError(f"{where}: unknown price fields {', '.join(unknown)}",
                                 f"the fields are {', '.join(sorted(known))}")
    if set(data) - {"as_of"} and "as_of" not in data:
        raise errors.ConfigError(f"{where}: prices without a date",
                                 'add as_of = "YYYY-MM-DD", the date the prices were listed')
    as_of = data.get("as_of", base.as_of)
    try:
        date.fromisoformat(str(as_of))
    except ValueError:
        raise errors.ConfigError(f"{where}: as_of {as_of!r} is not a date (YYYY-MM-DD)") from None
    gb_second = {**base.lambda_gb_second,
                 **_prices(data.get("lambda_gb_second", {}), f"{where} lambda_gb_second")}
    request = data.get("lambda_request", base.lambda_request)
    flat = {name: data.get(name, getattr(base, name)) for name in
            ("lambda_request", "snapstart_cache_gb_second", "snapstart_restore_gb")}
    for name, value in flat.items():
        if not _is_price(value):
            raise errors.ConfigError(f"{where}: {name} must be a non-negative number")
    models = dict(base.tokens_per_million)
    table = data.get("tokens_per_million", {})
    if not isinstance(table, Mapping):
        raise errors.ConfigError(f"{where}: tokens_per_million must be a table of models")
    for model, per_kind in table.items():
        priced = _prices(per_kind, f"{where} tokens_per_million.{model}")
        if set(priced) - {"input", "output"} or not priced:
            raise errors.ConfigError(f"{where}: tokens_per_million.{model} takes input and "
                                     "output (USD per million tokens)")
        models[str(model)] = priced
    return replace(base, as_of=str(as_of), lambda_gb_second=gb_second,
                   lambda_request=float(request), tokens_per_million=models,
                   snapstart_cache_gb_second=float(flat["snapstart_cache_gb_second"]),
                   snapstart_restore_gb=float(flat["snapstart_restore_gb"]))


def load_prices(path: Path, base: Prices = PRICES) -> Prices:
    """`base` overridden by a JSON file of the same shape."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise errors.ConfigError(f"{path}: cannot read a JSON price table ({exc})") from None
    if not isinstance(data, dict):
        raise errors.ConfigError(f"{path}: a JSON object of prices was expected")
    return with_overrides(base, data, str(path))


def _is_price(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def _prices(value: Any, where: str) -> dict[str, float]:
    if not isinstance(value, Mapping) or not all(_is_price(v) for v in value.values()):
        raise errors.ConfigError(f"{where}: a table of non-negative prices was expected")
    return {str(k): float(v) for k, v in value.items()}


# ------------------------------------------------------------------------- REPORT lines


@dataclass(frozen=True)
class Report:
    """One invocation's REPORT line."""

    billed_ms: float
    memory_mb: int
    init_ms: float = 0.0  # cold starts only; informational, the bill uses Billed Duration
    restored: bool = False  # SnapStart: this invocation's environment was restored
    billed_restore_ms: float = 0.0  # charged as duration, beside the restore charge


_REPORT = re.compile(
    r"REPORT RequestId:\s*\S+.*?Billed Duration:\s*(?P<billed>[\d.]+)\s*ms"
    r".*?Memory Size:\s*(?P<memory>\d+)\s*MB(?:.*?Init Duration:\s*(?P<init>[\d.]+)\s*ms)?",
    re.DOTALL)


_RESTORE = re.compile(r"Billed Restore Duration:\s*(?P<billed>[\d.]+)\s*ms")


def parse_report(message: str) -> Report | None:
    """The figures of a Lambda REPORT log line; None for any other line."""
    match = _REPORT.search(message)
    if not match:
        return None
    restore = _RESTORE.search(message)
    return Report(billed_ms=float(match["billed"]), memory_mb=int(match["memory"]),
                  init_ms=float(match["init"] or 0.0), restored=restore is not None,
                  billed_restore_ms=float(restore["billed"]) if restore else 0.0)


# --------------------------------------------------------------------------------- usage


@dataclass(frozen=True)
class Usage:
    """Tokens one stage's provider reported for one model, summed over the rows of a window."""

    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    provider: str | None = None  # None: not recorded (embeddings written before 0004)
    rows: int = 0  # rows written in the window
    unreported: int = 0  # of which carry no usage (written before 0004, or none reported)


# ---------------------------------------------------------------------------- arithmetic


@dataclass
class ModelCost:
    model: str
    provider: str | None
    rows: int
    unreported: int
    input_tokens: int
    output_tokens: int
    tokens_usd: float | None  # None: a model the price table does not know


@dataclass
class StageCost:
    stage: str
    invocations: int
    gb_seconds: float
    lambda_usd: float  # SnapStart's charges included
    models: list[ModelCost] = field(default_factory=list)
    snapstart_usd: float = 0.0  # of lambda_usd: snapshot cache, restores, restore duration
    restores: int = 0

    @property
    def input_tokens(self) -> int:
        return sum(m.input_tokens for m in self.models)

    @property
    def output_tokens(self) -> int:
        return sum(m.output_tokens for m in self.models)

    @property
    def tokens_usd(self) -> float:
        """The priced models' tokens (see `unpriced_models` for the others)."""
        return sum(m.tokens_usd for m in self.models if m.tokens_usd is not None)

    @property
    def unpriced_models(self) -> list[str]:
        return [m.model for m in self.models if m.tokens_usd is None]

    @property
    def total_usd(self) -> float:
        return self.lambda_usd + self.tokens_usd


@dataclass
class CostReport:
    architecture: str
    prices_as_of: str
    images: int
    stages: list[StageCost]
    notes: list[str] = field(default_factory=list)
    tokens_recorded: bool = True  # False: the rows' usage could not be read at all

    @property
    def lambda_usd(self) -> float:
        return sum(s.lambda_usd for s in self.stages)

    @property
    def tokens_usd(self) -> float:
        return sum(s.tokens_usd for s in self.stages)

    @property
    def total_usd(self) -> float:
        return sum(s.total_usd for s in self.stages)

    @property
    def per_image_usd(self) -> float | None:
        return self.total_usd / self.images if self.images else None

    @property
    def complete(self) -> bool:
        """Every token read was priced and every row had its usage recorded."""
        return self.tokens_recorded and not any(
            m.tokens_usd is None or m.unreported for s in self.stages for m in s.models)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for stage, data in zip(self.stages, out["stages"], strict=True):
            data.update(input_tokens=stage.input_tokens, output_tokens=stage.output_tokens,
                        tokens_usd=stage.tokens_usd, unpriced_models=stage.unpriced_models,
                        total_usd=stage.total_usd,
                        per_image_usd=stage.total_usd / self.images if self.images else None)
        out.update(lambda_usd=self.lambda_usd, tokens_usd=self.tokens_usd,
                   input_tokens=sum(s.input_tokens for s in self.stages),
                   output_tokens=sum(s.output_tokens for s in self.stages),
                   total_usd=self.total_usd, per_image_usd=self.per_image_usd,
                   complete=self.complete)
        return out


def token_cost(usage: Usage, prices: Prices) -> float | None:
    """USD for a model's tokens; None when the table has no price for a kind of token used."""
    if usage.provider in FREE_PROVIDERS:
        return 0.0
    table = prices.tokens_per_million.get(usage.model)
    if table is None:
        return None
    usd = 0.0
    for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
        if count:
            if kind not in table:
                return None
            usd += count * table[kind] / 1_000_000
    return usd


@dataclass(frozen=True)
class SnapStart:
    """What SnapStart charges over a window: the snapshot cache of `cached_versions` versions
    of each function (at its memory) for `window_s`, and every restore the REPORT lines show."""

    window_s: float
    memory_mb: Mapping[str, int]  # stage -> the function's memory
    cached_versions: int = 1


def stage_cost(stage: str, reports: Iterable[Report], usage: Iterable[Usage], *,
               architecture: str, prices: Prices,
               snapstart: SnapStart | None = None) -> StageCost:
    rows = list(reports)
    gb_second = prices.lambda_gb_second[architecture]
    gb_seconds = sum(r.billed_ms / 1000.0 * r.memory_mb / GB for r in rows)
    lambda_usd = gb_seconds * gb_second + len(rows) * prices.lambda_request
    restored = [r for r in rows if r.restored]
    snapstart_usd = 0.0
    if snapstart is not None:
        memory_gb = snapstart.memory_mb.get(stage, 0) / GB
        snapstart_usd = (memory_gb * snapstart.window_s * snapstart.cached_versions
                         * prices.snapstart_cache_gb_second
                         + sum(r.memory_mb / GB for r in restored) * prices.snapstart_restore_gb
                         + sum(r.billed_restore_ms / 1000.0 * r.memory_mb / GB
                               for r in restored) * gb_second)
    models = [ModelCost(model=u.model, provider=u.provider, rows=u.rows, unreported=u.unreported,
                        input_tokens=u.input_tokens, output_tokens=u.output_tokens,
                        tokens_usd=token_cost(u, prices)) for u in usage]
    return StageCost(stage=stage, invocations=len(rows), gb_seconds=gb_seconds,
                     lambda_usd=lambda_usd + snapstart_usd, models=models,
                     snapstart_usd=snapstart_usd, restores=len(restored))


def compute(reports: Mapping[str, Iterable[Report]], usage: Mapping[str, Sequence[Usage]], *,
            images: int, architecture: str = "x86_64", prices: Prices = PRICES,
            snapstart: SnapStart | None = None) -> CostReport:
    """Cost per stage and in total over a window in which `images` images went through;
    with `snapstart`, SnapStart's charges too."""
    if architecture not in prices.lambda_gb_second:
        raise ValueError(f"no Lambda price for architecture {architecture!r}")
    stages = [stage_cost(stage, rows, usage.get(stage, ()), architecture=architecture,
                         prices=prices, snapstart=snapstart) for stage, rows in reports.items()]
    notes = []
    if snapstart is not None:
        notes.append(
            f"SnapStart is on: each function's snapshot cache over the {snapstart.window_s:.0f} s "
            f"window ({snapstart.cached_versions} cached version each; every published version "
            "is cached, at least 3 hours) and "
            f"{sum(s.restores for s in stages)} restores are included, at the prices of "
            f"{prices.as_of}")
    for s in stages:
        for m in s.models:
            if m.tokens_usd is None:
                notes.append(f"{s.stage}: no price for model {m.model!r} in the price table "
                             f"(as of {prices.as_of}); its {m.input_tokens + m.output_tokens} "
                             "tokens are counted but not priced: the total leaves them out")
            if m.unreported:
                notes.append(f"{s.stage}: {m.unreported} of {m.rows} rows of {m.model!r} carry "
                             "no reported usage (written before usage was recorded, or the "
                             "provider reported none): their tokens are not included")
    return CostReport(architecture=architecture, prices_as_of=prices.as_of, images=images,
                      stages=stages, notes=notes)


# ------------------------------------------------------------------ from logs and rows


def read_reports(logs: Any, log_group: str, *, since_ms: int,
                 until_ms: int | None = None) -> list[Report]:
    """Every REPORT line of one log group in the window (an absent group has none)."""
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
        if aws.is_not_found(exc):
            return []
        raise
    return found


@dataclass(frozen=True)
class Recorded:
    """What the database says of a window: the rows' usage by stage, and the images."""

    usage: Mapping[str, Sequence[Usage]]
    images: int


STAGES_WITH_TOKENS = ("analyzer", "embedder")


def recorded_from(answer: Any, where: str = "the usage query") -> Recorded:
    """The answer of the `usage` named query (collections_core/queries.py), from either
    route, as `Recorded`; its shape is checked, as anything that crosses a wire is."""

    def count(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise errors.CollectionsError(f"{where} answered a count that is not a "
                                          f"non-negative integer ({value!r:.40})",
                                          "check that the operations function's code "
                                          "matches this CLI")
        return value

    groups = answer.get("usage") if isinstance(answer, dict) else None
    if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
        raise errors.CollectionsError(f"{where} answered no list of usage groups",
                                      "check that the operations function's code matches "
                                      "this CLI")
    usage: dict[str, list[Usage]] = {}
    for group in groups:
        stage, provider, model = group.get("stage"), group.get("provider"), group.get("model")
        if (stage not in STAGES_WITH_TOKENS or not isinstance(model, str)
                or not (provider is None or isinstance(provider, str))):
            raise errors.CollectionsError(f"{where} answered a group that is not a stage's "
                                          f"model ({str(stage)[:40]!r}, {str(model)[:40]!r})",
                                          "check that the operations function's code "
                                          "matches this CLI")
        rows, unreported = count(group.get("rows")), count(group.get("unreported"))
        usage.setdefault(stage, []).append(Usage(
            model=model, provider=provider, rows=rows,
            unreported=0 if provider in FREE_PROVIDERS else unreported,
            input_tokens=count(group.get("input_tokens")),
            output_tokens=count(group.get("output_tokens"))))
    return Recorded(usage=usage, images=count(answer.get("images")))


def read_recorded(route: Any, *, since_ms: int, until_ms: int | None = None,
                  user_id: str | None = None) -> Recorded:
    """The recorded usage of the rows written in the window, by stage and model, and how many
    items were written in it, through a database route (`services.dataroute`): the same
    statements either way (the operations function's `usage` query)."""
    return recorded_from(route.usage(since_ms=since_ms, until_ms=until_ms, user_id=user_id),
                         f"{route.description} (usage)")


def collect(logs: Any, env: Any, *, since_ms: int, until_ms: int | None = None,
            prices: Prices | None = None, recorded: Recorded | None = None,
            unavailable: str | None = None) -> CostReport:
    """The cost report of `env` (a pipeline.Environment) over a window, from its functions'
    REPORT lines at the environment's architecture and what its rows record (None:
    `unavailable` says why the database could not be read). The images are the items written
    in the window; without the database, the processor's invocations (which also count S3's
    test event and redeliveries)."""
    from collections_ops import pipeline

    reports = {fn.key: read_reports(logs, fn.log_group(env.name), since_ms=since_ms,
                                    until_ms=until_ms) for fn in pipeline.FUNCTIONS}
    images = (recorded.images if recorded is not None
              else len(reports[pipeline.IMAGE_PROCESSOR.key]))
    snapstart = None
    if env.snapstart:
        until = until_ms if until_ms is not None else int(time.time() * 1000)
        snapstart = SnapStart(window_s=max(0.0, (until - since_ms) / 1000.0), memory_mb={
            fn.key: int(getattr(env, fn.memory_setting)) for fn in pipeline.FUNCTIONS})
    report = compute(reports, recorded.usage if recorded else {}, images=images,
                     architecture=env.architecture, prices=prices or env.prices,
                     snapstart=snapstart)
    if recorded is None:
        report.tokens_recorded = False
        report.notes.append(f"token costs are not included, and images are counted as "
                            f"processor invocations: {unavailable or 'the rows were not read'}")
    return report


def environment_prices(env: Any, prices_file: Path | None = None) -> Prices:
    """The environment's price table: the definition's, overridden by the settings file
    (`[prices]`, then `[environments.<env>.prices]`) and then by `prices_file` (JSON)."""
    from collections_ops import settings

    prices: Prices = env.prices
    for where, table in settings.price_overrides(env.name):
        prices = with_overrides(prices, table, where)
    return load_prices(prices_file, prices) if prices_file else prices


def recorded_through(route: Any, *, since_ms: int, until_ms: int | None = None
                     ) -> tuple[Recorded | None, str | None, Any]:
    """What the rows record, read through a database route (`Context.data_route`, called
    here): the recorded usage, or None and the reason it cannot be read (the cost of Lambda
    time stands without), and the route that answered (None when none did)."""
    try:
        chosen = route()
    except errors.CollectionsError as exc:
        return None, f"the database is not reachable ({exc.message})", None
    try:
        return read_recorded(chosen, since_ms=since_ms, until_ms=until_ms), None, chosen
    except errors.CollectionsError as exc:
        return None, exc.message + (f": {exc.hint}" if exc.hint else ""), None
