"""The Lambda bundle build: real wheels for the Lambda platform, the trimmed voyageai set
proven by calling `Client.embed` from a bundle alone, refusals by name, and the stamp that
skips pip.

The real bundles are built once per module (Python 3.12 for x86_64 and arm64, the Lambda
runtime, and this machine's Python for the import tests), at the versions the checked-in
requirements.lock files pin, from the wheels `make wheelhouse` fetched (tests/wheelhouse.py)
with `--no-index`: no test waits on a package index. The other cases build tiny offline
bundles from wheels made in tmp, also with `--no-index` (tests/fakes/wheels.py; each writes its
lock from those wheels).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import platform as platform_module
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from collections_ops import paths, pipeline
from collections_ops.services import build as b
from collections_ops.services import bundle_bytecode, bundle_deps, bundle_lock, bundle_wheels
from tests import wheelhouse
from tests.fakes import wheels
from tests.fakes.providers import FakeProviders, fake_embedding
from tests.fakes.wheels import Offline

pytestmark = pytest.mark.timeout(600)

PLATFORM = f"manylinux2014_{'aarch64' if platform_module.machine() == 'aarch64' else 'x86_64'}"
LOCAL_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

# What each function's code path imports from its bundle, beyond its own modules.
EXPECTED_DIRS = {
    "processor": ("PIL", "psycopg", "psycopg_binary", "pgvector"),
    "analyzer": ("PIL", "psycopg", "psycopg_binary", "pgvector", "anthropic", "openai",
                 "langsmith"),
    "embedder": ("psycopg", "psycopg_binary", "pgvector", "voyageai", "numpy", "PIL"),
}
# voyageai's declared dependencies that the embedder's code path never imports.
TRIMMED_AWAY = ("tokenizers", "hf-xet", "fsspec", "langsmith", "zstandard", "orjson", "xxhash",
                "httpx", "httpcore", "websockets", "jsonpatch", "click")


class CountingPip:
    """The real pip runner, counted; a call that could reach a package index fails the test."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        assert "--no-index" in args, args
        self.calls.append(list(args))
        return bundle_deps.run_pip(args)


@dataclasses.dataclass
class Built:
    out_dir: Path
    reports: dict[str, b.BundleReport]
    pip: CountingPip

    def bundle(self, key: str) -> Path:
        return self.reports[key].path


@pytest.fixture(scope="module")
def real_wheels() -> tuple[str, ...]:
    """pip's options for the locked wheels on this machine, and no index."""
    if not wheelhouse.current():
        pytest.fail(wheelhouse.missing_message())
    return wheelhouse.pip_args()


def _build(out_dir: Path, python_version: str, pip_args: Sequence[str],
           **options: object) -> Built:
    pip = CountingPip()
    reports = b.build("dev", out_dir=out_dir, python_version=python_version, platform=PLATFORM,
                      pip=pip, pip_args=pip_args, **options)  # type: ignore[arg-type]
    return Built(out_dir, {r.function: r for r in reports}, pip)


@pytest.fixture(scope="module")
def lambda_bundles(tmp_path_factory: pytest.TempPathFactory,
                   real_wheels: tuple[str, ...]) -> Built:
    """The bundles as deployed: Python 3.12 on the Lambda platform."""
    return _build(tmp_path_factory.mktemp("bundles-312"), "3.12", real_wheels)


@pytest.fixture(scope="module")
def local_bundles(tmp_path_factory: pytest.TempPathFactory,
                  real_wheels: tuple[str, ...]) -> Built:
    """The pipeline's bundles for this machine's Python, so they can be imported here. No
    bytecode: these tests import with -B and assert nothing of it (the 3.12 bundles' bytecode
    is checked above and imported by `test_lambda_bundle_imports_under_python_312`)."""
    return _build(tmp_path_factory.mktemp(f"bundles-{LOCAL_PYTHON}"), LOCAL_PYTHON, real_wheels,
                  functions=list(_IMPORTS), bytecode=False)


# ----------------------------------------------------------------------- (1) bundle contents


