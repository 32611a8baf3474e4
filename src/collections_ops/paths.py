"""Where the shipped parts live: the Lambda packages, the CDK app and the sample images.

From a wheel they are inside the package (`_bundled/`); from a source checkout they are at the
top of the repository.

The functions' shared package, `collections_core`, exists twice: installed beside this package
(the wheel's top-level `collections_core`, or the editable install's `lambdas/shared`), which
is the one the CLI imports, and inside `lambdas_root()/shared`, which is what the functions
are deployed with. The local cloud's processes that stand in for AWS (the supervisor, which
migrates as the operations function does on AWS, and the dispatchers, which run the handlers)
must run the deployed copy -- with `COLLECTIONS_LAMBDAS_DIR`, an operator's working copy --
and call `add_shared_to_path` first thing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_BUNDLED = _PACKAGE / "_bundled"
_REPO = _PACKAGE.parent.parent


def _find(name: str) -> Path:
    for candidate in (_BUNDLED / name, _REPO / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the shipped {name!r} directory")


def lambdas_root() -> Path:
    """COLLECTIONS_LAMBDAS_DIR, if set (a working copy the local cloud runs and reloads),
    else the shipped handlers."""
    override = os.environ.get("COLLECTIONS_LAMBDAS_DIR")
    if override:
        return Path(override).resolve()
    return _find("lambdas")


def infrastructure_root() -> Path:
    return _find("infrastructure")


def samples_root() -> Path:
    return _find("samples")


def lambda_code_dir(code_dir: str) -> Path:
    return lambdas_root() / code_dir


# What a function's folder holds that is not its code: the dependency lists `build` reads.
NOT_CODE = frozenset({"requirements.txt", "requirements.lock"})


def function_files(folder: Path) -> list[Path]:
    """A function's own files, as its bundle and the local cloud's versions carry them: its
    modules and the data files they read (e.g. the analyzer's ImageNet class names), not its
    dependency lists, caches or hidden files. Sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name not in NOT_CODE
                  and not p.name.startswith(".") and p.suffix != ".pyc")


def shared_code_dir() -> Path:
    return lambdas_root() / "shared"


def add_shared_to_path() -> None:
    """Make this process import the deployed `collections_core` (`shared_code_dir()`), not the
    installed one: for the local cloud's processes that emulate the functions' runtime, never
    for the CLI. It must run before `collections_core` is first imported in the process (an
    imported module is not looked up again); if the process already imported another copy,
    this raises rather than let the local cloud run code other than what it deployed."""
    shared = shared_code_dir()
    if str(shared) not in sys.path:
        sys.path.insert(0, str(shared))
    core = sys.modules.get("collections_core")
    origin = getattr(core, "__file__", None)
    if origin and Path(origin).resolve().parent.parent != shared.resolve():
        raise RuntimeError(f"collections_core was imported from {Path(origin).parent} before "
                           f"the deployed copy in {shared} was put on the path")
