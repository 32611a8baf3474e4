"""Building the Lambda bundles: each function's code, the shared `collections_core` package and
its third-party wheels for the Lambda platform, in one directory per function.

    out_dir/<code_dir>/handler.py, <helper>.py, collections_core/..., <vendored packages>

The layout is what the CDK app deploys (`collections:bundleDir` / `COLLECTIONS_BUNDLE_DIR`).

Third-party requirements live beside each function in `lambdas/<code_dir>/requirements.txt`.
Lines after a `# collections-build: no-deps` comment are installed with `--no-deps`, at the
versions pip resolves for the whole file with dependencies (so the trimmed set stays mutually
compatible): that is how the embedder ships voyageai without the ~50 packages it declares but
never imports on the `Client.embed` path. The file stays an ordinary pip requirements file.

Wheels are installed for the target (`--platform`, `--python-version`, `--only-binary=:all:`),
never for this machine's interpreter, and a requirement with no wheel for the target is refused
by name. Every pip step takes the function's `requirements.lock` as a constraint (`-c`): one
resolution for both Lambda architectures, written by `collections build --lock`
(`bundle_lock`), so an arm64 and an x86_64 bundle vendor the same versions; a function whose
lock is missing or older than its requirements.txt is refused. The pip step is skipped when a
stamp in the bundle says it already ran for the same requirements, lock, platform and Python
version; the function's code is copied afresh every time.

Every bundle then gets bytecode for the runtime's Python. Lambda's `/var/task` is read-only, so
an interpreter that finds no `__pycache__` compiles every module it imports on every cold start
(seconds for anthropic or voyageai; figures in docs/benchmarks.md). Bytecode is only valid for
the interpreter version that wrote it, so it is compiled by a CPython of the runtime's version
found on this machine (`COLLECTIONS_BUILD_PYTHON`, `pythonX.Y` on PATH, pyenv, uv), never by the
Python running the build. The `.pyc` files use unchecked-hash invalidation: a timestamp-checked
`.pyc` is rejected when the source's mtime differs from the one recorded, and the deployment
zip does not keep build-time mtimes. When no such interpreter exists the bundle is still built,
without bytecode, and the report says so and how to get one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from collections_ops import paths, pipeline
from collections_ops.errors import Failed

# Lambda's limit on a function's code plus layers, unzipped: 250 MB.
LAMBDA_UNZIPPED_LIMIT = 262_144_000
DEFAULT_PYTHON_VERSION = "3.12"  # infrastructure/stacks/function.py: Runtime.PYTHON_3_12
DEFAULT_PLATFORM = "manylinux2014_x86_64"
# The wheels for each Lambda architecture (the environment's `architecture` setting). The
# manylinux2014 (glibc 2.17) tags also take older manylinux wheels; Lambda's python3.12 runs on
# Amazon Linux 2023 (glibc 2.34), so every one of them loads there.
PLATFORMS: dict[str, str] = {"x86_64": DEFAULT_PLATFORM, "arm64": "manylinux2014_aarch64"}
REQUIREMENTS_FILE = "requirements.txt"
# Writes each function's requirements.lock (services/bundle_lock.py), what the build installs.
LOCK_COMMAND = "collections build --lock"
STAMP_FILE = ".collections-build.json"
NO_DEPS_MARKER = "# collections-build: no-deps"
SHARED_PACKAGE = "collections_core"
# Bump when the bundle layout or the pip step changes: every stamp is then stale.
BUILD_FORMAT = 1
# An interpreter to compile the bundles' bytecode with (its version must be the runtime's).
ENV_BUILD_PYTHON = "COLLECTIONS_BUILD_PYTHON"
# Where the bundle's code lives on Lambda: the file names recorded in the bytecode.
LAMBDA_TASK_ROOT = "/var/task"

logger = logging.getLogger(__name__)

PipRunner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class BuildError(Failed):
    """A bundle cannot be built: a requirement has no wheel for the target, pip failed, or the
    bundle is too large for Lambda."""


def run_pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run pip with this interpreter (and pip's own configuration: index, find-links, cert)."""
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          check=False)


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