@pytest.mark.parametrize("key", ["processor", "analyzer", "embedder"])
def test_bundle_has_code_shared_package_and_wheels_for_lambda(lambda_bundles: Built,
                                                              key: str) -> None:
    fn = pipeline.function(key)
    bundle = lambda_bundles.bundle(key)
    report = lambda_bundles.reports[key]
    assert bundle == lambda_bundles.out_dir / fn.code_dir

    for module in paths.lambda_code_dir(fn.code_dir).glob("*.py"):
        assert (bundle / module.name).read_bytes() == module.read_bytes()
    core = bundle / "collections_core"
    assert (core / "__init__.py").is_file()
    shipped_sql = sorted(p.name for p in (paths.shared_code_dir() / "collections_core"
                                          / "migrations").glob("*.sql"))
    assert shipped_sql and sorted(p.name for p in (core / "migrations").glob("*.sql")) == shipped_sql

    for name in EXPECTED_DIRS[key]:
        assert (bundle / name).is_dir(), f"{key}: {name}/ missing"
    assert not (bundle / "boto3").exists() and not (bundle / "botocore").exists()
    assert not (bundle / "requirements.txt").exists()
    _check_bytecode(bundle, "3.12", report)

    tags = bundle_wheels.check_wheel_tags(bundle, python_version="3.12", platform=PLATFORM)
    assert set(tags) == set(bundle_wheels.installed_distributions(bundle))
    for dist, (_version, wheel_tags) in tags.items():
        assert any(bundle_wheels.tag_compatible(t, python_version="3.12", platform=PLATFORM)
                   for t in wheel_tags), dist
        assert not any(t.startswith("cp311-cp311") for t in wheel_tags), dist
    compiled = [d for d, (_v, ts) in tags.items() if not any(t.endswith("-any") for t in ts)]
    assert compiled  # Pillow / psycopg-binary at least: the platform really was targeted

    assert report.size_bytes == bundle_wheels.bundle_size(bundle)[0] < b.LAMBDA_UNZIPPED_LIMIT
    assert report.file_count == bundle_wheels.bundle_size(bundle)[1]
    assert report.packages == {n: v for n, (v, _t) in tags.items()}
    assert not report.cached


def test_embedder_bundle_holds_only_the_trimmed_voyageai_set(lambda_bundles: Built) -> None:
    installed = bundle_wheels.installed_distributions(lambda_bundles.bundle("embedder"))
    assert "voyageai" in installed
    for name in TRIMMED_AWAY:
        assert name not in installed, name
    requirements = bundle_deps.Requirements.read(paths.lambda_code_dir("embedder") / "requirements.txt")
    listed = {bundle_deps.canonical_name(bundle_deps.requirement_name(r))
              for r in requirements.regular + requirements.no_deps}
    # Nothing in the bundle that the file does not name, except psycopg's own dependencies.
    assert set(installed) - listed <= {"psycopg-binary", "typing-extensions"}


def test_bundle_sizes_are_reported(lambda_bundles: Built) -> None:
    sizes = {k: round(r.size_mb, 1) for k, r in lambda_bundles.reports.items()}
    bytecode = {k: round(r.bytecode_bytes / 1e6, 1) for k, r in lambda_bundles.reports.items()}
    print(f"\nbundle sizes (MB, unzipped, Python 3.12 / {PLATFORM}): {sizes}, "
          f"of which bytecode {bytecode}")
    assert sizes["processor"] < sizes["analyzer"] < b.LAMBDA_UNZIPPED_LIMIT / 1e6
    # "Well under" the limit: room for the code to grow.
    assert max(sizes.values()) < 0.8 * b.LAMBDA_UNZIPPED_LIMIT / 1e6


def _pyc_of(path: Path, python_version: str) -> Path:
    tag = "cpython-" + python_version.replace(".", "")
    return path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc"


def _check_bytecode(bundle: Path, python_version: str, report: b.BundleReport) -> None:
    """Every module has bytecode for the runtime's Python, hash-based and unchecked (the zip
    that deploys does not keep mtimes), naming the file where Lambda will find it."""
    import marshal

    sources = [p for p in bundle.rglob("*.py") if "__pycache__" not in p.parts]
    missing = [p for p in sources if not _pyc_of(p, python_version).is_file()]
    assert not missing, missing[:5]
    assert report.compiled_files == len(sources)
    assert report.bytecode and f"CPython {python_version}." in report.bytecode
    assert report.bytecode_bytes == sum(p.stat().st_size for p in bundle.rglob("*.pyc"))
    # Nothing compiled for another interpreter (a local run leaves cpython-311 files).
    tag = "cpython-" + python_version.replace(".", "")
    assert {p.name.split(".")[-2] for p in bundle.rglob("*.pyc")} == {tag}
    header = _pyc_of(bundle / "handler.py", python_version).read_bytes()
    assert int.from_bytes(header[4:8], "little") == 0b01  # hash-based, source never checked
    if python_version == LOCAL_PYTHON:
        import importlib.util
        assert header[:4] == importlib.util.MAGIC_NUMBER
        code = marshal.loads(header[16:])
        assert code.co_filename == f"{bundle_bytecode.LAMBDA_TASK_ROOT}/handler.py"


