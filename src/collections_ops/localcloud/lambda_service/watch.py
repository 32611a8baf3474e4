"""Hot reload of the local cloud's handlers (`collections deploy local --watch`), and the
`live` alias deciding what runs.

Three parts, one file between them (the code stamp, `code.json`); the reloader, which runs
in another process, is `reloader.py`:

- The **watcher** (the CLI's process) polls the mtimes of the handlers' sources (each function
  folder and the shared code, under `paths.lambdas_root()`) every 100 ms. When they change and
  settle, it builds each function's package as `collections build` lays it out, and for each
  function whose package changed it does what a deploy of changed code does on AWS: updates
  the function's code, publishes a version and moves `live` to it -- through the local Lambda
  API, keeping the version's package under the state directory, so the versions, `rollback`
  and a restart of the emulator all agree. Then it writes the code stamp (`code.json`).
- The **follower** (in the emulator, `follow_live`) sees every move of a function's `live`
  alias -- provisioning, a hot reload, `rollback --function`, `configure` -- and points the
  stamp at that version's package: what the dispatchers run is what `live` names, as on AWS.
- The **reloader** (in each dispatcher process, `reloader.CodeReloader`) applies the stamp when
  it starts, then looks at the stamp's mtime before every invocation. When it changed, it lets
  the invocations in flight finish on the old code (for as long as their timeout allows: one
  that runs past it no longer holds the reload back), holds new ones back, and drops the
  changed functions' modules (every function's, and the shared `collections_core`, when the
  shared code changed); the next invocation imports the new code and starts with no
  per-container state, as a new Lambda container would.

A broken edit never kills a dispatcher. A syntax error is caught by the watcher, which reports
it and publishes nothing: the previous version keeps serving. An error raised while the new
code is imported (a missing module, a failing module-level statement) is what AWS would run
into too: the invocation fails with Lambda's init error (`Runtime.ImportModuleError`, ...),
is retried like any failure, and the next invocation tries to import again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collections_ops import paths
from collections_ops.localcloud.state import StateDir
from collections_ops.pipeline import FUNCTIONS, LIVE_ALIAS, Environment, Function

RETRY_S = 2.0  # after a failed publish round
POLL_S = 0.1  # how often the watcher looks at the sources' mtimes

log = logging.getLogger("collections.localcloud")


@dataclass(frozen=True)
class Reload:
    """One function's reload: the version published, or why nothing was."""

    function: str
    version: str | None
    seconds: float
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"{self.function}: not reloaded: {self.error}"
        return f"reloaded {self.function} → version {self.version} in {self.seconds:.1f} s"


