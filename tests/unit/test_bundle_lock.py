"""The bundles' lock: one resolution per function for both Lambda architectures, written by
`collections build --lock`, used by every build as a constraint, part of the bundle's stamp,
and refused once requirements.txt has changed since it was written.

Everything resolves from wheels made in tmp (`--no-index`): `nativelib` 2.0 has a wheel for
x86_64 only, as psycopg-binary 3.3 has for manylinux2014, so the architectures disagree
unless the lock makes them agree. The real locks are checked against their requirements here;
tests/unit/test_build.py builds the real bundles with them for both architectures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from collections_ops import paths, pipeline
from collections_ops.cli.app import app
from collections_ops.services import bundle_deps, bundle_lock, bundle_wheels
from tests.fakes import wheels
from tests.fakes.wheels import Offline

pytestmark = pytest.mark.timeout(300)

X86, ARM = bundle_deps.PLATFORMS["x86_64"], bundle_deps.PLATFORMS["arm64"]


def _both(wheelhouse: Path, name: str, version: str, **kwargs: object) -> None:
    """A compiled package's wheels for both architectures."""
    for platform in (X86, ARM):
        wheels.wheel(wheelhouse, name, version, tag=f"cp312-cp312-{platform}",
                      **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def offline(tmp_path: Path) -> Offline:
    tree = wheels.offline(tmp_path, X86)
    _both(tree.wheelhouse, "nativelib", "1.0")
    wheels.wheel(tree.wheelhouse, "nativelib", "2.0", tag=f"cp312-cp312-{X86}")  # x86_64 only
    wheels.wheel(tree.wheelhouse, "x86only", "1.0", tag=f"cp312-cp312-{X86}")
    # The same version declaring another dependency on one architecture.
    wheels.wheel(tree.wheelhouse, "splitlib", "1.0", tag=f"cp312-cp312-{X86}",
                 requires=["helperlib"])
    wheels.wheel(tree.wheelhouse, "splitlib", "1.0", tag=f"cp312-cp312-{ARM}")
    wheels.wheel(tree.wheelhouse, "helperlib", "1.0")
    return tree


def _write_requirements(offline: Offline, text: str) -> None:
    (offline.source / bundle_deps.REQUIREMENTS_FILE).write_text(text)


# ----------------------------------------------------------------- one resolution for both


def test_the_lock_is_one_resolution_for_both_architectures(offline: Offline) -> None:
    # GIVEN requirements that pip, left to itself, resolves differently per architecture
    _write_requirements(offline, "nativelib\nplainlib\n")
    alone = {arch: bundle_deps.resolve(["nativelib", "plainlib"], platform=platform, python_version="3.12",
                             pip_args=offline.pip_args)["nativelib"][0]
             for arch, platform in bundle_deps.PLATFORMS.items()}
    assert alone == {"x86_64": "2.0", "arm64": "1.0"}

    # WHEN the lock is written
    report = offline.lock()

    # THEN it pins the version both have wheels for, and says what it aligned
    assert report.packages == {"lightdep": "1.0", "nativelib": "1.0", "plainlib": "1.0"}
    assert report.aligned == {"nativelib": {"x86_64": "2.0", "arm64": "1.0"}}
    assert report.rounds == 2 and report.changed
    text = report.path.read_text()
    assert report.path == offline.source / "requirements.lock"
    assert text.endswith("lightdep==1.0\nnativelib==1.0\nplainlib==1.0\n")
    assert f"#     {bundle_deps.LOCK_COMMAND}\n" in text
    assert X86 in text and ARM in text

    # AND a bundle built for either architecture vendors the same versions
    built = {}
    for arch, platform in bundle_deps.PLATFORMS.items():
        bundle = offline.build(platform=platform, bytecode=False)
        built[arch] = bundle.packages
        bundle_wheels.check_wheel_tags(bundle.path, platform=platform)  # each its own architecture's wheel
    assert built["x86_64"] == built["arm64"] == report.packages


def test_writing_the_lock_again_changes_nothing(offline: Offline) -> None:
    _write_requirements(offline, "nativelib\n")
    first = offline.lock()
    again = offline.lock()
    assert first.changed and not again.changed
    assert again.packages == first.packages == {"nativelib": "1.0"}


def test_a_package_with_no_wheel_for_one_architecture_is_refused_by_name(
        offline: Offline) -> None:
    _write_requirements(offline, "plainlib\nx86only\n")
    with pytest.raises(bundle_deps.BuildError) as info:
        offline.lock()
    message = str(info.value)
    assert message.startswith(f"x86only has no wheel for {ARM} / Python 3.12"), message
    assert "locking fake for arm64" in message
    assert not bundle_lock.lock_path(offline.source).exists()


def test_a_package_that_only_one_architecture_pulls_in_is_refused(offline: Offline) -> None:
    _write_requirements(offline, "splitlib\n")
    with pytest.raises(bundle_deps.BuildError, match="packages that not every architecture resolves: "
                                           "helperlib only for x86_64"):
        offline.lock()


# ---------------------------------------------------------------- the build and the lock


def test_a_missing_or_stale_lock_is_refused_with_the_refresh_command(offline: Offline) -> None:
    offline.requirements("plainlib  # the lock is written from the local wheels\n")
    offline.build(bytecode=False)

    # Rewording a comment leaves the lock current.
    _write_requirements(offline, "# why plainlib\nplainlib  # reworded\n")
    offline.build(bytecode=False)

    # A requirement changed since the lock was written: refused, however the bundle stands.
    _write_requirements(offline, "plainlib\nnativelib\n")
    with pytest.raises(bundle_deps.BuildError) as stale:
        offline.build(bytecode=False)
    assert "fake: " in str(stale.value) and "requirements.lock is stale" in str(stale.value)
    assert stale.value.hint and bundle_deps.LOCK_COMMAND in stale.value.hint

    bundle_lock.lock_path(offline.source).unlink()
    with pytest.raises(bundle_deps.BuildError, match=r"requirements\.lock is missing") as missing:
        offline.build(bytecode=False)
    assert missing.value.hint and bundle_deps.LOCK_COMMAND in missing.value.hint

    # Refreshed, the build takes the new requirement.
    offline.lock()
    assert offline.build(bytecode=False).packages["nativelib"] == "1.0"  # what both have


def test_a_changed_lock_changes_the_stamp(offline: Offline) -> None:
    offline.requirements("lightdep\n")
    first = offline.build(bytecode=False)
    assert first.packages == {"lightdep": "2.0"} and not first.cached
    assert offline.build(bytecode=False).cached

    # The same requirements, another pin (still current): pip runs again, at the lock's version.
    offline.write_lock({"lightdep": "1.0"})
    relocked = offline.build(bytecode=False)
    assert not relocked.cached and relocked.packages == {"lightdep": "1.0"}
    assert offline.build(bytecode=False).cached


def test_every_pip_step_of_a_no_deps_build_follows_the_lock(offline: Offline) -> None:
    # The no-deps section is resolved with its dependencies, then installed without them; the
    # lock pins that resolution too (heavydep, left out of the bundle, included).
    offline.requirements(f"{bundle_deps.NO_DEPS_MARKER}\ntoplib\nlightdep\n",
                         pins={"toplib": "1.0", "lightdep": "1.0", "heavydep": "1.0"})
    report = offline.build(bytecode=False)
    assert report.packages == {"toplib": "1.0", "lightdep": "1.0"}
    assert report.omitted == {"heavydep": "1.0"}


# ------------------------------------------------------------------- the command and the files


@pytest.fixture
def lambdas_tree(offline: Offline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lambdas/ tree with every deployed function, the CLI pointed at it and pip at the
    local wheels only (pip reads PIP_* from the environment of the process it runs in)."""
    for fn in pipeline.DEPLOYED_FUNCTIONS:
        wheels.function_tree(offline.lambdas, fn.code_dir)
        (offline.lambdas / fn.code_dir / bundle_deps.REQUIREMENTS_FILE).write_text(
            "nativelib\n" if fn.key == "processor" else "plainlib\n")
    monkeypatch.setenv("COLLECTIONS_LAMBDAS_DIR", str(offline.lambdas))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(offline.wheelhouse))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("COLLECTIONS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("COLLECTIONS_ENV", raising=False)
    return offline.lambdas


def test_build_lock_writes_every_functions_lock(lambdas_tree: Path) -> None:
    # The command every error names is the one that writes them.
    assert bundle_deps.LOCK_COMMAND == "collections build --lock"
    result = CliRunner().invoke(app, [*bundle_deps.LOCK_COMMAND.split()[1:], "-o", "json"])
    assert result.exit_code == 0, result.output
    reports = {r["function"]: r for r in json.loads(result.stdout)}
    assert set(reports) == {fn.key for fn in pipeline.DEPLOYED_FUNCTIONS}
    for fn in pipeline.DEPLOYED_FUNCTIONS:
        source = lambdas_tree / fn.code_dir
        lock = bundle_lock.current(fn.key, source, bundle_deps.Requirements.read(source / "requirements.txt"))
        assert reports[fn.key]["changed"] and reports[fn.key]["packages"] == lock.pins
    assert reports["processor"]["packages"] == {"nativelib": "1.0"}
    assert reports["processor"]["aligned"] == {"nativelib": {"x86_64": "2.0", "arm64": "1.0"}}

    again = CliRunner().invoke(app, ["build", "--lock"])
    assert again.exit_code == 0, again.output
    assert again.stdout.count("(unchanged)") == len(pipeline.DEPLOYED_FUNCTIONS)
    assert "nativelib 1.0 (x86_64 2.0)" in again.stdout


def test_build_names_every_stale_lock_and_the_refresh_command(lambdas_tree: Path) -> None:
    assert CliRunner().invoke(app, ["build", "--lock"]).exit_code == 0
    for code_dir in ("analyzer", "embedder"):
        (lambdas_tree / code_dir / bundle_deps.REQUIREMENTS_FILE).write_text("plainlib\nlightdep\n")
    result = CliRunner().invoke(app, ["build", "dev"])
    assert result.exit_code == 1
    assert result.output.count("requirements.lock is stale") == 2
    assert "analyzer:" in result.output and "embedder:" in result.output
    assert bundle_deps.LOCK_COMMAND in result.output
    # Refused before any bundle was made (the others' locks are current).
    assert not (lambdas_tree.parent / "state" / "build" / "dev").exists()


# --------------------------------------------------------------------------- the real locks


@pytest.mark.parametrize("fn", pipeline.DEPLOYED_FUNCTIONS, ids=lambda fn: fn.key)
def test_each_functions_checked_in_lock_is_current(fn: pipeline.Function) -> None:
    source = paths.lambda_code_dir(fn.code_dir)
    lock = bundle_lock.current(fn.key, source, bundle_deps.Requirements.read(source / "requirements.txt"))
    listed = bundle_deps.Requirements.read(source / "requirements.txt").lines
    assert {bundle_deps.canonical_name(bundle_deps.requirement_name(line)) for line in listed} <= set(lock.pins)
    assert lock.pins["psycopg"] == lock.pins["psycopg-binary"]
    assert f"{bundle_deps.PLATFORMS['x86_64']}, arm64: {bundle_deps.PLATFORMS['arm64']}" in lock.text


def test_versions_are_ordered_as_releases() -> None:
    lower = bundle_lock.version_key
    assert min("3.3.9", "3.2.13", key=lower) == "3.2.13"
    assert min("2.4.0", "0.31.4", key=lower) == "0.31.4"
    assert min("1.10", "1.9", key=lower) == "1.9"
    assert lower("1.0") == lower("1.0.0")
    assert lower("1.0rc1") < lower("1.0") < lower("1.0.post1")
    assert lower("2026.10.19") < lower("2026.10.19.post1")