# ------------------------------------------------------------- (2) imports from the bundle alone


_PROBE = textwrap.dedent("""
    import importlib.util, json, os, sys
    bundle = sys.argv[1]
    sys.path[:0] = [bundle]
    import handler
    for name in sys.argv[2].split(","):
        if name:
            __import__(name)
    out = {"boto3": importlib.util.find_spec("boto3") is not None}
    if "psycopg" in sys.modules:
        out["psycopg_impl"] = sys.modules["psycopg"].pq.__impl__
    if "voyageai" in sys.modules:
        import voyageai, embedding
        assert voyageai.Client
        out["vector"] = embedding.voyage_embed(
            ["a red kayak"], api_key="k", model="voyage-3.5", input_type="document",
            remaining_s=lambda: 30.0)[0]
    stdlib = os.path.dirname(os.__file__)
    out["foreign"] = sorted(
        m.__name__ for m in list(sys.modules.values())
        if getattr(m, "__file__", None)
        and not os.path.realpath(m.__file__).startswith((os.path.realpath(bundle), stdlib))
        and "lib-dynload" not in m.__file__)
    print(json.dumps(out))
""")

_IMPORTS = {
    "processor": "PIL.Image,psycopg,pgvector.psycopg,collections_core.images",
    "analyzer": "PIL.Image,psycopg,pgvector.psycopg,anthropic,openai,langsmith,vision,tracing",
    "embedder": "psycopg,pgvector.psycopg,voyageai,voyageai.error,embedding",
}


