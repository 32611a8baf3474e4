"""Hot reload of the local cloud's handlers (`collections deploy local --watch`).

Two halves, one file between them:

- The **watcher** (the CLI's process) polls the mtimes of the handlers' sources (each function
  folder and the shared code, under `paths.lambdas_root()`) every 100 ms. When they change and
  settle, it builds each function's package as `collections build` lays it out, and for each
  function whose package changed it does what a deploy of changed code does on AWS: updates
  the function's code, publishes a version and moves `live` to it -- through the local Lambda
  API, keeping the version's package under the state directory, so the versions, `rollback`
  and a restart of the emulator all agree. Then it writes the code stamp (`code.json`).
- The **reloader** (in each dispatcher process) looks at the stamp's mtime before every
  invocation. When it changed, it lets the invocations in flight finish on the old code, holds
  new ones back, and drops the changed functions' modules (every function's, and the shared
  `collections_core`, when the shared code changed); the next invocation imports the new
  code and starts with no per-container state, as a new Lambda container would.

A broken edit never kills a dispatcher. A syntax error is caught by the watcher, which reports
it and publishes nothing: the previous version keeps serving. An error raised while the new
code is imported (a missing module, a failing module-level statement) is what AWS would run
into too: the invocation fails with Lambda's init error (`Runtime.ImportModuleError`, ...),
is retried like any failure, and the next invocation tries to import again.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collections_ops import paths
from collections_ops.pipeline import FUNCTIONS, LIVE_ALIAS, Environment, Function

STAMP_FILE = "code.json"
CODE_DIR = "code"  # under the state directory: <function>/<version>/, each published package
POLL_S = 0.1  # how often the watcher looks at the sources' mtimes


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


def stamp_path(state_dir: Path) -> Path:
    return state_dir / STAMP_FILE


def read_stamp(state_dir: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        stamp = json.loads(stamp_path(state_dir).read_text())
        if isinstance(stamp, dict):
            return stamp
    return {}


# --------------------------------------------------------------------------- the watcher


def _source_dirs() -> list[Path]:
    return [paths.shared_code_dir(), *(paths.lambda_code_dir(fn.code_dir) for fn in FUNCTIONS)]


def source_times() -> dict[str, tuple[int, int]]:
    """Every handler source file and its (mtime, size)."""
    seen: dict[str, tuple[int, int]] = {}
    for folder in _source_dirs():
        for path in folder.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            with contextlib.suppress(OSError):
                st = path.stat()
                seen[str(path)] = (st.st_mtime_ns, st.st_size)
    return seen


def _syntax_error(sources: dict[str, bytes]) -> str | None:
    for name, source in sorted(sources.items()):
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
    from collections_ops.localcloud.store import STORE_DIR

    started = time.monotonic()
    packages: dict[str, bytes] = {}
    for fn in FUNCTIONS:
        sources = {name: path.read_bytes() for name, path in function_sources(fn).items()}
        error = _syntax_error(sources)
        if error is not None:
            live = _live(lam, env, fn)
            return [Reload(fn.key, None, time.monotonic() - started,
                           f"{fn.code_dir}/{error} (still running version {live})")]
        packages[fn.key] = zip_sources(sources)
    stamp = read_stamp(state_dir)
    functions = dict(stamp.get("functions", {}))
    reloads = []
    for fn in FUNCTIONS:
        code = packages[fn.key]
        history = state_dir / STORE_DIR / "lambda" / fn.key
        kept = sorted(history.glob("*.zip"), key=lambda p: int(p.stem))
        digest = code_digest(code)
        if kept and code_digest(kept[-1].read_bytes()) == digest:
            continue
        name = fn.function_name(env.name)
        lam.update_function_code(FunctionName=name, ZipFile=code)
        version = str(lam.publish_version(FunctionName=name)["Version"])
        history.mkdir(parents=True, exist_ok=True)
        (history / f"{version}.zip").write_bytes(code)
        lam.update_alias(FunctionName=name, Name=LIVE_ALIAS, FunctionVersion=version)
        functions[fn.key] = {"version": version, "digest": digest,
                             "dir": str(_unpack(state_dir, fn, version, code))}
        reloads.append(Reload(fn.key, version, 0.0))
    if not reloads:
        return []
    from collections_ops.localcloud.provision import shared_digest

    _write_stamp(state_dir, {"generation": int(stamp.get("generation", 0)) + 1,
                             "functions": functions, "shared": shared_digest(),
                             "code": code_fingerprint(), "time": time.time()})
    took = time.monotonic() - started
    return [Reload(r.function, r.version, took) for r in reloads]


def _unpack(state_dir: Path, fn: Function, version: str, code: bytes) -> Path:
    """The published package as files, which the dispatchers import: what runs is what was
    published, whatever is saved after it."""
    import io
    import shutil
    import zipfile

    folder = state_dir / CODE_DIR / fn.key / version
    shutil.rmtree(folder, ignore_errors=True)
    with zipfile.ZipFile(io.BytesIO(code)) as zf:
        zf.extractall(folder)
    return folder


def _live(lam: Any, env: Environment, fn: Function) -> str:
    try:
        alias = lam.get_alias(FunctionName=fn.function_name(env.name), Name=LIVE_ALIAS)
        return str(alias["FunctionVersion"])
    except Exception:
        return "?"


def _write_stamp(state_dir: Path, stamp: dict[str, Any]) -> None:
    tmp = stamp_path(state_dir).with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, stamp_path(state_dir))


def watch(lam: Any, env: Environment, state_dir: Path, *, report: Callable[[Reload], None],
          stop: threading.Event | None = None, poll_s: float = POLL_S) -> None:
    """Reload on every change until `stop` is set (or forever): a change is acted on once the
    sources have stayed the same for one poll (an editor's save is often several writes)."""
    stop = stop or threading.Event()
    known = source_times()
    for reload in publish_changed(lam, env, state_dir):  # edits made before watching began
        report(reload)
    while not stop.wait(poll_s):
        now = source_times()
        if now == known:
            continue
        while not stop.wait(poll_s):
            settled = source_times()
            if settled == now:
                break
            now = settled
        known = now
        try:
            for reload in publish_changed(lam, env, state_dir):
                report(reload)
        except OSError as exc:  # a file vanished mid-save: the next change tries again
            report(Reload("handlers", None, 0.0, f"could not read the sources ({exc})"))


# --------------------------------------------------------------------------- the reloader


class CodeReloader:
    """In a dispatcher process: new code between invocations, never during one.

    `purge(code_dirs, shared)` drops the modules of the functions in `code_dirs` (every
    function's and the shared code's, when `shared`) and has them imported from their new
    package folders; it runs while no invocation is in flight in this process.
    """

    def __init__(self, stamp: Path, purge: Callable[[dict[str, Path], bool], None]) -> None:
        self._path = stamp
        self._purge = purge
        self._seen = self._stat()
        # What this process imported is the code on disk at its start; the stamp's versions
        # still name what `live` runs.
        self._stamp = {**self._read(), **self._baseline()}
        self._cond = threading.Condition()
        self._running = 0
        self._reloading = False
        self._generation: dict[str, int] = {}  # function key -> reloads seen
        self._containers = threading.local()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _read(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            stamp = json.loads(self._path.read_text())
            if isinstance(stamp, dict):
                return stamp
        return {}

    @staticmethod
    def _baseline() -> dict[str, Any]:
        """No stamp yet: the code this process imported at start is the code on disk."""
        from collections_ops.localcloud.provision import code_digest, function_code, shared_digest

        return {"shared": shared_digest(), "functions": {
            fn.key: {"digest": code_digest(function_code(fn))} for fn in FUNCTIONS}}

    def version(self, key: str) -> str | None:
        version = self._stamp.get("functions", {}).get(key, {}).get("version")
        return str(version) if version else None

    @contextlib.contextmanager
    def invocation(self, fn: Function) -> Iterator[str | None]:
        """Hold the code steady for one invocation; yields the version it runs (if known)."""
        if self._stat() != self._seen:
            self._reload()
        with self._cond:
            while self._reloading:
                self._cond.wait()
            self._running += 1
            generation = self._generation.get(fn.key, 0)
        try:
            if getattr(self._containers, fn.key, 0) != generation:
                # This worker is a new container for the new code: nothing cached survives.
                import sys

                shared_state = sys.modules.get("collections_core.state")
                if shared_state is not None:
                    shared_state.reset()
                setattr(self._containers, fn.key, generation)
            yield self.version(fn.key)
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()

    def _reload(self) -> None:
        with self._cond:
            if self._reloading:
                return  # another worker is reloading; `invocation` waits for it
            self._reloading = True
            while self._running:
                self._cond.wait()
        try:
            seen, stamp = self._stat(), self._read()
            if not stamp:  # removed by a full reload (new processes, fresh imports)
                self._seen = seen
                return
            before = self._stamp.get("functions", {})
            changed = {key for key, entry in stamp.get("functions", {}).items()
                       if before.get(key, {}).get("digest") != entry.get("digest")}
            shared = stamp.get("shared") != self._stamp.get("shared")
            if changed or shared:
                latest = stamp.get("functions", {})
                self._purge({key: Path(latest[key]["dir"]) for key in changed
                             if latest[key].get("dir")}, shared)
                for fn in FUNCTIONS:
                    if shared or fn.key in changed:
                        self._generation[fn.key] = self._generation.get(fn.key, 0) + 1
            self._seen, self._stamp = seen, stamp
        finally:
            with self._cond:
                self._reloading = False
                self._cond.notify_all()
