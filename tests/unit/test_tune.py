"""Memory right-sizing: the recommendation of each strategy on synthetic timings, the outlier
dropping, the cost arithmetic against figures worked out by hand, and the AWS invoker against a
fake Lambda API (memory updates, waiting for them, the REPORT line, putting things back)."""

from __future__ import annotations

import base64
import io
import json
import math
from collections.abc import Callable
from typing import Any

import pytest

from collections_ops import errors
from collections_ops.services import tune as t

X86 = 0.0000166667
ARM = 0.0000133334
REQUEST = 0.0000002

# A function that is CPU-bound up to 1,536 MB, then barely faster: 100 ms of fixed work plus
# compute that halves when memory doubles.
#   MB     ms     GB-s (ms/1000 * MB/1024)
#   512    6100   3.05
#   1024   3100   3.10
#   1536   2100   3.15
#   2048   2000   4.00
#   3008   1950   5.728125
# balanced, w = 0.5, each figure over the worst (cost 5.728125 GB-s, time 6100 ms):
#   512  .5*3.05/5.728 + .5*6100/6100 = .766    1024 .5*3.10/5.728 + .5*3100/6100 = .525
#   1536 .5*3.15/5.728 + .5*2100/6100 = .447    2048 .5*4.00/5.728 + .5*2000/6100 = .513
#   3008 .5*5.728/5.728 + .5*1950/6100 = .660
# (the request price adds the same $0.0000002 to every size and moves none of these.)
KNEE = {512: 6100.0, 1024: 3100.0, 1536: 2100.0, 2048: 2000.0, 3008: 1950.0}


def steady(timings: dict[int, float]) -> Callable[[int], float]:
    return lambda memory: timings[memory]


def plateau(memory: int) -> float:
    """Duration proportional to 1/memory until 1,536 MB, flat above."""
    return 100 + 3_072_000 / min(memory, 1536)


# --------------------------------------------------------------------------- cost


def test_cost_is_billed_milliseconds_times_gigabytes_times_price_plus_the_request():
    # 100.2 ms bills as 101 ms: 0.101 s * 1 GB * 0.0000166667 = 0.00000168333667, + 0.0000002
    assert t.invocation_cost(100.2, 1024, price_per_gb_s=X86) == pytest.approx(
        0.00000188333667, rel=1e-12)
    # 250 ms at 512 MB: 0.25 s * 0.5 GB * 0.0000166667 = 0.00000208333750, + 0.0000002
    assert t.invocation_cost(250, 512, price_per_gb_s=X86) == pytest.approx(
        0.00000228333750, rel=1e-12)
    # 1 s at 2048 MB on arm64: 1 s * 2 GB * 0.0000133334 = 0.0000266668, + 0.0000002
    assert t.invocation_cost(1000, 2048, price_per_gb_s=ARM) == pytest.approx(
        0.0000268668, rel=1e-12)


def test_the_table_carries_the_hand_computed_cost_per_size():
    result = t.tune(steady({1024: 200.0, 2048: 120.5}), memory_sizes=(2048, 1024), runs=3)
    rows = {row["memory_mb"]: row for row in result.table()}
    # 200 ms * 1 GB = 0.2 GB-s -> 0.00000333334 + 0.0000002 = 0.00000353334
    assert rows[1024]["cost_usd"] == pytest.approx(0.00000353334, rel=1e-12)
    # 120.5 ms bills 121 ms; * 2 GB = 0.242 GB-s -> 0.0000040333414 + 0.0000002
    assert rows[2048]["cost_usd"] == pytest.approx(0.0000042333414, rel=1e-12)
    assert rows[2048]["cost_per_million_usd"] == pytest.approx(4.2333, abs=1e-4)
    assert [row["memory_mb"] for row in result.table()] == [1024, 2048]


def test_the_architecture_selects_its_price_and_an_explicit_price_wins():
    invoker = steady({1024: 1000.0})
    assert t.tune(invoker, memory_sizes=(1024,), arch="arm64").price_per_gb_s == ARM
    assert t.tune(invoker, memory_sizes=(1024,)).price_per_gb_s == X86
    custom = t.tune(invoker, memory_sizes=(1024,), price_per_gb_s=0.00002, price_per_request=0)
    assert custom.recommended.cost_usd == pytest.approx(0.00002)


