"""moto's server as the local cloud's AWS: on a fixed loopback port, its backends writing
through to the durable store (`store`), every request authenticated by the front door and
authorized by IAM (`frontdoor`, `iam`), moto's unsigned API closed, HTTP connections kept
alive, and every other caller held at a gate until the emulator's start-up
(`localcloud/emulator_process.py`) has provisioned the resources and restored the data.

It imports nothing of the local cloud's other rooms: what the start-up adds from them (the
pipeline's resources, Lambda's versions and `live` alias) is composed in `emulator_process`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collections_ops.localcloud.aws.store import Store
from collections_ops.localcloud.aws.store_objects import s3_middleware
from collections_ops.localcloud.aws.write_through import install
from collections_ops.localcloud.state import (
    StateDir,
    local_environment,
    private_dir,
    state_dir_mode,
)
from collections_ops.pipeline import LOCAL_ACCOUNT

# The access key of the emulator's own provisioning requests (an IAM user of its own, whose
# secret lives in this process only): the only ones served before the data is restored
# (anything else waits, so a handler never sees a bucket without its objects or a missing
# parameter during a restart).
PROVISIONING_KEY = "collections-provision"
GATE_WAIT_S = 120.0


@dataclass
class Emulator:
    """moto's server, answering on its port, with what the start-up still needs: the durable
    store (recording off while resources are provisioned and data restored), the local IAM
    credentials, the provisioning user's secret, and the gate that holds every other caller."""

    server: Any
    endpoint: str
    region: str
    store: Store
    credentials: dict[str, Any]
    provisioning_secret: str
    ready: threading.Event

    def open(self) -> None:
        """Let every caller in: resources and data are in place."""
        self.ready.set()


def start(state_dir: Path, port: int, *, region: str) -> Emulator:
    """Start moto's server on `port`, its backends writing through to the store under
    `state_dir`, IAM enforced (unless switched off) behind the front door; every request but
    the provisioning user's waits at the gate until `open()`."""
    from werkzeug.serving import make_server

    from collections_ops.localcloud.aws.moto_tuning import tune_in_process_moto

    tune_in_process_moto()
    env = local_environment()
    files = StateDir(state_dir)
    private_dir(state_dir, state_dir_mode())
    store = Store(files.store)
    install(store)
    from collections_ops.localcloud.aws import iam

    credentials = iam.load_or_create(state_dir)
    provisioning_secret = iam.create_users(LOCAL_ACCOUNT, admin=credentials["admin"],
                                           provisioning_key=PROVISIONING_KEY)
    if iam.enforced():
        iam.install()
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    buckets = {env.images_bucket(LOCAL_ACCOUNT), env.thumbnails_bucket(LOCAL_ACCOUNT)}
    ready_event = threading.Event()
    app = _without_moto_api(s3_middleware(DomainDispatcherApplication(create_backend_app),
                                          store, buckets, account=LOCAL_ACCOUNT))
    if iam.enforced():  # nothing unsigned gets past this, whatever its headers or path
        from collections_ops.localcloud.aws.frontdoor import front_door

        app = front_door(app, account=LOCAL_ACCOUNT, region=region,
                         open_paths=(MOTO_API_PROBE, "/moto-api"))
    app = _accounted(_gate(app, ready_event))
    server = make_server("127.0.0.1", port, app, threaded=True,
                         request_handler=_keep_alive_handler()
                         if os.environ.get(KEEP_ALIVE_ENV, "1").strip() != "0"
                         else MotoRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="moto").start()
    return Emulator(server=server, endpoint=f"http://127.0.0.1:{port}", region=region,
                    store=store, credentials=credentials,
                    provisioning_secret=provisioning_secret, ready=ready_event)


MOTO_API_PROBE = "/moto-api/"  # moto's dashboard page: static, what the supervisor probes


