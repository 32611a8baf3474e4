"""The real wheels the bundle tests install, fetched once by an install step so that no test
reaches a package index.

tests/unit/test_build.py and tests/infra/test_cdk_cli.py build the real Lambda bundles (the
versions every `lambdas/*/requirements.lock` pins) for x86_64 and arm64 on Python 3.12 and for
this machine's Python. They install with `--no-index --find-links` from the folder this module
fills: `make wheelhouse` (part of `make setup`, so CI has it) runs `python -m tests.wheelhouse`,
which downloads every pinned wheel for each target once and records what it fetched in a
stamp; it does nothing while the stamp matches the locks. A test that finds the folder missing
or older than the locks fails and says to run it.

    COLLECTIONS_TEST_WHEELHOUSE  the folder (default: collections-wheelhouse/ in the user's
                                 cache folder, so every clone and worktree on the machine, and
                                 the next CI run, find it filled)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_WHEELHOUSE = "COLLECTIONS_TEST_WHEELHOUSE"
STAMP = ".stamp.json"
LOCAL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
# (platform, Python): the two Lambda architectures, and this machine's Python for the bundles
# that the tests import here.
TARGETS = (("manylinux2014_x86_64", "3.12"), ("manylinux2014_aarch64", "3.12"),
           ("manylinux2014_x86_64", LOCAL_PYTHON))


def path() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(os.environ.get(ENV_WHEELHOUSE) or cache / "collections-wheelhouse")


def pip_args() -> tuple[str, ...]:
    """What a pip call takes to install from the wheelhouse and nowhere else."""
    return ("--no-index", "--find-links", str(path()))


def pins() -> list[tuple[str, str]]:
    """Every (name, version) that some function's lock pins."""
    from collections_ops import paths, pipeline
    from collections_ops.services import bundle_lock

    found: set[tuple[str, str]] = set()
    for fn in pipeline.DEPLOYED_FUNCTIONS:
        lock = bundle_lock.Lock.read(paths.lambda_code_dir(fn.code_dir) / bundle_lock.LOCK_FILE)
        found.update(lock.pins.items())
    return sorted(found)


def digest() -> str:
    return hashlib.sha256(json.dumps({"pins": pins(), "targets": TARGETS}).encode()).hexdigest()


def current() -> bool:
    try:
        stamp = json.loads((path() / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(stamp, dict) and stamp.get("digest") == digest()


def missing_message() -> str:
    return (f"the test wheelhouse {path()} is missing or older than lambdas/*/requirements.lock: "
            "run `make wheelhouse` (or `python -m tests.wheelhouse`)")


def ensure() -> bool:
    """Download what the locks pin for every target unless the stamp says it is there; True
    when it downloaded."""
    if current():
        return False
    from collections_ops.services import build as b

    out = path()
    out.mkdir(parents=True, exist_ok=True)
    # A name pinned at two versions (by two functions) goes in two rounds: pip refuses a
    # requirements file that names a package twice.
    versions: dict[str, list[str]] = defaultdict(list)
    for name, version in pins():
        versions[name].append(version)
    rounds = max(len(v) for v in versions.values())
    with tempfile.TemporaryDirectory(prefix="collections-wheelhouse-") as tmp:
        for i in range(rounds):
            listing = Path(tmp) / f"round-{i}.txt"
            listing.write_text("".join(f"{n}=={v[i]}\n" for n, v in versions.items()
                                       if len(v) > i))
            for platform, python_version in TARGETS:
                print(f"wheelhouse: {platform} / Python {python_version} -> {out}", flush=True)
                result = subprocess.run(
                    [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", str(out),
                     *b.target_args(platform, python_version, "cp"), *b.QUIET_ARGS,
                     "-r", str(listing)], capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    # pip's configured extra indexes warn once per package; not the cause.
                    said = [ln for ln in (result.stderr + result.stdout).splitlines()
                            if ln.strip() and not ln.startswith("WARNING: Location")]
                    sys.exit("wheelhouse: pip download failed:\n" + "\n".join(said[-20:]))
    (out / STAMP).write_text(json.dumps({"digest": digest(), "targets": TARGETS}) + "\n")
    return True


if __name__ == "__main__":
    if not ensure():
        print(f"wheelhouse: {path()} is current")
