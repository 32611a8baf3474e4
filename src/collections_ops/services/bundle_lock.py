"""The bundles' lock: one resolution of each function's requirements.txt, the same for both
Lambda architectures, kept beside it in `lambdas/<code_dir>/requirements.lock`.

Without it, pip resolves each architecture on its own and picks the newest version that has a
wheel for that platform: psycopg-binary 3.3 publishes manylinux2014 wheels for x86_64 but not
for aarch64, so an x86_64 bundle vendored psycopg 3.3.9 and an arm64 one 3.2.13. Switching an
environment's architecture then changed its dependencies too.

`lock` resolves the whole file (with dependencies, the no-deps section included) with pip's
own resolver once per architecture, for CPython 3.12 and the same platform tags the build
uses. Where the two disagree it pins the lower version (the newer one is the one the other
platform has no wheel for) and resolves both again, until they agree. A package that only one
architecture resolves, or a version that has no wheel for one of them, is an error naming it.

The lock is a pinned `name==version` list with a header saying how it was made and a digest of
the requirements it was resolved from. `collections build` passes it to every pip step as a
constraint (`-c`); its text is part of the bundle's stamp (a new lock rebuilds); a function
whose lock is missing, or whose requirements changed since the lock was written, is refused
with the refresh command: `collections build --lock`.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from collections_ops import paths, pipeline
from collections_ops.services import build as building
from collections_ops.services import bundle_deps as deps
from collections_ops.services.bundle_deps import (
    DIGEST_KEY,
    BuildError,
    PipRunner,
    Requirements,
    lock_path,
    requirements_digest,
)

# Reading a lock is bundle_deps' (the build reads it before any pip step); these names stay
# here for the callers of `build --lock`.
from collections_ops.services.bundle_deps import LOCK_FILE as LOCK_FILE
from collections_ops.services.bundle_deps import Lock as Lock
from collections_ops.services.bundle_deps import current as current

# Resolutions per architecture before giving up on agreeing (each round pins what differed).
MAX_ROUNDS = 4


@dataclass
class LockReport:
    function: str
    code_dir: str
    path: Path
    packages: dict[str, str]  # canonical name -> the version locked for both architectures
    changed: bool  # the file's text is new
    # Packages the architectures first resolved differently: name -> {architecture: version}.
    aligned: dict[str, dict[str, str]] = field(default_factory=dict)
    rounds: int = 1  # resolutions per architecture
    seconds: float = 0.0


def render(requirements: Requirements, pins: Mapping[str, str], *, python_version: str,
           implementation: str, platforms: Mapping[str, str]) -> str:
    targets = ", ".join(f"{arch}: {platform}" for arch, platform in platforms.items())
    header = [
        f"# Every package pip resolves for {deps.REQUIREMENTS_FILE} (with dependencies, the",
        "# no-deps section included), at one version for every Lambda architecture",
        f"# ({targets}; {implementation}{python_version.replace('.', '')} wheels).",
        "# `collections build` installs with this file as a constraint and refuses it once",
        f"# {deps.REQUIREMENTS_FILE} has changed. Written by, and refreshed with:",
        f"#     {deps.LOCK_COMMAND}",
        f"# {DIGEST_KEY}: {requirements_digest(requirements)}",
    ]
    return "\n".join([*header, *(f"{name}=={version}" for name, version in sorted(pins.items()))]
                     ) + "\n"


def version_key(version: str) -> tuple[tuple[int, ...], int, str]:
    """Orders the versions pip's resolver picks (final releases, the odd pre- or post-release)
    well enough to tell the lower of two: the release numbers, then pre < final < post."""
    match = re.match(r"v?(\d+(?:\.\d+)*)(.*)$", version.strip().lower())
    if not match:
        return ((), 1, version)
    release = tuple(int(p) for p in match.group(1).split("."))
    while release and release[-1] == 0:
        release = release[:-1]
    rest = match.group(2).lstrip(".-_")
    # a/alpha, b/beta, c/rc/pre/preview and dev come before the release; post (r, rev, -N) after.
    rank = 1 if not rest else 0 if rest.startswith(("a", "b", "c", "rc", "pre", "dev")) else 2
    return (release, rank, rest)


def resolve_for_all(requirements: Requirements, *, function: str,
                    python_version: str = deps.DEFAULT_PYTHON_VERSION,
                    implementation: str = "cp", pip: PipRunner = deps.run_pip,
                    pip_args: Sequence[str] = (),
                    platforms: Mapping[str, str] = deps.PLATFORMS,
                    ) -> tuple[dict[str, str], dict[str, dict[str, str]], int]:
    """One set of versions every architecture in `platforms` resolves to.

    Returns (canonical name -> version, the packages that first differed: name ->
    {architecture: version}, rounds). Each round resolves every architecture with the pins so
    far; where they disagree, the lower version is pinned for the next round.
    """
    pins: dict[str, str] = {}
    first_seen: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="collections-lock-") as tmp_name:
        constraints = Path(tmp_name) / "constraints.txt"
        for rounds in range(1, MAX_ROUNDS + 1):
            constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
            resolved = {
                arch: {name: version for name, (version, _url) in deps.resolve(
                    requirements.lines, platform=platform, python_version=python_version,
                    implementation=implementation, pip=pip,
                    pip_args=(*pip_args, "-c", str(constraints)),
                    context=f"locking {function} for {arch} ({platform} / Python "
                            f"{python_version})").items()}
                for arch, platform in platforms.items()}
            differing = _differing(resolved)
            if not differing:
                return _agreed(function, resolved), first_seen, rounds
            for name, versions in differing.items():
                first_seen.setdefault(name, versions)
                pins[name] = min(versions.values(), key=version_key)
    shown = ", ".join(f"{n} ({_by_arch(v)})" for n, v in sorted(differing.items()))
    raise BuildError(f"{function}: the architectures still resolve different versions after "
                     f"{MAX_ROUNDS} rounds: {shown}",
                     "pin the package in requirements.txt to a version with wheels for both")


def _differing(resolved: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Packages every architecture resolved but at different versions."""
    names = set.intersection(*(set(r) for r in resolved.values()))
    out: dict[str, dict[str, str]] = {}
    for name in sorted(names):
        versions = {arch: r[name] for arch, r in resolved.items()}
        if len(set(versions.values())) > 1:
            out[name] = versions
    return out


