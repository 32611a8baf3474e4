"""Building the Lambda bundles: each function's code, the shared `collections_core` package and
its third-party wheels for the Lambda platform, in one directory per function.

    out_dir/<code_dir>/handler.py, <helper>.py, collections_core/..., <vendored packages>

The layout is what the CDK app deploys (`collections:bundleDir` / `COLLECTIONS_BUNDLE_DIR`).
This module assembles a bundle and decides when to rebuild it; what pip installs, for which
platform, at which locked versions, is `bundle_deps.py`; the bytecode for the runtime's Python
is `bundle_bytecode.py`; the checks of what a bundle holds (size, wheel tags) are
`bundle_wheels.py`.

The pip step is skipped when a stamp in the bundle says it already ran for the same
requirements, lock, platform and Python version; the function's code is copied afresh every
time. Every bundle then gets bytecode for the runtime's Python, is checked against Lambda's
size limit, and has every wheel's tags checked against the target.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from collections_ops import paths, pipeline
from collections_ops.services.bundle_bytecode import (
    Interpreter,
    compile_bundle,
    find_interpreter,
    missing_interpreter_note,
)
from collections_ops.services.bundle_deps import (
    DEFAULT_PYTHON_VERSION,
    NO_DEPS_MARKER,
    PLATFORMS,
    QUIET_ARGS,
    REQUIREMENTS_FILE,
    BuildError,
    Lock,
    PipRunner,
    Requirements,
    canonical_name,
    current,
    pip_step,
    requirement_name,
    resolve,
    run_pip,
    target_args,
)
from collections_ops.services.bundle_wheels import (
    bundle_size,
    check_wheel_tags,
    installed_distributions,
    largest_entries,
    platform_target,
)

# Lambda's limit on a function's code plus layers, unzipped: 250 MB.
LAMBDA_UNZIPPED_LIMIT = 262_144_000
STAMP_FILE = ".collections-build.json"
SHARED_PACKAGE = "collections_core"
# Bump when the bundle layout or the pip step changes: every stamp is then stale.
BUILD_FORMAT = 1

logger = logging.getLogger(__name__)


@dataclass
class BundleReport:
    function: str  # key: processor, analyzer, embedder
    code_dir: str
    path: Path
    size_bytes: int  # unzipped, everything in the bundle
    file_count: int
    cached: bool  # the pip step was skipped (stamp matched)
    python_version: str
    platform: str
    packages: dict[str, str] = field(default_factory=dict)  # distribution -> version
    # What the full resolution of the no-deps section wanted and the bundle leaves out.
    omitted: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # Who compiled the bytecode ("CPython 3.12.1 at /path"), or None when the bundle has none.
    bytecode: str | None = None
    compiled_files: int = 0
    bytecode_bytes: int = 0  # of size_bytes, what the bytecode takes
    notes: list[str] = field(default_factory=list)  # what an operator should know or do

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1_000_000


def selected_functions(functions: Iterable[str | pipeline.Function] | None
                       ) -> list[pipeline.Function]:
    """The functions named (keys or definitions), default every deployed one; an unknown
    key is a BuildError naming the known ones."""
    try:
        return [pipeline.function(f) if isinstance(f, str) else f
                for f in (functions if functions is not None else pipeline.DEPLOYED_FUNCTIONS)]
    except KeyError as exc:
        known = ", ".join(fn.key for fn in pipeline.DEPLOYED_FUNCTIONS)
        raise BuildError(f"unknown function {exc.args[0]!r} (known: {known})") from None


def build(env_name: str, *, out_dir: Path, python_version: str = DEFAULT_PYTHON_VERSION,
          platform: str | None = None, implementation: str = "cp",
          pip: PipRunner = run_pip,
          functions: Iterable[pipeline.Function | str] | None = None,
          lambdas_dir: Path | None = None, pip_args: Sequence[str] = (),
          max_unzipped_bytes: int = LAMBDA_UNZIPPED_LIMIT,
          jobs: int | None = None, bytecode: bool = True,
          compile_python: str | Path | None = None) -> list[BundleReport]:
    """Build one bundle per function under `out_dir/<code_dir>/` and report on each.

    The bundles are the same for every AWS environment (settings arrive as environment
    variables); `env_name` is checked against the definition so a typo fails here, not at deploy.
    `pip_args` go to every pip call (e.g. `--no-index --find-links DIR` for an offline build).
    Functions are built `jobs` at a time (default: all at once; pip mostly waits on the index).
    Bytecode is compiled by `compile_python`, or by an interpreter of `python_version` found on
    this machine (`find_interpreter`); `bytecode=False` leaves it out. `platform` defaults to
    the wheels for the environment's `architecture` (`PLATFORMS`).
    """
    try:
        environment = pipeline.environment(env_name)
    except KeyError as exc:
        raise BuildError(str(exc.args[0])) from None
    if platform is None:
        platform = PLATFORMS[environment.architecture]
    platform_target(platform)  # refuse an unsupported platform before any work
    root = lambdas_dir if lambdas_dir is not None else paths.lambdas_root()
    selected = selected_functions(functions)
    if len({fn.code_dir for fn in selected}) != len(selected):
        raise BuildError("two functions share a code directory: " +
                         ", ".join(fn.code_dir for fn in selected))
    compiler: Interpreter | None = None
    notes: list[str] = []
    if bytecode:
        compiler = find_interpreter(python_version, explicit=compile_python)
        if compiler is None:
            notes.append(missing_interpreter_note(python_version))
            logger.warning(notes[-1])
    locks = _current_locks(selected, root)  # every stale lock named before any work
    out_dir.mkdir(parents=True, exist_ok=True)

    def one(fn: pipeline.Function) -> BundleReport:
        report = _build_one(fn, root=root, out_dir=out_dir, python_version=python_version,
                            platform=platform, implementation=implementation, pip=pip,
                            pip_args=tuple(pip_args), max_unzipped_bytes=max_unzipped_bytes,
                            compiler=compiler, inputs=locks[fn.key])
        report.notes[:0] = notes
        return report

    workers = max(1, min(jobs or len(selected), len(selected)))
    if workers == 1:
        return [one(fn) for fn in selected]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bundle") as pool:
        futures = [pool.submit(one, fn) for fn in selected]
        return [f.result() for f in futures]  # in order; the first failure is raised


def _current_locks(functions: Sequence[pipeline.Function],
                   root: Path) -> dict[str, tuple[Requirements, Lock | None]]:
    """Each function's requirements and the lock written for them (None: nothing to install);
    one error naming every function whose lock is missing or stale."""
    found: dict[str, tuple[Requirements, Lock | None]] = {}
    problems: list[BuildError] = []
    for fn in functions:
        source = root / fn.code_dir
        requirements = Requirements.read(source / REQUIREMENTS_FILE)
        try:
            found[fn.key] = (requirements, current(fn.key, source, requirements)
                             if requirements.lines else None)
        except BuildError as exc:
            problems.append(exc)
    if problems:
        raise BuildError("; ".join(p.message for p in problems), problems[0].hint)
    return found


def _build_one(fn: pipeline.Function, *, root: Path, out_dir: Path, python_version: str,
               platform: str, implementation: str, pip: PipRunner, pip_args: tuple[str, ...],
               max_unzipped_bytes: int, compiler: Interpreter | None,
               inputs: tuple[Requirements, Lock | None]) -> BundleReport:
    started = time.perf_counter()
    source = root / fn.code_dir
    shared = root / "shared" / SHARED_PACKAGE
    if not (source / fn.handler.split(".")[0]).with_suffix(".py").is_file():
        raise BuildError(f"{fn.key}: {source} has no {fn.handler.split('.')[0]}.py")
    if not shared.is_dir():
        raise BuildError(f"shared package {shared} does not exist")
    requirements, locked = inputs
    bundle = out_dir / fn.code_dir
    digest = _stamp_hash(requirements, lock_text=locked.text if locked else "", platform=platform,
                         python_version=python_version, implementation=implementation,
                         pip_args=pip_args)
    stamp = _read_stamp(bundle)
    cached = stamp is not None and stamp.get("hash") == digest and _deps_intact(bundle, stamp)

    if cached:
        assert stamp is not None
        code_files = stamp.get("code")
        _remove_code(bundle, [str(c) for c in code_files] if isinstance(code_files, list) else [])
        recorded = stamp.get("omitted")
        omitted = ({str(k): str(v) for k, v in recorded.items()}
                   if isinstance(recorded, dict) else {})
    else:
        if bundle.exists():
            shutil.rmtree(bundle)
        bundle.mkdir(parents=True)
        constraints = ("-c", str(locked.path)) if locked else ()
        omitted = _install(fn, requirements, bundle, python_version=python_version,
                           platform=platform, implementation=implementation, pip=pip,
                           pip_args=(*constraints, *pip_args))
    # A cached bundle keeps its vendored packages' bytecode for the compiler to check and reuse
    # (compile_bundle removes what is stale or another interpreter's); otherwise none is kept.
    _strip(bundle, bytecode=not (cached and compiler is not None))
    deps = sorted(p.name for p in bundle.iterdir() if p.name != STAMP_FILE)

    code = _copy_code(fn, source, shared, bundle)
    _write_stamp(bundle, {"format": BUILD_FORMAT, "hash": digest, "function": fn.key,
                          "python_version": python_version, "platform": platform,
                          "deps": deps, "code": code, "omitted": omitted})
    compiled, notes = (compile_bundle(bundle, compiler, python_version=python_version)
                       if compiler is not None else (0, []))

    size, count = bundle_size(bundle)
    if size > max_unzipped_bytes:
        raise BuildError(
            f"the {fn.key} bundle is {size / 1e6:.1f} MB unzipped; Lambda allows "
            f"{max_unzipped_bytes / 1e6:.1f} MB (largest: {largest_entries(bundle)})",
            "trim the function's requirements.txt",
        )
    packages = check_wheel_tags(bundle, python_version=python_version, platform=platform,
                                implementation=implementation)
    return BundleReport(function=fn.key, code_dir=fn.code_dir, path=bundle, size_bytes=size,
                        file_count=count, cached=cached, python_version=python_version,
                        platform=platform,
                        packages={name: version for name, (version, _) in packages.items()},
                        omitted=omitted,
                        seconds=round(time.perf_counter() - started, 2),
                        bytecode=compiler.label if compiler is not None and compiled else None,
                        compiled_files=compiled, notes=notes,
                        bytecode_bytes=sum(p.stat().st_size for p in bundle.rglob("*.pyc")))


def _install(fn: pipeline.Function, requirements: Requirements, bundle: Path, *,
             python_version: str, platform: str, implementation: str, pip: PipRunner,
             pip_args: tuple[str, ...]) -> dict[str, str]:
    """pip into the (empty) bundle; returns what the no-deps section leaves out of the tree."""
    if not requirements.lines:
        return {}
    common = ["install", "--target", str(bundle), *target_args(platform, python_version,
                                                                 implementation),
              "--no-compile", *QUIET_ARGS, *pip_args]
    context = f"{fn.key} ({platform} / Python {python_version})"
    with tempfile.TemporaryDirectory(prefix="collections-build-") as tmp_name:
        tmp = Path(tmp_name)
        if not requirements.no_deps:
            reqs = tmp / REQUIREMENTS_FILE
            reqs.write_text("\n".join(requirements.regular) + "\n")
            pip_step(pip, [*common, "-r", str(reqs)], platform, python_version, context)
            return {}
        # The whole file, resolved with dependencies but not installed: versions for everything.
        resolved = resolve(requirements.lines, platform=platform, python_version=python_version,
                           implementation=implementation, pip=pip, pip_args=pip_args,
                           context=context)
        if requirements.regular:
            constraints = tmp / "constraints.txt"
            constraints.write_text("".join(f"{n}=={v}\n" for n, (v, _) in sorted(resolved.items())))
            regular = tmp / "regular.txt"
            regular.write_text("\n".join(requirements.regular) + "\n")
            pip_step(pip, [*common, "-c", str(constraints), "-r", str(regular)], platform,
                     python_version, context)
        present = set(installed_distributions(bundle))
        wanted = []
        for line in requirements.no_deps:
            name = canonical_name(requirement_name(line))
            if name in present:
                continue  # already installed (same resolution) as a dependency of the above
            if name not in resolved:
                raise BuildError(f"{fn.key}: {name} is listed after {NO_DEPS_MARKER!r} but pip's "
                                 "resolution of the file does not include it")
            version, url = resolved[name]
            # The exact file the resolution chose: no second look at the index.
            wanted.append(f"{name} @ {url}" if url else f"{name}=={version}")
        if wanted:
            listing = tmp / "no-deps.txt"
            listing.write_text("\n".join(wanted) + "\n")
            pip_step(pip, [*common, "--no-deps", "-r", str(listing)], platform,
                     python_version, context)
        installed = installed_distributions(bundle)
        return {n: v for n, (v, _) in sorted(resolved.items()) if n not in installed}


def _strip(bundle: Path, *, bytecode: bool = True) -> None:
    """Remove what never runs in Lambda: console-script launchers (their shebang names this
    machine's interpreter) and, with `bytecode`, byte-code caches (pip's are this machine's
    Python's)."""
    if bytecode:
        for cache in list(bundle.rglob("__pycache__")):
            shutil.rmtree(cache, ignore_errors=True)
    scripts = bundle / "bin"
    if scripts.is_dir() and not (scripts / "__init__.py").exists():
        shutil.rmtree(scripts)


def _copy_code(fn: pipeline.Function, source: Path, shared: Path, bundle: Path) -> list[str]:
    copied: list[str] = []
    for module in paths.function_files(source):
        target = bundle / module.name
        if target.exists():
            raise BuildError(f"{fn.key}: {module.name} collides with a vendored package's file")
        shutil.copy2(module, target)
        copied.append(module.name)
    target = bundle / SHARED_PACKAGE
    if target.exists():
        raise BuildError(f"{fn.key}: a vendored distribution already provides {SHARED_PACKAGE}/")
    shutil.copytree(shared, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    copied.append(SHARED_PACKAGE)
    return copied


def _remove_code(bundle: Path, code: Iterable[str]) -> None:
    for name in code:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            continue  # only ever top-level entries this module copied
        path = bundle / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# ------------------------------------------------------------------------------------ stamps


def _stamp_hash(requirements: Requirements, *, lock_text: str, platform: str,
                python_version: str, implementation: str, pip_args: tuple[str, ...]) -> str:
    payload = json.dumps({"format": BUILD_FORMAT, "requirements": requirements.text,
                          "lock": lock_text,
                          "platform": platform, "python_version": python_version,
                          "implementation": implementation, "pip_args": list(pip_args)},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_stamp(bundle: Path) -> dict[str, object] | None:
    try:
        data = json.loads((bundle / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_stamp(bundle: Path, data: dict[str, object]) -> None:
    (bundle / STAMP_FILE).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _deps_intact(bundle: Path, stamp: dict[str, object]) -> bool:
    deps = stamp.get("deps")
    return isinstance(deps, list) and all((bundle / str(d)).exists() for d in deps)


# -------------------------------------------------------------------------------- inspection


def bundle_architecture(bundle: Path) -> str | None:
    """The Lambda architecture (x86_64 / arm64) a built bundle's wheels are for, from its stamp;
    None for a directory no build made."""
    stamp = _read_stamp(bundle)
    platform = stamp.get("platform") if stamp else None
    if not isinstance(platform, str):
        return None
    arch = platform_target(platform)[1]
    return {"aarch64": "arm64"}.get(arch, arch)
