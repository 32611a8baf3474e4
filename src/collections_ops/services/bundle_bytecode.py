"""Bytecode for the Lambda runtime's Python, compiled into every bundle.

Lambda's `/var/task` is read-only, so an interpreter that finds no `__pycache__` compiles every
module it imports on every cold start (seconds for anthropic or voyageai; figures in
docs/benchmarks.md). Bytecode is only valid for the interpreter version that wrote it, so it is
compiled by a CPython of the runtime's version found on this machine (`COLLECTIONS_BUILD_PYTHON`,
`pythonX.Y` on PATH, pyenv, uv), never by the Python running the build: finding that
interpreter and running it over a bundle is this module, apart from assembling the bundle
(`build.py`). The `.pyc` files use unchecked-hash invalidation: a timestamp-checked `.pyc` is
rejected when the source's mtime differs from the one recorded, and the deployment zip does not
keep build-time mtimes. When no such interpreter exists the bundle is still built, without
bytecode, and the report says so and how to get one (`missing_interpreter_note`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from collections_ops.services.bundle_deps import BuildError

# An interpreter to compile the bundles' bytecode with (its version must be the runtime's).
ENV_BUILD_PYTHON = "COLLECTIONS_BUILD_PYTHON"
# Where the bundle's code lives on Lambda: the file names recorded in the bytecode.
LAMBDA_TASK_ROOT = "/var/task"


@dataclass(frozen=True)
class Interpreter:
    """A CPython that can compile bytecode for the runtime."""

    path: str
    version: str  # full version, e.g. 3.12.1

    @property
    def label(self) -> str:
        return f"CPython {self.version} at {self.path}"


def _probe(candidate: str) -> Interpreter | None:
    try:
        result = subprocess.run(
            [candidate, "-I", "-S", "-c",
             "import platform, sys; print(sys.implementation.name, platform.python_version())"],
            capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    name, _, version = result.stdout.strip().partition(" ")
    if result.returncode != 0 or name != "cpython" or not version:
        return None
    return Interpreter(path=candidate, version=version)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _version_key(path: Path, python_version: str) -> tuple[int, ...]:
    # pyenv/uv directory names start with the full version: newest patch release first.
    match = re.search(re.escape(python_version) + r"\.(\d+)", str(path))
    return (int(match.group(1)),) if match else (-1,)


def interpreter_candidates(python_version: str) -> list[str]:
    """Where a CPython of `python_version` may be on this machine, most specific first."""
    exe = f"python{python_version}"
    found: list[str] = []
    if _minor(".".join(str(p) for p in sys.version_info[:3])) == python_version:
        found.append(sys.executable)
    on_path = shutil.which(exe)
    if on_path:
        found.append(on_path)
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    uv_root = Path(os.environ.get("UV_PYTHON_INSTALL_DIR")
                   or Path.home() / ".local" / "share" / "uv" / "python")
    for pattern_root, pattern in ((pyenv_root / "versions", f"{python_version}.*/bin/{exe}"),
                                  (uv_root, f"cpython-{python_version}.*/bin/{exe}")):
        matches = list(pattern_root.glob(pattern))
        found.extend(str(p) for p in sorted(matches, key=lambda p: _version_key(p, python_version),
                                            reverse=True))
    found.extend(f"{d}/{exe}" for d in ("/usr/local/bin", "/usr/bin"))
    unique: list[str] = []
    for candidate in found:
        if candidate not in unique:
            unique.append(candidate)
    return unique


def find_interpreter(python_version: str, *,
                     explicit: str | Path | None = None) -> Interpreter | None:
    """A CPython of `python_version` (`3.12`) on this machine: `explicit`, else
    `$COLLECTIONS_BUILD_PYTHON`, else the first candidate that runs and has that version.
    An interpreter asked for by name that is not of that version is an error, not a skip."""
    asked = str(explicit) if explicit is not None else os.environ.get(ENV_BUILD_PYTHON) or None
    if asked is not None:
        found = _probe(asked)
        if found is None or _minor(found.version) != python_version:
            what = f"CPython {found.version}" if found else "not a runnable CPython"
            raise BuildError(
                f"{asked} ({ENV_BUILD_PYTHON if explicit is None else 'compile_python'}) is "
                f"{what}; the bundles' bytecode must be compiled by CPython {python_version}",
                f"point it at a python{python_version}, or unset it to search this machine")
        return found
    for candidate in interpreter_candidates(python_version):
        found = _probe(candidate)
        if found is not None and _minor(found.version) == python_version:
            return found
    return None


def missing_interpreter_note(python_version: str) -> str:
    return (f"no CPython {python_version} found on this machine: the bundles have no bytecode, "
            "so every cold start compiles each module it imports (seconds for the analyzer). "
            f"Install one (`pyenv install {python_version}`, `uv python install "
            f"{python_version}` or the distribution's python{python_version}) or set "
            f"{ENV_BUILD_PYTHON} to one, then build again.")


# Run by the runtime-version interpreter over a bundle: every module gets the bytecode of its
# current source, and no other .pyc stays. A .pyc already there is kept when it is this
# interpreter's, unchecked-hash, and of the same source bytes (a cached build's vendored
# packages: their sources did not change, and recompiling 14,000 files of the analyzer's cost
# ~20 s per deploy); anything else in a __pycache__ -- another interpreter's cache left by a
# local run, a timestamp-checked .pyc, one whose source is gone or changed -- is removed, so a
# module that does not compile never ships a stale unchecked .pyc that Lambda would trust.
_COMPILE_SCRIPT = """
import importlib.util, json, multiprocessing, os, py_compile, sys
from concurrent.futures import ProcessPoolExecutor
bundle, ddir, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
MODE = py_compile.PycInvalidationMode.UNCHECKED_HASH

