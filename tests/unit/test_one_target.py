"""Commands and services ask the environment's target (`collections_ops.target`) for what
differs between AWS and the local cloud, and `collections_ops.aws` for what an AWS error code
means: neither branches on `is_local` nor spells a botocore error code. Read from the source
(ast), so a new branch or a new hand-written code comparison fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from collections_ops import aws

PACKAGE = Path(aws.__file__).resolve().parent
ASKING = sorted([*PACKAGE.glob("cli/**/*.py"), *PACKAGE.glob("services/**/*.py")])
# Every module outside the target layer (aws.py, target.py, context.py) and the local cloud
# (which answers with these codes: it emulates AWS).
OUTSIDE_THE_TARGET = sorted(p for p in PACKAGE.rglob("*.py")
                            if p.name not in ("aws.py", "target.py", "context.py")
                            and "localcloud" not in p.relative_to(PACKAGE).parts)
CODES = (aws.NOT_FOUND_CODES | aws.ACCESS_DENIED_CODES | aws.CONFLICT_CODES
         | aws.REFUSED_VALUE_CODES | aws.EXPIRED_CODES
         | {"ValidationError", "NoSuchLifecycleConfiguration"})


def _name(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_the_scan_sees_the_modules() -> None:
    assert len(ASKING) > 20 and any(p.name == "dlq_redrive.py" for p in ASKING)


@pytest.mark.parametrize("path", ASKING, ids=_name)
def test_no_command_or_service_branches_on_is_local(path: Path) -> None:
    uses = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr == "is_local"]
    assert not uses, f"{_name(path)}:{uses}: ask the target (ctx.target, for_environment)"


@pytest.mark.parametrize("path", OUTSIDE_THE_TARGET, ids=_name)
def test_no_module_spells_an_aws_error_code(path: Path) -> None:
    spelled = [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.Constant) and node.value in CODES]
    assert not spelled, f"{_name(path)}: {spelled}: use a predicate of collections_ops.aws"