def read_stamp(state_dir: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        stamp = json.loads(StateDir(state_dir).code_stamp.read_text())
        if isinstance(stamp, dict):
            return stamp
    return {}


# --------------------------------------------------------------------------- the watcher


def _source_dirs() -> list[Path]:
    return [paths.shared_code_dir(), *(paths.lambda_code_dir(fn.code_dir) for fn in FUNCTIONS)]


def source_times() -> dict[str, tuple[int, int]]:
    """Every handler source file and its (mtime, size)."""
    seen: dict[str, tuple[int, int]] = {}
    shared, *function_dirs = _source_dirs()
    files = [p for p in shared.rglob("*.py") if "__pycache__" not in p.parts]
    for folder in function_dirs:
        with contextlib.suppress(OSError):
            files += paths.function_files(folder)
    for path in files:
        with contextlib.suppress(OSError):
            st = path.stat()
            seen[str(path)] = (st.st_mtime_ns, st.st_size)
    return seen


def _syntax_error(sources: dict[str, bytes]) -> str | None:
    """The first syntax error among the package's modules (its data files are not Python)."""
    for name, source in sorted(sources.items()):
        if not name.endswith(".py"):
            continue
        try:
            compile(source, name, "exec", dont_inherit=True)
        except SyntaxError as exc:
            return f"{name}:{exc.lineno}: {exc.msg}"
    return None


def publish_changed(lam: Any, env: Environment, state_dir: Path) -> list[Reload]:
    """Publish a version of each function whose package changed; then write the stamp.
    With a syntax error anywhere, nothing is published (the error is the one result)."""
    from collections_ops.localcloud.provision import (
        code_digest,
        code_fingerprint,
        function_sources,
        zip_sources,
    )
    started = time.monotonic()
    # Before the sources are read: a save during this round makes the stamp older than what
    # was published (the next `deploy local` compares again), never newer (it would skip it).
    fingerprint = code_fingerprint()
    packages: dict[str, bytes] = {}
    for fn in FUNCTIONS:
        sources = {name: path.read_bytes() for name, path in function_sources(fn).items()}
        error = _syntax_error(sources)
        if error is not None:
            live = _live(lam, env, fn)
            return [Reload(fn.key, None, time.monotonic() - started,
                           f"{fn.code_dir}/{error} (still running version {live})")]
        packages[fn.key] = zip_sources(sources)
    reloads = []
    moved: dict[str, dict[str, Any]] = {}
    for fn in FUNCTIONS:
        code = packages[fn.key]
        history = StateDir(state_dir).lambda_history / fn.key
        kept = sorted(history.glob("*.zip"), key=lambda p: int(p.stem))
        if kept and code_digest(kept[-1].read_bytes()) == code_digest(code):
            continue
        name = fn.function_name(env.name)
        lam.update_function_code(FunctionName=name, ZipFile=code)
        # The emulator keeps the version's package in the history as it publishes it
        # (`follow_live`), so the next round compares with it.
        version = str(lam.publish_version(FunctionName=name)["Version"])
        lam.update_alias(FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=version)
        moved[fn.key] = _entry(state_dir, fn.key, version, code)
        reloads.append(Reload(fn.key, version, 0.0))
    if not reloads:
        return []
    # The emulator has pointed the stamp at the new versions already (`follow_live`); this
    # also says the saved sources are what runs, so `deploy local` does not reload them again.
    update_stamp(state_dir, moved, code=fingerprint)
    took = time.monotonic() - started
    return [Reload(r.function, r.version, took) for r in reloads]


# --------------------------------------------------------------------------- what `live` runs


def _entry(state_dir: Path, key: str, version: str, code: bytes) -> dict[str, Any]:
    """The stamp's entry of a function whose `live` runs `version` (package `code`)."""
    from collections_ops.localcloud.provision import code_digest

    digest = code_digest(code)
    return {"version": version, "digest": digest, "shared": package_shared_digest(code),
            "dir": str(_unpacked(state_dir, key, version, code, digest))}


def _unpacked(state_dir: Path, key: str, version: str, code: bytes, digest: str) -> Path:
    """The published package as files, which the dispatchers import: what runs is what was
    published, whatever is saved after it. A version's folder is written once (a dispatcher
    may be importing from it); `<version>.digest` beside it says which code it holds."""
    import io
    import shutil
    import zipfile

    folder = StateDir(state_dir).code / key / version
    marker = folder.with_name(f"{version}.digest")
    with contextlib.suppress(OSError):
        if folder.is_dir() and marker.read_text() == digest:
            return folder
    tmp = folder.with_name(f"{version}.tmp-{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(code)) as zf:
        zf.extractall(tmp)
    shutil.rmtree(folder, ignore_errors=True)  # the number held other code (an older store)
    os.replace(tmp, folder)
    marker.write_text(digest)
    return folder


def package_shared_digest(code: bytes) -> str:
    """The identity of the shared package inside a function's package, computed as
    `provision.shared_digest` computes it from the sources (so the two compare)."""
    import hashlib
    import io
    import zipfile

    from collections_ops.localcloud.provision import SHARED_PACKAGE

    prefix = SHARED_PACKAGE + "/"
    digest = hashlib.sha256()
    with zipfile.ZipFile(io.BytesIO(code)) as zf:
        names = [n for n in zf.namelist() if n.startswith(prefix) and n.endswith(".py")]
        for name in sorted(names, key=lambda n: n.split("/")):
            digest.update(name[len(prefix):].encode() + b"\0" + zf.read(name) + b"\0")
    return digest.hexdigest()


def _shared(functions: dict[str, dict[str, Any]]) -> str:
    """The shared code the live versions run: one digest when they agree (the usual case)."""
    import hashlib

    kinds = sorted({str(entry.get("shared", "")) for entry in functions.values()})
    if len(kinds) <= 1:
        return kinds[0] if kinds else ""
    return hashlib.sha256("|".join(kinds).encode()).hexdigest()


@contextlib.contextmanager
def _stamp_lock(state_dir: Path) -> Iterator[None]:
    """The emulator (at each move of `live`) and the watcher both update the stamp."""
    import fcntl

    with open(StateDir(state_dir).code_stamp_lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_stamp(state_dir: Path, functions: dict[str, dict[str, Any]], *,
                 code: str | None = None, fresh: bool = False) -> None:
    """Merge these functions' entries into the stamp (a `fresh` stamp starts empty); `code`
    records that these saved sources are what runs."""
    with _stamp_lock(state_dir):
        stamp = read_stamp(state_dir)
        merged = {**({} if fresh else stamp.get("functions", {})), **functions}
        _write_stamp(state_dir, {
            "generation": int(stamp.get("generation", 0)) + 1, "functions": merged,
            "shared": _shared(merged),
            "code": code if code is not None or fresh else stamp.get("code"),
            "time": time.time()})


def live_moved(state_dir: Path, key: str, version: str, code: bytes) -> None:
    """`live` of the function `key` now points at `version`, whose package is `code`: the
    dispatchers run that package from their next invocation (see `reloader.CodeReloader`)."""
    update_stamp(state_dir, {key: _entry(state_dir, key, version, code)})


def follow_live(env: Environment, state_dir: Path, *, code: str) -> None:
    """In the emulator: whatever moves a function's `live` alias -- the provisioning at start,
    `rollback --function`, a hot reload, `configure` / `tune --apply`, any Lambda client's
    `update-alias` -- decides what the dispatchers run, as the triggers invoke `live` on AWS.
    Every published version's package is kept in the version history (a restart publishes
    the same versions again) and where `live` points is remembered for the next start.
    `code` is the fingerprint of the sources this start publishes."""
    from moto.awslambda.models import LambdaBackend

    from collections_ops.localcloud.provision import (
        record_deleted_version,
        record_live_version,
        record_version,
    )

    history = StateDir(state_dir).lambda_history
    keys = {fn.function_name(env.name): fn.key for fn in FUNCTIONS}
    update_stamp(state_dir, {}, code=code, fresh=True)  # the provisioning fills it in
    create_alias, update_alias = LambdaBackend.create_alias, LambdaBackend.update_alias
    publish_version, delete_function = LambdaBackend.publish_version, \
        LambdaBackend.delete_function

    def split(function_name: str) -> tuple[str, str | None]:
        """A name, `name:3` or an ARN: the function's name and the qualifier, if any."""
        name, _, qualifier = function_name.split(":function:", 1)[-1].partition(":")
        return name, qualifier or None

    def short(function_name: str) -> str:
        return split(function_name)[0]

    def moved(backend: Any, alias: Any, function_name: str, *, start: bool) -> None:
        key = keys.get(short(function_name))
        if alias.name != LIVE_ALIAS or key is None:
            return
        version = str(alias.function_version)
        if not start:
            record_live_version(history, key, version)
        package = backend.get_function(short(function_name), version).code_bytes
        live_moved(state_dir, key, version, package)

    def on_create(self: Any, name: str, function_name: str, *args: Any, **kw: Any) -> Any:
        alias = create_alias(self, name, function_name, *args, **kw)
        moved(self, alias, function_name, start=True)
        return alias

    def on_update(self: Any, name: str, function_name: str, *args: Any, **kw: Any) -> Any:
        alias = update_alias(self, name, function_name, *args, **kw)
        moved(self, alias, function_name, start=False)
        return alias

    def on_publish(self: Any, function_name: str, *args: Any, **kw: Any) -> Any:
        published = publish_version(self, function_name, *args, **kw)
        key = keys.get(short(function_name))
        if published is not None and key is not None:
            # Also `configure`, `tune --apply`: a new version of the same code, with its own
            # settings, which a restart gives it again.
            record_version(history, key, str(published.version), published.code_bytes,
                           {"MemorySize": published.memory_size, "Timeout": published.timeout})
        return published

    def on_delete(self: Any, function_name: str, qualifier: str | None = None) -> None:
        delete_function(self, function_name, qualifier)
        name, named = split(function_name)
        key, version = keys.get(name), qualifier or named
        if key is not None and version and version.isdigit():
            record_deleted_version(history, key, version)  # a prune: gone after a restart too

    LambdaBackend.create_alias = on_create  # type: ignore[method-assign]
    LambdaBackend.update_alias = on_update  # type: ignore[method-assign]
    LambdaBackend.publish_version = on_publish  # type: ignore[method-assign]
    LambdaBackend.delete_function = on_delete  # type: ignore[method-assign]


def _live(lam: Any, env: Environment, fn: Function) -> str:
    try:
        alias = lam.get_alias(FunctionName=fn.function_name(env.name), Name=LIVE_ALIAS)
        return str(alias["FunctionVersion"])
    except Exception:
        return "?"


def _write_stamp(state_dir: Path, stamp: dict[str, Any]) -> None:
    path = StateDir(state_dir).code_stamp
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, path)


def watch(lam: Any, env: Environment, state_dir: Path, *, report: Callable[[Reload], None],
          stop: threading.Event | None = None, poll_s: float = POLL_S) -> None:
    """Reload on every change until `stop` is set (or forever): a change is acted on once the
    sources have stayed the same for one poll (an editor's save is often several writes)."""
    stop = stop or threading.Event()
    known = source_times()
    retry_at = _publish_round(lam, env, state_dir, report)  # edits made before watching
    while not stop.wait(poll_s):
        now = source_times()
        if now == known and (retry_at is None or time.monotonic() < retry_at):
            continue
        while not stop.wait(poll_s):
            settled = source_times()
            if settled == now:
                break
            now = settled
        known = now
        retry_at = _publish_round(lam, env, state_dir, report)


def _publish_round(lam: Any, env: Environment, state_dir: Path,
                   report: Callable[[Reload], None]) -> float | None:
    """Publish what changed. A round that fails -- a file that vanished mid-save, the emulator
    restarting under the supervisor -- is reported and tried again after RETRY_S, with or
    without another change: watching never ends on it. Returns when to try again, if due."""
    try:
        for reload in publish_changed(lam, env, state_dir):
            report(reload)
    except Exception as exc:  # Ctrl-C (not an Exception) still ends watching
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        report(Reload("handlers", None, 0.0,
                      f"could not publish ({text}); trying again in {RETRY_S:.0f} s"))
        return time.monotonic() + RETRY_S
    return None