def _import_in_isolation(python: str, bundle: Path, imports: str,
                         fake: FakeProviders) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"VOYAGE_BASE_URL": fake.voyage_base_url, "NO_PROXY": "127.0.0.1,localhost",
                "PROVIDER_TIMEOUT_S": "10"})
    proc = subprocess.run([python, "-I", "-S", "-B", "-c", _PROBE, str(bundle), imports], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _check_isolated_import(result: dict[str, object], key: str) -> None:
    assert result["boto3"] is False  # not vendored: the handlers must not need it at import
    assert result["foreign"] == []  # nothing came from this machine's site-packages
    assert result["psycopg_impl"] == "binary"  # libpq from the psycopg-binary wheel
    if key == "embedder":
        vector = result["vector"]
        assert isinstance(vector, list)
        assert vector == pytest.approx(fake_embedding("a red kayak", 1024), abs=1e-6)


@pytest.fixture(scope="module")
def fake_providers() -> Iterator[FakeProviders]:
    with FakeProviders() as fake:
        yield fake


@pytest.mark.parametrize("key", ["processor", "analyzer", "embedder"])
def test_handler_imports_from_the_bundle_alone(local_bundles: Built, key: str,
                                               fake_providers: FakeProviders) -> None:
    """`python -I -S` with only the bundle on sys.path: no site-packages, no PYTHONPATH, no
    boto3 (and -B: importing must not leave byte-code in the bundle). For the embedder, voyageai's trimmed set serves a real `Client.embed` call (against
    the fake Voyage API on 127.0.0.1)."""
    result = _import_in_isolation(sys.executable, local_bundles.bundle(key), _IMPORTS[key],
                                  fake_providers)
    _check_isolated_import(result, key)
    if key == "embedder":
        assert fake_providers.embeddings.requests


def _python_312() -> str | None:
    candidates = [shutil.which("python3.12") or "",
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))]
    for candidate in candidates:
        if not candidate:
            continue
        probe = subprocess.run([candidate, "-I", "-S", "-c",
                                "import sys; print(sys.version_info[:2] == (3, 12))"],
                               capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == "True":
            return candidate
    return None


@pytest.mark.parametrize("key", ["processor", "analyzer", "embedder"])
def test_lambda_bundle_imports_under_python_312(lambda_bundles: Built, key: str,
                                                fake_providers: FakeProviders) -> None:
    """The very bundles that deploy, on a CPython 3.12 where this machine has one."""
    python = _python_312()
    if python is None or platform_module.machine() not in PLATFORM:
        pytest.skip("no CPython 3.12 for this platform on this machine")
    result = _import_in_isolation(python, lambda_bundles.bundle(key), _IMPORTS[key],
                                  fake_providers)
    _check_isolated_import(result, key)


# -------------------------------------------------------- (3) the embedder against voyageai's tree


def test_embedder_bundle_is_far_smaller_than_voyageai_full_tree(
        lambda_bundles: Built, real_wheels: tuple[str, ...], tmp_path: Path) -> None:
    trimmed = lambda_bundles.reports["embedder"]
    omitted = trimmed.omitted
    assert {"tokenizers", "langsmith", "zstandard", "fsspec"} <= set(omitted)
    assert not set(omitted) & set(trimmed.packages)
    # What the untrimmed tree adds: the omitted distributions (same resolution, same target).
    extra = tmp_path / "omitted"
    result = bundle_deps.run_pip(["install", "--target", str(extra), "--platform", PLATFORM,
                        "--implementation", "cp", "--python-version", "3.12",
                        "--only-binary=:all:", "--no-compile", "--no-deps", *real_wheels,
                        *(f"{n}=={v}" for n, v in omitted.items())])
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(bundle_wheels.installed_distributions(extra)) == set(omitted)
    # Compared without the bytecode, which the omitted set would add in proportion too.
    source_size = trimmed.size_bytes - trimmed.bytecode_bytes
    full_size = source_size + bundle_wheels.bundle_size(extra)[0]
    print(f"\nembedder: trimmed {source_size / 1e6:.1f} MB (+ {trimmed.bytecode_bytes / 1e6:.1f} MB"
          f" bytecode) / {len(trimmed.packages)} distributions,"
          f" untrimmed {full_size / 1e6:.1f} MB / {len(trimmed.packages) + len(omitted)}"
          f" (left out: {', '.join(sorted(omitted))})")
    # numpy (~58 MB with OpenBLAS) and Pillow (~22 MB) are imported by `import voyageai` itself,
    # so the bundle cannot go much below ~110 MB with the real SDK.
    assert source_size < 140e6
    assert source_size < 0.75 * full_size
    assert len(omitted) >= 15


# ------------------------------------------------------------ offline fixtures: tiny wheels


@pytest.fixture
def offline(tmp_path: Path) -> Offline:
    """A one-function lambdas/ tree and a local wheelhouse; pip never leaves the machine."""
    return wheels.offline(tmp_path, PLATFORM)


# ---------------------------------------------------------------- (4) no wheel: refused by name


@pytest.mark.parametrize("package", ["sdistonly", "winonly"])
def test_requirement_without_a_wheel_is_refused_by_name(offline: Offline, package: str) -> None:
    # A lock that pins it (as one written before the package lost its wheel would).
    offline.requirements(f"plainlib\n{package}==1.0\n",
                         pins={"plainlib": "1.0", "lightdep": "1.0", package: "1.0"})
    with pytest.raises(bundle_deps.BuildError) as info:
        offline.build(python_version="3.12")
    message = str(info.value)
    assert message.startswith(f"{package} has no wheel for {PLATFORM} / Python 3.12"), message
    assert info.value.hint and package in info.value.hint


def test_no_wheel_in_the_no_deps_section_is_refused_by_name(offline: Offline) -> None:
    offline.requirements(f"plainlib\n{bundle_deps.NO_DEPS_MARKER}\nsdistonly\n",
                         pins={"plainlib": "1.0", "lightdep": "1.0", "sdistonly": "1.0"})
    with pytest.raises(bundle_deps.BuildError, match=f"^sdistonly has no wheel for {PLATFORM}"):
        offline.build()


def test_unknown_environment_and_platform_are_refused(offline: Offline) -> None:
    with pytest.raises(bundle_deps.BuildError, match="unknown environment 'staging'"):
        b.build("staging", out_dir=offline.out)
    with pytest.raises(bundle_deps.BuildError, match="unknown function 'thumbnailer'"):
        b.build("dev", out_dir=offline.out, functions=["thumbnailer"])
    with pytest.raises(bundle_deps.BuildError, match="unsupported platform"):
        b.build("dev", out_dir=offline.out, platform="macosx_11_0_arm64")


def test_bundle_over_the_size_limit_is_refused(offline: Offline) -> None:
    offline.requirements("toplib\n")
    with pytest.raises(bundle_deps.BuildError, match=r"fake bundle is 0\.1 MB unzipped; Lambda allows "
                                           r"0\.0 MB \(largest: heavydep"):
        offline.build(max_unzipped_bytes=20_000)
    assert b.LAMBDA_UNZIPPED_LIMIT == 250 * 1024 * 1024  # AWS's 250 MB: 262,144,000 bytes


# ------------------------------------------------------------------- the no-deps section


def test_no_deps_section_installs_only_what_is_listed_at_resolved_versions(
        offline: Offline) -> None:
    # toplib declares heavydep; the function only needs toplib + lightdep. plainlib (installed
    # with its dependencies) caps lightdep below 2, and the no-deps set follows that resolution.
    offline.requirements(f"""
        plainlib
        {bundle_deps.NO_DEPS_MARKER}
        # toplib imports lightdep but never heavydep
        toplib>=1
        lightdep
    """)
    report = offline.build()
    assert report.packages == {"plainlib": "1.0", "toplib": "1.0", "lightdep": "1.0"}
    assert not (report.path / "heavydep").exists()
    assert (report.path / "toplib" / "__init__.py").is_file()


def test_requirements_file_is_split_at_the_marker() -> None:
    parsed = bundle_deps.Requirements.parse(f"a>=1  # why\n\n{bundle_deps.NO_DEPS_MARKER.upper()}\n# c\nb[x]<2\n")
    assert parsed.regular == ("a>=1",)
    assert parsed.no_deps == ("b[x]<2",)
    embedder = bundle_deps.Requirements.read(paths.lambda_code_dir("embedder") / "requirements.txt")
    assert [bundle_deps.requirement_name(r) for r in embedder.regular] == ["psycopg", "pgvector"]
    assert embedder.no_deps[0].startswith("voyageai")
    for name in ("processor", "analyzer"):
        fn = pipeline.function(name)
        parsed = bundle_deps.Requirements.read(paths.lambda_code_dir(fn.code_dir) / "requirements.txt")
        assert parsed.regular and not parsed.no_deps
        assert all(">=" in r and "<" in r for r in parsed.regular)  # pinned to ranges
        assert "boto3" not in {bundle_deps.canonical_name(bundle_deps.requirement_name(r)) for r in parsed.regular}


# ------------------------------------------------------------------- (5) the stamp skips pip


def test_second_build_of_the_real_bundles_skips_pip(lambda_bundles: Built,
                                                    real_wheels: tuple[str, ...]) -> None:
    assert len(lambda_bundles.pip.calls) >= 3  # the first build did run pip
    pip = CountingPip()
    reports = b.build("dev", out_dir=lambda_bundles.out_dir, platform=PLATFORM, pip=pip,
                      pip_args=real_wheels)
    assert pip.calls == []
    for report in reports:
        first = lambda_bundles.reports[report.function]
        assert report.cached
        assert report.packages == first.packages
        assert report.file_count == first.file_count
        assert (report.path / "handler.py").is_file()
        # The bytecode is made again (the code may have changed), for 3.12 only.
        _check_bytecode(report.path, "3.12", report)


def test_stamp_follows_requirements_platform_python_and_code(offline: Offline) -> None:
    offline.requirements("plainlib\n")
    pip = CountingPip()
    first = offline.build(pip)
    assert not first.cached and len(pip.calls) == 1
    assert json.loads((first.path / b.STAMP_FILE).read_text())["code"] == [
        "handler.py", "helper.py", "collections_core"]

    # Code changes are picked up without pip; a deleted module leaves the bundle.
    (offline.lambdas / "fakefn" / "handler.py").write_text("def handler(e, c):\n    return 2\n")
    (offline.lambdas / "fakefn" / "helper.py").unlink()
    again = offline.build(pip)
    assert again.cached and len(pip.calls) == 1
    assert "return 2" in (again.path / "handler.py").read_text()
    assert not (again.path / "helper.py").exists()
    assert (again.path / "plainlib" / "__init__.py").is_file()

    offline.build(pip, python_version=LOCAL_PYTHON)  # another Python: pip again
    assert len(pip.calls) == 2
    offline.requirements("plainlib\nlightdep<2\n")  # another requirements file: pip again
    assert not offline.build(pip, python_version=LOCAL_PYTHON).cached
    assert len(pip.calls) == 3

    # A damaged bundle (a vendored package deleted) is rebuilt even though the stamp matches.
    shutil.rmtree(offline.out / "fakefn" / "plainlib")
    repaired = offline.build(pip, python_version=LOCAL_PYTHON)
    assert not repaired.cached and len(pip.calls) == 4
    assert (repaired.path / "plainlib" / "__init__.py").is_file()


# ------------------------------------------------------------------- the architecture setting


@pytest.fixture(scope="module")
def arm64_bundles(tmp_path_factory: pytest.TempPathFactory,
                  real_wheels: tuple[str, ...]) -> Built:
    """`collections build dev` with `architecture = "arm64"` in dev's settings."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(pipeline.ENVIRONMENTS, "dev",
                      dataclasses.replace(pipeline.environment("dev"), architecture="arm64"))
        pip = CountingPip()
        reports = b.build("dev", out_dir=tmp_path_factory.mktemp("bundles-arm64"), pip=pip,
                          pip_args=real_wheels)
    return Built(tmp_path_factory.getbasetemp(), {r.function: r for r in reports}, pip)


@pytest.mark.parametrize("key", ["processor", "analyzer", "embedder"])
def test_an_arm64_environment_gets_aarch64_wheels(arm64_bundles: Built, key: str) -> None:
    report = arm64_bundles.reports[key]
    bundle = report.path
    assert report.platform == bundle_deps.PLATFORMS["arm64"] == "manylinux2014_aarch64"
    assert b.bundle_architecture(bundle) == "arm64"
    tags = bundle_wheels.check_wheel_tags(bundle, python_version="3.12", platform=report.platform)
    compiled = {d: ts for d, (_v, ts) in tags.items() if not any(t.endswith("-any") for t in ts)}
    assert {"pillow", "psycopg-binary"} & set(compiled) or key == "embedder"
    assert compiled and all(any(t.endswith("aarch64") for t in ts) for ts in compiled.values())
    with pytest.raises(bundle_deps.BuildError, match="wheels that do not run on manylinux2014_x86_64"):
        bundle_wheels.check_wheel_tags(bundle, python_version="3.12", platform=bundle_deps.PLATFORMS["x86_64"])
    # The bytecode is the same for either architecture.
    _check_bytecode(bundle, "3.12", report)
    sizes = round(report.size_mb, 1)
    print(f"\n{key} arm64 bundle: {sizes} MB unzipped")
    assert report.size_bytes < 0.8 * b.LAMBDA_UNZIPPED_LIMIT


def test_both_architectures_vendor_the_versions_the_lock_pins(lambda_bundles: Built,
                                                                arm64_bundles: Built) -> None:
    # Without the lock pip picked psycopg 3.3 for x86_64 (it has manylinux2014 wheels there)
    # and 3.2 for arm64 (3.3 has none for manylinux2014_aarch64).
    for fn in pipeline.DEPLOYED_FUNCTIONS:
        x86, arm = lambda_bundles.reports[fn.key], arm64_bundles.reports[fn.key]
        assert x86.packages == arm.packages, fn.key
        assert x86.omitted == arm.omitted, fn.key
        lock = bundle_lock.Lock.read(paths.lambda_code_dir(fn.code_dir) / bundle_lock.LOCK_FILE)
        # Everything vendored, and everything the no-deps section leaves out, is locked.
        assert {**x86.packages, **x86.omitted} == lock.pins, fn.key


def test_the_platform_follows_the_environments_architecture(offline: Offline,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    offline.requirements("plainlib\n")
    [x86] = b.build("dev", out_dir=offline.out, functions=[offline.fn],
                    lambdas_dir=offline.lambdas, pip_args=offline.pip_args)
    assert x86.platform == bundle_deps.DEFAULT_PLATFORM and b.bundle_architecture(x86.path) == "x86_64"
    monkeypatch.setitem(pipeline.ENVIRONMENTS, "dev",
                        dataclasses.replace(pipeline.environment("dev"), architecture="arm64"))
    [arm] = b.build("dev", out_dir=offline.out, functions=[offline.fn],
                    lambdas_dir=offline.lambdas, pip_args=offline.pip_args)
    assert arm.platform == "manylinux2014_aarch64" and not arm.cached  # another platform: pip
    assert b.bundle_architecture(arm.path) == "arm64"
    assert b.bundle_architecture(offline.lambdas / "fakefn") is None  # no build made it


# ------------------------------------------------------------- bytecode for the runtime


def test_bytecode_is_compiled_by_an_interpreter_of_the_target_version(offline: Offline) -> None:
    offline.requirements("plainlib\n")
    report = offline.build(python_version=LOCAL_PYTHON)
    _check_bytecode(report.path, LOCAL_PYTHON, report)
    assert report.notes == []
    # A module edited in the source is compiled afresh on the next build (unchecked-hash
    # bytecode would otherwise keep running the old code).
    (offline.lambdas / "fakefn" / "helper.py").write_text("X = 2\n")
    again = offline.build(python_version=LOCAL_PYTHON)
    assert again.cached
    probe = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c",
         f"import sys; sys.path[:0] = [{str(again.path)!r}]; import helper; print(helper.X, "
         "helper.__cached__ is not None)"],
        capture_output=True, text=True, check=True)
    assert probe.stdout.split() == ["2", "True"]


def test_a_cached_build_keeps_current_bytecode_and_drops_what_is_stale(offline: Offline) -> None:
    """A second build reuses the vendored packages' bytecode (their sources did not change:
    recompiling the analyzer's ~14,000 files cost ~20 s per deploy) and removes every .pyc it
    cannot vouch for: another interpreter's, a timestamp-checked one, and that of a module that
    no longer compiles (an unchecked .pyc is trusted blindly on Lambda, old code and all)."""
    offline.requirements("plainlib\n")
    first = offline.build(python_version=LOCAL_PYTHON)
    vendored = _pyc_of(first.path / "plainlib" / "__init__.py", LOCAL_PYTHON)
    kept = (vendored.read_bytes(), vendored.stat().st_mtime_ns)
    helper = _pyc_of(first.path / "helper.py", LOCAL_PYTHON)
    assert helper.is_file()
    foreign = vendored.with_name("__init__.cpython-39.pyc")
    foreign.write_bytes(b"left by another interpreter")
    handler = _pyc_of(first.path / "handler.py", LOCAL_PYTHON)
    checked = bytearray(handler.read_bytes())
    checked[4:8] = (0).to_bytes(4, "little")  # timestamp-checked, as a local run writes
    handler.write_bytes(bytes(checked))
    (offline.lambdas / "fakefn" / "helper.py").write_text("print 'python 2'\n")

    again = offline.build(python_version=LOCAL_PYTHON)

    assert again.cached
    assert (vendored.read_bytes(), vendored.stat().st_mtime_ns) == kept  # not compiled again
    assert not foreign.exists()
    assert int.from_bytes(handler.read_bytes()[4:8], "little") == 0b01
    assert not helper.exists()  # the old code's bytecode is gone with its source
    [note] = again.notes
    assert "1 module(s) do not compile" in note and "helper.py" in note


def test_bytecode_is_the_same_wherever_the_bundle_is_built(offline: Offline,
                                                            tmp_path: Path) -> None:
    offline.requirements("plainlib\n")
    first = offline.build(python_version=LOCAL_PYTHON)
    [second] = b.build("dev", out_dir=tmp_path / "elsewhere", functions=[offline.fn],
                       lambdas_dir=offline.lambdas, platform=PLATFORM,
                       pip_args=offline.pip_args, python_version=LOCAL_PYTHON)
    pycs = sorted(p.relative_to(first.path) for p in first.path.rglob("*.pyc"))
    assert pycs and pycs == sorted(p.relative_to(second.path) for p in second.path.rglob("*.pyc"))
    for rel in pycs:
        assert (first.path / rel).read_bytes() == (second.path / rel).read_bytes(), rel


def test_without_an_interpreter_of_the_runtime_version_the_bundle_ships_as_source(
        offline: Offline, caplog: pytest.LogCaptureFixture) -> None:
    # No machine has a CPython 3.99: the build says so, how to get one, and still builds.
    offline.requirements("plainlib\n")
    assert bundle_bytecode.find_interpreter("3.99") is None
    with caplog.at_level("WARNING", logger=b.__name__):
        report = offline.build(python_version="3.99")
    assert (report.path / "handler.py").is_file() and (report.path / "plainlib").is_dir()
    assert not list(report.path.rglob("*.pyc"))
    assert report.bytecode is None and report.compiled_files == 0
    [note] = report.notes
    assert note.startswith("no CPython 3.99 found on this machine")
    assert "pyenv install 3.99" in note and bundle_bytecode.ENV_BUILD_PYTHON in note
    assert note in caplog.text
    # Asked not to compile: no bytecode and nothing to say.
    quiet = offline.build(python_version=LOCAL_PYTHON, bytecode=False)
    assert not list(quiet.path.rglob("*.pyc")) and quiet.notes == []


def test_an_interpreter_named_explicitly_must_be_of_the_runtime_version(
        offline: Offline, monkeypatch: pytest.MonkeyPatch) -> None:
    offline.requirements("plainlib\n")
    with pytest.raises(bundle_deps.BuildError, match=r"CPython 3\.\d+\.\d+; the bundles' bytecode must "
                                           r"be compiled by CPython 3\.99"):
        offline.build(python_version="3.99", compile_python=sys.executable)
    monkeypatch.setenv(bundle_bytecode.ENV_BUILD_PYTHON, str(offline.lambdas / "no-such-python"))
    with pytest.raises(bundle_deps.BuildError, match="not a runnable CPython"):
        offline.build(python_version=LOCAL_PYTHON)
    monkeypatch.setenv(bundle_bytecode.ENV_BUILD_PYTHON, sys.executable)
    report = offline.build(python_version=LOCAL_PYTHON)
    assert report.bytecode == f"CPython {platform_module.python_version()} at {sys.executable}"


def test_a_module_that_does_not_compile_is_named_and_shipped_as_source(offline: Offline) -> None:
    offline.requirements("plainlib\n")
    (offline.lambdas / "fakefn" / "legacy.py").write_text("print 'python 2'\n")
    report = offline.build(python_version=LOCAL_PYTHON)
    assert (report.path / "legacy.py").is_file()
    assert not _pyc_of(report.path / "legacy.py", LOCAL_PYTHON).exists()
    assert _pyc_of(report.path / "handler.py", LOCAL_PYTHON).is_file()
    [note] = report.notes
    assert "1 module(s) do not compile" in note and "legacy.py" in note


def test_a_failed_build_leaves_no_stamp_that_would_skip_pip(offline: Offline) -> None:
    offline.requirements("sdistonly\n", pins={"sdistonly": "1.0"})
    with pytest.raises(bundle_deps.BuildError):
        offline.build()
    assert not (offline.out / "fakefn" / b.STAMP_FILE).exists()


# ------------------------------------------------------------------------------- wheel tags


@pytest.mark.parametrize(("tag", "ok"), [
    ("py3-none-any", True),
    ("py2.py3-none-any", True),
    ("cp312-cp312-manylinux_2_17_x86_64", True),
    ("cp312-cp312-manylinux2014_x86_64", True),
    ("cp312-cp312-manylinux1_x86_64", True),
    ("cp38-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64", True),
    ("cp312-none-any", True),
    ("cp312-cp312-manylinux_2_28_x86_64", False),  # needs a newer glibc than manylinux2014
    ("cp311-cp311-manylinux_2_17_x86_64", False),
    ("cp313-abi3-manylinux_2_17_x86_64", False),
    ("cp312-cp312-manylinux_2_17_aarch64", False),
    ("cp312-cp312-musllinux_1_2_x86_64", False),
    ("cp312-cp312-macosx_11_0_arm64", False),
    ("pp310-pypy310_pp73-manylinux_2_17_x86_64", False),
    ("py2-none-any", False),
    ("garbage", False),
])
def test_tag_compatibility(tag: str, ok: bool) -> None:
    assert bundle_wheels.tag_compatible(tag, python_version="3.12", platform="manylinux2014_x86_64") is ok


def test_check_wheel_tags_names_every_misfit(tmp_path: Path) -> None:
    for name, tag in (("good", "py3-none-any"), ("macwheel", "cp312-cp312-macosx_11_0_arm64"),
                      ("old", "cp311-cp311-manylinux2014_x86_64")):
        info = tmp_path / f"{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nTag: {tag}\n")
    with pytest.raises(bundle_deps.BuildError) as info_:
        bundle_wheels.check_wheel_tags(tmp_path, python_version="3.12", platform="manylinux2014_x86_64")
    message = str(info_.value)
    assert "macwheel 1.0" in message and "old 1.0" in message and "good" not in message
    shutil.rmtree(tmp_path / "macwheel-1.0.dist-info")
    shutil.rmtree(tmp_path / "old-1.0.dist-info")
    assert bundle_wheels.check_wheel_tags(tmp_path) == {"good": ("1.0", ["py3-none-any"])}