@dataclass(frozen=True)
class Requirements:
    """A function's requirements file, split at the no-deps marker."""

    text: str
    regular: tuple[str, ...]  # requirement lines installed with their dependencies
    no_deps: tuple[str, ...]  # requirement lines installed without

    @classmethod
    def parse(cls, text: str) -> Requirements:
        regular: list[str] = []
        no_deps: list[str] = []
        target = regular
        for raw in text.splitlines():
            if raw.strip().lower() == NO_DEPS_MARKER:
                target = no_deps
                continue
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                target.append(line)
        return cls(text, tuple(regular), tuple(no_deps))

    @classmethod
    def read(cls, path: Path) -> Requirements:
        return cls.parse(path.read_text() if path.is_file() else "")

    @property
    def lines(self) -> tuple[str, ...]:
        """Every requirement, in the file's order: what the whole file resolves."""
        return self.regular + self.no_deps


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    if not match:
        raise BuildError(f"cannot read a package name from the requirement {line!r}")
    return match.group(1)


# ------------------------------------------------------------------------------------- locks
# The bundles' locks as the build reads them; `bundle_lock` resolves and writes them.

LOCK_FILE = "requirements.lock"
DIGEST_KEY = "requirements-sha256"
_DIGEST_LINE = re.compile(rf"#\s*{DIGEST_KEY}:\s*([0-9a-f]{{64}})\s*$")
_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


@dataclass(frozen=True)
class Lock:
    """A function's lock file as read."""

    path: Path
    text: str
    pins: dict[str, str]  # canonical name -> version
    requirements_digest: str | None  # None: the header has no digest line

    @classmethod
    def read(cls, path: Path) -> Lock:
        text = path.read_text()
        pins: dict[str, str] = {}
        digest = None
        for raw in text.splitlines():
            line = raw.strip()
            header = _DIGEST_LINE.match(line)
            if header:
                digest = header.group(1)
            elif line and not line.startswith("#"):
                pin = _PIN.match(line)
                if not pin:
                    raise BuildError(f"{path}: {line!r} is not a pinned `name==version` line",
                                     f"run `{LOCK_COMMAND}` to write it again")
                pins[canonical_name(pin.group(1))] = pin.group(2)
        return cls(path, text, pins, digest)


def requirements_digest(requirements: Requirements) -> str:
    """The digest the lock records: of the requirement lines and the no-deps split, not the
    comments, so rewording a comment in requirements.txt does not make the lock stale."""
    payload = "\n".join([*requirements.regular, NO_DEPS_MARKER, *requirements.no_deps])
    return hashlib.sha256(payload.encode()).hexdigest()


def lock_path(source: Path) -> Path:
    return source / LOCK_FILE


def current(function: str, source: Path, requirements: Requirements) -> Lock:
    """The function's lock, if it was written for these requirements; else a BuildError that
    says which and names the refresh command."""
    path = lock_path(source)
    if not path.is_file():
        raise BuildError(f"{function}: {path} is missing: the bundles install only what a lock "
                         "pins, the same for x86_64 and arm64",
                         f"run `{LOCK_COMMAND}` and commit the lock files it writes")
    lock = Lock.read(path)
    if lock.requirements_digest != requirements_digest(requirements):
        raise BuildError(f"{function}: {path} is stale: {REQUIREMENTS_FILE} changed "
                         "since the lock was written",
                         f"run `{LOCK_COMMAND}` and commit the lock files it writes")
    return lock


