"""A local wheel index and a one-function lambdas/ tree, so bundle builds and locks run pip's
real resolver and installer without leaving the machine (`--no-index --find-links DIR`).

The wheels are tiny but real: METADATA with `Requires-Dist`, a WHEEL file with its tag, a
RECORD. A wheel's tag says which platforms it is for, so a package can have a version with
wheels for x86_64 only, as psycopg-binary 3.3 has for manylinux2014.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import tarfile
import textwrap
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from collections_ops import pipeline
from collections_ops.services import build as b
from collections_ops.services import bundle_deps, bundle_lock


def wheel(wheelhouse: Path, name: str, version: str, *, requires: Sequence[str] = (),
          tag: str = "py3-none-any", size: int = 0) -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    module = name.replace("-", "_")
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\n"
        f"Root-Is-Purelib: true\nTag: {tag}\n",
    }
    if size:
        files[f"{module}/blob.bin"] = "x" * size
    record = []
    for member, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{member},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}.dist-info/RECORD,,")
    files[f"{dist}.dist-info/RECORD"] = "\n".join(record) + "\n"
    path = wheelhouse / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name_, text in files.items():
            zf.writestr(name_, text)
    return path


def sdist(wheelhouse: Path, name: str, version: str) -> Path:
    path = wheelhouse / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        data = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        info = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def function_tree(lambdas: Path, code_dir: str) -> Path:
    """A function's source directory with a handler and a helper, and the shared package."""
    source = lambdas / code_dir
    source.mkdir(parents=True, exist_ok=True)
    (source / "handler.py").write_text("def handler(event, context):\n    return 1\n")
    (source / "helper.py").write_text("X = 1\n")
    core = lambdas / "shared" / "collections_core"
    (core / "migrations").mkdir(parents=True, exist_ok=True)
    (core / "__init__.py").write_text("")
    (core / "migrations" / "0001_initial.sql").write_text("SELECT 1;\n")
    return source


@dataclasses.dataclass
class Offline:
    lambdas: Path
    wheelhouse: Path
    out: Path
    fn: pipeline.Function
    platform: str  # the build's default target in these tests

    @property
    def pip_args(self) -> tuple[str, ...]:
        return ("--no-index", "--find-links", str(self.wheelhouse))

    @property
    def source(self) -> Path:
        return self.lambdas / self.fn.code_dir

    def requirements(self, text: str, *, pins: Mapping[str, str] | None = None) -> None:
        """Write the function's requirements.txt and its lock: resolved by `bundle_lock` from
        the local wheels for both architectures, or, given `pins`, exactly those."""
        (self.source / bundle_deps.REQUIREMENTS_FILE).write_text(textwrap.dedent(text))
        if pins is None:
            self.lock()
        else:
            self.write_lock(pins)

    def lock(self) -> bundle_lock.LockReport:
        [report] = bundle_lock.lock([self.fn], lambdas_dir=self.lambdas, pip_args=self.pip_args)
        return report

    def write_lock(self, pins: Mapping[str, str]) -> None:
        requirements = bundle_deps.Requirements.read(self.source / bundle_deps.REQUIREMENTS_FILE)
        bundle_lock.lock_path(self.source).write_text(bundle_lock.render(
            requirements, pins, python_version=bundle_deps.DEFAULT_PYTHON_VERSION, implementation="cp",
            platforms=bundle_deps.PLATFORMS))

    def build(self, pip: bundle_deps.PipRunner = bundle_deps.run_pip, **kwargs: object) -> b.BundleReport:
        options: dict[str, object] = {"platform": self.platform, "pip": pip,
                                      "pip_args": self.pip_args, **kwargs}
        [report] = b.build("dev", out_dir=self.out, functions=[self.fn], lambdas_dir=self.lambdas,
                           **options)  # type: ignore[arg-type]
        return report


def offline(tmp_path: Path, platform: str) -> Offline:
    """A one-function lambdas/ tree (`fakefn`) and a local wheelhouse of a few packages."""
    lambdas = tmp_path / "lambdas"
    function_tree(lambdas, "fakefn")
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    wheel(wheelhouse, "toplib", "1.0", requires=["lightdep>=1", "heavydep"])
    wheel(wheelhouse, "lightdep", "1.0")
    wheel(wheelhouse, "lightdep", "2.0")
    wheel(wheelhouse, "heavydep", "1.0", size=100_000)
    wheel(wheelhouse, "plainlib", "1.0", requires=["lightdep<2"])
    sdist(wheelhouse, "sdistonly", "1.0")
    wheel(wheelhouse, "winonly", "1.0", tag="cp312-cp312-win_amd64")
    fn = dataclasses.replace(pipeline.IMAGE_PROCESSOR, key="fake", code_dir="fakefn")
    return Offline(lambdas, wheelhouse, tmp_path / "out", fn, platform)
