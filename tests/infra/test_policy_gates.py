"""The gates every synthesized template passes: cdk-nag (AwsSolutions + Serverless) with only
reasoned, finding-specific acknowledgments, and cfn-lint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from collections_ops import pipeline as definition
from tests.infra.support import INFRA_DIR, SynthesizedApp

ACKNOWLEDGED_RULES = "aws:cdk:acknowledged-rules"
MIN_REASON_LENGTH = 80
NAG_PACK_PREFIXES = ("AwsSolutions::", "Serverless::")


def _violations(report: dict[str, Any]) -> list[str]:
    return [f"{plugin['pluginName']}: {violation['ruleName']} at {construct['constructPath']}"
            for plugin in report["pluginReports"]
            for violation in plugin["violations"]
            for construct in violation["violatingConstructs"]]


def _acknowledged(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for plugin in report["pluginReports"] for v in plugin.get("suppressedViolations", [])]


def test_cdk_nag_packs_ran(any_app: SynthesizedApp) -> None:
    plugins = {p["pluginName"] for p in any_app.validation_report["pluginReports"]}
    assert {"AwsSolutions", "Serverless"} <= plugins


def test_cdk_nag_reports_nothing_unacknowledged(any_app: SynthesizedApp) -> None:
    report = any_app.validation_report
    assert _violations(report) == [], any_app.validation_error
    assert any_app.validation_error is None
    assert all(p["conclusion"] == "success" for p in report["pluginReports"])


def test_every_acknowledgment_says_why(any_app: SynthesizedApp) -> None:
    for acknowledged in _acknowledged(any_app.validation_report):
        assert len(acknowledged["reason"]) >= MIN_REASON_LENGTH, acknowledged["acknowledgedId"]


def test_no_acknowledgment_is_stack_wide(any_app: SynthesizedApp) -> None:
    stack_names = {p.name.removesuffix(".template.json") for p in any_app.template_files}
    for acknowledged in _acknowledged(any_app.validation_report):
        assert acknowledged["acknowledgedAt"] not in stack_names, acknowledged["acknowledgedId"]


def test_no_acknowledgment_is_stale(any_app: SynthesizedApp) -> None:
    """Every cdk-nag acknowledgment in the app silences a finding that really occurs.
    (aws-cdk-lib acknowledges some of its own built-in validation rules; those are not ours.)"""
    used = {(a["acknowledgedAt"], a["acknowledgedId"])
            for a in _acknowledged(any_app.validation_report)}
    declared = {(path.lstrip("/"), rule_id)
                for path, entries in any_app.stack_metadata().items()
                for entry in entries if entry["type"] == ACKNOWLEDGED_RULES
                for rule_id in entry["data"] if rule_id.startswith(NAG_PACK_PREFIXES)}
    assert declared
    assert declared - used == set()


def test_iam_wildcards_are_acknowledged_one_by_one(existing_db_app: SynthesizedApp) -> None:
    ids = {a["acknowledgedId"] for a in _acknowledged(existing_db_app.validation_report)}
    wildcard = [i for i in ids if i.startswith("AwsSolutions::AwsSolutions-IAM5")]
    assert wildcard
    assert all("[Resource::" in i for i in wildcard)


def _cfn_lint_ignored_checks() -> list[str]:
    config = yaml.safe_load((INFRA_DIR / ".cfnlintrc.yaml").read_text())
    return list(config.get("ignore_checks", []))


def test_cfn_lint_is_clean(any_app: SynthesizedApp) -> None:
    from cfnlint.api import ManualArgs, lint_file

    regions = sorted({e.region for e in definition.ENVIRONMENTS.values() if not e.is_local})
    config = ManualArgs(regions=regions, ignore_checks=_cfn_lint_ignored_checks())
    problems = [f"{Path(str(m.filename)).name}:{m.linenumber} {m.rule.id} {m.message}"
                for path in any_app.template_files
                for m in lint_file(path, config=config)]
    assert problems == []
