"""Loading and invoking the pipeline's handlers in this process, the way Lambda would.

Each function's directory and the shared code go on `sys.path`; each `handler.py` is loaded
under a name of its own so the three can live in one interpreter. Helper modules inside the
function directories must therefore have names unique across functions (a test checks this).
The shared code is the deployed copy (`paths.shared_code_dir()`, a function bundle's
`collections_core`), not the installed package the CLI imports: the dispatcher process puts it
first on the path before anything imports `collections_core` (dispatcher.main), and a hot
reload puts each new published package first.

Lambda gives each function its role's credentials as environment variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN). Here the functions' workers are
threads of one process, so each worker thread ("container") gets its own values of those
variables: `enter_container` overlays them on `os.environ` for that thread only. Handler code
reads its environment exactly as on Lambda (boto3's credential chain reads `os.environ`).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from collections_ops import paths
from collections_ops.pipeline import Environment, Function

_loaded: dict[str, ModuleType] = {}
_load_lock = threading.Lock()
_container = threading.local()


class _ContainerEnviron(os._Environ):
    """`os.environ`, where the current thread's container variables take precedence."""

    def __getitem__(self, key: str) -> str:
        overlay: dict[str, str] | None = getattr(_container, "environ", None)
        if overlay is not None and key in overlay:
            return overlay[key]
        return str(super().__getitem__(key))

    def __contains__(self, key: object) -> bool:
        overlay: dict[str, str] | None = getattr(_container, "environ", None)
        return (overlay is not None and key in overlay) or super().__contains__(key)


def enter_container(variables: dict[str, str]) -> None:
    """This thread is a container with these environment variables of its own (its
    function's role credentials), as Lambda sets them for the function's process."""
    if not isinstance(os.environ, _ContainerEnviron):
        base = os.environ
        # The same variables (one `_data`, one process environment), read through the overlay.
        os.environ = _ContainerEnviron(  # noqa: B003
            base._data, base.encodekey, base.decodekey, base.encodevalue, base.decodevalue)  # type: ignore[attr-defined]
    _container.environ = dict(variables)


def load_handler(fn: Function) -> Callable[[Any, Any], Any]:
    install_capture()  # before the handler configures logging, so it formats our records too
    with _load_lock:
        module = _loaded.get(fn.key)
        if module is None:
            for folder in (paths.shared_code_dir(), *(paths.lambda_code_dir(f.code_dir)
                                                      for f in _all_functions())):
                if str(folder) not in sys.path:
                    sys.path.insert(0, str(folder))
            module_name = fn.handler.rpartition(".")[0]
            path = _code_dir(fn) / f"{module_name}.py"
            spec = importlib.util.spec_from_file_location(f"collections_fn_{fn.key}", path)
            assert spec and spec.loader
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _loaded[fn.key] = module
    handler: Callable[[Any, Any], Any] = getattr(module, fn.handler.rpartition(".")[2])
    return handler


# --- hot reload (`deploy local --watch`, see lambda_service/watch.py) ------------------------
_reloader: Any = None
_code_dirs: dict[str, Path] = {}  # function key -> the published package it runs


def watch_code(stamp: Path) -> None:
    """Reload a function's code between invocations when the code stamp says it changed."""
    global _reloader
    from collections_ops.localcloud.lambda_service.reloader import CodeReloader

    _reloader = CodeReloader(stamp, _purge)


def _purge(code_dirs: dict[str, Path], shared: bool) -> None:
    """Forget the modules of these functions (all of them, and `collections_core`, when the
    shared code changed); the next load imports them from their published packages."""
    from collections_ops.pipeline import FUNCTIONS

    keys = {fn.key for fn in FUNCTIONS} if shared else set(code_dirs)
    folders = [str(_code_dir(fn)) + os.sep for fn in FUNCTIONS if fn.key in keys]
    with _load_lock:
        for key in keys:
            _loaded.pop(key, None)
        # The new packages go first on the path before anything is forgotten: an import that
        # races the purge (a worker of another function) finds the new code, never the old.
        for key, folder in code_dirs.items():
            _code_dirs[key] = folder
            sys.path.insert(0, str(folder))  # its modules (and shared package) first
        importlib.invalidate_caches()
        for name, module in list(sys.modules.items()):
            if name == "collections_core" or name.startswith("collections_core."):
                # One copy for every function in the process (its logging, its masking's
                # registered secrets), wherever it was imported from: forgotten only when the
                # shared code itself changed, never because one function's package did.
                if shared:
                    del sys.modules[name]
                continue
            source = getattr(module, "__file__", None) or ""
            if (name.startswith("collections_fn_") and name[15:] in keys) \
                    or any(source.startswith(f) for f in folders):
                del sys.modules[name]


def _code_dir(fn: Function) -> Path:
    return _code_dirs.get(fn.key) or paths.lambda_code_dir(fn.code_dir)