def current(source, cache):
    try:
        with open(cache, "rb") as f:
            header = f.read(16)
        with open(source, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return (header[:4] == importlib.util.MAGIC_NUMBER and header[4:8] == b"\\x01\\0\\0\\0"
            and header[8:16] == importlib.util.source_hash(data))

def compile_one(job):
    source, dfile = job
    try:
        py_compile.compile(source, dfile=dfile, doraise=True, invalidation_mode=MODE)
        return None
    except Exception:
        return source

sources, todo, wanted = [], [], set()
for root, dirs, files in os.walk(bundle):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    for name in files:
        if name.endswith(".py"):
            path = os.path.join(root, name)
            cache = importlib.util.cache_from_source(path)
            sources.append(path)
            wanted.add(cache)
            if not current(path, cache):
                todo.append((path, os.path.join(ddir, os.path.relpath(path, bundle))))
stale = {importlib.util.cache_from_source(source) for source, _ in todo}
for root, dirs, files in os.walk(bundle):
    if os.path.basename(root) == "__pycache__":
        for name in files:
            path = os.path.join(root, name)
            if path not in wanted or path in stale:
                os.remove(path)
if workers > 1 and len(todo) > 50 and "fork" in multiprocessing.get_all_start_methods():
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        failed = [s for s in pool.map(compile_one, todo, chunksize=64) if s]
else:
    failed = [s for s in map(compile_one, todo) if s]
compiled = sum(1 for s in sources if os.path.exists(importlib.util.cache_from_source(s)))
print(json.dumps({"compiled": compiled, "recompiled": len(todo) - len(failed),
                  "failed": sorted(os.path.relpath(s, bundle) for s in failed)}))
"""


def compile_bundle(bundle: Path, interpreter: Interpreter, *,
                   python_version: str) -> tuple[int, list[str]]:
    """Compile every module of `bundle` with `interpreter`; returns (files compiled, notes).

    File names in the bytecode are the ones on Lambda (`/var/task/...`), so the same bundle
    built in two places is byte-for-byte the same asset. A module that does not compile under
    the runtime (a Python 2 example shipped in a wheel) is left as source and named in a note:
    importing it would fail on Lambda too.
    """
    if _minor(interpreter.version) != python_version:
        raise BuildError(f"{interpreter.label} cannot compile bytecode for Python "
                         f"{python_version}")
    workers = max(1, min(4, os.cpu_count() or 1))
    result = subprocess.run(
        [interpreter.path, "-I", "-S", "-c", _COMPILE_SCRIPT, str(bundle), LAMBDA_TASK_ROOT,
         str(workers)],
        capture_output=True, text=True, check=False, timeout=1800)
    try:
        summary = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise BuildError(f"compiling {bundle.name} with {interpreter.label} failed "
                         f"(exit {result.returncode}): {result.stderr.strip()[-1500:]}") from None
    failed = [str(f) for f in summary.get("failed", [])]
    notes = []
    if failed:
        shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
        notes.append(f"{bundle.name}: {len(failed)} module(s) do not compile under Python "
                     f"{interpreter.version} and ship as source only: {shown}")
    return int(summary.get("compiled", 0)), notes
