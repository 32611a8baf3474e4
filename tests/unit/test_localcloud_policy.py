"""Lambda's asynchronous-invocation timings as the local dispatcher scales them."""

from __future__ import annotations

from collections_ops.localcloud.lambda_service.retry_policy import DispatchPolicy


def test_the_default_scale_gives_retries_after_1_and_2_seconds():
    policy = DispatchPolicy.from_environ({})
    assert policy.retry_delays_s == (1, 2)  # Lambda's 1 and 2 minutes, / 60
    assert policy.max_event_age_s == 6 * 3600 / 60


def test_the_time_scale_setting_stretches_every_timing_with_lambdas_shape():
    policy = DispatchPolicy.from_environ({"COLLECTIONS_LOCAL_TIME_SCALE": "0.1"})
    assert policy.retry_delays_s == (6, 12)
    # Throttles: 1 s doubling to 5 minutes, scaled, never under SQS's 1 s granularity.
    assert [policy.throttle_delay_s(n) for n in (1, 4, 8, 9, 20)] == [1, 1, 13, 26, 30]
    real = DispatchPolicy.from_environ({"COLLECTIONS_LOCAL_TIME_SCALE": "1"})
    assert real.retry_delays_s == (60, 120)
    assert [real.throttle_delay_s(n) for n in (1, 2, 9, 10, 30)] == [1, 2, 256, 300, 300]
    assert real.max_event_age_s == 6 * 3600


def test_a_bad_time_scale_is_ignored():
    for bad in ("0", "-1", "fast"):
        assert DispatchPolicy.from_environ({"COLLECTIONS_LOCAL_TIME_SCALE": bad}).retry_delays_s \
            == (1, 2)
