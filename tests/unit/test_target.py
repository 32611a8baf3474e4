"""The target of each environment: what AWS and the local cloud do differently, asked for by
name. What the definition and the CDK app say is checked here against the target's answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from collections_ops.pipeline import FUNCTIONS, LIVE_ALIAS, environment
from collections_ops.target import AwsTarget, Delivery, LocalTarget, for_environment

ACCOUNT, REGION = "123456789012", "eu-west-1"


def test_each_environment_has_one_target() -> None:
    assert isinstance(for_environment(environment("local")), LocalTarget)
    for name in ("dev", "prod"):
        assert isinstance(for_environment(environment(name)), AwsTarget)


def test_on_aws_the_triggers_invoke_live_and_on_the_local_cloud_its_queues() -> None:
    dev, local = for_environment(environment("dev")), for_environment(environment("local"))
    for fn in FUNCTIONS:
        assert dev.trigger_arn(fn, account=ACCOUNT, region=REGION) == (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn.function_name('dev')}:{LIVE_ALIAS}")
        assert local.trigger_arn(fn, account=ACCOUNT, region=REGION) == (
            f"arn:aws:sqs:{REGION}:{ACCOUNT}:{fn.queue_name('local')}")
    assert dev.invoke_permission_on_alias() and not local.invoke_permission_on_alias()


def test_an_event_is_delivered_again_as_its_trigger_delivers_it() -> None:
    processor = next(f for f in FUNCTIONS if f.trigger.kind == "s3")
    analyzer = next(f for f in FUNCTIONS if f.trigger.kind == "eventbridge")
    dev, local = for_environment(environment("dev")), for_environment(environment("local"))
    assert dev.redelivery(processor, "s3") == Delivery("invoke", processor.function_name("dev"))
    assert dev.redelivery(analyzer, "eventbridge").describe() == (
        f"function {analyzer.function_name('dev')}:{LIVE_ALIAS} (asynchronous invoke)")
    assert local.redelivery(processor, "s3").describe() == f"queue {processor.queue_name('local')}"
    assert local.redelivery(analyzer, "eventbridge") == Delivery(
        "bus", str(analyzer.rule_name("local")))
    # To one function alone: on the local cloud its queue, whatever its trigger
    for fn in FUNCTIONS:
        assert local.delivery_to(fn) == Delivery("queue", fn.queue_name("local"))
        assert dev.delivery_to(fn) == Delivery("invoke", fn.function_name("dev"))


def test_the_account_is_known_without_sts_only_where_it_is_fixed() -> None:
    assert for_environment(environment("local")).known_account is not None
    dev = environment("dev")
    assert for_environment(dev).known_account == dev.account  # None: ask the credentials


def test_only_the_local_target_has_a_cloud_on_this_machine(tmp_path: Path) -> None:
    assert for_environment(environment("dev"), tmp_path).local_cloud is None
    cloud = for_environment(environment("local"), tmp_path).local_cloud
    assert cloud is not None and cloud.state_dir == tmp_path
    assert cloud.data_summary() == ""  # nothing started: nothing held
    with pytest.raises(ValueError):
        _ = for_environment(environment("local")).local_cloud  # no state directory given


def test_capabilities_differ_where_the_clouds_do() -> None:
    dev, local = for_environment(environment("dev")), for_environment(environment("local"))
    for flag in ("deploys_with_cdk", "stack_owns_alarms", "has_operations_function",
                 "publishes_role_urls", "calls_hosted_providers", "records_settings"):
        assert getattr(dev, flag) is True and getattr(local, flag) is False, flag
    assert dev.role_urls_fix() == "collections db migrate --env dev"
    assert local.role_urls_fix() == "collections deploy local"