# --------------------------------------------------------------------------------- building


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
    _target(platform)  # refuse an unsupported platform before any work
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
    _strip(bundle)  # also byte-code that running from a cached bundle may have left
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
            f"{max_unzipped_bytes / 1e6:.1f} MB (largest: {_largest(bundle)})",
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
            _pip(pip, [*common, "-r", str(reqs)], platform, python_version, context)
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
            _pip(pip, [*common, "-c", str(constraints), "-r", str(regular)], platform,
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
            _pip(pip, [*common, "--no-deps", "-r", str(listing)], platform, python_version,
                 context)
        installed = installed_distributions(bundle)
        return {n: v for n, (v, _) in sorted(resolved.items()) if n not in installed}


# pip options for any platform and Python: quiet, no questions, no self-update check.
QUIET_ARGS = ("--disable-pip-version-check", "--no-input", "--progress-bar", "off")


def target_args(platform: str, python_version: str, implementation: str) -> list[str]:
    """pip's options for wheels of the target, never this machine's interpreter."""
    return ["--platform", platform, "--implementation", implementation,
            "--python-version", python_version, "--only-binary=:all:"]


def resolve(lines: Sequence[str], *, platform: str, python_version: str,
            implementation: str = "cp", pip: PipRunner = run_pip,
            pip_args: Sequence[str] = (), context: str = "",
            ) -> dict[str, tuple[str, str | None]]:
    """What pip's resolver picks for requirement `lines` on the target, with dependencies,
    installing nothing: canonical name -> (version, wheel URL). `pip_args` may carry
    constraints (`-c FILE`) and the index options."""
    with tempfile.TemporaryDirectory(prefix="collections-resolve-") as tmp_name:
        listing = Path(tmp_name) / REQUIREMENTS_FILE
        listing.write_text("\n".join(lines) + "\n")
        report = Path(tmp_name) / "report.json"
        _pip(pip, ["install", "--dry-run", "--ignore-installed", "--report", str(report),
                   *target_args(platform, python_version, implementation), *QUIET_ARGS,
                   *pip_args, "-r", str(listing)],
             platform, python_version, context or f"{platform} / Python {python_version}")
        return _resolution(report)


_NO_MATCH = re.compile(r"No matching distribution found for ([^\s;]+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement ([^\s;]+)")
# What pip says instead when a constraint (the lock) pins the package it has no wheel for.
_NO_DISTRIBUTIONS = re.compile(
    r"no matching distributions available for your environment:\s*\n\s*([^\s;]+)")


def _pip(pip: PipRunner, args: list[str], platform: str, python_version: str,
         context: str) -> None:
    result = pip(args)
    if result.returncode == 0:
        return
    output = f"{result.stderr or ''}\n{result.stdout or ''}"
    match = (_NO_MATCH.search(output) or _NO_VERSION.search(output)
             or _NO_DISTRIBUTIONS.search(output))
    if match:
        requirement = match.group(1)
        name = requirement_name(requirement)
        raise BuildError(
            f"{name} has no wheel for {platform} / Python {python_version} "
            f"(pip: no matching distribution for {requirement}, building {context})",
            f"pin a version of {name} that publishes a {platform} or pure-Python wheel, "
            f"or drop it from the function's requirements.txt; then `{LOCK_COMMAND}`",
        )
    lines = [ln for ln in output.splitlines()
             if ln.strip() and not ln.startswith("WARNING: Location")]
    tail = "\n".join(lines[-15:])
    raise BuildError(f"pip failed (exit {result.returncode}) building {context}:\n{tail}")


def _resolution(report: Path) -> dict[str, tuple[str, str | None]]:
    """Canonical name -> (version, wheel URL) from pip's installation report."""
    data = json.loads(report.read_text())
    out: dict[str, tuple[str, str | None]] = {}
    for item in data.get("install", []):
        url = (item.get("download_info") or {}).get("url")
        out[canonical_name(item["metadata"]["name"])] = (
            str(item["metadata"]["version"]),
            url if isinstance(url, str) and url.endswith(".whl") else None)
    return out


def _strip(bundle: Path) -> None:
    """Remove what never runs in Lambda: byte-code caches and console-script launchers (their
    shebang names this machine's interpreter)."""
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


# ---------------------------------------------------------------------------------- bytecode


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


# Run by the runtime-version interpreter: compile everything, report what did not compile.
_COMPILE_SCRIPT = """
import compileall, importlib.util, json, os, py_compile, sys
bundle, ddir, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
compileall.compile_dir(bundle, ddir=ddir, quiet=2, workers=workers,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
compiled, failed = 0, []
for root, dirs, files in os.walk(bundle):
    dirs[:] = [d for d in dirs if d != "__pycache__"]
    for name in files:
        if name.endswith(".py"):
            path = os.path.join(root, name)
            if os.path.exists(importlib.util.cache_from_source(path)):
                compiled += 1
            else:
                failed.append(os.path.relpath(path, bundle))
print(json.dumps({"compiled": compiled, "failed": sorted(failed)}))
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
    arch = _target(platform)[1]
    return {"aarch64": "arm64"}.get(arch, arch)


def bundle_size(bundle: Path) -> tuple[int, int]:
    """(bytes, files) of a bundle, unzipped; symlinks are counted as the files they name."""
    size = count = 0
    for path in bundle.rglob("*"):
        if path.is_file():
            size += path.stat().st_size
            count += 1
    return size, count


def _largest(bundle: Path, n: int = 5) -> str:
    sizes = []
    for entry in bundle.iterdir():
        total = (sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
                 if entry.is_dir() else entry.stat().st_size)
        sizes.append((total, entry.name))
    return ", ".join(f"{name} {total / 1e6:.1f} MB" for total, name in sorted(sizes)[::-1][:n])


def installed_distributions(bundle: Path) -> dict[str, str]:
    """Canonical distribution name -> version, from the bundle's *.dist-info/METADATA."""
    out: dict[str, str] = {}
    for info in bundle.glob("*.dist-info"):
        name, version = _metadata(info)
        out[canonical_name(name)] = version
    return out


def _metadata(info: Path) -> tuple[str, str]:
    name = version = ""
    metadata = info / "METADATA"
    if metadata.is_file():
        for line in metadata.read_text(errors="replace").splitlines():
            if not line.strip():
                break  # end of the headers
            key, _, value = line.partition(":")
            if key == "Name" and not name:
                name = value.strip()
            elif key == "Version" and not version:
                version = value.strip()
    if not name:
        name, _, version = info.name.removesuffix(".dist-info").partition("-")
    return name, version


_MANYLINUX = re.compile(r"manylinux(?:_(\d+)_(\d+)|(1|2010|2014))_(\w+)")
_LEGACY_GLIBC = {"1": (2, 5), "2010": (2, 12), "2014": (2, 17)}


def _target(platform: str) -> tuple[tuple[int, int], str]:
    """The glibc version and architecture a manylinux platform tag promises."""
    match = _MANYLINUX.fullmatch(platform)
    if not match:
        raise BuildError(f"unsupported platform {platform!r}",
                         "Lambda runs Linux: use a manylinux tag such as manylinux2014_x86_64")
    major, minor, legacy, arch = match.groups()
    glibc = _LEGACY_GLIBC[legacy] if legacy else (int(major), int(minor))
    return glibc, arch


def tag_compatible(tag: str, *, python_version: str = DEFAULT_PYTHON_VERSION,
                   platform: str = DEFAULT_PLATFORM, implementation: str = "cp") -> bool:
    """Whether one wheel tag (`cp312-cp312-manylinux_2_17_x86_64`, possibly compressed with
    dots) can run on the target interpreter and platform."""
    glibc, arch = _target(platform)
    major, minor = (int(p) for p in python_version.split(".")[:2])
    try:
        interps, abis, plats = (part.split(".") for part in tag.strip().split("-"))
    except ValueError:
        return False
    return (any(_platform_ok(p, glibc, arch) for p in plats)
            and any(_abi_ok(i, a, major, minor, implementation)
                    for i in interps for a in abis))


def _platform_ok(plat: str, glibc: tuple[int, int], arch: str) -> bool:
    if plat == "any":
        return True
    match = _MANYLINUX.fullmatch(plat)
    if not match:
        return False
    wheel_glibc, wheel_arch = _target(plat)
    return wheel_arch == arch and wheel_glibc <= glibc


def _abi_ok(interp: str, abi: str, major: int, minor: int, implementation: str) -> bool:
    match = re.fullmatch(r"(py|cp|[a-z]+)(\d)(\d*)", interp)
    if not match:
        return False
    kind, i_major, i_minor = match.group(1), int(match.group(2)), match.group(3)
    if i_major != major or (i_minor and int(i_minor) > minor):
        return False
    if kind not in ("py", implementation):
        return False
    if abi == "none":
        return True
    if abi == "abi3":
        return kind == implementation
    return kind == implementation and abi == f"{implementation}{major}{minor}" \
        and i_minor == str(minor)


def check_wheel_tags(bundle: Path, *, python_version: str = DEFAULT_PYTHON_VERSION,
                     platform: str = DEFAULT_PLATFORM,
                     implementation: str = "cp") -> dict[str, tuple[str, list[str]]]:
    """Read every `*.dist-info/WHEEL` in a bundle and check that one of each distribution's
    `Tag:` lines fits the target (e.g. cp312 / abi3 / none on manylinux x86_64 or any).

    Returns canonical name -> (version, tags); raises BuildError naming every misfit.
    """
    found: dict[str, tuple[str, list[str]]] = {}
    misfits: list[str] = []
    for info in sorted(bundle.glob("*.dist-info")):
        name, version = _metadata(info)
        wheel = info / "WHEEL"
        tags = ([line.partition(":")[2].strip()
                 for line in wheel.read_text(errors="replace").splitlines()
                 if line.startswith("Tag:")] if wheel.is_file() else [])
        found[canonical_name(name)] = (version, tags)
        if not any(tag_compatible(t, python_version=python_version, platform=platform,
                                  implementation=implementation) for t in tags):
            misfits.append(f"{name} {version} ({', '.join(tags) or 'no WHEEL tags'})")
    if misfits:
        raise BuildError(
            f"{bundle.name}: wheels that do not run on {platform} / Python {python_version}: "
            + "; ".join(misfits))
    return found
