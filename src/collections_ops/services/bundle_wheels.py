"""What a built bundle holds, checked against the Lambda target: its size, its distributions,
and whether every wheel's tags run on the target's platform and Python.

pip can be asked for the wrong platform, a cached bundle can be from another build, and a
wheel's `Tag:` lines are the only record of what it runs on; the build (`build.py`) checks
every bundle with these after assembling it, before it reports the bundle as built. Reading
only: nothing here writes to a bundle.
"""

from __future__ import annotations

import re
from pathlib import Path

from collections_ops.services.bundle_deps import (
    DEFAULT_PLATFORM,
    DEFAULT_PYTHON_VERSION,
    BuildError,
    canonical_name,
)


def bundle_size(bundle: Path) -> tuple[int, int]:
    """(bytes, files) of a bundle, unzipped; symlinks are counted as the files they name."""
    size = count = 0
    for path in bundle.rglob("*"):
        if path.is_file():
            size += path.stat().st_size
            count += 1
    return size, count


def largest_entries(bundle: Path, n: int = 5) -> str:
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


def platform_target(platform: str) -> tuple[tuple[int, int], str]:
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
    glibc, arch = platform_target(platform)
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
    wheel_glibc, wheel_arch = platform_target(plat)
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
