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

from stacks.application import build  # noqa: E402


def main() -> None:
    app = cdk.App()
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
