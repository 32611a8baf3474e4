"""What goes into a bundle besides our code: each function's requirements, resolved by pip for
the Lambda platform, never for this machine, at the versions its lock pins.

`collections build` (`build.py`) installs with these helpers and `collections build --lock`
(`bundle_lock.py`) resolves with them; both must read a requirements file, talk to pip and read
its failures the same way, so that is decided here once.

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
lock is missing or older than its requirements.txt is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from collections_ops.errors import Failed

DEFAULT_PYTHON_VERSION = "3.12"  # infrastructure/stacks/function.py: Runtime.PYTHON_3_12
DEFAULT_PLATFORM = "manylinux2014_x86_64"
# The wheels for each Lambda architecture (the environment's `architecture` setting). The
# manylinux2014 (glibc 2.17) tags also take older manylinux wheels; Lambda's python3.12 runs on
# Amazon Linux 2023 (glibc 2.34), so every one of them loads there.
PLATFORMS: dict[str, str] = {"x86_64": DEFAULT_PLATFORM, "arm64": "manylinux2014_aarch64"}
REQUIREMENTS_FILE = "requirements.txt"
# Writes each function's requirements.lock (services/bundle_lock.py), what the build installs.
LOCK_COMMAND = "collections build --lock"
NO_DEPS_MARKER = "# collections-build: no-deps"

PipRunner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


class BuildError(Failed):
    """A bundle cannot be built: a requirement has no wheel for the target, pip failed, or the
    bundle is too large for Lambda."""


def run_pip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run pip with this interpreter (and pip's own configuration: index, find-links, cert)."""
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          check=False)


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


# ------------------------------------------------------------------------------------- pip


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
        pip_step(pip, ["install", "--dry-run", "--ignore-installed", "--report", str(report),
                       *target_args(platform, python_version, implementation), *QUIET_ARGS,
                       *pip_args, "-r", str(listing)],
                 platform, python_version, context or f"{platform} / Python {python_version}")
        return _resolution(report)


_NO_MATCH = re.compile(r"No matching distribution found for ([^\s;]+)")
_NO_VERSION = re.compile(r"Could not find a version that satisfies the requirement ([^\s;]+)")
# What pip says instead when a constraint (the lock) pins the package it has no wheel for.
_NO_DISTRIBUTIONS = re.compile(
    r"no matching distributions available for your environment:\s*\n\s*([^\s;]+)")


def pip_step(pip: PipRunner, args: list[str], platform: str, python_version: str,
             context: str) -> None:
    """Run one pip step; a failure is a BuildError that names the package without a wheel
    for the target where pip says which, else pip's last lines."""
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