@pytest.mark.parametrize("arch", ["x86_64", "arm64"])
def test_tune_prices_a_run_as_cost_charges_it(arch: str, tmp_path: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """One dated table for both: what tune says a size costs is what `collections cost`
    charges for that invocation, at the environment's architecture and its overridden
    prices (the table `collections tune` is given)."""
    from dataclasses import replace

    from collections_ops import pipeline
    from collections_ops.services import cost

    (tmp_path / "collections.toml").write_text(
        '[environments.dev.prices]\nas_of = "2027-03-01"\nlambda_request = 0.0000003\n'
        '[environments.dev.prices.lambda_gb_second]\narm64 = 0.0000120000\n')
    monkeypatch.chdir(tmp_path)
    env = replace(pipeline.environment("dev"), architecture=arch)
    prices = cost.environment_prices(env)
    result = t.tune(steady({1024: 250.4, 2048: 130.0}), memory_sizes=(1024, 2048), runs=3,
                    arch=env.architecture, prices=prices)
    assert (result.price_per_gb_s, result.price_per_request, result.prices_as_of) == (
        prices.lambda_gb_second[arch], 0.0000003, "2027-03-01")
    for m in result.measurements:
        # Lambda's REPORT line bills the duration rounded up to the millisecond
        charged = cost.compute({"fn": [cost.Report(billed_ms=math.ceil(m.average_ms),
                                                   memory_mb=m.memory_mb)]}, {}, images=1,
                               architecture=arch, prices=prices)
        assert m.cost_usd == pytest.approx(charged.total_usd, rel=1e-12)
    # arm64 is the cheaper architecture in the table both read
    other = t.tune(steady({1024: 250.4}), memory_sizes=(1024,), runs=3, prices=prices,
                   arch="x86_64" if arch == "arm64" else "arm64")
    cheaper, dearer = sorted([result.measurements[0].cost_usd, other.measurements[0].cost_usd])
    assert (result.measurements[0].cost_usd == cheaper) is (arch == "arm64") and cheaper < dearer


def test_without_a_table_tune_reads_the_definitions() -> None:
    from collections_ops import pipeline

    result = t.tune(steady({1024: 1000.0}), memory_sizes=(1024,), arch="arm64")
    assert (result.price_per_gb_s, result.price_per_request, result.prices_as_of) == (
        pipeline.PRICES.lambda_gb_second["arm64"], pipeline.PRICES.lambda_request,
        pipeline.PRICES.as_of)


# --------------------------------------------------------------------------- strategies


@pytest.mark.parametrize(("strategy", "expected"), [
    ("cost", 512), ("speed", 3008), ("balanced", 1536)])
def test_each_strategy_recommends_its_size(strategy, expected):
    result = t.tune(steady(KNEE), strategy=strategy)
    assert result.recommended.memory_mb == expected
    assert [row["memory_mb"] for row in result.table() if row["recommended"]] == [expected]


def test_balanced_scores_are_the_weighted_normalized_sum():
    result = t.tune(steady(KNEE), strategy="balanced")
    scores = {m.memory_mb: m.score for m in result.measurements}
    assert scores == pytest.approx(
        {512: 0.766, 1024: 0.525, 1536: 0.447, 2048: 0.513, 3008: 0.660}, abs=1e-3)


def test_balanced_weight_slides_between_speed_and_cost():
    assert t.tune(steady(KNEE), balanced_weight=1.0).recommended.memory_mb == 512
    assert t.tune(steady(KNEE), balanced_weight=0.0).recommended.memory_mb == 3008


def test_past_the_plateau_speed_pays_for_no_extra_memory():
    # 1536, 2048 and 3008 MB are equally fast: the tie goes to the cheapest.
    assert t.tune(plateau, strategy="speed").recommended.memory_mb == 1536
    assert t.tune(plateau, strategy="balanced").recommended.memory_mb == 1536
    assert t.tune(plateau, strategy="cost").recommended.memory_mb == 512


def test_a_cost_tie_goes_to_the_faster_size():
    # Pure 1/memory scaling: every size costs the same, so the fastest one wins.
    flat = t.tune(lambda m: 1_024_000 / m, memory_sizes=(512, 1024, 2048), strategy="cost",
                  price_per_request=0)
    assert len({round(m.cost_usd, 15) for m in flat.measurements}) == 1
    assert flat.recommended.memory_mb == 2048


# --------------------------------------------------------------------------- outliers


def test_cold_start_and_lucky_run_are_dropped():
    runs = {1024: iter([900.0, 100.0, 101.0, 99.0, 20.0])}
    result = t.tune(lambda m: next(runs[m]), memory_sizes=(1024,), runs=5)
    (m,) = result.measurements
    assert m.durations_ms == (900.0, 100.0, 101.0, 99.0, 20.0)
    assert m.kept_ms == (99.0, 100.0, 101.0)
    assert m.average_ms == 100.0
    # cost averages the kept runs: (99 + 100 + 101) ms at 1 GB
    assert m.cost_usd == pytest.approx(0.100 * X86 + REQUEST, rel=1e-12)


@pytest.mark.parametrize(("durations", "kept"), [
    ([5, 1, 3, 2, 4], [2, 3, 4]),
    ([10, 1, 2, 3, 4, 5, 6, 7, 8, 9], [3, 4, 5, 6, 7, 8]),
    ([2, 1], [1, 2]),
    ([7], [7]),
])
def test_drop_outliers_trims_a_fifth_at_each_end(durations, kept):
    assert t.drop_outliers(durations) == kept


def test_without_discarding_every_run_counts():
    assert t.drop_outliers([900, 100, 20], discard_top_bottom=0) == [20, 100, 900]


def test_sizes_are_measured_in_ascending_order_runs_times_each():
    calls: list[int] = []

    def invoker(memory: int) -> float:
        calls.append(memory)
        return 100.0

    t.tune(invoker, memory_sizes=(2048, 512, 1024, 512), runs=3)
    assert calls == [512] * 3 + [1024] * 3 + [2048] * 3


@pytest.mark.parametrize("kwargs", [
    {"strategy": "cheapest"}, {"arch": "sparc"}, {"memory_sizes": (64,)},
    {"memory_sizes": ()}, {"runs": 0}])
def test_bad_arguments_are_usage_errors(kwargs):
    with pytest.raises(errors.UsageError):
        t.tune(steady(KNEE), **kwargs)


# --------------------------------------------------------------------------- chart


def test_chart_draws_one_bar_per_size_and_marks_the_recommendation():
    result = t.tune(steady(KNEE), strategy="balanced")
    lines = t.chart(result, width=20)
    assert len(lines) == 5
    assert lines[0].startswith("   512 MB " + "█" * 20)  # the slowest fills the width
    assert "◀" in lines[2] and "1536 MB" in lines[2]
    assert sum("◀" in line for line in lines) == 1
    assert "6,100.0 ms" in lines[0]
    cost_lines = t.chart(result, width=20, figure="cost_usd")
    assert cost_lines[4].startswith("  3008 MB " + "█" * 20)
    assert "/M" in cost_lines[4]


# --------------------------------------------------------------------------- the AWS invoker


def report_tail(billed_ms: int) -> str:
    tail = ("START RequestId: 1 Version: $LATEST\n"
            '{"message": "invocation complete"}\n'
            "END RequestId: 1\n"
            f"REPORT RequestId: 1\tDuration: {billed_ms - 0.4} ms\tBilled Duration: "
            f"{billed_ms} ms\tMemory Size: 1024 MB\tMax Memory Used: 80 MB\t\n")
    return base64.b64encode(tail.encode()).decode()


class FakeLambda:
    """The four Lambda calls the invoker makes, with updates that take one poll to finish."""

    def __init__(self, *, memory: int = 1024, variables: dict[str, str] | None = None,
                 billed: Callable[[int], int] = lambda m: 1_024_000 // m,
                 fail_update: bool = False, error: bool = False) -> None:
        self.config: dict[str, Any] = {
            "FunctionName": "collections-dev-AnalyzerLambda", "MemorySize": memory,
            "Environment": {"Variables": dict(variables or {})},
            "LastUpdateStatus": "Successful"}
        self.billed = billed
        self.fail_update = fail_update
        self.error = error
        self.updates: list[dict[str, Any]] = []
        self.invocations: list[dict[str, Any]] = []
        self._pending = 0

    def update_function_configuration(self, FunctionName: str, **changes: Any) -> dict[str, Any]:
        assert self.config["LastUpdateStatus"] != "InProgress", "updated while updating"
        self.updates.append(changes)
        self.config.update(changes)
        self.config["LastUpdateStatus"] = "InProgress"
        self._pending = 1
        return dict(self.config)

    def get_function_configuration(self, FunctionName: str) -> dict[str, Any]:
        if self.config["LastUpdateStatus"] == "InProgress":
            if self._pending:
                self._pending -= 1
                return dict(self.config)
            self.config["LastUpdateStatus"] = "Failed" if self.fail_update else "Successful"
            if self.fail_update:
                self.config["LastUpdateStatusReason"] = "EniLimitExceeded"
        return dict(self.config)

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        assert self.config["LastUpdateStatus"] == "Successful", "invoked while updating"
        self.invocations.append(kwargs)
        if self.error:
            return {"FunctionError": "Unhandled",
                    "Payload": io.BytesIO(b'{"errorMessage": "boom"}')}
        return {"StatusCode": 200, "Payload": io.BytesIO(b"{}"),
                "LogResult": report_tail(self.billed(self.config["MemorySize"]))}


@pytest.fixture
def no_sleep() -> list[float]:
    """A `sleep` that records instead of waiting (pass `no_sleep.append`)."""
    return []


def invoker_for(lam: FakeLambda, slept: list[float], **kwargs: Any) -> t.LambdaInvoker:
    return t.LambdaInvoker(lam, "collections-dev-AnalyzerLambda", {"detail": {"item_id": "x"}},
                           sleep=slept.append, **kwargs)


def test_billed_duration_is_read_from_the_report_line():
    assert t.billed_duration_ms(report_tail(1234)) == 1234.0
    with pytest.raises(t.TuneError):
        t.billed_duration_ms(base64.b64encode(b"no report here").decode())


def test_memory_is_set_once_per_size_and_each_update_is_awaited(no_sleep):
    lam = FakeLambda(memory=1024)
    result = t.tune(invoker_for(lam, no_sleep), memory_sizes=(512, 1024, 2048), runs=3)
    assert lam.updates == [{"MemorySize": 512}, {"MemorySize": 1024}, {"MemorySize": 2048}]
    assert len(lam.invocations) == 9
    assert no_sleep == [1.0, 1.0, 1.0]  # one poll while each update was in progress
    assert {m.memory_mb: m.average_ms for m in result.measurements} == {
        512: 2000.0, 1024: 1000.0, 2048: 500.0}
    call = lam.invocations[0]
    assert call["LogType"] == "Tail" and call["InvocationType"] == "RequestResponse"
    assert json.loads(call["Payload"]) == {"detail": {"item_id": "x"}}


def test_recorded_mode_overrides_the_providers_and_restore_puts_everything_back(no_sleep):
    original = {"ANALYZER_PROVIDER": "anthropic", "ANALYZER_MODEL": "claude-sonnet-4-6",
                "IMAGES_BUCKET": "collections-images-dev-1"}
    lam = FakeLambda(memory=1024, variables=original)
    invoker = invoker_for(lam, no_sleep, env_overrides=t.recorded_overrides())
    invoker(1024)
    invoker(1024)
    invoker(2048)
    # The first update carries the overrides even though the memory did not change.
    assert lam.updates[0] == {"Environment": {"Variables": {
        **original, "ANALYZER_PROVIDER": "local", "ANALYZER_MODEL": "local-pillow-v1",
        "EMBEDDING_PROVIDER": "local", "EMBEDDING_MODEL": "local-hash-v1"}}}
    assert lam.updates[1] == {"MemorySize": 2048}
    invoker.restore()
    assert lam.config["MemorySize"] == 1024
    assert lam.config["Environment"] == {"Variables": original}
    assert lam.config["LastUpdateStatus"] == "Successful"


def test_restore_without_overrides_touches_only_the_memory(no_sleep):
    lam = FakeLambda(memory=1536, variables={"A": "1"})
    invoker = invoker_for(lam, no_sleep)
    invoker(512)
    invoker.restore()
    assert lam.updates[-1] == {"MemorySize": 1536}


def test_a_failing_function_stops_the_tuning(no_sleep):
    with pytest.raises(t.TuneError, match=r"failed at 512 MB: .*boom"):
        t.tune(invoker_for(FakeLambda(error=True), no_sleep), memory_sizes=(512,))


def test_a_failed_update_is_reported_with_its_reason(no_sleep):
    with pytest.raises(t.TuneError, match="EniLimitExceeded"):
        invoker_for(FakeLambda(fail_update=True), no_sleep)(512)


def test_an_update_that_never_settles_times_out(no_sleep):
    lam = FakeLambda()
    lam.update_function_configuration(FunctionName="f", MemorySize=512)
    lam._pending = 10**6
    with pytest.raises(t.TuneError, match="still updating"):
        t.wait_for_update(lam, "f", sleep=no_sleep.append, timeout_s=5)
    assert no_sleep == [1.0] * 5


def test_apply_refuses_a_memory_lambda_refuses():
    # `--apply` publishes a version and moves `live` (tests/integration/test_versions.py);
    # a size Lambda would refuse is refused before any call.
    from collections_ops.pipeline import ANALYZER, environment

    with pytest.raises(errors.UsageError, match="128-10240 MB"):
        t.apply_live(FakeLambda(), environment("dev"), ANALYZER, 20_000)
