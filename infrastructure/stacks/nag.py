"""cdk-nag v3 wiring: rule packs run as CDK validation plugins, and every finding we accept is
acknowledged next to the construct it applies to, with the reason a reviewer reads.

cdk-nag 3 fails synthesis on any unacknowledged error, so `cdk synth` is the gate. Findings that
carry a detail (IAM5 wildcards) are acknowledged one by one; there is no blanket suppression.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, ServerlessChecks
from constructs import IConstruct

AWS_SOLUTIONS = "AwsSolutions"
SERVERLESS = "Serverless"


def add_rule_packs(app: cdk.App) -> None:
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))


def acknowledge(scope: IConstruct, rule: str, reason: str, *, finding: str | None = None) -> None:
    """Acknowledge `rule` (e.g. `AwsSolutions-IAM5`) for everything under `scope`.

    `finding` narrows it to one finding of the rule, e.g. `Resource::*`.
    """
    pack = rule.split("-", 1)[0]
    rule_id = f"{pack}::{rule}" + (f"[{finding}]" if finding else "")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))


def rendered(scope: IConstruct, value: str) -> str:
    """`value` as cdk-nag prints it in a finding: tokens resolved, `Ref`/`GetAtt` shown as
    `<Name>`/`<Name.Attr>` -- so an acknowledgment can name exactly one finding."""
    return _render(cdk.Stack.of(scope).resolve(value))


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        (fn, arg), = value.items()
        if fn == "Ref":
            return f"<{arg}>"
        if fn == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if fn == "Fn::Join":
            separator, parts = arg
            return separator.join(_render(p) for p in parts)
    raise ValueError(f"cannot render {value!r} the way cdk-nag does")
