#!/usr/bin/env python3
"""CDK entry point (`cdk synth`, `cdk deploy CollectionsComputeStack-dev`, ...).

The stacks are built from the pipeline definition in `collections_ops.pipeline`; when the
package is not installed (a bare checkout), it is imported from `../src`.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

try:
    import collections_ops.pipeline  # noqa: F401 -- only probing that it is importable
except ImportError:
    sys.path.insert(0, str(HERE.parent / "src"))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import aws_cdk as cdk  # noqa: E402

from stacks import code  # noqa: E402
from stacks.application import build  # noqa: E402
from stacks.settings import ConfigurationError  # noqa: E402


def main() -> None:
    app = cdk.App()
    try:
        build(app)
        app.synth()
    except (ConfigurationError, code.BundleError, RuntimeError) as exc:
        # One line that says what to do, not a jsii stack trace.
        if not code.FAILURES and not isinstance(exc, ConfigurationError | code.BundleError):
            raise
        message = code.FAILURES[0] if code.FAILURES else str(exc)
        print(f"collections: {message}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