def _without_moto_api(app: Any) -> Any:
    """moto's own API answers without a signature, so IAM never sees it: `data.json` dumps
    every resource with its secrets (the local administrator's key, the roles' sessions, every
    SSM value) and `reset` wipes the cloud. AWS has no such door; the local cloud closes it to
    all but the probe page."""

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api") and path not in (MOTO_API_PROBE, "/moto-api"):
            body = json.dumps({"__type": "AccessDeniedException",
                               "message": f"{path} is not served by the local cloud"}).encode()
            start_response("403 Forbidden", [("Content-Type", "application/json"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return guarded


def _gate(app: Any, ready: threading.Event) -> Any:
    marker = f"Credential={PROVISIONING_KEY}/"

    def gated(environ: dict[str, Any], start_response: Any) -> Any:
        if not ready.is_set() and marker not in environ.get("HTTP_AUTHORIZATION", "") \
                and not environ.get("PATH_INFO", "").startswith("/moto-api"):
            ready.wait(GATE_WAIT_S)
        return app(environ, start_response)

    return gated


REQUESTS_PATH = "/collections-api/requests"
IDLE_CONNECTION_S = 120.0
# An unread request body up to this size is read and dropped so the connection can be used
# again (uploads are at most 40 MB); a larger one closes the connection instead.
MAX_DISCARDED_BODY = 64 * 1024 * 1024
KEEP_ALIVE_ENV = "COLLECTIONS_LOCAL_KEEP_ALIVE"  # "0": close after every response (werkzeug's)


class _ThisRequestsBody:
    """A request's body and nothing after it: what werkzeug reads as `wsgi.input`, and what
    it drains after answering, must end where the next request on the connection begins."""

    def __init__(self, raw: Any, length: int) -> None:
        self._raw, self._left = raw, length

    def read(self, size: int | None = -1) -> bytes:
        return self._take(self._raw.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._take(self._raw.readline, size)

    def _take(self, reader: Callable[[int], bytes], size: int | None) -> bytes:
        """`reader` of the raw stream, never past this request's body."""
        if self._left <= 0:
            return b""
        wanted = self._left if size is None or size < 0 else min(size, self._left)
        data = bytes(reader(wanted))
        self._left -= len(data)
        return data

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def discard_rest(self, limit: int) -> bool:
        """Read and drop what the application left of the body (a refusal answers without
        reading it), up to `limit` bytes; False if more was left, or the client stopped
        sending: then the connection cannot be used again."""
        if self._left > limit:
            return False
        while self._left > 0:
            if not self.read(min(self._left, 1 << 20)):
                return False
        return True


def _keep_alive_handler() -> Any:
    """werkzeug's development server closes the connection after every response, so every
    AWS call paid a TCP connect, a new server thread and a new client connection (~4 per
    invocation). AWS endpoints keep connections alive and boto3 reuses them; this handler
    does too, for requests whose body has a Content-Length (a chunked request body still
    closes its connection). A connection idle for IDLE_CONNECTION_S is closed."""

    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveRequestHandler(MotoRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = IDLE_CONNECTION_S
        keep_alive = False

        def setup(self) -> None:
            super().setup()
            # Headers and body leave in two writes: without TCP_NODELAY, Nagle's algorithm
            # holds the body back until the client's (delayed) ACK of the headers.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def run_wsgi(self) -> None:
            raw = self.rfile
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            chunked = "chunked" in str(self.headers.get("Transfer-Encoding", "")).lower()
            self.keep_alive = length >= 0 and not chunked and not self.close_connection
            body = _ThisRequestsBody(raw, length) if self.keep_alive else None
            if body is not None:
                self.rfile = body  # type: ignore[assignment]
            try:
                super().run_wsgi()
                # The next request starts after this one's body, not where the application
                # stopped reading it. werkzeug's own drain only reads what the socket has
                # within 10 ms, and never what is already in the read buffer: an unread
                # body became the start of the next request line ("xxxPOST / HTTP/1.1").
                if body is not None and not body.discard_rest(MAX_DISCARDED_BODY):
                    self.keep_alive = False
            except OSError:
                self.keep_alive = False
                raise
            finally:
                self.rfile = raw
            if not self.keep_alive:
                self.close_connection = True

        def send_header(self, keyword: str, value: str) -> None:
            if self.keep_alive and keyword.lower() == "connection" and value.lower() == "close":
                return
            super().send_header(keyword, value)

    return KeepAliveRequestHandler


def _operation(environ: dict[str, Any]) -> str:
    """`service:Operation` of a request, as far as its headers tell (S3: method and shape)."""
    scope = environ.get("HTTP_AUTHORIZATION", "").partition("Credential=")[2].split("/")
    service = scope[3] if len(scope) > 3 else "?"
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return f"{service}:{target.rpartition('.')[2]}"
    query = environ.get("QUERY_STRING", "")
    if "Action=" in query:
        return f"{service}:{query.partition('Action=')[2].partition('&')[0]}"
    method = environ.get("REQUEST_METHOD", "GET")
    if service == "s3":
        path = environ.get("PATH_INFO", "").lstrip("/")
        return f"s3:{method} {'object' if '/' in path.rstrip('/') else 'bucket'}"
    return f"{service}:{method}"


def _accounted(app: Any) -> Any:
    """Count the emulator's requests and the CPU time (this thread's) each kind costs: what
    an image costs the emulator, by operation. `GET /collections-api/requests` answers the
    totals so far as JSON (for benchmarks and profiling; nothing else reads them)."""
    lock = threading.Lock()
    totals: dict[str, list[float]] = {}

    def accounted(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == REQUESTS_PATH:
            with lock:
                body = json.dumps({k: {"count": int(v[0]), "cpu_s": round(v[1], 4)}
                                   for k, v in sorted(totals.items())}).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        started = time.thread_time()
        result = None
        try:
            result = app(environ, start_response)
            return list(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:  # as the server would have (WSGI: close what you iterate)
                close()
            spent = time.thread_time() - started
            name = _operation(environ)
            with lock:
                entry = totals.setdefault(name, [0.0, 0.0])
                entry[0] += 1
                entry[1] += spent

    return accounted