def _agreed(function: str, resolved: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The one resolution, once the versions agree; a package only some architectures pull in
    cannot be locked for all of them."""
    names = set.union(*(set(r) for r in resolved.values()))
    partial = {name: [arch for arch, r in resolved.items() if name in r]
               for name in sorted(names)
               if not all(name in r for r in resolved.values())}
    if partial:
        shown = "; ".join(f"{name} only for {', '.join(archs)}" for name, archs in partial.items())
        raise BuildError(f"{function}: packages that not every architecture resolves: {shown}",
                         "a lock is one set for x86_64 and arm64: drop or pin the requirement "
                         "that pulls them in")
    first = next(iter(resolved.values()))
    return dict(sorted(first.items()))


def _by_arch(versions: Mapping[str, str]) -> str:
    return ", ".join(f"{arch} {version}" for arch, version in versions.items())


def lock(functions: Iterable[pipeline.Function | str] | None = None, *,
         lambdas_dir: Path | None = None,
         python_version: str = deps.DEFAULT_PYTHON_VERSION, implementation: str = "cp",
         pip: PipRunner = deps.run_pip, pip_args: Sequence[str] = (),
         platforms: Mapping[str, str] = deps.PLATFORMS,
         jobs: int | None = None) -> list[LockReport]:
    """Resolve and write each function's `requirements.lock` (default: every deployed
    function), afresh: the newest versions its requirements.txt allows that every
    architecture has wheels for. Functions are resolved `jobs` at a time (default: all)."""
    root = lambdas_dir if lambdas_dir is not None else paths.lambdas_root()
    selected = building.selected_functions(functions)

    def one(fn: pipeline.Function) -> LockReport:
        return _lock_one(fn, root / fn.code_dir, python_version=python_version,
                         implementation=implementation, pip=pip, pip_args=tuple(pip_args),
                         platforms=platforms)

    workers = max(1, min(jobs or len(selected), len(selected)))
    if workers == 1:
        return [one(fn) for fn in selected]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lock") as pool:
        return [f.result() for f in [pool.submit(one, fn) for fn in selected]]


def _lock_one(fn: pipeline.Function, source: Path, *, python_version: str,
              implementation: str, pip: PipRunner, pip_args: tuple[str, ...],
              platforms: Mapping[str, str]) -> LockReport:
    started = time.perf_counter()
    requirements_file = source / deps.REQUIREMENTS_FILE
    if not requirements_file.is_file():
        raise BuildError(f"{fn.key}: {requirements_file} does not exist")
    requirements = Requirements.read(requirements_file)
    pins, aligned, rounds = ({}, {}, 0) if not requirements.lines else resolve_for_all(
        requirements, function=fn.key, python_version=python_version,
        implementation=implementation, pip=pip, pip_args=pip_args, platforms=platforms)
    text = render(requirements, pins, python_version=python_version,
                  implementation=implementation, platforms=platforms)
    path = lock_path(source)
    changed = not path.is_file() or path.read_text() != text
    if changed:
        path.write_text(text)
    return LockReport(function=fn.key, code_dir=fn.code_dir, path=path, packages=pins,
                      changed=changed, aligned=aligned, rounds=rounds,
                      seconds=round(time.perf_counter() - started, 2))