def _init_error(fn: Function, exc: Exception) -> tuple[str, str]:
    """Lambda's error for code that cannot be imported (an init error)."""
    module = fn.handler.rpartition(".")[0]
    if isinstance(exc, SyntaxError):
        return "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module}': {exc}"
    if isinstance(exc, ImportError):
        return "Runtime.ImportModuleError", f"Unable to import module '{module}': {exc}"
    return type(exc).__name__, f"Init error in module '{module}': {exc}"


def _all_functions() -> tuple[Function, ...]:
    from collections_ops.pipeline import DEPLOYED_FUNCTIONS

    return DEPLOYED_FUNCTIONS


@dataclass
class LambdaContext:
    """The attributes of Lambda's context object that handlers use."""

    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = ""
    invoked_function_arn: str = ""
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class _CaptureHandler(logging.Handler):
    """Routes each log record to the buffer of the invocation running on the same thread."""

    def __init__(self) -> None:
        super().__init__()
        self.buffers: dict[int, list[tuple[int, str]]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        buffer = self.buffers.get(record.thread or 0)
        if buffer is None:
            return
        try:
            buffer.append((int(record.created * 1000), self.format(record)))
        except Exception:
            self.handleError(record)


_capture = _CaptureHandler()


def install_capture() -> None:
    root = logging.getLogger()
    if _capture not in root.handlers:
        root.addHandler(_capture)
        shared_log = sys.modules.get("collections_core.log")
        if shared_log is not None and getattr(shared_log, "_configured", False):
            # The functions' logging was configured before the capture existed (their shared
            # code imported first): give it the formatter the functions give every handler.
            _capture.setFormatter(shared_log.JsonFormatter())


@dataclass
class Invocation:
    request_id: str
    ok: bool
    result: Any
    error_type: str | None
    error_message: str | None
    duration_ms: float
    log_events: list[tuple[int, str]]


def invoke(fn: Function, env: Environment, event: Any, *, log_stream: str = "") -> Invocation:
    """Invoke `fn`'s handler with a Lambda-shaped context; capture its log lines, START to
    REPORT, as Lambda writes them to CloudWatch Logs."""
    install_capture()
    with _reloader.invocation(fn, env.timeout(fn)) if _reloader \
            else contextlib.nullcontext() as version:
        return _invoke(fn, env, event, log_stream, version or "$LATEST")


def _invoke(fn: Function, env: Environment, event: Any, log_stream: str,
            version: str) -> Invocation:
    context = LambdaContext(function_name=fn.function_name(env.name),
                            memory_limit_in_mb=env.memory(fn), timeout_s=env.timeout(fn),
                            log_group_name=fn.log_group(env.name), log_stream_name=log_stream,
                            function_version=version)
    rid = context.aws_request_id
    lines: list[tuple[int, str]] = [(_now_ms(), f"START RequestId: {rid} Version: {version}")]
    thread_id = threading.get_ident()
    _capture.buffers[thread_id] = lines
    started = time.perf_counter()
    ok, result, error_type, error_message = True, None, None, None
    try:
        try:
            handler = load_handler(fn)
        except Exception as exc:  # SyntaxError too: an init error fails this invocation only
            ok = False
            error_type, error_message = _init_error(fn, exc)
            lines.append((_now_ms(), json.dumps({"errorMessage": error_message,
                                                 "errorType": error_type, "requestId": rid})))
        else:
            result = handler(event, context)
    except Exception as exc:
        ok, error_type = False, type(exc).__name__
        error_message = str(getattr(exc, "reason", None) or exc)
        lines.append((_now_ms(), json.dumps({"errorMessage": error_message,
                                             "errorType": error_type, "requestId": rid})))
    finally:
        _capture.buffers.pop(thread_id, None)
    duration = (time.perf_counter() - started) * 1000
    if duration > env.timeout(fn) * 1000:
        ok, error_type = False, "Sandbox.Timedout"
        error_message = f"Task timed out after {env.timeout(fn):.2f} seconds"
        lines.append((_now_ms(), f"{_iso()} {rid} {error_message}"))
    memory_mb = _resident_mb()
    lines.append((_now_ms(), f"END RequestId: {rid}"))
    lines.append((_now_ms(), (
        f"REPORT RequestId: {rid}\tDuration: {duration:.2f} ms\t"
        f"Billed Duration: {int(duration) + 1} ms\tMemory Size: {env.memory(fn)} MB\t"
        f"Max Memory Used: {memory_mb} MB")))
    return Invocation(rid, ok, result, error_type, error_message, duration, lines)


def _resident_mb() -> int:
    """The dispatcher process's resident memory now: the memory of the "execution
    environment" this invocation ran in. Lambda reports the environment's peak; a process
    lifetime peak (ru_maxrss) would only ever grow, and the emulator no longer shares this
    process, so the current figure is the honest one. One process hosts every function's
    workers, so it is an upper bound of what one function uses."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * resource.getpagesize() // (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
