"""Running the `collections` CLI as a subprocess, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run(env: dict[str, str], *args: str, input: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collections_ops", *args], env=env,
                          input=input, capture_output=True, text=True, timeout=timeout,
                          check=False)


def local_env(state: Path, **extra: str) -> dict[str, str]:
    """An environment for a local cloud of its own: no AWS settings leak in from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"COLLECTIONS_STATE_DIR": str(state), "NO_COLOR": "1", "COLUMNS": "200",
                "COLLECTIONS_ENV": "local", **extra})
    return env
